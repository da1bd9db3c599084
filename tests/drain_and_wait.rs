//! `Runtime::drain_and_wait` runs every destructor deferred before the call, even when the
//! drainer thread took them first and is still running them: it waits for that drain, not just
//! for its own. Objects handed over in restricted context on another thread (joined before the
//! call), destroyed slowly so that the drainer thread is in the middle of them when the call
//! comes; every round must find every destructor run when it returns.
//!
//! And what it returns: with nobody else draining, the count of every destructor it ran, however
//! many batches were waiting.

use sigdrop::{Drainer, Owned, Policy, ReadSlot, RefSlot, Runtime, restricted};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const OBJECTS: usize = 2000;
const ROUNDS: usize = 5;

/// Counts its drop after spinning a few microseconds, so that a drain of a round takes a few
/// milliseconds.
struct Slow(Arc<AtomicUsize>);

impl Drop for Slow {
    fn drop(&mut self) {
        let until = Instant::now() + Duration::from_micros(2);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn drain_and_wait_waits_for_owned_boxes_the_drainer_thread_took_first() {
    let rt = Runtime::new().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    for round in 1..=ROUNDS {
        let boxes: Vec<Owned<Slow>> = (0..OBJECTS)
            .map(|_| Owned::new(&rt, Slow(dropped.clone())))
            .collect();
        std::thread::spawn(move || {
            let _nmi = restricted::enter();
            drop(boxes); // each one handed to the drainer thread, which is woken at once
        })
        .join()
        .unwrap();
        rt.drain_and_wait().unwrap();
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            round * OBJECTS,
            "round {round}: drain_and_wait returned before every box was destroyed: {:?}",
            rt.stats()
        );
    }
}

/// Fills `slots` with slow objects, clears them all in restricted context on another thread
/// (joined), then calls `drain_and_wait`: every object must be destroyed when it returns, round
/// after round, whoever took them first.
fn cleared_in_a_handler_then_drain_and_wait<S: Send + Sync + 'static>(
    rt: &Runtime,
    slots: Arc<Vec<S>>,
    fill: impl Fn(&S, Box<Slow>),
    clear: fn(&S),
) {
    let dropped = Arc::new(AtomicUsize::new(0));
    for round in 1..=ROUNDS {
        for s in slots.iter() {
            fill(s, Box::new(Slow(dropped.clone())));
        }
        let slots = slots.clone();
        std::thread::spawn(move || {
            let _nmi = restricted::enter();
            slots.iter().for_each(clear);
        })
        .join()
        .unwrap();
        rt.drain_and_wait().unwrap();
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            round * OBJECTS,
            "round {round}: drain_and_wait returned before every object was destroyed: {:?}",
            rt.stats()
        );
    }
}

#[test]
fn drain_and_wait_waits_for_slot_objects_the_drainer_thread_took_first() {
    let rt = Runtime::builder().headroom(OBJECTS).build().unwrap();
    let slots = Arc::new((0..OBJECTS).map(|_| RefSlot::new(&rt)).collect());
    cleared_in_a_handler_then_drain_and_wait(
        &rt,
        slots,
        |s, v| assert!(s.xchg(Some(v)).unwrap().is_none()),
        RefSlot::clear,
    );
}

#[test]
fn drain_and_wait_waits_for_readable_objects_the_drainer_thread_batched_for_a_grace_period() {
    // Objects of readable slots need a grace period: the drainer thread that takes them puts
    // them in a batch of its own, closed only at the end of its cycle. The call must wait for
    // that cycle before it starts the grace period it waits for, or the batch is left queued.
    let rt = Runtime::builder().headroom(OBJECTS).build().unwrap();
    let slots = Arc::new((0..OBJECTS).map(|_| ReadSlot::new(&rt)).collect());
    cleared_in_a_handler_then_drain_and_wait(
        &rt,
        slots,
        |s, v| assert!(s.xchg(Some(v)).unwrap().is_none()),
        ReadSlot::clear,
    );
}

/// This thread retires an object of its own into a batch (a `ReadSlot` clear; a `RefSlot` clear
/// under `Policy::AlwaysDefer`) while two other threads keep retiring into the same CPU's open
/// batch, then calls `drain_and_wait`: its object must be destroyed when the call returns, even
/// if another thread held that batch's lock at the call, or had just filled it and not yet
/// queued it. Returns the rounds in which it was not.
fn own_retired_object_missed(policy: Policy, drainer: Drainer, readable: bool) -> usize {
    const BATCH_ROUNDS: usize = 3000;
    let rt = Runtime::builder()
        .shards(1)
        .policy(policy)
        .drainer(drainer)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (rt, stop) = (rt.clone(), stop.clone());
            std::thread::spawn(move || {
                let read: ReadSlot<Box<u64>> = ReadSlot::new(&rt);
                let plain: RefSlot<Box<u64>> = RefSlot::new(&rt);
                while !stop.load(Ordering::Relaxed) {
                    if readable {
                        let _ = read.xchg(Some(Box::new(1)));
                        read.clear();
                    } else {
                        let _ = plain.xchg(Some(Box::new(1)));
                        plain.clear();
                    }
                }
            })
        })
        .collect();
    let read: ReadSlot<Box<Slow>> = ReadSlot::new(&rt);
    let plain: RefSlot<Box<Slow>> = RefSlot::new(&rt);
    let mut missed = 0;
    for _ in 0..BATCH_ROUNDS {
        let dropped = Arc::new(AtomicUsize::new(0));
        let mine = Box::new(Slow(dropped.clone()));
        if readable {
            assert!(read.xchg(Some(mine)).unwrap().is_none());
            read.clear();
        } else {
            assert!(plain.xchg(Some(mine)).unwrap().is_none());
            plain.clear();
        }
        rt.drain_and_wait().unwrap();
        if dropped.load(Ordering::SeqCst) == 0 {
            missed += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().for_each(|w| w.join().unwrap());
    missed
}

#[test]
fn drain_and_wait_waits_for_its_own_object_in_a_batch_other_threads_are_filling() {
    for drainer in [Drainer::Manual, Drainer::Thread] {
        let read = own_retired_object_missed(Policy::Auto, drainer, true);
        let plain = own_retired_object_missed(Policy::AlwaysDefer, drainer, false);
        assert_eq!(
            (read, plain),
            (0, 0),
            "{drainer:?}: rounds whose own object was not destroyed (ReadSlot, AlwaysDefer RefSlot)"
        );
    }
}

#[test]
fn drain_and_wait_from_a_destructor_on_the_drainer_thread_does_not_wait_for_itself() {
    // A destructor that calls `drain_and_wait` runs inside a drain: it must not wait for the
    // drain it is part of (nor for another that may be waiting for it). It returns, and the
    // rest is destroyed as usual.
    struct Drains(Runtime, Arc<AtomicUsize>);
    impl Drop for Drains {
        fn drop(&mut self) {
            self.0.drain_and_wait().unwrap();
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    let rt = Runtime::new().unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let boxes: Vec<Owned<Drains>> = (0..8)
        .map(|_| Owned::new(&rt, Drains(rt.clone(), done.clone())))
        .collect();
    std::thread::spawn(move || {
        let _nmi = restricted::enter();
        drop(boxes);
    })
    .join()
    .unwrap();
    rt.drain_and_wait().unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 8);
}

/// With nobody else draining (a manual drainer) and no reader, `drain_and_wait` runs every
/// object retired before the call and returns how many it ran: all of them, also when more
/// batches wait than its cycles run (one cycle runs at most 64 ready batches; what is left, it
/// runs on its own before it returns).
#[test]
fn drain_and_wait_counts_every_batch_it_runs() {
    // Three cycles' share of batches, and a partial one still open.
    const RETIRED: usize = 3 * 64 * 64 + 10;
    let rt = Runtime::builder()
        .drainer(Drainer::Manual)
        .policy(Policy::AlwaysDefer)
        // No help over the bound: the batches wait for the call.
        .max_pending(1 << 20)
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let slot = RefSlot::new(&rt);
    for _ in 0..RETIRED {
        // Under AlwaysDefer the object replaced is retired into a batch, not destroyed here.
        drop(slot.xchg(Some(Box::new(Slow(dropped.clone())))).unwrap());
    }
    // The one still in the slot is no retired object.
    let retired = RETIRED - 1;
    assert_eq!(dropped.load(Ordering::SeqCst), 0, "{:?}", rt.stats());
    let ran = rt.drain_and_wait().unwrap();
    assert_eq!(dropped.load(Ordering::SeqCst), retired, "{:?}", rt.stats());
    assert_eq!(
        ran,
        retired,
        "what drain_and_wait said it ran: {:?}",
        rt.stats()
    );
}
