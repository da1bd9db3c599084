//! Models of `Runtime::drain_and_wait` against a drain running at the same time on another
//! thread (the drainer thread's, or a helper's), on the code that ships: what was handed over
//! before the call is destroyed when it returns, even when the other drain took it first and
//! is still running it (`src/reclaim/cycle_gate.rs`).
//!
//! The object is a `Canary`: destroyed exactly once, never in restricted context, its contents
//! published along with it.
//!
//! Bound: 3 threads (a "handler" that hands one object over and is joined before the call, a
//! concurrent drain, the caller), 1 shard, manual drainer; the suite's preemption bound.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom_tests::canary::Canary;
use loom_tests::smallest_runtime;
use sigdrop::{Drainer, Owned, RefSlot, Runtime, restricted};

/// The suite's smallest runtime, drained by hand, with `headroom` spare jobs.
fn manual(headroom: usize) -> Runtime {
    smallest_runtime()
        .headroom(headroom)
        .drainer(Drainer::Manual)
        .build()
        .unwrap()
}

/// Runs `hand_over` in restricted context on a "handler" thread and joins it; then calls
/// `drain_and_wait` while another thread drains, and checks, before that drain is joined, that
/// the one object handed over was destroyed.
fn hand_over_then_drain_and_wait(
    rt: &Runtime,
    drops: &AtomicUsize,
    hand_over: impl FnOnce() + Send + 'static,
) {
    loom::thread::spawn(move || {
        let _nmi = restricted::enter();
        hand_over();
    })
    .join()
    .unwrap();
    let other = {
        let rt = rt.clone();
        loom::thread::spawn(move || {
            rt.drain().unwrap();
        })
    };
    rt.drain_and_wait().unwrap();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "drain_and_wait returned before the other drain destroyed what it took"
    );
    other.join().unwrap();
}

/// (a) An owned box dropped in restricted context (its own node, no job).
#[test]
fn drain_and_wait_waits_for_an_owned_box_another_drain_took() {
    loom::model(|| {
        let rt = manual(0);
        let drops = Arc::new(AtomicUsize::new(0));
        let boxed = Owned::new(&rt, Canary::new(&drops));
        hand_over_then_drain_and_wait(&rt, &drops, move || drop(boxed));
    });
}

/// (b) A slot's object cleared in restricted context (with its job, on the job list).
#[test]
fn drain_and_wait_waits_for_a_slot_object_another_drain_took() {
    loom::model(|| {
        let rt = manual(1);
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = RefSlot::new(&rt);
        assert!(slot.xchg(Some(Canary::boxed(&drops))).unwrap().is_none());
        hand_over_then_drain_and_wait(&rt, &drops, move || slot.clear());
    });
}
