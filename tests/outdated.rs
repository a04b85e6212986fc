//! A Hub that re-uploads a file under the same name, through the real
//! binary against a local mirror: `onboard outdated` goes from 0 to 1
//! naming the model and the file, `plan` reruns the download with the
//! reason, the run fetches only that file, a model pinned to a commit is
//! never reported, a changed `generation_config.json` reruns the samplers
//! step, offline or unreachable it says it cannot check, and a workspace
//! that keeps replaced files finds the old one beside the new, listed by
//! the retirement advice.

use onboard_test_support::{gguf_fixtures, hub_fixture, repo_file, repo_root, Run, TestWorkspace};
use std::path::{Path, PathBuf};

use hub_fixture::FaultyMirror;
use onboard::hub::{HubClient, HubConfig};

const REPO: &str = "test/tiny-GGUF";
const PINNED_REPO: &str = "test/pinned-GGUF";
const DEST: &str = "models/Test/Dense/1M/Q8_0";
const TOKEN: &str = "hf_outdatedTestTokenNeverShown";

/// The workflow up to the samplers: what reads the Hub, and fast.
fn workflow() -> String {
    let full = std::fs::read_to_string(repo_root().join("workflows/add-model.yaml"))
        .expect("workflows/add-model.yaml");
    let cut = full
        .find("  - id: context_test")
        .expect("a context_test step");
    full[..cut].to_string()
}

/// `qwen35_tiny` in Q8_0, split in two; random bytes after the headers.
fn shards() -> Vec<(String, Vec<u8>)> {
    gguf_fixtures::tiny_q8_shards(2, |len, i| hub_fixture::bytes(len, 7 + i))
        .into_iter()
        .enumerate()
        .map(|(i, data)| (format!("Q8_0/Tiny-Q8_0-{:05}-of-00002.gguf", i + 1), data))
        .collect()
}

struct Setup {
    tmp: tempfile::TempDir,
    server: FaultyMirror,
    ws: TestWorkspace,
    shards: Vec<(String, Vec<u8>)>,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let shards = shards();
        for repo in [REPO, PINNED_REPO] {
            let mut files: Vec<(&str, &[u8])> = shards
                .iter()
                .map(|(n, d)| (n.as_str(), d.as_slice()))
                .collect();
            files.push(("README.md", b"# Tiny\n"));
            files.push(("generation_config.json", br#"{"temperature": 0.3}"#));
            hub_fixture::write_repo(&tmp.path().join("mirror"), repo, &files);
        }
        let server = FaultyMirror::start(tmp.path().join("mirror"), "127.0.0.1:0").unwrap();
        let ws = TestWorkspace::new(&workflow());
        ws.write("onboard.yaml", &repo_file("onboard.yaml"));
        ws.write(
            "templates/profile.conf.j2",
            &repo_file("templates/profile.conf.j2"),
        );
        ws.write(
            "models/tiny.yaml",
            &format!("id: tiny\nname: Tiny\nfamily: Test\ntype: dense\nsize: 1M\nhub:\n  repo: {REPO}\n  quant: Q8_0\n"),
        );
        Setup {
            tmp,
            server,
            ws,
            shards,
        }
    }

    /// A second model, on its own repo, pinned to the mirror's commit.
    fn add_pinned(&self) -> String {
        let client = HubClient::new(HubConfig::for_endpoint(&self.server.url(), &self.hf_home()));
        let commit = client.repo_info(PINNED_REPO, "main").unwrap().commit;
        self.ws.write(
            "models/pinned.yaml",
            &format!("id: pinned\nname: Pinned\nfamily: Pinned\ntype: dense\nsize: 1M\nhub:\n  repo: {PINNED_REPO}\n  quant: Q8_0\n  revision: {commit}\n"),
        );
        commit
    }

    fn hf_home(&self) -> PathBuf {
        self.tmp.path().join("hf")
    }

    fn onboard(&self, args: &[&str]) -> Run {
        let mut cmd = self.ws.command(args);
        cmd.env("HF_ENDPOINT", self.server.url())
            .env("HF_HOME", self.hf_home())
            .env("HF_TOKEN", TOKEN)
            .env_remove("HF_HUB_OFFLINE");
        let run = Run::from(cmd.output().unwrap());
        assert!(
            !run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN),
            "the token was printed by {args:?}"
        );
        run
    }

    /// Replaces a file of the mirror's repo with other bytes.
    fn reupload(&self, repo: &str, file: &str, data: &[u8]) {
        // The mirror tells a changed file by its mtime too.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(self.tmp.path().join("mirror").join(repo).join(file), data).unwrap();
    }

    fn last_seq(&self) -> u64 {
        self.server.log().last().map_or(0, |e| e.seq)
    }

    /// Repo paths whose content was sent after `seq`.
    fn fetched_since(&self, seq: u64) -> Vec<String> {
        let mut paths: Vec<String> = self
            .server
            .log()
            .into_iter()
            .filter(|e| e.seq > seq && e.is_content_get())
            .map(|e| e.path)
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }
}

fn plan_line(run: &Run, step: &str) -> String {
    run.stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(step))
        .unwrap_or_else(|| panic!("no `{step}` in the plan:\n{}", run.stdout))
        .to_string()
}

/// The plan runs `step` for `why` and skips `skipped`.
fn assert_reruns(plan: &Run, step: &str, why: &str, skipped: &str) {
    let line = plan_line(plan, step);
    assert!(
        line.starts_with("  run") && line.contains(why),
        "{}",
        plan.stdout
    );
    assert!(
        plan_line(plan, skipped).starts_with("  skip"),
        "{}",
        plan.stdout
    );
}

/// The same length with other bytes: a re-upload under the same name.
fn other_bytes(old: &[u8], mask: u8) -> Vec<u8> {
    let mut new = old.to_vec();
    if let Some(last) = new.last_mut() {
        *last ^= mask;
    }
    new
}

fn name(path: &str) -> &str {
    Path::new(path).file_name().unwrap().to_str().unwrap()
}

#[test]
fn a_reupload_is_reported_planned_and_fetched_alone() {
    let s = Setup::new();
    s.add_pinned();
    s.onboard(&["run", "tiny", "--json"]).assert_ok();
    s.onboard(&["run", "pinned", "--json"]).assert_ok();
    assert!(s.ws.read("models.conf").contains("--temp 0.3"));

    let current = s.onboard(&["outdated"]);
    assert_eq!(current.code, 0, "{}{}", current.stdout, current.stderr);
    assert!(
        current
            .stdout
            .contains("tiny (test/tiny-GGUF@main): current"),
        "{}",
        current.stdout
    );
    assert!(
        current.stdout.contains("pinned: pinned to commit"),
        "{}",
        current.stdout
    );

    // The Hub re-uploads the second shard (and the pinned repo's too).
    let (shard, old) = &s.shards[1];
    let new = other_bytes(old, 0xff);
    s.reupload(REPO, shard, &new);
    s.reupload(PINNED_REPO, shard, &new);

    let changed = s.onboard(&["outdated"]);
    assert_eq!(changed.code, 1, "{}{}", changed.stdout, changed.stderr);
    let old_sha = hub_fixture::sha256_hex(old);
    let new_sha = hub_fixture::sha256_hex(&new);
    let change = format!("sha256 {}… → {}…", &old_sha[..8], &new_sha[..8]);
    assert!(
        changed
            .stdout
            .contains("tiny (test/tiny-GGUF@main): 1 of 4 file(s) changed upstream")
            && changed
                .stdout
                .contains(&format!("download  {shard}: {change}")),
        "{}",
        changed.stdout
    );
    assert!(
        changed.stdout.contains("pinned: pinned to commit"),
        "{}",
        changed.stdout
    );
    let json = s.onboard(&["outdated", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!((json.code, &doc["changed"]), (1, &serde_json::json!(1)));
    assert_eq!(doc["models"][0]["model"], "pinned");
    assert_eq!(doc["models"][0]["status"], "pinned");
    let files = doc["models"][1]["files"].as_array().unwrap();
    let changed_files: Vec<&str> = files
        .iter()
        .filter(|f| f["status"] == "changed")
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(changed_files, [shard.as_str()]);
    let record = s.ws.read(".onboard/tiny/upstream.json");
    assert!(
        record.contains(&new_sha) && !record.contains(TOKEN),
        "{record}"
    );

    // The plan reruns the download, and says why.
    let plan = s.onboard(&["plan", "tiny"]);
    assert_reruns(
        &plan,
        "download",
        &format!("upstream changed: {shard} {change}"),
        "samplers",
    );

    // The run fetches that file alone; the other shard stays as it was.
    let first = s.ws.path(DEST).join(name(&s.shards[0].0));
    let first_mtime = std::fs::metadata(&first).unwrap().modified().unwrap();
    let seq = s.last_seq();
    // The old bytes stay in place until the new ones are verified: a
    // download that never verifies leaves them as they were.
    s.server.corrupt_next(1000);
    let failed = s.onboard(&["run", "tiny", "--json"]);
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    assert!(failed.stdout.contains(&new_sha), "{}", failed.stdout);
    let kept = std::fs::read(s.ws.path(DEST).join(name(shard))).unwrap();
    assert!(
        kept == *old,
        "the old bytes stay until the new file is verified"
    );
    s.server.clear_faults();
    let run = s.onboard(&["run", "tiny", "--json"]);
    run.assert_ok();
    assert_eq!(run.ran(), ["download"], "{}", run.stdout);
    let fetched = s.fetched_since(seq);
    assert!(
        !fetched.is_empty() && fetched.iter().all(|p| p.ends_with(name(shard))),
        "{fetched:?}"
    );
    let on_disk = std::fs::read(s.ws.path(DEST).join(name(shard))).unwrap();
    assert!(on_disk == new, "the new bytes are in place");
    assert_eq!(
        std::fs::metadata(&first).unwrap().modified().unwrap(),
        first_mtime
    );
    let again = s.onboard(&["outdated", "tiny"]);
    assert_eq!(again.code, 0, "{}", again.stdout);
    let plan = s.onboard(&["plan", "tiny"]);
    assert!(plan.stdout.contains("0 to run"), "{}", plan.stdout);

    // A new generation config: `plan --refresh` asks the Hub, the samplers
    // step alone reruns, and derives the new values.
    s.reupload(REPO, "generation_config.json", br#"{"temperature": 0.55}"#);
    let plan = s.onboard(&["plan", "tiny", "--refresh"]);
    assert!(
        plan.stderr
            .contains("tiny: changed upstream: generation_config.json"),
        "{}",
        plan.stderr
    );
    assert_reruns(
        &plan,
        "samplers",
        "upstream changed: generation_config.json git ",
        "download",
    );
    let run = s.onboard(&["run", "tiny", "--json"]);
    run.assert_ok();
    assert_eq!(run.ran(), ["samplers"], "{}", run.stdout);
    assert!(s.ws.read("models.conf").contains("--temp 0.55"));
    assert_eq!(s.onboard(&["outdated"]).code, 0);
}

#[test]
fn offline_or_unreachable_it_cannot_check_and_says_so() {
    let s = Setup::new();
    s.onboard(&["run", "tiny", "--json"]).assert_ok();
    let mut offline = s.ws.command(&["outdated"]);
    offline
        .env("HF_ENDPOINT", s.server.url())
        .env("HF_HOME", s.hf_home())
        .env("HF_HUB_OFFLINE", "1");
    let offline = Run::from(offline.output().unwrap());
    assert_eq!(offline.code, 3, "{}{}", offline.stdout, offline.stderr);
    assert!(
        offline
            .stdout
            .contains("tiny (test/tiny-GGUF@main): cannot check: HF_HUB_OFFLINE is set"),
        "{}",
        offline.stdout
    );
    assert!(!offline.stdout.contains("current"), "{}", offline.stdout);
    // A port nothing listens on: refused at once.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", unused.local_addr().unwrap());
    drop(unused);
    let mut gone = s.ws.command(&["outdated", "--json"]);
    gone.env("HF_ENDPOINT", &url)
        .env("HF_HOME", s.hf_home())
        .env_remove("HF_HUB_OFFLINE");
    let gone = Run::from(gone.output().unwrap());
    assert_eq!(gone.code, 3, "{}{}", gone.stdout, gone.stderr);
    let doc: serde_json::Value = serde_json::from_str(&gone.stdout).unwrap();
    assert_eq!(doc["models"][0]["status"], "unchecked", "{doc}");
    // A model never onboarded has nothing to compare: a usage error.
    let none = s.onboard(&["outdated", "nope"]);
    assert_eq!(none.code, 2, "{}", none.stderr);
}

#[test]
fn a_workspace_that_keeps_replaced_files_finds_them_in_the_advice() {
    let s = Setup::new();
    let config = s.ws.read("onboard.yaml");
    let config = config.replace("  jobs: 4\n", "  jobs: 4\n  replaced_files: keep\n");
    assert!(
        config.contains("replaced_files: keep"),
        "onboard.yaml changed shape"
    );
    s.ws.write("onboard.yaml", &config);
    s.onboard(&["run", "tiny", "--json"]).assert_ok();
    let (shard, old) = &s.shards[0];
    let new = other_bytes(old, 0x55);
    s.reupload(REPO, shard, &new);
    assert_eq!(s.onboard(&["outdated"]).code, 1);
    let run = s.onboard(&["run", "tiny", "--json"]);
    run.assert_ok();
    assert_eq!(run.ran(), ["download"], "{}", run.stdout);
    let kept_name = format!(
        "{}.replaced-{}",
        name(shard),
        &hub_fixture::sha256_hex(old)[..12]
    );
    let dest = s.ws.path(DEST);
    assert!(std::fs::read(dest.join(&kept_name)).unwrap() == *old);
    assert!(std::fs::read(dest.join(name(shard))).unwrap() == new);
    assert!(run.stdout.contains(&kept_name), "{}", run.stdout);
    let advice = s.onboard(&["retire", "--advise"]);
    assert_eq!(advice.code, 0, "{}", advice.stderr);
    assert!(
        advice.stdout.contains(&format!("{DEST}/{kept_name}")),
        "{}",
        advice.stdout
    );
    // The model is current again, and nothing reruns.
    assert_eq!(s.onboard(&["outdated"]).code, 0);
    assert!(s.onboard(&["plan", "tiny"]).stdout.contains("0 to run"));
}
