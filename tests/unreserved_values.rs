//! The value an ordinary-context replace displaces comes back unreserved (that is what keeps
//! the replace a single CAS). These tests pin down what that means: `is_reserved` says so,
//! `reserve()` makes it as safe to drop in a handler as a taken value, and without it a drop in
//! restricted context falls back to spare jobs, then the emergency area, then a counted leak —
//! never an inline destructor. Also checks that `offloaded` never goes down.

mod common;

use common::counted::{Counted, DESTROYED, DESTROYED_IN_RESTRICTED};
use sigdrop::{Drainer, RefSlot, Runtime, restricted};
use std::sync::atomic::Ordering;

fn tight() -> Runtime {
    Runtime::builder()
        .shards(1)
        .headroom(0)
        .hysteresis(0)
        .emergency_capacity(1)
        .drainer(Drainer::Manual)
        .build()
        .unwrap()
}

#[test]
fn replaced_values_are_unreserved_until_reserved_and_never_run_in_a_handler() {
    let rt = tight();
    let slot = RefSlot::new(&rt);
    slot.xchg(Some(Box::new(Counted))).unwrap();
    let mut olds: Vec<_> = (0..4)
        .map(|_| slot.xchg(Some(Box::new(Counted))).unwrap().unwrap())
        .collect();
    assert!(olds.iter().all(|o| !o.is_reserved()));
    assert!(slot.take().unwrap().is_reserved());

    // Reserve two of them: those are deferred with their own jobs.
    olds[0].reserve().unwrap();
    olds[1].reserve().unwrap();
    assert!(olds[0].is_reserved() && olds[1].is_reserved());

    let before = rt.stats();
    {
        let _nmi = restricted::enter();
        for old in olds.drain(..) {
            drop(old);
        }
    }
    let after = rt.stats();
    // Two deferred normally, one parked (no spare job, area of one cell), one leaked.
    assert_eq!(after.emergency - before.emergency, 1);
    assert_eq!(after.leaked - before.leaked, 1);
    assert_eq!(DESTROYED_IN_RESTRICTED.load(Ordering::SeqCst), 0);

    let drained = rt.drain().unwrap();
    let last = rt.stats();
    assert_eq!(drained, 3, "two jobs and one parked object");
    assert!(last.offloaded >= after.offloaded, "offloaded went down");
    assert_eq!(last.offloaded, 3);
    // The taken value (reserved) was dropped in ordinary context above: 1 + 3 = 4 destroyed,
    // one leaked on purpose and counted.
    assert_eq!(DESTROYED.load(Ordering::SeqCst), 4);
    assert_eq!(last.active, 0);
    assert_eq!(rt.audit_idle(), last.total);
}
