//! The parent side of a worker: spawning the child, reading its answers
//! and its stderr on their own threads, timeouts, and the words for how it
//! died.

use super::kind::WorkerEngine;
use super::protocol::{WorkerEvent, WorkerRequest, LINE_PREFIX};
use crate::engine::proc_stats::peak_rss_bytes;
use crate::engine::{
    ChatRequest, ChatResponse, Engine, EngineError, EngineFacts, EngineMemory, EnginePerf,
    FillRequest,
};
use crate::gguf::memory::Buffers;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// A running worker with a loaded model. Start and use it from one thread:
/// the worker's parent-death signal follows the thread that spawned it.
pub struct EmbeddedEngine {
    engine: WorkerEngine,
    cpu: bool,
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
        crate::process::die_with_parent(&mut cmd);
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
        crate::engine::journal("start", opts.engine.name(), pid);
        let mut engine = EmbeddedEngine {
            engine: opts.engine,
            cpu: opts.cpu,
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

    /// Which engine the worker runs.
    pub fn kind(&self) -> WorkerEngine {
        self.engine
    }

    /// Whether it runs on the CPU.
    pub fn cpu(&self) -> bool {
        self.cpu
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
        crate::engine::journal("end", self.engine.name(), pid);
    }
}

impl Engine for EmbeddedEngine {
    fn name(&self) -> &str {
        self.engine.name()
    }

    fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, EngineError> {
        self.request(&WorkerRequest::Chat(request.clone()))
    }

    /// The MTP drafter on or off as asked (llama.cpp with an MTP block
    /// loaded; elsewhere as loaded).
    fn fill(&self, request: &FillRequest) -> Result<ChatResponse, EngineError> {
        self.request(&WorkerRequest::Fill {
            prompt_tokens: request.prompt_tokens,
            max_tokens: request.max_tokens,
            speculative: request.speculative,
        })
    }

    /// The context the worker allocated, where it chose one (llama.cpp).
    fn fill_context(&self, wanted: u64) -> (u64, Option<String>) {
        (self.context.unwrap_or(wanted), None)
    }

    fn facts(&self) -> EngineFacts {
        EngineFacts {
            label: self.label.clone(),
            device: Some(if self.cpu { "cpu" } else { "gpu" }.to_string()),
            mtp_draft: self.mtp_draft,
        }
    }

    fn memory(&self) -> EngineMemory {
        EngineMemory {
            allocated: self.allocated.clone(),
            peak_rss_bytes: peak_rss_bytes(self.pid),
        }
    }

    fn perf(&self) -> EnginePerf {
        EnginePerf {
            load_ms: Some(self.load_ms),
            ..EnginePerf::default()
        }
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
