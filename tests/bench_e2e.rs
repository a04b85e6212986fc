//! The benchmark step end to end through the real `onboard` binary: a
//! server on 127.0.0.1 speaking `/v1/chat/completions`, the real scoring
//! path (extraction, sandbox, records, summary), `onboard report`, and a
//! run killed with SIGKILL that resumes without generating finished tasks
//! again.
//!
//! The server is a test double of llama-server: it answers each problem
//! with a prepared reply (found by the function name in the prompt) and
//! logs which problems were asked for.

use onboard_test_support::{Run, TestWorkspace};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Replies per entry point: base/plus outcome noted beside each.
const REPLIES: &[(&str, &str)] = &[
    // base pass, plus pass
    ("add", "Sure!\n```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```"),
    ("mean", "<think>divide the sum</think>\n```python\ndef mean(xs):\n    return sum(xs) / len(xs)\n```"),
    ("find_zero", "```python\nimport math\n\ndef poly(xs, x):\n    return sum(c * math.pow(x, i) for i, c in enumerate(xs))\n\ndef find_zero(xs):\n    lo, hi = -100.0, 100.0\n    for _ in range(200):\n        mid = (lo + hi) / 2\n        if poly(xs, lo) * poly(xs, mid) <= 0:\n            hi = mid\n        else:\n            lo = mid\n    return lo\n```"),
    ("sort_desc", "```python\ndef sort_desc(l):\n    return sorted(l, reverse=True)\n```"),
    // base pass, plus fail (too slow on fib(40))
    ("fib", "```python\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n```"),
    // base fail, plus fail (syntax error)
    ("count_vowels", "```python\ndef count_vowels(s)\n    return 0\n```"),
];

/// A solution that outlives any run: a sleeping child it spawns and itself.
const SLEEPER: &[(&str, &str)] = &[(
    "add",
    "```python\nimport subprocess, time\n\ndef add(a, b):\n    subprocess.Popen(['sleep', '300'])\n    time.sleep(300)\n    return a + b\n```",
)];

struct Server {
    port: u16,
    asked: Arc<Mutex<Vec<String>>>,
}

/// Serves until the test ends; `delay` is slept before answering request
/// number `slow_from` and later ones.
fn serve(delay: Duration, slow_from: usize) -> Server {
    serve_replies(delay, slow_from, REPLIES)
}

fn serve_replies(delay: Duration, slow_from: usize, replies: &'static [(&str, &str)]) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&asked);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let log = Arc::clone(&log);
            std::thread::spawn(move || answer(stream, &log, delay, slow_from, replies));
        }
    });
    Server { port, asked }
}

fn answer(
    stream: TcpStream,
    log: &Mutex<Vec<String>>,
    delay: Duration,
    slow_from: usize,
    replies: &[(&'static str, &'static str)],
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(first.starts_with("POST /v1/chat/completions "), "{first}");
    assert_eq!(request["temperature"], 0.0);
    let prompt = request["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    // Problems outside the fixture (the offline HumanEval) get a wrong answer.
    let (name, reply) = replies
        .iter()
        .find(|(name, _)| prompt.contains(&format!("def {name}(")))
        .unwrap_or(&("other", "```python\npass\n```"));
    let n = {
        let mut l = log.lock().unwrap();
        l.push(name.to_string());
        l.len()
    };
    if n == 1 && slow_from == usize::MAX {
        // llama-server answers 503 while it loads the model: the client waits.
        let json = r#"{"error":{"message":"Loading model","type":"unavailable_error","code":503}}"#;
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        );
        return;
    }
    if n >= slow_from {
        std::thread::sleep(delay);
    }
    let json = serde_json::json!({
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": reply}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 20},
    })
    .to_string();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
}

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bench/humaneval-plus-mini.jsonl")
        .display()
        .to_string()
}

fn workflow(port: u16, uid: u32) -> String {
    format!(
        "{}      dataset: {}\n",
        workflow_without_dataset(port, uid),
        fixture()
    )
}

fn workflow_without_dataset(port: u16, uid: u32) -> String {
    format!(
        "name: add-model\nsteps:\n  - id: benchmark\n    uses: benchmark\n    with:\n      endpoint: http://127.0.0.1:{port}\n      served_model: bench-tiny\n      parallel: 2\n      sandbox_uid: {uid}\n"
    )
}

/// A test double of EvalPlus's GitHub release: the release URL redirects
/// (as github.com does) to the file, served gzipped. Logs request lines.
struct ReleaseServer {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

const RELEASE_PATH: &str =
    "/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus.jsonl.gz";

fn serve_release(file: &Path) -> ReleaseServer {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&std::fs::read(file).unwrap()).unwrap();
    let body = gz.finish().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
            }
            let first = first.trim_end().to_string();
            log.lock().unwrap().push(first.clone());
            if first.starts_with(&format!("GET {RELEASE_PATH} ")) {
                let _ = write!(
                    stream,
                    "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/objects/release.gz\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            } else if first.starts_with("GET /objects/release.gz ") {
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            } else {
                let _ = write!(
                    stream,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        }
    });
    ReleaseServer {
        url: format!("http://127.0.0.1:{port}{RELEASE_PATH}"),
        requests,
    }
}

fn summary(ws: &TestWorkspace) -> serde_json::Value {
    serde_json::from_str(&ws.read("benchmarks/results/tiny.json")).unwrap()
}

#[test]
fn benchmark_step_scores_through_a_server_and_reports() {
    let server = serve(Duration::ZERO, usize::MAX);
    let ws = TestWorkspace::new(&workflow(server.port, 65100));
    ws.write(
        "models.conf",
        "[tiny]\nMODEL=Test/tiny.gguf\nSPEED=gen 95 t/s\n",
    );
    ws.write(
        "models/tiny.yaml",
        "id: tiny\nname: Tiny\nfamily: Test\ntype: dense\nsize: 1M\nprofile: tiny\nhub:\n  repo: test/tiny-GGUF\n  quant: Q4_1\ncard:\n  file_size_gb: 0.1\n",
    );
    let run = ws.run(&[]);
    run.assert_ok();
    let s = summary(&ws);
    assert_eq!(s["dataset"], "HumanEval+");
    assert_eq!(s["tasks"], 6);
    assert_eq!(s["complete"], true);
    assert_eq!(s["passed_base"], 5, "{s}");
    assert_eq!(s["passed_plus"], 4, "{s}");
    assert_eq!(s["pass_at_1_base"], 0.8333);
    assert_eq!(s["pass_at_1_plus"], 0.6667);
    assert_eq!(s["engine"], "llama-server");
    assert_eq!(s["served_model"], "bench-tiny");
    let records = ws.read("benchmarks/results/tiny/tasks.jsonl");
    assert_eq!(records.lines().count(), 6);
    let fib: serde_json::Value = records
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["task_id"] == "HumanEval/4")
        .unwrap();
    assert_eq!(
        (fib["base"].as_str(), fib["plus"].as_str()),
        (Some("pass"), Some("fail"))
    );
    // The step's outputs reach later steps.
    let finished = run
        .events()
        .into_iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "benchmark")
        .unwrap();
    assert_eq!(finished["ok"], true);

    let report = ws.onboard(&["report"]);
    report.assert_ok();
    let md = ws.read("benchmarks/report.md");
    assert!(
        md.contains(
            "| Tiny | 83.3 | 66.7 | HumanEval+ | 6 | gen 95 t/s | 0.1 GB | Q4_1 | llama-server |"
        ),
        "{md}"
    );
    let svg = ws.read("benchmarks/report.svg");
    assert!(svg.contains(">Tiny<") && svg.contains(">66.7%<"), "{svg}");
    let again = ws.onboard(&["report"]);
    again.assert_ok();
    assert!(again.stderr.contains("unchanged"), "{}", again.stderr);

    // A rerun of the done step asks the server nothing.
    let asked = server.asked.lock().unwrap().len();
    ws.run(&[]).assert_ok();
    assert_eq!(server.asked.lock().unwrap().len(), asked);
}

#[test]
fn a_killed_benchmark_resumes_without_generating_finished_tasks_again() {
    // Two quick answers, then slow ones: the run is killed while waiting.
    let first = serve(Duration::from_secs(30), 4);
    let ws = TestWorkspace::new(&workflow(first.port, 65200));
    let mut child = ws
        .command(&["run", "tiny", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let records = ws.path("benchmarks/results/tiny/tasks.jsonl");
    let started = Instant::now();
    loop {
        let done = std::fs::read_to_string(&records)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if done >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no records appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let finished_before: Vec<String> = std::fs::read_to_string(&records)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["task_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        finished_before.len() >= 2 && finished_before.len() < 6,
        "{finished_before:?}"
    );

    let second = serve(Duration::ZERO, usize::MAX);
    ws.write("workflows/add-model.yaml", &workflow(second.port, 65200));
    let run = ws.run(&[]);
    run.assert_ok();
    let asked = second.asked.lock().unwrap().clone();
    let names: Vec<&str> = REPLIES.iter().map(|(n, _)| *n).collect();
    for done in &finished_before {
        let index: usize = done.trim_start_matches("HumanEval/").parse().unwrap();
        assert!(
            !asked.contains(&names[index].to_string()),
            "{done} was finished before the kill but generated again: {asked:?}"
        );
    }
    // One extra request: the first was answered 503 (loading) and retried.
    assert_eq!(asked.len() - 1 + finished_before.len(), 6, "{asked:?}");
    let s = summary(&ws);
    assert_eq!(s["complete"], true);
    assert_eq!(s["resumed_tasks"], finished_before.len());
    assert_eq!(
        (s["passed_base"].as_u64(), s["passed_plus"].as_u64()),
        (Some(5), Some(4))
    );
    let lines = std::fs::read_to_string(&records).unwrap();
    assert_eq!(lines.lines().count(), 6, "{lines}");
}

/// `onboard run tiny --json` with `env` on top of the test workspace's
/// (neither `HF_HUB_OFFLINE` nor `HUMANEVAL_OVERRIDE_PATH` from this process).
fn run_offline_unless(ws: &TestWorkspace, env: &[(&str, String)]) -> Run {
    let mut cmd = ws.command(&["run", "tiny", "--json"]);
    cmd.env_remove("HF_HUB_OFFLINE")
        .env_remove("HUMANEVAL_OVERRIDE_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().unwrap())
}

/// No `dataset` given: the step downloads EvalPlus's release into EvalPlus's
/// own cache (decompressed, named as EvalPlus names it), scores HumanEval+,
/// and later runs read the cache without a request. Offline, nothing is
/// requested and the offline problems are scored, labelled as such.
#[test]
fn without_a_dataset_the_step_downloads_humaneval_plus_once_into_evalplus_cache() {
    let server = serve(Duration::ZERO, usize::MAX);
    let release = serve_release(Path::new(&fixture()));
    let ws = TestWorkspace::new(&workflow_without_dataset(server.port, 65300));
    let run = run_offline_unless(&ws, &[("ONBOARD_HUMANEVAL_PLUS_URL", release.url.clone())]);
    run.assert_ok();
    assert!(
        run.stdout
            .contains("downloading EvalPlus's HumanEval+ v0.1.10 from http://127.0.0.1:"),
        "{}",
        run.stdout
    );
    let s = summary(&ws);
    assert_eq!(s["dataset"], "HumanEval+");
    assert_eq!(
        (
            s["tasks"].as_u64(),
            s["passed_base"].as_u64(),
            s["passed_plus"].as_u64()
        ),
        (Some(6), Some(5), Some(4)),
        "{s}"
    );
    let cached = ws.cache.path().join("evalplus/HumanEvalPlus-v0.1.10.jsonl");
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        std::fs::read(fixture()).unwrap()
    );
    let leftovers: Vec<_> = std::fs::read_dir(cached.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    assert_eq!(
        *release.requests.lock().unwrap(),
        vec![
            format!("GET {RELEASE_PATH} HTTP/1.1"),
            "GET /objects/release.gz HTTP/1.1".to_string()
        ]
    );

    // Another workspace on the same cache: HumanEval+ without a request.
    let other = TestWorkspace::new(&workflow_without_dataset(server.port, 65300));
    let run = run_offline_unless(
        &other,
        &[
            ("XDG_CACHE_HOME", ws.cache.path().display().to_string()),
            ("ONBOARD_HUMANEVAL_PLUS_URL", release.url.clone()),
        ],
    );
    run.assert_ok();
    assert_eq!(summary(&other)["dataset"], "HumanEval+");
    assert_eq!(release.requests.lock().unwrap().len(), 2);

    // Offline with an empty cache: no request, the offline problems.
    let offline = TestWorkspace::new(&format!(
        "{}      limit: 1\n",
        workflow_without_dataset(server.port, 65300)
    ));
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"),
        offline.path(".venv"),
    )
    .unwrap();
    let run = run_offline_unless(
        &offline,
        &[
            ("ONBOARD_HUMANEVAL_PLUS_URL", release.url.clone()),
            ("HF_HUB_OFFLINE", "1".into()),
        ],
    );
    run.assert_ok();
    assert!(
        run.stdout
            .contains("no HumanEval+ (downloads are off (HF_HUB_OFFLINE is set))"),
        "{}",
        run.stdout
    );
    let s = summary(&offline);
    assert_eq!(s["dataset"], "HumanEval (base tests only)");
    assert!(s["pass_at_1_plus"].is_null());
    assert_eq!(release.requests.lock().unwrap().len(), 2);

    // The dataset is an input of the step: once EvalPlus's cache has
    // HumanEval+, the next run scores it.
    let run = run_offline_unless(
        &offline,
        &[
            ("XDG_CACHE_HOME", ws.cache.path().display().to_string()),
            ("HF_HUB_OFFLINE", "1".into()),
        ],
    );
    run.assert_ok();
    let s = summary(&offline);
    assert_eq!(s["dataset"], "HumanEval+");
    assert_eq!(s["tasks"], 1);

    // The first workspace's step ran on a dataset that appeared during the
    // run: its rerun finds every task recorded and generates nothing.
    let asked = server.asked.lock().unwrap().len();
    let run = run_offline_unless(&ws, &[("HF_HUB_OFFLINE", "1".into())]);
    run.assert_ok();
    assert!(
        run.stdout.contains("6 of 6 tasks already have results"),
        "{}",
        run.stdout
    );
    assert_eq!(server.asked.lock().unwrap().len(), asked);
    assert_eq!(summary(&ws)["resumed_tasks"], 6);
}

/// Processes owned by `uid` (the sandbox's user), from /proc.
fn processes_of(uid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let real_uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok());
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        if real_uid == Some(uid) && !zombie {
            pids.push(pid);
        }
    }
    pids
}

/// Ctrl-C while model-written code runs in the sandbox: the code and what
/// it spawned are gone within seconds, onboard exits 130, the step is
/// `interrupted`, and no summary claims a score.
#[test]
fn ctrl_c_while_sandboxed_code_runs_leaves_none_of_it_behind() {
    const UID: u32 = 65400;
    let server = serve_replies(Duration::ZERO, usize::MAX - 1, SLEEPER);
    let ws = TestWorkspace::new(&workflow(server.port, UID));
    ws.write("models.conf", "[tiny]\nMODEL=Test/tiny.gguf\n");
    let mut child = ws
        .command(&["run", "tiny", "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while processes_of(UID).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "onboard ended before the sandboxed code ran"
        );
        assert!(Instant::now() < deadline, "no sandboxed code started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    let gone = Instant::now() + Duration::from_secs(10);
    while !processes_of(UID).is_empty() && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        processes_of(UID),
        Vec::<u32>::new(),
        "sandboxed processes left"
    );
    let record: serde_json::Value =
        serde_json::from_str(&ws.read(".onboard/tiny/steps/benchmark.json")).unwrap();
    assert_eq!(record["status"], "interrupted", "{record}");
    assert!(
        !ws.path("benchmarks/results/tiny.json").exists(),
        "no summary from an interrupted benchmark"
    );
}
