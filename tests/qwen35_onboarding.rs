//! The command this project exists for, end to end and offline:
//! `onboard qwen3.5-35b-a3b` in a copy of this repository's own workspace
//! (its workflow, templates, manifests, documentation and candidate cards),
//! with a tiny real-architecture `qwen35moe` served under
//! `unsloth/Qwen3.5-35B-A3B-GGUF` by a local Hub, carrying the MTP block the
//! public files now ship (so the profile drafts with it and the context test
//! measures with and without it). Only the Hub endpoint, the
//! quant the fixture has and the machine differ from a workstation's run.
//! The same for the dense `qwen3.5-27b` (`qwen35`). Then a run SIGKILLed in
//! the middle of its context test, rerun: it finishes.
#![cfg(feature = "llama-cpp")]

use onboard::hub::mirror::MirrorServer;
use onboard_test_support::{
    assert_success, llama_args, one_llama_cpp_at_a_time, seed, smollm2, tiny_qwen35, Onboard,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// One of the repository's Qwen3.5 models (models/qwen3.5-*.yaml), as the
/// test serves and onboards it.
struct Case {
    model: &'static str,
    repo: &'static str,
    file: &'static str,
    profile: &'static str,
    card: &'static str,
    write: fn(&Path, &Path) -> u64,
    architecture: &'static str,
    /// The flags of the manifest's `samplers.use` mode (Qwen3.5 model card).
    samplers: &'static [&'static str],
    /// The file carries an MTP block.
    mtp: bool,
    /// The repo has a vision projector and the manifest asks for it.
    vision: bool,
}

const MOE: Case = Case {
    model: "qwen3.5-35b-a3b",
    repo: "unsloth/Qwen3.5-35B-A3B-GGUF",
    file: "Qwen3.5-35B-A3B-F32.gguf",
    profile: "qwen35-35b",
    card: "Qwen3.5-35B-A3B.md",
    write: tiny_qwen35::write_tiny_qwen35moe_mtp,
    architecture: "qwen35moe",
    mtp: true,
    vision: true,
    // thinking-general
    samplers: &[
        "--temp 1 ",
        "--top-p 0.95",
        "--top-k 20",
        "--min-p 0",
        "--presence-penalty 1.5",
    ],
};

const DENSE: Case = Case {
    model: "qwen3.5-27b",
    repo: "unsloth/Qwen3.5-27B-GGUF",
    file: "Qwen3.5-27B-F32.gguf",
    profile: "qwen35-27b",
    card: "Qwen3.5-27B.md",
    write: tiny_qwen35::write_tiny_qwen35,
    architecture: "qwen35",
    mtp: false,
    vision: false,
    // thinking-coding
    samplers: &[
        "--temp 0.6",
        "--top-p 0.95",
        "--top-k 20",
        "--min-p 0",
        "--presence-penalty 0",
    ],
};

struct Hub {
    _dir: tempfile::TempDir,
    server: MirrorServer,
}

fn hub(case: &Case) -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join(case.repo);
    std::fs::create_dir_all(&repo).unwrap();
    (case.write)(&smollm2::smollm2_gguf(), &repo.join(case.file));
    // A projector beside the weights, as the real repos ship one: a GGUF
    // header is all evaluate and download need of it.
    let mut projector = onboard::gguf::writer::GgufWriter::new();
    projector.str("general.architecture", "clip");
    projector
        .write(
            &repo.join("mmproj-F16.gguf"),
            onboard::gguf::writer::Data::Zeros,
        )
        .unwrap();
    let server = MirrorServer::start(dir.path(), "127.0.0.1:0").unwrap();
    Hub { _dir: dir, server }
}

/// This repository as a workspace (support/seed.rs), the manifest asking
/// for the quant the fixture has and a benchmark of two problems.
fn workspace(root: &Path, case: &Case) {
    seed::workspace(root, "");
    seed::shrink_manifest(root, case.model);
    if case.vision {
        let path = root.join(format!("models/{}.yaml", case.model));
        let manifest = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            manifest.replacen("hub:\n", "hub:\n  mmproj: F16\n", 1),
        )
        .unwrap();
    }
}

fn onboard(root: &Path, hub: &Hub, args: &[&str]) -> Command {
    seed::onboard(root, &hub.server.url(), args).command()
}

fn record(root: &Path, case: &Case, step: &str) -> serde_json::Value {
    let path = root.join(format!(".onboard/{}/steps/{step}.json", case.model));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
        .unwrap_or(serde_json::Value::Null)
}

fn section(conf: &str, id: &str) -> String {
    let header = format!("[{id}]");
    conf.lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Everything the ten steps must have left, checked on a finished workspace.
fn assert_onboarded(root: &Path, case: &Case) {
    for step in [
        "evaluate",
        "download",
        "profile",
        "samplers",
        "context_test",
        "bench_profile",
        "benchmark",
        "docs",
        "summary",
        "compare",
    ] {
        assert_eq!(
            record(root, case, step)["status"],
            "done",
            "{step}: {}",
            record(root, case, step)
        );
    }
    let evaluate = &record(root, case, "evaluate")["outputs"];
    assert_eq!(evaluate["architecture"], case.architecture, "{evaluate}");
    let trained = u64::from(tiny_qwen35::CONTEXT);
    assert_eq!(evaluate["context"].as_u64(), Some(trained), "{evaluate}");

    let conf = std::fs::read_to_string(root.join("models.conf")).unwrap();
    let production = section(&conf, case.profile);
    assert!(production.contains("--no-context-shift"), "{production}");
    assert!(production.contains("--jinja"), "{production}");
    for flag in case.samplers {
        assert!(production.contains(flag), "{flag} in {production}");
    }
    assert!(
        production.contains("(llama.cpp (embedded, CPU); not llama-server;"),
        "{production}"
    );

    let context_test = &record(root, case, "context_test")["outputs"];
    assert_eq!(context_test["engine"], "llama-cpp", "{context_test}");
    assert_eq!(
        context_test["context_tested"].as_u64(),
        Some(trained),
        "the fixture's full trained context: {context_test}"
    );
    assert!(
        context_test["prompt_tokens"].as_u64().unwrap() > trained / 2,
        "{context_test}"
    );
    assert!(
        context_test["memory"].get("flagged").is_none(),
        "the memory model held its margin: {}",
        context_test["memory"]
    );

    let bench = section(&conf, &format!("bench-{}", case.profile));
    assert!(bench.contains("--reasoning-format none"), "{bench}");
    assert!(!bench.contains("--temp"), "no sampler flags: {bench}");
    assert!(!bench.contains("--spec-"), "no drafter in a score: {bench}");
    assert_mtp(root, case, &production, context_test);
    assert_vision(root, case, &production, &bench);

    let benchmark = &record(root, case, "benchmark")["outputs"];
    assert_eq!(benchmark["tasks"].as_u64(), Some(2), "{benchmark}");
    assert_eq!(benchmark["engine"], "llama-cpp", "{benchmark}");

    let summary = std::fs::read_to_string(root.join(format!("reports/{}.md", case.model))).unwrap();
    assert!(
        summary.contains("## Memory: predicted by `evaluate` vs allocated by llama.cpp")
            && summary.contains("| kv_cache |"),
        "{summary}"
    );

    let docs = root.join("documentation");
    assert!(docs.join(case.card).is_file(), "the card moved");
    assert!(
        !docs.join("CANDIDATES").join(case.card).exists(),
        "the card left CANDIDATES"
    );
    let links = onboard_plain(root, &["links"]);
    assert_success(&links, "every link resolves after the move");
}

/// With an MTP block the profile drafts with it, evaluate says so, and the
/// context test measures with and without the drafter, its memory
/// (predicted with the draft context) within the margin; without one,
/// nothing of it.
fn assert_mtp(root: &Path, case: &Case, production: &str, context_test: &serde_json::Value) {
    let evaluate = &record(root, case, "evaluate")["outputs"];
    let mtp = &context_test["mtp"];
    if !case.mtp {
        assert!(!production.contains("--spec-type"), "{production}");
        assert!(mtp.is_null(), "{context_test}");
        assert_eq!(evaluate["mtp_layers"].as_u64(), Some(0), "{evaluate}");
        return;
    }
    assert_eq!(evaluate["mtp_layers"].as_u64(), Some(1), "{evaluate}");
    assert!(
        production.contains("--spec-type draft-mtp --spec-draft-n-max 3"),
        "{production}"
    );
    assert_eq!(mtp["draft_tokens"].as_u64(), Some(3), "{mtp}");
    let (drafted, accepted) = (
        mtp["drafted"].as_u64().unwrap(),
        mtp["accepted"].as_u64().unwrap(),
    );
    // The fixture's head mostly agrees with the trunk: drafts are both
    // kept and rejected, so the rollback path runs.
    assert!(accepted > 0 && accepted < drafted, "{mtp}");
    assert!(
        mtp["generation_tps_without"].as_f64().unwrap() > 0.0,
        "{mtp}"
    );
    assert!(mtp["same_text"].is_boolean(), "{mtp}");
    let rows = context_test["memory"]["rows"].as_array().unwrap();
    let kv = rows.iter().find(|r| r["buffer"] == "kv_cache").unwrap();
    // 2 trunk attention layers + the MTP block's, each 2 × 64 × 4096 × f16.
    assert_eq!(kv["allocated_mib"].as_f64(), Some(3.0), "{kv}");
    assert_eq!(kv["predicted_mib"].as_f64(), Some(3.0), "{kv}");
    let conf = std::fs::read_to_string(root.join("models.conf")).unwrap();
    let speed = section(&conf, case.profile);
    assert!(speed.contains("with MTP (draft 3, acceptance"), "{speed}");
    // llama.cpp's own parser takes the drafting flags as onboard wrote them.
    if let Some(harness) = llama_args::harness() {
        let line = onboard_plain(root, &["launch", case.profile, "--print"]);
        assert_success(&line, "launch --print");
        let words = onboard::engine::words::split(&String::from_utf8_lossy(&line.stdout)).unwrap();
        let out = harness.run("args", &words[1..]);
        assert!(
            out.status.success(),
            "llama.cpp refused {words:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!(
        "{}: MTP {mtp}; memory {}; {speed}",
        case.model, context_test["memory"]
    );
}

/// The projector the manifest asked for: listed by evaluate, downloaded
/// beside the weights, loaded by the production profile, not by the bench
/// profile; without the ask, listed and left on the Hub.
fn assert_vision(root: &Path, case: &Case, production: &str, bench: &str) {
    let evaluate = &record(root, case, "evaluate")["outputs"];
    assert_eq!(evaluate["projectors"][0]["kind"], "F16", "{evaluate}");
    let models = root.join("models").join(evaluate["path"].as_str().unwrap());
    if !case.vision {
        assert!(evaluate["mmproj_file"].is_null(), "{evaluate}");
        assert!(!models.join("mmproj-F16.gguf").exists());
        assert!(!production.contains("MMPROJ"), "{production}");
        return;
    }
    let file = evaluate["mmproj_file"].as_str().unwrap();
    assert!(file.ends_with("/mmproj-F16.gguf"), "{evaluate}");
    assert!(models.join("mmproj-F16.gguf").is_file(), "downloaded");
    assert!(
        production.contains(&format!("MMPROJ = {file}"))
            || production.contains(&format!("MMPROJ={file}")),
        "{production}"
    );
    assert!(!bench.contains("MMPROJ"), "a text benchmark: {bench}");
}

fn onboard_plain(root: &Path, args: &[&str]) -> Output {
    Onboard::new().workspace(root).args(args).output()
}

fn onboard_end_to_end(case: &Case) {
    let _one = one_llama_cpp_at_a_time();
    let hub = hub(case);
    let dir = tempfile::tempdir().unwrap();
    workspace(dir.path(), case);
    let started = Instant::now();
    let out = onboard(dir.path(), &hub, &[case.model]).output().unwrap();
    assert_success(&out, case.model);
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&format!(
            "engine: llama-cpp — the first that can run {} here",
            case.architecture
        )),
        "the step log says which engine and why: {log}"
    );
    assert_onboarded(dir.path(), case);
    eprintln!(
        "{}: all ten steps in {:.1} s",
        case.model,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn onboard_qwen35_35b_a3b_end_to_end_offline() {
    onboard_end_to_end(&MOE);
}

#[test]
fn onboard_qwen35_27b_end_to_end_offline() {
    onboard_end_to_end(&DENSE);
}

/// `onboard run` up to the context test, returned once its worker is loading
/// the model: the process and the worker's pid.
fn run_until_the_worker_loads(root: &Path, hub: &Hub, case: &Case) -> (std::process::Child, u32) {
    let mut child = onboard(root, hub, &["run", case.model, "--until", "context_test"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(worker) = loading_worker(child.id()) {
            return (child, worker);
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "onboard ended before its context test started a worker"
        );
        assert!(Instant::now() < deadline, "no context-test worker appeared");
        // A scan of /proc costs milliseconds: poll gently, the worker lives for seconds.
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The loaded model's worker (not a `--check`) of `parent`, if running.
fn loading_worker(parent: u32) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.contains("__engine-worker") || cmdline.contains("--check") {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn killed_in_the_middle_of_its_context_test_the_rerun_finishes() {
    let _one = one_llama_cpp_at_a_time();
    let case = &MOE;
    let hub = hub(case);
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().to_path_buf();
    workspace(&root, case);
    let (mut child, worker) = run_until_the_worker_loads(&root, &hub, case);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        record(&root, case, "context_test")["status"] != "done",
        "killed before its record"
    );
    // The worker dies with onboard (its parent-death signal).
    assert!(
        worker_ends_within_seconds(worker),
        "the worker outlived onboard"
    );

    let out = onboard(&root, &hub, &[case.model]).output().unwrap();
    assert_success(&out, "the rerun");
    assert_onboarded(&root, case);
    let conf = std::fs::read_to_string(root.join("models.conf")).unwrap();
    assert_eq!(
        conf.matches(&format!("[{}]", case.profile)).count(),
        1,
        "{conf}"
    );
}

/// Ctrl-C while the embedded llama.cpp measures: onboard exits 130, the
/// worker is gone within seconds, the step is recorded `interrupted` with no
/// marker left, and the next run resumes there and finishes.
#[test]
fn ctrl_c_in_the_middle_of_its_context_test_stops_the_worker_and_the_rerun_finishes() {
    let _one = one_llama_cpp_at_a_time();
    let case = &MOE;
    let hub = hub(case);
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().to_path_buf();
    workspace(&root, case);
    let (mut child, worker) = run_until_the_worker_loads(&root, &hub, case);
    // SAFETY: a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(
        worker_ends_within_seconds(worker),
        "the worker outlived the interrupted run"
    );
    let context_test = record(&root, case, "context_test");
    assert_eq!(context_test["status"], "interrupted", "{context_test}");
    let steps = root.join(format!(".onboard/{}/steps", case.model));
    let markers: Vec<_> = std::fs::read_dir(&steps)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".running"))
        .map(|e| e.path())
        .collect();
    assert!(markers.is_empty(), "{markers:?}");

    let out = onboard(&root, &hub, &[case.model]).output().unwrap();
    assert_success(&out, "the rerun");
    assert_onboarded(&root, case);
}

/// Whether the worker is gone within 10 s.
fn worker_ends_within_seconds(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while worker_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    !worker_alive(pid)
}

fn worker_alive(pid: u32) -> bool {
    // A zombie has an empty cmdline: it is gone as far as work goes.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}
