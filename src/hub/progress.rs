//! Download progress: one small trait the downloader calls, its events, and
//! three renderers (bars redrawn in place on a
//! terminal by indicatif, periodic plain lines otherwise, JSON lines with `--json`).
use crate::workflow::task::TransferProgress;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use serde::Serialize;

/// What the downloader reports. `Bytes` arrives a few times a second at most.
/// As JSON: `{"event": "bytes", "file": …}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
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
        #[serde(rename = "wait_ms", serialize_with = "millis")]
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
        how: &'a str,
    },
}

impl<'a> ProgressEvent<'a> {
    /// The file every event is about.
    pub fn file(&self) -> &'a str {
        match self {
            ProgressEvent::Start { file, .. }
            | ProgressEvent::Bytes { file, .. }
            | ProgressEvent::Retry { file, .. }
            | ProgressEvent::Verifying { file }
            | ProgressEvent::Done { file, .. } => file,
        }
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
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

/// Seconds left at `rate`, when it can tell.
pub fn eta_secs(done: u64, total: u64, rate: f64) -> Option<u64> {
    if rate <= 0.0 || !rate.is_finite() || done >= total {
        return None;
    }
    Some(((total - done) as f64 / rate).round() as u64)
}

fn eta(done: u64, total: u64, rate: f64) -> String {
    let Some(secs) = eta_secs(done, total, rate) else {
        return "-".into();
    };
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

/// The event as one line of text (`m.gguf: 45% 1.0 MiB of 2.0 MiB, …`).
pub fn describe(e: &ProgressEvent<'_>) -> String {
    match e {
        ProgressEvent::Start {
            file,
            total,
            present,
        } => {
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
        } => format!(
            "{file}: {:.0}% {} of {}, {}/s, ETA {}",
            pct(*done, *total),
            human_bytes(*done as f64),
            human_bytes(*total as f64),
            human_bytes(*rate),
            eta(*done, *total, *rate)
        ),
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
    }
}

/// Lets `Bytes` events through at most once per interval per key (the other
/// kinds always pass).
pub struct Throttle {
    interval: Duration,
    last: Mutex<HashMap<String, Instant>>,
}

impl Throttle {
    pub fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `e` (for `key`) should be shown now.
    pub fn pass(&self, key: &str, e: &ProgressEvent<'_>) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return true;
        };
        match e {
            ProgressEvent::Bytes { .. } => {
                let now = Instant::now();
                match last.get(key) {
                    Some(t) if now.duration_since(*t) < self.interval => false,
                    _ => {
                        last.insert(key.to_string(), now);
                        true
                    }
                }
            }
            // A start counts as a line shown: the first figures come one
            // interval later.
            ProgressEvent::Start { .. } => {
                last.insert(key.to_string(), Instant::now());
                true
            }
            ProgressEvent::Done { .. } => {
                last.remove(key);
                true
            }
            _ => true,
        }
    }
}

/// Plain lines, byte counts at a fixed interval per file, for logs and pipes.
pub struct LineProgress<W: Write + Send> {
    out: Mutex<W>,
    throttle: Throttle,
}

impl<W: Write + Send> LineProgress<W> {
    pub fn new(out: W, interval: Duration) -> Self {
        LineProgress {
            out: Mutex::new(out),
            throttle: Throttle::new(interval),
        }
    }
}

impl<W: Write + Send> Progress for LineProgress<W> {
    fn event(&self, e: &ProgressEvent<'_>) {
        let file = e.file();
        if !self.throttle.pass(file, e) {
            return;
        }
        let Ok(mut out) = self.out.lock() else { return };
        let _ = writeln!(out, "{}", describe(e));
    }
}

/// Where one bar stands.
#[derive(Clone, Debug)]
enum BarState {
    Bytes { done: u64, total: u64, rate: f64 },
    Verifying,
}

/// A writer and its width as indicatif's terminal: indicatif moves the
/// cursor and erases by the screen rows a line takes, so a line with wide
/// characters (or a narrowed window) never leaves a fragment behind.
struct Screen<W> {
    out: Mutex<W>,
    width: Box<dyn Fn() -> usize + Send + Sync>,
}

impl<W> std::fmt::Debug for Screen<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Screen")
    }
}

impl<W: Write + Send> Screen<W> {
    /// `ESC [ n <direction>`; nothing for a move of zero.
    fn move_cursor(&self, n: usize, direction: char) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.write(&format!("\x1b[{n}{direction}"))
    }

    fn write(&self, s: &str) -> std::io::Result<()> {
        self.out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(s.as_bytes())
    }
}

impl<W: Write + Send> indicatif::TermLike for Screen<W> {
    fn width(&self) -> u16 {
        (self.width)().clamp(20, usize::from(u16::MAX)) as u16
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.move_cursor(n, 'A')
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.move_cursor(n, 'B')
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.move_cursor(n, 'C')
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.move_cursor(n, 'D')
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.write(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.write("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        self.out.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

/// One transfer's bar.
struct Bar {
    key: String,
    label: String,
    bar: ProgressBar,
}

/// Progress bars redrawn in place at the bottom of a terminal, one line per
/// transfer in flight (indicatif's `MultiProgress` draws them); other output
/// goes above them through [`TtyProgress::suspend`] (or
/// [`TtyProgress::println`]), so log lines of parallel steps never land in
/// the middle of a bar.
pub struct TtyProgress<W: Write + Send> {
    multi: MultiProgress,
    bars: Mutex<Vec<Bar>>,
    width: Arc<dyn Fn() -> usize + Send + Sync>,
    _out: std::marker::PhantomData<fn(W)>,
}

impl<W: Write + Send + 'static> TtyProgress<W> {
    /// Bars for a terminal 80 columns wide.
    pub fn new(out: W) -> Self {
        Self::with_width(out, || 80)
    }

    /// `width` is asked before each redraw (a terminal can be resized).
    pub fn with_width(out: W, width: impl Fn() -> usize + Send + Sync + 'static) -> Self {
        let width: Arc<dyn Fn() -> usize + Send + Sync> = Arc::new(width);
        let screen_width = width.clone();
        let screen = Screen {
            out: Mutex::new(out),
            width: Box::new(move || screen_width()),
        };
        // Ten redraws a second at most.
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(screen), 10);
        TtyProgress {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(Vec::new()),
            width,
            _out: std::marker::PhantomData,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Bar>> {
        self.bars.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Updates the bar `key` (shown as `label`) from `e`. `Done` removes
    /// the bar and returns the line to keep; the caller prints it (above the
    /// bars, with [`suspend`](Self::suspend)) where its other output goes.
    pub fn update(&self, key: &str, label: &str, e: &ProgressEvent<'_>) -> Option<String> {
        let state = match e {
            ProgressEvent::Start { total, present, .. } => BarState::Bytes {
                done: *present,
                total: *total,
                rate: 0.0,
            },
            ProgressEvent::Bytes {
                done, total, rate, ..
            } => BarState::Bytes {
                done: *done,
                total: *total,
                rate: *rate,
            },
            ProgressEvent::Verifying { .. } => BarState::Verifying,
            ProgressEvent::Retry { .. } => return Some(describe(e)),
            ProgressEvent::Done { .. } => {
                self.remove_where(|b| b.key == key);
                return Some(describe(e));
            }
        };
        let mut bars = self.lock();
        let index = self.line_for(&mut bars, key, label);
        let width = (self.width)().max(20);
        let line = bar_line(&bars[index].label, &state, width - 1);
        bars[index].bar.set_message(line);
        None
    }

    /// Keeps `text` as the line `key` among the bars (what one of several
    /// runs is doing now), cut to the terminal's width.
    pub fn status(&self, key: &str, text: &str) {
        let mut bars = self.lock();
        let index = self.line_for(&mut bars, key, "");
        let width = (self.width)().max(20);
        bars[index].bar.set_message(tail_columns(text, width - 1));
    }

    /// The index of line `key`, added at the bottom when it is new.
    fn line_for(&self, bars: &mut Vec<Bar>, key: &str, label: &str) -> usize {
        if let Some(i) = bars.iter().position(|b| b.key == key) {
            return i;
        }
        let bar = self.multi.add(ProgressBar::no_length());
        bar.set_style(
            ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bars.push(Bar {
            key: key.to_string(),
            label: label.to_string(),
            bar,
        });
        bars.len() - 1
    }

    fn remove_where(&self, gone: impl Fn(&Bar) -> bool) {
        let mut bars = self.lock();
        bars.retain(|b| {
            if gone(b) {
                b.bar.finish_and_clear();
                self.multi.remove(&b.bar);
                false
            } else {
                true
            }
        });
    }

    /// Removes every bar whose key starts with `prefix` (a step that ended
    /// without a `Done`, say) and redraws.
    pub fn remove(&self, prefix: &str) {
        self.remove_where(|b| b.key.starts_with(prefix));
    }

    /// Erases the bars, runs `f` (which prints whatever it likes), draws
    /// the bars again below its output.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }

    /// Prints `line` above the bars, on the bars' own writer.
    pub fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    /// Erases the bars and forgets them.
    pub fn clear(&self) {
        self.remove_where(|_| true);
        let _ = self.multi.clear();
    }
}

/// Columns `s` takes on a terminal (wide characters take two).
fn columns(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// Keeps the end of `s` that fits in `max` columns, marking a cut with `…`.
fn tail_columns(s: &str, max: usize) -> String {
    if columns(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut kept = Vec::new();
    let mut used = 1; // the `…`
    for c in s.chars().rev() {
        let w = UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > max {
            break;
        }
        used += w;
        kept.push(c);
    }
    std::iter::once('…').chain(kept.into_iter().rev()).collect()
}

/// One bar, at most `width` columns: `label [####----] 45% 1.0 MiB/2.0
/// MiB 3.1 MiB/s ETA 1s`; the label is shortened first, then the bar.
fn bar_line(label: &str, state: &BarState, width: usize) -> String {
    let (done, total, rate) = match state {
        BarState::Verifying => {
            let text = " verifying the bytes on disk";
            let label = tail_columns(label, width.saturating_sub(text.len()));
            return format!("{label}{text}");
        }
        BarState::Bytes { done, total, rate } => (*done, *total, *rate),
    };
    let stats = format!(
        " {:>3.0}% {}/{} {}/s ETA {}",
        pct(done, total),
        human_bytes(done as f64),
        human_bytes(total as f64),
        human_bytes(rate),
        eta(done, total, rate)
    );
    let stats = tail_columns(&stats, width);
    let room = width.saturating_sub(columns(&stats));
    // " [" + cells + "]": 10 to 30 cells after the label, when they fit.
    let (label, bar) = if room >= 1 + 3 + 10 {
        let label = tail_columns(label, room - 3 - 10);
        let cells = (room - 3 - columns(&label)).min(30);
        let filled = (((pct(done, total) / 100.0) * cells as f64) as usize).min(cells);
        let bar = format!(" [{}{}]", "#".repeat(filled), "-".repeat(cells - filled));
        (label, bar)
    } else {
        (tail_columns(label, room), String::new())
    };
    format!("{label}{bar}{stats}")
}

impl<W: Write + Send + 'static> Progress for TtyProgress<W> {
    fn event(&self, e: &ProgressEvent<'_>) {
        let file = e.file();
        if let Some(line) = self.update(file, file, e) {
            self.println(&line);
        }
    }
}

/// One JSON object per line (`--json`); byte events at most once per
/// interval per file.
pub struct JsonProgress<W: Write + Send> {
    out: Mutex<W>,
    throttle: Throttle,
}

impl<W: Write + Send> JsonProgress<W> {
    pub fn new(out: W, interval: Duration) -> Self {
        JsonProgress {
            out: Mutex::new(out),
            throttle: Throttle::new(interval),
        }
    }
}

impl<W: Write + Send> Progress for JsonProgress<W> {
    fn event(&self, e: &ProgressEvent<'_>) {
        if !self.throttle.pass(e.file(), e) {
            return;
        }
        let Ok(mut out) = self.out.lock() else { return };
        let _ = writeln!(out, "{}", serde_json::to_value(e).unwrap_or_default());
    }
}

/// The downloader's event as the workflow engine carries it to its
/// front end.
impl From<&ProgressEvent<'_>> for TransferProgress {
    fn from(e: &ProgressEvent<'_>) -> Self {
        match *e {
            ProgressEvent::Start {
                file,
                total,
                present,
            } => TransferProgress::Start {
                file: file.into(),
                total,
                present,
            },
            ProgressEvent::Bytes {
                file,
                done,
                total,
                rate,
            } => TransferProgress::Bytes {
                file: file.into(),
                done,
                total,
                rate: rate.round(),
                eta_s: eta_secs(done, total, rate),
            },
            ProgressEvent::Retry {
                file,
                attempt,
                reason,
                wait,
            } => TransferProgress::Retry {
                file: file.into(),
                attempt,
                reason: reason.into(),
                wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            },
            ProgressEvent::Verifying { file } => TransferProgress::Verifying { file: file.into() },
            ProgressEvent::Done {
                file,
                size,
                fetched,
                how,
            } => TransferProgress::Done {
                file: file.into(),
                size,
                fetched,
                how: how.into(),
            },
        }
    }
}
