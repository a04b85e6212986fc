//! Ctrl-C and SIGTERM on the real binary: running steps are cancelled, their
//! process groups are gone, records say `interrupted`, no marker or
//! temporary file is left, the exit code is 128 + the signal, and the next
//! run resumes. Every wait is on an event (a file a step writes, a line on
//! stdout, a process exiting), with generous deadlines.

use onboard_test_support::workflow_yaml::{sh, workflow};
use onboard_test_support::{smollm2, walk, TestWorkspace};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Waits for the exit code, failing the test if it takes longer than `limit`.
fn exit_code(child: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().expect("exited, not killed by a signal");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("onboard did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `State:` of a live process; None once it is gone (or a zombie, which
/// runs nothing and only waits to be reaped).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Live processes whose process group is `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // state ppid pgrp …
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            pids.push(pid);
        }
    }
    pids
}

/// Reads a pid a step wrote; the file must exist and hold a number, so the
/// check cannot pass on a missing file.
fn pid_in(ws: &TestWorkspace, rel: &str) -> u32 {
    let text = ws.read(rel);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{rel} holds no pid: {text:?}"))
}

fn leftovers(root: &Path) -> Vec<String> {
    walk(root)
        .into_iter()
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            !path.is_dir() && (name.ends_with(".running") || name.ends_with(".onboard-tmp"))
        })
        .map(|path| path.display().to_string())
        .collect()
}

fn record(ws: &TestWorkspace, step: &str) -> serde_json::Value {
    let text = ws.read(&format!(".onboard/tiny/steps/{step}.json"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{step}.json: {e}: {text:?}"))
}

/// The running steps of the Why: a `command` step whose script started a
/// long `sleep` in its own process group, and a second one beside it.
fn sleeping_workflow() -> String {
    workflow(&[
        sh("first", &[], "echo one >> first.log"),
        sh(
            "second",
            &["first"],
            "if [ -f resume ]; then echo two >> second.log; else sleep 300 & echo $! > second.pid; wait; fi",
        ),
        sh(
            "side",
            &["first"],
            "if [ -f resume ]; then echo side >> side.log; else sleep 300 & echo $! > side.pid; wait; fi",
        ),
        sh("third", &["second", "side"], "echo three >> third.log"),
    ])
}

fn interrupt_and_resume(sig: i32, name: &str, code: i32) {
    let ws = TestWorkspace::new(&sleeping_workflow());
    let mut child = ws
        .command(&["run", "tiny", "--json", "-j", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("both sleeps to start", Duration::from_secs(30), || {
        !ws.read("second.pid").trim().is_empty() && !ws.read("side.pid").trim().is_empty()
    });
    let sleeps = [pid_in(&ws, "second.pid"), pid_in(&ws, "side.pid")];
    assert!(sleeps.iter().all(|&p| alive(p)), "the sleeps run");
    signal(&child, sig);
    assert_eq!(exit_code(&mut child, Duration::from_secs(15)), code);
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();

    // Every child is gone within a few seconds: the sleeps and their groups.
    wait_for("the sleeps to die", Duration::from_secs(5), || {
        sleeps.iter().all(|&p| !alive(p))
    });
    for pid in sleeps {
        // Each step's shell led its group; the sleep's group is the shell's.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if let Some((_, rest)) = stat.rsplit_once(") ") {
            let pgid: u32 = rest.split_whitespace().nth(2).unwrap().parse().unwrap();
            assert_eq!(group_members(pgid), Vec::<u32>::new(), "group {pgid}");
        }
    }
    for step in ["second", "side"] {
        let rec = record(&ws, step);
        assert_eq!(rec["status"], "interrupted", "{rec}");
        assert_eq!(rec["error"], format!("interrupted by {name}"), "{rec}");
    }
    assert_eq!(record(&ws, "first")["status"], "done");
    assert!(!ws.path(".onboard/tiny/steps/third.json").exists());
    assert_eq!(leftovers(ws.root()), Vec::<String>::new());
    let finished = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "run_finished")
        .unwrap_or_else(|| panic!("no run_finished event: {stdout}"));
    assert_eq!(finished["interrupted"], name, "{finished}");
    assert_eq!(finished["ok"], false);

    let status = ws.onboard(&["status", "tiny", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let of = |step: &str| {
        status
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == step)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(of("second"), "interrupted");
    assert_eq!(of("third"), "never_run");

    // The next run resumes at the interrupted steps.
    ws.write("resume", "");
    let run = ws.run(&[]);
    run.assert_ok();
    assert_eq!(run.skipped(), vec!["first"]);
    assert_eq!(run.ran(), vec!["second", "side", "third"]);
    assert!(
        run.why("second").starts_with("interrupted"),
        "{}",
        run.why("second")
    );
    assert_eq!(ws.read("first.log"), "one\n");
    assert_eq!(ws.read("third.log"), "three\n");
    assert_eq!(leftovers(ws.root()), Vec::<String>::new());
}

#[test]
fn ctrl_c_kills_running_steps_records_them_interrupted_and_the_next_run_resumes() {
    interrupt_and_resume(libc::SIGINT, "SIGINT", 130);
}

#[test]
fn sigterm_does_the_same_with_exit_code_143() {
    interrupt_and_resume(libc::SIGTERM, "SIGTERM", 143);
}

/// A step stuck in blocking work that cannot notice the signal (a request
/// to a server that never answers) holds the clean exit up to its grace
/// period; a second Ctrl-C exits at once.
#[test]
fn a_second_ctrl_c_exits_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and never answers.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
            let _ = tx.send(());
        }
    });
    let ws = TestWorkspace::new(
        "name: add-model\nsteps:\n  - id: download\n    uses: download\n    with:\n      repo: test/tiny-GGUF\n      files: [tiny.gguf]\n      dest: Test/Dense/1M/Q8_0\n",
    );
    let mut child = ws
        .command(&["run", "tiny", "--json"])
        .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (line_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the download connects");
    signal(&child, libc::SIGINT);
    // The runner has finished (the step is recorded as interrupted); the
    // process now waits for the blocked request, up to its grace period.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("a run_finished event");
        if line.contains("\"run_finished\"") {
            break;
        }
    }
    let second = Instant::now();
    signal(&child, libc::SIGINT);
    assert_eq!(exit_code(&mut child, Duration::from_secs(10)), 130);
    assert!(
        second.elapsed() < Duration::from_millis(2500),
        "the second Ctrl-C took {:?}",
        second.elapsed()
    );
    assert_eq!(record(&ws, "download")["status"], "interrupted");
}

/// Live processes whose parent is `ppid`, with their command lines.
fn children_of(ppid: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1 && fields[0] != "Z" && fields[1] == ppid.to_string() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

/// A context test loading SmolLM2 into llama.cpp's own server (PyPI
/// xllamacpp): Ctrl-C while the server runs, and the server is gone.
#[test]
fn ctrl_c_during_a_context_test_stops_the_llama_server() {
    let shim = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/llama-server-xllamacpp");
    let ws = TestWorkspace::new(
        "name: add-model\nsteps:\n  - id: context_test\n    uses: context-test\n    with:\n      profile: tiny\n      engine: llama-server\n      context: 8192\n      generate: 2048\n",
    );
    let gguf = smollm2::smollm2_gguf();
    let dest = ws.path("models/Test/smollm2.gguf");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    if std::fs::hard_link(&gguf, &dest).is_err() {
        std::fs::copy(&gguf, &dest).unwrap();
    }
    ws.write(
        "models.conf",
        "[tiny]\nMODEL=Test/smollm2.gguf\nCTX_SIZE=8192\nFLAGS=--jinja -np 1\n",
    );
    ws.write(
        "onboard.yaml",
        &format!("engines:\n  llama_server: {}\n", shim.display()),
    );
    let mut child = ws
        .command(&["run", "tiny", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let onboard = child.id();
    let mut server = None;
    wait_for("llama-server to start", Duration::from_secs(60), || {
        server = children_of(onboard)
            .into_iter()
            .find(|(_, cmd)| cmd.contains("llama_server_xllamacpp"))
            .map(|(pid, _)| pid);
        server.is_some()
    });
    let server = server.unwrap();
    signal(&child, libc::SIGINT);
    assert_eq!(exit_code(&mut child, Duration::from_secs(20)), 130);
    wait_for("llama-server to exit", Duration::from_secs(10), || {
        !alive(server)
    });
    assert_eq!(record(&ws, "context_test")["status"], "interrupted");
    assert_eq!(leftovers(ws.root()), Vec::<String>::new());
    assert!(
        !ws.read("models.conf").contains("SPEED"),
        "an interrupted measurement writes no speed"
    );
}

/// `onboard status` with no model: one line per model of the workspace,
/// from its records, markers and run lock alone, even while a run goes on.
#[test]
fn status_without_a_model_lists_every_model_with_what_failed_runs_and_comes_next() {
    let ws = TestWorkspace::new(&workflow(&[
        sh("a", &[], "true"),
        sh(
            "b",
            &["a"],
            "if [ -f hold ]; then while [ ! -f release ]; do sleep 0.05; done; \
             else echo 'boom: no such thing' >&2; exit 3; fi",
        ),
        sh("c", &["b"], "true"),
    ]));
    assert_eq!(ws.run(&[]).code, 1, "b fails for `tiny`");
    ws.write(
        "models/other.yaml",
        "id: other\nname: Other\nfamily: Test\ntype: dense\nsize: 1M\nhub:\n  repo: test/other-GGUF\n",
    );
    ws.write("models/broken.yaml", "id: broken\nname: [not, a, name]\n");
    let overview = || {
        let out = ws.onboard(&["status", "--format", "json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let lines: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
        lines
            .into_iter()
            .map(|l| (l["model"].as_str().unwrap().to_string(), l))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let by = overview();
    assert_eq!(
        by.keys().collect::<Vec<_>>(),
        ["broken", "other", "tiny"],
        "{by:#?}"
    );
    let tiny = &by["tiny"];
    assert_eq!((&tiny["done"], &tiny["total"]), (&1.into(), &3.into()));
    assert_eq!(tiny["failed"]["step"], "b", "{tiny}");
    assert_eq!(tiny["failed"]["status"], "failed");
    assert_eq!(tiny["last"]["step"], "b");
    assert_eq!(tiny["next"], "b");
    assert_eq!(tiny["running"], serde_json::Value::Null, "the run is over");
    let other = &by["other"];
    assert_eq!(
        (&other["done"], &other["last"]),
        (&0.into(), &serde_json::Value::Null)
    );
    assert_eq!(other["next"], "a");
    let broken = &by["broken"];
    assert_eq!(broken["done"], serde_json::Value::Null);
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .starts_with("manifest models/broken.yaml:"),
        "{broken}"
    );

    let table = ws.onboard(&["status"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", table.stdout);
    assert!(lines[0].starts_with("broken  -         error: manifest models/broken.yaml:"));
    assert!(
        lines[1].starts_with("other   0/3 done  never run "),
        "{}",
        table.stdout
    );
    assert!(lines[1].ends_with("  next: a"), "{}", table.stdout);
    assert!(
        lines[2].starts_with("tiny    1/3 done  failed: b (") && lines[2].ends_with("  next: b"),
        "{}",
        table.stdout
    );

    // While `other` runs b: running, with the pid of its run.
    ws.write("hold", "");
    let mut run = ws
        .command(&["run", "other"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let marker = ws.path(".onboard/other/steps/b.running");
    wait_for("b of `other` to start", Duration::from_secs(30), || {
        marker.exists()
    });
    let other = &overview()["other"];
    assert_eq!(
        (&other["running"]["state"], &other["running"]["step"]),
        (&"running".into(), &"b".into()),
        "{other}"
    );
    assert_eq!(other["running"]["pid"], run.id());
    assert_eq!(other["done"], 1);
    let table = ws.onboard(&["status"]).stdout;
    assert!(
        table.contains(&format!(
            "other   1/3 done  running: b (pid {}, since ",
            run.id()
        )),
        "{table}"
    );
    ws.write("release", "");
    assert_eq!(exit_code(&mut run, Duration::from_secs(30)), 0);
    let other = &overview()["other"];
    assert_eq!(
        (&other["done"], &other["next"]),
        (&3.into(), &serde_json::Value::Null)
    );
    assert_eq!(other["last"]["step"], "c", "{other}");
    assert_eq!(other["running"], serde_json::Value::Null);
    let table = ws.onboard(&["status"]).stdout;
    assert!(table.contains("other   3/3 done  last: c "), "{table}");

    // A live run holding the model's lock but running no step waits (for
    // a resource, another model's step); the lock's pid says who.
    ws.write(
        ".onboard/tiny/lock",
        &format!("pid {}, started 2026-01-01T00:00:00Z", std::process::id()),
    );
    let tiny = &overview()["tiny"];
    assert_eq!(
        tiny["running"],
        serde_json::json!({"state": "waiting", "step": null, "pid": std::process::id(),
            "since": "2026-01-01T00:00:00Z"})
    );
}
