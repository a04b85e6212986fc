//! Shared helpers for the hub tests: fixture repos written on the fly, a
//! mirror over them, and clients with short waits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use onboard::hub::{DownloadOptions, HubClient, HubConfig, RetryPolicy};
use sha2::{Digest, Sha256};

pub use crate::faulty_mirror::FaultyMirror;

/// Deterministic bytes that do not compress or repeat (xorshift).
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Git's id of a file kept in git (not LFS), by git itself
/// (`git hash-object`), the oracle for the mirror's `oid`s and ETags.
pub fn git_blob_id(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("git")
        .args(["hash-object", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git (git hash-object) on PATH");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git hash-object failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Writes `files` under `<root>/<repo>/`.
pub fn write_repo(root: &Path, repo: &str, files: &[(&str, &[u8])]) {
    for (name, data) in files {
        let p = root.join(repo).join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

/// A temp dir holding `mirror/` (served), `hf/` (HF_HOME) and `dest/`.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub server: FaultyMirror,
}

impl Env {
    pub fn new(repo: &str, files: &[(&str, &[u8])]) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("mirror");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(tmp.path().join("dest")).unwrap();
        write_repo(&root, repo, files);
        let server = FaultyMirror::start(&root, "127.0.0.1:0").unwrap();
        Env { tmp, server }
    }

    pub fn dest(&self) -> PathBuf {
        self.tmp.path().join("dest")
    }

    pub fn hf_home(&self) -> PathBuf {
        self.tmp.path().join("hf")
    }

    /// A fresh client (a new "process") with quick retries.
    pub fn client(&self) -> HubClient {
        HubClient::new(self.config())
    }

    pub fn config(&self) -> HubConfig {
        let mut cfg = HubConfig::for_endpoint(&self.server.url(), &self.hf_home());
        cfg.retry = fast_retry(4);
        cfg
    }
}

pub fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        backoff: Duration::from_millis(10),
        factor: 2.0,
        max_backoff: Duration::from_millis(100),
    }
}

/// Small chunks so a few MiB exercise parallel ranges; quick retries. The
/// stall timeout is generous: on a loaded machine a healthy connection may
/// go quiet for a moment, and a test that counts requests must not see a
/// spurious retry. A test of stalls sets its own.
pub fn opts() -> DownloadOptions {
    DownloadOptions {
        parallel: 4,
        chunk_size: 1 << 20,
        block_size: 64 << 10,
        retry: fast_retry(6),
        stall_timeout: Duration::from_secs(30),
        disk_margin: 1 << 20,
        reuse_hf_cache: true,
        verify_attempts: 3,
        hash_buffer: 8 << 20,
        ..DownloadOptions::default()
    }
}
