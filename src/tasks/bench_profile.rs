//! `uses: bench-profile` — phase 6: `[bench-<id>]` for HumanEval+, the model
//! registered with the benchmark client and listed in the benchmarks README.
//!
//! The bench profile keeps the production placement but a 10240 context, no
//! sampler flags (the client sends temperature 0), and, for thinking models,
//! `--reasoning-format none` so the reasoning stays in the reply.

use super::{InputValue, Task, TaskContext, TaskError, WorkspaceContext};
use crate::profile::bench::{self, NO_SPECULATIVE_REASON};
use crate::profile::hand_edits::{self, HandEdit};
use crate::workspace::models_conf;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub struct BenchProfile;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BenchProfileParams {
    /// The production profile to derive from.
    pub profile: String,
    /// The bench profile id (default `bench-<profile>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name in the benchmarks README.
    pub name: String,
    #[serde(default)]
    pub thinking: bool,
    #[serde(default = "default_context")]
    #[schemars(range(min = 1))]
    pub context: u64,
    /// The benchmark client's configuration (INI), relative to the workspace.
    #[serde(default = "default_client_config")]
    pub client_config: String,
    /// The benchmarks README whose model table lists bench profiles.
    #[serde(default = "default_readme")]
    pub readme: String,
}

fn default_context() -> u64 {
    10240
}
fn default_client_config() -> String {
    "benchmarks/bench-client.conf".into()
}
fn default_readme() -> String {
    "benchmarks/README.md".into()
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BenchProfileOutputs {
    pub profile: String,
    pub flags: String,
    pub changed: bool,
    /// What the bench profile holds for the keys this step manages.
    pub entries: Vec<Setting>,
    /// Values set by hand in the bench profile, kept instead of the derived ones.
    pub kept: Vec<HandEdit>,
}

/// One `KEY=VALUE` of a profile.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Setting {
    pub key: String,
    pub value: String,
}

impl Task for BenchProfile {
    const KIND: &'static str = "bench-profile";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Add [bench-<id>] and register the model with the benchmark client and README";
    type Params = BenchProfileParams;
    type Outputs = BenchProfileOutputs;

    /// The production profile it derives from (not what other steps write
    /// there and it does not read): a hand edit there re-derives this one.
    fn input_values(
        &self,
        params: &BenchProfileParams,
        ctx: &TaskContext,
    ) -> Result<Vec<InputValue>, TaskError> {
        Ok(vec![super::profile_input(
            ctx,
            &params.profile,
            &["SPEED", "SPEED_EMBEDDED", "SAMPLERS"],
        )?])
    }

    async fn run(
        &self,
        params: BenchProfileParams,
        ctx: TaskContext,
    ) -> Result<BenchProfileOutputs, TaskError> {
        let _shared = ctx.lock_shared_files()?;
        let bench_id = params
            .id
            .clone()
            .unwrap_or_else(|| format!("bench-{}", params.profile));
        if !models_conf::valid_profile_id(&bench_id) {
            return Err(TaskError::Params(format!(
                "`{bench_id}` is not a valid profile id"
            )));
        }
        let conf_path = ctx.path(&ctx.paths().models_conf)?;
        let production = models_conf::read(&conf_path)
            .map_err(|e| TaskError::failed(e.to_string()))?
            .profile(&params.profile)
            .ok_or_else(|| TaskError::Failed {
                message: format!(
                    "{} has no profile `[{}]`; run the profile step first",
                    conf_path.display(),
                    params.profile
                ),
                retryable: false,
            })?;
        let derived = bench::derive(&production, params.context, params.thinking)
            .map_err(TaskError::Params)?;
        if let Some(max) = derived.capped_at {
            ctx.log(&format!(
                "context {} capped at the production profile's {max}",
                params.context
            ));
        }
        if derived.drops_speculative {
            ctx.log(&format!("[{bench_id}] {NO_SPECULATIVE_REASON}"));
        }
        let bench::Derived {
            entries,
            flags,
            context,
            ..
        } = derived;
        let comment = format!(
            "{}: HumanEval+ bench profile (greedy, no samplers), written by onboard",
            params.name
        );
        let hand_edits::Upserted { mut changed, kept } = hand_edits::upsert(
            &conf_path,
            &bench_id,
            &bench::managed(),
            &entries,
            Some(&comment),
            ctx.previous_outputs.as_ref(),
        )
        .map_err(|e| TaskError::failed(e.to_string()))?;
        let section = format!("{} [{bench_id}]", ctx.paths().models_conf);
        for edit in &kept {
            ctx.log(&hand_edits::describe(edit, &section, &ctx.model, &ctx.step));
        }
        let entries: Vec<Setting> = entries
            .into_iter()
            .map(|(key, value)| {
                let value = kept
                    .iter()
                    .find(|e| e.key == key)
                    .map_or(value, |e| e.value.clone());
                Setting { key, value }
            })
            .collect();

        // Register with the benchmark client; it is the source of the README table.
        changed |= bench::register(
            &bench::Registration {
                id: &bench_id,
                name: &params.name,
                model_id: &ctx.model,
                thinking: params.thinking,
            },
            &ctx.path(&params.client_config)?,
            &conf_path,
            &ctx.path(&params.readme)?,
        )
        .map_err(|e| match e {
            bench::RegisterError::Io { path, source } => TaskError::io(&path, source),
            bench::RegisterError::Readme(m) => TaskError::Params(m),
            e => TaskError::failed(e.to_string()),
        })?;
        ctx.log(&format!("[{bench_id}] CTX_SIZE={} FLAGS={flags}", context));
        Ok(BenchProfileOutputs {
            profile: bench_id,
            flags,
            changed,
            entries,
            kept,
        })
    }
}
