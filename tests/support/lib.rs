//! Helpers shared by onboard's integration tests (`tests/*.rs`): the
//! `onboard` command line, throwaway workspaces, GGUF and Hub fixtures.
//! One crate, a dev-dependency of onboard, so every test binary links the
//! same helpers instead of including their files.

pub mod command;
pub mod counting_alloc;
pub mod docs_fixture;
pub mod eval_fixtures;
pub mod faulty_mirror;
pub mod gguf_fixtures;
pub mod hub_fixture;
pub mod llama_args;
pub mod seed;
pub mod served_mirror;
pub mod smollm2;
pub mod terminal;
pub mod tiny_llama;
pub mod tiny_qwen35;
pub mod workflow_yaml;
pub mod workspace;

pub use command::{Onboard, Run};
pub use workspace::{
    assert_success, copy_workflow_and_templates, mask_numbers, mount_tmpfs,
    one_llama_cpp_at_a_time, Mount, TestWorkspace, MODEL,
};

use std::path::{Path, PathBuf};

/// This repository: its workflows, templates and manifests are the tests'.
/// (This crate lives two levels below it, in `tests/support`.)
pub fn repo_root() -> &'static Path {
    let support = Path::new(env!("CARGO_MANIFEST_DIR"));
    support
        .parent()
        .and_then(Path::parent)
        .expect("tests/support sits two levels below the repository")
}

/// A file of this repository, as text.
pub fn repo_file(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The directory of the running test binary's build (`target/debug`):
/// the `onboard` binary and the test binaries' scratch space sit there.
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/debug/deps/<test>-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("a test binary runs from target/<profile>/deps")
        .to_path_buf()
}

/// The `onboard` binary cargo built for this test run. Cargo names it in
/// `CARGO_BIN_EXE_onboard` while tests run (recent Cargo); older Cargo only
/// at compile time, and then it sits beside the test binary's `deps/`.
pub fn onboard_binary() -> PathBuf {
    match std::env::var_os("CARGO_BIN_EXE_onboard") {
        Some(path) => PathBuf::from(path),
        None => build_dir().join(format!("onboard{}", std::env::consts::EXE_SUFFIX)),
    }
}

/// Scratch space that outlives one test run (cargo's `CARGO_TARGET_TMPDIR`,
/// `target/tmp`): what is built once for many runs.
pub fn target_tmp_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_TMPDIR") {
        return PathBuf::from(dir);
    }
    let build = build_dir();
    build.parent().unwrap_or(&build).join("tmp")
}

/// Every entry below `dir` (files, directories, links), depth first;
/// links are listed, not followed. An unreadable directory lists nothing.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// The regular files below `dir` (links left out).
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok_and(|m| m.is_file()))
        .collect()
}

/// Copies `from` and everything below it to `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for path in walk(from) {
        let dest = to.join(path.strip_prefix(from).unwrap());
        if path.symlink_metadata().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(&path, dest).unwrap();
        }
    }
}
