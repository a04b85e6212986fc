//! A client for the Hub routes `onboard` uses, with the settings
//! `huggingface_hub` users already have (`HF_ENDPOINT`, `HF_TOKEN`, the token
//! file, `HF_HUB_OFFLINE`, `HF_HOME`, `HF_HUB_CACHE`).
use crate::gguf::ShardName;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use ureq::http::{HeaderMap, Response};

use super::error::{redact, HubError};

/// The default Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

pub use crate::secrets::Token;

pub use crate::retry::RetryPolicy;

/// The revision a repo is read at unless one is given: its default branch.
pub fn default_revision() -> String {
    "main".into()
}

/// Where the Hub is and who we are to it.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Base URL without a trailing slash (`HF_ENDPOINT`).
    pub endpoint: String,
    /// `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, else the token file
    /// (`HF_TOKEN_PATH`, else `$HF_HOME/token`): see `secrets::resolve_token`.
    pub token: Option<Token>,
    /// `HF_HUB_OFFLINE`: no request is made; only local files are used.
    pub offline: bool,
    /// `HF_HOME` (default `$XDG_CACHE_HOME/huggingface` or `~/.cache/huggingface`).
    pub hf_home: PathBuf,
    /// `HF_HUB_CACHE` (default `$HF_HOME/hub`): blobs reused instead of refetched.
    pub hub_cache: PathBuf,
    /// Time to open a TCP connection.
    pub connect_timeout: Duration,
    /// Retries of metadata requests.
    pub retry: RetryPolicy,
}

/// How huggingface_hub reads a boolean variable (`HF_HUB_OFFLINE=1`).
pub(crate) fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "on" | "yes" | "true"
    )
}

impl HubConfig {
    /// Settings from the process environment.
    pub fn from_env() -> Self {
        let cfg = Self::from_vars(|k| std::env::var(k).ok());
        // Whatever happens to its source later, what was sent stays hidden.
        if let Some(t) = &cfg.token {
            crate::secrets::remember(t);
        }
        cfg
    }

    /// Settings from a variable lookup (tests pass a map instead of mutating
    /// the process environment).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Self {
        let nonempty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let endpoint = nonempty("HF_ENDPOINT")
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
            .trim()
            .trim_end_matches('/')
            .to_string();
        let hf_home = crate::secrets::hf_home(&get);
        let hub_cache = nonempty("HF_HUB_CACHE")
            .or_else(|| nonempty("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        // The same definition redaction uses (`secrets::resolve_token`).
        let token = crate::secrets::resolve_token(&get).map(|(t, _)| t);
        HubConfig {
            endpoint,
            token,
            offline: get("HF_HUB_OFFLINE").is_some_and(|v| truthy(&v)),
            hf_home,
            hub_cache,
            // A Hub that does not answer a connect within seconds is not
            // there (a wrong HF_ENDPOINT, no network): say so soon.
            connect_timeout: CONNECT_TIMEOUT,
            retry: RetryPolicy::HUB_REQUEST,
        }
    }

    /// Settings for an explicit endpoint and nothing from the environment
    /// (no token, the HF cache under `hf_home`).
    pub fn for_endpoint(endpoint: &str, hf_home: &Path) -> Self {
        let mut cfg = Self::from_vars(|_| None);
        cfg.endpoint = endpoint.trim_end_matches('/').to_string();
        cfg.hf_home = hf_home.to_path_buf();
        cfg.hub_cache = hf_home.join("hub");
        cfg
    }
}

/// A repository at one revision (`/api/models/{repo}/revision/{rev}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoInfo {
    pub id: String,
    /// The commit the revision resolved to.
    pub commit: String,
    pub private: bool,
    /// `false`, or the gating mode (`auto`, `manual`).
    pub gated: Option<String>,
    /// File paths, as the repo lists them.
    pub files: Vec<String>,
}

/// One file of a repo listing (`/api/models/{repo}/tree/{rev}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoFile {
    pub path: String,
    pub size: u64,
    /// The LFS object id, which is the file's sha256 (absent for small files
    /// kept in git itself).
    pub sha256: Option<String>,
    /// The git blob id.
    pub blob_id: String,
}

/// What a HEAD of `/{repo}/resolve/{rev}/{file}` says about a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    pub size: u64,
    /// From `X-Linked-Etag` (LFS files); `None` for small git files.
    pub sha256: Option<String>,
    /// `ETag` without quotes.
    pub etag: Option<String>,
    /// `X-Repo-Commit`.
    pub commit: Option<String>,
    /// Whether range requests are advertised (a redirect to a CDN counts).
    pub accept_ranges: bool,
}

/// A file, or the shards of a split GGUF, treated as one unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileGroup {
    /// The shard prefix (`Q4_K_M/model`) or the file path.
    pub name: String,
    /// The files, in shard order.
    pub files: Vec<RepoFile>,
    /// `Some(count)` for a split GGUF.
    pub shard_count: Option<u32>,
    /// False when some shard of `1..=count` is missing from the listing.
    pub complete: bool,
}

impl FileGroup {
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Groups split GGUF shards; every other file is a group of its own.
/// Groups are ordered by name.
pub fn group_shards(files: &[RepoFile]) -> Vec<FileGroup> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<String, FileGroup> = BTreeMap::new();
    for f in files {
        match ShardName::parse_valid(&f.path) {
            Some(ShardName { prefix, count, .. }) => {
                let key = format!("{prefix}\u{0}{count}");
                groups
                    .entry(key)
                    .or_insert_with(|| FileGroup {
                        name: prefix.to_string(),
                        files: Vec::new(),
                        shard_count: Some(count),
                        complete: false,
                    })
                    .files
                    .push(f.clone());
            }
            None => {
                groups.insert(
                    f.path.clone(),
                    FileGroup {
                        name: f.path.clone(),
                        files: vec![f.clone()],
                        shard_count: None,
                        complete: true,
                    },
                );
            }
        }
    }
    let mut out: Vec<FileGroup> = groups.into_values().collect();
    for g in &mut out {
        if let Some(count) = g.shard_count {
            let index = |f: &RepoFile| ShardName::parse_valid(&f.path).map(|s| s.index);
            g.files.sort_by_key(index);
            g.files.dedup_by_key(|f| index(f));
            g.complete = g.files.len() as u64 == u64::from(count);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Checks an `owner/name` (or `name`) repo id before it goes into a URL or a
/// cache path.
pub fn validate_repo_id(repo: &str) -> Result<(), HubError> {
    let bad = |reason| HubError::BadRepoId {
        repo: repo.to_string(),
        reason,
    };
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.is_empty() || parts.len() > 2 {
        return Err(bad("expected `owner/name`"));
    }
    for p in parts {
        if p.is_empty() || p.len() > 96 {
            return Err(bad("empty or overlong part"));
        }
        if !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(bad("only letters, digits, `-`, `_` and `.` are allowed"));
        }
        if p.starts_with(['.', '-']) || p.ends_with('.') || p.contains("..") {
            return Err(bad("a part starts or ends with `.`/`-` or contains `..`"));
        }
    }
    Ok(())
}

/// Percent-encodes everything but unreserved characters (and `/` when asked).
pub(crate) fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A header as a string, if present and printable.
pub(crate) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// An ETag without `W/` and quotes.
fn clean_etag(v: &str) -> String {
    v.trim_start_matches("W/").trim_matches('"').to_string()
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The context an error message needs.
struct Ctx<'a> {
    repo: &'a str,
    revision: Option<&'a str>,
    file: Option<&'a str>,
}

/// Why one content request failed, as the downloader needs to know it.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// Worth another try (429, 5xx, cut, stall); the server may ask for a wait.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The server answered a range request with the whole file.
    RangeIgnored,
    /// No point retrying.
    Fatal(HubError),
}

/// An open response body positioned at the requested start.
pub(crate) struct RangeBody {
    pub reader: Box<dyn Read + Send>,
    /// Bytes the server promised to send.
    pub len: u64,
}

/// Whether no connection could be opened (see [`UNREACHABLE_HINT`]).
fn is_unreachable(e: &HubError) -> bool {
    matches!(e, HubError::Network { detail, .. } if detail.ends_with(UNREACHABLE_HINT))
}

/// How long opening a connection to the Hub may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// What to do when no connection to the Hub can be opened; ends the
/// error's detail, which is also how [`HubClient::retrying`] knows not to
/// try again: a refused or unanswered connect does not heal in seconds.
const UNREACHABLE_HINT: &str = "set HF_ENDPOINT to a Hub this machine can reach \
     (`onboard mirror serve DIR` serves one from local files), \
     or HF_HUB_OFFLINE=1 to use only the files already here";

/// A connection that could not be opened at all, as opposed to one that
/// failed midway (which a retry may well get through).
fn is_connect_failure(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::ConnectionFailed
        | ureq::Error::HostNotFound
        | ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::HostUnreachable
                | std::io::ErrorKind::NetworkUnreachable
                | std::io::ErrorKind::AddrNotAvailable
        ),
        _ => false,
    }
}

/// The Hub client. Cheap to clone; connections are pooled.
#[derive(Clone)]
pub struct HubClient {
    cfg: HubConfig,
    agent: ureq::Agent,
}

impl fmt::Debug for HubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClient").field("cfg", &self.cfg).finish()
    }
}

impl HubClient {
    pub fn new(cfg: HubConfig) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(cfg.connect_timeout))
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .max_idle_connections_per_host(16)
            .user_agent(format!("onboard/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        HubClient { cfg, agent }
    }

    /// A client configured from the process environment.
    pub fn from_env() -> Self {
        Self::new(HubConfig::from_env())
    }

    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    fn secret(&self) -> Option<&str> {
        self.cfg.token.as_ref().map(Token::expose)
    }

    fn check_online(&self, what: impl FnOnce() -> String) -> Result<(), HubError> {
        if self.cfg.offline {
            return Err(HubError::Offline { what: what() });
        }
        Ok(())
    }

    /// The un-followed download URL of a file.
    pub fn resolve_url(&self, repo: &str, revision: &str, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            self.cfg.endpoint,
            repo,
            encode(revision, false),
            encode(file, true)
        )
    }

    fn network_error(&self, e: &ureq::Error) -> HubError {
        let mut detail = redact(&e.to_string(), self.secret());
        if is_connect_failure(e) {
            detail = format!("{detail}; {UNREACHABLE_HINT}");
        }
        HubError::Network {
            endpoint: self.cfg.endpoint.clone(),
            detail,
        }
    }

    /// Sends one request. `follow` follows redirects; `read_timeout` bounds
    /// every single read (the stall detector).
    fn send(
        &self,
        head: bool,
        url: &str,
        range: Option<(u64, Option<u64>)>,
        follow: bool,
        read_timeout: Option<Duration>,
    ) -> Result<Response<ureq::Body>, ureq::Error> {
        let redirects = if follow { 10 } else { 0 };
        macro_rules! finish {
            ($b:expr) => {{
                let mut b = $b;
                if let Some(t) = &self.cfg.token {
                    b = b.header("Authorization", &format!("Bearer {}", t.expose()));
                }
                if let Some((start, end)) = range {
                    let v = match end {
                        Some(end) => format!("bytes={start}-{end}"),
                        None => format!("bytes={start}-"),
                    };
                    b = b.header("Range", &v);
                }
                b.config()
                    .max_redirects(redirects)
                    .max_redirects_will_error(false)
                    .timeout_per_read(read_timeout)
                    .timeout_recv_response(read_timeout)
                    .build()
                    .call()
            }};
        }
        if head {
            finish!(self.agent.head(url))
        } else {
            finish!(self.agent.get(url))
        }
    }

    /// Maps a non-success status to the error a person can act on.
    fn status_error(&self, status: u16, headers: &HeaderMap, ctx: &Ctx<'_>) -> HubError {
        let has_token = self.cfg.token.is_some();
        let repo = ctx.repo.to_string();
        let auth = |status| {
            if has_token {
                HubError::AccessDenied {
                    repo: repo.clone(),
                    status,
                }
            } else {
                HubError::AuthRequired { repo: repo.clone() }
            }
        };
        let not_found_file = || HubError::FileNotFound {
            repo: ctx.repo.to_string(),
            revision: ctx.revision.unwrap_or("main").to_string(),
            file: ctx.file.unwrap_or("").to_string(),
        };
        match header(headers, "x-error-code") {
            Some("RepoNotFound") => {
                return HubError::RepoNotFound {
                    repo: ctx.repo.to_string(),
                    endpoint: self.cfg.endpoint.clone(),
                }
            }
            Some("RevisionNotFound") => {
                return HubError::RevisionNotFound {
                    repo: ctx.repo.to_string(),
                    revision: ctx.revision.unwrap_or("main").to_string(),
                }
            }
            Some("EntryNotFound") => return not_found_file(),
            Some("GatedRepo") => return auth(status),
            _ => {}
        }
        match status {
            401 | 403 => auth(status),
            404 if ctx.file.is_some() => not_found_file(),
            404 => HubError::RepoNotFound {
                repo: ctx.repo.to_string(),
                endpoint: self.cfg.endpoint.clone(),
            },
            _ => HubError::Http {
                status,
                what: describe(ctx),
            },
        }
    }

    /// Runs `f` until it succeeds or fails for good, waiting between tries.
    fn retrying<T>(&self, mut f: impl FnMut() -> Result<T, HubError>) -> Result<T, HubError> {
        let mut attempt = 1;
        loop {
            match f() {
                Err(e)
                    if e.is_transient()
                        && !is_unreachable(&e)
                        && attempt < self.cfg.retry.attempts =>
                {
                    std::thread::sleep(self.cfg.retry.jittered_delay_before(attempt + 1));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// GETs a JSON document (metadata routes), retrying transient failures.
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        ctx: &Ctx<'_>,
    ) -> Result<(T, HeaderMap), HubError> {
        self.retrying(|| {
            let resp = self
                .send(false, url, None, true, Some(Duration::from_secs(60)))
                .map_err(|e| self.network_error(&e))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            if !(200..300).contains(&status) {
                return Err(self.status_error(status, &headers, ctx));
            }
            let mut body = resp.into_body();
            let text = body
                .with_config()
                .limit(64 * 1024 * 1024)
                .read_to_string()
                .map_err(|e| self.network_error(&e))?;
            let value = serde_json::from_str(&text).map_err(|e| HubError::BadResponse {
                what: describe(ctx),
                detail: e.to_string(),
            })?;
            Ok((value, headers))
        })
    }

    /// Repo metadata at a revision; the commit it resolves to pins every
    /// later request.
    pub fn repo_info(&self, repo: &str, revision: &str) -> Result<RepoInfo, HubError> {
        validate_repo_id(repo)?;
        self.check_online(|| format!("repository `{repo}`"))?;
        #[derive(Deserialize)]
        struct Sibling {
            rfilename: String,
        }
        #[derive(Deserialize)]
        struct Info {
            id: Option<String>,
            #[serde(rename = "modelId")]
            model_id: Option<String>,
            sha: Option<String>,
            #[serde(default)]
            private: bool,
            #[serde(default)]
            gated: serde_json::Value,
            #[serde(default)]
            siblings: Vec<Sibling>,
        }
        let url = format!(
            "{}/api/models/{}/revision/{}",
            self.cfg.endpoint,
            repo,
            encode(revision, false)
        );
        let ctx = Ctx {
            repo,
            revision: Some(revision),
            file: None,
        };
        let (info, _): (Info, _) = self.get_json(&url, &ctx)?;
        let commit = info.sha.ok_or_else(|| HubError::BadResponse {
            what: describe(&ctx),
            detail: "no `sha` (commit) in the answer".into(),
        })?;
        Ok(RepoInfo {
            id: info
                .id
                .or(info.model_id)
                .unwrap_or_else(|| repo.to_string()),
            commit,
            private: info.private,
            gated: match info.gated {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Bool(true) => Some("true".into()),
                _ => None,
            },
            files: info.siblings.into_iter().map(|s| s.rfilename).collect(),
        })
    }

    /// Every file of the repo at `revision`, with sizes and (for LFS files)
    /// sha256. Follows the tree API's pagination.
    pub fn list_files(&self, repo: &str, revision: &str) -> Result<Vec<RepoFile>, HubError> {
        validate_repo_id(repo)?;
        self.check_online(|| format!("the file list of `{repo}`"))?;
        #[derive(Deserialize)]
        struct Lfs {
            oid: String,
        }
        #[derive(Deserialize)]
        struct Entry {
            #[serde(rename = "type")]
            kind: String,
            path: String,
            #[serde(default)]
            size: u64,
            #[serde(default)]
            oid: String,
            lfs: Option<Lfs>,
        }
        let ctx = Ctx {
            repo,
            revision: Some(revision),
            file: None,
        };
        let mut url = format!(
            "{}/api/models/{}/tree/{}?recursive=true&expand=false",
            self.cfg.endpoint,
            repo,
            encode(revision, false)
        );
        let mut out = Vec::new();
        for _page in 0..10_000 {
            let (entries, headers): (Vec<Entry>, _) = self.get_json(&url, &ctx)?;
            out.extend(
                entries
                    .into_iter()
                    .filter(|e| e.kind == "file")
                    .map(|e| RepoFile {
                        sha256: e.lfs.map(|l| l.oid).filter(|o| is_sha256(o)),
                        path: e.path,
                        size: e.size,
                        blob_id: e.oid,
                    }),
            );
            match header(&headers, "link").and_then(next_link) {
                Some(next) => url = absolutize(&self.cfg.endpoint, &next),
                None => break,
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// HEAD of a file without following the redirect to the CDN, where the
    /// Hub puts the sha256 (`X-Linked-Etag`), size and commit. Relative
    /// redirects (a renamed repo) are followed.
    pub fn file_meta(&self, repo: &str, revision: &str, file: &str) -> Result<FileMeta, HubError> {
        validate_repo_id(repo)?;
        self.check_online(|| format!("`{file}` of `{repo}`"))?;
        let ctx = Ctx {
            repo,
            revision: Some(revision),
            file: Some(file),
        };
        let first = self.resolve_url(repo, revision, file);
        self.retrying(|| {
            let mut url = first.clone();
            for _ in 0..5 {
                let resp = self
                    .send(true, &url, None, false, Some(Duration::from_secs(60)))
                    .map_err(|e| self.network_error(&e))?;
                let status = resp.status().as_u16();
                let h = resp.headers();
                if (300..400).contains(&status) {
                    if let Some(loc) = header(h, "location").filter(|l| l.starts_with('/')) {
                        url = absolutize(&self.cfg.endpoint, loc);
                        continue;
                    }
                } else if !(200..300).contains(&status) {
                    return Err(self.status_error(status, h, &ctx));
                }
                let size = header(h, "x-linked-size")
                    .or_else(|| {
                        (status < 300)
                            .then(|| header(h, "content-length"))
                            .flatten()
                    })
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| HubError::BadResponse {
                        what: describe(&ctx),
                        detail: "no size (X-Linked-Size or Content-Length)".into(),
                    })?;
                let linked = header(h, "x-linked-etag").map(clean_etag);
                let etag = header(h, "etag").map(clean_etag);
                let sha256 = linked.clone().filter(|e| is_sha256(e));
                let accept_ranges = (300..400).contains(&status)
                    || header(h, "accept-ranges").is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
                return Ok(FileMeta {
                    size,
                    sha256,
                    etag,
                    commit: header(h, "x-repo-commit").map(str::to_string),
                    accept_ranges,
                });
            }
            Err(HubError::BadResponse {
                what: describe(&ctx),
                detail: "too many redirects".into(),
            })
        })
    }

    /// Reads `len` bytes of a file from `start` (a GGUF header before
    /// download, say). Follows the CDN redirect; retries transient failures.
    pub fn read_range(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>, HubError> {
        validate_repo_id(repo)?;
        self.check_online(|| format!("`{file}` of `{repo}`"))?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let url = self.resolve_url(repo, revision, file);
        let ctx = Ctx {
            repo,
            revision: Some(revision),
            file: Some(file),
        };
        let end = start + len - 1;
        self.retrying(|| {
            let resp = self
                .send(
                    false,
                    &url,
                    Some((start, Some(end))),
                    true,
                    Some(Duration::from_secs(60)),
                )
                .map_err(|e| self.network_error(&e))?;
            let status = resp.status().as_u16();
            if status == 416 {
                return Ok(Vec::new());
            }
            if !(200..300).contains(&status) {
                return Err(self.status_error(status, resp.headers(), &ctx));
            }
            let mut reader = resp.into_body().into_reader();
            if status == 200 {
                // No range support: skip to `start`.
                std::io::copy(&mut (&mut reader).take(start), &mut std::io::sink())
                    .map_err(|e| net_io(&self.cfg.endpoint, e))?;
            }
            let mut buf = Vec::with_capacity(len.min(64 << 20) as usize);
            reader
                .take(len)
                .read_to_end(&mut buf)
                .map_err(|e| net_io(&self.cfg.endpoint, e))?;
            Ok(buf)
        })
    }

    /// Opens `[start, end)` of a file for the downloader. `end == None`
    /// asks for the whole file without a `Range` header.
    pub(crate) fn open_content(
        &self,
        ctx_repo: &str,
        revision: &str,
        file: &str,
        range: Option<(u64, u64)>,
        stall: Duration,
    ) -> Result<RangeBody, FetchError> {
        let url = self.resolve_url(ctx_repo, revision, file);
        let ctx = Ctx {
            repo: ctx_repo,
            revision: Some(revision),
            file: Some(file),
        };
        let wire_range = range.map(|(s, e)| (s, Some(e.saturating_sub(1))));
        let resp = self
            .send(false, &url, wire_range, true, Some(stall))
            .map_err(|e| match e {
                ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
                    FetchError::Fatal(self.network_error(&e))
                }
                _ => FetchError::Transient {
                    reason: redact(&e.to_string(), self.secret()),
                    retry_after: None,
                },
            })?;
        let status = resp.status().as_u16();
        let h = resp.headers();
        if status == 429 || status >= 500 || status == 408 {
            let retry_after = header(h, "retry-after")
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(FetchError::Transient {
                reason: format!("HTTP {status}"),
                retry_after,
            });
        }
        if !(200..300).contains(&status) {
            return Err(FetchError::Fatal(self.status_error(status, h, &ctx)));
        }
        let content_len = header(h, "content-length").and_then(|v| v.parse::<u64>().ok());
        let len = match (range, status) {
            (Some((start, end)), 206) => {
                let cr = header(h, "content-range").unwrap_or("");
                let expect = format!("bytes {}-{}/", start, end - 1);
                if !cr.starts_with(&expect) {
                    return Err(FetchError::Transient {
                        reason: format!("unexpected Content-Range `{cr}` for {start}-{}", end - 1),
                        retry_after: None,
                    });
                }
                end - start
            }
            (Some((start, _)), 200) if start > 0 => return Err(FetchError::RangeIgnored),
            (Some(_), 200) => return Err(FetchError::RangeIgnored),
            (None, 200) => content_len.unwrap_or(u64::MAX),
            (_, s) => {
                return Err(FetchError::Fatal(HubError::BadResponse {
                    what: describe(&ctx),
                    detail: format!("HTTP {s} for a content request"),
                }))
            }
        };
        Ok(RangeBody {
            reader: Box::new(resp.into_body().into_reader()),
            len,
        })
    }

    /// `$HF_HUB_CACHE/models--{owner}--{name}`.
    pub fn cache_repo_dir(&self, repo: &str) -> PathBuf {
        self.cfg
            .hub_cache
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// A blob of the user's HF cache with this sha256, if present.
    pub fn cached_blob(&self, repo: &str, sha256: &str) -> Option<PathBuf> {
        if !is_sha256(sha256) || validate_repo_id(repo).is_err() {
            return None;
        }
        let p = self.cache_repo_dir(repo).join("blobs").join(sha256);
        p.is_file().then_some(p)
    }

    /// The HF cache's copy of `file` at `revision` (through `refs/` and
    /// `snapshots/`): the blob, the sha256 its name states, and the commit.
    /// For offline use.
    pub fn cached_snapshot_file(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Option<(PathBuf, String, String)> {
        validate_repo_id(repo).ok()?;
        let dir = self.cache_repo_dir(repo);
        let commit = if revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()) {
            revision.to_string()
        } else {
            if revision.contains("..") {
                return None;
            }
            std::fs::read_to_string(dir.join("refs").join(revision))
                .ok()?
                .trim()
                .to_string()
        };
        if commit.contains(['/', '.']) {
            return None;
        }
        let link = dir.join("snapshots").join(&commit).join(file);
        let target = std::fs::canonicalize(&link).ok()?;
        let name = target.file_name()?.to_str()?.to_string();
        (is_sha256(&name) && target.is_file()).then_some((target, name, commit))
    }
}

fn net_io(endpoint: &str, e: std::io::Error) -> HubError {
    HubError::Network {
        endpoint: endpoint.to_string(),
        detail: e.to_string(),
    }
}

fn describe(ctx: &Ctx<'_>) -> String {
    match (ctx.file, ctx.revision) {
        (Some(f), Some(r)) => format!("`{f}` of `{}` at `{r}`", ctx.repo),
        (Some(f), None) => format!("`{f}` of `{}`", ctx.repo),
        (None, Some(r)) => format!("`{}` at `{r}`", ctx.repo),
        (None, None) => format!("`{}`", ctx.repo),
    }
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

fn absolutize(endpoint: &str, url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        return url.to_string();
    }
    // Keep scheme and authority of the endpoint.
    let after_scheme = endpoint.find("://").map(|i| i + 3).unwrap_or(0);
    let authority_end = endpoint[after_scheme..]
        .find('/')
        .map(|i| after_scheme + i)
        .unwrap_or(endpoint.len());
    format!("{}{}", &endpoint[..authority_end], url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups() {
        let f = |p: &str| RepoFile {
            path: p.into(),
            size: 1,
            sha256: None,
            blob_id: String::new(),
        };
        let g = group_shards(&[
            f("a-00002-of-00002.gguf"),
            f("README.md"),
            f("a-00001-of-00002.gguf"),
            f("b-00001-of-00003.gguf"),
        ]);
        assert_eq!(g.len(), 3);
        assert_eq!(g[1].name, "a");
        assert!(g[1].complete);
        assert_eq!(g[1].files[0].path, "a-00001-of-00002.gguf");
        assert!(!g[2].complete);
    }

    #[test]
    fn env_settings() {
        let vars = |k: &str| match k {
            "HF_ENDPOINT" => Some("http://127.0.0.1:9/".to_string()),
            "HF_TOKEN" => Some(" hf_secret\n".to_string()),
            "HF_HUB_OFFLINE" => Some("YES".to_string()),
            "HF_HOME" => Some("/x/hf".to_string()),
            _ => None,
        };
        let c = HubConfig::from_vars(vars);
        assert_eq!(c.endpoint, "http://127.0.0.1:9");
        assert_eq!(c.token, Token::new("hf_secret"));
        assert!(c.offline);
        assert_eq!(c.hub_cache, PathBuf::from("/x/hf/hub"));
        assert!(!format!("{c:?}").contains("hf_secret"));
    }

    #[test]
    fn links_and_encoding() {
        assert_eq!(
            next_link("<https://h/api/x?cursor=a>; rel=\"next\"").as_deref(),
            Some("https://h/api/x?cursor=a")
        );
        assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(encode("a b/c.gguf", true), "a%20b/c.gguf");
        assert_eq!(absolutize("http://h:1/x", "/a/b"), "http://h:1/a/b");
        assert!(validate_repo_id("unsloth/Qwen3.5-35B-A3B-GGUF").is_ok());
        assert!(validate_repo_id("../x").is_err());
        assert!(validate_repo_id("a/b/c").is_err());
    }
}
