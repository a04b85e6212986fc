//! Running the DAG: independent steps in parallel (bounded by `jobs`),
//! retries with backoff and timeouts wrapped around every task (tower-style,
//! so tasks stay simple), fail-fast, and a record per step.

use super::duration;
use super::plan::{Action, Planner, Reason, Selection, Upstream};
use super::resources::{self, Holder, Pool};
use super::spec::Step;
use super::state::{self, RecordStatus, StateError, StateStore, StepRecord};
use super::task::{DynTask, TaskContext, TaskError, TransferProgress};
use crate::cancel::{self, Cancel};
use crate::secrets;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};
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
    /// The step waits for a resource (`waiting for gpu: held by …`), or
    /// for the other targets of the run to reach it.
    StepWaiting {
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

/// What the targets of one run share: the bound on steps running at once,
/// the machine's resources, whether one target's failure stops them all,
/// and the meeting points of steps that must see every target before any
/// of them starts (a task kind's batch check, a `once` step).
pub struct RunShared {
    /// The run's targets in the order given: the order in which steps of
    /// this process take their turn for a resource.
    targets: Vec<String>,
    jobs: Arc<Semaphore>,
    pool: Pool,
    fail_fast: bool,
    /// Set when a `--fail-fast` run must start nothing new.
    halt: watch::Sender<bool>,
    meetings: Mutex<BTreeMap<String, Meeting>>,
}

/// One step id's meeting of every target of the run.
struct Meeting {
    /// Target index → the step's parameters where it runs, `None` where it
    /// does not (skipped, blocked, the target stopped before it).
    arrived: BTreeMap<usize, Option<Value>>,
    ready: watch::Sender<Option<Ready>>,
    /// A `once` step's outcome, run by the leader for every target.
    outcome: watch::Sender<Option<Result<Value, String>>>,
}

#[derive(Debug, Clone)]
struct Ready {
    /// The task kind's verdict on the whole batch.
    check: Result<(), String>,
    /// The target that runs a `once` step for all.
    leader: Option<usize>,
}

impl Meeting {
    fn new() -> Meeting {
        Meeting {
            arrived: BTreeMap::new(),
            ready: watch::channel(None).0,
            outcome: watch::channel(None).0,
        }
    }
}

impl RunShared {
    pub fn new(targets: Vec<String>, jobs: usize, pool: Pool, fail_fast: bool) -> RunShared {
        RunShared {
            targets,
            jobs: Arc::new(Semaphore::new(jobs.max(1))),
            pool,
            fail_fast,
            halt: watch::channel(false).0,
            meetings: Mutex::new(BTreeMap::new()),
        }
    }

    fn meetings(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Meeting>> {
        self.meetings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Target `index` has decided `step` (`params` where it runs). The last
    /// to arrive checks the batch and opens the meeting for all.
    fn arrive(
        &self,
        step: &str,
        task: Option<&Arc<dyn DynTask>>,
        index: usize,
        params: Option<Value>,
        ctx: &TaskContext,
    ) {
        let mut meetings = self.meetings();
        let meeting = meetings
            .entry(step.to_string())
            .or_insert_with(Meeting::new);
        if meeting.arrived.contains_key(&index) {
            return;
        }
        meeting.arrived.insert(index, params);
        if meeting.arrived.len() < self.targets.len() {
            return;
        }
        let batch: Vec<(String, Value)> = meeting
            .arrived
            .iter()
            .filter_map(|(i, p)| Some((self.targets.get(*i)?.clone(), p.clone()?)))
            .collect();
        let leader = meeting
            .arrived
            .iter()
            .find(|(_, p)| p.is_some())
            .map(|(i, _)| *i);
        let check = match task {
            Some(task) if !batch.is_empty() => task
                .check_batch(&batch, ctx)
                .map_err(|e| secrets::redact(&e.to_string())),
            _ => Ok(()),
        };
        meeting.ready.send_replace(Some(Ready { check, leader }));
    }

    async fn ready(&self, step: &str, cancel: &Cancel) -> Option<Ready> {
        let rx = self.meeting(step, |m| m.ready.subscribe());
        first_value(rx, cancel).await
    }

    fn publish(&self, step: &str, outcome: Result<Value, String>) {
        if let Some(m) = self.meetings().get(step) {
            m.outcome.send_replace(Some(outcome));
        }
    }

    async fn outcome(&self, step: &str, cancel: &Cancel) -> Option<Result<Value, String>> {
        let rx = self.meeting(step, |m| m.outcome.subscribe());
        first_value(rx, cancel).await
    }

    /// `f` of the meeting at `step`, made when this is the first to ask.
    fn meeting<T>(&self, step: &str, f: impl FnOnce(&Meeting) -> T) -> T {
        f(self
            .meetings()
            .entry(step.to_string())
            .or_insert_with(Meeting::new))
    }

    fn halted(&self) -> bool {
        *self.halt.borrow()
    }

    fn halt(&self) {
        self.halt.send_replace(true);
    }
}

/// The first value `rx` holds, or `None` once `cancel` fires.
async fn first_value<T: Clone>(mut rx: watch::Receiver<Option<T>>, cancel: &Cancel) -> Option<T> {
    tokio::select! {
        r = rx.wait_for(Option::is_some) => r.ok().and_then(|r| r.clone()),
        () = cancel.cancelled() => None,
    }
}

/// Whether every target of a run meets at `step` before any runs it.
fn meets(step: &Step, task: Option<&Arc<dyn DynTask>>) -> bool {
    step.once || task.is_some_and(|t| t.checks_batch())
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
/// Resources are taken in the machine-wide directory and amounts of
/// [`resources::default_lock_dir`] and [`resources::default_capacity`].
pub async fn run_until(
    planner: &Planner<'_>,
    selection: &Selection,
    jobs: usize,
    sink: EventSink,
    cancel: Cancel,
) -> Result<RunSummary, RunError> {
    let shared = RunShared::new(
        vec![planner.target.to_string()],
        jobs,
        Pool::new(
            resources::default_lock_dir(),
            resources::default_capacity(),
            planner.workspace,
        ),
        true,
    );
    run_target(planner, selection, sink, cancel, &Arc::new(shared), 0).await
}

/// One target of a run of several: its planner, selection and events.
pub struct TargetRun<'a> {
    pub planner: Planner<'a>,
    pub selection: Selection,
    pub sink: EventSink,
}

/// Runs every target's workflow as one schedule: steps of all targets
/// share `shared`'s bound and resources, and meet where a step must see
/// every target. A failed target stops only itself unless `fail_fast`.
/// The summaries come in the targets' order.
pub async fn run_many(
    targets: &[TargetRun<'_>],
    shared: &Arc<RunShared>,
    cancel: Cancel,
) -> Vec<Result<RunSummary, RunError>> {
    let runs = targets.iter().enumerate().map(|(index, t)| {
        run_target(
            &t.planner,
            &t.selection,
            t.sink.clone(),
            cancel.clone(),
            shared,
            index,
        )
    });
    join_all(runs.collect()).await
}

/// Polls every future to its end (the planners borrow, so the targets
/// cannot be spawned as tasks of their own).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                if let Poll::Ready(out) = future.as_mut().poll(cx) {
                    *output = Some(out);
                }
            }
        }
        if outputs.iter().all(Option::is_some) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

async fn run_target(
    planner: &Planner<'_>,
    selection: &Selection,
    sink: EventSink,
    cancel: Cancel,
    shared: &Arc<RunShared>,
    index: usize,
) -> Result<RunSummary, RunError> {
    let result = run_target_inner(planner, selection, sink, cancel, shared, index).await;
    // However this target ended, the others stop waiting for it.
    for step in &planner.workflow.steps {
        let task = planner.registry.get(&step.uses);
        if meets(step, task) {
            let ctx = planner.task_context(&step.id, Value::Null);
            shared.arrive(&step.id, task, index, None, &ctx);
        }
    }
    if result.as_ref().map_or(true, |s| !s.failed.is_empty()) && shared.fail_fast {
        shared.halt();
    }
    result
}

async fn run_target_inner(
    planner: &Planner<'_>,
    selection: &Selection,
    sink: EventSink,
    cancel: Cancel,
    shared: &Arc<RunShared>,
    index: usize,
) -> Result<RunSummary, RunError> {
    let (selected, forced) = selection
        .resolve(planner.workflow, planner.dag)
        .map_err(RunError::Selection)?;
    let started = Instant::now();
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
    let mut running: JoinSet<(String, Result<Option<StepRecord>, StateError>)> = JoinSet::new();
    let mut stop = false;
    let mut not_started: BTreeSet<String> = BTreeSet::new();

    loop {
        if cancel.is_cancelled() || shared.halted() {
            stop = true;
        }
        if !stop {
            for id in planner.dag.order() {
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
                let task = planner.registry.get(&step.uses);
                let meeting = meets(step, task);
                if meeting {
                    let runs = (decision.action == Action::Run)
                        .then(|| decision.params.clone().unwrap_or(Value::Null));
                    let ctx = planner.task_context(id, planner.context(&outputs));
                    shared.arrive(id, task, index, runs, &ctx);
                }
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
                        let Some(task) = task.cloned() else {
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
                            index,
                            meeting,
                            resources: resources::held_by(step, planner.registry),
                        };
                        state.insert(id.clone(), State::Running);
                        let shared = shared.clone();
                        running.spawn(async move {
                            let id = job.step.id.clone();
                            (id, job.execute(&shared).await)
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
                () = halted(shared) => continue,
            }
        };
        let Some(joined) = joined else {
            break;
        };
        let (id, result) = joined.map_err(|e| RunError::Internal(e.to_string()))?;
        state.insert(id.clone(), State::Finished);
        let Some(record) = result? else {
            // Stopped while waiting for its turn: it never started.
            upstream.insert(id.clone(), Upstream::Failed);
            not_started.insert(id);
            stop = true;
            continue;
        };
        if record.status == RecordStatus::Done {
            outputs.insert(id.clone(), record.outputs.clone());
            upstream.insert(id.clone(), Upstream::Ran);
            summary.ran.push(id);
        } else {
            upstream.insert(id.clone(), Upstream::Failed);
            summary.failed.push(id);
            stop = true; // fail fast: start nothing new; running steps finish
            if shared.fail_fast {
                shared.halt();
            }
        }
    }

    for (id, s) in &state {
        if *s == State::Pending || not_started.contains(id) {
            summary.blocked.push(id.clone());
            let why = if let Some(sig) = cancel.signal() {
                format!(
                    "not started: the run was interrupted ({})",
                    cancel::signal_name(sig)
                )
            } else if shared.halted() && summary.failed.is_empty() {
                "not started: another model of this run failed (--fail-fast)".to_string()
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

/// Resolves when another target of a `--fail-fast` run has failed.
async fn halted(shared: &RunShared) {
    let _ = shared.halt.subscribe().wait_for(|h| *h).await;
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
    /// The target's place in the run (its turn for resources).
    index: usize,
    /// Whether the step meets the run's other targets first.
    meeting: bool,
    resources: BTreeMap<String, u32>,
}

/// How a step's turn came, before it runs.
enum Turn {
    /// Run the task here.
    Run(resources::Held, tokio::sync::OwnedSemaphorePermit),
    /// Decided without running it here: a failed batch check, a resource it
    /// can never get, or a `once` step's outcome from its leader.
    Decided(Result<Value, TaskError>),
}

impl Job {
    /// `Ok(None)`: stopped (Ctrl-C, `--fail-fast`) before its turn came, so
    /// it never started and leaves no record.
    async fn execute(self, shared: &RunShared) -> Result<Option<StepRecord>, StateError> {
        let id = self.step.id.clone();
        let Some(turn) = self.turn(shared).await else {
            if self.step.once {
                shared.publish(&id, Err("the run stopped before it ran".into()));
            }
            return Ok(None);
        };
        // Timed from its turn: waiting for others is not the step's time.
        let started_at = state::now_rfc3339();
        let started = Instant::now();
        let (result, attempts) = match turn {
            Turn::Decided(result) => (result, 0),
            Turn::Run(held, permit) => {
                self.store.mark_running(&id)?;
                let outcome = self.attempts().await;
                drop(permit);
                drop(held);
                if self.step.once {
                    let shareable = match &outcome.0 {
                        Ok(v) => Ok(v.clone()),
                        Err(e) => Err(e.to_string()),
                    };
                    shared.publish(&id, shareable);
                }
                outcome
            }
        };
        self.record(result, attempts, started_at, started.elapsed())
            .map(Some)
    }

    /// Waits for the other targets (a meeting step), then for the step's
    /// resources and a job slot. `None` when the run stops meanwhile.
    async fn turn(&self, shared: &RunShared) -> Option<Turn> {
        let cancel = &self.ctx.cancel;
        let id = &self.step.id;
        if self.meeting {
            let ready = match shared.ready(id, cancel).await {
                Some(r) => r,
                None => return None,
            };
            if let Err(e) = ready.check {
                return Some(Turn::Decided(Err(TaskError::Failed {
                    message: e,
                    retryable: false,
                })));
            }
            if self.step.once && ready.leader != Some(self.index) {
                let leader = ready
                    .leader
                    .and_then(|i| shared.targets.get(i))
                    .cloned()
                    .unwrap_or_default();
                (self.sink)(&Event::StepWaiting {
                    step: id.clone(),
                    why: format!("run once for every model of this run, by `{leader}`'s run"),
                });
                let outcome = shared.outcome(id, cancel).await?;
                return Some(Turn::Decided(outcome.map_err(|e| TaskError::Failed {
                    message: format!("run once for all by `{leader}`: {e}"),
                    retryable: false,
                })));
            }
        }
        let who = Holder {
            pid: std::process::id(),
            target: self.ctx.model.clone(),
            step: id.clone(),
            workspace: self.workspace.display().to_string(),
        };
        let sink = self.sink.clone();
        let step = id.clone();
        let on_wait = move |why: &str| {
            sink(&Event::StepWaiting {
                step: step.clone(),
                why: why.to_string(),
            })
        };
        let held = match shared
            .pool
            .acquire(&self.resources, &who, self.index, cancel, &on_wait)
            .await
        {
            Ok(Some(held)) => held,
            Ok(None) => return None,
            Err(e) => {
                return Some(Turn::Decided(Err(TaskError::Failed {
                    message: e.to_string(),
                    retryable: false,
                })))
            }
        };
        let permit = tokio::select! {
            p = shared.jobs.clone().acquire_owned() => p.ok()?,
            () = cancel.cancelled() => return None,
        };
        Some(Turn::Run(held, permit))
    }

    /// The task's attempts, each wrapped in the step's timeout, retried
    /// with backoff; stopped by a signal.
    async fn attempts(&self) -> (Result<Value, TaskError>, u32) {
        let id = self.step.id.clone();
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
        (result, attempt)
    }

    /// Writes the step's record (only now is it done) and says so.
    fn record(
        &self,
        result: Result<Value, TaskError>,
        attempt: u32,
        started_at: String,
        elapsed: Duration,
    ) -> Result<StepRecord, StateError> {
        let id = self.step.id.clone();
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
