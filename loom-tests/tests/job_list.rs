//! The per-CPU job list: concurrent pushes racing a take-all lose nothing, duplicate nothing,
//! and each producer's jobs come out oldest first after the reversal; and a take announces
//! every job it takes before the list is emptied, however pushes race it.
//!
//! - `pushes_racing_take_all_lose_and_duplicate_nothing`: 2 producers (one playing a signal
//!   handler) pushing 2 jobs each, the main thread taking concurrently and once more after
//!   joining; default preemption bound of the suite (2).
//! - `a_take_announces_every_job_it_takes`: one job queued, a producer pushing another while
//!   the main thread takes with announcements: the take's retry, after a push moved the head,
//!   announces the difference, so the jobs announced cover the chain taken (the backlog's count
//!   relies on it: `src/reclaim/backlog.rs`). Caught when a retry announces nothing more (kit
//!   L21): the chain then holds a job nobody announced.
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

#[test]
fn a_take_announces_every_job_it_takes() {
    loom::model(|| {
        let arena = Arc::new(Arena::new(1));
        let lists = Arc::new(JobLists::new(1));
        let mut state = GrowState::default();
        // SAFETY: `state` is this arena's only grow state.
        let mut job = || unsafe { arena.alloc_job(&mut state) }.unwrap();
        let (queued, pushed) = (job(), job());
        // SAFETY: the job came from `arena`; shard 0 of one.
        unsafe { lists.push(&*arena, 0, queued) };
        let producer = {
            let (arena, lists) = (arena.clone(), lists.clone());
            // SAFETY: the producer owns its job; shard 0 of one.
            loom::thread::spawn(move || unsafe { lists.push(&*arena, 0, pushed) })
        };
        let mut told = 0;
        let (chain, announced) = lists.take_announced(0, |n| told += n);
        assert_eq!(
            told, announced,
            "the announcements add up to what the take returns"
        );
        assert!(
            announced >= chain.len(),
            "{announced} announced for a chain of {}",
            chain.len()
        );
        producer.join().unwrap();
        // SAFETY (both takes): every job on `lists` came from `arena`.
        let mut taken = unsafe { chain.into_oldest_first(&arena) };
        taken.extend(unsafe { lists.take(0).into_oldest_first(&arena) });
        assert_eq!(taken, [queued, pushed]);
    });
}
