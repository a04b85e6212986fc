//! Resume after a failure (not a kill), for every phase of the add-model
//! workflow that can fail on its own: evaluate, profile, samplers,
//! bench-profile, benchmark and docs. Each fails for a real cause; its
//! record says `failed` with the cause, the steps after it are blocked;
//! once the cause is fixed, `onboard plan` says the run resumes there, and
//! the rerun skips every step before it (done and unchanged) and runs it.
//!
//! One workspace, the repository's own workflow, a tiny llama from a local
//! Hub. The causes are laid one after the other along the DAG, so each
//! rerun resumes at the step that failed last and runs up to the next
//! cause; the last rerun finishes the workflow. The engine is whatever
//! `engine: auto` picks in this build (llama-server from PyPI in the light
//! build, `scripts/llama-server-xllamacpp`).

use onboard::hub::mirror::MirrorServer;
use onboard_test_support::{repo_root, smollm2, tiny_llama, Onboard, Run, TestWorkspace, MODEL};
use serde_json::Value;
use std::path::PathBuf;

const REPO: &str = "test/Tiny-Llama-GGUF";
const FILE: &str = "Tiny-Llama.F32.gguf";
const CARD: &str = "documentation/CANDIDATES/Tiny-Llama.md";

const ALL: &[&str] = &[
    "evaluate",
    "download",
    "profile",
    "samplers",
    "context_test",
    "bench_profile",
    "benchmark",
    "docs",
    "summary",
    "compare",
];

fn manifest(samplers_use: &str) -> String {
    format!(
        "id: {MODEL}\nname: Tiny Llama\nfamily: Tiny\ntype: dense\nsize: 1M\n\
         hub:\n  repo: {REPO}\n  quant: F32\n\
         samplers:\n  source: the test's card\n  use: {samplers_use}\n  modes:\n    general: {{temp: 0.6, top_p: 0.9}}\n\
         vars:\n  context_test_tokens: 256\n  benchmark_limit: 1\n  benchmark_max_tokens: 16\n"
    )
}

struct Setup {
    ws: TestWorkspace,
    hub: tempfile::TempDir,
    server: MirrorServer,
}

impl Setup {
    fn new() -> Setup {
        let hub = tempfile::tempdir().unwrap();
        let file = hub.path().join(REPO).join(FILE);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        tiny_llama::write_tiny_llama(&smollm2::smollm2_gguf(), &file);
        let server = MirrorServer::start(hub.path(), "127.0.0.1:0").unwrap();
        let workflow =
            std::fs::read_to_string(repo_root().join("workflows/add-model.yaml")).unwrap();
        let ws = TestWorkspace::new(&workflow);
        for t in std::fs::read_dir(repo_root().join("templates")).unwrap() {
            let t = t.unwrap().path();
            let name = t.file_name().unwrap().to_string_lossy().into_owned();
            ws.write(
                &format!("templates/{name}"),
                &std::fs::read_to_string(&t).unwrap(),
            );
        }
        ws.write("models/tiny.yaml", &manifest("general"));
        ws.write(
            "onboard.yaml",
            &format!(
                "hardware:\n  gpus: []\n  ram_gib: 16\n  os_reserve_gib: 4\n  cpu_bandwidth_gbs: 20\n\
                 engines:\n  llama_server: {}\n",
                repo_root().join("scripts/llama-server-xllamacpp").display()
            ),
        );
        std::fs::create_dir_all(ws.path("documentation/CANDIDATES")).unwrap();
        Setup { ws, hub, server }
    }

    fn repo_dir(&self) -> PathBuf {
        self.hub.path().join(REPO)
    }

    /// The offline HumanEval problems come from the repository's .venv.
    fn link_venv(&self) {
        std::os::unix::fs::symlink(repo_root().join(".venv"), self.ws.path(".venv")).unwrap();
    }

    fn cmd(&self, args: &[&str]) -> Run {
        Onboard::in_workspace(&self.ws)
            .hub(&self.server.url(), self.ws.path(".hf-home"))
            .env_remove("HUMANEVAL_OVERRIDE_PATH")
            .args(args)
            .run()
    }

    fn run(&self) -> Run {
        self.cmd(&["run", MODEL, "--json"])
    }

    /// `onboard plan --json`: (step, action, why) per step.
    fn plan(&self) -> Vec<(String, String, String)> {
        let run = self.cmd(&["plan", MODEL, "--json"]);
        run.assert_ok();
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        doc["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["step"].as_str().unwrap_or_default().to_string(),
                    s["action"].as_str().unwrap_or_default().to_string(),
                    s["why"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    fn record(&self, step: &str) -> Value {
        let text = self.ws.read(&format!(".onboard/{MODEL}/steps/{step}.json"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{step}'s record: {e}: {text:?}"))
    }

    /// The run failed at `step` with `cause` in its record, and every step
    /// downstream of it was blocked, naming it (or a blocked step).
    fn assert_failed_at(&self, run: &Run, step: &str, cause: &str, blocked: &[&str]) {
        assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
        let rec = self.record(step);
        assert_eq!(rec["status"], "failed", "{rec}");
        let error = rec["error"].as_str().unwrap_or_default();
        assert!(error.contains(cause), "{step}: `{cause}` not in {error:?}");
        let finished = run
            .events()
            .into_iter()
            .find(|e| e["event"] == "step_finished" && e["step"] == step)
            .unwrap_or_else(|| panic!("no step_finished for {step}: {}", run.stdout));
        assert_eq!(finished["ok"], false, "{finished}");
        let mut got = run.steps_with("step_blocked");
        got.sort();
        assert_eq!(got, sorted(blocked), "{}", run.stdout);
        for b in blocked {
            assert!(run.why(b).contains("failed"), "{b}: {}", run.why(b));
            assert!(
                !self
                    .ws
                    .path(&format!(".onboard/{MODEL}/steps/{b}.json"))
                    .exists()
                    || self.record(b)["status"] != "done",
                "{b} is recorded done"
            );
        }
    }

    /// With the cause fixed: `onboard plan` resumes at `step` (it failed
    /// last time), skipping every step in `done` as done and unchanged.
    fn assert_plan_resumes_at(&self, step: &str, done: &[&str]) {
        let plan = self.plan();
        for (id, action, why) in &plan {
            if done.contains(&id.as_str()) {
                assert_eq!(action, "skip", "{id}: {why}");
                assert!(why.starts_with("done and unchanged"), "{id}: {why}");
            } else if id == step {
                assert_eq!(action, "run", "{id}: {why}");
                assert!(why.starts_with("failed last time: "), "{id}: {why}");
            } else {
                assert_eq!(action, "run", "{id}: {why}");
            }
        }
        assert_eq!(plan.len(), ALL.len(), "{plan:?}");
    }

    /// The rerun skipped exactly `done` and started at `step`.
    fn assert_resumed_at(&self, run: &Run, step: &str, done: &[&str]) {
        assert_eq!(run.skipped(), sorted(done), "{}", run.stdout);
        for d in done {
            assert!(
                run.why(d).starts_with("done and unchanged"),
                "{d}: {}",
                run.why(d)
            );
        }
        assert!(
            run.why(step).starts_with("failed last time: "),
            "{step}: {}",
            run.why(step)
        );
        assert!(
            run.ran().contains(&step.to_string()),
            "{step} did not finish: {}\n{}",
            run.stdout,
            run.stderr
        );
        assert_eq!(self.record(step)["status"], "done");
    }
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn before(step: &str) -> Vec<&'static str> {
    let at = ALL.iter().position(|s| *s == step).unwrap();
    ALL[..at].to_vec()
}

#[test]
fn a_failed_step_of_every_phase_resumes_there_once_its_cause_is_fixed() {
    let s = Setup::new();

    // evaluate: the Hub has no such repo.
    let hidden = s.hub.path().join("test/elsewhere");
    std::fs::rename(s.repo_dir(), &hidden).unwrap();
    // profile (next): models.conf has a line that is not a profile line.
    s.ws.write("models.conf", "# profiles\nthis line is broken\n");
    let run = s.run();
    s.assert_failed_at(&run, "evaluate", REPO, &ALL[1..]);
    assert!(!s.ws.path(".onboard/tiny/steps/download.json").exists());

    // Fixed: the repo is back. The rerun resumes at evaluate; download
    // proceeds, profile fails on models.conf.
    std::fs::rename(&hidden, s.repo_dir()).unwrap();
    s.assert_plan_resumes_at("evaluate", &[]);
    let run = s.run();
    s.assert_resumed_at(&run, "evaluate", &[]);
    assert!(
        run.ran().contains(&"download".to_string()),
        "{}",
        run.stdout
    );
    s.assert_failed_at(
        &run,
        "profile",
        "models.conf:2: `this line is broken`",
        &ALL[3..],
    );

    // Fixed: the broken line is a comment. Samplers (next): the manifest
    // names a mode its samplers do not have.
    s.ws.write("models.conf", "# profiles\n# this line is broken\n");
    s.ws.write("models/tiny.yaml", &manifest("coding"));
    s.assert_plan_resumes_at("profile", &["evaluate", "download"]);
    let run = s.run();
    s.assert_resumed_at(&run, "profile", &["evaluate", "download"]);
    s.assert_failed_at(
        &run,
        "samplers",
        "the manifest's samplers have no mode `coding`",
        &ALL[4..],
    );

    // Fixed. bench_profile (next): the benchmarks README has an opening
    // marker of its table and no closing one.
    s.ws.write("models/tiny.yaml", &manifest("general"));
    s.ws.write(
        "benchmarks/README.md",
        "# Benchmarks\n\n<!-- onboard:bench-models -->\n| old table |\n",
    );
    let done = ["evaluate", "download", "profile"];
    s.assert_plan_resumes_at("samplers", &done);
    let run = s.run();
    s.assert_resumed_at(&run, "samplers", &done);
    assert!(
        run.ran().contains(&"context_test".to_string()),
        "{}",
        run.stdout
    );
    s.assert_failed_at(
        &run,
        "bench_profile",
        "the markers `<!-- onboard:bench-models -->` and `<!-- /onboard:bench-models -->` must both be present",
        &ALL[6..],
    );

    // Fixed. benchmark (next): no dataset (no .venv, no EvalPlus cache,
    // downloads off).
    s.ws.write(
        "benchmarks/README.md",
        "# Benchmarks\n\n<!-- onboard:bench-models -->\n| old table |\n<!-- /onboard:bench-models -->\n",
    );
    let done = before("bench_profile");
    s.assert_plan_resumes_at("bench_profile", &done);
    let run = s.run();
    s.assert_resumed_at(&run, "bench_profile", &done);
    s.assert_failed_at(&run, "benchmark", "HumanEval.jsonl.gz", &ALL[7..]);

    // Fixed. docs (next): the candidate card opens its measured block and
    // never closes it.
    s.link_venv();
    s.ws.write(
        CARD,
        "# Tiny Llama\n\nA card written by hand.\n\n<!-- onboard:measured -->\n| stale |\n",
    );
    let done = before("benchmark");
    s.assert_plan_resumes_at("benchmark", &done);
    let run = s.run();
    s.assert_resumed_at(&run, "benchmark", &done);
    s.assert_failed_at(
        &run,
        "docs",
        "Tiny-Llama.md:5: `<!-- onboard:measured -->` has no closing",
        &["summary", "compare"],
    );
    // Nothing was written: the card is still a candidate, as it was.
    assert!(s.ws.path(CARD).exists());
    assert!(!s.ws.path("documentation/Tiny-Llama.md").exists());

    // Fixed: the last rerun resumes at docs and finishes the workflow.
    s.ws.write(
        CARD,
        "# Tiny Llama\n\nA card written by hand.\n\n<!-- onboard:measured -->\n| stale |\n<!-- /onboard:measured -->\n",
    );
    let done = before("docs");
    s.assert_plan_resumes_at("docs", &done);
    let run = s.run();
    run.assert_ok();
    s.assert_resumed_at(&run, "docs", &done);
    assert_eq!(
        run.ran(),
        sorted(&["docs", "summary", "compare"]),
        "{}",
        run.stdout
    );
    for step in ALL {
        assert_eq!(s.record(step)["status"], "done", "{step}");
    }
    let card = s.ws.read("documentation/Tiny-Llama.md");
    assert!(card.contains("A card written by hand."), "{card}");
    assert!(!card.contains("| stale |"), "{card}");
    // And a run now has nothing left to do.
    let again = s.run();
    again.assert_ok();
    assert!(again.ran().is_empty(), "{}", again.stdout);
    assert_eq!(again.skipped(), sorted(ALL));
}
