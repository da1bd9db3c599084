//! The drainer: who runs deferred destructors, and the background thread that does it by default.
//!
//! The thread's loop is the consumer half of the doorbell protocol (`doorbell.rs`):
//!
//! ```text
//! loop {
//!     drain once                    (clear pending, take every list, run, return jobs, trim)
//!     stop requested?  -> exit      (the last Inner reference runs whatever is left)
//!     found work?      -> loop      (more may have come while we ran destructors)
//!     seen = seq; pending or stop?  -> loop
//!     futex_wait(seq, seen)         (returns at once if seq moved since `seen`)
//! }
//! ```
//!
//! It never busy-waits: with nothing queued it sleeps in the kernel until a producer rings.

use crate::runtime::Inner;
use crate::sync::Arc;

/// Who runs deferred destructors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Drainer {
    /// A background thread, woken by the first offload of each burst (the default).
    #[default]
    Thread,
    /// Nobody, until the application calls [`Runtime::drain`](crate::Runtime::drain) at its own
    /// safe points (an event loop's idle hook, a frame boundary).
    Manual,
}

/// The handle of a running drainer thread.
pub(crate) struct DrainerThread {
    #[cfg(not(loom))]
    handle: std::thread::JoinHandle<()>,
    #[cfg(loom)]
    handle: loom::thread::JoinHandle<()>,
}

/// Starts the drainer thread.
#[cfg(not(loom))]
pub(crate) fn spawn(inner: Arc<Inner>) -> std::io::Result<DrainerThread> {
    let handle = std::thread::Builder::new()
        .name("sigdrop-drainer".into())
        .spawn(move || run(inner))?;
    Ok(DrainerThread { handle })
}

/// Starts the drainer as a model thread.
#[cfg(loom)]
pub(crate) fn spawn(inner: Arc<Inner>) -> std::io::Result<DrainerThread> {
    Ok(DrainerThread {
        handle: loom::thread::spawn(move || run(inner)),
    })
}

impl DrainerThread {
    /// Waits for the thread to finish, unless the caller *is* the drainer (the last handle was
    /// dropped by a destructor the drainer ran): then the thread finishes on its own after the
    /// current cycle, and the last reference to the runtime state goes with it — the final
    /// drain then runs on the drainer thread, detached, and like any detached thread's work it
    /// is cut short if the process exits first.
    pub(crate) fn join_unless_current(self) {
        #[cfg(not(loom))]
        {
            if self.handle.thread().id() == std::thread::current().id() {
                return;
            }
            // A panic on the drainer outside destructors would be a bug in sigdrop; destructor
            // panics are caught and counted. Do not propagate it into a `Drop`.
            let _ = self.handle.join();
        }
        #[cfg(loom)]
        {
            let _ = self.handle.join();
        }
    }
}

fn run(inner: Arc<Inner>) {
    loop {
        let ran = inner.drain();
        if inner.stopping() {
            return;
        }
        if ran > 0 {
            continue;
        }
        let seen = inner.doorbell.seq();
        if inner.stopping() || inner.doorbell.is_pending() {
            continue;
        }
        inner.doorbell.wait(seen);
    }
}
