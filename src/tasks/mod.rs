//! Pluggable tasks: the units of work a workflow step names with `uses:`.
//!
//! Each task kind implements [`Task`]: a name, a version (bumped when its
//! behaviour changes, so old records stop counting as done), typed parameters
//! and outputs (their JSON Schemas drive `validate` and `onboard schema`), the
//! files it reads and writes (fingerprinted for resume), and an async `run`.
//! Policies such as retry and timeout live in the engine, not in tasks.

pub mod bench_profile;
pub mod benchmark;
pub mod command;
pub mod context_test;
pub mod docs;
pub mod download;
pub mod evaluate;
pub mod hand_edits;
pub mod model_engine;
pub mod profile;
pub mod render;
pub mod samplers;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

/// What a running task may know about its surroundings.
#[derive(Clone)]
pub struct TaskContext {
    /// The workspace root (absolute).
    pub workspace: PathBuf,
    pub model: String,
    pub step: String,
    /// 1 for the first try, 2 for the first retry, …
    pub attempt: u32,
    /// The values templates see: `model`, `manifest`, `workspace`, `steps`.
    pub template_context: Value,
    /// Receives progress lines meant for the user.
    pub log: Arc<dyn Fn(&str) + Send + Sync>,
    /// Receives transfer progress (bytes, rate) for the CLI to draw as a
    /// bar, periodic lines or JSON events.
    pub progress: Arc<dyn Fn(&crate::hub::TransferProgress) + Send + Sync>,
    /// The outputs this step recorded the last time it finished (`None`:
    /// never, or its last try failed). A step that edits a file people also
    /// edit tells its own earlier writes from theirs with it.
    pub previous_outputs: Option<Value>,
    /// Set when the run is stopped (Ctrl-C, SIGTERM): blocking work polls
    /// it, since dropping its future does not stop a blocking thread.
    pub cancel: crate::cancel::Cancel,
}

impl TaskContext {
    pub fn log(&self, line: &str) {
        (self.log)(line)
    }

    pub fn progress(&self, progress: &crate::hub::TransferProgress) {
        (self.progress)(progress)
    }

    /// The workspace layout (`paths:` of onboard.yaml), defaults if absent.
    pub fn paths(&self) -> crate::workspace::config::Paths {
        self.template_context
            .get("workspace")
            .and_then(|w| w.get("paths"))
            .and_then(|p| serde_json::from_value(p.clone()).ok())
            .unwrap_or_default()
    }

    /// Held while a step rewrites files that every model shares (the docs
    /// tables, the benchmarks README): each such step regenerates them from
    /// the whole workspace, so two models onboarding at once must take turns,
    /// or the slower one writes back a table that lacks the faster one.
    pub fn lock_shared_files(&self) -> Result<std::fs::File, TaskError> {
        let path = self.path(&self.paths().state)?.join(".shared-files.lock");
        let open = || -> std::io::Result<std::fs::File> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.lock()?;
            Ok(file)
        };
        open().map_err(|e| TaskError::io(&path, e))
    }

    /// A workspace-relative path from a parameter, refused if it escapes.
    pub fn path(&self, relative: &str) -> Result<PathBuf, TaskError> {
        crate::workspace::resolve_inside(&self.workspace, relative).map_err(TaskError::Params)
    }
}

/// A named input that is not a whole file, such as one profile of
/// models.conf: that file is shared by every model and steps write into it,
/// so a digest of the whole file would rerun steps for edits that change
/// nothing they read. Fingerprinted like an input file; `onboard plan`
/// names it, and the lines that changed, when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputValue {
    /// What it is, for people: `models.conf [qwen35-35b]`.
    pub label: String,
    /// Its meaning in a canonical form, one `KEY=VALUE` per line, so that
    /// edits which change nothing (comments, spacing, order) are not changes.
    pub content: String,
}

/// The settings of profile `id` in the workspace's models.conf as an
/// input, without `except` (the keys the step writes there itself, which
/// would otherwise make its own record stale).
pub fn profile_input(
    ctx: &TaskContext,
    id: &str,
    except: &[&str],
) -> Result<InputValue, TaskError> {
    let file = ctx.paths().models_conf;
    let conf = crate::workspace::models_conf::read(&ctx.path(&file)?)
        .map_err(|e| TaskError::failed(e.to_string()))?;
    Ok(InputValue {
        label: format!("{file} [{id}]"),
        content: conf.canonical(id, except),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Parameters that cannot work; retrying will not help.
    #[error("invalid parameters: {0}")]
    Params(String),
    #[error("{message}")]
    Failed { message: String, retryable: bool },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl TaskError {
    pub fn failed(message: impl Into<String>) -> Self {
        TaskError::Failed {
            message: message.into(),
            retryable: true,
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> Self {
        TaskError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            TaskError::Params(_) => false,
            TaskError::Failed { retryable, .. } => *retryable,
            TaskError::Io { .. } => true,
        }
    }
}

/// One kind of step. Implement this; the registry erases the types.
pub trait Task: Send + Sync + 'static {
    const KIND: &'static str;
    const VERSION: u32;
    /// One line for `onboard schema` and editor hovers.
    const SUMMARY: &'static str;
    /// Whether the step loads the model into an engine, so needs the GPUs
    /// where it runs (an exported workflow requests them for it alone).
    const LOADS_MODEL: bool = false;
    type Params: DeserializeOwned + Serialize + JsonSchema + Send + 'static;
    type Outputs: Serialize + JsonSchema + Send + 'static;

    /// Files whose contents the result depends on (digested for resume).
    fn input_files(
        &self,
        _params: &Self::Params,
        _ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        Ok(Vec::new())
    }

    /// Inputs that are part of a file (one models.conf profile), digested
    /// for resume like [`Task::input_files`].
    fn input_values(
        &self,
        _params: &Self::Params,
        _ctx: &TaskContext,
    ) -> Result<Vec<InputValue>, TaskError> {
        Ok(Vec::new())
    }

    /// Files the task produces; a record whose outputs were changed or
    /// removed since is no longer done.
    fn output_files(
        &self,
        _params: &Self::Params,
        _ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        Ok(Vec::new())
    }

    fn run(
        &self,
        params: Self::Params,
        ctx: TaskContext,
    ) -> impl Future<Output = Result<Self::Outputs, TaskError>> + Send;

    /// What `run` would change, computed without changing anything (for
    /// `onboard plan --diff`); `None` when this kind cannot tell.
    fn preview(
        &self,
        _params: &Self::Params,
        _ctx: &TaskContext,
    ) -> Result<Option<Vec<FileChange>>, TaskError> {
        Ok(None)
    }
}

/// One file a task would create, change or remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Relative to the workspace.
    pub path: PathBuf,
    /// `None`: the file does not exist yet.
    pub before: Option<String>,
    /// `None`: the file would be removed.
    pub after: Option<String>,
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The type-erased face of a [`Task`], as the engine sees it.
pub trait DynTask: Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    fn summary(&self) -> &'static str;
    fn loads_model(&self) -> bool;
    fn params_schema(&self) -> Value;
    fn outputs_schema(&self) -> Value;
    /// Names of the outputs later steps may reference.
    fn output_names(&self) -> Vec<String>;
    fn input_files(&self, params: &Value, ctx: &TaskContext) -> Result<Vec<PathBuf>, TaskError>;
    fn input_values(&self, params: &Value, ctx: &TaskContext)
        -> Result<Vec<InputValue>, TaskError>;
    fn output_files(&self, params: &Value, ctx: &TaskContext) -> Result<Vec<PathBuf>, TaskError>;
    fn run(self: Arc<Self>, params: Value, ctx: TaskContext)
        -> BoxFuture<Result<Value, TaskError>>;
    fn preview(
        &self,
        params: &Value,
        ctx: &TaskContext,
    ) -> Result<Option<Vec<FileChange>>, TaskError>;
}

fn parse<P: DeserializeOwned>(params: &Value) -> Result<P, TaskError> {
    serde_json::from_value(params.clone()).map_err(|e| TaskError::Params(e.to_string()))
}

impl<T: Task> DynTask for T {
    fn kind(&self) -> &'static str {
        T::KIND
    }
    fn version(&self) -> u32 {
        T::VERSION
    }
    fn summary(&self) -> &'static str {
        T::SUMMARY
    }
    fn loads_model(&self) -> bool {
        T::LOADS_MODEL
    }
    fn params_schema(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(T::Params)).unwrap_or(Value::Bool(true))
    }
    fn outputs_schema(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(T::Outputs)).unwrap_or(Value::Bool(true))
    }
    fn output_names(&self) -> Vec<String> {
        self.outputs_schema()
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }
    fn input_files(&self, params: &Value, ctx: &TaskContext) -> Result<Vec<PathBuf>, TaskError> {
        Task::input_files(self, &parse(params)?, ctx)
    }
    fn input_values(
        &self,
        params: &Value,
        ctx: &TaskContext,
    ) -> Result<Vec<InputValue>, TaskError> {
        Task::input_values(self, &parse(params)?, ctx)
    }
    fn output_files(&self, params: &Value, ctx: &TaskContext) -> Result<Vec<PathBuf>, TaskError> {
        Task::output_files(self, &parse(params)?, ctx)
    }
    fn preview(
        &self,
        params: &Value,
        ctx: &TaskContext,
    ) -> Result<Option<Vec<FileChange>>, TaskError> {
        Task::preview(self, &parse(params)?, ctx)
    }
    fn run(
        self: Arc<Self>,
        params: Value,
        ctx: TaskContext,
    ) -> BoxFuture<Result<Value, TaskError>> {
        Box::pin(async move {
            let params: T::Params = parse(&params)?;
            let outputs = Task::run(&*self, params, ctx).await?;
            serde_json::to_value(outputs)
                .map_err(|e| TaskError::failed(format!("outputs could not be recorded: {e}")))
        })
    }
}

/// The task kinds a workflow may use, by name.
#[derive(Clone, Default)]
pub struct Registry {
    tasks: BTreeMap<&'static str, Arc<dyn DynTask>>,
}

impl Registry {
    /// Every task kind this build ships.
    pub fn builtin() -> Self {
        let mut registry = Registry::default();
        registry.register(command::Command);
        registry.register(render::Render);
        registry.register(profile::ProfileTask);
        registry.register(samplers::Samplers);
        registry.register(bench_profile::BenchProfile);
        registry.register(context_test::ContextTest);
        registry.register(download::Download);
        registry.register(docs::Docs);
        registry.register(evaluate::Evaluate);
        registry.register(benchmark::Benchmark);
        registry
    }

    pub fn register<T: Task>(&mut self, task: T) {
        self.tasks.insert(T::KIND, Arc::new(task));
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn DynTask>> {
        self.tasks.get(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.tasks.keys().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn DynTask>> {
        self.tasks.values()
    }
}
