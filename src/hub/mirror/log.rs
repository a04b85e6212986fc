//! The request log: what each request asked and got, as the tests inspect
//! it and `--log` prints it. A ring bounded in entries and in bytes.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One served request, as the tests inspect it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Arrival order, from 1.
    pub seq: u64,
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    /// The raw `Range` header, if any.
    pub range: Option<String>,
    pub status: u16,
    /// Body bytes handed to the connection so far (all of them once the
    /// answer is complete; fewer when a body was cut or is stalled).
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

/// An entry and the live count of its body's bytes.
struct Logged {
    entry: LogEntry,
    sent: Arc<AtomicU64>,
}

/// The ring: the oldest entries go first, past `max_entries` or past
/// `max_bytes` of request targets.
pub(super) struct RequestLog {
    entries: VecDeque<Logged>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl RequestLog {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        RequestLog {
            entries: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
        }
    }

    /// Keeps `entry`; its `bytes` are read from `sent` from then on.
    pub fn push(&mut self, entry: LogEntry, sent: Arc<AtomicU64>) {
        if self.max_entries == 0 {
            return;
        }
        self.bytes += entry.path.len();
        self.entries.push_back(Logged { entry, sent });
        while self.entries.len() > self.max_entries
            || (self.bytes > self.max_bytes && self.entries.len() > 1)
        {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= old.entry.path.len();
            }
        }
    }

    pub fn entries(&self) -> Vec<LogEntry> {
        self.entries
            .iter()
            .map(|l| LogEntry {
                bytes: l.sent.load(Ordering::Acquire),
                ..l.entry.clone()
            })
            .collect()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}
