//! A benchmark made ready from what a step asks for: the dataset located
//! and narrowed, the sandbox up, the results directory inside the
//! workspace; then the run and the line that reports it.

use super::dataset::{Dataset, DatasetError};
use super::release::Release;
use super::run::{self, BenchError, BenchOptions};
use super::sandbox::{Sandbox, SandboxConfig, SandboxError};
use super::score::Summary;
use crate::cancel::Cancel;
use crate::engine::Engine;
use schemars::JsonSchema;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A benchmark that cannot start as asked.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No dataset, or tasks it does not have.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The results directory is not inside the workspace.
    #[error("{0}")]
    ResultsDir(String),
    /// The sandbox could not be set up, or the run failed.
    #[error(transparent)]
    Bench(#[from] BenchError),
}

impl PlanError {
    /// Whether the step's settings are at fault (no dataset, unknown
    /// tasks, a results directory outside the workspace).
    pub fn is_setting(&self) -> bool {
        !matches!(self, PlanError::Bench(_))
    }

    /// Whether running again may help: a failed request or results write
    /// may pass, a sandbox that cannot be set up will not.
    pub fn retryable(&self) -> bool {
        let PlanError::Bench(e) = self else {
            return false;
        };
        let retryable = matches!(e, BenchError::Engine { .. } | BenchError::Results(_));
        let setup = matches!(
            e,
            BenchError::Sandbox(SandboxError::NotRoot | SandboxError::Setup(_))
        );
        retryable && !setup
    }
}

/// The sandbox a step asks for, over the defaults.
#[derive(Debug, Clone, Default)]
pub struct SandboxSettings {
    /// Solutions tested at once (sandbox slots).
    pub parallel: usize,
    pub python: Option<String>,
    pub uid_base: Option<u32>,
    /// Address-space limit per test process, MiB.
    pub memory_mib: Option<u64>,
    /// Wall-clock limit of one solution's tests, seconds.
    pub test_timeout: Option<f64>,
    /// Minimum per-input time limit, seconds.
    pub min_time_limit: Option<f64>,
}

impl SandboxSettings {
    /// The sandbox configuration, stopped by `cancel`.
    pub fn config(&self, cancel: Cancel) -> SandboxConfig {
        let mut config = SandboxConfig::new(self.parallel);
        if let Some(p) = &self.python {
            config.python = PathBuf::from(p);
        }
        if let Some(uid) = self.uid_base {
            config.uid_base = uid;
        }
        if let Some(m) = self.memory_mib {
            config.limits.memory_bytes = m << 20;
        }
        if let Some(t) = self.test_timeout {
            config.limits.wall_seconds = t;
            config.limits.cpu_seconds = t.ceil() as u64 + 5;
        }
        if let Some(t) = self.min_time_limit {
            config.timing.min_time_limit = t;
        }
        config.cancel = cancel;
        config
    }
}

/// Everything one benchmark run needs besides the engine.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    pub workspace: PathBuf,
    /// The dataset file the step names, if any (else the usual search).
    pub dataset: Option<PathBuf>,
    /// Only these problems (`HumanEval/3` or `3`), then only the first `limit`.
    pub tasks: Vec<String>,
    pub limit: Option<usize>,
    pub sandbox: SandboxConfig,
    /// Where summaries and per-task records go (workspace-relative).
    pub results_dir: String,
    pub model: String,
    pub max_tokens: u32,
    pub endpoint: Option<String>,
    pub served_model: Option<String>,
    /// The digest of the bench profile's settings, when one is served
    /// (records made with other settings are set aside).
    pub profile_settings: Option<String>,
}

impl BenchPlan {
    /// The summary file, workspace-relative.
    pub fn summary_path(&self) -> String {
        format!("{}/{}.json", self.results_display(), self.model)
    }

    fn results_display(&self) -> String {
        self.results_dir.trim_end_matches('/').to_string()
    }

    /// Runs the benchmark through `engine` (blocking; call from a blocking
    /// thread) and logs its score.
    pub fn run(
        &self,
        engine: &dyn Engine,
        log: &(dyn Fn(&str) + Sync),
    ) -> Result<Summary, PlanError> {
        let mut dataset = Dataset::locate(
            &self.workspace,
            self.dataset.as_deref(),
            &Release::from_env(),
            log,
        )?;
        dataset.select(&self.tasks, self.limit)?;
        log(&format!(
            "{}: {} problems from {}",
            dataset.label,
            dataset.problems.len(),
            dataset.source.display()
        ));
        let sandbox = Sandbox::new(self.sandbox.clone()).map_err(BenchError::Sandbox)?;
        let results = crate::workspace::resolve_inside(&self.workspace, &self.results_dir)
            .map_err(PlanError::ResultsDir)?;
        let options = BenchOptions {
            model: self.model.clone(),
            results_dir: results,
            results_display: self.results_display(),
            max_tokens: self.max_tokens,
            endpoint: self.endpoint.clone(),
            served_model: self.served_model.clone(),
            profile_settings: self.profile_settings.clone(),
        };
        let summary = run::run(engine, &dataset, &sandbox, &options, log)?;
        log(&format!(
            "{}: pass@1 base {:.1}%{} over {} tasks ({:.0} s)",
            summary.dataset,
            summary.pass_at_1_base * 100.0,
            summary
                .pass_at_1_plus
                .map(|p| format!(", plus {:.1}%", p * 100.0))
                .unwrap_or_default(),
            summary.tasks,
            summary.wall_seconds
        ));
        Ok(summary)
    }
}

/// A dataset path as a step gives it: absolute, or relative to the workspace.
pub fn dataset_path(workspace: &Path, dataset: Option<&str>) -> Option<PathBuf> {
    dataset.map(|d| {
        let path = Path::new(d);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            workspace.join(path)
        }
    })
}

/// What the benchmark step reports.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BenchmarkOutputs {
    /// The summary file (workspace-relative).
    pub summary: String,
    /// `HumanEval+` or `HumanEval (base tests only)`.
    pub dataset: String,
    /// The engine that generated the completions (`mistralrs`, `llama-server`).
    pub engine: String,
    pub tasks: usize,
    pub pass_at_1_base: f64,
    /// Null on the base-tests-only dataset.
    pub pass_at_1_plus: Option<f64>,
    pub resumed_tasks: usize,
    pub wall_seconds: f64,
}

impl BenchmarkOutputs {
    /// The report of a run whose summary file is `summary_file`
    /// (workspace-relative).
    pub fn new(summary_file: String, summary: Summary) -> BenchmarkOutputs {
        BenchmarkOutputs {
            summary: summary_file,
            dataset: summary.dataset,
            engine: summary.engine,
            tasks: summary.tasks,
            pass_at_1_base: summary.pass_at_1_base,
            pass_at_1_plus: summary.pass_at_1_plus,
            resumed_tasks: summary.resumed_tasks,
            wall_seconds: summary.wall_seconds,
        }
    }
}
