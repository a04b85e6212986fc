//! A local Hub mirror: serves `<root>/<owner>/<name>/<files>` over the Hub's
//! routes on a loopback (or any) address, so `onboard`, huggingface_hub
//! (`hf download`, `snapshot_download`, `HfFileSystem`, …) and llama.cpp's
//! `-hf` downloader work on an air-gapped machine with
//! `HF_ENDPOINT=http://127.0.0.1:PORT` (tests/hub_clients.rs runs them).
//!
//! * `routes`: the Hub's routes as plain functions, request
//!   to response, with `ETag`, `X-Repo-Commit`, `Accept-Ranges` and `206` +
//!   `Content-Range`. It never sends `X-Xet-Hash` (clients would switch to
//!   the Xet protocol).
//! * `repo`: files kept as the Hub keeps them: LFS for the names of its
//!   default `.gitattributes` (and `.gguf`), binary content or 10 MiB and
//!   more (sha256 in `lfs.oid`, `X-Linked-Etag`, `X-Linked-Size`), git for
//!   the rest (`oid` and `ETag` are git blob ids). A mirror has no git
//!   history: one commit (a digest of the listing: paths, sizes, mtimes) on
//!   one branch, `main`; `HEAD`, the commit id and any prefix of it of 7 or
//!   more hex digits name it too. The commit changes when a file changes.
//! * `server`: HTTP/1.1 on hyper within [`MirrorLimits`], so one
//!   misbehaving client cannot take down or starve the others: it is the
//!   Hub of air-gapped machines and of the main job.
//! * `body`: file bodies streamed from disk a slice at a time.
//! * `log`: the request log the tests read and `--log` prints, a bounded
//!   ring.
//!
//! A [`Layer`] may stand between the connections and the routes; the
//! tests' fault injection (errors, cut, stalled or wrong bodies, …) is one,
//! kept with the tests (tests/support/faulty_mirror.rs).
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::body::Bytes;
use hyper::{Request, Response};
use tokio::sync::watch;

mod body;
mod log;
mod repo;
mod routes;
mod server;

pub use body::ResponseBody;
pub use log::LogEntry;
pub use routes::hub_error;

use log::RequestLog;
use repo::RepoStore;
use server::{Counters, Shared};

/// A request as the routes see it: its body already read (bounded).
pub type MirrorRequest = Request<Bytes>;

/// A response as the routes give it; its body streams.
pub type MirrorResponse = Response<ResponseBody>;

/// Stands between the connections and the Hub's routes: sees every
/// request, and may answer it itself, change it, or change the routes'
/// answer (its status, headers or body). Runs on a blocking thread.
pub trait Layer: Send + Sync + 'static {
    fn handle(
        &self,
        request: MirrorRequest,
        routes: &dyn Fn(MirrorRequest) -> MirrorResponse,
    ) -> MirrorResponse;
}

/// What one client may hold of the server.
#[derive(Clone, Debug)]
pub struct MirrorLimits {
    /// Connections served at once; more are answered `503` with
    /// `Retry-After` and closed.
    pub max_connections: usize,
    /// Bytes of a request line plus its headers; a longer head is answered
    /// `431` and the connection closed, having read little more than this.
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
    /// Times the accept loop waited because the connections that send the
    /// `503`s were busy too (connections queue in the listen backlog).
    pub waited: u64,
    /// Request heads over `max_header_bytes` (`431`).
    pub too_large: u64,
    /// Clients dropped for not finishing a request head in time.
    pub timed_out: u64,
    /// The most connections served at once.
    pub peak_connections: u64,
}

/// How the mirror answers, beyond the files: the Hub's behaviours a
/// client must cope with, switched on for a run or a test.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServingOptions {
    /// Required as `Authorization: Bearer <token>` (a gated repo).
    token: Option<String>,
    /// LFS files through a `302` to `/_cdn/...`, as the Hub does.
    cdn_redirect: bool,
    /// Tree listings in pages of this many entries (0: one page).
    page_size: usize,
    /// File bodies at most this fast, in bytes per second.
    rate: Option<NonZeroU64>,
}

/// What the routes read: the repos, where the server listens (for
/// redirects), and the serving options.
pub(crate) struct HubState {
    store: RepoStore,
    addr: SocketAddr,
    options: Mutex<ServingOptions>,
}

impl HubState {
    fn options(&self) -> ServingOptions {
        lock(&self.options).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running mirror. Dropping it stops the server.
pub struct MirrorServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
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
        Self::launch(root.into(), addr, limits, None)
    }

    /// Serves `root` on `addr` within `limits`, every request through
    /// `layer` on its way to the routes.
    pub fn start_with_layer(
        root: impl Into<PathBuf>,
        addr: &str,
        limits: MirrorLimits,
        layer: impl Layer,
    ) -> io::Result<Self> {
        let layer: Arc<dyn Layer> = Arc::new(layer);
        Self::launch(root.into(), addr, limits, Some(layer))
    }

    fn launch(
        root: PathBuf,
        addr: &str,
        limits: MirrorLimits,
        layer: Option<Arc<dyn Layer>>,
    ) -> io::Result<Self> {
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("mirror root {} is not a directory", root.display()),
            ));
        }
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("hub-mirror-worker")
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            hub: HubState {
                store: RepoStore::new(root),
                addr,
                options: Mutex::new(ServingOptions::default()),
            },
            layer,
            log: Mutex::new(RequestLog::new(limits.log_entries, limits.log_bytes)),
            limits,
            counters: Counters::default(),
            seq: AtomicU64::new(0),
            echo: AtomicBool::new(false),
        });
        let (stop, stopped) = watch::channel(false);
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hub-mirror".into())
            .spawn(move || {
                runtime.block_on(server::serve(serving, listener, stopped));
                runtime.shutdown_timeout(Duration::from_millis(500));
            })?;
        Ok(MirrorServer {
            addr,
            shared,
            stop,
            thread: Some(thread),
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
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }

    fn set_option(&self, change: impl FnOnce(&mut ServingOptions)) {
        change(&mut lock(&self.shared.hub.options));
    }

    /// Requires `Authorization: Bearer <token>` on every repo route, as a
    /// gated repo does; `None` lifts it.
    pub fn require_token(&self, token: Option<&str>) {
        self.set_option(|o| o.token = token.map(str::to_string));
    }

    /// Sends every content body at `bytes_per_sec` at most (each body on
    /// its own), like a slow link; `None` lifts the limit.
    pub fn throttle(&self, bytes_per_sec: Option<u64>) {
        self.set_option(|o| o.rate = bytes_per_sec.and_then(NonZeroU64::new));
    }

    /// Answers resolve requests as the Hub does for LFS files: a 302 that
    /// carries the metadata headers, to `/_cdn/{repo}/{sha256}` which serves
    /// the bytes.
    pub fn redirect_to_cdn(&self, on: bool) {
        self.set_option(|o| o.cdn_redirect = on);
    }

    /// Serves tree listings in pages of `n` entries linked by `Link`
    /// headers, as the Hub does for large repos (0: one page).
    pub fn set_page_size(&self, n: usize) {
        self.set_option(|o| o.page_size = n);
    }

    /// Every request served so far, as far back as the log keeps
    /// ([`MirrorLimits::log_entries`]).
    pub fn log(&self) -> Vec<LogEntry> {
        lock(&self.shared.log).entries()
    }

    /// Registers a file's sha256 without reading it, as an LFS file. For
    /// multi-gigabyte sparse fixtures whose content is never downloaded: the
    /// mirror would otherwise hash every byte on the first listing. The value
    /// holds only while the file keeps its current size and mtime. `rel` is
    /// `owner/name/path` under the mirror's root.
    pub fn assume_sha256(&self, rel: &str, sha256: &str) -> io::Result<()> {
        self.shared.hub.store.assume_sha256(rel, sha256)
    }

    /// Also prints each log entry to stderr (the CLI's `--log`).
    pub fn echo_log(&self, on: bool) {
        self.shared.echo.store(on, Ordering::Relaxed);
    }

    /// The `seq` of the latest request so far; later ones have a larger one.
    pub fn last_seq(&self) -> u64 {
        self.shared.seq.load(Ordering::Acquire)
    }

    pub fn clear_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// What the limits turned away so far.
    pub fn stats(&self) -> MirrorStats {
        self.shared.counters.snapshot()
    }

    /// Content GETs served so far.
    pub fn content_gets(&self) -> Vec<LogEntry> {
        self.log()
            .into_iter()
            .filter(LogEntry::is_content_get)
            .collect()
    }

    /// Stops accepting; open connections finish the answer under way
    /// (for a moment at most) and close.
    pub fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

impl Drop for MirrorServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
