//! The per-CPU freelist: ownership is exclusive under concurrent pops and pushes, and the
//! generation tag is what makes it so.
//!
//! Scenario (both models): three jobs on one shard. A "handler" thread pops one job and pushes it
//! back. The main thread pops three jobs, pushes the first back, then pops again: the classic ABA
//! sequence — if the handler is preempted between reading the head and its CAS, the head returns
//! to the job it read, with a different successor. Every pop records the owner in `owned` and
//! asserts the job was not already owned.
//!
//! - `full_tag_keeps_ownership_exclusive` (the shipped 32-bit tag): passes under the bound.
//! - `one_bit_tag_is_caught` (a 1-bit tag): loom finds the interleaving where the stale CAS
//!   succeeds and a job ends up owned by two parties. This is the evidence that the first model
//!   is not vacuous: the same scenario fails as soon as the tag can wrap within it.
//!
//! Bound: 2 threads, 3 jobs, 1 shard; 2 preemptions suffice for the ABA (one to stall the handler
//! after its link load, one to resume it after the four operations of the main thread).
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use sigdrop::model::{Arena, Freelist, GrowState};

const JOBS: usize = 3;

struct Owners([AtomicBool; JOBS]);

impl Owners {
    fn new() -> Self {
        Owners(std::array::from_fn(|_| AtomicBool::new(false)))
    }
    fn take(&self, idx: u32) {
        let was = self.0[idx as usize].swap(true, Ordering::SeqCst);
        assert!(!was, "job owned by two parties");
    }
    fn give(&self, idx: u32) {
        self.0[idx as usize].store(false, Ordering::SeqCst);
    }
}

fn scenario<const TAG_BITS: u32>() {
    let arena = Arc::new(Arena::new(1));
    let free = Arc::new(Freelist::<TAG_BITS>::new(1));
    let owners = Arc::new(Owners::new());
    let mut state = GrowState::default();
    for _ in 0..JOBS {
        // SAFETY: `state` is this arena's only grow state.
        let idx = unsafe { arena.alloc_job(&mut state) }.unwrap();
        // SAFETY: a fresh job is ours to give to the freelist.
        unsafe { free.push(&*arena, 0, idx) };
    }

    let handler = {
        let (arena, free, owners) = (arena.clone(), free.clone(), owners.clone());
        loom::thread::spawn(move || {
            // SAFETY: every job on `free` came from `arena`; shard 0 of one.
            if let Some(idx) = unsafe { free.pop(&*arena, 0) } {
                owners.take(idx);
                owners.give(idx);
                // SAFETY: we popped it.
                unsafe { free.push(&*arena, 0, idx) };
            }
        })
    };

    let mut mine = Vec::new();
    for _ in 0..3 {
        // SAFETY: every job on `free` came from `arena`; shard 0 of one.
        if let Some(idx) = unsafe { free.pop(&*arena, 0) } {
            owners.take(idx);
            mine.push(idx);
        }
    }
    if let Some(&first) = mine.first() {
        owners.give(first);
        // SAFETY: we popped it.
        unsafe { free.push(&*arena, 0, first) };
        mine.remove(0);
    }
    // SAFETY: every job on `free` came from `arena`; shard 0 of one.
    if let Some(idx) = unsafe { free.pop(&*arena, 0) } {
        owners.take(idx);
        mine.push(idx);
    }
    handler.join().unwrap();
    for idx in mine {
        owners.give(idx);
        // SAFETY: we own every job in `mine`.
        unsafe { free.push(&*arena, 0, idx) };
    }
    // SAFETY: every job on `free` came from `arena`; shard 0 of one.
    assert_eq!(
        unsafe { free.count_idle(&*arena, 10) },
        JOBS,
        "a job was lost"
    );
}

#[test]
fn full_tag_keeps_ownership_exclusive() {
    loom::model(scenario::<32>);
}

#[test]
#[should_panic(expected = "job owned by two parties")]
fn one_bit_tag_is_caught() {
    loom::model(scenario::<1>);
}
