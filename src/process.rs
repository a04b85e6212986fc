//! A program run to completion in its own process group: a timeout, a
//! cancelled step or a second Ctrl-C kills the group, so the program's own
//! children never outlive it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Lines of a failed program's stderr its error quotes.
const STDERR_TAIL_LINES: usize = 20;

/// A program that ran and exited with status 0.
pub struct Finished {
    pub stdout: Vec<u8>,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start `{program}`: {source}")]
    Start {
        program: String,
        source: std::io::Error,
    },
    #[error("`{program}` ran past its timeout of {limit} and was killed")]
    Timeout { program: String, limit: String },
    #[error("waiting for `{program}`: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
    /// The exit (status or signal), with the tail of its stderr.
    #[error("{0}")]
    Failed(String),
}

impl ProcessError {
    /// Worth another try of the step: anything but a program that is not
    /// there (a timeout or a failed exit may pass on a retry).
    pub fn is_transient(&self) -> bool {
        !matches!(self, ProcessError::Start { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Runs `program` with `args` in `cwd`, stdin closed, stdout and stderr
/// captured, killed with its group after `timeout`.
pub async fn run(
    program: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
    timeout: Option<Duration>,
) -> Result<Finished, ProcessError> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| ProcessError::Start {
        program: program.to_string(),
        source,
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
    let wait = async { tokio::join!(read_out, read_err, child.wait()) };
    let (out, err, status) = match timeout {
        Some(limit) => {
            tokio::time::timeout(limit, wait)
                .await
                .map_err(|_| ProcessError::Timeout {
                    program: program.to_string(),
                    limit: crate::workflow::duration::display(limit),
                })?
        }
        None => wait.await,
    };
    let status = status.map_err(|source| ProcessError::Wait {
        program: program.to_string(),
        source,
    })?;
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
        return Err(ProcessError::Failed(message));
    }
    Ok(Finished {
        stdout: out,
        elapsed: started.elapsed(),
    })
}

/// Makes the child `cmd` starts die (SIGKILL) with the thread that starts
/// it: a killed onboard must not leave a model loaded or generating, and
/// nobody is left to escalate a gentler signal (a server may hold SIGTERM
/// back while it loads).
pub fn die_with_parent(cmd: &mut std::process::Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; it only sets this child's
        // parent-death signal.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Kills the child's whole process group when the run ends for any reason
/// (timeout, cancellation).
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
