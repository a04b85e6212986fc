//! This repository as a workspace, the way the Qwen3.5 seed would onboard
//! from it: its workflows, templates, manifests, documentation (cards
//! waiting in CANDIDATES, the README tables and guides that link them) and
//! onboard.yaml with this CPU-only machine in place of the two GPUs. Tiny
//! fixtures stand in for the real files under the real Hub repo names.

use std::path::Path;

use crate::{copy_tree, repo_root, Onboard};

/// `onboard -C root <args>` against the Hub at `hub_url`, offline in every
/// other way: its own HF home and EvalPlus cache, no token, and no
/// llama-server anywhere (`engine: auto` must find llama.cpp itself).
pub fn onboard(root: &Path, hub_url: &str, args: &[&str]) -> Onboard {
    Onboard::new()
        .workspace(root)
        .args(args)
        .hub(hub_url, root.join(".hf-home"))
        .offline_benchmarks(root.join(".hf-home"))
        .env("PATH", "/usr/bin:/bin")
        .env_remove("ONBOARD_CRASH_AT")
}

/// Copies the repository's workspace files into `root`; `onboard.yaml`
/// describes this machine (no GPU) and adds `extra` (more YAML keys).
pub fn workspace(root: &Path, extra: &str) {
    let repo = repo_root();
    for dir in ["workflows", "templates", "models", "documentation"] {
        copy_tree(&repo.join(dir), &root.join(dir));
    }
    let config = std::fs::read_to_string(repo.join("onboard.yaml")).unwrap();
    let rest = config
        .split_once("\npaths:")
        .map(|(_, rest)| format!("paths:{rest}"))
        .expect("onboard.yaml has paths after hardware");
    std::fs::write(
        root.join("onboard.yaml"),
        format!(
            "hardware:\n  gpus: []\n  ram_gib: 16\n  os_reserve_gib: 4\n  cpu_bandwidth_gbs: 20\n{rest}{extra}"
        ),
    )
    .unwrap();
    std::os::unix::fs::symlink(repo.join(".venv"), root.join(".venv")).unwrap();
}

/// Points `model`'s manifest at the quant the fixtures have (F32) and a
/// benchmark of two problems.
pub fn shrink_manifest(root: &Path, model: &str) {
    let manifest_path = root.join(format!("models/{model}.yaml"));
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let manifest: String = manifest
        .lines()
        .filter(|l| !l.trim_start().starts_with("alternatives:"))
        .map(|l| {
            if l.trim_start().starts_with("quant:") {
                "  quant: F32".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(
        &manifest_path,
        format!("{manifest}\nvars:\n  benchmark_limit: 2\n  benchmark_max_tokens: 16\n"),
    )
    .unwrap();
}
