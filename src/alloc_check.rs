//! A global allocator that counts the allocator calls made in restricted context: the way to
//! check that your signal handler (and sigdrop inside it) never allocates or frees — and that
//! your handler ran in restricted context at all (a handler installed with your own `sigaction`
//! that forgot [`restricted::enter`] would allocate unseen).
//!
//! ```
//! use sigdrop::alloc_check::RestrictedAllocs;
//! use sigdrop::restricted;
//!
//! #[global_allocator]
//! static ALLOC: RestrictedAllocs = RestrictedAllocs::system();
//!
//! // A test that expected handler activity but saw none is told so.
//! let counts = ALLOC.take();
//! assert_eq!(counts.restricted_entries, 0);
//! assert!(counts.check().unwrap_err().contains("no handler ran in restricted context"));
//!
//! {
//!     let _restricted = restricted::enter(); // what a handler does first (sigdrop::signal does it)
//!     drop(std::hint::black_box(Box::new(1u8))); // what a handler must never do
//! }
//! let counts = ALLOC.take();
//! assert_eq!(counts.restricted_entries, 1);
//! assert_eq!((counts.allocs, counts.frees), (1, 1));
//! assert!(counts.check().unwrap_err().contains("2 allocator calls in restricted context"));
//! ```
//!
//! Counting costs a read of the restricted-context depth (a `const` thread-local) per call, and
//! an atomic add per call made in restricted context (plus one per allocation for
//! [`AllocCounts::all_allocs`], which shows the counter is live). While it is the global
//! allocator, each [`restricted::enter`] also adds one to a process-wide count of entries.

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
    /// [`restricted::enter`] calls, on any thread (a handler installed through
    /// [`signal`](crate::signal) enters once per signal). 0 after a run that expected handler
    /// activity means no handler ran in restricted context: the allocator counts above then
    /// prove nothing about it.
    pub restricted_entries: u64,
}

impl AllocCounts {
    /// Every allocator call made in restricted context (the number that must be 0).
    /// May be called from a signal handler.
    pub fn restricted(&self) -> u64 {
        self.allocs + self.reallocs + self.frees
    }

    /// For a run that expected handler activity: `Ok` if restricted context was entered and no
    /// allocator call was made in it; otherwise a message saying what went wrong. Ordinary
    /// context (the message is allocated).
    pub fn check(&self) -> Result<(), String> {
        if self.restricted_entries == 0 {
            return Err("no handler ran in restricted context — did it call \
                        restricted::enter first, or was it installed through sigdrop::signal?"
                .into());
        }
        match self.restricted() {
            0 => Ok(()),
            n => Err(format!(
                "{n} allocator calls in restricted context ({} allocs, {} reallocs, {} frees) \
                 over {} restricted-context entries",
                self.allocs, self.reallocs, self.frees, self.restricted_entries
            )),
        }
    }
}

/// Wraps an allocator (the system's by default) and counts the calls made while a
/// [`restricted`] guard is active on the calling thread, and the [`restricted::enter`] calls.
/// Use it as the `#[global_allocator]` of a test or an example.
#[derive(Debug)]
pub struct RestrictedAllocs<A = System> {
    inner: A,
    allocs: AtomicU64,
    reallocs: AtomicU64,
    frees: AtomicU64,
    all_allocs: AtomicU64,
}

impl RestrictedAllocs<System> {
    /// Counts calls to the system allocator. A `const` constructor, for a `static`.
    pub const fn system() -> Self {
        RestrictedAllocs::new(System)
    }
}

impl<A> RestrictedAllocs<A> {
    /// Counts calls to `inner`. A `const` constructor, for a `static`.
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
            restricted_entries: restricted::entries::get(),
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
            restricted_entries: restricted::entries::take(),
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
        restricted::entries::start_counting();
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
