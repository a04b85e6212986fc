//! Deciding, for each step, whether to run it, skip it or hold it back — and
//! saying why. `onboard plan` prints these decisions; `onboard run` makes
//! the same decisions as upstream steps finish.

use super::graph::Dag;
use super::spec::{Step, Workflow};
use super::state::{self, FileStamp, RecordStatus, StateError, StateStore, StepRecord, ValueStamp};
use super::task::{Registry, TaskContext};
use super::template;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Run,
    Skip,
    Blocked,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Run => "run",
            Action::Skip => "skip",
            Action::Blocked => "blocked",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    NeverRun,
    DoneUnchanged { finished_at: String },
    ParamsChanged,
    InputChanged { path: String },
    InputValueChanged { input: String, change: String },
    OutputChanged { path: String },
    OutputMissing { output: String },
    OutOfDate { why: String },
    TaskChanged { was: String, now: String },
    FailedLastTime { error: String },
    Interrupted { started_at: String },
    UpstreamReruns { upstream: String },
    Forced,
    NotSelected,
    ConditionFalse,
    UpstreamNotDone { upstream: String },
    UpstreamFailed { upstream: String },
    Unresolved { error: String },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NeverRun => write!(f, "never run"),
            Reason::DoneUnchanged { finished_at } => {
                write!(f, "done and unchanged (finished {finished_at})")
            }
            Reason::ParamsChanged => write!(f, "parameters changed"),
            Reason::InputChanged { path } => write!(f, "input file changed: {path}"),
            // A named input that is part of a file (`models.conf [id]`), with
            // the lines that changed when the record kept them.
            Reason::InputValueChanged { input, change } if change.is_empty() => {
                write!(f, "input changed: {input}")
            }
            Reason::InputValueChanged { input, change } => {
                write!(f, "input changed: {input} ({change})")
            }
            Reason::OutputChanged { path } => write!(f, "output file changed or removed: {path}"),
            Reason::OutputMissing { output } => write!(f, "its output is gone: {output}"),
            // The step's source changed outside the workspace (see
            // `Task::out_of_date`): the task's own words.
            Reason::OutOfDate { why } => write!(f, "{why}"),
            Reason::TaskChanged { was, now } => write!(f, "task changed ({was} -> {now})"),
            Reason::FailedLastTime { error } => {
                let first = error.lines().next().unwrap_or("");
                write!(f, "failed last time: {first}")
            }
            Reason::Interrupted { started_at } => {
                write!(f, "interrupted (started {started_at}, never finished)")
            }
            Reason::UpstreamReruns { upstream: step } => write!(f, "upstream `{step}` reruns"),
            Reason::Forced => write!(f, "forced"),
            Reason::NotSelected => write!(f, "not selected"),
            Reason::ConditionFalse => write!(f, "`when` is false"),
            Reason::UpstreamNotDone { upstream: step } => {
                write!(
                    f,
                    "needs `{step}`, which has not run (run it, or widen --only/--from)"
                )
            }
            Reason::UpstreamFailed { upstream: step } => {
                write!(f, "upstream `{step}` failed or is blocked")
            }
            Reason::Unresolved { error } => write!(f, "parameters cannot be resolved: {error}"),
        }
    }
}

/// Which steps a run covers (`--only`, `--from`, `--until`, `--force`).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub only: Option<String>,
    pub from: Option<String>,
    pub until: Option<String>,
    pub force: Vec<String>,
}

impl Selection {
    /// The selected steps and the forced ones; names are checked first.
    pub fn resolve(
        &self,
        workflow: &Workflow,
        dag: &Dag,
    ) -> Result<(BTreeSet<String>, BTreeSet<String>), String> {
        let known = |id: &String| -> Result<String, String> { canonical_step(workflow, id) };
        let all: BTreeSet<String> = workflow.steps.iter().map(|s| s.id.clone()).collect();
        let mut selected = all.clone();
        let mut forced: BTreeSet<String> = BTreeSet::new();
        if let Some(only) = &self.only {
            let only = known(only)?;
            selected = BTreeSet::from([only.clone()]);
            forced.insert(only);
        }
        if let Some(from) = &self.from {
            let from = known(from)?;
            let mut set = dag.descendants(&from);
            set.insert(from);
            forced.extend(set.iter().cloned());
            selected = selected.intersection(&set).cloned().collect();
        }
        if let Some(until) = &self.until {
            let until = known(until)?;
            let mut set = dag.ancestors(&until);
            set.insert(until);
            selected = selected.intersection(&set).cloned().collect();
        }
        for f in &self.force {
            forced.insert(known(f)?);
        }
        Ok((selected, forced))
    }
}

/// The step `id` names: itself, or the one that differs only in `-` for
/// `_` (task kinds are spelt `context-test`, step ids `context_test`, and
/// people mix them up); otherwise an error with the closest id.
pub fn canonical_step(workflow: &Workflow, id: &str) -> Result<String, String> {
    if workflow.step(id).is_some() {
        return Ok(id.to_string());
    }
    let fold = |s: &str| s.replace('-', "_");
    if let Some(step) = workflow.steps.iter().find(|s| fold(&s.id) == fold(id)) {
        return Ok(step.id.clone());
    }
    let ids: Vec<&str> = workflow.steps.iter().map(|s| s.id.as_str()).collect();
    let hint = crate::source::diag::did_you_mean(&fold(id), ids.iter().copied())
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    Err(format!(
        "no step `{id}` in workflow `{}` (steps: {}){hint}",
        workflow.name,
        ids.join(", ")
    ))
}

/// How an upstream step stands when a step is decided.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// Will run (plan) — its outputs are not known yet.
    Reruns,
    /// Ran in this run (outputs known): dependents run too.
    Ran,
    /// Done (this run or before), with its outputs.
    Done,
    ConditionFalse,
    NotDone,
    Failed,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub action: Action,
    pub reason: Reason,
    /// Resolved parameters, when they could be resolved.
    pub params: Option<Value>,
    pub inputs: BTreeMap<String, FileStamp>,
    pub input_values: BTreeMap<String, ValueStamp>,
    pub record: Option<StepRecord>,
}

/// Everything needed to decide about the steps of one target.
pub struct Planner<'a> {
    pub workflow: &'a Workflow,
    pub dag: &'a Dag,
    pub registry: &'a Registry,
    pub store: &'a StateStore,
    pub workspace: &'a Path,
    pub target: &'a str,
    /// `model`, `manifest`, `workspace`: the values templates read besides `steps`.
    pub base_context: &'a Map<String, Value>,
    /// Handed to every task as [`TaskContext::settings`].
    pub settings: Option<crate::workflow::task::Settings>,
}

impl Planner<'_> {
    /// The template values with the outputs of finished steps.
    pub fn context(&self, outputs: &BTreeMap<String, Value>) -> Value {
        let mut ctx = self.base_context.clone();
        let steps: Map<String, Value> = outputs
            .iter()
            .map(|(id, out)| (id.clone(), serde_json::json!({ "outputs": out })))
            .collect();
        ctx.insert("steps".into(), Value::Object(steps));
        Value::Object(ctx)
    }

    pub fn task_context(&self, step: &str, template_context: Value) -> TaskContext {
        TaskContext {
            workspace: self.workspace.to_path_buf(),
            model: self.target.to_string(),
            step: step.to_string(),
            attempt: 1,
            template_context,
            log: Arc::new(|_| {}),
            progress: Arc::new(|_| {}),
            previous_outputs: self
                .store
                .record(step)
                .ok()
                .flatten()
                // An interrupted record keeps the outputs of the last
                // finished run, as a killed run's old record would.
                .filter(|r| r.status != RecordStatus::Failed && !r.outputs.is_null())
                .map(|r| r.outputs),
            cancel: crate::cancel::Cancel::default(),
            settings: self.settings.clone(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &self,
        step: &Step,
        selected: bool,
        forced: bool,
        upstream: &BTreeMap<String, Upstream>,
        outputs: &BTreeMap<String, Value>,
    ) -> Result<Decision, StateError> {
        let record = self.store.record(&step.id)?;
        let decision = |action, reason| Decision {
            action,
            reason,
            params: None,
            inputs: BTreeMap::new(),
            input_values: BTreeMap::new(),
            record: record.clone(),
        };
        for need in &step.needs {
            if let Some(Upstream::Failed) = upstream.get(need) {
                return Ok(decision(
                    Action::Blocked,
                    Reason::UpstreamFailed {
                        upstream: need.clone(),
                    },
                ));
            }
        }
        let done = record
            .as_ref()
            .is_some_and(|r| r.status == RecordStatus::Done);
        if !selected {
            // Outside the selection, a step that never ran because its
            // `when` is false is skipped by its condition, as in a whole
            // run: `--only <next>` (one step of an exported workflow) then
            // runs instead of waiting for a step that never will.
            if let (false, Some(when)) = (done, &step.when) {
                if let Ok(false) = template::eval_condition(when, &self.context(outputs)) {
                    return Ok(decision(Action::Skip, Reason::ConditionFalse));
                }
            }
            return Ok(decision(Action::Skip, Reason::NotSelected));
        }
        for need in &step.needs {
            if let Some(Upstream::NotDone) = upstream.get(need) {
                return Ok(decision(
                    Action::Blocked,
                    Reason::UpstreamNotDone {
                        upstream: need.clone(),
                    },
                ));
            }
        }
        for need in &step.needs {
            if let Some(Upstream::Reruns) = upstream.get(need) {
                let mut d = decision(
                    Action::Run,
                    Reason::UpstreamReruns {
                        upstream: need.clone(),
                    },
                );
                if forced {
                    d.reason = Reason::Forced;
                }
                return Ok(d);
            }
        }
        let upstream_ran = step
            .needs
            .iter()
            .find(|n| matches!(upstream.get(*n), Some(Upstream::Ran)))
            .cloned();
        let ctx = self.context(outputs);
        if let Some(when) = &step.when {
            match template::eval_condition(when, &ctx) {
                Ok(false) => return Ok(decision(Action::Skip, Reason::ConditionFalse)),
                Ok(true) => {}
                Err(e) => {
                    return Ok(decision(
                        Action::Blocked,
                        Reason::Unresolved {
                            error: format!("`when`: {e}"),
                        },
                    ))
                }
            }
        }
        let params = match template::render_value(&step.with, &ctx) {
            Ok(p) => p,
            Err(e) => {
                return Ok(decision(
                    Action::Blocked,
                    Reason::Unresolved { error: e.message },
                ))
            }
        };
        let Some(task) = self.registry.get(&step.uses) else {
            return Ok(decision(
                Action::Blocked,
                Reason::Unresolved {
                    error: format!("unknown task kind `{}`", step.uses),
                },
            ));
        };
        let task_ctx = self.task_context(&step.id, ctx);
        let previous_inputs = record.as_ref().map(|r| &r.inputs);
        let input_paths = match task.input_files(&params, &task_ctx) {
            Ok(p) => p,
            Err(e) => {
                return Ok(decision(
                    Action::Blocked,
                    Reason::Unresolved {
                        error: e.to_string(),
                    },
                ))
            }
        };
        let inputs: BTreeMap<String, FileStamp> = input_paths
            .iter()
            .map(|p| {
                let key = self.display_path(p);
                let prev = previous_inputs.and_then(|m| m.get(&key));
                (key, state::stamp(p, prev))
            })
            .collect();
        let input_values: BTreeMap<String, ValueStamp> = match task.input_values(&params, &task_ctx)
        {
            Ok(values) => values
                .iter()
                .map(|v| (v.label.clone(), ValueStamp::of(&v.content)))
                .collect(),
            Err(e) => {
                return Ok(decision(
                    Action::Blocked,
                    Reason::Unresolved {
                        error: e.to_string(),
                    },
                ))
            }
        };
        let mut d = Decision {
            action: Action::Run,
            reason: Reason::NeverRun,
            params: Some(params.clone()),
            inputs: inputs.clone(),
            input_values: input_values.clone(),
            record: record.clone(),
        };
        let marker = self.store.marker(&step.id);
        let Some(rec) = record.as_ref() else {
            d.reason = match (forced, marker) {
                (true, _) => Reason::Forced,
                (false, Some(m)) => Reason::Interrupted {
                    started_at: m.started_at,
                },
                (false, None) => Reason::NeverRun,
            };
            return Ok(d);
        };
        d.reason = if forced {
            Reason::Forced
        } else if let Some(need) = upstream_ran {
            Reason::UpstreamReruns { upstream: need }
        } else if let Some(marker) = marker {
            Reason::Interrupted {
                started_at: marker.started_at,
            }
        } else if rec.status == RecordStatus::Interrupted {
            Reason::Interrupted {
                started_at: rec.started_at.clone(),
            }
        } else if !done {
            Reason::FailedLastTime {
                error: rec.error.clone().unwrap_or_default(),
            }
        } else if rec.kind != step.uses || rec.version != task.version() {
            Reason::TaskChanged {
                was: format!("{}@{}", rec.kind, rec.version),
                now: format!("{}@{}", step.uses, task.version()),
            }
        } else if rec.params_digest != state::digest_json(&params) {
            Reason::ParamsChanged
        } else if let Some(path) = changed_key(&rec.inputs, &inputs) {
            Reason::InputChanged { path }
        } else if let Some((input, change)) = changed_value(&rec.input_values, &input_values) {
            Reason::InputValueChanged { input, change }
        } else if let Some(path) = rec
            .output_files
            .iter()
            .find(|(p, s)| state::stamp(&self.workspace.join(p), Some(s)).sha256 != s.sha256)
            .map(|(p, _)| p.clone())
        {
            Reason::OutputChanged { path }
        } else if let Some(output) = task
            .missing_outputs(&params, &task_ctx)
            .ok()
            .and_then(|gone| gone.into_iter().next())
        {
            // Not an error to stop on: what cannot be read here is reported
            // by the step that reads it.
            Reason::OutputMissing { output }
        } else if let Some(why) = task.out_of_date(&params, &task_ctx).ok().flatten() {
            // Likewise: a check record that cannot be read is reported by
            // the command that writes it.
            Reason::OutOfDate { why }
        } else {
            d.action = Action::Skip;
            Reason::DoneUnchanged {
                finished_at: rec.finished_at.clone(),
            }
        };
        Ok(d)
    }

    /// Paths are recorded relative to the workspace where possible, so a
    /// moved workspace keeps its state.
    pub fn display_path(&self, p: &Path) -> String {
        p.strip_prefix(self.workspace)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    }

    pub fn absolute(&self, recorded: &str) -> PathBuf {
        self.workspace.join(recorded)
    }
}

fn changed_key(
    before: &BTreeMap<String, FileStamp>,
    now: &BTreeMap<String, FileStamp>,
) -> Option<String> {
    for (k, v) in now {
        match before.get(k) {
            Some(b) if b.sha256 == v.sha256 => {}
            _ => return Some(k.clone()),
        }
    }
    before.keys().find(|k| !now.contains_key(*k)).cloned()
}

/// The first named input whose digest changed, and which of its lines
/// changed. A record without any (written before onboard tracked them)
/// has nothing to compare: its step is not rerun for that alone.
fn changed_value(
    before: &BTreeMap<String, ValueStamp>,
    now: &BTreeMap<String, ValueStamp>,
) -> Option<(String, String)> {
    if before.is_empty() {
        return None;
    }
    for (label, stamp) in now {
        match before.get(label) {
            Some(b) if b.sha256 == stamp.sha256 => {}
            Some(b) => {
                let change = match (recorded(b), recorded(stamp)) {
                    (Some(was), Some(is)) => line_changes(was, is),
                    _ => String::new(),
                };
                return Some((label.clone(), change));
            }
            None => return Some((label.clone(), String::new())),
        }
    }
    before
        .keys()
        .find(|k| !now.contains_key(*k))
        .map(|k| (k.clone(), String::new()))
}

/// A stamp's content, unless it was too large to record.
fn recorded(s: &ValueStamp) -> Option<&str> {
    (!s.content.is_empty() || s.sha256 == ValueStamp::of("").sha256).then_some(s.content.as_str())
}

/// `KEY old -> new`, `KEY=value added`, `KEY removed` for `KEY=VALUE`
/// lines; other lines as added or removed.
fn line_changes(before: &str, after: &str) -> String {
    let pairs = |text: &str| -> Vec<(String, Option<String>)> {
        text.lines()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (l.to_string(), None),
            })
            .collect()
    };
    let (old, new) = (pairs(before), pairs(after));
    let mut changes = Vec::new();
    for (key, value) in &new {
        match (old.iter().find(|(k, _)| k == key), value) {
            (Some((_, was)), _) if was == value => {}
            (Some((_, Some(was))), Some(now)) => changes.push(format!("{key} {was} -> {now}")),
            (_, Some(now)) => changes.push(format!("{key}={now} added")),
            (_, None) => changes.push(format!("`{key}` added")),
        }
    }
    for (key, _) in &old {
        if !new.iter().any(|(k, _)| k == key) {
            changes.push(format!("{key} removed"));
        }
    }
    changes.join(", ")
}

/// One line of `onboard plan`.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub step: String,
    pub uses: String,
    pub action: Action,
    #[serde(flatten)]
    pub reason: Reason,
    pub why: String,
    /// The resolved parameters, when they could be resolved (for previews).
    #[serde(skip)]
    pub params: Option<Value>,
}

/// The dry run: decides every step as if upstream reruns produced new
/// outputs (the real run re-decides once they finish and may skip more).
pub fn plan(planner: &Planner<'_>, selection: &Selection) -> Result<Vec<PlannedStep>, String> {
    let (selected, forced) = selection.resolve(planner.workflow, planner.dag)?;
    let mut upstream: BTreeMap<String, Upstream> = BTreeMap::new();
    let mut outputs: BTreeMap<String, Value> = BTreeMap::new();
    let mut planned = Vec::new();
    for id in planner.dag.order() {
        let Some(step) = planner.workflow.step(id) else {
            continue;
        };
        let d = planner
            .decide(
                step,
                selected.contains(id),
                forced.contains(id),
                &upstream,
                &outputs,
            )
            .map_err(|e| e.to_string())?;
        let done_before = d
            .record
            .as_ref()
            .is_some_and(|r| r.status == RecordStatus::Done);
        let status = match (&d.action, &d.reason) {
            (Action::Run, _) => Upstream::Reruns,
            (Action::Skip, Reason::ConditionFalse) => Upstream::ConditionFalse,
            (Action::Skip, _) if done_before => Upstream::Done,
            (Action::Skip, _) => Upstream::NotDone,
            (Action::Blocked, _) => Upstream::Failed,
        };
        if let (Upstream::Done, Some(rec)) = (&status, &d.record) {
            outputs.insert(id.clone(), rec.outputs.clone());
        }
        upstream.insert(id.clone(), status);
        planned.push(PlannedStep {
            step: id.clone(),
            uses: step.uses.clone(),
            action: d.action,
            why: d.reason.to_string(),
            reason: d.reason,
            params: d.params,
        });
    }
    Ok(planned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamps(list: &[(&str, &str)]) -> BTreeMap<String, ValueStamp> {
        list.iter()
            .map(|(k, v)| (k.to_string(), ValueStamp::of(v)))
            .collect()
    }

    #[test]
    fn a_changed_value_names_its_label_and_lines() {
        let before = stamps(&[("models.conf [a]", "CTX_SIZE=8192\nFIT=on\nFLAGS=--jinja\n")]);
        let now = stamps(&[(
            "models.conf [a]",
            "CTX_SIZE=4096\nFLAGS=--jinja\nGPU_LAYERS=9\n",
        )]);
        assert_eq!(
            changed_value(&before, &now),
            Some((
                "models.conf [a]".to_string(),
                "CTX_SIZE 8192 -> 4096, GPU_LAYERS=9 added, FIT removed".to_string()
            ))
        );
        assert_eq!(changed_value(&before, &before), None);
        assert_eq!(
            changed_value(&BTreeMap::new(), &now),
            None,
            "a record from before values were tracked"
        );
        let mut big = before.clone();
        if let Some(s) = big.get_mut("models.conf [a]") {
            s.content.clear();
        }
        assert_eq!(
            changed_value(&big, &now),
            Some(("models.conf [a]".to_string(), String::new()))
        );
        let reason = Reason::InputValueChanged {
            input: "models.conf [a]".into(),
            change: "CTX_SIZE 8192 -> 4096".into(),
        };
        assert_eq!(
            reason.to_string(),
            "input changed: models.conf [a] (CTX_SIZE 8192 -> 4096)"
        );
    }
}
