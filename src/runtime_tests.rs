//! Unit tests of the runtime, including the paths only a fault hook can reach.

use super::*;
use crate::{Drainer, Error, RefSlot, Runtime, restricted};
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};

static DROPS: StdAtomicUsize = StdAtomicUsize::new(0);

struct Counted;
impl Drop for Counted {
    fn drop(&mut self) {
        DROPS.fetch_add(1, StdOrdering::SeqCst);
    }
}

fn manual() -> Runtime {
    Runtime::builder()
        .shards(2)
        .headroom(4)
        .hysteresis(2)
        .emergency_capacity(1)
        .drainer(Drainer::Manual)
        .build()
        .unwrap()
}

fn quiescent_invariants(rt: &Runtime, refs: usize) {
    let s = rt.stats();
    assert_eq!(s.active, 0);
    assert_eq!(s.refs, refs, "{s:?}");
    assert_eq!(
        rt.audit_idle(),
        s.total,
        "every job is back in a freelist: {s:?}"
    );
    assert_eq!(s.idle, s.spare + s.reserved + s.refs);
    // The backlog's count past the lists holds what its stages hold, and nothing is announced.
    let (past, announced, stages) = rt.inner().audit_backlog();
    assert_eq!((past, announced), (stages, 0), "{s:?}");
}

/// A runtime with a manual drainer on one shard, `headroom` jobs spare.
fn one_shard(headroom: usize) -> Runtime {
    Runtime::builder()
        .shards(1)
        .headroom(headroom)
        .drainer(Drainer::Manual)
        .build()
        .unwrap()
}

/// `n` readable slots of `rt`, each holding a box.
fn readable_slots(rt: &Runtime, n: usize) -> Vec<crate::ReadSlot<Box<u64>>> {
    (0..n as u64)
        .map(|i| {
            let slot = crate::ReadSlot::new(rt);
            assert!(slot.xchg(Some(Box::new(i))).unwrap().is_none());
            slot
        })
        .collect()
}

/// `n` write-only slots of `rt`, each holding a box.
fn plain_slots(rt: &Runtime, n: usize) -> Vec<RefSlot<Box<u64>>> {
    (0..n as u64)
        .map(|i| {
            let slot = RefSlot::new(rt);
            assert!(slot.xchg(Some(Box::new(i))).unwrap().is_none());
            slot
        })
        .collect()
}

/// Runs `teardowns` as a signal handler would: each object it clears goes with a job.
fn in_handler(teardowns: impl FnOnce()) {
    let _nmi = restricted::enter();
    teardowns();
}

#[test]
fn emergency_area_parks_then_leaks_and_drain_empties_it() {
    // One test owns DROPS: tests in this module run in parallel.
    DROPS.store(0, StdOrdering::SeqCst);
    let rt = manual();
    let slots: Vec<RefSlot<Box<Counted>>> = (0..3).map(|_| RefSlot::new(&rt)).collect();
    for s in &slots {
        assert!(s.xchg(Some(Box::new(Counted))).unwrap().is_none());
    }
    rt.inner().faults.fail_pops.store(2, Ordering::SeqCst);
    let leaked = {
        let _nmi = restricted::enter();
        drop(slots[0].take()); // parked
        let second = slots[1].take().unwrap();
        // Capture the pointer: the area (capacity 1) is full, so this one leaks.
        let ptr = NonNull::from(&*second);
        drop(second);
        ptr
    };
    assert_eq!(
        DROPS.load(StdOrdering::SeqCst),
        0,
        "no destructor in restricted context"
    );
    let s = rt.stats();
    assert_eq!((s.emergency, s.leaked), (1, 1));
    // The parked object waits like any other: in `pending`.
    assert_eq!(s.pending, 1, "{s:?}");
    assert_eq!(rt.drain().unwrap(), 1);
    assert_eq!(DROPS.load(StdOrdering::SeqCst), 1);
    assert_eq!(rt.stats().pending, 0);
    // The faults are used up: the third teardown takes the normal path.
    {
        let _nmi = restricted::enter();
        slots[2].clear();
    }
    assert_eq!(rt.drain().unwrap(), 1);
    assert_eq!(DROPS.load(StdOrdering::SeqCst), 2);
    quiescent_invariants(&rt, 0);
    // Reclaim the deliberately leaked object so the test itself does not leak.
    // SAFETY: the runtime leaked it (counted above) and nobody else holds it.
    drop(unsafe { Box::from_raw(leaked.as_ptr()) });
}

use std::ptr::NonNull;

#[test]
fn growth_refill_and_trim_follow_the_watermarks() {
    let rt = manual();
    let slots: Vec<RefSlot<Box<u32>>> = (0..20).map(|_| RefSlot::new(&rt)).collect();
    for (i, s) in slots.iter().enumerate() {
        s.xchg(Some(Box::new(i as u32))).unwrap();
        let st = rt.stats();
        assert!(
            st.spare <= 4,
            "growth never aims above the headroom: {st:?}"
        );
    }
    quiescent_invariants(&rt, 20);
    for s in &slots {
        s.clear();
        let st = rt.stats();
        assert!(
            st.spare <= 4 + 2,
            "trim keeps spare within headroom + hysteresis: {st:?}"
        );
    }
    quiescent_invariants(&rt, 0);
    assert!(rt.stats().trimmed > 0);
    assert!(rt.stats().total <= 6);
}

#[test]
fn restricted_install_uses_reserved_jobs_then_refuses() {
    let rt = Runtime::builder()
        .shards(1)
        .headroom(0)
        .hysteresis(0)
        .drainer(Drainer::Manual)
        .build()
        .unwrap();
    rt.reserve(2).unwrap();
    let slots: Vec<RefSlot<Box<u8>>> = (0..3).map(|_| RefSlot::new(&rt)).collect();
    let boxes: Vec<Box<u8>> = (0..3).map(Box::new).collect(); // made in ordinary context
    let mut boxes = boxes.into_iter();
    let value = {
        let _nmi = restricted::enter();
        assert!(slots[0].xchg(boxes.next()).is_ok());
        assert!(slots[1].xchg(boxes.next()).is_ok());
        let rejected = slots[2].xchg(boxes.next()).unwrap_err();
        assert!(matches!(rejected.error(), Error::NoSpareJob { .. }));
        // Dropping the rejected Box here would free in restricted context; keep it instead.
        rejected.into_inner()
    };
    drop(boxes); // the (empty) iterator's buffer is freed in ordinary context
    assert_eq!(*value, 2);
    assert!(slots[2].is_empty());
    assert_eq!(rt.stats().reserve_failures, 1);
}

#[test]
fn a_claim_dropped_unspent_goes_back_to_its_own_counter() {
    let rt = Runtime::builder()
        .shards(1)
        .headroom(0)
        .hysteresis(0)
        .drainer(Drainer::Manual)
        .build()
        .unwrap();
    rt.reserve(1).unwrap();
    let inner = rt.inner();
    {
        let _nmi = restricted::enter();
        let claim = inner.claim_for_install().unwrap(); // the reserved job
        assert_eq!((rt.stats().reserved, rt.stats().spare), (0, 0));
        drop(claim);
    }
    assert_eq!((rt.stats().reserved, rt.stats().spare), (1, 0));
    // In ordinary context an install grows; unspent, that job becomes spare (and is trimmed).
    drop(inner.claim_for_install().unwrap());
    let s = rt.stats();
    assert_eq!((s.reserved, s.spare, s.total), (1, 0, 1), "{s:?}");
    // Spent, it is the object's: it comes back as spare when the object leaves.
    inner.claim_for_install().unwrap().spend();
    inner.release_claim();
    assert_eq!(rt.stats().reserved, 1);
    quiescent_invariants(&rt, 0);
}

#[test]
fn detached_reserve_in_a_handler_takes_spare_before_reserved() {
    let rt = Runtime::builder()
        .shards(1)
        .headroom(0)
        .hysteresis(4)
        .drainer(Drainer::Manual)
        .build()
        .unwrap();
    let slot = RefSlot::new(&rt);
    slot.xchg(Some(Box::new(1u8))).unwrap();
    let mut olds: Vec<_> = (2..5u8)
        .map(|i| slot.xchg(Some(Box::new(i))).unwrap().unwrap())
        .collect();
    rt.reserve(2).unwrap();
    assert_eq!(rt.unreserve(1).unwrap(), 1); // one spare, one reserved
    {
        let _nmi = restricted::enter();
        olds[0].reserve().unwrap();
        assert_eq!(
            (rt.stats().reserved, rt.stats().spare),
            (1, 0),
            "spare first"
        );
        olds[1].reserve().unwrap();
        let s = rt.stats();
        assert_eq!((s.reserved, s.reserved_for_teardowns), (0, 1), "{s:?}");
        match olds[2].reserve() {
            Err(Error::NoSpareJob {
                runtime,
                reserved: 0,
                spare: 0,
            }) => assert_eq!(runtime, rt.id()),
            other => panic!("unexpected {other:?}"),
        }
        assert!(olds[0].is_reserved() && olds[1].is_reserved() && !olds[2].is_reserved());
    }
    drop(olds); // ordinary context: destroyed inline, the two claims released
    slot.clear();
    quiescent_invariants(&rt, 0);
}

#[test]
fn replace_keeps_the_claim_and_surplus_claims_are_returned() {
    let rt = manual();
    let slot = RefSlot::new(&rt);
    slot.xchg(Some(Box::new(1u8))).unwrap();
    let before = rt.stats();
    let old = slot.xchg(Some(Box::new(2u8))).unwrap().unwrap();
    assert_eq!(*old, 1);
    assert_eq!(
        rt.stats().spare,
        before.spare,
        "replace touches no ledger counter"
    );
    drop(old);
    quiescent_invariants(&rt, 1);
}

#[test]
fn drain_and_reserve_refuse_in_restricted_context() {
    let rt = manual();
    let _nmi = restricted::enter();
    assert!(matches!(rt.drain(), Err(Error::Restricted)));
    assert!(matches!(rt.reserve(1), Err(Error::Restricted)));
    assert!(matches!(rt.trim(), Err(Error::Restricted)));
    assert!(matches!(Runtime::builder().build(), Err(Error::Restricted)));
}

#[test]
fn reserve_beyond_the_limit_fails_before_allocating() {
    let rt = Runtime::builder()
        .max_jobs(8)
        .headroom(2)
        .drainer(Drainer::Manual)
        .build()
        .unwrap();
    assert!(matches!(
        rt.reserve(usize::MAX),
        Err(Error::CapacityExceeded { max_jobs: 8 })
    ));
    assert_eq!(rt.stats().total, 0);
    rt.reserve(8).unwrap();
    assert!(matches!(rt.reserve(1), Err(Error::CapacityExceeded { .. })));
    assert_eq!(rt.unreserve(8).unwrap(), 8);
    quiescent_invariants(&rt, 0);
}

#[test]
fn dropping_the_last_handle_runs_queued_and_parked_objects() {
    use std::sync::Arc as StdArc;
    let drops = StdArc::new(StdAtomicUsize::new(0));
    struct Flag(StdArc<StdAtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            assert!(!restricted::is_active());
            self.0.fetch_add(1, StdOrdering::SeqCst);
        }
    }
    let rt = manual();
    let slots: Vec<RefSlot<Box<Flag>>> = (0..3).map(|_| RefSlot::new(&rt)).collect();
    for s in &slots {
        s.xchg(Some(Box::new(Flag(drops.clone())))).unwrap();
    }
    rt.inner().faults.fail_pops.store(1, Ordering::SeqCst);
    {
        let _nmi = restricted::enter();
        for s in &slots {
            s.clear(); // one parked, two queued
        }
    }
    let s = rt.stats();
    assert_eq!((s.emergency, s.offloaded), (1, 3));
    assert_eq!(drops.load(StdOrdering::SeqCst), 0);
    drop(slots);
    drop(rt);
    assert_eq!(drops.load(StdOrdering::SeqCst), 3);
}

/// Jobs ever allocated plus jobs ever freed: every growth and every trim is counted, so the sum
/// is the number of allocator round trips the pool has made.
fn grow_and_trim_events(rt: &Runtime) -> usize {
    let s = rt.stats();
    // Every job allocated is either still counted in `total` or was freed by a trim.
    let allocated = s.total + s.trimmed as usize;
    allocated + s.trimmed as usize
}

/// P5's hysteresis: a workload that installs `k` objects and removes them again, over and over,
/// with `k` chosen so that each install phase pulls the spare count below the refill watermark
/// (`headroom / 2`) and each removal phase pushes it above the headroom. Without the gap between
/// the refill target (`headroom`) and the trim trigger (`headroom + hysteresis`), every cycle
/// would trim `k - 1` jobs and grow them back. With it, the pool settles after the first cycle:
/// the number of grow and trim events is bounded by a constant, not by the number of cycles.
/// Counted in events, not time. Checked on both teardown paths: ordinary removal (the claim is
/// released, then trim may run) and restricted teardown (the drain returns the jobs, then trim
/// may run).
#[test]
fn install_remove_oscillation_around_the_watermark_does_not_thrash() {
    const HEADROOM: usize = 4;
    const HYSTERESIS: usize = 4;
    const CYCLES: usize = 100;
    for restricted_teardown in [false, true] {
        let rt = Runtime::builder()
            .shards(1)
            .headroom(HEADROOM)
            .hysteresis(HYSTERESIS)
            .drainer(Drainer::Manual)
            .build()
            .unwrap();
        let k = HEADROOM; // takes spare from the headroom to below headroom / 2, and back above
        let slots: Vec<RefSlot<Box<u32>>> = (0..k).map(|_| RefSlot::new(&rt)).collect();
        for _ in 0..CYCLES {
            for (i, s) in slots.iter().enumerate() {
                assert!(s.xchg(Some(Box::new(i as u32))).unwrap().is_none());
            }
            if restricted_teardown {
                {
                    let _nmi = restricted::enter();
                    for s in &slots {
                        s.clear();
                    }
                }
                assert_eq!(rt.drain().unwrap(), k);
            } else {
                for s in &slots {
                    s.clear();
                }
            }
        }
        quiescent_invariants(&rt, 0);
        let events = grow_and_trim_events(&rt);
        assert!(
            events <= k + HEADROOM,
            "{events} grow/trim events over {CYCLES} cycles (restricted teardown: \
             {restricted_teardown}): the pool thrashes: {:?}",
            rt.stats()
        );
    }
}

/// Trim frees spare jobs down to the headroom, never below it (P5: the pool shrinks back to
/// `refs + active + headroom`).
#[test]
fn trim_stops_at_the_headroom() {
    let rt = Runtime::builder()
        .shards(1)
        .headroom(4)
        .hysteresis(16)
        .drainer(Drainer::Manual)
        .build()
        .unwrap();
    let slots: Vec<RefSlot<Box<u32>>> = (0..10).map(|_| RefSlot::new(&rt)).collect();
    for (i, s) in slots.iter().enumerate() {
        s.xchg(Some(Box::new(i as u32))).unwrap();
    }
    for s in &slots {
        s.clear(); // spare stays within headroom + hysteresis: no automatic trim
    }
    let before = rt.stats();
    assert!(before.spare > 4, "{before:?}");
    assert_eq!(rt.trim().unwrap(), before.spare - 4);
    assert_eq!(rt.stats().spare, 4);
    quiescent_invariants(&rt, 0);
}

#[test]
fn growth_deals_jobs_to_shards_in_runs_of_neighbouring_indices() {
    let rt = Runtime::builder()
        .shards(3)
        .headroom(0)
        .hysteresis(0)
        .drainer(Drainer::Manual)
        .build()
        .unwrap();
    // Grown in batches of odd sizes: the runs follow the indices, not the batches.
    for n in [5, 7, 11, 40, 1] {
        rt.reserve(n).unwrap();
    }
    let inner = rt.inner();
    let total = inner.stats().total;
    assert_eq!(total, 64);
    let mut seen = 0;
    for shard in 0..3 {
        // SAFETY: the freelists, arena and shard count are the runtime's own; nothing else runs,
        // and each job popped here is pushed back below.
        let mut jobs: Vec<u32> =
            std::iter::from_fn(|| unsafe { inner.free.pop(&inner.arena, shard) }).collect();
        for &idx in &jobs {
            assert_eq!(
                idx as usize / crate::arena::RUN % 3,
                shard,
                "job {idx} was dealt to shard {shard}"
            );
        }
        seen += jobs.len();
        jobs.sort_unstable();
        for idx in jobs {
            // SAFETY: popped above, ours; back where it came from.
            unsafe { inner.free.push(&inner.arena, shard, idx) };
        }
    }
    assert_eq!(seen, total);
    assert_eq!(rt.audit_idle(), total);
}

#[test]
fn a_drain_that_leaves_objects_waiting_for_readers_records_them_in_the_peak() {
    // Objects torn down in a handler are counted by nobody there: the cycle that takes them and
    // leaves them batched for a grace period (a reader is inside) is what records the backlog.
    const N: usize = 40;
    let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
    let slots = readable_slots(&rt, N);
    let reader = crate::read::enter();
    in_handler(|| slots.iter().for_each(|s| s.clear()));
    assert_eq!(rt.stats().peak_pending, 0, "nobody has looked yet");
    assert_eq!(rt.drain().unwrap(), 0, "the reader holds them");
    let s = rt.stats();
    assert_eq!(s.pending, N, "{s:?}");
    assert!(s.peak_pending >= N, "the drain left {N} waiting: {s:?}");
    drop(reader);
    rt.drain_and_wait().unwrap();
    assert_eq!(rt.stats().pending, 0);
}

#[test]
fn an_object_parked_in_the_emergency_area_wakes_an_idle_drainer_thread() {
    let drops = std::sync::Arc::new(StdAtomicUsize::new(0));
    struct Flag(std::sync::Arc<StdAtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, StdOrdering::SeqCst);
        }
    }
    // A drainer thread with nothing to do sleeps until it is rung.
    let rt = Runtime::builder().emergency_capacity(1).build().unwrap();
    let slot = RefSlot::new(&rt);
    slot.xchg(Some(Box::new(Flag(drops.clone())))).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50)); // let it fall asleep
    rt.inner().faults.fail_pops.store(1, Ordering::SeqCst);
    {
        let _nmi = restricted::enter();
        slot.clear(); // no job: parked
    }
    assert_eq!(rt.stats().emergency, 1);
    // Nobody calls `drain`: only the drainer thread, woken by the park, destroys it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while drops.load(StdOrdering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the parked object waited 10 s for a drainer nobody woke: {:?}",
            rt.stats()
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn a_runtime_whose_handle_was_dropped_in_a_handler_is_freed_with_its_last_handle() {
    let rt = manual();
    let state = std::sync::Arc::downgrade(rt.inner_arc());
    let clone = rt.clone();
    {
        let _nmi = restricted::enter();
        drop(clone); // forgotten there: nothing may be freed in a handler
    }
    assert!(state.upgrade().is_some());
    drop(rt);
    assert!(
        state.upgrade().is_none(),
        "the runtime's state outlived its last handle"
    );
}

#[test]
fn a_list_being_taken_counts_in_the_backlog_until_its_chain_does() {
    let rt = one_shard(128);
    let inner = rt.inner();
    let slots = plain_slots(&rt, 100);
    in_handler(|| slots.iter().for_each(|s| s.clear()));
    assert_eq!(inner.backlog(), 100);
    // The drain stops between emptying the list and counting the chain, as a drainer
    // preempted there.
    let (paused_tx, paused_rx) = std::sync::mpsc::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel::<()>();
    *inner.faults.pause_after_take.lock().unwrap() = Some(Box::new(move || {
        paused_tx.send(()).unwrap();
        resume_rx.recv().unwrap();
    }));
    std::thread::scope(|scope| {
        let drainer = scope.spawn(|| rt.drain().unwrap());
        paused_rx.recv().unwrap();
        let (queued, backlog, pending) = (inner.lists.queued(), inner.backlog(), inner.pending());
        resume_tx.send(()).unwrap();
        assert_eq!(drainer.join().unwrap(), 100);
        assert_eq!(queued, 0, "the list was taken");
        // Writers comparing the backlog with `max_pending` still saw the jobs; the statistic
        // may miss them for that moment, never count them twice.
        assert_eq!(backlog, 100);
        assert!(pending <= 100, "{pending}");
    });
    assert_eq!(inner.backlog(), 0);
    assert_eq!(inner.audit_backlog(), (0, 0, 0));
}

#[test]
fn a_chains_objects_batched_for_readers_stay_in_the_backlog_as_one_count() {
    // 150 objects that need a grace period, torn down in a handler while a reader is inside:
    // the drain batches them from its chain (two full batches and a partial one). The count
    // past the lists holds them as it held the chain, and matches the stages' own counts.
    const N: usize = 150;
    let rt = one_shard(N);
    let inner = rt.inner();
    let slots = readable_slots(&rt, N);
    let reader = crate::read::enter();
    in_handler(|| slots.iter().for_each(|s| s.clear()));
    assert_eq!((inner.backlog(), inner.audit_backlog()), (N, (0, 0, 0)));
    assert_eq!(rt.drain().unwrap(), 0, "the reader holds them");
    assert_eq!((inner.backlog(), inner.pending()), (N, N));
    assert_eq!(inner.audit_backlog(), (N, 0, N));
    drop(reader);
    assert_eq!(rt.drain_and_wait().unwrap(), N);
    assert_eq!((inner.backlog(), inner.pending()), (0, 0));
    assert_eq!(inner.audit_backlog(), (0, 0, 0));
}

#[test]
fn a_snapshot_preempted_between_its_reads_records_no_peak_that_never_was() {
    // 100 readable objects wait in batches for a reader; a snapshot reads them, then (its
    // thread preempted) they are destroyed and 100 others are torn down in a handler. Read
    // after, the queued ones add up to 200: a peak no moment had (100 waited at any time).
    const N: usize = 100;
    let rt = one_shard(2 * N);
    let inner = rt.inner();
    let first = readable_slots(&rt, N);
    let second = std::sync::Arc::new(plain_slots(&rt, N));
    // A reader on another thread (a guard cannot be sent), until told to leave.
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (leave_tx, leave_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let guard = crate::read::enter();
        entered_tx.send(()).unwrap();
        leave_rx.recv().unwrap();
        drop(guard);
    });
    entered_rx.recv().unwrap();
    in_handler(|| first.iter().for_each(|s| s.clear()));
    assert_eq!(rt.drain().unwrap(), 0, "the reader holds them");
    assert_eq!((inner.pending(), rt.stats().peak_pending), (N, N));
    let handle = rt.clone();
    let later = second.clone();
    *inner.faults.pause_in_pending.lock().unwrap() = Some(Box::new(move || {
        leave_tx.send(()).unwrap();
        reader.join().unwrap();
        assert_eq!(handle.drain_and_wait().unwrap(), N);
        in_handler(|| later.iter().for_each(|s| s.clear()));
    }));
    assert_eq!(inner.backlog(), N, "the handler's objects");
    assert_eq!(rt.stats().peak_pending, N, "no moment had more waiting");
    assert_eq!(rt.drain().unwrap(), N);
}

/// An object retired in ordinary context while every open batch is busy goes with a job; with
/// no job to be had (the pool at `max_jobs`, none spare), it is destroyed on the spot, and
/// counted as drained like every destructor the runtime runs.
#[test]
fn a_retirement_finding_every_batch_busy_and_no_job_destroys_and_counts_it() {
    struct Tracked(std::sync::Arc<StdAtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, StdOrdering::SeqCst);
        }
    }
    // One job, held by an installed value; an owned box needs none, so its drop is the
    // retirement that finds no job.
    let rt = Runtime::builder()
        .shards(1)
        .policy(crate::Policy::AlwaysDefer)
        .drainer(Drainer::Manual)
        .max_jobs(1)
        .headroom(0)
        .build()
        .unwrap();
    let holds_the_job = plain_slots(&rt, 1);
    let drops = std::sync::Arc::new(StdAtomicUsize::new(0));
    let boxed = crate::Owned::new(&rt, Tracked(drops.clone()));
    let batches = &rt.inner().batches;
    assert!(batches.hold_open(0), "nobody else adds to it");
    drop(boxed);
    batches.release_open(0);
    let s = rt.stats();
    assert_eq!(
        drops.load(StdOrdering::SeqCst),
        1,
        "destroyed on the spot: {s:?}"
    );
    assert_eq!((s.drained, s.pending, s.total), (1, 0, 1), "{s:?}");
    drop(holds_the_job);
}
