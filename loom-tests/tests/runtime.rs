//! Models of the whole runtime (ledger, slots, offload, drain, growth, trim) on the code that
//! ships, with tiny capacities so that growth, trim and refill are reachable in a few steps.
//!
//! A signal landing on a thread is one more loom thread that enters the restricted guard itself.
//! A restricted teardown that could not find its job would spin in `pop_owed` forever: loom
//! reports that as an exceeded branch limit, so "every restricted teardown finds an idle job"
//! (P3) is checked on every path, and `emergency == 0` checks that no fallback was taken.
//!
//! Bound: 3 threads at most, 1-2 objects, headroom 0-1, 1 shard; the suite's preemption bound (2).
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom_tests::canary::Canary;
use sigdrop::{Drainer, RefSlot, Runtime, restricted};

fn tiny(headroom: usize) -> Runtime {
    Runtime::builder()
        .shards(1)
        .headroom(headroom)
        .hysteresis(0)
        .emergency_capacity(1)
        .drainer(Drainer::Manual)
        .build()
        .unwrap()
}

/// At a quiescent point: nothing active, every job back in a freelist, the books balance.
fn assert_quiescent(rt: &Runtime, refs: usize) {
    let s = rt.stats();
    assert_eq!(s.active, 0, "{s:?}");
    assert_eq!(s.emergency + s.leaked, 0, "a fallback was taken: {s:?}");
    assert_eq!(s.refs, refs, "{s:?}");
    assert_eq!(
        rt.audit_idle(),
        s.total,
        "a job is missing from the freelists: {s:?}"
    );
    assert!(s.total >= s.refs + s.active);
}

/// d. Ledger: an ordinary install + teardown (growth, claim release, trim), a restricted
/// teardown, and a drain all at once. Every restricted teardown finds its job; the books balance.
#[test]
fn install_teardowns_drain_and_trim_keep_the_reserve() {
    loom::model(|| {
        let rt = tiny(1);
        let drops = Arc::new(AtomicUsize::new(0));
        let a = Arc::new(RefSlot::new(&rt));
        let b = Arc::new(RefSlot::new(&rt));
        b.xchg(Some(Canary::boxed(&drops))).unwrap();

        let ordinary = {
            let (a, drops) = (a.clone(), drops.clone());
            loom::thread::spawn(move || {
                a.xchg(Some(Canary::boxed(&drops))).unwrap();
                a.clear(); // ordinary teardown: inline destructor, claim credited, maybe trim
            })
        };
        let handler = {
            let b = b.clone();
            loom::thread::spawn(move || {
                let _nmi = restricted::enter();
                b.clear(); // restricted teardown: pops the owed job
            })
        };
        rt.drain().unwrap();
        ordinary.join().unwrap();
        handler.join().unwrap();
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_quiescent(&rt, 0);
    });
}

/// e. Exactly once: an ordinary replace, a restricted take and the drainer race on one slot.
/// Each object's destructor runs exactly once and never inside the guard.
#[test]
fn replace_take_and_drain_on_one_slot_destroy_each_object_once() {
    loom::model(|| {
        let rt = tiny(1);
        let first = Arc::new(AtomicUsize::new(0));
        let second = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(RefSlot::new(&rt));
        slot.xchg(Some(Canary::boxed(&first))).unwrap();

        let replacer = {
            let (slot, second) = (slot.clone(), second.clone());
            loom::thread::spawn(move || {
                // Whatever comes back (the first object, or nothing) is dropped here, in
                // ordinary context.
                drop(slot.xchg(Some(Canary::boxed(&second))).unwrap());
            })
        };
        let handler = {
            let slot = slot.clone();
            loom::thread::spawn(move || {
                let _nmi = restricted::enter();
                if let Some(taken) = slot.take() {
                    // The taker sees the contents its maker wrote (the take's Acquire).
                    taken.check();
                }
            })
        };
        rt.drain().unwrap();
        replacer.join().unwrap();
        handler.join().unwrap();
        slot.clear();
        rt.drain().unwrap();
        assert_eq!(first.load(Ordering::SeqCst), 1);
        assert_eq!(second.load(Ordering::SeqCst), 1);
        assert_quiescent(&rt, 0);
    });
}

/// g. Trim vs pop: an ordinary teardown whose claim release trims the pool (headroom 0, so the
/// freed job's body is returned at once) races a restricted teardown popping its own job. If trim
/// could free a body another party owns, loom would see the two accesses to that job's cells
/// race; if it could take the handler's job, the handler would spin without end.
#[test]
fn trim_never_frees_a_job_a_restricted_pop_relies_on() {
    loom::model(|| {
        let rt = tiny(0);
        let drops = Arc::new(AtomicUsize::new(0));
        let a = Arc::new(RefSlot::new(&rt));
        let b = Arc::new(RefSlot::new(&rt));
        a.xchg(Some(Canary::boxed(&drops))).unwrap();
        b.xchg(Some(Canary::boxed(&drops))).unwrap();
        assert_eq!(rt.stats().total, 2);

        let ordinary = {
            let a = a.clone();
            loom::thread::spawn(move || a.clear())
        };
        let handler = {
            let b = b.clone();
            loom::thread::spawn(move || {
                let _nmi = restricted::enter();
                b.clear();
            })
        };
        ordinary.join().unwrap();
        handler.join().unwrap();
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_quiescent(&rt, 0);
        assert_eq!(rt.stats().total, 0, "headroom 0: every job is trimmed");
    });
}

/// h. Growth from ordinary context racing a restricted-context install that uses a reserved job:
/// both installs succeed, the restricted one without growing, and every object is destroyed
/// once, outside the guard.
#[test]
fn growth_races_a_reserved_restricted_install() {
    loom::model(|| {
        let rt = tiny(0);
        rt.reserve(1).unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let a = Arc::new(RefSlot::new(&rt));
        let b = Arc::new(RefSlot::new(&rt));
        let boxed = Canary::boxed(&drops); // made in ordinary context

        let grower = {
            let (a, drops) = (a.clone(), drops.clone());
            loom::thread::spawn(move || {
                a.xchg(Some(Canary::boxed(&drops))).unwrap();
            })
        };
        let handler = {
            let b = b.clone();
            loom::thread::spawn(move || {
                let _nmi = restricted::enter();
                if b.xchg(Some(boxed)).is_err() {
                    panic!("reserved install refused");
                }
                b.clear();
            })
        };
        grower.join().unwrap();
        handler.join().unwrap();
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_quiescent(&rt, 1);
        a.clear();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    });
}

/// P6 on one thread: a signal handler that interrupts the drainer in the middle of a drain cycle
/// (modelled by running the "handler" inside a destructor the drainer is executing, so the
/// drainer cannot make progress while it runs) never waits for it. Its restricted install may be
/// refused — the drainer has not yet returned the job it is running — but it must not be granted
/// a credit whose job is not yet back in a freelist, because the teardown that follows would then
/// spin for a job that only the interrupted thread can push.
#[test]
fn handler_interrupting_the_drainer_never_waits_for_it() {
    use std::sync::Mutex as StdMutex;

    struct Interrupts {
        slot: Arc<RefSlot<Box<Canary>>>,
        spare: StdMutex<Option<Box<Canary>>>,
        drops: Arc<AtomicUsize>,
    }
    struct Interrupting(Arc<Interrupts>);
    impl Drop for Interrupting {
        fn drop(&mut self) {
            // The drainer is running this destructor; a signal lands now.
            let _nmi = restricted::enter();
            let boxed = self.0.spare.lock().unwrap().take().unwrap();
            match self.0.slot.xchg(Some(boxed)) {
                Ok(_) => self.0.slot.clear(), // granted: the teardown must find its job
                Err(rejected) => {
                    // Refused for want of a job: keep the value for ordinary context.
                    *self.0.spare.lock().unwrap() = Some(rejected.into_inner());
                }
            }
            self.0.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    loom::model(|| {
        let rt = tiny(0);
        let drops = Arc::new(AtomicUsize::new(0));
        let interrupts = Arc::new(Interrupts {
            slot: Arc::new(RefSlot::new(&rt)),
            spare: StdMutex::new(Some(Canary::boxed(&drops))),
            drops: drops.clone(),
        });
        let a = RefSlot::new(&rt);
        a.xchg(Some(Box::new(Interrupting(interrupts.clone()))))
            .unwrap();
        {
            let _nmi = restricted::enter();
            a.clear();
        }
        rt.drain().unwrap();
        rt.drain().unwrap();
        drop(interrupts.spare.lock().unwrap().take());
        interrupts.slot.clear();
        assert_quiescent(&rt, 0);
    });
}

/// A restricted teardown whose own shard is empty scans the others, while the drainer moves
/// jobs between shards (it returns each job to the shard it was offloaded on). Every pop finds
/// its job; nothing is lost.
#[test]
fn restricted_pop_scans_other_shards_while_jobs_move() {
    use sigdrop::model::set_model_shard;
    loom::model(|| {
        let rt = Runtime::builder()
            .shards(2)
            .headroom(0)
            .hysteresis(0)
            .emergency_capacity(1)
            .drainer(Drainer::Manual)
            .build()
            .unwrap();
        set_model_shard(0);
        let drops = Arc::new(AtomicUsize::new(0));
        let a = Arc::new(RefSlot::new(&rt));
        let b = Arc::new(RefSlot::new(&rt));
        a.xchg(Some(Canary::boxed(&drops))).unwrap();
        b.xchg(Some(Canary::boxed(&drops))).unwrap();

        let handler = {
            let (a, b) = (a.clone(), b.clone());
            loom::thread::spawn(move || {
                set_model_shard(1); // growth dealt the jobs over both shards; pops scan both
                let _nmi = restricted::enter();
                a.clear();
                b.clear();
            })
        };
        rt.drain().unwrap();
        handler.join().unwrap();
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_quiescent(&rt, 0);
    });
}

/// A runtime whose one job is spare but not trimmed automatically (headroom 0, hysteresis 1):
/// only an explicit trim frees it.
fn one_spare_job(drops: &Arc<AtomicUsize>) -> Runtime {
    let rt = Runtime::builder()
        .shards(1)
        .headroom(0)
        .hysteresis(1)
        .emergency_capacity(1)
        .drainer(Drainer::Manual)
        .build()
        .unwrap();
    let a = RefSlot::new(&rt);
    a.xchg(Some(Canary::boxed(drops))).unwrap(); // grows one job, this install's own claim
    a.clear(); // the claim becomes spare credit; 1 <= headroom + hysteresis: no trim
    let s = rt.stats();
    assert_eq!((s.total, s.spare), (1, 1), "{s:?}");
    rt
}

/// D3 on the shipped trim: an ordinary install and a trim race for the one spare credit. The
/// install then tears its object down in restricted context, which must find the job its claim
/// stands for. Only one of the two may win the credit: if trim freed a job while the install
/// also counted on it (trim deciding from a snapshot of `spare` and claiming afterwards), the
/// restricted pop would spin for a job that no longer exists, which loom reports as an exceeded
/// branch limit.
#[test]
fn install_and_trim_never_both_win_one_spare_credit() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let rt = one_spare_job(&drops);
        let trimmer = {
            let rt = rt.clone();
            loom::thread::spawn(move || rt.trim().unwrap())
        };
        let b = RefSlot::new(&rt);
        b.xchg(Some(Canary::boxed(&drops))).unwrap(); // the spare credit, or growth
        {
            let _nmi = restricted::enter();
            b.clear(); // pops the job its claim stands for
        }
        let trimmed = trimmer.join().unwrap();
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_quiescent(&rt, 0);
        assert!(trimmed <= 1);
    });
}

/// P6 for trim, on one thread: a signal lands on the trimming thread between trim's claim and
/// its pop (a model-only hook at exactly that point), and the handler installs and tears down an
/// object in restricted context. Trim holds the credit, so the handler's install must be refused
/// (no spare or reserved job); had trim popped the job before claiming it, the handler would be
/// granted the credit and then spin for a job that only the interrupted trim can give back.
#[test]
fn handler_interrupting_trim_is_never_granted_the_job_trim_holds() {
    use sigdrop::model::model_hooks;
    use std::sync::Mutex as StdMutex;

    /// Drops the hook if it never ran, while the execution is still alive (on a failure too).
    struct ClearHook;
    impl Drop for ClearHook {
        fn drop(&mut self) {
            model_hooks::clear_trim_hook();
        }
    }

    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let rt = one_spare_job(&drops);
        let _clear = ClearHook;
        let slot = Arc::new(RefSlot::new(&rt));
        let kept: Arc<StdMutex<Option<Box<Canary>>>> = Arc::new(StdMutex::new(None));
        let refused = Arc::new(AtomicUsize::new(0));
        {
            let (slot, kept, refused) = (slot.clone(), kept.clone(), refused.clone());
            let boxed = Canary::boxed(&drops); // made in ordinary context
            model_hooks::after_next_trim_claim(move || {
                let _nmi = restricted::enter();
                match slot.xchg(Some(boxed)) {
                    Ok(_) => slot.clear(), // granted: the teardown must find its job
                    Err(rejected) => {
                        // Never dropped in the handler: kept for ordinary context.
                        *kept.lock().unwrap() = Some(rejected.into_inner());
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
        assert_eq!(rt.trim().unwrap(), 1);
        assert!(!model_hooks::trim_hook_pending(), "the handler never ran");
        assert_eq!(
            refused.load(Ordering::SeqCst),
            1,
            "handler granted trim's job"
        );
        drop(kept.lock().unwrap().take());
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_quiescent(&rt, 0);
    });
}

/// A replace in restricted context must claim a job for the object it displaces *before* its
/// CAS, because that object will be deferred from there, where no job can be grown; with no
/// reserved or spare job the new value is refused and the slot is unchanged (P4). Here the
/// handler's replace races the main thread's `reserve(1)`: either it finds the reserved job and
/// the displaced object comes back reserved (its drop in the handler then defers it with that
/// job), or it is refused. Either way the emergency fallback (D7) stays unreachable.
#[test]
fn restricted_replace_claims_for_the_displaced_object_or_is_refused() {
    use std::sync::Mutex as StdMutex;

    loom::model(|| {
        let rt = tiny(0);
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(RefSlot::new(&rt));
        slot.xchg(Some(Canary::boxed(&drops))).unwrap(); // the one job, claimed; none spare
        let kept: Arc<StdMutex<Option<Box<Canary>>>> = Arc::new(StdMutex::new(None));
        let handler = {
            let (slot, kept) = (slot.clone(), kept.clone());
            let boxed = Canary::boxed(&drops); // made in ordinary context
            loom::thread::spawn(move || {
                let _nmi = restricted::enter();
                match slot.xchg(Some(boxed)) {
                    Ok(displaced) => {
                        let displaced = displaced.expect("the slot was full");
                        assert!(
                            displaced.is_reserved(),
                            "displaced in a handler without a job"
                        );
                        displaced.check();
                        drop(displaced); // deferred with its job
                    }
                    Err(rejected) => *kept.lock().unwrap() = Some(rejected.into_inner()),
                }
            })
        };
        rt.reserve(1).unwrap();
        handler.join().unwrap();
        rt.drain().unwrap();
        drop(kept.lock().unwrap().take());
        let s = rt.stats();
        assert_eq!(
            (s.emergency, s.leaked),
            (0, 0),
            "a fallback was taken: {s:?}"
        );
        slot.clear();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        rt.unreserve(1).unwrap();
        assert_quiescent(&rt, 0);
    });
}
