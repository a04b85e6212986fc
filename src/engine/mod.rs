//! Inference engines: how a profile becomes a running model.

pub mod launch;
pub mod words;
