//! Real signals tearing down slots under a storm: P2 (exactly once, never in restricted
//! context), P3 (a restricted teardown always finds its job: nothing parked, nothing leaked) and
//! P7-style accounting (everything offloaded is drained).
//!
//! Three worker threads install objects with unique ids into 64 shared `RefSlot`s (replacing and,
//! now and then, clearing in ordinary context), while a storm thread sends SIGUSR1 to the workers
//! with `pthread_kill`. The handler enters restricted context and tears slots down, so objects
//! leave slots both in ordinary context (destroyed inline) and in the handler (deferred to the
//! runtime's drainer thread), racing on the same slots.
//!
//! At the end every slot is cleared in ordinary context and, after a bounded wait, the test
//! checks: every id created was destroyed exactly once, no destructor ran in restricted context,
//! no object was parked or leaked, every offloaded object was drained, and the storm really did
//! reach the handler (a minimum number of deliveries and of handler teardowns).

mod common;

use common::{NMI, StopFlag, install_handler, storm_workers, wait_until, xorshift};
use sigdrop::{RefSlot, Runtime, restricted};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

const WORKERS: usize = 3;
const SLOTS: usize = 64;
/// New ids the workers may create per delivered signal. Installs are much cheaper than signal
/// deliveries; without this budget the workers would use up every id long before the storm got
/// going, and the handler would mostly find empty slots.
const INSTALLS_PER_SIGNAL: u64 = 32;
/// Ids that can be created (one destroy counter each, preallocated); a hard cap above what the
/// budget allows for `TARGET_DELIVERIES`.
const MAX_IDS: usize = 1 << 22;
/// Slots a handler invocation tries to tear down.
const TEARDOWNS_PER_SIGNAL: usize = 4;
/// The storm stops after this many deliveries (or its count or time budget).
const TARGET_DELIVERIES: u64 = 100_000;
/// Deliveries below this mean the storm did not exercise the handler: the test fails.
const MIN_DELIVERIES: u64 = 500;

/// A test object that records its destruction.
struct Obj {
    id: u64,
}

impl Drop for Obj {
    fn drop(&mut self) {
        if restricted::is_active() {
            DTOR_IN_RESTRICTED.fetch_add(1, Ordering::Relaxed);
        }
        let st = STATE.get().expect("objects exist only after STATE is set");
        st.destroyed[self.id as usize].fetch_add(1, Ordering::Relaxed);
        // Release: a waiter that sees the total sees the per-id count above.
        DESTROYED.fetch_add(1, Ordering::Release);
    }
}

/// Everything the handler reaches, published before the handler is installed.
struct State {
    rt: Runtime,
    slots: Vec<RefSlot<Box<Obj>>>,
    destroyed: Vec<AtomicU8>,
}

static STATE: OnceLock<State> = OnceLock::new();
static STOP: StopFlag = StopFlag::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static DESTROYED: AtomicU64 = AtomicU64::new(0);
static DTOR_IN_RESTRICTED: AtomicU64 = AtomicU64::new(0);
static DELIVERED: AtomicU64 = AtomicU64::new(0);
static HANDLER_TEARDOWNS: AtomicU64 = AtomicU64::new(0);
static INSTALL_FAILURES: AtomicU64 = AtomicU64::new(0);
static CURSOR: AtomicUsize = AtomicUsize::new(0);

/// The NMI stand-in: tears down a few slots, deferring their objects to the drainer.
extern "C" fn on_nmi(_: libc::c_int) {
    let _nmi = restricted::enter();
    DELIVERED.fetch_add(1, Ordering::Relaxed);
    let Some(st) = STATE.get() else { return };
    for k in 0..TEARDOWNS_PER_SIGNAL {
        // A stride coprime with SLOTS walks every slot.
        let i = CURSOR.fetch_add(7, Ordering::Relaxed) % SLOTS;
        // Two spellings of a teardown; dropping the `Detached` defers the object.
        let detached = if k.is_multiple_of(2) {
            st.slots[i].take()
        } else {
            st.slots[i].xchg(None).unwrap_or(None)
        };
        if let Some(d) = detached {
            drop(d);
            HANDLER_TEARDOWNS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A fresh id, or `None` if the budget for the signals delivered so far is used up (or
/// `MAX_IDS` have been handed out).
fn next_id() -> Option<u64> {
    let budget = (DELIVERED.load(Ordering::Relaxed) + 1) * INSTALLS_PER_SIGNAL;
    let cap = budget.min(MAX_IDS as u64);
    NEXT_ID
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < cap).then_some(n + 1)
        })
        .ok()
}

fn worker(seed: u64, st: &State) {
    let mut rng = seed;
    while !STOP.is_set() {
        let r = xorshift(&mut rng);
        let slot = &st.slots[(r % SLOTS as u64) as usize];
        if (r >> 32).is_multiple_of(8) {
            slot.clear(); // ordinary teardown: destroyed inline (Policy::Auto)
            continue;
        }
        let Some(id) = next_id() else {
            std::thread::yield_now();
            continue;
        };
        match slot.xchg(Some(Box::new(Obj { id }))) {
            // A replaced object is destroyed inline here, in ordinary context.
            Ok(old) => drop(old),
            Err(rejected) => {
                // Not expected in ordinary context with unlimited jobs; counted, not panicked,
                // so that the storm never signals a thread that has exited.
                INSTALL_FAILURES.fetch_add(1, Ordering::Relaxed);
                drop(rejected.into_inner());
            }
        }
    }
}

#[test]
fn signal_storm_destroys_every_object_exactly_once_outside_the_handler() {
    let rt = Runtime::new().expect("runtime with a drainer thread");
    let state = State {
        slots: (0..SLOTS).map(|_| RefSlot::new(&rt)).collect(),
        destroyed: (0..MAX_IDS).map(|_| AtomicU8::new(0)).collect(),
        rt,
    };
    assert!(STATE.set(state).is_ok(), "STATE set once");
    let st = STATE.get().unwrap();
    // Installed after STATE is published; left installed (STATE lives for the whole process,
    // and no signal is sent after the storm).
    install_handler(NMI, on_nmi);

    // The workers run until the storm is over (only then may the targets exit).
    let report = storm_workers(
        WORKERS,
        NMI,
        5_000_000,
        Duration::from_secs(4),
        &STOP,
        || DELIVERED.load(Ordering::Relaxed) >= TARGET_DELIVERIES,
        |w| worker(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1), st),
    );

    // Quiescent producers: empty every slot in ordinary context (destroyed inline).
    for slot in &st.slots {
        slot.clear();
    }
    let created = NEXT_ID.load(Ordering::Relaxed);
    wait_until(
        Duration::from_secs(10),
        "every created object to be destroyed and every offloaded one drained",
        || {
            format!(
                "created {created}, destroyed {DESTROYED:?}, {:?}",
                st.rt.stats()
            )
        },
        || {
            let s = st.rt.stats();
            DESTROYED.load(Ordering::Acquire) == created && s.drained == s.offloaded
        },
    );

    let s = st.rt.stats();
    let delivered = DELIVERED.load(Ordering::Relaxed);
    let handler_teardowns = HANDLER_TEARDOWNS.load(Ordering::Relaxed);
    eprintln!(
        "storm: {report:?}, delivered {delivered}, handler teardowns {handler_teardowns}, \
         created {created}, stats {s:?}"
    );

    // Not vacuous: the storm reached the handler and the handler offloaded objects.
    assert!(
        delivered >= MIN_DELIVERIES,
        "only {delivered} signals delivered ({report:?})"
    );
    assert!(
        handler_teardowns > 0,
        "the handler never tore anything down"
    );
    assert!(s.offloaded > 0, "nothing was offloaded: {s:?}");
    // Under Policy::Auto only restricted teardowns are offloaded.
    assert_eq!(s.offloaded, handler_teardowns, "{s:?}");
    assert_eq!(s.drained, s.offloaded, "{s:?}");

    // P2: exactly once, never in restricted context.
    assert_eq!(DTOR_IN_RESTRICTED.load(Ordering::Relaxed), 0);
    assert_eq!(DESTROYED.load(Ordering::Acquire), created);
    let wrong: Vec<(usize, u8)> = st.destroyed[..created as usize]
        .iter()
        .enumerate()
        .map(|(id, n)| (id, n.load(Ordering::Relaxed)))
        .filter(|&(_, n)| n != 1)
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "ids not destroyed exactly once (id, count): {wrong:?}"
    );
    assert!(
        st.destroyed[created as usize..]
            .iter()
            .all(|n| n.load(Ordering::Relaxed) == 0)
    );

    // P3: no restricted teardown missed its job.
    assert_eq!(s.emergency, 0, "{s:?}");
    assert_eq!(s.leaked, 0, "{s:?}");
    assert_eq!(s.reserve_failures, 0, "{s:?}");
    assert_eq!(INSTALL_FAILURES.load(Ordering::Relaxed), 0);

    // Back to a quiet pool: nothing active, the gauges agree with the freelists, and trim (run
    // by the drainer, or here) brings the pool within headroom + hysteresis (64 + 32).
    wait_until(
        Duration::from_secs(10),
        "the pool to settle",
        || format!("{:?}, audit {}", st.rt.stats(), st.rt.audit_idle()),
        || {
            let _ = st.rt.trim();
            let s = st.rt.stats();
            s.active == 0 && s.refs == 0 && s.total <= 64 + 32 && st.rt.audit_idle() == s.total
        },
    );
}
