//! The signal helpers, end to end: delivery into the restricted guard, install stacking, what a
//! handler is told, bad settings.

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
}
