//! What the engine-using steps (context test, benchmark) read from their
//! context to choose and start an engine: the workspace's engine settings,
//! the profile's model, and how engine failures become task errors.

use super::{TaskContext, TaskError, WorkspaceContext};
use crate::engine::choice::{self, ChoiceError, EngineSettings, ProfileModel};
use crate::engine::measure::MeasureError;
use crate::engine::EngineError;
use crate::workspace::models_conf::{self, Profile};
use std::path::PathBuf;

/// The workspace's `engines:` of onboard.yaml, as the engine choice takes
/// them.
pub fn engine_settings(ctx: &TaskContext) -> Result<EngineSettings, TaskError> {
    Ok(EngineSettings::from_config(
        &ctx.run_settings()?.config.engines,
        &ctx.workspace,
    ))
}

/// Profile `id` of the workspace's models.conf and its GGUF's header.
pub fn profile_model(id: &str, ctx: &TaskContext) -> Result<ProfileModel, TaskError> {
    let (profile, models_dir) = read_profile(id, ctx)?;
    ProfileModel::load(profile, models_dir).map_err(choice_failure)
}

/// The profile's weights, for input stamps, without reading the header.
pub fn profile_gguf(id: &str, ctx: &TaskContext) -> Result<PathBuf, TaskError> {
    let (profile, models_dir) = read_profile(id, ctx)?;
    choice::gguf_path(&profile, &models_dir).map_err(choice_failure)
}

fn read_profile(id: &str, ctx: &TaskContext) -> Result<(Profile, PathBuf), TaskError> {
    let paths = ctx.paths();
    let conf_path = ctx.path(&paths.models_conf)?;
    let conf = models_conf::read(&conf_path).map_err(|e| TaskError::failed(e.to_string()))?;
    let profile = conf.profile(id).ok_or_else(|| TaskError::Failed {
        message: format!(
            "{} has no profile `[{id}]`; run the step that writes it first",
            conf_path.display()
        ),
        retryable: false,
    })?;
    Ok((profile, ctx.path(&paths.models)?))
}

/// An engine's error as the step's: a setting to fix, or a failure (only a
/// failed request is worth a retry).
fn step_error(setting: bool, retryable: bool, message: String) -> TaskError {
    if setting {
        TaskError::Params(message)
    } else {
        TaskError::Failed { message, retryable }
    }
}

pub fn engine_failure(e: EngineError) -> TaskError {
    step_error(false, e.retryable(), e.to_string())
}

pub fn choice_failure(e: ChoiceError) -> TaskError {
    step_error(e.is_setting(), e.retryable(), e.to_string())
}

pub fn measure_failure(e: MeasureError) -> TaskError {
    step_error(e.is_setting(), e.retryable(), e.to_string())
}
