//! `uses: command` — runs a program. No shell unless `shell: true`, so
//! arguments with spaces or quotes need no escaping and cannot inject.

use super::{Task, TaskContext, TaskError};
use crate::process;
use crate::tasks::WorkspaceContext;
use crate::workflow::duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub struct Command;

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandParams {
    /// The program and its arguments. With `shell: true`, a single string
    /// run by `sh -c`.
    pub argv: Vec<Word>,
    /// Run `argv[0]` through `sh -c` (pipes, globs, redirections).
    #[serde(default)]
    pub shell: bool,
    /// Extra environment variables for the program.
    #[serde(default)]
    pub env: BTreeMap<String, Word>,
    /// Working directory, relative to the workspace (default: the workspace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Kill the program (and its children) after this long, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Files the command reads; a change to one reruns the step.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Files the command writes; a missing or changed one reruns the step.
    #[serde(default)]
    pub outputs: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CommandOutputs {
    pub exit_code: i32,
    /// Standard output, trimmed (at most the last 64 KiB).
    pub stdout: String,
    pub duration_ms: u64,
}

/// A command-line word. YAML scalars such as `5` or `true` mean their text,
/// so `argv: [sleep, 5]` works as a person would expect.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Word {
    Text(String),
    Integer(i64),
    Number(f64),
    Bool(bool),
}

impl Word {
    pub fn text(&self) -> String {
        match self {
            Word::Text(s) => s.clone(),
            Word::Integer(i) => i.to_string(),
            Word::Number(f) => f.to_string(),
            Word::Bool(b) => b.to_string(),
        }
    }
}

impl JsonSchema for Word {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Word".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["string", "number", "boolean"]})
    }
}

const STDOUT_KEEP: usize = 64 * 1024;

impl Task for Command {
    const KIND: &'static str = "command";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "Run a program (argv, env, cwd, timeout; no shell unless asked)";
    type Params = CommandParams;
    type Outputs = CommandOutputs;

    fn input_files(
        &self,
        params: &CommandParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        params.inputs.iter().map(|p| ctx.path(p)).collect()
    }

    fn output_files(
        &self,
        params: &CommandParams,
        ctx: &TaskContext,
    ) -> Result<Vec<PathBuf>, TaskError> {
        params.outputs.iter().map(|p| ctx.path(p)).collect()
    }

    async fn run(
        &self,
        params: CommandParams,
        ctx: TaskContext,
    ) -> Result<CommandOutputs, TaskError> {
        let (program, args): (String, Vec<String>) = if params.shell {
            if params.argv.len() != 1 {
                return Err(TaskError::Params(
                    "with `shell: true`, `argv` must hold exactly one script string".into(),
                ));
            }
            ("sh".into(), vec!["-c".into(), params.argv[0].text()])
        } else {
            match params.argv.split_first() {
                Some((p, rest)) => (p.text(), rest.iter().map(Word::text).collect()),
                None => {
                    return Err(TaskError::Params(
                        "`argv` is empty; name a program to run".into(),
                    ))
                }
            }
        };
        let timeout = params
            .timeout
            .as_deref()
            .map(duration::parse)
            .transpose()
            .map_err(TaskError::Params)?;
        let cwd = match &params.cwd {
            Some(dir) => ctx.path(dir)?,
            None => ctx.workspace.clone(),
        };

        let env: BTreeMap<String, String> = params
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.text()))
            .collect();
        let finished = process::run(&program, &args, &env, &cwd, timeout)
            .await
            .map_err(|e| TaskError::Failed {
                retryable: e.is_transient(),
                message: e.to_string(),
            })?;
        let out = &finished.stdout;
        let start = out.len().saturating_sub(STDOUT_KEEP);
        let stdout = String::from_utf8_lossy(&out[start..]).trim().to_string();
        ctx.log(&format!("`{program}` finished"));
        Ok(CommandOutputs {
            exit_code: 0,
            stdout,
            duration_ms: finished.elapsed.as_millis() as u64,
        })
    }
}
