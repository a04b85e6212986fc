//! `uses: docs` — phase 8: the model's card moves from
//! `documentation/CANDIDATES/` to `documentation/` with every link to it
//! (and every relative link inside it) rewritten; a model without a card
//! gets one from a template; the generated model tables are refreshed.
//!
//! All edits are computed over a change set first and link-checked there:
//! a broken link the step would make fails it before anything is written.

use super::{FileChange, Task, TaskContext, TaskError};
use crate::docs::blocks;
use crate::docs::catalog::{self, Catalog, Measured, Place, CANDIDATES, RETIRED};
use crate::docs::links::{self, LinkEdit};
use crate::docs::tree::{dir_of, relative, Change, Changeset, Disk, Kind, Scope, Source};
use crate::tasks::WorkspaceContext;
use crate::workflow::template;
use crate::workspace::{Manifest, Workspace};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub struct Docs;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocsParams {
    /// The card's file name in the docs directory (default: the manifest's
    /// `card.doc`, else its name with spaces as `-`, plus `.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<String>,
    /// The card template used when the model has no card, relative to the
    /// workspace (a built-in one is used when the file does not exist).
    #[serde(default = "default_template")]
    pub template: String,
    /// Facts evaluate found (architecture, memory, strategy…), shown in a
    /// new card.
    #[serde(default)]
    pub facts: BTreeMap<String, Value>,
    /// Decode speed measured by context-test, tokens/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub measured_speed_tps: Option<f64>,
    /// HumanEval+ pass@1 on the base tests, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub humaneval_base: Option<f64>,
    /// HumanEval+ pass@1 on base and plus tests, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub humaneval_plus: Option<f64>,
    /// The benchmark report's chart, relative to the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// Pages that get a models table appended when they have none (pages
    /// that already have a `<!-- onboard:models -->` block are always
    /// refreshed).
    #[serde(default)]
    pub tables: Vec<String>,
}

fn default_template() -> String {
    "templates/card.md.j2".into()
}

/// Used when the workspace has no card template of its own.
pub const BUILTIN_TEMPLATE: &str = include_str!("../../templates/card.md.j2");

/// The block inside a card that holds the model's measured figures.
pub const MEASURED_BLOCK: &str = "measured";

#[derive(Debug, Serialize, JsonSchema)]
pub struct DocsOutputs {
    /// The card, relative to the workspace.
    pub card: String,
    /// The card moved out of `CANDIDATES/` in this run.
    pub moved: bool,
    /// The card was written from the template in this run.
    pub created: bool,
    /// Links rewritten (`file:line: old -> new`).
    pub link_edits: Vec<String>,
    /// Files whose bytes changed.
    pub changed_files: Vec<String>,
    pub changed: bool,
}

fn params_error(e: impl std::fmt::Display) -> TaskError {
    TaskError::Params(e.to_string())
}

fn failed(e: impl std::fmt::Display) -> TaskError {
    TaskError::Failed {
        message: e.to_string(),
        retryable: false,
    }
}

/// The edits of one run, computed but not yet written.
struct Prepared {
    cs: Changeset,
    card: PathBuf,
    candidate: PathBuf,
    moved: bool,
    created: bool,
    edits: Vec<LinkEdit>,
    template_used: String,
}

impl Docs {
    /// Computes every edit over a change set and link-checks it; writes
    /// nothing.
    fn prepare(params: &DocsParams, ctx: &TaskContext) -> Result<Prepared, TaskError> {
        let manifest = &ctx.run_settings()?.manifest;
        let ws = Workspace::open(&ctx.workspace).map_err(|d| {
            failed(
                d.first()
                    .map_or("cannot open the workspace".into(), |d| d.message.clone()),
            )
        })?;
        let paths = &ws.config.paths;
        for (name, v) in [
            ("humaneval_base", params.humaneval_base),
            ("humaneval_plus", params.humaneval_plus),
        ] {
            if v.is_some_and(|v| !(0.0..=100.0).contains(&v)) {
                return Err(TaskError::Params(format!(
                    "`{name}` is a pass@1 percentage from 0 to 100; got {}",
                    v.unwrap_or_default()
                )));
            }
        }
        if let Some(chart) = &params.chart {
            ctx.path(chart)?;
        }
        let card_name = Docs::card_name(params, &manifest)?;
        let docs = PathBuf::from(&paths.docs);
        let candidate = docs.join(CANDIDATES).join(&card_name);
        let card = docs.join(&card_name);
        let retired = docs.join(RETIRED).join(&card_name);

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
        let mut template_used = params.template.clone();
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
            let template_path = ctx.path(&params.template)?;
            let source = match std::fs::read_to_string(&template_path) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    template_used = "the built-in card template".to_string();
                    BUILTIN_TEMPLATE.to_string()
                }
                Err(e) => return Err(TaskError::io(&template_path, e)),
            };
            let readme = (cs.kind(Path::new("README.md")) == Kind::File)
                .then(|| relative(&dir_of(&card), Path::new("README.md")));
            let values = serde_json::json!({
                "model": manifest.id,
                "manifest": manifest,
                "facts": params.facts,
                "readme": readme,
                "measured_block": MEASURED_BLOCK,
            });
            let text = template::render_file(&params.template, &source, &values).map_err(|e| {
                params_error(format!(
                    "{}{}: {e}",
                    params.template,
                    e.line.map(|l| format!(":{l}")).unwrap_or_default()
                ))
            })?;
            cs.write(&card, text);
            created = true;
        }

        // The tables and the card's figures, from the workspace plus what
        // this run measured.
        let mut catalog = Catalog::load(&ws, &cs).map_err(failed)?;
        let measured = Measured {
            speed_tps: params.measured_speed_tps,
            humaneval_base: params.humaneval_base,
            humaneval_plus: params.humaneval_plus,
            chart: params.chart.clone(),
        };
        let info = catalog.get_mut(&manifest.id).ok_or_else(|| {
            failed(format!(
                "no manifest `{}` in {}",
                manifest.id,
                ws.models_dir().display()
            ))
        })?;
        info.apply(&measured);
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
        let add: Vec<PathBuf> = params
            .tables
            .iter()
            .map(|t| ctx.path(t).map(|_| PathBuf::from(t)))
            .collect::<Result<_, _>>()?;
        blocks::refresh_models(&mut cs, &catalog, &add).map_err(failed)?;

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
        Ok(Prepared {
            cs,
            card,
            candidate,
            moved,
            created,
            edits,
            template_used,
        })
    }

    fn card_name(params: &DocsParams, manifest: &Manifest) -> Result<String, TaskError> {
        let name = params
            .card
            .clone()
            .unwrap_or_else(|| catalog::card_name(manifest));
        let name = if name.ends_with(".md") {
            name
        } else {
            format!("{name}.md")
        };
        if name.contains('/') || name.starts_with('.') {
            return Err(TaskError::Params(format!(
                "`card: {name}` must be a file name (no `/`), e.g. `{}.md`",
                manifest.name.replace(' ', "-")
            )));
        }
        Ok(name)
    }
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

impl Task for Docs {
    const KIND: &'static str = "docs";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Move the model's card out of CANDIDATES/ fixing every link, write a missing card, refresh the model tables";
    type Params = DocsParams;
    type Outputs = DocsOutputs;

    fn input_files(
        &self,
        params: &DocsParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        let template = ctx.path(&params.template)?;
        Ok(if template.exists() {
            vec![template]
        } else {
            Vec::new()
        })
    }

    /// The card: a person deleting or editing it makes the step run again
    /// (it is idempotent, so an unchanged tree stays unchanged).
    fn output_files(
        &self,
        params: &DocsParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        let name = Docs::card_name(params, &ctx.run_settings()?.manifest)?;
        Ok(vec![ctx.path(&ctx.paths().docs)?.join(name)])
    }

    fn preview(
        &self,
        params: &DocsParams,
        ctx: &TaskContext,
    ) -> Result<Option<Vec<FileChange>>, TaskError> {
        let prepared = Docs::prepare(params, ctx)?;
        let cs = &prepared.cs;
        let changes = cs
            .changes()
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
            .collect();
        Ok(Some(changes))
    }

    async fn run(&self, params: DocsParams, ctx: TaskContext) -> Result<DocsOutputs, TaskError> {
        let _shared = ctx.lock_shared_files()?;
        let Prepared {
            cs,
            card,
            candidate,
            moved,
            created,
            edits,
            template_used,
        } = Docs::prepare(&params, &ctx)?;
        let changes = cs.apply().map_err(|(path, e)| TaskError::io(&path, e))?;
        if moved {
            ctx.log(&format!(
                "moved {} -> {}",
                candidate.display(),
                card.display()
            ));
        }
        if created {
            ctx.log(&format!("wrote {} from {template_used}", card.display()));
        }
        let link_edits: Vec<String> = edits
            .iter()
            .map(|e| format!("{}:{}: {} -> {}", e.file.display(), e.line, e.old, e.new))
            .collect();
        for e in &link_edits {
            ctx.log(&format!("link {e}"));
        }
        let changed_files: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Create(p)
                | Change::Modify(p)
                | Change::Remove(p)
                | Change::RemoveDir(p) => p.display().to_string(),
            })
            .collect();
        Ok(DocsOutputs {
            card: card.display().to_string(),
            moved,
            created,
            link_edits,
            changed: !changed_files.is_empty(),
            changed_files,
        })
    }
}
