//! The layers' rules, read from the source: a layer names only the layers
//! below it, and the files of one module never import each other in a
//! circle. ARCHITECTURE.md gives the table:
//!
//! | Layer | Modules | Must not name |
//! |---|---|---|
//! | source | `source` | anything of onboard |
//! | utilities | `atomic`, `cancel`, `crashpoint`, `digest`, `secrets`, `retry` | the workflow engine and everything above |
//! | workflow engine | `workflow` | the phases, the domain libraries, the CLI |
//! | domain libraries | `gguf`, `hub`, `engine`, `evaluate`, `profile`, `samplers`, `bench`, `docs`, `workspace`, `process` | the tasks, the CLI |
//! | tasks | `tasks` | the CLI |
//! | CLI | `cli`, `main.rs` | — |

use onboard_test_support::walk_files;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const UTILITIES: &[&str] = &[
    "atomic",
    "cancel",
    "crashpoint",
    "digest",
    "secrets",
    "retry",
];

const DOMAIN: &[&str] = &[
    "gguf",
    "hub",
    "engine",
    "evaluate",
    "profile",
    "bench",
    "docs",
    "workspace",
    "process",
    "samplers",
];

/// What the workflow engine must not name: the phases, the libraries they
/// call, the CLI.
fn above_workflow() -> Vec<&'static str> {
    let mut above = DOMAIN.to_vec();
    above.extend(["tasks", "cli"]);
    above
}

/// Each layer (a module under `src/`: a folder or a file) and the
/// top-level modules of the crate it must not name.
fn rules() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut above_utilities = above_workflow();
    above_utilities.push("workflow");
    let mut above_source = above_utilities.clone();
    above_source.extend_from_slice(UTILITIES);
    let mut rules = vec![
        ("source", above_source),
        ("workflow", above_workflow()),
        ("tasks", vec!["cli"]),
    ];
    rules.extend(UTILITIES.iter().map(|u| (*u, above_utilities.clone())));
    rules.extend(DOMAIN.iter().map(|d| (*d, vec!["tasks", "cli"])));
    rules
}

/// A module's files: the folder's Rust files, or the single file.
fn module_files(src: &Path, module: &str) -> Vec<PathBuf> {
    let file = src.join(format!("{module}.rs"));
    let mut files = rust_files(&src.join(module));
    if file.is_file() {
        files.push(file);
    }
    files
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
    names_after(text, "crate::")
}

/// The names right after `prefix` (`crate::engine::`, `super::`), with the
/// line of each, braces included.
fn names_after(text: &str, prefix: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            // Part of a longer path (`x::crate::`, `self::super::`): not a
            // name of this folder's.
            let preceded =
                rest[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
            rest = &rest[at + prefix.len()..];
            if preceded {
                continue;
            }
            // `super::super::x` from an inline module of a file names the
            // file's sibling `x` too.
            if prefix == "super::" {
                rest = rest.trim_start_matches("super::");
            }
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
        let files = module_files(&src, layer);
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
            // `n` modules below the layer's root leaves it with n + 1 (checked
            // where the layer's files hold no inline modules).
            let Ok(relative) = file.strip_prefix(src.join(layer)) else {
                continue; // a single-file module has nowhere to reach out from
            };
            if !["workflow", "source"].contains(&layer) {
                continue;
            }
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
        "layer rules broken (see ARCHITECTURE.md):\n{}",
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

/// The sibling modules each file of `dir` names (`super::x`, `crate::m::x`),
/// keyed by the sibling it belongs to: a file `x.rs` and a folder `x/` are
/// one node. `mod.rs` is the parent that declares them all, not a node.
fn sibling_imports(src: &Path, dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let module_path: Vec<String> = dir
        .strip_prefix(src)
        .unwrap()
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let crate_prefix = format!("crate::{}::", module_path.join("::"));
    let node_of = |path: &Path| -> Option<String> {
        let first = path.strip_prefix(dir).ok()?.components().next()?;
        let name = first.as_os_str().to_string_lossy();
        let name = name.strip_suffix(".rs").unwrap_or(&name).to_string();
        (name != "mod").then_some(name)
    };
    let mut nodes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(dir) {
        let Some(node) = node_of(&file) else { continue };
        nodes.entry(node.clone()).or_default();
    }
    let names: BTreeSet<String> = nodes.keys().cloned().collect();
    for file in rust_files(dir) {
        let Some(node) = node_of(&file) else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        let mut named: Vec<String> = names_after(&text, &crate_prefix)
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        // `super::x` of a file right in the folder names a sibling.
        if file.parent() == Some(dir) {
            named.extend(names_after(&text, "super::").into_iter().map(|(_, n)| n));
        }
        let edges = nodes.get_mut(&node).unwrap();
        for n in named {
            if n != node && names.contains(&n) {
                edges.insert(n);
            }
        }
    }
    nodes
}

/// A circle in `graph`, as its nodes in order, if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_its_own_files_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![src.clone()];
    let mut circles = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            }
        }
        if dir == src {
            continue; // the crate's top level is the layer table's
        }
        if let Some(circle) = find_circle(&sibling_imports(&src, &dir)) {
            circles.push(format!(
                "src/{}: {}",
                dir.strip_prefix(&src).unwrap().display(),
                circle.join(" -> ")
            ));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_circle_finder_finds_circles_and_only_circles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(
        find_circle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])),
        None
    );
    assert_eq!(
        find_circle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let text = "use super::{llama_cpp::Batch, Engine};\nuse super::super::gguf;\nlet x = crate::engine::worker::emit();\n";
    let names: Vec<String> = names_after(text, "super::")
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(names, ["llama_cpp", "Engine", "gguf"]);
    let names: Vec<String> = names_after(text, "crate::engine::")
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(names, ["worker"]);
}
