//! A `global()` slot of `Owned` boxes: an owned box needs no job, but the slot's first install
//! still creates the process-wide runtime the slot is bound to, so that the guards later
//! exchanges hand back (which look the runtime up only when they need it) find it, from any
//! context. In a binary of its own: the global runtime is per process.

use sigdrop::{Drainer, Owned, RefSlot, Runtime, restricted};
use std::sync::atomic::{AtomicUsize, Ordering};

static DROPPED: AtomicUsize = AtomicUsize::new(0);

struct Counted(u64);

impl Drop for Counted {
    fn drop(&mut self) {
        assert!(!restricted::is_active(), "destroyed in restricted context");
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

static SLOT: RefSlot<Owned<Counted>> = RefSlot::global();

#[test]
fn the_first_install_of_an_owned_box_creates_the_slots_runtime() {
    let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
    {
        let _handler = restricted::enter();
        assert!(SLOT.runtime().is_err(), "no global runtime before any use");
    }
    assert!(
        SLOT.xchg(Some(Owned::new(&rt, Counted(1))))
            .unwrap()
            .is_none()
    );
    {
        // In restricted context a missing global runtime is an error, not created: it exists.
        let _handler = restricted::enter();
        assert!(
            SLOT.runtime().is_ok(),
            "the install created the global runtime"
        );
    }

    // An ordinary replace hands the old box back in a guard that looks the runtime up on drop.
    let old = SLOT.replace(Owned::new(&rt, Counted(2))).unwrap().unwrap();
    assert_eq!(old.0, 1);
    drop(old);
    assert_eq!(DROPPED.load(Ordering::SeqCst), 1, "destroyed inline");

    // A restricted take: the box goes to its own runtime's drainer.
    {
        let _handler = restricted::enter();
        SLOT.clear();
    }
    assert_eq!(DROPPED.load(Ordering::SeqCst), 1, "deferred, not destroyed");
    rt.drain().unwrap();
    assert_eq!(DROPPED.load(Ordering::SeqCst), 2);
}
