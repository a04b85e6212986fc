//! llama.cpp's own argument check of everything onboard writes for
//! llama-server. The real binary onboards the repository's Qwen3.5
//! manifests (evaluate from their headers on a local Hub, profile, samplers,
//! bench profile; nothing downloaded) on three machines, so that every
//! placement rule writes its flags: the workstation of onboard.yaml (`--fit`,
//! and `--fit` with experts in RAM), large GPUs (every layer on the GPUs,
//! `-ngl`, `-ts`) and no GPU (`-ngl 0`). Then every profile's command line
//! (`onboard launch --print`, split by the shell) goes through llama.cpp's
//! `common_params_parse` in server mode, and the `llama-preset` export
//! through llama-server's `--models-preset` loader, both in the xllamacpp
//! wheel's library (tests/support/llama_args.cpp). Server mode parses
//! without opening the model files (llama-server opens them afterwards), so
//! `-m` and `--mmproj` need no files. A bogus flag and a bogus preset key
//! are refused: the check can fail.
//!
//! `scripts/llama-server-xllamacpp` gets the same command lines: it takes
//! every one and refuses a flag it does not know.

use onboard_test_support::{llama_args, repo_file, repo_root, TestWorkspace};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use onboard_test_support::eval_fixtures::PlanHub;

const MODELS: [&str; 3] = ["qwen3.5-35b-a3b", "qwen3.5-27b", "qwen3.5-122b-a10b"];

/// The repository's workflow up to the bench profile, which here follows
/// the samplers instead of the context test (no weights are downloaded).
fn profiles_workflow() -> String {
    let workflow = repo_file("workflows/add-model.yaml");
    let (head, tail) = workflow
        .split_once("uses: bench-profile")
        .expect("workflows/add-model.yaml has a bench-profile step");
    // The step runs up to the next one.
    let (step, after) = match tail.split_once("\n  - id:") {
        Some((step, after)) => (step, format!("\n  - id:{after}")),
        None => (tail, String::new()),
    };
    assert!(
        step.contains("needs: [context_test]"),
        "the bench profile's needs changed: {step}"
    );
    let step = step.replacen("needs: [context_test]", "needs: [samplers]", 1);
    format!("{head}uses: bench-profile{step}{after}")
}

/// onboard.yaml of the repository with its `hardware:` replaced.
fn onboard_yaml(hardware: Option<&str>) -> String {
    let config = repo_file("onboard.yaml");
    match hardware {
        None => config,
        Some(hw) => {
            let (_, rest) = config
                .split_once("\npaths:")
                .expect("onboard.yaml has paths after hardware");
            format!("{hw}paths:{rest}")
        }
    }
}

const NO_GPU: &str =
    "hardware:\n  gpus: []\n  ram_gib: 256\n  os_reserve_gib: 8\n  cpu_bandwidth_gbs: 60\n";

/// The all-GPU rule (`FIT=off`, `-ngl 999`, `-ts`): evaluate picks it only
/// where neither placement reaches the trained context and offloading gains
/// nothing, a corner no real machine hits reliably; this is the same
/// workflow with evaluate's placement decision replaced by that one.
fn all_gpu_workflow() -> String {
    let workflow = profiles_workflow();
    let strategy = "strategy: '{{ steps.evaluate.outputs.strategy }}'";
    let split = "tensor_split: '{{ steps.evaluate.outputs.tensor_split }}'";
    assert!(
        workflow.contains(strategy) && workflow.contains(split),
        "the profile step's strategy and tensor_split changed"
    );
    workflow
        .replace(strategy, "strategy: all_gpu")
        .replace(split, "tensor_split: '24,12'")
}

/// Onboards `models` up to the bench profile on `hardware`; returns the
/// workspace and the strategies evaluate chose.
fn onboarded(
    hub: &PlanHub,
    hardware: Option<&str>,
    workflow: &str,
) -> (TestWorkspace, Vec<String>) {
    let models = MODELS;
    let ws = TestWorkspace::new(workflow);
    std::fs::remove_file(ws.path("models/tiny.yaml")).unwrap();
    ws.write("onboard.yaml", &onboard_yaml(hardware));
    for dir in ["templates"] {
        for entry in std::fs::read_dir(repo_root().join(dir)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                let name = entry.file_name().to_string_lossy().into_owned();
                ws.write(
                    &format!("{dir}/{name}"),
                    &repo_file(&format!("{dir}/{name}")),
                );
            }
        }
    }
    for id in models {
        let mut manifest = repo_file(&format!("models/{id}.yaml"));
        // One model with its vision projector, so `--mmproj` is checked too.
        if id == "qwen3.5-35b-a3b" {
            manifest = manifest.replacen("hub:\n", "hub:\n  mmproj: F16\n", 1);
        }
        ws.write(&format!("models/{id}.yaml"), &manifest);
    }
    let mut args = vec!["run"];
    args.extend(models);
    args.extend(["--until", "bench_profile", "--json"]);
    let out = ws
        .command(&args)
        .env("HF_ENDPOINT", hub.server.url())
        .env("HF_HOME", hub.hf_home())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onboard {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let strategies = models
        .iter()
        .filter(|m| {
            ws.path(&format!(".onboard/{m}/steps/evaluate.json"))
                .exists()
        })
        .map(|m| {
            let rec: serde_json::Value =
                serde_json::from_str(&ws.read(&format!(".onboard/{m}/steps/evaluate.json")))
                    .unwrap();
            rec["outputs"]["strategy"].as_str().unwrap().to_string()
        })
        .collect();
    (ws, strategies)
}

/// The profile ids of a models.conf, in order.
fn profile_ids(conf: &str) -> Vec<String> {
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']'))
        .map(str::to_string)
        .collect()
}

/// `onboard launch <id> --print`: the command line, as a shell reads it.
fn command_line(ws: &TestWorkspace, id: &str) -> String {
    let out = ws.command(&["launch", id, "--print"]).output().unwrap();
    assert!(
        out.status.success(),
        "launch {id} --print: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Runs `program ARGS` where ARGS are the printed command line's words after
/// the program (and `extra`), split by `sh` as a person pasting it would
/// have them split.
fn via_shell(line: &str, extra: &str, program: &[&str], envs: &[(&str, &str)]) -> Output {
    let program: Vec<String> = program
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
        .collect();
    let script = format!(
        "set -- {line} {extra}; shift; exec {} \"$@\"",
        program.join(" ")
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn llama_cpp_accepts_every_profile_and_preset_onboard_writes() {
    let Some(harness) = llama_args::harness() else {
        return;
    };
    let hub = PlanHub::start();
    let tmp = tempfile::tempdir().unwrap();
    let python = repo_root().join(".venv/bin/python");
    let runner = repo_root().join("tests/support/llama_args.py");
    let script = repo_root().join("scripts/llama-server-xllamacpp");
    let harness_args = |mode: &str| -> Vec<String> {
        vec![
            python.display().to_string(),
            runner.display().to_string(),
            harness.library_path().display().to_string(),
            mode.to_string(),
        ]
    };
    let isolated = [
        ("HOME", tmp.path().to_str().unwrap()),
        ("XDG_CONFIG_HOME", tmp.path().to_str().unwrap()),
    ];

    let mut strategies = BTreeSet::new();
    let mut checked = 0;
    let mut flags = BTreeSet::new();
    let workflow = profiles_workflow();
    for (hardware, workflow) in [
        (None, workflow.as_str()),
        (Some(NO_GPU), workflow.as_str()),
        (None, all_gpu_workflow().as_str()),
    ] {
        let (ws, chose) = onboarded(&hub, hardware, workflow);
        strategies.extend(chose);
        let conf = ws.read("models.conf");
        let ids = profile_ids(&conf);
        assert_eq!(ids.len(), 2 * MODELS.len(), "production and bench: {conf}");
        for id in &ids {
            let line = command_line(&ws, id);
            flags.extend(
                line.split_whitespace()
                    .filter(|w| w.starts_with('-') && w.parse::<f64>().is_err())
                    .map(str::to_string),
            );
            let words: Vec<String> = harness_args("args");
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let out = via_shell(&line, "", &words, &isolated);
            assert!(
                out.status.success(),
                "llama.cpp refused [{id}]: {line}\n{}",
                text(&out)
            );
            let out = via_shell(
                &line,
                "",
                &[script.to_str().unwrap()],
                &[("LLAMA_SERVER_XLLAMACPP_DRY_RUN", "1")],
            );
            assert!(
                out.status.success(),
                "scripts/llama-server-xllamacpp refused [{id}]: {line}\n{}",
                text(&out)
            );
            checked += 1;
        }

        // The preset export through llama-server's --models-preset loader.
        let out = ws
            .command(&["export", "--format", "llama-preset"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let ini = tmp.path().join("models.ini");
        std::fs::write(&ini, &out.stdout).unwrap();
        let load_preset = || {
            harness
                .command("preset", &[ini.display().to_string()])
                .envs(isolated)
                .output()
                .unwrap()
        };
        let out = load_preset();
        assert!(
            out.status.success(),
            "the preset loader refused:\n{}",
            text(&out)
        );
        let loaded: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| Some(l.strip_prefix('[')?.split_once(']')?.0.to_string()))
            .collect();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(loaded, want, "every profile is a preset:\n{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("--ctx-size"),
            "{}",
            text(&out)
        );

        // The check can fail: a bogus flag, a bogus preset key.
        let line = command_line(&ws, &ids[0]);
        let words: Vec<String> = harness_args("args");
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let out = via_shell(&line, "--definitely-not-a-flag 7", &words, &isolated);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("invalid argument: --definitely-not-a-flag"),
            "{}",
            text(&out)
        );
        let mut bogus = std::fs::read_to_string(&ini).unwrap();
        bogus.push_str("definitely-not-an-option = 1\n");
        std::fs::write(&ini, bogus).unwrap();
        let out = load_preset();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("option 'definitely-not-an-option' not recognized"),
            "{}",
            text(&out)
        );
    }
    // Every placement rule wrote its flags: evaluate chose the other three
    // on the two machines, the all-GPU workflow wrote `-ngl 999 -ts 24,12`.
    let chosen: BTreeSet<String> = ["cpu", "fit", "fit_cpu_moe"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(strategies, chosen);
    for flag in [
        "-ngl",
        "-ts",
        "--fit",
        "--fit-target",
        "--jinja",
        "--no-context-shift",
        "--cache-ram",
        "--mmproj",
        "--temp",
        "--reasoning-format",
    ] {
        assert!(flags.contains(flag), "{flag} among {flags:?}");
    }
    eprintln!("llama.cpp accepted {checked} profiles; flags: {flags:?}");
}

/// The PyPI llama-server refuses a flag it does not know (exit 2, before
/// loading anything), as llama-server does.
#[test]
fn llama_server_xllamacpp_refuses_unknown_flags() {
    let script = repo_root().join("scripts/llama-server-xllamacpp");
    if !Path::new(&repo_root().join(".venv/bin/python")).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no .venv: scripts/setup installs xllamacpp"
        );
        eprintln!("skipped: no .venv (run scripts/setup)");
        return;
    }
    let out = Command::new(&script)
        .args(["-m", "/nonexistent.gguf", "--definitely-not-a-flag", "7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("unrecognized arguments: --definitely-not-a-flag 7"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("listening"), "{}", text(&out));
    // A known flag with a bad value is refused too.
    let out = Command::new(&script)
        .args(["-m", "/nonexistent.gguf", "--fit", "maybe"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
