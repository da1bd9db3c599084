//! The drainer: who runs deferred destructors, and the background thread that does it by default.
//!
//! The thread's loop is the consumer half of the doorbell protocol (`doorbell.rs`). It never
//! waits for readers: objects that need a grace period wait in batches stamped with one, and a
//! cycle runs only those whose grace period a non-blocking poll says has passed.
//!
//! ```text
//! loop {
//!     cycle                          (clear pending, take the lists, run what is ready, trim)
//!     stop requested?  -> exit       (the last reference to the runtime runs whatever is left)
//!     ran something?   -> loop       (more may have come while we ran destructors)
//!     sleep: lazy mode             -> at most the period
//!            objects still waiting -> at most the poll interval (1 ms, doubling up to 16 ms
//!                                     while nothing moves)
//!            nothing waiting       -> after 4 quiet polls (up to 32 ms apart), until rung
//! }
//! ```
//!
//! Batches producers are still filling are closed only by the first cycle after a sleep (so a
//! busy producer closes its own, full, and helps then).
//!
//! With nothing queued it sleeps in the kernel; with objects waiting for readers it polls, so a
//! reader that never leaves costs it one wake-up every 16 ms and delays nothing but those objects.

use super::doorbell::{Doorbell, Wake};
use crate::sync::Arc;
use std::time::Duration;

/// Who runs deferred destructors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Drainer {
    /// A background thread, woken as [`Wake`] says (the default).
    #[default]
    Thread,
    /// Nobody, until the application calls [`Runtime::drain`](crate::Runtime::drain) at its own
    /// safe points (an event loop's idle hook, a frame boundary).
    Manual,
}

/// What one drain cycle did.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cycle {
    /// Destructors run.
    pub ran: usize,
    /// Whether objects are still waiting (for a grace period, or in a batch not yet closed).
    pub waiting: bool,
}

/// What the drainer thread drains: the runtime, seen from below.
pub(crate) trait Drain: Send + Sync + 'static {
    /// One drain cycle; `close_open`: also close the batches producers are still filling.
    fn cycle(&self, close_open: bool) -> Cycle;
    /// The doorbell producers ring.
    fn doorbell(&self) -> &Doorbell;
    /// Whether the runtime is shutting down.
    fn stopping(&self) -> bool;
    /// Whether batched objects are waiting (checked after the drainer announced it sleeps).
    fn work_waiting(&self) -> bool;
}

/// The first poll interval while objects wait for readers; it doubles up to `MAX_POLL`.
const POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_millis(32);
/// Polls in a row that find nothing waiting before the drainer sleeps until rung.
const QUIET_POLLS: u32 = 4;

/// The handle of a running drainer thread.
pub(crate) struct DrainerThread {
    #[cfg(not(loom))]
    handle: std::thread::JoinHandle<()>,
    #[cfg(loom)]
    handle: loom::thread::JoinHandle<()>,
}

/// Starts the drainer thread.
#[cfg(not(loom))]
pub(crate) fn spawn<D: Drain>(work: Arc<D>, wake: Wake) -> std::io::Result<DrainerThread> {
    let handle = std::thread::Builder::new()
        .name("sigdrop-drainer".into())
        .spawn(move || run(&*work, wake))?;
    Ok(DrainerThread { handle })
}

/// Starts the drainer as a model thread.
#[cfg(loom)]
pub(crate) fn spawn<D: Drain>(work: Arc<D>, wake: Wake) -> std::io::Result<DrainerThread> {
    Ok(DrainerThread {
        handle: loom::thread::spawn(move || run(&*work, wake)),
    })
}

impl DrainerThread {
    /// Waits for the thread to finish, unless the caller *is* the drainer (the last handle was
    /// dropped by a destructor the drainer ran): then the thread finishes on its own after the
    /// current cycle, and the last reference to the runtime state goes with it — the final
    /// drain then runs on the drainer thread, detached, and like any detached thread's work it
    /// is cut short if the process exits first. The drainer never waits for readers, so the join
    /// takes at most the destructors it is running.
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

fn run<D: Drain>(work: &D, wake: Wake) {
    // The next poll interval while polling.
    let mut interval = POLL;
    // Polls in a row that found nothing waiting, since the last work; `None`: no work seen
    // lately, so an empty cycle sleeps until rung.
    let mut quiet: Option<u32> = None;
    // Batches still being filled are closed only on the first cycle after a sleep: while work
    // keeps coming, their producers close them when full (and help then), so the drainer does
    // not cut them into small batches that bypass the producers' back-pressure check.
    let mut slept = true;
    loop {
        let cycle = work.cycle(slept);
        if work.stopping() {
            return;
        }
        if cycle.ran > 0 {
            interval = POLL;
            quiet = Some(0);
            slept = false;
            continue;
        }
        let timeout = match wake {
            Wake::Lazy { period, .. } => Some(period),
            // Objects wait (for readers, or in a batch being filled): poll, less often the
            // longer nothing moves.
            Wake::Immediate if cycle.waiting => {
                quiet = Some(0);
                let t = interval;
                interval = (interval * 2).min(MAX_POLL / 2);
                Some(t)
            }
            // Work stopped lately: a few more polls before sleeping for good, so that a producer
            // that keeps batching (and destroys its own batches) never needs a wake-up syscall.
            Wake::Immediate => match quiet {
                Some(q) if q < QUIET_POLLS => {
                    quiet = Some(q + 1);
                    let t = interval;
                    interval = (interval * 2).min(MAX_POLL);
                    Some(t)
                }
                _ => {
                    quiet = None;
                    interval = POLL;
                    None
                }
            },
        };
        work.doorbell()
            .sleep(timeout, || work.stopping() || work.work_waiting());
        slept = true;
    }
}
