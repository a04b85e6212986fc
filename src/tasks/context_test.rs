//! `uses: context-test` — phase 5: load the model at the profile's full
//! context, confirm it fits, measure prompt and generation speed and memory,
//! and write the measured speed back into the profile, labelled with the
//! engine that measured it. The measurement itself is `engine::measure`.

use super::engine_settings::{
    choice_failure, engine_settings, measure_failure, profile_gguf, profile_model,
};
use super::{Task, TaskContext, TaskError};
use crate::engine::choice;
use crate::engine::measure::{self, MeasurePlan, SpeedLine};
use crate::engine::running::Limits;
use crate::tasks::WorkspaceContext;
use crate::workflow::{duration, state};
use crate::workspace::models_conf;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use crate::engine::choice::EngineChoice;
pub use crate::engine::measure::{ContextTestOutputs, MtpMeasure};

pub struct ContextTest;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextTestParams {
    /// The production profile in models.conf.
    pub profile: String,
    #[serde(default)]
    pub engine: EngineChoice,
    /// Tokens of context to test (default: the profile's CTX_SIZE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 256))]
    pub context: Option<u64>,
    /// Tokens to generate after the prompt.
    #[serde(default = "default_generate")]
    #[schemars(range(min = 1))]
    pub generate: u32,
    /// Embedded engine: run on the CPU (default: yes unless built with CUDA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<bool>,
    /// Embedded engine: worker threads (default: all cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Give up loading after this long.
    #[serde(default = "default_load_timeout")]
    pub load_timeout: String,
    /// Give up on the measurement after this long.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
}

fn default_generate() -> u32 {
    64
}
fn default_load_timeout() -> String {
    "10m".into()
}
fn default_request_timeout() -> String {
    "30m".into()
}

impl Task for ContextTest {
    const KIND: &'static str = "context-test";
    const VERSION: u32 = 2;
    const LOADS_MODEL: bool = true;
    const SUMMARY: &'static str =
        "Load the model at full context, measure speed and memory, write SPEED";
    type Params = ContextTestParams;
    type Outputs = ContextTestOutputs;

    fn input_files(
        &self,
        params: &ContextTestParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        // The weights: a different file means a different measurement.
        Ok(vec![profile_gguf(&params.profile, ctx)?])
    }

    /// The profile's settings: a hand edit (CTX_SIZE, FIT_TARGET, …) means
    /// a different measurement. Not the keys this step writes itself.
    fn input_values(
        &self,
        params: &ContextTestParams,
        ctx: &TaskContext,
    ) -> Result<Vec<super::InputValue>, TaskError> {
        Ok(vec![super::profile_input(
            ctx,
            &params.profile,
            &["SPEED", "SPEED_EMBEDDED"],
        )?])
    }

    async fn run(
        &self,
        params: ContextTestParams,
        ctx: TaskContext,
    ) -> Result<ContextTestOutputs, TaskError> {
        let limits = Limits {
            load: duration::parse(&params.load_timeout).map_err(TaskError::Params)?,
            request: duration::parse(&params.request_timeout).map_err(TaskError::Params)?,
        };
        let model = profile_model(&params.profile, &ctx)?;
        let cpu = params.cpu.unwrap_or(!cfg!(feature = "cuda"));
        let plan = MeasurePlan {
            context: params
                .context
                .unwrap_or_else(|| model.context().unwrap_or(4096)),
            generate: params.generate,
            cpu,
            threads: params.threads,
            limits,
            date: state::now_rfc3339()[..10].to_string(),
        };
        let settings = engine_settings(&ctx)?;
        let (engine_choice, log_ctx) = (params.engine, ctx.clone());
        // Choosing may start a worker (llama.cpp's preflight): blocking work.
        let (outputs, speed) = tokio::task::spawn_blocking(move || {
            let log = |line: &str| log_ctx.log(line);
            let chosen = choice::choose(engine_choice, &model, cpu, &settings, &log)
                .map_err(choice_failure)?;
            measure::measure_context(&chosen, &model, &plan, &log).map_err(measure_failure)
        })
        .await
        .map_err(|e| TaskError::failed(format!("the measurement thread failed: {e}")))??;
        write_speed(&ctx, &params.profile, &speed)?;
        if let Some(note) = &outputs.context_note {
            ctx.log(note);
        }
        ctx.log(&format!("{}={}", outputs.speed_key, outputs.speed));
        Ok(outputs)
    }
}

/// Writes the `SPEED=` line into the profile.
fn write_speed(ctx: &TaskContext, profile: &str, line: &SpeedLine) -> Result<(), TaskError> {
    let conf_path = ctx.path(&ctx.paths().models_conf)?;
    models_conf::update(&conf_path, |conf| line.write_into(conf, profile))
        .map_err(|e| TaskError::failed(e.to_string()))?;
    Ok(())
}
