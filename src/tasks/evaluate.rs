//! `uses: evaluate` — phase 1: choose the quant, strategy and context from
//! GGUF headers read over HTTP range requests, before any download.

use super::{Task, TaskContext, TaskError};
use crate::evaluate::decision::{self, Layout};
pub use crate::evaluate::decision::{DeviceSummary, EvaluateOutputs, Rejected};
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
    #[serde(default = "crate::hub::default_revision")]
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

/// A quant not chosen, and why.
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
        None => ctx.run_settings()?.config.hardware.clone(),
    };
    let margin = u64::from(params.fit_target_mib.unwrap_or(1024)) * MIB;
    let mut m = Machine::from_hardware(&hw, margin).map_err(TaskError::Params)?;
    if let Some(g) = params.min_host_headroom_gib {
        m.min_host_headroom = (g * (1u64 << 30) as f64) as u64;
    }
    Ok(m)
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
        .map_err(|e| TaskError::Failed {
            retryable: e.is_transient(),
            message: e.to_string(),
        })?;
        if let Some(warning) = params
            .model_type
            .as_deref()
            .and_then(|t| eval.type_mismatch(t))
        {
            ctx.log(&format!("warning: {warning}"));
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
        let quant = eval.chosen().candidate.quant.clone();
        let outputs = decision::outputs(
            &eval,
            Layout {
                path: params.path.as_deref(),
                family: params.family.as_deref(),
                size: params.size.as_deref(),
            },
            params.fit_target_mib.unwrap_or(1024),
            card_mismatches,
            rel.clone(),
            text,
        )
        .ok_or_else(|| TaskError::Failed {
            message: format!("no placement for {quant} on this machine; see {rel}"),
            retryable: false,
        })?;
        ctx.log(&format!(
            "{}: {} at {} tokens",
            outputs.quant, outputs.strategy_text, outputs.context
        ));
        Ok(outputs)
    }
}
