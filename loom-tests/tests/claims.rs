//! A claim goes back to the counter it came from (issue 14, item 3), under loom.
//!
//! A handler's map insert takes the one reserved job, then finds the map full and gives the claim
//! back, while an ordinary thread trims the pool. Trim frees spare jobs only: if the refused claim
//! came back as *spare*, some interleavings let trim free it, and the handler install the
//! reservation was made for would then be refused. Afterwards that install must succeed, and its
//! teardown in restricted context must find its job (a teardown that cannot would spin in
//! `pop_owed`, which loom reports as an exceeded branch limit).
//!
//! Bound: 2 threads, 2 jobs (the map's object and the reservation), headroom 0.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom_tests::canary::Canary;
use sigdrop::{Drainer, Error, KptrHash, RefSlot, Runtime, restricted};

#[test]
fn a_refused_insert_gives_a_reserved_claim_back_to_the_reserve_while_trim_runs() {
    loom::model(|| {
        let rt = Runtime::builder()
            .shards(1)
            .headroom(0)
            .hysteresis(0)
            .emergency_capacity(1)
            .drainer(Drainer::Manual)
            .build()
            .unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let map = Arc::new(KptrHash::<u32, Box<Canary>>::new(&rt, 1).unwrap());
        assert!(map.insert(1, Canary::boxed(&drops)).unwrap().is_none()); // its own job
        rt.reserve(1).unwrap();

        let handler = {
            let map = map.clone();
            let boxed = Canary::boxed(&drops); // made in ordinary context
            loom::thread::spawn(move || {
                let result = {
                    let _nmi = restricted::enter();
                    // A refused value is kept, never dropped in the handler.
                    map.insert(2, boxed)
                        .map(|previous| previous.is_none())
                        .map_err(|rejected| rejected.into_parts())
                };
                // Checked outside the handler: a panic there would drop the value in it.
                let (value, error) = result.expect_err("a full map took the insert");
                assert!(matches!(error, Error::MapFull { capacity: 1 }), "{error}");
                value // dropped in ordinary context below
            })
        };
        rt.trim().unwrap();
        let refused = handler.join().unwrap();
        drop(refused);

        // The install the reservation was made for, and its teardown, in restricted context.
        let slot = RefSlot::new(&rt);
        let boxed = Canary::boxed(&drops);
        let refused = {
            let _nmi = restricted::enter();
            match slot.xchg(Some(boxed)) {
                Ok(previous) => {
                    assert!(previous.is_none());
                    slot.clear(); // must find its job
                    None
                }
                Err(rejected) => Some(rejected.into_parts()), // not dropped in the handler
            }
        };
        if let Some((value, error)) = refused {
            drop(value);
            panic!("the reserved install was refused: {error}");
        }
        rt.drain().unwrap();
        assert!(map.delete(&1).unwrap());
        assert_eq!(drops.load(Ordering::SeqCst), 3);
        let s = rt.stats();
        assert_eq!(
            (s.active, s.refs, s.reserved, s.emergency, s.leaked),
            (0, 0, 0, 0, 0),
            "{s:?}"
        );
        assert_eq!(rt.audit_idle(), s.total);
    });
}

/// Two installs that never displace race into one empty slot: exactly one goes in, and the
/// loser, which may have claimed a job before its compare-and-swap failed, gives the claim
/// back. (Breaking it on purpose, the loser keeping its claim — mutation kit T1 — leaves a
/// claim owed to nothing: `refs` stays at 1 once the slot is empty again.)
#[test]
fn racing_try_installs_one_wins_and_the_loser_gives_its_claim_back() {
    loom::model(|| {
        let rt = Runtime::builder()
            .shards(1)
            .headroom(0)
            .hysteresis(0)
            .drainer(Drainer::Manual)
            .build()
            .unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = Arc::new(RefSlot::<Box<Canary>>::new(&rt));
        let other = {
            let slot = slot.clone();
            let boxed = Canary::boxed(&drops);
            loom::thread::spawn(move || slot.try_install(boxed).map_err(|r| r.into_parts()))
        };
        let mine = slot
            .try_install(Canary::boxed(&drops))
            .map_err(|r| r.into_parts());
        let theirs = other.join().unwrap();
        let wins = [&mine, &theirs].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "exactly one install goes in");
        for refused in [mine, theirs] {
            if let Err((value, error)) = refused {
                assert!(matches!(error, Error::Occupied), "{error}");
                drop(value);
            }
        }
        slot.clear();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        let s = rt.stats();
        assert_eq!((s.refs, s.active), (0, 0), "a claim owed to nothing: {s:?}");
        assert_eq!(rt.audit_idle(), s.total);
    });
}
