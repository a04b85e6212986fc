//! Several models on one workstation, the seed's case: `onboard run a b c`
//! over SmolLM2 and the tiny Qwen3.5 pair in one schedule (every model
//! evaluated before any download, downloads side by side, the steps that
//! load a model one at a time, one comparison at the end), a SIGKILL in the
//! middle and a rerun that resumes every model; two `onboard` processes that
//! take turns for the machine's `gpu`; and Ctrl-C while waiting for it.
//! (The seed's three models refused before any download when the disk
//! cannot hold them all: tests/evaluate_cli.rs, at their real sizes.)
#![cfg(feature = "llama-cpp")]

use onboard::hub::mirror::MirrorServer;
use onboard_test_support::{assert_success, one_llama_cpp_at_a_time, seed, smollm2, tiny_qwen35};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SMOL: &str = "smollm2-135m-instruct";
const MOE: &str = "qwen3.5-35b-a3b";
const DENSE: &str = "qwen3.5-27b";

/// The SmolLM2 manifest the main job writes, with a two-problem benchmark.
const SMOL_MANIFEST: &str = "id: smollm2-135m-instruct
name: SmolLM2-135M-Instruct
family: SmolLM2
type: dense
size: 135M
hub:
  repo: HuggingFaceTB/SmolLM2-135M-Instruct-GGUF
  quant: Q4_1
profile: smollm2
vars:
  context_test_tokens: 1024
  benchmark_limit: 2
  benchmark_max_tokens: 16
";

struct Hub {
    _dir: tempfile::TempDir,
    server: MirrorServer,
}

/// SmolLM2's real file and the two tiny Qwen3.5 under their Hub repos.
fn hub() -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let smol = smollm2::smollm2_gguf();
    let place = |repo: &str| {
        let d = dir.path().join(repo);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let smol_repo = place("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF");
    std::fs::copy(&smol, smol_repo.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    tiny_qwen35::write_tiny_qwen35moe(
        &smol,
        &place("unsloth/Qwen3.5-35B-A3B-GGUF").join("Qwen3.5-35B-A3B-F32.gguf"),
    );
    tiny_qwen35::write_tiny_qwen35(
        &smol,
        &place("unsloth/Qwen3.5-27B-GGUF").join("Qwen3.5-27B-F32.gguf"),
    );
    let server = MirrorServer::start(dir.path(), "127.0.0.1:0").unwrap();
    Hub { _dir: dir, server }
}

/// This repository as a workspace with the SmolLM2 manifest beside the
/// seed's, llama.cpp first (the fastest engine on a CPU for all three).
fn workspace(root: &Path) {
    seed::workspace(root, "engines:\n  order: [llama-cpp, mistralrs]\n");
    seed::shrink_manifest(root, MOE);
    seed::shrink_manifest(root, DENSE);
    std::fs::write(root.join(format!("models/{SMOL}.yaml")), SMOL_MANIFEST).unwrap();
}

/// The Hub, a workspace and a machine of the test's own.
fn setup() -> (Hub, tempfile::TempDir, Machine) {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    workspace(dir.path());
    let machine = Machine::new(dir.path());
    (hub, dir, machine)
}

/// A machine of its own for each test: resource locks and the engine
/// journal in the test's directories.
struct Machine {
    locks: tempfile::TempDir,
    journal: PathBuf,
}

impl Machine {
    fn new(root: &Path) -> Machine {
        Machine {
            locks: tempfile::tempdir().unwrap(),
            journal: root.join("engines.jsonl"),
        }
    }
}

fn onboard(root: &Path, hub: &Hub, machine: &Machine, args: &[&str]) -> Command {
    seed::onboard(root, &hub.server.url(), args)
        .env("ONBOARD_LOCK_DIR", machine.locks.path())
        .env("ONBOARD_ENGINE_JOURNAL", &machine.journal)
        .command()
}

/// A JSON event and when the test read it.
struct Seen {
    at: Instant,
    event: Value,
}

impl Seen {
    fn is(&self, event: &str, model: &str, step: &str) -> bool {
        self.event["event"] == event && self.event["model"] == model && self.event["step"] == step
    }
}

/// Runs `onboard … --json`, reading its events as they come; `stop_when`
/// may end it with SIGKILL. Returns the events, whether it was killed,
/// the exit status and stderr.
fn run_json(
    mut cmd: Command,
    stop_when: impl Fn(&Seen) -> bool,
) -> (Vec<Seen>, bool, std::process::ExitStatus, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut s);
        s
    });
    let mut seen = Vec::new();
    let mut killed = false;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let s = Seen {
            at: Instant::now(),
            event,
        };
        let stop = stop_when(&s);
        seen.push(s);
        if stop {
            child.kill().unwrap();
            killed = true;
            break;
        }
    }
    let status = child.wait().unwrap();
    (seen, killed, status, err_reader.join().unwrap())
}

fn record(root: &Path, model: &str, step: &str) -> Value {
    let path = root.join(format!(".onboard/{model}/steps/{step}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default()).unwrap_or(Value::Null)
}

/// Each engine process's life from the journal, as (start, end) in ns;
/// one that never ended (its onboard was killed) ends at `open_until`.
fn engine_lives(journal: &Path, open_until: u128) -> Vec<(u128, u128, u64)> {
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    let mut open: BTreeMap<u64, u128> = BTreeMap::new();
    let mut lives = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let pid = v["pid"].as_u64().unwrap();
        let at = v["unix_ns"].as_u64().unwrap() as u128;
        match v["event"].as_str().unwrap() {
            "start" => {
                open.insert(pid, at);
            }
            _ => {
                let start = open.remove(&pid).expect("an end after its start");
                lives.push((start, at, pid));
            }
        }
    }
    lives.extend(
        open.into_iter()
            .map(|(pid, start)| (start, open_until, pid)),
    );
    lives.sort();
    lives
}

fn assert_never_overlap(lives: &[(u128, u128, u64)]) {
    for pair in lives.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "two engines were loaded at the same time: {pair:?}"
        );
    }
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// `onboard run smollm2 qwen3.5-35b-a3b qwen3.5-27b`: one schedule, killed
/// after the first context test, rerun; every model finishes, each resumed
/// where it stopped.
#[test]
fn three_models_in_one_command_take_turns_and_resume_after_a_kill() {
    let _one = one_llama_cpp_at_a_time();
    let (hub, dir, machine) = setup();
    let root = dir.path();
    // Slow enough that the downloads visibly run side by side.
    hub.server.throttle(Some(40 << 20));
    let models = [SMOL, MOE, DENSE];

    let mut args = vec!["run"];
    args.extend(models);
    args.extend(["--json", "-j", "4"]);
    let (first, killed, _, stderr) = run_json(onboard(root, &hub, &machine, &args), |s| {
        s.event["event"] == "step_finished" && s.event["step"] == "context_test"
    });
    assert!(killed, "killed after the first context test: {stderr}");
    let killed_at = unix_ns();
    hub.server.throttle(None);

    // Every event names its model.
    assert!(first.iter().all(|s| s.event["model"].is_string()));
    // Every model evaluated before the first download started.
    let last_evaluate = models
        .iter()
        .map(|m| {
            first
                .iter()
                .find(|s| s.is("step_finished", m, "evaluate"))
                .unwrap_or_else(|| panic!("{m} evaluated"))
                .at
        })
        .max()
        .unwrap();
    let download = |m: &str, ev: &str| {
        first
            .iter()
            .find(|s| s.is(ev, m, "download"))
            .unwrap_or_else(|| panic!("{m} {ev} download: {stderr}"))
            .at
    };
    for m in models {
        assert!(download(m, "step_started") >= last_evaluate, "{m}");
    }
    // The downloads overlapped: each started before SmolLM2's (the largest) ended.
    let smol_done = download(SMOL, "step_finished");
    for m in [MOE, DENSE] {
        assert!(
            download(m, "step_started") < smol_done,
            "{m}'s download started only after SmolLM2's ended"
        );
    }
    // The first context test held the gpu: the others said so while waiting.
    assert!(
        first.iter().any(|s| s.event["event"] == "step_waiting"
            && s.event["why"]
                .as_str()
                .is_some_and(|w| w.starts_with("waiting for gpu: held by "))),
        "a model-loading step waited for the gpu"
    );
    let finished_context_tests: Vec<&str> = models
        .into_iter()
        .filter(|m| record(root, m, "context_test")["status"] == "done")
        .collect();
    assert_eq!(finished_context_tests.len(), 1, "killed after the first");

    // The rerun resumes each model where it stopped.
    let rerun_started = unix_ns();
    let (second, _, status, stderr) = run_json(onboard(root, &hub, &machine, &args), |_| false);
    assert!(status.success(), "the rerun: {stderr}");
    for m in models {
        assert!(
            second.iter().any(|s| s.is("step_skipped", m, "evaluate")),
            "{m}: evaluate kept"
        );
        assert!(
            second.iter().any(|s| s.is("step_skipped", m, "download")),
            "{m}: download kept"
        );
        for step in ["context_test", "benchmark", "docs", "summary", "compare"] {
            assert_eq!(record(root, m, step)["status"], "done", "{m} {step}");
        }
    }
    let done_before = finished_context_tests[0];
    assert!(second
        .iter()
        .any(|s| s.is("step_skipped", done_before, "context_test")));

    // The comparison ran once, after every model's docs, for all three.
    let compare_runs: Vec<&Seen> = second
        .iter()
        .filter(|s| s.event["event"] == "step_started" && s.event["step"] == "compare")
        .collect();
    assert_eq!(compare_runs.len(), 1, "compare runs once");
    let last_docs = second
        .iter()
        .filter(|s| s.event["event"] == "step_finished" && s.event["step"] == "docs")
        .map(|s| s.at)
        .max()
        .unwrap();
    assert!(compare_runs[0].at >= last_docs);
    let report = std::fs::read_to_string(root.join("benchmarks/report.md")).unwrap();
    for name in ["SmolLM2-135M-Instruct", "Qwen3.5-35B-A3B", "Qwen3.5-27B"] {
        assert!(report.contains(name), "{name} in the report:\n{report}");
    }
    let advice = std::fs::read_to_string(root.join("reports/retirement.md")).unwrap();
    assert!(advice.contains("qwen3-coder-next"), "{advice}");

    // No two engines were ever loaded at once, in either run.
    let lives = engine_lives(&machine.journal, rerun_started.max(killed_at));
    assert!(lives.len() >= 6, "context tests and benchmarks: {lives:?}");
    assert_never_overlap(&lives);
}

/// Two `onboard` processes started together on two models of one
/// workspace: both finish, their engines never loaded at the same time,
/// and the one that waited said for what and whom.
#[test]
fn two_processes_take_turns_for_the_gpu() {
    let _one = one_llama_cpp_at_a_time();
    let (hub, dir, machine) = setup();
    let root = dir.path();
    let spawn = |model: &str| {
        onboard(root, &hub, &machine, &[model])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn(MOE);
    let b = spawn(DENSE);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_success(&a, MOE);
    assert_success(&b, DENSE);
    let said =
        String::from_utf8_lossy(&a.stdout).into_owned() + &String::from_utf8_lossy(&b.stdout);
    let waited = said
        .lines()
        .find(|l| l.contains("wait   ") && l.contains("waiting for gpu: held by "))
        .unwrap_or_else(|| panic!("one run waited for the other's gpu:\n{said}"));
    assert!(
        waited.contains(", pid ") && (waited.contains(MOE) || waited.contains(DENSE)),
        "{waited}"
    );
    let lives = engine_lives(&machine.journal, unix_ns());
    assert!(lives.len() >= 4, "{lives:?}");
    assert_never_overlap(&lives);
}

/// Another process holds the gpu (the test, through the same lock files):
/// the run waits and says who holds it; Ctrl-C exits 130 at once, with
/// nothing recorded for the step; once the gpu is free the rerun finishes.
#[test]
fn ctrl_c_while_waiting_for_the_gpu_exits_130_and_the_rerun_completes() {
    let _one = one_llama_cpp_at_a_time();
    let (hub, dir, machine) = setup();
    let root = dir.path();
    let slot = machine.locks.path().join("gpu.0.lock");
    let holder = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&slot)
        .unwrap();
    holder.lock().unwrap();
    std::fs::write(
        &slot,
        r#"{"pid":4242,"target":"qwen3.5-122b-a10b","step":"context_test","workspace":"/elsewhere"}"#,
    )
    .unwrap();

    let mut cmd = onboard(root, &hub, &machine, &["run", MOE, "--json"]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut waiting = None;
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap_or(Value::Null);
        if v["event"] == "step_waiting" {
            waiting = Some(v);
            break;
        }
    }
    let waiting = waiting.expect("the context test waits for the gpu");
    assert_eq!(waiting["step"], "context_test", "{waiting}");
    assert_eq!(
        waiting["why"],
        "waiting for gpu: held by qwen3.5-122b-a10b context_test, pid 4242 (workspace /elsewhere)"
    );
    let asked = Instant::now();
    // SAFETY: a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(asked.elapsed() < Duration::from_secs(5), "exits at once");
    assert_eq!(
        record(root, MOE, "context_test"),
        Value::Null,
        "never started"
    );
    assert_eq!(record(root, MOE, "download")["status"], "done");

    drop(holder);
    let out = onboard(root, &hub, &machine, &[MOE]).output().unwrap();
    assert_success(&out, "the rerun");
    assert_eq!(record(root, MOE, "summary")["status"], "done");
}
