//! The benchmark's scoring path on fixtures: EvalPlus-format problems with
//! right and wrong model replies score exactly as expected, and hostile code
//! is contained. Needs root (namespaces, uid switch), as CI runs.

use onboard::bench::dataset::Dataset;
use onboard::bench::prompt;
use onboard::bench::sandbox::{Sandbox, SandboxConfig, Status};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bench")
        .join(name)
}

fn status(s: &str) -> Status {
    match s {
        "pass" => Status::Pass,
        "fail" => Status::Fail,
        _ => Status::Timeout,
    }
}

#[test]
fn fixture_replies_score_exactly_as_expected() {
    let dataset = Dataset::read(&fixture("humaneval-plus-mini.jsonl")).unwrap();
    assert_eq!(dataset.label, "HumanEval+");
    let sandbox = Sandbox::new(SandboxConfig::new(2)).unwrap();
    let text = std::fs::read_to_string(fixture("completions.jsonl")).unwrap();
    let cases: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let results: Vec<(String, Status, Option<Status>)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|c| {
                let sandbox = &sandbox;
                let dataset = &dataset;
                s.spawn(move || {
                    let problem = dataset
                        .problems
                        .iter()
                        .find(|p| p.task_id == c["task_id"])
                        .unwrap();
                    let code =
                        prompt::code_from_reply(c["reply"].as_str().unwrap(), &problem.entry_point);
                    let v = sandbox.judge(problem, &code).unwrap();
                    (
                        format!("{} {}", c["task_id"], c["name"]),
                        v.base.status,
                        v.plus.map(|p| p.status),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut wrong = Vec::new();
    for (c, (name, base, plus)) in cases.iter().zip(&results) {
        let want = (
            status(c["expect_base"].as_str().unwrap()),
            Some(status(c["expect_plus"].as_str().unwrap())),
        );
        if (*base, *plus) != want {
            wrong.push(format!("{name}: got {base:?}/{plus:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn original_humaneval_problems_run_their_check_function() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("he.jsonl");
    std::fs::write(
        &path,
        r#"{"task_id": "HumanEval/0", "prompt": "def inc(x):\n    \"\"\"x + 1\"\"\"\n", "entry_point": "inc", "canonical_solution": "    return x + 1\n", "test": "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(-1) == 0\n"}
"#,
    )
    .unwrap();
    let dataset = Dataset::read(&path).unwrap();
    assert_eq!(dataset.label, "HumanEval (base tests only)");
    let sandbox = Sandbox::new(SandboxConfig::new(1)).unwrap();
    let p = &dataset.problems[0];
    let good = sandbox.judge(p, "def inc(x):\n    return x + 1").unwrap();
    assert_eq!((good.base.status, good.plus), (Status::Pass, None));
    let bad = sandbox.judge(p, "def inc(x):\n    return x").unwrap();
    assert_eq!(bad.base.status, Status::Fail);
}

/// Where the hostile solutions aim: the host's real places for the
/// sandboxed runs, places in a temp dir for the unconfined control.
struct Targets {
    sentinel: PathBuf,
    workspace: PathBuf,
    port: u16,
    /// `~` in the sandbox; a directory in the control.
    home: String,
    root_file: PathBuf,
    tmp_file: PathBuf,
}

/// Each hostile solution replaces `add` from the fixture. Those that do
/// harm return `a + b` once the harm is done, so unconfined they pass: a
/// sandboxed run that fails them is the sandbox's doing. `Some(status)`:
/// what the sandbox (without the Python guard) must make of it.
fn hostile_cases(t: &Targets) -> Vec<(&'static str, String, Option<Status>)> {
    let s = t.sentinel.display();
    let w = t.workspace.display();
    let home = &t.home;
    let root_file = t.root_file.display();
    let tmp_file = t.tmp_file.display();
    let port = t.port;
    vec![
        ("infinite loop", "def add(a, b):\n    while True:\n        pass".into(), None),
        (
            "loop ignoring the alarm",
            "import signal\ndef add(a, b):\n    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])\n    while True:\n        pass\n    return 0".into(),
            // Only the wall-clock limit stops it.
            Some(Status::Timeout),
        ),
        (
            "fork bomb",
            "import os\ndef add(a, b):\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n    return 0".into(),
            None,
        ),
        (
            "10 GB allocation",
            "def add(a, b):\n    x = bytearray(10 * 1024 ** 3)\n    return a + b".into(),
            Some(Status::Fail),
        ),
        (
            "write to the home directory",
            format!("import os\ndef add(a, b):\n    open(os.path.expanduser('{home}/.bashrc'), 'a').write('pwned')\n    open('{root_file}', 'w').write('x')\n    return a + b"),
            Some(Status::Fail),
        ),
        (
            "write into /tmp and the workspace",
            format!("def add(a, b):\n    for p in ['{s}/victim.txt', '{s}/new.txt', '{tmp_file}', '{w}/models.conf', '{w}/new.txt']:\n        try:\n            open(p, 'w').write('pwned')\n        except OSError:\n            pass\n    open('{s}/victim.txt', 'w').write('pwned')\n    return a + b"),
            Some(Status::Fail),
        ),
        (
            "network connection",
            format!("import socket\ndef add(a, b):\n    socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'leak')\n    return a + b"),
            Some(Status::Fail),
        ),
        (
            "rm -rf ~ and the sentinel",
            format!("import os\ndef add(a, b):\n    os.system('rm -rf {home} {s} {w} {tmp_file} 2>/dev/null')\n    os.system('rm -rf {s}')\n    return 0"),
            None,
        ),
        (
            "daemon left behind",
            "import os, time\ndef add(a, b):\n    if os.fork() == 0:\n        os.setsid()\n        time.sleep(600)\n    return 0".into(),
            None,
        ),
        (
            "huge file",
            "def add(a, b):\n    with open('big', 'wb') as f:\n        f.write(b'x' * (32 * 1024 * 1024))\n    return a + b".into(),
            // Over the 16 MiB file-size limit.
            Some(Status::Fail),
        ),
    ]
}

/// The control: the harmful solutions run without the sandbox (the same
/// harness, no guard, all targets in a temp dir) pass, and their harm is
/// there to see, by the same checks that find none after a sandboxed run.
#[test]
fn unconfined_the_hostile_solutions_pass_and_do_their_harm() {
    let dataset = Dataset::read(&fixture("humaneval-plus-mini.jsonl")).unwrap();
    let problem = &dataset.problems[0];
    let dir = tempfile::tempdir().unwrap();
    let t = Targets {
        sentinel: dir.path().join("sentinel"),
        workspace: dir.path().join("workspace"),
        port: 0,
        home: dir.path().join("home").display().to_string(),
        root_file: dir.path().join("root-pwned"),
        tmp_file: dir.path().join("tmp-pwned"),
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let t = Targets {
        port: listener.local_addr().unwrap().port(),
        ..t
    };
    let cwd = dir.path().join("cwd");
    for d in [&t.sentinel, &t.workspace, &cwd, &dir.path().join("home")] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(t.sentinel.join("victim.txt"), "keep").unwrap();
    std::fs::write(t.workspace.join("models.conf"), "[keep]\n").unwrap();
    let harmful = [
        "write to the home directory",
        "write into /tmp and the workspace",
        "network connection",
        "huge file",
    ];
    for (name, code, _) in hostile_cases(&t) {
        if !harmful.contains(&name) {
            continue;
        }
        let input = serde_json::json!({
            "task": serde_json::from_str::<serde_json::Value>(&problem.raw).unwrap(),
            "mode": "plus",
            "solution": code,
            "guard": false,
            "min_time_limit": 1.0,
            "time_factor": 4.0,
            "phase_budget": 60.0,
            "check_time_limit": 10.0,
        });
        let mut child = std::process::Command::new(onboard::bench::sandbox::default_python())
            .args(["-c", onboard::bench::sandbox::HARNESS])
            .current_dir(&cwd)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.to_string().as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(report["base"][0], "pass", "{name}: {report}");
        assert_eq!(report["plus"][0], "pass", "{name}: {report}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("home/.bashrc")).unwrap(),
        "pwned".repeat(6)
    );
    assert!(t.root_file.exists());
    assert_eq!(
        std::fs::read_to_string(t.sentinel.join("victim.txt")).unwrap(),
        "pwned"
    );
    assert!(t.sentinel.join("new.txt").exists());
    assert!(t.tmp_file.exists());
    assert_eq!(
        std::fs::read_to_string(t.workspace.join("models.conf")).unwrap(),
        "pwned"
    );
    assert!(t.workspace.join("new.txt").exists());
    assert!(listener.accept().is_ok(), "no connection came");
    assert_eq!(std::fs::metadata(cwd.join("big")).unwrap().len(), 32 << 20);
}

#[test]
fn hostile_solutions_are_contained_and_fail() {
    let dataset = Dataset::read(&fixture("humaneval-plus-mini.jsonl")).unwrap();
    let problem = &dataset.problems[0];
    // A world-writable directory in the host's /tmp: without the mount
    // namespace the sandbox uid could write and delete here.
    let sentinel_dir = PathBuf::from(format!("/tmp/onboard-sentinel-{}", std::process::id()));
    std::fs::create_dir_all(&sentinel_dir).unwrap();
    std::fs::set_permissions(
        &sentinel_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let victim = sentinel_dir.join("victim.txt");
    std::fs::write(&victim, "keep").unwrap();
    std::fs::set_permissions(&victim, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("models.conf"), "[keep]\n").unwrap();

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let targets = Targets {
        sentinel: sentinel_dir.clone(),
        workspace: workspace.path().to_path_buf(),
        port,
        home: "~".into(),
        root_file: PathBuf::from("/root/pwned"),
        tmp_file: PathBuf::from("/tmp/onboard-pwned"),
    };

    for guard in [false, true] {
        let mut config = SandboxConfig::new(2);
        config.python_guard = guard;
        config.limits.wall_seconds = 8.0;
        let sandbox = Sandbox::new(config).unwrap();
        let started = Instant::now();
        let cases = hostile_cases(&targets);
        let verdicts: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = cases
                .iter()
                .map(|(name, code, expect)| {
                    let sandbox = &sandbox;
                    s.spawn(move || (*name, *expect, sandbox.judge(problem, code).unwrap()))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (name, expect, v) in &verdicts {
            eprintln!(
                "guard={guard} {name}: base {:?}, plus {:?}, {:.1} s{}",
                v.base.status,
                v.plus.as_ref().map(|p| p.status),
                v.seconds,
                v.note
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            );
            let passed = v.base.status == Status::Pass
                && v.plus.as_ref().is_some_and(|p| p.status == Status::Pass);
            assert!(!passed, "guard={guard}: `{name}` passed: {v:?}");
            // Without the Python guard it is the operating system that
            // stops it (unconfined, the harmful ones pass: see the control).
            if let (false, Some(want)) = (guard, expect) {
                assert_eq!(v.base.status, *want, "`{name}`: {v:?}");
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "keep",
            "guard={guard}"
        );
        assert!(!sentinel_dir.join("new.txt").exists());
        assert!(!Path::new("/tmp/onboard-pwned").exists());
        assert!(!Path::new("/root/pwned").exists());
        assert_eq!(
            std::fs::read_to_string(workspace.path().join("models.conf")).unwrap(),
            "[keep]\n"
        );
        assert!(!workspace.path().join("new.txt").exists());
        assert!(
            listener.accept().is_err(),
            "guard={guard}: a sandboxed program reached 127.0.0.1:{port}"
        );
        // Nothing is left running as the sandbox uids.
        let uids = sandbox.uids();
        assert_eq!(uids.len(), 2);
        let leftovers = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ps -eo uid=,stat= | awk '($1 == {} || $1 == {}) && $2 !~ /^Z/' | wc -l",
                uids[0], uids[1]
            ))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&leftovers.stdout).trim(), "0");
    }
    std::fs::remove_dir_all(&sentinel_dir).unwrap();
}

#[test]
fn a_correct_solution_still_passes_with_every_limit_in_place() {
    let dataset = Dataset::read(&fixture("humaneval-plus-mini.jsonl")).unwrap();
    let mut config = SandboxConfig::new(1);
    // The Python-level guard (like EvalPlus's) breaks tempfile; the
    // operating-system limits must not.
    config.python_guard = false;
    let sandbox = Sandbox::new(config).unwrap();
    let v = sandbox
        .judge(&dataset.problems[0], "import os, tempfile\ndef add(a, b):\n    open(os.path.join(tempfile.gettempdir(), 'scratch'), 'w').write('ok')\n    return a + b")
        .unwrap();
    assert_eq!(v.base.status, Status::Pass, "{v:?}");
}

/// What the PID namespace, the empty environment and the mount namespace
/// hide, seen from inside: the payload is PID 1 and sees no other process,
/// no process's environment or command line holds the token, the host's
/// `~/.bashrc` is not writable, and what it leaves running dies with it.
#[test]
fn the_payload_sees_no_token_and_no_host_process_and_leaves_nothing_behind() {
    const CANARY: &str = "hf_SandboxCanary0123456789abcdef";
    // The parent has the token, as a real run would.
    std::env::set_var("HF_TOKEN", CANARY);
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let bashrc = Path::new(&home).join(".bashrc");
    let before = std::fs::read(&bashrc).ok();
    // Put together at run time: the payload's own command line must not
    // hold the token for the search to mean anything.
    let (head, tail) = CANARY.split_at(10);
    let payload = format!(
        r#"import os, json, time
canary = '{head}' + '{tail}'
pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
leaks = []
for p in pids:
    for f in ('environ', 'cmdline'):
        try:
            if canary.encode() in open('/proc/%d/%s' % (p, f), 'rb').read():
                leaks.append('%d/%s' % (p, f))
        except OSError:
            pass
leaks += [k for k, v in os.environ.items() if canary in v]
try:
    open('{bashrc}', 'a').write('pwned')
    wrote = True
except OSError:
    wrote = False
if os.fork() == 0:
    os.setsid()
    time.sleep(600)
for _ in range(4):
    if os.fork() == 0:
        time.sleep(600)
print(json.dumps({{'pid': os.getpid(), 'pids': pids, 'leaks': leaks, 'wrote': wrote, 'env': sorted(os.environ)}}))
"#,
        bashrc = bashrc.display()
    );
    let mut config = SandboxConfig::new(1);
    config.python_guard = false;
    let sandbox = Sandbox::new(config).unwrap();
    let uid = sandbox.uids()[0];
    let out = sandbox.run(&["-c", &payload], b"", 30.0).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text} / {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["pid"], 1, "{report}");
    assert_eq!(report["pids"], serde_json::json!([1]), "{report}");
    assert_eq!(report["leaks"], serde_json::json!([]), "{report}");
    assert_eq!(report["wrote"], false, "{report}");
    assert!(!report["env"].to_string().contains("HF_"), "{report}");
    assert_eq!(
        std::fs::read(&bashrc).ok(),
        before,
        "the host's ~/.bashrc changed"
    );
    // The daemon and the children died with the payload.
    let leftovers = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ps -eo uid=,stat= | awk '$1 == {uid} && $2 !~ /^Z/' | wc -l"
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&leftovers.stdout).trim(), "0");
}
