//! Throwaway workspaces for the tests that run the real `onboard` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{repo_root, Onboard, Run};

pub struct TestWorkspace {
    pub dir: tempfile::TempDir,
    /// `XDG_CACHE_HOME` of its runs: EvalPlus's cache starts empty, whatever
    /// this machine's `~/.cache/evalplus` holds.
    pub cache: tempfile::TempDir,
}

pub const MODEL: &str = "tiny";

impl TestWorkspace {
    /// A workspace with one manifest (`tiny`) and the given workflow as
    /// `workflows/add-model.yaml`; its onboard.yaml takes every default.
    pub fn new(workflow: &str) -> TestWorkspace {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = tempfile::tempdir().expect("tempdir");
        let ws = TestWorkspace { dir, cache };
        ws.write("onboard.yaml", "# Every default.\n{}\n");
        ws.write(
            "models/tiny.yaml",
            "id: tiny\nname: Tiny\nfamily: Test\ntype: dense\nsize: 1M\nhub:\n  repo: test/tiny-GGUF\n",
        );
        ws.write("workflows/add-model.yaml", workflow);
        ws
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    /// `onboard -C <this workspace> <args>`, benchmarks offline (unless a
    /// test serves the HumanEval+ release itself).
    pub fn command(&self, args: &[&str]) -> Command {
        Onboard::in_workspace(self).args(args).command()
    }

    pub fn onboard(&self, args: &[&str]) -> Run {
        Onboard::in_workspace(self).args(args).run()
    }

    /// `onboard run tiny --json <extra>`, with the events parsed.
    pub fn run(&self, extra: &[&str]) -> Run {
        let mut args = vec!["run", MODEL, "--json"];
        args.extend_from_slice(extra);
        self.onboard(&args)
    }
}

/// Fails with both output streams when a run of the binary did not succeed.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Held by a test while its embedded llama.cpp runs: llama.cpp's CPU threads
/// spin between operations, so two workers sharing 2 cores slow each other
/// down a hundredfold (the four qwen35 onboarding tests together: 330 s;
/// one after another: 10 s).
pub fn one_llama_cpp_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ENGINE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ENGINE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Each number (`12`, `3.25`) as one `#`: what a run measures anew (t/s,
/// ms, MiB, seconds, dates) is masked; the words, keys, paths and table
/// shapes stay.
pub fn mask_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() || (in_number && c == '.') {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// This repository's workflow and templates copied into a new workspace at
/// `root` (its `workflows/` and `templates/`), as a newcomer's would have.
pub fn copy_workflow_and_templates(root: &Path) {
    for dir in ["workflows", "templates"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy(
        repo_root().join("workflows/add-model.yaml"),
        root.join("workflows/add-model.yaml"),
    )
    .unwrap();
    for t in std::fs::read_dir(repo_root().join("templates")).unwrap() {
        let t = t.unwrap().path();
        std::fs::copy(&t, root.join("templates").join(t.file_name().unwrap())).unwrap();
    }
}

/// Unmounts the tmpfs when the test ends, however it ends.
pub struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Mounts a tmpfs of `mib` MiB on `dir`. Needs root (CI runs as root); as
/// anyone else the test fails and says so, unless skipping it is asked for.
pub fn mount_tmpfs(dir: &Path, mib: u64) -> Option<Mount> {
    std::fs::create_dir_all(dir).unwrap();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        if std::env::var_os("ONBOARD_TEST_SKIP_TMPFS").is_some() {
            eprintln!(
                "SKIPPED: a disk-space test needs root to mount a tmpfs \
                 (ONBOARD_TEST_SKIP_TMPFS is set)"
            );
            return None;
        }
        panic!(
            "this test mounts a size-limited tmpfs to stand for a small disk, \
             which needs root: run it as root (CI does), or set ONBOARD_TEST_SKIP_TMPFS=1 \
             to skip it knowingly"
        );
    }
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount -t tmpfs failed as root: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(Mount(dir.to_path_buf()))
}
