//! Helpers shared by the integration tests: signal-handler installation, a bounded signal storm,
//! and bounded waits that fail loudly instead of hanging.
//!
//! Each integration test file is its own process, but its tests run on parallel threads, and a
//! signal handler is process-global: a file that installs a handler keeps to one signal test.
//!
//! Handlers written with these helpers follow the rules of restricted context: the handler body
//! enters `sigdrop::restricted::enter()` first thing, touches only atomics (statics, or data
//! reached through a `OnceLock` set before the handler was installed), and never allocates,
//! locks or prints.

// Each test file compiles its own copy of this module and uses only some of it.
#![allow(dead_code)]

pub mod counted;
pub mod lists;

use nix::sys::pthread::{Pthread, pthread_kill, pthread_self};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The signal that plays NMI in these tests.
pub const NMI: Signal = Signal::SIGUSR1;

/// Installs `handler` for `signal`: no `SA_NODEFER` (like an NMI, the handler does not nest in
/// itself), no other signal blocked while it runs, and `SA_RESTART` so that the interrupted
/// thread's system calls carry on. Returns the previous action.
pub fn install_handler(signal: Signal, handler: extern "C" fn(libc::c_int)) -> SigAction {
    let action = SigAction::new(
        SigHandler::Handler(handler),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: every handler in these tests is async-signal-safe (it enters restricted context,
    // uses only atomics and sigdrop's restricted-context operations, never allocates, locks or
    // prints), and any data it reaches is published before this call.
    unsafe { sigaction(signal, &action) }.expect("sigaction failed")
}

/// Restores a previous action returned by [`install_handler`].
pub fn restore_handler(signal: Signal, previous: &SigAction) {
    // SAFETY: reinstating the action that was in place before; no handler data is released.
    unsafe { sigaction(signal, previous) }.expect("sigaction (restore) failed");
}

/// The calling thread's pthread handle, to be targeted by a [`storm`].
pub fn this_thread() -> Pthread {
    pthread_self()
}

/// What a storm did.
#[derive(Clone, Copy, Debug, Default)]
pub struct StormReport {
    /// Successful `pthread_kill` calls (a standard signal already pending on its target
    /// coalesces, so deliveries may be fewer).
    pub sent: u64,
    /// Why the storm ended.
    pub ended_by: StormEnd,
}

/// Why a storm ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StormEnd {
    /// `done()` returned true.
    #[default]
    Done,
    /// The signal budget ran out.
    Count,
    /// The time budget ran out.
    Time,
}

/// Sends `signal` to `targets` round-robin with `pthread_kill`, yielding after each round so the
/// targets get to run, until `done()` returns true, `max_signals` have been sent, or `max_time`
/// has passed — whichever comes first. Runs on the calling thread (spawn one for it).
///
/// The caller must keep every target thread alive until this returns (signalling a thread that
/// has exited is undefined behaviour): have the targets run until a flag that is set only after
/// the storm has ended.
pub fn storm(
    targets: &[Pthread],
    signal: Signal,
    max_signals: u64,
    max_time: Duration,
    mut done: impl FnMut() -> bool,
) -> StormReport {
    assert!(!targets.is_empty(), "a storm needs targets");
    let deadline = Instant::now() + max_time;
    let mut report = StormReport::default();
    loop {
        if done() {
            report.ended_by = StormEnd::Done;
            return report;
        }
        if report.sent >= max_signals {
            report.ended_by = StormEnd::Count;
            return report;
        }
        if Instant::now() >= deadline {
            report.ended_by = StormEnd::Time;
            return report;
        }
        for &t in targets {
            pthread_kill(t, signal).expect("pthread_kill failed");
            report.sent += 1;
        }
        std::thread::yield_now();
    }
}

/// Runs `workers` threads, each calling `work(index)`, and a [`storm`] of `signal` against them
/// from the calling thread. When the storm ends it sets `stop` (which `work` must poll, returning
/// once it is set): only then may the targets exit. Returns the storm's report.
pub fn storm_workers(
    workers: usize,
    signal: Signal,
    max_signals: u64,
    max_time: Duration,
    stop: &StopFlag,
    done: impl FnMut() -> bool,
    work: impl Fn(usize) + Sync,
) -> StormReport {
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        for w in 0..workers {
            let (tx, work) = (tx.clone(), &work);
            s.spawn(move || {
                tx.send(this_thread()).unwrap();
                work(w);
            });
        }
        drop(tx);
        let targets: Vec<_> = rx.iter().take(workers).collect();
        assert_eq!(targets.len(), workers);
        let report = storm(&targets, signal, max_signals, max_time, done);
        stop.set();
        report
    })
}

/// Polls `cond` (sleeping 1 ms between polls) until it holds; panics with `what` and the output
/// of `describe` if it does not within `timeout`.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut describe: impl FnMut() -> String,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}; state: {}",
                describe()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A flag for "stop now", shared by a test's threads.
pub struct StopFlag(AtomicBool);

impl StopFlag {
    /// A flag that is not set.
    pub const fn new() -> Self {
        StopFlag(AtomicBool::new(false))
    }

    /// Sets the flag (Release: what the setter did before is visible to a thread that sees it).
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A small xorshift generator for picking slots without allocating or locking (usable in a
/// handler with a state word kept in an atomic, or on a worker's stack).
pub fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}
