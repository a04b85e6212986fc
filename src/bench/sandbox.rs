//! Runs model-written Python where it can do no harm.
//!
//! Each run is a `python3 -I` child that, before it executes anything:
//! - leaves the host's network (a new network namespace: no interface is up,
//!   not even loopback), mounts and IPC (new namespaces), and its processes
//!   (a new PID namespace with its own `/proc`: the code is PID 1 and sees
//!   no host process; when it ends, the kernel kills everything it started);
//! - gets a fresh, size-limited tmpfs as `/tmp` (also bound over `/var/tmp`,
//!   `/dev/shm`, `/run/lock`, the world-writable places), owned by the run's
//!   user, which is its working directory, `HOME` and `TMPDIR`;
//! - sets CPU-time, address-space, file-size, open-file and process-count
//!   limits, and no core dumps;
//! - drops to an unprivileged uid of its own (one per parallel slot), with
//!   `no_new_privs`, so nothing outside its tmpfs is writable;
//! - starts with an empty environment except `PATH`, `HOME`, `TMPDIR`, `LANG`.
//!
//! A PID namespace needs a process outside it to start its first one, so
//! the child onboard spawns forks once more and only waits, mirroring the
//! code's exit. The parent enforces a wall-clock limit by killing both; the
//! namespace takes every process the code started with it (a fork bomb, a
//! daemon). The sweep of the slot's uid (`kill(-1)` as that uid) stays as a
//! second line. If namespaces or the uid
//! switch are unavailable the sandbox refuses; it never runs code unconfined.
//!
//! The harness (`harness.py`, embedded) is passed with `-c`; the problem and
//! the solution arrive on stdin; the verdict comes back on stdout. As in
//! EvalPlus, the solution runs in the harness's interpreter: the sandbox
//! protects the machine, not the score from code written to game the harness.

use super::dataset::{Problem, Tests};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The Python test harness, run inside the sandbox.
pub const HARNESS: &str = include_str!("harness.py");

/// Where a world-writable directory would let code leave a trace on the host;
/// each is covered by the run's own tmpfs.
const WRITABLE_PLACES: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/run/lock"];

/// Output kept from a run (the verdict is one short line).
const OUTPUT_CAP: u64 = 4 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// Address space per process (RLIMIT_AS); EvalPlus uses 4 GiB.
    pub memory_bytes: u64,
    /// CPU seconds per process (RLIMIT_CPU).
    pub cpu_seconds: u64,
    /// Largest file a run may write (RLIMIT_FSIZE).
    pub file_size_bytes: u64,
    /// Size of the run's tmpfs.
    pub tmpfs_bytes: u64,
    /// Processes and threads of the run's uid (RLIMIT_NPROC).
    pub processes: u64,
    pub open_files: u64,
    /// Wall-clock limit of one run; then everything is killed.
    pub wall_seconds: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 4 << 30,
            cpu_seconds: 150,
            file_size_bytes: 16 << 20,
            tmpfs_bytes: 64 << 20,
            processes: 32,
            open_files: 256,
            // EvalPlus allows each of the two test phases 60 s + 1.
            wall_seconds: 130.0,
        }
    }
}

/// How tests are timed, with the defaults of PyPI evalplus 0.3.1 (its
/// repository's newer code raises the 1 s minimum to 4 s).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Timing {
    /// Each input gets max(min_time_limit, time_factor × the canonical
    /// solution's time).
    pub min_time_limit: f64,
    pub time_factor: f64,
    /// A test phase (base or plus) stops after min(phase_budget, Σ limits) + 1 s.
    pub phase_budget: f64,
    /// Original HumanEval's `check(candidate)` limit.
    pub check_time_limit: f64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            min_time_limit: 1.0,
            time_factor: 4.0,
            phase_budget: 60.0,
            check_time_limit: 10.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The interpreter; it must be readable by the unprivileged uid (a
    /// python under /root is not).
    pub python: PathBuf,
    pub limits: Limits,
    pub timing: Timing,
    /// Runs at once; each gets its own uid `uid_base + slot`.
    pub parallel: usize,
    /// The first sandbox uid. No other process may run as these uids: the
    /// sandbox kills all of them after each run.
    pub uid_base: u32,
    /// Also disable destructive functions inside Python (as EvalPlus does).
    /// Tests turn it off to show that the operating system contains the code.
    pub python_guard: bool,
    /// The run's stop signal: a run in progress is killed and reported as
    /// [`SandboxError::Interrupted`] (never as a verdict on the code).
    pub cancel: crate::cancel::Cancel,
}

impl SandboxConfig {
    pub fn new(parallel: usize) -> SandboxConfig {
        SandboxConfig {
            python: default_python(),
            limits: Limits::default(),
            timing: Timing::default(),
            parallel: parallel.max(1),
            uid_base: DEFAULT_UID_BASE,
            python_guard: true,
            cancel: crate::cancel::Cancel::default(),
        }
    }
}

/// Debian reserves 65000–65533 and assigns none of them.
pub const DEFAULT_UID_BASE: u32 = 65000;

/// The first `python3` in the system directories (not a user's pyenv, which
/// the sandbox uid could not read).
pub fn default_python() -> PathBuf {
    ["/usr/local/bin/python3", "/usr/bin/python3", "/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/python3"))
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "the code sandbox needs root (to make network and mount namespaces and switch to an \
         unprivileged uid); onboard refuses to run model-written code unconfined — run the \
         benchmark as root, as CI does"
    )]
    NotRoot,
    #[error(
        "cannot set up the code sandbox ({0}); onboard refuses to run model-written code \
         without it. On Linux as root this needs unshare(CLONE_NEWNET|CLONE_NEWNS) and mount: \
         in a container run it with --privileged or CAP_SYS_ADMIN"
    )]
    Setup(String),
    #[error("no free sandbox uids from the configured base on (uid {uid} is used by process {pid}); set the benchmark's `sandbox_uid` to a free range")]
    UidInUse { uid: u32, pid: u32 },
    #[error("{}: cannot run the sandbox's python: {detail}; set the benchmark's `python` to a python3 outside /root", python.display())]
    Python { python: PathBuf, detail: String },
    #[error("the sandbox harness gave no verdict: {0}")]
    Harness(String),
    #[error("interrupted (Ctrl-C or SIGTERM)")]
    Interrupted,
}

/// How one test phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseResult {
    pub status: Status,
    /// Inputs passed before the phase stopped (checks stop at the first failure).
    pub passed: u64,
}

/// The verdict on one solution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The code that ran (the harness's sanitised form of the input).
    pub solution: String,
    pub base: PhaseResult,
    /// None for base-tests-only problems.
    pub plus: Option<PhaseResult>,
    /// Why it failed outside the tests (killed, crashed), if so.
    pub note: Option<String>,
    pub seconds: f64,
}

/// What a raw sandbox run gave back.
#[derive(Debug)]
pub struct RunOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// None when killed by a signal (or the wall limit).
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
}

/// A pool of sandbox slots; `run` blocks while all are busy.
pub struct Sandbox {
    config: SandboxConfig,
    free: Mutex<Vec<u32>>,
    available: Condvar,
    /// Held for the sandbox's life: no other onboard process uses these uids.
    _locks: Vec<std::fs::File>,
}

impl Sandbox {
    /// Checks that the sandbox can be built here (root, namespaces, the uid
    /// range free, python runnable) by running a probe inside it.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(SandboxError::NotRoot);
        }
        let (uids, locks) = claim_uids(config.uid_base, config.parallel.max(1))?;
        let sandbox = Sandbox {
            config,
            free: Mutex::new(uids.into_iter().rev().collect()),
            available: Condvar::new(),
            _locks: locks,
        };
        sandbox.probe()?;
        Ok(sandbox)
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The uids this sandbox runs code as (one per slot).
    pub fn uids(&self) -> Vec<u32> {
        let mut uids = self.free.lock().unwrap_or_else(|p| p.into_inner()).clone();
        uids.sort_unstable();
        uids
    }

    fn probe(&self) -> Result<(), SandboxError> {
        const PROBE: &str = "import os, socket\n\
            assert os.getuid() != 0, 'still root'\n\
            open('/tmp/probe', 'w').write('x')\n\
            s = socket.socket()\n\
            s.settimeout(1)\n\
            try:\n    s.connect(('127.0.0.1', 9))\n    print('network')\n\
            except OSError as e:\n    print('isolated' if e.errno == 101 else 'network %s' % e.errno)\n";
        let out = self.run(&["-c", PROBE], b"", 20.0)?;
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim() == "isolated" {
            return Ok(());
        }
        if out.code == Some(0) {
            return Err(SandboxError::Setup(format!(
                "the probe reached the network ({})",
                text.trim()
            )));
        }
        Err(SandboxError::Python {
            python: self.config.python.clone(),
            detail: format!(
                "the probe failed ({}): {}",
                describe(&out),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }

    /// Judges `solution` on one problem (`task_json`: the dataset line).
    pub fn judge(&self, problem: &Problem, solution: &str) -> Result<Verdict, SandboxError> {
        let task_json = problem.raw.as_str();
        let plus = problem.tests == Tests::BaseAndPlus;
        let t = &self.config.timing;
        // The task goes through as text: Python's json reads NaN/Infinity.
        let input = format!(
            "{{\"task\": {task_json}, \"mode\": \"{}\", \"solution\": {}, \"guard\": {}, \"min_time_limit\": {}, \"time_factor\": {}, \"phase_budget\": {}, \"check_time_limit\": {}}}",
            if plus { "plus" } else { "check" },
            serde_json::Value::String(solution.to_string()),
            self.config.python_guard,
            t.min_time_limit,
            t.time_factor,
            t.phase_budget,
            t.check_time_limit
        );
        let out = self.run(
            &["-c", HARNESS],
            input.as_bytes(),
            self.config.limits.wall_seconds,
        )?;
        let seconds = out.elapsed.as_secs_f64();
        let line = String::from_utf8_lossy(&out.stdout);
        let parsed: Option<HarnessReport> = line
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .and_then(|l| serde_json::from_str(l).ok());
        match parsed {
            Some(HarnessReport {
                error: Some(error), ..
            }) => Err(SandboxError::Harness(error)),
            Some(r) => {
                let base = r.base.map(PhaseResult::from).ok_or_else(|| {
                    SandboxError::Harness("no base result in the harness report".into())
                })?;
                Ok(Verdict {
                    solution: r.solution.unwrap_or_default(),
                    base,
                    plus: if plus {
                        Some(r.plus.map(PhaseResult::from).unwrap_or(PhaseResult {
                            status: Status::Fail,
                            passed: 0,
                        }))
                    } else {
                        None
                    },
                    note: None,
                    seconds,
                })
            }
            None => {
                let status = if out.timed_out {
                    Status::Timeout
                } else {
                    Status::Fail
                };
                let result = PhaseResult { status, passed: 0 };
                let stderr = String::from_utf8_lossy(&out.stderr);
                let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                Ok(Verdict {
                    solution: String::new(),
                    base: result.clone(),
                    plus: plus.then_some(result),
                    note: Some(format!(
                        "{}{}",
                        describe(&out),
                        if tail.is_empty() {
                            String::new()
                        } else {
                            format!(": {tail}")
                        }
                    )),
                    seconds,
                })
            }
        }
    }

    /// Runs `python <args>` in a fresh sandbox with `stdin` as its input.
    pub fn run(&self, args: &[&str], stdin: &[u8], wall: f64) -> Result<RunOutput, SandboxError> {
        let uid = self.acquire();
        let result = self.run_as(uid, args, stdin, wall);
        self.release(uid);
        result
    }

    fn acquire(&self) -> u32 {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(uid) = free.pop() {
                return uid;
            }
            free = self.available.wait(free).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn release(&self, uid: u32) {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(uid);
        self.available.notify_one();
    }

    fn run_as(
        &self,
        uid: u32,
        args: &[&str],
        stdin: &[u8],
        wall: f64,
    ) -> Result<RunOutput, SandboxError> {
        let setup = Setup::new(uid, &self.config.limits)?;
        let mut cmd = Command::new(&self.config.python);
        cmd.arg("-I")
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", "/tmp")
            .env("TMPDIR", "/tmp")
            .env("LANG", "C.UTF-8")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs between fork and exec and only makes raw
        // system calls on memory prepared before the fork (no allocation).
        unsafe {
            cmd.pre_exec(move || setup.enter());
        }
        let mut start = Instant::now();
        let mut tries = 0;
        let mut child = loop {
            match cmd.spawn() {
                Ok(child) => break child,
                // The uid is still at its process limit: a previous run's
                // killed processes not yet reaped by init. They will be.
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && tries < 100 => {
                    tries += 1;
                    kill_uid(uid);
                    std::thread::sleep(Duration::from_millis(100));
                    start = Instant::now();
                }
                Err(e) => {
                    return Err(match e.raw_os_error() {
                        Some(libc::ENOENT) | Some(libc::EACCES) | Some(libc::ENOEXEC) => {
                            SandboxError::Python {
                                python: self.config.python.clone(),
                                detail: e.to_string(),
                            }
                        }
                        _ => SandboxError::Setup(e.to_string()),
                    })
                }
            }
        };
        let pid = child.id() as i32;
        let mut input = child.stdin.take();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            if let Some(mut i) = input.take() {
                let _ = i.write_all(&data);
            }
        });
        let readers = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .map(|r| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                if let Some(r) = r {
                    let mut r = r;
                    let _ = (&mut r).take(OUTPUT_CAP).read_to_end(&mut kept);
                    let _ = std::io::copy(&mut r, &mut std::io::sink());
                }
                kept
            })
        });
        let deadline = start + Duration::from_secs_f64(wall.max(0.1));
        let mut timed_out = false;
        let cancel = &self.config.cancel;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) => {}
                Err(_) => break None,
            }
            if Instant::now() >= deadline || cancel.is_cancelled() {
                timed_out = true;
                // SAFETY: kill has no memory preconditions; -pid is the run's
                // process group (setsid in the child).
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
                break child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        kill_uid(uid);
        let _ = writer.join();
        let [out, err] = readers;
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        if cancel.is_cancelled() {
            return Err(SandboxError::Interrupted);
        }
        Ok(RunOutput {
            stdout,
            stderr,
            code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            timed_out,
            elapsed: start.elapsed(),
        })
    }
}

#[derive(Deserialize)]
struct HarnessReport {
    solution: Option<String>,
    base: Option<(Status, u64)>,
    plus: Option<(Status, u64)>,
    error: Option<String>,
}

impl From<(Status, u64)> for PhaseResult {
    fn from((status, passed): (Status, u64)) -> Self {
        PhaseResult { status, passed }
    }
}

fn describe(out: &RunOutput) -> String {
    if out.timed_out {
        format!(
            "killed after the {:.0} s wall-clock limit",
            out.elapsed.as_secs_f64()
        )
    } else if let Some(sig) = out.signal {
        let name = match sig {
            libc::SIGKILL => "SIGKILL",
            libc::SIGXCPU => "SIGXCPU (CPU limit)",
            libc::SIGXFSZ => "SIGXFSZ (file-size limit)",
            libc::SIGSEGV => "SIGSEGV",
            _ => "a signal",
        };
        format!("killed by {name} ({sig})")
    } else {
        format!("exited with {}", out.code.unwrap_or(-1))
    }
}

/// Everything the child needs, prepared before the fork.
struct Setup {
    uid: libc::uid_t,
    tmpfs_options: CString,
    tmpfs: CString,
    tmp: CString,
    /// Other world-writable places that exist here.
    cover: Vec<CString>,
    root: CString,
    proc_fs: CString,
    proc_dir: CString,
    limits: Vec<(libc::__rlimit_resource_t, u64)>,
}

impl Setup {
    fn new(uid: u32, limits: &Limits) -> Result<Setup, SandboxError> {
        let c = |s: &str| CString::new(s).map_err(|e| SandboxError::Setup(e.to_string()));
        let cover = WRITABLE_PLACES[1..]
            .iter()
            .filter(|p| {
                std::fs::symlink_metadata(p)
                    .map(|m| m.is_dir())
                    .unwrap_or(false)
            })
            .map(|p| c(p))
            .collect::<Result<_, _>>()?;
        Ok(Setup {
            uid,
            tmpfs_options: c(&format!(
                "size={},mode=0700,uid={uid},gid={uid}",
                limits.tmpfs_bytes
            ))?,
            tmpfs: c("tmpfs")?,
            tmp: c("/tmp")?,
            cover,
            root: c("/")?,
            proc_fs: c("proc")?,
            proc_dir: c("/proc")?,
            limits: vec![
                (libc::RLIMIT_AS, limits.memory_bytes),
                (libc::RLIMIT_DATA, limits.memory_bytes),
                (libc::RLIMIT_CPU, limits.cpu_seconds),
                (libc::RLIMIT_FSIZE, limits.file_size_bytes),
                (libc::RLIMIT_NPROC, limits.processes),
                (libc::RLIMIT_NOFILE, limits.open_files),
                (libc::RLIMIT_CORE, 0),
                (libc::RLIMIT_MEMLOCK, 0),
            ],
        })
    }

    /// In the child, before exec. Only raw system calls.
    fn enter(&self) -> std::io::Result<()> {
        let check = |r: libc::c_int| {
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: raw system calls on NUL-terminated strings owned by `self`,
        // which outlives the call; no allocation happens here.
        unsafe {
            check(libc::setsid())?;
            check(libc::unshare(
                libc::CLONE_NEWNET
                    | libc::CLONE_NEWNS
                    | libc::CLONE_NEWIPC
                    | libc::CLONE_NEWUTS
                    | libc::CLONE_NEWPID,
            ))?;
            // This process stays outside the new PID namespace: its child
            // is the namespace's init and runs the code.
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
            let init = libc::fork();
            if init < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if init > 0 {
                wait_and_mirror(init);
            }
            check(libc::mount(
                null,
                self.root.as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                self.tmpfs.as_ptr(),
                self.tmp.as_ptr(),
                self.tmpfs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                self.tmpfs_options.as_ptr().cast(),
            ))?;
            for place in &self.cover {
                check(libc::mount(
                    self.tmp.as_ptr(),
                    place.as_ptr(),
                    null,
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
            }
            // A /proc of the new namespace: no host process, no host
            // process's environment or command line.
            check(libc::mount(
                self.proc_fs.as_ptr(),
                self.proc_dir.as_ptr(),
                self.proc_fs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ))?;
            check(libc::chdir(self.tmp.as_ptr()))?;
            for &(resource, value) in &self.limits {
                let lim = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: if resource == libc::RLIMIT_CPU {
                        value + 1
                    } else {
                        value
                    },
                };
                check(libc::setrlimit(resource, &lim))?;
            }
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setgid(self.uid))?;
            check(libc::setuid(self.uid))?;
            if libc::getuid() == 0 || libc::geteuid() == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::EPERM));
            }
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            // After the uid switch, which clears it.
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
        }
        Ok(())
    }
}

/// The process between onboard and the sandbox's PID namespace: waits for
/// the namespace's init and ends the same way, so onboard sees the code's
/// exit status or signal. Runs between fork and exec: raw calls only.
///
/// # Safety
/// Only in a freshly forked child; never returns.
unsafe fn wait_and_mirror(init: libc::pid_t) -> ! {
    // Keep stdin/stdout/stderr (the pipes close when this exits); close the
    // rest, above all the spawn's error pipe, or `spawn` would wait for this
    // process to end before reporting the code's exec.
    if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
        for fd in 3..4096 {
            libc::close(fd);
        }
    }
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    libc::setrlimit(libc::RLIMIT_CORE, &no_core);
    let mut status = 0;
    loop {
        let r = libc::waitpid(init, &mut status, 0);
        if r == init {
            break;
        }
        if r < 0 && *libc::__errno_location() != libc::EINTR {
            libc::_exit(127);
        }
    }
    if libc::WIFEXITED(status) {
        libc::_exit(libc::WEXITSTATUS(status));
    }
    let sig = libc::WTERMSIG(status);
    libc::signal(sig, libc::SIG_DFL);
    libc::kill(libc::getpid(), sig);
    libc::_exit(128 + sig)
}

/// Kills every process running as `uid` (the slot's leftovers: background
/// children, fork-bomb offspring that left the process group).
fn kill_uid(uid: u32) {
    for _ in 0..3 {
        // SAFETY: the child makes only async-signal-safe calls and exits.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                if libc::setgid(uid) == 0 && libc::setuid(uid) == 0 {
                    libc::kill(-1, libc::SIGKILL);
                }
                libc::_exit(0);
            }
            if pid > 0 {
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
            }
        }
        if uid_in_use(&[uid]).is_none() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How far past `uid_base` to look for free uids.
const UID_SPAN: u32 = 512;

/// Claims `count` uids from `base` up: each is locked (a file lock on a file
/// in a root-only directory, so concurrent benchmarks and tests take
/// different uids) and has no process running as it.
fn claim_uids(base: u32, count: usize) -> Result<(Vec<u32>, Vec<std::fs::File>), SandboxError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = std::env::temp_dir().join("onboard-sandbox-uids");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| SandboxError::Setup(format!("{}: {e}", dir.display())))?;
    {
        use std::os::unix::fs::MetadataExt;
        // It lives in a world-writable place: someone else's directory (or a
        // symlink) there must not decide which files root opens.
        let meta = std::fs::symlink_metadata(&dir)
            .map_err(|e| SandboxError::Setup(format!("{}: {e}", dir.display())))?;
        if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
            return Err(SandboxError::Setup(format!(
                "{} is not a root-owned private directory; remove it",
                dir.display()
            )));
        }
    }
    let mut uids = Vec::new();
    let mut locks = Vec::new();
    let mut last_busy = None;
    for uid in base..base.saturating_add(UID_SPAN) {
        if uids.len() == count {
            break;
        }
        let path = dir.join(format!("{uid}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| SandboxError::Setup(format!("{}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(SandboxError::Setup(format!("{}: {e}", path.display())))
            }
        }
        if let Some(busy) = uid_in_use(&[uid]) {
            last_busy = Some(busy);
            continue;
        }
        uids.push(uid);
        locks.push(file);
    }
    if uids.len() < count {
        let (uid, pid) = last_busy.unwrap_or((base, 0));
        return Err(SandboxError::UidInUse { uid, pid });
    }
    Ok((uids, locks))
}

/// A process whose real uid is one of `uids`, if any.
fn uid_in_use(uids: &[u32]) -> Option<(u32, u32)> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Ok(pid) = name.to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        if status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains("Z"))
        {
            // A zombie: dead, waiting for its parent (init) to reap it.
            continue;
        }
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok());
        if let Some(uid) = uid.filter(|u| uids.contains(u)) {
            return Some((uid, pid));
        }
    }
    None
}
