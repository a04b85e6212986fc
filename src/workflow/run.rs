//! Running the DAG: independent steps in parallel (bounded by `jobs`),
//! retries with backoff and timeouts wrapped around every task (tower-style,
//! so tasks stay simple), fail-fast, and a record per step.

use super::duration;
use super::plan::{Action, Planner, Reason, Selection, Upstream};
use super::spec::Step;
use super::state::{self, RecordStatus, StateError, StateStore, StepRecord};
use super::task::{DynTask, TaskContext, TaskError, TransferProgress};
use crate::cancel::{self, Cancel};
use crate::secrets;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// What happens during a run, for the CLI to print (a line each, or JSON).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        target: String,
        workflow: String,
        steps: usize,
    },
    StepStarted {
        step: String,
        uses: String,
        attempt: u32,
        attempts: u32,
        why: String,
    },
    StepRetrying {
        step: String,
        attempt: u32,
        error: String,
        delay_ms: u64,
    },
    StepLog {
        step: String,
        line: String,
    },
    /// A transfer's progress (`kind`: start, bytes, retry, verifying, done).
    StepProgress {
        step: String,
        #[serde(flatten)]
        progress: TransferProgress,
    },
    StepFinished {
        step: String,
        ok: bool,
        duration_ms: u64,
        attempts: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    StepSkipped {
        step: String,
        why: String,
    },
    StepBlocked {
        step: String,
        why: String,
    },
    RunFinished {
        ok: bool,
        ran: usize,
        skipped: usize,
        failed: usize,
        blocked: usize,
        duration_ms: u64,
        /// `SIGINT` or `SIGTERM` when a signal stopped the run.
        #[serde(skip_serializing_if = "Option::is_none")]
        interrupted: Option<String>,
    },
}

pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub ok: bool,
    pub ran: Vec<String>,
    pub skipped: Vec<String>,
    pub failed: Vec<String>,
    pub blocked: Vec<String>,
    /// The signal that stopped the run, if one did.
    pub interrupted: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Pending,
    Running,
    Finished,
}

/// Runs the workflow for `planner.target`. The caller holds the lock.
pub async fn run(
    planner: &Planner<'_>,
    selection: &Selection,
    jobs: usize,
    sink: EventSink,
) -> Result<RunSummary, RunError> {
    run_until(planner, selection, jobs, sink, Cancel::new()).await
}

/// [`run`] until `cancel` fires: then no step starts, running steps are
/// dropped (their process groups killed) and recorded as interrupted.
pub async fn run_until(
    planner: &Planner<'_>,
    selection: &Selection,
    jobs: usize,
    sink: EventSink,
    cancel: Cancel,
) -> Result<RunSummary, RunError> {
    let (selected, forced) = selection
        .resolve(planner.workflow, planner.dag)
        .map_err(RunError::Selection)?;
    let started = Instant::now();
    let jobs = jobs.max(1);
    sink(&Event::RunStarted {
        target: planner.target.to_string(),
        workflow: planner.workflow.name.clone(),
        steps: planner.workflow.steps.len(),
    });

    let mut state: BTreeMap<String, State> = planner
        .dag
        .order()
        .iter()
        .map(|id| (id.clone(), State::Pending))
        .collect();
    let mut upstream: BTreeMap<String, Upstream> = BTreeMap::new();
    let mut outputs: BTreeMap<String, Value> = BTreeMap::new();
    let mut summary = RunSummary::default();
    let mut running: JoinSet<(String, Result<StepRecord, StateError>)> = JoinSet::new();
    let mut stop = false;

    loop {
        if cancel.is_cancelled() {
            stop = true;
        }
        if !stop {
            for id in planner.dag.order() {
                if running.len() >= jobs {
                    break;
                }
                if state.get(id) != Some(&State::Pending) {
                    continue;
                }
                let Some(step) = planner.workflow.step(id) else {
                    continue;
                };
                let ready = step
                    .needs
                    .iter()
                    .all(|n| state.get(n) == Some(&State::Finished));
                if !ready {
                    continue;
                }
                let decision = planner.decide(
                    step,
                    selected.contains(id),
                    forced.contains(id),
                    &upstream,
                    &outputs,
                )?;
                let why = decision.reason.to_string();
                match decision.action {
                    Action::Skip => {
                        let done = decision
                            .record
                            .as_ref()
                            .is_some_and(|r| r.status == RecordStatus::Done);
                        let status = match decision.reason {
                            Reason::ConditionFalse => Upstream::ConditionFalse,
                            _ if done => Upstream::Done,
                            _ => Upstream::NotDone,
                        };
                        if let (Upstream::Done, Some(rec)) = (&status, &decision.record) {
                            outputs.insert(id.clone(), rec.outputs.clone());
                        }
                        upstream.insert(id.clone(), status);
                        state.insert(id.clone(), State::Finished);
                        summary.skipped.push(id.clone());
                        sink(&Event::StepSkipped {
                            step: id.clone(),
                            why,
                        });
                    }
                    Action::Blocked => {
                        let is_failure = matches!(decision.reason, Reason::Unresolved { .. });
                        upstream.insert(id.clone(), Upstream::Failed);
                        state.insert(id.clone(), State::Finished);
                        sink(&Event::StepBlocked {
                            step: id.clone(),
                            why: secrets::redact(&why),
                        });
                        if is_failure {
                            summary.failed.push(id.clone());
                            stop = true;
                        } else {
                            summary.blocked.push(id.clone());
                        }
                    }
                    Action::Run => {
                        let Some(task) = planner.registry.get(&step.uses).cloned() else {
                            continue;
                        };
                        let params = decision.params.unwrap_or(Value::Null);
                        let mut ctx = planner.task_context(id, planner.context(&outputs));
                        ctx.cancel = cancel.clone();
                        let job = Job {
                            step: step.clone(),
                            task,
                            params,
                            inputs: decision.inputs,
                            input_values: decision.input_values,
                            ctx,
                            store: planner.store.clone(),
                            workspace: planner.workspace.to_path_buf(),
                            sink: sink.clone(),
                            why,
                        };
                        state.insert(id.clone(), State::Running);
                        running.spawn(async move {
                            let id = job.step.id.clone();
                            (id, job.execute().await)
                        });
                    }
                }
            }
        }
        let joined = if stop || running.is_empty() {
            running.join_next().await
        } else {
            // Woken by a signal too, so that nothing new starts meanwhile.
            tokio::select! {
                j = running.join_next() => j,
                () = cancel.cancelled() => continue,
            }
        };
        let Some(joined) = joined else {
            break;
        };
        let (id, result) = joined.map_err(|e| RunError::Internal(e.to_string()))?;
        let record = result?;
        state.insert(id.clone(), State::Finished);
        if record.status == RecordStatus::Done {
            outputs.insert(id.clone(), record.outputs.clone());
            upstream.insert(id.clone(), Upstream::Ran);
            summary.ran.push(id);
        } else {
            upstream.insert(id.clone(), Upstream::Failed);
            summary.failed.push(id);
            stop = true; // fail fast: start nothing new; running steps finish
        }
    }

    for (id, s) in &state {
        if *s == State::Pending {
            summary.blocked.push(id.clone());
            let why = if let Some(sig) = cancel.signal() {
                format!(
                    "not started: the run was interrupted ({})",
                    cancel::signal_name(sig)
                )
            } else if stop {
                "not started: an earlier step failed".to_string()
            } else {
                "not started".to_string()
            };
            sink(&Event::StepBlocked {
                step: id.clone(),
                why,
            });
        }
    }
    summary.interrupted = cancel.signal();
    summary.ok =
        summary.failed.is_empty() && summary.blocked.is_empty() && summary.interrupted.is_none();
    sink(&Event::RunFinished {
        ok: summary.ok,
        ran: summary.ran.len(),
        skipped: summary.skipped.len(),
        failed: summary.failed.len(),
        blocked: summary.blocked.len(),
        duration_ms: started.elapsed().as_millis() as u64,
        interrupted: summary.interrupted.map(cancel::signal_name),
    });
    Ok(summary)
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Selection(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("internal error: {0}")]
    Internal(String),
}

struct Job {
    step: Step,
    task: Arc<dyn DynTask>,
    params: Value,
    inputs: BTreeMap<String, state::FileStamp>,
    input_values: BTreeMap<String, state::ValueStamp>,
    ctx: TaskContext,
    store: StateStore,
    workspace: std::path::PathBuf,
    sink: EventSink,
    why: String,
}

impl Job {
    async fn execute(self) -> Result<StepRecord, StateError> {
        let id = self.step.id.clone();
        self.store.mark_running(&id)?;
        let started_at = state::now_rfc3339();
        let started = Instant::now();
        let retry = &self.step.retry;
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            (self.sink)(&Event::StepStarted {
                step: id.clone(),
                uses: self.step.uses.clone(),
                attempt,
                attempts: retry.attempts,
                why: self.why.clone(),
            });
            let mut ctx = self.ctx.clone();
            ctx.attempt = attempt;
            let sink = self.sink.clone();
            let log_step = id.clone();
            ctx.log = Arc::new(move |line: &str| {
                sink(&Event::StepLog {
                    step: log_step.clone(),
                    line: secrets::redact(line),
                })
            });
            let sink = self.sink.clone();
            let progress_step = id.clone();
            ctx.progress = Arc::new(move |p: &TransferProgress| {
                sink(&Event::StepProgress {
                    step: progress_step.clone(),
                    progress: p.clone(),
                })
            });
            let cancel = self.ctx.cancel.clone();
            let fut = self.task.clone().run(self.params.clone(), ctx);
            let timed = async {
                match self.step.timeout {
                    Some(limit) => match tokio::time::timeout(limit, fut).await {
                        Ok(r) => r,
                        Err(_) => Err(TaskError::failed(format!(
                            "timed out after {}",
                            duration::display(limit)
                        ))),
                    },
                    None => fut.await,
                }
            };
            // On a signal the task's future is dropped: a `command` step's
            // process group is killed by its guard, blocking work polls
            // the same token.
            let outcome = tokio::select! {
                r = timed => r,
                () = cancel.cancelled() => break Err(TaskError::failed("interrupted")),
            };
            match outcome {
                Ok(out) => break Ok(out),
                Err(e) if e.is_retryable() && attempt < retry.attempts => {
                    let delay = retry.delay_before(attempt + 1);
                    (self.sink)(&Event::StepRetrying {
                        step: id.clone(),
                        attempt,
                        error: secrets::redact(&e.to_string()),
                        delay_ms: delay.as_millis() as u64,
                    });
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.ctx.cancel.cancelled() => break Err(e),
                    }
                }
                Err(e) => break Err(e),
            }
        };
        let output_paths = self
            .task
            .output_files(&self.params, &self.ctx)
            .unwrap_or_default();
        let output_files = output_paths
            .iter()
            .map(|p| {
                let key = p
                    .strip_prefix(&self.workspace)
                    .unwrap_or(p)
                    .to_string_lossy()
                    .into_owned();
                (key, state::stamp(p, None))
            })
            .collect();
        let elapsed = started.elapsed();
        let (status, outputs, error) = match result {
            // Redacted here, not only when written: the outputs also feed
            // later steps' templates (reports, models.conf lines).
            Ok(out) => (RecordStatus::Done, secrets::redact_json(&out), None),
            // Whatever the task said on its way out, a signal stopped it.
            // The outputs of its last finished run stay, as after a kill.
            Err(_) if self.ctx.cancel.is_cancelled() => (
                RecordStatus::Interrupted,
                self.ctx.previous_outputs.clone().unwrap_or(Value::Null),
                Some(format!(
                    "interrupted by {}",
                    cancel::signal_name(self.ctx.cancel.signal().unwrap_or(0))
                )),
            ),
            Err(e) => (
                RecordStatus::Failed,
                Value::Null,
                Some(secrets::redact(&e.to_string())),
            ),
        };
        let record = StepRecord {
            step: id.clone(),
            kind: self.step.uses.clone(),
            version: self.task.version(),
            status,
            fingerprint: state::fingerprint(
                &self.step.uses,
                self.task.version(),
                &self.params,
                &self.inputs,
                &self.input_values,
            ),
            params_digest: state::digest_json(&self.params),
            params: self.params.clone(),
            inputs: self.inputs.clone(),
            input_values: self.input_values.clone(),
            output_files,
            outputs,
            started_at,
            finished_at: state::now_rfc3339(),
            duration_ms: duration_ms(elapsed),
            attempts: attempt,
            error: error.clone(),
        };
        self.store.write_record(&record)?;
        self.store.clear_running(&id)?;
        (self.sink)(&Event::StepFinished {
            step: id,
            ok: error.is_none(),
            duration_ms: duration_ms(elapsed),
            attempts: attempt,
            error,
        });
        Ok(record)
    }
}

fn duration_ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// Step ids in `summary` sets, for tests and callers.
pub fn ids(list: &[String]) -> BTreeSet<&str> {
    list.iter().map(String::as_str).collect()
}
