//! The emergency area (`src/emergency.rs`, defect D7's fallback) under loom, reached the way it
//! is reached in production: a value displaced by an ordinary-context replace holds no claim,
//! and dropping it in restricted context when no spare or reserved job exists parks it.
//!
//! The handler owns the displaced object and writes its plain memory (a [`Canary`]) before it
//! parks it; the drainer empties the area concurrently and the destructor reads and writes that
//! memory. Only the cell's `FULL` store (Release) and the drainer's `FULL -> TAKING` CAS
//! (Acquire) order the two (the doorbell's swaps may or may not, depending on the interleaving;
//! loom explores the ones where they do not), so a weakening of either is a loom data race. The
//! handler parks twice, so a cell the drainer has just emptied can be reused: the drainer's
//! `FREE` store (Release) and the parker's `FREE -> WRITING` CAS (Acquire) must order the
//! drainer's read of the old payload before the parker's write of the new one.
//!
//! Bound: 2 threads, 3 objects, headroom 0, emergency capacity 2.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom_tests::canary::Canary;
use sigdrop::{Drainer, RefSlot, Runtime, restricted};
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};

/// Executions (across the whole exploration) in which at least one object was parked.
static PARKED_IN: StdAtomicUsize = StdAtomicUsize::new(0);

#[test]
fn parked_objects_are_published_to_the_drainer() {
    loom::model(|| {
        let rt = Runtime::builder()
            .shards(1)
            .headroom(0)
            .hysteresis(0)
            .emergency_capacity(2)
            .drainer(Drainer::Manual)
            .build()
            .unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(RefSlot::new(&rt));

        let handler = {
            let (slot, drops) = (slot.clone(), drops.clone());
            loom::thread::spawn(move || {
                for _ in 0..2 {
                    // An ordinary replace: one CAS; the claim stays with the new object and
                    // the displaced one comes back without a claim. (Into an empty slot it is
                    // an install, which grows the pool's one job.)
                    let made = Canary::boxed(&drops);
                    if let Some(displaced) = slot.xchg(Some(made)).unwrap() {
                        // (Reserved only if this exchange claimed for an empty slot and then
                        // lost the race to the main thread's install: its claim went with it.)
                        // Made by the main thread: the replace's Acquire shows us its contents.
                        displaced.check();
                        // SAFETY: the displaced object is ours alone.
                        unsafe { displaced.rewrite() };
                        // A signal lands: without a claim, and with no spare or reserved job,
                        // the drop parks it (in a cell the drainer may just have emptied).
                        let _nmi = restricted::enter();
                        drop(displaced);
                    }
                }
            })
        };
        // Made after the spawn, so only the slot orders it with the handler. If the handler
        // installed first, this replace displaces the handler's object (destroyed inline here).
        drop(slot.xchg(Some(Canary::boxed(&drops))).unwrap());
        rt.drain().unwrap();
        handler.join().unwrap();
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        let s = rt.stats();
        assert_eq!(s.leaked, 0, "{s:?}");
        if s.emergency > 0 {
            PARKED_IN.fetch_add(1, StdOrdering::Relaxed);
        }
        slot.clear();
        assert_eq!(drops.load(Ordering::SeqCst), 3);
        let s = rt.stats();
        assert_eq!((s.active, s.refs, s.spare), (0, 0, 0), "{s:?}");
        assert_eq!(rt.audit_idle(), s.total);
    });
    // Not vacuous: most explored executions park at least once.
    assert!(
        PARKED_IN.load(StdOrdering::Relaxed) > 0,
        "no execution parked"
    );
}
