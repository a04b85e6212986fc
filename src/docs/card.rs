//! A model's card as the docs phase onboards it: moved out of
//! `CANDIDATES/` with every link to it rewritten, or written from a
//! template; its measured figures filled in; the model tables refreshed.
//! Every edit is made in a change set and link-checked there, so a broken
//! link this would make fails it before anything is written.

use super::blocks;
use super::catalog::{self, Catalog, Measured, Place, CANDIDATES, RETIRED};
use super::links::{self, LinkEdit};
use super::tree::{dir_of, relative, Change, Changeset, Disk, Kind, Scope, Source};
use crate::workflow::task::FileChange;
use crate::workflow::template;
use crate::workspace::{Manifest, Workspace};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The block inside a card that holds the model's measured figures.
pub const MEASURED_BLOCK: &str = "measured";

/// The card template: the workspace's file, or the built-in one when that
/// file does not exist.
pub struct CardTemplate {
    /// As the workflow names it (relative to the workspace), for messages.
    pub name: String,
    pub path: PathBuf,
    pub builtin: &'static str,
}

/// What onboarding a card is asked to do.
pub struct OnboardCard<'a> {
    pub manifest: &'a Manifest,
    /// The card's file name in the docs directory ([`file_name`]).
    pub card_name: String,
    pub template: CardTemplate,
    /// Facts evaluate found, shown in a new card.
    pub facts: &'a BTreeMap<String, Value>,
    pub measured: Measured,
    /// Pages (relative to the workspace) that get a models table appended.
    pub tables: Vec<PathBuf>,
}

/// The edits of one run, computed but not yet written.
pub struct CardChanges {
    pub cs: Changeset,
    pub card: PathBuf,
    pub candidate: PathBuf,
    pub moved: bool,
    pub created: bool,
    pub edits: Vec<LinkEdit>,
    /// The template a new card came from, in words.
    pub template_used: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// The request itself is wrong (a value out of range, a template that
    /// does not render).
    #[error("{0}")]
    Params(String),
    #[error("{0}")]
    Failed(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn failed(e: impl std::fmt::Display) -> CardError {
    CardError::Failed(e.to_string())
}

/// The card's file name: `requested`, else the manifest's `card.doc` or its
/// name with spaces as `-`; `.md` added when missing.
pub fn file_name(requested: Option<&str>, manifest: &Manifest) -> Result<String, CardError> {
    let name = requested.map_or_else(|| catalog::card_name(manifest), str::to_string);
    let name = if name.ends_with(".md") {
        name
    } else {
        format!("{name}.md")
    };
    if name.contains('/') || name.starts_with('.') {
        return Err(CardError::Params(format!(
            "`card: {name}` must be a file name (no `/`), e.g. `{}.md`",
            manifest.name.replace(' ', "-")
        )));
    }
    Ok(name)
}

/// Computes every edit of onboarding the card and link-checks them; writes
/// nothing.
pub fn onboard(ws: &Workspace, req: OnboardCard<'_>) -> Result<CardChanges, CardError> {
    let manifest = req.manifest;
    let paths = &ws.config.paths;
    for (name, v) in [
        ("humaneval_base", req.measured.humaneval_base),
        ("humaneval_plus", req.measured.humaneval_plus),
    ] {
        if v.is_some_and(|v| !(0.0..=100.0).contains(&v)) {
            return Err(CardError::Params(format!(
                "`{name}` is a pass@1 percentage from 0 to 100; got {}",
                v.unwrap_or_default()
            )));
        }
    }
    let card_name = &req.card_name;
    let docs = PathBuf::from(&paths.docs);
    let candidate = docs.join(CANDIDATES).join(card_name);
    let card = docs.join(card_name);
    let retired = docs.join(RETIRED).join(card_name);

    let mut cs = Changeset::new(Disk::new(&ws.root, Scope::from_paths(paths)));
    let before: BTreeSet<(PathBuf, String)> = links::check(&cs)
        .broken
        .into_iter()
        .map(|b| {
            let file = if b.file == candidate {
                card.clone()
            } else {
                b.file
            };
            (file, b.dest)
        })
        .collect();

    let mut moved = false;
    let mut created = false;
    let mut edits: Vec<LinkEdit> = Vec::new();
    let mut template_used = req.template.name.clone();
    if cs.kind(&candidate) == Kind::File {
        edits = links::move_file(&mut cs, &candidate, &card).map_err(failed)?;
        moved = true;
    } else if cs.kind(&card) != Kind::File {
        if cs.kind(&retired) == Kind::File {
            return Err(failed(format!(
                "{} exists: `{}` was retired. To onboard it again, move its card back to {} (e.g. `git mv`), then rerun",
                retired.display(),
                manifest.id,
                candidate.display()
            )));
        }
        let source = match std::fs::read_to_string(&req.template.path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                template_used = "the built-in card template".to_string();
                req.template.builtin.to_string()
            }
            Err(source) => {
                return Err(CardError::Io {
                    path: req.template.path.clone(),
                    source,
                })
            }
        };
        let readme = (cs.kind(Path::new("README.md")) == Kind::File)
            .then(|| relative(&dir_of(&card), Path::new("README.md")));
        let values = serde_json::json!({
            "model": manifest.id,
            "manifest": manifest,
            "facts": req.facts,
            "readme": readme,
            "measured_block": MEASURED_BLOCK,
        });
        let text = template::render_file(&req.template.name, &source, &values).map_err(|e| {
            CardError::Params(format!(
                "{}{}: {e}",
                req.template.name,
                e.line.map(|l| format!(":{l}")).unwrap_or_default()
            ))
        })?;
        cs.write(&card, text);
        created = true;
    }

    // The tables and the card's figures, from the workspace plus what
    // this run measured.
    let mut catalog = Catalog::load(ws, &cs).map_err(failed)?;
    let info = catalog.get_mut(&manifest.id).ok_or_else(|| {
        failed(format!(
            "no manifest `{}` in {}",
            manifest.id,
            ws.models_dir().display()
        ))
    })?;
    info.apply(&req.measured);
    info.card_name = card_name.clone();
    info.card = Some(card.clone());
    info.place = Some(Place::Onboarded);
    let info = info.clone();
    let card_text = cs.read(&card).unwrap_or_default();
    match blocks::replace(
        &card_text,
        MEASURED_BLOCK,
        &measured_block(&info, &card, &cs),
    ) {
        Ok(Some(text)) => cs.write(&card, text),
        Ok(None) => {}
        Err((line, message)) => {
            return Err(failed(format!("{}:{line}: {message}", card.display())))
        }
    }
    blocks::refresh_models(&mut cs, &catalog, &req.tables).map_err(failed)?;

    // Fail on any broken link this step would make.
    let touched = cs.touched();
    let made: Vec<String> = links::check(&cs)
        .broken
        .into_iter()
        .filter(|b| {
            touched.contains(&b.file) && !before.contains(&(b.file.clone(), b.dest.clone()))
        })
        .map(|b| b.to_string())
        .collect();
    if !made.is_empty() {
        return Err(failed(format!(
            "the docs step would leave {} broken link(s); nothing was written:\n{}",
            made.len(),
            made.join("\n")
        )));
    }
    Ok(CardChanges {
        cs,
        card,
        candidate,
        moved,
        created,
        edits,
        template_used,
    })
}

/// What applying `cs` would do, file by file (`onboard plan --diff`).
pub fn file_changes(cs: &Changeset) -> Vec<FileChange> {
    cs.changes()
        .into_iter()
        .map(|c| match c {
            Change::Create(p) => FileChange {
                before: None,
                after: cs.read(&p),
                path: p,
            },
            Change::Modify(p) => FileChange {
                before: cs.disk.read(&p),
                after: cs.read(&p),
                path: p,
            },
            Change::Remove(p) | Change::RemoveDir(p) => FileChange {
                before: cs.disk.read(&p),
                after: None,
                path: p,
            },
        })
        .collect()
}

/// The figures block of a card, links relative to the card.
pub fn measured_block(info: &catalog::ModelInfo, card: &Path, src: &impl Source) -> String {
    let dash = || "—".to_string();
    let mut out = String::from("| Measured on this machine | |\n|---|---|\n");
    out.push_str(&format!(
        "| Speed | {} |\n",
        info.speed_text().unwrap_or_else(dash)
    ));
    out.push_str(&format!(
        "| Context | {} |\n",
        info.context().map_or_else(dash, |c| c.to_string())
    ));
    match info.results.as_ref() {
        // Base tests only (the offline dataset) is labelled as such: never
        // passed off as HumanEval+.
        Some(r) if r.plus.is_none() => {
            let label = r
                .benchmark
                .as_deref()
                .unwrap_or("HumanEval (base tests only)");
            let tasks = r.tasks.map(|t| format!(", {t} tasks")).unwrap_or_default();
            let label = label.replace('|', "\\|");
            out.push_str(&format!("| {label} pass@1{tasks} | {:.1} |\n", r.base));
        }
        Some(r) => {
            out.push_str(&format!("| HumanEval+ pass@1 (base) | {:.1} |\n", r.base));
            out.push_str(&format!(
                "| HumanEval+ pass@1 (plus) | {} |\n",
                r.plus.map_or_else(dash, |p| format!("{p:.1}"))
            ));
        }
        None => {
            out.push_str(&format!("| HumanEval+ pass@1 (base) | {} |\n", dash()));
            out.push_str(&format!("| HumanEval+ pass@1 (plus) | {} |\n", dash()));
        }
    }
    if let Some(chart) = info
        .results
        .as_ref()
        .and_then(|r| r.chart.as_ref())
        .and_then(|c| crate::docs::tree::normalize(Path::new(c)))
        .filter(|c| src.kind(c) == Kind::File)
    {
        out.push_str(&format!(
            "\n![HumanEval+ pass@1]({})\n",
            catalog::link_path(&relative(&dir_of(card), &chart))
        ));
    }
    out
}
