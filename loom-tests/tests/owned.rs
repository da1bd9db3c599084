//! Models of the owned box (`src/owned.rs`, `src/reclaim/owned_list.rs`) on the code that ships:
//! its node is pushed on a per-CPU list in restricted context and taken whole by drainers.
//!
//! Every model checks P2 for owned boxes: each value is destroyed exactly once (counted in the
//! value's `Drop`, checked at the end), never in restricted context (asserted in the `Drop`),
//! and never with a job or a fallback (`total`, `emergency`, `leaked` stay 0: a box needs none).
//!
//! Bound: 2-3 threads, 1-3 boxes, 1 shard (2 in one model), manual drainer except the wake-up
//! model; the suite's preemption bound.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Condvar, Mutex};
use sigdrop::model::set_model_interrupt;
use sigdrop::{Drainer, Owned, RefSlot, Runtime, restricted};

/// Counts its destructions and checks where they happen.
struct Tracked(Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        assert!(
            !restricted::is_active(),
            "destructor ran in restricted context"
        );
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn manual(shards: usize) -> Runtime {
    Runtime::builder()
        .shards(shards)
        .headroom(0)
        .hysteresis(0)
        .emergency_capacity(1)
        .drainer(Drainer::Manual)
        .build()
        .unwrap()
}

/// No job, no fallback: owned boxes never touch the pool.
fn assert_no_jobs(rt: &Runtime) {
    let s = rt.stats();
    assert_eq!((s.total, s.active, s.refs), (0, 0, 0), "{s:?}");
    assert_eq!(s.emergency + s.leaked, 0, "a fallback was taken: {s:?}");
}

/// (a) Two "handlers" drop a box each in restricted context (two pushes racing on one list)
/// while the main thread drains (the take racing both pushes): each value is destroyed exactly
/// once, by a drain, never in restricted context; nothing is lost, nothing is taken twice.
#[test]
fn restricted_drops_racing_a_drain_destroy_each_box_once() {
    loom::model(|| {
        let rt = manual(1);
        let drops = Arc::new(AtomicUsize::new(0));
        let handlers: Vec<_> = (0..2)
            .map(|_| {
                let boxed = Owned::new(&rt, Tracked(drops.clone()));
                loom::thread::spawn(move || {
                    let _nmi = restricted::enter();
                    drop(boxed);
                })
            })
            .collect();
        rt.drain().unwrap();
        for h in handlers {
            h.join().unwrap();
        }
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_eq!(rt.stats().owned, 2);
        assert_no_jobs(&rt);
    });
}

/// (b) A slot of owned boxes with no job anywhere (headroom 0, nothing reserved): a handler
/// replaces the box and drops the displaced one (an install and a push in restricted context,
/// which a `Box` slot would refuse here), while an ordinary thread takes the slot's box and a
/// drain runs. Every box is destroyed exactly once, never in restricted context, and no job or
/// fallback is ever used.
#[test]
fn slot_of_owned_boxes_swapped_in_a_handler_needs_no_job() {
    loom::model(|| {
        let rt = manual(1);
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(RefSlot::new(&rt));
        assert!(
            slot.xchg(Some(Owned::new(&rt, Tracked(drops.clone()))))
                .unwrap()
                .is_none()
        );
        let handler = {
            let slot = slot.clone();
            let fresh = Owned::new(&rt, Tracked(drops.clone()));
            loom::thread::spawn(move || {
                let _nmi = restricted::enter();
                let old = slot
                    .xchg(Some(fresh))
                    .expect("an owned box never needs a job");
                drop(old); // a push, if the slot held one
            })
        };
        let ordinary = {
            let slot = slot.clone();
            loom::thread::spawn(move || {
                drop(slot.take()); // inline destructor (Policy::Auto), if it found one
            })
        };
        rt.drain().unwrap();
        handler.join().unwrap();
        ordinary.join().unwrap();
        slot.clear();
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_no_jobs(&rt);
    });
}

/// (c) A handler interrupts a restricted-context drop on the same thread, between the push's
/// swap of the list head and its link, and drops a box of its own (pushing onto the same list,
/// on top of the unlinked node); meanwhile another thread drains, and may find the interrupted
/// node unlinked. No drain may go past it or destroy it before its link; once linked, it and
/// everything older must be found again (from the stash), so neither box is lost and each is
/// destroyed exactly once.
#[test]
fn handler_interrupting_an_owned_drop_on_the_same_thread_loses_nothing() {
    loom::model(|| {
        let rt = Arc::new(manual(1));
        let drops = Arc::new(AtomicUsize::new(0));
        let outer = Owned::new(&rt, Tracked(drops.clone()));
        let inner = Owned::new(&rt, Tracked(drops.clone()));
        let drainer = {
            let rt = rt.clone();
            loom::thread::spawn(move || {
                rt.drain().unwrap();
            })
        };
        {
            let _outer_context = restricted::enter();
            set_model_interrupt(Box::new(move || {
                // The signal lands inside the push below: the handler's own guard, its own drop.
                let _nmi = restricted::enter();
                drop(inner);
            }));
            drop(outer);
        }
        drainer.join().unwrap();
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_eq!(rt.stats().owned, 2);
        assert_no_jobs(&rt);
    });
}

/// (c2) Two drains race a handler's push: one may find the node unlinked and stash it while
/// the other takes the stash and walks it again once it is linked. The stash hands the node
/// from one drainer to the other (its `stash_next` written by the first, read by the second,
/// with no join between them), and the value is destroyed exactly once, by one of them or by
/// the final drain.
#[test]
fn a_box_stashed_unlinked_by_one_drain_is_resumed_once_by_another() {
    loom::model(|| {
        let rt = Arc::new(manual(1));
        let drops = Arc::new(AtomicUsize::new(0));
        let boxed = Owned::new(&rt, Tracked(drops.clone()));
        let handler = loom::thread::spawn(move || {
            let _nmi = restricted::enter();
            drop(boxed);
        });
        let drainers: Vec<_> = (0..2)
            .map(|_| {
                let rt = rt.clone();
                loom::thread::spawn(move || {
                    rt.drain().unwrap();
                })
            })
            .collect();
        handler.join().unwrap();
        for d in drainers {
            d.join().unwrap();
        }
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(rt.stats().owned, 1);
        assert_no_jobs(&rt);
    });
}

/// (d) A handler interrupts an *ordinary-context* drop on the same thread: the box is being
/// destroyed inline (its value's destructor is running) when the handler drops another box.
/// That one must be pushed, not destroyed in the handler, and the concurrent drainer takes it.
#[test]
fn handler_interrupting_an_inline_destroy_defers_its_own_box() {
    struct Interrupted {
        handler_box: std::sync::Mutex<Option<Owned<Tracked>>>,
        drops: Arc<AtomicUsize>,
    }
    impl Drop for Interrupted {
        fn drop(&mut self) {
            assert!(!restricted::is_active());
            let boxed = self.handler_box.lock().unwrap().take();
            {
                let _nmi = restricted::enter();
                drop(boxed); // pushed: the destructor runs on the drainer
            }
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }
    loom::model(|| {
        let rt = Arc::new(manual(1));
        let drops = Arc::new(AtomicUsize::new(0));
        let outer = Owned::new(
            &rt,
            Interrupted {
                handler_box: std::sync::Mutex::new(Some(Owned::new(&rt, Tracked(drops.clone())))),
                drops: drops.clone(),
            },
        );
        let drainer = {
            let rt = rt.clone();
            loom::thread::spawn(move || {
                rt.drain().unwrap();
            })
        };
        drop(outer); // ordinary context, Policy::Auto: destroyed inline, interrupted inside
        drainer.join().unwrap();
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_no_jobs(&rt);
    });
}

/// (e) Two shards: handlers on different CPUs push onto their own lists while a drain takes
/// both; nothing is lost.
#[test]
fn pushes_on_two_shards_racing_a_drain_lose_nothing() {
    use sigdrop::model::set_model_shard;
    loom::model(|| {
        let rt = manual(2);
        let drops = Arc::new(AtomicUsize::new(0));
        let handlers: Vec<_> = (0..2)
            .map(|cpu| {
                let boxed = Owned::new(&rt, Tracked(drops.clone()));
                loom::thread::spawn(move || {
                    set_model_shard(cpu);
                    let _nmi = restricted::enter();
                    drop(boxed);
                })
            })
            .collect();
        rt.drain().unwrap();
        for h in handlers {
            h.join().unwrap();
        }
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_no_jobs(&rt);
    });
}

/// (f) No lost wake-up: a box dropped by a "handler" races the real drainer thread going to
/// sleep (its take skips a list it sees empty with a relaxed load). The main thread blocks until
/// the destructor has run; if the drainer could sleep with the box queued and the doorbell
/// unrung, every thread would block and loom reports a deadlock.
#[test]
fn owned_push_racing_drainer_sleep_is_never_stranded() {
    struct Done {
        flag: Mutex<bool>,
        cond: Condvar,
    }
    struct Obj(Arc<Done>);
    impl Drop for Obj {
        fn drop(&mut self) {
            assert!(!restricted::is_active());
            *self.0.flag.lock().unwrap() = true;
            self.0.cond.notify_all();
        }
    }
    loom::model(|| {
        let rt = Runtime::builder()
            .shards(1)
            .headroom(0)
            .hysteresis(0)
            .emergency_capacity(1)
            .drainer(Drainer::Thread)
            .build()
            .unwrap();
        let done = Arc::new(Done {
            flag: Mutex::new(false),
            cond: Condvar::new(),
        });
        let boxed = Owned::new(&rt, Obj(done.clone()));
        let handler = loom::thread::spawn(move || {
            let _nmi = restricted::enter();
            drop(boxed);
        });
        handler.join().unwrap();
        let mut ran = done.flag.lock().unwrap();
        while !*ran {
            ran = done.cond.wait(ran).unwrap();
        }
        drop(ran);
        drop(rt);
    });
}

/// (g) `Shared`: the two references to one value are dropped at once, one by a "handler" (in
/// restricted context), one by an ordinary thread, while the main thread drains. Whoever drops
/// the last reference, the value is destroyed exactly once, never in restricted context, and its
/// destructor sees what both references' holders did before letting go (the count's Release
/// decrements and the last one's Acquire fence).
#[test]
fn shared_last_reference_dropped_in_a_handler_or_not_is_destroyed_once() {
    use loom::sync::atomic::AtomicBool;
    use sigdrop::Shared;

    struct Probe {
        seen_a: AtomicBool,
        seen_b: AtomicBool,
        drops: Arc<AtomicUsize>,
    }
    impl Drop for Probe {
        fn drop(&mut self) {
            assert!(
                !restricted::is_active(),
                "destructor ran in restricted context"
            );
            // Relaxed: ordered by the reference count (the property under test).
            assert!(
                self.seen_a.load(Ordering::Relaxed),
                "a holder's write is missing"
            );
            assert!(
                self.seen_b.load(Ordering::Relaxed),
                "a holder's write is missing"
            );
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }
    loom::model(|| {
        let rt = manual(1);
        let drops = Arc::new(AtomicUsize::new(0));
        let a = Shared::new(
            &rt,
            Probe {
                seen_a: AtomicBool::new(false),
                seen_b: AtomicBool::new(false),
                drops: drops.clone(),
            },
        );
        let b = a.clone();
        let handler = loom::thread::spawn(move || {
            let _nmi = restricted::enter();
            a.seen_a.store(true, Ordering::Relaxed);
            drop(a);
        });
        let ordinary = loom::thread::spawn(move || {
            b.seen_b.store(true, Ordering::Relaxed);
            drop(b);
        });
        rt.drain().unwrap();
        handler.join().unwrap();
        ordinary.join().unwrap();
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_no_jobs(&rt);
    });
}

/// (h) The boxes' shared reference to the runtime state, taken by the box that finds none and
/// given back by whoever uncounts the last: one thread destroys the only box inline (its count
/// going to zero) and then drops its runtime handle, while another makes a box (the count going
/// from zero again), drops its own handle, and hands the box over in restricted context; a
/// manual drain with the last handle is then what runs it. Whatever the interleaving, each
/// value is destroyed once and the state is freed exactly once, when the last holder lets go
/// (loom fails a model that leaks an `Arc` or frees one twice).
#[test]
fn boxes_taking_and_giving_back_their_shared_reference_concurrently_free_the_state_once() {
    loom::model(|| {
        let rt = manual(1);
        let drops = Arc::new(AtomicUsize::new(0));
        let only = Owned::new(&rt, Tracked(drops.clone()));
        let theirs = rt.clone();
        let other = loom::thread::spawn(move || {
            drop(only); // ordinary context: destroyed inline, uncounted (maybe to zero)
            drop(theirs);
        });
        let again = Owned::new(&rt, Tracked(drops.clone())); // maybe from zero again
        {
            let _nmi = restricted::enter();
            drop(again); // still counted on its list
        }
        other.join().unwrap();
        assert_eq!(rt.drain().unwrap(), 1);
        assert_eq!(rt.stats().owned_alive, 0);
        drop(rt); // the last handle: the state goes here, with no box left to hold it
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    });
}
