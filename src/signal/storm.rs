//! [`Storm`]: a thread that sends a signal to a set of threads with `tgkill`, as fast as it can or
//! at a fixed pace — to test handlers under load.

use super::{Signal, Tid};
use crate::error::Error;
use crate::sync::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A thread that sends a signal to a set of threads with `tgkill`, round robin, until stopped.
#[derive(Debug)]
#[must_use = "dropping the storm stops it at once"]
pub struct Storm {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Storm {
    /// Starts sending `signal` to `targets` in turn, pausing `pause` between signals (zero: as
    /// fast as `tgkill` goes, yielding between rounds). A target that has exited is dropped from
    /// the rotation. Ordinary context only: not from a signal handler.
    pub fn start(signal: Signal, targets: Vec<Tid>, pause: Duration) -> Result<Storm, Error> {
        if targets.is_empty() {
            return Err(Error::InvalidConfig {
                field: "targets",
                reason: "a storm needs at least one target thread",
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::Builder::new()
                .name("sigdrop-storm".into())
                .spawn(move || storm(signal, targets, pause, &stop, &sent))
                .map_err(|source| Error::Os {
                    call: "spawn",
                    source,
                })?
        };
        Ok(Storm {
            stop,
            sent,
            thread: Some(thread),
        })
    }

    /// Signals sent so far. May be called from a signal handler.
    ///
    /// More than the handler runs, as a rule: a standard (non-real-time) signal sent while the
    /// same signal is already pending for that thread is merged with it, and runs the handler
    /// once. Real-time signals queue instead (up to the process's limit).
    pub fn sent(&self) -> u64 {
        // Relaxed: a statistic (exact after `stop`, which joins the thread).
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the storm and returns how many signals it sent. Ordinary context only: not from a
    /// signal handler (it joins the storm thread).
    pub fn stop(mut self) -> u64 {
        self.halt();
        self.sent()
    }

    fn halt(&mut self) {
        // Release: pairs with the storm loop's Acquire load; the join below then makes its final
        // `sent` visible.
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        self.halt();
    }
}

fn storm(
    signal: Signal,
    mut targets: Vec<Tid>,
    pause: Duration,
    stop: &AtomicBool,
    sent: &AtomicU64,
) {
    // SAFETY: `getpid` has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut next = 0;
    while !stop.load(Ordering::Acquire) && !targets.is_empty() {
        next %= targets.len();
        // SAFETY: `tgkill` with our own pid and a thread id; the worst outcome is ESRCH.
        let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, targets[next], signal.as_raw()) };
        if rc == 0 {
            // Relaxed: a statistic (see `Storm::sent`).
            sent.fetch_add(1, Ordering::Relaxed);
            next += 1;
        } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            targets.remove(next); // the thread has exited
        } else {
            next += 1; // e.g. EAGAIN (a full real-time signal queue): try again next round
        }
        if pause.is_zero() {
            if next == targets.len() {
                std::thread::yield_now();
            }
        } else {
            std::thread::sleep(pause);
        }
    }
}
