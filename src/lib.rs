//! `onboard`: a declarative, resumable workflow for adding a GGUF model to a
//! llama.cpp workstation.
//!
//! The workflow engine (`workflow`) knows nothing about models; tasks
//! (`tasks`) are the pluggable units it runs; `workspace` reads the user's
//! files.
pub mod atomic;
pub mod cli;
pub mod hub;
pub mod tasks;
pub mod workflow;
pub mod workspace;
