//! `plan --diff` on big files: the diff is computed in memory proportional
//! to the files, not to the product of their lengths (a hand-written LCS
//! table needed 20,000² cells here: 1.6 GB).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts live and peak heap bytes of this test binary.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_20000_line_diff_stays_in_bounded_memory() {
    let lines = 20_000;
    let before: String = (0..lines).map(|i| format!("row {i}\n")).collect();
    // Every 100th line changed: 200 hunks, the rest shared.
    let after: String = (0..lines)
        .map(|i| {
            if i % 100 == 50 {
                format!("row {i} changed\n")
            } else {
                format!("row {i}\n")
            }
        })
        .collect();
    let inputs = LIVE.load(Ordering::Relaxed);
    PEAK.store(inputs, Ordering::Relaxed);
    let diff = onboard::docs::diff::unified("big.md", Some(&before), Some(&after));
    let used = PEAK.load(Ordering::Relaxed) - inputs;

    let removed = diff.lines().filter(|l| l.starts_with("-row")).count();
    let added = diff.lines().filter(|l| l.starts_with("+row")).count();
    assert_eq!(
        (removed, added),
        (200, 200),
        "{}",
        &diff[..diff.len().min(500)]
    );
    assert_eq!(diff.lines().filter(|l| l.starts_with("@@ ")).count(), 200);
    // The files are ~0.2 MB each; an LCS table would be 1.6 GB.
    assert!(
        used < 32 << 20,
        "diffing two 20,000-line files took {} MiB at peak",
        used >> 20
    );
}
