//! The workflow engine, exercised through the real `onboard` binary with the
//! real `command` and `render` tasks.

use onboard_test_support::workflow_yaml::{sh, workflow};
use onboard_test_support::{walk_files, TestWorkspace, MODEL};
use std::time::{Duration, Instant};

/// A step that marks its start, waits (up to 30 s) for `other` to start
/// too, then marks its end: it only finishes if both run at once.
fn barrier(me: &str, other: &str) -> String {
    format!(
        "touch {me}.start; i=0; while [ ! -e {other}.start ]; do i=$((i+1)); \
         if [ $i -gt 3000 ]; then echo '{other} never started while {me} ran' >&2; exit 1; fi; \
         sleep 0.01; done; touch {me}.end"
    )
}

/// A step that notes, when it starts, whether `other` has already ended
/// (`{me}.after`) or is still running (`{me}.overlap`), and again before
/// it ends.
fn observer(me: &str, other: &str) -> String {
    let look = format!(
        "if [ -e {other}.start ] && [ ! -e {other}.end ]; then echo overlap >> {me}.overlap; fi"
    );
    format!(
        "touch {me}.start; if [ -e {other}.end ]; then touch {me}.after; fi; {look}; \
         sleep 0.2; {look}; touch {me}.end"
    )
}

#[test]
fn independent_steps_really_overlap_and_jobs_bounds_them() {
    // With -j 2 each step waits for the other to start: the run can only
    // succeed if they overlap (no timing to race: a barrier).
    let ws = TestWorkspace::new(&workflow(&[
        sh("a", &[], &barrier("a", "b")),
        sh("b", &[], &barrier("b", "a")),
        sh("c", &["a", "b"], "echo joined > c.t"),
    ]));
    ws.run(&["-j", "2"]).assert_ok();
    for f in ["a.end", "b.end"] {
        assert!(ws.path(f).exists(), "{f}");
    }
    assert_eq!(ws.read("c.t"), "joined\n");

    // With -j 1 one starts only after the other has ended: exactly one of
    // them saw the other's end when it started, and neither ever saw the
    // other running.
    let ws = TestWorkspace::new(&workflow(&[
        sh("a", &[], &observer("a", "b")),
        sh("b", &[], &observer("b", "a")),
    ]));
    ws.run(&["-j", "1"]).assert_ok();
    for f in ["a.end", "b.end"] {
        assert!(ws.path(f).exists(), "{f}");
    }
    assert!(
        !ws.path("a.overlap").exists() && !ws.path("b.overlap").exists(),
        "with -j 1 a and b overlapped"
    );
    assert!(
        ws.path("a.after").exists() ^ ws.path("b.after").exists(),
        "with -j 1 one step must start after the other ended"
    );
}

#[test]
fn a_step_that_fails_twice_succeeds_on_the_third_attempt() {
    let script = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; \
                  if [ $n -lt 3 ]; then echo \"flaky $n\" >&2; exit 1; fi";
    let ws = TestWorkspace::new(&format!(
        "{}    retry: {{attempts: 3, backoff: 10ms}}\n",
        workflow(&[sh("flaky", &[], script)])
    ));
    let run = ws.run(&[]);
    run.assert_ok();
    assert_eq!(ws.read("count").trim(), "3");
    let retries: Vec<_> = run
        .events()
        .into_iter()
        .filter(|e| e["event"] == "step_retrying")
        .collect();
    assert_eq!(retries.len(), 2);
    assert!(
        retries[0]["error"].as_str().unwrap().contains("flaky 1"),
        "{retries:?}"
    );
    let record: serde_json::Value =
        serde_json::from_str(&ws.read(".onboard/tiny/steps/flaky.json")).unwrap();
    assert_eq!(record["status"], "done");
    assert_eq!(record["attempts"], 3);

    // Out of attempts: the step fails, and says so in its record.
    let ws = TestWorkspace::new(&format!(
        "{}    retry: {{attempts: 2, backoff: 10ms}}\n",
        workflow(&[sh("flaky", &[], script)])
    ));
    let run = ws.run(&[]);
    assert_eq!(run.code, 1);
    let record: serde_json::Value =
        serde_json::from_str(&ws.read(".onboard/tiny/steps/flaky.json")).unwrap();
    assert_eq!(record["status"], "failed");
    assert!(record["error"].as_str().unwrap().contains("flaky 2"));
}

#[test]
fn a_timeout_kills_the_step_and_its_children() {
    // A timeout generous enough for a loaded machine to start the shell and
    // write the pid, far below the 30 s the step would take.
    let ws = TestWorkspace::new(&format!(
        "{}    timeout: 2s\n",
        workflow(&[sh("slow", &[], "sleep 30 & echo $! > child.pid; wait")])
    ));
    let started = Instant::now();
    let run = ws.run(&[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}: the step ran its course",
        started.elapsed()
    );
    let finished = run
        .events()
        .into_iter()
        .find(|e| e["event"] == "step_finished")
        .unwrap();
    assert!(
        finished["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 2.0s"),
        "{finished}"
    );
    // A pid must have been written: a missing file must not pass.
    let text = ws.read("child.pid");
    let pid: u32 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("child.pid holds no pid: {text:?}"));
    // Gone (or a zombie awaiting its reaper) within a generous bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "grandchild {pid} survived the timeout: {stat}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_run_killed_mid_step_resumes_at_that_step() {
    let ws = TestWorkspace::new(&workflow(&[
        sh("first", &[], "echo one >> first.log"),
        sh(
            "second",
            &["first"],
            "if [ -f second.started ]; then echo two >> second.log; else touch second.started; exec sleep 60; fi",
        ),
        sh("third", &["second"], "echo three >> third.log"),
    ]));
    let mut child = ws
        .command(&["run", "tiny", "--json"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ws.path("second.started").exists() {
        assert!(Instant::now() < deadline, "second never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        ws.path(".onboard/tiny/steps/second.running").exists(),
        "the incomplete marker is left behind"
    );
    assert!(!ws.path(".onboard/tiny/steps/second.json").exists());

    let plan = ws.onboard(&["plan", "tiny"]);
    assert!(
        plan.stdout.contains("skip    first   done and unchanged"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("run     second  interrupted"),
        "{}",
        plan.stdout
    );

    let run = ws.run(&[]);
    run.assert_ok();
    assert_eq!(run.skipped(), vec!["first"]);
    assert_eq!(run.ran(), vec!["second", "third"]);
    assert!(
        run.why("second").starts_with("interrupted"),
        "{}",
        run.why("second")
    );
    assert_eq!(
        ws.read("first.log"),
        "one\n",
        "the finished step was not run again"
    );
    assert_eq!(ws.read("second.log"), "two\n");
    assert!(!ws.path(".onboard/tiny/steps/second.running").exists());
}

#[test]
fn a_changed_parameter_or_input_reruns_that_step_and_its_dependents_only() {
    let steps = |b_word: &str| {
        let mut b = sh("b", &["a"], &format!("echo {b_word} >> b.log"));
        b.push_str("      inputs: [data/in.txt]\n");
        workflow(&[
            sh("a", &[], "echo a >> a.log"),
            b,
            sh("c", &[], "echo c >> c.log"),
            sh("d", &["b"], "echo d >> d.log"),
        ])
    };
    let ws = TestWorkspace::new(&steps("one"));
    ws.write("data/in.txt", "v1");
    ws.run(&[]).assert_ok();
    let again = ws.run(&[]);
    again.assert_ok();
    assert_eq!(again.ran(), Vec::<String>::new());
    assert_eq!(again.skipped(), vec!["a", "b", "c", "d"]);

    ws.write("workflows/add-model.yaml", &steps("two"));
    let plan = ws.onboard(&["plan", "tiny", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let actions: Vec<(String, String, String)> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().into(),
                s["action"].as_str().unwrap().into(),
                s["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("a".into(), "skip".into(), "done_unchanged".into()),
            ("b".into(), "run".into(), "params_changed".into()),
            ("c".into(), "skip".into(), "done_unchanged".into()),
            ("d".into(), "run".into(), "upstream_reruns".into()),
        ]
    );
    let run = ws.run(&[]);
    run.assert_ok();
    assert_eq!(run.ran(), vec!["b", "d"]);
    assert_eq!(ws.read("b.log"), "one\ntwo\n");

    ws.write("data/in.txt", "v2");
    let run = ws.run(&[]);
    run.assert_ok();
    assert_eq!(run.ran(), vec!["b", "d"]);
    assert_eq!(run.why("b"), "input file changed: data/in.txt");
    assert_eq!(ws.read("a.log"), "a\n");
    assert_eq!(ws.read("c.log"), "c\n");
}

#[test]
fn a_second_run_of_the_same_model_refuses_while_the_first_holds_the_lock() {
    let ws = TestWorkspace::new(&workflow(&[sh("wait", &[], "touch started; sleep 2")]));
    let mut first = ws
        .command(&["run", "tiny"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ws.path("started").exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = ws.onboard(&["run", "tiny"]);
    assert_eq!(second.code, 1);
    assert!(
        second
            .stderr
            .contains("`tiny` is already being onboarded by another run (pid "),
        "{}",
        second.stderr
    );
    assert!(first.wait().unwrap().success());
    // Once the first is gone (even if killed), the lock is free again.
    ws.run(&[]).assert_ok();
}

#[test]
fn failure_stops_new_work_but_lets_running_steps_finish() {
    let ws = TestWorkspace::new(&workflow(&[
        sh("bad", &[], "echo broken >&2; exit 3"),
        sh("slow", &[], "sleep 0.5; echo ok > slow.t"),
        sh("after", &["bad"], "echo never > after.t"),
        sh("later", &["slow"], "echo never > later.t"),
    ]));
    let run = ws.run(&["-j", "2"]);
    assert_eq!(run.code, 1);
    assert_eq!(ws.read("slow.t"), "ok\n", "the running step finished");
    assert!(!ws.path("after.t").exists() && !ws.path("later.t").exists());
    let blocked = run.steps_with("step_blocked");
    assert!(
        blocked.contains(&"after".to_string()) && blocked.contains(&"later".to_string()),
        "{blocked:?}"
    );
    let finished = run
        .events()
        .into_iter()
        .find(|e| e["event"] == "step_finished" && e["step"] == "bad")
        .unwrap();
    assert_eq!(finished["error"], "`sh` exited with status 3:\nbroken");

    let plan = ws.onboard(&["plan", "tiny"]);
    assert!(
        plan.stdout
            .contains("run     bad    failed last time: `sh` exited with status 3:"),
        "{}",
        plan.stdout
    );
}

#[test]
fn only_from_until_and_force_select_steps() {
    let ws = TestWorkspace::new(&workflow(&[
        sh("a", &[], "echo a >> a.log"),
        sh("b", &["a"], "echo b >> b.log"),
        sh("c", &["b"], "echo c >> c.log"),
    ]));
    let blocked = ws.run(&["--only", "b"]);
    assert_eq!(blocked.code, 1);
    assert!(
        blocked.why("b").contains("needs `a`, which has not run"),
        "{}",
        blocked.why("b")
    );

    ws.run(&["--until", "b"]).assert_ok();
    assert!(!ws.path("c.log").exists());
    assert_eq!(ws.read("b.log"), "b\n");

    let run = ws.run(&["--only", "b"]);
    run.assert_ok();
    assert_eq!(run.ran(), vec!["b"]);
    assert_eq!(ws.read("b.log"), "b\nb\n");

    let run = ws.run(&["--from", "b"]);
    run.assert_ok();
    assert_eq!(run.ran(), vec!["b", "c"]);

    let run = ws.run(&["--force", "a"]);
    run.assert_ok();
    assert_eq!(
        run.ran(),
        vec!["a", "b", "c"],
        "forcing a reruns what depends on it"
    );
    assert_eq!(run.why("a"), "forced");

    let bad = ws.run(&["--only", "nope"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("no step `nope`"), "{}", bad.stderr);
}

#[test]
fn render_writes_from_templates_and_outputs_flow_to_later_steps() {
    let ws = TestWorkspace::new(
        "name: add-model\nsteps:\n\
         - id: facts\n  uses: command\n  with:\n    argv: [echo, '42']\n\
         - id: page\n  uses: render\n  needs: [facts]\n  with:\n    template: tpl/page.j2\n    to: 'out/{{ model }}.md'\n    vars: {answer: '{{ steps.facts.outputs.stdout }}'}\n\
         - id: check\n  uses: command\n  needs: [page]\n  with:\n    argv: [test, -f, '{{ steps.page.outputs.path }}']\n",
    );
    ws.write("tpl/page.j2", "# {{ manifest.name }} ({{ model }})\nanswer={{ vars.answer }} repo={{ manifest.hub.repo }}\n");
    ws.run(&[]).assert_ok();
    assert_eq!(
        ws.read("out/tiny.md"),
        "# Tiny (tiny)\nanswer=42 repo=test/tiny-GGUF\n"
    );

    // Editing the generated file makes `page` rerun and restore it.
    ws.write("out/tiny.md", "hand edit");
    let run = ws.run(&[]);
    run.assert_ok();
    assert_eq!(run.ran(), vec!["check", "page"]);
    assert_eq!(
        run.why("page"),
        "output file changed or removed: out/tiny.md"
    );
    assert!(ws.read("out/tiny.md").starts_with("# Tiny"));

    // Changing the template (a declared input) reruns it too.
    ws.write("tpl/page.j2", "v2 {{ model }}\n");
    let run = ws.run(&[]);
    assert_eq!(run.why("page"), "input file changed: tpl/page.j2");
    assert_eq!(ws.read("out/tiny.md"), "v2 tiny\n");
}

#[test]
fn when_false_skips_a_step_and_its_dependents_still_run() {
    let ws = TestWorkspace::new(
        "name: add-model\nsteps:\n\
         - id: gated\n  uses: command\n  when: manifest.type == 'moe'\n  with: {argv: [touch, gated.t]}\n\
         - id: next\n  uses: command\n  needs: [gated]\n  with: {argv: [touch, next.t]}\n",
    );
    let run = ws.run(&[]);
    run.assert_ok();
    assert_eq!(run.why("gated"), "`when` is false");
    assert!(!ws.path("gated.t").exists() && ws.path("next.t").exists());
}

#[test]
fn the_token_never_reaches_records_or_output() {
    let token = "hf_SecretTokenValue1234567890";
    let ws = TestWorkspace::new(&workflow(&[sh(
        "leak",
        &[],
        "echo \"token=$HF_TOKEN\"; echo \"token=$HF_TOKEN\" >&2; exit 1",
    )]));
    let out = ws
        .command(&["run", "tiny", "--json"])
        .env("HF_TOKEN", token)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(token), "{all}");
    assert!(all.contains("token=***"), "{all}");
    let human = ws
        .command(&["run", "tiny"])
        .env("HF_TOKEN", token)
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&human.stderr).contains(token));
    for entry in walk_files(&ws.path(".onboard")) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(!text.contains(token), "{} holds the token", entry.display());
    }
}

/// A step that holds a resource takes turns with every other holder on the
/// machine: two `onboard` processes (two workspaces, one lock directory)
/// whose steps would overlap without it never do, and the one that waits
/// says for what and whom.
#[test]
fn steps_holding_a_resource_take_turns_across_processes() {
    let locks = tempfile::tempdir().unwrap();
    let marks = tempfile::tempdir().unwrap();
    let mark = |name: &str| marks.path().join(name).display().to_string();
    let step = |me: &str, other: &str| {
        format!(
            "  - id: load\n    uses: command\n    resources: {{gpu: 1}}\n    with:\n      shell: true\n      argv: [{}]\n",
            serde_json::to_string(&observer(&mark(me), &mark(other))).unwrap()
        )
    };
    let a = TestWorkspace::new(&workflow(&[step("a", "b")]));
    let b = TestWorkspace::new(&workflow(&[step("b", "a")]));
    let spawn = |ws: &TestWorkspace| {
        ws.command(&["run", MODEL, "--json"])
            .env("ONBOARD_LOCK_DIR", locks.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (pa, pb) = (spawn(&a), spawn(&b));
    let (oa, ob) = (
        pa.wait_with_output().unwrap(),
        pb.wait_with_output().unwrap(),
    );
    assert!(
        oa.status.success(),
        "{}",
        String::from_utf8_lossy(&oa.stderr)
    );
    assert!(
        ob.status.success(),
        "{}",
        String::from_utf8_lossy(&ob.stderr)
    );
    for f in ["a.overlap", "b.overlap"] {
        assert!(!marks.path().join(f).exists(), "{f}: the steps overlapped");
    }
    let after = ["a.after", "b.after"]
        .iter()
        .filter(|f| marks.path().join(f).exists())
        .count();
    assert_eq!(after, 1, "one started after the other ended");
    let said =
        String::from_utf8_lossy(&oa.stdout).into_owned() + &String::from_utf8_lossy(&ob.stdout);
    let waiting: Vec<serde_json::Value> = said
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_waiting")
        .collect();
    assert!(
        waiting.iter().any(|e| e["why"]
            .as_str()
            .is_some_and(|w| w.starts_with("waiting for gpu: held by tiny load, pid "))),
        "{waiting:?}"
    );
}

/// `once: true`: with several models in one run, the step waits until every
/// model has finished what it needs, runs once, and every model records it.
#[test]
fn a_once_step_runs_once_after_every_model() {
    let ws = TestWorkspace::new(&format!(
        "name: add-model\nsteps:\n{}  - id: all\n    uses: command\n    once: true\n    needs: [each]\n    with:\n      shell: true\n      argv: [\"ls each-* > all.t; echo once >> runs.t\"]\n",
        sh("each", &[], "sleep 0.2; touch each-{{ model }}")
    ));
    ws.write(
        "models/tiny2.yaml",
        "id: tiny2\nname: Tiny 2\nfamily: Test\ntype: dense\nsize: 1M\nhub:\n  repo: test/tiny2-GGUF\n",
    );
    let run = ws.onboard(&["run", "tiny", "tiny2", "--json"]);
    run.assert_ok();
    assert_eq!(ws.read("runs.t"), "once\n", "ran once");
    assert_eq!(ws.read("all.t"), "each-tiny\neach-tiny2\n", "after both");
    let events = run.events();
    for model in ["tiny", "tiny2"] {
        assert!(events.iter().any(|e| e["event"] == "step_finished"
            && e["step"] == "all"
            && e["model"] == model
            && e["ok"] == true));
        let record = ws.read(&format!(".onboard/{model}/steps/all.json"));
        assert!(record.contains("\"status\": \"done\""), "{record}");
    }
    // Rerun: done and unchanged for both, nothing runs again.
    let again = ws.onboard(&["run", "tiny", "tiny2", "--json"]);
    again.assert_ok();
    assert_eq!(ws.read("runs.t"), "once\n");
}

/// Several models in one run: one model's failure stops only that model,
/// unless `--fail-fast`, which stops every model's new steps.
#[test]
fn a_failed_model_stops_only_itself_unless_fail_fast() {
    let ws = TestWorkspace::new(&workflow(&[
        sh(
            "a",
            &[],
            "if [ {{ model }} = tiny2 ]; then exit 3; fi; sleep 1",
        ),
        sh("b", &["a"], "touch b-{{ model }}"),
    ]));
    ws.write(
        "models/tiny2.yaml",
        "id: tiny2\nname: Tiny 2\nfamily: Test\ntype: dense\nsize: 1M\nhub:\n  repo: test/tiny2-GGUF\n",
    );
    let run = ws.onboard(&["run", "tiny", "tiny2", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(ws.path("b-tiny").exists(), "tiny went on: {}", run.stdout);
    assert!(!ws.path("b-tiny2").exists());

    std::fs::remove_dir_all(ws.path(".onboard")).unwrap();
    std::fs::remove_file(ws.path("b-tiny")).unwrap();
    let run = ws.onboard(&["run", "tiny", "tiny2", "--fail-fast", "--json"]);
    assert_eq!(run.code, 1);
    assert!(!ws.path("b-tiny").exists(), "--fail-fast stopped tiny too");
    let blocked = run
        .events()
        .into_iter()
        .find(|e| e["event"] == "step_blocked" && e["model"] == "tiny" && e["step"] == "b")
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert_eq!(
        blocked["why"],
        "not started: another model of this run failed (--fail-fast)"
    );
}
