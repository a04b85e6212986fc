//! `uses: command` — runs a program. No shell unless `shell: true`, so
//! arguments with spaces or quotes need no escaping and cannot inject.

use super::{Task, TaskContext, TaskError};
use crate::tasks::WorkspaceContext;
use crate::workflow::duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;
use tokio::io::AsyncReadExt;

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
const STDERR_TAIL_LINES: usize = 20;

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

        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&args)
            .envs(params.env.iter().map(|(k, v)| (k, v.text())))
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so a timeout kills grandchildren too.
            .process_group(0);
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| {
            let retryable = e.kind() != std::io::ErrorKind::NotFound;
            TaskError::Failed {
                message: format!("cannot start `{program}`: {e}"),
                retryable,
            }
        })?;
        let group = child.id();
        if let Some(pgid) = group.and_then(|p| i32::try_from(p).ok()) {
            // A second Ctrl-C exits without running destructors: the group
            // must be known to the exit path too.
            crate::cancel::register_group(pgid);
        }
        let _reaper = GroupGuard(group);
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let read_out = async {
            let mut buf = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut buf).await;
            }
            buf
        };
        let read_err = async {
            let mut buf = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut buf).await;
            }
            buf
        };
        let wait = async {
            let (out, err, status) = tokio::join!(read_out, read_err, child.wait());
            (out, err, status)
        };
        let (out, err, status) = match timeout {
            Some(limit) => match tokio::time::timeout(limit, wait).await {
                Ok(done) => done,
                Err(_) => {
                    return Err(TaskError::failed(format!(
                        "`{program}` ran past its timeout of {} and was killed",
                        duration::display(limit)
                    )))
                }
            },
            None => wait.await,
        };
        let status =
            status.map_err(|e| TaskError::failed(format!("waiting for `{program}`: {e}")))?;
        let exit_code = status.code().unwrap_or(-1);
        if !status.success() {
            let text = String::from_utf8_lossy(&err);
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
            let how = match status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_string(),
            };
            let mut message = format!("`{program}` {how}");
            if !tail.trim().is_empty() {
                message.push_str(":\n");
                message.push_str(tail.trim_end());
            }
            return Err(TaskError::failed(message));
        }
        let start = out.len().saturating_sub(STDOUT_KEEP);
        let stdout = String::from_utf8_lossy(&out[start..]).trim().to_string();
        ctx.log(&format!("`{program}` finished"));
        Ok(CommandOutputs {
            exit_code,
            stdout,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// Kills the child's whole process group when the step ends for any reason
/// (timeout, cancellation): a program's own children must not outlive it.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            if let Ok(pgid) = i32::try_from(pid) {
                // SAFETY: killpg only sends a signal; an already-empty
                // group yields ESRCH, which is fine to ignore.
                unsafe {
                    libc::killpg(pgid, libc::SIGKILL);
                }
                crate::cancel::forget_group(pgid);
            }
        }
    }
}
