//! Crash safety, proved on a whole onboarding: the repository's own
//! add-model workflow onboards a tiny llama (SmolLM2's tokenizer, written by
//! the test) from a local Hub, with the embedded engine, the sandboxed
//! benchmark and the docs phase. One uninterrupted run is the reference.
//! Then the real `onboard` process is SIGKILLed at dozens of points spread
//! over every kind of write it makes (the download's pieces, models.conf,
//! the state records, the benchmark records, the docs), each time rerun to
//! completion, and the workspace compared with the reference: the same
//! models.conf bytes (measured speeds aside), verified weights, the same
//! docs, reports and results, no temporary file left, no profile twice.
//!
//! Kill points come from `ONBOARD_CRASH_AT` (src/crashpoint.rs): the process
//! SIGKILLs itself at the Nth write point it passes, so every trial lands
//! exactly where a crash would hurt.
#![cfg(feature = "embedded")]

use onboard::hub::mirror::MirrorServer;
use onboard_test_support::{
    assert_success, copy_workflow_and_templates, mask_numbers, repo_root, smollm2, tiny_llama,
    walk, Onboard,
};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Output;

const REPO: &str = "test/Tiny-Llama-GGUF";
const REPO_TWO: &str = "test/Tiny-Llama-Two-GGUF";
const FILE: &str = "Tiny-Llama.F32.gguf";
const MODEL: &str = "tiny";

struct Hub {
    _dir: tempfile::TempDir,
    server: MirrorServer,
    sha256: String,
}

fn hub() -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join(REPO);
    std::fs::create_dir_all(&repo).unwrap();
    let file = repo.join(FILE);
    tiny_llama::write_tiny_llama(&smollm2::smollm2_gguf(), &file);
    let sha256 = onboard::digest::sha256_file(&file).unwrap();
    let two = dir.path().join(REPO_TWO);
    std::fs::create_dir_all(&two).unwrap();
    std::fs::copy(&file, two.join(FILE)).unwrap();
    let server = MirrorServer::start(dir.path(), "127.0.0.1:0").unwrap();
    Hub {
        _dir: dir,
        server,
        sha256,
    }
}

fn manifest(id: &str, repo: &str, size: &str) -> String {
    format!(
        "id: {id}\nname: Tiny Llama {id}\nfamily: Tiny\ntype: dense\nsize: {size}\n\
         hub:\n  repo: {repo}\n  quant: F32\nprofile: {id}\n\
         vars:\n  context_test_tokens: 256\n  benchmark_limit: 2\n  benchmark_max_tokens: 24\n"
    )
}

/// A workspace as a newcomer's: the repository's workflow and templates, a
/// manifest, a CPU-only machine, and the offline HumanEval problems.
fn workspace(root: &Path) {
    copy_workflow_and_templates(root);
    for dir in ["models", "documentation/CANDIDATES"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("models/tiny.yaml"), manifest(MODEL, REPO, "1M")).unwrap();
    std::fs::write(
        root.join("onboard.yaml"),
        "hardware:\n  gpus: []\n  ram_gib: 16\n  os_reserve_gib: 4\n  cpu_bandwidth_gbs: 20\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(repo_root().join(".venv"), root.join(".venv")).unwrap();
}

fn onboard(root: &Path, hub: &Hub, model: &str, env: &[(&str, String)]) -> Output {
    let mut cmd = run_command(root, &hub.server.url(), model)
        .env_remove("ONBOARD_CRASH_AT")
        .env_remove("ONBOARD_CRASH_TRACE");
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    cmd.output()
}

/// What must be the same after any crash and rerun: every file's path and
/// content, with what is measured anew each run (speeds, times, dates,
/// memory) masked; the weights by their sha256.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for path in walk(root) {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == ".venv" || rel == ".hf-home" || rel.starts_with(".hf-home/") {
            continue;
        }
        if path.symlink_metadata().unwrap().is_dir() {
            continue;
        }
        let text = || {
            String::from_utf8_lossy(&std::fs::read(&path).unwrap())
                .replace(&root.display().to_string(), "<workspace>")
        };
        let content = if rel.ends_with(".gguf") {
            format!("sha256 {}", onboard::digest::sha256_file(&path).unwrap())
        } else if rel == "models.conf" {
            mask_speed(&text())
        } else if rel.starts_with(".onboard/") && rel.ends_with(".json") {
            // A step record: how the step got there may differ (a
            // download "resumed", a file "changed: false" because the
            // killed run had already written it); that it is done may not.
            let record: serde_json::Value = serde_json::from_str(&text()).unwrap();
            format!("status {} error {}", record["status"], record["error"])
        } else {
            mask_numbers(&text())
        };
        out.insert(rel, content);
    }
    out
}

/// models.conf byte for byte, except the values of the speed lines.
fn mask_speed(text: &str) -> String {
    text.lines()
        .map(|l| match l.split_once('=') {
            Some((k, _)) if k.starts_with("SPEED") => format!("{k}=<measured>"),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn diff(reference: &BTreeMap<String, String>, got: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let names: BTreeSet<&String> = reference.keys().chain(got.keys()).collect();
    for name in names {
        match (reference.get(name), got.get(name)) {
            (Some(_), None) => problems.push(format!("missing: {name}")),
            (None, Some(_)) => problems.push(format!("extra: {name}")),
            (Some(a), Some(b)) if a != b => {
                let line = a
                    .lines()
                    .zip(b.lines())
                    .find(|(x, y)| x != y)
                    .map(|(x, y)| format!("\n  reference: {x}\n  got:       {y}"))
                    .unwrap_or_else(|| " (line count differs)".into());
                problems.push(format!("differs: {name}{line}"));
            }
            _ => {}
        }
    }
    problems
}

fn profiles(conf: &str) -> Vec<String> {
    conf.lines()
        .filter(|l| l.starts_with('[') && l.ends_with(']'))
        .map(str::to_string)
        .collect()
}

/// The points a run passes, from its trace: (number, site).
fn trace(path: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (n, site) = l.split_once(' ')?;
            Some((n.parse().ok()?, site.to_string()))
        })
        .collect()
}

/// At least `want` kill points over 1..=total, evenly spread, always
/// including the first point of every site so each kind of write is hit.
fn choose_points(points: &[(u64, String)], want: usize) -> Vec<u64> {
    let total = points.len() as u64;
    let mut chosen: BTreeSet<u64> = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (n, site) in points {
        if seen.insert(site.clone()) {
            chosen.insert(*n);
        }
    }
    if total as usize <= want {
        chosen.extend(1..=total);
    } else {
        for i in 0..want as u64 {
            chosen.insert(1 + i * (total - 1) / (want as u64 - 1));
        }
    }
    chosen.into_iter().collect()
}

#[test]
fn sigkill_at_every_kind_of_write_then_rerun_ends_in_the_reference_workspace() {
    let hub = hub();

    // The reference: one uninterrupted run, traced.
    let reference_dir = tempfile::tempdir().unwrap();
    workspace(reference_dir.path());
    let trace_file = reference_dir.path().join("../crash-trace.txt");
    let trace_file = std::path::absolute(&trace_file).unwrap();
    let _ = std::fs::remove_file(&trace_file);
    let started = std::time::Instant::now();
    let out = onboard(
        reference_dir.path(),
        &hub,
        MODEL,
        &[("ONBOARD_CRASH_TRACE", trace_file.display().to_string())],
    );
    assert_success(&out, "the uninterrupted run");
    let one_run = started.elapsed();
    let points = trace(&trace_file);
    let _ = std::fs::remove_file(&trace_file);
    let reference = snapshot(reference_dir.path());
    let sites: BTreeSet<&str> = points.iter().map(|(_, s)| s.as_str()).collect();
    for needed in [
        "atomic: temporary written",
        "atomic: renamed",
        "download: 4 MiB more on disk",
        "download: verified, not yet renamed",
        "benchmark: task recorded",
    ] {
        assert!(sites.contains(needed), "no `{needed}` point in {sites:?}");
    }
    let conf = std::fs::read_to_string(reference_dir.path().join("models.conf")).unwrap();
    assert_eq!(profiles(&conf), ["[tiny]", "[bench-tiny]"], "{conf}");
    assert!(conf.contains("SPEED="), "{conf}");
    let weights = reference
        .iter()
        .find(|(k, _)| k.ends_with(FILE))
        .map(|(_, v)| v.clone())
        .expect("the weights are in the workspace");
    assert_eq!(weights, format!("sha256 {}", hub.sha256));
    assert!(
        reference.contains_key("benchmarks/results/tiny.json"),
        "{:?}",
        reference.keys()
    );
    eprintln!(
        "reference run: {:.1} s, {} write points ({} kinds)",
        one_run.as_secs_f64(),
        points.len(),
        sites.len()
    );

    let chosen = choose_points(&points, 56);
    let mut killed_at: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for &n in &chosen {
        let trial = tempfile::tempdir().unwrap();
        workspace(trial.path());
        let out = onboard(
            trial.path(),
            &hub,
            MODEL,
            &[("ONBOARD_CRASH_AT", n.to_string())],
        );
        if out.status.signal() == Some(libc::SIGKILL) {
            let site = points
                .iter()
                .find(|(p, _)| *p == n)
                .map_or("?", |(_, s)| s.as_str());
            *killed_at.entry(site.to_string()).or_default() += 1;
        } else {
            // Parallel steps can pass fewer points in one run than in another.
            assert_success(&out, &format!("trial {n}: a run not killed"));
        }
        let rerun = onboard(trial.path(), &hub, MODEL, &[]);
        assert_success(&rerun, &format!("trial {n}: the rerun"));
        let problems = diff(&reference, &snapshot(trial.path()));
        if !problems.is_empty() {
            failures.push(format!("killed at point {n}:\n{}", problems.join("\n")));
        }
        let conf = std::fs::read_to_string(trial.path().join("models.conf")).unwrap();
        assert_eq!(
            profiles(&conf),
            ["[tiny]", "[bench-tiny]"],
            "trial {n}: {conf}"
        );
    }
    let kills: usize = killed_at.values().sum();
    eprintln!(
        "{} trials, {kills} killed by SIGKILL, by site: {killed_at:?}",
        chosen.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        kills >= 50,
        "only {kills} trials were killed: {killed_at:?}"
    );
}

/// Two models onboarding at once in one workspace: both finish, both sets of
/// profiles are in models.conf, the docs list both.
#[test]
fn two_models_onboarding_at_once_in_one_workspace_both_finish() {
    let hub = hub();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    workspace(&root);
    std::fs::write(
        root.join("models/tiny-two.yaml"),
        manifest("tiny-two", REPO_TWO, "2M"),
    )
    .unwrap();
    let first = {
        let root = root.clone();
        let url = hub.server.url();
        std::thread::spawn(move || run_with(&root, &url, MODEL))
    };
    let second = run_with(&root, &hub.server.url(), "tiny-two");
    let first = first.join().unwrap();
    assert_success(&first, "tiny");
    assert_success(&second, "tiny-two");
    let conf = std::fs::read_to_string(root.join("models.conf")).unwrap();
    let mut got = profiles(&conf);
    got.sort();
    assert_eq!(
        got,
        ["[bench-tiny-two]", "[bench-tiny]", "[tiny-two]", "[tiny]"],
        "{conf}"
    );
    for model in [MODEL, "tiny-two"] {
        assert!(
            root.join(format!("benchmarks/results/{model}.json"))
                .is_file(),
            "{model} has no benchmark results"
        );
        assert!(root.join(format!("reports/{model}.md")).is_file());
    }
}

fn run_with(root: &Path, url: &str, model: &str) -> Output {
    run_command(root, url, model).output()
}

/// `onboard -C root run <model> --json` against the Hub at `url`, with the
/// offline HumanEval problems whether or not this machine is online.
fn run_command(root: &Path, url: &str, model: &str) -> Onboard {
    Onboard::new()
        .workspace(root)
        .args(["run", model, "--json"])
        .hub(url, root.join(".hf-home"))
        .offline_benchmarks(root.join(".hf-home"))
}
