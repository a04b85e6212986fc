//! The plug between the engine and the work: the [`Task`] trait a step's
//! `uses:` names, the context a running task sees, its error, and the
//! registry of kinds. The engine knows tasks only through this file; the
//! built-in kinds live in the tasks module and register themselves there.
//!
//! Each task kind implements [`Task`]: a name, a version (bumped when its
//! behaviour changes, so old records stop counting as done), typed parameters
//! and outputs (their JSON Schemas drive `validate` and `onboard schema`), the
//! files it reads and writes (fingerprinted for resume), and an async `run`.
//! Policies such as retry and timeout live in the engine, not in tasks.

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
    pub progress: Arc<dyn Fn(&TransferProgress) + Send + Sync>,
    /// The outputs this step recorded the last time it finished (`None`:
    /// never, or its last try failed). A step that edits a file people also
    /// edit tells its own earlier writes from theirs with it.
    pub previous_outputs: Option<Value>,
    /// Set when the run is stopped (Ctrl-C, SIGTERM): blocking work polls
    /// it, since dropping its future does not stop a blocking thread.
    pub cancel: crate::cancel::Cancel,
    /// What the loader parsed once for the tasks (the workspace's typed
    /// settings). The engine carries it without knowing its type, so it
    /// stays free of workspace and model types; tasks read it with
    /// [`TaskContext::settings`].
    pub settings: Option<Settings>,
}

/// Typed values a front end hands to every task of a run.
pub type Settings = Arc<dyn std::any::Any + Send + Sync>;

impl TaskContext {
    /// The run's settings, when the front end gave them as a `T`.
    pub fn settings<T: 'static>(&self) -> Option<&T> {
        self.settings.as_deref()?.downcast_ref::<T>()
    }

    pub fn log(&self, line: &str) {
        (self.log)(line)
    }

    pub fn progress(&self, progress: &TransferProgress) {
        (self.progress)(progress)
    }
}

/// Progress of a transfer a task makes (a download's bytes, say): what the
/// engine carries from a task to its event sink, and what `onboard run
/// --json` prints as `step_progress` (`"kind": "bytes"` …).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransferProgress {
    Start {
        file: String,
        total: u64,
        present: u64,
    },
    Bytes {
        file: String,
        done: u64,
        total: u64,
        /// Bytes per second over the last few seconds.
        rate: f64,
        /// Seconds left at that rate, when it can tell.
        #[serde(skip_serializing_if = "Option::is_none")]
        eta_s: Option<u64>,
    },
    Retry {
        file: String,
        attempt: u32,
        reason: String,
        wait_ms: u64,
    },
    /// Hashing bytes that were already there (resume, a cache).
    Verifying { file: String },
    Done {
        file: String,
        size: u64,
        /// Bytes that came over the network.
        fetched: u64,
        /// How the file came to be there (`downloaded`, `resumed`, …).
        how: String,
    },
}

impl TransferProgress {
    /// The file every event is about.
    pub fn file(&self) -> &str {
        match self {
            TransferProgress::Start { file, .. }
            | TransferProgress::Bytes { file, .. }
            | TransferProgress::Retry { file, .. }
            | TransferProgress::Verifying { file }
            | TransferProgress::Done { file, .. } => file,
        }
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
    /// where it runs (an exported workflow requests them for it alone) and
    /// holds the machine's `gpu` resource by default.
    const LOADS_MODEL: bool = false;
    /// Whether [`Task::check_batch`] must see every target's instance of
    /// the step before any of them runs (the run waits for all to get there).
    const CHECKS_BATCH: bool = false;
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

    /// What the task made outside its own files that is gone now (a
    /// section of a shared file, such as a models.conf profile, deleted by
    /// hand), by label: a step whose output is gone is not done, and reruns
    /// instead of leaving the steps that read it blocked. Only presence
    /// counts here; hand edits of a shared file are the user's to keep.
    fn missing_outputs(
        &self,
        _params: &Self::Params,
        _ctx: &TaskContext,
    ) -> Result<Vec<String>, TaskError> {
        Ok(Vec::new())
    }

    /// Why a done step no longer holds although nothing it stamps changed:
    /// the source it copied lives outside the workspace and a check there
    /// (recorded by a command, not made here: planning stays offline)
    /// found it changed. Said as the reason it reruns; `None`: current.
    fn out_of_date(
        &self,
        _params: &Self::Params,
        _ctx: &TaskContext,
    ) -> Result<Option<String>, TaskError> {
        Ok(None)
    }

    fn run(
        &self,
        params: Self::Params,
        ctx: TaskContext,
    ) -> impl Future<Output = Result<Self::Outputs, TaskError>> + Send;

    /// A check of every target's instance together, before any runs (with
    /// [`Task::CHECKS_BATCH`]): what one instance cannot judge alone, such
    /// as the disk space all of a run's downloads need. An error fails
    /// every instance with its message.
    fn check_batch(
        &self,
        _batch: &[(String, Self::Params)],
        _ctx: &TaskContext,
    ) -> Result<(), TaskError> {
        Ok(())
    }

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
    fn checks_batch(&self) -> bool;
    /// `batch`: (target, resolved parameters) of every instance that runs.
    fn check_batch(&self, batch: &[(String, Value)], ctx: &TaskContext) -> Result<(), TaskError>;
    fn params_schema(&self) -> Value;
    fn outputs_schema(&self) -> Value;
    /// Names of the outputs later steps may reference.
    fn output_names(&self) -> Vec<String>;
    fn input_files(&self, params: &Value, ctx: &TaskContext) -> Result<Vec<PathBuf>, TaskError>;
    fn input_values(&self, params: &Value, ctx: &TaskContext)
        -> Result<Vec<InputValue>, TaskError>;
    fn output_files(&self, params: &Value, ctx: &TaskContext) -> Result<Vec<PathBuf>, TaskError>;
    fn missing_outputs(&self, params: &Value, ctx: &TaskContext) -> Result<Vec<String>, TaskError>;
    fn out_of_date(&self, params: &Value, ctx: &TaskContext) -> Result<Option<String>, TaskError>;
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
    fn checks_batch(&self) -> bool {
        T::CHECKS_BATCH
    }
    fn check_batch(&self, batch: &[(String, Value)], ctx: &TaskContext) -> Result<(), TaskError> {
        let typed = batch
            .iter()
            .map(|(target, params)| Ok((target.clone(), parse(params)?)))
            .collect::<Result<Vec<_>, TaskError>>()?;
        Task::check_batch(self, &typed, ctx)
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
    fn missing_outputs(&self, params: &Value, ctx: &TaskContext) -> Result<Vec<String>, TaskError> {
        Task::missing_outputs(self, &parse(params)?, ctx)
    }
    fn out_of_date(&self, params: &Value, ctx: &TaskContext) -> Result<Option<String>, TaskError> {
        Task::out_of_date(self, &parse(params)?, ctx)
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
