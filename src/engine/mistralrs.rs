//! mistral.rs 0.8.1, the first embedded engine: what it can load (decided
//! before loading, from a list), and its child side of the worker protocol.

use super::worker::kind::WorkerEngine;

/// GGUF architectures mistral.rs 0.8.1 can build; any other
/// value panics inside its loader.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "llama",
    "mistral3",
    "phi2",
    "phi3",
    "starcoder2",
    "qwen2",
    "qwen3",
    "qwen3moe",
];

/// The mistral.rs version this build embeds, for reports.
pub const VERSION: &str = WorkerEngine::MistralRs.version();

/// How results and `SPEED_EMBEDDED` name this engine.
pub const NAME: &str = WorkerEngine::MistralRs.name();

/// Whether mistral.rs can load and run a GGUF, decided before loading it.
/// `tensor_types` are ggml type names (`Q4_K`, `IQ4_XS`, …).
pub fn preflight(architecture: &str, tensor_types: &[String], cpu: bool) -> Result<(), String> {
    if !SUPPORTED_ARCHITECTURES.contains(&architecture) {
        let hint = if architecture.starts_with("qwen35") {
            " (Qwen3.5 GGUF support exists in mistral.rs only from 0.9.1, which is not in the registry)"
        } else {
            ""
        };
        return Err(format!(
            "{VERSION} cannot load GGUF architecture `{architecture}`{hint}; it supports {}. \
             Use `engine: llama-cpp` (llama.cpp in-process), `engine: llama-server`, or `engine: auto`",
            SUPPORTED_ARCHITECTURES.join(", ")
        ));
    }
    if architecture == "qwen3moe" && cpu {
        return Err(format!(
            "{VERSION} loads `qwen3moe` on CPU but fails on the first request \
             (its indexed MoE kernel is CUDA-only); use `engine: llama-cpp` or llama-server, or a CUDA build (`--features cuda`)"
        ));
    }
    let unsupported: Vec<&String> = tensor_types
        .iter()
        .filter(|t| {
            t.starts_with("IQ")
                || t.starts_with("TQ")
                || t.starts_with("MXFP4")
                || t.starts_with("type")
        })
        .collect();
    if !unsupported.is_empty() {
        let names: Vec<&str> = unsupported.iter().map(|s| s.as_str()).collect();
        return Err(format!(
            "{VERSION} cannot load tensor type(s) {}; use `engine: llama-cpp` or llama-server, or choose a K-quant or Q8_0 file",
            names.join(", ")
        ));
    }
    Ok(())
}

/// The context a fill can test in mistral.rs: it fixes the context to the
/// GGUF's trained context, and a CPU prefill materialises T×T attention
/// scores, so their estimate stays under half the free RAM — said, not hidden.
pub fn fill_context(max: Option<u64>, cpu: bool, wanted: u64) -> (u64, Option<String>) {
    let max = max.unwrap_or(wanted);
    let mut tested = wanted.min(max);
    let mut note = (tested < wanted).then(|| {
        format!("mistral.rs fixes the context to the GGUF's trained context ({max} tokens); tested at {tested}")
    });
    if cpu {
        if let Some(free) = super::proc_stats::mem_available_bytes() {
            let before = tested;
            while tested > 1024 && tested.saturating_mul(tested).saturating_mul(4 * 48) > free / 2 {
                tested /= 2;
            }
            if tested < before {
                note = Some(format!(
                    "a {before}-token CPU prefill would need more RAM than is free ({} MiB); tested at {tested}",
                    free / (1024 * 1024)
                ));
            }
        }
    }
    (tested, note)
}

/// The child side: load the model, then answer requests until stdin closes.
#[cfg(feature = "embedded")]
pub mod worker {
    use super::VERSION;
    use crate::engine::fill::{fill_message, fill_split, FILLER};
    use crate::engine::worker::protocol::{emit, WorkerEvent, WorkerRequest};
    use crate::engine::{ChatMessage, ChatResponse};
    use either::Either;
    use mistralrs::{GgufModelBuilder, RequestBuilder, TextMessageRole, TokenSource};
    use std::io::BufRead;
    use std::path::Path;
    use std::time::Instant;

    /// `check_only`: mistral.rs's check is the parent's [`super::preflight`] (a
    /// list of what 0.8.1 can build); the worker only confirms it started.
    pub fn run(dir: &Path, file: &str, cpu: bool, check_only: bool) -> i32 {
        if check_only {
            emit(&WorkerEvent::Ready {
                load_ms: 0,
                max_sequence_length: None,
                context: None,
                allocated: None,
                label: Some(VERSION.into()),
                mtp_draft: None,
            });
            return 0;
        }
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                emit(&WorkerEvent::Error {
                    message: e.to_string(),
                });
                return 1;
            }
        };
        runtime.block_on(serve(dir, file, cpu))
    }

    async fn serve(dir: &Path, file: &str, cpu: bool) -> i32 {
        let started = Instant::now();

        let mut builder = GgufModelBuilder::new(dir.to_string_lossy(), vec![file.to_string()])
            .with_token_source(TokenSource::None);
        if cpu {
            builder = builder.with_force_cpu();
        }
        let model = match builder.build().await {
            Ok(m) => m,
            Err(e) => {
                emit(&WorkerEvent::Error {
                    message: format!("{e:#}"),
                });
                return 1;
            }
        };
        let max_sequence_length = model.max_sequence_length().ok().flatten().map(|n| n as u64);
        emit(&WorkerEvent::Ready {
            load_ms: started.elapsed().as_millis() as u64,
            max_sequence_length,
            context: None,
            allocated: None,
            label: None,
            mtp_draft: None,
        });
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let event = match serde_json::from_str::<WorkerRequest>(&line) {
                Err(e) => WorkerEvent::Error {
                    message: format!("bad request: {e}"),
                },
                Ok(WorkerRequest::Chat(req)) => {
                    match chat(&model, &req.messages, req.max_tokens, req.temperature).await {
                        Ok(r) => WorkerEvent::Reply(r),
                        Err(message) => WorkerEvent::Error { message },
                    }
                }
                Ok(WorkerRequest::Fill {
                    prompt_tokens,
                    max_tokens,
                    ..
                }) => match fill(&model, prompt_tokens, max_tokens).await {
                    Ok(r) => WorkerEvent::Reply(r),
                    Err(message) => WorkerEvent::Error { message },
                },
            };
            emit(&event);
        }
        0
    }

    async fn chat(
        model: &mistralrs::Model,
        messages: &[ChatMessage],
        max_tokens: u32,
        temperature: f32,
    ) -> Result<ChatResponse, String> {
        let mut request = RequestBuilder::new();
        for m in messages {
            let role = match m.role.as_str() {
                "system" => TextMessageRole::System,
                "assistant" => TextMessageRole::Assistant,
                _ => TextMessageRole::User,
            };
            request = request.add_message(role, &m.content);
        }
        // The deterministic sampler resets the length limit: set it first.
        request = if temperature <= 0.0 {
            request.set_deterministic_sampler()
        } else {
            request.set_sampler_temperature(f64::from(temperature))
        };
        request = request.set_sampler_max_len(max_tokens as usize);
        let response = model
            .send_chat_request(request)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let choice = response
            .choices
            .first()
            .ok_or("the engine returned no choice")?;
        let usage = &response.usage;
        Ok(ChatResponse {
            text: choice.message.content.clone().unwrap_or_default(),
            prompt_tokens: usage.prompt_tokens as u64,
            completion_tokens: usage.completion_tokens as u64,
            prompt_tps: Some(f64::from(usage.avg_prompt_tok_per_sec)),
            generation_tps: Some(f64::from(usage.avg_compl_tok_per_sec)),
            finish_reason: Some(choice.finish_reason.clone()),
            draft: None,
        })
    }

    /// A prompt of about `target` tokens: whole copies of a passage, then a
    /// prefix of it cut at a token boundary.
    /// mistral.rs 0.8.1 has no way to ignore the end of generation (its
    /// `logits_bias` is never applied), so its fill stops where the model's
    /// answer ends; the reply's `completion_tokens` says how many.
    async fn fill(
        model: &mistralrs::Model,
        target: u64,
        max_tokens: u32,
    ) -> Result<ChatResponse, String> {
        let tokens = model
            .tokenize(Either::Right(FILLER.to_string()), None, false, false, None)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let (copies, rest) = fill_split(target, tokens.len());
        let partial = if rest > 0 {
            model
                .detokenize(tokens[..rest.min(tokens.len())].to_vec(), true)
                .await
                .map_err(|e| format!("{e:#}"))?
        } else {
            String::new()
        };
        let messages = [ChatMessage::user(fill_message(copies, &partial))];
        chat(model, &messages, max_tokens, 0.0).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_explains_what_cannot_load() {
        let e = preflight("qwen35moe", &[], true).unwrap_err();
        assert!(
            e.contains("cannot load GGUF architecture `qwen35moe`")
                && e.contains("0.9.1")
                && e.contains("llama-server"),
            "{e}"
        );
        let e = preflight("qwen3moe", &[], true).unwrap_err();
        assert!(e.contains("CUDA-only"), "{e}");
        assert!(preflight("qwen3moe", &[], false).is_ok());
        let e = preflight("llama", &["Q4_K".into(), "IQ4_XS".into()], true).unwrap_err();
        assert!(e.contains("IQ4_XS"), "{e}");
        assert!(preflight("llama", &["Q4_1".into(), "F32".into()], true).is_ok());
    }
}
