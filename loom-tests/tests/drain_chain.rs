//! A drain returns each chain of jobs it took to the freelist whole (`run_chain` in
//! `src/runtime.rs`, `Freelist::push_chain` in `src/freelist.rs`): the chain's oldest job becomes
//! the head and its newest (the tail of the reversed chain) links to the old head, with one CAS.
//!
//! `a_chain_returned_whole_races_claimed_pops_on_its_shard`: a drain returns a chain of two jobs
//! while a handler on another thread tears down two objects on the same shard, each popping the
//! job its claim stands for (`pop_owed`) — before, during (a failed CAS and a retry) or after the
//! chain's push, so it may pop the chain's jobs one after the other through the links the drain
//! wrote. Every job has one owner at a time (a job owned twice would have its payload cell
//! written by both: a loom data race, or a canary destroyed twice), every destructor runs once,
//! and at the end every job is back in a freelist.
//!
//! The existing runtime models push chains of two jobs only when no pop runs on that shard
//! (`restricted_pop_scans_other_shards_while_jobs_move` does catch a wrong splice, later, by a
//! trim that spins for the lost job); this one puts the pops in the push's window.
//!
//! Caught: a splice that writes the link of the chain's top instead of its tail (the walk in
//! `Chain::for_each_oldest_first` handing back the oldest job's entry as the tail): the newest
//! job of the chain drops out of the freelist, and the final audit finds a job missing.
//!
//! Bound: 2 threads, 4 jobs, 1 shard, no automatic trim (hysteresis 4); the suite's bound.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom_tests::canary::Canary;
use sigdrop::{Drainer, RefSlot, Runtime, restricted};

#[test]
fn a_chain_returned_whole_races_claimed_pops_on_its_shard() {
    loom::model(|| {
        // Each install grows one job, its own claim; the idle jobs stay (no trim below 4 spare).
        let rt = Runtime::builder()
            .shards(1)
            .headroom(0)
            .hysteresis(4)
            .emergency_capacity(1)
            .drainer(Drainer::Manual)
            .build()
            .unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let slots: Vec<Arc<RefSlot<Box<Canary>>>> = (0..4)
            .map(|_| {
                let slot = Arc::new(RefSlot::new(&rt));
                slot.xchg(Some(Canary::boxed(&drops))).unwrap();
                slot
            })
            .collect();
        assert_eq!(rt.stats().total, 4);
        {
            // Two teardowns in a handler on this thread: a list of two jobs, the chain to return.
            let _nmi = restricted::enter();
            slots[0].clear();
            slots[1].clear();
        }
        let handler = {
            let (c, d) = (slots[2].clone(), slots[3].clone());
            loom::thread::spawn(move || {
                let _nmi = restricted::enter();
                c.clear(); // pops the job its claim stands for, from the shard the chain goes to
                d.clear();
            })
        };
        rt.drain().unwrap(); // takes the chain of two (or more), runs it, pushes it back whole
        handler.join().unwrap();
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 4);
        let s = rt.stats();
        assert_eq!((s.active, s.emergency, s.leaked), (0, 0, 0), "{s:?}");
        assert_eq!(
            rt.audit_idle(),
            s.total,
            "a job is missing from the freelists: {s:?}"
        );
    });
}
