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
pub mod shard;
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
pub use shard::{shard_paths, ShardName};
pub use types::{FileType, GgmlType};

use std::path::Path;

/// A local model could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Facts(#[from] FactsError),
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
