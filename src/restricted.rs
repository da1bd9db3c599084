//! Restricted context: where a signal handler runs, and what may be done there.
//!
//! Code is in restricted context while a [`RestrictedGuard`] is alive on its thread. A signal
//! handler that hands objects to sigdrop enters the guard first thing; everything sigdrop does
//! while the guard is active is async-signal-safe: no allocation, no lock, no blocking call, and
//! no destructor of a handed-over object ever runs.
//!
//! The depth is a per-thread counter in a `const`-initialised thread-local without a destructor,
//! so reading or updating it never allocates, never registers a destructor and never runs a lazy
//! initialiser — it is safe to touch from a handler that interrupted any code on the thread.
//! (One caveat from the platform: if sigdrop is linked into a library loaded with `dlopen`, the
//! first access to a thread-local on a thread may go through glibc's `__tls_get_addr`, which can
//! allocate. Touch `is_active()` once on each thread in ordinary context — or link sigdrop into
//! the executable — before a handler can run there.)
//! Guards nest: a handler that interrupts another handler (or ordinary code that entered the
//! guard itself) just counts one level deeper, and handlers return in LIFO order, so the count an
//! interrupted update sees is always consistent.
//!
//! A thread that is not a signal handler but must never free or block either — an audio
//! callback, a real-time control loop — may enter the guard too, for as long as it likes: every
//! object it lets go of then goes to the drainer, as in a handler (under the default
//! [`Policy::Auto`](crate::Policy::Auto) it would otherwise destroy them inline), and the same
//! rules hold for it (jobs reserved for its installs; nothing that allocates or locks).
//! Such a thread usually must not make syscalls either: with the default
//! [`Wake::Immediate`](crate::Wake::Immediate), the first object of each burst it hands over
//! wakes a sleeping drainer thread with one `futex` call: about one per callback, if most
//! callbacks hand something over. Build its runtime with [`Wake::lazy`](crate::Wake::lazy)
//! (the drainer wakes by itself; no syscall until a CPU's queue reaches the high watermark) or
//! with [`Drainer::Manual`](crate::Drainer::Manual) (you drain; never a wake-up), and watch
//! [`Stats::restricted_wakes`](crate::Stats::restricted_wakes).
//!
//! ```
//! use sigdrop::restricted;
//!
//! assert!(!restricted::is_active());
//! {
//!     let _outer = restricted::enter();
//!     let _inner = restricted::enter();
//!     assert!(restricted::is_active());
//! }
//! assert!(!restricted::is_active());
//! ```

use std::cell::Cell;
use std::marker::PhantomData;

#[cfg(not(loom))]
std::thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

// Under loom every model thread gets its own depth; a signal landing on a thread is modelled as
// another loom thread, which enters its own guard explicitly.
#[cfg(loom)]
loom::thread_local! {
    static DEPTH: Cell<u32> = Cell::new(0);
}

/// Proof that the current thread is in restricted context; leaving it drops one level.
///
/// Not `Send`: the depth it counts belongs to the thread that entered.
#[must_use = "restricted context ends when the guard is dropped"]
#[derive(Debug)]
pub struct RestrictedGuard {
    _not_send: PhantomData<*mut ()>,
}

/// Enters restricted context on this thread (nestable). Call it first thing in a signal handler
/// that uses sigdrop and was not installed through [`signal`](crate::signal) (which enters it
/// for you).
///
/// May be called from a signal handler: it only updates a thread-local counter (and, while a
/// [`RestrictedAllocs`](crate::alloc_check::RestrictedAllocs) is the global allocator, a
/// process-wide count of entries).
pub fn enter() -> RestrictedGuard {
    DEPTH.with(|d| d.set(d.get().wrapping_add(1)));
    #[cfg(not(loom))]
    entries::note();
    RestrictedGuard {
        _not_send: PhantomData,
    }
}

/// Whether this thread is in restricted context (some [`RestrictedGuard`] is alive on it).
///
/// May be called from a signal handler; it is how sigdrop decides, under
/// [`Policy::Auto`](crate::Policy::Auto), whether a destructor may run inline.
#[inline]
pub fn is_active() -> bool {
    DEPTH.with(|d| d.get() != 0)
}

/// The current nesting depth (0 in ordinary context). May be called from a signal handler.
#[inline]
pub fn depth() -> u32 {
    DEPTH.with(|d| d.get())
}

/// A process-wide count of [`enter`] calls, kept only while a counting allocator asks for it
/// (otherwise `enter` pays one relaxed load of a flag that never changes): how
/// [`RestrictedAllocs`](crate::alloc_check::RestrictedAllocs) tells "no allocation in the
/// handler" from "no handler in restricted context at all".
#[cfg(not(loom))]
pub(crate) mod entries {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    static COUNTING: AtomicBool = AtomicBool::new(false);
    static ENTRIES: AtomicU64 = AtomicU64::new(0);

    // Relaxed everywhere: a statistic, read after the threads it counts have been synchronised
    // with (as the allocator counts are).

    /// Starts counting (idempotent; called by the counting allocator).
    #[inline]
    pub(crate) fn start_counting() {
        if !COUNTING.load(Ordering::Relaxed) {
            COUNTING.store(true, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(super) fn note() {
        if COUNTING.load(Ordering::Relaxed) {
            ENTRIES.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Entries so far.
    pub(crate) fn get() -> u64 {
        ENTRIES.load(Ordering::Relaxed)
    }

    /// Entries so far, resetting the count to zero.
    pub(crate) fn take() -> u64 {
        ENTRIES.swap(0, Ordering::Relaxed)
    }
}

/// Puts this thread's depth back to `depth`: the drainer's repair after a destructor that
/// forgot a guard (or dropped one it did not enter).
pub(crate) fn reset_depth(depth: u32) {
    DEPTH.with(|d| d.set(depth));
}

impl Drop for RestrictedGuard {
    fn drop(&mut self) {
        // Saturating: a guard whose level was already taken back (a destructor stored it and
        // the drainer reset the depth, see `Runtime::drain`) must not wrap the depth into "in
        // restricted context for ever".
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn depth_is_per_thread() {
        let _g = enter();
        assert_eq!(depth(), 1);
        std::thread::spawn(|| assert!(!is_active())).join().unwrap();
        assert!(is_active());
    }
}
