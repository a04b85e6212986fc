//! The `onboard` command line: arguments in, a plain config out, then one
//! function per command. Exit codes: 0 success, 1 findings or a failed run,
//! 2 usage errors (bad arguments, missing files).

mod docs;
mod export;
mod inspect;
mod launch;
mod load;
mod mirror;
mod plan;
mod report;
mod run;
mod schema;
mod status;
mod validate;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "onboard",
    version,
    about = "Onboard a GGUF model onto a llama.cpp workstation: evaluate, download, profile, test, benchmark, document.",
    after_help = "`onboard <model-id>` is short for `onboard run <model-id>`."
)]
struct Cli {
    /// The workspace directory (holds onboard.yaml, workflows/, models/).
    #[arg(
        long,
        short = 'C',
        global = true,
        default_value = ".",
        value_name = "DIR"
    )]
    workspace: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check workflows, manifests and onboard.yaml; every finding at once.
    Validate(validate::ValidateArgs),
    /// Print the JSON Schema of workflow, manifest or workspace files.
    Schema(schema::SchemaArgs),
    /// Show what a run would do, step by step, and why.
    Plan(plan::PlanArgs),
    /// Print the workflow's DAG (Graphviz dot or Mermaid).
    Graph(plan::GraphArgs),
    /// Run the workflow for a model, resuming where the last run stopped.
    Run(run::RunArgs),
    /// Show the last recorded result of every step for a model, or, with
    /// no model, one line per model of the workspace.
    Status(status::StatusArgs),
    /// Start llama-server with a models.conf profile (or print the command).
    Launch(launch::LaunchArgs),
    /// Export models.conf for llama-swap or llama.cpp's --models-preset.
    Export(launch::ExportArgs),
    /// Export a model's workflow to Argo Workflows or GitHub Actions: one
    /// task per step, each `onboard run <model> --only <step>`.
    ExportWorkflow(export::ExportWorkflowArgs),
    /// Serve a directory of repos over the Hub's routes (air-gapped use).
    Mirror(mirror::MirrorArgs),
    /// The embedded engine's child process (internal).
    #[command(name = "__engine-worker", hide = true)]
    EngineWorker(EngineWorkerArgs),
    /// GGUF facts and a memory table for a local file or hf://owner/repo[/file].
    Inspect(inspect::InspectArgs),
    /// The workspace's hardware, or --detect this machine's (nvidia-smi, /proc/meminfo).
    Hardware(inspect::HardwareArgs),
    /// Check every relative link and anchor in the workspace's markdown.
    Links(docs::LinksArgs),
    /// Advise which models to retire (--advise), or retire one (dry run
    /// unless --yes).
    Retire(docs::RetireArgs),
    /// Compare every benchmarked model: benchmarks/report.md and report.svg.
    Report(report::ReportArgs),
    #[command(external_subcommand)]
    Model(Vec<String>),
}

#[derive(Args, Debug)]
struct EngineWorkerArgs {
    /// `mistralrs` or `llama-cpp`.
    #[arg(long, default_value = "mistralrs")]
    engine: String,
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    file: String,
    #[arg(long)]
    cpu: bool,
    /// Tokens of context to allocate (llama.cpp).
    #[arg(long)]
    ctx_size: Option<u64>,
    #[arg(long)]
    threads: Option<usize>,
    /// Only check that the engine can load the file, then exit.
    #[arg(long)]
    check: bool,
}

fn engine_worker(args: &EngineWorkerArgs) -> i32 {
    use crate::engine::embedded::WorkerEngine;
    match WorkerEngine::from_name(&args.engine) {
        Some(WorkerEngine::MistralRs) => mistralrs_worker(args),
        Some(WorkerEngine::LlamaCpp) => llama_cpp_worker(args),
        None => {
            error(&format!("unknown embedded engine `{}`", args.engine));
            EXIT_FAILED
        }
    }
}

fn mistralrs_worker(args: &EngineWorkerArgs) -> i32 {
    #[cfg(feature = "embedded")]
    {
        crate::engine::embedded::worker::run(&args.dir, &args.file, args.cpu, args.check)
    }
    #[cfg(not(feature = "embedded"))]
    {
        let _ = args;
        error("this build has no mistral.rs engine (built without the `embedded` feature)");
        EXIT_FAILED
    }
}

fn llama_cpp_worker(args: &EngineWorkerArgs) -> i32 {
    #[cfg(feature = "llama-cpp")]
    {
        let gguf = args.dir.join(&args.file);
        crate::engine::llama_cpp::worker::run(&crate::engine::llama_cpp::worker::Options {
            gguf: &gguf,
            context: args.ctx_size,
            threads: args.threads,
            gpu: !args.cpu,
            check_only: args.check,
        })
    }
    #[cfg(not(feature = "llama-cpp"))]
    {
        let _ = args;
        error("this build has no llama.cpp engine (built without the `llama-cpp` feature)");
        EXIT_FAILED
    }
}

/// Step selection shared by `plan` and `run`.
#[derive(Args, Debug, Clone, Default)]
pub struct SelectionArgs {
    /// Run only this step (its upstream must be done).
    #[arg(long, value_name = "STEP")]
    only: Option<String>,
    /// Rerun this step and everything downstream of it.
    #[arg(long, value_name = "STEP")]
    from: Option<String>,
    /// Stop after this step (run only it and what it needs).
    #[arg(long, value_name = "STEP")]
    until: Option<String>,
    /// Rerun this step even if it is done and unchanged (repeatable).
    #[arg(long, value_name = "STEP")]
    force: Vec<String>,
    /// Use this workflow (a name under workflows/ or a path) instead of the
    /// manifest's or the workspace default.
    #[arg(long, value_name = "NAME|PATH")]
    workflow: Option<String>,
}

impl SelectionArgs {
    fn selection(&self) -> crate::workflow::plan::Selection {
        crate::workflow::plan::Selection {
            only: self.only.clone(),
            from: self.from.clone(),
            until: self.until.clone(),
            force: self.force.clone(),
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Human,
    Json,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    EXIT_OK
                }
                _ => EXIT_USAGE,
            };
        }
    };
    match cli.command {
        Command::Validate(args) => validate::execute(&cli.workspace, &args),
        Command::Schema(args) => schema::execute(&args),
        Command::Plan(args) => plan::plan(&cli.workspace, &args),
        Command::Graph(args) => plan::graph(&cli.workspace, &args),
        Command::Status(args) => status::status(&cli.workspace, &args),
        Command::Run(args) => run::execute(&cli.workspace, &args),
        Command::EngineWorker(args) => engine_worker(&args),
        Command::Mirror(args) => mirror::execute(&args),
        Command::Launch(args) => launch::launch(&cli.workspace, &args),
        Command::Export(args) => launch::export(&cli.workspace, &args),
        Command::ExportWorkflow(args) => export::execute(&cli.workspace, &args),
        Command::Inspect(args) => inspect::inspect(&cli.workspace, &args),
        Command::Hardware(args) => inspect::hardware(&cli.workspace, &args),
        Command::Links(args) => docs::links(&cli.workspace, &args),
        Command::Retire(args) => docs::retire(&cli.workspace, &args),
        Command::Report(args) => report::execute(&cli.workspace, &args),
        Command::Model(words) => {
            let argv = std::iter::once("onboard run".to_string()).chain(words);
            match run::ModelRunArgs::try_parse_from(argv) {
                Ok(args) => run::execute(
                    args.workspace.as_deref().unwrap_or(&cli.workspace),
                    &args.run,
                ),
                Err(e) => {
                    let _ = e.print();
                    EXIT_USAGE
                }
            }
        }
    }
}

/// Prints to stderr with the `onboard:` prefix, secrets removed.
pub(crate) fn error(message: &str) {
    eprintln!("onboard: error: {}", crate::secrets::redact(message));
}
