//! How a run stops on Ctrl-C or SIGTERM.
//!
//! The first signal cancels the run's [`Cancel`] token: the runner stops
//! starting steps and drops the running ones (dropping kills a `command`
//! step's process group), and blocking work (downloads, the sandbox, the
//! benchmark loop) polls the same token and returns. A second signal exits
//! at once, after killing the process groups registered here: those are
//! outside onboard's own group, so neither the terminal's signal nor the
//! engines' parent-death signal reaches them.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Shared by a run and everything it started; cheap to clone.
#[derive(Clone, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// 0 while running; else the signal that stopped the run.
    signal: AtomicI32,
    notify: Notify,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cancel({:?})", self.signal())
    }
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Stops the run because of `signal` (the first cause wins).
    pub fn cancel(&self, signal: i32) {
        let _ = self.inner.signal.compare_exchange(
            0,
            signal.max(1),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.inner.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.signal.load(Ordering::SeqCst) != 0
    }

    /// The signal that stopped the run, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.inner.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Resolves once the run is cancelled (at once if it already is).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a cancel in between is not lost.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// `SIGINT`, `SIGTERM`, … for messages and records.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        s => format!("signal {s}"),
    }
}

/// The exit status of a process stopped by `signal`, as shells report it.
pub fn exit_code(signal: i32) -> i32 {
    128 + signal
}

static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Remembers a child's process group until [`forget_group`].
pub fn register_group(pgid: i32) {
    if pgid > 0 {
        GROUPS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pgid);
    }
}

pub fn forget_group(pgid: i32) {
    GROUPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&pgid);
}

/// SIGKILLs every registered process group (the exit-at-once path).
pub fn kill_groups() {
    let groups = GROUPS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for pgid in groups {
        // SAFETY: killpg only sends a signal; a vanished group gives ESRCH.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancelled_wakes_waiters_and_keeps_the_first_signal() {
        let c = Cancel::new();
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.cancelled().await }
        });
        tokio::task::yield_now().await;
        assert!(!c.is_cancelled());
        c.cancel(libc::SIGTERM);
        c.cancel(libc::SIGINT);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.signal(), Some(libc::SIGTERM));
        // Already cancelled: resolves at once.
        c.cancelled().await;
        assert_eq!(exit_code(libc::SIGINT), 130);
    }
}
