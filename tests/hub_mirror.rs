//! The local Hub mirror speaks the Hub's routes and headers.

use std::io::{Read, Write};
use std::net::TcpStream;

use onboard_test_support::hub_fixture::{bytes, git_blob_id, sha256_hex, Env};

const REPO: &str = "acme/demo";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent()
}

fn h<'a>(r: &'a ureq::http::Response<ureq::Body>, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

fn env() -> (Env, Vec<u8>) {
    let data = bytes(100_000, 1);
    let env = Env::new(
        REPO,
        &[
            ("m.gguf", &data),
            ("sub/dir/x.bin", b"xyz"),
            ("config.json", b"{}"),
            (".hidden", b"secret"),
        ],
    );
    (env, data)
}

#[test]
fn resolve_head_carries_the_hub_headers_and_no_xet() {
    let (env, data) = env();
    let url = format!("{}/{REPO}/resolve/main/m.gguf", env.server.url());
    let r = agent().head(&url).call().unwrap();
    assert_eq!(r.status(), 200);
    let sha = sha256_hex(&data);
    assert_eq!(h(&r, "x-linked-etag"), Some(format!("\"{sha}\"").as_str()));
    assert_eq!(h(&r, "etag"), Some(format!("\"{sha}\"").as_str()));
    assert_eq!(h(&r, "x-linked-size"), Some("100000"));
    assert_eq!(h(&r, "content-length"), Some("100000"));
    assert_eq!(h(&r, "accept-ranges"), Some("bytes"));
    assert_eq!(h(&r, "x-repo-commit").map(str::len), Some(40));
    assert!(r.headers().get("x-xet-hash").is_none());
}

#[test]
fn ranges_give_206_with_content_range() {
    let (env, data) = env();
    let url = format!("{}/{REPO}/resolve/main/m.gguf", env.server.url());
    let a = agent();
    let mut r = a.get(&url).header("Range", "bytes=10-19").call().unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(h(&r, "content-range"), Some("bytes 10-19/100000"));
    assert_eq!(r.body_mut().read_to_vec().unwrap(), data[10..20]);
    let mut r = a.get(&url).header("Range", "bytes=-5").call().unwrap();
    assert_eq!(r.body_mut().read_to_vec().unwrap(), data[99_995..]);
    let r = a.get(&url).header("Range", "bytes=100000-").call().unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(h(&r, "content-range"), Some("bytes */100000"));

    env.server.set_ranges(false);
    let mut r = a.get(&url).header("Range", "bytes=10-19").call().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("accept-ranges").is_none());
    assert_eq!(r.body_mut().read_to_vec().unwrap(), data);
}

#[test]
fn info_and_tree_routes() {
    let (env, data) = env();
    let c = env.client();
    let info = c.repo_info(REPO, "main").unwrap();
    assert_eq!(info.id, REPO);
    assert_eq!(info.files, vec!["config.json", "m.gguf", "sub/dir/x.bin"]);
    // The commit is a revision too, and HEAD reports the same one.
    assert_eq!(c.repo_info(REPO, &info.commit).unwrap().commit, info.commit);
    let meta = c.file_meta(REPO, "main", "sub/dir/x.bin").unwrap();
    assert_eq!(meta.commit.as_deref(), Some(info.commit.as_str()));

    let files = c.list_files(REPO, "main").unwrap();
    let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["config.json", "m.gguf", "sub/dir/x.bin"]);
    assert_eq!(files[1].size, 100_000);
    assert_eq!(files[1].sha256.as_deref(), Some(sha256_hex(&data).as_str()));

    // Non-recursive: top level, directories as entries.
    let mut r = agent()
        .get(&format!("{}/api/models/{REPO}/tree/main", env.server.url()))
        .call()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    let mut listed: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["type"].as_str().unwrap(),
                e["path"].as_str().unwrap()
            )
        })
        .collect();
    listed.sort();
    assert_eq!(listed, ["directory:sub", "file:config.json", "file:m.gguf"]);
}

#[test]
fn paginated_tree_listings_are_followed() {
    let names: Vec<String> = (0..7).map(|i| format!("f{i}.bin")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let env = Env::new(REPO, &files);
    env.server.set_page_size(3);
    let listed = env.client().list_files(REPO, "main").unwrap();
    assert_eq!(listed.len(), 7);
    let pages = env
        .server
        .log()
        .iter()
        .filter(|e| e.path.contains("/tree/"))
        .count();
    assert_eq!(pages, 3);
}

#[test]
fn a_changed_file_gets_a_new_sha_and_commit() {
    let (env, _) = env();
    let c = env.client();
    let before = c.file_meta(REPO, "main", "config.json").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(
        env.tmp.path().join("mirror").join(REPO).join("config.json"),
        b"{\"a\":1}",
    )
    .unwrap();
    let after = c.file_meta(REPO, "main", "config.json").unwrap();
    // A small text file is kept in git, as on the Hub: its ETag is the git
    // blob id, and there is no sha256 (no X-Linked-Etag).
    assert_eq!(after.etag, Some(git_blob_id(b"{\"a\":1}")));
    assert_eq!(after.sha256, None);
    assert_ne!(before.etag, after.etag);
    assert_ne!(before.commit, after.commit);
    // An LFS file (`*.bin`) gets its new sha256.
    std::fs::write(
        env.tmp
            .path()
            .join("mirror")
            .join(REPO)
            .join("sub/dir/x.bin"),
        b"new",
    )
    .unwrap();
    let lfs = c.file_meta(REPO, "main", "sub/dir/x.bin").unwrap();
    assert_eq!(lfs.sha256, Some(sha256_hex(b"new")));
    // The old commit is gone: a mirror serves only its current state.
    assert!(c
        .repo_info(REPO, before.commit.as_deref().unwrap())
        .is_err());
}

#[test]
fn gated_repos_need_the_bearer_token() {
    let (env, _) = env();
    env.server.require_token(Some("hf_ok"));
    let url = format!("{}/{REPO}/resolve/main/m.gguf", env.server.url());
    let a = agent();
    let r = a.head(&url).call().unwrap();
    assert_eq!(
        (r.status().as_u16(), h(&r, "x-error-code")),
        (401, Some("GatedRepo"))
    );
    let r = a
        .head(&url)
        .header("Authorization", "Bearer nope")
        .call()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = a
        .head(&url)
        .header("Authorization", "Bearer hf_ok")
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn raw(env: &Env, target: &str) -> String {
    let mut s = TcpStream::connect(env.server.addr()).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn traversal_hidden_files_and_unknown_routes_are_refused() {
    let (env, _) = env();
    for target in [
        "/acme/demo/resolve/main/../../../etc/passwd",
        "/acme/demo/resolve/main/%2e%2e/%2e%2e/etc/passwd",
        "/acme/demo/resolve/main/.hidden",
        "/acme/../resolve/main/x",
        "/api/models/acme/demo/revision/nope",
        "/nothing",
    ] {
        let resp = raw(&env, target);
        let status = resp.split_whitespace().nth(1).unwrap_or("");
        assert!(status == "404" || status == "400", "{target}: {resp}");
        assert!(
            !resp.contains("root:") && !resp.contains("secret"),
            "{target}"
        );
    }
    let log = env.server.log();
    assert_eq!(log.len(), 6);
    assert!(log.iter().all(|e| e.status >= 400));
}

#[test]
fn keep_alive_serves_several_requests_per_connection() {
    let (env, data) = env();
    let mut s = TcpStream::connect(env.server.addr()).unwrap();
    for _ in 0..3 {
        write!(
            s,
            "HEAD /{REPO}/resolve/main/m.gguf HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", data.len())));
    }
}

/// `hf download` (PyPI huggingface_hub) against the mirror, when an `hf`
/// binary is available (`ONBOARD_HF_BIN` or `.venv/bin/hf`, which
/// `scripts/setup` installs). Under CI a missing binary is a failure.
#[test]
fn huggingface_hub_downloads_from_the_mirror() {
    let hf = std::env::var("ONBOARD_HF_BIN")
        .ok()
        .map(std::path::PathBuf::from)
        .or_else(|| Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/hf")))
        .filter(|p| p.exists());
    let Some(hf) = hf else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no `hf` binary: scripts/setup installs it into .venv"
        );
        eprintln!("skipped: no `hf` binary (set ONBOARD_HF_BIN)");
        return;
    };
    let (env, data) = env();
    for cdn in [false, true] {
        env.server.redirect_to_cdn(cdn);
        let out = env.tmp.path().join(format!("hf-out-{cdn}"));
        let status = std::process::Command::new(&hf)
            .args(["download", REPO, "--local-dir"])
            .arg(&out)
            .env("HF_ENDPOINT", env.server.url())
            .env("HF_HOME", env.hf_home())
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read(out.join("m.gguf")).unwrap(), data);
        assert_eq!(std::fs::read(out.join("sub/dir/x.bin")).unwrap(), b"xyz");
        assert!(!out.join(".hidden").exists());
    }
}
