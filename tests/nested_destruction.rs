//! What a destructor that sigdrop runs may rely on about the objects it lets go of itself:
//!
//! - clearing a slot (or dropping one) destroys its object before the call returns, as it does
//!   anywhere in ordinary context, as long as the structure is not deeper than the levels
//!   sigdrop destroys inline (a deep one is destroyed in a loop after the outermost destructor);
//! - a `drain_and_wait` it calls destroys what it drains, and what those objects hold, before it
//!   returns;
//! - an `Owned` box it lets go of through a slot of another runtime keeps its own runtime's
//!   policy.

use sigdrop::{Drainer, Owned, Policy, RefSlot, Runtime, restricted};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Sets its flag when destroyed.
struct Flag(Arc<AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Clears its child's slot in its destructor, then records whether the child was gone.
struct ClearsChild {
    child: RefSlot<Box<Flag>>,
    child_gone: Arc<AtomicBool>,
    /// 1: the child was gone when `clear` returned; 2: it was not.
    seen: Arc<AtomicUsize>,
}

impl Drop for ClearsChild {
    fn drop(&mut self) {
        self.child.clear();
        let gone = self.child_gone.load(Ordering::SeqCst);
        self.seen.store(if gone { 1 } else { 2 }, Ordering::SeqCst);
    }
}

fn manual() -> Runtime {
    Runtime::builder().drainer(Drainer::Manual).build().unwrap()
}

#[test]
fn a_slot_cleared_in_a_drained_destructor_has_destroyed_its_object_when_clear_returns() {
    let rt = manual();
    let gone = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let node = Box::new(ClearsChild {
        child: RefSlot::new(&rt),
        child_gone: gone.clone(),
        seen: seen.clone(),
    });
    node.child.xchg(Some(Box::new(Flag(gone.clone())))).unwrap();
    let holder = RefSlot::new(&rt);
    holder.xchg(Some(node)).unwrap();
    {
        let _handler = restricted::enter();
        holder.clear(); // the node goes to the drain below
    }
    assert_eq!(rt.drain().unwrap(), 1);
    assert_eq!(seen.load(Ordering::SeqCst), 1, "the child outlived clear()");
}

/// Holds a child in a slot of `b`.
struct HoldsChild {
    _child: RefSlot<Box<Flag>>,
}

/// Drains `other` in its destructor and records whether the grandchild was gone by then.
struct DrainsOther {
    other: Runtime,
    grandchild_gone: Arc<AtomicBool>,
    seen: Arc<AtomicUsize>,
}

impl Drop for DrainsOther {
    fn drop(&mut self) {
        self.other.drain_and_wait().unwrap();
        let gone = self.grandchild_gone.load(Ordering::SeqCst);
        self.seen.store(if gone { 1 } else { 2 }, Ordering::SeqCst);
    }
}

#[test]
fn a_drain_and_wait_inside_a_destructor_destroys_what_it_drains_whole() {
    let (a, b) = (manual(), manual());
    let gone = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let held = RefSlot::new(&b);
    let parent = Box::new(HoldsChild {
        _child: RefSlot::new(&b),
    });
    parent
        ._child
        .xchg(Some(Box::new(Flag(gone.clone()))))
        .unwrap();
    held.xchg(Some(parent)).unwrap();
    let drains = RefSlot::new(&a);
    drains
        .xchg(Some(Box::new(DrainsOther {
            other: b.clone(),
            grandchild_gone: gone.clone(),
            seen: seen.clone(),
        })))
        .unwrap();
    {
        let _handler = restricted::enter();
        held.clear(); // queued in b
        drains.clear(); // queued in a
    }
    assert_eq!(a.drain().unwrap(), 1);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "b's drain left the child alive"
    );
}

/// Counts its destructions.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Holds an `Owned` box in a slot of another runtime.
struct HoldsOwned {
    _child: RefSlot<Owned<Counted>>,
}

#[test]
fn an_owned_box_let_go_of_in_a_destructor_keeps_its_own_runtimes_policy() {
    let auto = manual();
    let always_defer = Runtime::builder()
        .drainer(Drainer::Manual)
        .policy(Policy::AlwaysDefer)
        .build()
        .unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let parent = Box::new(HoldsOwned {
        _child: RefSlot::new(&auto),
    });
    parent
        ._child
        .xchg(Some(Owned::new(&always_defer, Counted(drops.clone()))))
        .unwrap();
    let held = RefSlot::new(&auto);
    held.xchg(Some(parent)).unwrap();
    {
        let _handler = restricted::enter();
        held.clear();
    }
    assert_eq!(auto.drain().unwrap(), 1);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "destroyed inline");
    assert_eq!(always_defer.stats().pending, 1);
    always_defer.drain_and_wait().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}
