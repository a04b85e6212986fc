//! `uses: render` — writes a file from a minijinja template (or from text
//! already rendered by the engine), atomically, and only when it changes.

use super::{Task, TaskContext, TaskError};
use crate::atomic;
use crate::tasks::WorkspaceContext;
use crate::workflow::template;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub struct Render;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenderParams {
    /// A template file, relative to the workspace, rendered with the
    /// workflow's values (`model`, `manifest`, `workspace`, `steps`) and `vars`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Literal text to write instead of a template file (templates in it
    /// are already rendered by the engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The file to write, relative to the workspace.
    pub to: String,
    /// Extra values for the template, as `vars.*`.
    #[serde(default)]
    pub vars: BTreeMap<String, Value>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RenderOutputs {
    /// The written file, relative to the workspace.
    pub path: String,
    pub sha256: String,
    /// False when the file already held these bytes.
    pub changed: bool,
}

impl Task for Render {
    const KIND: &'static str = "render";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "Render a minijinja template to a file, atomically";
    type Params = RenderParams;
    type Outputs = RenderOutputs;

    fn input_files(
        &self,
        params: &RenderParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        params.template.iter().map(|t| ctx.path(t)).collect()
    }

    fn output_files(
        &self,
        params: &RenderParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        Ok(vec![ctx.path(&params.to)?])
    }

    async fn run(
        &self,
        params: RenderParams,
        ctx: TaskContext,
    ) -> Result<RenderOutputs, TaskError> {
        let text = match (&params.template, &params.content) {
            (Some(file), None) => {
                let path = ctx.path(file)?;
                let source = std::fs::read_to_string(&path).map_err(|e| TaskError::io(&path, e))?;
                let mut values = ctx.template_context.clone();
                if let Value::Object(map) = &mut values {
                    map.insert(
                        "vars".into(),
                        serde_json::to_value(&params.vars).unwrap_or_default(),
                    );
                }
                template::render_file(&path.display().to_string(), &source, &values)
                    .map_err(|e| TaskError::Params(e.to_string()))?
            }
            (None, Some(content)) => content.clone(),
            _ => {
                return Err(TaskError::Params(
                    "give exactly one of `template` (a file) or `content` (text)".into(),
                ))
            }
        };
        let target = ctx.path(&params.to)?;
        let changed = atomic::write_if_changed(&target, text.as_bytes())
            .map_err(|e| TaskError::io(&target, e))?;
        Ok(RenderOutputs {
            path: params.to,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            changed,
        })
    }
}
