//! `onboard plan`, `onboard graph`.

use super::load::{self, Loaded};
use super::{error, SelectionArgs, EXIT_OK, EXIT_USAGE};
use crate::tasks::Registry;
use crate::workflow::graph::{self, Dag};
use crate::workflow::plan::{self, Action, Planner};
use crate::workflow::state::RecordStatus;
use clap::{Args, ValueEnum};
use std::path::Path;

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The models (manifest ids under models/): one plan each, as
    /// `onboard run` with the same models would start.
    #[arg(value_name = "MODEL", required = true)]
    models: Vec<String>,
    #[command(flatten)]
    selection: SelectionArgs,
    /// JSON: one document instead of a table.
    #[command(flatten)]
    format: super::FormatArg,
    /// Show what each step that would run changes, as a unified diff (for
    /// task kinds that can tell without running).
    #[arg(long)]
    diff: bool,
}

pub fn plan(dir: &Path, args: &PlanArgs) -> i32 {
    args.selection.refresh(dir, &args.models);
    let several = args.models.len() > 1;
    if several && args.format.json() {
        println!("[");
    }
    let mut code = EXIT_OK;
    for (i, model) in args.models.iter().enumerate() {
        if i > 0 {
            println!("{}", if args.format.json() { "," } else { "" });
        }
        code = code.max(plan_one(dir, model, args));
    }
    if several {
        if args.format.json() {
            println!("]");
        } else {
            println!(
                "\nrun together (`onboard run {}`): steps that hold a resource (the steps that load a model \
                 hold `gpu`) take turns in this order, a step that checks every model's share (download's \
                 disk check) waits for all of them, and `once` steps run once, after every model",
                args.models.join(" ")
            );
        }
    }
    code
}

fn plan_one(dir: &Path, model: &str, args: &PlanArgs) -> i32 {
    let loaded = match load::for_model(dir, model, args.selection.workflow.as_deref()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let dag = Dag::new(&loaded.workflow);
    let planner = planner(&loaded, &dag);
    let steps = match plan::plan(&planner, &args.selection.selection()) {
        Ok(s) => s,
        Err(e) => {
            error(&e);
            return EXIT_USAGE;
        }
    };
    let diffs: Vec<(String, String)> = if args.diff {
        steps
            .iter()
            .filter(|s| s.action == Action::Run)
            .map(|s| (s.step.clone(), preview(&loaded, &planner, s)))
            .collect()
    } else {
        Vec::new()
    };
    if args.format.json() {
        let mut doc = serde_json::json!({
            "model": loaded.model,
            "workflow": loaded.workflow.name,
            "steps": steps,
        });
        if args.diff {
            doc["diffs"] = diffs
                .iter()
                .map(|(step, d)| serde_json::json!({"step": step, "diff": d}))
                .collect();
        }
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return EXIT_OK;
    }
    println!(
        "plan for `{}` (workflow `{}`):",
        loaded.model, loaded.workflow.name
    );
    let width = steps.iter().map(|s| s.step.len()).max().unwrap_or(0);
    for s in &steps {
        println!(
            "  {:<7} {:<width$}  {}",
            s.action.to_string(),
            s.step,
            s.why
        );
    }
    for (step, d) in &diffs {
        println!("\n{step}:");
        print!("{d}");
    }
    let count = |a: Action| steps.iter().filter(|s| s.action == a).count();
    println!(
        "{} to run, {} to skip, {} blocked",
        count(Action::Run),
        count(Action::Skip),
        count(Action::Blocked)
    );
    EXIT_OK
}

/// What a step that would run changes, as a unified diff (or why that
/// cannot be shown).
fn preview(loaded: &Loaded, planner: &Planner<'_>, step: &plan::PlannedStep) -> String {
    let Some(params) = &step.params else {
        return "  (no preview: its parameters need outputs of steps that run first)\n".into();
    };
    let Some(task) = loaded.registry.get(&step.uses) else {
        return String::new();
    };
    // Templates in the task may read the outputs of steps done before.
    let outputs: std::collections::BTreeMap<String, serde_json::Value> = loaded
        .workflow
        .steps
        .iter()
        .filter_map(|s| {
            let record = loaded.store.record(&s.id).ok()??;
            (record.status == RecordStatus::Done).then(|| (s.id.clone(), record.outputs))
        })
        .collect();
    let ctx = planner.task_context(&step.step, planner.context(&outputs));
    match task.preview(params, &ctx) {
        Ok(Some(changes)) if changes.is_empty() => "  (no file would change)\n".into(),
        Ok(Some(changes)) => changes
            .iter()
            .map(|c| {
                crate::docs::diff::unified(
                    &c.path.display().to_string(),
                    c.before.as_deref(),
                    c.after.as_deref(),
                )
            })
            .collect(),
        Ok(None) => format!(
            "  (no preview: `{}` cannot tell without running)\n",
            step.uses
        ),
        Err(e) => format!("  (no preview: {e})\n"),
    }
}

pub fn planner<'a>(loaded: &'a Loaded, dag: &'a Dag) -> Planner<'a> {
    Planner {
        workflow: &loaded.workflow,
        dag,
        registry: &loaded.registry,
        store: &loaded.store,
        workspace: &loaded.workspace.root,
        target: &loaded.model,
        base_context: &loaded.context,
        settings: Some(loaded.settings.clone()),
    }
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    /// The workflow (a name under workflows/ or a path); default: the
    /// workspace's default workflow.
    #[arg(long, value_name = "NAME|PATH")]
    workflow: Option<String>,
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    format: GraphFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum GraphFormat {
    Dot,
    Mermaid,
}

pub fn graph(dir: &Path, args: &GraphArgs) -> i32 {
    let ws = match load::open_workspace(dir) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let name = args
        .workflow
        .clone()
        .unwrap_or_else(|| ws.config.defaults.workflow.clone());
    let workflow = match load::workflow(&ws, &Registry::builtin(), &name) {
        Ok(w) => w,
        Err(code) => return code,
    };
    match args.format {
        GraphFormat::Dot => print!("{}", graph::to_dot(&workflow)),
        GraphFormat::Mermaid => print!("{}", graph::to_mermaid(&workflow)),
    }
    EXIT_OK
}
