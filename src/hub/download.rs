//! Verified, resumable, parallel download of one Hub file.
//!
//! Layout beside the destination `<dir>/<name>`:
//! * `<name>.part` — the bytes, preallocated to the full size;
//! * `<name>.part.state` — a 4 KiB JSON header (size, sha256, commit, chunk
//!   size) followed by one little-endian `u64` per chunk: the bytes of that
//!   chunk already on disk, counted from the chunk's start. A worker updates
//!   its slot after each block it writes, so a killed process loses at most
//!   one block per worker;
//! * `.<name>.verified.json` — written once the sha256 matched: size, mtime
//!   and sha256, so the next run can skip the file without reading it.
//!
//! Bytes are hashed in file order while they arrive: workers hand each block
//! to a hasher thread, which hashes contiguous prefixes from memory and only
//! reads from disk what was there before this run (or what it had to evict
//! to bound its memory). The file gets its final name only after size and
//! sha256 match the Hub's; a mismatch is deleted and fetched again.
use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::client::{validate_repo_id, FetchError, FileMeta, HubClient, RetryPolicy};
use super::error::{is_no_space, HubError};
use super::fsutil::{free_space, mtime_ns, open_rw, parent_dir, reserve, sync_dir};
use super::progress::{Progress, ProgressEvent};

const STATE_HEADER: u64 = 4096;
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// One file to fetch.
#[derive(Clone, Debug)]
pub struct FileRequest {
    /// `owner/name`.
    pub repo: String,
    /// A branch, tag or commit; it is pinned to the commit the HEAD reports.
    pub revision: String,
    /// The path inside the repo.
    pub file: String,
    /// Nothing is ever written outside this directory.
    pub dest_dir: PathBuf,
    /// The path under `dest_dir`; defaults to `file`.
    pub dest_name: Option<String>,
}

impl FileRequest {
    pub fn new(repo: &str, revision: &str, file: &str, dest_dir: impl Into<PathBuf>) -> Self {
        FileRequest {
            repo: repo.to_string(),
            revision: revision.to_string(),
            file: file.to_string(),
            dest_dir: dest_dir.into(),
            dest_name: None,
        }
    }
}

/// Tuning; the defaults suit a real Hub, tests shrink the waits.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Range requests in flight at once.
    pub parallel: usize,
    /// Bytes per range request (and per progress slot of the sidecar).
    pub chunk_size: u64,
    /// Bytes per write; also the most a killed worker can lose.
    pub block_size: usize,
    /// Retries of one chunk; a chunk that made progress starts counting anew.
    pub retry: RetryPolicy,
    /// No byte for this long counts as a failed attempt.
    pub stall_timeout: Duration,
    /// Free space kept beyond the bytes still to fetch.
    pub disk_margin: u64,
    /// Link or copy a matching blob from the user's HF cache.
    pub reuse_hf_cache: bool,
    /// Full refetches after a sha256 mismatch before giving up.
    pub verify_attempts: u32,
    /// Most bytes the hasher holds waiting for an earlier block.
    pub hash_buffer: usize,
    /// The run's stop signal: workers stop after their current block and
    /// the call returns [`HubError::Interrupted`], the part file resumable.
    pub cancel: crate::cancel::Cancel,
    /// A file the Hub replaced under the same name stays beside the new one
    /// as `<name>.replaced-<sha256 prefix>` instead of going: for a
    /// workspace that wants to compare before it lets the old bytes go.
    pub keep_replaced: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            parallel: 4,
            chunk_size: 32 << 20,
            block_size: 512 << 10,
            retry: RetryPolicy {
                attempts: 8,
                ..RetryPolicy::HUB_REQUEST
            },
            stall_timeout: Duration::from_secs(30),
            disk_margin: 256 << 20,
            reuse_hf_cache: true,
            verify_attempts: 3,
            hash_buffer: 256 << 20,
            cancel: crate::cancel::Cancel::default(),
            keep_replaced: false,
        }
    }
}

/// How the file came to be in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Fetched from scratch.
    Downloaded,
    /// Continued from `from` bytes already on disk.
    Resumed { from: u64 },
    /// Already present and verified; nothing fetched.
    AlreadyPresent,
    /// Taken from the HF cache (hard link when `linked`, else a copy).
    FromHfCache { linked: bool },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Downloaded => "downloaded",
            Outcome::Resumed { .. } => "resumed",
            Outcome::AlreadyPresent => "present",
            Outcome::FromHfCache { .. } => "hf-cache",
        }
    }
}

/// A file in place under its final name, verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downloaded {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub commit: Option<String>,
    /// Bytes that came over the network in this call.
    pub fetched: u64,
    pub outcome: Outcome,
    /// The file this one replaced, kept under another name
    /// ([`DownloadOptions::keep_replaced`]).
    pub kept: Option<PathBuf>,
}

/// What the sidecar and the verified record say about the file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Expected {
    repo: String,
    file: String,
    size: u64,
    sha256: Option<String>,
    etag: Option<String>,
    commit: Option<String>,
}

impl Expected {
    /// Same bytes expected (a new commit that keeps the file is the same).
    fn same_content(&self, other: &Expected) -> bool {
        self.size == other.size
            && self.sha256 == other.sha256
            && (self.sha256.is_some() || self.etag == other.etag)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StateHeader {
    version: u32,
    chunk_size: u64,
    expected: Expected,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    version: u32,
    expected: Expected,
    sha256: String,
    size: u64,
    mtime_ns: i64,
}

/// Refuses repo paths that could escape a directory or confuse a terminal.
pub fn validate_repo_path(name: &str) -> Result<(), HubError> {
    let bad = |reason| {
        Err(HubError::BadFileName {
            name: name.escape_debug().to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 1024 {
        return bad("empty or longer than 1024 bytes");
    }
    if name.contains('\\') {
        return bad("contains a backslash");
    }
    if name.chars().any(char::is_control) {
        return bad("contains control characters");
    }
    if name.starts_with('/') || name.as_bytes().get(1) == Some(&b':') {
        return bad("is an absolute path");
    }
    for part in name.split('/') {
        match part {
            "" => return bad("has an empty path component"),
            "." | ".." => return bad("has a `.` or `..` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Paths of one destination and its companions.
struct Paths {
    dest: PathBuf,
    part: PathBuf,
    state: PathBuf,
    record: PathBuf,
    dir: PathBuf,
}

impl Paths {
    fn new(dest_dir: &Path, rel: &str) -> Result<Self, HubError> {
        validate_repo_path(rel)?;
        fs::create_dir_all(dest_dir).map_err(|e| HubError::io(dest_dir, e))?;
        let root = fs::canonicalize(dest_dir).map_err(|e| HubError::io(dest_dir, e))?;
        // Create the subdirectories one by one, checking each resolves inside
        // `dest_dir` before anything is created within it (a symlinked
        // subdirectory must not lead the download elsewhere).
        let mut dir = dest_dir.to_path_buf();
        let parts: Vec<&str> = rel.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            dir.push(part);
            if !dir.exists() {
                fs::create_dir(&dir).map_err(|e| HubError::io(&dir, e))?;
            }
            let real = fs::canonicalize(&dir).map_err(|e| HubError::io(&dir, e))?;
            if !real.starts_with(&root) || !real.is_dir() {
                return Err(HubError::BadFileName {
                    name: rel.to_string(),
                    reason: "its directory resolves outside the destination",
                });
            }
        }
        Ok(Self::layout(dest_dir, rel))
    }

    /// The names only; no checks, nothing created.
    fn layout(dest_dir: &Path, rel: &str) -> Self {
        let dest = dest_dir.join(rel);
        let dir = parent_dir(&dest).to_path_buf();
        let base = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Paths {
            part: dir.join(format!("{base}.part")),
            state: dir.join(format!("{base}.part.state")),
            record: dir.join(format!(".{base}.verified.json")),
            dest,
            dir,
        }
    }

    fn remove_partial(&self) {
        let _ = fs::remove_file(&self.part);
        let _ = fs::remove_file(&self.state);
    }
}

/// Downloads one file to `req.dest_dir`, verified; see the module docs.
pub fn download_file(
    client: &HubClient,
    req: &FileRequest,
    opts: &DownloadOptions,
    progress: &dyn Progress,
) -> Result<Downloaded, HubError> {
    validate_repo_id(&req.repo)?;
    validate_repo_path(&req.file)?;
    if opts.cancel.is_cancelled() {
        return Err(HubError::Interrupted);
    }
    let rel = req.dest_name.as_deref().unwrap_or(&req.file);
    let paths = Paths::new(&req.dest_dir, rel)?;
    let label = rel;

    if client.config().offline {
        return offline(client, req, &paths, opts, progress, label);
    }

    let meta = match client.file_meta(&req.repo, &req.revision, &req.file) {
        Ok(m) => m,
        Err(e @ HubError::Network { .. }) => {
            // No network: a file verified earlier is still good.
            return match present(&paths, None) {
                Some(done) => Ok(done),
                None => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    let expected = Expected {
        repo: req.repo.clone(),
        file: req.file.clone(),
        size: meta.size,
        sha256: meta.sha256.clone(),
        etag: meta.etag.clone(),
        commit: meta.commit.clone(),
    };

    if let Some(done) = present(&paths, Some(&expected)) {
        paths.remove_partial();
        progress.event(&ProgressEvent::Done {
            file: label,
            size: done.size,
            fetched: 0,
            how: done.outcome.label(),
        });
        return Ok(done);
    }
    if let Some(done) = adopt_existing(&paths, &expected, progress, label)? {
        return Ok(done);
    }
    if opts.reuse_hf_cache {
        if let Some(sha) = &expected.sha256 {
            if let Some(blob) = client.cached_blob(&req.repo, sha) {
                if let Some(done) = reuse_blob(&blob, &paths, &expected, opts, progress, label)? {
                    return Ok(done);
                }
            }
        }
    }

    // Pin every range to the commit the HEAD resolved.
    let revision = meta.commit.clone().unwrap_or_else(|| req.revision.clone());
    let mut attempt = 1;
    loop {
        let fetched = fetch(
            client, req, &revision, &meta, &expected, &paths, opts, progress, label,
        );
        let (sha, fetched_bytes, present_at_start) = match fetched {
            Ok(v) => v,
            Err(e) => {
                if matches!(
                    e,
                    HubError::FileNotFound { .. }
                        | HubError::RepoNotFound { .. }
                        | HubError::RevisionNotFound { .. }
                ) {
                    paths.remove_partial();
                }
                return Err(e);
            }
        };
        match &expected.sha256 {
            Some(want) if *want != sha => {
                paths.remove_partial();
                if attempt >= opts.verify_attempts.max(1) {
                    return Err(HubError::ShaMismatch {
                        file: req.file.clone(),
                        expected: want.clone(),
                        actual: sha,
                        attempts: attempt,
                    });
                }
                progress.event(&ProgressEvent::Retry {
                    file: label,
                    attempt,
                    reason: "sha256 mismatch; deleted, fetching again",
                    wait: Duration::ZERO,
                });
                attempt += 1;
            }
            _ => {
                let outcome = if present_at_start > 0 {
                    Outcome::Resumed {
                        from: present_at_start,
                    }
                } else {
                    Outcome::Downloaded
                };
                let done = finalize(&paths, &expected, sha, fetched_bytes, outcome, opts)?;
                progress.event(&ProgressEvent::Done {
                    file: label,
                    size: done.size,
                    fetched: done.fetched,
                    how: done.outcome.label(),
                });
                return Ok(done);
            }
        }
    }
}

/// Downloads several files (the shards of one model, say) one after the
/// other, after checking that the bytes all of them still need fit on disk.
pub fn download_files(
    client: &HubClient,
    reqs: &[FileRequest],
    opts: &DownloadOptions,
    progress: &dyn Progress,
) -> Result<Vec<Downloaded>, HubError> {
    if !client.config().offline {
        let mut per_dir: BTreeMap<PathBuf, u64> = BTreeMap::new();
        for r in reqs {
            *per_dir.entry(r.dest_dir.clone()).or_default() += bytes_to_fetch(client, r)?;
        }
        for (dir, bytes) in per_dir {
            if bytes > 0 {
                fs::create_dir_all(&dir).map_err(|e| HubError::io(&dir, e))?;
                check_disk(&dir, bytes, opts.disk_margin)?;
            }
        }
    }
    reqs.iter()
        .map(|r| download_file(client, r, opts, progress))
        .collect()
}

/// Bytes of `names` (file names in `dest_dir`) already claimed on its
/// disk: whole files, and the blocks a partial download reserved. A run's
/// disk check needs room only for the rest.
pub fn bytes_on_disk(dest_dir: &Path, names: &[&str]) -> u64 {
    names
        .iter()
        .map(|name| {
            let paths = Paths::layout(dest_dir, name);
            match fs::metadata(&paths.dest) {
                Ok(m) if m.is_file() => m.len(),
                _ => fs::metadata(&paths.part)
                    .map(|m| m.blocks() * 512)
                    .unwrap_or(0),
            }
        })
        .sum()
}

/// Free bytes for an unprivileged user on the file system that holds
/// `path` (or would: its nearest existing ancestor), and that file
/// system's device number, to add up what several downloads need there.
pub fn free_space_for(path: &Path) -> io::Result<(u64, u64)> {
    let mut at = path;
    loop {
        match fs::metadata(at) {
            Ok(m) => return Ok((free_space(at)?, m.dev())),
            Err(e) => match at.parent() {
                Some(up) if !up.as_os_str().is_empty() => at = up,
                _ => return Err(e),
            },
        }
    }
}

/// The bytes a request still has to bring over the network: 0 when the file
/// is verified in place or its blob is in the HF cache, the missing part of
/// a resumable `.part`, else the whole size. Makes one HEAD request.
pub fn bytes_to_fetch(client: &HubClient, req: &FileRequest) -> Result<u64, HubError> {
    validate_repo_path(&req.file)?;
    let rel = req.dest_name.as_deref().unwrap_or(&req.file);
    validate_repo_path(rel)?;
    let meta = client.file_meta(&req.repo, &req.revision, &req.file)?;
    let expected = Expected {
        repo: req.repo.clone(),
        file: req.file.clone(),
        size: meta.size,
        sha256: meta.sha256.clone(),
        etag: meta.etag.clone(),
        commit: meta.commit.clone(),
    };
    let paths = Paths::layout(&req.dest_dir, rel);
    if present(&paths, Some(&expected)).is_some() {
        return Ok(0);
    }
    if let Some(sha) = &meta.sha256 {
        if client.cached_blob(&req.repo, sha).is_some() {
            return Ok(0);
        }
    }
    let done = State::load(&paths, &expected)
        .map(|(_, d)| d.iter().map(|x| x.load(Ordering::Relaxed)).sum())
        .unwrap_or(0);
    Ok(meta.size.saturating_sub(done))
}

/// Offline: a verified file in place, or the HF cache's snapshot of it.
fn offline(
    client: &HubClient,
    req: &FileRequest,
    paths: &Paths,
    opts: &DownloadOptions,
    progress: &dyn Progress,
    label: &str,
) -> Result<Downloaded, HubError> {
    if let Some(done) = present(paths, None) {
        return Ok(done);
    }
    if let Some((blob, sha, commit)) =
        client.cached_snapshot_file(&req.repo, &req.revision, &req.file)
    {
        let size = fs::metadata(&blob)
            .map_err(|e| HubError::io(&blob, e))?
            .len();
        let expected = Expected {
            repo: req.repo.clone(),
            file: req.file.clone(),
            size,
            sha256: Some(sha),
            etag: None,
            commit: Some(commit),
        };
        if let Some(done) = reuse_blob(&blob, paths, &expected, opts, progress, label)? {
            return Ok(done);
        }
    }
    Err(HubError::Offline {
        what: format!("`{}` of `{}`", req.file, req.repo),
    })
}

/// The verified record, if it still describes the file on disk (same size
/// and mtime).
fn verified_record(paths: &Paths) -> Option<Record> {
    let meta = fs::metadata(&paths.dest).ok()?;
    let rec: Record = serde_json::from_slice(&fs::read(&paths.record).ok()?).ok()?;
    let unchanged = meta.is_file()
        && rec.size == meta.len()
        && i128::from(rec.mtime_ns) == mtime_ns(&meta)
        && rec
            .expected
            .sha256
            .as_ref()
            .is_none_or(|s| *s == rec.sha256);
    unchanged.then_some(rec)
}

/// What the Hub stated for `rel` under `dest_dir` when it was downloaded
/// and verified, while the file is still the one verified: the identity an
/// upstream check compares with. `None`: not there, or changed since.
pub fn verified_identity(dest_dir: &Path, rel: &str) -> Option<super::upstream::Identity> {
    let rec = verified_record(&Paths::layout(dest_dir, rel))?;
    Some(super::upstream::Identity {
        size: rec.expected.size,
        sha256: rec.expected.sha256,
        etag: rec.expected.etag,
        commit: rec.expected.commit,
    })
}

/// The verified record, if it still describes the file on disk and, when
/// known, the content the Hub expects now.
fn present(paths: &Paths, expected: Option<&Expected>) -> Option<Downloaded> {
    let rec = verified_record(paths)?;
    let current = expected.is_none_or(|e| e.same_content(&rec.expected));
    current.then(|| Downloaded {
        path: paths.dest.clone(),
        size: rec.size,
        sha256: rec.sha256,
        commit: rec.expected.commit,
        fetched: 0,
        outcome: Outcome::AlreadyPresent,
        kept: None,
    })
}

/// A file under the final name with no record (placed by hand, or a run
/// killed between rename and record): hash it once and keep it if it matches.
fn adopt_existing(
    paths: &Paths,
    expected: &Expected,
    progress: &dyn Progress,
    label: &str,
) -> Result<Option<Downloaded>, HubError> {
    let Some(want) = &expected.sha256 else {
        return Ok(None);
    };
    let Ok(meta) = fs::metadata(&paths.dest) else {
        return Ok(None);
    };
    if !meta.is_file() || meta.len() != expected.size {
        return Ok(None);
    }
    progress.event(&ProgressEvent::Verifying { file: label });
    let sha = hash_file(&paths.dest)?;
    if sha != *want {
        return Ok(None);
    }
    let done = write_record(
        paths,
        &paths.dest,
        expected,
        sha,
        0,
        Outcome::AlreadyPresent,
    )?;
    paths.remove_partial();
    Ok(Some(done))
}

fn hash_file(path: &Path) -> Result<String, HubError> {
    crate::digest::sha256_file(path).map_err(|e| HubError::io(path, e))
}

/// Links (or copies) an HF-cache blob into place after checking its sha256.
/// `None` when the blob is not the expected content.
fn reuse_blob(
    blob: &Path,
    paths: &Paths,
    expected: &Expected,
    opts: &DownloadOptions,
    progress: &dyn Progress,
    label: &str,
) -> Result<Option<Downloaded>, HubError> {
    let Some(want) = &expected.sha256 else {
        return Ok(None);
    };
    let blob = fs::canonicalize(blob).map_err(|e| HubError::io(blob, e))?;
    if fs::metadata(&blob).map(|m| m.len()).ok() != Some(expected.size) {
        return Ok(None);
    }
    paths.remove_partial();
    progress.event(&ProgressEvent::Verifying { file: label });
    let (linked, sha) = if fs::hard_link(&blob, &paths.part).is_ok() {
        (true, hash_file(&paths.part)?)
    } else {
        check_disk(&paths.dir, expected.size, opts.disk_margin)?;
        (false, copy_hashing(&blob, &paths.part)?)
    };
    if sha != *want {
        // Removing a link leaves the cache's blob alone.
        let _ = fs::remove_file(&paths.part);
        return Ok(None);
    }
    let done = finalize(
        paths,
        expected,
        sha,
        0,
        Outcome::FromHfCache { linked },
        opts,
    )?;
    progress.event(&ProgressEvent::Done {
        file: label,
        size: done.size,
        fetched: 0,
        how: done.outcome.label(),
    });
    Ok(Some(done))
}

fn copy_hashing(from: &Path, to: &Path) -> Result<String, HubError> {
    use std::io::Write;
    let mut src = File::open(from).map_err(|e| HubError::io(from, e))?;
    let mut dst = File::create(to).map_err(|e| HubError::io(to, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf).map_err(|e| HubError::io(from, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        dst.write_all(&buf[..n])
            .map_err(|e| HubError::write(to, parent_dir(to), e))?;
    }
    Ok(hex::encode(h.finalize()))
}

fn check_disk(dir: &Path, bytes: u64, margin: u64) -> Result<(), HubError> {
    let available = free_space(dir).map_err(|e| HubError::io(dir, e))?;
    let needed = bytes.saturating_add(margin);
    if available < needed {
        return Err(HubError::DiskFull {
            path: dir.to_path_buf(),
            needed,
            available,
            margin,
        });
    }
    Ok(())
}

/// Records the verified part, then gives it the final name (record first:
/// the rename keeps the mtime, and a crash in between only costs a re-hash).
fn finalize(
    paths: &Paths,
    expected: &Expected,
    sha: String,
    fetched: u64,
    outcome: Outcome,
    opts: &DownloadOptions,
) -> Result<Downloaded, HubError> {
    // Before the new record: the old one names the kept copy.
    let kept = if opts.keep_replaced {
        keep_replaced(paths)?
    } else {
        None
    };
    let f = File::open(&paths.part).map_err(|e| HubError::io(&paths.part, e))?;
    f.sync_all()
        .map_err(|e| HubError::write(&paths.part, &paths.dir, e))?;
    let done = write_record(paths, &paths.part, expected, sha, fetched, outcome)?;
    crate::crashpoint::point("download: verified, not yet renamed");
    fs::rename(&paths.part, &paths.dest)
        .map_err(|e| HubError::write(&paths.dest, &paths.dir, e))?;
    sync_dir(&paths.dir).map_err(|e| HubError::write(&paths.dir, &paths.dir, e))?;
    let _ = fs::remove_file(&paths.state);
    Ok(Downloaded { kept, ..done })
}

/// A second name for the file about to be replaced: a hard link, so no
/// byte is copied and the rename that follows cannot lose it. A link left
/// by a run killed before its rename is the same file, and is reused.
fn keep_replaced(paths: &Paths) -> Result<Option<PathBuf>, HubError> {
    match fs::symlink_metadata(&paths.dest) {
        Ok(m) if m.is_file() => {}
        _ => return Ok(None),
    }
    let tag = verified_record(paths)
        .and_then(|r| r.sha256.get(..12).map(str::to_string))
        .unwrap_or_else(|| "unverified".into());
    let base = paths
        .dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kept = paths.dir.join(format!("{base}{REPLACED_INFIX}{tag}"));
    match fs::hard_link(&paths.dest, &kept) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(HubError::write(&kept, &paths.dir, e)),
    }
    Ok(Some(kept))
}

/// Between a file's name and the sha256 prefix of the bytes it had, in
/// the name a replaced file is kept under.
pub const REPLACED_INFIX: &str = ".replaced-";

fn write_record(
    paths: &Paths,
    file: &Path,
    expected: &Expected,
    sha: String,
    fetched: u64,
    outcome: Outcome,
) -> Result<Downloaded, HubError> {
    let meta = fs::metadata(file).map_err(|e| HubError::io(file, e))?;
    let rec = Record {
        version: 1,
        expected: expected.clone(),
        sha256: sha.clone(),
        size: meta.len(),
        mtime_ns: i64::try_from(mtime_ns(&meta)).unwrap_or(i64::MAX),
    };
    let json = serde_json::to_vec_pretty(&rec).map_err(|e| HubError::io(file, e.into()))?;
    crate::atomic::write(&paths.record, &json)
        .map_err(|e| HubError::write(&paths.record, &paths.dir, e))?;
    Ok(Downloaded {
        path: paths.dest.clone(),
        size: meta.len(),
        sha256: sha,
        commit: expected.commit.clone(),
        fetched,
        outcome,
        kept: None,
    })
}

/// The sidecar of a `.part` file: which bytes of each chunk are on disk.
struct State {
    file: File,
    chunk_size: u64,
    done: Vec<AtomicU64>,
}

impl State {
    fn slot_count(size: u64, chunk: u64) -> usize {
        size.div_ceil(chunk.max(1)) as usize
    }

    /// Opens the sidecar if it matches `expected` and the part file; else
    /// starts both afresh.
    fn open(
        paths: &Paths,
        expected: &Expected,
        chunk_size: u64,
    ) -> Result<(State, File), HubError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            let dir = paths.dir.clone();
            move |e| HubError::write(p, &dir, e)
        };
        // Lock first, so a second process never rewrites a sidecar in use;
        // the sidecar is therefore rewritten in place, never renamed over.
        let file = open_rw(&paths.state).map_err(io(&paths.state))?;
        lock(&file, &paths.state)?;
        if let Some((chunk_size, done)) = Self::load(paths, expected) {
            let part = open_rw(&paths.part).map_err(io(&paths.part))?;
            return Ok((
                State {
                    file,
                    chunk_size,
                    done,
                },
                part,
            ));
        }
        let _ = fs::remove_file(&paths.part);
        let part = open_rw(&paths.part).map_err(io(&paths.part))?;
        let header = StateHeader {
            version: 1,
            chunk_size,
            expected: expected.clone(),
        };
        let mut bytes =
            serde_json::to_vec(&header).map_err(|e| HubError::io(&paths.state, e.into()))?;
        if bytes.len() as u64 >= STATE_HEADER {
            return Err(HubError::io(
                &paths.state,
                io::Error::new(io::ErrorKind::InvalidData, "sidecar header too long"),
            ));
        }
        bytes.resize(STATE_HEADER as usize - 1, b' ');
        bytes.push(b'\n');
        let n = Self::slot_count(expected.size, chunk_size);
        bytes.resize(bytes.len() + n * 8, 0);
        file.set_len(0).map_err(io(&paths.state))?;
        file.write_all_at(&bytes, 0).map_err(io(&paths.state))?;
        file.sync_data().map_err(io(&paths.state))?;
        let done = (0..n).map(|_| AtomicU64::new(0)).collect();
        Ok((
            State {
                file,
                chunk_size,
                done,
            },
            part,
        ))
    }

    fn load(paths: &Paths, expected: &Expected) -> Option<(u64, Vec<AtomicU64>)> {
        let (Ok(bytes), Ok(part_meta)) = (fs::read(&paths.state), fs::metadata(&paths.part)) else {
            return None;
        };
        if bytes.len() < STATE_HEADER as usize || part_meta.len() != expected.size {
            return None;
        }
        let Ok(header) = serde_json::from_slice::<StateHeader>(&bytes[..STATE_HEADER as usize])
        else {
            return None;
        };
        if header.version != 1 || header.chunk_size == 0 || !header.expected.same_content(expected)
        {
            return None;
        }
        let n = Self::slot_count(expected.size, header.chunk_size);
        let slots = &bytes[STATE_HEADER as usize..];
        if slots.len() != n * 8 {
            return None;
        }
        let mut done = Vec::with_capacity(n);
        for (i, s) in slots.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(s);
            let v = u64::from_le_bytes(b);
            if v > chunk_len(i, header.chunk_size, expected.size) {
                return None;
            }
            done.push(AtomicU64::new(v));
        }
        Some((header.chunk_size, done))
    }

    fn total_done(&self) -> u64 {
        self.done.iter().map(|d| d.load(Ordering::Acquire)).sum()
    }

    /// Persists chunk `i`'s count (a positional write of 8 bytes; the data
    /// it covers was written before).
    fn save(&self, i: usize) -> io::Result<()> {
        let v = self.done[i].load(Ordering::Acquire);
        self.file
            .write_all_at(&v.to_le_bytes(), STATE_HEADER + 8 * i as u64)
    }
}

fn chunk_len(i: usize, chunk: u64, size: u64) -> u64 {
    let start = i as u64 * chunk;
    size.saturating_sub(start).min(chunk)
}

/// Takes an exclusive lock so two processes never fill one `.part`;
/// released when the file closes.
fn lock(file: &File, path: &Path) -> Result<(), HubError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(HubError::io(
            path,
            io::Error::new(
                io::ErrorKind::WouldBlock,
                "another process is downloading this file",
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(HubError::io(path, e)),
    }
}

/// Everything the workers and the hasher share during one transfer.
struct Shared<'a> {
    client: &'a HubClient,
    req: &'a FileRequest,
    revision: &'a str,
    opts: &'a DownloadOptions,
    progress: &'a dyn Progress,
    label: &'a str,
    size: u64,
    part: &'a File,
    state: &'a State,
    queue: Mutex<VecDeque<usize>>,
    abort: AtomicBool,
    range_ignored: AtomicBool,
    fetched: AtomicU64,
    /// Block buffers the hasher has finished with, reused by the workers
    /// (fresh large allocations cost page faults on every block).
    pool: Mutex<Vec<Vec<u8>>>,
    write_lock: Mutex<()>,
    error: Mutex<Option<HubError>>,
}

impl Shared<'_> {
    fn fail(&self, e: HubError) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
        self.abort.store(true, Ordering::Release);
    }

    fn take_buf(&self, len: usize) -> Vec<u8> {
        let mut b = self
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        b.resize(len, 0);
        b
    }

    fn give_buf(&self, b: Vec<u8>) {
        if let Ok(mut p) = self.pool.lock() {
            if p.len() < 64 {
                p.push(b);
            }
        }
    }

    fn aborted(&self) -> bool {
        self.abort.load(Ordering::Acquire) || self.opts.cancel.is_cancelled()
    }

    /// Writes bytes that start at `offset`, skipping what the sidecar says
    /// is on disk already (a whole-file stream re-sends those), hands the
    /// new bytes to the hasher and records them.
    fn absorb(
        &self,
        offset: u64,
        data: Vec<u8>,
        tx: &SyncSender<(u64, Vec<u8>)>,
    ) -> io::Result<()> {
        let cs = self.state.chunk_size;
        let end = offset + data.len() as u64;
        let mut data = data;
        let mut pos = offset;
        while pos < end {
            let c = (pos / cs) as usize;
            let c_start = c as u64 * cs;
            let piece_end = (c_start + cs).min(end);
            let have = c_start + self.state.done[c].load(Ordering::Acquire);
            if pos < have {
                pos = have.min(piece_end);
                continue;
            }
            if pos > have {
                return Err(io::Error::other("write past the recorded end of a chunk"));
            }
            let buf = if pos == offset && piece_end == end {
                std::mem::take(&mut data)
            } else {
                data[(pos - offset) as usize..(piece_end - offset) as usize].to_vec()
            };
            {
                // One writer at a time: parallel writers to one file contend
                // on the inode lock in the kernel, which spins and burns the
                // CPU that hashing needs.
                let _w = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
                self.part.write_all_at(&buf, pos)?;
            }
            let n = buf.len() as u64;
            // Send before publishing the count: a hasher that sees the count
            // finds the block in its channel and need not read the disk.
            let _ = tx.send((pos, buf));
            let now = self.state.done[c].fetch_add(n, Ordering::AcqRel) + n;
            self.state.save(c)?;
            if (now >> 22) != ((now - n) >> 22) {
                crate::crashpoint::point("download: 4 MiB more on disk");
            }
            if now == chunk_len(c, cs, self.size) {
                // Start writeback of the finished chunk now, so the final
                // fsync has little left to wait for.
                start_writeback(self.part, c_start, now);
            }
            pos += n;
        }
        Ok(())
    }
}

/// Asks the kernel to begin writing `[start, start+len)` to disk without
/// waiting for it.
fn start_writeback(file: &File, start: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        if let (Ok(off), Ok(n)) = (libc::off64_t::try_from(start), libc::off64_t::try_from(len)) {
            // SAFETY: a valid descriptor; the call only schedules I/O.
            unsafe {
                libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, start, len);
}

/// Fills `buf` as far as the stream allows; bytes that arrived before an
/// error are returned with it, so a cut loses nothing that was received.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// Sleeps in small steps so an abort is noticed.
fn nap(shared: &Shared<'_>, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !shared.aborted() {
        std::thread::sleep(Duration::from_millis(20).min(d));
    }
}

/// One attempt's failure, from the worker's point of view.
enum Attempt {
    Retry(String, Option<Duration>),
    Fatal(HubError),
    RangeIgnored,
}

/// Streams `[start, end)` (or the whole file when `range` is false) into
/// the part file.
fn transfer(
    shared: &Shared<'_>,
    range: Option<(u64, u64)>,
    tx: &SyncSender<(u64, Vec<u8>)>,
) -> Result<(), Attempt> {
    let body = shared
        .client
        .open_content(
            &shared.req.repo,
            shared.revision,
            &shared.req.file,
            range,
            shared.opts.stall_timeout,
        )
        .map_err(|e| match e {
            FetchError::Transient {
                reason,
                retry_after,
            } => Attempt::Retry(reason, retry_after),
            FetchError::RangeIgnored => Attempt::RangeIgnored,
            FetchError::Fatal(e) => Attempt::Fatal(e),
        })?;
    let (mut pos, want) = match range {
        Some((s, e)) => (s, e - s),
        None => (0, shared.size),
    };
    if range.is_none() && body.len != u64::MAX && body.len != shared.size {
        return Err(Attempt::Fatal(HubError::SizeMismatch {
            file: shared.req.file.clone(),
            expected: shared.size,
            actual: body.len,
        }));
    }
    let mut reader = body.reader.take(want);
    let end = pos + want;
    while pos < end {
        if shared.aborted() {
            return Ok(());
        }
        let len = (end - pos).min(shared.opts.block_size as u64) as usize;
        let mut buf = shared.take_buf(len);
        let (n, err) = read_full(&mut reader, &mut buf);
        buf.truncate(n);
        if n > 0 {
            shared.fetched.fetch_add(n as u64, Ordering::Relaxed);
            shared.absorb(pos, buf, tx).map_err(|e| {
                Attempt::Fatal(if is_no_space(&e) {
                    let dir = &shared.req.dest_dir;
                    HubError::DiskFull {
                        path: dir.clone(),
                        needed: shared.size.saturating_sub(shared.state.total_done()),
                        available: free_space(dir).unwrap_or(0),
                        margin: shared.opts.disk_margin,
                    }
                } else {
                    HubError::io(&shared.req.dest_dir, e)
                })
            })?;
            pos += n as u64;
        }
        if let Some(e) = err {
            let reason = if e.kind() == io::ErrorKind::TimedOut
                || e.to_string().to_ascii_lowercase().contains("timeout")
            {
                format!("stalled: no bytes for {:?}", shared.opts.stall_timeout)
            } else {
                format!("connection cut: {e}")
            };
            return Err(Attempt::Retry(reason, None));
        }
        if n < len {
            return Err(Attempt::Retry(
                format!("connection closed after {pos} of {end} bytes"),
                None,
            ));
        }
    }
    Ok(())
}

/// Runs transfers with retries: `chunk` is `Some(i)` in range mode, `None`
/// for the single whole-file stream.
fn worker(shared: &Shared<'_>, tx: SyncSender<(u64, Vec<u8>)>, stream: bool) {
    let cs = shared.state.chunk_size;
    loop {
        if shared.aborted() {
            return;
        }
        let chunk = if stream {
            None
        } else {
            match shared.queue.lock().ok().and_then(|mut q| q.pop_front()) {
                Some(c) => Some(c),
                None => return,
            }
        };
        let mut attempt = 1u32;
        loop {
            if shared.aborted() {
                return;
            }
            let range = chunk.map(|c| {
                let start = c as u64 * cs + shared.state.done[c].load(Ordering::Acquire);
                (start, (c as u64 * cs + cs).min(shared.size))
            });
            if range.is_some_and(|(s, e)| s >= e) {
                break;
            }
            let before = shared.fetched.load(Ordering::Relaxed);
            match transfer(shared, range, &tx) {
                Ok(()) => break,
                Err(Attempt::Fatal(e)) => return shared.fail(e),
                Err(Attempt::RangeIgnored) => {
                    shared.range_ignored.store(true, Ordering::Release);
                    shared.abort.store(true, Ordering::Release);
                    return;
                }
                Err(Attempt::Retry(reason, retry_after)) => {
                    if shared.fetched.load(Ordering::Relaxed) > before {
                        attempt = 1; // it made progress: a flaky link, not a dead one
                    }
                    if attempt >= shared.opts.retry.attempts {
                        return shared.fail(HubError::RetriesExhausted {
                            file: shared.req.file.clone(),
                            attempts: attempt,
                            last: reason,
                        });
                    }
                    let wait = retry_after
                        .map(|d| d.min(shared.opts.retry.max_backoff))
                        .unwrap_or_else(|| shared.opts.retry.jittered_delay_before(attempt + 1));
                    shared.progress.event(&ProgressEvent::Retry {
                        file: shared.label,
                        attempt,
                        reason: &reason,
                        wait,
                    });
                    nap(shared, wait);
                    attempt += 1;
                }
            }
        }
        if stream {
            return;
        }
    }
}

/// Hashes the file in order: from the blocks workers hand over, else from
/// disk for bytes that were there already (or that it evicted).
fn hasher(shared: &Shared<'_>, rx: Receiver<(u64, Vec<u8>)>) -> io::Result<String> {
    let size = shared.size;
    let cs = shared.state.chunk_size;
    let mut h = Sha256::new();
    let mut pos = 0u64;
    let mut pending: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut pending_bytes = 0usize;
    let mut disk_buf = vec![0u8; 4 << 20];
    let mut disconnected = false;
    let insert =
        |pending: &mut BTreeMap<u64, Vec<u8>>, pb: &mut usize, (off, buf): (u64, Vec<u8>)| {
            *pb += buf.len();
            if let Some(old) = pending.insert(off, buf) {
                *pb -= old.len();
            }
        };
    while pos < size {
        loop {
            match rx.try_recv() {
                Ok(item) => insert(&mut pending, &mut pending_bytes, item),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        let mut progressed = false;
        while let Some(entry) = pending.first_entry() {
            let off = *entry.key();
            let len = entry.get().len() as u64;
            if off > pos {
                break;
            }
            let buf = entry.remove();
            pending_bytes -= buf.len();
            if off + len > pos {
                h.update(&buf[(pos - off) as usize..]);
                pos = off + len;
                progressed = true;
            }
            shared.give_buf(buf);
        }
        if progressed {
            continue;
        }
        if pos >= size {
            break;
        }
        let c = (pos / cs) as usize;
        let on_disk = c as u64 * cs + shared.state.done[c].load(Ordering::Acquire);
        if on_disk > pos {
            let mut upto = on_disk.min(pos + disk_buf.len() as u64);
            if let Some((&next, _)) = pending.first_key_value() {
                upto = upto.min(next);
            }
            let n = (upto - pos) as usize;
            shared.part.read_exact_at(&mut disk_buf[..n], pos)?;
            h.update(&disk_buf[..n]);
            pos = upto;
            continue;
        }
        while pending_bytes > shared.opts.hash_buffer {
            match pending.pop_last() {
                Some((_, b)) => pending_bytes -= b.len(),
                None => break,
            }
        }
        if shared.aborted() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "transfer aborted",
            ));
        }
        if disconnected {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "workers ended early",
            ));
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(item) => insert(&mut pending, &mut pending_bytes, item),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => disconnected = true,
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// One full pass: resume or start the part file, fetch what is missing,
/// hash everything. Returns (sha256, bytes fetched, bytes present at start).
#[allow(clippy::too_many_arguments)]
fn fetch(
    client: &HubClient,
    req: &FileRequest,
    revision: &str,
    meta: &FileMeta,
    expected: &Expected,
    paths: &Paths,
    opts: &DownloadOptions,
    progress: &dyn Progress,
    label: &str,
) -> Result<(String, u64, u64), HubError> {
    let size = expected.size;
    // Blocks already reserved by an earlier run need no new space. Checked
    // before anything is created, so a refusal leaves no trace.
    let allocated = fs::metadata(&paths.part)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0);
    check_disk(&paths.dir, size.saturating_sub(allocated), opts.disk_margin)?;
    let (state, part) = State::open(paths, expected, opts.chunk_size.max(1))?;
    let present = state.total_done();
    reserve(&part, size).map_err(|e| {
        if is_no_space(&e) {
            HubError::DiskFull {
                path: paths.dir.clone(),
                needed: size,
                available: free_space(&paths.dir).unwrap_or(0),
                margin: opts.disk_margin,
            }
        } else {
            HubError::io(&paths.part, e)
        }
    })?;
    if size == 0 {
        return Ok((EMPTY_SHA256.to_string(), 0, 0));
    }
    progress.event(&ProgressEvent::Start {
        file: label,
        total: size,
        present,
    });
    if present > 0 {
        progress.event(&ProgressEvent::Verifying { file: label });
    }
    let mut stream = !meta.accept_ranges;
    let mut fetched_total = 0;
    loop {
        let shared = Shared {
            client,
            req,
            revision,
            opts,
            progress,
            label,
            size,
            part: &part,
            state: &state,
            queue: Mutex::new(
                (0..state.done.len())
                    .filter(|&c| {
                        state.done[c].load(Ordering::Acquire) < chunk_len(c, state.chunk_size, size)
                    })
                    .collect(),
            ),
            abort: AtomicBool::new(false),
            range_ignored: AtomicBool::new(false),
            fetched: AtomicU64::new(0),
            pool: Mutex::new(Vec::new()),
            write_lock: Mutex::new(()),
            error: Mutex::new(None),
        };
        let workers = if stream {
            1
        } else {
            opts.parallel
                .clamp(1, 64)
                .min(shared.queue.lock().map(|q| q.len()).unwrap_or(1).max(1))
        };
        let depth = (opts.hash_buffer / opts.block_size.max(1)).clamp(16, 4096);
        let (tx, rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(depth);
        let result = std::thread::scope(|s| {
            let shared = &shared;
            let hash = s.spawn(move || {
                let r = hasher(shared, rx);
                if r.is_err() {
                    // Stop the workers too: the pass cannot complete.
                    shared.abort.store(true, Ordering::Release);
                }
                r
            });
            for _ in 0..workers {
                let tx = tx.clone();
                s.spawn(move || worker(shared, tx, stream));
            }
            drop(tx);
            let mut window: VecDeque<(Instant, u64)> = VecDeque::new();
            while !hash.is_finished() {
                std::thread::sleep(Duration::from_millis(100));
                let done = state.total_done();
                let now = Instant::now();
                window.push_back((now, done));
                while window.len() > 30 {
                    window.pop_front();
                }
                let rate = match window.front() {
                    Some(&(t0, d0)) if now > t0 => {
                        (done.saturating_sub(d0)) as f64 / (now - t0).as_secs_f64()
                    }
                    _ => 0.0,
                };
                progress.event(&ProgressEvent::Bytes {
                    file: label,
                    done,
                    total: size,
                    rate,
                });
            }
            hash.join()
        });
        fetched_total += shared.fetched.load(Ordering::Relaxed);
        if opts.cancel.is_cancelled() {
            // Before anything else: a stopped pass hashed only part of the file.
            return Err(HubError::Interrupted);
        }
        if let Some(e) = shared.error.lock().ok().and_then(|mut e| e.take()) {
            return Err(e);
        }
        if shared.range_ignored.load(Ordering::Acquire) && !stream {
            // The server ignores ranges: one whole-file stream instead.
            stream = true;
            continue;
        }
        return match result {
            Ok(Ok(sha)) => Ok((sha, fetched_total, present)),
            Ok(Err(e)) => Err(HubError::io(&paths.part, e)),
            Err(_) => Err(HubError::io(
                &paths.part,
                io::Error::other("hasher thread panicked"),
            )),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_refused() {
        for bad in [
            "../x.gguf",
            "a/../../x",
            "/etc/passwd",
            "a\\b.gguf",
            "a\nb",
            "a\u{1b}[2J",
            "",
            "a//b",
            "./a",
            "C:x",
        ] {
            assert!(validate_repo_path(bad).is_err(), "{bad:?} accepted");
        }
        for ok in [
            "model.gguf",
            "Q4_K_M/model-00001-of-00003.gguf",
            "a..b.gguf",
        ] {
            assert!(validate_repo_path(ok).is_ok(), "{ok:?} refused");
        }
    }

    #[test]
    fn chunk_lengths() {
        assert_eq!(chunk_len(0, 10, 25), 10);
        assert_eq!(chunk_len(2, 10, 25), 5);
        assert_eq!(chunk_len(3, 10, 25), 0);
        assert_eq!(State::slot_count(25, 10), 3);
    }
}
