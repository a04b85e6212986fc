//! `uses: evaluate` — phase 1: choose the quant, strategy and context from
//! GGUF headers read over HTTP range requests, before any download.

use super::profile::Strategy;
use super::{Task, TaskContext, TaskError};
use crate::evaluate::{self, report, HubSource, Machine, Request};
use crate::gguf::memory::MIB;
use crate::hub::HubClient;
use crate::tasks::WorkspaceContext;
use crate::workspace::config::Hardware;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

pub struct Evaluate;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateParams {
    /// Hub repo, `owner/name` (`{{ manifest.hub.repo }}`).
    pub repo: String,
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Preferred quant, e.g. `UD-Q6_K_XL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant: Option<String>,
    /// Fallback quants, in order of preference.
    #[serde(default)]
    pub alternatives: Vec<String>,
    /// Exact files (overrides the quants).
    #[serde(default)]
    pub files: Vec<String>,
    /// The vision projector to fetch with the weights (`F16`, `BF16`, a
    /// file name); absent: a text-only profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mmproj: Option<String>,
    /// Directory under models/ for the weights; derived when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `dense` or `moe`, as the manifest says (checked against the header).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    /// Layout pieces for the derived path: `<family>/<Dense|MoE>/<size>/<quant>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Display name for the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The machine (`{{ workspace.hardware }}`); read from the workspace
    /// when absent. Passing it makes a hardware change rerun the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Hardware>,
    /// MiB llama.cpp's `--fit` keeps free per GPU (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_target_mib: Option<u32>,
    /// RAM that must stay free, GiB (default: 10% of usable RAM, ≥ 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_host_headroom_gib: Option<f64>,
    /// The manifest's model-card facts (`{{ manifest.card }}`), checked
    /// against the header in the report.
    #[serde(default)]
    pub card: Map<String, Value>,
    /// Where the markdown report goes (default `reports/<model>-evaluate.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

fn default_revision() -> String {
    "main".into()
}

/// A quant not chosen, and why.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Rejected {
    pub quant: String,
    pub reason: String,
}

/// One device's share at the production context (bytes).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct DeviceSummary {
    pub name: String,
    pub usable_bytes: u64,
    pub layers: u32,
    pub weights_bytes: u64,
    pub kv_bytes: u64,
    pub total_bytes: u64,
    pub headroom_bytes: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EvaluateOutputs {
    pub architecture: String,
    /// Recurrent (DeltaNet/SSM) layers present: `--no-context-shift`.
    pub recurrent: bool,
    pub moe: bool,
    /// Multi-token-prediction blocks after the trunk.
    #[serde(default)]
    pub mtp_layers: u32,
    /// Tokens a round to draft with them (`--spec-draft-n-max`; 0: no MTP).
    #[serde(default)]
    pub mtp_draft: u32,
    /// llama-server's prompt cache for the production context.
    #[serde(default)]
    pub cache_ram: Option<evaluate::cache_ram::CacheRam>,
    /// The repo's vision projectors (`mmproj-*.gguf`).
    #[serde(default)]
    pub projectors: Vec<evaluate::quant::Projector>,
    /// The chosen projector, relative to models/ (`--mmproj`); it is also
    /// in `files`, so the download step fetches it.
    #[serde(default)]
    pub mmproj_file: Option<String>,
    pub quant: String,
    /// Repo paths of the chosen quant's files, in shard order.
    pub files: Vec<String>,
    pub total_bytes: u64,
    /// Directory under models/ for the weights.
    pub path: String,
    /// First shard, relative to models/ (`MODEL=` in models.conf).
    pub model_file: String,
    pub strategy: Strategy,
    /// The strategy in words, as the report prints it.
    pub strategy_text: String,
    pub context: u64,
    pub trained_context: u64,
    pub fit_target_mib: u32,
    /// Strategy A: `-ts`, layers per GPU.
    pub tensor_split: Option<String>,
    /// Decode bandwidth bound at an empty context (tokens/s).
    pub estimated_tps: Option<f64>,
    /// The same with the whole production context in the cache.
    pub estimated_tps_full_context: Option<f64>,
    /// The GGUF's `general.sampling.*` without the prefix.
    pub sampling: Map<String, Value>,
    pub rejected: Vec<Rejected>,
    pub devices: Vec<DeviceSummary>,
    /// Header bytes fetched over the network.
    pub header_bytes_fetched: u64,
    /// Model-card figures the header contradicts, in words.
    pub card_mismatches: Vec<String>,
    /// Workspace path of the markdown report.
    pub report_path: String,
    pub report: String,
}

fn report_rel(params: &EvaluateParams, ctx: &TaskContext) -> String {
    params
        .report
        .clone()
        .unwrap_or_else(|| format!("reports/{}-evaluate.md", ctx.model))
}

/// The machine from the parameter or the workspace's `hardware:`.
fn machine(params: &EvaluateParams, ctx: &TaskContext) -> Result<Machine, TaskError> {
    let hw = match &params.hardware {
        Some(h) => h.clone(),
        None => ctx
            .template_context
            .get("workspace")
            .and_then(|w| w.get("hardware"))
            .map(|h| serde_json::from_value::<Hardware>(h.clone()))
            .transpose()
            .map_err(|e| TaskError::Params(format!("onboard.yaml `hardware:`: {e}")))?
            .unwrap_or_default(),
    };
    let margin = u64::from(params.fit_target_mib.unwrap_or(1024)) * MIB;
    let mut m = Machine::from_hardware(&hw, margin).map_err(TaskError::Params)?;
    if let Some(g) = params.min_host_headroom_gib {
        m.min_host_headroom = (g * (1u64 << 30) as f64) as u64;
    }
    Ok(m)
}

/// `<family>/<Dense|MoE>/<size>/<quant>`, or the manifest's path.
fn layout_path(params: &EvaluateParams, moe: bool, quant: &str) -> String {
    if let Some(p) = &params.path {
        return p.trim_end_matches('/').to_string();
    }
    let kind = if moe { "MoE" } else { "Dense" };
    let mut parts = Vec::new();
    if let Some(f) = &params.family {
        parts.push(f.clone());
    }
    parts.push(kind.to_string());
    if let Some(s) = &params.size {
        parts.push(s.clone());
    }
    parts.push(quant.to_string());
    parts.join("/")
}

impl Task for Evaluate {
    const KIND: &'static str = "evaluate";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Choose quant, strategy and context from GGUF headers (range requests) and the workspace's hardware";
    type Params = EvaluateParams;
    type Outputs = EvaluateOutputs;

    fn output_files(
        &self,
        params: &EvaluateParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        Ok(vec![ctx.path(&report_rel(params, ctx))?])
    }

    async fn run(
        &self,
        params: EvaluateParams,
        ctx: TaskContext,
    ) -> Result<EvaluateOutputs, TaskError> {
        let machine = machine(&params, &ctx)?;
        let models_dir = ctx.path(&ctx.paths().models)?;
        let local_dir = params.path.as_ref().map(|p| models_dir.join(p));
        let req = Request {
            repo: params.repo.clone(),
            revision: params.revision.clone(),
            quant: params.quant.clone(),
            alternatives: params.alternatives.clone(),
            files: params.files.clone(),
            mmproj: params.mmproj.clone(),
            local_dir: local_dir.clone(),
        };
        ctx.log(&format!(
            "reading GGUF headers of {} @ {}",
            req.repo, req.revision
        ));
        let m2 = machine.clone();
        let eval = tokio::task::spawn_blocking(move || {
            let client = HubClient::from_env();
            let source = HubSource {
                client: &client,
                local_dir,
            };
            evaluate::evaluate(&source, &req, &m2)
        })
        .await
        .map_err(|e| TaskError::failed(format!("evaluate panicked: {e}")))?
        .map_err(|e| {
            let retryable = matches!(
                e,
                evaluate::EvaluateError::Listing { .. } | evaluate::EvaluateError::Range { .. }
            );
            TaskError::Failed {
                message: e.to_string(),
                retryable,
            }
        })?;
        let moe = eval.is_moe();
        if let Some(t) = &params.model_type {
            let said_moe = t.eq_ignore_ascii_case("moe");
            if said_moe != moe {
                ctx.log(&format!(
                    "warning: the manifest says `type: {t}` but the header says {}",
                    if moe { "MoE (routed experts)" } else { "dense" }
                ));
            }
        }
        let title = params.name.clone().unwrap_or_else(|| ctx.model.clone());
        let mut text = report::markdown(&eval, &title);
        let (card_section, card_mismatches) = report::card_check(&eval.facts, &params.card);
        text.push_str(&card_section);
        for m in &card_mismatches {
            ctx.log(&format!("warning: {m}"));
        }
        let rel = report_rel(&params, &ctx);
        let report_path = ctx.path(&rel)?;
        if let Some(dir) = report_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| TaskError::io(dir, e))?;
        }
        crate::atomic::write(&report_path, text.as_bytes())
            .map_err(|e| TaskError::io(&report_path, e))?;
        let chosen = eval.chosen();
        let Some((kind, placement)) = eval.production() else {
            return Err(TaskError::Failed {
                message: format!(
                    "no placement for {} on this machine; see {rel}",
                    chosen.candidate.quant
                ),
                retryable: false,
            });
        };
        let quant = chosen.candidate.quant.clone();
        let path = layout_path(&params, moe, &quant);
        // The projector goes beside the weights (the download step's `dest`).
        let mmproj_file = eval.projector.as_ref().map(|p| {
            let base = p.file.rsplit('/').next().unwrap_or(&p.file);
            format!("{path}/{base}")
        });
        let first = chosen.candidate.files.first().cloned().unwrap_or_default();
        let base = first.rsplit('/').next().unwrap_or(&first).to_string();
        let outputs = EvaluateOutputs {
            architecture: eval.facts.architecture.clone(),
            recurrent: eval.recurrent(),
            moe,
            mtp_layers: eval.facts.mtp_layers,
            mtp_draft: eval.mtp_draft(),
            cache_ram: eval.cache_ram(),
            projectors: eval.projectors.clone(),
            mmproj_file,
            quant: quant.clone(),
            files: chosen
                .candidate
                .files
                .iter()
                .chain(eval.projector.iter().map(|p| &p.file))
                .cloned()
                .collect(),
            total_bytes: chosen.candidate.total_size()
                + eval.projector.as_ref().map_or(0, |p| p.size),
            model_file: format!("{path}/{base}"),
            path,
            strategy: kind.profile_strategy(moe),
            strategy_text: kind.describe(moe, placement.gpus_used()),
            context: placement.n_ctx,
            trained_context: eval.trained_context,
            fit_target_mib: params.fit_target_mib.unwrap_or(1024),
            tensor_split: (*kind == evaluate::Kind::AllGpu).then(|| placement.tensor_split()),
            estimated_tps: placement.tokens_per_second(false).map(round1),
            estimated_tps_full_context: placement.tokens_per_second(true).map(round1),
            sampling: eval.sampling.clone(),
            rejected: eval
                .quants
                .iter()
                .filter_map(|q| {
                    q.rejected.as_ref().map(|r| Rejected {
                        quant: q.candidate.quant.clone(),
                        reason: r.clone(),
                    })
                })
                .collect(),
            devices: placement
                .gpus
                .iter()
                .chain(std::iter::once(&placement.host))
                .map(|d| DeviceSummary {
                    name: d.name.clone(),
                    usable_bytes: d.budget,
                    layers: d.layers.len() as u32,
                    weights_bytes: d.weights,
                    kv_bytes: d.kv,
                    total_bytes: d.total,
                    headroom_bytes: d.headroom,
                })
                .collect(),
            header_bytes_fetched: eval.bytes_fetched,
            card_mismatches,
            report_path: rel,
            report: text,
        };
        ctx.log(&format!(
            "{quant}: {} at {} tokens",
            outputs.strategy_text, outputs.context
        ));
        Ok(outputs)
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
