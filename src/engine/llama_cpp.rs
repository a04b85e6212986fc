//! The second embedded engine: llama.cpp in-process, through its C API
//! (`llama-cpp-sys-2`, wrapped in `binding`), in a child worker (`engine::worker`,
//! hidden subcommand `__engine-worker --engine llama-cpp`). It runs what mistral.rs
//! 0.8.1 cannot (`qwen35`, `qwen35moe`, `qwen3moe` on CPU, IQ quants) at
//! llama-server's speed, and it reports what llama.cpp itself measured: its
//! perf counters and the buffers it allocated.
//!
//! Its preflight is exact rather than a list kept by hand: the worker first
//! loads the file's vocabulary only (`vocab_only`), which makes llama.cpp
//! read the architecture and hyperparameters and refuse what it does not
//! know, in milliseconds and in a child process.

use super::worker::kind::WorkerEngine;
use crate::gguf::memory::Buffers;

/// How results, logs and the engine choice name this engine.
pub const NAME: &str = WorkerEngine::LlamaCpp.name();

/// The binding this build embeds, for reports.
pub const VERSION: &str = WorkerEngine::LlamaCpp.version();

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
    use super::binding::{
        self, Backend, Batch, Context, ContextParams, Model, MtpDrafter, Sampler, Token,
    };
    use super::{observe_buffer_line, Buffers};
    use crate::engine::chat_template::ChatTemplate;
    use crate::engine::fill::{fill_message, fill_split, FILLER};
    use crate::engine::worker::protocol::{emit, WorkerEvent, WorkerRequest};
    use crate::engine::{ChatMessage, ChatResponse, DraftStats};
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
        /// Load the MTP block, if the file has one, and draft up to this many
        /// tokens per round with it.
        pub mtp_draft: Option<u32>,
    }

    pub fn run(opts: &Options) -> i32 {
        let started = Instant::now();
        let backend = Backend::init();
        install_log();
        let display = opts.gguf.display();
        match Model::load(&backend, opts.gguf, 0, true, false) {
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
                mtp_draft: None,
            });
            return 0;
        }
        let layers = if opts.gpu { 999 } else { 0 };
        let want_mtp = opts.mtp_draft.filter(|n| *n > 0);
        let Some(model) = Model::load(&backend, opts.gguf, layers, false, want_mtp.is_some())
        else {
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
        // A file without an MTP block simply runs without the drafter.
        let mtp_draft = want_mtp.filter(|_| model.n_layer_nextn() > 0);
        let settings = ContextParams {
            n_ctx,
            n_batch: 2048,
            n_ubatch: 512,
            threads,
            // As llama-server: one snapshot per draft token, so a rejected
            // draft rolls the recurrent state back.
            n_rs_seq: mtp_draft.unwrap_or(0),
            mtp: false,
        };
        let Some(mut ctx) = Context::new(&model, &settings) else {
            return fail(format!(
                "llama.cpp could not create a {n_ctx}-token context for {display}: {}",
                nonempty(log_errors(), "it needs more memory than it could allocate")
            ));
        };
        // The draft context holds as many tokens as the target's, as
        // llama-server's; it runs the MTP block only.
        let mut draft_ctx = match mtp_draft {
            None => None,
            Some(_) => {
                let draft_settings = ContextParams {
                    n_rs_seq: 0,
                    mtp: true,
                    ..settings
                };
                match Context::new(&model, &draft_settings) {
                    Some(c) => Some(c),
                    None => {
                        return fail(format!(
                            "llama.cpp could not create the MTP draft context for {display}: {}",
                            nonempty(log_errors(), "it needs more memory than it could allocate")
                        ))
                    }
                }
            }
        };
        // Declared after both contexts, so it is dropped before them.
        let mut drafter = match (&draft_ctx, mtp_draft) {
            (Some(d), Some(n)) => match MtpDrafter::new(&ctx, d, n) {
                Some(m) => Some(m),
                None => {
                    return fail(format!(
                        "llama.cpp refused the MTP drafter for {display}: {}",
                        nonempty(log_errors(), "no reason given")
                    ))
                }
            },
            _ => None,
        };
        let template = model
            .chat_template()
            .or_else(|| CString::new("chatml").ok());
        // Parsed once: the same prompt llama-server --jinja renders.
        let jinja = template
            .as_ref()
            .and_then(|t| t.to_str().ok())
            .and_then(|source| {
                let vocab = model.vocab();
                ChatTemplate::new(
                    source,
                    &vocab.special_text(binding::Special::Bos),
                    &vocab.special_text(binding::Special::Eos),
                )
                .ok()
            });
        emit(&WorkerEvent::Ready {
            load_ms: started.elapsed().as_millis() as u64,
            max_sequence_length: Some(trained),
            context: Some(u64::from(ctx.n_ctx())),
            allocated: allocated(),
            label: Some(format!(
                "llama.cpp (embedded, {})",
                super::backend(opts.gpu)
            )),
            mtp_draft,
        });
        let session = Session {
            model: &model,
            template,
            jinja,
        };
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let mtp = match (&mut drafter, &mut draft_ctx) {
                (Some(d), Some(c)) => Some(Mtp {
                    drafter: d,
                    context: c,
                }),
                _ => None,
            };
            let reply = match serde_json::from_str::<WorkerRequest>(&line) {
                Err(e) => Err(format!("bad request: {e}")),
                Ok(WorkerRequest::Chat(req)) => {
                    let prompt = session.prompt(&req.messages);
                    prompt.and_then(|p| {
                        session.generate(&mut ctx, mtp, p, req.max_tokens, req.temperature, false)
                    })
                }
                Ok(WorkerRequest::Fill {
                    prompt_tokens,
                    max_tokens,
                    speculative,
                }) => {
                    let mtp = mtp.filter(|_| speculative != Some(false));
                    session.fill(&mut ctx, mtp, prompt_tokens, max_tokens)
                }
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
        /// The template as Jinja, where it parses.
        jinja: Option<ChatTemplate>,
    }

    /// The MTP drafter and its context, lent to one request.
    struct Mtp<'a, 'm> {
        drafter: &'a mut MtpDrafter,
        context: &'a mut Context<'m>,
    }

    impl Session<'_, '_> {
        fn prompt(&self, messages: &[ChatMessage]) -> Result<Vec<Token>, String> {
            let text = match &self.template {
                Some(t) => {
                    let chat: Vec<(&str, &str)> = messages
                        .iter()
                        .map(|m| (m.role.as_str(), m.content.as_str()))
                        .collect();
                    // The template as llama-server --jinja renders it; the C
                    // API's fixed list of styles where Jinja cannot.
                    match self.jinja.as_ref().map(|j| j.render(&chat)) {
                        Some(Ok(text)) => text,
                        _ => binding::apply_chat_template(t, &chat)
                            .map_err(|e| format!("the model's chat template failed: {e}"))?,
                    }
                }
                None => messages
                    .iter()
                    .map(|m| m.content.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            self.model.vocab().tokenize(&text, true, true)
        }

        /// A prompt of about `target` tokens: whole copies of a passage,
        /// then a prefix of it, then a question.
        fn fill(
            &self,
            ctx: &mut Context,
            mtp: Option<Mtp>,
            target: u64,
            max_tokens: u32,
        ) -> Result<ChatResponse, String> {
            let vocab = self.model.vocab();
            let passage = vocab.tokenize(FILLER, false, false)?;
            let (copies, rest) = fill_split(target, passage.len());
            let mut partial = Vec::new();
            for token in passage.iter().take(rest) {
                partial.extend(vocab.piece(*token));
            }
            let text = fill_message(copies, &String::from_utf8_lossy(&partial));
            let prompt = self.prompt(&[ChatMessage::user(text)])?;
            self.generate(ctx, mtp, prompt, max_tokens, 0.0, true)
        }

        /// Generation speed is tokens over the wall time of the generation
        /// loop, as a client sees it, so decoding with and without the MTP
        /// drafter compare like for like. `ignore_eos`: generate exactly
        /// `max_tokens` (a measurement, as llama-server's `ignore_eos`).
        fn generate(
            &self,
            ctx: &mut Context,
            mtp: Option<Mtp>,
            prompt: Vec<Token>,
            max_tokens: u32,
            temperature: f32,
            ignore_eos: bool,
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
            let mut sampler = if temperature <= 0.0 {
                Sampler::greedy()
            } else {
                Sampler::temperature(temperature, 0x5eed)
            };
            let mut out = Output {
                vocab: self.model.vocab(),
                bytes: Vec::new(),
                generated: 0,
                max: u64::from(max_tokens),
                stopped: false,
                ignore_eos,
            };
            let (draft, prompt_ms, generation_ms) = match mtp {
                None => {
                    let mut prompt = prompt.clone();
                    let n_batch = ctx.n_batch().max(1) as usize;
                    for chunk in prompt.chunks_mut(n_batch) {
                        ctx.decode(chunk)
                            .map_err(|e| format!("llama.cpp failed on the prompt: {e}"))?;
                    }
                    let started = Instant::now();
                    while !out.done() {
                        let token = sampler.sample(ctx);
                        if !out.push(token) {
                            break;
                        }
                        ctx.decode(&mut [token])
                            .map_err(|e| format!("llama.cpp failed while generating: {e}"))?;
                    }
                    let perf = ctx.perf();
                    (
                        None,
                        perf.t_p_eval_ms,
                        started.elapsed().as_secs_f64() * 1000.0,
                    )
                }
                Some(mtp) => {
                    let (stats, prompt_ms, generation_ms) =
                        speculate(ctx, mtp, &prompt, &mut sampler, &mut out)?;
                    (Some(stats), prompt_ms, generation_ms)
                }
            };
            let rate = |n: u64, ms: f64| (n > 0 && ms > 0.0).then(|| n as f64 * 1000.0 / ms);
            Ok(ChatResponse {
                text: String::from_utf8_lossy(&out.bytes).into_owned(),
                prompt_tokens: prompt.len() as u64,
                completion_tokens: out.generated,
                prompt_tps: rate(prompt.len() as u64, prompt_ms),
                generation_tps: rate(out.generated, generation_ms),
                finish_reason: Some(if out.stopped { "stop" } else { "length" }.into()),
                draft,
            })
        }
    }

    /// The text generated so far, and when to stop.
    struct Output<'v> {
        vocab: binding::Vocab<'v>,
        bytes: Vec<u8>,
        generated: u64,
        max: u64,
        stopped: bool,
        ignore_eos: bool,
    }

    impl Output<'_> {
        fn done(&self) -> bool {
            self.stopped || self.generated >= self.max
        }

        /// Takes `token` as generated; false at the end of generation.
        fn push(&mut self, token: Token) -> bool {
            if !self.ignore_eos && self.vocab.is_end_of_generation(token) {
                self.stopped = true;
                return false;
            }
            self.bytes.extend(self.vocab.piece(token));
            self.generated += 1;
            true
        }
    }

    /// llama-server's speculative loop with the MTP drafter: decode the
    /// last token and the draft in one batch, keep the draft's longest
    /// prefix the model itself samples, cut the rest from the cache. The
    /// prompt is decoded through explicit-position batches, each shown to
    /// the drafter, so its cache follows the target's. Returns the tally and
    /// the wall times of the prompt and of generation (ms).
    fn speculate(
        ctx: &mut Context,
        mtp: Mtp,
        prompt: &[Token],
        sampler: &mut Sampler,
        out: &mut Output,
    ) -> Result<(DraftStats, f64, f64), String> {
        let Mtp { drafter, context } = mtp;
        let started = Instant::now();
        context.clear();
        let n_batch = ctx.n_batch().max(1) as usize;
        let mut batch = Batch::new(n_batch);
        for (c, chunk) in prompt.chunks(n_batch).enumerate() {
            batch.clear();
            let last_chunk = (c + 1) * n_batch >= prompt.len();
            for (i, token) in chunk.iter().enumerate() {
                let pos = (c * n_batch + i) as u32;
                batch.push(*token, pos, last_chunk && i + 1 == chunk.len());
            }
            ctx.decode_batch(&batch)
                .map_err(|e| format!("llama.cpp failed on the prompt: {e}"))?;
            drafter.process(&batch)?;
        }
        drafter.begin(prompt)?;
        let prompt_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let mut stats = DraftStats::default();
        let mut history = prompt.to_vec();
        let mut n_past = prompt.len() as u32;
        let mut last = sampler.sample(ctx);
        while out.push(last) && !out.done() {
            // Room for the draft, the token after it, and no more.
            let room = (out.max - out.generated).saturating_sub(1) as usize;
            let mut draft = drafter.draft(n_past, last, &history)?;
            draft.truncate(room);
            // Drafting wrote the draft into the MTP context's cache; the
            // verification batch below writes those positions again.
            if !context.forget_from(n_past) {
                return Err("llama.cpp could not clear the MTP context's draft".into());
            }
            batch.clear();
            batch.push(last, n_past, true);
            for (i, token) in draft.iter().enumerate() {
                batch.push(*token, n_past + 1 + i as u32, true);
            }
            ctx.decode_batch(&batch)
                .map_err(|e| format!("llama.cpp failed while generating: {e}"))?;
            drafter.process(&batch)?;
            let mut accepted = 0usize;
            let mut next = sampler.sample_at(ctx, 0);
            while accepted < draft.len() && next == draft[accepted] {
                accepted += 1;
                next = sampler.sample_at(ctx, accepted as i32);
            }
            if !draft.is_empty() {
                drafter.accept(accepted)?;
                stats.drafted += draft.len() as u64;
                stats.accepted += accepted as u64;
            }
            history.push(last);
            history.extend_from_slice(&draft[..accepted]);
            n_past += 1 + accepted as u32;
            if accepted < draft.len() && !(ctx.forget_from(n_past) && context.forget_from(n_past)) {
                return Err("llama.cpp could not roll back the rejected draft tokens".into());
            }
            let mut ended = false;
            for token in &draft[..accepted] {
                if !out.push(*token) || out.done() {
                    ended = true;
                    break;
                }
            }
            if ended {
                break;
            }
            last = next;
        }
        Ok((stats, prompt_ms, started.elapsed().as_secs_f64() * 1000.0))
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
