//! `onboard run <model>` (and `onboard <model>`).

use super::load;
use super::plan::planner;
use super::{error, SelectionArgs, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::secrets;
use crate::workflow::duration;
use crate::workflow::graph::Dag;
use crate::workflow::run::{self, Event, EventSink, RunError};
use clap::Parser;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
pub struct RunArgs {
    /// The model (a manifest id under models/).
    model: String,
    #[command(flatten)]
    selection: SelectionArgs,
    /// How many independent steps may run at once (default: the
    /// workspace's `defaults.jobs`).
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// One JSON event per line on stdout.
    #[arg(long)]
    json: bool,
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
    let loaded = match load::for_model(dir, &args.model, args.selection.workflow.as_deref()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let _lock = match loaded.store.lock() {
        Ok(lock) => lock,
        Err(e) => {
            error(&e.to_string());
            return EXIT_FAILED;
        }
    };
    let jobs = args
        .jobs
        .unwrap_or(loaded.workspace.config.defaults.jobs as usize);
    let sink: EventSink = if args.json {
        Arc::new(print_json)
    } else {
        Arc::new(print_human)
    };
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
    let dag = Dag::new(&loaded.workflow);
    let planner = planner(&loaded, &dag);
    let result = runtime.block_on(run::run(&planner, &args.selection.selection(), jobs, sink));
    match result {
        Ok(summary) if summary.ok => EXIT_OK,
        Ok(_) => EXIT_FAILED,
        Err(RunError::Selection(e)) => {
            error(&e);
            EXIT_USAGE
        }
        Err(e) => {
            error(&e.to_string());
            EXIT_FAILED
        }
    }
}

fn print_json(event: &Event) {
    let value = serde_json::to_value(event).unwrap_or_default();
    let line = serde_json::to_string(&secrets::redact_json(&value)).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn print_human(event: &Event) {
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
        Event::StepBlocked { step, why } => format!("  block  {step}: {why}"),
        Event::RunFinished {
            ok,
            ran,
            skipped,
            failed,
            blocked,
            duration_ms,
        } => {
            let verdict = if *ok { "finished" } else { "stopped" };
            let mut s = format!(
                "{verdict} in {}: {ran} ran, {skipped} skipped, {failed} failed, {blocked} blocked",
                ms(*duration_ms)
            );
            if !ok {
                s.push_str(
                    "\nfix the cause and run the same command again: finished steps are kept",
                );
            }
            s
        }
    };
    let line = secrets::redact(&line);
    match event {
        Event::StepFinished { ok: false, .. } | Event::StepBlocked { .. } => eprintln!("{line}"),
        _ => println!("{line}"),
    }
}
