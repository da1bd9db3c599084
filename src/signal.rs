//! Signal helpers: install a handler that runs in restricted context with NMI-like semantics,
//! and drive it from per-thread timers or a `tgkill` storm — for tests, demos and profilers.
//!
//! NMI-like means: the handler is installed *without* `SA_NODEFER` (the same signal does not
//! nest in itself, as an NMI does not), with an empty mask (every other signal, including the
//! crate's other signals, may land inside it), and with `SA_RESTART` so interrupted system calls
//! of ordinary code resume. The trampoline saves `errno`, enters [`restricted::enter`], calls
//! your function, and restores `errno`.
//!
//! | item                         | async-signal-safe | notes                                  |
//! |------------------------------|-------------------|----------------------------------------|
//! | [`install`], [`Installed::uninstall`] | no       | ordinary context; `sigaction`          |
//! | your [`Handler`]             | must be           | runs inside the restricted guard       |
//! | [`current_tid`]              | yes               | one `gettid` syscall                   |
//! | [`ThreadTimer`]              | no                | `timer_create`/`timer_delete`          |
//! | [`Storm`]                    | no                | owns a thread that calls `tgkill`      |

use crate::error::Error;
use crate::restricted;
use crate::sync::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A function run inside the restricted guard when its signal arrives. It must be
/// async-signal-safe: sigdrop's restricted-context operations, atomics, no allocation, no lock.
pub type Handler = fn(Signal);

/// A kernel thread id (what `gettid` returns and `tgkill` and `SIGEV_THREAD_ID` take).
pub type Tid = libc::pid_t;

/// One registered handler per signal number (null = none), stored as a pointer (not an integer)
/// so that the function pointer keeps its provenance; read by the trampoline.
static HANDLERS: [AtomicPtr<()>; 65] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 65];

// Under RealtimeSanitizer (scripts/rtsan.sh) the whole trampoline, and so every handler
// installed through it, is checked as real-time code.
#[cfg_attr(sigdrop_rtsan, sanitize(realtime = "nonblocking"))]
extern "C" fn trampoline(signo: libc::c_int) {
    // SAFETY: `__errno_location` returns this thread's errno; reading and restoring it keeps the
    // handler invisible to the code it interrupted.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved = unsafe { *errno };
    {
        let _nmi = restricted::enter();
        let index = signo as usize;
        // Acquire: pairs with the Release store in `install`.
        let raw = HANDLERS
            .get(index)
            .map_or(std::ptr::null_mut(), |h| h.load(Ordering::Acquire));
        if !raw.is_null() {
            // SAFETY: non-null entries are only ever stored from a `Handler` (`install`), and
            // function and data pointers have the same size and representation on Linux.
            let handler = unsafe { std::mem::transmute::<*mut (), Handler>(raw) };
            if let Ok(signal) = Signal::try_from(signo) {
                handler(signal);
            }
        }
    }
    // SAFETY: as above.
    unsafe { *errno = saved };
}

/// An installed handler; [`uninstall`](Installed::uninstall) puts the previous disposition back.
/// Dropping it leaves the handler installed.
#[derive(Debug)]
#[must_use = "keep it to uninstall the handler later, or drop it to leave the handler installed"]
pub struct Installed {
    signal: Signal,
    previous: SigAction,
    /// The handler this install replaced in the trampoline's table (null if none).
    previous_handler: *mut (),
}

// SAFETY: `previous_handler` is a function pointer kept only to be stored back; it is never
// dereferenced as data, so moving it to another thread is harmless.
unsafe impl Send for Installed {}

/// Installs `handler` for `signal`, to run in restricted context with NMI-like semantics (see
/// the module docs). Replaces any handler installed through this function for that signal;
/// uninstalling the newer one puts the older one back.
///
/// Ordinary context only ([`Error::Restricted`] otherwise).
///
/// # Safety
/// `handler` must be async-signal-safe, and replacing the signal's current disposition must not
/// break other code in the process (as with any `sigaction` call).
pub unsafe fn install(signal: Signal, handler: Handler) -> Result<Installed, Error> {
    if restricted::is_active() {
        return Err(Error::Restricted);
    }
    // AcqRel: Release so that a trampoline that loads this (Acquire) sees a complete function
    // pointer; Acquire to take over the previous one.
    let previous_handler =
        HANDLERS[signal as usize].swap(handler as *const () as *mut (), Ordering::AcqRel);
    let action = SigAction::new(
        SigHandler::Handler(trampoline),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the trampoline is async-signal-safe given the caller's promise about `handler`.
    match unsafe { nix::sys::signal::sigaction(signal, &action) } {
        Ok(previous) => Ok(Installed {
            signal,
            previous,
            previous_handler,
        }),
        Err(e) => {
            // Release: as above (the table goes back to what it was).
            HANDLERS[signal as usize].store(previous_handler, Ordering::Release);
            Err(Error::Os {
                call: "sigaction",
                source: e.into(),
            })
        }
    }
}

impl Installed {
    /// The signal.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Restores the disposition the signal had before [`install`] (and, if that was an earlier
    /// `install`, its handler). Ordinary context only.
    pub fn uninstall(self) -> Result<(), Error> {
        // SAFETY: restoring a disposition that was in place before.
        unsafe { nix::sys::signal::sigaction(self.signal, &self.previous) }.map_err(|e| {
            Error::Os {
                call: "sigaction",
                source: e.into(),
            }
        })?;
        // Release: as in `install`.
        HANDLERS[self.signal as usize].store(self.previous_handler, Ordering::Release);
        Ok(())
    }
}

/// The calling thread's kernel thread id. Async-signal-safe.
pub fn current_tid() -> Tid {
    // SAFETY: `gettid` has no preconditions.
    unsafe { libc::gettid() }
}

/// Which clock a [`ThreadTimer`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerClock {
    /// Wall-clock time (`CLOCK_MONOTONIC`): the signal arrives whether the thread runs or not.
    Monotonic,
    /// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): the profiler's clock. The
    /// timer must then target the calling thread itself.
    ThreadCpu,
}

/// A POSIX timer that delivers a signal to one thread (`SIGEV_THREAD_ID`) at a fixed interval;
/// deleted when dropped — always, including while unwinding (a timer left behind would keep
/// signalling a thread that may no longer expect it).
#[derive(Debug)]
pub struct ThreadTimer {
    id: libc::timer_t,
}

// SAFETY: a timer id is a process-wide handle; any thread may use or delete it.
unsafe impl Send for ThreadTimer {}

impl ThreadTimer {
    /// Starts delivering `signal` to thread `tid` every `interval`. With
    /// [`TimerClock::ThreadCpu`], `tid` must be the calling thread. Ordinary context only.
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
        event.sigev_signo = signal as libc::c_int;
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
    /// count). Ordinary context.
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

/// A thread that sends a signal to a set of threads with `tgkill`, round robin, until stopped.
#[derive(Debug)]
pub struct Storm {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Storm {
    /// Starts sending `signal` to `targets` in turn, pausing `pause` between signals (zero: as
    /// fast as `tgkill` goes, yielding between rounds). A target that has exited is dropped from
    /// the rotation. Ordinary context only.
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

    /// Signals sent so far.
    pub fn sent(&self) -> u64 {
        // Relaxed: a statistic (exact after `stop`, which joins the thread).
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the storm and returns how many signals it sent.
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
        let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, targets[next], signal as i32) };
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

#[cfg(test)]
mod tests {
    use super::*;

    static HITS: AtomicU64 = AtomicU64::new(0);
    static HITS_RESTRICTED: AtomicU64 = AtomicU64::new(0);

    fn count(_: Signal) {
        HITS.fetch_add(1, Ordering::Relaxed);
        if restricted::is_active() {
            HITS_RESTRICTED.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn timer_and_storm_deliver_into_the_restricted_guard() {
        // SAFETY: `count` only touches atomics.
        let installed = unsafe { install(Signal::SIGURG, count) }.unwrap();
        let tid = current_tid();
        let timer = ThreadTimer::start(
            Signal::SIGURG,
            tid,
            Duration::from_micros(200),
            TimerClock::Monotonic,
        )
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while HITS.load(Ordering::Relaxed) < 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "timer signals did not arrive"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(timer);
        let storm = Storm::start(Signal::SIGURG, vec![tid], Duration::ZERO).unwrap();
        let before = HITS.load(Ordering::Relaxed);
        while HITS.load(Ordering::Relaxed) < before + 100 {
            assert!(
                std::time::Instant::now() < deadline,
                "storm signals did not arrive"
            );
            std::thread::yield_now();
        }
        assert!(storm.stop() >= 100);
        installed.uninstall().unwrap();
        assert_eq!(
            HITS.load(Ordering::Relaxed),
            HITS_RESTRICTED.load(Ordering::Relaxed)
        );
        assert!(!restricted::is_active());
    }

    static FIRST: AtomicU64 = AtomicU64::new(0);
    static SECOND: AtomicU64 = AtomicU64::new(0);
    fn first(_: Signal) {
        FIRST.fetch_add(1, Ordering::Relaxed);
    }
    fn second(_: Signal) {
        SECOND.fetch_add(1, Ordering::Relaxed);
    }

    #[test]
    fn uninstalling_a_second_install_puts_the_first_back() {
        let raise = || {
            // SAFETY: raising a signal whose handler is installed.
            unsafe { libc::raise(libc::SIGWINCH) };
        };
        let counts = || {
            (
                FIRST.load(Ordering::Relaxed),
                SECOND.load(Ordering::Relaxed),
            )
        };
        // SAFETY: both handlers only touch atomics.
        let one = unsafe { install(Signal::SIGWINCH, first) }.unwrap();
        // SAFETY: as above.
        let two = unsafe { install(Signal::SIGWINCH, second) }.unwrap();
        raise();
        assert_eq!(counts(), (0, 1));
        two.uninstall().unwrap();
        raise();
        assert_eq!(counts(), (1, 1));
        one.uninstall().unwrap();
    }

    #[test]
    fn bad_timer_and_storm_settings_are_errors() {
        assert!(matches!(
            ThreadTimer::start(
                Signal::SIGURG,
                current_tid(),
                Duration::ZERO,
                TimerClock::Monotonic
            ),
            Err(Error::InvalidConfig {
                field: "interval",
                ..
            })
        ));
        assert!(matches!(
            Storm::start(Signal::SIGURG, vec![], Duration::ZERO),
            Err(Error::InvalidConfig {
                field: "targets",
                ..
            })
        ));
    }
}
