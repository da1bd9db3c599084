//! P1 with a real allocator and real signals: sigdrop's restricted-context paths — teardown,
//! install into an empty slot from a reserved or spare job, replace, and handing a refused value
//! back — never allocate, reallocate or free.
//!
//! A counting `#[global_allocator]` counts every call made while `restricted::is_active()` on the
//! calling thread (that function reads a `const`-initialised thread-local without a destructor,
//! so the allocator may call it). The runtime has headroom 0, so restricted installs live on jobs
//! set aside with `Runtime::reserve`, which the workers top up, and the pool grows and trims all
//! the time underneath the handler.
//!
//! 1. Storm: two worker threads install objects in ordinary context, top up the reservation and
//!    keep a lock-free pool of pre-made boxes filled; a storm thread signals them; the handler
//!    tears slots down and installs (or replaces with) boxes taken from the pool, putting any
//!    box whose install is refused back into the cell it came from (which it marked borrowed).
//! 2. Deterministic: with nothing spare or reserved, the test thread signals itself, and every
//!    install the handler tries is refused and handed back; after `reserve(8)` exactly 8 succeed.
//!
//! Asserts: zero allocator calls under the guard (the counter is calibrated first), thousands of
//! handler teardowns and hundreds of handler installs, refusals handled without loss, no
//! destructor in restricted context, and every object destroyed exactly once in the end.

mod common;

use common::{NMI, StopFlag, install_handler, storm_workers, this_thread, wait_until, xorshift};
use nix::sys::pthread::pthread_kill;
use sigdrop::alloc_check::RestrictedAllocs;
use sigdrop::{RefSlot, Runtime, restricted};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Counts allocator calls made in restricted context, and all allocations (to show it is live).
#[global_allocator]
static GLOBAL: RestrictedAllocs = RestrictedAllocs::system();

const WORKERS: usize = 2;
const SLOTS: usize = 64;
/// Pre-made boxes the handler may install (filled by the workers in ordinary context).
const POOL_LEN: usize = 256;
/// Slots a handler invocation visits.
const OPS_PER_SIGNAL: usize = 8;
/// Jobs set aside for restricted installs before the storm; the workers top the reservation up
/// to this when it falls below a quarter of it.
const RESERVE: usize = 64;
/// The storm stops once the handler has done this much (or at its count or time budget).
const TARGET_TEARDOWNS: u64 = 100_000;
const TARGET_INSTALLS: u64 = 20_000;
/// What the test requires at least.
const MIN_TEARDOWNS: u64 = 1_000;
const MIN_INSTALLS: u64 = 100;

struct Obj {
    _id: u64,
}

static CREATED: AtomicU64 = AtomicU64::new(0);
static DESTROYED: AtomicU64 = AtomicU64::new(0);
static DTOR_IN_RESTRICTED: AtomicU64 = AtomicU64::new(0);

impl Obj {
    /// Allocates a new object (ordinary context only).
    fn boxed() -> Box<Obj> {
        let id = CREATED.fetch_add(1, Ordering::Relaxed);
        Box::new(Obj { _id: id })
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        if restricted::is_active() {
            DTOR_IN_RESTRICTED.fetch_add(1, Ordering::Relaxed);
        }
        // Release: a waiter that sees the count sees everything the destructor did.
        DESTROYED.fetch_add(1, Ordering::Release);
    }
}

struct State {
    rt: Runtime,
    slots: Vec<RefSlot<Box<Obj>>>,
}

static STATE: OnceLock<State> = OnceLock::new();
/// The lock-free source of pre-made boxes. A cell is null (empty: workers may fill it), a box,
/// or `BORROWED` (a handler took its box and owns the cell until it stores null or the box back).
static POOL: [AtomicPtr<Obj>; POOL_LEN] = [const { AtomicPtr::new(ptr::null_mut()) }; POOL_LEN];
/// Marks a pool cell whose box a handler has taken; never a real box address (no box of `Obj`
/// lives at address `align_of::<Obj>()`).
const BORROWED: *mut Obj = ptr::dangling_mut();
static POOL_CURSOR: AtomicUsize = AtomicUsize::new(0);
static SLOT_CURSOR: AtomicUsize = AtomicUsize::new(0);
static STOP: StopFlag = StopFlag::new();

static DELIVERED: AtomicU64 = AtomicU64::new(0);
static TEARDOWNS: AtomicU64 = AtomicU64::new(0);
static INSTALLS: AtomicU64 = AtomicU64::new(0);
static REPLACES: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);
static POOL_EMPTY: AtomicU64 = AtomicU64::new(0);

/// A box taken from the pool, and the cell it came from (marked `BORROWED` meanwhile).
struct Premade {
    cell: &'static AtomicPtr<Obj>,
    obj: Box<Obj>,
}

/// Takes a pre-made box from the pool, leaving its cell `BORROWED`. Async-signal-safe: atomic
/// loads and CASes, no allocation (`Box::from_raw` only rebuilds the owner of memory allocated
/// in ordinary context).
fn take_premade() -> Option<Premade> {
    for _ in 0..POOL_LEN {
        let cell = &POOL[POOL_CURSOR.fetch_add(1, Ordering::Relaxed) % POOL_LEN];
        let p = cell.load(Ordering::Relaxed);
        if p.is_null() || p == BORROWED {
            continue;
        }
        // Acquire: pairs with the Release CAS that published the box. A CAS rather than a
        // swap, so that another handler's BORROWED mark is never overwritten.
        if cell
            .compare_exchange(p, BORROWED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: every box pointer in the pool came from `Box::into_raw`, and the CAS
            // moved this one out of the pool: it is ours alone.
            return Some(Premade {
                cell,
                obj: unsafe { Box::from_raw(p) },
            });
        }
    }
    None
}

impl Premade {
    /// Installs the box into `slot`; a refused box goes back into its own (still `BORROWED`)
    /// cell rather than being dropped, which would free. Async-signal-safe.
    fn install(self, slot: &RefSlot<Box<Obj>>) {
        match slot.xchg(Some(self.obj)) {
            Ok(prev) => {
                // Release: the empty cell may be refilled by a worker.
                self.cell.store(ptr::null_mut(), Ordering::Release);
                match prev {
                    None => INSTALLS.fetch_add(1, Ordering::Relaxed),
                    Some(old) => {
                        REPLACES.fetch_add(1, Ordering::Relaxed);
                        drop(old); // deferred with the job claimed for it before the exchange
                        TEARDOWNS.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            Err(rejected) => {
                REFUSED.fetch_add(1, Ordering::Relaxed);
                // Release: publishes the box to whoever takes it next.
                self.cell
                    .store(Box::into_raw(rejected.into_inner()), Ordering::Release);
            }
        }
    }
}

/// The NMI stand-in: teardowns, installs into empty slots, replaces; never frees.
extern "C" fn on_nmi(_: libc::c_int) {
    let _nmi = restricted::enter();
    DELIVERED.fetch_add(1, Ordering::Relaxed);
    let Some(st) = STATE.get() else { return };
    for _ in 0..OPS_PER_SIGNAL {
        let n = SLOT_CURSOR.fetch_add(1, Ordering::Relaxed);
        // Stride 5 (coprime with SLOTS) walks every slot; `n % 3` picks the operation.
        let slot = &st.slots[n.wrapping_mul(5) % SLOTS];
        if !slot.is_empty() && !n.is_multiple_of(3) {
            if let Some(d) = slot.take() {
                drop(d); // deferred to the drainer: no free here
                TEARDOWNS.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        // Install into an empty slot, or (n % 3 == 0) replace the present object.
        match take_premade() {
            Some(premade) => premade.install(slot),
            None => {
                POOL_EMPTY.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Fills every empty pool cell with a new box (ordinary context).
fn refill_pool() {
    for cell in &POOL {
        if cell.load(Ordering::Relaxed).is_null() {
            let p = Box::into_raw(Obj::boxed());
            // Release: publishes the box to the handler's Acquire CAS. Only null cells are
            // filled (a BORROWED one belongs to a handler); another worker may win the race.
            if cell
                .compare_exchange(ptr::null_mut(), p, Ordering::Release, Ordering::Relaxed)
                .is_err()
            {
                // SAFETY: `p` came from `Box::into_raw` just above and was never shared.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

fn worker(seed: u64, st: &State) {
    let mut rng = seed;
    while !STOP.is_set() {
        refill_pool();
        if st.rt.stats().reserved < RESERVE / 4 {
            st.rt.reserve(RESERVE).expect("reserve in ordinary context");
        }
        for _ in 0..16 {
            let r = xorshift(&mut rng);
            let slot = &st.slots[(r % SLOTS as u64) as usize];
            if (r >> 32).is_multiple_of(4) {
                slot.clear();
            } else {
                // Ordinary install or replace (growing the pool as needed). A refusal is
                // impossible here (unlimited jobs); if it happened the value would be dropped.
                drop(slot.xchg(Some(Obj::boxed())));
            }
        }
        std::thread::yield_now();
    }
}

/// The counting allocator sees a guard-protected allocation: the zero counts below mean
/// something.
fn calibrate() {
    assert!(!restricted::is_active());
    {
        let _guard = restricted::enter();
        let b = std::hint::black_box(Box::new(7u64));
        drop(std::hint::black_box(b));
    }
    let seen = GLOBAL.take();
    assert_eq!((seen.allocs, seen.frees, seen.reallocs), (1, 1, 0));
}

/// Pool cells holding a box (neither empty nor borrowed).
fn pool_boxes() -> usize {
    POOL.iter()
        .map(|c| c.load(Ordering::Relaxed))
        .filter(|&p| !p.is_null() && p != BORROWED)
        .count()
}

/// Sends the signal to the calling thread; the handler has run when this returns.
fn signal_self() {
    let before = DELIVERED.load(Ordering::Relaxed);
    pthread_kill(this_thread(), NMI).expect("pthread_kill self");
    // A signal a thread sends itself is delivered before the sending call returns.
    assert_eq!(DELIVERED.load(Ordering::Relaxed), before + 1);
}

/// Phase 2: every slot empty, nothing spare or reserved. Each handler run tries OPS_PER_SIGNAL
/// installs; all must be refused and handed back. Then `reserve(OPS_PER_SIGNAL)` makes exactly
/// that many succeed.
fn deterministic_refusals_then_reserved_installs(st: &State) {
    for slot in &st.slots {
        slot.clear();
    }
    wait_until(
        Duration::from_secs(10),
        "the drainer to return every job",
        || format!("{:?}", st.rt.stats()),
        || {
            let s = st.rt.stats();
            s.drained == s.offloaded && s.active == 0
        },
    );
    st.rt.unreserve(usize::MAX).unwrap();
    // Trim skips its work while the drainer holds the grow lock (finishing its own trim): retry.
    wait_until(
        Duration::from_secs(10),
        "nothing spare or reserved",
        || format!("{:?}", st.rt.stats()),
        || {
            st.rt.trim().unwrap();
            let s = st.rt.stats();
            (s.spare, s.reserved, s.refs, s.active) == (0, 0, 0, 0)
        },
    );
    refill_pool();
    assert_eq!(pool_boxes(), POOL_LEN);

    const SIGNALS: u64 = 10;
    let refused = REFUSED.load(Ordering::Relaxed);
    let installs = INSTALLS.load(Ordering::Relaxed);
    let failures = st.rt.stats().reserve_failures;
    for _ in 0..SIGNALS {
        signal_self();
    }
    let expected = SIGNALS * OPS_PER_SIGNAL as u64;
    assert_eq!(REFUSED.load(Ordering::Relaxed) - refused, expected);
    assert_eq!(st.rt.stats().reserve_failures - failures, expected);
    assert_eq!(INSTALLS.load(Ordering::Relaxed), installs);
    assert!(
        st.slots.iter().all(RefSlot::is_empty),
        "refused installs left no trace"
    );
    assert_eq!(
        pool_boxes(),
        POOL_LEN,
        "every refused box went back to the pool"
    );

    st.rt.reserve(OPS_PER_SIGNAL).unwrap();
    signal_self();
    assert_eq!(
        INSTALLS.load(Ordering::Relaxed) - installs,
        OPS_PER_SIGNAL as u64
    );
    assert_eq!(st.rt.stats().reserved, 0);
    assert_eq!(
        st.slots.iter().filter(|s| !s.is_empty()).count(),
        OPS_PER_SIGNAL
    );

    let counts = GLOBAL.counts();
    let (allocs, reallocs, frees) = (counts.allocs, counts.reallocs, counts.frees);
    assert_eq!(
        (allocs, reallocs, frees),
        (0, 0, 0),
        "allocator calls in phase 2"
    );
}

#[test]
fn signal_handler_paths_never_touch_the_allocator() {
    calibrate();
    // Headroom 0: no spare jobs linger, so restricted installs depend on the reservation.
    let rt = Runtime::builder()
        .headroom(0)
        .hysteresis(0)
        .build()
        .expect("runtime with a drainer thread");
    rt.reserve(RESERVE).expect("reserve");
    assert_eq!(rt.stats().reserved, RESERVE);
    let state = State {
        slots: (0..SLOTS).map(|_| RefSlot::new(&rt)).collect(),
        rt,
    };
    assert!(STATE.set(state).is_ok(), "STATE set once");
    let st = STATE.get().unwrap();
    refill_pool();
    install_handler(NMI, on_nmi);

    // The workers run until the storm is over (only then may the targets exit).
    let report = storm_workers(
        WORKERS,
        NMI,
        2_000_000,
        Duration::from_secs(5),
        &STOP,
        || {
            TEARDOWNS.load(Ordering::Relaxed) >= TARGET_TEARDOWNS
                && INSTALLS.load(Ordering::Relaxed) >= TARGET_INSTALLS
        },
        |w| worker(0xA076_1D64_78BD_642F ^ (w as u64 + 1), st),
    );

    // Everything the handler could do is over: read the verdict before any cleanup.
    let counts = GLOBAL.counts();
    let (allocs, reallocs, frees) = (counts.allocs, counts.reallocs, counts.frees);
    let teardowns = TEARDOWNS.load(Ordering::Relaxed);
    let installs = INSTALLS.load(Ordering::Relaxed);
    eprintln!(
        "storm: {report:?}, delivered {}, teardowns {teardowns}, installs {installs}, \
         replaces {}, refused {}, pool empty {}, allocator calls in restricted context: \
         {allocs} alloc / {reallocs} realloc / {frees} free (of {} allocations in all); {:?}",
        DELIVERED.load(Ordering::Relaxed),
        REPLACES.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
        POOL_EMPTY.load(Ordering::Relaxed),
        counts.all_allocs,
        st.rt.stats(),
    );
    assert!(teardowns > MIN_TEARDOWNS, "handler teardowns: {teardowns}");
    assert!(installs > MIN_INSTALLS, "handler installs: {installs}");
    assert_eq!(allocs, 0, "allocations in restricted context");
    assert_eq!(reallocs, 0, "reallocations in restricted context");
    assert_eq!(frees, 0, "frees in restricted context");
    assert_eq!(DTOR_IN_RESTRICTED.load(Ordering::Relaxed), 0);
    assert!(
        POOL.iter().all(|c| c.load(Ordering::Relaxed) != BORROWED),
        "a pool cell was left borrowed"
    );

    deterministic_refusals_then_reserved_installs(st);

    // Clean up in ordinary context and check that every object was destroyed exactly once.
    for slot in &st.slots {
        slot.clear();
    }
    for cell in &POOL {
        let p = cell.swap(ptr::null_mut(), Ordering::Acquire);
        assert_ne!(p, BORROWED);
        if !p.is_null() {
            // SAFETY: pool pointers come from `Box::into_raw`; the swap made this one ours.
            drop(unsafe { Box::from_raw(p) });
        }
    }
    let created = CREATED.load(Ordering::Relaxed);
    wait_until(
        Duration::from_secs(10),
        "every object to be destroyed",
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
    assert!(s.offloaded >= teardowns, "{s:?}");
    assert_eq!(s.emergency, 0, "{s:?}");
    assert_eq!(s.leaked, 0, "{s:?}");
    assert_eq!(DTOR_IN_RESTRICTED.load(Ordering::Relaxed), 0);
}
