//! `onboard`: a declarative, resumable workflow for adding a GGUF model to a
//! llama.cpp workstation.
//!
//! The workflow engine (`workflow`) knows nothing about models; tasks
//! (`tasks`) are the pluggable units it runs; `workspace` reads the user's
//! files.
pub mod atomic;
pub mod bench;
pub mod cancel;
pub mod cli;
pub mod crashpoint;
pub mod digest;
pub mod docs;
pub mod engine;
pub mod evaluate;
pub mod gguf;
pub mod hub;
pub mod process;
pub mod profile;
pub mod retry;
pub mod samplers;
pub mod secrets;
pub mod source;
pub mod tasks;
pub mod workflow;
pub mod workspace;
