//! Models of the backlog's count (`src/reclaim/backlog.rs`, `Inner::backlog` and
//! `Inner::pending` in `src/runtime.rs`) on the code that ships: while a drain takes a job list,
//! runs its chain, moves the chain's objects that need a grace period into a batch and destroys
//! that batch, a writer on another thread that reads the backlog never misses an object that is
//! not destroyed yet (else it could queue as many again past `max_pending`), and the pending
//! statistic never counts one twice (else `peak_pending` could read past the bound with nothing
//! past it).
//!
//! - `a_drain_never_hides_its_objects_from_the_backlog`: three objects torn down in a handler
//!   (three jobs on the list: one plain, two readable, which fill a batch under loom), one
//!   drain on another thread, and the writer's reads: the backlog it reads, plus the objects
//!   destroyed by the time it has read it, covers all three. Caught when the drain takes the
//!   list without announcing it first (kit L1): the writer reads the list emptied and the chain
//!   not counted yet, a backlog of 0 with nothing destroyed; when the announcement is withdrawn
//!   before the chain is counted (L3); and when an ordering that argument needs is weakened:
//!   the take's CAS Release (kit 15), the head reads' Acquire (L5), the withdrawal's Release or
//!   its read's Acquire (L4, L6): the writer then need not see the announcement, or the chain
//!   counted. The writer reads the destroyed count Relaxed, so that what shows it the
//!   destructors before a drop of the backlog is the backlog's own `leave` (Release): caught
//!   when that is Relaxed (L13).
//! - The same model checks `pending` never exceeds the three objects. Caught when the chain is
//!   counted, or read, Relaxed (L8, L7: pending may then read the chain and the list it came
//!   from at once); a chain's batch entering the count a second time (L2) leaves the count
//!   high after everything is destroyed, which the model's last check catches.
//!
//! Bound: 2 threads, 1 shard, 3 objects; preemptions bounded at 2 (a whole drain cycle).
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom_tests::canary::Canary;
use sigdrop::model::model_hooks;
use sigdrop::{Drainer, ReadSlot, RefSlot, restricted};

const OBJECTS: usize = 3;

#[test]
fn a_drain_never_hides_its_objects_from_the_backlog() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let rt = loom_tests::smallest_runtime()
            .headroom(OBJECTS)
            .max_pending(64)
            .drainer(Drainer::Manual)
            .build()
            .unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let plain = RefSlot::new(&rt);
        plain.xchg(Some(Canary::boxed(&drops))).unwrap();
        let readable: Vec<ReadSlot<Box<Canary>>> = (0..2).map(|_| ReadSlot::new(&rt)).collect();
        for slot in &readable {
            slot.xchg(Some(Canary::boxed(&drops))).unwrap();
        }
        {
            let _nmi = restricted::enter();
            plain.clear();
            for slot in &readable {
                slot.clear();
            }
        }
        assert_eq!(model_hooks::backlog(&rt), OBJECTS);
        let drainer = {
            let rt = rt.clone();
            loom::thread::spawn(move || {
                rt.drain().unwrap();
            })
        };
        let backlog = model_hooks::backlog(&rt);
        // Relaxed: what makes the destructors before a drop of the count visible here must be
        // the count itself (`leave` Release, `past_lists` Acquire), not this read.
        let destroyed = drops.load(Ordering::Relaxed);
        assert!(
            backlog + destroyed >= OBJECTS,
            "the backlog read {backlog} with {destroyed} of {OBJECTS} objects destroyed"
        );
        let pending = model_hooks::pending(&rt);
        assert!(pending <= OBJECTS, "pending read {pending} of {OBJECTS}");
        drainer.join().unwrap();
        rt.drain_and_wait().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), OBJECTS);
        assert_eq!(
            (model_hooks::backlog(&rt), model_hooks::pending(&rt)),
            (0, 0)
        );
    });
}
