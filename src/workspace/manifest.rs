//! Model manifests (`models/<id>.yaml`): *what* to onboard. The workflow
//! says *how*.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One model: where it comes from, how it is laid out in the workspace, and
/// the facts curated from its model card.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The id used on the command line (`onboard <id>`); equals the file name.
    pub id: String,
    /// Display name, e.g. `Qwen3.5-35B-A3B`.
    pub name: String,
    /// Family directory in the layout, e.g. `Qwen3.5`.
    pub family: String,
    #[serde(rename = "type")]
    pub model_type: ModelType,
    /// Size directory in the layout, e.g. `35B`.
    pub size: String,
    pub hub: HubSource,
    /// Directory under `models/` where the weights go; derived from family,
    /// type, size and quant when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The production profile id in models.conf (e.g. `qwen35-35b`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The workflow to run (defaults to the workspace's `defaults.workflow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default)]
    pub status: ModelStatus,
    /// Whether the model emits reasoning (thinking) before answering.
    #[serde(default)]
    pub thinking: bool,
    /// Manifest ids of the models this one may replace.
    #[serde(default)]
    pub replaces: Vec<String>,
    /// Facts from the model card (free-form).
    #[serde(default)]
    pub card: BTreeMap<String, Value>,
    /// Recommended sampling settings from the model card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samplers: Option<SamplerCard>,
    /// Published benchmark scores from the model card, by benchmark name.
    #[serde(default)]
    pub benchmarks: BTreeMap<String, Option<f64>>,
    /// Free-form values available to templates as `manifest.vars`.
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    Dense,
    Moe,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelStatus {
    /// Evaluated, not yet onboarded.
    #[default]
    Candidate,
    /// On the machine with a production profile.
    Installed,
    Retired,
}

/// Where the weights come from on the Hugging Face Hub.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HubSource {
    /// `owner/name`.
    pub repo: String,
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Preferred quant (e.g. `UD-Q6_K_XL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant: Option<String>,
    /// Fallback quants, in order of preference.
    #[serde(default)]
    pub alternatives: Vec<String>,
    /// Exact files to fetch (otherwise chosen from the quant).
    #[serde(default)]
    pub files: Vec<String>,
    /// A vision projector to fetch too (`F16`, `BF16`, or its file name):
    /// the profile then loads it with `--mmproj`. Absent: text only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mmproj: Option<String>,
}

/// Sampling settings a model card recommends, per mode.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SamplerCard {
    /// Where the values come from (the model card, a URL).
    pub source: String,
    /// The mode the production profile uses (a key of `modes`).
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_mode: Option<String>,
    /// Settings per mode, e.g. `thinking-coding`, `non-thinking-general`.
    pub modes: BTreeMap<String, SamplerSettings>,
}

/// The sampler values llama-server takes as flags.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SamplerSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
}

fn default_revision() -> String {
    "main".into()
}
