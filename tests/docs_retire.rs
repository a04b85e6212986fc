//! Retirement after onboarding: advice with its reasons, a dry run that
//! changes nothing, and `--yes` removing every trace of one model only.

use onboard_test_support::docs_fixture::*;
use onboard_test_support::TestWorkspace;

/// The fixture after `qwen3.5-35b-a3b` was onboarded and benchmarked.
fn onboarded() -> TestWorkspace {
    let ws = workspace();
    ws.onboard(&["run", "qwen3.5-35b-a3b", "--json", "--workflow", "docs"])
        .assert_ok();
    ws.write(
        "benchmarks/results/qwen3.5-35b-a3b.json",
        r#"{"model": "qwen3.5-35b-a3b", "benchmark": "HumanEval+", "base": 87.2, "plus": 81.7, "tasks": 164, "chart": "benchmarks/report/humaneval.svg"}"#,
    );
    ws
}

fn advice(ws: &TestWorkspace) -> serde_json::Value {
    let out = ws.onboard(&["retire", "--advise", "--format", "json"]);
    out.assert_ok();
    serde_json::from_str(&out.stdout).unwrap()
}

fn verdict(v: &serde_json::Value, old: &str) -> String {
    v["advice"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["old"] == old)
        .map(|a| a["verdict"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn advice_follows_the_plan() {
    // Before the 35B-A3B is onboarded, nothing is advised about its
    // predecessor.
    let ws = workspace();
    assert_eq!(verdict(&advice(&ws), "qwen3-next-80b-a3b"), "wait");

    let ws = onboarded();
    let v = advice(&ws);
    // "Qwen3-Next-80B-A3B — if Qwen3.5-35B-A3B matches or beats it": it
    // beats it on every shared benchmark, so removal is advised.
    assert_eq!(verdict(&v, "qwen3-next-80b-a3b"), "retire");
    let next = v["advice"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["old"] == "qwen3-next-80b-a3b")
        .unwrap();
    assert_eq!(next["wins"].as_array().unwrap().len(), 4);
    assert_eq!(next["frees_gb"], 53.0);
    // "GPT-OSS 120B — if Qwen3.5-122B-A10B outperforms it across the board":
    // it does not (LiveCodeBench v6 and CodeForces), so: review, not retire.
    assert_eq!(verdict(&v, "gpt-oss-120b"), "review");
    // "Likely keepers regardless": GLM-4.7 Flash is never advised for removal.
    assert_eq!(verdict(&v, "glm-4.7-flash"), "");
    let keepers: Vec<&str> = v["keepers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        keepers,
        vec!["glm-4.7-flash", "qwen3.5-122b-a10b", "qwen3.5-35b-a3b"]
    );

    let human = ws.onboard(&["retire", "--advise"]);
    human.assert_ok();
    for part in [
        "Qwen3-Next-80B-A3B (qwen3-next-80b-a3b): retire, compared with Qwen3.5-35B-A3B (qwen3.5-35b-a3b)",
        "Qwen3.5-35B-A3B beats Qwen3-Next-80B-A3B on 4 of 4 shared benchmarks and loses none: HumanEval+ base 87.2 vs 79.3, HumanEval+ plus 81.7 vs 73.8, LiveCodeBench v6 74.6 vs 56.6, MMLU-Pro 85.3 vs 80.6",
        "measured speed: Qwen3.5-35B-A3B 96 t/s, Qwen3-Next-80B-A3B 41 t/s",
        "retiring Qwen3-Next-80B-A3B frees 53 GB",
        "=> retire Qwen3-Next-80B-A3B: `onboard retire qwen3-next-80b-a3b` shows the changes",
        "GPT-OSS 120B still leads on 2: CodeForces 2100 vs 2157, LiveCodeBench v6 78.9 vs 82.7",
        "=> keep GPT-OSS 120B for now; decide with hands-on use",
        "Likely keepers (not named in any `replaces`):\n  - GLM-4.7 Flash (glm-4.7-flash)",
    ] {
        assert!(human.stdout.contains(part), "missing {part:?} in\n{}", human.stdout);
    }
}

#[test]
fn retire_is_a_dry_run_without_yes_and_removes_every_trace_with_it() {
    let ws = onboarded();
    let before = snapshot(ws.root());

    let dry = ws.onboard(&["retire", "qwen3-next-80b-a3b"]);
    dry.assert_ok();
    assert_eq!(
        diff(&before, &snapshot(ws.root())),
        Vec::<String>::new(),
        "a dry run changes nothing"
    );
    for part in [
        "Retiring Qwen3-Next-80B-A3B (`qwen3-next-80b-a3b`), dry run:",
        "would delete models/Qwen3-Next/MoE/80B/Q4_K_M (0.0 GB)",
        "would remove [qwen3-next] from models.conf (line 10)",
        "would remove [bench-qwen3-next] from models.conf (line 36)",
        "would remove [bench-qwen3-next] from benchmarks/bench-client.conf",
        "would move documentation/Qwen3-Next-80B-A3B.md -> documentation/RETIRED/Qwen3-Next-80B-A3B.md",
        "would rewrite link documentation/gpu-strategy-guide.md:11: Qwen3-Next-80B-A3B.md#memory -> RETIRED/Qwen3-Next-80B-A3B.md#memory",
        "would rewrite link documentation/RETIRED/Qwen3-Next-80B-A3B.md:5: Qwen3.5-35B-A3B.md -> ../Qwen3.5-35B-A3B.md",
        "would refresh the models table in README.md",
        "would set `status: retired` in models/qwen3-next-80b-a3b.yaml:11",
        "Dry run: nothing was changed.",
    ] {
        assert!(dry.stdout.contains(part), "missing {part:?} in\n{}", dry.stdout);
    }

    let out = ws.onboard(&["retire", "qwen3-next-80b-a3b", "--yes"]);
    out.assert_ok();
    assert!(out.stdout.contains("all resolve"), "{}", out.stdout);

    // Weights: that model's directory only.
    assert!(!ws.path("models/Qwen3-Next/MoE/80B/Q4_K_M").exists());
    for kept in [
        "models/Qwen3.5/MoE/35B/UD6_K_XL/Qwen3.5-35B-A3B-UD-Q6_K_XL.gguf",
        "models/GLM/MoE/Flash/Q8/GLM-4.7-Flash-Q8_0.gguf",
        "models/GPT-OSS/MoE/120B/gpt-oss-120b-mxfp4-00001-of-00003.gguf",
    ] {
        assert!(ws.path(kept).exists(), "{kept}");
    }
    // Profiles: both of its own, nothing else, every other byte kept.
    assert_eq!(
        ws.read("models.conf"),
        MODELS_CONF
            .replace("; Qwen3-Next: the 35B-A3B may replace it\n[qwen3-next]\nMODEL=Qwen3-Next/MoE/80B/Q4_K_M/Qwen3-Next-80B-A3B-Instruct-Q4_K_M.gguf\nCTX_SIZE=262144\nFLAGS=--jinja -np 1 --no-context-shift\nSPEED=41 t/s\n\n", "")
            .replace("[bench-qwen3-next]\nMODEL=Qwen3-Next/MoE/80B/Q4_K_M/Qwen3-Next-80B-A3B-Instruct-Q4_K_M.gguf\nCTX_SIZE=10240\n\n", "")
    );
    assert_eq!(
        ws.read("benchmarks/bench-client.conf"),
        BENCH_CLIENT.split_once("\n\n").unwrap().1
    );
    assert!(!ws.read("benchmarks/README.md").contains("qwen3-next"));
    // The card is in RETIRED/, every link followed it, the tables dropped it.
    assert!(!ws.path("documentation/Qwen3-Next-80B-A3B.md").exists());
    assert!(ws
        .path("documentation/RETIRED/Qwen3-Next-80B-A3B.md")
        .exists());
    for page in ["README.md", "documentation/gpu-strategy-guide.md"] {
        let text = ws.read(page);
        let (_, table) = text.split_once("<!-- onboard:models -->").unwrap();
        let (table, _) = table.split_once("<!-- /onboard:models -->").unwrap();
        assert!(!table.contains("qwen3-next"), "{page}: {table}");
        assert!(table.contains("`qwen3.5-35b-a3b`"), "{page}: {table}");
    }
    assert!(ws
        .read("documentation/guides/bench/benchmarking.md")
        .contains("[Qwen3-Next](../../RETIRED/Qwen3-Next-80B-A3B.md)"));
    assert_eq!(ws.onboard(&["links"]).code, 0);
    // The manifest says so, with every other byte (comments included) kept.
    assert_eq!(
        ws.read("models/qwen3-next-80b-a3b.yaml"),
        MANIFEST_QWEN3_NEXT.replace("status: installed   #", "status: retired   #")
    );
    assert_eq!(ws.onboard(&["validate"]).code, 0);

    // Retiring again finds nothing to do.
    let after = snapshot(ws.root());
    let again = ws.onboard(&["retire", "qwen3-next-80b-a3b", "--yes"]);
    again.assert_ok();
    assert_eq!(diff(&after, &snapshot(ws.root())), Vec::<String>::new());
    // And the advice no longer mentions it.
    assert_eq!(verdict(&advice(&ws), "qwen3-next-80b-a3b"), "");
}

#[test]
fn retire_refuses_unknown_models_and_shared_weights() {
    let ws = onboarded();
    let out = ws.onboard(&["retire", "no-such-model"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("no model `no-such-model`"),
        "{}",
        out.stderr
    );

    // A profile of another model using the same weights directory.
    let mut conf = ws.read("models.conf");
    conf.push_str("\n[next-experiment]\nMODEL=Qwen3-Next/MoE/80B/Q4_K_M/Qwen3-Next-80B-A3B-Instruct-Q4_K_M.gguf\n");
    ws.write("models.conf", &conf);
    let before = snapshot(ws.root());
    let out = ws.onboard(&["retire", "qwen3-next-80b-a3b", "--yes"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("profile `[next-experiment]` (models.conf line 44) uses weights in models/Qwen3-Next/MoE/80B/Q4_K_M"), "{}", out.stderr);
    assert_eq!(diff(&before, &snapshot(ws.root())), Vec::<String>::new());
}
