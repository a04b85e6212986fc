//! Phase 8 on a realistic documentation tree: the card leaves
//! `CANDIDATES/`, every link follows it (and nothing else changes), the
//! tables carry the model's figures, a second run changes no byte, and a
//! step that would break a link fails before writing anything.

use onboard_test_support::docs_fixture::*;
use onboard_test_support::{copy_tree, Onboard, Run, TestWorkspace};

const MODEL: &str = "qwen3.5-35b-a3b";

fn run_docs(ws: &TestWorkspace, extra: &[&str]) -> Run {
    let mut args = vec!["run", MODEL, "--json", "--workflow", "docs"];
    args.extend_from_slice(extra);
    ws.onboard(&args)
}

const ROW_35B: &str = "| [Qwen3.5-35B-A3B](documentation/Qwen3.5-35B-A3B.md) | `qwen3.5-35b-a3b` | UD-Q6_K_XL | 30.3 GB | FIT (both GPUs) | 262144 | 96 t/s | 87.2 | 81.7 | [chart](benchmarks/report/humaneval.svg) |";

#[test]
fn the_card_moves_links_follow_tables_fill_and_a_rerun_changes_nothing() {
    let ws = workspace();
    let links = ws.onboard(&["links"]);
    assert_eq!(links.code, 0, "the fixture starts clean:\n{}", links.stdout);

    run_docs(&ws, &[]).assert_ok();

    // The card sits in documentation/, not in CANDIDATES/.
    assert!(!ws
        .path("documentation/CANDIDATES/Qwen3.5-35B-A3B.md")
        .exists());
    let card = ws.read("documentation/Qwen3.5-35B-A3B.md");
    let expected_card = CARD_35B
        .replace("(../Qwen3-Next-80B-A3B.md)", "(Qwen3-Next-80B-A3B.md)")
        .replace("(Qwen3.5-27B.md)", "(CANDIDATES/Qwen3.5-27B.md)")
        .replace("(../../README.md#models)", "(../README.md#models)")
        .replace(
            "(../gpu-strategy-guide.md#strategies)",
            "(gpu-strategy-guide.md#strategies)",
        )
        .replace("(../img/layers.png)", "(img/layers.png)")
        .replace(
            "<!-- onboard:measured -->\n",
            "<!-- onboard:measured -->\n\
| Measured on this machine | |\n|---|---|\n| Speed | 96 t/s |\n| Context | 262144 |\n\
| HumanEval+ pass@1 (base) | 87.2 |\n| HumanEval+ pass@1 (plus) | 81.7 |\n\
\n![HumanEval+ pass@1](../benchmarks/report/humaneval.svg)\n",
        );
    assert_eq!(card, expected_card);

    // Every page that linked to it, at every depth; code left alone.
    let readme = ws.read("README.md");
    let (before_block, rest) = readme.split_once("<!-- onboard:models -->\n").unwrap();
    let (table, after_block) = rest.split_once("<!-- /onboard:models -->").unwrap();
    let (exp_before, exp_rest) = README.split_once("<!-- onboard:models -->\n").unwrap();
    let (_, exp_after) = exp_rest.split_once("<!-- /onboard:models -->").unwrap();
    assert_eq!(
        before_block,
        exp_before.replace(
            "(documentation/CANDIDATES/Qwen3.5-35B-A3B.md#memory)",
            "(documentation/Qwen3.5-35B-A3B.md#memory)"
        )
    );
    assert_eq!(
        after_block,
        exp_after.replace(
            "[35b]: documentation/CANDIDATES/Qwen3.5-35B-A3B.md",
            "[35b]: documentation/Qwen3.5-35B-A3B.md"
        )
    );
    assert!(
        after_block.contains("# cat documentation/CANDIDATES/Qwen3.5-35B-A3B.md\n./start.sh qwen35-35b   # see [card](documentation/CANDIDATES/Qwen3.5-35B-A3B.md)")
            && after_block.contains("`[card](documentation/CANDIDATES/Qwen3.5-35B-A3B.md)`"),
        "code blocks and code spans are not links"
    );

    // The tables carry the model's figures (and the others', from models.conf,
    // manifests and results files), with links relative to each page.
    assert!(table.contains(ROW_35B), "{table}");
    assert!(table.contains("| [Qwen3-Next-80B-A3B](documentation/Qwen3-Next-80B-A3B.md) | `qwen3-next-80b-a3b` | Q4_K_M | 53 GB | FIT + CPU offload | 262144 | 41 t/s | 79.3 | 73.8 | — |"), "{table}");
    assert!(table.contains("| [GLM-4.7 Flash](documentation/GLM-4.7-Flash.md) | `glm-4.7-flash` | Q8_0 | 30 GB | — | 131072 | 112 t/s (2 GPUs) | 84.1 | 78.7 | [chart](benchmarks/report/humaneval.svg) |"), "{table}");
    assert!(table.contains("![HumanEval+ pass@1](benchmarks/report/humaneval.svg)"));
    assert!(!table.contains("Qwen3.5-27B"), "candidates are not listed");
    let guide = ws.read("documentation/gpu-strategy-guide.md");
    assert!(guide.contains(
        "| [Qwen3.5-35B-A3B](Qwen3.5-35B-A3B.md) | `qwen3.5-35b-a3b` | UD-Q6_K_XL | 30.3 GB | FIT (both GPUs) | 262144 | 96 t/s | 87.2 | 81.7 | [chart](../benchmarks/report/humaneval.svg) |"
    ), "{guide}");
    assert!(guide.contains("[Qwen3.5-35B-A3B](Qwen3.5-35B-A3B.md#strategy) and\n  [Qwen3.5-27B](CANDIDATES/Qwen3.5-27B.md)."));
    assert!(guide.contains("([details](Qwen3.5-35B-A3B.md#memory))"));
    assert_eq!(
        ws.read("documentation/guides/bench/benchmarking.md"),
        BENCH_GUIDE.replace(
            "../../CANDIDATES/Qwen3.5-35B-A3B.md",
            "../../Qwen3.5-35B-A3B.md"
        )
    );
    assert_eq!(
        ws.read("documentation/Qwen3-Next-80B-A3B.md"),
        CARD_QWEN3_NEXT.replace("(CANDIDATES/Qwen3.5-35B-A3B.md)", "(Qwen3.5-35B-A3B.md)")
    );
    assert_eq!(
        ws.read("documentation/CANDIDATES/Qwen3.5-27B.md"),
        CARD_27B.replace(
            "(Qwen3.5-35B-A3B.md#memory)",
            "(../Qwen3.5-35B-A3B.md#memory)"
        )
    );
    // Files the step has no business with are byte-identical.
    assert_eq!(ws.read("documentation/GLM-4.7-Flash.md"), CARD_GLM);
    assert_eq!(ws.read("models.conf"), MODELS_CONF);

    let links = ws.onboard(&["links"]);
    assert_eq!(links.code, 0, "{}", links.stdout);

    // A second run (forced past the record) changes no byte.
    let first = snapshot(ws.root());
    let again = run_docs(&ws, &["--force", "docs"]);
    again.assert_ok();
    assert_eq!(again.ran(), vec!["docs"]);
    assert_eq!(diff(&first, &snapshot(ws.root())), Vec::<String>::new());
    let out = ws.onboard(&["status", MODEL, "--format", "json", "--workflow", "docs"]);
    assert!(out.stdout.contains("\"changed\": false"), "{}", out.stdout);
}

const TINY_WORKFLOW: &str = "\
name: add-model
steps:
  - id: docs
    uses: docs
    with:
      measured_speed_tps: 12.5
      facts: {architecture: llama, layers: 30}
      tables: [README.md]
";

#[test]
fn a_model_without_a_card_gets_one_from_the_template() {
    let ws = TestWorkspace::new(TINY_WORKFLOW);
    ws.write(
        "README.md",
        "# Workspace\n\nSee [the docs](documentation/).\n",
    );
    ws.write("documentation/index.md", "# Docs\n\n[Home](../README.md)\n");
    ws.run(&[]).assert_ok();
    let card = ws.read("documentation/Tiny.md");
    assert!(
        card.starts_with("# Tiny\n\nTiny (`tiny`): Test, dense, 1M.\n"),
        "{card}"
    );
    assert!(
        card.contains("| architecture | llama |\n| layers | 30 |\n"),
        "{card}"
    );
    assert!(card.contains("| Speed | 12.5 t/s |"), "{card}");
    assert!(
        card.contains("Back to the [workspace README](../README.md)."),
        "{card}"
    );
    let readme = ws.read("README.md");
    assert!(
        readme.starts_with(
            "# Workspace\n\nSee [the docs](documentation/).\n\n<!-- onboard:models -->\n"
        ),
        "{readme}"
    );
    assert!(
        readme.contains(
            "| [Tiny](documentation/Tiny.md) | `tiny` | — | — | — | — | 12.5 t/s | — | — | — |"
        ),
        "{readme}"
    );
    assert_eq!(ws.onboard(&["links"]).code, 0);
    let first = snapshot(ws.root());
    ws.run(&["--force", "docs"]).assert_ok();
    assert_eq!(diff(&first, &snapshot(ws.root())), Vec::<String>::new());
}

#[test]
fn a_step_that_would_break_a_link_fails_and_writes_nothing() {
    let ws = TestWorkspace::new(TINY_WORKFLOW);
    ws.write("README.md", "# Workspace\n");
    ws.write(
        "templates/card.md.j2",
        "# {{ manifest.name }}\n\nSee the [guide](guide.md#setup).\n",
    );
    let before = snapshot(ws.root());
    let run = ws.run(&[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("documentation/Tiny.md:3:17: broken link `guide.md#setup`: `documentation/guide.md` does not exist"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("nothing was written"), "{}", run.stdout);
    assert_eq!(diff(&before, &snapshot(ws.root())), Vec::<String>::new());
}

#[test]
fn links_reports_file_line_column_and_the_fix() {
    let ws = workspace();
    ws.write(
        "documentation/notes.md",
        "# Notes\n\nSee [GLM](GLM-4.7-Flash.md#sped) and [27B](Qwen3.5-27B.md).\n",
    );
    let out = ws.onboard(&["links"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("documentation/notes.md:3:11: broken link `GLM-4.7-Flash.md#sped`: `documentation/GLM-4.7-Flash.md` has no heading `#sped`\n  = help: did you mean `#speed`?"), "{}", out.stdout);
    assert!(out.stdout.contains("documentation/notes.md:3:44: broken link `Qwen3.5-27B.md`: `documentation/Qwen3.5-27B.md` does not exist\n  = help: `documentation/CANDIDATES/Qwen3.5-27B.md` exists; link to `CANDIDATES/Qwen3.5-27B.md`"), "{}", out.stdout);
    let json = ws.onboard(&["links", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["broken"].as_array().unwrap().len(), 2);
    assert_eq!(v["broken"][0]["problem"], "missing_anchor");
}

/// The repository's own documentation: its links hold, and the docs step
/// onboards a real candidate card with every link intact.
#[test]
fn the_repository_documentation_is_clean_and_onboards_a_candidate() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Onboard::new().workspace(repo).arg("links").output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let ws = TestWorkspace::new("name: add-model\nsteps: []\n");
    std::fs::remove_file(ws.path("models/tiny.yaml")).unwrap();
    copy_tree(&repo.join("documentation"), &ws.path("documentation"));
    for entry in std::fs::read_dir(repo.join("models")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(entry.path(), ws.path("models").join(entry.file_name())).unwrap();
        }
    }
    ws.write(
        "onboard.yaml",
        &std::fs::read_to_string(repo.join("onboard.yaml")).unwrap(),
    );
    ws.write(
        "workflows/docs.yaml",
        "name: docs\nsteps:\n  - id: docs\n    uses: docs\n    with: {measured_speed_tps: 101}\n",
    );
    ws.onboard(&["run", MODEL, "--workflow", "docs"])
        .assert_ok();
    assert!(ws.path("documentation/Qwen3.5-35B-A3B.md").exists());
    assert!(!ws
        .path("documentation/CANDIDATES/Qwen3.5-35B-A3B.md")
        .exists());
    let links = ws.onboard(&["links"]);
    assert_eq!(links.code, 0, "{}", links.stdout);
    assert!(ws
        .read("documentation/gpu-strategy-guide.md")
        .contains("| [Qwen3.5-35B-A3B](Qwen3.5-35B-A3B.md) | `qwen3.5-35b-a3b` | UD-Q6_K_XL | 30.3 GB | FIT (both GPUs) | 262144 | 101 t/s |"));
    assert!(ws
        .read("documentation/GLM-4.7-Flash.md")
        .contains("[Qwen3.5-35B-A3B](Qwen3.5-35B-A3B.md)"));
}

#[test]
fn plan_diff_previews_the_docs_step_without_writing() {
    let ws = workspace();
    let before = snapshot(ws.root());
    let out = ws.onboard(&["plan", MODEL, "--workflow", "docs", "--diff"]);
    out.assert_ok();
    assert_eq!(diff(&before, &snapshot(ws.root())), Vec::<String>::new());
    for part in [
        "--- a/README.md\n+++ b/README.md\n@@ -2,12 +2,20 @@\n \n Start with the",
        "-[memory figures](documentation/CANDIDATES/Qwen3.5-35B-A3B.md#memory)).\n+[memory figures](documentation/Qwen3.5-35B-A3B.md#memory)).\n",
        "-[35b]: documentation/CANDIDATES/Qwen3.5-35B-A3B.md \"Qwen3.5-35B-A3B\"\n+[35b]: documentation/Qwen3.5-35B-A3B.md \"Qwen3.5-35B-A3B\"\n",
        "--- a/documentation/CANDIDATES/Qwen3.5-35B-A3B.md\n+++ /dev/null\n",
        "--- /dev/null\n+++ b/documentation/Qwen3.5-35B-A3B.md\n",
        &format!("+{ROW_35B}\n"),
    ] {
        assert!(out.stdout.contains(part), "missing {part:?} in\n{}", out.stdout);
    }
    // Once done, nothing is left to preview for a forced rerun.
    ws.onboard(&["run", MODEL, "--workflow", "docs"])
        .assert_ok();
    let out = ws.onboard(&[
        "plan",
        MODEL,
        "--workflow",
        "docs",
        "--diff",
        "--force",
        "docs",
    ]);
    out.assert_ok();
    assert!(
        out.stdout.contains("docs:\n  (no file would change)"),
        "{}",
        out.stdout
    );
}
