//! [`ThreadTimer`]: a POSIX timer that delivers a signal to one thread at a fixed interval.

use super::{Signal, Tid, current_tid};
use crate::error::Error;
use std::time::Duration;

/// Which clock a [`ThreadTimer`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerClock {
    /// Wall-clock time (`CLOCK_MONOTONIC`): the signal arrives whether the thread runs or not.
    Monotonic,
    /// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): the profiler's clock. The
    /// timer must then target the calling thread itself. The kernel checks CPU-time timers at
    /// its scheduler tick, so intervals shorter than a tick (1-4 ms, by the kernel's `HZ`)
    /// deliver about one signal per tick, with the rest counted in
    /// [`ThreadTimer::overruns`].
    ThreadCpu,
}

/// A POSIX timer that delivers a signal to one thread (`SIGEV_THREAD_ID`) at a fixed interval;
/// deleted when dropped — always, including while unwinding (a timer left behind would keep
/// signalling a thread that may no longer expect it).
///
/// Deleting the timer does not withdraw a signal it has already queued. Aimed at the thread
/// that drops it (and not blocked there), that signal is handled before `drop` returns; aimed at
/// another thread, it may still arrive there afterwards, whenever that thread next runs. So do
/// not uninstall the handler ([`Installed::uninstall`](crate::signal::Installed::uninstall))
/// right after dropping a timer aimed at another thread: the signal would find the restored
/// disposition, which for `SIGPROF` or `SIGALRM` terminates the process. Drop each timer on its
/// own target thread (a profiler's per-thread timers usually are), join that thread first, or
/// leave the handler installed.
#[derive(Debug)]
#[must_use = "dropping the timer deletes it at once"]
pub struct ThreadTimer {
    id: libc::timer_t,
}

// SAFETY: a timer id is a process-wide handle; any thread may use or delete it.
unsafe impl Send for ThreadTimer {}

impl ThreadTimer {
    /// Starts delivering `signal` to thread `tid` every `interval`. With
    /// [`TimerClock::ThreadCpu`], `tid` must be the calling thread. Ordinary context only: not
    /// from a signal handler.
    pub fn start(
        signal: Signal,
        tid: Tid,
        interval: Duration,
        clock: TimerClock,
    ) -> Result<ThreadTimer, Error> {
        if interval.is_zero() {
            return Err(Error::InvalidConfig {
                field: "interval",
                reason: "must be non-zero",
            });
        }
        if clock == TimerClock::ThreadCpu && tid != current_tid() {
            return Err(Error::InvalidConfig {
                field: "clock",
                reason: "a thread CPU-time timer can only target the calling thread",
            });
        }
        let clock_id = match clock {
            TimerClock::Monotonic => libc::CLOCK_MONOTONIC,
            TimerClock::ThreadCpu => libc::CLOCK_THREAD_CPUTIME_ID,
        };
        let os = |call| Error::Os {
            call,
            source: std::io::Error::last_os_error(),
        };
        // SAFETY: `sigevent` is plain data; all-zero is a valid value to fill in.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = signal.as_raw();
        event.sigev_notify_thread_id = tid;
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid pointers to a filled-in event and to the id to write.
        if unsafe { libc::timer_create(clock_id, &mut event, &mut id) } != 0 {
            return Err(os("timer_create"));
        }
        let timer = ThreadTimer { id };
        let every = libc::timespec {
            tv_sec: interval.as_secs() as libc::time_t,
            tv_nsec: interval.subsec_nanos() as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: every,
            it_value: every,
        };
        // SAFETY: `id` is the timer just created; `spec` is valid; no old value is asked for.
        if unsafe { libc::timer_settime(timer.id, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(os("timer_settime")); // `timer` is deleted by its Drop
        }
        Ok(timer)
    }

    /// Signals that were due but not delivered at the last expiration (the kernel's overrun
    /// count). May be called from a signal handler (one `timer_getoverrun` system call).
    pub fn overruns(&self) -> i32 {
        // SAFETY: `id` is a live timer owned by `self`.
        unsafe { libc::timer_getoverrun(self.id) }
    }
}

impl Drop for ThreadTimer {
    fn drop(&mut self) {
        // SAFETY: `id` is a live timer owned by `self`, deleted exactly once, here.
        unsafe { libc::timer_delete(self.id) };
    }
}
