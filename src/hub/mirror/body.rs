//! Response bodies: small JSON answers held in memory, and file contents
//! streamed from disk a slice at a time (never read whole), optionally at
//! a set rate.
use std::fs::File;
use std::future::Future;
use std::io;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

/// The body of every answer the mirror gives, and of what a
/// [`Layer`](super::Layer) returns: any stream of bytes that may fail
/// (a failure cuts the connection, as a broken download does).
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, io::Error>;

/// A body held in memory.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// No body (a `HEAD`, a redirect).
pub fn empty() -> ResponseBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// The most read from the file for one frame: with hyper queueing at most
/// one frame past its small write buffer, about what a connection holds.
const SLICE_BYTES: u64 = 128 << 10;

/// Slices per second of a rate-limited body: small enough slices that the
/// rate holds over a fraction of a second.
const RATE_SLICES_PER_SEC: u64 = 50;

/// `[start, start + len)` of a file, read slice by slice on the blocking
/// pool as the connection asks for more; at `rate` bytes per second at
/// most when set.
pub(super) struct FileBody {
    file: Arc<File>,
    next: u64,
    end: u64,
    slice: u64,
    rate: Option<NonZeroU64>,
    began: Instant,
    sent: u64,
    reading: Option<JoinHandle<io::Result<Bytes>>>,
    waiting: Option<Pin<Box<Sleep>>>,
}

impl FileBody {
    pub fn open(
        path: &Path,
        start: u64,
        len: u64,
        rate: Option<NonZeroU64>,
    ) -> io::Result<FileBody> {
        let slice = match rate {
            Some(rate) => (rate.get() / RATE_SLICES_PER_SEC).clamp(1, SLICE_BYTES),
            None => SLICE_BYTES,
        };
        Ok(FileBody {
            file: Arc::new(File::open(path)?),
            next: start,
            end: start + len,
            slice,
            rate,
            began: Instant::now(),
            sent: 0,
            reading: None,
            waiting: None,
        })
    }

    /// When the next slice may go, for a rate-limited body.
    fn due(&self) -> Option<Instant> {
        let rate = self.rate?;
        let due = self.began + Duration::from_secs_f64(self.sent as f64 / rate.get() as f64);
        (due > Instant::now()).then_some(due)
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            if let Some(reading) = this.reading.as_mut() {
                let read = ready!(Pin::new(reading).poll(cx));
                this.reading = None;
                let bytes = read.map_err(io::Error::other).and_then(|r| r)?;
                this.next += bytes.len() as u64;
                this.sent += bytes.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if this.next >= this.end {
                return Poll::Ready(None);
            }
            if let Some(waiting) = this.waiting.as_mut() {
                ready!(waiting.as_mut().poll(cx));
                this.waiting = None;
            } else if let Some(due) = this.due() {
                this.waiting = Some(Box::pin(tokio::time::sleep_until(due)));
                continue;
            }
            let (file, at) = (this.file.clone(), this.next);
            let n = (this.end - at).min(this.slice) as usize;
            this.reading = Some(tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n];
                file.read_exact_at(&mut buf, at)?;
                Ok(Bytes::from(buf))
            }));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.end && self.reading.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.next)
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        if let Some(reading) = self.reading.take() {
            reading.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(body: FileBody) -> (Vec<Bytes>, Duration) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let began = std::time::Instant::now();
            let mut body = std::pin::pin!(body);
            let mut frames = Vec::new();
            while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                frames.push(frame.unwrap().into_data().unwrap());
            }
            (frames, began.elapsed())
        })
    }

    #[test]
    fn a_range_streams_in_slices_without_reading_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let data: Vec<u8> = (0..(600u32 << 10)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let body = FileBody::open(&path, 1000, 500 << 10, None).unwrap();
        assert_eq!(body.size_hint().exact(), Some(500 << 10));
        let (frames, _) = collect(body);
        assert!(frames.iter().all(|f| f.len() as u64 <= SLICE_BYTES));
        assert_eq!(frames.concat(), data[1000..1000 + (500 << 10)]);
    }

    #[test]
    fn a_rate_spreads_the_body_over_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, vec![7u8; 40_000]).unwrap();
        // 100 kB/s: the last of 40 kB goes out after about 0.4 s.
        let rate = NonZeroU64::new(100_000);
        let (frames, took) = collect(FileBody::open(&path, 0, 40_000, rate).unwrap());
        assert_eq!(frames.concat(), vec![7u8; 40_000]);
        assert!(frames.iter().all(|f| f.len() == 2_000), "slices of rate/50");
        assert!(took >= Duration::from_millis(350), "{took:?}");
    }
}
