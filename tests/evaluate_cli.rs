//! The real binary: the `evaluate` step of `workflows/add-model.yaml` on the
//! workstation of onboard.yaml against a local Hub mirror, `onboard inspect` on a real
//! GGUF and through `hf://`, and `onboard hardware --detect`.

use onboard_test_support::{
    gguf_fixtures, mount_tmpfs, repo_file, smollm2, walk, Onboard, Run, TestWorkspace,
};
use std::path::Path;

use onboard_test_support::eval_fixtures::PlanHub;
use serde_json::Value;

/// A workspace with the repo's onboard.yaml, workflow, template and
/// Qwen3.5 manifests.
fn plan_workspace() -> TestWorkspace {
    let ws = TestWorkspace::new(&repo_file("workflows/add-model.yaml"));
    ws.write("onboard.yaml", &repo_file("onboard.yaml"));
    ws.write(
        "templates/onboarding-summary.md.j2",
        &repo_file("templates/onboarding-summary.md.j2"),
    );
    for id in ["qwen3.5-35b-a3b", "qwen3.5-27b", "qwen3.5-122b-a10b"] {
        ws.write(
            &format!("models/{id}.yaml"),
            &repo_file(&format!("models/{id}.yaml")),
        );
    }
    ws
}

fn onboard(ws: &TestWorkspace, hub: &PlanHub, args: &[&str]) -> Run {
    Onboard::in_workspace(ws)
        .hub(&hub.server.url(), hub.hf_home())
        .args(args)
        .run()
}

fn record(ws: &TestWorkspace, model: &str) -> Value {
    let text = ws.read(&format!(".onboard/{model}/steps/evaluate.json"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("record: {e}: {text}"))
}

#[test]
fn add_model_evaluate_step_on_the_plan_machine() {
    let hub = PlanHub::start();
    let ws = plan_workspace();
    // Up to the samplers: evaluate's outputs wired into the profile steps,
    // without downloading 30 GB of (sparse) fixture weights.
    let until = ["--until", "samplers"];
    let run = onboard(
        &ws,
        &hub,
        &["run", "qwen3.5-35b-a3b", "--json", until[0], until[1]],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let rec = record(&ws, "qwen3.5-35b-a3b");
    let out = &rec["outputs"];
    assert_eq!(out["architecture"], "qwen35moe");
    assert_eq!(out["recurrent"], true);
    assert_eq!(out["quant"], "UD-Q6_K_XL");
    assert_eq!(out["strategy"], "fit");
    assert_eq!(out["context"], 262_144);
    assert_eq!(out["fit_target_mib"], 1024);
    assert_eq!(out["path"], "Qwen3.5/MoE/35B/UD6_K_XL");
    assert_eq!(
        out["model_file"],
        "Qwen3.5/MoE/35B/UD6_K_XL/Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf"
    );
    assert_eq!(out["files"][0], "Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf");
    assert_eq!(out["sampling"]["top_k"], 20);
    assert_eq!(out["rejected"][0]["quant"], "UD-Q8_K_XL");
    assert!(out["estimated_tps"].as_f64().unwrap() > 50.0);
    let report = ws.read("reports/qwen3.5-35b-a3b-evaluate.md");
    assert!(report.contains("| Qwen3.5-35B-A3B | MoE (3.5B active) | UD-Q6_K_XL | 30.3 GB | FIT (both GPUs) | 262144 |"), "{report}");
    assert!(report.contains("| GPU 0 | 23.0 GiB |"));
    assert_eq!(out["report"].as_str().unwrap(), report);
    // The card's figures agree with the header.
    assert!(report.contains("## Model card against the header"));
    assert_eq!(
        out["card_mismatches"].as_array().unwrap().len(),
        0,
        "{}",
        out["card_mismatches"]
    );
    // The production profile carries evaluate's decisions and the card's samplers.
    let conf = ws.read("models.conf");
    assert!(
        conf.contains("[qwen35-35b]\n# Qwen3.5-35B-A3B UD-Q6_K_XL: production profile, written by onboard\nMODEL=Qwen3.5/MoE/35B/UD6_K_XL/Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf\nCTX_SIZE=262144\nFIT=on\nFIT_TARGET=1024\nFLAGS=--jinja -np 1 --no-context-shift\nSAMPLERS=--temp 1 --top-p 0.95 --top-k 20 --min-p 0 --presence-penalty 1.5\n"),
        "{conf}"
    );

    // A second run skips the step: parameters and report unchanged.
    let again = onboard(
        &ws,
        &hub,
        &["run", "qwen3.5-35b-a3b", "--json", until[0], until[1]],
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("step_skipped"), "{}", again.stdout);

    // The 122B: three shards, fit + CPU offload; the manifest's path.
    let run = onboard(
        &ws,
        &hub,
        &["run", "qwen3.5-122b-a10b", "--json", until[0], until[1]],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let out = record(&ws, "qwen3.5-122b-a10b")["outputs"].clone();
    assert_eq!(out["strategy"], "fit_cpu_moe");
    assert_eq!(out["files"].as_array().unwrap().len(), 3);
    assert_eq!(
        out["model_file"],
        "Qwen3.5/MoE/122B/US_Q4_K_XL/Qwen3.5-122B-A10B-UD-Q4_K_XL-00001-of-00003.gguf"
    );
    let rejected = out["rejected"].as_array().unwrap();
    let q5 = rejected
        .iter()
        .find(|r| r["quant"] == "UD-Q5_K_XL")
        .unwrap();
    assert!(q5["reason"]
        .as_str()
        .unwrap()
        .contains("too little headroom"));
}

#[test]
fn inspect_smollm2_local() {
    let ws = TestWorkspace::new("name: add-model\nsteps: []\n");
    let file = smollm2::smollm2_gguf();
    let run = ws.onboard(&["inspect", file.to_str().unwrap(), "--ctx", "8192", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["layers"], 30);
    assert_eq!(v["recurrent_layers"], 0);
    // llama.cpp logs a 180.00 MiB f16 KV cache at n_ctx 8192.
    assert_eq!(v["memory"][0]["kv_bytes"]["value"], 180 * 1024 * 1024);
    let human = ws.onboard(&["inspect", file.to_str().unwrap()]);
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(
        human.stdout.contains("architecture    llama"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("(30 attention, 0 recurrent)"));
}

#[test]
fn inspect_through_the_hub_with_range_requests() {
    let hub = PlanHub::start();
    let ws = TestWorkspace::new("name: add-model\nsteps: []\n");
    ws.write("onboard.yaml", &repo_file("onboard.yaml"));
    let target = "hf://unsloth/Qwen3.5-122B-A10B-GGUF/UD-Q4_K_XL/Qwen3.5-122B-A10B-UD-Q4_K_XL-00001-of-00003.gguf";
    let run = onboard(
        &ws,
        &hub,
        &["inspect", target, "--ctx", "32768", "262144", "--json"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["architecture"], "qwen35moe");
    assert_eq!(v["shards"], 3);
    assert_eq!(v["attention_layers"], 12);
    assert_eq!(v["kv_bytes_per_token"]["value"], 24 * 1024);
    assert_eq!(v["memory"][1]["kv_bytes"]["value"], 6u64 << 30);
    assert_eq!(v["on_this_machine"]["strategy"], "fit_offload");
    assert!(v["header_bytes_fetched"].as_u64().unwrap() < 200_000);

    // A repo with several quants: list them, ask for one.
    let run = onboard(&ws, &hub, &["inspect", "hf://unsloth/Qwen3.5-27B-GGUF"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("UD-Q8_K_XL") && run.stderr.contains("UD-Q6_K_XL"),
        "{}",
        run.stderr
    );
}

#[test]
fn hardware_detect_prints_a_block() {
    let ws = TestWorkspace::new("name: add-model\nsteps: []\n");
    let run = ws.onboard(&["hardware", "--detect"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("hardware:\n"), "{}", run.stdout);
    assert!(run.stdout.contains("ram_gib: "), "{}", run.stdout);
    let has_gpu = std::process::Command::new("nvidia-smi")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_gpu {
        assert!(run.stdout.contains("CPU only"), "{}", run.stdout);
        assert!(run.stdout.contains("gpus: []"));
    }
    // The workspace's own figures.
    ws.write("onboard.yaml", &repo_file("onboard.yaml"));
    let run = ws.onboard(&["hardware"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("56.0 GiB usable"), "{}", run.stdout);
}

/// The seed's three models in one command, at their real sizes (68.4, 30.3
/// and 32.4 GB), onto a disk that holds any one of them but not all:
/// every model is evaluated, then the run stops before any download, with
/// the figures.
#[test]
fn the_seeds_three_models_are_refused_before_any_download_when_the_disk_cannot_hold_them() {
    let hub = PlanHub::start();
    let ws = plan_workspace();
    // 100 GiB: more than the 122B's 68.4 GB, less than the 131 GB of all three.
    let Some(_mount) = mount_tmpfs(&ws.path("models/Qwen3.5"), 100 << 10) else {
        return;
    };
    let models = ["qwen3.5-122b-a10b", "qwen3.5-35b-a3b", "qwen3.5-27b"];
    let mut args = vec!["run"];
    args.extend(models);
    args.push("--json");
    let run = onboard(&ws, &hub, &args);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let events = run.events();
    let refusal = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "download")
        .and_then(|e| e["error"].as_str())
        .unwrap_or_else(|| panic!("{}", run.stdout))
        .to_string();
    assert!(
        refusal.contains("not enough free disk space for this run's 3 downloads")
            && refusal.contains(
                "qwen3.5-122b-a10b 68.4 GB + qwen3.5-35b-a3b 30.3 GB + qwen3.5-27b 32.4 GB = 131.1 GB needed"
            )
            && refusal.contains("107.4 GB available; nothing was downloaded"),
        "{refusal}"
    );
    for model in models {
        assert_eq!(record(&ws, model)["status"], "done", "{model} evaluated");
        let download = ws.read(&format!(".onboard/{model}/steps/download.json"));
        assert!(download.contains("\"status\": \"failed\""), "{download}");
        // Every download failed the same way, and nothing ran after it.
        assert!(events.iter().any(|e| e["event"] == "step_finished"
            && e["model"] == model
            && e["step"] == "download"
            && e["error"].as_str() == Some(refusal.as_str())));
        assert!(!events.iter().any(|e| e["event"] == "step_started"
            && e["model"] == model
            && e["step"] == "context_test"));
    }
    let written: Vec<_> = walk(&ws.path("models/Qwen3.5"))
        .into_iter()
        .filter(|p| !p.is_dir())
        .collect();
    assert!(written.is_empty(), "nothing downloaded: {written:?}");
    assert!(
        !hub.server.content_gets().iter().any(|g| g.bytes > 16 << 20),
        "no file body was fetched beyond headers"
    );
}

/// `inspect` on a 35B-A3B with its multi-token-prediction head tells the
/// trunk from the tail, and the memory table is the trunk's.
#[test]
fn inspect_says_40_layers_plus_1_mtp() {
    let dir = tempfile::tempdir().unwrap();
    let with = dir.path().join("with.gguf");
    let without = dir.path().join("without.gguf");
    gguf_fixtures::qwen35_35b_a3b_mtp(true)
        .write(&with, onboard::gguf::writer::Data::Sparse)
        .unwrap();
    gguf_fixtures::qwen35_35b_a3b()
        .write(&without, onboard::gguf::writer::Data::Sparse)
        .unwrap();
    let inspect = |p: &Path, json: bool| {
        let mut args = vec!["inspect".to_string(), p.display().to_string()];
        if json {
            args.push("--json".into());
        }
        let out = Onboard::new().args(&args).output();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = inspect(&with, false);
    assert!(
        text.contains("40 + 1 MTP (10 attention, 30 recurrent)"),
        "{text}"
    );
    let (a, b): (Value, Value) = (
        serde_json::from_str(&inspect(&with, true)).unwrap(),
        serde_json::from_str(&inspect(&without, true)).unwrap(),
    );
    assert_eq!(
        (a["layers"].as_u64(), a["mtp_layers"].as_u64()),
        (Some(40), Some(1))
    );
    assert_eq!(b["mtp_layers"].as_u64(), Some(0));
    for key in ["attention_layers", "recurrent_layers"] {
        assert_eq!(a[key], b[key], "{key}");
    }
}
