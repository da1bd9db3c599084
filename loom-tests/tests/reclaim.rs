//! Models of reclamation (`src/reclaim/`, the drain cycle and the help path of `src/runtime.rs`)
//! on the code that ships: batches stamped with polled grace periods, producers that help, the
//! drainer thread's sleep, and the lazy doorbell.
//!
//! Objects are `Canary`s: a reader reads a loom cell that the destructor overwrites, so a
//! destructor that could run while a reader still used the object is a loom data race, and a
//! destructor run twice panics on the count. A poll loop that could never end (waiting for a
//! guard that never leaves, or for a drainer that never comes) exceeds loom's branch limit.
//! Under loom a batch holds 2 objects, so two retirements fill and close one.
//!
//! Bound: 2-3 threads, 1-3 objects, 1 shard.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom_tests::canary::{Canary, readable_slot_with_canary, spawn_reader};
use sigdrop::{Drainer, Policy, ReadSlot, RefSlot, Runtime, Wake, read, restricted};
use std::time::Duration;

fn builder() -> sigdrop::Builder {
    loom_tests::smallest_runtime()
}

fn manual() -> Runtime {
    builder().drainer(Drainer::Manual).build().unwrap()
}

/// Drains (never waiting for readers) until `drops` reaches `n`, yielding between polls.
fn drain_until(rt: &Runtime, drops: &AtomicUsize, n: usize) {
    while drops.load(Ordering::SeqCst) < n {
        rt.drain().unwrap();
        loom::thread::yield_now();
    }
}

/// An object retired into a batch in ordinary context is destroyed only once every guard that
/// could have seen it is gone: a reader on another thread borrows while the writer replaces and
/// polls. The poll never waits, and the object is destroyed as soon as the reader has left.
#[test]
fn a_stamped_batch_is_never_destroyed_under_a_reader() {
    loom::model(|| {
        let rt = manual();
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = readable_slot_with_canary(&rt, &drops);

        let reader = spawn_reader(&slot, false);
        // Ordinary context: no job, an open batch; the drain closes it with its cookie.
        drop(
            slot.xchg(Some(Box::new(Canary::with_value(2, &drops))))
                .unwrap(),
        );
        drain_until(&rt, &drops, 1);
        reader.join().unwrap();
        slot.clear();
        drain_until(&rt, &drops, 2);
        let s = rt.stats();
        assert_eq!((s.offloaded, s.emergency, s.leaked), (0, 0, 0), "{s:?}");
    });
}

/// A reader in a signal handler on the writer's own thread: the writer, back from the handler,
/// fills and closes a batch and helps (runs ready batches itself); the batch's cookie was taken
/// after the handler's reader left, or the help waits for it — never a destruction under it.
/// A second thread drains at the same time: each object is destroyed exactly once.
#[test]
fn a_helping_writer_and_the_drainer_destroy_each_object_once() {
    loom::model(|| {
        let rt = manual();
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = readable_slot_with_canary(&rt, &drops);

        let drainer = {
            let rt = rt.clone();
            loom::thread::spawn(move || {
                rt.drain().unwrap();
            })
        };
        {
            // A handler reads on this thread, between two replaces.
            let _nmi = restricted::enter();
            let guard = read::enter();
            assert_eq!(slot.load(&guard).map(Canary::read), Some(1));
        }
        // Two retirements fill the batch: the second closes it and helps.
        drop(
            slot.xchg(Some(Box::new(Canary::with_value(2, &drops))))
                .unwrap(),
        );
        drop(
            slot.xchg(Some(Box::new(Canary::with_value(3, &drops))))
                .unwrap(),
        );
        drainer.join().unwrap();
        drain_until(&rt, &drops, 2);
        slot.clear();
        drain_until(&rt, &drops, 3);
    });
}

/// A guard that never leaves (held by another thread for the whole model) delays only objects
/// that readers could have seen: a write-only slot's object torn down in a handler, and another
/// write-only object deferred in ordinary context, are destroyed by non-blocking drains; the
/// readable object waits; and dropping the runtime returns, destroying it (no reader can reach
/// it once the runtime is gone).
#[test]
fn a_stuck_reader_delays_only_readable_objects_and_never_shutdown() {
    loom::model(|| {
        let rt = builder()
            .drainer(Drainer::Manual)
            .policy(Policy::AlwaysDefer)
            .build()
            .unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let readable = ReadSlot::new(&rt);
        readable
            .xchg(Some(Box::new(Canary::with_value(1, &drops))))
            .unwrap();
        let plain = RefSlot::new(&rt);
        plain
            .xchg(Some(Box::new(Canary::with_value(2, &drops))))
            .unwrap();

        let entered = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let stuck = {
            let (entered, release) = (entered.clone(), release.clone());
            loom::thread::spawn(move || {
                let _guard = read::enter();
                entered.store(true, Ordering::SeqCst);
                while !release.load(Ordering::SeqCst) {
                    loom::thread::yield_now();
                }
            })
        };
        while !entered.load(Ordering::SeqCst) {
            loom::thread::yield_now();
        }
        readable.clear(); // waits for the stuck reader
        {
            let _nmi = restricted::enter();
            plain.clear(); // a job, no grace period
        }
        drain_until(&rt, &drops, 1);
        plain
            .xchg(Some(Box::new(Canary::with_value(3, &drops))))
            .unwrap();
        plain.clear(); // ordinary context, AlwaysDefer: a batch that needs no grace period
        drain_until(&rt, &drops, 2);
        rt.drain().unwrap();
        assert_eq!(
            drops.load(Ordering::SeqCst),
            2,
            "a readable object died under a reader"
        );
        drop((readable, plain));
        drop(rt); // returns, under the stuck reader, and destroys the readable object
        assert_eq!(drops.load(Ordering::SeqCst), 3);
        release.store(true, Ordering::SeqCst);
        stuck.join().unwrap();
    });
}

/// Lazy wake: a teardown in a handler pushes its job without ringing (below the watermark), and
/// the drainer thread, which wakes by itself every period (in the model, a timed sleep returns at
/// once), still destroys it: nothing waits longer than a period and a cycle. If it could be
/// stranded, the main thread's wait would never end (loom's branch limit).
#[test]
fn lazy_drainer_finds_an_unrung_job() {
    // The drainer thread's loop never blocks in lazy mode: bound the preemptions to keep the
    // search short whatever the suite's bound.
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let rt = builder()
            .drainer(Drainer::Thread)
            .wake(Wake::Lazy {
                period: Duration::from_millis(1),
                high_watermark: 8,
            })
            .build()
            .unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = RefSlot::new(&rt);
        slot.xchg(Some(Box::new(Canary::with_value(1, &drops))))
            .unwrap();
        {
            let _nmi = restricted::enter();
            slot.clear();
        }
        while drops.load(Ordering::SeqCst) == 0 {
            loom::thread::yield_now();
        }
        assert_eq!(rt.stats().wakes, 0, "a lazy handler rang");
        drop(slot);
        drop(rt);
    });
}

/// An object retired into a batch in ordinary context while the drainer thread goes to sleep
/// for good: the nudge of the batch's first object (or the drainer's last look at the batches
/// after it announced its sleep) means the drainer always comes back for it. A lost nudge would
/// leave the main thread waiting for ever (loom's branch limit).
#[test]
fn a_retired_object_is_never_stranded_by_an_idle_drainer() {
    // Two real threads that never block in a poll loop: bound the preemptions (the lost nudge
    // and a missing fence on either side are still found at this bound).
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let rt = builder()
            .drainer(Drainer::Thread)
            .policy(Policy::AlwaysDefer)
            .build()
            .unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = RefSlot::new(&rt);
        slot.xchg(Some(Box::new(Canary::with_value(1, &drops))))
            .unwrap();
        slot.clear(); // ordinary context, AlwaysDefer: into an open batch, nobody rings
        while drops.load(Ordering::SeqCst) == 0 {
            loom::thread::yield_now();
        }
        drop(slot);
        drop(rt);
    });
}

/// A grace period that another thread completed: the thread that then finds it passed and runs
/// the destructor did not advance it itself, so only the Release store of the completed count
/// (and the poller's Acquire load) orders the readers' last accesses before the destructor.
/// Both poll a bounded number of times, and nobody spins: a poll that loses the try-lock to a
/// preempted holder returns at once, and under loom's bounded scheduler a thread spinning on
/// such polls may never see the holder run again (the holder itself never waits).
#[test]
fn a_grace_period_completed_by_another_thread_still_orders_the_readers_first() {
    loom::model(|| {
        let rt = manual();
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = readable_slot_with_canary(&rt, &drops);

        let reader = spawn_reader(&slot, false);
        drop(
            slot.xchg(Some(Box::new(Canary::with_value(2, &drops))))
                .unwrap(),
        );
        rt.drain().unwrap(); // closes the batch, stamped with its cookie
        let poller = loom::thread::spawn(|| {
            let cookie = read::start_grace_period();
            for _ in 0..2 {
                read::grace_period_passed(cookie);
            }
        });
        for _ in 0..2 {
            rt.drain().unwrap();
        }
        reader.join().unwrap();
        poller.join().unwrap();
        drop(slot);
        drop(rt); // destroys what is left, waiting for nobody
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    });
}
