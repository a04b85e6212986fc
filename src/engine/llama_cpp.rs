//! The second embedded engine: llama.cpp in-process, through its C API
//! (`llama-cpp-sys-2`, wrapped in `binding`), in the same child worker as mistral.rs (hidden
//! subcommand `__engine-worker --engine llama-cpp`). It runs what mistral.rs
//! 0.8.1 cannot (`qwen35`, `qwen35moe`, `qwen3moe` on CPU, IQ quants) at
//! llama-server's speed, and it reports what llama.cpp itself measured: its
//! perf counters and the buffers it allocated.
//!
//! Its preflight is exact rather than a list kept by hand: the worker first
//! loads the file's vocabulary only (`vocab_only`), which makes llama.cpp
//! read the architecture and hyperparameters and refuse what it does not
//! know, in milliseconds and in a child process.

use crate::gguf::memory::Buffers;

/// How results, logs and the engine choice name this engine.
pub const NAME: &str = "llama-cpp";

/// The binding this build embeds, for reports.
pub const VERSION: &str = "llama.cpp (llama-cpp-sys-2 0.1.161)";

/// The compute backend of this build, as `SPEED=` labels it.
pub fn backend(gpu: bool) -> &'static str {
    if gpu && cfg!(feature = "cuda") {
        "CUDA"
    } else {
        "CPU"
    }
}

/// Adds the buffer a llama.cpp log line reports, if it reports one: each
/// reads `<who>: <buffer name> <kind> buffer size = <MiB> MiB`.
pub fn observe_buffer_line(buffers: &mut Buffers, line: &str) {
    let Some((head, tail)) = line.split_once(" buffer size = ") else {
        return;
    };
    let Some(mib) = tail
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<f64>().ok())
    else {
        return;
    };
    let bytes = (mib * 1024.0 * 1024.0).round() as u64;
    // The kind is the last word before "buffer size".
    let slot = match head.split_whitespace().last() {
        Some("model") => &mut buffers.weights,
        Some("KV") => &mut buffers.kv_cache,
        Some("RS") => &mut buffers.recurrent,
        Some("compute") => &mut buffers.compute,
        Some("output") => &mut buffers.output,
        _ => return,
    };
    *slot += bytes;
}

#[cfg(feature = "llama-cpp")]
mod binding;

/// The child side: load the model with llama.cpp, then answer requests until
/// stdin closes.
#[cfg(feature = "llama-cpp")]
pub mod worker {
    use super::super::embedded::{emit, WorkerEvent, WorkerRequest, FILLER};
    use super::super::{ChatMessage, ChatResponse};
    use super::binding::{self, Backend, Context, ContextParams, Model, Sampler, Token};
    use super::{observe_buffer_line, Buffers};
    use std::ffi::{c_char, c_void, CStr, CString};
    use std::io::BufRead;
    use std::path::Path;
    use std::sync::Mutex;
    use std::time::Instant;

    /// The worker's view of llama.cpp's log: buffer sizes, the last error
    /// lines (for messages), and the partial line being assembled.
    #[derive(Default)]
    struct LogState {
        buffers: Buffers,
        errors: Vec<String>,
        partial: String,
        /// A continuation (`GGML_LOG_LEVEL_CONT`) keeps the level before it.
        level: u32,
        /// `ONBOARD_LLAMA_LOG=1`: every line to stderr, as llama-server logs.
        verbose: bool,
    }

    static LOG: Mutex<Option<LogState>> = Mutex::new(None);

    const LEVEL_WARN: u32 = 3;
    const LEVEL_ERROR: u32 = 4;
    const LEVEL_CONT: u32 = 5;

    /// llama.cpp's log sink: the process is single-model, so one global
    /// state is the whole story. Warnings and errors also go to stderr,
    /// where the parent keeps a tail for its messages.
    unsafe extern "C" fn on_log(level: u32, text: *const c_char, _user: *mut c_void) {
        if text.is_null() {
            return;
        }
        // SAFETY: llama.cpp passes a NUL-terminated string valid for the call.
        let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
        let Ok(mut guard) = LOG.lock() else { return };
        let state = guard.get_or_insert_with(LogState::default);
        if level != LEVEL_CONT {
            state.level = level;
        }
        let level = state.level;
        state.partial.push_str(&text);
        while let Some(end) = state.partial.find('\n') {
            let line: String = state.partial.drain(..=end).collect();
            let line = line.trim_end();
            observe_buffer_line(&mut state.buffers, line);
            if state.verbose || level == LEVEL_WARN || level == LEVEL_ERROR {
                eprintln!("llama.cpp: {line}");
                if level == LEVEL_ERROR {
                    state.errors.push(line.to_string());
                    let excess = state.errors.len().saturating_sub(8);
                    state.errors.drain(..excess);
                }
            }
        }
    }

    fn install_log() {
        if let Ok(mut guard) = LOG.lock() {
            *guard = Some(LogState {
                verbose: std::env::var_os("ONBOARD_LLAMA_LOG").is_some_and(|v| v == "1"),
                ..LogState::default()
            });
        }
        // SAFETY: `on_log` matches ggml_log_callback and lives for the process.
        unsafe { llama_cpp_sys_2::llama_log_set(Some(on_log), std::ptr::null_mut()) };
    }

    fn log_errors() -> String {
        LOG.lock()
            .ok()
            .and_then(|g| g.as_ref().map(|s| s.errors.join("; ")))
            .unwrap_or_default()
    }

    fn allocated() -> Option<Buffers> {
        LOG.lock()
            .ok()
            .and_then(|g| g.as_ref().map(|s| s.buffers.clone()))
    }

    fn fail(message: String) -> i32 {
        emit(&WorkerEvent::Error { message });
        1
    }

    /// What the parent asks for.
    pub struct Options<'a> {
        pub gguf: &'a Path,
        /// Tokens of context; `None` = the trained context.
        pub context: Option<u64>,
        pub threads: Option<usize>,
        pub gpu: bool,
        /// Only check that llama.cpp knows the file (vocabulary-only load).
        pub check_only: bool,
    }

    pub fn run(opts: &Options) -> i32 {
        let started = Instant::now();
        let backend = Backend::init();
        install_log();
        let display = opts.gguf.display();
        match Model::load(&backend, opts.gguf, 0, true) {
            Some(vocab_only) => drop(vocab_only),
            None => {
                return fail(format!(
                    "{} cannot load {display}: {}",
                    super::VERSION,
                    nonempty(log_errors(), "no reason given")
                ))
            }
        }
        if opts.check_only {
            emit(&WorkerEvent::Ready {
                load_ms: started.elapsed().as_millis() as u64,
                max_sequence_length: None,
                context: None,
                allocated: None,
                label: Some(super::VERSION.into()),
            });
            return 0;
        }
        let layers = if opts.gpu { 999 } else { 0 };
        let Some(model) = Model::load(&backend, opts.gguf, layers, false) else {
            return fail(format!(
                "{} did not load {display}: {}",
                super::VERSION,
                nonempty(log_errors(), "no reason given")
            ));
        };
        let trained = u64::from(model.n_ctx_train());
        let n_ctx = opts
            .context
            .unwrap_or(trained)
            .clamp(16, u64::from(u32::MAX)) as u32;
        let threads = opts
            .threads
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1)
            .clamp(1, i32::MAX as usize) as i32;
        let settings = ContextParams {
            n_ctx,
            n_batch: 2048,
            n_ubatch: 512,
            threads,
        };
        let Some(mut ctx) = Context::new(&model, &settings) else {
            return fail(format!(
                "llama.cpp could not create a {n_ctx}-token context for {display}: {}",
                nonempty(log_errors(), "it needs more memory than it could allocate")
            ));
        };
        let template = model
            .chat_template()
            .or_else(|| CString::new("chatml").ok());
        emit(&WorkerEvent::Ready {
            load_ms: started.elapsed().as_millis() as u64,
            max_sequence_length: Some(trained),
            context: Some(u64::from(ctx.n_ctx())),
            allocated: allocated(),
            label: Some(format!(
                "llama.cpp (embedded, {})",
                super::backend(opts.gpu)
            )),
        });
        let session = Session {
            model: &model,
            template,
        };
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let reply = match serde_json::from_str::<WorkerRequest>(&line) {
                Err(e) => Err(format!("bad request: {e}")),
                Ok(WorkerRequest::Chat(req)) => {
                    session.chat(&mut ctx, &req.messages, req.max_tokens, req.temperature)
                }
                Ok(WorkerRequest::Fill {
                    prompt_tokens,
                    max_tokens,
                }) => session.fill(&mut ctx, prompt_tokens, max_tokens),
            };
            emit(&match reply {
                Ok(r) => WorkerEvent::Reply(r),
                Err(message) => WorkerEvent::Error { message },
            });
        }
        0
    }

    fn nonempty(s: String, otherwise: &str) -> String {
        if s.trim().is_empty() {
            otherwise.to_string()
        } else {
            s
        }
    }

    struct Session<'m, 'b> {
        model: &'m Model<'b>,
        template: Option<CString>,
    }

    impl Session<'_, '_> {
        fn prompt(&self, messages: &[ChatMessage]) -> Result<Vec<Token>, String> {
            let text = match &self.template {
                Some(t) => {
                    let chat: Vec<(&str, &str)> = messages
                        .iter()
                        .map(|m| (m.role.as_str(), m.content.as_str()))
                        .collect();
                    binding::apply_chat_template(t, &chat)
                        .map_err(|e| format!("the model's chat template failed: {e}"))?
                }
                None => messages
                    .iter()
                    .map(|m| m.content.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            self.model.vocab().tokenize(&text, true, true)
        }

        fn chat(
            &self,
            ctx: &mut Context,
            messages: &[ChatMessage],
            max_tokens: u32,
            temperature: f32,
        ) -> Result<ChatResponse, String> {
            let prompt = self.prompt(messages)?;
            self.generate(ctx, prompt, max_tokens, temperature)
        }

        /// A prompt of about `target` tokens: whole copies of a passage,
        /// then a prefix of it, then a question.
        fn fill(
            &self,
            ctx: &mut Context,
            target: u64,
            max_tokens: u32,
        ) -> Result<ChatResponse, String> {
            let vocab = self.model.vocab();
            let passage = vocab.tokenize(FILLER, false, false)?;
            let per = passage.len().max(1) as u64;
            let rest = (target % per) as usize;
            let mut text = FILLER.repeat((target / per) as usize);
            for token in passage.iter().take(rest) {
                text.push_str(&String::from_utf8_lossy(&vocab.piece(*token)));
            }
            text.push_str("\n\nSummarise the passage above in one sentence.");
            let prompt = self.prompt(&[ChatMessage::user(text)])?;
            self.generate(ctx, prompt, max_tokens, 0.0)
        }

        fn generate(
            &self,
            ctx: &mut Context,
            mut prompt: Vec<Token>,
            max_tokens: u32,
            temperature: f32,
        ) -> Result<ChatResponse, String> {
            let n_ctx = ctx.n_ctx() as usize;
            if prompt.is_empty() {
                return Err("the prompt is empty".into());
            }
            if prompt.len() + max_tokens as usize > n_ctx {
                return Err(format!(
                    "the prompt ({} tokens) plus {max_tokens} to generate exceed the context of {n_ctx} tokens",
                    prompt.len()
                ));
            }
            ctx.clear();
            ctx.reset_perf();
            let n_batch = ctx.n_batch().max(1) as usize;
            for chunk in prompt.chunks_mut(n_batch) {
                ctx.decode(chunk)
                    .map_err(|e| format!("llama.cpp failed on the prompt: {e}"))?;
            }
            let mut sampler = if temperature <= 0.0 {
                Sampler::greedy()
            } else {
                Sampler::temperature(temperature, 0x5eed)
            };
            let vocab = self.model.vocab();
            let mut bytes = Vec::new();
            let mut generated = 0u64;
            let mut finish = "length";
            while generated < u64::from(max_tokens) {
                let token = sampler.sample(ctx);
                if vocab.is_end_of_generation(token) {
                    finish = "stop";
                    break;
                }
                bytes.extend(vocab.piece(token));
                generated += 1;
                ctx.decode(&mut [token])
                    .map_err(|e| format!("llama.cpp failed while generating: {e}"))?;
            }
            let perf = ctx.perf();
            let rate = |n: i32, ms: f64| (n > 0 && ms > 0.0).then(|| f64::from(n) * 1000.0 / ms);
            Ok(ChatResponse {
                text: String::from_utf8_lossy(&bytes).into_owned(),
                prompt_tokens: prompt.len() as u64,
                completion_tokens: generated,
                prompt_tps: rate(perf.n_p_eval, perf.t_p_eval_ms),
                generation_tps: rate(perf.n_eval, perf.t_eval_ms),
                finish_reason: Some(finish.into()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_lines_become_figures() {
        let mut log = Buffers::default();
        for line in [
            "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB",
            "llama_kv_cache:        CPU KV buffer size =   180.00 MiB",
            "llama_memory_recurrent:        CPU RS buffer size =     0.50 MiB",
            "llama_context:        CPU  output buffer size =     0.19 MiB",
            "sched_reserve:        CPU compute buffer size =    22.64 MiB",
            "llama_kv_cache: size =  180.00 MiB (  8192 cells,  30 layers,  1/1 seqs), K (f16):   90.00 MiB",
        ] {
            observe_buffer_line(&mut log, line);
        }
        let mib = |x: f64| (x * 1024.0 * 1024.0).round() as u64;
        assert_eq!(log.weights, mib(92.10));
        assert_eq!(log.kv_cache, mib(180.0));
        assert_eq!(log.recurrent, mib(0.5));
        assert_eq!(log.output, mib(0.19));
        assert_eq!(log.compute, mib(22.64));
    }
}
