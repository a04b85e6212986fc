//! Arbitrary bytes → the GGUF header reader, then facts, the memory model
//! and `evaluate` (see `onboard_fuzz::gguf_header`). A counting allocator
//! holds the reader to its allocation bound: a claimed length must never
//! cost more memory than the bytes that back it.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// libFuzzer runs the target on one thread, so the counters see only it.
fn peak(f: &mut dyn FnMut()) -> Option<usize> {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    f();
    Some(PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

fuzz_target!(|data: &[u8]| {
    onboard_fuzz::gguf_header(data, peak);
});
