//! The workflow engine: spec → validate → graph → plan → run → state.
//! It knows steps, task kinds and files — nothing about models.

pub mod duration;
pub mod export;
pub mod graph;
pub mod plan;
pub mod resources;
pub mod run;
pub mod spec;
pub mod state;
pub mod task;
pub mod template;
pub mod validate;
