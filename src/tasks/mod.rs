//! The built-in task kinds: the units of work a workflow step names with
//! `uses:`. The plug they implement (`Task`, its context and error, the
//! registry) belongs to the engine, `crate::workflow::task`; this module
//! implements it and registers every kind in [`Registry::builtin`].

pub mod bench_profile;
pub mod benchmark;
pub mod command;
pub mod compare;
pub mod context_test;
pub mod docs;
pub mod download;
pub mod engine_settings;
pub mod evaluate;
pub mod profile;
pub mod render;
pub mod samplers;

pub use crate::workflow::task::{
    BoxFuture, DynTask, FileChange, InputValue, Registry, Task, TaskContext, TaskError,
    TransferProgress,
};
pub use crate::workspace::RunSettings;
use std::path::PathBuf;

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
        registry.register(compare::Compare);
        registry
    }
}

/// What a task knows of the workspace it runs in: its layout, paths inside
/// it, the lock on files every model shares. The engine's context carries
/// only the workspace root and the template values; these read them.
pub trait WorkspaceContext {
    fn run_settings(&self) -> Result<&RunSettings, TaskError>;
    fn workspace(&self) -> Result<crate::workspace::Workspace, TaskError>;
    fn paths(&self) -> crate::workspace::config::Paths;
    fn lock_shared_files(&self) -> Result<std::fs::File, TaskError>;
    fn path(&self, relative: &str) -> Result<PathBuf, TaskError>;
    fn state_dir(&self) -> Result<PathBuf, TaskError>;
}

impl WorkspaceContext for TaskContext {
    /// onboard.yaml and the manifest, as the run's loader parsed them.
    fn run_settings(&self) -> Result<&RunSettings, TaskError> {
        self.settings::<RunSettings>().ok_or_else(|| {
            TaskError::failed(
                "the run carries no workspace settings (it was not loaded from a workspace)",
            )
        })
    }

    /// The workspace as the run's loader opened it, not parsed again.
    fn workspace(&self) -> Result<crate::workspace::Workspace, TaskError> {
        Ok(crate::workspace::Workspace {
            root: self.workspace.clone(),
            config: self.run_settings()?.config.clone(),
        })
    }

    /// The workspace layout (`paths:` of onboard.yaml); the defaults for a
    /// run loaded without a workspace.
    fn paths(&self) -> crate::workspace::config::Paths {
        self.settings::<RunSettings>()
            .map(|s| s.config.paths.clone())
            .unwrap_or_default()
    }

    /// Held while a step rewrites files every model shares:
    /// [`crate::workspace::lock_shared_files`].
    fn lock_shared_files(&self) -> Result<std::fs::File, TaskError> {
        let state = self.path(&self.paths().state)?;
        crate::workspace::lock_shared_files(&state).map_err(|(path, e)| TaskError::io(&path, e))
    }

    /// A workspace-relative path from a parameter, refused if it escapes.
    fn path(&self, relative: &str) -> Result<PathBuf, TaskError> {
        crate::workspace::resolve_inside(&self.workspace, relative).map_err(TaskError::Params)
    }

    /// This model's state directory (its step records, the upstream check).
    fn state_dir(&self) -> Result<PathBuf, TaskError> {
        Ok(self.path(&self.paths().state)?.join(&self.model))
    }
}

/// Why a step that copied `sources` (repo path, identity when copied) from
/// `repo` at `revision` is out of date, per the last `onboard outdated`.
pub fn upstream_changed(
    ctx: &TaskContext,
    repo: &str,
    revision: &str,
    sources: &[(String, crate::hub::upstream::Identity)],
) -> Result<Option<String>, TaskError> {
    crate::hub::upstream::changed_since(&ctx.state_dir()?, repo, revision, sources)
        .map_err(|e| TaskError::failed(e.to_string()))
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
