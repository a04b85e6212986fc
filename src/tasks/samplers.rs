//! `uses: samplers` — phase 4: the recommended sampling settings, each with
//! where it came from (resolved by `crate::samplers`), written into the
//! production profile.

use super::{Task, TaskContext, TaskError};
use crate::hub::upstream::Identity;
use crate::profile::hand_edits::{self, HandEdit};
use crate::samplers::{
    changed_sources, flag_line, hub_sources, parse_generation_config, resolve, upstream_note,
    Resolved, SamplerInputs,
};
use crate::tasks::WorkspaceContext;
use crate::workspace::manifest::SamplerCard;
use crate::workspace::models_conf;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

pub use crate::samplers::SamplerSource;

pub struct Samplers;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SamplersParams {
    /// The production profile to write `SAMPLERS=` into.
    pub profile: String,
    /// The model card's recommendations (`{{ manifest.samplers }}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended: Option<SamplerCard>,
    /// Which of the card's modes to use; default: the card's `use`, else
    /// `thinking-general` for thinking models, else `non-thinking-general`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Whether the model thinks before answering (picks the default mode).
    #[serde(default)]
    pub thinking: bool,
    /// The GGUF's `general.sampling.*` values, keyed without the prefix
    /// (`temp`, `top_p`, …), as evaluate read them.
    #[serde(default)]
    pub gguf_sampling: Map<String, Value>,
    /// The repo's `generation_config.json`, as a workspace path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<String>,
    /// Fetch `generation_config.json` from this Hub repo (`HF_ENDPOINT`
    /// honoured) when no local copy is given; a repo without one is fine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_repo: Option<String>,
    #[serde(default = "crate::hub::default_revision")]
    pub hub_revision: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SamplersOutputs {
    pub profile: String,
    pub mode: Option<String>,
    /// The flags written as `SAMPLERS=`.
    pub samplers: String,
    pub values: Vec<Resolved>,
    pub changed: bool,
    /// `SAMPLERS=` as set by hand since this step last wrote it: kept.
    pub kept: Vec<HandEdit>,
    /// What was read from the Hub (generation config, card), as it was:
    /// `onboard outdated` compares these with the Hub now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SamplerSource>,
}

impl Task for Samplers {
    const KIND: &'static str = "samplers";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Resolve recommended samplers with provenance and write them into the profile";
    type Params = SamplersParams;
    type Outputs = SamplersOutputs;

    fn input_files(
        &self,
        params: &SamplersParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        params
            .generation_config
            .iter()
            .map(|p| ctx.path(p))
            .collect()
    }

    fn out_of_date(
        &self,
        params: &SamplersParams,
        ctx: &TaskContext,
    ) -> Result<Option<String>, TaskError> {
        let (Some(repo), None) = (&params.hub_repo, &params.generation_config) else {
            return Ok(None);
        };
        let had: Vec<(String, Identity)> = previous_sources(ctx)
            .into_iter()
            .map(|s| (s.file, s.identity))
            .collect();
        let why = super::upstream_changed(ctx, repo, &params.hub_revision, &had)?;
        Ok(why.map(upstream_note))
    }

    async fn run(
        &self,
        params: SamplersParams,
        ctx: TaskContext,
    ) -> Result<SamplersOutputs, TaskError> {
        let mut sources = Vec::new();
        let generation_config = match &params.generation_config {
            None => match params.hub_repo.clone() {
                None => None,
                Some(repo) => {
                    let revision = params.hub_revision.clone();
                    let log_ctx = ctx.clone();
                    let (config, read) = tokio::task::spawn_blocking(move || {
                        hub_sources(&repo, &revision, &|line| log_ctx.log(line))
                    })
                    .await
                    .map_err(|e| TaskError::failed(e.to_string()))?;
                    sources = read;
                    for line in changed_sources(&previous_sources(&ctx), &sources) {
                        ctx.log(&line);
                    }
                    config
                }
            },
            Some(rel) => {
                let path = ctx.path(rel)?;
                let text = std::fs::read_to_string(&path).map_err(|e| TaskError::io(&path, e))?;
                let config = parse_generation_config(&text)
                    .map_err(|e| TaskError::Params(format!("{}: {e}", path.display())))?;
                Some(config)
            }
        };
        let (mode, values) = resolve(&inputs(&params), generation_config.as_ref())
            .map_err(|e| TaskError::Params(e.to_string()))?;
        let samplers = flag_line(&values);
        let conf_path = ctx.path(&ctx.paths().models_conf)?;
        let profile = params.profile.clone();
        let value = samplers.clone();
        // What this step wrote last time (unless that was a kept hand edit).
        let last = ctx.previous_outputs.as_ref().map(|prev| {
            let kept = prev
                .get("kept")
                .and_then(Value::as_array)
                .is_some_and(|k| !k.is_empty());
            match prev.get("samplers").and_then(Value::as_str) {
                Some(s) if !kept => vec![("SAMPLERS".to_string(), s.to_string())],
                _ => Vec::new(),
            }
        });
        let mut kept = Vec::new();
        let changed = models_conf::update(&conf_path, |conf| {
            let Some(current) = conf.profile(&profile) else {
                return Err(format!(
                    "has no profile `[{profile}]`; run the profile step first"
                ));
            };
            let merge = hand_edits::merge(
                Some(&current),
                last.as_deref(),
                &["SAMPLERS"],
                &[("SAMPLERS".to_string(), value.clone())],
            );
            kept = merge.kept;
            if !kept.is_empty() {
                return Ok(());
            }
            conf.set(&profile, "SAMPLERS", &value)
                .map_err(|e| e.to_string())
        })
        .map_err(|e| TaskError::Failed {
            message: e.to_string(),
            retryable: false,
        })?;
        let width = values.iter().map(|r| r.flag.len()).max().unwrap_or(0);
        for r in &values {
            ctx.log(&format!("{:<width$} {:>6}  {}", r.flag, r.value, r.source));
        }
        let section = format!("{} [{}]", ctx.paths().models_conf, params.profile);
        for edit in &kept {
            ctx.log(&hand_edits::describe(edit, &section, &ctx.model, &ctx.step));
        }
        Ok(SamplersOutputs {
            profile: params.profile,
            mode,
            samplers,
            values,
            changed,
            kept,
            sources,
        })
    }
}

/// The sources the last finished run recorded (none before they were).
fn previous_sources(ctx: &TaskContext) -> Vec<SamplerSource> {
    ctx.previous_outputs
        .as_ref()
        .and_then(|o| o.get("sources"))
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default()
}

fn inputs(params: &SamplersParams) -> SamplerInputs {
    SamplerInputs {
        recommended: params.recommended.clone(),
        mode: params.mode.clone(),
        thinking: params.thinking,
        gguf_sampling: params.gguf_sampling.clone(),
    }
}
