//! The worker protocol: JSON lines. The parent writes [`WorkerRequest`]s
//! to the child's stdin; the child answers each with one line
//! `@@onboard <json>` on stdout (other stdout lines are ignored, stderr is
//! kept for error messages).

use crate::engine::{ChatRequest, ChatResponse};
use crate::gguf::memory::Buffers;
use serde::{Deserialize, Serialize};
use std::io::Write;

pub const LINE_PREFIX: &str = "@@onboard ";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum WorkerRequest {
    Chat(ChatRequest),
    /// Generate exactly `max_tokens` (end-of-generation ignored) after a
    /// prompt filled to about `prompt_tokens` tokens.
    Fill {
        prompt_tokens: u64,
        max_tokens: u32,
        /// Whether to draft with the model's MTP block, where the worker
        /// loaded one; `None`: as loaded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        speculative: Option<bool>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    Ready {
        load_ms: u64,
        /// The longest context the engine can run this model at (mistral.rs
        /// fixes it to the GGUF's trained context).
        max_sequence_length: Option<u64>,
        /// The context the engine allocated (llama.cpp), if it chose one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<u64>,
        /// The buffers the engine reported allocating (llama.cpp).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allocated: Option<Buffers>,
        /// How `SPEED=` names the engine and its backend.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
        /// Tokens the MTP drafter proposes per round, when the worker
        /// loaded the model's MTP block (llama.cpp).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtp_draft: Option<u32>,
    },
    Reply(ChatResponse),
    Error {
        message: String,
    },
}

/// The worker side of the protocol: one `@@onboard <json>` line, flushed.
pub fn emit(event: &WorkerEvent) {
    let line = serde_json::to_string(event)
        .unwrap_or_else(|_| "{\"event\":\"error\",\"message\":\"encode\"}".into());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{LINE_PREFIX}{line}");
    let _ = out.flush();
}
