//! What evaluate decided, as the workflow's later steps read it: the quant
//! and its files, where they go, the strategy and context, the estimates.

use super::strategy::Strategy;
use super::{Evaluation, Kind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    pub cache_ram: Option<super::cache_ram::CacheRam>,
    /// The repo's vision projectors (`mmproj-*.gguf`).
    #[serde(default)]
    pub projectors: Vec<super::quant::Projector>,
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
    /// The strategy in words, as the report gives it.
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

/// Where a model's files go under models/: the manifest's `path`, or
/// `family`/`Dense|MoE`/`size`/quant.
pub struct Layout<'a> {
    pub path: Option<&'a str>,
    pub family: Option<&'a str>,
    pub size: Option<&'a str>,
}

/// `<family>/<Dense|MoE>/<size>/<quant>`, or the manifest's path.
impl Layout<'_> {
    pub fn path(&self, moe: bool, quant: &str) -> String {
        if let Some(p) = self.path {
            return p.trim_end_matches('/').to_string();
        }
        let kind = if moe { "MoE" } else { "Dense" };
        let mut parts = Vec::new();
        if let Some(f) = self.family {
            parts.push(f);
        }
        parts.push(kind);
        if let Some(s) = self.size {
            parts.push(s);
        }
        parts.push(quant);
        parts.join("/")
    }
}

/// The decision of `eval`; `None` when no quant has a placement on this
/// machine.
pub fn outputs(
    eval: &Evaluation,
    layout: Layout<'_>,
    fit_target_mib: u32,
    card_mismatches: Vec<String>,
    report_path: String,
    report: String,
) -> Option<EvaluateOutputs> {
    let moe = eval.is_moe();
    let chosen = eval.chosen();
    let (kind, placement) = eval.production()?;
    let quant = chosen.candidate.quant.clone();
    let path = layout.path(moe, &quant);
    // The projector goes beside the weights (the download step's `dest`).
    let mmproj_file = eval.projector.as_ref().map(|p| {
        let base = p.file.rsplit('/').next().unwrap_or(&p.file);
        format!("{path}/{base}")
    });
    let first = chosen.candidate.files.first().cloned().unwrap_or_default();
    let base = first.rsplit('/').next().unwrap_or(&first).to_string();
    Some(EvaluateOutputs {
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
        total_bytes: chosen.candidate.total_size() + eval.projector.as_ref().map_or(0, |p| p.size),
        model_file: format!("{path}/{base}"),
        path,
        strategy: kind.profile_strategy(moe),
        strategy_text: kind.describe(moe, placement.gpus_used()),
        context: placement.n_ctx,
        trained_context: eval.trained_context,
        fit_target_mib,
        tensor_split: (*kind == Kind::AllGpu).then(|| placement.tensor_split()),
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
        report_path,
        report,
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
