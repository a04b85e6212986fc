//! A local Hub mirror: serves `<root>/<owner>/<name>/<files>` over the Hub's
//! routes on a loopback (or any) address, so `onboard`, huggingface_hub
//! (`hf download`, `snapshot_download`, `HfFileSystem`, …) and llama.cpp's
//! `-hf` downloader work on an air-gapped machine with
//! `HF_ENDPOINT=http://127.0.0.1:PORT` (tests/hub_clients.rs runs them).
//!
//! Routes: `GET /api/models/{repo}[/revision/{rev}][?blobs=true]`,
//! `GET /api/models/{repo}/tree/{rev}[/{path}]`, `GET …/refs`,
//! `GET …/commits/{rev}`, `POST …/paths-info/{rev}`,
//! `HEAD|GET /{repo}/resolve/{rev}/{file}` with `ETag`, `X-Repo-Commit`,
//! `Accept-Ranges` and `206` + `Content-Range`. It never sends `X-Xet-Hash`
//! (clients would switch to the Xet protocol).
//!
//! Files are kept as the Hub keeps them: LFS for the names of its default
//! `.gitattributes` (and `.gguf`), binary content or 10 MiB and more (sha256 in
//! `lfs.oid`, `X-Linked-Etag`, `X-Linked-Size`), git for the rest (`oid` and
//! `ETag` are git blob ids). Hashes are computed once per (path, size, mtime).
//!
//! A mirror has no git history: one commit (a digest of the listing: paths,
//! sizes, mtimes) on one branch, `main`; `HEAD`, the commit id and any
//! prefix of it of 7 or more hex digits name it too. The commit changes when
//! a file changes.
//!
//! For tests the handle has fault switches (errors, cut, stalled or throttled bodies,
//! wrong bytes, 404 after HEAD, no range support), an optional bearer token
//! (a gated repo) and a request log.
//!
//! Every resource a client can make it hold is bounded ([`MirrorLimits`]):
//! connections (the excess get `503` with `Retry-After`), the bytes of a
//! request head (read no further than the cap: `431`), the time to send
//! it (slow clients are dropped), and the request log (a ring). It is the
//! Hub of air-gapped machines and of the main job, so one misbehaving
//! client must not take it down or starve the others.
use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::client::validate_repo_id;
use super::download::validate_repo_path;
use super::fsutil::mtime_ns;
use crate::workflow::state::format_rfc3339;

/// Which requests a "fail the next N" switch hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultScope {
    /// Every request, metadata included.
    Any,
    /// Only `GET /{repo}/resolve/...` (content).
    ContentGet,
}

/// One served request, as the tests inspect it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Arrival order, from 1 (a stalled request is logged when it ends).
    pub seq: u64,
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    /// The raw `Range` header, if any.
    pub range: Option<String>,
    pub status: u16,
    /// Body bytes actually written.
    pub bytes: u64,
}

impl LogEntry {
    /// Whether this was a content download (`GET .../resolve/...` that
    /// sent the file, or `GET /_cdn/...` after a redirect).
    pub fn is_content_get(&self) -> bool {
        self.method == "GET"
            && (self.path.starts_with("/_cdn/")
                || (self.path.contains("/resolve/") && self.status != 302))
    }

    /// The first byte asked for (0 without a `Range`).
    pub fn range_start(&self) -> u64 {
        self.range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// What one client may hold of the server.
#[derive(Clone, Debug)]
pub struct MirrorLimits {
    /// Connections served at once; more are answered `503` with
    /// `Retry-After` and closed.
    pub max_connections: usize,
    /// Bytes of a request line plus its headers; a longer head is answered
    /// `431` and the connection closed, having read no more than this.
    pub max_header_bytes: usize,
    /// Time from waiting for a request to the end of its headers (an idle
    /// keep-alive connection included); a slower client is dropped.
    pub header_timeout: Duration,
    /// Entries kept in the request log (the oldest go first); 0 keeps none.
    pub log_entries: usize,
    /// Bytes of request targets kept in the log, at most.
    pub log_bytes: usize,
}

impl Default for MirrorLimits {
    fn default() -> Self {
        MirrorLimits {
            max_connections: 64,
            max_header_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            log_entries: 10_000,
            log_bytes: 4 << 20,
        }
    }
}

/// Counters of what the limits turned away, for `--log` and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Connections accepted and served.
    pub served_connections: u64,
    /// Connections answered `503` because `max_connections` were busy.
    pub busy: u64,
    /// Times the accept loop waited because the threads that send the
    /// `503`s were busy too (connections queue in the listen backlog).
    pub waited: u64,
    /// Request heads over `max_header_bytes` (`431`).
    pub too_large: u64,
    /// Clients dropped for not finishing a request head in time.
    pub timed_out: u64,
    /// The most connections served at once.
    pub peak_connections: u64,
}

#[derive(Default)]
struct Counters {
    served_connections: AtomicU64,
    busy: AtomicU64,
    waited: AtomicU64,
    too_large: AtomicU64,
    timed_out: AtomicU64,
    peak_connections: AtomicU64,
}

/// The request log: a ring bounded in entries and in bytes of paths.
#[derive(Default)]
struct RequestLog {
    entries: VecDeque<LogEntry>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl RequestLog {
    fn push(&mut self, e: LogEntry) {
        if self.max_entries == 0 {
            return;
        }
        self.bytes += e.path.len();
        self.entries.push_back(e);
        while self.entries.len() > self.max_entries
            || (self.bytes > self.max_bytes && self.entries.len() > 1)
        {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.path.len();
            }
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

#[derive(Default)]
struct Faults {
    fail: Vec<(FaultScope, u16, usize)>,
    drop_after: Option<(u64, usize)>,
    stall: Option<(u64, Duration, usize)>,
    corrupt: usize,
    not_found_get: usize,
    no_ranges: bool,
    cdn_redirect: bool,
    page_size: usize,
    throttle: Option<NonZeroU64>,
}

/// What happens to one content body.
#[derive(Default, Clone, Copy)]
struct BodyPlan {
    drop_after: Option<u64>,
    stall: Option<(u64, Duration)>,
    corrupt: bool,
}

/// How the Hub keeps a file: in LFS (git holds a pointer naming its
/// sha256) or in git itself (named by its git blob id).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Stored {
    Lfs { sha256: String },
    Git { blob_id: String },
}

struct CachedSha {
    size: u64,
    mtime: i128,
    stored: Stored,
}

struct Inner {
    root: PathBuf,
    addr: SocketAddr,
    token: Mutex<Option<String>>,
    faults: Mutex<Faults>,
    log: Mutex<RequestLog>,
    limits: MirrorLimits,
    counters: Counters,
    stop: AtomicBool,
    shas: Mutex<HashMap<PathBuf, CachedSha>>,
    seq: AtomicU64,
    echo: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running mirror. Dropping it stops the server.
pub struct MirrorServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Option<JoinHandle<()>>,
}

impl MirrorServer {
    /// Serves `root` on `addr` (`127.0.0.1:0` picks a free port) with the
    /// default [`MirrorLimits`].
    pub fn start(root: impl Into<PathBuf>, addr: &str) -> io::Result<Self> {
        Self::start_with(root, addr, MirrorLimits::default())
    }

    /// Serves `root` on `addr` within `limits`.
    pub fn start_with(
        root: impl Into<PathBuf>,
        addr: &str,
        limits: MirrorLimits,
    ) -> io::Result<Self> {
        let root = root.into();
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("mirror root {} is not a directory", root.display()),
            ));
        }
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            root,
            addr,
            token: Mutex::new(None),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(RequestLog {
                max_entries: limits.log_entries,
                max_bytes: limits.log_bytes,
                ..RequestLog::default()
            }),
            limits,
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            shas: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            echo: AtomicBool::new(false),
        });
        let accept_inner = inner.clone();
        let accept = std::thread::Builder::new()
            .name("hub-mirror".into())
            .spawn(move || accept_loop(&accept_inner, &listener))?;
        Ok(MirrorServer {
            addr,
            inner,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:PORT`, the value for `HF_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks until the server stops (the CLI's `serve`).
    pub fn wait(mut self) {
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }

    /// Requires `Authorization: Bearer <token>` on every repo route, as a
    /// gated repo does; `None` lifts it.
    pub fn require_token(&self, token: Option<&str>) {
        *lock(&self.inner.token) = token.map(str::to_string);
    }

    /// Answers the next `n` matching requests with `status` (429 carries
    /// `Retry-After: 0`).
    pub fn fail_next(&self, status: u16, n: usize, scope: FaultScope) {
        lock(&self.inner.faults).fail.push((scope, status, n));
    }

    /// Cuts the connection after `bytes` body bytes, for the next `n`
    /// content bodies.
    pub fn drop_after(&self, bytes: u64, n: usize) {
        lock(&self.inner.faults).drop_after = Some((bytes, n));
    }

    /// Stops sending after `bytes` body bytes for `pause`, then closes, for
    /// the next `n` content bodies.
    pub fn stall_after(&self, bytes: u64, pause: Duration, n: usize) {
        lock(&self.inner.faults).stall = Some((bytes, pause, n));
    }

    /// Flips the first byte of the next `n` content bodies.
    pub fn corrupt_next(&self, n: usize) {
        lock(&self.inner.faults).corrupt = n;
    }

    /// Answers the next `n` content GETs with 404 (HEAD stays good).
    pub fn not_found_on_get(&self, n: usize) {
        lock(&self.inner.faults).not_found_get = n;
    }

    /// Sends every content body at `bytes_per_sec` at most (each body on
    /// its own), like a slow link; `None` lifts the limit. For tests that
    /// need a transfer to be under way for a while (a kill mid-file).
    pub fn throttle(&self, bytes_per_sec: Option<u64>) {
        lock(&self.inner.faults).throttle = bytes_per_sec.and_then(NonZeroU64::new);
    }

    /// Turns range support off (whole bodies, no `Accept-Ranges`).
    pub fn set_ranges(&self, supported: bool) {
        lock(&self.inner.faults).no_ranges = !supported;
    }

    /// Answers resolve requests as the Hub does for LFS files: a 302 that
    /// carries the metadata headers, to `/_cdn/{repo}/{sha256}` which serves
    /// the bytes (and the fault plan).
    pub fn redirect_to_cdn(&self, on: bool) {
        lock(&self.inner.faults).cdn_redirect = on;
    }

    /// Serves tree listings in pages of `n` entries linked by `Link`
    /// headers, as the Hub does for large repos (0: one page).
    pub fn set_page_size(&self, n: usize) {
        lock(&self.inner.faults).page_size = n;
    }

    /// Clears every fault switch (the CDN redirect and page size stay).
    pub fn clear_faults(&self) {
        let mut f = lock(&self.inner.faults);
        let (cdn, page) = (f.cdn_redirect, f.page_size);
        *f = Faults::default();
        f.cdn_redirect = cdn;
        f.page_size = page;
    }

    /// Every request served so far, as far back as the log keeps
    /// ([`MirrorLimits::log_entries`]).
    pub fn log(&self) -> Vec<LogEntry> {
        lock(&self.inner.log).entries.iter().cloned().collect()
    }

    /// Registers a file's sha256 without reading it, as an LFS file. For
    /// multi-gigabyte sparse fixtures whose content is never downloaded: the
    /// mirror would otherwise hash every byte on the first listing. The value
    /// holds only while the file keeps its current size and mtime. `rel` is
    /// `owner/name/path` under the mirror's root.
    pub fn assume_sha256(&self, rel: &str, sha256: &str) -> io::Result<()> {
        let path = self.inner.root.join(rel);
        let meta = fs::metadata(&path)?;
        lock(&self.inner.shas).insert(
            path,
            CachedSha {
                size: meta.len(),
                mtime: mtime_ns(&meta),
                stored: Stored::Lfs {
                    sha256: sha256.to_string(),
                },
            },
        );
        Ok(())
    }

    /// Also prints each log entry to stderr (the CLI's `--log`).
    pub fn echo_log(&self, on: bool) {
        self.inner.echo.store(on, Ordering::Relaxed);
    }

    /// The `seq` of the latest request so far; later ones have a larger one.
    pub fn last_seq(&self) -> u64 {
        self.inner.seq.load(Ordering::Acquire)
    }

    pub fn clear_log(&self) {
        lock(&self.inner.log).clear();
    }

    /// What the limits turned away so far.
    pub fn stats(&self) -> MirrorStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MirrorStats {
            served_connections: get(&c.served_connections),
            busy: get(&c.busy),
            waited: get(&c.waited),
            too_large: get(&c.too_large),
            timed_out: get(&c.timed_out),
            peak_connections: get(&c.peak_connections),
        }
    }

    /// Content GETs served so far.
    pub fn content_gets(&self) -> Vec<LogEntry> {
        self.log()
            .into_iter()
            .filter(LogEntry::is_content_get)
            .collect()
    }

    /// Stops accepting; open connections end at their next request.
    pub fn shutdown(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for MirrorServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    /// At most [`MAX_BODY_BYTES`] (only `paths-info` reads it).
    body: Vec<u8>,
    close: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Threads that answer `503` while every connection slot is taken: a few,
/// so a flood is told when to come back, without the flood itself growing
/// the thread count. When they are busy too, the accept loop waits and new
/// connections queue in the kernel's listen backlog (bounded by the kernel).
const MAX_REJECTORS: usize = 16;

/// The longest request body read (a `paths-info` list of paths); a longer
/// one is refused (`413`) rather than read.
const MAX_BODY_BYTES: u64 = 1 << 20;

/// The longest a `4xx`/`503` answer may take to go out, and to linger for
/// the client to read it, before the connection is dropped.
const ERROR_ANSWER_TIME: Duration = Duration::from_secs(2);

/// Gives a connection slot back when its thread ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a slot of `counter` when fewer than `max` are taken.
fn take_slot(counter: &Arc<AtomicUsize>, max: usize) -> Option<(Slot, usize)> {
    let n = counter.fetch_add(1, Ordering::AcqRel) + 1;
    let slot = Slot(counter.clone());
    (n <= max).then_some((slot, n))
}

fn accept_loop(inner: &Arc<Inner>, listener: &TcpListener) {
    let active = Arc::new(AtomicUsize::new(0));
    let rejecting = Arc::new(AtomicUsize::new(0));
    let max = inner.limits.max_connections.max(1);
    for conn in listener.incoming() {
        if inner.stop.load(Ordering::Acquire) {
            break;
        }
        let conn = match conn {
            Ok(c) => c,
            Err(_) => {
                // Out of descriptors or a connection reset before accept:
                // pause instead of spinning on the same error.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let c = &inner.counters;
        let mut waited = false;
        loop {
            if inner.stop.load(Ordering::Acquire) {
                return;
            }
            if let Some((slot, n)) = take_slot(&active, max) {
                c.peak_connections.fetch_max(n as u64, Ordering::Relaxed);
                c.served_connections.fetch_add(1, Ordering::Relaxed);
                let inner = inner.clone();
                let _ = std::thread::Builder::new()
                    .name("hub-mirror-conn".into())
                    .spawn(move || {
                        let _slot = slot;
                        serve_conn(&inner, conn);
                    });
                break;
            }
            if let Some((slot, _)) = take_slot(&rejecting, MAX_REJECTORS) {
                c.busy.fetch_add(1, Ordering::Relaxed);
                let inner = inner.clone();
                let _ = std::thread::Builder::new()
                    .name("hub-mirror-busy".into())
                    .spawn(move || {
                        let _slot = slot;
                        reject_busy(&inner, conn);
                    });
                break;
            }
            if !waited {
                waited = true;
                c.waited.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Answers `503` with `Retry-After` to a connection over the cap. The
/// request head is read first (within the limits, briefly): closing a
/// socket with unread bytes resets it, and the client would see a reset
/// instead of the answer.
fn reject_busy(inner: &Inner, conn: TcpStream) {
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(4096, read_half);
    let limits = MirrorLimits {
        header_timeout: inner.limits.header_timeout.min(ERROR_ANSWER_TIME),
        ..inner.limits.clone()
    };
    if let Ok(None) = read_request(&mut reader, &limits) {
        return;
    }
    if inner.echo.load(Ordering::Relaxed) {
        eprintln!(
            "busy: {} connections served at once, answered 503",
            limits.max_connections
        );
    }
    answer_error(
        conn,
        &mut reader,
        503,
        &[("Retry-After", "1")],
        "too many connections; retry shortly",
    );
}

/// Writes a small error answer with `Connection: close`, then lingers a
/// moment reading (and discarding) what the client still sends, so that it
/// reads the answer rather than a reset. Bounded in time and bytes.
fn answer_error(
    mut out: TcpStream,
    reader: &mut BufReader<TcpStream>,
    status: u16,
    extra: &[(&str, &str)],
    message: &str,
) {
    let _ = out.set_write_timeout(Some(ERROR_ANSWER_TIME));
    let body = json!({ "error": message }).to_string();
    let mut text = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in extra {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    if out.write_all(text.as_bytes()).is_err() {
        return;
    }
    let _ = out.flush();
    let _ = out.shutdown(Shutdown::Write);
    let until = Instant::now() + ERROR_ANSWER_TIME;
    let mut drained = 0usize;
    let mut buf = [0u8; 4096];
    while drained < 64 * 1024 {
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            break;
        };
        if left.is_zero() || reader.get_ref().set_read_timeout(Some(left)).is_err() {
            break;
        }
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Why a request head could not be read.
#[derive(Debug)]
enum HeadError {
    /// Longer than `max_header_bytes` (`431`).
    TooLarge,
    /// A body longer than [`MAX_BODY_BYTES`] (`413`).
    BodyTooLarge,
    /// Part of a head arrived, not all of it in `header_timeout`.
    TimedOut,
    /// Not HTTP (`400`).
    Bad,
    /// The connection failed.
    Io,
}

/// Reads one line (through `\n`) into `line`, taking no more than `budget`
/// bytes and waiting no later than `deadline`. `Ok(false)`: the peer closed
/// before sending anything of it.
fn read_line_bounded(
    r: &mut BufReader<TcpStream>,
    line: &mut Vec<u8>,
    budget: &mut usize,
    deadline: Instant,
) -> Result<bool, HeadError> {
    line.clear();
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(HeadError::TimedOut)?;
        r.get_ref()
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Io)?;
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HeadError::TimedOut)
            }
            Err(_) => return Err(HeadError::Io),
        };
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(false)
            } else {
                Err(HeadError::Bad)
            };
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if take > *budget {
            return Err(HeadError::TooLarge);
        }
        line.extend_from_slice(&buf[..take]);
        *budget -= take;
        r.consume(take);
        if done {
            return Ok(true);
        }
    }
}

/// Reads one request head within `limits`. `Ok(None)`: the client closed,
/// or sent nothing in `header_timeout` (an idle keep-alive connection).
fn read_request(
    r: &mut BufReader<TcpStream>,
    limits: &MirrorLimits,
) -> Result<Option<Request>, HeadError> {
    let deadline = Instant::now() + limits.header_timeout;
    let mut budget = limits.max_header_bytes;
    let mut line = Vec::new();
    // Skip stray blank lines between requests (they count against the cap).
    loop {
        match read_line_bounded(r, &mut line, &mut budget, deadline) {
            Ok(false) => return Ok(None),
            Err(HeadError::TimedOut) if budget == limits.max_header_bytes => return Ok(None),
            Err(e) => return Err(e),
            Ok(true) if line.trim_ascii().is_empty() => {}
            Ok(true) => break,
        }
    }
    let text = String::from_utf8_lossy(&line);
    let mut parts = text.split_whitespace();
    let (Some(method), Some(target), version) = (parts.next(), parts.next(), parts.next()) else {
        return Err(HeadError::Bad);
    };
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
        close: version == Some("HTTP/1.0"),
    };
    loop {
        if !read_line_bounded(r, &mut line, &mut budget, deadline)? {
            return Err(HeadError::Bad);
        }
        let text = String::from_utf8_lossy(&line);
        let l = text.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            req.headers
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    match req.header("connection").map(str::to_ascii_lowercase) {
        Some(v) if v.contains("close") => req.close = true,
        Some(v) if v.contains("keep-alive") => req.close = false,
        _ => {}
    }
    if let Some(len) = req
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > MAX_BODY_BYTES {
            return Err(HeadError::BodyTooLarge);
        }
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        r.get_ref()
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Io)?;
        // Only a POST (paths-info) is answered from its body; other bodies
        // are read past, not kept.
        let copied = if req.method == "POST" {
            let mut body = Vec::with_capacity(len as usize);
            let n = r.by_ref().take(len).read_to_end(&mut body);
            req.body = body;
            n.map(|n| n as u64)
        } else {
            io::copy(&mut r.by_ref().take(len), &mut io::sink())
        };
        if !matches!(copied, Ok(n) if n == len) {
            return Err(HeadError::Io);
        }
    }
    Ok(Some(req))
}

fn serve_conn(inner: &Inner, conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let _ = conn.set_write_timeout(Some(Duration::from_secs(120)));
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(8192, read_half);
    let mut out = conn;
    let limits = &inner.limits;
    let echo = inner.echo.load(Ordering::Relaxed);
    while !inner.stop.load(Ordering::Acquire) {
        let (status, message) = match read_request(&mut reader, limits) {
            Ok(Some(req)) => {
                if serve_request(inner, &req, &mut out) {
                    continue;
                }
                return;
            }
            Ok(None) | Err(HeadError::Io) => return,
            Err(HeadError::TooLarge) => {
                inner.counters.too_large.fetch_add(1, Ordering::Relaxed);
                (
                    431,
                    format!("request head over {} bytes", limits.max_header_bytes),
                )
            }
            Err(HeadError::BodyTooLarge) => (413, "request body too large".to_string()),
            Err(HeadError::TimedOut) => {
                inner.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                (
                    408,
                    format!(
                        "request head not complete within {} s",
                        limits.header_timeout.as_secs_f64()
                    ),
                )
            }
            Err(HeadError::Bad) => (400, "malformed request".to_string()),
        };
        if echo {
            eprintln!("refused: {status} {message}");
        }
        answer_error(out, &mut reader, status, &[], &message);
        return;
    }
}

/// Serves one parsed request; false when the connection must close.
fn serve_request(inner: &Inner, req: &Request, out: &mut TcpStream) -> bool {
    let mut entry = LogEntry {
        seq: inner.seq.fetch_add(1, Ordering::AcqRel) + 1,
        method: req.method.clone(),
        path: req.target.clone(),
        range: req.header("range").map(str::to_string),
        status: 0,
        bytes: 0,
    };
    let keep = respond(inner, req, out, &mut entry);
    // The entry went into the log before the response (so a client that
    // has its answer always finds it there); fix the byte count if the
    // body ended short.
    {
        let mut log = lock(&inner.log);
        if let Some(e) = log.entries.iter_mut().rev().find(|e| e.seq == entry.seq) {
            e.bytes = entry.bytes;
        }
    }
    if inner.echo.load(Ordering::Relaxed) {
        eprintln!(
            "{} {} range={} status={} bytes={}",
            entry.method,
            entry.path,
            entry.range.as_deref().unwrap_or("-"),
            entry.status,
            entry.bytes
        );
    }
    if !keep || req.close {
        let _ = out.shutdown(Shutdown::Both);
        return false;
    }
    true
}

/// A response before it is written.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

enum Body {
    Bytes(Vec<u8>),
    File {
        path: PathBuf,
        start: u64,
        len: u64,
        plan: BodyPlan,
    },
}

impl Reply {
    fn json(status: u16, v: serde_json::Value) -> Self {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Body::Bytes(v.to_string().into_bytes()),
        }
    }

    fn error(status: u16, code: &str, message: &str) -> Self {
        let mut r = Reply::json(status, json!({ "error": message }));
        r.headers.push(("X-Error-Code".into(), code.into()));
        r.headers.push(("X-Error-Message".into(), message.into()));
        r
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Answers one request; false when the connection must close.
fn respond(inner: &Inner, req: &Request, out: &mut TcpStream, entry: &mut LogEntry) -> bool {
    let head = req.method == "HEAD";
    let reply = route(inner, req);
    entry.status = reply.status;
    let len = match &reply.body {
        Body::Bytes(b) => b.len() as u64,
        Body::File { len, .. } => *len,
    };
    // Logged with the bytes it is meant to send (a planned cut or stall
    // included) before anything is written.
    entry.bytes = match &reply.body {
        _ if head => 0,
        Body::File { plan, len, .. } => plan
            .drop_after
            .into_iter()
            .chain(plan.stall.map(|(b, _)| b))
            .min()
            .unwrap_or(*len)
            .min(*len),
        Body::Bytes(b) => b.len() as u64,
    };
    lock(&inner.log).push(entry.clone());
    entry.bytes = 0;
    let mut text = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str(&format!("Content-Length: {len}\r\n"));
    if req.close {
        text.push_str("Connection: close\r\n");
    }
    text.push_str("\r\n");
    if out.write_all(text.as_bytes()).is_err() {
        return false;
    }
    if head {
        return out.flush().is_ok();
    }
    match reply.body {
        Body::Bytes(b) => {
            let ok = out.write_all(&b).is_ok();
            entry.bytes = if ok { b.len() as u64 } else { 0 };
            ok
        }
        Body::File {
            path,
            start,
            len,
            plan,
        } => send_file(inner, out, &path, start, len, plan, &mut entry.bytes).unwrap_or(false),
    }
}

/// Writes `len` bytes of `path` from `start`, applying the fault plan.
/// Returns false when the plan cut the connection.
fn send_file(
    inner: &Inner,
    out: &mut TcpStream,
    path: &Path,
    start: u64,
    len: u64,
    plan: BodyPlan,
    sent: &mut u64,
) -> io::Result<bool> {
    let file = File::open(path)?;
    let cut = plan.drop_after.map(|b| b.min(len));
    let stall_at = plan.stall.map(|(b, _)| b.min(len));
    let limit = cut.into_iter().chain(stall_at).min().unwrap_or(len);
    let throttle = lock(&inner.faults).throttle;
    if !plan.corrupt && throttle.is_none() {
        // The kernel copies file to socket itself; the bytes never pass
        // through this process (half the CPU of a read/write loop).
        sendfile_range(out, &file, start, limit, sent)?;
    }
    // Throttled bodies go in small slices, each sent when the rate allows.
    let slice = match throttle {
        Some(rate) => (rate.get() / 50).clamp(1, 256 << 10) as usize,
        None => 256 << 10,
    };
    let began = Instant::now();
    let mut buf = vec![0u8; slice];
    while *sent < limit {
        if let Some(rate) = throttle {
            if inner.stop.load(Ordering::Acquire) {
                return Ok(false);
            }
            let due = Duration::from_secs_f64(*sent as f64 / rate.get() as f64);
            if let Some(wait) = due.checked_sub(began.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let n = ((limit - *sent) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], start + *sent)?;
        if plan.corrupt && *sent == 0 {
            buf[0] ^= 0xff;
        }
        out.write_all(&buf[..n])?;
        *sent += n as u64;
    }
    if *sent == len {
        return Ok(true);
    }
    if let Some((_, pause)) = plan.stall.filter(|_| Some(*sent) == stall_at) {
        let until = Instant::now() + pause;
        while Instant::now() < until && !inner.stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = out.flush();
    Ok(false)
}

/// Sends `[start + *sent, start + limit)` of `file` with `sendfile(2)`,
/// advancing `*sent`; a no-op where the call is missing (the caller's loop
/// then sends the rest).
fn sendfile_range(
    out: &TcpStream,
    file: &File,
    start: u64,
    limit: u64,
    sent: &mut u64,
) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        while *sent < limit {
            let mut off = libc::off_t::try_from(start + *sent)
                .map_err(|_| io::Error::other("offset too large"))?;
            let n = ((limit - *sent) as usize).min(1 << 30);
            // SAFETY: both descriptors are valid for the duration of the call;
            // `off` is a local the kernel updates.
            let rc = unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), &mut off, n) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
                    return Ok(());
                }
                return Err(e);
            }
            if rc == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
            }
            *sent += rc as u64;
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (out, file, start, limit, sent);
    Ok(())
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One file of a repo on disk.
struct Entry {
    rel: String,
    path: PathBuf,
    size: u64,
    mtime: i128,
}

/// The files of a repo directory, hidden names skipped, sorted.
fn walk(dir: &Path) -> Vec<Entry> {
    fn go(base: &Path, dir: &Path, out: &mut Vec<Entry>) {
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
                    out.push(Entry {
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
fn git_blob_id(data: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", data.len()).as_bytes());
    h.update(data);
    hex::encode(h.finalize())
}

/// The pointer git holds for an LFS file.
fn lfs_pointer(sha256: &str, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

/// The mirror's commit id: a digest of the listing, 40 hex digits.
fn commit_of(files: &[Entry]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.rel.as_bytes());
        h.update([0]);
        h.update(f.size.to_le_bytes());
        h.update(f.mtime.to_le_bytes());
    }
    hex::encode(h.finalize())[..40].to_string()
}

impl Inner {
    /// How the Hub would keep this file; hashed once per (path, size,
    /// mtime). Only a file small enough for git is read whole.
    fn stored(&self, e: &Entry) -> io::Result<Stored> {
        if let Some(c) = lock(&self.shas).get(&e.path) {
            if c.size == e.size && c.mtime == e.mtime {
                return Ok(c.stored.clone());
            }
        }
        let stored = if lfs_by_name_or_size(&e.rel, e.size) {
            Stored::Lfs {
                sha256: crate::digest::sha256_file(&e.path)?,
            }
        } else {
            let data = fs::read(&e.path)?;
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
        lock(&self.shas).insert(
            e.path.clone(),
            CachedSha {
                size: e.size,
                mtime: e.mtime,
                stored: stored.clone(),
            },
        );
        Ok(stored)
    }

    /// Takes the fault that hits this request, if any.
    fn take_failure(&self, content_get: bool) -> Option<u16> {
        let mut f = lock(&self.faults);
        for slot in f.fail.iter_mut() {
            let (scope, status, n) = *slot;
            if n > 0 && (scope == FaultScope::Any || content_get) {
                slot.2 -= 1;
                return Some(status);
            }
        }
        None
    }

    fn body_plan(&self) -> (BodyPlan, bool) {
        let mut f = lock(&self.faults);
        let mut plan = BodyPlan::default();
        if let Some((b, n)) = f.drop_after.as_mut() {
            if *n > 0 {
                *n -= 1;
                plan.drop_after = Some(*b);
            }
        }
        if let Some((b, d, n)) = f.stall.as_mut() {
            if *n > 0 {
                *n -= 1;
                plan.stall = Some((*b, *d));
            }
        }
        if f.corrupt > 0 {
            f.corrupt -= 1;
            plan.corrupt = true;
        }
        let not_found = f.not_found_get > 0;
        if not_found {
            f.not_found_get -= 1;
        }
        (plan, not_found)
    }
}

fn route(inner: &Inner, req: &Request) -> Reply {
    let (path, query) = req
        .target
        .split_once('?')
        .unwrap_or((req.target.as_str(), ""));
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let post = req.method == "POST";
    let paths_info = matches!(segs.as_slice(), ["api", "models", _, _, "paths-info", ..]);
    if !(req.method == "GET" || req.method == "HEAD" || post && paths_info) {
        return Reply::error(
            405,
            "MethodNotAllowed",
            "only GET and HEAD are served (and POST on paths-info)",
        );
    }
    let content_get =
        req.method == "GET" && (segs.get(2) == Some(&"resolve") || segs.first() == Some(&"_cdn"));
    if let Some(status) = inner.take_failure(content_get) {
        let mut r = Reply::error(status, "Fault", "injected fault");
        if status == 429 {
            r.headers.push(("Retry-After".into(), "0".into()));
        }
        return r;
    }
    match segs.as_slice() {
        ["api", "models", owner, name, rest @ ..] => {
            let repo = format!("{owner}/{name}");
            let dir = match repo_dir(inner, req, &repo) {
                Ok(d) => d,
                Err(r) => return r,
            };
            let blobs = query_flag(query, "blobs");
            let decoded = |parts: &[&str]| percent_decode(&parts.join("/"));
            match rest {
                [] => info(inner, &repo, &dir, "main", blobs),
                ["revision", rev @ ..] if !rev.is_empty() => match decoded(rev) {
                    Some(rev) => info(inner, &repo, &dir, &rev, blobs),
                    None => Reply::error(400, "BadRequest", "bad revision"),
                },
                ["refs"] => refs(&repo, &dir),
                ["commits", rev @ ..] if !rev.is_empty() => match decoded(rev) {
                    Some(rev) => commits(&repo, &dir, &rev),
                    None => Reply::error(400, "BadRequest", "bad revision"),
                },
                ["paths-info", rev @ ..] if post && !rev.is_empty() => match decoded(rev) {
                    Some(rev) => paths_info_route(inner, req, &repo, &dir, &rev),
                    None => Reply::error(400, "BadRequest", "bad revision"),
                },
                ["tree", rev, sub @ ..] => {
                    let recursive = query_flag(query, "recursive");
                    match (percent_decode(rev), decoded(sub)) {
                        (Some(rev), Some(sub)) => {
                            let mut r = tree(inner, &repo, &dir, &rev, &sub, recursive);
                            paginate(inner, req, path, query, &mut r);
                            r
                        }
                        _ => Reply::error(400, "BadRequest", "bad path"),
                    }
                }
                _ => Reply::error(404, "NotFound", "no such route"),
            }
        }
        ["_cdn", owner, name, sha] => cdn(inner, req, &format!("{owner}/{name}"), sha),
        [owner, name, "resolve", rev, file @ ..] if !file.is_empty() => {
            let repo = format!("{owner}/{name}");
            let dir = match repo_dir(inner, req, &repo) {
                Ok(d) => d,
                Err(r) => return r,
            };
            match (percent_decode(rev), percent_decode(&file.join("/"))) {
                (Some(rev), Some(file)) => resolve(inner, req, &repo, &dir, &rev, &file),
                _ => Reply::error(400, "BadRequest", "bad path"),
            }
        }
        _ => Reply::error(404, "NotFound", "no such route"),
    }
}

/// Whether `name=true` (or `1`, `True`) is in a query string.
fn query_flag(query: &str, name: &str) -> bool {
    query.split('&').any(|kv| {
        kv.split_once('=')
            .is_some_and(|(k, v)| k == name && (v == "1" || v.eq_ignore_ascii_case("true")))
    })
}

/// The repo's directory, after the token gate.
fn repo_dir(inner: &Inner, req: &Request, repo: &str) -> Result<PathBuf, Reply> {
    let not_found = || {
        Reply::error(
            404,
            "RepoNotFound",
            &format!("Repository {repo} not found on this mirror"),
        )
    };
    if validate_repo_id(repo).is_err() || !repo.contains('/') {
        return Err(not_found());
    }
    let dir = inner.root.join(repo);
    if !dir.is_dir() {
        return Err(not_found());
    }
    if let Some(tok) = lock(&inner.token).clone() {
        let gated = |status| {
            Reply::error(
                status,
                "GatedRepo",
                &format!(
                    "Access to model {repo} is restricted. You must be authenticated to access it."
                ),
            )
        };
        match req.header("authorization") {
            None => return Err(gated(401)),
            Some(v) if v != format!("Bearer {tok}") => return Err(gated(403)),
            Some(_) => {}
        }
    }
    Ok(dir)
}

/// The shortest prefix of the commit id that names it (git's `--short`).
const MIN_SHORT_REVISION: usize = 7;

/// The commit a revision names, or the 404 for an unknown one: `main`,
/// `HEAD`, `refs/heads/main`, the commit id or a prefix of it of at least
/// 7 hex digits (the mirror has one commit, so every such prefix is unique).
fn check_revision(repo: &str, files: &[Entry], rev: &str) -> Result<String, Reply> {
    let commit = commit_of(files);
    let short = rev.len() >= MIN_SHORT_REVISION
        && rev.len() <= commit.len()
        && rev.bytes().all(|b| b.is_ascii_hexdigit())
        && commit.starts_with(&rev.to_ascii_lowercase());
    if rev == "main" || rev == "HEAD" || rev == "refs/heads/main" || short {
        Ok(commit)
    } else {
        Err(Reply::error(
            404,
            "RevisionNotFound",
            &format!("Invalid rev id: {rev} (this mirror of {repo} serves `main` = {commit})"),
        ))
    }
}

fn io_error(e: &io::Error) -> Reply {
    Reply::error(500, "IoError", &e.to_string())
}

/// The latest mtime of the repo's files, as the Hub's dates (RFC 3339).
fn last_modified(files: &[Entry]) -> String {
    let secs = files.iter().map(|f| f.mtime).max().unwrap_or(0) / 1_000_000_000;
    format_rfc3339(i64::try_from(secs).unwrap_or(0))
}

fn info(inner: &Inner, repo: &str, dir: &Path, rev: &str, blobs: bool) -> Reply {
    let files = walk(dir);
    let commit = match check_revision(repo, &files, rev) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (author, _) = repo.split_once('/').unwrap_or(("", repo));
    let mut siblings = Vec::with_capacity(files.len());
    for f in &files {
        if !blobs {
            siblings.push(json!({ "rfilename": f.rel }));
            continue;
        }
        // `?blobs=true` (huggingface_hub's `files_metadata=True`).
        let sibling = match inner.stored(f) {
            Ok(Stored::Lfs { sha256 }) => {
                let pointer = lfs_pointer(&sha256, f.size);
                json!({
                    "rfilename": f.rel,
                    "blobId": git_blob_id(pointer.as_bytes()),
                    "size": f.size,
                    "lfs": { "sha256": sha256, "size": f.size, "pointerSize": pointer.len() },
                })
            }
            Ok(Stored::Git { blob_id }) => {
                json!({ "rfilename": f.rel, "blobId": blob_id, "size": f.size })
            }
            Err(e) => return io_error(&e),
        };
        siblings.push(sibling);
    }
    let modified = last_modified(&files);
    let mut body = json!({
        "_id": &commit[..24],
        "id": repo,
        "modelId": repo,
        "author": author,
        "sha": commit,
        "lastModified": modified,
        "createdAt": modified,
        "private": false,
        "gated": false,
        "disabled": false,
        "downloads": 0,
        "likes": 0,
        "tags": ["gguf"],
        "siblings": siblings,
    });
    if blobs {
        let used: u64 = files.iter().map(|f| f.size).sum();
        body["usedStorage"] = json!(used);
    }
    Reply::json(200, body)
}

/// `GET /api/models/{repo}/refs`: the one branch, `main`, at the mirror's
/// commit (llama.cpp's downloader asks this first; `list_repo_refs`).
fn refs(repo: &str, dir: &Path) -> Reply {
    let files = walk(dir);
    let commit = match check_revision(repo, &files, "main") {
        Ok(c) => c,
        Err(r) => return r,
    };
    Reply::json(
        200,
        json!({
            "branches": [{ "name": "main", "ref": "refs/heads/main", "targetCommit": commit }],
            "tags": [],
            "converts": [],
            "pullRequests": [],
        }),
    )
}

/// `GET /api/models/{repo}/commits/{rev}`: the history of a mirror, which
/// is its one commit (`list_repo_commits`).
fn commits(repo: &str, dir: &Path, rev: &str) -> Reply {
    let files = walk(dir);
    let commit = match check_revision(repo, &files, rev) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let title = format!("Mirror of {repo}: {} file(s)", files.len());
    Reply::json(
        200,
        json!([{
            "id": commit,
            "title": title,
            "message": "",
            "authors": [{ "user": "onboard-mirror" }],
            "date": last_modified(&files),
        }]),
    )
}

/// The paths a `paths-info` request asks for: a form (`paths=a&paths=b`,
/// huggingface_hub's way) or JSON (`{"paths": [...]}`).
fn requested_paths(req: &Request) -> Result<Vec<String>, String> {
    let json = req
        .header("content-type")
        .is_some_and(|v| v.contains("json"));
    if json {
        let v: serde_json::Value =
            serde_json::from_slice(&req.body).map_err(|e| format!("the body is not JSON: {e}"))?;
        return match v.get("paths") {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "`paths` holds a non-string".to_string())
                })
                .collect(),
            Some(serde_json::Value::String(p)) => Ok(vec![p.clone()]),
            _ => Err("the JSON body has no `paths` list".into()),
        };
    }
    let body = std::str::from_utf8(&req.body).map_err(|_| "the form is not UTF-8".to_string())?;
    let mut out = Vec::new();
    for kv in body.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if k == "paths" || k == "paths%5B%5D" || k == "paths[]" {
            let v = percent_decode(&v.replace('+', " "))
                .ok_or_else(|| format!("bad percent-encoding in `{v}`"))?;
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err("no `paths` in the form".into());
    }
    Ok(out)
}

/// `POST /api/models/{repo}/paths-info/{rev}`: the tree entries of the
/// paths asked for (files and directories); unknown paths are left out,
/// as the Hub does (`get_paths_info`, `HfFileSystem.info`).
fn paths_info_route(inner: &Inner, req: &Request, repo: &str, dir: &Path, rev: &str) -> Reply {
    let files = walk(dir);
    if let Err(r) = check_revision(repo, &files, rev) {
        return r;
    }
    let paths = match requested_paths(req) {
        Ok(p) => p,
        Err(why) => {
            return Reply::error(
                400,
                "BadRequest",
                &format!("paths-info: {why}; send a form `paths=<path>&paths=<path>`"),
            )
        }
    };
    let mut out = Vec::new();
    for p in paths {
        let p = p.trim_matches('/');
        if let Some(f) = files.iter().find(|f| f.rel == p) {
            match file_entry(inner, f) {
                Ok(e) => out.push(e),
                Err(e) => return io_error(&e),
            }
        } else if !p.is_empty() && files.iter().any(|f| f.rel.starts_with(&format!("{p}/"))) {
            out.push(directory_entry(p));
        }
    }
    Reply::json(200, serde_json::Value::Array(out))
}

/// A file's entry in the tree and paths-info listings, as the Hub writes
/// it: `oid` is the git blob id (of the pointer, for an LFS file).
fn file_entry(inner: &Inner, f: &Entry) -> io::Result<serde_json::Value> {
    Ok(match inner.stored(f)? {
        Stored::Lfs { sha256 } => {
            let pointer = lfs_pointer(&sha256, f.size);
            json!({
                "type": "file",
                "oid": git_blob_id(pointer.as_bytes()),
                "size": f.size,
                "path": f.rel,
                "lfs": { "oid": sha256, "size": f.size, "pointerSize": pointer.len() },
            })
        }
        Stored::Git { blob_id } => json!({
            "type": "file",
            "oid": blob_id,
            "size": f.size,
            "path": f.rel,
        }),
    })
}

fn directory_entry(path: &str) -> serde_json::Value {
    json!({ "type": "directory", "oid": "0".repeat(40), "size": 0, "path": path })
}

fn tree(inner: &Inner, repo: &str, dir: &Path, rev: &str, sub: &str, recursive: bool) -> Reply {
    let files = walk(dir);
    if let Err(r) = check_revision(repo, &files, rev) {
        return r;
    }
    let prefix = if sub.is_empty() {
        String::new()
    } else {
        format!("{}/", sub.trim_end_matches('/'))
    };
    let mut out = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for f in &files {
        let Some(rest) = f.rel.strip_prefix(&prefix) else {
            continue;
        };
        // Directories on the way down.
        let parts: Vec<&str> = rest.split('/').collect();
        for i in 1..parts.len() {
            if !recursive && i > 1 {
                break;
            }
            dirs.insert(format!("{prefix}{}", parts[..i].join("/")));
        }
        if !recursive && parts.len() > 1 {
            continue;
        }
        match file_entry(inner, f) {
            Ok(e) => out.push(e),
            Err(e) => return io_error(&e),
        }
    }
    if !prefix.is_empty() && out.is_empty() && dirs.is_empty() {
        return Reply::error(404, "EntryNotFound", &format!("{sub} does not exist"));
    }
    let mut all: Vec<_> = dirs.iter().map(|d| directory_entry(d)).collect();
    all.extend(out);
    Reply::json(200, serde_json::Value::Array(all))
}

/// Cuts a tree listing into pages with a `Link: <...>; rel="next"` header,
/// as the Hub does for large repos (when a page size is set).
fn paginate(inner: &Inner, req: &Request, path: &str, query: &str, reply: &mut Reply) {
    let size = lock(&inner.faults).page_size;
    if size == 0 || reply.status != 200 {
        return;
    }
    let Body::Bytes(body) = &reply.body else {
        return;
    };
    let Ok(serde_json::Value::Array(all)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return;
    };
    let mut rest: Vec<&str> = Vec::new();
    let mut cursor = 0usize;
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        match kv.strip_prefix("cursor=") {
            Some(c) => cursor = c.parse().unwrap_or(0),
            None => rest.push(kv),
        }
    }
    let page: Vec<_> = all.iter().skip(cursor).take(size).cloned().collect();
    let next = cursor + page.len();
    reply.body = Body::Bytes(serde_json::Value::Array(page).to_string().into_bytes());
    if next < all.len() {
        rest.push("");
        let host = req.header("host").unwrap_or("127.0.0.1");
        let q = rest.join("&");
        reply.headers.push((
            "Link".into(),
            format!("<http://{host}{path}?{q}cursor={next}>; rel=\"next\""),
        ));
    }
}

/// Parses a single `bytes=` range against `size`: `Ok(None)` means the
/// whole file, `Err(())` an unsatisfiable range.
fn parse_range(v: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size)
    } else {
        let s: u64 = a.parse().map_err(|_| ())?;
        let e = if b.is_empty() {
            size
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .saturating_add(1)
                .min(size)
        };
        (s, e)
    };
    if start >= size || start >= end {
        return Err(());
    }
    Ok(Some((start, end)))
}

fn resolve(inner: &Inner, req: &Request, repo: &str, dir: &Path, rev: &str, file: &str) -> Reply {
    let files = walk(dir);
    let commit = match check_revision(repo, &files, rev) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(entry) = files.iter().find(|f| f.rel == file) else {
        return entry_not_found(file, repo);
    };
    let sha = match inner.stored(entry) {
        Ok(Stored::Lfs { sha256 }) => sha256,
        // A file in git: its blob id is the ETag, no linked headers, and
        // the Hub serves it itself (no redirect).
        Ok(Stored::Git { blob_id }) => {
            let meta = vec![
                ("ETag".to_string(), format!("\"{blob_id}\"")),
                ("X-Repo-Commit".to_string(), commit),
            ];
            return serve_content(inner, req, entry, file, repo, meta);
        }
        Err(e) => return io_error(&e),
    };
    let meta = vec![
        ("ETag".to_string(), format!("\"{sha}\"")),
        ("X-Linked-Etag".to_string(), format!("\"{sha}\"")),
        ("X-Linked-Size".to_string(), entry.size.to_string()),
        ("X-Repo-Commit".to_string(), commit),
    ];
    if lock(&inner.faults).cdn_redirect {
        // The Hub's way for LFS files: metadata on a 302 to the storage.
        // The storage is another host, as on the Hub (clients follow only
        // same-host redirects for metadata): 127.0.0.1 <-> localhost.
        let host = match req.header("host") {
            Some(h) if h.starts_with("127.0.0.1") => "localhost".to_string(),
            _ => inner.addr.ip().to_string(),
        };
        let mut headers = meta;
        headers.push((
            "Location".into(),
            format!("http://{host}:{}/_cdn/{repo}/{sha}", inner.addr.port()),
        ));
        return Reply {
            status: 302,
            headers,
            body: Body::Bytes(Vec::new()),
        };
    }
    serve_content(inner, req, entry, file, repo, meta)
}

fn entry_not_found(file: &str, repo: &str) -> Reply {
    Reply::error(
        404,
        "EntryNotFound",
        &format!("{file} does not exist in {repo}"),
    )
}

/// `/_cdn/{owner}/{name}/{sha256}`: the storage side of a redirect.
fn cdn(inner: &Inner, req: &Request, repo: &str, sha: &str) -> Reply {
    if validate_repo_id(repo).is_err() || !repo.contains('/') {
        return Reply::error(404, "NotFound", "no such object");
    }
    let files = walk(&inner.root.join(repo));
    let Some(entry) = files.iter().find(|f| {
        inner
            .stored(f)
            .is_ok_and(|s| matches!(s, Stored::Lfs { sha256 } if sha256 == sha))
    }) else {
        return Reply::error(404, "NotFound", "no such object");
    };
    serve_content(inner, req, entry, &entry.rel, repo, Vec::new())
}

/// A file body (whole or one range), with the fault plan of this request.
fn serve_content(
    inner: &Inner,
    req: &Request,
    entry: &Entry,
    file: &str,
    repo: &str,
    mut headers: Vec<(String, String)>,
) -> Reply {
    let (plan, not_found_now) = if req.method == "GET" {
        inner.body_plan()
    } else {
        (BodyPlan::default(), false)
    };
    if not_found_now {
        return entry_not_found(file, repo);
    }
    let no_ranges = lock(&inner.faults).no_ranges;
    let size = entry.size;
    headers.push(("Content-Type".into(), "application/octet-stream".into()));
    if !no_ranges {
        headers.push(("Accept-Ranges".into(), "bytes".into()));
    }
    let range = match req.header("range").filter(|_| !no_ranges) {
        None => None,
        Some(v) => match parse_range(v, size) {
            Ok(r) => r,
            Err(()) => {
                let mut r = Reply::error(416, "RangeNotSatisfiable", "range not satisfiable");
                r.headers
                    .push(("Content-Range".into(), format!("bytes */{size}")));
                return r;
            }
        },
    };
    let (status, start, len) = match range {
        Some((s, e)) => {
            headers.push((
                "Content-Range".into(),
                format!("bytes {s}-{}/{size}", e - 1),
            ));
            (206, s, e - s)
        }
        None => (200, 0, size),
    };
    Reply {
        status,
        headers,
        body: Body::File {
            path: entry.path.clone(),
            start,
            len,
            plan,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 10))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 100))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 100))));
        assert_eq!(parse_range("bytes=95-200", 100), Ok(Some((95, 100))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(
            percent_decode("refs%2Fpr%2F1").as_deref(),
            Some("refs/pr/1")
        );
    }
}
