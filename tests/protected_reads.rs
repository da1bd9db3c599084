//! Protected reads with real signals, threads and allocations (issue 6).
//!
//! The storm test: worker threads replace the `Arc`s in shared `ReadSlot`s and read them under
//! ordinary read guards, while a storm thread signals the workers; the handler enters restricted
//! context and a read guard, borrows objects, clones some (`clone_current`) and tears some slots
//! down. Every object carries heap data and an integrity word that its destructor poisons, so a
//! reader that saw a destroyed object would fail its check (and ASan/valgrind, which run this
//! file, would report the use-after-free). At the end: every object destroyed exactly once, never
//! in restricted context, none while borrowed, nothing allocated in the handler, and grace
//! periods really happened.
//!
//! The other tests pin down the single-thread contract: what waits, what is refused, and what is
//! deferred.

mod common;

use common::{NMI, StopFlag, install_handler, storm_workers, wait_until, xorshift};
use sigdrop::alloc_check::RestrictedAllocs;
use sigdrop::{Drainer, Error, ReadSlot, Runtime, read, restricted};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

#[global_allocator]
static ALLOC: RestrictedAllocs = RestrictedAllocs::system();

const WORKERS: usize = 2;
const SLOTS: usize = 16;
const MAX_IDS: usize = 1 << 20;
/// New objects the workers may create per delivered signal: installs are far cheaper than
/// deliveries, and without a budget the workers would use up every id before the storm got going.
const INSTALLS_PER_SIGNAL: u64 = 32;
/// Jobs kept reserved for the clones the handler drops (topped up by the workers).
const RESERVE: usize = 256;
const MAGIC: u64 = 0x5EED_F00D_CAFE_D00D;
/// The storm stops after this many deliveries (or its count or time budget).
const TARGET_DELIVERIES: u64 = 50_000;
/// Deliveries below this mean the storm did not exercise the handler: the test fails.
const MIN_DELIVERIES: u64 = 300;

/// A test object: `check` and every word of `data` are derived from `id`; the destructor
/// verifies them, then poisons them.
struct Obj {
    id: u64,
    check: AtomicU64,
    data: Box<[u64; 8]>,
}

impl Obj {
    fn new(id: u64) -> Self {
        Obj {
            id,
            check: AtomicU64::new(id ^ MAGIC),
            data: Box::new([id; 8]),
        }
    }

    /// Whether the object is intact (not destroyed, not reused).
    fn intact(&self) -> bool {
        // Relaxed: the object is only read; the destructor's poisoning is ordered after every
        // protected reader by the grace period, and any read that sees it is a failure.
        self.check.load(Ordering::Relaxed) == self.id ^ MAGIC
            && self.data.iter().all(|&w| w == self.id)
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        if restricted::is_active() {
            DTOR_IN_RESTRICTED.fetch_add(1, Ordering::Relaxed);
        }
        if !self.intact() {
            BAD_READS.fetch_add(1, Ordering::Relaxed);
        }
        self.check.store(0, Ordering::Relaxed);
        if let Some(st) = STATE.get() {
            st.destroyed[self.id as usize].fetch_add(1, Ordering::Relaxed);
        }
        // Release: a waiter that sees the total sees the per-id count above.
        DESTROYED.fetch_add(1, Ordering::Release);
    }
}

struct State {
    rt: Runtime,
    slots: Vec<ReadSlot<Arc<Obj>>>,
    destroyed: Vec<AtomicU8>,
}

static STATE: OnceLock<State> = OnceLock::new();
static STOP: StopFlag = StopFlag::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static DESTROYED: AtomicU64 = AtomicU64::new(0);
static DTOR_IN_RESTRICTED: AtomicU64 = AtomicU64::new(0);
static BAD_READS: AtomicU64 = AtomicU64::new(0);
static DELIVERED: AtomicU64 = AtomicU64::new(0);
static HANDLER_READS: AtomicU64 = AtomicU64::new(0);
static HANDLER_CLONES: AtomicU64 = AtomicU64::new(0);
static HANDLER_TEARDOWNS: AtomicU64 = AtomicU64::new(0);
static WORKER_READS: AtomicU64 = AtomicU64::new(0);
static CURSOR: AtomicUsize = AtomicUsize::new(0);

/// The NMI stand-in: reads every slot under a read guard, clones one, and tears one down.
extern "C" fn on_nmi(_: libc::c_int) {
    let _nmi = restricted::enter();
    // Relaxed (all counters here): statistics, read after the threads are joined.
    let n = DELIVERED.fetch_add(1, Ordering::Relaxed);
    let Some(st) = STATE.get() else { return };
    let guard = read::enter();
    for slot in &st.slots {
        if let Some(obj) = slot.load(&guard) {
            HANDLER_READS.fetch_add(1, Ordering::Relaxed);
            if !obj.intact() {
                BAD_READS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    drop(guard);
    let i = CURSOR.fetch_add(7, Ordering::Relaxed) % SLOTS;
    if n.is_multiple_of(4) {
        // A teardown in the handler: deferred, destroyed after a grace period.
        if let Some(old) = st.slots[i].take() {
            HANDLER_TEARDOWNS.fetch_add(1, Ordering::Relaxed);
            drop(old);
        }
    } else if n % 4 == 1
        && let Some(clone) = st.slots[i].clone_current()
    {
        HANDLER_CLONES.fetch_add(1, Ordering::Relaxed);
        if !clone.intact() {
            BAD_READS.fetch_add(1, Ordering::Relaxed);
        }
        // A clone carries no job: take one (a spare one, else one the test reserved) so that its
        // drop is a plain deferral; without it, it would go to the emergency area first.
        let mut clone = clone;
        let _ = clone.reserve(); // counted in `reserve_failures` if it fails
        drop(clone); // deferred: it may be the last reference by now
    }
}

fn worker(seed: u64, st: &State) {
    let mut rng = seed;
    while !STOP.is_set() {
        let r = xorshift(&mut rng);
        let slot = &st.slots[(r % SLOTS as u64) as usize];
        if (r >> 32).is_multiple_of(2) {
            // An ordinary reader, holding its guard across a few more reads (and any signal
            // that lands meanwhile, whose handler may tear this very slot down).
            let guard = read::enter();
            if let Some(obj) = slot.load(&guard) {
                for _ in 0..8 {
                    if !obj.intact() {
                        BAD_READS.fetch_add(1, Ordering::Relaxed);
                    }
                    std::hint::spin_loop();
                }
                WORKER_READS.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        let budget = (DELIVERED.load(Ordering::Relaxed) + 1) * INSTALLS_PER_SIGNAL;
        let cap = budget.min(MAX_IDS as u64);
        let Ok(id) = NEXT_ID.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < cap).then_some(n + 1)
        }) else {
            std::thread::yield_now();
            continue;
        };
        // A replaced object goes to the drainer even here, in ordinary context: readers may
        // still hold it.
        drop(
            slot.xchg(Some(Arc::new(Obj::new(id))))
                .expect("ordinary install"),
        );
    }
}

#[test]
fn handlers_and_threads_read_while_objects_are_replaced_and_torn_down() {
    let rt = Runtime::new().expect("runtime with a drainer thread");
    // Jobs for the handler's deferred clones (a take carries its own).
    rt.reserve(RESERVE).unwrap();
    let state = State {
        slots: (0..SLOTS).map(|_| ReadSlot::new(&rt)).collect(),
        destroyed: (0..MAX_IDS).map(|_| AtomicU8::new(0)).collect(),
        rt,
    };
    assert!(STATE.set(state).is_ok(), "STATE set once");
    let st = STATE.get().unwrap();
    install_handler(NMI, on_nmi);
    ALLOC.take();

    // The workers run until the storm is over (only then may the targets exit).
    let report = storm_workers(
        WORKERS,
        NMI,
        2_000_000,
        Duration::from_secs(3),
        &STOP,
        || {
            if st.rt.stats().reserved < RESERVE / 2 {
                // Keep jobs set aside for the clones the handler drops: unlike a taken object,
                // a clone carries no job of its own (`Detached::is_reserved`).
                st.rt.reserve(RESERVE).expect("reserve");
            }
            DELIVERED.load(Ordering::Relaxed) >= TARGET_DELIVERIES
        },
        |w| worker(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1), st),
    );
    let allocs = ALLOC.take();

    for slot in &st.slots {
        slot.clear(); // deferred too: a readable slot never destroys inline
    }
    let created = NEXT_ID.load(Ordering::Relaxed);
    wait_until(
        Duration::from_secs(20),
        "every created object to be destroyed",
        || {
            format!(
                "created {created}, destroyed {DESTROYED:?}, {:?}",
                st.rt.stats()
            )
        },
        || DESTROYED.load(Ordering::Acquire) == created,
    );

    let s = st.rt.stats();
    let delivered = DELIVERED.load(Ordering::Relaxed);
    eprintln!(
        "storm {report:?}: delivered {delivered}, handler reads {}, clones {}, teardowns {}, \
         worker reads {}, created {created}, grace periods {} (process {}), {s:?}",
        HANDLER_READS.load(Ordering::Relaxed),
        HANDLER_CLONES.load(Ordering::Relaxed),
        HANDLER_TEARDOWNS.load(Ordering::Relaxed),
        WORKER_READS.load(Ordering::Relaxed),
        s.grace_periods,
        read::grace_periods(),
    );

    // Not vacuous.
    assert!(
        delivered >= MIN_DELIVERIES,
        "only {delivered} signals ({report:?})"
    );
    assert!(HANDLER_READS.load(Ordering::Relaxed) > 0);
    assert!(HANDLER_CLONES.load(Ordering::Relaxed) > 0);
    assert!(HANDLER_TEARDOWNS.load(Ordering::Relaxed) > 0);
    assert!(WORKER_READS.load(Ordering::Relaxed) > 0);
    assert!(created > 1000, "only {created} objects were created");
    assert!(s.grace_periods > 0, "no drain waited for readers: {s:?}");

    // No reader ever saw a destroyed object; each destroyed exactly once, outside handlers.
    assert_eq!(BAD_READS.load(Ordering::Relaxed), 0);
    assert_eq!(DTOR_IN_RESTRICTED.load(Ordering::Relaxed), 0);
    let wrong: Vec<(usize, u8)> = st.destroyed[..created as usize]
        .iter()
        .enumerate()
        .map(|(id, n)| (id, n.load(Ordering::Relaxed)))
        .filter(|&(_, n)| n != 1)
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "ids not destroyed exactly once: {wrong:?}"
    );
    // Nothing fell back, and the handler never touched the allocator.
    assert_eq!(
        (s.emergency, s.leaked, s.reserve_failures),
        (0, 0, 0),
        "{s:?}"
    );
    assert_eq!(
        allocs.restricted(),
        0,
        "handler allocator calls: {allocs:?}"
    );
    assert!(allocs.all_allocs > 0, "the allocator counter is live");
}

fn manual() -> Runtime {
    Runtime::builder().drainer(Drainer::Manual).build().unwrap()
}

/// Counts destructions of one test's objects.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn an_ordinary_replace_defers_the_old_object_until_readers_leave() {
    let rt = manual();
    let drops = Arc::new(AtomicUsize::new(0));
    let slot = ReadSlot::new(&rt);
    slot.xchg(Some(Box::new(Counted(drops.clone())))).unwrap();
    let guard = read::enter();
    let held = slot.load(&guard).unwrap();
    // Ordinary context, Policy::Auto: a RefSlot would destroy inline; a ReadSlot defers.
    drop(slot.xchg(Some(Box::new(Counted(drops.clone())))).unwrap());
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    // A drain never waits for readers: under our own guard it leaves the object for later.
    assert_eq!(rt.drain().unwrap(), 0);
    assert!(matches!(rt.drain_and_wait(), Err(Error::ReadGuardHeld)));
    assert!(matches!(read::synchronize(), Err(Error::ReadGuardHeld)));
    assert_eq!(held.0.load(Ordering::SeqCst), 0); // still valid
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(guard);
    // Other tests in this process may hold guards too: wait for the grace period.
    assert_eq!(rt.drain_and_wait().unwrap(), 1);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(rt.stats().grace_periods, 1);
    // Dropping the slot destroys its last object at once (Policy::Auto): every borrow `load`
    // gave out borrows the slot too, so none is left.
    drop(slot);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    assert_eq!(rt.drain_and_wait().unwrap(), 0);
}

#[test]
fn into_inner_waits_for_a_reader_on_another_thread() {
    let rt = manual();
    let slot = ReadSlot::new(&rt);
    slot.xchg(Some(Box::new(7u64))).unwrap();
    let entered = AtomicBool::new(false);
    let release = AtomicBool::new(false);
    let left = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let guard = read::enter();
            let value = slot.load(&guard).copied();
            entered.store(true, Ordering::SeqCst);
            while !release.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            assert_eq!(value, Some(7));
            left.store(true, Ordering::SeqCst);
            drop(guard);
        });
        while !entered.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let taken = slot.take().unwrap();
        // Refused under our own guard (it would wait for itself), and the value comes back.
        let own = read::enter();
        let taken = taken.into_inner().unwrap_err();
        drop(own);
        // Let the reader go a little later; into_inner must not return before it leaves.
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            release.store(true, Ordering::SeqCst);
        });
        let value = taken.into_inner().unwrap();
        assert!(
            left.load(Ordering::SeqCst),
            "into_inner returned under a reader"
        );
        assert_eq!(*value, 7);
    });
}

#[test]
fn clone_current_outlives_the_slot_reference() {
    let rt = manual();
    let drops = Arc::new(AtomicUsize::new(0));
    let slot: ReadSlot<Arc<Counted>> = ReadSlot::new(&rt);
    assert!(slot.clone_current().is_none());
    slot.xchg(Some(Arc::new(Counted(drops.clone())))).unwrap();
    let mine = slot.clone_current().unwrap();
    assert!(!mine.is_reserved());
    let mine = mine.into_inner().ok().unwrap();
    assert_eq!(Arc::strong_count(&mine), 2);
    slot.clear();
    assert_eq!(rt.drain_and_wait().unwrap(), 1); // the slot's reference
    assert_eq!(Arc::strong_count(&mine), 1);
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(mine);
    assert_eq!(drops.load(Ordering::SeqCst), 1);

    // In restricted context a clone that is dropped is deferred, with a reserved job.
    rt.reserve(1).unwrap();
    slot.xchg(Some(Arc::new(Counted(drops.clone())))).unwrap();
    {
        let _nmi = restricted::enter();
        let clone = slot.clone_current().unwrap();
        slot.clear(); // deferred too
        drop(clone);
    }
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(rt.drain_and_wait().unwrap(), 2);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    let s = rt.stats();
    assert_eq!((s.emergency, s.leaked), (0, 0), "{s:?}");
}

#[test]
fn restricted_exchange_without_a_job_hands_the_value_back() {
    let rt = Runtime::builder()
        .drainer(Drainer::Manual)
        .headroom(0)
        .hysteresis(0)
        .build()
        .unwrap();
    let slot = ReadSlot::new(&rt);
    slot.xchg(Some(Box::new(1u32))).unwrap();
    rt.trim().unwrap();
    let new = Box::new(2u32); // allocated before the "handler": this file counts its allocations
    let nmi = restricted::enter();
    let rejected = slot.xchg(Some(new)).unwrap_err();
    assert!(matches!(rejected.error(), Error::NoSpareJob { .. }));
    let value = rejected.into_inner(); // kept: dropping it here would free in restricted context
    let guard = read::enter();
    assert_eq!(slot.load(&guard), Some(&1)); // unchanged
    drop(guard);
    assert!(matches!(read::synchronize(), Err(Error::Restricted)));
    drop(nmi);
    assert_eq!(*value, 2);
}

#[test]
fn guards_nest_and_report_activity() {
    assert!(!read::is_active());
    let outer = read::enter();
    {
        let _nmi = restricted::enter();
        let _inner = read::enter();
        assert!(read::is_active());
    }
    assert!(read::is_active());
    drop(outer);
    assert!(!read::is_active());
    let before = read::grace_periods();
    read::synchronize().unwrap();
    assert!(read::grace_periods() > before);
}

#[test]
fn the_last_handle_can_go_while_this_thread_holds_a_guard() {
    for drainer in [Drainer::Thread, Drainer::Manual] {
        let drops = Arc::new(AtomicUsize::new(0));
        let (done_tx, done_rx) = mpsc::channel();
        let body = {
            let drops = drops.clone();
            move || {
                let rt = Runtime::builder().drainer(drainer).build().unwrap();
                let slot = ReadSlot::new(&rt);
                slot.xchg(Some(Box::new(Counted(drops.clone())))).unwrap();
                let guard = read::enter();
                // Queued; a drainer thread now waits for a grace period, i.e. for `guard`.
                drop(slot.xchg(Some(Box::new(Counted(drops.clone())))).unwrap());
                for _ in 0..1000 {
                    std::thread::yield_now();
                }
                // The slot and the last handle go while we still hold the guard: shutting down
                // must not wait for the drainer, which waits for us.
                drop(slot);
                drop(rt);
                drop(guard);
                done_tx.send(()).unwrap();
            }
        };
        std::thread::spawn(body);
        done_rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{drainer:?}: dropping the last handle under a guard hung"));
        wait_until(
            Duration::from_secs(20),
            "both objects to be destroyed",
            || format!("{drainer:?}: {} destroyed", drops.load(Ordering::SeqCst)),
            || drops.load(Ordering::SeqCst) == 2,
        );
    }
}

/// A writer that closes a batch helps by destroying ready batches, at most two (older batches
/// are left to the drainer or to later helps): once a reader that held up five batches leaves,
/// the next batch the writer closes runs two of them, not more.
#[test]
fn a_writer_helps_with_at_most_two_ready_batches_per_batch_it_closes() {
    const BATCH: usize = 64;
    let rt = Runtime::builder()
        .shards(1)
        .drainer(Drainer::Manual)
        .build()
        .unwrap();
    let slot: ReadSlot<Box<usize>> = ReadSlot::new(&rt);
    slot.xchg(Some(Box::new(0))).unwrap();
    // A reader on another thread holds the grace periods up while five batches close.
    let (entered_tx, entered_rx) = mpsc::channel();
    let (leave_tx, leave_rx) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let guard = read::enter();
        entered_tx.send(()).unwrap();
        leave_rx.recv().unwrap();
        drop(guard);
    });
    entered_rx.recv().unwrap();
    for i in 1..=5 * BATCH {
        drop(slot.replace(Box::new(i)).unwrap());
    }
    assert_eq!(rt.stats().batched, 0, "the reader held every batch up");
    leave_tx.send(()).unwrap();
    reader.join().unwrap();
    // The sixth batch: its close helps (other tests' readers may hold some batches up still).
    for i in 0..BATCH {
        drop(slot.replace(Box::new(i)).unwrap());
    }
    let s = rt.stats();
    assert!(
        s.batched <= 2 * BATCH as u64,
        "one help ran more than two batches: {s:?}"
    );
    rt.drain_and_wait().unwrap();
    assert_eq!(rt.stats().batched, 6 * BATCH as u64, "{:?}", rt.stats());
}
