//! Group `signal`: cost per real signal (tgkill to the own thread) with an empty handler and with
//! 8 offloads in it (drainer thread; and pending already set, to isolate the wake). The handler is
//! installed with `sigaction` directly (the expert path), so the figure has no trampoline in it.

use crate::extras;
use crate::fixtures::{manual_runtime, set_pending, slots};
use crate::harness::{Group, pinned_chunks};
use criterion::{Criterion, SamplingMode};
use serde_json::json;
use sigdrop::{RefSlot, Runtime, restricted};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

static SIG_SLOTS: AtomicPtr<RefSlot<Box<u64>>> = AtomicPtr::new(std::ptr::null_mut());
static SIG_LEN: AtomicUsize = AtomicUsize::new(0);
static SIG_NEXT: AtomicUsize = AtomicUsize::new(0);
static SIG_PER: AtomicUsize = AtomicUsize::new(0);

/// Signals per timed chunk.
const SIG_CHUNK: usize = 64;
/// Offloads per signal in the loaded variants.
const SIG_OFFLOADS: usize = 8;

extern "C" fn on_sigusr1(_: libc::c_int) {
    let _nmi = restricted::enter();
    let per = SIG_PER.load(Ordering::Relaxed);
    if per == 0 {
        return;
    }
    // Only this thread signals itself, and the handler does not nest (SIGUSR1 is blocked while it
    // runs): a plain load and store of the cursor suffice.
    let base = SIG_NEXT.load(Ordering::Relaxed);
    SIG_NEXT.store(base + per, Ordering::Relaxed);
    let slots = SIG_SLOTS.load(Ordering::Acquire);
    let len = SIG_LEN.load(Ordering::Relaxed);
    if slots.is_null() {
        return;
    }
    for i in base..(base + per).min(len) {
        // SAFETY: `SIG_SLOTS` points to `SIG_LEN` live slots while it is non-null (the bench
        // clears it before dropping them).
        unsafe { (*slots.add(i)).clear() };
    }
}

fn install_handler() {
    // SAFETY: `sigaction` is plain data; all-zero is a valid starting point.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_sigusr1 as *const () as libc::sighandler_t;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: `sa.sa_mask` is a valid sigset to initialise.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    // SAFETY: installs a handler that only uses sigdrop's restricted-context paths and atomics.
    let rc = unsafe { libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "sigaction failed");
}

/// Sends SIGUSR1 to the calling thread: one `tgkill`; the handler runs before it returns.
#[inline]
fn signal_self(pid: libc::pid_t, tid: libc::pid_t) {
    // SAFETY: tgkill to our own thread with a signal whose handler is installed.
    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR1) };
}

fn signal_bench(g: &mut Group<'_>, name: &str, rt: &Runtime, per: usize, manual: bool) {
    let len = SIG_CHUNK * per.max(1);
    let slots: Vec<RefSlot<Box<u64>>> = slots(rt, len);
    let sentinel = RefSlot::new(rt);
    SIG_LEN.store(len, Ordering::Relaxed);
    SIG_SLOTS.store(slots.as_ptr().cast_mut(), Ordering::Release);
    SIG_PER.store(per, Ordering::Relaxed);
    // SAFETY: no preconditions.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    let setup = |_: &mut (), _| {
        if manual {
            rt.drain().unwrap();
            set_pending(&sentinel);
        }
        for (i, s) in slots
            .iter()
            .enumerate()
            .take(if per == 0 { 0 } else { len })
        {
            if s.is_empty() {
                let _ = s.xchg(Some(Box::new(i as u64))).unwrap();
            }
        }
        SIG_NEXT.store(0, Ordering::Relaxed);
    };
    let timed = |_: &mut (), n| {
        for _ in 0..n {
            signal_self(pid, tid);
        }
    };
    pinned_chunks(g, name, SIG_CHUNK, &mut (), setup, timed);
    SIG_PER.store(0, Ordering::Relaxed);
    SIG_SLOTS.store(std::ptr::null_mut(), Ordering::Release);
    SIG_LEN.store(0, Ordering::Relaxed);
}

pub fn group(c: &mut Criterion) {
    install_handler();
    let mut g = c.benchmark_group("signal");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(30);
    let threaded = Runtime::new().expect("runtime with a drainer thread");
    let manual = manual_runtime(SIG_CHUNK * SIG_OFFLOADS + 1);
    signal_bench(&mut g, "no offload", &threaded, 0, false);
    let before = threaded.stats();
    let name = "8 offloads (drainer thread)";
    signal_bench(&mut g, name, &threaded, SIG_OFFLOADS, false);
    let after = threaded.stats();
    let name = "8 offloads (pending set)";
    signal_bench(&mut g, name, &manual, SIG_OFFLOADS, true);
    manual.drain().unwrap();
    g.finish();
    extras::write(
        "signal.json",
        &json!({
            "offloaded": after.offloaded - before.offloaded,
            // The handlers' wake-ups.
            "wakes": after.restricted_wakes - before.restricted_wakes,
        }),
    );
}
