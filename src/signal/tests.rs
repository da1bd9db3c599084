//! The signal helpers, end to end: delivery into the restricted guard, install stacking (and
//! uninstalls in any order), what a handler is told, bad settings and uncatchable signals, and
//! `errno` put back around a handler.

use super::*;
use crate::error::Error;
use crate::restricted;
use crate::sync::{AtomicU64, Ordering};
use std::time::Duration;

static HITS: AtomicU64 = AtomicU64::new(0);
static HITS_RESTRICTED: AtomicU64 = AtomicU64::new(0);

fn count(_: &SignalInfo) {
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
fn first(_: &SignalInfo) {
    FIRST.fetch_add(1, Ordering::Relaxed);
}
fn second(_: &SignalInfo) {
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

static OLDER: AtomicU64 = AtomicU64::new(0);
static NEWER: AtomicU64 = AtomicU64::new(0);
fn older(_: &SignalInfo) {
    OLDER.fetch_add(1, Ordering::Relaxed);
}
fn newer(_: &SignalInfo) {
    NEWER.fetch_add(1, Ordering::Relaxed);
}

/// The handler the kernel has for `signo` now.
fn disposition(signo: libc::c_int) -> libc::sighandler_t {
    // SAFETY: plain data, filled in by `sigaction`.
    let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers; no new action.
    let rc = unsafe { libc::sigaction(signo, std::ptr::null(), &mut now) };
    assert_eq!(rc, 0);
    now.sa_sigaction
}

#[test]
fn uninstalling_the_first_install_first_leaves_the_second_in_place() {
    // SIGCONT: nothing else in the tests sends it, and continuing a running process is all its
    // default action does, if a mistake restored it early.
    let signal = Signal::new(libc::SIGCONT).unwrap();
    let raise = || {
        // SAFETY: raising a signal whose default action is harmless here.
        unsafe { libc::raise(libc::SIGCONT) };
    };
    let counts = || (OLDER.load(Ordering::Relaxed), NEWER.load(Ordering::Relaxed));
    let before = disposition(libc::SIGCONT);
    // SAFETY: both handlers only touch atomics.
    let one = unsafe { install(signal, older) }.unwrap();
    // SAFETY: as above.
    let two = unsafe { install(signal, newer) }.unwrap();
    // SAFETY: as above.
    let three = unsafe { install(signal, older) }.unwrap();
    // The oldest and the newest go first: the middle one stays in place.
    one.uninstall().unwrap();
    three.uninstall().unwrap();
    raise();
    assert_eq!(counts(), (0, 1), "the middle install handles the signal");
    // The last one goes back past all three.
    two.uninstall().unwrap();
    assert_eq!(disposition(libc::SIGCONT), before);
    raise();
    assert_eq!(
        counts(),
        (0, 1),
        "no handler of ours runs once all are uninstalled"
    );
}

#[test]
fn signals_that_cannot_be_caught_are_refused() {
    for signo in [libc::SIGKILL, libc::SIGSTOP, libc::SIGRTMIN() - 1] {
        let signal = Signal::new(signo).unwrap();
        // SAFETY: `count` only touches atomics (and the install is refused anyway).
        let refused = unsafe { install(signal, count) };
        assert!(
            matches!(
                refused,
                Err(Error::InvalidConfig {
                    field: "signal",
                    ..
                })
            ),
            "signal {signo}: {refused:?}"
        );
    }
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

/// What the handler saw: (code, sender pid, interrupted pc, fault address was none).
static SEEN: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

fn record(info: &SignalInfo) {
    SEEN[0].store(info.code() as u64, Ordering::Relaxed);
    SEEN[1].store(info.sender_pid().unwrap_or(0) as u64, Ordering::Relaxed);
    SEEN[2].store(info.interrupted_pc().unwrap_or(0) as u64, Ordering::Relaxed);
    SEEN[3].store(info.fault_address().is_none() as u64, Ordering::Relaxed);
}

#[test]
fn the_handler_is_told_who_sent_the_signal_and_where_it_landed() {
    // SAFETY: `record` only touches atomics.
    let installed = unsafe { install(Signal::SIGVTALRM, record) }.unwrap();
    // SAFETY: raising a signal whose handler is installed.
    unsafe { libc::raise(libc::SIGVTALRM) };
    installed.uninstall().unwrap();
    let seen: Vec<u64> = SEEN.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    assert_eq!(seen[0] as i32, libc::SI_TKILL, "raise sends with tgkill");
    // SAFETY: `getpid` has no preconditions.
    assert_eq!(seen[1], unsafe { libc::getpid() } as u64);
    if cfg!(target_arch = "x86_64") {
        assert_ne!(seen[2], 0, "the interrupted program counter");
    }
    assert_eq!(
        seen[3], 1,
        "a signal sent by a process has no fault address"
    );
}

#[test]
fn signal_numbers_are_checked() {
    assert_eq!(Signal::new(libc::SIGPROF).unwrap(), Signal::SIGPROF);
    assert!(Signal::new(0).is_err());
    assert!(Signal::new(65).is_err());
    let rt = Signal::realtime(1).unwrap();
    assert_eq!(rt.as_raw(), libc::SIGRTMIN() + 1);
    assert!(Signal::realtime(1000).is_err());
    assert_eq!(Signal::SIGPROF.to_string(), "SIGPROF");
    assert_eq!(Signal::SIGHUP.to_string(), "SIGHUP");
    assert_eq!(Signal::SIGHUP.as_raw(), libc::SIGHUP);
    assert_eq!(Signal::new(libc::SIGTERM).unwrap(), Signal::SIGTERM);
}

fn clobber_errno(_: &SignalInfo) {
    // SAFETY: closing an invalid descriptor only fails, with EBADF.
    unsafe { libc::close(-1) };
}

#[test]
fn the_trampoline_puts_errno_back() {
    // No other test here uses this signal.
    let signal = Signal::realtime(3).unwrap();
    // SAFETY: `clobber_errno` makes one failing syscall.
    let installed = unsafe { install(signal, clobber_errno) }.unwrap();
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() = libc::EAGAIN };
    // SAFETY: raising a signal whose handler is installed (delivered to this thread).
    unsafe { libc::raise(signal.as_raw()) };
    // SAFETY: as above.
    let after = unsafe { *libc::__errno_location() };
    installed.uninstall().unwrap();
    assert_eq!(after, libc::EAGAIN, "the handler's EBADF leaked out");
}
