//! HumanEval(+) benchmarking: the dataset, EvalPlus-style prompting and
//! extraction, the sandbox that runs model-written code, scoring with
//! resumable per-task records, and the comparison report.
//!
//! [`run`] drives one benchmark through any [`crate::engine::Engine`].

pub mod dataset;
pub mod locate;
pub mod plan;
pub mod prompt;
pub mod release;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod score;
