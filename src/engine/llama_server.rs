//! llama-server as an engine: started from a profile's launch command on a
//! free loopback port, ready when `/health` answers 200, measured with
//! llama.cpp's own `timings`, and always stopped (drop, timeout: SIGTERM,
//! then SIGKILL; the parent dying: SIGKILL through PDEATHSIG).

use super::fill::{fill_message, fill_split, FILLER};
use super::launch::Launch;
use super::proc_stats::peak_rss_bytes;
use super::{
    ChatRequest, ChatResponse, DraftStats, Engine, EngineError, EngineFacts, EngineMemory,
    EnginePerf, FillRequest,
};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the server's log said that matters for a context test.
#[derive(Debug, Clone, Default)]
pub struct LogWatch {
    pub tail: Vec<String>,
    /// The first line that reported an allocation failure.
    pub out_of_memory: Option<String>,
    /// llama.cpp's `graph splits = N` (more than 1-2 means CPU/GPU hops).
    pub graph_splits: Option<u64>,
}

impl LogWatch {
    fn observe(&mut self, line: &str) {
        let lower = line.to_ascii_lowercase();
        if self.out_of_memory.is_none()
            && (lower.contains("out of memory")
                || lower.contains("failed to allocate")
                || lower.contains("unable to allocate")
                || lower.contains("cudamalloc failed"))
        {
            self.out_of_memory = Some(line.trim().to_string());
        }
        if let Some(pos) = lower.find("graph splits") {
            let digits: String = line[pos..]
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse() {
                self.graph_splits = Some(n);
            }
        }
        self.tail.push(crate::secrets::redact(line));
        let excess = self.tail.len().saturating_sub(40);
        self.tail.drain(..excess);
    }
}

/// How results name this engine.
pub const NAME: &str = "llama-server";

pub struct LlamaServer {
    child: Child,
    pub base_url: String,
    log: Arc<Mutex<LogWatch>>,
    agent: ureq::Agent,
    program: String,
    /// The threads reading its stdout and stderr.
    watchers: Vec<std::thread::JoinHandle<()>>,
}

fn free_port() -> Result<u16, EngineError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| EngineError::Crashed(format!("no free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| EngineError::Crashed(e.to_string()))
}

fn watch(
    stream: impl Read + Send + 'static,
    log: Arc<Mutex<LogWatch>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Ok(mut l) = log.lock() {
                l.observe(&line);
            }
        }
    })
}

impl LlamaServer {
    /// Starts the server and waits until it has loaded the model. Start and
    /// use it from one thread: PDEATHSIG follows the thread that spawned it.
    pub fn start(
        launch: &Launch,
        startup_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<LlamaServer, EngineError> {
        let port = free_port()?;
        let mut cmd = Command::new(&launch.program);
        cmd.args(&launch.args)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::process::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            EngineError::Unsupported(format!(
                "cannot start `{}`: {e}; install llama.cpp or set `engines.llama_server` in onboard.yaml",
                launch.program
            ))
        })?;
        let log = Arc::new(Mutex::new(LogWatch::default()));
        let mut watchers = Vec::new();
        if let Some(out) = child.stdout.take() {
            watchers.push(watch(out, log.clone()));
        }
        if let Some(err) = child.stderr.take() {
            watchers.push(watch(err, log.clone()));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(request_timeout))
            .http_status_as_error(false)
            .build()
            .into();
        super::journal("start", NAME, child.id());
        let mut server = LlamaServer {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            log,
            agent,
            program: launch.program.clone(),
            watchers,
        };
        let deadline = Instant::now() + startup_timeout;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                // Its last words (the reason) may still be in the pipes.
                server.drain_output(Duration::from_secs(2));
                return Err(server.failure(&format!("exited while loading ({status})")));
            }
            let health = server
                .agent
                .get(format!("{}/health", server.base_url))
                .call();
            if let Ok(resp) = health {
                if resp.status() == 200 {
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                let e = server.failure(&format!(
                    "was not ready after {}s",
                    startup_timeout.as_secs()
                ));
                server.stop();
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> LogWatch {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits, at most `limit`, until the output threads have read to the
    /// end (a child of the server may keep the pipes open longer).
    fn drain_output(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && !self.watchers.iter().all(|w| w.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn failure(&self, what: &str) -> EngineError {
        let log = self.log();
        let mut message = format!("`{}` {what}", self.program);
        if let Some(oom) = &log.out_of_memory {
            message.push_str(&format!(": out of memory ({oom})"));
        }
        let tail = log
            .tail
            .iter()
            .rev()
            .take(12)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        if !tail.is_empty() {
            message.push_str(":\n");
            message.push_str(&tail);
        }
        EngineError::Crashed(message)
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, EngineError> {
        let url = format!("{}{path}", self.base_url);
        let mut resp = self
            .agent
            .post(&url)
            .send_json(body)
            .map_err(|e| self.failure(&format!("request {path} failed ({e})")))?;
        let status = resp.status();
        let value: Value = resp
            .body_mut()
            .read_json()
            .map_err(|e| EngineError::Request(format!("{path}: unreadable answer ({e})")))?;
        if status != 200 {
            let msg = value["error"]["message"].as_str().unwrap_or("").to_string();
            return Err(EngineError::Request(format!("{path}: HTTP {status} {msg}")));
        }
        Ok(value)
    }

    /// SIGTERM, a grace period, then SIGKILL.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: sends a signal to our own child.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.stop();
        super::journal("end", NAME, self.child.id());
    }
}

impl Engine for LlamaServer {
    fn name(&self) -> &str {
        NAME
    }

    fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, EngineError> {
        let v = self.post(
            "/v1/chat/completions",
            &json!({
                "messages": request.messages,
                "max_tokens": request.max_tokens,
                "temperature": request.temperature,
            }),
        )?;
        let choice = &v["choices"][0];
        Ok(ChatResponse {
            text: choice["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            completion_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
            prompt_tps: v["timings"]["prompt_per_second"].as_f64(),
            generation_tps: v["timings"]["predicted_per_second"].as_f64(),
            finish_reason: choice["finish_reason"].as_str().map(str::to_string),
            draft: DraftStats::from_timings(&v["timings"]),
        })
    }

    /// Generates exactly `max_tokens` (`ignore_eos`) after the same fill
    /// message the embedded engines send (through the model's chat
    /// template), reading llama.cpp's own timings. One configuration per
    /// start: `speculative` is as the profile loaded it.
    fn fill(&self, request: &FillRequest) -> Result<ChatResponse, EngineError> {
        let (prompt_tokens, max_tokens) = (request.prompt_tokens, request.max_tokens);
        let tokens = self.post("/tokenize", &json!({ "content": FILLER }))?;
        let tokens: Vec<Value> = tokens["tokens"].as_array().cloned().unwrap_or_default();
        let (copies, rest) = fill_split(prompt_tokens, tokens.len());
        let partial = if rest > 0 {
            let v = self.post("/detokenize", &json!({ "tokens": tokens[..rest] }))?;
            v["content"].as_str().unwrap_or_default().to_string()
        } else {
            String::new()
        };
        let v = self.post(
            "/v1/chat/completions",
            &json!({
                "messages": [{"role": "user", "content": fill_message(copies, &partial)}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "ignore_eos": true,
                "cache_prompt": false,
            }),
        )?;
        let t = &v["timings"];
        let choice = &v["choices"][0];
        Ok(ChatResponse {
            text: choice["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            prompt_tokens: t["prompt_n"].as_u64().unwrap_or(0),
            completion_tokens: t["predicted_n"].as_u64().unwrap_or(0),
            prompt_tps: t["prompt_per_second"].as_f64(),
            generation_tps: t["predicted_per_second"].as_f64(),
            finish_reason: choice["finish_reason"].as_str().map(str::to_string),
            draft: DraftStats::from_timings(t),
        })
    }

    fn facts(&self) -> EngineFacts {
        EngineFacts {
            device: Some(NAME.to_string()),
            ..EngineFacts::default()
        }
    }

    fn memory(&self) -> EngineMemory {
        EngineMemory {
            allocated: None,
            peak_rss_bytes: peak_rss_bytes(self.child.id()),
        }
    }

    fn perf(&self) -> EnginePerf {
        let log = self.log();
        EnginePerf {
            load_ms: None,
            graph_splits: log.graph_splits,
            out_of_memory: log.out_of_memory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_watch_spots_oom_and_graph_splits() {
        let mut w = LogWatch::default();
        w.observe("llama_context: graph splits = 3 (with bs=512)");
        w.observe("ggml_backend_cuda_buffer_type_alloc_buffer: allocating 20480.00 MiB on device 0: cudaMalloc failed: out of memory");
        assert_eq!(w.graph_splits, Some(3));
        assert!(w
            .out_of_memory
            .as_deref()
            .unwrap()
            .contains("cudaMalloc failed"));
    }
}
