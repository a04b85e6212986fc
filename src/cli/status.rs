//! `onboard status [model]`: the last recorded result of every step of one
//! model, or one line per model of the workspace. Read from the state store
//! alone (records, running markers, run locks): it never takes a lock, so
//! it is safe next to running onboardings and answers at once.

use super::load;
use super::{error, Format, FormatArg, EXIT_FAILED, EXIT_OK};
use crate::source::{Diagnostic, Document};
use crate::tasks::Registry;
use crate::workflow::graph::Dag;
use crate::workflow::spec::Workflow;
use crate::workflow::state::{RecordStatus, StateStore};
use crate::workflow::validate::check_workflow;
use crate::workspace::{self, ManifestError, Workspace};
use clap::Args;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The model (a manifest id under models/); without it, one line per
    /// model that has a manifest or recorded state.
    model: Option<String>,
    #[command(flatten)]
    format: FormatArg,
    /// Read the steps from this workflow (a name under workflows/ or a
    /// path) instead of the manifest's or the workspace default.
    #[arg(long, value_name = "NAME|PATH")]
    workflow: Option<String>,
}

pub fn status(dir: &Path, args: &StatusArgs) -> i32 {
    match &args.model {
        Some(model) => one_model(dir, model, args),
        None => every_model(dir, args),
    }
}

fn one_model(dir: &Path, model: &str, args: &StatusArgs) -> i32 {
    let loaded = match load::for_model(dir, model, args.workflow.as_deref()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let dag = Dag::new(&loaded.workflow);
    let mut rows = Vec::new();
    for id in dag.order() {
        let record = match loaded.store.record(id) {
            Ok(r) => r,
            Err(e) => {
                error(&e.to_string());
                return EXIT_FAILED;
            }
        };
        let interrupted = loaded.store.marker(id).is_some();
        rows.push((id.clone(), record, interrupted));
    }
    if args.format == Format::Json {
        let doc: Vec<_> = rows
            .iter()
            .map(|(id, rec, interrupted)| {
                serde_json::json!({
                    "step": id,
                    "status": match (rec, interrupted) {
                        (_, true) => "interrupted",
                        (None, _) => "never_run",
                        (Some(r), _) if r.status == RecordStatus::Done => "done",
                        (Some(r), _) if r.status == RecordStatus::Interrupted => "interrupted",
                        _ => "failed",
                    },
                    "finished_at": rec.as_ref().map(|r| &r.finished_at),
                    "duration_ms": rec.as_ref().map(|r| r.duration_ms),
                    "attempts": rec.as_ref().map(|r| r.attempts),
                    "error": rec.as_ref().and_then(|r| r.error.as_ref()),
                    "outputs": rec.as_ref().map(|r| &r.outputs),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return EXIT_OK;
    }
    println!(
        "status of `{}` (workflow `{}`):",
        loaded.model, loaded.workflow.name
    );
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (id, rec, interrupted) in &rows {
        let line = match (rec, interrupted) {
            (_, true) => "interrupted (a run stopped during this step)".to_string(),
            (None, _) => "never run".to_string(),
            (Some(r), _) => {
                let what = match r.status {
                    RecordStatus::Done => "done",
                    RecordStatus::Failed => "failed",
                    RecordStatus::Interrupted => "interrupted",
                };
                let mut s = format!(
                    "{what} {} ({:.1}s, {} attempt(s))",
                    r.finished_at,
                    r.duration_ms as f64 / 1000.0,
                    r.attempts
                );
                if let Some(e) = &r.error {
                    s.push_str(&format!(": {}", e.lines().next().unwrap_or("")));
                }
                s
            }
        };
        println!("  {id:<width$}  {line}");
    }
    EXIT_OK
}

/// One model's line of `onboard status` (an object of `--format json`).
#[derive(Debug, Serialize)]
struct Overview {
    model: String,
    /// Steps whose last record is `done`; `None` when the model's manifest
    /// or workflow cannot be read.
    done: Option<usize>,
    total: Option<usize>,
    /// The step recorded most recently (the later in the workflow of two
    /// in the same second).
    last: Option<Last>,
    /// The first step, in the workflow's order, that did not finish.
    failed: Option<Failed>,
    running: Option<Running>,
    /// The first step, in the workflow's order, not done yet.
    next: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Last {
    step: String,
    status: &'static str,
    finished_at: String,
}

#[derive(Debug, Serialize)]
struct Failed {
    step: String,
    /// `failed`, `interrupted`, or `damaged` (an unreadable record).
    status: &'static str,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Running {
    /// `running` (a step's process is alive) or `waiting` (a run holds the
    /// model's lock but runs no step: waiting for a resource, another
    /// model's step, or between steps).
    state: &'static str,
    step: Option<String>,
    pid: u32,
    since: String,
}

impl Overview {
    fn broken(model: &str, error: String) -> Overview {
        Overview {
            model: model.to_string(),
            done: None,
            total: None,
            last: None,
            failed: None,
            running: None,
            next: None,
            error: Some(error),
        }
    }
}

fn every_model(dir: &Path, args: &StatusArgs) -> i32 {
    let ws = match load::open_workspace(dir) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let registry = Registry::builtin();
    // Most models share a workflow: read and check each once.
    let mut workflows: BTreeMap<String, Result<Workflow, String>> = BTreeMap::new();
    let lines: Vec<Overview> = model_ids(&ws)
        .iter()
        .map(|model| {
            overview(
                &ws,
                &registry,
                model,
                args.workflow.as_deref(),
                &mut workflows,
            )
        })
        .collect();
    if args.format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&lines).unwrap_or_default()
        );
    } else if lines.is_empty() {
        println!(
            "no models: {} has no manifests and {} no state",
            relative(&ws, &ws.models_dir()),
            relative(&ws, &ws.state_dir())
        );
    } else {
        print!("{}", table(&lines));
    }
    EXIT_OK
}

/// Models with a manifest, and models with state but no manifest any more
/// (their line says so).
fn model_ids(ws: &Workspace) -> Vec<String> {
    let mut ids: BTreeSet<String> = ws.manifest_ids().into_iter().collect();
    for entry in std::fs::read_dir(ws.state_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if workspace::valid_model_id(&name).is_ok() && entry.path().join("steps").is_dir() {
            ids.insert(name);
        }
    }
    ids.into_iter().collect()
}

fn relative(ws: &Workspace, path: &Path) -> String {
    path.strip_prefix(&ws.root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn overview(
    ws: &Workspace,
    registry: &Registry,
    model: &str,
    workflow_override: Option<&str>,
    workflows: &mut BTreeMap<String, Result<Workflow, String>>,
) -> Overview {
    let manifest = match ws.load_manifest(model) {
        Ok(m) => m,
        Err(e) => return Overview::broken(model, manifest_problem(ws, e)),
    };
    let name = workflow_override
        .map(str::to_string)
        .or(manifest.workflow)
        .unwrap_or_else(|| ws.config.defaults.workflow.clone());
    let workflow = workflows
        .entry(name.clone())
        .or_insert_with(|| quiet_workflow(ws, registry, &name));
    match workflow {
        Ok(w) => state_of(&StateStore::new(&ws.state_dir(), model), w, model),
        Err(e) => Overview::broken(model, e.clone()),
    }
}

/// The first finding, for one line (`onboard validate` lists them all).
fn manifest_problem(ws: &Workspace, e: ManifestError) -> String {
    match e {
        ManifestError::NotFound { path, .. } => {
            format!("no manifest ({} does not exist)", relative(ws, &path))
        }
        ManifestError::Invalid(diags) => first_finding(ws, "manifest", &diags),
        other => other.to_string(),
    }
}

fn first_finding(ws: &Workspace, what: &str, diags: &[Diagnostic]) -> String {
    let Some(d) = diags.first() else {
        return format!("the {what} cannot be read");
    };
    let more = match diags.len() {
        1 => String::new(),
        n => format!(" (and {} more; see `onboard validate`)", n - 1),
    };
    format!(
        "{what} {}:{}:{}: {}{more}",
        relative(ws, &d.file),
        d.line,
        d.col,
        d.message
    )
}

/// A workflow read and checked without printing: a broken one is that
/// model's line, not the command's failure.
fn quiet_workflow(ws: &Workspace, registry: &Registry, name: &str) -> Result<Workflow, String> {
    let path = ws.workflow_path(name);
    if !path.exists() {
        return Err(format!(
            "no workflow `{name}` ({} does not exist)",
            relative(ws, &path)
        ));
    }
    let doc = Document::read(&path).map_err(|d| first_finding(ws, "workflow", &[d]))?;
    let (workflow, diags) = check_workflow(&doc, registry, &workspace::template_roots().into());
    workflow.ok_or_else(|| first_finding(ws, "workflow", &diags))
}

/// What the records, markers and run lock of one model say.
fn state_of(store: &StateStore, workflow: &Workflow, model: &str) -> Overview {
    let dag = Dag::new(workflow);
    let mut done = BTreeSet::new();
    let mut recorded = BTreeSet::new();
    let mut last: Option<Last> = None;
    let mut failed: Option<Failed> = None;
    let mut running: Option<Running> = None;
    for id in dag.order() {
        // A marker says more than the record: the step is running again,
        // or a run stopped during it.
        if let Some(marker) = store.marker(id) {
            recorded.insert(id.as_str());
            if crate::atomic::process_alive(marker.pid) {
                running.get_or_insert(Running {
                    state: "running",
                    step: Some(id.clone()),
                    pid: marker.pid,
                    since: marker.started_at,
                });
            } else {
                failed.get_or_insert(Failed {
                    step: id.clone(),
                    status: "interrupted",
                    error: Some("a run stopped during this step".into()),
                });
            }
            continue;
        }
        let record = match store.record(id) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                recorded.insert(id.as_str());
                failed.get_or_insert(Failed {
                    step: id.clone(),
                    status: "damaged",
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        recorded.insert(id.as_str());
        let status = match record.status {
            RecordStatus::Done => "done",
            RecordStatus::Failed => "failed",
            RecordStatus::Interrupted => "interrupted",
        };
        if record.status == RecordStatus::Done {
            done.insert(id.as_str());
        } else {
            failed.get_or_insert(Failed {
                step: id.clone(),
                status,
                error: record.error.clone(),
            });
        }
        if last
            .as_ref()
            .is_none_or(|l| record.finished_at >= l.finished_at)
        {
            last = Some(Last {
                step: id.clone(),
                status,
                finished_at: record.finished_at,
            });
        }
    }
    if running.is_none() {
        running = lock_holder(store);
    }
    // A step whose `when` was false leaves no record: once a step after it
    // has one, the run has gone past it.
    let passed = |id: &str| {
        workflow.step(id).is_some_and(|s| s.when.is_some())
            && !recorded.contains(id)
            && dag
                .descendants(id)
                .iter()
                .any(|d| recorded.contains(d.as_str()))
    };
    let next = dag
        .order()
        .iter()
        .find(|id| !done.contains(id.as_str()) && !passed(id))
        .cloned();
    Overview {
        model: model.to_string(),
        done: Some(done.len()),
        total: Some(dag.order().len()),
        last,
        failed,
        running,
        next,
        error: None,
    }
}

/// A live run holding the model's lock (`pid N, started T` in the lock
/// file) while no step of it runs.
fn lock_holder(store: &StateStore) -> Option<Running> {
    let text = std::fs::read_to_string(store.dir().join("lock")).ok()?;
    let (pid, since) = text.trim().strip_prefix("pid ")?.split_once(", started ")?;
    let pid: u32 = pid.parse().ok()?;
    crate::atomic::process_alive(pid).then(|| Running {
        state: "waiting",
        step: None,
        pid,
        since: since.to_string(),
    })
}

/// Longest error text on a line of the table.
const ERROR_WIDTH: usize = 60;

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.chars().count() > ERROR_WIDTH {
        let cut: String = line.chars().take(ERROR_WIDTH - 1).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

/// `qwen3.5-27b  5/9 done  failed: context_test (…)  next: context_test`,
/// one line per model, in columns.
fn table(lines: &[Overview]) -> String {
    let rows: Vec<(String, String, String, String)> = lines
        .iter()
        .map(|o| {
            let (Some(done), Some(total)) = (o.done, o.total) else {
                let message = o.error.as_deref().unwrap_or("unknown");
                return (
                    o.model.clone(),
                    "-".into(),
                    format!("error: {}", first_line(message)),
                    String::new(),
                );
            };
            let count = format!("{done}/{total} done");
            let state = match (&o.running, &o.failed, &o.last) {
                (Some(r), _, _) => match &r.step {
                    Some(step) => format!("running: {step} (pid {}, since {})", r.pid, r.since),
                    None => format!("waiting (run pid {}, since {})", r.pid, r.since),
                },
                (None, Some(f), _) => match &f.error {
                    Some(e) if f.status != "interrupted" => {
                        format!("{}: {} ({})", f.status, f.step, first_line(e))
                    }
                    _ => format!("{}: {}", f.status, f.step),
                },
                (None, None, Some(l)) => format!("last: {} {}", l.step, l.finished_at),
                (None, None, None) => "never run".into(),
            };
            let next = match (&o.running, &o.next) {
                (None, Some(next)) => format!("next: {next}"),
                _ => String::new(),
            };
            (o.model.clone(), count, state, next)
        })
        .collect();
    let width = |f: fn(&(String, String, String, String)) -> &String| {
        rows.iter().map(|r| f(r).chars().count()).max().unwrap_or(0)
    };
    let (w_model, w_count) = (width(|r| &r.0), width(|r| &r.1));
    let w_state = width(|r| if r.3.is_empty() { &r.3 } else { &r.2 });
    let mut out = String::new();
    for (model, count, state, next) in &rows {
        let line = if next.is_empty() {
            format!("{model:<w_model$}  {count:<w_count$}  {state}")
        } else {
            format!("{model:<w_model$}  {count:<w_count$}  {state:<w_state$}  {next}")
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(model: &str, done: usize, failed: Option<&str>, next: Option<&str>) -> Overview {
        Overview {
            model: model.into(),
            done: Some(done),
            total: Some(3),
            last: None,
            failed: failed.map(|step| Failed {
                step: step.into(),
                status: "failed",
                error: Some(format!("{} and more\nsecond line", "x".repeat(70))),
            }),
            running: None,
            next: next.map(str::to_string),
            error: None,
        }
    }

    #[test]
    fn the_table_aligns_columns_and_shortens_errors_to_one_line() {
        let lines = [
            line("a-long-model", 1, Some("b"), Some("b")),
            line("m", 0, None, Some("a")),
            Overview::broken("z", "no manifest (models/z.yaml does not exist)".into()),
        ];
        let text = table(&lines);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[0].starts_with("a-long-model  1/3 done  failed: b (xxx"));
        assert!(rows[0].contains("…)  next: b"), "{text}");
        assert!(!text.contains("second line"));
        // In characters: `…` is three bytes.
        let column = |row: &str, text: &str| row.find(text).map(|i| row[..i].chars().count());
        assert_eq!(
            column(rows[1], "next: a"),
            column(rows[0], "next: b"),
            "the next column lines up:\n{text}"
        );
        assert!(rows[1].starts_with("m             0/3 done  never run "));
        assert_eq!(
            rows[2],
            "z             -         error: no manifest (models/z.yaml does not exist)"
        );
    }
}
