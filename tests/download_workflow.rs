//! The `download` step of `workflows/add-model.yaml` through the real
//! binary (`onboard run tiny --until download`, evaluate first), against a
//! local Hub mirror serving a three-shard Q8_0 model of about 5 MB: verified
//! download and a skip with no content request, a SIGKILL mid-file and the
//! rerun fetching only the rest, a disk that fills up during the download,
//! and the progress output (JSON events, plain lines, bars on a terminal).

use onboard_test_support::{
    gguf_fixtures, hub_fixture, mount_tmpfs, repo_file, terminal, Run, TestWorkspace, MODEL,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onboard::hub::{LogEntry, MirrorServer};
use serde_json::Value;

const REPO: &str = "test/tiny-GGUF";
const QUANT: &str = "Q8_0";
/// Where evaluate puts the quant: `<Family>/<Dense|MoE>/<size>/<quant>`.
const DEST: &str = "models/Test/Dense/1M/Q8_0";
/// The downloader's default block: the most a killed worker loses.
const BLOCK: u64 = 512 << 10;

/// One shard as the mirror serves it.
struct Shard {
    name: String,
    data: Vec<u8>,
}

/// `qwen35_tiny` with its matrices in Q8_0, split in three like
/// `llama-gguf-split`; the data sections hold random bytes (the header is
/// what evaluate reads; the bytes are what the download verifies).
fn shards(prefix: &str) -> Vec<Shard> {
    gguf_fixtures::tiny_q8_shards(3, |len, i| hub_fixture::bytes(len, 1000 + i))
        .into_iter()
        .enumerate()
        .map(|(i, data)| Shard {
            name: format!("{prefix}-{QUANT}-{:05}-of-00003.gguf", i + 1),
            data,
        })
        .collect()
}

/// A mirror over the fixture repo, an HF_HOME and a workspace with this
/// repository's workflow, templates and machine.
struct Setup {
    tmp: tempfile::TempDir,
    server: MirrorServer,
    shards: Vec<Shard>,
    ws: TestWorkspace,
}

impl Setup {
    fn new() -> Setup {
        Setup::with_prefix("Tiny")
    }

    /// Shards named `<prefix>-Q8_0-0000N-of-00003.gguf`.
    fn with_prefix(prefix: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("mirror");
        let shards = shards(prefix);
        for s in &shards {
            let p = root.join(REPO).join(QUANT).join(&s.name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, &s.data).unwrap();
        }
        std::fs::write(root.join(REPO).join("README.md"), "# Tiny\n").unwrap();
        let server = MirrorServer::start(&root, "127.0.0.1:0").unwrap();
        let ws = TestWorkspace::new(&repo_file("workflows/add-model.yaml"));
        ws.write("onboard.yaml", &repo_file("onboard.yaml"));
        for t in ["onboarding-summary.md.j2", "profile.conf.j2", "card.md.j2"] {
            ws.write(
                &format!("templates/{t}"),
                &repo_file(&format!("templates/{t}")),
            );
        }
        ws.write(
            "models/tiny.yaml",
            &format!(
                "id: tiny\nname: Tiny\nfamily: Test\ntype: dense\nsize: 1M\nhub:\n  repo: {REPO}\n  quant: {QUANT}\n"
            ),
        );
        Setup {
            tmp,
            server,
            shards,
            ws,
        }
    }

    fn total(&self) -> u64 {
        self.shards.iter().map(|s| s.data.len() as u64).sum()
    }

    fn dest(&self) -> PathBuf {
        self.ws.path(DEST)
    }

    /// `onboard run tiny --until download` with the mirror as the Hub.
    fn command(&self, extra: &[&str]) -> Command {
        let mut args = vec!["run", MODEL, "--until", "download"];
        args.extend_from_slice(extra);
        let mut cmd = self.ws.command(&args);
        cmd.env("HF_ENDPOINT", self.server.url())
            .env("HF_HOME", self.tmp.path().join("hf"))
            .env_remove("HF_HUB_OFFLINE")
            .env_remove(ONBOARD_PROGRESS_INTERVAL);
        cmd
    }

    fn run(&self, extra: &[&str]) -> Run {
        Run::from(self.command(extra).output().unwrap())
    }

    /// Content requests (GET on `/resolve/`) with `seq > after`.
    fn content_since(&self, after: u64) -> Vec<LogEntry> {
        self.server
            .content_gets()
            .into_iter()
            .filter(|e| e.seq > after)
            .collect()
    }

    /// Bytes the mirror sent of shard `i` to the downloader in requests
    /// with `seq > after`. Its ranges run to the end of the file (one chunk
    /// per shard here); evaluate's header reads (`bytes=0-4095`, doubling)
    /// do not.
    fn served(&self, i: usize, after: u64) -> u64 {
        let size = self.shards[i].data.len() as u64;
        self.content_since(after)
            .iter()
            .filter(|e| e.path.ends_with(&self.shards[i].name))
            .filter(|e| {
                e.range
                    .as_deref()
                    .and_then(|r| r.rsplit('-').next())
                    .is_none_or(|end| end.is_empty() || end.parse::<u64>().ok() == Some(size - 1))
            })
            .map(|e| e.bytes)
            .sum()
    }

    fn record(&self) -> Value {
        let text = self.ws.read(".onboard/tiny/steps/download.json");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("download record: {e}: {text}"))
    }

    /// Every shard under its final name, with the mirror's bytes.
    fn assert_all_verified(&self) {
        for s in &self.shards {
            let got = std::fs::read(self.dest().join(&s.name))
                .unwrap_or_else(|e| panic!("{}: {e}", s.name));
            assert!(got == s.data, "{} differs from the mirror's", s.name);
        }
        let rec = self.record();
        assert_eq!(rec["status"], "done", "{rec}");
        let files = rec["outputs"]["files"].as_array().unwrap();
        assert_eq!(files.len(), 3);
        for (f, s) in files.iter().zip(&self.shards) {
            assert_eq!(f["path"], format!("Test/Dense/1M/Q8_0/{}", s.name));
            assert_eq!(f["size"], s.data.len() as u64);
            assert_eq!(f["sha256"], hub_fixture::sha256_hex(&s.data));
        }
        assert_no_leftovers(&self.dest());
    }

    /// The sidecar's count of shard `i`'s bytes on disk.
    fn on_disk(&self, i: usize) -> u64 {
        sidecar_done(
            &self
                .dest()
                .join(format!("{}.part.state", self.shards[i].name)),
        )
    }
}

const ONBOARD_PROGRESS_INTERVAL: &str = "ONBOARD_PROGRESS_INTERVAL";

/// No partial, sidecar or temporary file left in `dir`.
fn assert_no_leftovers(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".part") && !name.ends_with(".part.state") && !name.contains("tmp"),
            "left behind: {name}"
        );
    }
}

/// Bytes on disk as the `.part.state` sidecar records them: after a 4 KiB
/// header, one little-endian u64 per chunk.
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

/// `step_progress` events of `kind` for `file`.
fn progress<'a>(events: &'a [Value], kind: &str, file: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"] == "step_progress" && e["kind"] == kind && e["file"] == file)
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn three_shards_downloaded_verified_recorded_then_skipped_without_a_content_request() {
    let s = Setup::new();
    let run = s.run(&["--json"]);
    run.assert_ok();
    assert_eq!(run.ran(), ["download", "evaluate"], "{}", run.stdout);
    let rec = s.ws.read(".onboard/tiny/steps/evaluate.json");
    let eval: Value = serde_json::from_str(&rec).unwrap();
    assert_eq!(eval["outputs"]["quant"], QUANT, "{rec}");
    assert_eq!(eval["outputs"]["path"], "Test/Dense/1M/Q8_0");
    s.assert_all_verified();
    let rec = s.record();
    assert_eq!(rec["outputs"]["total_bytes"], s.total());
    assert_eq!(rec["outputs"]["fetched_bytes"], s.total());
    assert_eq!(
        rec["outputs"]["model_file"],
        format!("Test/Dense/1M/Q8_0/{}", s.shards[0].name)
    );
    // Every byte of every shard came over once.
    let mut served = 0;
    for (i, shard) in s.shards.iter().enumerate() {
        assert_eq!(s.served(i, 0), shard.data.len() as u64, "{}", shard.name);
        served += s.served(i, 0);
    }
    assert_eq!(served, s.total());

    // JSON progress: start, done for each shard, on stdout with the step.
    let events = run.events();
    for shard in &s.shards {
        let start = progress(&events, "start", &shard.name);
        assert_eq!(start.len(), 1, "{}", run.stdout);
        assert_eq!(start[0]["step"], "download");
        assert_eq!(start[0]["total"], shard.data.len() as u64);
        assert_eq!(start[0]["present"], 0);
        let done = progress(&events, "done", &shard.name);
        assert_eq!(done.len(), 1, "{}", run.stdout);
        assert_eq!(done[0]["how"], "downloaded");
        assert_eq!(done[0]["fetched"], shard.data.len() as u64);
    }

    // Second run: both steps skipped, and not one content request.
    let seq = s.server.last_seq();
    let again = s.run(&["--json"]);
    again.assert_ok();
    for step in ["evaluate", "download"] {
        assert!(
            again.why(step).starts_with("done and unchanged"),
            "{}",
            again.stdout
        );
    }
    assert!(again.ran().is_empty());
    let content = s.content_since(seq);
    assert!(
        content.is_empty(),
        "content requests on the second run: {content:?}"
    );
    let any: Vec<_> = s.server.log().into_iter().filter(|e| e.seq > seq).collect();
    eprintln!("second run: {} requests of any kind: {any:?}", any.len());
    s.assert_all_verified();
}

#[test]
fn sigkill_mid_file_then_the_rerun_fetches_only_the_remainder() {
    let s = Setup::new();
    // About 1.7 MB per shard at 2 MiB/s: the kill lands in the second one.
    s.server.throttle(Some(2 << 20));
    let out = std::fs::File::create(s.tmp.path().join("first.jsonl")).unwrap();
    let mut child = s
        .command(&["--json"])
        .stdout(Stdio::from(out))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Mid-file: at least one block of shard 2 on disk, at least one to go.
    let size2 = s.shards[1].data.len() as u64;
    wait_for("shard 2 under way", Duration::from_secs(30), || {
        let d = s.on_disk(1);
        d >= BLOCK && d + BLOCK <= size2
    });
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let on_disk = s.on_disk(1);
    assert!(on_disk > 0 && on_disk < size2, "{on_disk} of {size2}");
    assert!(!s.dest().join(&s.shards[1].name).exists());
    assert!(s.dest().join(&s.shards[0].name).exists());
    assert!(!s.dest().join(&s.shards[2].name).exists());
    // What the killed run had been sent of shard 2 (the mirror notices the
    // closed socket on its next write).
    std::thread::sleep(Duration::from_millis(300));
    let sent_before = s.served(1, 0);

    s.server.throttle(None);
    let seq = s.server.last_seq();
    let rerun = s.run(&["--json"]);
    rerun.assert_ok();
    assert_eq!(rerun.ran(), ["download"], "{}", rerun.stdout);
    s.assert_all_verified();

    let refetched = s.served(1, seq);
    let remainder = size2 - on_disk;
    let surplus = refetched as i64 - remainder as i64;
    eprintln!(
        "shard 2: {size2} bytes; the killed run was sent {sent_before}, {on_disk} were on disk \
         (recorded by the sidecar); the rerun fetched {refetched} = remainder {remainder} {surplus:+} \
         ({:.2}% surplus); lost to the kill: {} bytes (at most one {BLOCK}-byte block per worker, plus socket buffers)",
        surplus as f64 * 100.0 / remainder as f64,
        sent_before.saturating_sub(on_disk),
    );
    assert!(refetched >= remainder, "fetched {refetched} < {remainder}");
    assert!(
        surplus as u64 <= 64 << 10,
        "re-fetched {refetched} for a remainder of {remainder}"
    );
    // Shard 1 was already verified: nothing of it again; shard 3 whole.
    assert_eq!(s.served(0, seq), 0);
    assert_eq!(s.served(2, seq), s.shards[2].data.len() as u64);
    let files = &s.record()["outputs"]["files"];
    assert_eq!(files[0]["how"], "present");
    assert_eq!(files[1]["how"], "resumed");
    assert_eq!(files[2]["how"], "downloaded");
    // The rerun says where it resumed.
    let events = rerun.events();
    let start = progress(&events, "start", &s.shards[1].name);
    assert_eq!(start.len(), 1, "{}", rerun.stdout);
    assert_eq!(start[0]["present"], on_disk);
    assert_eq!(
        s.record()["outputs"]["fetched_bytes"],
        remainder + s.shards[2].data.len() as u64
    );
}

fn free_bytes(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string and a zeroed struct statvfs fills.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0);
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

/// Takes every free byte of the file system holding `path`.
fn fill(path: &Path) {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::create(path).unwrap();
    let free = free_bytes(path.parent().unwrap());
    // SAFETY: a valid descriptor; mode 0 allocates blocks.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, free as libc::off_t) };
    assert_eq!(rc, 0, "fallocate: {}", std::io::Error::last_os_error());
    assert!(free_bytes(path.parent().unwrap()) < 4096);
}

#[test]
fn a_disk_that_fills_up_mid_download_is_a_clear_error_and_the_rerun_resumes() {
    let s = Setup::new();
    // The quant's directory tree on a small tmpfs: room for the shards and
    // the downloader's 256 MiB margin, so the free-space check passes.
    let Some(_mount) = mount_tmpfs(&s.ws.path("models/Test"), 300) else {
        return;
    };
    s.server.throttle(Some(1 << 20));
    let filler = s.ws.path("models/Test/filler");
    let child = s
        .command(&[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Shard 1 is being written: take the rest of the disk.
    wait_for("shard 1 under way", Duration::from_secs(30), || {
        s.on_disk(0) > 0
    });
    fill(&filler);
    let run = Run::from(child.wait_with_output().unwrap());
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    eprintln!("{}", run.stderr);
    let err = run
        .stderr
        .lines()
        .find(|l| l.contains("FAILED download"))
        .unwrap_or_else(|| panic!("no failure line:\n{}", run.stderr));
    let dest = s.dest();
    assert!(err.contains(dest.to_str().unwrap()), "names no path: {err}");
    // Shard 1's blocks were reserved before the filler came, so its bytes
    // all land; the first write that needs a new block (its verification
    // record) meets the full disk. Had the filler come later, shard 2's
    // own free-space check would refuse it: the same advice either way.
    let no_space = err.contains("no space left on the device holding");
    assert!(
        no_space || err.contains("not enough free disk space in"),
        "says nothing of space: {err}"
    );
    assert!(
        err.contains("free some space") && err.contains("run the same command again"),
        "gives no fix: {err}"
    );
    assert!(err.contains("after 1 attempt(s)"), "retried: {err}");
    for shard in &s.shards {
        assert!(
            !dest.join(&shard.name).exists(),
            "{} has its final name",
            shard.name
        );
    }
    let on_disk = s.on_disk(0);

    std::fs::remove_file(&filler).unwrap();
    let seq = s.server.last_seq();
    s.server.throttle(None);
    let rerun = s.run(&["--json"]);
    rerun.assert_ok();
    s.assert_all_verified();
    let size1 = s.shards[0].data.len() as u64;
    eprintln!(
        "disk full: shard 1 had {on_disk} of {size1} bytes on disk; the rerun fetched {} of it",
        s.served(0, seq)
    );
    let expected = if no_space { size1 - on_disk } else { 0 };
    assert_eq!(s.served(0, seq), expected);
    let how = if no_space { "resumed" } else { "present" };
    assert_eq!(s.record()["outputs"]["files"][0]["how"], how);
    assert_eq!(
        s.served(1, seq) + s.served(2, seq),
        s.total() - size1,
        "shards 2 and 3"
    );
}

#[test]
fn progress_as_periodic_lines_when_stdout_is_not_a_terminal() {
    let s = Setup::new();
    s.server.throttle(Some(4 << 20));
    let out = s
        .command(&[])
        .env(ONBOARD_PROGRESS_INTERVAL, "100ms")
        .output()
        .unwrap();
    let run = Run::from(out);
    run.assert_ok();
    for shard in &s.shards {
        let name = &shard.name;
        let lines: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| l.starts_with(&format!("         download: {name}: ")))
            .collect();
        assert!(
            lines.first().is_some_and(|l| l.contains("downloading 1.")),
            "{}",
            run.stdout
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("% ") && l.contains("/s, ETA ")),
            "no periodic line for {name}:\n{}",
            run.stdout
        );
        assert!(
            lines
                .last()
                .is_some_and(|l| l.contains("downloaded, 1.") && l.ends_with("MiB verified")),
            "{}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains('\x1b'), "escape codes in a pipe");
    assert!(!run.stderr.contains('\x1b'), "escape codes in a pipe");
}

#[test]
fn json_byte_events_are_spaced_by_the_interval() {
    let s = Setup::new();
    s.server.throttle(Some(2 << 20));
    let out = s
        .command(&["--json"])
        .env(ONBOARD_PROGRESS_INTERVAL, "250ms")
        .output()
        .unwrap();
    let run = Run::from(out);
    run.assert_ok();
    let events = run.events();
    let mut count = 0;
    for shard in &s.shards {
        // At least 0.6 s per shard: a byte event or more for each.
        let bytes = progress(&events, "bytes", &shard.name);
        assert!(!bytes.is_empty(), "no byte event for {}", shard.name);
        count += bytes.len() as u64;
        let mut last = 0;
        for b in &bytes {
            assert_eq!(b["step"], "download");
            let done = b["done"].as_u64().unwrap();
            assert!(done >= last);
            last = done;
            assert_eq!(b["total"], shard.data.len() as u64);
            assert!(b["rate"].as_f64().unwrap() >= 0.0);
        }
    }
    // One per file per 250 ms at most (the downloader reports ten a second).
    let ms = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "download")
        .and_then(|e| e["duration_ms"].as_u64())
        .unwrap();
    assert!(count <= ms / 250 + 3, "{count} byte events in {ms} ms");
    // Every line is one JSON object.
    for l in run.stdout.lines() {
        assert!(serde_json::from_str::<Value>(l).is_ok(), "{l}");
    }
}

#[test]
fn a_live_bar_on_a_terminal_with_log_lines_above_it() {
    let s = Setup::new();
    s.server.throttle(Some(4 << 20));
    let cols = 100;
    let (code, bytes) = terminal::run_on_pty(s.command(&[]), cols as u16);
    let raw = String::from_utf8_lossy(&bytes);
    assert_eq!(code, 0, "{raw}");
    // Redrawn in place: erase-line sequences and a bar with rate and ETA.
    assert!(raw.contains("\r\x1b[2K"), "{raw:?}");
    let bar = raw
        .split(['\r', '\n'])
        .find(|l| l.contains("download: Tiny-Q8_0-00002-of-00003.gguf [#"))
        .unwrap_or_else(|| panic!("no bar for shard 2: {raw:?}"));
    assert!(bar.contains("/s ETA "), "{bar:?}");
    assert!(bar.contains("/1.7 MiB"), "{bar:?}");
    // The screen a person sees at the end: the run's lines, each whole, and
    // no bar left over.
    let screen = terminal::screen(&bytes, cols);
    let text = screen.join("\n");
    assert!(!text.contains("[#"), "a bar stayed on screen:\n{text}");
    assert!(!text.contains("] "), "a bar stayed on screen:\n{text}");
    for line in screen.iter().filter(|l| !l.is_empty()) {
        let known = [
            "onboarding `tiny`",
            "  run    ",
            "  done   ",
            "  skip   ",
            "         download: ",
            "         evaluate: ",
            "finished in ",
        ];
        assert!(
            known.iter().any(|k| line.starts_with(k)),
            "garbled line {line:?} in:\n{text}"
        );
    }
    for shard in &s.shards {
        let done = format!("         download: {}: downloaded, 1.", shard.name);
        assert!(
            screen
                .iter()
                .any(|l| l.starts_with(&done) && l.ends_with(" MiB verified")),
            "{text}"
        );
    }
    assert!(
        screen.iter().any(|l| l.starts_with("finished in ")),
        "{text}"
    );
}

#[test]
fn wide_characters_in_file_names_leave_no_fragment_of_a_bar() {
    // Each of these characters takes two columns: a label measured in
    // characters would overflow the line, wrap, and leave its first row
    // behind when the bar is erased.
    let s = Setup::with_prefix("小型模型权重文件测试用例");
    s.server.throttle(Some(4 << 20));
    // Wide enough for the label's wide characters to be drawn in the bar.
    let cols = 120;
    let (code, bytes) = terminal::run_on_pty(s.command(&[]), cols as u16);
    let raw = String::from_utf8_lossy(&bytes);
    assert_eq!(code, 0, "{raw}");
    assert!(
        raw.split(['\r', '\n'])
            .any(|l| l.contains("用例-Q8_0-0000") && l.contains(".gguf [#")),
        "no bar with the wide characters was drawn: {raw:?}"
    );
    // `screen` wraps wide characters as a terminal does and fails on none:
    // the end state is the run's own lines, each whole, no bar left.
    let screen = terminal::screen(&bytes, cols);
    let text = screen.join("\n");
    assert!(!text.contains("[#"), "a bar stayed on screen:\n{text}");
    assert!(!text.contains("ETA"), "a bar stayed on screen:\n{text}");
    for shard in &s.shards {
        let done = format!("         download: {}: downloaded, 1.", shard.name);
        let whole = screen.windows(2).any(|w| {
            let joined = format!("{}{}", w[0], w[1]);
            joined.starts_with(&done) && joined.ends_with(" MiB verified")
        }) || screen
            .iter()
            .any(|l| l.starts_with(&done) && l.ends_with(" MiB verified"));
        assert!(whole, "no whole line for {}:\n{text}", shard.name);
    }
    assert!(
        screen.iter().any(|l| l.starts_with("finished in ")),
        "{text}"
    );
}

/// A terminal's worth of bytes, shared by the bars and the "stdout" lines.
#[derive(Clone, Default)]
struct FakeTerminal(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for FakeTerminal {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn bars_and_log_lines_from_parallel_steps_never_garble() {
    use onboard::hub::{ProgressEvent, TtyProgress};
    let term = FakeTerminal::default();
    let cols = 72;
    let bars = TtyProgress::with_width(term.clone(), move || cols);
    // Three "steps" at once, each with a transfer (labels too long for the
    // bar: shortened from the left) and its own log lines between updates.
    std::thread::scope(|sc| {
        for t in 0..3u64 {
            let (bars, term) = (&bars, &term);
            sc.spawn(move || {
                let file = format!("shard-name-{t}-00001-of-00003.gguf");
                let key = format!("step{t}\u{0}{file}");
                let label = format!("step{t}: {file}");
                let total = 10 << 20;
                bars.update(
                    &key,
                    &label,
                    &ProgressEvent::Start {
                        file: &file,
                        total,
                        present: 0,
                    },
                );
                for i in 0..200u64 {
                    let done = (i + 1) * total / 200;
                    bars.update(
                        &key,
                        &label,
                        &ProgressEvent::Bytes {
                            file: &file,
                            done,
                            total,
                            rate: 3e6,
                        },
                    );
                    if i % 20 == 0 {
                        bars.suspend(|| {
                            let mut out = term.clone();
                            std::io::Write::write_all(
                                &mut out,
                                format!("log {t} {i}\n").as_bytes(),
                            )
                            .unwrap();
                        });
                    }
                    std::thread::sleep(Duration::from_micros(300));
                }
                if t != 1 {
                    let done = ProgressEvent::Done {
                        file: &file,
                        size: total,
                        fetched: total,
                        how: "downloaded",
                    };
                    let line = bars.update(&key, &label, &done).unwrap();
                    bars.suspend(|| {
                        let mut out = term.clone();
                        std::io::Write::write_all(&mut out, format!("{line}\n").as_bytes())
                            .unwrap();
                    });
                }
            });
        }
    });
    let bytes = term.0.lock().unwrap().clone();
    // `screen` fails on any line wider than the terminal.
    let screen = terminal::screen(&bytes, cols);
    let mut lines: Vec<&str> = screen.iter().map(String::as_str).collect();
    // The one transfer still running is the last line, as a whole bar (its
    // last figures may be a redraw behind: redraws are 100 ms apart).
    let bar = lines.pop().unwrap();
    let full = bar.contains("#] 100% 10.0 MiB/10.0 MiB 2.9 MiB/s ETA -");
    let behind = bar.contains("-] ") && bar.contains(" MiB/10.0 MiB 2.9 MiB/s ETA ");
    assert!(
        bar.starts_with("…") && bar.contains("0001-of-00003.gguf [#") && (full || behind),
        "{bar:?}"
    );
    assert!(bar.chars().count() < cols, "{bar:?}");
    // Above it: every log line, whole, in each thread's order; the two
    // finished transfers' lines; nothing else.
    for t in 0..3 {
        let mine: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with(&format!("log {t} ")))
            .collect();
        let want: Vec<String> = (0..200)
            .step_by(20)
            .map(|i| format!("log {t} {i}"))
            .collect();
        assert_eq!(mine, want, "{screen:#?}");
    }
    for t in [0, 2] {
        let done = format!("shard-name-{t}-00001-of-00003.gguf: downloaded, 10.0 MiB verified");
        assert!(lines.contains(&done.as_str()), "{screen:#?}");
    }
    assert_eq!(lines.len(), 3 * 10 + 2, "{screen:#?}");

    // Cleared at the end: nothing of the bar stays.
    bars.clear();
    let screen = terminal::screen(&term.0.lock().unwrap(), cols);
    assert_eq!(screen.last().map(String::as_str), Some(""), "{screen:#?}");
}
