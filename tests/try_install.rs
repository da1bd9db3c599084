//! `Slot::try_install`: an install that never displaces. Into an empty slot it installs with a
//! job of its own (none for an `Owned` box); into a full one it hands the value back with
//! `Error::Occupied` and leaves the slot and the job accounting as they were; racing installs
//! into one empty slot, exactly one wins and every loser's claim goes back.

use sigdrop::{Drainer, Error, Owned, ReadSlot, RefSlot, Runtime, Stats, restricted};
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

fn manual() -> Runtime {
    Runtime::builder().drainer(Drainer::Manual).build().unwrap()
}

/// The accounting identities of a quiescent runtime (see `Stats`).
fn assert_quiescent(s: &Stats, refs: usize) {
    assert_eq!(s.refs, refs, "{s:?}");
    assert_eq!(s.total, s.idle + s.active, "{s:?}");
    assert_eq!(s.idle, s.spare + s.reserved + s.refs, "{s:?}");
}

#[test]
fn an_occupied_slot_hands_the_value_back_and_keeps_its_own() {
    let rt = manual();
    let slot: RefSlot<Box<u64>> = RefSlot::new(&rt);
    slot.try_install(Box::new(1)).unwrap();
    assert_quiescent(&rt.stats(), 1);

    let refused = slot.try_install(Box::new(2)).unwrap_err();
    assert!(matches!(refused.error(), Error::Occupied), "{refused:?}");
    assert_eq!(*refused.into_inner(), 2);
    assert_quiescent(&rt.stats(), 1);

    // In a handler too, with a reserved job: a refusal gives the job back to the reservation.
    rt.reserve(1).unwrap();
    let reserved = rt.stats().reserved;
    {
        let _handler = restricted::enter();
        let refused = slot.try_install(Box::new(3)).unwrap_err();
        assert!(matches!(refused.error(), Error::Occupied));
        let kept = refused.into_inner(); // not freed here
        drop(slot.take()); // the object leaves with its job, deferred
        slot.try_install(kept).unwrap(); // the reserved job
        assert_eq!(rt.stats().reserved, reserved - 1);
        let refused = slot.try_install(Box::new(4)).unwrap_err();
        assert!(matches!(refused.error(), Error::Occupied));
        drop(refused); // to the drainer, with a spare job: not freed here
    }
    assert_eq!(
        rt.stats().reserved,
        reserved - 1,
        "a refusal spends nothing"
    );
    assert_eq!(*slot.take().unwrap(), 3);
    rt.drain().unwrap();
    assert_quiescent(&rt.stats(), 0);
}

#[test]
fn in_a_handler_with_no_job_left_it_is_refused_for_want_of_one() {
    let rt = Runtime::builder()
        .drainer(Drainer::Manual)
        .headroom(0)
        .hysteresis(0)
        .build()
        .unwrap();
    rt.trim().unwrap();
    let slot: RefSlot<Box<u64>> = RefSlot::new(&rt);
    let owned: RefSlot<Owned<u64>> = RefSlot::new(&rt);
    let value = {
        let _handler = restricted::enter();
        let refused = slot.try_install(Box::new(5)).unwrap_err();
        assert!(
            matches!(refused.error(), Error::NoSpareJob { .. }),
            "{refused:?}"
        );
        // An owned box needs no job.
        owned.try_install(Owned::new(&rt, 6)).unwrap();
        refused.into_inner()
    };
    assert!(slot.is_empty());
    assert_eq!(*value, 5);
    assert_quiescent(&rt.stats(), 0);
    assert_eq!(*owned.take().unwrap(), 6);
}

#[test]
fn racing_installs_into_one_empty_slot_one_wins_and_the_claims_balance() {
    const ROUNDS: usize = 2000;
    let rt = manual();
    let slot: ReadSlot<Box<usize>> = ReadSlot::new(&rt);
    let barrier = Barrier::new(2);
    let wins = AtomicUsize::new(0);
    thread::scope(|s| {
        for me in 0..2 {
            let (slot, barrier, wins) = (&slot, &barrier, &wins);
            s.spawn(move || {
                for round in 0..ROUNDS {
                    barrier.wait();
                    match slot.try_install(Box::new(round * 2 + me)) {
                        Ok(()) => {
                            wins.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(refused) => {
                            assert!(matches!(refused.error(), Error::Occupied), "{refused:?}");
                        }
                    }
                    barrier.wait();
                    if me == 0 {
                        let object = slot.take().expect("one install won");
                        assert_eq!(*object / 2, round);
                    }
                }
            });
        }
    });
    assert_eq!(
        wins.load(Ordering::Relaxed),
        ROUNDS,
        "exactly one winner per round"
    );
    rt.drain_and_wait().unwrap();
    assert_quiescent(&rt.stats(), 0);
}
