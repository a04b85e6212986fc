//! `uses: compare` — after the models of a run are benchmarked and
//! documented: the HumanEval comparison over every onboarded model
//! (`benchmarks/report.md` and its chart) and the retirement advice
//! (`reports/retirement.md`). A `once` step: one run of three models writes
//! them once, at the end, not three times. The advice is advice: nothing is
//! retired here (`onboard retire <id>` does that, as a dry run first).

use super::{Task, TaskContext, TaskError, WorkspaceContext};
use crate::atomic;
use crate::bench::report;
use crate::docs::catalog::Catalog;
use crate::docs::retire;
use crate::docs::tree::{Disk, Scope};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub struct Compare;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompareParams {
    /// The benchmark summaries (one `<model>.json` each), workspace-relative.
    #[serde(default = "default_results")]
    pub results: String,
    /// Where `report.md` and `report.svg` go, workspace-relative.
    #[serde(default = "default_out")]
    pub out: String,
    /// The retirement advice, workspace-relative.
    #[serde(default = "default_advice")]
    pub advice: String,
}

fn default_results() -> String {
    "benchmarks/results".into()
}
fn default_out() -> String {
    "benchmarks".into()
}
fn default_advice() -> String {
    "reports/retirement.md".into()
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CompareOutputs {
    /// The comparison report, workspace-relative.
    pub report: String,
    pub chart: String,
    /// The retirement advice, workspace-relative.
    pub advice: String,
    /// Benchmarked models in the report.
    pub models: usize,
    /// Models the advice recommends retiring (`onboard retire <id>`).
    pub retire: Vec<String>,
}

impl Compare {
    fn paths(
        params: &CompareParams,
        ctx: &TaskContext,
    ) -> Result<(PathBuf, PathBuf, PathBuf), TaskError> {
        Ok((
            ctx.path(&params.results)?,
            ctx.path(&params.out)?,
            ctx.path(&params.advice)?,
        ))
    }
}

impl Task for Compare {
    const KIND: &'static str = "compare";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "Compare every onboarded model: the benchmark report and the retirement advice";
    type Params = CompareParams;
    type Outputs = CompareOutputs;

    /// Every summary: a model benchmarked since makes the report stale.
    fn input_files(
        &self,
        params: &CompareParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        let dir = ctx.path(&params.results)?;
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(TaskError::io(&dir, e)),
        };
        files.sort();
        Ok(files)
    }

    fn output_files(
        &self,
        params: &CompareParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        let (_, out, advice) = Self::paths(params, ctx)?;
        Ok(vec![out.join("report.md"), out.join("report.svg"), advice])
    }

    async fn run(
        &self,
        params: CompareParams,
        ctx: TaskContext,
    ) -> Result<CompareOutputs, TaskError> {
        let (results, out, advice_path) = Self::paths(&params, &ctx)?;
        let _shared = ctx.lock_shared_files()?;
        let ws = ctx.workspace()?;
        let rows = report::rows(&ws, &results).map_err(|e| TaskError::failed(e.to_string()))?;
        report::write(&rows, &out).map_err(|e| TaskError::failed(e.to_string()))?;
        let disk = Disk::new(&ws.root, Scope::from_paths(&ws.config.paths));
        let catalog = Catalog::load(&ws, &disk).map_err(|e| TaskError::failed(e.to_string()))?;
        let advice = retire::advise(&catalog);
        let retire: Vec<String> = advice
            .advice
            .iter()
            .filter(|a| a.verdict == retire::Verdict::Retire)
            .map(|a| a.old.clone())
            .collect();
        let text = advice.markdown();
        atomic::write_if_changed(&advice_path, text.as_bytes())
            .map_err(|e| TaskError::io(&advice_path, e))?;
        let rel = |p: &PathBuf| {
            p.strip_prefix(&ctx.workspace)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        };
        ctx.log(&format!(
            "{} benchmarked model(s) compared; retirement advised for: {}",
            rows.len(),
            if retire.is_empty() {
                "none".to_string()
            } else {
                retire.join(", ")
            }
        ));
        Ok(CompareOutputs {
            report: rel(&out.join("report.md")),
            chart: rel(&out.join("report.svg")),
            advice: rel(&advice_path),
            models: rows.len(),
            retire,
        })
    }
}
