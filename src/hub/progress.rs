//! Download progress: one small trait the downloader calls, and three
//! renderers the CLI picks from (a redrawn bar on a terminal, periodic plain
//! lines otherwise, JSON lines with `--json`).
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the downloader reports. `Bytes` arrives a few times a second at most.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgressEvent<'a> {
    /// A transfer begins; `present` bytes were already on disk (resume).
    Start {
        file: &'a str,
        total: u64,
        present: u64,
    },
    Bytes {
        file: &'a str,
        done: u64,
        total: u64,
        /// Bytes per second over the last few seconds.
        rate: f64,
    },
    Retry {
        file: &'a str,
        attempt: u32,
        reason: &'a str,
        wait: Duration,
    },
    /// Hashing bytes that were already on disk (resume, cache reuse).
    Verifying { file: &'a str },
    Done {
        file: &'a str,
        size: u64,
        /// Bytes that came over the network in this call.
        fetched: u64,
        /// `downloaded`, `resumed`, `present`, `hf-cache`.
        how: &'static str,
    },
}

/// Receives progress events; implementations must be cheap and thread-safe.
pub trait Progress: Send + Sync {
    fn event(&self, event: &ProgressEvent<'_>);
}

/// Ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: &ProgressEvent<'_>) {}
}

/// `1.5 GiB`-style sizes.
pub fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn eta(done: u64, total: u64, rate: f64) -> String {
    if rate <= 0.0 || done >= total {
        return "-".into();
    }
    let secs = ((total - done) as f64 / rate).round() as u64;
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs / 60 % 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

fn pct(done: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        done as f64 * 100.0 / total as f64
    }
}

/// Plain lines at a fixed interval, for logs and pipes.
pub struct LineProgress<W: Write + Send> {
    out: Mutex<(W, Option<Instant>)>,
    interval: Duration,
}

impl<W: Write + Send> LineProgress<W> {
    pub fn new(out: W, interval: Duration) -> Self {
        LineProgress {
            out: Mutex::new((out, None)),
            interval,
        }
    }
}

impl<W: Write + Send> Progress for LineProgress<W> {
    fn event(&self, e: &ProgressEvent<'_>) {
        let Ok(mut g) = self.out.lock() else { return };
        let (out, last) = &mut *g;
        let line = match e {
            ProgressEvent::Start {
                file,
                total,
                present,
            } => {
                *last = Some(Instant::now());
                if *present > 0 {
                    format!(
                        "{file}: resuming at {} of {}",
                        human_bytes(*present as f64),
                        human_bytes(*total as f64)
                    )
                } else {
                    format!("{file}: downloading {}", human_bytes(*total as f64))
                }
            }
            ProgressEvent::Bytes {
                file,
                done,
                total,
                rate,
            } => {
                if last.is_some_and(|t| t.elapsed() < self.interval) {
                    return;
                }
                *last = Some(Instant::now());
                format!(
                    "{file}: {:.0}% {} of {}, {}/s, ETA {}",
                    pct(*done, *total),
                    human_bytes(*done as f64),
                    human_bytes(*total as f64),
                    human_bytes(*rate),
                    eta(*done, *total, *rate)
                )
            }
            ProgressEvent::Retry {
                file,
                attempt,
                reason,
                wait,
            } => format!(
                "{file}: {reason}; retry {attempt} in {:.1}s",
                wait.as_secs_f64()
            ),
            ProgressEvent::Verifying { file } => format!("{file}: verifying bytes on disk"),
            ProgressEvent::Done {
                file, size, how, ..
            } => format!("{file}: {how}, {} verified", human_bytes(*size as f64)),
        };
        let _ = writeln!(out, "{line}");
    }
}

/// A one-line bar redrawn in place (`\r`), for an interactive terminal.
pub struct TtyProgress<W: Write + Send> {
    out: Mutex<(W, Option<Instant>)>,
    width: usize,
}

impl<W: Write + Send> TtyProgress<W> {
    pub fn new(out: W) -> Self {
        TtyProgress {
            out: Mutex::new((out, None)),
            width: 30,
        }
    }
}

impl<W: Write + Send> Progress for TtyProgress<W> {
    fn event(&self, e: &ProgressEvent<'_>) {
        let Ok(mut g) = self.out.lock() else { return };
        let (out, last) = &mut *g;
        match e {
            ProgressEvent::Bytes {
                file,
                done,
                total,
                rate,
            } => {
                if last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) {
                    return;
                }
                *last = Some(Instant::now());
                let filled = ((pct(*done, *total) / 100.0) * self.width as f64) as usize;
                let filled = filled.min(self.width);
                let _ = write!(
                    out,
                    "\r\x1b[2K{file} [{}{}] {:>3.0}% {}/{} {}/s ETA {}",
                    "#".repeat(filled),
                    "-".repeat(self.width - filled),
                    pct(*done, *total),
                    human_bytes(*done as f64),
                    human_bytes(*total as f64),
                    human_bytes(*rate),
                    eta(*done, *total, *rate)
                );
            }
            ProgressEvent::Retry {
                file,
                attempt,
                reason,
                wait,
            } => {
                let _ = writeln!(
                    out,
                    "\r\x1b[2K{file}: {reason}; retry {attempt} in {:.1}s",
                    wait.as_secs_f64()
                );
            }
            ProgressEvent::Verifying { file } => {
                let _ = write!(out, "\r\x1b[2K{file}: verifying bytes on disk");
            }
            ProgressEvent::Done {
                file, size, how, ..
            } => {
                let _ = writeln!(
                    out,
                    "\r\x1b[2K{file}: {how}, {} verified",
                    human_bytes(*size as f64)
                );
            }
            ProgressEvent::Start { .. } => {}
        }
        let _ = out.flush();
    }
}

/// One JSON object per line (`--json`); byte events at most once per interval.
pub struct JsonProgress<W: Write + Send> {
    out: Mutex<(W, Option<Instant>)>,
    interval: Duration,
}

impl<W: Write + Send> JsonProgress<W> {
    pub fn new(out: W, interval: Duration) -> Self {
        JsonProgress {
            out: Mutex::new((out, None)),
            interval,
        }
    }
}

impl<W: Write + Send> Progress for JsonProgress<W> {
    fn event(&self, e: &ProgressEvent<'_>) {
        use serde_json::json;
        let Ok(mut g) = self.out.lock() else { return };
        let (out, last) = &mut *g;
        let v = match e {
            ProgressEvent::Start {
                file,
                total,
                present,
            } => json!({"event": "start", "file": file, "total": total, "present": present}),
            ProgressEvent::Bytes {
                file,
                done,
                total,
                rate,
            } => {
                if last.is_some_and(|t| t.elapsed() < self.interval) {
                    return;
                }
                *last = Some(Instant::now());
                json!({"event": "bytes", "file": file, "done": done, "total": total, "rate": rate.round()})
            }
            ProgressEvent::Retry {
                file,
                attempt,
                reason,
                wait,
            } => json!({"event": "retry", "file": file, "attempt": attempt, "reason": reason,
                        "wait_ms": wait.as_millis() as u64}),
            ProgressEvent::Verifying { file } => json!({"event": "verifying", "file": file}),
            ProgressEvent::Done {
                file,
                size,
                fetched,
                how,
            } => {
                json!({"event": "done", "file": file, "size": size, "fetched": fetched, "how": how})
            }
        };
        let _ = writeln!(out, "{v}");
    }
}
