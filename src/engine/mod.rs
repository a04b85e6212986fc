//! Inference engines: how a profile becomes a running model that answers.
//!
//! Every engine (embedded mistral.rs or llama.cpp in a child process, a
//! llama-server over its OpenAI-compatible API) answers chat requests through
//! [`Engine`]; the context test and the benchmark use only this trait.

pub mod chat_template;
pub mod embedded;
pub mod export;
pub mod launch;
pub mod llama_cpp;
pub mod llama_server;
pub mod openai;
pub mod words;

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

/// A loaded model that answers chat requests. Blocking: callers in async
/// code use `spawn_blocking`.
pub trait Engine: Send + Sync {
    /// Names the engine in reports and `SPEED=` (e.g. `llama-server`, `mistralrs`).
    fn name(&self) -> &str;
    fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, EngineError>;
}
