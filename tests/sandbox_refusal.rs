//! The real binary, run as an unprivileged user, refuses to run
//! model-written code rather than run it unconfined, and says why.

use onboard_test_support::TestWorkspace;
use std::os::unix::process::CommandExt;
use std::path::Path;

fn chown_tree(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap().flatten() {
            chown_tree(&entry.path(), uid);
        }
    }
}

#[test]
fn a_benchmark_run_without_root_refuses_with_a_clear_message() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test drops from root to an unprivileged uid; run it as root (CI does)"
    );
    let dataset = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bench/humaneval-plus-mini.jsonl");
    let ws = TestWorkspace::new(
        "name: add-model\nsteps:\n  - id: benchmark\n    uses: benchmark\n    with:\n      endpoint: http://127.0.0.1:9\n      dataset: data.jsonl\n      limit: 1\n",
    );
    std::fs::copy(&dataset, ws.path("data.jsonl")).unwrap();
    let nobody = 65534;
    chown_tree(ws.root(), nobody);
    chown_tree(ws.cache.path(), nobody);
    let out = ws
        .command(&["run", "tiny", "--json"])
        .uid(nobody)
        .gid(nobody)
        .env("HOME", ws.root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let finished = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "step_finished")
        .unwrap_or_else(|| panic!("no step_finished: {stdout}"));
    let error = finished["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("the code sandbox needs root")
            && error.contains("refuses to run model-written code unconfined"),
        "{error}"
    );
    // Nothing was judged: no results were written.
    assert!(!ws.path("benchmarks/results/tiny/tasks.jsonl").exists());
}
