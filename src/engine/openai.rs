//! An [`Engine`] over an OpenAI-compatible server (llama-server, llama-swap,
//! vLLM, …): `POST {base}/v1/chat/completions`, non-streaming.
//!
//! The benchmark uses it against a bench profile that is already serving;
//! the llama-server engine that starts one can hand its URL here.

use super::{ChatRequest, ChatResponse, DraftStats, Engine, EngineError};
use serde_json::{json, Value};
use std::time::Duration;

pub struct OpenAiEngine {
    base: String,
    /// How long a server answering 503 (llama-server: "Loading model") is
    /// waited for before the request fails.
    loading_wait: Duration,
    model: Option<String>,
    name: String,
    agent: ureq::Agent,
}

impl OpenAiEngine {
    /// `base`: e.g. `http://127.0.0.1:8080` (a trailing `/v1` is accepted).
    /// `model` goes in the request's `model` field (llama-server ignores it;
    /// llama-swap routes by it). `timeout` bounds one whole request.
    pub fn new(base: &str, model: Option<String>, timeout: Duration) -> OpenAiEngine {
        let trimmed = base.trim_end_matches('/');
        let base = trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_string();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(format!("onboard/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        OpenAiEngine {
            loading_wait: Duration::from_secs(600),
            name: "openai-compatible".into(),
            base,
            model,
            agent,
        }
    }

    /// Names the engine in results (e.g. `llama-server`).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Sets how long a loading server (HTTP 503) is waited for.
    pub fn loading_wait(mut self, wait: Duration) -> Self {
        self.loading_wait = wait;
        self
    }

    pub fn endpoint(&self) -> String {
        format!("{}/v1/chat/completions", self.base)
    }
}

impl Engine for OpenAiEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, EngineError> {
        let mut body = json!({
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": false,
        });
        if request.temperature == 0.0 {
            // Greedy on servers that sample anyway at temperature 0.
            body["top_k"] = json!(1);
        }
        if let Some(m) = &self.model {
            body["model"] = json!(m);
        }
        let url = self.endpoint();
        let body = body.to_string();
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(250);
        let (status, text) = loop {
            let mut response = self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(&body)
                .map_err(|e| {
                    EngineError::Request(format!(
                        "{url}: {e}; is the server running (onboard launch <bench profile>)?"
                    ))
                })?;
            let status = response.status().as_u16();
            let text = response
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string()
                .map_err(|e| EngineError::Request(format!("{url}: reading the reply: {e}")))?;
            // 503: the server is still loading the model; wait for it.
            if status == 503 && started.elapsed() + pause < self.loading_wait {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
            break (status, text);
        };
        if status != 200 {
            let short: String = text.chars().take(500).collect();
            return Err(EngineError::Request(format!(
                "{url}: HTTP {status}: {short}"
            )));
        }
        parse_reply(&text).map_err(|e| EngineError::Request(format!("{url}: {e}")))
    }
}

/// The reply of `/v1/chat/completions`; llama-server's `timings` give the
/// speeds when present. `reasoning_content` (a server that splits thinking
/// off) is put back in front as `<think>…</think>` so the reply is whole.
pub fn parse_reply(text: &str) -> Result<ChatResponse, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| "no choices in the reply".to_string())?;
    let message = choice.get("message");
    let content = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let reasoning = message
        .and_then(|m| m.get("reasoning_content"))
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty());
    let text = match reasoning {
        Some(r) => format!("<think>{r}</think>{content}"),
        None => content.to_string(),
    };
    let usage = v.get("usage");
    let count = |k: &str| {
        usage
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let timing = |k: &str| {
        v.get("timings")
            .and_then(|t| t.get(k))
            .and_then(Value::as_f64)
    };
    Ok(ChatResponse {
        text,
        prompt_tokens: count("prompt_tokens"),
        completion_tokens: count("completion_tokens"),
        prompt_tps: timing("prompt_per_second"),
        generation_tps: timing("predicted_per_second"),
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        draft: v.get("timings").and_then(DraftStats::from_timings),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_llama_server_replies() {
        let r = parse_reply(r#"{"choices":[{"finish_reason":"stop","message":{"role":"assistant","content":"hi","reasoning_content":"hmm"}}],"usage":{"prompt_tokens":5,"completion_tokens":2},"timings":{"prompt_per_second":100.5,"predicted_per_second":20.0}}"#).unwrap();
        assert_eq!(r.text, "<think>hmm</think>hi");
        assert_eq!((r.prompt_tokens, r.completion_tokens), (5, 2));
        assert_eq!(r.generation_tps, Some(20.0));
        assert_eq!(r.finish_reason.as_deref(), Some("stop"));
        assert!(parse_reply("{}").is_err());
    }
}
