//! The `onboard` command line of every test: one builder, so each test says
//! only what its run needs (a workspace, a Hub, variables) and every run
//! starts without the developer's Hub token.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{onboard_binary, TestWorkspace};

/// `onboard` about to run: build it with the methods, then take the
/// [`Command`] or run it to its [`Output`] or [`Run`].
pub struct Onboard {
    workspace: Option<PathBuf>,
    args: Vec<OsString>,
    command: Command,
}

impl Default for Onboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Onboard {
    /// The binary cargo built, with no `HF_TOKEN` from the environment.
    pub fn new() -> Onboard {
        let mut command = Command::new(onboard_binary());
        command.env_remove("HF_TOKEN");
        Onboard {
            workspace: None,
            args: Vec::new(),
            command,
        }
    }

    /// `onboard -C <ws>` with its offline benchmark cache, as
    /// [`TestWorkspace::command`] runs it.
    pub fn in_workspace(ws: &TestWorkspace) -> Onboard {
        Onboard::new()
            .workspace(ws.root())
            .offline_benchmarks(ws.cache.path())
    }

    /// `-C root`: the workspace, before the other arguments.
    pub fn workspace(mut self, root: impl AsRef<Path>) -> Self {
        self.workspace = Some(root.as_ref().to_path_buf());
        self
    }

    /// Runs in `dir` (no `-C`).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// The Hub at `url`, with its own HF home (`hf_home`), online.
    pub fn hub(mut self, url: &str, hf_home: impl AsRef<Path>) -> Self {
        self.command
            .env("HF_ENDPOINT", url)
            .env("HF_HOME", hf_home.as_ref())
            .env_remove("HF_HUB_OFFLINE");
        self
    }

    /// Benchmarks score the offline problems, cached under `cache`: a
    /// test's result must not depend on whether this machine is online or
    /// what its `~/.cache` holds.
    pub fn offline_benchmarks(mut self, cache: impl AsRef<Path>) -> Self {
        self.command
            .env("XDG_CACHE_HOME", cache.as_ref())
            .env("ONBOARD_HUMANEVAL_PLUS_URL", "off");
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.command.env_remove(key);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// The command, for what the builder does not say (stdin, spawning,
    /// a terminal).
    pub fn command(mut self) -> Command {
        if let Some(root) = &self.workspace {
            self.command.arg("-C").arg(root);
        }
        self.command.args(&self.args);
        self.command
    }

    /// Runs it to the end; panics when it cannot start.
    pub fn output(self) -> Output {
        self.command().output().expect("run onboard")
    }

    /// Runs it to the end: exit code and both streams as text.
    pub fn run(self) -> Run {
        Run::from(self.output())
    }
}

/// A finished run of `onboard`.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Step ids with the given event kind, in order.
    pub fn steps_with(&self, event: &str) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == event)
            .filter(|e| event != "step_started" || e["attempt"] == 1)
            .filter_map(|e| e["step"].as_str().map(str::to_string))
            .collect()
    }

    pub fn ran(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .events()
            .iter()
            .filter(|e| e["event"] == "step_finished" && e["ok"] == true)
            .filter_map(|e| e["step"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    }

    pub fn skipped(&self) -> Vec<String> {
        let mut v = self.steps_with("step_skipped");
        v.sort();
        v
    }

    pub fn why(&self, step: &str) -> String {
        self.events()
            .iter()
            .find(|e| {
                e["step"] == step
                    && (e["event"] == "step_skipped"
                        || e["event"] == "step_blocked"
                        || (e["event"] == "step_started" && e["attempt"] == 1))
            })
            .and_then(|e| e["why"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    pub fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}
