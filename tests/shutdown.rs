//! P7 clean shutdown: dropping the last `Runtime` handle runs every pending destructor exactly
//! once (never in restricted context), whoever holds that handle, and the drainer thread ends.
//!
//! - `manual_drainer_runs_everything_at_drop`: objects offloaded in restricted context (a guard
//!   on this thread; no signal needed) and never drained, others still in slots; the last handle
//!   is held by a slot. Dropping it runs them all.
//! - `boxes_a_stuck_destructor_hands_over_after_the_shutdown_gave_up_...`: a destructor that
//!   outlives the shutdown's timeout, then hands the owned boxes it owns over in restricted
//!   context: the drainer thread runs them before it exits (nobody else is left to).
//! - `the_shutdown_runs_what_its_own_drains_hand_over`: a chain of owned boxes whose destructors
//!   each hand the next box over in restricted context, after the drain that runs them took its
//!   lists: the shutdown drains until a drain finds nothing, and runs every link.
//! - `last_handle_dropped_by_a_destructor_on_the_drainer`: the last handle is owned by an object
//!   whose destructor runs on the drainer thread itself. No deadlock (bounded waits), everything
//!   queued before and after it runs, and the drainer thread exits.
//! - `many_pending_objects_run_when_the_last_handle_drops`: 10_000 objects queued in restricted
//!   context, then the last handle dropped at once: when the drop returns, every destructor has
//!   run, with no waiting.
//! - `two_drainers_dropping_each_others_last_handle_...`: objects of two runtimes own each
//!   other's last handles and are destroyed on their drainers at the same time; with no shutdown
//!   timeout, only "a drainer never waits for another" lets both finish.
//! - `shutdown_gives_up_on_a_stuck_destructor_...`: a destructor that does not return; the
//!   shutdown stops waiting after its timeout, runs everything else and reports the object left.
//! - `a_destructor_that_forgets_a_restricted_guard_...`: the thread that ran it is put back in
//!   ordinary context, so later destructors run and a runtime whose last handle it drops shuts
//!   down rather than leaks.
//! - `two_drainers_flooding_each_other_past_the_bound_...`: destructors on two drainers that
//!   push another runtime past its backlog bound run its cycles rather than wait for its
//!   drainer, which is busy doing the same.
//! - `two_threads_destroying_batches_that_retire_past_the_bound_...`: two ordinary threads each
//!   destroy batches whose destructors retire more objects past the bound, at the same time;
//!   each must not wait for the batches the other is destroying (the other waits for ours).
//! - `a_shutdown_on_the_drainer_thread_reports_that_it_did_not_wait_for_it`: the last handle,
//!   owned by a box the drainer thread destroys, is shut down there: the report says the
//!   drainer was not waited for (a drainer never waits for itself).
//!
//! The tests with a drainer thread count the live `sigdrop-drainer` threads in
//! `/proc/self/task`, so they are serialised with a static mutex.

mod common;

use common::wait_until;
use sigdrop::{Drainer, Owned, Policy, ReadSlot, RefSlot, Runtime, read, restricted};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Per-test record of destructor runs (tests in this file run in parallel).
struct Tracker {
    ran: Vec<AtomicU8>,
    in_restricted: AtomicU64,
}

impl Tracker {
    fn new(n: usize) -> Arc<Tracker> {
        Arc::new(Tracker {
            ran: (0..n).map(|_| AtomicU8::new(0)).collect(),
            in_restricted: AtomicU64::new(0),
        })
    }

    fn obj(self: &Arc<Self>, id: usize) -> Box<Obj> {
        Box::new(Obj {
            id,
            tracker: Arc::clone(self),
        })
    }

    fn ran_total(&self) -> u64 {
        self.ran
            .iter()
            .map(|n| u64::from(n.load(Ordering::Relaxed)))
            .sum()
    }

    #[track_caller]
    fn assert_each_ran_once(&self) {
        let wrong: Vec<(usize, u8)> = self
            .ran
            .iter()
            .enumerate()
            .map(|(id, n)| (id, n.load(Ordering::Relaxed)))
            .filter(|&(_, n)| n != 1)
            .take(10)
            .collect();
        assert!(wrong.is_empty(), "(id, runs) not exactly once: {wrong:?}");
        assert_eq!(self.in_restricted.load(Ordering::Relaxed), 0);
    }
}

struct Obj {
    id: usize,
    tracker: Arc<Tracker>,
}

impl Drop for Obj {
    fn drop(&mut self) {
        if restricted::is_active() {
            self.tracker.in_restricted.fetch_add(1, Ordering::Relaxed);
        }
        self.tracker.ran[self.id].fetch_add(1, Ordering::Relaxed);
    }
}

/// Serialises the tests that start drainer threads.
fn drainer_tests() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Live threads named `sigdrop-drainer` in this process.
fn drainer_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == "sigdrop-drainer")
        .count()
}

#[test]
fn manual_drainer_runs_everything_at_drop() {
    const N: usize = 1_000;
    let tracker = Tracker::new(N);
    let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
    let slots: Vec<RefSlot<Box<Obj>>> = (0..N / 2).map(|_| RefSlot::new(&rt)).collect();
    // Ids 0..N/2 installed; all but every 4th offloaded in restricted context by a take or a
    // replace with ids N/2.. (whose objects stay in the slots).
    for (i, slot) in slots.iter().enumerate() {
        assert!(slot.xchg(Some(tracker.obj(i))).unwrap().is_none());
    }
    let mut held_back = Vec::new();
    {
        let _nmi = restricted::enter();
        for (i, slot) in slots.iter().enumerate() {
            match i % 4 {
                0 => {}
                1 | 2 => drop(slot.take()),
                _ => match slot.xchg(Some(tracker.obj(N / 2 + i))) {
                    Ok(old) => drop(old),
                    // No spare job: keep the value, destroy it outside the guard.
                    Err(rejected) => held_back.push(rejected.into_inner()),
                },
            }
        }
    }
    drop(held_back);
    let s = rt.stats();
    assert!(s.offloaded > 0, "{s:?}");
    assert_eq!(s.drained, 0, "nobody drains a manual runtime: {s:?}");
    assert_eq!(tracker.in_restricted.load(Ordering::Relaxed), 0);

    // Never drained. Drop our handle first: the last one is then held by the last slot.
    drop(rt);
    drop(slots);
    // Ids N/2.. that were never created (slots with i % 4 != 3) are the only ones not run.
    for id in N / 2..N {
        let created = (id - N / 2) % 4 == 3;
        let n = tracker.ran[id].load(Ordering::Relaxed);
        assert_eq!(n, u8::from(created), "id {id}");
        if !created {
            tracker.ran[id].store(1, Ordering::Relaxed); // for the check below
        }
    }
    tracker.assert_each_ran_once();
}

/// One link of a chain of owned boxes whose destructor hands the next link over as a signal
/// handler would (in restricted context): each link reaches the drainer only once the one
/// before it has been destroyed, by a drain that has already taken its lists.
struct HandsOver {
    obj: Obj,
    next: Option<Owned<HandsOver>>,
}

impl Drop for HandsOver {
    fn drop(&mut self) {
        let _nmi = restricted::enter();
        drop(self.next.take());
        // `obj` is dropped after this, back in ordinary context: it counts as run then.
        let _ = &self.obj;
    }
}

#[test]
fn the_shutdown_runs_what_its_own_drains_hand_over() {
    const LINKS: usize = 6;
    let tracker = Tracker::new(LINKS);
    let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
    let mut chain = None;
    for id in (0..LINKS).rev() {
        let obj = Obj {
            id,
            tracker: Arc::clone(&tracker),
        };
        chain = Some(Owned::new(&rt, HandsOver { obj, next: chain }));
    }
    {
        let _nmi = restricted::enter();
        drop(chain);
    }
    assert_eq!(tracker.ran_total(), 0, "nothing runs before the shutdown");
    // Each drain of the shutdown destroys one link, which hands the next one over after that
    // drain took the lists: only draining until a drain finds nothing runs them all.
    let report = rt.shutdown().expect("the last handle");
    assert_eq!(report.destroyed, LINKS as u64, "{report:?}");
    tracker.assert_each_ran_once();
}

static BLOCKER_ENTERED: AtomicBool = AtomicBool::new(false);
static BLOCKER_RELEASE: AtomicBool = AtomicBool::new(false);

/// An owned box whose destructor waits (up to 20 s) until the test releases it, then hands the
/// boxes it owns over in restricted context, as code shared with a signal handler would.
struct Blocker {
    kids: Vec<Owned<Obj>>,
}

impl Drop for Blocker {
    fn drop(&mut self) {
        BLOCKER_ENTERED.store(true, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !BLOCKER_RELEASE.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _nmi = restricted::enter();
        self.kids.clear();
    }
}

#[test]
fn boxes_a_stuck_destructor_hands_over_after_the_shutdown_gave_up_are_run_by_its_drainer() {
    let _serial = drainer_tests();
    let baseline = drainer_threads();
    const KIDS: usize = 50;
    let tracker = Tracker::new(KIDS);
    // One shard: the kids land on the list the drainer's cycle has already taken.
    let rt = Runtime::builder()
        .shards(1)
        .shutdown_timeout(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    let kids = (0..KIDS)
        .map(|id| {
            let obj = Obj {
                id,
                tracker: Arc::clone(&tracker),
            };
            Owned::new(&rt, obj)
        })
        .collect();
    let blocker = Owned::new(&rt, Blocker { kids });
    {
        let _nmi = restricted::enter();
        drop(blocker); // to the drainer, which waits in its destructor
    }
    wait_until(
        Duration::from_secs(10),
        "the drainer to enter the blocking destructor",
        || format!("{:?}", rt.stats()),
        || BLOCKER_ENTERED.load(Ordering::Acquire),
    );
    let report = rt.shutdown().expect("the last handle");
    assert!(!report.drainer_waited, "{report:?}");
    assert_eq!(tracker.ran_total(), 0, "the kids are still the blocker's");
    // The destructor returns long after the shutdown did, and hands its kids over: the drainer
    // thread, the only one left that can, runs them before it exits.
    BLOCKER_RELEASE.store(true, Ordering::Release);
    wait_until(
        Duration::from_secs(10),
        "every kid to be destroyed and the drainer to exit",
        || {
            format!(
                "{} of {KIDS} kids destroyed, {} drainer threads (baseline {baseline})",
                tracker.ran_total(),
                drainer_threads()
            )
        },
        || tracker.ran_total() == KIDS as u64 && drainer_threads() == baseline,
    );
    tracker.assert_each_ran_once();
}

static OTHERS_DROPPED: AtomicBool = AtomicBool::new(false);
static HOLDER_ON_DRAINER: AtomicBool = AtomicBool::new(false);
static HOLDER_WAIT_TIMED_OUT: AtomicBool = AtomicBool::new(false);
static HOLDER_DONE: AtomicBool = AtomicBool::new(false);

/// Owns a runtime handle; its destructor drops it, as the last one, on the drainer.
struct Holder {
    rt: Option<Runtime>,
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Wait (bounded) until the test has dropped every other handle, so that ours is last.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !OTHERS_DROPPED.load(Ordering::Acquire) {
            if Instant::now() >= deadline {
                HOLDER_WAIT_TIMED_OUT.store(true, Ordering::Relaxed);
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let on_drainer = std::thread::current().name() == Some("sigdrop-drainer");
        HOLDER_ON_DRAINER.store(on_drainer, Ordering::Relaxed);
        drop(self.rt.take());
        HOLDER_DONE.store(true, Ordering::Release);
    }
}

#[test]
fn last_handle_dropped_by_a_destructor_on_the_drainer() {
    let _serial = drainer_tests();
    let baseline = drainer_threads();
    const N: usize = 200;
    let tracker = Tracker::new(N);
    let rt = Runtime::builder()
        .policy(Policy::AlwaysDefer)
        .build()
        .unwrap();
    // The thread names itself once it runs.
    wait_until(
        Duration::from_secs(10),
        "the drainer thread to start",
        || {
            format!(
                "{} drainer threads (baseline {baseline})",
                drainer_threads()
            )
        },
        || drainer_threads() == baseline + 1,
    );

    let before: Vec<RefSlot<Box<Obj>>> = (0..N / 2).map(|_| RefSlot::new(&rt)).collect();
    let after: Vec<RefSlot<Box<Obj>>> = (N / 2..N).map(|_| RefSlot::new(&rt)).collect();
    for (i, slot) in before.iter().chain(&after).enumerate() {
        assert!(slot.xchg(Some(tracker.obj(i))).unwrap().is_none());
    }
    let holder_slot = RefSlot::new(&rt);
    let holder = Box::new(Holder {
        rt: Some(rt.clone()),
    });
    assert!(holder_slot.xchg(Some(holder)).unwrap().is_none());

    // Queue (AlwaysDefer: every teardown goes to the drainer) objects, the holder, objects,
    // dropping each slot's handle as we go; then our own handle.
    drop(before);
    drop(holder_slot);
    drop(after);
    drop(rt);
    OTHERS_DROPPED.store(true, Ordering::Release);

    wait_until(
        Duration::from_secs(10),
        "the holder to drop the last handle",
        || "holder still running".to_string(),
        || HOLDER_DONE.load(Ordering::Acquire),
    );
    assert!(!HOLDER_WAIT_TIMED_OUT.load(Ordering::Relaxed));
    assert!(
        HOLDER_ON_DRAINER.load(Ordering::Relaxed),
        "the holder's destructor ran on the drainer thread"
    );
    wait_until(
        Duration::from_secs(10),
        "every object to run and the drainer thread to exit",
        || {
            format!(
                "{} of {N} ran, {} drainer threads (baseline {baseline})",
                tracker.ran_total(),
                drainer_threads()
            )
        },
        || tracker.ran_total() == N as u64 && drainer_threads() == baseline,
    );
    tracker.assert_each_ran_once();
}

#[test]
fn many_pending_objects_run_when_the_last_handle_drops() {
    let _serial = drainer_tests();
    let baseline = drainer_threads();
    const N: usize = 10_000;
    let tracker = Tracker::new(N);
    let rt = Runtime::new().unwrap();
    let slots: Vec<RefSlot<Box<Obj>>> = (0..N).map(|_| RefSlot::new(&rt)).collect();
    for (i, slot) in slots.iter().enumerate() {
        assert!(slot.xchg(Some(tracker.obj(i))).unwrap().is_none());
    }
    {
        let _nmi = restricted::enter();
        for slot in &slots {
            slot.clear(); // deferred; the drainer may be running some already
        }
    }
    let s = rt.stats();
    assert_eq!(s.offloaded, N as u64, "{s:?}");
    assert_eq!(tracker.in_restricted.load(Ordering::Relaxed), 0);

    drop(slots);
    drop(rt); // the last handle, in ordinary context: joins the drainer, runs the rest
    assert_eq!(
        tracker.ran_total(),
        N as u64,
        "all destructors ran before the drop returned"
    );
    tracker.assert_each_ran_once();
    wait_until(
        Duration::from_secs(10),
        "the joined drainer thread to disappear",
        || {
            format!(
                "{} drainer threads (baseline {baseline})",
                drainer_threads()
            )
        },
        || drainer_threads() == baseline,
    );
}

/// An object of one runtime that owns a handle of another; its destructor waits (bounded) until
/// its counterpart's destructor is running too, then drops the handle — the last one.
struct Crossed {
    other: Option<Runtime>,
    arrived: Arc<AtomicU64>,
    finished: Arc<AtomicU64>,
    on_drainer: Arc<AtomicU64>,
}

impl Drop for Crossed {
    fn drop(&mut self) {
        if std::thread::current().name() == Some("sigdrop-drainer") {
            self.on_drainer.fetch_add(1, Ordering::Relaxed);
        }
        self.arrived.fetch_add(1, Ordering::AcqRel);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.arrived.load(Ordering::Acquire) < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(self.other.take()); // the last handle of the other runtime
        self.finished.fetch_add(1, Ordering::Release);
    }
}

#[test]
fn two_drainers_dropping_each_others_last_handle_do_not_wait_for_each_other() {
    let _serial = drainer_tests();
    let baseline = drainer_threads();
    // No shutdown timeout: the only way out is that no drainer ever waits for another.
    let build = || {
        Runtime::builder()
            .policy(Policy::AlwaysDefer)
            .shutdown_timeout(None)
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    let arrived = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU64::new(0));
    let on_drainer = Arc::new(AtomicU64::new(0));
    let crossed = |other: &Runtime| {
        Box::new(Crossed {
            other: Some(other.clone()),
            arrived: Arc::clone(&arrived),
            finished: Arc::clone(&finished),
            on_drainer: Arc::clone(&on_drainer),
        })
    };
    let in_a = RefSlot::new(&a);
    let in_b = RefSlot::new(&b);
    assert!(in_a.xchg(Some(crossed(&b))).unwrap().is_none());
    assert!(in_b.xchg(Some(crossed(&a))).unwrap().is_none());
    drop((a, b));
    // Each object now holds the other runtime's last handle but one (its slot's). Hand both
    // to their drainers (AlwaysDefer), then drop the slots.
    in_a.clear();
    in_b.clear();
    drop((in_a, in_b));
    wait_until(
        Duration::from_secs(20),
        "both destructors to drop their handles and both drainers to exit",
        || {
            format!(
                "{} arrived, {} finished, {} drainer threads (baseline {baseline})",
                arrived.load(Ordering::Relaxed),
                finished.load(Ordering::Relaxed),
                drainer_threads()
            )
        },
        || finished.load(Ordering::Acquire) == 2 && drainer_threads() == baseline,
    );
    assert_eq!(
        on_drainer.load(Ordering::Relaxed),
        2,
        "both destructors ran on drainer threads"
    );
}

static STUCK_ENTERED: AtomicBool = AtomicBool::new(false);
static STUCK_RELEASE: AtomicBool = AtomicBool::new(false);
static STUCK_DONE: AtomicBool = AtomicBool::new(false);

/// A destructor that does not return until the test lets it (bounded at 20 s).
struct Stuck;

impl Drop for Stuck {
    fn drop(&mut self) {
        STUCK_ENTERED.store(true, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !STUCK_RELEASE.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        STUCK_DONE.store(true, Ordering::Release);
    }
}

#[test]
fn shutdown_gives_up_on_a_stuck_destructor_and_runs_the_rest() {
    let _serial = drainer_tests();
    let baseline = drainer_threads();
    const N: usize = 100;
    let tracker = Tracker::new(N);
    let rt = Runtime::builder()
        .shutdown_timeout(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    let stuck = RefSlot::new(&rt);
    assert!(stuck.xchg(Some(Box::new(Stuck))).unwrap().is_none());
    let slots: Vec<RefSlot<Box<Obj>>> = (0..N).map(|_| RefSlot::new(&rt)).collect();
    for (i, slot) in slots.iter().enumerate() {
        assert!(slot.xchg(Some(tracker.obj(i))).unwrap().is_none());
    }
    {
        let _restricted = restricted::enter();
        stuck.clear(); // to the drainer, which gets stuck in it
    }
    wait_until(
        Duration::from_secs(10),
        "the drainer to enter the stuck destructor",
        || format!("{:?}", rt.stats()),
        || STUCK_ENTERED.load(Ordering::Acquire),
    );
    {
        let _restricted = restricted::enter();
        for slot in &slots {
            slot.clear(); // queued behind it: the stuck drainer will not take these
        }
    }
    drop((stuck, slots));
    let started = Instant::now();
    let report = rt.shutdown().expect("the last handle");
    let took = started.elapsed();
    assert!(!report.drainer_waited, "{report:?}");
    // The stuck object itself: its drainer holds it.
    assert_eq!(report.left_to_drainer, 1, "{report:?}");
    assert_eq!(report.destroyed, N as u64, "{report:?}");
    assert_eq!(
        tracker.ran_total(),
        N as u64,
        "ran before shutdown returned"
    );
    tracker.assert_each_ran_once();
    assert!(!STUCK_DONE.load(Ordering::Acquire));
    // Not a timing assertion: a shutdown that waited for the stuck destructor would take the
    // full 20 s it waits for the release below.
    assert!(took < Duration::from_secs(15), "{took:?}");
    STUCK_RELEASE.store(true, Ordering::Release);
    wait_until(
        Duration::from_secs(10),
        "the stuck destructor to finish and its drainer to exit",
        || {
            format!(
                "{} drainer threads (baseline {baseline})",
                drainer_threads()
            )
        },
        || STUCK_DONE.load(Ordering::Acquire) && drainer_threads() == baseline,
    );
}

/// A destructor that forgets a restricted-context guard.
struct ForgetsRestricted;

impl Drop for ForgetsRestricted {
    fn drop(&mut self) {
        std::mem::forget(restricted::enter());
    }
}

#[test]
fn a_destructor_that_forgets_a_restricted_guard_leaves_the_drainer_in_ordinary_context() {
    const N: usize = 10;
    let tracker = Tracker::new(2 * N);
    let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
    // Another runtime whose last handle is owned by an object destroyed after the stray guard:
    // dropped in ordinary context it shuts down and runs its objects; dropped in what looks like
    // restricted context it would be leaked with them.
    let other = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
    let other_slots: Vec<RefSlot<Box<Obj>>> = (N..2 * N).map(|_| RefSlot::new(&other)).collect();
    for (i, slot) in other_slots.iter().enumerate() {
        assert!(slot.xchg(Some(tracker.obj(N + i))).unwrap().is_none());
    }
    let forgets = RefSlot::new(&rt);
    assert!(
        forgets
            .xchg(Some(Box::new(ForgetsRestricted)))
            .unwrap()
            .is_none()
    );
    let objs: Vec<RefSlot<Box<Obj>>> = (0..N).map(|_| RefSlot::new(&rt)).collect();
    for (i, slot) in objs.iter().enumerate() {
        assert!(slot.xchg(Some(tracker.obj(i))).unwrap().is_none());
    }
    let holder = RefSlot::new(&rt);
    assert!(
        holder
            .xchg(Some(Box::new((other, other_slots))))
            .unwrap()
            .is_none()
    );
    {
        let _restricted = restricted::enter();
        forgets.clear();
        for slot in &objs {
            slot.clear();
        }
        holder.clear();
    }
    assert_eq!(rt.drain().unwrap(), N + 2);
    assert!(
        !restricted::is_active(),
        "the drain left this thread restricted"
    );
    assert_eq!(rt.stats().stray_restricted, 1);
    assert_eq!(tracker.ran_total(), 2 * N as u64);
    tracker.assert_each_ran_once();

    // The same inside the final shutdown (the last handle's drain loop).
    assert!(
        forgets
            .xchg(Some(Box::new(ForgetsRestricted)))
            .unwrap()
            .is_none()
    );
    {
        let _restricted = restricted::enter();
        forgets.clear();
    }
    drop((forgets, objs, holder));
    let report = rt.shutdown().expect("the last handle");
    assert_eq!(report.destroyed, 1, "{report:?}");
    assert!(!restricted::is_active());
}

/// An object of one runtime whose destructor, once its counterpart's is running too, replaces
/// the object in a slot of the other runtime `n` times: under `AlwaysDefer` every replaced
/// object is handed to that runtime's drainer, which is busy in the counterpart's destructor.
struct Flood {
    into: Option<RefSlot<Box<u64>>>,
    n: u64,
    arrived: Arc<AtomicU64>,
    finished: Arc<AtomicU64>,
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.arrived.load(Ordering::Acquire) < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let slot = self.into.take().unwrap();
        for i in 0..self.n {
            drop(slot.xchg(Some(Box::new(i))));
        }
        self.finished.fetch_add(1, Ordering::Release);
    }
}

#[test]
fn two_drainers_flooding_each_other_past_the_bound_do_not_wait_for_each_other() {
    let _serial = drainer_tests();
    let build = || {
        Runtime::builder()
            .policy(Policy::AlwaysDefer)
            .max_pending(64)
            .build()
            .unwrap()
    };
    let (a, b) = (build(), build());
    let arrived = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU64::new(0));
    let flood = |into: &Runtime| {
        Box::new(Flood {
            into: Some(RefSlot::new(into)),
            n: 10_000,
            arrived: Arc::clone(&arrived),
            finished: Arc::clone(&finished),
        })
    };
    let in_a = RefSlot::new(&a);
    let in_b = RefSlot::new(&b);
    assert!(in_a.xchg(Some(flood(&b))).unwrap().is_none());
    assert!(in_b.xchg(Some(flood(&a))).unwrap().is_none());
    in_a.clear(); // to a's drainer: floods b
    in_b.clear(); // to b's drainer: floods a
    wait_until(
        Duration::from_secs(30),
        "both flooding destructors to finish",
        || {
            format!(
                "{} arrived, {} finished; a {:?}; b {:?}",
                arrived.load(Ordering::Relaxed),
                finished.load(Ordering::Relaxed),
                a.stats(),
                b.stats()
            )
        },
        || finished.load(Ordering::Acquire) == 2,
    );
    for rt in [&a, &b] {
        let s = rt.stats();
        assert!(s.peak_pending <= 64 + 64 * 8 + 64, "bounded: {s:?}");
    }
}

static SLOW_DONE: AtomicU64 = AtomicU64::new(0);

/// A destructor that takes 5 ms.
struct Slow;

impl Drop for Slow {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(5));
        SLOW_DONE.fetch_add(1, Ordering::Release);
    }
}

#[test]
fn shutdown_waits_for_a_drainer_that_keeps_finishing_destructors() {
    let _serial = drainer_tests();
    const N: usize = 200;
    // The timeout is far shorter than the whole chain (1 s) but far longer than one destructor
    // (80 of them: a drainer thread the scheduler leaves without a CPU for a while on a loaded
    // machine must still not look stuck).
    let rt = Runtime::builder()
        .shutdown_timeout(Some(Duration::from_millis(400)))
        .build()
        .unwrap();
    let slots: Vec<RefSlot<Box<Slow>>> = (0..N).map(|_| RefSlot::new(&rt)).collect();
    for slot in &slots {
        assert!(slot.xchg(Some(Box::new(Slow))).unwrap().is_none());
    }
    {
        let _restricted = restricted::enter();
        for slot in &slots {
            slot.clear(); // one chain for the drainer
        }
    }
    wait_until(
        Duration::from_secs(10),
        "the drainer to start on the chain",
        || format!("{:?}", rt.stats()),
        || SLOW_DONE.load(Ordering::Acquire) > 0,
    );
    drop(slots);
    let report = rt.shutdown().expect("the last handle");
    assert!(report.drainer_waited, "{report:?}");
    assert_eq!(report.left_to_drainer, 0, "{report:?}");
    assert_eq!(SLOW_DONE.load(Ordering::Acquire), N as u64);
}

static CHILDREN_DONE: AtomicU64 = AtomicU64::new(0);

/// An object in a readable slot owned by a `Parent`.
struct Child;

impl Drop for Child {
    fn drop(&mut self) {
        CHILDREN_DONE.fetch_add(1, Ordering::Release);
    }
}

/// An object that owns a readable slot of its own runtime, holding a `Child`, which its
/// destructor retires into that runtime (see `PairedParent`'s: a `clear`, as the slot's own drop
/// would destroy the child inline).
struct Parent {
    child: ReadSlot<Box<Child>>,
}

impl Drop for Parent {
    fn drop(&mut self) {
        self.child.clear();
    }
}

#[test]
fn destructors_that_retire_into_their_own_runtime_past_the_bound_finish() {
    let _serial = drainer_tests();
    const N: usize = 200;
    let rt = Runtime::builder().max_pending(64).build().unwrap();
    let parents: Vec<ReadSlot<Box<Parent>>> = (0..N).map(|_| ReadSlot::new(&rt)).collect();
    for slot in &parents {
        let child = ReadSlot::new(&rt);
        assert!(child.xchg(Some(Box::new(Child))).unwrap().is_none());
        assert!(
            slot.xchg(Some(Box::new(Parent { child })))
                .unwrap()
                .is_none()
        );
    }
    {
        // Under a guard, so the parents pile up in batches waiting for a grace period; once it
        // passes a drainer takes them, and each destructor retires a child into the same
        // runtime, over the bound, while that drainer is still running the parents' batches.
        let _guard = read::enter();
        for slot in &parents {
            slot.clear();
        }
    }
    drop(parents);
    wait_until(
        Duration::from_secs(30),
        "every child to be destroyed",
        || format!("{CHILDREN_DONE:?} of {N}: {:?}", rt.stats()),
        || CHILDREN_DONE.load(Ordering::Acquire) == N as u64,
    );
    let report = rt.shutdown().expect("the last handle");
    assert_eq!(report.left_to_drainer, 0, "{report:?}");
}

/// An object that owns a readable slot of its own runtime; the first of each helper's batches
/// also waits for the other helper to reach its own first one, so both are in the middle of
/// their batches at the same time.
struct PairedParent {
    child: Option<ReadSlot<Box<Child>>>,
    meet: Option<Arc<Barrier>>,
}

impl Drop for PairedParent {
    fn drop(&mut self) {
        if let Some(meet) = self.meet.take() {
            meet.wait();
        }
        if let Some(child) = self.child.take() {
            // Retired into the same runtime, past the bound. A `clear`, not the slot's drop: a
            // slot being dropped has no readers left, so under `Policy::Auto` its drop destroys
            // the child inline and hands nothing to the runtime (this test then modelled no
            // deadlock, and a thread waiting for the other's batches went unnoticed).
            child.clear();
        }
    }
}

#[test]
fn two_threads_destroying_batches_that_retire_past_the_bound_do_not_wait_for_each_other() {
    // Serialised with the other test that counts `Child` destructions.
    let _serial = drainer_tests();
    let done_before = CHILDREN_DONE.load(Ordering::Acquire);
    // One shard and a bound of one batch; the batch size is the crate's (64).
    const BATCH: usize = 64;
    let rt = Runtime::builder()
        .shards(1)
        .max_pending(BATCH)
        .drainer(Drainer::Manual)
        .build()
        .unwrap();
    let meet = Arc::new(Barrier::new(2));
    // Each helper installs into its slot before the parents are queued: a thread's first
    // install into a runtime looks at the backlog, and, over the bound with a manual drainer,
    // runs cycles itself, which could take every batch of parents on one thread (and wait at
    // `meet` for ever). Then the helpers' writes are replaces, which never look.
    let (installed, start) = (Arc::new(Barrier::new(3)), Arc::new(Barrier::new(3)));
    let helpers: Vec<_> = (0..2)
        .map(|_| {
            let (rt, installed, start) = (rt.clone(), installed.clone(), start.clone());
            std::thread::spawn(move || {
                // Closing a batch of its own makes each thread help: it takes the two oldest
                // ready batches of parents and destroys them, and every parent retires a child
                // past the bound while the other thread is doing the same.
                let slot: ReadSlot<Box<Child>> = ReadSlot::new(&rt);
                assert!(slot.xchg(Some(Box::new(Child))).unwrap().is_none());
                installed.wait();
                start.wait();
                for _ in 0..BATCH {
                    drop(slot.xchg(Some(Box::new(Child))).unwrap());
                }
            })
        })
        .collect();
    installed.wait();
    {
        let parents: ReadSlot<Box<PairedParent>> = ReadSlot::new(&rt);
        // Four batches of parents, stamped with a grace period this guard holds up, so they
        // queue (the writer gives up on the bound under its own guard). The first parent of
        // the first and the third batch waits at the barrier: each helper below takes two.
        let _guard = read::enter();
        for i in 0..4 * BATCH + 1 {
            let child = ReadSlot::new(&rt);
            assert!(child.xchg(Some(Box::new(Child))).unwrap().is_none());
            let meet = (i == 0 || i == 2 * BATCH).then(|| meet.clone());
            let parent = Box::new(PairedParent {
                child: Some(child),
                meet,
            });
            drop(parents.xchg(Some(parent)).unwrap());
        }
        // Nothing of the test's is left to drop if a helper hangs (a drop would retire into
        // the runtime and wait behind the hung helpers, hiding the failure).
        drop(parents);
    }
    start.wait();
    wait_until(
        Duration::from_secs(20),
        "both helpers to finish",
        || format!("{:?}", rt.stats()),
        || helpers.iter().all(|h| h.is_finished()),
    );
    for helper in helpers {
        helper.join().unwrap();
    }
    // Every parent and every child, each exactly once (parents hold handles to the runtime, so
    // drain until they are gone).
    let children = done_before + (4 * BATCH + 1 + 2 * (BATCH + 1)) as u64;
    wait_until(
        Duration::from_secs(20),
        "every child to be destroyed",
        || format!("{CHILDREN_DONE:?} of {children}: {:?}", rt.stats()),
        || {
            rt.drain().unwrap();
            CHILDREN_DONE.load(Ordering::Acquire) >= children
        },
    );
    let report = rt.shutdown().expect("the last handle");
    assert_eq!(report.left_to_drainer, 0, "{report:?}");
    assert_eq!(CHILDREN_DONE.load(Ordering::Acquire), children);
}

/// Owns a runtime's last handle; its destructor shuts that runtime down and sends the report,
/// with whether it ran on a drainer thread.
struct ShutsDown {
    rt: Option<Runtime>,
    report: std::sync::mpsc::Sender<(bool, Option<sigdrop::ShutdownReport>)>,
}

impl Drop for ShutsDown {
    fn drop(&mut self) {
        let on_drainer = std::thread::current().name() == Some("sigdrop-drainer");
        let report = self.rt.take().and_then(Runtime::shutdown);
        let _ = self.report.send((on_drainer, report));
    }
}

/// A shutdown that runs on the runtime's own drainer thread (a destructor there let go of the
/// last handle) cannot wait for that thread, and so does not: its report says
/// `drainer_waited: false`, as the documentation promises for a shutdown on a drainer thread.
#[test]
fn a_shutdown_on_the_drainer_thread_reports_that_it_did_not_wait_for_it() {
    let _serial = drainer_tests();
    let baseline = drainer_threads();
    let rt = Runtime::new().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let holder = Owned::new(
        &rt,
        ShutsDown {
            rt: Some(rt.clone()),
            report: tx,
        },
    );
    // The box counts in the runtime's state, not in its handles: the one it owns is the last.
    drop(rt);
    {
        let _nmi = restricted::enter();
        drop(holder); // to the drainer thread, which destroys it
    }
    let (on_drainer, report) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the drainer thread destroyed the box within 10 s");
    assert!(on_drainer, "the box was destroyed on the drainer thread");
    let report = report.expect("the box held the last handle");
    assert!(
        !report.drainer_waited,
        "a shutdown on the drainer thread cannot have waited for it: {report:?}"
    );
    // It finishes on its own once the destructor has returned.
    wait_until(
        Duration::from_secs(10),
        "the drainer thread to exit",
        || {
            format!(
                "{} drainer threads (baseline {baseline})",
                drainer_threads()
            )
        },
        || drainer_threads() == baseline,
    );
}
