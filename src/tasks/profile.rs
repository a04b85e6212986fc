//! `uses: profile` — phase 3: the production llama-server profile in
//! models.conf, from rules a person can read and a template they can edit.

use super::{Task, TaskContext, TaskError, WorkspaceContext};
use crate::engine::launch::{self, Listen};
use crate::profile::hand_edits::{self, HandEdit};
use crate::profile::{self, Entry, MANAGED};
pub use crate::profile::{ProfileParams, Strategy};
use crate::workspace::models_conf;
use schemars::JsonSchema;
use serde::Serialize;
use std::path::PathBuf;

pub struct ProfileTask;

/// Used when the workspace has no template of its own.
pub const BUILTIN_TEMPLATE: &str = include_str!("../../templates/profile.conf.j2");

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProfileOutputs {
    pub profile: String,
    /// The lines written, each with the rule that produced it (a value
    /// kept as a hand edit, with that said instead).
    pub entries: Vec<Entry>,
    /// The llama-server command this profile starts.
    pub command: String,
    /// False when models.conf already held exactly this profile.
    pub changed: bool,
    /// Values set by hand in the profile since this step last wrote it,
    /// kept instead of the generated ones (`entries` shows them as kept).
    pub kept: Vec<HandEdit>,
}

impl Task for ProfileTask {
    const KIND: &'static str = "profile";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "Write the production llama-server profile into models.conf";
    type Params = ProfileParams;
    type Outputs = ProfileOutputs;

    fn input_files(
        &self,
        params: &ProfileParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        let template = ctx.path(&params.template)?;
        Ok(if template.exists() {
            vec![template]
        } else {
            Vec::new()
        })
    }

    /// The profile deleted from models.conf: written again, not left for
    /// the context test to find missing.
    fn missing_outputs(
        &self,
        params: &ProfileParams,
        ctx: &TaskContext,
    ) -> Result<Vec<String>, TaskError> {
        let file = ctx.paths().models_conf;
        let conf =
            models_conf::read(&ctx.path(&file)?).map_err(|e| TaskError::failed(e.to_string()))?;
        Ok(match conf.profile(&params.id) {
            Some(_) => Vec::new(),
            None => vec![format!("{file} [{}]", params.id)],
        })
    }

    async fn run(
        &self,
        params: ProfileParams,
        ctx: TaskContext,
    ) -> Result<ProfileOutputs, TaskError> {
        if !models_conf::valid_profile_id(&params.id) {
            return Err(TaskError::Params(format!(
                "`{}` is not a valid profile id (letters, digits, `-`, `_`, `.`)",
                params.id
            )));
        }
        let template_path = ctx.path(&params.template)?;
        let source = match std::fs::read_to_string(&template_path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BUILTIN_TEMPLATE.to_string(),
            Err(e) => return Err(TaskError::io(&template_path, e)),
        };
        let profile::Rendered { entries, written } =
            profile::render(&params, &source).map_err(|e| TaskError::Params(e.to_string()))?;
        let mut managed: Vec<&str> = MANAGED.to_vec();
        managed.extend(entries.iter().map(|(k, _)| k.as_str()));
        let paths = ctx.paths();
        let conf_path = ctx.path(&paths.models_conf)?;
        let comment = params
            .name
            .as_ref()
            .map(|n| format!("{n}: production profile, written by onboard"));
        // What this step wrote last time tells its own lines from a person's.
        let hand_edits::Upserted { changed, kept } = hand_edits::upsert(
            &conf_path,
            &params.id,
            &managed,
            &entries,
            comment.as_deref(),
            ctx.previous_outputs.as_ref(),
        )
        .map_err(|e| TaskError::failed(e.to_string()))?;
        let written = profile::mark_kept(written, &kept);
        let conf = models_conf::read(&conf_path).map_err(|e| TaskError::failed(e.to_string()))?;
        let profile = conf.profile(&params.id).ok_or_else(|| {
            TaskError::failed(format!(
                "profile `[{}]` vanished from {}",
                params.id, paths.models_conf
            ))
        })?;
        let launch = launch::command(
            &profile,
            "llama-server",
            &ctx.path(&paths.models)?,
            &Listen::default(),
        )
        .map_err(TaskError::failed)?;
        for e in &written {
            ctx.log(&format!("{}={}  ({})", e.key, e.value, e.because));
        }
        let section = format!("{} [{}]", paths.models_conf, params.id);
        for edit in &kept {
            ctx.log(&hand_edits::describe(edit, &section, &ctx.model, &ctx.step));
        }
        Ok(ProfileOutputs {
            profile: params.id,
            entries: written,
            command: launch.command_line(),
            changed,
            kept,
        })
    }
}
