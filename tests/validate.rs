//! `onboard validate` on invalid files: every finding, at its line and
//! column, with a message that says what is wrong. Plus exit codes, JSON
//! output, and arbitrary bytes that must never make it panic.

use onboard_test_support::Onboard;
use std::path::Path;
use std::process::Command;

fn onboard(args: &[&str]) -> (i32, String, String) {
    let out = Onboard::new().args(args).output();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Line, column, code, and a part of the message.
type Finding = (usize, usize, &'static str, &'static str);

/// (file, [finding]) — the complete list of
/// findings each file must produce, no more and no fewer.
#[rustfmt::skip]
const EXPECTED: &[(&str, &[Finding])] = &[
    ("syntax-unclosed-flow.yaml", &[(5, 27, "syntax", "while parsing a flow sequence, expected ',' or ']'")]),
    ("syntax-bad-indent.yaml", &[(4, 10, "syntax", "mapping values are not allowed")]),
    ("multiple-documents.yaml", &[(3, 1, "syntax", "expected a single YAML document")]),
    ("unknown-top-key.yaml", &[(2, 1, "unknown-key", "unknown key `stepz`")]),
    ("unknown-step-key.yaml", &[(4, 5, "unknown-key", "`steps[0]`: unknown key `usess`")]),
    ("missing-uses.yaml", &[(3, 5, "missing-key", "`steps[0]`: missing required key `uses`")]),
    ("missing-id.yaml", &[(3, 5, "missing-key", "`steps[0]`: missing required key `id`")]),
    ("missing-name.yaml", &[(1, 1, "missing-key", "missing required key `name`")]),
    ("steps-not-list.yaml", &[(3, 3, "type", "`steps`: expected a list, found a mapping")]),
    ("duplicate-key.yaml", &[(5, 5, "duplicate-key", "`steps[0]`: duplicate key `uses`")]),
    ("unknown-task.yaml", &[(4, 11, "unknown-task", "unknown task kind `comand`")]),
    ("param-type.yaml", &[(6, 13, "type", "`with.argv`: expected a list, found the string `echo hi`")]),
    ("param-unknown-key.yaml", &[(7, 7, "unknown-key", "`with`: unknown key `arg`")]),
    ("param-nested-type.yaml", &[(8, 15, "type", "`with.env.LANG`: expected a string, a number, or true or false, found a list")]),
    ("render-missing-to.yaml", &[(6, 7, "missing-key", "`with`: missing required key `to`")]),
    ("needs-unknown.yaml", &[(8, 13, "unknown-step", "`needs` names no step: `fetc`")]),
    ("duplicate-id.yaml", &[(6, 9, "duplicate-step", "duplicate step id `a`")]),
    ("duplicate-need.yaml", &[(8, 16, "duplicate-need", "`a` is listed twice in `needs`")]),
    ("self-need.yaml", &[(5, 13, "cycle", "step `a` needs itself")]),
    ("cycle-two.yaml", &[(9, 13, "cycle", "dependency cycle: a -> b -> a")]),
    ("cycle-three.yaml", &[(9, 13, "cycle", "dependency cycle: a -> b -> c -> a")]),
    ("step-id-hyphen.yaml", &[(3, 9, "step-id", "step id `context-test` is not usable in templates")]),
    ("bad-duration.yaml", &[(5, 14, "duration", "`timeout`: `10 minutes` has no unit")]),
    ("retry-zero.yaml", &[(5, 23, "range", "`steps[0].retry.attempts`: must be at least 1")]),
    ("template-undefined-step.yaml", &[(9, 25, "undefined-step", "template reads `steps.evaluate.outputs.quant`, but there is no step `evaluate`")]),
    ("template-not-needed.yaml", &[(8, 25, "not-needed", "step `b` does not need `a`")]),
    ("template-unknown-output.yaml", &[(9, 25, "undefined-output", "task `command` has no output `stdot`")]),
    ("template-undefined-variable.yaml", &[(5, 25, "undefined-variable", "template reads undefined variable `modle`")]),
    ("template-manifest-field.yaml", &[(6, 20, "undefined-variable", "`manifest.hub` has no `rpo`")]),
    ("template-syntax.yaml", &[(6, 20, "template", "template syntax error: unexpected `}`")]),
    ("when-undefined.yaml", &[(5, 11, "undefined-variable", "`manifest` has no `thinkng`")]),
    ("resources.yaml", &[
        (5, 17, "unknown-resource", "unknown resource `gpux`"),
        (5, 31, "resource", "the step holds 2 `gpu` but the machine has 1: it could never run"),
        (5, 34, "resource", "resource name `Bad_Name` is not usable"),
    ]),
    ("many-findings.yaml", &[
        (5, 26, "unknown-key", "`with`: unknown key `shel`"),
        (7, 11, "unknown-task", "unknown task kind `rendr`"),
        (8, 13, "unknown-step", "`needs` names no step: `z`"),
        (11, 14, "type", "`steps[2].timeout`: expected a string, found the integer `5`"),
    ]),
    ("manifest-unknown-key.yaml", &[
        (4, 7, "unknown-value", "`type`: `hybrid` is not one of dense, moe"),
        (9, 3, "unknown-key", "`hub`: unknown key `revison`"),
    ]),
    ("manifest-id-mismatch.yaml", &[(1, 5, "model-id", "manifest id `qwen3.5-9b` does not match its file name")]),
    ("manifest-bad-repo.yaml", &[(7, 9, "hub-repo", "`just-a-name` is not a Hub repo id")]),
    ("config-types.yaml", &[
        (4, 17, "type", "`hardware.gpus[0].vram_gib`: expected a number, found the string `24GB`"),
        (5, 3, "unknown-key", "`hardware`: unknown key `ram`"),
        (7, 9, "range", "`defaults.jobs`: must be at least 1"),
    ]),
];

#[test]
fn every_invalid_file_gets_exactly_its_findings_at_their_positions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let on_disk = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        on_disk,
        EXPECTED.len(),
        "every fixture in tests/invalid has expectations"
    );
    assert!(EXPECTED.len() >= 25);
    for (file, expected) in EXPECTED {
        let path = dir.join(file);
        let (code, stdout, _) = onboard(&["validate", "--format", "json", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{file}: findings exit 1");
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let found: Vec<(usize, usize, String, String)> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["line"].as_u64().unwrap() as usize,
                    f["col"].as_u64().unwrap() as usize,
                    f["code"].as_str().unwrap().to_string(),
                    f["message"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(found.len(), expected.len(), "{file}: {found:#?}");
        for ((line, col, code, message), (el, ec, ecode, epart)) in
            found.iter().zip(expected.iter())
        {
            assert_eq!(
                (*line, *col, code.as_str()),
                (*el, *ec, *ecode),
                "{file}: {message}"
            );
            assert!(
                message.contains(epart),
                "{file}: `{message}` should contain `{epart}`"
            );
        }
    }
}

#[test]
fn human_output_shows_file_line_col_the_text_and_a_fix() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid/unknown-task.yaml");
    let (code, _, stderr) = onboard(&["validate", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("unknown-task.yaml:4:11: error[unknown-task]: unknown task kind `comand`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("4 |     uses: comand\n  |           ^^^^^^"),
        "{stderr}"
    );
    assert!(
        stderr.contains("= help: did you mean `command`?"),
        "{stderr}"
    );
}

#[test]
fn exit_codes_distinguish_clean_findings_and_usage_errors() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (code, stdout, _) = onboard(&["-C", root, "validate"]);
    assert_eq!(
        code, 0,
        "the repo's own workflows and manifests are valid: {stdout}"
    );
    assert!(stdout.starts_with("ok: "));
    let (code, _, stderr) = onboard(&["validate", "/no/such/file.yaml"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, _) = onboard(&["validate", "--format", "xml"]);
    assert_eq!(code, 2);
}

/// GitHub's decoding of a workflow command's message (`%25`, `%0D`,
/// `%0A`) and of a property (`%3A` and `%2C` too), as the runner does it.
fn github_unescape(text: &str, property: bool) -> String {
    let mut out = text.replace("%0D", "\r").replace("%0A", "\n");
    if property {
        out = out.replace("%3A", ":").replace("%2C", ",");
    }
    out.replace("%25", "%")
}

/// `::error k=v,k=v::message` split as the runner splits it: the properties
/// end at the first `::`, each ends at a `,`, a key at its `=`.
fn parse_github_command(line: &str) -> (String, Vec<(String, String)>, String) {
    let rest = line.strip_prefix("::").expect("a workflow command");
    let (head, message) = rest.split_once("::").expect("`::` before the message");
    let (command, props) = head.split_once(' ').unwrap_or((head, ""));
    let props = props
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').expect("key=value");
            (k.to_string(), github_unescape(v, true))
        })
        .collect();
    (command.to_string(), props, github_unescape(message, false))
}

/// `--format github`: one `::error` line per finding, decoding (as GitHub
/// does) to exactly the finding's file, position and message, whatever the
/// message and the file name hold: `%`, CR, LF, `:`, `,` and `::`.
#[test]
fn github_annotations_carry_hostile_messages_and_file_names_exactly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    let name = "workflows/we%ird,na:me.yaml";
    std::fs::write(
        dir.path().join(name),
        "name: w\nsteps:\n  - id: a\n    uses: \"com%25mand,x:y::z\"\n    \"bad%0A key,\\r\\nline2::x\": 1\n",
    )
    .unwrap();
    let run = |format: &str| {
        let out = Onboard::new()
            .current_dir(dir.path())
            .args(["validate", "--format", format, name])
            .output();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let report: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{report:#}");
    let github = run("github");
    let lines: Vec<&str> = github.split('\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines.len(),
        findings.len(),
        "one line per finding:\n{github}"
    );
    assert!(!github.contains('\r'), "{github:?}");
    for (line, finding) in lines.iter().zip(findings) {
        let (command, props, message) = parse_github_command(line);
        assert_eq!(command, "error", "{line}");
        let prop = |k: &str| {
            props
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {k} in {line}"))
        };
        assert_eq!(prop("file"), name, "{line}");
        assert_eq!(prop("line"), finding["line"].to_string(), "{line}");
        assert_eq!(prop("col"), finding["col"].to_string(), "{line}");
        assert_eq!(prop("endLine"), finding["end_line"].to_string(), "{line}");
        assert_eq!(prop("endColumn"), finding["end_col"].to_string(), "{line}");
        assert_eq!(
            prop("title"),
            format!("onboard validate: {}", finding["code"].as_str().unwrap())
        );
        let mut expected = finding["message"].as_str().unwrap().to_string();
        if let Some(help) = finding["help"].as_str() {
            expected = format!("{expected}\nhelp: {help}");
        }
        assert_eq!(message, expected, "{line}");
    }
    // The hostile parts really are in the messages.
    let all: String = findings.iter().map(|f| f["message"].to_string()).collect();
    for part in ["com%25mand,x:y::z", "bad%0A key,\\r\\nline2::x"] {
        assert!(all.contains(part), "{part} in {all}");
    }
    // The key's underline ends where the key does.
    let key = findings
        .iter()
        .find(|f| f["code"] == "unknown-key")
        .unwrap();
    assert_eq!(
        (key["line"].as_u64(), key["end_line"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(
        key["end_col"].as_u64().unwrap() - key["col"].as_u64().unwrap() + 1,
        "\"bad%0A key,\\r\\nline2::x\"".chars().count() as u64
    );
    // A clean workspace prints no annotation at all.
    let out = Onboard::new()
        .workspace(env!("CARGO_MANIFEST_DIR"))
        .args(["validate", "--format", "github"])
        .output();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "{out:?}");
}

/// This repository as a pre-commit hook repository: a workspace that uses
/// its `onboard-validate` hook passes when clean and fails, with the
/// finding, when a workflow is broken (pre-commit from PyPI, installed by
/// scripts/setup; onboard on PATH, as the hook expects).
#[test]
fn pre_commit_runs_onboard_validate_from_this_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pre_commit = root.join(".venv/bin/pre-commit");
    assert!(
        pre_commit.exists(),
        "PyPI pre-commit is not installed in .venv: run scripts/setup"
    );
    let ws = tempfile::tempdir().unwrap();
    for dir in ["workflows", "models"] {
        std::fs::create_dir_all(ws.path().join(dir)).unwrap();
    }
    std::fs::copy(root.join("onboard.yaml"), ws.path().join("onboard.yaml")).unwrap();
    std::fs::copy(
        root.join("workflows/add-model.yaml"),
        ws.path().join("workflows/add-model.yaml"),
    )
    .unwrap();
    std::fs::copy(
        root.join("models/qwen3.5-27b.yaml"),
        ws.path().join("models/qwen3.5-27b.yaml"),
    )
    .unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_onboard")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let home = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(ws.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    let hook = || {
        Command::new(&pre_commit)
            .current_dir(ws.path())
            .args([
                "try-repo",
                root.to_str().unwrap(),
                "onboard-validate",
                "--all-files",
            ])
            .env("PATH", &path)
            .env("PRE_COMMIT_HOME", home.path())
            .output()
            .unwrap()
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "workspace"]);
    let clean = hook();
    let text = String::from_utf8_lossy(&clean.stdout);
    assert!(clean.status.success(), "{text}\n{clean:?}");
    assert!(
        text.contains("onboard validate") && text.contains("Passed"),
        "{text}"
    );

    std::fs::write(
        ws.path().join("workflows/add-model.yaml"),
        "name: add-model\nsteps:\n  - id: a\n    uses: comand\n",
    )
    .unwrap();
    git(&["add", "-A"]);
    let broken = hook();
    let text = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1), "{text}");
    assert!(text.contains("Failed"), "{text}");
    assert!(
        text.contains(
            "workflows/add-model.yaml:4:11: error[unknown-task]: unknown task kind `comand`"
        ),
        "{text}"
    );
}

#[test]
fn the_schema_command_prints_json_schemas_with_task_parameters() {
    let (code, stdout, _) = onboard(&["schema", "workflow"]);
    assert_eq!(code, 0);
    let schema: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let step = &schema["$defs"]["StepFile"];
    let kinds = step["properties"]["uses"]["enum"].as_array().unwrap();
    for kind in [
        "command",
        "render",
        "docs",
        "benchmark",
        "evaluate",
        "download",
        "context-test",
    ] {
        assert!(kinds.contains(&serde_json::json!(kind)), "{kinds:?}");
    }
    let rules = step["allOf"].as_array().unwrap();
    assert!(rules
        .iter()
        .any(|r| r["then"]["properties"]["with"]["properties"]["argv"].is_object()));
    for which in ["manifest", "workspace"] {
        let (code, stdout, _) = onboard(&["schema", which]);
        assert_eq!(code, 0);
        let schema: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(schema["additionalProperties"], false, "{which}");
    }
}

mod no_panics {
    use onboard::source::Document;
    use onboard::tasks::Registry;
    use onboard::workflow::validate::check_workflow;
    use onboard::workspace;
    use proptest::prelude::*;
    use std::path::Path;

    fn check_everything(text: String) {
        let Ok(doc) = Document::parse(Path::new("fuzz.yaml"), text) else {
            return;
        };
        let registry = Registry::builtin();
        let _ = check_workflow(&doc, &registry, &workspace::template_roots().into());
        let _ = workspace::check_manifest(&doc);
        let _ = workspace::check_config(&doc);
    }

    const VALID: &str = "name: w\nsteps:\n  - id: a\n    uses: command\n    retry: {attempts: 2, backoff: 1s}\n    with: {argv: [echo, '{{ model }}'], env: {A: b}}\n  - id: b\n    uses: render\n    needs: [a]\n    when: manifest.thinking\n    with: {to: x, content: '{{ steps.a.outputs.stdout }}'}\n";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            check_everything(String::from_utf8_lossy(&bytes).into_owned());
        }

        #[test]
        fn yaml_shaped_noise(parts in proptest::collection::vec(
            prop_oneof![
                Just("steps:"), Just("- "), Just("id: "), Just("uses: "), Just("needs: ["), Just("]"), Just("{"), Just("}"),
                Just("with:"), Just("{{ "), Just(" }}"), Just("steps.a.outputs."), Just("&x "), Just("*x"), Just("\n  "), Just("\n"),
                Just(": "), Just("'"), Just("\""), Just("command"), Just("a"), Just("-1"), Just("~"), Just("{%"), Just("?"), Just("!!str "),
            ], 0..60)) {
            check_everything(parts.concat());
        }

        #[test]
        fn mutated_valid_workflows(cut in 0usize..400, insert in "[ -~\n]{0,8}") {
            let mut text = VALID.to_string();
            let at = cut.min(text.len());
            text.insert_str(at, &insert);
            check_everything(text);
            let mut truncated = VALID.to_string();
            truncated.truncate(at);
            check_everything(truncated);
        }
    }
}
