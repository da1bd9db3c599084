//! A global allocator that counts the allocator calls made in restricted context: the way to
//! check that your signal handler (and sigdrop inside it) never allocates or frees.
//!
//! ```
//! use sigdrop::alloc_check::RestrictedAllocs;
//! use sigdrop::restricted;
//!
//! #[global_allocator]
//! static ALLOC: RestrictedAllocs = RestrictedAllocs::system();
//!
//! {
//!     let _nmi = restricted::enter();
//!     drop(std::hint::black_box(Box::new(1u8))); // what a handler must never do
//! }
//! let counts = ALLOC.take();
//! assert_eq!((counts.allocs, counts.frees), (1, 1));
//! assert_eq!(ALLOC.counts().restricted(), 0);
//! ```
//!
//! Counting costs a read of the restricted-context depth (a `const` thread-local) per call, and
//! an atomic add per call made in restricted context (plus one per allocation for
//! [`AllocCounts::all_allocs`], which shows the counter is live).

use crate::restricted;
use crate::sync::{AtomicU64, Ordering};
use std::alloc::{GlobalAlloc, Layout, System};

/// Allocator calls counted by a [`RestrictedAllocs`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AllocCounts {
    /// `alloc` and `alloc_zeroed` calls in restricted context.
    pub allocs: u64,
    /// `realloc` calls in restricted context.
    pub reallocs: u64,
    /// `dealloc` calls in restricted context.
    pub frees: u64,
    /// Allocations in any context.
    pub all_allocs: u64,
}

impl AllocCounts {
    /// Every allocator call made in restricted context (the number that must be 0).
    pub fn restricted(&self) -> u64 {
        self.allocs + self.reallocs + self.frees
    }
}

/// Wraps an allocator (the system's by default) and counts the calls made while a
/// [`restricted`] guard is active on the calling thread. Use it as the
/// `#[global_allocator]` of a test or an example.
#[derive(Debug)]
pub struct RestrictedAllocs<A = System> {
    inner: A,
    allocs: AtomicU64,
    reallocs: AtomicU64,
    frees: AtomicU64,
    all_allocs: AtomicU64,
}

impl RestrictedAllocs<System> {
    /// Counts calls to the system allocator.
    pub const fn system() -> Self {
        RestrictedAllocs::new(System)
    }
}

impl<A> RestrictedAllocs<A> {
    /// Counts calls to `inner`.
    pub const fn new(inner: A) -> Self {
        RestrictedAllocs {
            inner,
            allocs: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            all_allocs: AtomicU64::new(0),
        }
    }

    /// The counts so far. May be called from a signal handler (relaxed loads).
    pub fn counts(&self) -> AllocCounts {
        // Relaxed (here, in `take` and in the allocator methods): statistics; nothing
        // synchronises through them. Read them after joining or otherwise synchronising with
        // the threads they count.
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AllocCounts {
            allocs: load(&self.allocs),
            reallocs: load(&self.reallocs),
            frees: load(&self.frees),
            all_allocs: load(&self.all_allocs),
        }
    }

    /// The counts so far, resetting them to zero. May be called from a signal handler.
    pub fn take(&self) -> AllocCounts {
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        AllocCounts {
            allocs: take(&self.allocs),
            reallocs: take(&self.reallocs),
            frees: take(&self.frees),
            all_allocs: take(&self.all_allocs),
        }
    }

    #[inline]
    fn note(&self, counter: &AtomicU64) {
        if restricted::is_active() {
            // Relaxed: a statistic, read after the threads it counts have been synchronised with.
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: every method forwards to `inner` with the caller's arguments unchanged; the counting
// only reads a `const` thread-local and updates atomics, and never allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for RestrictedAllocs<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Relaxed: a statistic (see `counts`).
        self.all_allocs.fetch_add(1, Ordering::Relaxed);
        self.note(&self.allocs);
        // SAFETY: forwarded contract.
        unsafe { self.inner.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // Relaxed: a statistic (see `counts`).
        self.all_allocs.fetch_add(1, Ordering::Relaxed);
        self.note(&self.allocs);
        // SAFETY: forwarded contract.
        unsafe { self.inner.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note(&self.reallocs);
        // SAFETY: forwarded contract.
        unsafe { self.inner.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.note(&self.frees);
        // SAFETY: forwarded contract.
        unsafe { self.inner.dealloc(ptr, layout) }
    }
}
