//! The embedded engines, mistral.rs and llama.cpp, each run in a child
//! process (this same binary, hidden subcommand `__engine-worker`).
//! mistral.rs 0.8.1 panics on GGUF architectures it does not know, llama.cpp
//! aborts on some malformed files, and a long CPU prefill can exhaust RAM;
//! in a child, a panic, an abort or an out-of-memory kill is an error
//! message, never the end of the run or a damaged state. The child's peak
//! RSS is the model's real memory use.
//!
//! Protocol: JSON lines. The parent writes [`WorkerRequest`]s to the child's
//! stdin; the child answers each with one line `@@onboard <json>` on stdout
//! (other stdout lines are ignored, stderr is kept for error messages).

use super::{ChatMessage, ChatRequest, ChatResponse, Engine, EngineError};
use crate::gguf::memory::Buffers;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
pub const VERSION: &str = "mistralrs 0.8.1";

pub const LINE_PREFIX: &str = "@@onboard ";

/// The passage every engine repeats to fill a context (the embedded ones
/// and llama-server alike, so their prompts are the same tokens).
pub const FILLER: &str =
    "The history of measurement is a history of agreement. Merchants, builders and \
    astronomers each needed units that others would accept, and every improvement in precision \
    came from a shared reference that anyone could check. A workstation that serves language \
    models is measured the same way: by numbers that another person can reproduce on the same \
    machine with the same file. ";

/// The question after the filler.
const FILL_QUESTION: &str = "\n\nSummarise the passage above in one sentence.";

/// How a fill of about `target` tokens splits over a passage of
/// `passage_tokens`: whole copies, then the first `rest` tokens of one.
pub fn fill_split(target: u64, passage_tokens: usize) -> (usize, usize) {
    let per = passage_tokens.max(1) as u64;
    ((target / per) as usize, (target % per) as usize)
}

/// The user message of a fill: `copies` passages, `partial` (the text of
/// the first tokens of one more), the question. Every engine sends this
/// text through the model's chat template, so the prompts are the same
/// tokens; llama.cpp (embedded and llama-server) then generates exactly the
/// requested tokens, end-of-generation ignored (mistral.rs 0.8.1 cannot).
pub fn fill_message(copies: usize, partial: &str) -> String {
    let mut text = FILLER.repeat(copies);
    text.push_str(partial);
    text.push_str(FILL_QUESTION);
    text
}

/// Which embedded engine a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerEngine {
    MistralRs,
    LlamaCpp,
}

impl WorkerEngine {
    /// The name results, logs and `--engine` use.
    pub fn name(self) -> &'static str {
        match self {
            WorkerEngine::MistralRs => NAME,
            WorkerEngine::LlamaCpp => super::llama_cpp::NAME,
        }
    }

    pub fn from_name(name: &str) -> Option<WorkerEngine> {
        [WorkerEngine::MistralRs, WorkerEngine::LlamaCpp]
            .into_iter()
            .find(|e| e.name() == name)
    }

    /// Whether this build has it.
    pub fn built(self) -> bool {
        match self {
            WorkerEngine::MistralRs => cfg!(feature = "embedded"),
            WorkerEngine::LlamaCpp => cfg!(feature = "llama-cpp"),
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            WorkerEngine::MistralRs => VERSION,
            WorkerEngine::LlamaCpp => super::llama_cpp::VERSION,
        }
    }

    /// The cargo feature that builds it.
    pub fn feature(self) -> &'static str {
        match self {
            WorkerEngine::MistralRs => "embedded",
            WorkerEngine::LlamaCpp => "llama-cpp",
        }
    }
}

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

/// How to start the worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The `onboard` binary (normally the running one).
    pub program: PathBuf,
    pub engine: WorkerEngine,
    pub gguf: PathBuf,
    /// Tokens of context to allocate (llama.cpp; mistral.rs uses the GGUF's).
    pub context: Option<u64>,
    pub cpu: bool,
    /// Give up if the model has not loaded by then.
    pub load_timeout: Duration,
    /// Give up on a single request after this long.
    pub request_timeout: Duration,
    /// Threads for the worker; `None` = all cores.
    pub threads: Option<usize>,
    /// Load the model's MTP block and draft up to this many tokens per
    /// round with it (llama.cpp; ignored where the file has no MTP block).
    pub mtp_draft: Option<u32>,
}

impl WorkerOptions {
    /// Options with the defaults the tests and tools use: the running
    /// binary, CPU, generous timeouts.
    pub fn new(engine: WorkerEngine, gguf: &Path) -> Result<WorkerOptions, EngineError> {
        let program = std::env::current_exe()
            .map_err(|e| EngineError::Crashed(format!("cannot find the onboard binary: {e}")))?;
        Ok(WorkerOptions {
            program,
            engine,
            gguf: gguf.to_path_buf(),
            context: None,
            cpu: true,
            load_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(600),
            threads: None,
            mtp_draft: None,
        })
    }
}

/// How results and `SPEED_EMBEDDED` name this engine.
pub const NAME: &str = "mistralrs";

/// A running worker with a loaded model. Start and use it from one thread:
/// the worker's parent-death signal follows the thread that spawned it.
pub struct EmbeddedEngine {
    engine: WorkerEngine,
    child: Mutex<Child>,
    stdin: Mutex<ChildStdin>,
    lines: Mutex<Receiver<String>>,
    stderr_tail: Arc<Mutex<Vec<String>>>,
    pid: u32,
    request_timeout: Duration,
    pub load_ms: u64,
    pub max_sequence_length: Option<u64>,
    /// The context the engine allocated, where it chose one (llama.cpp).
    pub context: Option<u64>,
    pub allocated: Option<Buffers>,
    /// How `SPEED=` names the engine (`llama.cpp (embedded, CPU)`).
    pub label: Option<String>,
    /// Draft length of the MTP drafter the worker loaded, if any.
    pub mtp_draft: Option<u32>,
}

impl EmbeddedEngine {
    /// Asks a worker whether its engine can load the file at all, without
    /// loading the weights (llama.cpp: a vocabulary-only load, which reads the
    /// architecture and hyperparameters). `Err` says why not, in the engine's
    /// words.
    pub fn check(opts: &WorkerOptions) -> Result<(), EngineError> {
        let mut cmd = Self::command(opts)?;
        cmd.arg("--check");
        let engine = Self::spawn(opts, cmd)?;
        drop(engine);
        Ok(())
    }

    pub fn start(opts: &WorkerOptions) -> Result<EmbeddedEngine, EngineError> {
        let cmd = Self::command(opts)?;
        Self::spawn(opts, cmd)
    }

    fn command(opts: &WorkerOptions) -> Result<Command, EngineError> {
        if !opts.engine.built() {
            return Err(EngineError::Unsupported(format!(
                "this build of onboard has no {} (built without the `{}` feature)",
                opts.engine.version(),
                opts.engine.feature()
            )));
        }
        let (dir, file) = split_path(&opts.gguf)?;
        let mut cmd = Command::new(&opts.program);
        cmd.arg("__engine-worker")
            .arg("--engine")
            .arg(opts.engine.name())
            .arg("--dir")
            .arg(&dir)
            .arg("--file")
            .arg(&file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if opts.cpu {
            cmd.arg("--cpu");
        }
        if let Some(context) = opts.context {
            cmd.arg("--ctx-size").arg(context.to_string());
        }
        if let Some(n) = opts.mtp_draft {
            cmd.arg("--mtp-draft").arg(n.to_string());
        }
        if let Some(n) = opts.threads {
            cmd.arg("--threads").arg(n.to_string());
            cmd.env("RAYON_NUM_THREADS", n.to_string());
        }
        Ok(cmd)
    }

    fn spawn(opts: &WorkerOptions, mut cmd: Command) -> Result<EmbeddedEngine, EngineError> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // A SIGKILLed run must not leave a model generating: the worker
            // dies with the thread that started it (start and use the engine
            // from one thread).
            // SAFETY: prctl is async-signal-safe; it only sets this child's
            // parent-death signal.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            EngineError::Crashed(format!(
                "cannot start the engine worker {}: {e}",
                opts.program.display()
            ))
        })?;
        let pid = child.id();
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| EngineError::Crashed("worker has no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| EngineError::Crashed("worker has no stdout".into()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| EngineError::Crashed("worker has no stderr".into()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(json) = line.strip_prefix(LINE_PREFIX) {
                    if tx.send(json.to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let tail = stderr_tail.clone();
        std::thread::spawn(move || keep_tail(stderr, &tail));
        // From here on the engine's drop ends the process and journals it.
        super::journal("start", opts.engine.name(), pid);
        let mut engine = EmbeddedEngine {
            engine: opts.engine,
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            lines: Mutex::new(rx),
            stderr_tail,
            pid,
            request_timeout: opts.request_timeout,
            load_ms: 0,
            max_sequence_length: None,
            context: None,
            allocated: None,
            label: None,
            mtp_draft: None,
        };
        match engine.next_event(opts.load_timeout)? {
            WorkerEvent::Ready {
                load_ms,
                max_sequence_length,
                context,
                allocated,
                label,
                mtp_draft,
            } => {
                engine.mtp_draft = mtp_draft;
                engine.load_ms = load_ms;
                engine.max_sequence_length = max_sequence_length;
                engine.context = context;
                engine.allocated = allocated;
                engine.label = label;
                Ok(engine)
            }
            WorkerEvent::Error { message } => Err(EngineError::Unsupported(format!(
                "the model did not load: {message}"
            ))),
            WorkerEvent::Reply(_) => Err(EngineError::Crashed(
                "the worker answered before loading".into(),
            )),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The worker's peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Sends a prompt of about `prompt_tokens` tokens and generates.
    pub fn fill(&self, prompt_tokens: u64, max_tokens: u32) -> Result<ChatResponse, EngineError> {
        self.request(&WorkerRequest::Fill {
            prompt_tokens,
            max_tokens,
            speculative: None,
        })
    }

    /// [`Self::fill`] with the MTP drafter on or off (llama.cpp with an MTP
    /// block loaded; elsewhere the same as `fill`).
    pub fn fill_speculative(
        &self,
        prompt_tokens: u64,
        max_tokens: u32,
        speculative: bool,
    ) -> Result<ChatResponse, EngineError> {
        self.request(&WorkerRequest::Fill {
            prompt_tokens,
            max_tokens,
            speculative: Some(speculative),
        })
    }

    fn request(&self, request: &WorkerRequest) -> Result<ChatResponse, EngineError> {
        let line =
            serde_json::to_string(request).map_err(|e| EngineError::Request(e.to_string()))?;
        {
            let mut stdin = self
                .stdin
                .lock()
                .map_err(|_| EngineError::Crashed("worker lock poisoned".into()))?;
            if writeln!(stdin, "{line}")
                .and_then(|_| stdin.flush())
                .is_err()
            {
                return Err(self.death_report());
            }
        }
        match self.next_event(self.request_timeout)? {
            WorkerEvent::Reply(r) => Ok(r),
            WorkerEvent::Error { message } => Err(EngineError::Request(message)),
            WorkerEvent::Ready { .. } => {
                Err(EngineError::Crashed("the worker sent `ready` twice".into()))
            }
        }
    }

    fn next_event(&self, timeout: Duration) -> Result<WorkerEvent, EngineError> {
        let rx = self
            .lines
            .lock()
            .map_err(|_| EngineError::Crashed("worker lock poisoned".into()))?;
        match rx.recv_timeout(timeout) {
            Ok(json) => serde_json::from_str(&json).map_err(|e| {
                EngineError::Crashed(format!("the worker sent an unreadable line ({e})"))
            }),
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                Err(EngineError::Crashed(format!(
                    "the embedded engine ({}) gave no answer within {}s and was stopped",
                    self.engine.name(),
                    timeout.as_secs()
                )))
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.death_report()),
        }
    }

    /// Why the worker is gone, in words a person can act on.
    fn death_report(&self) -> EngineError {
        let status = self.child.lock().ok().and_then(|mut c| c.wait().ok());
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.join("\n"))
            .unwrap_or_default();
        let how = match status {
            Some(s) => describe_exit(s),
            None => "ended".to_string(),
        };
        let mut message = format!("the embedded engine worker ({}) {how}", self.engine.name());
        if !tail.trim().is_empty() {
            message.push_str(":\n");
            message.push_str(tail.trim_end());
        }
        EngineError::Crashed(crate::secrets::redact(&message))
    }

    fn kill(&self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EmbeddedEngine {
    fn drop(&mut self) {
        self.kill();
        let pid = self.child.lock().map(|c| c.id()).unwrap_or(0);
        super::journal("end", self.engine.name(), pid);
    }
}

impl Engine for EmbeddedEngine {
    fn name(&self) -> &str {
        self.engine.name()
    }

    fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, EngineError> {
        self.request(&WorkerRequest::Chat(request.clone()))
    }
}

#[cfg(unix)]
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (_, Some(9)) => "was killed by SIGKILL (the kernel's out-of-memory killer or a memory limit: the model needs more RAM than it was allowed)".into(),
        (_, Some(sig)) => format!("was killed by signal {sig}"),
        (Some(101), _) => "panicked (exit 101)".into(),
        (Some(code), _) => format!("exited with status {code}"),
        (None, None) => "ended".into(),
    }
}

fn keep_tail(stderr: impl Read, tail: &Mutex<Vec<String>>) {
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Ok(mut t) = tail.lock() {
            t.push(line);
            let excess = t.len().saturating_sub(30);
            t.drain(..excess);
        }
    }
}

fn split_path(gguf: &Path) -> Result<(PathBuf, String), EngineError> {
    let dir = gguf
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let file = gguf
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .ok_or_else(|| EngineError::Request(format!("{} is not a file path", gguf.display())))?;
    if !gguf.is_file() {
        // A missing local directory makes mistral.rs fall through to the Hub.
        return Err(EngineError::Request(format!(
            "{} does not exist",
            gguf.display()
        )));
    }
    Ok((dir, file))
}

/// The worker side of the protocol: one `@@onboard <json>` line, flushed.
pub fn emit(event: &WorkerEvent) {
    let line = serde_json::to_string(event)
        .unwrap_or_else(|_| "{\"event\":\"error\",\"message\":\"encode\"}".into());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{LINE_PREFIX}{line}");
    let _ = out.flush();
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

/// The child side: load the model, then answer requests until stdin closes.
#[cfg(feature = "embedded")]
pub mod worker {
    use super::*;
    use either::Either;
    use mistralrs::{GgufModelBuilder, RequestBuilder, TextMessageRole, TokenSource};
    use std::time::Instant;

    /// `check_only`: mistral.rs's check is the parent's [`preflight`] (a
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
        let (copies, rest) = super::fill_split(target, tokens.len());
        let partial = if rest > 0 {
            model
                .detokenize(tokens[..rest.min(tokens.len())].to_vec(), true)
                .await
                .map_err(|e| format!("{e:#}"))?
        } else {
            String::new()
        };
        let messages = [ChatMessage::user(super::fill_message(copies, &partial))];
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
