//! The local Hub with faults on demand: a [`Layer`] around the mirror's
//! routes that fails requests, cuts, stalls or corrupts bodies, answers
//! 404 after a good HEAD, or hides range support, for the next N requests.
//! The production mirror has none of this; tests start a [`FaultyMirror`]
//! where they need it (it derefs to the [`MirrorServer`] it wraps).

use std::future::Future;
use std::io;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::{Method, StatusCode};
use onboard::hub::mirror::{
    hub_error, Layer, MirrorLimits, MirrorRequest, MirrorResponse, MirrorServer, ResponseBody,
};

/// Which requests a "fail the next N" switch hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultScope {
    /// Every request, metadata included.
    Any,
    /// Only `GET /{repo}/resolve/...` (content).
    ContentGet,
}

#[derive(Default)]
struct Faults {
    fail: Vec<(FaultScope, u16, usize)>,
    drop_after: Option<(u64, usize)>,
    stall: Option<(u64, Duration, usize)>,
    corrupt: usize,
    not_found_get: usize,
    no_ranges: bool,
}

/// What happens to one content body.
#[derive(Default, Clone, Copy)]
struct BodyPlan {
    drop_after: Option<u64>,
    stall: Option<(u64, Duration)>,
    corrupt: bool,
}

impl Faults {
    /// Takes the failure that hits this request, if any.
    fn take_failure(&mut self, content_get: bool) -> Option<u16> {
        for slot in self.fail.iter_mut() {
            let (scope, status, n) = *slot;
            if n > 0 && (scope == FaultScope::Any || content_get) {
                slot.2 -= 1;
                return Some(status);
            }
        }
        None
    }

    /// Takes what hits the next content body: its plan, and whether it is
    /// answered 404 instead.
    fn take_body_plan(&mut self) -> (BodyPlan, bool) {
        let mut plan = BodyPlan::default();
        if let Some((b, n)) = self.drop_after.as_mut() {
            if *n > 0 {
                *n -= 1;
                plan.drop_after = Some(*b);
            }
        }
        if let Some((b, d, n)) = self.stall.as_mut() {
            if *n > 0 {
                *n -= 1;
                plan.stall = Some((*b, *d));
            }
        }
        if self.corrupt > 0 {
            self.corrupt -= 1;
            plan.corrupt = true;
        }
        let not_found = self.not_found_get > 0;
        if not_found {
            self.not_found_get -= 1;
        }
        (plan, not_found)
    }
}

#[derive(Clone, Default)]
struct FaultLayer(Arc<Mutex<Faults>>);

impl FaultLayer {
    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `GET /{repo}/resolve/...` or `GET /_cdn/...`: a download of content.
fn is_content_get(req: &MirrorRequest) -> bool {
    let segs: Vec<&str> = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .collect();
    req.method() == Method::GET
        && (segs.get(2) == Some(&"resolve") || segs.first() == Some(&"_cdn"))
}

impl Layer for FaultLayer {
    fn handle(
        &self,
        mut request: MirrorRequest,
        routes: &dyn Fn(MirrorRequest) -> MirrorResponse,
    ) -> MirrorResponse {
        let content_get = is_content_get(&request);
        let (failure, no_ranges) = {
            let mut f = self.faults();
            (f.take_failure(content_get), f.no_ranges)
        };
        if let Some(status) = failure {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = hub_error(status, "Fault", "injected fault");
            if status == StatusCode::TOO_MANY_REQUESTS {
                r.headers_mut()
                    .insert("retry-after", hyper::header::HeaderValue::from_static("0"));
            }
            return r;
        }
        if no_ranges {
            request.headers_mut().remove("range");
        }
        let mut response = routes(request);
        if no_ranges {
            response.headers_mut().remove("accept-ranges");
        }
        let content_body = content_get
            && matches!(
                response.status(),
                StatusCode::OK | StatusCode::PARTIAL_CONTENT
            );
        if !content_body {
            return response;
        }
        let (plan, not_found) = self.faults().take_body_plan();
        if not_found {
            return hub_error(
                StatusCode::NOT_FOUND,
                "EntryNotFound",
                "injected: the file is gone after its HEAD",
            );
        }
        let len = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        // A cut or stall at or past the end sends the whole body.
        let stop_at = plan
            .drop_after
            .into_iter()
            .chain(plan.stall.map(|(b, _)| b))
            .min()
            .filter(|&at| at < len);
        if stop_at.is_none() && !plan.corrupt {
            return response;
        }
        let stall = plan
            .stall
            .filter(|&(b, _)| Some(b) == stop_at)
            .map(|(_, d)| d);
        response.map(|inner| {
            FaultyBody {
                inner,
                sent: 0,
                stop_at,
                stall,
                stalling: None,
                corrupt: plan.corrupt,
            }
            .boxed_unsync()
        })
    }
}

/// A content body that goes wrong as planned: its first byte flipped,
/// or cut (a failed connection) after `stop_at` bytes, at once or after a
/// pause with nothing sent.
struct FaultyBody {
    inner: ResponseBody,
    sent: u64,
    stop_at: Option<u64>,
    stall: Option<Duration>,
    stalling: Option<Pin<Box<tokio::time::Sleep>>>,
    corrupt: bool,
}

impl Body for FaultyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if let Some(at) = this.stop_at.filter(|&at| this.sent >= at) {
            if let Some(pause) = this.stall.take() {
                this.stalling = Some(Box::pin(tokio::time::sleep(pause)));
            }
            if let Some(stalling) = this.stalling.as_mut() {
                ready!(stalling.as_mut().poll(cx));
            }
            return Poll::Ready(Some(Err(io::Error::other(format!(
                "injected: body cut after {at} bytes"
            )))));
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        let Ok(mut data) = frame.into_data() else {
            return Poll::Ready(None);
        };
        if let Some(at) = this.stop_at {
            data.truncate((at - this.sent).min(data.len() as u64) as usize);
        }
        if this.corrupt && this.sent == 0 && !data.is_empty() {
            let mut flipped = data.to_vec();
            flipped[0] ^= 0xff;
            data = Bytes::from(flipped);
        }
        this.sent += data.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn size_hint(&self) -> SizeHint {
        // Unknown: the response's Content-Length promises the whole file.
        SizeHint::default()
    }
}

/// A mirror with fault switches, for tests.
pub struct FaultyMirror {
    server: MirrorServer,
    layer: FaultLayer,
}

impl FaultyMirror {
    /// Serves `root` on `addr` with the default limits.
    pub fn start(root: impl Into<PathBuf>, addr: &str) -> io::Result<Self> {
        Self::start_with(root, addr, MirrorLimits::default())
    }

    pub fn start_with(
        root: impl Into<PathBuf>,
        addr: &str,
        limits: MirrorLimits,
    ) -> io::Result<Self> {
        let layer = FaultLayer::default();
        let server = MirrorServer::start_with_layer(root, addr, limits, layer.clone())?;
        Ok(FaultyMirror { server, layer })
    }

    /// Answers the next `n` matching requests with `status` (429 carries
    /// `Retry-After: 0`).
    pub fn fail_next(&self, status: u16, n: usize, scope: FaultScope) {
        self.layer.faults().fail.push((scope, status, n));
    }

    /// Cuts the connection after `bytes` body bytes, for the next `n`
    /// content bodies.
    pub fn drop_after(&self, bytes: u64, n: usize) {
        self.layer.faults().drop_after = Some((bytes, n));
    }

    /// Stops sending after `bytes` body bytes for `pause`, then closes, for
    /// the next `n` content bodies.
    pub fn stall_after(&self, bytes: u64, pause: Duration, n: usize) {
        self.layer.faults().stall = Some((bytes, pause, n));
    }

    /// Flips the first byte of the next `n` content bodies.
    pub fn corrupt_next(&self, n: usize) {
        self.layer.faults().corrupt = n;
    }

    /// Answers the next `n` content GETs with 404 (HEAD stays good).
    pub fn not_found_on_get(&self, n: usize) {
        self.layer.faults().not_found_get = n;
    }

    /// Turns range support off (whole bodies, no `Accept-Ranges`).
    pub fn set_ranges(&self, supported: bool) {
        self.layer.faults().no_ranges = !supported;
    }

    /// Clears every fault switch (the mirror's own options stay).
    pub fn clear_faults(&self) {
        *self.layer.faults() = Faults::default();
    }
}

impl Deref for FaultyMirror {
    type Target = MirrorServer;

    fn deref(&self) -> &MirrorServer {
        &self.server
    }
}

impl DerefMut for FaultyMirror {
    fn deref_mut(&mut self) -> &mut MirrorServer {
        &mut self.server
    }
}
