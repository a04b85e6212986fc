//! The Hub's routes, each a plain function from a request (its body read
//! already) to a response; no connection, socket or limit in sight.
//!
//! `GET /api/models/{repo}[/revision/{rev}][?blobs=true]`,
//! `GET /api/models/{repo}/tree/{rev}[/{path}]`, `GET …/refs`,
//! `GET …/commits/{rev}`, `POST …/paths-info/{rev}`,
//! `HEAD|GET /{repo}/resolve/{rev}/{file}` and, after a CDN redirect,
//! `GET /_cdn/{repo}/{sha256}`.
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::body::{empty, full, FileBody};
use super::repo::{
    commit_of, git_blob_id, last_modified, lfs_pointer, names_commit, walk, RepoFile, Stored,
};
use super::{HubState, MirrorResponse, ServingOptions};

/// The Hub's error answer: a JSON body and the `X-Error-Code` and
/// `X-Error-Message` headers clients read (`EntryNotFound`, `GatedRepo`…).
pub fn hub_error(status: StatusCode, code: &str, message: &str) -> MirrorResponse {
    let mut r = json_response(status, &json!({ "error": message }));
    set_header(&mut r, "x-error-code", code);
    set_header(&mut r, "x-error-message", message);
    r
}

/// An answer in the Hub's error form, kept small until it becomes the
/// response.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        Refusal {
            status,
            code,
            message,
        }
    }

    fn into_response(self) -> MirrorResponse {
        hub_error(self.status, self.code, &self.message)
    }
}

fn json_response(status: StatusCode, v: &Value) -> MirrorResponse {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    set_header(&mut r, "content-type", "application/json");
    r
}

/// Sets a header; a value that cannot be one (a control character in a
/// file name) is left out rather than sent broken.
pub(super) fn set_header(r: &mut Response<impl Sized>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
        r.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

fn request_header<'a>(req: &'a Request<Bytes>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn bad_request(message: &str) -> MirrorResponse {
    hub_error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn io_error(e: &io::Error) -> MirrorResponse {
    hub_error(StatusCode::INTERNAL_SERVER_ERROR, "IoError", &e.to_string())
}

fn entry_not_found(file: &str, repo: &str) -> MirrorResponse {
    hub_error(
        StatusCode::NOT_FOUND,
        "EntryNotFound",
        &format!("{file} does not exist in {repo}"),
    )
}

/// Answers one request.
pub(super) fn route(hub: &HubState, req: &Request<Bytes>) -> MirrorResponse {
    let options = hub.options();
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let post = req.method() == Method::POST;
    let is_paths_info = matches!(segs.as_slice(), ["api", "models", _, _, "paths-info", ..]);
    if !(req.method() == Method::GET || req.method() == Method::HEAD || post && is_paths_info) {
        return hub_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "only GET and HEAD are served (and POST on paths-info)",
        );
    }
    match segs.as_slice() {
        ["api", "models", owner, name, rest @ ..] => {
            let repo = format!("{owner}/{name}");
            let dir = match repo_dir(hub, &options, req, &repo) {
                Ok(d) => d,
                Err(r) => return r.into_response(),
            };
            let blobs = query_flag(query, "blobs");
            let decoded = |parts: &[&str]| percent_decode(&parts.join("/"));
            match rest {
                [] => info(hub, &repo, &dir, "main", blobs),
                ["revision", rev @ ..] if !rev.is_empty() => match decoded(rev) {
                    Some(rev) => info(hub, &repo, &dir, &rev, blobs),
                    None => bad_request("bad revision"),
                },
                ["refs"] => refs(&repo, &dir),
                ["commits", rev @ ..] if !rev.is_empty() => match decoded(rev) {
                    Some(rev) => commits(&repo, &dir, &rev),
                    None => bad_request("bad revision"),
                },
                ["paths-info", rev @ ..] if post && !rev.is_empty() => match decoded(rev) {
                    Some(rev) => paths_info(hub, req, &repo, &dir, &rev),
                    None => bad_request("bad revision"),
                },
                ["tree", rev, sub @ ..] => {
                    let recursive = query_flag(query, "recursive");
                    match (percent_decode(rev), decoded(sub)) {
                        (Some(rev), Some(sub)) => {
                            match tree(hub, &repo, &dir, &rev, &sub, recursive) {
                                Ok(entries) => {
                                    paginate(req, options.page_size, path, query, entries)
                                }
                                Err(r) => r.into_response(),
                            }
                        }
                        _ => bad_request("bad path"),
                    }
                }
                _ => hub_error(StatusCode::NOT_FOUND, "NotFound", "no such route"),
            }
        }
        ["_cdn", owner, name, sha] => cdn(hub, &options, req, &format!("{owner}/{name}"), sha),
        [owner, name, "resolve", rev, file @ ..] if !file.is_empty() => {
            let repo = format!("{owner}/{name}");
            let dir = match repo_dir(hub, &options, req, &repo) {
                Ok(d) => d,
                Err(r) => return r.into_response(),
            };
            match (percent_decode(rev), percent_decode(&file.join("/"))) {
                (Some(rev), Some(file)) => resolve(hub, &options, req, &repo, &dir, &rev, &file),
                _ => bad_request("bad path"),
            }
        }
        _ => hub_error(StatusCode::NOT_FOUND, "NotFound", "no such route"),
    }
}

pub(super) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `name=true` (or `1`, `True`) is in a query string.
fn query_flag(query: &str, name: &str) -> bool {
    query.split('&').any(|kv| {
        kv.split_once('=')
            .is_some_and(|(k, v)| k == name && (v == "1" || v.eq_ignore_ascii_case("true")))
    })
}

/// The repo's directory, after the token gate.
fn repo_dir(
    hub: &HubState,
    options: &ServingOptions,
    req: &Request<Bytes>,
    repo: &str,
) -> Result<PathBuf, Refusal> {
    let Some(dir) = hub.store.repo_dir(repo) else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "RepoNotFound",
            format!("Repository {repo} not found on this mirror"),
        ));
    };
    if let Some(tok) = &options.token {
        let gated = |status| {
            Refusal::new(
                status,
                "GatedRepo",
                format!(
                    "Access to model {repo} is restricted. You must be authenticated to access it."
                ),
            )
        };
        match request_header(req, "authorization") {
            None => return Err(gated(StatusCode::UNAUTHORIZED)),
            Some(v) if v != format!("Bearer {tok}") => return Err(gated(StatusCode::FORBIDDEN)),
            Some(_) => {}
        }
    }
    Ok(dir)
}

/// The commit a revision names, or the 404 for an unknown one.
fn check_revision(repo: &str, files: &[RepoFile], rev: &str) -> Result<String, Refusal> {
    let commit = commit_of(files);
    if names_commit(rev, &commit) {
        Ok(commit)
    } else {
        Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "RevisionNotFound",
            format!("Invalid rev id: {rev} (this mirror of {repo} serves `main` = {commit})"),
        ))
    }
}

/// `GET /api/models/{repo}[/revision/{rev}]`: the repo's card, its files
/// (with sizes and hashes under `?blobs=true`).
fn info(hub: &HubState, repo: &str, dir: &Path, rev: &str, blobs: bool) -> MirrorResponse {
    let files = walk(dir);
    let commit = match check_revision(repo, &files, rev) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let (author, _) = repo.split_once('/').unwrap_or(("", repo));
    let mut siblings = Vec::with_capacity(files.len());
    for f in &files {
        if !blobs {
            siblings.push(json!({ "rfilename": f.rel }));
            continue;
        }
        // `?blobs=true` (huggingface_hub's `files_metadata=True`).
        let sibling = match hub.store.stored(f) {
            Ok(Stored::Lfs { sha256 }) => {
                let pointer = lfs_pointer(&sha256, f.size);
                json!({
                    "rfilename": f.rel,
                    "blobId": git_blob_id(pointer.as_bytes()),
                    "size": f.size,
                    "lfs": { "sha256": sha256, "size": f.size, "pointerSize": pointer.len() },
                })
            }
            Ok(Stored::Git { blob_id }) => {
                json!({ "rfilename": f.rel, "blobId": blob_id, "size": f.size })
            }
            Err(e) => return io_error(&e),
        };
        siblings.push(sibling);
    }
    let modified = last_modified(&files);
    let mut body = json!({
        "_id": &commit[..24],
        "id": repo,
        "modelId": repo,
        "author": author,
        "sha": commit,
        "lastModified": modified,
        "createdAt": modified,
        "private": false,
        "gated": false,
        "disabled": false,
        "downloads": 0,
        "likes": 0,
        "tags": ["gguf"],
        "siblings": siblings,
    });
    if blobs {
        let used: u64 = files.iter().map(|f| f.size).sum();
        body["usedStorage"] = json!(used);
    }
    json_response(StatusCode::OK, &body)
}

/// `GET /api/models/{repo}/refs`: the one branch, `main`, at the mirror's
/// commit (llama.cpp's downloader asks this first; `list_repo_refs`).
fn refs(repo: &str, dir: &Path) -> MirrorResponse {
    let files = walk(dir);
    let commit = match check_revision(repo, &files, "main") {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    json_response(
        StatusCode::OK,
        &json!({
            "branches": [{ "name": "main", "ref": "refs/heads/main", "targetCommit": commit }],
            "tags": [],
            "converts": [],
            "pullRequests": [],
        }),
    )
}

/// `GET /api/models/{repo}/commits/{rev}`: the history of a mirror, which
/// is its one commit (`list_repo_commits`).
fn commits(repo: &str, dir: &Path, rev: &str) -> MirrorResponse {
    let files = walk(dir);
    let commit = match check_revision(repo, &files, rev) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let title = format!("Mirror of {repo}: {} file(s)", files.len());
    json_response(
        StatusCode::OK,
        &json!([{
            "id": commit,
            "title": title,
            "message": "",
            "authors": [{ "user": "onboard-mirror" }],
            "date": last_modified(&files),
        }]),
    )
}

/// The paths a `paths-info` request asks for: a form (`paths=a&paths=b`,
/// huggingface_hub's way) or JSON (`{"paths": [...]}`).
fn requested_paths(req: &Request<Bytes>) -> Result<Vec<String>, String> {
    let json = request_header(req, "content-type").is_some_and(|v| v.contains("json"));
    let body = req.body();
    if json {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        return match v.get("paths") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "`paths` holds a non-string".to_string())
                })
                .collect(),
            Some(Value::String(p)) => Ok(vec![p.clone()]),
            _ => Err("the JSON body has no `paths` list".into()),
        };
    }
    let body = std::str::from_utf8(body).map_err(|_| "the form is not UTF-8".to_string())?;
    let mut out = Vec::new();
    for kv in body.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if k == "paths" || k == "paths%5B%5D" || k == "paths[]" {
            let v = percent_decode(&v.replace('+', " "))
                .ok_or_else(|| format!("bad percent-encoding in `{v}`"))?;
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err("no `paths` in the form".into());
    }
    Ok(out)
}

/// `POST /api/models/{repo}/paths-info/{rev}`: the tree entries of the
/// paths asked for (files and directories); unknown paths are left out,
/// as the Hub does (`get_paths_info`, `HfFileSystem.info`).
fn paths_info(
    hub: &HubState,
    req: &Request<Bytes>,
    repo: &str,
    dir: &Path,
    rev: &str,
) -> MirrorResponse {
    let files = walk(dir);
    if let Err(r) = check_revision(repo, &files, rev) {
        return r.into_response();
    }
    let paths = match requested_paths(req) {
        Ok(p) => p,
        Err(why) => {
            return bad_request(&format!(
                "paths-info: {why}; send a form `paths=<path>&paths=<path>`"
            ))
        }
    };
    let mut out = Vec::new();
    for p in paths {
        let p = p.trim_matches('/');
        if let Some(f) = files.iter().find(|f| f.rel == p) {
            match file_entry(hub, f) {
                Ok(e) => out.push(e),
                Err(e) => return io_error(&e),
            }
        } else if !p.is_empty() && files.iter().any(|f| f.rel.starts_with(&format!("{p}/"))) {
            out.push(directory_entry(p));
        }
    }
    json_response(StatusCode::OK, &Value::Array(out))
}

/// A file's entry in the tree and paths-info listings, as the Hub writes
/// it: `oid` is the git blob id (of the pointer, for an LFS file).
fn file_entry(hub: &HubState, f: &RepoFile) -> io::Result<Value> {
    Ok(match hub.store.stored(f)? {
        Stored::Lfs { sha256 } => {
            let pointer = lfs_pointer(&sha256, f.size);
            json!({
                "type": "file",
                "oid": git_blob_id(pointer.as_bytes()),
                "size": f.size,
                "path": f.rel,
                "lfs": { "oid": sha256, "size": f.size, "pointerSize": pointer.len() },
            })
        }
        Stored::Git { blob_id } => json!({
            "type": "file",
            "oid": blob_id,
            "size": f.size,
            "path": f.rel,
        }),
    })
}

fn directory_entry(path: &str) -> Value {
    json!({ "type": "directory", "oid": "0".repeat(40), "size": 0, "path": path })
}

/// `GET /api/models/{repo}/tree/{rev}[/{sub}]`: directories first, then
/// files; below `sub` only one level unless `recursive`.
fn tree(
    hub: &HubState,
    repo: &str,
    dir: &Path,
    rev: &str,
    sub: &str,
    recursive: bool,
) -> Result<Vec<Value>, Refusal> {
    let files = walk(dir);
    check_revision(repo, &files, rev)?;
    let prefix = if sub.is_empty() {
        String::new()
    } else {
        format!("{}/", sub.trim_end_matches('/'))
    };
    let mut out = Vec::new();
    let mut dirs = BTreeSet::new();
    for f in &files {
        let Some(rest) = f.rel.strip_prefix(&prefix) else {
            continue;
        };
        // Directories on the way down.
        let parts: Vec<&str> = rest.split('/').collect();
        for i in 1..parts.len() {
            if !recursive && i > 1 {
                break;
            }
            dirs.insert(format!("{prefix}{}", parts[..i].join("/")));
        }
        if !recursive && parts.len() > 1 {
            continue;
        }
        out.push(file_entry(hub, f).map_err(|e| {
            Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "IoError", e.to_string())
        })?);
    }
    if !prefix.is_empty() && out.is_empty() && dirs.is_empty() {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "EntryNotFound",
            format!("{sub} does not exist"),
        ));
    }
    let mut all: Vec<_> = dirs.iter().map(|d| directory_entry(d)).collect();
    all.extend(out);
    Ok(all)
}

/// A tree listing, cut into pages of `page_size` entries linked by a
/// `Link: <...>; rel="next"` header as the Hub does for large repos (0:
/// one page).
fn paginate(
    req: &Request<Bytes>,
    page_size: usize,
    path: &str,
    query: &str,
    all: Vec<Value>,
) -> MirrorResponse {
    if page_size == 0 {
        return json_response(StatusCode::OK, &Value::Array(all));
    }
    let mut rest: Vec<&str> = Vec::new();
    let mut cursor = 0usize;
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        match kv.strip_prefix("cursor=") {
            Some(c) => cursor = c.parse().unwrap_or(0),
            None => rest.push(kv),
        }
    }
    let total = all.len();
    let page: Vec<_> = all.into_iter().skip(cursor).take(page_size).collect();
    let next = cursor + page.len();
    let mut r = json_response(StatusCode::OK, &Value::Array(page));
    if next < total {
        rest.push("");
        let host = request_header(req, "host").unwrap_or("127.0.0.1");
        let q = rest.join("&");
        set_header(
            &mut r,
            "link",
            &format!("<http://{host}{path}?{q}cursor={next}>; rel=\"next\""),
        );
    }
    r
}

/// Parses a single `bytes=` range against `size`: `Ok(None)` means the
/// whole file, `Err(())` an unsatisfiable range.
pub(super) fn parse_range(v: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size)
    } else {
        let s: u64 = a.parse().map_err(|_| ())?;
        let e = if b.is_empty() {
            size
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .saturating_add(1)
                .min(size)
        };
        (s, e)
    };
    if start >= size || start >= end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// `HEAD|GET /{repo}/resolve/{rev}/{file}`: the file with the Hub's
/// metadata headers, or (with the CDN redirect on, for an LFS file) a
/// `302` carrying them to `/_cdn/{repo}/{sha256}`.
fn resolve(
    hub: &HubState,
    options: &ServingOptions,
    req: &Request<Bytes>,
    repo: &str,
    dir: &Path,
    rev: &str,
    file: &str,
) -> MirrorResponse {
    let files = walk(dir);
    let commit = match check_revision(repo, &files, rev) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let Some(entry) = files.iter().find(|f| f.rel == file) else {
        return entry_not_found(file, repo);
    };
    let sha = match hub.store.stored(entry) {
        Ok(Stored::Lfs { sha256 }) => sha256,
        // A file in git: its blob id is the ETag, no linked headers, and
        // the Hub serves it itself (no redirect).
        Ok(Stored::Git { blob_id }) => {
            let meta = [
                ("etag", format!("\"{blob_id}\"")),
                ("x-repo-commit", commit),
            ];
            return content(options, req, entry, &meta);
        }
        Err(e) => return io_error(&e),
    };
    let meta = [
        ("etag", format!("\"{sha}\"")),
        ("x-linked-etag", format!("\"{sha}\"")),
        ("x-linked-size", entry.size.to_string()),
        ("x-repo-commit", commit),
    ];
    if options.cdn_redirect {
        // The Hub's way for LFS files: metadata on a 302 to the storage.
        // The storage is another host, as on the Hub (clients follow only
        // same-host redirects for metadata): 127.0.0.1 <-> localhost.
        let host = match request_header(req, "host") {
            Some(h) if h.starts_with("127.0.0.1") => "localhost".to_string(),
            _ => hub.addr.ip().to_string(),
        };
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::FOUND;
        for (name, value) in &meta {
            set_header(&mut r, name, value);
        }
        set_header(
            &mut r,
            "location",
            &format!("http://{host}:{}/_cdn/{repo}/{sha}", hub.addr.port()),
        );
        return r;
    }
    content(options, req, entry, &meta)
}

/// `/_cdn/{owner}/{name}/{sha256}`: the storage side of a redirect.
fn cdn(
    hub: &HubState,
    options: &ServingOptions,
    req: &Request<Bytes>,
    repo: &str,
    sha: &str,
) -> MirrorResponse {
    let no_such_object = || hub_error(StatusCode::NOT_FOUND, "NotFound", "no such object");
    let Some(dir) = hub.store.repo_dir(repo) else {
        return no_such_object();
    };
    let files = walk(&dir);
    let Some(entry) = files.iter().find(|f| {
        hub.store
            .stored(f)
            .is_ok_and(|s| matches!(s, Stored::Lfs { sha256 } if sha256 == sha))
    }) else {
        return no_such_object();
    };
    content(options, req, entry, &[])
}

/// A file's bytes (whole or one range), streamed from disk; `HEAD` gets
/// the headers alone.
fn content(
    options: &ServingOptions,
    req: &Request<Bytes>,
    entry: &RepoFile,
    meta: &[(&'static str, String)],
) -> MirrorResponse {
    let size = entry.size;
    let range = match request_header(req, "range") {
        None => None,
        Some(v) => match parse_range(v, size) {
            Ok(r) => r,
            Err(()) => {
                let mut r = hub_error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "RangeNotSatisfiable",
                    "range not satisfiable",
                );
                set_header(&mut r, "content-range", &format!("bytes */{size}"));
                return r;
            }
        },
    };
    let (status, start, len) = match range {
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s),
        None => (StatusCode::OK, 0, size),
    };
    let body = if req.method() == Method::HEAD {
        empty()
    } else {
        match FileBody::open(&entry.path, start, len, options.rate) {
            Ok(b) => http_body_util::BodyExt::boxed_unsync(b),
            Err(e) => return io_error(&e),
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    for (name, value) in meta {
        set_header(&mut r, name, value);
    }
    set_header(&mut r, "content-type", "application/octet-stream");
    set_header(&mut r, "accept-ranges", "bytes");
    if let Some((s, e)) = range {
        set_header(
            &mut r,
            "content-range",
            &format!("bytes {s}-{}/{size}", e - 1),
        );
    }
    set_header(&mut r, "content-length", &len.to_string());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 10))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 100))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 100))));
        assert_eq!(parse_range("bytes=95-200", 100), Ok(Some((95, 100))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(
            percent_decode("refs%2Fpr%2F1").as_deref(),
            Some("refs/pr/1")
        );
    }
}
