//! Errors of the Hub client and downloader.
//!
//! Every message is meant for the person at the terminal: it names the repo,
//! revision or file and says what to do. None of them ever carries the token:
//! details copied from lower layers pass through [`redact`] first.
use std::path::PathBuf;

/// What went wrong talking to the Hub or writing a downloaded file.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "repository `{repo}` not found on {endpoint} (if it is private or gated, set HF_TOKEN)"
    )]
    RepoNotFound { repo: String, endpoint: String },

    #[error("revision `{revision}` not found in repository `{repo}`")]
    RevisionNotFound { repo: String, revision: String },

    #[error("file `{file}` not found in `{repo}` at revision `{revision}`")]
    FileNotFound {
        repo: String,
        revision: String,
        file: String,
    },

    #[error("repository `{repo}` is gated or private and needs a token: accept its terms on the Hub, then set HF_TOKEN or run `hf auth login`")]
    AuthRequired { repo: String },

    #[error("the token was refused for `{repo}` (HTTP {status}): it lacks access to this gated or private repository")]
    AccessDenied { repo: String, status: u16 },

    #[error("HF_HUB_OFFLINE is set and {what} is not available locally (neither verified in place nor in the HF cache)")]
    Offline { what: String },

    #[error("interrupted (Ctrl-C or SIGTERM); the bytes already downloaded are kept")]
    Interrupted,

    #[error("cannot reach the Hub at {endpoint}: {detail}")]
    Network { endpoint: String, detail: String },

    #[error("the Hub answered HTTP {status} for {what}{}", retry_hint(*status))]
    Http { status: u16, what: String },

    #[error("unexpected answer from the Hub for {what}: {detail}")]
    BadResponse { what: String, detail: String },

    #[error("invalid repository id `{repo}`: {reason}")]
    BadRepoId { repo: String, reason: &'static str },

    #[error("refusing file name `{name}`: {reason}")]
    BadFileName { name: String, reason: &'static str },

    #[error("not enough free disk space in {}: {} needed (including a {} margin), {} available; free some space there and run the same command again (the bytes already downloaded are kept)", path.display(), size(*needed), size(*margin), size(*available))]
    DiskFull {
        path: PathBuf,
        needed: u64,
        available: u64,
        margin: u64,
    },

    /// The disk filled up during the download (another program wrote to
    /// it, or the file system cannot reserve space ahead).
    #[error("no space left on the device holding {} (writing {}; {} free now): free some space there and run the same command again; the bytes already downloaded are kept and only the rest is fetched", dir.display(), file_name(path), size(*available))]
    NoSpace {
        /// The file being written.
        path: PathBuf,
        dir: PathBuf,
        available: u64,
    },

    #[error("`{file}`: sha256 mismatch after {attempts} attempt(s): expected {expected}, got {actual}; the bad bytes were deleted")]
    ShaMismatch {
        file: String,
        expected: String,
        actual: String,
        attempts: u32,
    },

    #[error("`{file}`: size mismatch: the Hub says {expected} bytes, {actual} arrived")]
    SizeMismatch {
        file: String,
        expected: u64,
        actual: u64,
    },

    #[error("`{file}`: gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        file: String,
        attempts: u32,
        last: String,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else {
        format!(
            "{} ({bytes} bytes)",
            super::progress::human_bytes(bytes as f64)
        )
    }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn retry_hint(status: u16) -> &'static str {
    match status {
        429 => " (rate limited; retried with backoff and still refused)",
        500..=599 => " (server error; retried with backoff and still failing)",
        _ => "",
    }
}

impl HubError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HubError::Io {
            path: path.into(),
            source,
        }
    }

    /// An I/O error on `path`, a file in `dir`; a full disk (or quota)
    /// becomes [`HubError::NoSpace`].
    pub(crate) fn write(
        path: impl Into<PathBuf>,
        dir: &std::path::Path,
        e: std::io::Error,
    ) -> Self {
        if is_no_space(&e) {
            HubError::NoSpace {
                path: path.into(),
                dir: dir.to_path_buf(),
                available: super::fsutil::free_space(dir).unwrap_or(0),
            }
        } else {
            HubError::io(path, e)
        }
    }

    /// Whether trying again later may succeed (network trouble, 429, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            HubError::Network { .. } | HubError::RetriesExhausted { .. } => true,
            HubError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// ENOSPC or EDQUOT: the disk (or the user's quota) is full.
pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Replaces every occurrence of `secret` in `text` with `***`.
pub(crate) fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, "***"),
        _ => text.to_string(),
    }
}
