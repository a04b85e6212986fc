//! The HTTP/1.1 side of the mirror, on hyper: accepting connections within
//! a connection cap, hyper's limits on request heads, a bounded request
//! body, the request log, and stopping.
//!
//! Every resource a client can make the server hold is bounded
//! ([`MirrorLimits`]): connections (a semaphore; the excess get `503` with
//! `Retry-After`, from a second, small semaphore's worth of answering
//! connections; past both, new connections wait in the kernel's listen
//! backlog), the bytes of a request head (hyper stops reading at the cap:
//! `431`), the time to send it (slow clients are dropped), request bodies
//! (`413`), and the request log (a ring).
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::body::ResponseBody;
use super::log::{LogEntry, RequestLog};
use super::routes::{self, hub_error, set_header};
use super::{lock, HubState, Layer, MirrorLimits, MirrorRequest, MirrorResponse, MirrorStats};

/// Connections being answered `503` at once: a few, so a flood is told
/// when to come back without the flood itself growing the server.
const MAX_REFUSING: usize = 16;

/// The longest request body read (a `paths-info` list of paths); a longer
/// one is refused (`413`) rather than read.
const MAX_BODY_BYTES: usize = 1 << 20;

/// The longest a `503` answer may take, its request head included.
const BUSY_ANSWER_TIME: Duration = Duration::from_secs(2);

/// How long a stopping server lets open connections finish what they are
/// sending before it drops them.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// hyper's smallest read buffer.
const MIN_READ_BUFFER: usize = 8192;

/// Counters of what the limits turned away.
#[derive(Default)]
pub(super) struct Counters {
    served_connections: AtomicU64,
    busy: AtomicU64,
    waited: AtomicU64,
    too_large: AtomicU64,
    timed_out: AtomicU64,
    peak_connections: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> MirrorStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MirrorStats {
            served_connections: get(&self.served_connections),
            busy: get(&self.busy),
            waited: get(&self.waited),
            too_large: get(&self.too_large),
            timed_out: get(&self.timed_out),
            peak_connections: get(&self.peak_connections),
        }
    }
}

/// What every connection of one server shares.
pub(super) struct Shared {
    pub hub: HubState,
    pub layer: Option<Arc<dyn Layer>>,
    pub limits: MirrorLimits,
    pub log: Mutex<RequestLog>,
    pub counters: Counters,
    pub seq: AtomicU64,
    pub echo: AtomicBool,
}

impl Shared {
    fn echo(&self) -> bool {
        self.echo.load(Ordering::Relaxed)
    }

    /// The routes' answer, through the layer when there is one.
    fn respond(&self, request: MirrorRequest) -> MirrorResponse {
        let routes = |r: MirrorRequest| routes::route(&self.hub, &r);
        match &self.layer {
            Some(layer) => layer.handle(request, &routes),
            None => routes(request),
        }
    }
}

/// Accepts connections until `stop` changes, then gives open ones a
/// moment to finish.
pub(super) async fn serve(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    // Within what a semaphore holds, and waits for whole (a u32).
    let max = (shared.limits.max_connections)
        .clamp(1, Semaphore::MAX_PERMITS)
        .min(u32::MAX as usize);
    let serving = Arc::new(Semaphore::new(max));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let counters = &shared.counters;
    loop {
        let stream = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of descriptors or a connection reset before
                    // accept: pause instead of spinning on the same error.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let slot = match take_slot(&serving, &refusing) {
            Some(slot) => slot,
            None => {
                counters.waited.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = stop.changed() => break,
                    Ok(p) = serving.clone().acquire_owned() => Slot::Serve(p),
                    Ok(p) = refusing.clone().acquire_owned() => Slot::Refuse(p),
                    else => break,
                }
            }
        };
        match slot {
            Slot::Serve(permit) => {
                let open = (max - serving.available_permits()) as u64;
                counters.peak_connections.fetch_max(open, Ordering::Relaxed);
                counters.served_connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve_connection(
                    shared.clone(),
                    stream,
                    permit,
                    stop.clone(),
                ));
            }
            Slot::Refuse(permit) => {
                counters.busy.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(refuse_busy(shared.clone(), stream, permit));
            }
        }
    }
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(STOP_GRACE, serving.acquire_many(all)).await;
}

enum Slot {
    Serve(OwnedSemaphorePermit),
    Refuse(OwnedSemaphorePermit),
}

fn take_slot(serving: &Arc<Semaphore>, refusing: &Arc<Semaphore>) -> Option<Slot> {
    if let Ok(p) = serving.clone().try_acquire_owned() {
        return Some(Slot::Serve(p));
    }
    refusing.clone().try_acquire_owned().ok().map(Slot::Refuse)
}

/// hyper's settings for a connection: `header_timeout` to send a request
/// head, heads and read buffers no larger than the cap.
fn http1_builder(limits: &MirrorLimits, header_timeout: Duration) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_READ_BUFFER))
        // Header names as most servers write them (`Content-Length`).
        .title_case_headers(true);
    builder
}

/// Serves one connection's requests until it closes, fails a limit, or the
/// server stops (then after the request under way).
async fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let traffic = Arc::new(Traffic::default());
    let io = TokioIo::new(CountingIo {
        inner: stream,
        traffic: traffic.clone(),
    });
    let service = {
        let (shared, traffic) = (shared.clone(), traffic.clone());
        service_fn(move |req| answer(shared.clone(), traffic.clone(), req))
    };
    let conn =
        http1_builder(&shared.limits, shared.limits.header_timeout).serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    let ended = loop {
        tokio::select! {
            ended = conn.as_mut() => break ended,
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    };
    let Err(e) = ended else { return };
    let limits = &shared.limits;
    let refused = if e.is_parse_too_large() {
        shared.counters.too_large.fetch_add(1, Ordering::Relaxed);
        Some(format!(
            "431 request head over {} bytes",
            limits.max_header_bytes
        ))
    } else if e.is_timeout() && traffic.mid_request() {
        // A connection idle between requests just closes; one that began
        // a head and did not finish it is a slow client, dropped.
        shared.counters.timed_out.fetch_add(1, Ordering::Relaxed);
        Some(format!(
            "408 request head not complete within {} s; connection dropped",
            limits.header_timeout.as_secs_f64()
        ))
    } else if e.is_parse() {
        Some("400 malformed request".to_string())
    } else {
        None
    };
    if let Some(why) = refused.filter(|_| shared.echo()) {
        eprintln!("refused: {why}");
    }
}

/// Answers `503` with `Retry-After` to a connection over the cap, once its
/// request head is in (closing a socket with unread bytes resets it, and
/// the client would see a reset instead of the answer).
async fn refuse_busy(shared: Arc<Shared>, stream: TcpStream, _slot: OwnedSemaphorePermit) {
    let max = shared.limits.max_connections;
    let service = {
        let shared = shared.clone();
        service_fn(move |_req: Request<Incoming>| {
            if shared.echo() {
                eprintln!("busy: {max} connections served at once, answered 503");
            }
            let mut r = refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many connections; retry shortly",
            );
            set_header(&mut r, "retry-after", "1");
            async move { Ok::<_, Infallible>(r) }
        })
    };
    let header_timeout = shared.limits.header_timeout.min(BUSY_ANSWER_TIME);
    let mut builder = http1_builder(&shared.limits, header_timeout);
    builder.keep_alive(false);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(2 * BUSY_ANSWER_TIME, conn).await;
}

/// A refusal that closes the connection after it.
fn refusal(status: StatusCode, message: &str) -> MirrorResponse {
    let mut r = Response::new(super::body::full(json!({ "error": message }).to_string()));
    *r.status_mut() = status;
    set_header(&mut r, "content-type", "application/json");
    set_header(&mut r, "connection", "close");
    r
}

/// One request: its body read (bounded), the routes' answer logged, its
/// body counted as it goes out.
async fn answer(
    shared: Arc<Shared>,
    traffic: Arc<Traffic>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let limits = &shared.limits;
    let body_time = limits.header_timeout.max(Duration::from_secs(1));
    let read = tokio::time::timeout(body_time, Limited::new(body, MAX_BODY_BYTES).collect()).await;
    let (status, why) = match read {
        Ok(Ok(collected)) => {
            let request = Request::from_parts(parts, collected.to_bytes());
            return Ok(respond_logged(shared, traffic, request).await);
        }
        Ok(Err(e)) if e.is::<LengthLimitError>() => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {MAX_BODY_BYTES} bytes"),
        ),
        Ok(Err(_)) => (
            StatusCode::BAD_REQUEST,
            "request body cut short".to_string(),
        ),
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "request body not complete within {} s",
                body_time.as_secs_f64()
            ),
        ),
    };
    if shared.echo() {
        eprintln!("refused: {} {why}", status.as_u16());
    }
    Ok(refusal(status, &why))
}

async fn respond_logged(
    shared: Arc<Shared>,
    traffic: Arc<Traffic>,
    request: MirrorRequest,
) -> MirrorResponse {
    let seq = shared.seq.fetch_add(1, Ordering::AcqRel) + 1;
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().to_string(), |pq| pq.as_str().to_string());
    let range = request
        .headers()
        .get("range")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    // The routes read directories and hash files: blocking work.
    let worker = shared.clone();
    let response = tokio::task::spawn_blocking(move || worker.respond(request))
        .await
        .unwrap_or_else(|e| {
            hub_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &format!("the route failed: {e}"),
            )
        });
    let entry = LogEntry {
        seq,
        method,
        path,
        range,
        status: response.status().as_u16(),
        bytes: 0,
    };
    // Logged before the answer goes out, so a client that has its answer
    // always finds it in the log.
    let sent = Arc::new(AtomicU64::new(0));
    lock(&shared.log).push(entry.clone(), sent.clone());
    let (parts, body) = response.into_parts();
    let counted = CountedBody {
        inner: body,
        sent,
        done: Some(AnswerDone {
            shared,
            traffic,
            entry,
        }),
    };
    Response::from_parts(parts, counted.boxed_unsync())
}

/// Bytes a connection has read, and how many it had read when its last
/// answer ended: more since then means a request head is under way.
#[derive(Default)]
struct Traffic {
    read: AtomicU64,
    read_at_last_answer: AtomicU64,
}

impl Traffic {
    fn mid_request(&self) -> bool {
        self.read.load(Ordering::Acquire) > self.read_at_last_answer.load(Ordering::Acquire)
    }
}

/// The socket, counting the bytes read from it.
struct CountingIo {
    inner: TcpStream,
    traffic: Arc<Traffic>,
}

impl AsyncRead for CountingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.traffic.read.fetch_add(n as u64, Ordering::AcqRel);
        polled
    }
}

impl AsyncWrite for CountingIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What happens when an answer's body is done (sent, cut or abandoned).
struct AnswerDone {
    shared: Arc<Shared>,
    traffic: Arc<Traffic>,
    entry: LogEntry,
}

/// A response body that counts its bytes into the log as they go out.
struct CountedBody {
    inner: ResponseBody,
    sent: Arc<AtomicU64>,
    done: Option<AnswerDone>,
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.sent.fetch_add(data.len() as u64, Ordering::AcqRel);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CountedBody {
    fn drop(&mut self) {
        let Some(done) = self.done.take() else { return };
        let read = done.traffic.read.load(Ordering::Acquire);
        done.traffic
            .read_at_last_answer
            .store(read, Ordering::Release);
        if done.shared.echo() {
            let e = &done.entry;
            eprintln!(
                "{} {} range={} status={} bytes={}",
                e.method,
                e.path,
                e.range.as_deref().unwrap_or("-"),
                e.status,
                self.sent.load(Ordering::Acquire)
            );
        }
    }
}
