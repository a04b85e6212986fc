//! GGUF: header reader, model facts, memory model, ggml/ftype tables, and a
//! fixture writer.
//!
//! The `evaluate` phase reads headers (local files or range-fetched prefixes),
//! derives [`facts::ModelFacts`], and asks [`memory`] what a context costs and
//! where the weights go.
pub mod facts;
pub mod memory;
pub mod memory_check;
pub mod reader;
pub mod types;
pub mod writer;

pub use facts::{facts, facts_from_shards, Fact, FactsError, LayerKind, ModelFacts};
pub use memory::{
    compute_buffer_bytes, kv_bytes_per_token, kv_cache_bytes, kv_cache_bytes_for, kv_cells,
    largest_context, place, recurrent_state_bytes, DeviceBudget, Goal, HostBudget, Placement,
    PlacementOptions, RunConfig,
};
pub use reader::{
    read_file, read_header, read_header_bytes, read_header_incremental, GgufError, Header,
    TensorInfo, Value, ValueType,
};
pub use types::{FileType, GgmlType};

use std::path::{Path, PathBuf};

/// A local model could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Facts(#[from] FactsError),
}

/// Every shard's path from any one of them (`…-00002-of-00003.gguf` gives
/// three paths); an unsplit file gives itself.
pub fn shard_paths(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    match name.as_deref().and_then(facts::shard_name_parts) {
        Some((prefix, _, count)) if count > 0 && count < 100_000 => (1..=count)
            .map(|n| path.with_file_name(format!("{prefix}-{n:05}-of-{count:05}.gguf")))
            .collect(),
        _ => vec![path.to_path_buf()],
    }
}

/// Reads local files (one model, all its shards) with the truncation check,
/// and derives the model's facts.
pub fn facts_from_files<P: AsRef<Path>>(paths: &[P]) -> Result<ModelFacts, ModelError> {
    let headers = paths
        .iter()
        .map(|p| read_file(p.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(facts_from_shards(&headers)?)
}
