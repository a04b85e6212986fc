//! The layers' rules, read from the source: a layer names only the layers
//! below it. The workflow engine knows no phase, no model library and no
//! downloader; the source layer (user files, positions, diagnostics) knows
//! nothing of onboard at all.

use onboard_test_support::walk_files;
use std::path::{Path, PathBuf};

/// What the workflow engine must not name: the phases, the libraries they
/// call, the CLI.
const ABOVE_WORKFLOW: &[&str] = &[
    "tasks",
    "hub",
    "engine",
    "gguf",
    "evaluate",
    "bench",
    "docs",
    "cli",
    "workspace",
];

/// Each layer (a folder under `src/`) and the top-level modules of the
/// crate it must not name; the source layer, under everything, not even
/// the engine.
fn rules() -> [(&'static str, Vec<&'static str>); 2] {
    let mut above_source = ABOVE_WORKFLOW.to_vec();
    above_source.push("workflow");
    [
        ("workflow", ABOVE_WORKFLOW.to_vec()),
        ("source", above_source),
    ]
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walk_files(dir)
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect();
    out.sort();
    out
}

/// The top-level modules a file names through `crate::…`, with the line of
/// each, braces included (`use crate::{tasks::Registry, cancel};`).
fn crate_modules(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // Top-level names of the group, up to its closing brace.
                let mut depth = 0;
                let mut name = String::new();
                let mut names = Vec::new();
                let mut expect_name = true;
                for c in group.chars() {
                    let ident = c.is_alphanumeric() || c == '_';
                    let extends_name = depth == 0 && expect_name && ident;
                    if !extends_name && !name.is_empty() {
                        names.push(std::mem::take(&mut name));
                        expect_name = false;
                    }
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => expect_name = true,
                        _ if depth == 0 && expect_name && ident => name.push(c),
                        _ => {}
                    }
                }
                if !name.is_empty() {
                    names.push(name);
                }
                found.extend(names.into_iter().map(|m| (n + 1, m)));
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                found.push((n + 1, name));
            }
        }
    }
    found
}

#[test]
fn each_layer_names_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for (layer, forbidden) in rules() {
        let files = rust_files(&src.join(layer));
        assert!(!files.is_empty(), "src/{layer} has no Rust files");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (line, module) in crate_modules(&text) {
                if forbidden.contains(&module.as_str()) {
                    broken.push(format!(
                        "{}:{line}: src/{layer} names crate::{module}",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
            // `super::super::…` out of the layer is the same thing: a file
            // `n` modules below the layer's root leaves it with n + 1.
            let relative = file.strip_prefix(src.join(layer)).unwrap();
            let below = relative.components().count()
                - usize::from(relative.file_name().is_some_and(|f| f == "mod.rs"));
            let escape = "super::".repeat(below + 1);
            for (n, l) in text.lines().enumerate() {
                if l.contains(&escape) {
                    broken.push(format!(
                        "{}:{}: src/{layer} reaches out with `{escape}`",
                        file.strip_prefix(&src).unwrap().display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layer rules broken (see the README's Architecture section):\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_checker_sees_every_way_of_naming_a_module() {
    let text = "use crate::tasks::Registry;\n\
                use crate::{cancel, hub::{TransferProgress, x}};\n\
                let r = crate::docs::diff::unified(a, b); // crate::gguf in a comment\n";
    let names: Vec<String> = crate_modules(text).into_iter().map(|(_, m)| m).collect();
    assert_eq!(names, ["tasks", "cancel", "hub", "docs"]);
}
