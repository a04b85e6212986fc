//! Inference engines: how a profile becomes a running model that answers.
//!
//! Every engine (embedded mistral.rs or llama.cpp in a child process, a
//! llama-server over its OpenAI-compatible API) answers through [`Engine`]:
//! chat, a filled context, what it allocated, what it measured. The context
//! test and the benchmark use only this trait; [`choice`] picks the engine
//! for a model and [`running`] starts it.
//!
//! Layers inside: [`worker`] (the child-process protocol and its parent
//! side) under [`mistralrs`] and [`llama_cpp`], which never name each
//! other; [`child`], [`choice`], [`running`] and [`measure`] above them all.

pub mod chat_template;
pub mod child;
pub mod choice;
pub mod export;
pub mod fill;
pub mod launch;
pub mod llama_cpp;
pub mod llama_server;
pub mod measure;
pub mod mistralrs;
pub mod openai;
pub mod proc_stats;
pub mod running;
pub mod words;
pub mod worker;

use crate::gguf::memory::Buffers;
use serde::{Deserialize, Serialize};

/// Environment variable: a file every engine process's start and end is
/// appended to, one JSON line each (`{"event":"start","engine":…,"pid":…,
/// "unix_ns":…}`), from every `onboard` process that names it — the record
/// of which models were loaded when on a machine (the tests check from it
/// that two runs never load models at the same time).
pub const JOURNAL_ENV: &str = "ONBOARD_ENGINE_JOURNAL";

/// Appends `event` (`start` or `end`) of engine process `pid` to the
/// journal, when there is one. One `write` of one short line on a file
/// opened for appending, so lines of several processes never interleave.
pub(crate) fn journal(event: &str, engine: &str, pid: u32) {
    use std::io::Write;
    let Some(path) = std::env::var_os(JOURNAL_ENV).filter(|p| !p.is_empty()) else {
        return;
    };
    let unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let line = format!(
        "{}\n",
        serde_json::json!({"event": event, "engine": engine, "pid": pid, "unix_ns": unix_ns})
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "system".into(),
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "user".into(),
            content: content.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub max_tokens: u32,
    /// 0 means greedy decoding.
    pub temperature: f32,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatResponse {
    pub text: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt processing speed the engine reported (tokens/s).
    pub prompt_tps: Option<f64>,
    /// Generation speed the engine reported (tokens/s).
    pub generation_tps: Option<f64>,
    /// `stop`, `length`, …
    pub finish_reason: Option<String>,
    /// Speculative decoding's tally, when the engine drafted tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<DraftStats>,
}

/// How many drafted tokens the model kept: the figure that decides whether
/// speculative decoding pays.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DraftStats {
    /// Tokens the drafter proposed.
    pub drafted: u64,
    /// Of those, tokens the model confirmed.
    pub accepted: u64,
}

impl DraftStats {
    /// Accepted over drafted (llama-server's "draft acceptance rate").
    pub fn acceptance(&self) -> Option<f64> {
        (self.drafted > 0).then(|| self.accepted as f64 / self.drafted as f64)
    }

    /// llama-server's tally in a reply's `timings` (`draft_n`,
    /// `draft_n_accepted`), present only when it drafted.
    pub fn from_timings(timings: &serde_json::Value) -> Option<DraftStats> {
        Some(DraftStats {
            drafted: timings.get("draft_n")?.as_u64()?,
            accepted: timings.get("draft_n_accepted")?.as_u64()?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine cannot serve this model at all (architecture, tensor types).
    #[error("{0}")]
    Unsupported(String),
    /// The engine process died or was killed (OOM, signal).
    #[error("{0}")]
    Crashed(String),
    #[error("{0}")]
    Request(String),
}

impl EngineError {
    /// Only a failed request may pass on another try; an engine that
    /// cannot run the model or died will do so again.
    pub fn retryable(&self) -> bool {
        matches!(self, EngineError::Request(_))
    }
}

/// A question with a known answer, for checking that a model really generates.
pub fn capital_of_france() -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::system("You are a helpful assistant."),
            ChatMessage::user("What is the capital of France?"),
        ],
        max_tokens: 32,
        temperature: 0.0,
    }
}

/// A measurement request: the [`fill`] passage to about `prompt_tokens`
/// tokens, then `max_tokens` generated (exactly, where the engine can ignore
/// the end of generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillRequest {
    pub prompt_tokens: u64,
    pub max_tokens: u32,
    /// Draft with the model's MTP block or not, where the engine loaded
    /// one; `None`: as loaded.
    pub speculative: Option<bool>,
}

impl FillRequest {
    pub fn new(prompt_tokens: u64, max_tokens: u32) -> FillRequest {
        FillRequest {
            prompt_tokens,
            max_tokens,
            speculative: None,
        }
    }
}

/// What a loaded engine says about itself; `None` where it cannot tell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineFacts {
    /// How `SPEED=` names the engine and its backend (`llama.cpp (embedded, CPU)`).
    pub label: Option<String>,
    /// Where it runs: `cpu`, `gpu` or `llama-server`.
    pub device: Option<String>,
    /// Tokens a round its MTP drafter proposes, when it loaded one.
    pub mtp_draft: Option<u32>,
}

/// What a loaded engine holds in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineMemory {
    /// The buffers it reported allocating (the embedded llama.cpp).
    pub allocated: Option<Buffers>,
    /// Its process's peak resident memory so far.
    pub peak_rss_bytes: Option<u64>,
}

/// What an engine measured or noticed beyond a reply's own timings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnginePerf {
    /// How long loading the model took.
    pub load_ms: Option<u64>,
    /// llama.cpp's `graph splits` (more than 1-2 means CPU/GPU hops).
    pub graph_splits: Option<u64>,
    /// The first log line that reported an allocation failure.
    pub out_of_memory: Option<String>,
}

/// A loaded model that answers chat requests. Blocking: callers in async
/// code use `spawn_blocking`. Everything past `chat` has a default for
/// engines that cannot tell, so callers never ask which engine it is.
pub trait Engine: Send + Sync {
    /// Names the engine in reports and `SPEED=` (e.g. `llama-server`, `mistralrs`).
    fn name(&self) -> &str;
    fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, EngineError>;

    /// Fills the context with the shared passage and generates.
    fn fill(&self, request: &FillRequest) -> Result<ChatResponse, EngineError> {
        let _ = request;
        Err(EngineError::Unsupported(format!(
            "{} cannot fill a context",
            self.name()
        )))
    }

    /// The context a fill can use of `wanted` tokens, and why it is smaller
    /// when it is.
    fn fill_context(&self, wanted: u64) -> (u64, Option<String>) {
        (wanted, None)
    }

    fn facts(&self) -> EngineFacts {
        EngineFacts::default()
    }

    fn memory(&self) -> EngineMemory {
        EngineMemory::default()
    }

    fn perf(&self) -> EnginePerf {
        EnginePerf::default()
    }
}
