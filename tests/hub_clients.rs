//! The local Hub (`onboard mirror serve`) with clients nobody here wrote:
//! huggingface_hub (PyPI, the version scripts/setup pins) through its
//! download, snapshot, paths-info, files-metadata, filesystem, refs and
//! commits calls and a short revision; and llama.cpp's own `-hf` downloader
//! (the xllamacpp wheel's library, through tests/support/llama_args.cpp).
//! Every downloaded byte is compared by sha256, every `oid` against
//! `git hash-object`.

use onboard_test_support::{llama_args, repo_root};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use onboard_test_support::hub_fixture::{bytes, git_blob_id, sha256_hex, Env};
use serde_json::Value;

const REPO: &str = "acme/Demo-GGUF";

/// A GGUF-like file (the magic and version, then bytes).
fn gguf(len: usize, seed: u64) -> Vec<u8> {
    let mut data = b"GGUF\x03\x00\x00\x00".to_vec();
    data.extend(bytes(len, seed));
    data
}

struct Repo {
    env: Env,
    files: Vec<(&'static str, Vec<u8>)>,
}

impl Repo {
    fn new() -> Repo {
        let files: Vec<(&'static str, Vec<u8>)> = vec![
            ("Demo-Q4_1.gguf", gguf(600_000, 1)),
            ("Demo-Q8_0.gguf", gguf(900_000, 2)),
            ("README.md", b"# Demo\n\nA fixture.\n".to_vec()),
            ("config.json", b"{\"architectures\": [\"Demo\"]}\n".to_vec()),
            // LFS by name (the Hub's default .gitattributes) though small.
            ("tokenizer.model", b"not really a tokenizer".to_vec()),
            ("sub/notes.txt", b"notes\n".to_vec()),
        ];
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (*n, d.as_slice())).collect();
        Repo {
            env: Env::new(REPO, &refs),
            files,
        }
    }

    fn data(&self, name: &str) -> &[u8] {
        &self.files.iter().find(|(n, _)| *n == name).unwrap().1
    }

    fn commit(&self) -> String {
        self.env.client().repo_info(REPO, "main").unwrap().commit
    }
}

/// The venv's Python with huggingface_hub, or `None` (a skip outside CI).
fn python_with_hf() -> Option<std::path::PathBuf> {
    let python = repo_root().join(".venv/bin/python");
    let ok = python.exists()
        && Command::new(&python)
            .args(["-c", "import huggingface_hub"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "no huggingface_hub in .venv: scripts/setup installs it"
        );
        eprintln!("skipped: no huggingface_hub in .venv (run scripts/setup)");
        return None;
    }
    Some(python)
}

#[test]
fn huggingface_hub_calls_get_the_hubs_answers_and_the_right_bytes() {
    let Some(python) = python_with_hf() else {
        return;
    };
    let repo = Repo::new();
    let commit = repo.commit();
    let out_dir = repo.env.tmp.path().join("py");
    let out = Command::new(&python)
        .arg(repo_root().join("tests/support/hf_clients.py"))
        .arg(REPO)
        .arg(&out_dir)
        .env("HF_ENDPOINT", repo.env.server.url())
        .env("HF_HOME", repo.env.hf_home())
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "huggingface_hub against the mirror:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["version"], "2.4.0", "the version scripts/setup pins");

    // list_repo_refs, list_repo_commits, a short revision.
    assert_eq!(
        r["refs"],
        serde_json::json!([["main", "refs/heads/main", commit]])
    );
    assert_eq!(
        r["commits"].as_array().unwrap().len(),
        1,
        "{}",
        r["commits"]
    );
    assert_eq!(r["commits"][0][0], commit.as_str());
    assert_eq!(r["short_info_sha"], commit.as_str());

    // model_info(files_metadata=True): sizes, blob ids, LFS only where the
    // Hub would use it.
    let siblings = &r["siblings"];
    for (name, data) in &repo.files {
        let s = &siblings[*name];
        assert_eq!(s["size"].as_u64(), Some(data.len() as u64), "{name}: {s}");
        let lfs = name.ends_with(".gguf") || name.ends_with(".model");
        if lfs {
            assert_eq!(s["lfs_sha256"], sha256_hex(data).as_str(), "{name}: {s}");
            assert_eq!(s["lfs_size"].as_u64(), Some(data.len() as u64));
        } else {
            assert!(s["lfs_sha256"].is_null(), "{name} is a git file: {s}");
            assert_eq!(s["blob_id"], git_blob_id(data).as_str(), "{name}: {s}");
        }
    }

    // get_paths_info: a file, a git file, a directory; the unknown path is
    // left out.
    let info = r["paths_info"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = info
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("RepoFile", "Demo-Q4_1.gguf"),
            ("RepoFile", "README.md"),
            ("RepoFolder", "sub")
        ]
    );
    let q4 = repo.data("Demo-Q4_1.gguf");
    assert_eq!(info[0]["lfs_sha256"], sha256_hex(q4).as_str());
    assert_eq!(info[0]["size"].as_u64(), Some(q4.len() as u64));
    // An LFS file's git object is its pointer, as git-lfs writes it.
    let pointer = format!(
        "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n",
        sha256_hex(q4),
        q4.len()
    );
    assert_eq!(info[0]["oid"], git_blob_id(pointer.as_bytes()).as_str());
    assert_eq!(info[1]["oid"], git_blob_id(repo.data("README.md")).as_str());
    assert!(info[1]["lfs_sha256"].is_null());

    // Every byte downloaded: snapshot, single files, the filesystem.
    let snapshot = r["snapshot"].as_object().unwrap();
    assert_eq!(snapshot.len(), repo.files.len(), "{snapshot:?}");
    for (name, data) in &repo.files {
        assert_eq!(snapshot[*name], sha256_hex(data).as_str(), "{name}");
    }
    let q8 = sha256_hex(repo.data("Demo-Q8_0.gguf"));
    assert_eq!(r["hf_hub_download"], q8.as_str());
    assert_eq!(
        r["hf_hub_download_git_file"],
        sha256_hex(repo.data("README.md")).as_str()
    );
    let listed: Vec<&str> = r["fs_ls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&format!("{REPO}/sub").as_str())
            && listed.contains(&format!("{REPO}/README.md").as_str()),
        "{listed:?}"
    );
    assert_eq!(
        r["fs_info"]["Demo-Q4_1.gguf"].as_u64(),
        Some(q4.len() as u64)
    );
    assert_eq!(
        r["fs_info"]["README.md"].as_u64(),
        Some(repo.data("README.md").len() as u64)
    );
    assert_eq!(r["fs_read"], sha256_hex(q4).as_str());
    assert_eq!(r["fs_range"], hex::encode(&q4[4..12]).as_str());
    assert_eq!(r["fs_short_revision"], q8.as_str());
}

/// llama.cpp's `-hf owner/repo:QUANT` (llama-server's downloader, in the
/// xllamacpp wheel's library) picks the quant's file from the mirror's
/// refs and tree and downloads the right bytes into `LLAMA_CACHE`.
#[test]
fn llama_cpp_downloads_a_quant_with_dash_hf() {
    let Some(harness) = llama_args::harness() else {
        return;
    };
    let repo = Repo::new();
    let home = repo.env.tmp.path().join("llama-home");
    let cache = repo.env.tmp.path().join("llama-cache");
    std::fs::create_dir_all(&home).unwrap();
    let out = harness
        .command("download", &["-hf".into(), format!("{REPO}:Q4_1")])
        .env("HF_ENDPOINT", repo.env.server.url())
        .env("LLAMA_CACHE", &cache)
        .env("HF_HOME", repo.env.hf_home())
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env_remove("HF_TOKEN")
        .env_remove("MODEL_ENDPOINT")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let path = stdout
        .lines()
        .find_map(|l| l.strip_prefix("model: "))
        .unwrap_or_else(|| panic!("no model path: {stdout}\n{stderr}"));
    assert!(
        Path::new(path).starts_with(&cache) || path.contains("llama-cache"),
        "{path} is under LLAMA_CACHE"
    );
    let got = std::fs::read(path).unwrap();
    assert_eq!(
        sha256_hex(&got),
        sha256_hex(repo.data("Demo-Q4_1.gguf")),
        "{path}"
    );
    // It asked the refs route first (a 404 there stopped it before).
    let log = repo.env.server.log();
    let refs = log
        .iter()
        .position(|e| e.path == format!("/api/models/{REPO}/refs"))
        .unwrap_or_else(|| panic!("no refs request: {log:?}"));
    assert_eq!(log[refs].status, 200);
    assert!(
        log.iter()
            .any(|e| e.path.contains("/resolve/") && e.path.ends_with("Demo-Q4_1.gguf")),
        "{log:?}"
    );
    assert!(
        !log.iter().any(|e| e.path.contains("Demo-Q8_0.gguf")),
        "only the quant asked for: {log:?}"
    );
}

fn raw(env: &Env, method: &str, target: &str, body: &str, content_type: &str) -> (u16, String) {
    let mut s = TcpStream::connect(env.server.addr()).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

/// Bad requests to the new routes get the Hub's statuses and a JSON error.
#[test]
fn bad_requests_get_the_hubs_statuses() {
    let repo = Repo::new();
    let commit = repo.commit();
    // The commit with its first digit changed: a prefix of nothing.
    let wrong = format!(
        "{}{}",
        if commit.starts_with('0') { '1' } else { '0' },
        &commit[1..7]
    );
    let info = |rev: &str| format!("/api/models/{REPO}/revision/{rev}");
    let paths_info = format!("/api/models/{REPO}/paths-info/main");
    let (form, json, text) = (
        "application/x-www-form-urlencoded",
        "application/json",
        "text/plain",
    );
    let cases: Vec<(&str, String, &str, &str, u16, &str)> = vec![
        (
            "POST",
            paths_info.clone(),
            "expand=false",
            form,
            400,
            "no `paths`",
        ),
        (
            "POST",
            paths_info.clone(),
            "{\"paths\": 3}",
            json,
            400,
            "no `paths` list",
        ),
        (
            "POST",
            paths_info.clone(),
            "{\"paths\": [\"README.md\"]}",
            json,
            200,
            "README.md",
        ),
        (
            "POST",
            format!("/api/models/{REPO}"),
            "",
            text,
            405,
            "POST on paths-info",
        ),
        // Six hex digits are not a revision; seven and more are.
        ("GET", info(&commit[..6]), "", text, 404, "Invalid rev id"),
        ("GET", info(&commit[..7]), "", text, 200, &commit),
        ("GET", info(&commit[..12]), "", text, 200, &commit),
        ("GET", info(&wrong), "", text, 404, "Invalid rev id"),
        (
            "GET",
            format!("/api/models/{REPO}/commits/nope"),
            "",
            text,
            404,
            "Invalid rev id",
        ),
        (
            "GET",
            "/api/models/acme/missing/refs".into(),
            "",
            text,
            404,
            "not found",
        ),
    ];
    for (method, target, body, content_type, want, contains) in cases {
        let (status, answer) = raw(&repo.env, method, &target, body, content_type);
        assert_eq!(status, want, "{method} {target}: {answer}");
        assert!(answer.contains(contains), "{method} {target}: {answer}");
        if want >= 400 {
            let v: Value = serde_json::from_str(&answer).unwrap();
            assert!(v["error"].is_string(), "{answer}");
        }
    }
}
