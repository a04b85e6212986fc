//! A chosen engine started on a profile's model, and one started only when
//! it is first asked.

use super::choice::{ChoiceError, Chosen, ProfileModel};
use super::launch::{self, Listen};
use super::llama_server::LlamaServer;
use super::worker::kind::WorkerEngine;
use super::worker::supervisor::{EmbeddedEngine, WorkerOptions};
use super::{
    mistralrs, ChatRequest, ChatResponse, Engine, EngineError, EngineFacts, EngineMemory,
    EnginePerf, FillRequest,
};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

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
    ) -> Result<Running, ChoiceError> {
        match chosen {
            Chosen::Embedded(engine) => {
                let mut opts = WorkerOptions::new(*engine, &model.gguf)?;
                opts.cpu = cpu;
                opts.load_timeout = limits.load;
                opts.request_timeout = limits.request;
                opts.threads = threads;
                opts.context = context.or_else(|| model.context());
                if *engine == WorkerEngine::LlamaCpp {
                    opts.mtp_draft = model.mtp_draft();
                }
                Ok(Running::Embedded(EmbeddedEngine::start(&opts)?))
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
                        .map_err(ChoiceError::Params)?;
                Ok(Running::LlamaServer(LlamaServer::start(
                    &launch,
                    limits.load,
                    limits.request,
                )?))
            }
        }
    }

    fn engine(&self) -> &dyn Engine {
        match self {
            Running::Embedded(e) => e,
            Running::LlamaServer(s) => s,
        }
    }
}

impl Engine for Running {
    fn name(&self) -> &str {
        self.engine().name()
    }

    fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, EngineError> {
        self.engine().chat(request)
    }

    fn fill(&self, request: &FillRequest) -> Result<ChatResponse, EngineError> {
        self.engine().fill(request)
    }

    /// mistral.rs runs at the GGUF's context, whatever it was given.
    fn fill_context(&self, wanted: u64) -> (u64, Option<String>) {
        match self {
            Running::Embedded(e) if e.kind() == WorkerEngine::MistralRs => {
                mistralrs::fill_context(e.max_sequence_length, e.cpu(), wanted)
            }
            _ => self.engine().fill_context(wanted),
        }
    }

    fn facts(&self) -> EngineFacts {
        self.engine().facts()
    }

    fn memory(&self) -> EngineMemory {
        self.engine().memory()
    }

    fn perf(&self) -> EnginePerf {
        self.engine().perf()
    }
}

/// An engine started by its first request, on the thread that makes it (the
/// one that must also drop it): a benchmark whose tasks are all recorded
/// already never loads the model. A failed start is kept as the error it
/// was.
pub struct StartedOnFirstUse<F, E> {
    name: &'static str,
    start: F,
    engine: OnceLock<Result<Running, String>>,
    start_error: Mutex<Option<E>>,
}

impl<F, E> StartedOnFirstUse<F, E>
where
    F: Fn() -> Result<Running, E> + Send + Sync,
    E: std::fmt::Display + Send,
{
    pub fn new(name: &'static str, start: F) -> Self {
        StartedOnFirstUse {
            name,
            start,
            engine: OnceLock::new(),
            start_error: Mutex::new(None),
        }
    }

    /// Why the engine could not start, if it was asked to and could not.
    pub fn into_start_error(self) -> Option<E> {
        self.start_error
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
    }
}

impl<F, E> Engine for StartedOnFirstUse<F, E>
where
    F: Fn() -> Result<Running, E> + Send + Sync,
    E: std::fmt::Display + Send,
{
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
