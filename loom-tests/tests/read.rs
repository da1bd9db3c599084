//! Models of protected reads (`src/read.rs`, `src/read_slot.rs`) on the code that ships.
//!
//! Objects carry a loom `UnsafeCell` that readers read and the destructor writes: if a
//! destructor could run while a reader still used the object, the two accesses would not be
//! ordered by happens-before, and loom reports that as a data race. A grace period that waited
//! for a reader that cannot finish would spin forever: loom reports that as an exceeded branch
//! limit, so "never waits for a later reader" and "no deadlock" are checked on every path.
//! (`Runtime::drain` never waits for readers; these models use `drain_and_wait`, which does, to
//! check the grace period itself. The polled, non-blocking side is in `reclaim.rs`.)
//!
//! loom does not model `SeqCst` loads and read-modify-writes, only `SeqCst` fences, so under
//! loom a read guard adds a `SeqCst` fence after its increment (`sync::model_seq_cst_fence`; the
//! equivalence is argued in `src/sync.rs` and `src/read.rs`). Everything else is the shipped code.
//!
//! Bound: 2-3 threads, 1-2 objects, 2 reader shards (the loom build's count).
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom_tests::canary::{Canary, readable_slot_with_canary, spawn_reader};
use sigdrop::{Drainer, ReadSlot, Runtime, read, restricted};

fn manual() -> Runtime {
    Runtime::builder()
        .shards(1)
        .headroom(1)
        .hysteresis(0)
        .emergency_capacity(1)
        .drainer(Drainer::Manual)
        .build()
        .unwrap()
}

/// Empties `slot` in ordinary context, drains, and checks that `expected` objects were destroyed
/// in all: nothing lost, nothing destroyed twice.
fn assert_all_destroyed_after_clear<P: sigdrop::SlotPointer>(
    rt: &Runtime,
    slot: &ReadSlot<P>,
    drops: &AtomicUsize,
    expected: usize,
) {
    slot.clear();
    rt.drain_and_wait().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), expected);
}

/// A restricted-context reader races a replace and a drain: the reader never sees the old
/// object destroyed under it, and the drain's grace period does not return before the reader
/// has left.
#[test]
fn restricted_reader_racing_replace_and_drain_never_sees_freed_memory() {
    loom::model(|| {
        let rt = manual();
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = readable_slot_with_canary(&rt, &drops);

        let reader = spawn_reader(&slot, true);
        drop(
            slot.xchg(Some(Box::new(Canary::with_value(2, &drops))))
                .unwrap(),
        );
        rt.drain_and_wait().unwrap(); // a grace period, then the first object's destructor
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        reader.join().unwrap();
        assert_all_destroyed_after_clear(&rt, &*slot, &drops, 2);
    });
}

/// `clone_current` in a handler races a replace and a drain: the new reference is taken while the
/// slot's own reference is still alive, and the clone dropped in restricted context is deferred,
/// never destroyed there (the `Canary` destructor asserts it).
///
/// Three drains, one of them in `drain_and_wait` waiting for a grace period, and the runtime's
/// shutdown make long executions: more branches than loom's default 1000 (a spinning thread
/// still exceeds 2000).
#[test]
fn clone_current_racing_replace_and_drain_keeps_the_object_alive() {
    let mut model = loom::model::Builder::new();
    model.max_branches = 2_000;
    model.check(|| {
        let rt = manual();
        rt.reserve(1).unwrap(); // for the handler's deferred clone
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(ReadSlot::new(&rt));
        slot.xchg(Some(std::sync::Arc::new(Canary::with_value(1, &drops))))
            .unwrap();

        let handler = {
            let slot = slot.clone();
            loom::thread::spawn(move || {
                let _nmi = restricted::enter();
                let clone = slot.clone_current().expect("the slot is never empty");
                let seen = clone.read();
                assert!(seen == 1 || seen == 2, "read {seen}");
                drop(clone); // deferred: may be the last reference by now
            })
        };
        drop(
            slot.xchg(Some(std::sync::Arc::new(Canary::with_value(2, &drops))))
                .unwrap(),
        );
        rt.drain_and_wait().unwrap();
        handler.join().unwrap();
        rt.drain_and_wait().unwrap(); // the handler's clone, if it was queued after the first drain
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_all_destroyed_after_clear(&rt, &*slot, &drops, 2);
    });
}

/// A latecomer: a reader reads the epoch, then a whole grace period passes before it increments
/// its (now old-parity) counter and reads the slot. The next grace period, for the object it
/// then reads, must still wait for it — that is what the wait before the flip is for.
#[test]
fn grace_period_waits_for_a_reader_that_counted_under_an_old_parity() {
    loom::model(|| {
        let rt = manual();
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = readable_slot_with_canary(&rt, &drops);

        let reader = spawn_reader(&slot, false);
        read::synchronize().unwrap(); // flips the parity under a reader that may have read it
        drop(
            slot.xchg(Some(Box::new(Canary::with_value(2, &drops))))
                .unwrap(),
        );
        rt.drain_and_wait().unwrap();
        reader.join().unwrap();
        assert_all_destroyed_after_clear(&rt, &*slot, &drops, 2);
    });
}

/// A reader that entered before a grace period began is waited for: everything it did under its
/// guard is visible when `synchronize` returns.
#[test]
fn grace_period_waits_for_a_reader_that_began_before_it() {
    loom::model(|| {
        let entered = Arc::new(AtomicBool::new(false));
        let left = Arc::new(AtomicBool::new(false));
        let reader = {
            let (entered, left) = (entered.clone(), left.clone());
            loom::thread::spawn(move || {
                let guard = read::enter();
                entered.store(true, Ordering::Release);
                left.store(true, Ordering::Relaxed);
                drop(guard);
            })
        };
        while !entered.load(Ordering::Acquire) {
            loom::thread::yield_now();
        }
        read::synchronize().unwrap();
        assert!(
            left.load(Ordering::Relaxed),
            "a grace period returned while a reader that began before it was inside"
        );
        reader.join().unwrap();
    });
}

/// A reader that enters after a grace period began (it saw the epoch flip) and stays inside until
/// that grace period has returned: if the grace period waited for it, neither could finish.
#[test]
fn grace_period_never_waits_for_a_reader_that_began_after_it() {
    loom::model(|| {
        let before = read::model_epoch();
        let done = Arc::new(AtomicBool::new(false));
        let late = {
            let done = done.clone();
            loom::thread::spawn(move || {
                while read::model_epoch() == before {
                    loom::thread::yield_now();
                }
                let _guard = read::enter();
                while !done.load(Ordering::Acquire) {
                    loom::thread::yield_now();
                }
            })
        };
        read::synchronize().unwrap();
        done.store(true, Ordering::Release);
        late.join().unwrap();
    });
}

/// A handler interrupts a reader on its own thread and replaces the object the reader holds,
/// while the drainer drains on another thread: nothing in restricted context waits (the handler
/// defers), the drainer's grace period waits for the interrupted reader, and the reader's object
/// stays valid until it leaves. No deadlock on any path.
#[test]
fn interrupted_reader_and_handler_writer_on_one_thread_cannot_deadlock() {
    loom::model(|| {
        let rt = manual();
        rt.reserve(1).unwrap(); // the handler's replace needs a job it cannot grow
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = readable_slot_with_canary(&rt, &drops);

        let drainer = {
            let (rt, drops) = (rt.clone(), drops.clone());
            loom::thread::spawn(move || {
                while drops.load(Ordering::SeqCst) == 0 {
                    rt.drain().unwrap();
                    loom::thread::yield_now();
                }
            })
        };

        let guard = read::enter();
        let held = slot.load(&guard).expect("installed above");
        {
            // A signal lands here, on the reader's thread.
            let _nmi = restricted::enter();
            let old = slot.xchg(Some(Box::new(Canary::with_value(2, &drops))));
            drop(old.map_err(|_| "the reserved job was there").unwrap());
        }
        assert_eq!(held.read(), 1, "the interrupted reader's object changed");
        drop(guard);

        drainer.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_all_destroyed_after_clear(&rt, &*slot, &drops, 2);
    });
}
