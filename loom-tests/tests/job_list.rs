//! The per-CPU job list: concurrent pushes racing a take-all lose nothing, duplicate nothing,
//! and each producer's jobs come out oldest first after the reversal.
//!
//! Bound: 2 producers (one playing a signal handler) pushing 2 jobs each, the main thread taking
//! concurrently and once more after joining; default preemption bound of the suite (2).
#![cfg(loom)]

use loom::sync::Arc;
use sigdrop::model::{Arena, GrowState, JobLists};

#[test]
fn pushes_racing_take_all_lose_and_duplicate_nothing() {
    loom::model(|| {
        let arena = Arc::new(Arena::new(1));
        let lists = Arc::new(JobLists::new(1));
        let mut state = GrowState::default();
        let jobs: Vec<Vec<u32>> = (0..2)
            .map(|_| {
                (0..2)
                    // SAFETY: `state` is this arena's only grow state.
                    .map(|_| unsafe { arena.alloc_job(&mut state) }.unwrap())
                    .collect()
            })
            .collect();

        let producers: Vec<_> = jobs
            .iter()
            .cloned()
            .map(|mine| {
                let (arena, lists) = (arena.clone(), lists.clone());
                loom::thread::spawn(move || {
                    for idx in mine {
                        // SAFETY: each producer owns its own jobs; shard 0 of one.
                        unsafe { lists.push(&*arena, 0, idx) };
                    }
                })
            })
            .collect();

        // SAFETY (both takes): every job on `lists` came from `arena`.
        let mut taken = unsafe { lists.take(0).into_oldest_first(&arena) };
        for p in producers {
            p.join().unwrap();
        }
        taken.extend(unsafe { lists.take(0).into_oldest_first(&arena) });

        assert_eq!(taken.len(), 4, "lost or duplicated: {taken:?}");
        for mine in &jobs {
            let order: Vec<u32> = taken.iter().copied().filter(|j| mine.contains(j)).collect();
            assert_eq!(&order, mine, "a producer's jobs came out of order");
        }
    });
}
