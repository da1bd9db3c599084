//! What a child process inherits from `fork`, and how sigdrop keeps its promises there.
//!
//! `fork` copies the whole address space — every runtime, the read domain, every queue — but
//! only the thread that called it. In the child:
//!
//! - **A runtime's drainer thread does not exist.** Each handle remembers the fork count at
//!   which its drainer was started; the first use of the runtime in ordinary context in the
//!   child sees the count has moved and starts a new drainer (a signal handler cannot start a
//!   thread, so objects handed over only from handlers wait for that first ordinary use).
//!   Shutting down never joins a thread the child does not have.
//! - **Read guards of the parent's other threads are never dropped.** Their counts would hold
//!   every grace period up for ever, so the child's handler below clears the reader counts —
//!   exactly, when the forking thread holds no guard itself (the usual case). If it does hold
//!   one, the counts are kept (its guards must still be waited for) and grace periods in the
//!   child may wait for the parent's readers for ever: the only case that is not recovered.
//! - **A grace period another thread was moving on** is taken over from its start.
//! - **Objects the parent's drainer had taken** when `fork` ran are destroyed in the parent; the
//!   child's copies of them are never destroyed (their destructors would run twice over the
//!   same resources, say the same file descriptor, otherwise).
//!
//! The counter is bumped by a `pthread_atfork` child handler, registered once when the first
//! runtime is built. The handler touches only atomics (async-signal-safe, as POSIX asks of code
//! that runs in the child of a multithreaded process).

#[cfg(not(loom))]
mod imp {
    use std::sync::Once;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Forks this process has gone through since it started (in its line of descent).
    static FORKS: AtomicU32 = AtomicU32::new(0);
    static WATCH: Once = Once::new();

    /// Registers the child handler (once per process; children inherit it).
    pub(crate) fn watch() {
        WATCH.call_once(|| {
            // SAFETY: `in_child` is an `extern "C" fn()` that never unwinds and only touches
            // atomics and this thread's `const` thread-locals.
            let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
            // It fails only without memory for the registration; children then keep the parent's
            // view (no new drainer, reader counts kept): what happened before this existed.
            debug_assert_eq!(rc, 0, "pthread_atfork");
        });
    }

    /// The fork count now. Relaxed: the count only changes in a child's handler, on the one
    /// thread the child has, before any other thread of the child exists (its creation
    /// synchronises with the handler), so every thread of a process reads its own count.
    #[inline]
    pub(crate) fn count() -> u32 {
        FORKS.load(Ordering::Relaxed)
    }

    extern "C" fn in_child() {
        // Relaxed: see `count`.
        FORKS.fetch_add(1, Ordering::Relaxed);
        crate::read::after_fork_in_child();
    }
}

/// Loom models have no `fork`.
#[cfg(loom)]
mod imp {
    pub(crate) fn watch() {}

    #[inline]
    pub(crate) fn count() -> u32 {
        0
    }
}

pub(crate) use imp::{count, watch};
