//! `onboard run <model>` (and `onboard <model>`).

use super::load;
use super::plan::planner;
use super::{error, SelectionArgs, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::cancel::{self, Cancel};
use crate::hub::{progress, ProgressEvent, Throttle, TtyProgress};
use crate::secrets;
use crate::workflow::duration;
use crate::workflow::graph::Dag;
use crate::workflow::run::{self, Event, RunError, RunShared, TargetRun};
use crate::workflow::task::TransferProgress;
use clap::Parser;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
pub struct RunArgs {
    /// The models (manifest ids under models/). Several run as one
    /// schedule: every model evaluated before any download, downloads side
    /// by side, the steps that load a model one at a time, in this order.
    #[arg(value_name = "MODEL", required_unless_present = "candidates")]
    models: Vec<String>,
    /// Every model whose card waits in the docs' CANDIDATES/ folder (after
    /// the models named, in id order).
    #[arg(long)]
    candidates: bool,
    /// With several models: stop them all when one fails (by default the
    /// others go on).
    #[arg(long)]
    fail_fast: bool,
    #[command(flatten)]
    selection: SelectionArgs,
    /// How many independent steps may run at once, over all models
    /// (default: the workspace's `defaults.jobs`).
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// JSON: one event per line on stdout, each with its `model`.
    #[command(flatten)]
    format: super::FormatArg,
    /// When another run of this model holds its lock, wait for it to finish
    /// instead of refusing (the steps of an exported workflow share a
    /// workspace and may start together).
    #[arg(long)]
    wait_for_lock: bool,
}

/// `onboard <model> [options]`: the run options, plus `-C` after the id.
#[derive(Parser, Debug)]
pub struct ModelRunArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// The workspace directory.
    #[arg(long, short = 'C', value_name = "DIR")]
    pub workspace: Option<std::path::PathBuf>,
}

pub fn execute(dir: &Path, args: &RunArgs) -> i32 {
    let models = match selected_models(dir, args) {
        Ok(m) => m,
        Err(code) => return code,
    };
    args.selection.refresh(dir, &models);
    let mut loaded = Vec::new();
    for model in &models {
        match load::for_model(dir, model, args.selection.workflow.as_deref()) {
            Ok(l) => loaded.push(l),
            Err(code) => return code,
        }
    }
    let mut locks = Vec::new();
    for l in &loaded {
        let lock = if args.wait_for_lock {
            l.store.lock_waiting(LOCK_POLL, |held| {
                if let crate::workflow::state::StateError::Locked { target, holder } = held {
                    eprintln!(
                        "another run of `{target}` holds its lock{holder}: waiting for it to finish"
                    );
                }
            })
        } else {
            l.store.lock()
        };
        match lock {
            Ok(lock) => locks.push(lock),
            Err(e) => {
                error(&e.to_string());
                return EXIT_FAILED;
            }
        }
    }
    let Some(first) = loaded.first() else {
        error("no model to run");
        return EXIT_USAGE;
    };
    let jobs = args
        .jobs
        .unwrap_or(first.workspace.config.defaults.jobs as usize);
    let several = loaded.len() > 1;
    let console = Arc::new(Console::new(args.format.json(), several));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error(&format!("cannot start the async runtime: {e}"));
            return EXIT_FAILED;
        }
    };
    let cancel = Cancel::new();
    if let Err(e) = listen_for_signals(cancel.clone()) {
        error(&format!("cannot install the signal handlers: {e}"));
        return EXIT_FAILED;
    }
    let dags: Vec<Dag> = loaded.iter().map(|l| Dag::new(&l.workflow)).collect();
    let targets: Vec<TargetRun> = loaded
        .iter()
        .zip(&dags)
        .map(|(l, dag)| {
            let console = console.clone();
            let model = l.model.clone();
            TargetRun {
                planner: planner(l, dag),
                selection: args.selection.selection(),
                sink: Arc::new(move |event: &Event| console.emit(&model, event)),
            }
        })
        .collect();
    let shared = Arc::new(RunShared::new(
        models.clone(),
        jobs,
        load::resource_pool(&first.workspace),
        args.fail_fast,
    ));
    let results = runtime.block_on(run::run_many(&targets, &shared, cancel.clone()));
    console.finish();
    // Blocking work (a download, the sandbox) polls the token and stops
    // within a fraction of a second; an engine request in flight does not,
    // and the engines die with this process (parent-death signal).
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    if let Some(sig) = cancel.signal() {
        cancel::kill_groups();
        for l in &loaded {
            let _ = crate::atomic::sweep_temporaries(&l.store.dir().join("steps"));
        }
        return cancel::exit_code(sig);
    }
    let mut code = EXIT_OK;
    let mut verdicts = Vec::new();
    for (model, result) in models.iter().zip(results) {
        match result {
            Ok(summary) if summary.ok => verdicts.push((model, "finished")),
            Ok(_) => {
                code = code.max(EXIT_FAILED);
                verdicts.push((model, "stopped"));
            }
            Err(RunError::Selection(e)) => {
                error(&e);
                code = EXIT_USAGE;
                verdicts.push((model, "not run"));
            }
            Err(e) => {
                error(&format!("{model}: {e}"));
                code = code.max(EXIT_FAILED);
                verdicts.push((model, "stopped"));
            }
        }
    }
    if several && !args.format.json() {
        let width = models.iter().map(String::len).max().unwrap_or(0);
        println!("{} models:", models.len());
        for (model, verdict) in verdicts {
            println!("  {model:<width$}  {verdict}  (onboard status {model})");
        }
    }
    drop(locks);
    code
}

/// The models named, then `--candidates`' (each once, in that order).
fn selected_models(dir: &Path, args: &RunArgs) -> Result<Vec<String>, i32> {
    let mut models: Vec<String> = Vec::new();
    for m in &args.models {
        if !models.contains(m) {
            models.push(m.clone());
        }
    }
    if args.candidates {
        let ws = load::open_workspace(dir)?;
        let candidates = load::candidates(&ws);
        if candidates.is_empty() {
            error(&format!(
                "--candidates: no manifest's card is in {}/{}/",
                ws.config.paths.docs,
                crate::docs::catalog::CANDIDATES
            ));
            return Err(EXIT_USAGE);
        }
        for m in candidates {
            if !models.contains(&m) {
                models.push(m);
            }
        }
    }
    Ok(models)
}

/// How often `--wait-for-lock` tries the lock again.
const LOCK_POLL: Duration = Duration::from_millis(250);

/// How long blocking work gets to notice a signal before the process exits.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// First SIGINT/SIGTERM: cancel the run (the runner records the running
/// steps as interrupted). Second: kill the registered process groups and
/// exit at once. Installed before the run starts, so no signal falls back
/// to the default action (which would skip all clean-up), and on a thread
/// and runtime of its own, so it still answers while the run's runtime
/// shuts down.
fn listen_for_signals(cancel: Cancel) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut int, mut term) = {
        let _in_runtime = runtime.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    std::thread::Builder::new()
        .name("onboard-signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                loop {
                    let sig = tokio::select! {
                        Some(()) = int.recv() => libc::SIGINT,
                        Some(()) = term.recv() => libc::SIGTERM,
                        else => return,
                    };
                    let name = cancel::signal_name(sig);
                    if cancel.is_cancelled() {
                        cancel::kill_groups();
                        eprintln!("{name} again: exiting at once");
                        std::process::exit(cancel::exit_code(sig));
                    }
                    eprintln!("{name}: stopping the running steps (again to exit at once)");
                    cancel.cancel(sig);
                }
            })
        })?;
    Ok(())
}

/// Environment variable: how often byte counts are printed as plain lines
/// (stdout not a terminal) or JSON events (`--json`), e.g. `500ms`, `10s`.
pub const PROGRESS_INTERVAL_ENV: &str = "ONBOARD_PROGRESS_INTERVAL";

/// Where the run's events go: JSON lines (each with its `model`), or human
/// lines with transfer progress as bars (stderr a terminal) or periodic
/// lines (otherwise). With several models each human line starts with its
/// model, and each bar names it.
struct Console {
    json: bool,
    several: bool,
    /// Bars on stderr when it is a terminal (and not `--json`).
    bars: Option<TtyProgress<std::io::Stderr>>,
    /// Byte-count events let through (lines or JSON).
    throttle: Throttle,
}

impl Console {
    fn new(json: bool, several: bool) -> Console {
        let interval =
            std::env::var(PROGRESS_INTERVAL_ENV)
                .ok()
                .and_then(|v| match duration::parse(&v) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        eprintln!("warning: ignoring {PROGRESS_INTERVAL_ENV}: {e}");
                        None
                    }
                });
        let stderr = std::io::stderr();
        let bars =
            (!json && stderr.is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb"))
                .then(|| TtyProgress::with_width(stderr, terminal_width));
        let default = if json {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        Console {
            json,
            several,
            bars,
            throttle: Throttle::new(interval.unwrap_or(default)),
        }
    }

    fn emit(&self, model: &str, event: &Event) {
        if let (Some(bars), true) = (&self.bars, self.several) {
            // A line per model at the bottom: what it is doing now.
            let key = format!("\u{1}{model}\u{0}");
            match event {
                Event::StepStarted { step, .. } => bars.status(&key, &format!("{model}: {step}")),
                Event::StepWaiting { step, why } => {
                    bars.status(&key, &format!("{model}: {step} {why}"))
                }
                Event::RunFinished { .. } => bars.remove(&key),
                _ => {}
            }
        }
        match event {
            Event::StepProgress { step, progress } => self.progress(model, step, progress),
            _ if self.json => print_json(model, event),
            _ => {
                if let (Some(bars), Event::StepFinished { step, .. }) = (&self.bars, event) {
                    // A step that failed mid-transfer leaves no bar behind.
                    bars.remove(&format!("{model}\u{0}{step}\u{0}"));
                }
                self.human(model, event)
            }
        }
    }

    fn progress(&self, model: &str, step: &str, p: &TransferProgress) {
        let e = as_event(p);
        let key = format!("{model}\u{0}{step}\u{0}{}", p.file());
        if let Some(bars) = &self.bars {
            let label = if self.several {
                format!("{model} {step}: {}", p.file())
            } else {
                format!("{step}: {}", p.file())
            };
            if let Some(line) = bars.update(&key, &label, &e) {
                self.human(
                    model,
                    &Event::StepLog {
                        step: step.to_string(),
                        line,
                    },
                );
            }
            return;
        }
        if !self.throttle.pass(&key, &e) {
            return;
        }
        if self.json {
            print_json(
                model,
                &Event::StepProgress {
                    step: step.to_string(),
                    progress: p.clone(),
                },
            );
        } else {
            self.human(
                model,
                &Event::StepLog {
                    step: step.to_string(),
                    line: progress::describe(&e),
                },
            );
        }
    }

    /// A human line, printed above the bars when there are any.
    fn human(&self, model: &str, event: &Event) {
        let prefix = self.several.then_some(model);
        match &self.bars {
            Some(bars) => bars.suspend(|| print_human(prefix, event)),
            None => print_human(prefix, event),
        }
    }

    fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.clear();
        }
    }
}

/// Columns of the terminal on stderr (80 when it cannot tell).
fn terminal_width() -> usize {
    use std::os::unix::io::AsRawFd;
    let fd = std::io::stderr().as_raw_fd();
    // SAFETY: TIOCGWINSZ fills a plain C struct for a valid descriptor; it
    // is read only after the call succeeded.
    let cols = unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0 {
            ws.ws_col as usize
        } else {
            0
        }
    };
    if cols > 0 {
        cols
    } else {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(80)
    }
}

/// The engine's transfer event as the downloader's, for hub's renderers.
fn as_event(p: &TransferProgress) -> ProgressEvent<'_> {
    match p {
        TransferProgress::Start {
            file,
            total,
            present,
        } => ProgressEvent::Start {
            file,
            total: *total,
            present: *present,
        },
        TransferProgress::Bytes {
            file,
            done,
            total,
            rate,
            ..
        } => ProgressEvent::Bytes {
            file,
            done: *done,
            total: *total,
            rate: *rate,
        },
        TransferProgress::Retry {
            file,
            attempt,
            reason,
            wait_ms,
        } => ProgressEvent::Retry {
            file,
            attempt: *attempt,
            reason,
            wait: Duration::from_millis(*wait_ms),
        },
        TransferProgress::Verifying { file } => ProgressEvent::Verifying { file },
        TransferProgress::Done {
            file,
            size,
            fetched,
            how,
        } => ProgressEvent::Done {
            file,
            size: *size,
            fetched: *fetched,
            how,
        },
    }
}

fn print_json(model: &str, event: &Event) {
    let mut value = serde_json::to_value(event).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.insert("model".into(), model.into());
    }
    let line = serde_json::to_string(&secrets::redact_json(&value)).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn print_human(prefix: Option<&str>, event: &Event) {
    let ms = |m: u64| duration::display(Duration::from_millis(m));
    let line = match event {
        Event::RunStarted {
            target,
            workflow,
            steps,
        } => {
            format!("onboarding `{target}` with workflow `{workflow}` ({steps} steps)")
        }
        Event::StepStarted {
            step,
            uses,
            attempt,
            attempts,
            why,
        } => {
            if *attempt == 1 {
                format!("  run    {step} ({uses}): {why}")
            } else {
                format!("  retry  {step}: attempt {attempt} of {attempts}")
            }
        }
        Event::StepRetrying {
            step,
            error,
            delay_ms,
            ..
        } => {
            let first = error.lines().next().unwrap_or("");
            format!("  failed {step}: {first} (retrying in {})", ms(*delay_ms))
        }
        Event::StepLog { step, line } => format!("         {step}: {line}"),
        Event::StepProgress { step, progress } => {
            format!(
                "         {step}: {}",
                progress::describe(&as_event(progress))
            )
        }
        Event::StepFinished {
            step,
            ok: true,
            duration_ms,
            ..
        } => format!("  done   {step} in {}", ms(*duration_ms)),
        Event::StepFinished {
            step,
            ok: false,
            duration_ms,
            attempts,
            error,
        } => format!(
            "  FAILED {step} after {attempts} attempt(s), {}: {}",
            ms(*duration_ms),
            error.as_deref().unwrap_or("")
        ),
        Event::StepSkipped { step, why } => format!("  skip   {step}: {why}"),
        Event::StepWaiting { step, why } => format!("  wait   {step}: {why}"),
        Event::StepBlocked { step, why } => format!("  block  {step}: {why}"),
        Event::RunFinished {
            ok,
            ran,
            skipped,
            failed,
            blocked,
            duration_ms,
            interrupted,
        } => {
            let verdict = match interrupted {
                Some(sig) => format!("interrupted by {sig}"),
                None if *ok => "finished".to_string(),
                None => "stopped".to_string(),
            };
            let mut s = format!(
                "{verdict} in {}: {ran} ran, {skipped} skipped, {failed} failed, {blocked} blocked",
                ms(*duration_ms)
            );
            if interrupted.is_some() {
                s.push_str("\nrun the same command again to resume: finished steps are kept");
            } else if !ok {
                s.push_str(
                    "\nfix the cause and run the same command again: finished steps are kept",
                );
            }
            s
        }
    };
    let line = match prefix {
        // Each line of a multi-line message, so that none is orphaned.
        Some(model) => line
            .lines()
            .map(|l| format!("[{model}] {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        None => line,
    };
    let line = secrets::redact(&line);
    // Flushed at once: a progress bar on the same terminal is redrawn
    // right after this line.
    match event {
        Event::StepFinished { ok: false, .. } | Event::StepBlocked { .. } => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
            let _ = err.flush();
        }
        _ => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}
