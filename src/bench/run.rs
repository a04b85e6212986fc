//! One benchmark run: generate through an [`Engine`], judge in the sandbox,
//! record each task as it finishes, summarise.
//!
//! Generation is sequential (a bench profile serves one request at a time);
//! judging overlaps with it on up to `parallel` sandbox slots. Tasks with a
//! record are skipped, so a killed run resumes at the next unfinished task.

use super::dataset::Dataset;
use super::prompt;
use super::sandbox::{Sandbox, SandboxError};
use super::score::{self, Reply, ResultsError, ResultsStore, RunMeta, Summary, TaskRecord};
use crate::engine::{Engine, EngineError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Dataset(#[from] super::dataset::DatasetError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("{task}: the engine failed: {source}")]
    Engine {
        task: String,
        #[source]
        source: EngineError,
    },
    #[error("{task}: {source}")]
    Judge {
        task: String,
        #[source]
        source: SandboxError,
    },
    #[error("interrupted (Ctrl-C or SIGTERM); finished tasks are kept")]
    Interrupted,
}

/// What one benchmark run is about.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The model id (manifest id): names the results.
    pub model: String,
    /// `benchmarks/results` (absolute).
    pub results_dir: PathBuf,
    /// How `records` is shown in the summary (workspace-relative).
    pub results_display: String,
    pub max_tokens: u32,
    pub endpoint: Option<String>,
    pub served_model: Option<String>,
    /// sha256 of the bench profile's settings, when a profile is served.
    pub profile_settings: Option<String>,
}

/// Runs the benchmark on `dataset` (already selected) and writes the summary.
pub fn run(
    engine: &dyn Engine,
    dataset: &Dataset,
    sandbox: &Sandbox,
    options: &BenchOptions,
    log: &(dyn Fn(&str) + Sync),
) -> Result<Summary, BenchError> {
    let started = Instant::now();
    let meta = RunMeta {
        dataset: dataset.label.to_string(),
        dataset_sha256: dataset.sha256.clone(),
        prompt_version: prompt::VERSION,
        max_tokens: options.max_tokens,
        served_model: options.served_model.clone(),
        profile_settings: options.profile_settings.clone(),
    };
    let dir = options.results_dir.join(&options.model);
    let (store, done, note) = ResultsStore::open(&dir, &meta)?;
    if let Some(note) = note {
        log(&note);
    }
    let ids: Vec<String> = dataset.problems.iter().map(|p| p.task_id.clone()).collect();
    let resumed = ids.iter().filter(|id| done.contains_key(*id)).count();
    if resumed > 0 {
        log(&format!(
            "{resumed} of {} tasks already have results in {}; resuming",
            ids.len(),
            store.path().display()
        ));
    }
    let todo: Vec<_> = dataset
        .problems
        .iter()
        .filter(|p| !done.contains_key(&p.task_id))
        .collect();
    let total = ids.len();
    let records = Mutex::new(done);
    let store = Mutex::new(store);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<BenchError>> = Mutex::new(None);
    let fail = |e: BenchError| {
        stop.store(true, Ordering::SeqCst);
        let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    };
    let workers = sandbox.config().parallel.max(1);
    let (tx, rx) = mpsc::sync_channel::<(usize, Reply, String)>(workers);
    let rx = Mutex::new(rx);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok((index, reply, code)) = next else {
                    return;
                };
                if stop.load(Ordering::SeqCst) {
                    continue;
                }
                let problem = todo[index];
                let verdict = match sandbox.judge(problem, &code) {
                    Ok(v) => v,
                    Err(source) => {
                        fail(BenchError::Judge {
                            task: problem.task_id.clone(),
                            source,
                        });
                        continue;
                    }
                };
                let record = TaskRecord::from_verdict(&problem.task_id, verdict, reply);
                let appended = store
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .append(&record);
                if let Err(e) = appended {
                    fail(e.into());
                    continue;
                }
                let mut recs = records.lock().unwrap_or_else(|p| p.into_inner());
                let plus = match record.pass_plus {
                    Some(true) => ", plus pass",
                    Some(false) => ", plus fail",
                    None => "",
                };
                log(&format!(
                    "[{}/{total}] {}: base {}{plus} ({} tokens in {:.1} s, tests {:.1} s){}",
                    recs.len() + 1,
                    record.task_id,
                    if record.pass_base { "pass" } else { "fail" },
                    record.completion_tokens,
                    record.generation_seconds,
                    record.test_seconds,
                    record
                        .note
                        .as_deref()
                        .map(|n| format!(" [{n}]"))
                        .unwrap_or_default()
                ));
                recs.insert(record.task_id.clone(), record);
            });
        }
        for (index, problem) in todo.iter().enumerate() {
            if stop.load(Ordering::SeqCst) || sandbox.config().cancel.is_cancelled() {
                break;
            }
            let request = prompt::request(&problem.prompt, options.max_tokens);
            let t0 = Instant::now();
            match engine.chat(&request) {
                Ok(response) => {
                    let code = prompt::code_from_reply(&response.text, &problem.entry_point);
                    let reply = Reply {
                        text: response.text,
                        finish_reason: response.finish_reason,
                        prompt_tokens: response.prompt_tokens,
                        completion_tokens: response.completion_tokens,
                        seconds: t0.elapsed().as_secs_f64(),
                    };
                    if tx.send((index, reply, code)).is_err() {
                        break;
                    }
                }
                Err(source) => {
                    fail(BenchError::Engine {
                        task: problem.task_id.clone(),
                        source,
                    });
                    break;
                }
            }
        }
        drop(tx);
    });
    if sandbox.config().cancel.is_cancelled() {
        // No summary from a partial run; the records written stay.
        return Err(BenchError::Interrupted);
    }
    let records = records.into_inner().unwrap_or_else(|p| p.into_inner());
    let (completed, passed_base, passed_plus) = score::pass_counts(&records, &ids);
    let plus_dataset = dataset.label == super::dataset::LABEL_PLUS;
    let passed_plus = if plus_dataset { passed_plus } else { None };
    let summary = Summary {
        format: score::SUMMARY_FORMAT,
        model: options.model.clone(),
        dataset: dataset.label.to_string(),
        dataset_sha256: dataset.sha256.clone(),
        tasks: total,
        completed,
        complete: completed == total,
        passed_base,
        passed_plus,
        pass_at_1_base: score::ratio(passed_base, total),
        pass_at_1_plus: passed_plus.map(|p| score::ratio(p, total)),
        engine: engine.name().to_string(),
        endpoint: options.endpoint.clone(),
        served_model: options.served_model.clone(),
        max_tokens: options.max_tokens,
        wall_seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        resumed_tasks: resumed,
        date: score::utc_now(),
        records: format!("{}/{}/tasks.jsonl", options.results_display, options.model),
    };
    let failure = failure.into_inner().unwrap_or_else(|p| p.into_inner());
    // A run that failed before any result (the engine never started) leaves
    // no summary: a 0 % row in the report would be a score nobody measured.
    if failure.is_none() || completed > 0 {
        summary.write(&options.results_dir.join(format!("{}.json", options.model)))?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(summary)
}

/// Per-task records of a model, for tools that want more than the summary.
pub fn records(
    results_dir: &std::path::Path,
    model: &str,
) -> Result<BTreeMap<String, TaskRecord>, ResultsError> {
    score::read_records(&results_dir.join(model).join("tasks.jsonl"))
}
