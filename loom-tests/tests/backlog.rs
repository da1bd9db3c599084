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
//!   not counted yet, a backlog of 0 with nothing destroyed; and when the take's CAS does not
//!   publish the announcement (kit 15, Release dropped): the writer's read of the emptied head
//!   no longer makes the announcement visible.
//! - The same model checks `pending` never exceeds the three objects. Caught when a chain's
//!   batch enters the count again (kit L2): a chain's objects then count twice once batched.
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
        let destroyed = drops.load(Ordering::SeqCst);
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
