//! A read guard leaked for good (`mem::forget`) on another thread holds every later grace period
//! up. It may delay only objects that left readable slots: objects of write-only slots, of maps
//! and of other runtimes are still destroyed, the drainer thread keeps running, and dropping a
//! runtime returns (destroying its waiting objects: with the runtime gone no reader can reach
//! them).
//!
//! This file is its own process, so the leaked guard holds up only its own grace periods.

mod common;

use common::wait_until;
use sigdrop::{Drainer, KptrArray, Policy, ReadSlot, RefSlot, Runtime, read, restricted};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Counts its destructions.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn a_leaked_guard_delays_only_readable_objects_and_never_shutdown() {
    // Leak a guard on a thread that then exits: its counter stays raised for ever.
    std::thread::spawn(|| std::mem::forget(read::enter()))
        .join()
        .unwrap();
    let stuck = read::start_grace_period();
    assert!(
        !read::grace_period_passed(stuck),
        "the leaked guard holds grace periods up"
    );

    let drops = Arc::new(AtomicUsize::new(0));
    let count = || drops.load(Ordering::SeqCst);
    let rt = Runtime::new().unwrap(); // with a drainer thread

    // A readable slot's old object waits: readers could still borrow it.
    let readable: ReadSlot<Box<Counted>> = ReadSlot::new(&rt);
    readable
        .xchg(Some(Box::new(Counted(drops.clone()))))
        .unwrap();
    readable.clear();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        rt.drain().unwrap(),
        0,
        "a drain never waits for the leaked guard"
    );
    assert_eq!(
        count(),
        0,
        "an object readers could see was destroyed under a guard"
    );
    assert!(rt.stats().pending >= 1);

    // A write-only slot torn down in restricted context: destroyed by the drainer thread.
    let slot: RefSlot<Box<Counted>> = RefSlot::new(&rt);
    slot.xchg(Some(Box::new(Counted(drops.clone())))).unwrap();
    {
        let _nmi = restricted::enter();
        slot.clear();
    }
    wait_until(
        WAIT,
        "the write-only slot's object",
        || format!("{:?}", rt.stats()),
        || count() == 1,
    );

    // A map's object, torn down in restricted context: destroyed too.
    let map: KptrArray<Box<Counted>> = KptrArray::new(&rt, 1).unwrap();
    drop(map.insert(0, Box::new(Counted(drops.clone()))).unwrap());
    {
        let _nmi = restricted::enter();
        assert!(map.delete(0).unwrap());
    }
    wait_until(
        WAIT,
        "the map's object",
        || format!("{:?}", rt.stats()),
        || count() == 2,
    );

    // Another runtime, deferring everything in ordinary context: not held up either.
    let other = Runtime::builder()
        .policy(Policy::AlwaysDefer)
        .drainer(Drainer::Manual)
        .build()
        .unwrap();
    let other_slot: RefSlot<Box<Counted>> = RefSlot::new(&other);
    other_slot
        .xchg(Some(Box::new(Counted(drops.clone()))))
        .unwrap();
    other_slot.clear();
    assert_eq!(other.drain().unwrap(), 1);
    assert_eq!(count(), 3);
    drop(other_slot);
    drop(other);

    // Shutdown returns, on another thread so a hang fails the test instead of blocking it, and
    // destroys the readable object that was still waiting.
    drop((readable, slot, map));
    let returned = Arc::new(AtomicBool::new(false));
    {
        let returned = returned.clone();
        std::thread::spawn(move || {
            drop(rt);
            returned.store(true, Ordering::SeqCst);
        });
    }
    wait_until(WAIT, "Runtime::drop to return", String::new, || {
        returned.load(Ordering::SeqCst)
    });
    assert_eq!(count(), 4, "shutdown destroys the objects still waiting");
    assert!(!read::grace_period_passed(stuck));
}
