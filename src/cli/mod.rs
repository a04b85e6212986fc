//! The `onboard` command line: arguments in, a plain config out, then one
//! function per command. Exit codes: 0 success, 1 findings or a failed run,
//! 2 usage errors (bad arguments, missing files); `outdated` also 3: the
//! Hub could not be asked, so nothing can be said.

mod completions;
mod docs;
mod export;
mod init;
mod inspect;
mod launch;
mod load;
mod mirror;
mod outdated;
mod plan;
mod report;
mod run;
mod schema;
mod status;
mod suggest;
mod validate;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

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
    /// The workspace directory (holds onboard.yaml, workflows/, models/);
    /// path arguments are read relative to it, as with git and make.
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
    /// Whether the Hub still serves what each onboarded model was made
    /// from (headers only); recorded, so `plan` and `run` rerun what changed.
    Outdated(outdated::OutdatedArgs),
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
    /// Make a workspace: onboard.yaml for this machine, the default
    /// workflow and templates, models/, documentation/CANDIDATES/.
    Init(init::InitArgs),
    /// Write models/<id>.yaml from a Hub repository's GGUF header.
    New(init::NewArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the manual page, onboard(1), in roff.
    Man(completions::ManArgs),
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
    /// Draft this many tokens per round with the model's MTP block (llama.cpp).
    #[arg(long)]
    mtp_draft: Option<u32>,
}

fn engine_worker(args: &EngineWorkerArgs) -> i32 {
    let child = crate::engine::child::ChildArgs {
        engine: &args.engine,
        dir: &args.dir,
        file: &args.file,
        cpu: args.cpu,
        context: args.ctx_size,
        threads: args.threads,
        check: args.check,
        mtp_draft: args.mtp_draft,
    };
    crate::engine::child::run(&child).unwrap_or_else(|message| {
        error(&message);
        EXIT_FAILED
    })
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
    /// Ask the Hub first whether the files the models were made from
    /// changed (as `onboard outdated`), so a re-upload reruns its steps.
    #[arg(long)]
    refresh: bool,
}

impl SelectionArgs {
    /// `--refresh`: the upstream check of `models`, recorded before the
    /// plan is made.
    fn refresh(&self, dir: &Path, models: &[String]) {
        if self.refresh {
            outdated::refresh(dir, models);
        }
    }

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

/// `--format human|json`, the same on every command that can print JSON,
/// with `--json` kept for the commands that had only it.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct FormatArg {
    /// Text for people, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Short for `--format json`.
    #[arg(long)]
    json: bool,
}

impl FormatArg {
    pub fn get(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.format
        }
    }

    pub fn json(&self) -> bool {
        self.get() == Format::Json
    }
}

impl PartialEq<Format> for FormatArg {
    fn eq(&self, other: &Format) -> bool {
        self.get() == *other
    }
}

/// `path` as the user meant it: relative paths are read from `-C`'s
/// directory, as git and make read them.
pub(crate) fn relative_to(workspace: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() || workspace == Path::new(".") {
        path.to_path_buf()
    } else {
        workspace.join(path)
    }
}

/// Whether `command` reads a workspace; the others (inspecting a file or a
/// Hub repository, detecting the machine, serving a mirror, the schemas,
/// completions, the man page, making a workspace) work anywhere.
fn needs_workspace(command: &Command) -> bool {
    match command {
        Command::Validate(args) => !args.has_paths(),
        Command::Hardware(args) => !args.detects(),
        Command::Schema(_)
        | Command::Mirror(_)
        | Command::EngineWorker(_)
        | Command::Inspect(_)
        | Command::Init(_)
        | Command::Completions(_)
        | Command::Man(_) => false,
        _ => true,
    }
}

/// Refuses a `-C` that is no workspace before a command reads it: a
/// validate that checks nothing must not pass, nor a plan of defaults run
/// late into failure.
fn require_workspace(dir: &Path) -> Result<(), i32> {
    let needs =
        "a workspace is a directory with onboard.yaml (the machine and where things live), \
                 workflows/ (how to onboard) and models/<id>.yaml (what to onboard)";
    let init = format!("`onboard init {}` makes one", dir.display());
    if !dir.is_dir() {
        error(&format!(
            "{}: no such directory; {needs}; {init}",
            dir.display()
        ));
        return Err(EXIT_USAGE);
    }
    if !dir.join(crate::workspace::CONFIG_FILE).is_file() {
        error(&format!(
            "{} is no onboard workspace: it has no {}; {needs}; {init}, or give -C a workspace",
            dir.display(),
            crate::workspace::CONFIG_FILE
        ));
        return Err(EXIT_USAGE);
    }
    Ok(())
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
    if needs_workspace(&cli.command) {
        if let Command::Model(words) = &cli.command {
            return model_command(&cli.workspace, words);
        }
        if let Err(code) = require_workspace(&cli.workspace) {
            return code;
        }
    }
    let dir = &cli.workspace;
    match cli.command {
        Command::Validate(args) => validate::execute(dir, &args),
        Command::Schema(args) => schema::execute(&args),
        Command::Plan(args) => plan::plan(dir, &args),
        Command::Graph(args) => plan::graph(dir, &args),
        Command::Status(args) => status::status(dir, &args),
        Command::Run(args) => run::execute(dir, &args),
        Command::Outdated(args) => outdated::execute(dir, &args),
        Command::EngineWorker(args) => engine_worker(&args),
        Command::Mirror(args) => mirror::execute(dir, &args),
        Command::Launch(args) => launch::launch(dir, &args),
        Command::Export(args) => launch::export(dir, &args),
        Command::ExportWorkflow(args) => export::execute(dir, &args),
        Command::Inspect(args) => inspect::inspect(dir, &args),
        Command::Hardware(args) => inspect::hardware(dir, &args),
        Command::Links(args) => docs::links(dir, &args),
        Command::Retire(args) => docs::retire(dir, &args),
        Command::Report(args) => report::execute(dir, &args),
        Command::Init(args) => init::init(dir, &args),
        Command::New(args) => init::new(dir, &args),
        Command::Completions(args) => completions::completions(&args),
        Command::Man(args) => completions::man(&args),
        Command::Model(words) => model_command(dir, &words),
    }
}

/// `onboard <word> …`: a model id, unless the word is a misspelt command
/// (checked first, so `onboard valdate` does not read as a model).
fn model_command(dir: &Path, words: &[String]) -> i32 {
    let argv = std::iter::once("onboard run".to_string()).chain(words.iter().cloned());
    let args = match run::ModelRunArgs::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return EXIT_USAGE;
        }
    };
    let dir = args.workspace.as_deref().unwrap_or(dir);
    let word = words.first().map(String::as_str).unwrap_or_default();
    let is_model =
        crate::workspace::Workspace::open(dir).is_ok_and(|ws| ws.manifest_path(word).is_file());
    if !is_model {
        if let Some(command) = suggest::command(word) {
            error(&format!(
                "no command `{word}`; did you mean `{command}`? (a model id runs its workflow: `onboard <model>`; `onboard --help` lists the commands)"
            ));
            return EXIT_USAGE;
        }
    }
    if let Err(code) = require_workspace(dir) {
        return code;
    }
    run::execute(dir, &args.run)
}

/// Prints to stderr with the `onboard:` prefix, secrets removed.
pub(crate) fn error(message: &str) {
    eprintln!("onboard: error: {}", crate::secrets::redact(message));
}
