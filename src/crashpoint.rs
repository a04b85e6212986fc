//! Crash injection for the kill test (`tests/crash_safety.rs`): the places
//! where a SIGKILL could leave a half-done change — inside every atomic
//! write, between a download's pieces, after each benchmark record — are
//! numbered as the process passes them, and `ONBOARD_CRASH_AT=N` makes the
//! process SIGKILL itself at the Nth. A test can so kill a real run at every
//! such place, not at whatever instants a timer happens to hit.
//! `ONBOARD_CRASH_TRACE=FILE` appends `N site` per point passed, which is how
//! the test learns how many there are. With neither set a point costs one
//! load of an initialised `OnceLock`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Injection {
    at: Option<u64>,
    trace: Option<std::path::PathBuf>,
}

static INJECTION: OnceLock<Option<Injection>> = OnceLock::new();
static PASSED: AtomicU64 = AtomicU64::new(0);

fn from_env() -> Option<Injection> {
    let at = std::env::var("ONBOARD_CRASH_AT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    let trace = std::env::var_os("ONBOARD_CRASH_TRACE").map(std::path::PathBuf::from);
    (at.is_some() || trace.is_some()).then_some(Injection { at, trace })
}

/// Marks a place where the process may die; `site` names it in the trace.
pub fn point(site: &'static str) {
    let Some(injection) = INJECTION.get_or_init(from_env) else {
        return;
    };
    let n = PASSED.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(path) = &injection.trace {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{n} {site}");
        }
    }
    if injection.at == Some(n) {
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
