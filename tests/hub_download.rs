//! The downloader against the local mirror: shards, resume, faults, cache.

use onboard_test_support::{hub_fixture, walk_files};
use std::path::Path;
use std::time::{Duration, Instant};

use hub_fixture::{bytes, opts, sha256_hex, Env};
use onboard::hub::{download_file, group_shards, FileRequest, HubError, NoProgress, Outcome};
use onboard_test_support::faulty_mirror::FaultScope;

const REPO: &str = "acme/tiny-GGUF";

fn req(env: &Env, file: &str) -> FileRequest {
    FileRequest::new(REPO, "main", file, env.dest())
}

fn no_leftovers(dir: &Path) {
    for e in walk_files(dir) {
        let name = e.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".part") && !name.ends_with(".part.state") && !name.contains(".tmp-"),
            "leftover {name}"
        );
    }
}

#[test]
fn three_shards_verified_then_second_run_fetches_nothing() {
    let shards: Vec<Vec<u8>> = (0..3u64)
        .map(|i| bytes((3 << 20) + 12_345 * i as usize, i + 1))
        .collect();
    let names: Vec<String> = (1..=3)
        .map(|i| format!("Q4_K_M/tiny-Q4_K_M-{i:05}-of-00003.gguf"))
        .collect();
    let mut files: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&shards)
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    files.push(("README.md", b"# tiny\n"));
    let env = Env::new(REPO, &files);

    let client = env.client();
    let listing = client.list_files(REPO, "main").unwrap();
    assert_eq!(listing.len(), 4);
    let groups = group_shards(&listing);
    let group = groups
        .iter()
        .find(|g| g.shard_count == Some(3))
        .expect("shard group");
    assert!(group.complete);
    assert_eq!(group.name, "Q4_K_M/tiny-Q4_K_M");
    for (f, data) in group.files.iter().zip(&shards) {
        assert_eq!(f.sha256.as_deref(), Some(sha256_hex(data).as_str()));
        assert_eq!(f.size, data.len() as u64);
    }

    for (f, data) in group.files.iter().zip(&shards) {
        let done = download_file(&client, &req(&env, &f.path), &opts(), &NoProgress).unwrap();
        assert_eq!(done.outcome, Outcome::Downloaded);
        assert_eq!(done.sha256, sha256_hex(data));
        assert_eq!(done.fetched, data.len() as u64);
        assert_eq!(std::fs::read(&done.path).unwrap(), *data);
    }
    // Ranges were used, several per file.
    let chunks: usize = shards.iter().map(|d| d.len().div_ceil(1 << 20)).sum();
    assert_eq!(env.server.content_gets().len(), chunks);
    assert!(env.server.content_gets().iter().all(|e| e.status == 206));
    no_leftovers(&env.dest());

    env.server.clear_log();
    let client = env.client();
    for f in &group.files {
        let done = download_file(&client, &req(&env, &f.path), &opts(), &NoProgress).unwrap();
        assert_eq!(done.outcome, Outcome::AlreadyPresent);
        assert_eq!(done.fetched, 0);
    }
    assert_eq!(
        env.server.content_gets(),
        vec![],
        "second run fetched content"
    );
}

#[test]
fn resume_after_cut_fetches_only_the_rest() {
    let data = bytes(4 << 20, 7);
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    let mut o = opts();
    o.parallel = 1;
    o.retry.attempts = 1; // the first cut ends the "process"
    env.server.drop_after(300_000, 1);
    let err = download_file(&env.client(), &req(&env, "m.gguf"), &o, &NoProgress).unwrap_err();
    assert!(matches!(err, HubError::RetriesExhausted { .. }), "{err}");
    assert!(!env.dest().join("m.gguf").exists());

    let seq = env.server.last_seq();
    let done = download_file(&env.client(), &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap();
    assert_eq!(done.outcome, Outcome::Resumed { from: 300_000 });
    assert_eq!(done.sha256, sha256_hex(&data));
    let run2: Vec<_> = env
        .server
        .content_gets()
        .into_iter()
        .filter(|e| e.seq > seq)
        .collect();
    assert!(run2.iter().all(|e| e.range_start() >= 300_000), "{run2:?}");
    let sent: u64 = run2.iter().map(|e| e.bytes).sum();
    assert_eq!(sent, data.len() as u64 - 300_000);
    assert_eq!(done.fetched, sent);
}

/// Runs as a child process when the parent test sets the variables.
#[test]
fn child_download_for_kill_test() {
    let (Ok(url), Ok(dest)) = (
        std::env::var("HUB_TEST_CHILD_URL"),
        std::env::var("HUB_TEST_CHILD_DEST"),
    ) else {
        return;
    };
    let hf = std::env::var("HUB_TEST_CHILD_HF").unwrap();
    let client =
        onboard::hub::HubClient::new(onboard::hub::HubConfig::for_endpoint(&url, Path::new(&hf)));
    let mut o = opts();
    o.stall_timeout = Duration::from_secs(60);
    let _ = download_file(
        &client,
        &FileRequest::new(REPO, "main", "big.gguf", dest),
        &o,
        &NoProgress,
    );
}

fn sidecar_done(state: &Path) -> u64 {
    let Ok(b) = std::fs::read(state) else {
        return 0;
    };
    b.get(4096..)
        .unwrap_or(&[])
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .sum()
}

#[test]
fn sigkill_mid_file_then_rerun_fetches_only_the_remainder() {
    let data = bytes(16 << 20, 11);
    let env = Env::new(REPO, &[("big.gguf", &data)]);
    // Each range sends 256 KiB and then hangs: the child gets 4 x 256 KiB.
    env.server
        .stall_after(256 << 10, Duration::from_secs(3), usize::MAX);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_download_for_kill_test", "--nocapture"])
        .env("HUB_TEST_CHILD_URL", env.server.url())
        .env("HUB_TEST_CHILD_DEST", env.dest())
        .env("HUB_TEST_CHILD_HF", env.hf_home())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = env.dest().join("big.gguf.part.state");
    let t0 = Instant::now();
    while sidecar_done(&state) < 4 * (256 << 10) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "child made no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let present = sidecar_done(&state);
    assert!(present >= 4 * (256 << 10));
    env.server.clear_faults();

    let seq = env.server.last_seq();
    let done = download_file(&env.client(), &req(&env, "big.gguf"), &opts(), &NoProgress).unwrap();
    assert_eq!(done.outcome, Outcome::Resumed { from: present });
    assert_eq!(done.sha256, sha256_hex(&data));
    let sent: u64 = env
        .server
        .content_gets()
        .iter()
        .filter(|e| e.seq > seq)
        .map(|e| e.bytes)
        .sum();
    assert_eq!(sent, data.len() as u64 - present, "re-fetched bytes");
    no_leftovers(&env.dest());
}

#[test]
fn server_errors_and_rate_limits_are_retried() {
    let data = bytes(3 << 20, 3);
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    env.server.fail_next(503, 1, FaultScope::Any); // hits the HEAD
    env.server.fail_next(500, 2, FaultScope::ContentGet);
    env.server.fail_next(429, 2, FaultScope::ContentGet);
    let done = download_file(&env.client(), &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap();
    assert_eq!(done.sha256, sha256_hex(&data));
    let statuses: Vec<u16> = env.server.log().iter().map(|e| e.status).collect();
    assert_eq!(statuses.iter().filter(|&&s| s == 500).count(), 2);
    assert_eq!(statuses.iter().filter(|&&s| s == 429).count(), 2);
    assert_eq!(statuses.iter().filter(|&&s| s == 503).count(), 1);
}

#[test]
fn persistent_server_errors_end_in_a_clear_error() {
    let data = bytes(1 << 20, 3);
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    env.server.fail_next(500, 1000, FaultScope::ContentGet);
    let err = download_file(&env.client(), &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap_err();
    assert!(matches!(err, HubError::RetriesExhausted { .. }), "{err}");
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    assert!(!env.dest().join("m.gguf").exists());
}

#[test]
fn wrong_bytes_are_detected_deleted_and_refetched() {
    let data = bytes(2 << 20, 5);
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    env.server.corrupt_next(1);
    let done = download_file(&env.client(), &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap();
    assert_eq!(done.sha256, sha256_hex(&data));
    assert_eq!(std::fs::read(&done.path).unwrap(), data);
    // Two full passes of two chunks each.
    assert_eq!(env.server.content_gets().len(), 4);

    // Always wrong: a clear error and nothing under the final name.
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    env.server.corrupt_next(1000);
    let err = download_file(&env.client(), &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap_err();
    assert!(
        matches!(err, HubError::ShaMismatch { attempts: 3, .. }),
        "{err}"
    );
    assert!(!env.dest().join("m.gguf").exists());
    no_leftovers(&env.dest());
}

#[test]
fn not_found_after_a_good_head_is_a_clear_error_and_caches_nothing() {
    let data = bytes(1 << 20, 9);
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    env.server.not_found_on_get(1000);
    let err = download_file(&env.client(), &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap_err();
    assert!(matches!(err, HubError::FileNotFound { .. }), "{err}");
    assert!(!env.dest().join("m.gguf").exists());
    no_leftovers(&env.dest());
    // Once the server is well again the file arrives intact.
    env.server.clear_faults();
    let done = download_file(&env.client(), &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap();
    assert_eq!(done.sha256, sha256_hex(&data));
}

#[test]
fn a_stalled_connection_is_abandoned_and_retried() {
    let data = bytes(2 << 20, 13);
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    // One body stalls for a minute; the downloader gives up on it after 2 s.
    env.server.stall_after(100_000, Duration::from_secs(60), 1);
    let mut o = opts();
    o.stall_timeout = Duration::from_secs(2);
    let t0 = Instant::now();
    let done = download_file(&env.client(), &req(&env, "m.gguf"), &o, &NoProgress).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert_eq!(done.sha256, sha256_hex(&data));
    // The stalled body (100 000 bytes) was abandoned and its range asked
    // for again: more GETs than the two chunks.
    let gets = env.server.content_gets();
    assert!(gets.iter().any(|e| e.bytes == 100_000), "{gets:?}");
    assert!(gets.len() > 2, "{gets:?}");
}

#[test]
fn a_server_without_ranges_still_works() {
    let data = bytes((2 << 20) + 77, 17);
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    env.server.set_ranges(false);
    let done = download_file(&env.client(), &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap();
    assert_eq!(done.sha256, sha256_hex(&data));
    let gets = env.server.content_gets();
    assert_eq!(gets.len(), 1);
    assert_eq!((gets[0].status, gets[0].range.clone()), (200, None));
}

#[test]
fn hostile_names_are_refused_and_nothing_is_written_outside() {
    let env = Env::new(REPO, &[("m.gguf", b"x")]);
    let client = env.client();
    for bad in [
        "../evil.gguf",
        "/etc/evil",
        "a\\b.gguf",
        "a\u{7}b.gguf",
        "x/../../y",
    ] {
        let err = download_file(&client, &req(&env, bad), &opts(), &NoProgress).unwrap_err();
        assert!(
            matches!(err, HubError::BadFileName { .. }),
            "{bad:?}: {err}"
        );
        let mut r = req(&env, "m.gguf");
        r.dest_name = Some(bad.to_string());
        let err = download_file(&client, &r, &opts(), &NoProgress).unwrap_err();
        assert!(
            matches!(err, HubError::BadFileName { .. }),
            "{bad:?}: {err}"
        );
    }
    // A symlinked subdirectory leading outside is refused too.
    let outside = env.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, env.dest().join("sub")).unwrap();
    for name in ["sub/m.gguf", "sub/deeper/m.gguf"] {
        let mut r = req(&env, "m.gguf");
        r.dest_name = Some(name.into());
        let err = download_file(&client, &r, &opts(), &NoProgress).unwrap_err();
        assert!(matches!(err, HubError::BadFileName { .. }), "{name}: {err}");
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(env.server.content_gets().is_empty());
}

#[test]
fn the_token_never_appears_in_errors() {
    let secret = "hf_SECRETtoken1234567890";
    let data = bytes(100_000, 21);
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    env.server.require_token(Some("hf_theRightOne"));

    // No token: a gated repo asks for one.
    let err = download_file(&env.client(), &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap_err();
    assert!(matches!(err, HubError::AuthRequired { .. }), "{err}");
    assert!(err.to_string().contains("HF_TOKEN"));

    // A wrong token: refused, and never printed.
    let mut cfg = env.config();
    cfg.token = onboard::hub::Token::new(secret);
    let client = onboard::hub::HubClient::new(cfg.clone());
    let errs = [
        download_file(&client, &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap_err(),
        client.list_files(REPO, "main").unwrap_err(),
        client.repo_info(REPO, "main").unwrap_err(),
    ];
    assert!(
        matches!(errs[0], HubError::AccessDenied { status: 403, .. }),
        "{}",
        errs[0]
    );
    // Unreachable endpoint with a token set.
    let mut dead = cfg.clone();
    dead.endpoint = "http://127.0.0.1:9".into();
    dead.retry = hub_fixture::fast_retry(1);
    let dead = onboard::hub::HubClient::new(dead);
    let net = dead.file_meta(REPO, "main", "m.gguf").unwrap_err();
    assert!(matches!(net, HubError::Network { .. }), "{net}");
    for e in errs.iter().chain([&net]) {
        assert!(!e.to_string().contains(secret), "{e}");
        assert!(!format!("{e:?}").contains(secret), "{e:?}");
    }
    assert!(!format!("{cfg:?}").contains(secret));
    assert!(!format!("{client:?}").contains(secret));

    // The right token works.
    let mut cfg = env.config();
    cfg.token = onboard::hub::Token::new("hf_theRightOne");
    let done = download_file(
        &onboard::hub::HubClient::new(cfg),
        &req(&env, "m.gguf"),
        &opts(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(done.sha256, sha256_hex(&data));
}

#[test]
fn a_blob_in_the_hf_cache_is_reused_without_any_get() {
    let data = bytes(1 << 20, 23);
    let sha = sha256_hex(&data);
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    let repo_cache = env.hf_home().join("hub/models--acme--tiny-GGUF");
    std::fs::create_dir_all(repo_cache.join("blobs")).unwrap();
    std::fs::write(repo_cache.join("blobs").join(&sha), &data).unwrap();

    let done = download_file(&env.client(), &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap();
    assert_eq!(done.outcome, Outcome::FromHfCache { linked: true });
    assert_eq!(done.fetched, 0);
    assert!(env.server.content_gets().is_empty());
    assert_eq!(std::fs::read(&done.path).unwrap(), data);

    // A corrupt blob is not trusted: the file is downloaded instead.
    let env2 = Env::new(REPO, &[("m.gguf", &data)]);
    let repo_cache = env2.hf_home().join("hub/models--acme--tiny-GGUF");
    std::fs::create_dir_all(repo_cache.join("blobs")).unwrap();
    let mut bad = data.clone();
    bad[10] ^= 1;
    std::fs::write(repo_cache.join("blobs").join(&sha), &bad).unwrap();
    let done = download_file(&env2.client(), &req(&env2, "m.gguf"), &opts(), &NoProgress).unwrap();
    assert_eq!(done.outcome, Outcome::Downloaded);
    assert_eq!(
        std::fs::read(repo_cache.join("blobs").join(&sha)).unwrap(),
        bad
    );
}

#[test]
fn offline_mode_uses_only_local_files() {
    let data = bytes(200_000, 29);
    let sha = sha256_hex(&data);
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    let mut cfg = env.config();
    cfg.offline = true;
    let offline = onboard::hub::HubClient::new(cfg);

    let err = download_file(&offline, &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap_err();
    assert!(matches!(err, HubError::Offline { .. }), "{err}");
    assert!(matches!(
        offline.list_files(REPO, "main").unwrap_err(),
        HubError::Offline { .. }
    ));

    // An HF cache snapshot is enough.
    let c = env.hf_home().join("hub/models--acme--tiny-GGUF");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(c.join("blobs")).unwrap();
    std::fs::create_dir_all(c.join("refs")).unwrap();
    std::fs::create_dir_all(c.join("snapshots").join(commit)).unwrap();
    std::fs::write(c.join("blobs").join(&sha), &data).unwrap();
    std::fs::write(c.join("refs/main"), commit).unwrap();
    std::os::unix::fs::symlink(
        format!("../../blobs/{sha}"),
        c.join("snapshots").join(commit).join("m.gguf"),
    )
    .unwrap();
    let done = download_file(&offline, &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap();
    assert_eq!(done.sha256, sha);
    assert_eq!(done.commit.as_deref(), Some(commit));
    // And once verified in place, offline runs accept it as it is.
    let again = download_file(&offline, &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap();
    assert_eq!(again.outcome, Outcome::AlreadyPresent);
    assert!(env.server.log().is_empty(), "offline mode made requests");
}

#[test]
fn missing_repo_revision_and_file_are_typed_errors() {
    let env = Env::new(REPO, &[("m.gguf", b"abc")]);
    let c = env.client();
    assert!(matches!(
        c.repo_info("acme/nope", "main").unwrap_err(),
        HubError::RepoNotFound { .. }
    ));
    assert!(matches!(
        c.repo_info(REPO, "v9").unwrap_err(),
        HubError::RevisionNotFound { .. }
    ));
    assert!(matches!(
        c.file_meta(REPO, "main", "other.gguf").unwrap_err(),
        HubError::FileNotFound { .. }
    ));
    let err = download_file(&c, &req(&env, "other.gguf"), &opts(), &NoProgress).unwrap_err();
    assert!(matches!(err, HubError::FileNotFound { .. }), "{err}");
    assert!(err.to_string().contains("other.gguf"));
}

#[test]
fn too_little_disk_is_refused_before_any_get() {
    let env = Env::new(REPO, &[("m.gguf", &bytes(100_000, 1))]);
    let mut o = opts();
    o.disk_margin = u64::MAX / 4;
    let err = download_file(&env.client(), &req(&env, "m.gguf"), &o, &NoProgress).unwrap_err();
    assert!(matches!(err, HubError::DiskFull { .. }), "{err}");
    assert!(env.server.content_gets().is_empty());
    no_leftovers(&env.dest());
}

#[test]
fn a_changed_file_on_disk_is_fetched_again() {
    let data = bytes(500_000, 31);
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    let done = download_file(&env.client(), &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap();
    // Damage it behind our back (size kept, mtime changes).
    let mut bad = data.clone();
    bad[0] ^= 1;
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&done.path, &bad).unwrap();
    let again = download_file(&env.client(), &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap();
    assert_eq!(again.outcome, Outcome::Downloaded);
    assert_eq!(std::fs::read(&again.path).unwrap(), data);
}

#[test]
fn header_bytes_can_be_read_before_download() {
    let data = bytes(300_000, 37);
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    let c = env.client();
    assert_eq!(
        c.read_range(REPO, "main", "m.gguf", 0, 16).unwrap(),
        data[..16]
    );
    assert_eq!(
        c.read_range(REPO, "main", "m.gguf", 299_990, 100).unwrap(),
        data[299_990..]
    );
    let info = c.repo_info(REPO, "main").unwrap();
    assert_eq!(info.files, vec!["m.gguf".to_string()]);
    let meta = c.file_meta(REPO, &info.commit, "m.gguf").unwrap();
    assert_eq!(meta.commit.as_deref(), Some(info.commit.as_str()));
    assert_eq!(meta.sha256, Some(sha256_hex(&data)));
}

#[test]
fn the_hubs_lfs_redirect_flow_works_with_ranges() {
    let data = bytes(3 << 20, 41); // whole chunks: the cut always bites
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    env.server.redirect_to_cdn(true);
    env.server.drop_after(200_000, 1);
    let c = env.client();
    let meta = c.file_meta(REPO, "main", "m.gguf").unwrap();
    assert_eq!(meta.sha256, Some(sha256_hex(&data)));
    assert_eq!(meta.size, data.len() as u64);
    assert!(meta.accept_ranges);
    let done = download_file(&c, &req(&env, "m.gguf"), &opts(), &NoProgress).unwrap();
    assert_eq!(done.sha256, sha256_hex(&data));
    let log = env.server.log();
    assert!(log
        .iter()
        .any(|e| e.method == "HEAD" && e.path.contains("/resolve/") && e.status == 302));
    let gets = env.server.content_gets();
    assert_eq!(gets.len(), 4, "{gets:?}"); // three chunks, one retried
    assert!(gets.iter().any(|e| e.bytes == 200_000), "{gets:?}");
    assert!(gets
        .iter()
        .all(|e| e.path.starts_with("/_cdn/") && e.status == 206));
}

#[test]
fn a_tiny_hash_buffer_falls_back_to_disk_reads_and_still_verifies() {
    let data = bytes(6 << 20, 43);
    let env = Env::new(REPO, &[("m.gguf", &data), ("empty.txt", b"")]);
    let mut o = opts();
    o.hash_buffer = 1; // every out-of-order block is evicted and re-read
    o.parallel = 6;
    let done = download_file(&env.client(), &req(&env, "m.gguf"), &o, &NoProgress).unwrap();
    assert_eq!(done.sha256, sha256_hex(&data));
    let empty = download_file(&env.client(), &req(&env, "empty.txt"), &o, &NoProgress).unwrap();
    assert_eq!(empty.sha256, sha256_hex(b""));
    assert_eq!(std::fs::read(&empty.path).unwrap(), b"");
}

#[test]
fn progress_reports_start_bytes_and_done() {
    use onboard::hub::{JsonProgress, Progress, ProgressEvent};
    use std::sync::Mutex;
    struct Rec(Mutex<Vec<String>>);
    impl Progress for Rec {
        fn event(&self, e: &ProgressEvent<'_>) {
            let kind = match e {
                ProgressEvent::Start { .. } => "start",
                ProgressEvent::Bytes { .. } => "bytes",
                ProgressEvent::Retry { .. } => "retry",
                ProgressEvent::Verifying { .. } => "verifying",
                ProgressEvent::Done { .. } => "done",
            };
            self.0.lock().unwrap().push(kind.to_string());
        }
    }
    let data = bytes(1 << 20, 47);
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    env.server.fail_next(500, 1, FaultScope::ContentGet);
    let rec = Rec(Mutex::new(Vec::new()));
    download_file(&env.client(), &req(&env, "m.gguf"), &opts(), &rec).unwrap();
    let kinds = rec.0.into_inner().unwrap();
    assert_eq!(kinds.first().map(String::as_str), Some("start"));
    assert_eq!(kinds.last().map(String::as_str), Some("done"));
    assert!(kinds.iter().any(|k| k == "retry"), "{kinds:?}");

    // The JSON renderer writes one object per line.
    let mut buf = Vec::new();
    {
        let json = JsonProgress::new(&mut buf, Duration::ZERO);
        json.event(&ProgressEvent::Done {
            file: "m.gguf",
            size: 3,
            fetched: 3,
            how: "downloaded",
        });
    }
    let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(v["event"], "done");
}

#[test]
fn a_second_concurrent_download_of_the_same_file_is_refused() {
    let data = bytes(1 << 20, 53);
    let env = Env::new(REPO, &[("m.gguf", &data)]);
    env.server.stall_after(1000, Duration::from_millis(1500), 1);
    let mut slow = opts();
    slow.parallel = 1;
    slow.stall_timeout = Duration::from_secs(5);
    let client = env.client();
    let r = req(&env, "m.gguf");
    std::thread::scope(|s| {
        let first = s.spawn(|| download_file(&client, &r, &slow, &NoProgress));
        let state = env.dest().join("m.gguf.part.state");
        let t0 = Instant::now();
        while sidecar_done(&state) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(10));
        }
        let err = download_file(&env.client(), &r, &opts(), &NoProgress).unwrap_err();
        assert!(err.to_string().contains("another process"), "{err}");
        let done = first.join().unwrap().unwrap();
        assert_eq!(done.sha256, sha256_hex(&data));
    });
}

#[test]
fn several_files_are_checked_for_disk_space_together() {
    let a = bytes(300_000, 61);
    let b = bytes(200_000, 62);
    let env = Env::new(
        REPO,
        &[("a-00001-of-00002.gguf", &a), ("a-00002-of-00002.gguf", &b)],
    );
    let c = env.client();
    let reqs = vec![
        req(&env, "a-00001-of-00002.gguf"),
        req(&env, "a-00002-of-00002.gguf"),
    ];
    assert_eq!(onboard::hub::bytes_to_fetch(&c, &reqs[0]).unwrap(), 300_000);
    let mut o = opts();
    o.disk_margin = u64::MAX / 4;
    let err = onboard::hub::download_files(&c, &reqs, &o, &NoProgress).unwrap_err();
    assert!(matches!(err, HubError::DiskFull { .. }), "{err}");
    assert!(env.server.content_gets().is_empty());
    let done = onboard::hub::download_files(&c, &reqs, &opts(), &NoProgress).unwrap();
    assert_eq!(done.len(), 2);
    assert_eq!(onboard::hub::bytes_to_fetch(&c, &reqs[1]).unwrap(), 0);
}

/// A small tmpfs stands for a full disk (needs root to mount; skipped
/// otherwise). The space is reserved before the first byte is fetched, so a
/// full disk is a clear error up front, and a rerun after freeing space works.
#[test]
fn a_full_disk_is_a_clear_error_and_a_rerun_after_freeing_space_finishes() {
    struct Mount(std::path::PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let a = bytes(2 << 20, 71);
    let b = bytes(2 << 20, 72);
    let env = Env::new(REPO, &[("a.gguf", &a), ("b.gguf", &b)]);
    let small = env.tmp.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&small)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            std::env::var_os("CI").is_none() && !root,
            "CI runs as root and must be able to mount a tmpfs (root here: {root})"
        );
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    let _guard = Mount(small.clone());
    let mut o = opts();
    o.disk_margin = 0;
    o.reuse_hf_cache = false;
    let c = env.client();
    let to = |f: &str| FileRequest::new(REPO, "main", f, &small);
    download_file(&c, &to("a.gguf"), &o, &NoProgress).unwrap();
    env.server.clear_log();
    let err = download_file(&c, &to("b.gguf"), &o, &NoProgress).unwrap_err();
    assert!(matches!(err, HubError::DiskFull { .. }), "{err}");
    assert!(err.to_string().contains("free disk space"), "{err}");
    assert!(env.server.content_gets().is_empty());
    assert!(!small.join("b.gguf").exists());
    no_leftovers(&small);
    std::fs::remove_file(small.join("a.gguf")).unwrap();
    let done = download_file(&c, &to("b.gguf"), &o, &NoProgress).unwrap();
    assert_eq!(done.sha256, sha256_hex(&b));
}
