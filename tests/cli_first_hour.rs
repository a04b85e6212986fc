//! A newcomer's first hour with the real binary: typos get suggestions, a
//! `-C` that is no workspace is refused, paths are read from `-C`, every
//! command speaks `--format json`, completions and a man page exist, an
//! unreachable Hub fails within seconds saying what to do, and a profile
//! deleted by hand is written again instead of blocking the context test.

use onboard_test_support::{Onboard, Run, TestWorkspace};
use std::path::Path;
use std::time::{Duration, Instant};

/// `onboard <args>` in `cwd`, no token, no `-C`.
fn onboard_in(cwd: &Path, args: &[&str]) -> Run {
    Onboard::new().current_dir(cwd).args(args).run()
}

fn manifest(id: &str, profile: Option<&str>) -> String {
    let profile = profile
        .map(|p| format!("profile: {p}\n"))
        .unwrap_or_default();
    format!("id: {id}\nname: {id}\nfamily: Test\ntype: dense\nsize: 1M\nhub:\n  repo: test/{id}-GGUF\n{profile}")
}

const STEPS: &str = "name: add-model\nsteps:\n  - id: evaluate\n    uses: command\n    with:\n      argv: ['true']\n  - id: context_test\n    uses: command\n    needs: [evaluate]\n    with:\n      argv: ['true']\n";

#[test]
fn a_misspelt_command_is_suggested_before_it_is_taken_for_a_model() {
    let ws = TestWorkspace::new(STEPS);
    let out = ws.onboard(&["valdate"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no command `valdate`; did you mean `validate`?"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("no manifest"), "{}", out.stderr);
    // Outside any workspace too: the command is what is wrong, not -C.
    let empty = tempfile::tempdir().unwrap();
    let out = onboard_in(empty.path(), &["staus"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("did you mean `status`?"),
        "{}",
        out.stderr
    );
    // A model id still runs its workflow (`onboard tiny` is `onboard run tiny`).
    let out = ws.onboard(&["tiny", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.ran(), ["context_test", "evaluate"]);
}

#[test]
fn model_ids_are_suggested_by_prefix_typo_and_profile_name() {
    let ws = TestWorkspace::new(STEPS);
    ws.write(
        "models/qwen3.5-35b-a3b.yaml",
        &manifest("qwen3.5-35b-a3b", None),
    );
    ws.write(
        "models/qwen3.5-27b.yaml",
        &manifest("qwen3.5-27b", Some("qwen35-27b")),
    );
    let cases = [
        (
            vec!["plan", "qwen3.5-35b"],
            "did you mean `qwen3.5-35b-a3b`?",
        ),
        (vec!["qwen3.5-35b"], "did you mean `qwen3.5-35b-a3b`?"),
        (vec!["status", "qwen3.5-72b"], "did you mean `qwen3.5-27b`?"),
        (
            vec!["qwen35-27b"],
            "`qwen35-27b` is the profile of model `qwen3.5-27b`: run `onboard qwen3.5-27b`",
        ),
        (
            vec!["plan", "qwen3.5"],
            "did you mean one of `qwen3.5-27b`, `qwen3.5-35b-a3b`?",
        ),
    ];
    for (args, hint) in cases {
        let out = ws.onboard(&args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("no manifest for"), "{}", out.stderr);
        assert!(out.stderr.contains(hint), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn step_ids_take_dashes_for_underscores_and_suggest_the_closest() {
    let ws = TestWorkspace::new(STEPS);
    ws.run(&[]).assert_ok();
    for flag in ["--only", "--from", "--until", "--force"] {
        let out = ws.onboard(&["plan", "tiny", flag, "context-test", "--format", "json"]);
        assert_eq!(out.code, 0, "{flag}: {}", out.stderr);
        let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let ct = plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == "context_test")
            .unwrap();
        let expected = if flag == "--until" { "skip" } else { "run" };
        assert_eq!(ct["action"], expected, "{flag}: {ct}");
    }
    let run = ws.run(&["--only", "context-test"]);
    run.assert_ok();
    assert_eq!(run.ran(), ["context_test"]);
    let out = ws.onboard(&["plan", "tiny", "--only", "contxt-test"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no step `contxt-test`")
            && out.stderr.contains("did you mean `context_test`?"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_directory_that_is_no_workspace_is_refused_by_workspace_commands() {
    let scratch = tempfile::tempdir().unwrap();
    let missing = scratch.path().join("nonexistent");
    let missing = missing.to_str().unwrap();
    let out = onboard_in(scratch.path(), &["-C", missing, "validate"]);
    assert_eq!(
        out.code, 2,
        "a CI job pointed at the wrong directory must fail"
    );
    assert!(!out.stdout.contains("ok:"), "{}", out.stdout);
    assert!(
        out.stderr.contains("no such directory")
            && out.stderr.contains("onboard.yaml")
            && out.stderr.contains("onboard init"),
        "{}",
        out.stderr
    );
    // A directory without onboard.yaml: every workspace command refuses,
    // and `report` writes nothing.
    let bare = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bare.path().join("models")).unwrap();
    std::fs::write(bare.path().join("models/tiny.yaml"), manifest("tiny", None)).unwrap();
    let dir = bare.path().to_str().unwrap();
    for args in [
        vec!["validate"],
        vec!["plan", "tiny"],
        vec!["run", "tiny"],
        vec!["tiny"],
        vec!["status"],
        vec!["report"],
        vec!["report", "--format", "json"],
        vec!["links"],
        vec!["hardware"],
        vec!["graph"],
        vec!["new", "x", "--hub", "a/b"],
    ] {
        let mut all = vec!["-C", dir];
        all.extend(&args);
        let out = onboard_in(scratch.path(), &all);
        assert_eq!(out.code, 2, "{args:?}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains("has no onboard.yaml"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let mut left: Vec<String> = std::fs::read_dir(bare.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["models"], "nothing written in a non-workspace");
    // What needs no workspace works anywhere.
    for args in [
        vec!["schema", "manifest"],
        vec!["completions", "bash"],
        vec!["man"],
        vec!["hardware", "--detect"],
        vec!["validate", "models/tiny.yaml"],
    ] {
        let mut all = vec!["-C", dir];
        all.extend(&args);
        let out = onboard_in(scratch.path(), &all);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
}

#[test]
fn path_arguments_are_read_from_the_workspace_directory() {
    let ws = TestWorkspace::new(STEPS);
    let elsewhere = tempfile::tempdir().unwrap();
    let root = ws.root().to_str().unwrap();
    let out = onboard_in(
        elsewhere.path(),
        &["-C", root, "validate", "models/tiny.yaml", "workflows"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("2 file(s) checked"), "{}", out.stdout);
    // export-workflow -o: under the workspace, not the shell's directory.
    let out = onboard_in(
        elsewhere.path(),
        &[
            "-C",
            root,
            "export-workflow",
            "tiny",
            "--format",
            "github-actions",
            "--workspace-dir",
            "/srv/ws",
            "-o",
            "out/flow.yml",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(ws.path("out/flow.yml").is_file());
    assert!(!elsewhere.path().join("out").exists());
    // An absolute path stays what it is.
    let abs = ws.path("models/tiny.yaml");
    let out = onboard_in(
        elsewhere.path(),
        &["-C", root, "validate", abs.to_str().unwrap()],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    // A missing relative path names where it was looked for.
    let out = onboard_in(
        elsewhere.path(),
        &["-C", root, "inspect", "models/none.gguf"],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(&format!("{root}/models/none.gguf")),
        "{}",
        out.stderr
    );
}

#[test]
fn json_output_is_format_json_everywhere_and_json_stays_an_alias() {
    let ws = TestWorkspace::new(STEPS);
    ws.run(&[]).assert_ok();
    for args in [
        vec!["plan", "tiny"],
        vec!["status", "tiny"],
        vec!["status"],
        vec!["validate"],
        vec!["hardware"],
        vec!["links"],
    ] {
        let mut long = args.clone();
        long.extend(["--format", "json"]);
        let mut short = args.clone();
        short.push("--json");
        let (a, b) = (ws.onboard(&long), ws.onboard(&short));
        assert_eq!(
            (a.code, b.code),
            (0, 0),
            "{args:?}: {}{}",
            a.stderr,
            b.stderr
        );
        let parse = |s: &str| -> serde_json::Value {
            serde_json::from_str(s).unwrap_or_else(|e| panic!("{args:?}: {e}: {s}"))
        };
        let (mut a, mut b) = (parse(&a.stdout), parse(&b.stdout));
        for v in [&mut a, &mut b] {
            // Timestamps of `status` records are the same either way.
            if let Some(o) = v.as_object_mut() {
                o.remove("generated_at");
            }
        }
        assert_eq!(a, b, "{args:?}");
    }
    let events = ws.onboard(&["run", "tiny", "--format", "json"]);
    events.assert_ok();
    assert!(events.events().iter().any(|e| e["event"] == "run_finished"));
}

#[test]
fn completions_and_the_man_page_cover_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = onboard_in(dir.path(), &["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        for command in ["validate", "init", "new", "export-workflow", "completions"] {
            assert!(out.stdout.contains(command), "{shell} lacks {command}");
        }
    }
    let out = onboard_in(dir.path(), &["completions", "tcsh"]);
    assert_eq!(out.code, 2);
    let man = onboard_in(dir.path(), &["man"]);
    assert_eq!(man.code, 0, "{}", man.stderr);
    assert!(man.stdout.contains(".TH onboard 1"), "{}", man.stdout);
    for command in ["validate", "init", "new", "mirror", "completions"] {
        assert!(man.stdout.contains(command), "the man page lacks {command}");
    }
    assert!(!man.stdout.contains("__engine-worker"));
}

/// The message of a Hub that cannot be reached: says what to do, never the
/// token.
fn assert_unreachable_hint(out: &Run, token: &str) {
    assert_eq!(out.code, 1, "{}", out.stderr);
    for hint in ["HF_ENDPOINT", "onboard mirror serve", "HF_HUB_OFFLINE"] {
        assert!(out.stderr.contains(hint), "{hint}: {}", out.stderr);
    }
    assert!(!out.stderr.contains(token) && !out.stdout.contains(token));
}

#[test]
fn an_unreachable_hub_fails_within_seconds_with_what_to_do() {
    let token = "hf_FirstHourSecret0123456789";
    let run = |endpoint: &str| -> (Run, Duration) {
        let started = Instant::now();
        let out: Run = Onboard::new()
            .args(["inspect", "hf://acme/Model-GGUF"])
            .env("HF_ENDPOINT", endpoint)
            .env("HF_TOKEN", token)
            .env_remove("HF_HUB_OFFLINE")
            .run();
        (out, started.elapsed())
    };
    // Nobody listens: refused at once, and not retried for seconds.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (out, took) = run(&format!("http://127.0.0.1:{port}"));
    assert_unreachable_hint(&out, token);
    assert!(took < Duration::from_secs(3), "refused took {took:?}");
    // Something listens but never completes a handshake (a full backlog
    // drops the SYN, as a black-holed address does): the connect timeout.
    let (blackhole, _held) = full_backlog_listener();
    let (out, took) = run(&format!("http://{blackhole}"));
    assert_unreachable_hint(&out, token);
    assert!(
        took < Duration::from_secs(12),
        "a silent Hub took {took:?} to report"
    );
}

/// A loopback listener with a backlog of 0, already filled, so further
/// connects hang until their timeout. Returns its address and what keeps
/// it full.
fn full_backlog_listener() -> (std::net::SocketAddr, Vec<std::net::TcpStream>) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // listener takes ownership of it.
    let listener = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::bind(
            fd,
            &addr as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0);
        assert_eq!(libc::listen(fd, 0), 0);
        std::net::TcpListener::from_raw_fd(fd)
    };
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    // Fill the accept queue; the first connect that would block proves it.
    for _ in 0..4 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    std::mem::forget(listener);
    (addr, held)
}

const PROFILE_FLOW: &str = "name: add-model\nsteps:\n  - id: profile\n    uses: profile\n    with:\n      id: tiny\n      model: Test/Dense/1M/tiny.gguf\n      architecture: llama\n      context: 4096\n      strategy: cpu\n  - id: context_test\n    uses: command\n    needs: [profile]\n    with:\n      argv: ['true']\n";

#[test]
fn a_profile_deleted_from_models_conf_is_written_again() {
    let ws = TestWorkspace::new(PROFILE_FLOW);
    ws.run(&[]).assert_ok();
    assert!(ws.read("models.conf").contains("[tiny]"));
    let plan = ws.onboard(&["plan", "tiny"]);
    assert!(plan.stdout.contains("0 to run"), "{}", plan.stdout);
    // Deleted by hand: the step whose output is gone is not done.
    std::fs::write(ws.path("models.conf"), "# emptied by hand\n").unwrap();
    let plan = ws.onboard(&["plan", "tiny"]);
    plan.assert_ok();
    assert!(
        plan.stdout
            .contains("run     profile       its output is gone: models.conf [tiny]"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("run     context_test  upstream `profile` reruns"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains(", 0 blocked"), "{}", plan.stdout);
    let run = ws.run(&[]);
    run.assert_ok();
    assert_eq!(run.ran(), ["context_test", "profile"]);
    assert!(ws.read("models.conf").contains("[tiny]"));
    // A hand edit inside the profile is the user's: no rerun for that.
    let conf = ws.read("models.conf");
    std::fs::write(ws.path("models.conf"), format!("{conf}\n# a note\n")).unwrap();
    let plan = ws.onboard(&["plan", "tiny"]);
    assert!(plan.stdout.contains("0 to run"), "{}", plan.stdout);
}
