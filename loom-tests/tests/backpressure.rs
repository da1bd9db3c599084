//! Models of back-pressure's drain-side rules (`after_close` and `backlog` in `src/runtime.rs`,
//! `Batches::excluded_here` in `src/reclaim/batches.rs`) on the code that ships: a thread over the
//! backlog bound helps, or waits, but never for something only it can do.
//!
//! - `a_destructor_retiring_past_the_bound_never_waits_for_its_own_batch`: a producer over the
//!   bound takes two closed batches at once (its `RUNNING_HERE` is 4, the bound 2), and the
//!   first destructor retires one more object into the same runtime while another thread
//!   drains. A thread that is destroying batches counts only queued batches against the bound,
//!   never batches being destroyed: the producer must not wait for the ones it is running.
//!   Caught when `excluded_here` leaves nothing out for such a thread (kit R13): the
//!   producer spins in `after_close` (under the child's retire, inside the parent's
//!   destructor) until loom reports "Model
//!   exceeded maximum number of branches". The drain contains that panic as a destructor's
//!   (P8), loom panics again at the next branch, and the test binary aborts.
//! - `a_producer_under_its_own_guard_gives_up_on_the_bound`: a producer holding a read guard
//!   retires readable objects past the bound while a reader on another thread borrows them. Its
//!   cycles can run nothing (the grace period waits for its own guard), so it gives up on the
//!   bound rather than wait for itself. Caught when the give-up ignores the guard
//!   (`read::is_active()` dropped from it): the producer spins in `after_close`, branch limit.
//! - `a_drainer_over_the_bound_never_waits_for_readers`: a destructor run by a drainer retires
//!   readable objects past the bound while a reader on another thread keeps its guard until that
//!   destructor has returned. A drainer never waits for readers (P10): after a cycle that runs
//!   nothing it gives up on the bound, the destructor returns, the reader leaves. Caught when the
//!   give-up ignores `on_a_drainer`: the drainer waits for the reader and the reader for the
//!   drainer; loom's branch limit fires inside the destructor (the drain contains it as a
//!   destructor panic, P8) and the model then fails its "destructor did not return" assertion.
//!   The drainer is the main model thread marked with `set_model_on_drainer` (a loom-only hook in
//!   `src/reclaim/drainer.rs`): a drainer thread's identity without its sleep loop, which the
//!   wake-up models cover.
//!
//! Under loom a batch holds 2 objects and the smallest bound is one batch (2), which every model
//! uses. Every object is a `Canary`: each is destroyed exactly once (counted, and a second
//! destruction panics), outside restricted context, after the writes of whoever handed it over.
//!
//! Not modelled here:
//! - the give-up of a stopping runtime after a cycle that runs nothing. Every retire comes
//!   through a slot, which holds a handle (so the runtime is not stopping), or through an
//!   `Owned` box's ordinary drop, which checks `stopping` first: a cycle that runs nothing while
//!   stopping needs the last handle to go between that check and the retire while a third
//!   thread destroys batches — more threads and drain cycles than the suite's budget allows;
//! - what needs real time or real threads: the shutdown's stall timer (its timeout is wall-clock
//!   time; in the model build `DrainerThread::stop` simply joins, and its heartbeat wait is not
//!   compiled) and a drainer never joining a drainer (two runtimes' drainer threads, each a
//!   model thread running its whole sleep loop, plus the thread that starts them: one such
//!   thread already needs a preemption bound of 2 and several seconds in `tests/reclaim.rs`).
//!   `tests/shutdown.rs` checks them with real threads:
//!   `shutdown_gives_up_on_a_stuck_destructor_and_runs_the_rest`,
//!   `shutdown_waits_for_a_drainer_that_keeps_finishing_destructors`,
//!   `last_handle_dropped_by_a_destructor_on_the_drainer`,
//!   `two_drainers_dropping_each_others_last_handle_do_not_wait_for_each_other` and
//!   `two_drainers_flooding_each_other_past_the_bound_do_not_wait_for_each_other`; and
//!   `destructors_that_retire_into_their_own_runtime_past_the_bound_finish` has a real drainer
//!   run destructors that retire into their own runtime past the bound;
//! - two ordinary threads that each destroy more than the bound's worth of batches at once,
//!   whose destructors retire into the same runtime. When each left out only its own running
//!   objects, each waited for the other's for ever (found while writing these models); now
//!   neither counts batches being destroyed. A loom model would need eight parents and a drain
//!   cycle on each of two threads, beyond the budget: `tests/shutdown.rs`'s
//!   `two_threads_destroying_batches_that_retire_past_the_bound_do_not_wait_for_each_other`
//!   checks it with real threads (kit R17).
//!
//! Bound: 2 threads, 1 shard, `max_pending` 2, 4-5 objects. The first model bounds its own
//! preemptions at 2 (a drain cycle on each thread); the others run at the suite's bound with a
//! higher branch limit (their setup and shutdown are long), which a spinning thread still
//! exceeds.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread::JoinHandle;
use loom_tests::canary::{Canary, readable_slot_with_canary};
use sigdrop::model::set_model_on_drainer;
use sigdrop::{Drainer, Owned, Policy, ReadSlot, RefSlot, Runtime, read, restricted};
use std::sync::Mutex as StdMutex;

fn manual(policy: Policy) -> Runtime {
    loom_tests::smallest_runtime()
        .policy(policy)
        .drainer(Drainer::Manual)
        .build()
        .unwrap()
}

/// A model whose executions are long (setup and shutdown included): more branches than loom's
/// default 1000 before it calls a thread stuck. A thread that spins for ever still exceeds them.
fn long_model() -> loom::model::Builder {
    let mut model = loom::model::Builder::new();
    model.max_branches = 5_000;
    model
}

/// Sets its flag when dropped, also while its thread unwinds from a failed assertion (or loom's
/// branch limit): a thread that waits for the flag then stops. Without it, that thread would
/// spin on after the failure; loom stops counting branches while the (one, real) thread that
/// runs every model thread is panicking, so the spin would go on until memory runs out.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Drains (never waiting for readers) until `drops` reaches `n`, yielding between polls.
fn drain_until(rt: &Runtime, drops: &AtomicUsize, n: usize) {
    while drops.load(Ordering::SeqCst) < n {
        rt.drain().unwrap();
        loom::thread::yield_now();
    }
}

/// Nothing pending, nothing parked or leaked.
fn assert_all_done(rt: &Runtime) {
    let s = rt.stats();
    assert_eq!(s.pending, 0, "{s:?}");
    assert_eq!(s.emergency + s.leaked, 0, "a fallback was taken: {s:?}");
}

/// An owned box of its own runtime (destroying it retires the child), a canary, and something
/// to do when its destructor starts.
struct Parent {
    child: Option<Owned<Canary>>,
    _canary: Canary,
    on_drop: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Parent {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
        drop(self.child.take()); // retired: AlwaysDefer
    }
}

/// A producer (ordinary context, `AlwaysDefer`, manual drainer: it runs the cycles itself when
/// over the bound) retires four owned parents: the first batch closes at the bound, the second
/// puts the backlog over it, and the cycle that follows takes both batches at once. The first
/// parent's destructor starts a second thread, which drains, and retires its child into the
/// same runtime while four objects are being destroyed, all by this thread: that is no backlog
/// to wait for (waiting for it would be waiting for itself). The second thread's drain may close
/// the child's open batch and destroy it, or hold that batch's lock so that the child goes with
/// a job instead; either way each object is destroyed once and the producer returns.
///
/// Owned boxes rather than slots: they retire without jobs or claims, so in the common case no
/// trim or growth runs and loom explores the batches. A whole drain cycle on each thread is
/// long: this model bounds its own preemptions at 2 (about 20 s here; at 3 it runs for minutes).
#[test]
fn a_destructor_retiring_past_the_bound_never_waits_for_its_own_batch() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let rt = manual(Policy::AlwaysDefer);
        let drops = Arc::new(AtomicUsize::new(0));
        let drainer: Arc<StdMutex<Option<JoinHandle<()>>>> = Arc::new(StdMutex::new(None));
        let mut parents: Vec<Owned<Parent>> = (0..4)
            .map(|i| {
                let first = i == 0;
                let on_drop = first.then(|| {
                    let (rt, drainer) = (rt.clone(), drainer.clone());
                    Box::new(move || {
                        let spawned = loom::thread::spawn(move || {
                            rt.drain().unwrap();
                        });
                        *drainer.lock().unwrap() = Some(spawned);
                    }) as Box<dyn FnOnce() + Send>
                });
                let parent = Parent {
                    child: first.then(|| Owned::new(&rt, Canary::new(&drops))),
                    _canary: Canary::new(&drops),
                    on_drop,
                };
                Owned::new(&rt, parent)
            })
            .collect();
        let last = parents.pop().unwrap();
        // The first batch closed (at the bound, not over it), the third parent in an open one.
        drop(parents);
        drop(last); // over the bound: this thread runs cycles, and returns
        let drainer = drainer
            .lock()
            .unwrap()
            .take()
            .expect("the first parent was destroyed");
        drainer.join().unwrap();
        drain_until(&rt, &drops, 5);
        assert_all_done(&rt);
    });
}

/// A producer retires four readable objects while it holds a read guard (it replaces the
/// object it is reading): two closed batches, over the bound, stamped with a grace period that
/// waits for its own guard (and for a reader on another thread, who may borrow any of them).
/// Its cycles can run none of them, so it gives up on the bound and returns; once the guards are
/// gone, drains destroy them all, never under the reader.
#[test]
fn a_producer_under_its_own_guard_gives_up_on_the_bound() {
    long_model().check(|| {
        let rt = manual(Policy::Auto);
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = readable_slot_with_canary(&rt, &drops);

        let reader = {
            let slot = slot.clone();
            loom::thread::spawn(move || {
                let guard = read::enter();
                if let Some(seen) = slot.load(&guard) {
                    seen.check();
                }
            })
        };
        {
            let guard = read::enter();
            assert_eq!(slot.load(&guard).map(Canary::read), Some(1));
            for value in 2..=5 {
                // Retired: the fourth closes the second batch, over the bound.
                drop(
                    slot.xchg(Some(Box::new(Canary::with_value(value, &drops))))
                        .unwrap(),
                );
            }
            assert_eq!(
                drops.load(Ordering::SeqCst),
                0,
                "destroyed under this thread's own guard"
            );
        }
        reader.join().unwrap();
        drain_until(&rt, &drops, 4);
        slot.clear();
        drain_until(&rt, &drops, 5);
        assert_all_done(&rt);
    });
}

/// An object that owns readable slots of its own runtime, and says when its destructor is done.
struct Owner {
    children: Vec<ReadSlot<Box<Canary>>>,
    done: Arc<AtomicBool>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        for child in &self.children {
            child.clear(); // retired, stamped with a grace period the reader holds up
        }
        self.done.store(true, Ordering::SeqCst);
    }
}

/// A reader enters, then waits (guard held) until the owner's destructor has returned. The
/// owner is torn down in a handler (a job), and a drainer's cycle runs its destructor, which
/// retires four readable children: two closed batches, over the bound, that only the reader's
/// departure can let go. The drainer's cycles run nothing more, so it gives up on the bound
/// instead of waiting for the reader — which is waiting for it.
#[test]
fn a_drainer_over_the_bound_never_waits_for_readers() {
    long_model().check(|| {
        let rt = manual(Policy::Auto);
        let drops = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let children = (0..4)
            .map(|i| {
                let child = ReadSlot::new(&rt);
                child
                    .xchg(Some(Box::new(Canary::with_value(i + 1, &drops))))
                    .unwrap();
                child
            })
            .collect();
        let owner = RefSlot::new(&rt);
        owner
            .xchg(Some(Box::new(Owner {
                children,
                done: done.clone(),
            })))
            .unwrap();

        let entered = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicBool::new(false));
        let reader = {
            let (entered, done, failed) = (entered.clone(), done.clone(), failed.clone());
            loom::thread::spawn(move || {
                let _guard = read::enter();
                entered.store(true, Ordering::SeqCst);
                while !done.load(Ordering::SeqCst) && !failed.load(Ordering::SeqCst) {
                    loom::thread::yield_now();
                }
            })
        };
        let _failed = SetOnDrop(failed);
        while !entered.load(Ordering::SeqCst) {
            loom::thread::yield_now();
        }
        {
            let _nmi = restricted::enter();
            owner.clear(); // deferred with its job
        }
        set_model_on_drainer(true);
        rt.drain().unwrap(); // runs the owner's destructor, which must return
        set_model_on_drainer(false);
        assert!(
            done.load(Ordering::SeqCst),
            "the owner's destructor did not return"
        );
        reader.join().unwrap();
        drain_until(&rt, &drops, 4);
        assert_all_done(&rt);
    });
}
