//! The embedded engines, mistral.rs and llama.cpp, each run in a child
//! process (this same binary, hidden subcommand `__engine-worker`).
//! mistral.rs 0.8.1 panics on GGUF architectures it does not know, llama.cpp
//! aborts on some malformed files, and a long CPU prefill can exhaust RAM;
//! in a child, a panic, an abort or an out-of-memory kill is an error
//! message, never the end of the run or a damaged state. The child's peak
//! RSS is the model's real memory use.
//!
//! [`kind`] lists the embedded engines; [`protocol`] is what parent and
//! child say to each other; [`supervisor`] is the parent's side. Each
//! engine's child side lives with the engine (`engine::mistralrs`,
//! `engine::llama_cpp`), and this module names neither.

pub mod kind;
pub mod protocol;
pub mod supervisor;
