//! Inference engines: how a profile becomes a running model.

pub mod export;
pub mod launch;
pub mod words;
