//! `uses: docs` — phase 8: the model's card moves from
//! `documentation/CANDIDATES/` to `documentation/` with every link to it
//! (and every relative link inside it) rewritten; a model without a card
//! gets one from a template; the generated model tables are refreshed.
//! The card's logic lives in `crate::docs::card`.

use super::{FileChange, Task, TaskContext, TaskError, WorkspaceContext};
use crate::docs::card::{self, CardChanges, CardError, CardTemplate, OnboardCard};
use crate::docs::catalog::Measured;
use crate::docs::tree::Change;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

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

fn card_error(e: CardError) -> TaskError {
    match e {
        CardError::Params(m) => TaskError::Params(m),
        CardError::Failed(message) => TaskError::Failed {
            message,
            retryable: false,
        },
        CardError::Io { path, source } => TaskError::io(&path, source),
    }
}

impl Docs {
    /// Every edit of this run, computed and link-checked; nothing written.
    fn prepare(params: &DocsParams, ctx: &TaskContext) -> Result<CardChanges, TaskError> {
        let manifest = &ctx.run_settings()?.manifest;
        let ws = ctx.workspace()?;
        if let Some(chart) = &params.chart {
            ctx.path(chart)?;
        }
        let tables = params
            .tables
            .iter()
            .map(|t| ctx.path(t).map(|_| PathBuf::from(t)))
            .collect::<Result<_, _>>()?;
        let request = OnboardCard {
            manifest,
            card_name: card::file_name(params.card.as_deref(), manifest).map_err(card_error)?,
            template: CardTemplate {
                name: params.template.clone(),
                path: ctx.path(&params.template)?,
                builtin: BUILTIN_TEMPLATE,
            },
            facts: &params.facts,
            measured: Measured {
                speed_tps: params.measured_speed_tps,
                humaneval_base: params.humaneval_base,
                humaneval_plus: params.humaneval_plus,
                chart: params.chart.clone(),
            },
            tables,
        };
        card::onboard(&ws, request).map_err(card_error)
    }
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
        let name = card::file_name(params.card.as_deref(), &ctx.run_settings()?.manifest)
            .map_err(card_error)?;
        Ok(vec![ctx.path(&ctx.paths().docs)?.join(name)])
    }

    fn preview(
        &self,
        params: &DocsParams,
        ctx: &TaskContext,
    ) -> Result<Option<Vec<FileChange>>, TaskError> {
        let changes = card::file_changes(&Docs::prepare(params, ctx)?.cs);
        Ok(Some(changes))
    }

    async fn run(&self, params: DocsParams, ctx: TaskContext) -> Result<DocsOutputs, TaskError> {
        let _shared = ctx.lock_shared_files()?;
        let CardChanges {
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
