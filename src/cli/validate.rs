//! `onboard validate [PATHS…] [--format json|github]` — for CI and editors.

use super::load::print_diagnostics;
use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::source::diag::{github, Diagnostic};
use crate::source::yaml::Pos;
use crate::source::Document;
use crate::tasks::Registry;
use crate::workflow::validate::{check_resources, check_workflow};
use crate::workspace::{self, WorkspaceConfig, CONFIG_FILE};
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Files or directories to check (default: onboard.yaml, every workflow
    /// and every manifest of the workspace).
    paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = ValidateFormat::Human)]
    format: ValidateFormat,
    /// Short for `--format json`.
    #[arg(long)]
    json: bool,
}

impl ValidateArgs {
    /// Files named on the command line can be checked outside a workspace.
    pub fn has_paths(&self) -> bool {
        !self.paths.is_empty()
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ValidateFormat {
    /// Compiler-style findings with the offending line.
    Human,
    /// One JSON document.
    Json,
    /// GitHub Actions workflow commands: annotations on the pull request.
    Github,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum FileKind {
    Workflow,
    Manifest,
    Workspace,
}

#[derive(Serialize)]
struct Report {
    ok: bool,
    files: Vec<CheckedFile>,
    findings: Vec<Diagnostic>,
}

#[derive(Serialize)]
struct CheckedFile {
    path: PathBuf,
    kind: Option<FileKind>,
    findings: usize,
}

pub fn execute(workspace_dir: &Path, args: &ValidateArgs) -> i32 {
    // The workspace config decides where workflows and manifests live; a
    // broken one is itself a finding, so fall back to the default layout.
    let config = std::fs::read_to_string(workspace_dir.join(CONFIG_FILE))
        .ok()
        .and_then(|text| Document::parse(&workspace_dir.join(CONFIG_FILE), text).ok())
        .and_then(|doc| workspace::check_config(&doc).0)
        .unwrap_or_default();
    let files = if args.paths.is_empty() {
        default_files(workspace_dir, &config)
    } else {
        let mut files = Vec::new();
        for p in &args.paths {
            let p = &super::relative_to(workspace_dir, p);
            if p.is_dir() {
                files.extend(workspace::yaml_files(p));
            } else if p.is_file() {
                files.push(p.clone());
            } else {
                super::error(&format!("{}: no such file or directory", p.display()));
                return EXIT_USAGE;
            }
        }
        files
    };
    let (report, sources) = check_files(&files, &config);
    let format = if args.json {
        ValidateFormat::Json
    } else {
        args.format
    };
    match format {
        ValidateFormat::Github => {
            for d in &report.findings {
                println!("{}", github::annotation(d, &repo_relative(&d.file)));
            }
            // The human summary goes to the log, not into annotations.
            if report.ok {
                eprintln!("ok: {} file(s) checked, no findings", report.files.len());
            } else {
                eprintln!("{} finding(s)", report.findings.len());
            }
        }
        ValidateFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
        }
        ValidateFormat::Human => {
            let _ = sources;
            print_diagnostics(&report.findings);
            if report.ok {
                println!("ok: {} file(s) checked, no findings", report.files.len());
            } else {
                let bad = report.files.iter().filter(|f| f.findings > 0).count();
                eprintln!(
                    "{} finding(s) in {} of {} file(s)",
                    report.findings.len(),
                    bad,
                    report.files.len()
                );
            }
        }
    }
    if report.ok {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// A path as GitHub names files in annotations: relative to the checkout
/// (the working directory of the step), without `./`.
fn repo_relative(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let path = match (&cwd, path.is_absolute()) {
        (Some(cwd), true) => path.strip_prefix(cwd).unwrap_or(path),
        _ => path,
    };
    let clean: PathBuf = path
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    clean.to_string_lossy().into_owned()
}

fn default_files(dir: &Path, config: &WorkspaceConfig) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let cfg = dir.join(CONFIG_FILE);
    if cfg.is_file() {
        files.push(cfg);
    }
    files.extend(workspace::yaml_files(&dir.join(&config.paths.workflows)));
    files.extend(workspace::yaml_files(&dir.join(&config.paths.models)));
    files
}

fn classify(path: &Path, doc: &Document, config: &WorkspaceConfig) -> Option<FileKind> {
    if path.file_name().is_some_and(|n| n == CONFIG_FILE) {
        return Some(FileKind::Workspace);
    }
    let parent = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let workflows_name = Path::new(&config.paths.workflows)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let models_name = Path::new(&config.paths.models)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    if parent.is_some() && parent == workflows_name {
        return Some(FileKind::Workflow);
    }
    if parent.is_some() && parent == models_name {
        return Some(FileKind::Manifest);
    }
    // Elsewhere, tell by the keys a file of each kind must have.
    if doc.root.get("steps").is_some() {
        Some(FileKind::Workflow)
    } else if doc.root.get("hub").is_some() || doc.root.get("family").is_some() {
        Some(FileKind::Manifest)
    } else if ["hardware", "paths", "defaults"]
        .iter()
        .any(|k| doc.root.get(k).is_some())
    {
        Some(FileKind::Workspace)
    } else {
        None
    }
}

/// Checks every file, collecting all findings (never stops at the first).
fn check_files(files: &[PathBuf], config: &WorkspaceConfig) -> (Report, Vec<String>) {
    let registry = Registry::builtin();
    let roots = workspace::template_roots().into();
    let capacity = super::load::capacity_of(config);
    let mut report = Report {
        ok: true,
        files: Vec::new(),
        findings: Vec::new(),
    };
    let mut sources = Vec::new();
    for path in files {
        let (kind, diags) = match Document::read(path) {
            Err(d) => (None, vec![d]),
            Ok(doc) => {
                let kind = classify(path, &doc, config);
                let diags = match kind {
                    Some(FileKind::Workflow) => {
                        let mut diags = check_workflow(&doc, &registry, &roots).1;
                        diags.extend(check_resources(&doc, &capacity));
                        diags
                    }
                    Some(FileKind::Manifest) => workspace::check_manifest(&doc).1,
                    Some(FileKind::Workspace) => workspace::check_config(&doc).1,
                    None => vec![Diagnostic::new(
                        path,
                        Pos { line: 1, col: 1 },
                        "unknown-file",
                        "cannot tell whether this is a workflow, a manifest or onboard.yaml",
                    )
                    .with_help("a workflow has `steps:`, a manifest has `hub:`; or put the file under workflows/ or models/")],
                };
                sources.push(doc.source);
                (kind, diags)
            }
        };
        report.files.push(CheckedFile {
            path: path.clone(),
            kind,
            findings: diags.len(),
        });
        report.ok &= diags.is_empty();
        report.findings.extend(diags);
    }
    (report, sources)
}
