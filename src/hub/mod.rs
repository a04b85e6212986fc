//! The Hugging Face Hub: a client for the few routes `onboard` needs, a
//! verified and resumable downloader, and a local mirror server.
//!
//! The routes are spoken directly over a small blocking HTTP client (`ureq`)
//! rather than through `hf-hub`: both published `hf-hub` lines either cannot
//! resume, cache an error body as the file, leave the sha256 empty, or leave
//! chunk tasks running after a failed call. The downloader needs
//! exact control over ranges, retries and what lands under the final name, so
//! it owns those few requests itself.
//!
//! * [`client`]: endpoint, token and cache settings from the environment;
//!   repo info, file listing with sha256, HEAD metadata, range reads.
//! * [`download`]: one file to a destination, resumable across restarts,
//!   parallel ranges hashed while written, verified before it is renamed.
//! * [`mirror`]: a loopback server that speaks the Hub's routes over a
//!   directory of repos, for air-gapped machines and for the tests.
//! * [`progress`]: the callback the CLI renders (bar, lines or JSON).
//! * [`upstream`]: whether the Hub still serves what was downloaded
//!   (headers only), and the record of the last check.
pub mod client;
pub mod disk;
pub mod download;
mod error;
mod fsutil;
pub mod mirror;
pub mod progress;
pub mod upstream;

pub use client::{
    default_revision, group_shards, FileGroup, FileMeta, HubClient, HubConfig, RepoFile, RepoInfo,
    RetryPolicy, Token,
};
pub use disk::flat_name;
pub use download::{
    bytes_on_disk, bytes_to_fetch, download_file, download_files, free_space_for,
    validate_repo_path, verified_identity, DownloadOptions, Downloaded, FileRequest, Outcome,
    REPLACED_INFIX,
};
pub use error::HubError;
pub use mirror::{LogEntry, MirrorLimits, MirrorServer, MirrorStats};
pub use progress::{
    JsonProgress, LineProgress, NoProgress, Progress, ProgressEvent, Throttle, TtyProgress,
};
