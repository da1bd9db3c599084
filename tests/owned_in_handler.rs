//! Issue 12, item 5: `Owned` boxes under real signals. A handler drops boxes and swaps them in
//! and out of `RefSlot<Owned<_>>` slots under a `pthread_kill` storm while workers install,
//! replace and clear in ordinary context:
//!
//! - exactly once: every box made is destroyed once (made == destroyed at the end);
//! - never in a handler: no destructor runs in restricted context;
//! - no allocator call in the handler (a counting `#[global_allocator]`, calibrated first);
//! - no job, ever: owned boxes never touch the pool (`total`, `emergency`, `leaked` stay 0),
//!   so nothing needs to be reserved, and nothing a handler does with them can be refused.
//!
//! The handler also takes references to a [`Shared`] value from a `ReadSlot` (`clone_current`)
//! and drops them, while workers replace that value: a clone dropped there may be the last
//! reference, and then goes to the drainer in its own allocation, again with no allocator call.
//!
//! Making a box allocates, so the handler also tries to, with `Owned::try_new` and
//! `Owned::try_clone`: both must refuse with `Error::Restricted` and hand the value back, with no
//! allocator call either.
//!
//! Then, deterministically: with nothing reserved, handlers this thread sends itself do their
//! operations (none can be refused), still without an allocator call.

mod common;

use common::{
    NMI, StopFlag, install_handler, restore_handler, storm_workers, this_thread, wait_until,
    xorshift,
};
use nix::sys::pthread::pthread_kill;
use sigdrop::alloc_check::RestrictedAllocs;
use sigdrop::{Error, Owned, ReadSlot, RefSlot, Runtime, Shared, restricted};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

#[global_allocator]
static GLOBAL: RestrictedAllocs = RestrictedAllocs::system();

const WORKERS: usize = 2;
const SLOTS: usize = 64;
/// Slots holding fresh boxes for the handler (refilled by the workers).
const POOL: usize = 64;
const OPS_PER_SIGNAL: usize = 8;
const TARGET_OPS: u64 = 100_000;
const MIN_OPS: u64 = 1_000;

/// A value with a heap part, so a destructor run in a handler would free.
struct Obj {
    _payload: Vec<u64>,
}

impl Clone for Obj {
    /// Counted as made, like `Obj::new` (a handler's `try_clone` must never call it).
    fn clone(&self) -> Obj {
        Obj::new()
    }
}

static CREATED: AtomicU64 = AtomicU64::new(0);
static DESTROYED: AtomicU64 = AtomicU64::new(0);
static DTOR_IN_RESTRICTED: AtomicU64 = AtomicU64::new(0);

impl Obj {
    fn new() -> Obj {
        CREATED.fetch_add(1, Ordering::Relaxed);
        Obj {
            _payload: vec![7; 8],
        }
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        if restricted::is_active() {
            DTOR_IN_RESTRICTED.fetch_add(1, Ordering::Relaxed);
        }
        // Release: a waiter that sees the count sees the destructor's effects.
        DESTROYED.fetch_add(1, Ordering::Release);
    }
}

struct State {
    rt: Runtime,
    slots: Vec<RefSlot<Owned<Obj>>>,
    pool: Vec<RefSlot<Owned<Obj>>>,
    /// A runtime of its own: a readable slot's install takes a job, and `rt` must have none.
    shared_rt: Runtime,
    shared: ReadSlot<Shared<Obj>>,
}

static STATE: OnceLock<State> = OnceLock::new();
static CURSOR: AtomicUsize = AtomicUsize::new(0);
static STOP: StopFlag = StopFlag::new();
static DELIVERED: AtomicU64 = AtomicU64::new(0);
static TEARDOWNS: AtomicU64 = AtomicU64::new(0);
static SWAPS: AtomicU64 = AtomicU64::new(0);
static DIRECT_DROPS: AtomicU64 = AtomicU64::new(0);
static POOL_EMPTY: AtomicU64 = AtomicU64::new(0);
static CLONES: AtomicU64 = AtomicU64::new(0);
/// `Owned::try_new` and `Owned::try_clone` calls in the handler refused as they should be
/// (`Error::Restricted`, the value handed back), and any other outcome.
static REFUSED_MAKES: AtomicU64 = AtomicU64::new(0);
static WRONG_MAKES: AtomicU64 = AtomicU64::new(0);

/// A fresh box from the pool, or `None`. Safe code: `take_owned` hands an owned box back even
/// in a handler (it defers itself wherever it is dropped).
fn fresh(st: &State, n: usize) -> Option<Owned<Obj>> {
    for i in 0..POOL {
        if let Some(fresh) = st.pool[(n + i) % POOL].take_owned() {
            return Some(fresh);
        }
    }
    POOL_EMPTY.fetch_add(1, Ordering::Relaxed);
    None
}

/// The NMI stand-in: tears slots down, swaps fresh boxes in, drops boxes outright. No unsafe.
extern "C" fn on_nmi(_: libc::c_int) {
    let _nmi = restricted::enter();
    DELIVERED.fetch_add(1, Ordering::Relaxed);
    let Some(st) = STATE.get() else { return };
    for _ in 0..OPS_PER_SIGNAL {
        let n = CURSOR.fetch_add(1, Ordering::Relaxed);
        let slot = &st.slots[n.wrapping_mul(5) % SLOTS];
        match n % 4 {
            0 => {
                if let Some(d) = slot.take() {
                    drop(d); // a swap and a push
                    TEARDOWNS.fetch_add(1, Ordering::Relaxed);
                }
            }
            1 => {
                if let Some(b) = fresh(st, n) {
                    // Never refused (no job needed); the displaced box is pushed.
                    match slot.xchg(Some(b)) {
                        Ok(old) => drop(old),
                        Err(rejected) => panic!("an owned box was refused: {rejected}"),
                    }
                    SWAPS.fetch_add(1, Ordering::Relaxed);
                }
            }
            2 => {
                if let Some(b) = fresh(st, n) {
                    drop(b); // one push
                    DIRECT_DROPS.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                if let Some(c) = st.shared.clone_current() {
                    drop(c); // one decrement; if it was the last reference, one push
                    CLONES.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    // Making a box allocates, so in a handler both ways of making one refuse at once, and
    // hand the value back. (Formatting a failure here would allocate: count it instead.)
    match Owned::try_new(&st.rt, 7u64) {
        Err((7, Error::Restricted)) => REFUSED_MAKES.fetch_add(1, Ordering::Relaxed),
        _ => WRONG_MAKES.fetch_add(1, Ordering::Relaxed),
    };
    if let Some(b) = fresh(st, CURSOR.load(Ordering::Relaxed)) {
        match b.try_clone() {
            Err(Error::Restricted) => REFUSED_MAKES.fetch_add(1, Ordering::Relaxed),
            _ => WRONG_MAKES.fetch_add(1, Ordering::Relaxed),
        };
        drop(b); // one push
    }
}

fn handler_ops() -> u64 {
    TEARDOWNS.load(Ordering::Relaxed)
        + SWAPS.load(Ordering::Relaxed)
        + DIRECT_DROPS.load(Ordering::Relaxed)
        + CLONES.load(Ordering::Relaxed)
}

fn refill(st: &State) {
    for cell in &st.pool {
        if cell.is_empty() {
            // A race with another worker replaces (and drops inline) a fresh box: fine.
            drop(cell.xchg(Some(Owned::new(&st.rt, Obj::new()))));
        }
    }
}

fn worker(seed: u64, st: &State) {
    let mut rng = seed;
    while !STOP.is_set() {
        refill(st);
        // The old value's slot reference goes after a grace period: a handler's clone may
        // outlive it and be the last.
        drop(st.shared.xchg(Some(Shared::new(&st.shared_rt, Obj::new()))));
        for _ in 0..16 {
            let r = xorshift(&mut rng);
            let slot = &st.slots[(r % SLOTS as u64) as usize];
            if (r >> 32).is_multiple_of(4) {
                slot.clear(); // inline destructor (Policy::Auto)
            } else {
                drop(slot.xchg(Some(Owned::new(&st.rt, Obj::new()))));
            }
        }
        std::thread::yield_now();
    }
}

fn calibrate() {
    {
        let _guard = restricted::enter();
        drop(std::hint::black_box(Box::new(7u64)));
    }
    let seen = GLOBAL.take();
    assert_eq!((seen.allocs, seen.frees), (1, 1));
}

#[test]
fn owned_boxes_under_a_signal_storm_are_destroyed_once_never_in_a_handler_without_allocating() {
    calibrate();
    let rt = Runtime::new().unwrap();
    let shared_rt = Runtime::new().unwrap();
    let st = State {
        slots: (0..SLOTS).map(|_| RefSlot::new(&rt)).collect(),
        pool: (0..POOL).map(|_| RefSlot::new(&rt)).collect(),
        rt,
        shared: ReadSlot::new(&shared_rt),
        shared_rt,
    };
    assert!(STATE.set(st).is_ok());
    let st = STATE.get().unwrap();
    refill(st);
    // Touch the restricted-context thread-local before any handler can run (see restricted.rs).
    assert!(!restricted::is_active());
    let previous = install_handler(NMI, on_nmi);
    GLOBAL.take();
    let report = storm_workers(
        WORKERS,
        NMI,
        2_000_000,
        Duration::from_secs(20),
        &STOP,
        || handler_ops() >= TARGET_OPS,
        |w| worker(0x9E37_79B9 + w as u64, st),
    );
    let allocs = GLOBAL.counts();

    // Deterministic part: this thread signals itself (the handler has run when pthread_kill
    // returns); nothing is reserved, and every operation goes through.
    let before = handler_ops();
    for _ in 0..32 {
        refill(st);
        pthread_kill(this_thread(), NMI).expect("pthread_kill self");
    }
    let self_ops = handler_ops() - before;
    let allocs_self = GLOBAL.counts();
    restore_handler(NMI, &previous);

    for s in st.slots.iter().chain(&st.pool) {
        s.clear();
    }
    st.shared.clear();
    wait_until(
        Duration::from_secs(20),
        "every box destroyed",
        || {
            format!(
                "made {} destroyed {} stats {:?}",
                CREATED.load(Ordering::Relaxed),
                DESTROYED.load(Ordering::Relaxed),
                st.rt.stats()
            )
        },
        || DESTROYED.load(Ordering::Acquire) == CREATED.load(Ordering::Relaxed),
    );
    let s = st.rt.stats();
    eprintln!(
        "storm: {report:?}, delivered {}, teardowns {}, swaps {}, direct drops {}, clones {}, pool empty {}, self ops {self_ops}, {s:?}, shared runtime {:?}",
        DELIVERED.load(Ordering::Relaxed),
        TEARDOWNS.load(Ordering::Relaxed),
        SWAPS.load(Ordering::Relaxed),
        DIRECT_DROPS.load(Ordering::Relaxed),
        CLONES.load(Ordering::Relaxed),
        POOL_EMPTY.load(Ordering::Relaxed),
        st.shared_rt.stats(),
    );
    assert_eq!(
        allocs.restricted(),
        0,
        "allocator calls in the handler: {allocs:?}"
    );
    assert_eq!(allocs_self.restricted(), 0, "{allocs_self:?}");
    assert!(allocs.all_allocs > 0, "the counting allocator is live");
    assert_eq!(DTOR_IN_RESTRICTED.load(Ordering::Relaxed), 0);
    assert!(handler_ops() >= MIN_OPS, "too few handler operations");
    assert!(self_ops > 0);
    assert!(
        CLONES.load(Ordering::Relaxed) > 0,
        "no Shared value cloned in a handler"
    );
    assert_eq!(
        WRONG_MAKES.load(Ordering::Relaxed),
        0,
        "a box made in a handler"
    );
    assert!(REFUSED_MAKES.load(Ordering::Relaxed) >= DELIVERED.load(Ordering::Relaxed));
    assert_eq!(
        (s.total, s.emergency, s.leaked, s.reserve_failures),
        (0, 0, 0, 0),
        "{s:?}"
    );
    assert!(
        s.owned >= MIN_OPS / 2,
        "boxes handed over in handlers: {s:?}"
    );
    assert_eq!(s.dtor_panics, 0);
}
