//! The drainer: who runs deferred destructors, and the background thread that does it by default.
//!
//! The thread's loop is the consumer half of the doorbell protocol (`doorbell.rs`). It never
//! waits for readers: objects that need a grace period wait in batches stamped with one, and a
//! cycle runs only those whose grace period a non-blocking poll says has passed.
//!
//! ```text
//! loop {
//!     cycle                          (clear pending, take the lists, run what is ready, trim)
//!     stop requested?  -> settle, exit (cycles until one runs nothing: what the last cycle's
//!                                     destructors handed over; the shutdown, or the last
//!                                     reference to the runtime, runs whatever else is left)
//!     ran something?   -> loop       (more may have come while we ran destructors; if they
//!                                     opened a batch themselves, the next cycle closes it)
//!     a box not linked yet -> yield, loop (up to 8 times: its pusher is a few instructions
//!                                     from linking it, unless it was preempted there)
//!     sleep: lazy mode             -> at most the period
//!            objects still waiting -> at most the poll interval (1 ms, doubling up to 16 ms
//!                                     while nothing moves)
//!            nothing waiting       -> after 4 quiet polls (up to 32 ms apart), until rung
//!                                     (at most the regrowth window while jobs are kept)
//! }
//! ```
//!
//! Batches producers are still filling are closed only by the first cycle after a sleep (so a
//! busy producer closes its own, full, and helps then), or after a cycle whose destructors
//! opened one themselves (under `Policy::AlwaysDefer`, a structure torn down a level per
//! cycle): that batch has no other producer to close it.
//!
//! With nothing queued it sleeps in the kernel; with objects waiting for readers it polls, so a
//! reader that never leaves costs it one wake-up every 16 ms and delays nothing but those objects.
//!
//! Stopping: the shutdown waits for the thread while it keeps finishing destructors, and gives
//! up after a timeout without one (a destructor that never returns). A drainer thread never
//! waits for another drainer thread (nor for itself): a destructor that drops the last handle of
//! a runtime, on a drainer, leaves that runtime's drainer to finish on its own, so two runtimes
//! whose objects own each other's last handles cannot wait for each other.

use super::doorbell::{Doorbell, Sleep, Wake};
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
    /// Whether objects are still waiting (for a grace period, in a batch not yet closed, or an
    /// owned box its pusher has not linked yet).
    pub waiting: bool,
    /// Whether an owned box its pusher has not linked yet is waiting (its pusher is a few
    /// instructions from the link, unless it was preempted there).
    pub stalled: bool,
}

/// What the drainer thread drains: the runtime, seen from below.
pub(crate) trait Drain: Send + Sync + 'static {
    /// One drain cycle; `close_open`: also close the batches producers are still filling.
    fn cycle(&self, close_open: bool) -> Cycle;
    /// The doorbell producers ring.
    fn doorbell(&self) -> &Doorbell;
    /// Whether the runtime is shutting down.
    fn stopping(&self) -> bool;
    /// Whether batched objects (or owned boxes not yet linked) are waiting (checked after the
    /// drainer announced it sleeps).
    fn work_waiting(&self) -> bool;
    /// Whether the destructors this thread ran since the last call opened a batch (a structure
    /// torn down under `Policy::AlwaysDefer` retires each level from the level above's
    /// destructor): the next cycle then closes open batches. Resets the answer.
    fn opened_a_batch(&self) -> bool;
    /// The longest the drainer may sleep before a cycle should trim again, while the pool keeps
    /// spare jobs it may free once enough time has passed; `None` when it keeps none.
    fn kept_for(&self) -> Option<Duration>;
    /// Before the thread exits on a stop: finish what only this runtime's own cycles can finish
    /// and nobody else will: what its last cycle's destructors handed over (cycles until one
    /// runs nothing), then boxes still being linked (a bounded wait).
    fn settle(&self);
    /// The runtime's number (never 0): which runtime's drainer thread a thread is.
    fn id(&self) -> u64;
}

/// The first poll interval while objects wait for readers; it doubles up to `MAX_POLL`.
const POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_millis(32);
/// Polls in a row that find nothing waiting before the drainer sleeps until rung.
const QUIET_POLLS: u32 = 4;
/// Cycles in a row that find an owned box not yet linked and yield to its pusher before the
/// drainer falls back to polling for it.
const STALLED_RETRIES: u32 = 8;

/// The handle of a running drainer thread.
pub(crate) struct DrainerThread {
    #[cfg(not(loom))]
    handle: std::thread::JoinHandle<()>,
    /// Set (and notified) when the thread's loop has returned, so that a shutdown can wait for
    /// it with a timeout rather than join blindly.
    #[cfg(not(loom))]
    exited: std::sync::Arc<Exited>,
    #[cfg(loom)]
    handle: loom::thread::JoinHandle<()>,
}

/// The drainer thread's "I have finished" flag.
#[cfg(not(loom))]
struct Exited {
    done: std::sync::Mutex<bool>,
    cond: std::sync::Condvar,
    /// Whether the thread still holds its reference to the runtime state: cleared just before
    /// it drops it. What a forked child reads to know whether the parent's thread's reference
    /// was counted when `fork` copied the process.
    holds_state: crate::sync::AtomicBool,
}

/// Sets `Exited` when dropped: at the end of the thread's loop, and also if it unwinds.
#[cfg(not(loom))]
struct SignalExit(std::sync::Arc<Exited>);

#[cfg(not(loom))]
impl Drop for SignalExit {
    fn drop(&mut self) {
        *self
            .0
            .done
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        self.0.cond.notify_all();
    }
}

// Whose drainer thread this thread is: the runtime's number (`Drain::id`, never 0), or 0 for
// none. A drainer never blocks joining another (two runtimes whose objects own each other's
// last handles would wait for each other), and only a runtime's own drainer thread counts as
// its progress (`drains_for`). `const`-initialised, no destructor; never touched by a signal
// handler.
#[cfg(not(loom))]
std::thread_local! {
    static ON_DRAINER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[cfg(loom)]
loom::thread_local! {
    static ON_DRAINER: std::cell::Cell<u64> = std::cell::Cell::new(0);
}

/// Whether the calling thread is a drainer thread of some runtime.
#[inline]
pub(crate) fn on_a_drainer() -> bool {
    ON_DRAINER.with(|d| d.get()) != 0
}

/// Whether the calling thread is the drainer thread of the runtime numbered `id`.
#[inline]
pub(crate) fn drains_for(id: u64) -> bool {
    ON_DRAINER.with(|d| d.get()) == id
}

/// Makes the calling model thread count as a drainer thread (of some runtime), as `spawn` does
/// for the drainer's own thread, without that thread's sleep loop (loom only): a model can then
/// run a drain cycle "on a drainer" on a thread it controls.
#[cfg(loom)]
pub fn set_model_on_drainer(on: bool) {
    // A number no runtime has: a drainer of "some" runtime.
    ON_DRAINER.with(|d| d.set(if on { u64::MAX } else { 0 }));
}

/// Starts the drainer thread.
#[cfg(not(loom))]
pub(crate) fn spawn<D: Drain>(work: Arc<D>, wake: Wake) -> std::io::Result<DrainerThread> {
    let exited = std::sync::Arc::new(Exited {
        done: std::sync::Mutex::new(false),
        cond: std::sync::Condvar::new(),
        holds_state: crate::sync::AtomicBool::new(true),
    });
    let signal = SignalExit(std::sync::Arc::clone(&exited));
    let handle = std::thread::Builder::new()
        .name("sigdrop-drainer".into())
        .spawn(move || {
            let signal = signal;
            ON_DRAINER.with(|d| d.set(work.id()));
            run(&*work, wake);
            // Cleared before the reference goes, never after: a child forked in between then
            // leaks the reference rather than releases it twice. Relaxed: read only in a forked
            // child, whose copy of memory is taken at one instant on this thread's timeline.
            signal
                .0
                .holds_state
                .store(false, crate::sync::Ordering::Relaxed);
            // `work` (maybe the last reference to the runtime state) goes before `signal`: a
            // shutdown that saw the exit finds the state's final drain done.
            drop(work);
        })?;
    Ok(DrainerThread { handle, exited })
}

/// Starts the drainer as a model thread.
#[cfg(loom)]
pub(crate) fn spawn<D: Drain>(work: Arc<D>, wake: Wake) -> std::io::Result<DrainerThread> {
    Ok(DrainerThread {
        handle: loom::thread::spawn(move || {
            ON_DRAINER.with(|d| d.set(work.id()));
            run(&*work, wake)
        }),
    })
}

/// How a shutdown's wait for the drainer thread ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Joined {
    /// The thread finished and was joined.
    Finished,
    /// Not waited for: the caller is a drainer thread itself (this runtime's, running the
    /// destructor that dropped the last handle, or another runtime's). The thread finishes on
    /// its own after its current destructor.
    NotWaited,
    /// Still running a destructor when the timeout passed; it finishes on its own. (Loom
    /// builds wait without a timeout.)
    #[cfg_attr(loom, allow(dead_code))]
    TimedOut,
    /// The thread does not exist in this process (a child after `fork`).
    Gone,
}

impl DrainerThread {
    /// Waits for the thread, which has been told to stop, to finish — for as long as it keeps
    /// finishing destructors (`progress` counts them), giving up after `timeout` without one
    /// (`None`: never gives up) — unless the caller is a drainer thread: a drainer never blocks
    /// on another (nor on itself). A thread not waited for finishes on its own after the
    /// destructor it is running, detached: like any detached thread's work, that is cut short if
    /// the process exits first. The drainer never waits for readers, so the wait takes at most
    /// the destructors it is running.
    pub(crate) fn stop(self, timeout: Option<Duration>, progress: impl Fn() -> u64) -> Joined {
        if on_a_drainer() {
            return Joined::NotWaited;
        }
        #[cfg(not(loom))]
        {
            // Wait in slices; give up only after `timeout` during which no destructor finished
            // (a drainer busy with many slow destructors is waited for; a stuck one is not).
            const SLICE: Duration = Duration::from_millis(10);
            let mut done = self
                .exited
                .done
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut last = progress();
            let mut still = Duration::ZERO;
            while !*done {
                if timeout.is_some_and(|t| still >= t) {
                    return Joined::TimedOut; // dropping the handle detaches the thread
                }
                done = self
                    .exited
                    .cond
                    .wait_timeout(done, SLICE)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
                let now = progress();
                if now == last {
                    still += SLICE;
                } else {
                    (last, still) = (now, Duration::ZERO);
                }
            }
            drop(done);
            // It has left its loop: the join returns at once. A panic on the drainer outside
            // destructors would be a bug in sigdrop (destructor panics are caught and counted):
            // do not propagate it into a `Drop`.
            let _ = self.handle.join();
            Joined::Finished
        }
        #[cfg(loom)]
        {
            let _ = (timeout, progress);
            let _ = self.handle.join();
            Joined::Finished
        }
    }

    /// In a child after `fork`: whether the parent's thread still held its reference to the
    /// runtime state when `fork` ran (then that reference is counted, and nobody here will
    /// release it).
    #[cfg(not(loom))]
    pub(crate) fn held_state_at_fork(&self) -> bool {
        // Relaxed: see `spawn`.
        self.exited.holds_state.load(crate::sync::Ordering::Relaxed)
    }

    /// Gives up the handle of a thread that does not exist in this process (a child after
    /// `fork`): joining or detaching it would act on the parent's thread record.
    pub(crate) fn forget(self) {
        std::mem::forget(self);
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
    // Cycles in a row that found an owned box not yet linked and yielded instead of sleeping.
    let mut stalled_retries = 0;
    loop {
        let cycle = work.cycle(slept);
        if work.stopping() {
            work.settle();
            return;
        }
        if cycle.ran > 0 {
            interval = POLL;
            quiet = Some(0);
            // Its own batch, which no producer will close: a list of `n` nodes torn down under
            // `AlwaysDefer` (each node's destructor retires the next) took a poll interval per
            // node, a second per thousand, when this waited for a sleep to close it.
            slept = work.opened_a_batch();
            stalled_retries = 0;
            continue;
        }
        if cycle.stalled && stalled_retries < STALLED_RETRIES {
            // The box's pusher is a few instructions from linking it (preempted there, perhaps by
            // us): let it run rather than poll a millisecond later.
            stalled_retries += 1;
            crate::sync::yield_now();
            continue;
        }
        stalled_retries = 0;
        // Read once: the sleep is chosen from it, and called off if it changes from none.
        let kept_for = work.kept_for();
        let how = match wake {
            // Lazy: the period, or a window if shorter while the pool keeps jobs.
            Wake::Lazy { period, .. } => {
                Sleep::Poll(kept_for.map_or(period, |window| window.min(period)))
            }
            // Objects wait (for readers, or in a batch being filled): poll, less often the
            // longer nothing moves.
            Wake::Immediate if cycle.waiting => {
                quiet = Some(0);
                let t = interval;
                interval = (interval * 2).min(MAX_POLL / 2);
                Sleep::Poll(t)
            }
            // Work stopped lately: a few more polls before sleeping for good, so that a producer
            // that keeps batching (and destroys its own batches) never needs a wake-up syscall.
            Wake::Immediate => match quiet {
                Some(q) if q < QUIET_POLLS => {
                    quiet = Some(q + 1);
                    let t = interval;
                    interval = (interval * 2).min(MAX_POLL);
                    Sleep::Poll(t)
                }
                _ => {
                    quiet = None;
                    interval = POLL;
                    // Until rung or nudged; but no longer than the pool keeps spare jobs for a
                    // burst that may come back, so that they are freed if it does not.
                    Sleep::Idle(kept_for)
                }
            },
        };
        // Whether to call the sleep off, asked after it is announced (the doorbell's protocol).
        // Any sleep is called off if the pool started keeping jobs since `kept_for` was read
        // (the loop then sleeps at most a window): the grower's wake-up may have found this
        // thread not yet asleep. An idle sleep is also called off by work already waiting. A
        // poll does not look at the batches: it comes back by itself, and batched work that
        // waits but cannot move yet (a batch a preempted producer still holds, readers inside)
        // must not turn it into a busy loop. (An idle sleep is only chosen after a cycle that
        // found no such work.)
        let kept_since_looked = || kept_for.is_none() && work.kept_for().is_some();
        work.doorbell().sleep(how, || match how {
            Sleep::Poll(_) => kept_since_looked(),
            Sleep::Idle(_) => work.stopping() || work.work_waiting() || kept_since_looked(),
        });
        slept = true;
    }
}
