//! The repos a mirror serves, as the Hub keeps them: which files a repo
//! has, whether each lives in LFS or in git (and under which id), and the
//! one commit that names the current state.
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::lock;
use crate::hub::client::validate_repo_id;
use crate::hub::download::validate_repo_path;
use crate::hub::fsutil::mtime_ns;
use crate::workflow::state::format_rfc3339;

/// How the Hub keeps a file: in LFS (git holds a pointer naming its
/// sha256) or in git itself (named by its git blob id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Stored {
    Lfs { sha256: String },
    Git { blob_id: String },
}

struct CachedStored {
    size: u64,
    mtime: i128,
    stored: Stored,
}

/// One file of a repo on disk.
pub(super) struct RepoFile {
    /// The path inside the repo, `/`-separated.
    pub rel: String,
    pub path: PathBuf,
    pub size: u64,
    pub mtime: i128,
}

/// The directory of repos (`<owner>/<name>/<files>`) and what is known of
/// their files: hashes are computed once per (path, size, mtime).
pub(super) struct RepoStore {
    root: PathBuf,
    stored: Mutex<HashMap<PathBuf, CachedStored>>,
}

impl RepoStore {
    pub fn new(root: PathBuf) -> Self {
        RepoStore {
            root,
            stored: Mutex::new(HashMap::new()),
        }
    }

    /// The directory of `repo` (`owner/name`), if it names one on disk.
    pub fn repo_dir(&self, repo: &str) -> Option<PathBuf> {
        if validate_repo_id(repo).is_err() || !repo.contains('/') {
            return None;
        }
        let dir = self.root.join(repo);
        dir.is_dir().then_some(dir)
    }

    /// Records a file's sha256 without reading it, as an LFS file; holds
    /// while the file keeps its size and mtime. `rel` is `owner/name/path`.
    pub fn assume_sha256(&self, rel: &str, sha256: &str) -> io::Result<()> {
        let path = self.root.join(rel);
        let meta = fs::metadata(&path)?;
        lock(&self.stored).insert(
            path,
            CachedStored {
                size: meta.len(),
                mtime: mtime_ns(&meta),
                stored: Stored::Lfs {
                    sha256: sha256.to_string(),
                },
            },
        );
        Ok(())
    }

    /// How the Hub would keep this file. Only a file small enough for git
    /// is read whole; an LFS file is hashed as a stream.
    pub fn stored(&self, f: &RepoFile) -> io::Result<Stored> {
        if let Some(c) = lock(&self.stored).get(&f.path) {
            if c.size == f.size && c.mtime == f.mtime {
                return Ok(c.stored.clone());
            }
        }
        let stored = if lfs_by_name_or_size(&f.rel, f.size) {
            Stored::Lfs {
                sha256: crate::digest::sha256_file(&f.path)?,
            }
        } else {
            let data = fs::read(&f.path)?;
            // The Hub's upload check: binary content goes to LFS.
            if data.iter().take(BINARY_SNIFF_BYTES).any(|&b| b == 0) {
                Stored::Lfs {
                    sha256: hex::encode(Sha256::digest(&data)),
                }
            } else {
                Stored::Git {
                    blob_id: git_blob_id(&data),
                }
            }
        };
        lock(&self.stored).insert(
            f.path.clone(),
            CachedStored {
                size: f.size,
                mtime: f.mtime,
                stored: stored.clone(),
            },
        );
        Ok(stored)
    }
}

/// The files of a repo directory, hidden names skipped, sorted.
pub(super) fn walk(dir: &Path) -> Vec<RepoFile> {
    fn go(base: &Path, dir: &Path, out: &mut Vec<RepoFile>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let p = e.path();
            let Ok(meta) = fs::metadata(&p) else { continue };
            if meta.is_dir() {
                go(base, &p, out);
            } else if meta.is_file() {
                let Ok(rel) = p.strip_prefix(base) else {
                    continue;
                };
                let rel = rel.to_string_lossy().replace('\\', "/");
                if validate_repo_path(&rel).is_ok() {
                    out.push(RepoFile {
                        rel,
                        path: p.clone(),
                        size: meta.len(),
                        mtime: mtime_ns(&meta),
                    });
                }
            }
        }
    }
    let mut out = Vec::new();
    go(dir, dir, &mut out);
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

/// Files from this size on are LFS files whatever their name: the Hub
/// refuses larger files in git.
const LFS_MIN_SIZE: u64 = 10 << 20;

/// The Hub puts a file in LFS when these first bytes hold a NUL (binary).
const BINARY_SNIFF_BYTES: usize = 512;

/// Name patterns of the `.gitattributes` the Hub gives a new model repo
/// (`*.bin`, `*.safetensors`, …): such files are LFS files even when small.
const LFS_SUFFIXES: &[&str] = &[
    ".7z",
    ".arrow",
    ".bin",
    ".bz2",
    ".ckpt",
    ".ftz",
    ".gz",
    ".h5",
    ".joblib",
    ".mlmodel",
    ".model",
    ".msgpack",
    ".npy",
    ".npz",
    ".onnx",
    ".ot",
    ".parquet",
    ".pb",
    ".pickle",
    ".pkl",
    ".pt",
    ".pth",
    ".rar",
    ".safetensors",
    ".tar",
    ".tflite",
    ".tgz",
    ".wasm",
    ".xz",
    ".zip",
    ".zst",
];

/// Whether the Hub keeps a file in LFS by its name or size alone (binary
/// content is the other reason, checked on the bytes). A `.gguf` is binary
/// by format (its header holds NULs), so its name decides without a read.
fn lfs_by_name_or_size(rel: &str, size: u64) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    size >= LFS_MIN_SIZE
        || name.ends_with(".gguf")
        || LFS_SUFFIXES.iter().any(|s| name.ends_with(s))
        || name.contains(".tar.")
        || name.contains(".lfs.")
        || name.contains("tfevents")
        || rel.starts_with("saved_model/")
}

/// Git's object id of a file: sha1 of `blob <len>\0<bytes>`.
pub(super) fn git_blob_id(data: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", data.len()).as_bytes());
    h.update(data);
    hex::encode(h.finalize())
}

/// The pointer git holds for an LFS file.
pub(super) fn lfs_pointer(sha256: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

/// The mirror's commit id: a digest of the listing, 40 hex digits.
pub(super) fn commit_of(files: &[RepoFile]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.rel.as_bytes());
        h.update([0]);
        h.update(f.size.to_le_bytes());
        h.update(f.mtime.to_le_bytes());
    }
    hex::encode(h.finalize())[..40].to_string()
}

/// The shortest prefix of the commit id that names it (git's `--short`).
const MIN_SHORT_REVISION: usize = 7;

/// Whether `rev` names the mirror's one commit `commit`: `main`, `HEAD`,
/// `refs/heads/main`, the commit id or a prefix of it of at least 7 hex
/// digits (the mirror has one commit, so every such prefix is unique).
pub(super) fn names_commit(rev: &str, commit: &str) -> bool {
    let short = rev.len() >= MIN_SHORT_REVISION
        && rev.len() <= commit.len()
        && rev.bytes().all(|b| b.is_ascii_hexdigit())
        && commit.starts_with(&rev.to_ascii_lowercase());
    rev == "main" || rev == "HEAD" || rev == "refs/heads/main" || short
}

/// The latest mtime of the repo's files, as the Hub's dates (RFC 3339).
pub(super) fn last_modified(files: &[RepoFile]) -> String {
    let secs = files.iter().map(|f| f.mtime).max().unwrap_or(0) / 1_000_000_000;
    format_rfc3339(i64::try_from(secs).unwrap_or(0))
}
