//! P5 bounded memory: after a drain the job pool is back within `refs + active + headroom +
//! hysteresis + kept`, on every teardown path, and the gauges agree with the freelists. (`kept`
//! is what the default regrowth window keeps of what bursts grew back, never more than trims
//! freed; `tests/regrowth_window.rs` checks it, and that a zero window keeps nothing.)
//!
//! `main_workload`: 100_000 install/teardown cycles over 8 slots on a manual-drainer runtime with
//! the default headroom (64) and hysteresis (32), mixing ordinary teardown, restricted teardown
//! (a guard entered on this thread; no signal needed), ordinary replace and restricted replace,
//! with `drain()` every 1_000 cycles. At each drain (a quiescent point) it checks the bound, that
//! `audit_idle()` (a walk of the freelists) equals `total - active`, and the ledger identity; it
//! also bounds the peak between drains, and checks that trim actually ran once the pool had
//! grown past the bound.
//!
//! `ordinary_teardowns_alone_shrink_the_pool`: the kernel v2 design only trimmed after NMI
//! teardowns (D4); here a pool grown by 1_000 ordinary installs shrinks back through ordinary
//! teardowns alone, with no drain at all.
//!
//! The margin, from the runtime's watermarks: trim runs when more than `headroom + hysteresis`
//! jobs are spare and frees down to `headroom`; growth never aims above `headroom` spare. So at a
//! quiescent point spare <= headroom + hysteresis + kept, and `total = idle + active = spare +
//! reserved + refs + active` (reserved is 0 here). An explicit trim at the end brings the pool
//! down to the headroom whatever is kept.

use sigdrop::{Drainer, RefSlot, Runtime, Stats, restricted};
use std::sync::atomic::{AtomicU64, Ordering};

const HEADROOM: usize = 64; // the default
const HYSTERESIS: usize = 32; // the default: headroom / 2
const SLOTS: usize = 8;
const CYCLES: usize = 100_000;
const DRAIN_EVERY: usize = 1_000;

static CREATED: AtomicU64 = AtomicU64::new(0);
static DESTROYED: AtomicU64 = AtomicU64::new(0);
static DTOR_IN_RESTRICTED: AtomicU64 = AtomicU64::new(0);

struct Obj([u64; 4]);

impl Obj {
    fn boxed() -> Box<Obj> {
        CREATED.fetch_add(1, Ordering::Relaxed);
        Box::new(Obj([0; 4]))
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        std::hint::black_box(&self.0);
        if restricted::is_active() {
            DTOR_IN_RESTRICTED.fetch_add(1, Ordering::Relaxed);
        }
        DESTROYED.fetch_add(1, Ordering::Relaxed);
    }
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// Checks a quiescent point (no operation in flight, everything drained): returns the stats.
fn check_quiescent(rt: &Runtime, slots: &[RefSlot<Box<Obj>>], when: &str) -> Stats {
    let s = rt.stats();
    let occupied = slots.iter().filter(|s| !s.is_empty()).count();
    assert_eq!(s.active, 0, "{when}: {s:?}");
    assert_eq!(
        s.refs, occupied,
        "{when}: one claim per occupied slot: {s:?}"
    );
    assert_eq!(
        rt.audit_idle(),
        s.total - s.active,
        "{when}: the freelists hold every idle job: {s:?}"
    );
    assert_eq!(s.idle, s.spare + s.reserved + s.refs, "{when}: {s:?}");
    assert!(
        s.total <= s.refs + s.active + HEADROOM + HYSTERESIS + s.kept,
        "{when}: pool above refs + active + headroom + hysteresis + kept: {s:?}"
    );
    assert_eq!((s.emergency, s.leaked), (0, 0), "{when}: {s:?}");
    s
}

#[test]
fn main_workload() {
    let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
    let slots: Vec<RefSlot<Box<Obj>>> = (0..SLOTS).map(|_| RefSlot::new(&rt)).collect();
    let mut rng = 0x2545_F491_4F6C_DD1D_u64;
    // Objects deferred since the last drain, and the most in any window.
    let mut deferred = 0usize;
    let mut max_window = 0usize;
    let mut kinds = [0u64; 4];
    let mut refused = 0u64;

    for cycle in 1..=CYCLES {
        let r = xorshift(&mut rng);
        let slot = &slots[(r % SLOTS as u64) as usize];
        if slot.is_empty() {
            // Ordinary install into an empty slot (grows the pool if no job is spare).
            let prev = slot.xchg(Some(Obj::boxed())).expect("ordinary install");
            assert!(prev.is_none());
        }
        let kind = ((r >> 32) % 4) as usize;
        kinds[kind] += 1;
        match kind {
            // Ordinary teardown: destroyed inline, claim released (may trim).
            0 => slot.clear(),
            // Restricted teardown: deferred with the job its claim owns.
            1 => {
                let _nmi = restricted::enter();
                if let Some(d) = slot.take() {
                    drop(d);
                    deferred += 1;
                }
            }
            // Ordinary replace: the claim moves to the new object, the old one dies inline.
            2 => drop(slot.xchg(Some(Obj::boxed())).expect("ordinary replace")),
            // Restricted replace: a claim is taken for the old object, which is deferred.
            _ => {
                let back = {
                    let _nmi = restricted::enter();
                    match slot.xchg(Some(Obj::boxed())) {
                        Ok(old) => {
                            if let Some(old) = old {
                                drop(old);
                                deferred += 1;
                            }
                            None
                        }
                        // No spare job: keep the value and destroy it outside the guard.
                        Err(rejected) => Some(rejected.into_inner()),
                    }
                };
                if back.is_some() {
                    refused += 1;
                }
                drop(back);
            }
        }
        if cycle.is_multiple_of(DRAIN_EVERY) {
            max_window = max_window.max(deferred);
            let ran = rt.drain().unwrap();
            assert_eq!(ran, deferred, "drain runs exactly what was deferred");
            deferred = 0;
            check_quiescent(&rt, &slots, &format!("after cycle {cycle}"));
        }
    }

    for slot in &slots {
        slot.clear();
    }
    rt.drain().unwrap();
    let s = check_quiescent(&rt, &slots, "at the end");
    eprintln!("kinds {kinds:?}, refused {refused}, max window {max_window}, {s:?}");

    assert_eq!(s.refs, 0);
    assert!(s.total <= HEADROOM + HYSTERESIS + s.kept, "{s:?}");
    assert_eq!(s.drained, s.offloaded);
    // Every object destroyed exactly once in total, never in restricted context.
    assert_eq!(
        DESTROYED.load(Ordering::Relaxed),
        CREATED.load(Ordering::Relaxed)
    );
    assert_eq!(DTOR_IN_RESTRICTED.load(Ordering::Relaxed), 0);

    // Between drains the pool only grew for what was really needed: at most SLOTS claims, the
    // objects deferred in one window, and the spare jobs growth aims at (headroom), plus the
    // hysteresis band as slack.
    assert!(
        s.peak_total <= SLOTS + max_window + HEADROOM + HYSTERESIS,
        "peak {} with max window {max_window}: {s:?}",
        s.peak_total
    );
    // The workload pushes the pool past the quiescent bound (hundreds of deferred objects per
    // window), so trim must have brought it back.
    assert!(
        s.peak_total > SLOTS + HEADROOM + HYSTERESIS,
        "workload never grew the pool past the bound: {s:?}"
    );
    assert!(
        s.trimmed > 0,
        "pool grew past the bound but never trimmed: {s:?}"
    );
    rt.trim().unwrap();
    let s = rt.stats();
    assert_eq!((s.total, s.kept), (HEADROOM, 0), "{s:?}");
}

#[test]
fn ordinary_teardowns_alone_shrink_the_pool() {
    const MANY: usize = 1_000;
    let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
    let slots: Vec<RefSlot<Box<u64>>> = (0..MANY).map(|_| RefSlot::new(&rt)).collect();
    for (i, slot) in slots.iter().enumerate() {
        assert!(slot.xchg(Some(Box::new(i as u64))).unwrap().is_none());
    }
    let grown = rt.stats();
    assert_eq!(grown.refs, MANY, "{grown:?}");
    assert!(grown.total >= MANY, "{grown:?}");
    assert!(grown.total <= MANY + HEADROOM, "{grown:?}");

    // Ordinary teardowns only: no drain, no restricted context.
    for slot in &slots {
        slot.clear();
    }
    let s = rt.stats();
    assert_eq!((s.refs, s.active, s.offloaded), (0, 0, 0), "{s:?}");
    assert!(
        s.total <= HEADROOM + HYSTERESIS,
        "ordinary teardowns did not shrink the pool: {s:?}"
    );
    assert!(s.trimmed as usize >= MANY - HYSTERESIS, "{s:?}");
    assert_eq!(rt.audit_idle(), s.total);
}
