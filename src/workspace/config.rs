//! `onboard.yaml` at the workspace root.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The workspace configuration (`onboard.yaml`): the machine models are
/// onboarded onto, where things live, and defaults for runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceConfig {
    /// The machine's memory and bandwidth, used to choose a strategy.
    #[serde(default)]
    pub hardware: Hardware,
    #[serde(default)]
    pub paths: Paths,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub engines: Engines,
    /// How much of each resource this machine has: a step holding
    /// `resources: {gpu: 1}` waits while other steps (of any `onboard`
    /// process on the machine) hold all of it. Default `{gpu: 1}`: one
    /// model loaded at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<BTreeMap<String, u32>>,
    /// Free-form values, available to templates as `workspace.vars`.
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
}

/// Inference engines on this machine.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Engines {
    /// The llama-server binary (a path, or a name looked up on PATH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llama_server: Option<String>,
    /// The order `engine: auto` tries engines in (and `engine: embedded`, of
    /// the two embedded ones); default: mistralrs, llama-cpp, llama-server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Vec<EngineKind>>,
}

/// An engine a model can run in.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// mistral.rs 0.8.1, embedded (child process).
    Mistralrs,
    /// llama.cpp in-process (child process), through its C API.
    LlamaCpp,
    /// An external llama-server.
    LlamaServer,
}

impl EngineKind {
    pub const DEFAULT_ORDER: [EngineKind; 3] = [
        EngineKind::Mistralrs,
        EngineKind::LlamaCpp,
        EngineKind::LlamaServer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Mistralrs => "mistralrs",
            EngineKind::LlamaCpp => "llama-cpp",
            EngineKind::LlamaServer => "llama-server",
        }
    }

    pub fn is_embedded(self) -> bool {
        self != EngineKind::LlamaServer
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    #[serde(default)]
    pub gpus: Vec<Gpu>,
    /// Installed system RAM in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_gib: Option<f64>,
    /// RAM kept for the OS and other programs, in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_reserve_gib: Option<f64>,
    /// CPU memory bandwidth in GB/s (for decode-speed estimates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_bandwidth_gbs: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    pub name: String,
    /// VRAM in GiB.
    pub vram_gib: f64,
    /// Memory bandwidth in GB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_gbs: Option<f64>,
}

/// Where the workspace keeps things, relative to its root.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    /// Weights (`<Family>/<Dense|MoE>/<size>/<quant>/`) and manifests (`<id>.yaml`).
    #[serde(default = "default_models")]
    pub models: String,
    #[serde(default = "default_workflows")]
    pub workflows: String,
    #[serde(default = "default_docs")]
    pub docs: String,
    #[serde(default = "default_models_conf")]
    pub models_conf: String,
    /// Run state, locks and records.
    #[serde(default = "default_state")]
    pub state: String,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            models: default_models(),
            workflows: default_workflows(),
            docs: default_docs(),
            models_conf: default_models_conf(),
            state: default_state(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// The workflow a model runs when its manifest names none.
    #[serde(default = "default_workflow")]
    pub workflow: String,
    /// How many independent steps may run at once.
    #[serde(default = "default_jobs")]
    #[schemars(range(min = 1))]
    pub jobs: u32,
    /// A downloaded file the Hub replaced under the same name (see
    /// `onboard outdated`), once its new bytes are verified: `delete`, or
    /// `keep` it beside them as `<name>.replaced-<sha256 prefix>` (for a
    /// workspace that compares first); `onboard retire --advise` lists
    /// what is kept until it is removed by hand.
    #[serde(default)]
    pub replaced_files: ReplacedFiles,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            workflow: default_workflow(),
            jobs: default_jobs(),
            replaced_files: ReplacedFiles::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReplacedFiles {
    #[default]
    Delete,
    Keep,
}

fn default_models() -> String {
    "models".into()
}
fn default_workflows() -> String {
    "workflows".into()
}
fn default_docs() -> String {
    "documentation".into()
}
fn default_models_conf() -> String {
    "models.conf".into()
}
fn default_state() -> String {
    ".onboard".into()
}
fn default_workflow() -> String {
    "add-model".into()
}
fn default_jobs() -> u32 {
    4
}
