//! GGUF: header reader, model facts, memory model, ggml/ftype tables, and a
//! fixture writer.
//!
//! The `evaluate` phase reads headers (local files or range-fetched prefixes),
//! derives [`facts::ModelFacts`], and asks [`memory`] what a context costs and
//! where the weights go.
pub mod facts;
pub mod memory;
pub mod reader;
pub mod types;
pub mod writer;

pub use facts::{facts, facts_from_shards, Fact, FactsError, LayerKind, ModelFacts};
pub use memory::{
    compute_buffer_bytes, kv_bytes_per_token, kv_cache_bytes, place, recurrent_state_bytes,
    DeviceBudget, HostBudget, Placement, PlacementOptions, RunConfig,
};
pub use reader::{
    read_file, read_header, read_header_bytes, read_header_incremental, GgufError, Header,
    TensorInfo, Value, ValueType,
};
pub use types::{FileType, GgmlType};
