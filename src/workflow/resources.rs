//! What a step holds while it runs (`resources: {gpu: 1}`), shared by every
//! `onboard` process on the machine — two terminals, a CI runner and a
//! person, two workspaces. Each unit of a resource is a lock file in one
//! machine-wide directory, held with `flock`: the kernel releases it when
//! its holder dies, so a crash never leaves the GPU "taken". Learnt from
//! Snakemake's `resources:` (amounts against a machine's totals) and Argo's
//! semaphores (named units shared between independent workflows).

use super::spec::Step;
use super::task::Registry;
use crate::cancel::Cancel;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The machine's accelerators: held by the task kinds that load a model.
pub const GPU: &str = "gpu";

/// Environment variable: the machine-wide directory of resource locks.
pub const LOCK_DIR_ENV: &str = "ONBOARD_LOCK_DIR";

/// What `step` holds while it runs: its `resources:` as written, else its
/// task kind's default (`gpu: 1` for the kinds that load a model). Zero
/// amounts hold nothing and are left out.
pub fn held_by(step: &Step, registry: &Registry) -> BTreeMap<String, u32> {
    let held = match &step.resources {
        Some(written) => written.clone(),
        None if registry.get(&step.uses).is_some_and(|t| t.loads_model()) => {
            BTreeMap::from([(GPU.to_string(), 1)])
        }
        None => BTreeMap::new(),
    };
    held.into_iter().filter(|(_, n)| *n > 0).collect()
}

/// How much of each resource a machine has when its workspace does not
/// say: one `gpu` (one model loaded at a time).
pub fn default_capacity() -> BTreeMap<String, u32> {
    BTreeMap::from([(GPU.to_string(), 1)])
}

/// Whether `name` may name a resource (it becomes a lock file's name, an
/// Argo mutex and a GitHub concurrency group).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The machine-wide directory: `$ONBOARD_LOCK_DIR`, else
/// `$XDG_RUNTIME_DIR/onboard/locks` (per user, cleared at logout), else
/// `<tmp>/onboard-<uid>/locks`.
pub fn default_lock_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(LOCK_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(run).join("onboard").join("locks");
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir()
        .join(format!("onboard-{uid}"))
        .join("locks")
}

/// Who holds a unit: written into its lock file while held, so that a
/// waiting process can say what it waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The run's target (a model id).
    pub target: String,
    pub step: String,
    /// The workspace the step runs in.
    pub workspace: String,
}

impl Holder {
    fn describe(&self, own_workspace: &str) -> String {
        let mut s = format!("{} {}, pid {}", self.target, self.step, self.pid);
        if self.workspace != own_workspace {
            s.push_str(&format!(" (workspace {})", self.workspace));
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("step `{step}` holds {amount} `{name}` but this machine has {capacity} (`resources:` in onboard.yaml); lower the step's amount or raise the machine's")]
    TooMuch {
        step: String,
        name: String,
        amount: u32,
        capacity: u32,
    },
    #[error("resource locks in {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Units held by one step; dropping it releases them (the holder line is
/// cleared first, so a waiter never reads a stale name).
#[derive(Debug)]
pub struct Held {
    files: Vec<File>,
}

impl Drop for Held {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = f.set_len(0);
            let _ = f.unlock();
        }
    }
}

/// The machine's resources as one process sees them: the lock directory,
/// the totals, and the order in which this process's waiting steps get
/// their turn (the order of the run's targets, as the user stated them).
#[derive(Debug)]
pub struct Pool {
    dir: PathBuf,
    capacity: BTreeMap<String, u32>,
    workspace: String,
    queue: Mutex<BTreeSet<Waiter>>,
    arrivals: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Waiter {
    priority: usize,
    arrival: u64,
    label: String,
}

/// How often a waiting step tries again.
const POLL: Duration = Duration::from_millis(100);

impl Pool {
    pub fn new(dir: PathBuf, capacity: BTreeMap<String, u32>, workspace: &Path) -> Pool {
        Pool {
            dir,
            capacity,
            workspace: workspace.display().to_string(),
            queue: Mutex::new(BTreeSet::new()),
            arrivals: AtomicU64::new(0),
        }
    }

    /// Takes `wants` for `who`, waiting while others hold it. Among this
    /// process's waiters the lowest `priority` goes first; other processes
    /// are met through the locks. `on_wait` hears what the step waits for
    /// (again whenever that changes). `Ok(None)`: `cancel` fired first.
    pub async fn acquire(
        &self,
        wants: &BTreeMap<String, u32>,
        who: &Holder,
        priority: usize,
        cancel: &Cancel,
        on_wait: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Option<Held>, ResourceError> {
        for (name, amount) in wants {
            let capacity = self.capacity.get(name).copied().unwrap_or(0);
            if *amount > capacity {
                return Err(ResourceError::TooMuch {
                    step: who.step.clone(),
                    name: name.clone(),
                    amount: *amount,
                    capacity,
                });
            }
        }
        if wants.is_empty() {
            return Ok(Some(Held { files: Vec::new() }));
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| ResourceError::Io {
            dir: self.dir.clone(),
            source,
        })?;
        let me = Waiter {
            priority,
            arrival: self.arrivals.fetch_add(1, Ordering::Relaxed),
            label: format!("{} {}", who.target, who.step),
        };
        self.queue().insert(me.clone());
        let _leave = Leave {
            pool: self,
            me: &me,
        };
        let mut said = String::new();
        loop {
            if cancel.is_cancelled() {
                return Ok(None);
            }
            let first = self.queue().iter().next().cloned();
            if first.as_ref() == Some(&me) {
                match self.try_take(wants, who) {
                    Ok(Some(held)) => return Ok(Some(held)),
                    Ok(None) => {}
                    Err(source) => {
                        return Err(ResourceError::Io {
                            dir: self.dir.clone(),
                            source,
                        })
                    }
                }
            }
            let why = self.waiting_for(wants, first.as_ref().filter(|f| **f != me));
            if why != said {
                on_wait(&why);
                said = why;
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = cancel.cancelled() => return Ok(None),
            }
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, BTreeSet<Waiter>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot_path(&self, name: &str, unit: u32) -> PathBuf {
        self.dir.join(format!("{name}.{unit}.lock"))
    }

    /// Every unit wanted, or none: what was taken is released when one is
    /// missing, so a waiter never holds part while waiting for the rest.
    fn try_take(&self, wants: &BTreeMap<String, u32>, who: &Holder) -> io::Result<Option<Held>> {
        let mut held = Held { files: Vec::new() };
        for (name, amount) in wants {
            let capacity = self.capacity.get(name).copied().unwrap_or(0);
            let mut taken = 0;
            for unit in 0..capacity {
                if taken == *amount {
                    break;
                }
                let mut file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(self.slot_path(name, unit))?;
                match file.try_lock() {
                    Ok(()) => {
                        let line = serde_json::to_string(who).unwrap_or_default();
                        file.set_len(0)?;
                        file.rewind()?;
                        file.write_all(line.as_bytes())?;
                        file.flush()?;
                        held.files.push(file);
                        taken += 1;
                    }
                    Err(std::fs::TryLockError::WouldBlock) => {}
                    Err(std::fs::TryLockError::Error(e)) => return Err(e),
                }
            }
            if taken < *amount {
                return Ok(None);
            }
        }
        Ok(Some(held))
    }

    /// `waiting for gpu: held by qwen3.5-27b context_test, pid 4242`.
    fn waiting_for(&self, wants: &BTreeMap<String, u32>, ahead: Option<&Waiter>) -> String {
        let mut parts = Vec::new();
        for name in wants.keys() {
            let capacity = self.capacity.get(name).copied().unwrap_or(0);
            let holders: Vec<String> = (0..capacity)
                .filter_map(|unit| read_holder(&self.slot_path(name, unit)))
                .map(|h| h.describe(&self.workspace))
                .collect();
            let part = match (holders.is_empty(), ahead) {
                (false, _) => format!("{name}: held by {}", holders.join("; ")),
                (true, Some(w)) => format!("{name}: {} goes first", w.label),
                (true, None) => format!("{name}: held by another process"),
            };
            parts.push(part);
        }
        format!("waiting for {}", parts.join(", "))
    }
}

/// Takes a waiter out of the queue however its wait ends.
struct Leave<'a> {
    pool: &'a Pool,
    me: &'a Waiter,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.pool.queue().remove(self.me);
    }
}

fn read_holder(path: &Path) -> Option<Holder> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(target: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            target: target.into(),
            step: "context_test".into(),
            workspace: "/ws".into(),
        }
    }

    fn gpu(n: u32) -> BTreeMap<String, u32> {
        BTreeMap::from([(GPU.to_string(), n)])
    }

    #[tokio::test]
    async fn a_second_taker_waits_names_the_holder_and_gets_it_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let pool = std::sync::Arc::new(Pool::new(dir.path().into(), gpu(1), Path::new("/ws")));
        let cancel = Cancel::new();
        let first = pool
            .acquire(&gpu(1), &holder("a"), 0, &cancel, &|_| {})
            .await
            .unwrap()
            .unwrap();
        let heard = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
        let (p, c, h) = (pool.clone(), cancel.clone(), heard.clone());
        let second = tokio::spawn(async move {
            p.acquire(&gpu(1), &holder("b"), 1, &c, &move |w| {
                h.lock().unwrap().push(w.to_string())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!second.is_finished(), "the unit is held: b must wait");
        drop(first);
        let got = second.await.unwrap().unwrap();
        assert!(got.is_some());
        let heard = heard.lock().unwrap();
        assert_eq!(heard.len(), 1, "{heard:?}");
        assert_eq!(
            heard[0],
            format!(
                "waiting for gpu: held by a context_test, pid {}",
                std::process::id()
            )
        );
    }

    #[tokio::test]
    async fn cancel_ends_the_wait_without_taking() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::new(dir.path().into(), gpu(1), Path::new("/ws"));
        let cancel = Cancel::new();
        let _first = pool
            .acquire(&gpu(1), &holder("a"), 0, &cancel, &|_| {})
            .await
            .unwrap()
            .unwrap();
        let other = Cancel::new();
        let stopper = other.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stopper.cancel(libc::SIGINT);
        });
        let got = pool
            .acquire(&gpu(1), &holder("b"), 1, &other, &|_| {})
            .await
            .unwrap();
        assert!(got.is_none());
    }

    #[tokio::test]
    async fn more_than_the_machine_has_is_an_error_not_a_wait() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::new(dir.path().into(), gpu(1), Path::new("/ws"));
        let err = pool
            .acquire(&gpu(2), &holder("a"), 0, &Cancel::new(), &|_| {})
            .await
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("holds 2 `gpu` but this machine has 1"));
    }

    #[tokio::test]
    async fn two_units_serve_two_holders_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let pool = Pool::new(dir.path().into(), gpu(2), Path::new("/ws"));
        let c = Cancel::new();
        let a = pool.acquire(&gpu(1), &holder("a"), 0, &c, &|_| {}).await;
        let b = pool.acquire(&gpu(1), &holder("b"), 0, &c, &|_| {}).await;
        assert!(a.unwrap().is_some() && b.unwrap().is_some());
    }
}
