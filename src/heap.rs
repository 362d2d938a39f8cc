//! The heap's bytes in use and their peak, for `ringvpn status` (the
//! daemon's own figure of its memory: under qemu-user, or beside a
//! supervisor's RSS, the process's RSS says little about ringvpn itself).
//!
//! `Counting` wraps the system allocator and keeps two counters; the
//! daemon installs it as the global allocator, and so does `ringvpn-lab`
//! (its `sim` reports the heap per simulated node beside the RSS). The data path allocates
//! nothing in steady state (tests/zero_alloc.rs), so the counters cost
//! nothing per packet.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Allocations (and reallocations) so far: lab tests read it from
/// `status --json` around a transfer to prove the whole daemon, offload
/// paths included, allocates nothing per packet.
static CALLS: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counted.
pub struct Counting;

impl Counting {
    fn grew(n: usize) {
        CALLS.fetch_add(1, Relaxed);
        let live = LIVE.fetch_add(n, Relaxed) + n;
        PEAK.fetch_max(live, Relaxed);
        INSTALLED.store(true, Relaxed);
    }
}

// SAFETY: every call is passed to `System` unchanged; the counters only
// observe sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            Counting::grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            Counting::grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            Counting::grew(new_size);
        }
        p
    }
}

/// Heap bytes in use now and at most so far, when `Counting` is the
/// global allocator.
pub fn usage() -> Option<(u64, u64)> {
    INSTALLED
        .load(Relaxed)
        .then(|| (LIVE.load(Relaxed) as u64, PEAK.load(Relaxed) as u64))
}

/// Allocations made so far, when `Counting` is the global allocator.
pub fn allocations() -> Option<u64> {
    INSTALLED.load(Relaxed).then(|| CALLS.load(Relaxed) as u64)
}
