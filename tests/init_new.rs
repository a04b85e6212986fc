//! `onboard init` and `onboard new` on the real binary: a workspace from
//! nothing, then manifests written from GGUF headers that a real
//! `onboard mirror serve` on 127.0.0.1 serves, each passing `validate`.

use onboard_test_support::{gguf_fixtures, hub_fixture, repo_root, served_mirror, Onboard, Run};
use std::path::Path;
use std::process::{Child, Stdio};

fn onboard(cwd: &Path, args: &[&str], hub: Option<&str>) -> Run {
    let cmd = Onboard::new().current_dir(cwd).args(args);
    match hub {
        Some(url) => cmd.hub(url, cwd.join(".hf-home")).run(),
        None => cmd.run(),
    }
}

/// A usage error (exit 2) whose message says each of `says`.
fn refused(out: &Run, says: &[&str]) {
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    for s in says {
        assert!(out.stderr.contains(s), "{s}: {}", out.stderr);
    }
}

#[test]
fn init_writes_a_workspace_that_validates_and_refuses_to_overwrite_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = onboard(dir.path(), &["init", "ws"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ws = dir.path().join("ws");
    for file in [
        "onboard.yaml",
        "workflows/add-model.yaml",
        "templates/card.md.j2",
        "templates/onboarding-summary.md.j2",
        "templates/profile.conf.j2",
        ".gitignore",
    ] {
        assert!(ws.join(file).is_file(), "{file} missing");
    }
    for d in ["models", "documentation/CANDIDATES"] {
        assert!(ws.join(d).is_dir(), "{d}/ missing");
    }
    // The binary carries this repository's workflow and templates.
    let repo = repo_root();
    for file in [
        "workflows/add-model.yaml",
        "templates/card.md.j2",
        "templates/profile.conf.j2",
    ] {
        assert_eq!(
            std::fs::read(ws.join(file)).unwrap(),
            std::fs::read(repo.join(file)).unwrap(),
            "{file}"
        );
    }
    // onboard.yaml: this machine as `hardware --detect` sees it.
    let detected = onboard(
        dir.path(),
        &["hardware", "--detect", "--format", "json"],
        None,
    );
    let detected: serde_json::Value = serde_json::from_str(&detected.stdout).unwrap();
    let ws_str = ws.to_str().unwrap();
    let hw = onboard(
        dir.path(),
        &["-C", ws_str, "hardware", "--format", "json"],
        None,
    );
    assert_eq!(hw.code, 0, "{}", hw.stderr);
    let hw: serde_json::Value = serde_json::from_str(&hw.stdout).unwrap();
    assert_eq!(hw["ram_gib"], detected["hardware"]["ram_gib"]);
    assert_eq!(hw["gpus"], detected["hardware"]["gpus"]);
    let v = onboard(dir.path(), &["-C", ws_str, "validate"], None);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.contains("2 file(s) checked"), "{}", v.stdout);

    // Again: refused, nothing touched.
    std::fs::write(ws.join("onboard.yaml"), "# mine\n{}\n").unwrap();
    std::fs::write(ws.join("models/keep.yaml"), "kept").unwrap();
    let again = onboard(dir.path(), &["-C", ws_str, "init"], None);
    refused(&again, &["already a workspace", "--force"]);
    assert_eq!(
        std::fs::read_to_string(ws.join("onboard.yaml")).unwrap(),
        "# mine\n{}\n"
    );
    // A stray workflow of the same name is not overwritten either.
    let other = dir.path().join("other");
    std::fs::create_dir_all(other.join("workflows")).unwrap();
    std::fs::write(other.join("workflows/add-model.yaml"), "mine").unwrap();
    let out = onboard(dir.path(), &["init", "other"], None);
    refused(&out, &["workflows/add-model.yaml"]);
    assert!(!other.join("onboard.yaml").exists());
    // --force: the default files again, the models kept.
    let forced = onboard(dir.path(), &["-C", ws_str, "init", "--force"], None);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(std::fs::read_to_string(ws.join("onboard.yaml"))
        .unwrap()
        .contains("hardware:"));
    assert_eq!(
        std::fs::read_to_string(ws.join("models/keep.yaml")).unwrap(),
        "kept"
    );
}

/// The real binary serving `root` on a free loopback port; killed on drop.
struct Mirror {
    child: Child,
    url: String,
}

impl Mirror {
    fn start(root: &Path) -> Mirror {
        let (child, url) = served_mirror::spawn(root, &[], Stdio::null());
        Mirror { child, url }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of a YAML text's line `key: value` (first match, indented or not).
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{key}: ")))
}

#[test]
fn new_writes_a_valid_manifest_from_the_remote_header() {
    let dir = tempfile::tempdir().unwrap();
    let hub = dir.path().join("hub");
    let mut dense = gguf_fixtures::qwen35_tiny();
    dense
        .str("general.basename", "Tiny")
        .str("general.size_label", "2M");
    let moe = gguf_fixtures::qwen35moe_tiny();
    let (dense, moe) = (dense.to_bytes(), moe.to_bytes());
    hub_fixture::write_repo(
        &hub,
        "acme/Tiny-Dense-GGUF",
        &[("Tiny-Dense-Q8_0.gguf", &dense)],
    );
    hub_fixture::write_repo(
        &hub,
        "acme/Tiny-MoE-GGUF",
        &[("Tiny-MoE-Q8_0.gguf", &moe), ("Tiny-MoE-F32.gguf", &moe)],
    );
    let mirror = Mirror::start(&hub);
    let url = Some(mirror.url.as_str());
    let cwd = dir.path();
    assert_eq!(onboard(cwd, &["init", "ws"], None).code, 0);
    let ws = cwd.join("ws");
    let ws_str = ws.to_str().unwrap();
    let at = |args: &[&str]| {
        let mut all = vec!["-C", ws_str];
        all.extend_from_slice(args);
        onboard(cwd, &all, url)
    };

    // One quant: no --quant needed.
    let out = at(&["new", "tiny-dense", "--hub", "acme/Tiny-Dense-GGUF"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(ws.join("models/tiny-dense.yaml")).unwrap();
    let facts = at(&["inspect", "hf://acme/Tiny-Dense-GGUF", "--format", "json"]);
    let facts: serde_json::Value = serde_json::from_str(&facts.stdout).unwrap();
    assert_eq!(field(&text, "id"), Some("tiny-dense"));
    assert_eq!(field(&text, "name"), Some("Tiny-Dense"));
    assert_eq!(field(&text, "family"), Some("Tiny"), "general.basename");
    assert_eq!(field(&text, "size"), Some("\"2M\""), "general.size_label");
    assert_eq!(field(&text, "type"), Some("dense"));
    assert_eq!(field(&text, "repo"), Some("acme/Tiny-Dense-GGUF"));
    assert_eq!(field(&text, "quant"), Some("Q8_0"));
    assert_eq!(field(&text, "architecture"), facts["architecture"].as_str());
    assert_eq!(
        field(&text, "context").map(str::to_string),
        Some(facts["context_length"].to_string())
    );

    // Several quants: --quant is required, and the error lists them.
    let moe = |extra: &[&str]| {
        let mut args = vec!["new", "tiny-moe", "--hub", "acme/Tiny-MoE-GGUF"];
        args.extend_from_slice(extra);
        at(&args)
    };
    refused(&moe(&[]), &["has 2 quants", "--quant", "F32", "Q8_0"]);
    refused(&moe(&["--quant", "Q4_K_M"]), &["no quant `Q4_K_M`"]);
    // --replaces names a model of the workspace (with a suggestion).
    refused(
        &moe(&["--quant", "Q8_0", "--replaces", "tiny-dens"]),
        &["did you mean `tiny-dense`?"],
    );
    assert!(!ws.join("models/tiny-moe.yaml").exists());
    let out = moe(&["--quant", "q8_0", "--replaces", "tiny-dense"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(ws.join("models/tiny-moe.yaml")).unwrap();
    assert_eq!(field(&text, "type"), Some("moe"));
    assert_eq!(field(&text, "quant"), Some("Q8_0"));
    assert_eq!(field(&text, "replaces"), Some("[tiny-dense]"));
    assert!(field(&text, "active_params").is_some(), "{text}");
    assert!(
        text.contains("#   F32") && text.contains("#   Q8_0"),
        "the quant list: {text}"
    );

    // Both pass validate, and the workspace plans them.
    let v = at(&["validate"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.contains("4 file(s) checked"), "{}", v.stdout);
    let plan = at(&["plan", "tiny-moe"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);

    // An existing manifest is kept unless --force.
    let before = std::fs::read(ws.join("models/tiny-dense.yaml")).unwrap();
    let out = at(&[
        "new",
        "tiny-dense",
        "--hub",
        "acme/Tiny-MoE-GGUF",
        "--quant",
        "F32",
    ]);
    assert_eq!(out.code, 2);
    assert_eq!(
        std::fs::read(ws.join("models/tiny-dense.yaml")).unwrap(),
        before
    );
    // Bad input is a usage error naming the fix, and writes nothing.
    for (args, says) in [
        (vec!["new", "Bad/Id", "--hub", "a/b"], "is not a model id"),
        (vec!["new", "x", "--hub", "nope"], "expected owner/repo"),
    ] {
        let out = at(&args);
        refused(&out, &[says]);
    }
    let out = at(&["new", "x", "--hub", "acme/Missing-GGUF"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("acme/Missing-GGUF"), "{}", out.stderr);
    assert!(!ws.join("models/x.yaml").exists());
}
