//! Per-CPU multi-producer job lists, emptied whole by the drainer (take-all).
//!
//! Each shard's list is a stack of job indices linked through the arena's stable entries; its
//! head is one 64-bit word holding the top index (low 32 bits) and the number of jobs in the list
//! (high 32 bits), so the queue length is known without another counter. A producer that has
//! the job's entry at hand already (it located it when it popped the job from a freelist)
//! pushes with it ([`JobLists::push_entry`]) rather than locate it again.
//!
//! Producers push; a consumer replaces the whole head with "empty" and walks the chain it got.
//! This is the kernel `llist` discipline, and it is free of ABA without a tag: a push never reads
//! another job's link (it only writes its own job's link, then CASes the head), and take-all is a
//! CAS of the head it read that reads no link at all (a CAS rather than a swap so that the taker
//! can announce the list's length first, `take_announced`; whatever head the CAS replaces is
//! the whole current list). The chain comes out newest first; [`Chain`] reverses it
//! so that destructors run oldest first, and the drainer hands the reversed chain back to a
//! freelist whole (`Freelist::push_chain`, one CAS).
//!
//! ## Orderings
//!
//! - push: the job's payload and link are written before the head CAS, which is Release; the
//!   CAS is also Acquire so that a push that finds the list empty happens-after the take that
//!   emptied it (the drainer cleared its pending flag before that take: see `doorbell.rs`).
//! - take: the CAS that empties the head is AcqRel: Acquire to see every pushed job's payload
//!   and link (each push's Release heads a release sequence continued by later pushes' CASes),
//!   Release so that a later push that finds the list empty synchronises with it, and so that
//!   a reader of the emptied head sees the jobs the taker announced (`reclaim/backlog.rs`).
//! - A take that reads an empty head writes nothing (a Relaxed load). A push it missed is the
//!   first after the empty head it read, so it found the list empty and rings; its ring's swap
//!   cannot come before the drainer's clear in `pending`'s order (the clear's Acquire would then
//!   make this load see the push, by coherence). So the ring reads the clear, and wakes the
//!   drainer, or a later producer's set, which owes a cycle whose clear reads (or follows) this
//!   ring's swap and whose take therefore sees the push. This needs the ring to be a swap: a
//!   ring that loaded `pending` first could read that later set stale after the next clear.
//!
//! Which pair carries which argument:
//!
//! - *The taker sees the payloads*: push (Release) -> take (Acquire). Load-bearing; loom checks
//!   it (the runtime models' canaries).
//! - *No lost wake-up*: not this list's push-Acquire / take-Release pair. That argument closes
//!   through the doorbell: every write to `pending` and to a list head is a read-modify-write
//!   (so a producer's swap and the drainer's clear are totally ordered, and a push onto a
//!   non-empty list lands before the take that empties it), plus one Release/Acquire pair, the
//!   producer's swap in `Doorbell::ring` (Release) read by `Doorbell::clear` (Acquire), which
//!   makes the take after the clear see the push. loom checks that pair since a take that
//!   finds a list empty only loads its head (kit mutants 24 and 25 are killed by the wake-up
//!   models; while the take was a swap, which in loom always reads the latest value, they
//!   survived), and it checks that the ring must swap (mutant 26, a ring that loads `pending`
//!   first, is killed too). The push-Acquire / take-Release pair here
//!   would only matter to a push onto an empty list that tested `pending` with a plain load,
//!   which no push does (it always swaps), so weakening it alone changes nothing loom can see
//!   (`scripts/mutants.txt`: equivalent); weakening it together with that swap rule is caught
//!   (`every_push_is_taken_or_still_announced`). It is kept because it costs nothing on x86
//!   and keeps the argument local to each file.
//!
//! ## Concurrency table
//!
//! | operation  | concurrent with push | with take | restricted context |
//! |------------|----------------------|-----------|--------------------|
//! | `push_entry` (`push`) | yes       | yes       | yes                |
//! | `take`, `take_announced` | yes    | yes (each job goes to exactly one taker) | no need (drainer side), but safe |
//! | `queued`   | yes (snapshot)       | yes       | yes                |

use crate::arena::{Arena, Entry, NIL, Table};
use crate::sync::{AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

const EMPTY: u64 = NIL as u64;

#[inline]
const fn pack(idx: u32, len: u32) -> u64 {
    (len as u64) << 32 | idx as u64
}

#[inline]
const fn unpack(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

/// One multi-producer, take-all job list per shard.
pub struct JobLists {
    heads: Box<[CachePadded<AtomicU64>]>,
}

impl JobLists {
    /// `shards` empty lists.
    pub fn new(shards: usize) -> Self {
        JobLists {
            heads: (0..shards)
                .map(|_| CachePadded::new(AtomicU64::new(EMPTY)))
                .collect(),
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.heads.len()
    }

    /// Pushes job `idx` onto `shard`'s list and returns how many jobs it held before. The
    /// job's payload must already be set. Lock-free; safe in restricted context.
    ///
    /// # Safety
    /// The caller owns job `idx` and gives that ownership up to the list; `shard` is below
    /// [`shards`](Self::shards) (the restricted path indexes without a bounds check).
    #[cfg(any(test, loom))]
    pub unsafe fn push(&self, arena: &Arena, shard: usize, idx: u32) -> usize {
        // SAFETY: the caller owns `idx`, so `arena` allocated it; the rest is forwarded.
        unsafe { self.push_entry(shard, idx, arena.entry(idx)) }
    }

    /// [`push`](Self::push) with the job's entry already located.
    ///
    /// # Safety
    /// As for [`push`](Self::push), and `entry` is the entry of `idx` in the arena every call
    /// on these lists uses.
    #[inline]
    pub unsafe fn push_entry(&self, shard: usize, idx: u32, entry: &Entry) -> usize {
        debug_assert!(shard < self.heads.len());
        // SAFETY: `shard` is below the shard count (contract).
        let head = unsafe { self.heads.get_unchecked(shard) };
        let link = entry.link();
        // Relaxed: only the value is needed; the CAS validates it.
        let mut cur = head.load(Ordering::Relaxed);
        loop {
            let (top, len) = unpack(cur);
            // Relaxed: published by the Release CAS below.
            link.store(top, Ordering::Relaxed);
            // AcqRel on success: Release publishes payload and link to the taker; Acquire makes a
            // push onto an empty list happen-after the take that emptied it.
            match head.compare_exchange_weak(
                cur,
                pack(idx, len.wrapping_add(1)),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return len as usize,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Takes `shard`'s whole list. The caller owns every job of the returned chain.
    #[cfg(any(test, loom))]
    pub fn take(&self, shard: usize) -> Chain {
        self.take_announced(shard, |_| ()).0
    }

    /// Takes `shard`'s whole list, as `take` does, telling `announce` beforehand how
    /// many jobs it is about to take: the head's length is read, announced, and the head
    /// emptied only if it still holds that list (a CAS); a push in between makes it announce
    /// the difference and try again. Returns the chain and the jobs announced in all (never
    /// fewer than the chain holds; more if another taker emptied the list meanwhile). The
    /// announcements happen before the CAS (Release), so whoever reads the emptied head
    /// (Acquire) sees them (`reclaim/backlog.rs`).
    pub fn take_announced(&self, shard: usize, mut announce: impl FnMut(usize)) -> (Chain, usize) {
        let head = &self.heads[shard];
        let mut announced = 0;
        // Relaxed: a guess the CAS validates; or an empty head, which ends the take with no
        // write (module docs: why a push this load misses is not lost).
        let mut cur = head.load(Ordering::Relaxed);
        loop {
            let (top, len) = unpack(cur);
            if top == NIL {
                // Nothing to take, and nothing to write (module docs).
                return (Chain { top, len: 0 }, announced);
            }
            if len as usize > announced {
                announce(len as usize - announced);
                announced = len as usize;
            }
            // AcqRel on success: see the module docs; the Release also publishes the
            // announcements above. Relaxed on failure: the head read only guides the next try.
            match head.compare_exchange_weak(cur, EMPTY, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return (Chain { top, len }, announced),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Jobs currently queued on all lists (a snapshot).
    pub fn queued(&self) -> usize {
        self.heads
            .iter()
            // Acquire: pairs with a take's Release (`take_announced`): a reader that finds a
            // list emptied sees what its taker announced first (`reclaim/backlog.rs`).
            .map(|h| unpack(h.load(Ordering::Acquire)).1 as usize)
            .sum()
    }
}

/// A chain of jobs taken from a list, newest first; owned by whoever took it.
#[derive(Debug)]
#[must_use = "the jobs of a taken chain must be run and returned"]
pub struct Chain {
    top: u32,
    len: u32,
}

impl Chain {
    /// Number of jobs in the chain.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the chain is empty.
    pub fn is_empty(&self) -> bool {
        self.top == NIL
    }

    /// The chain's jobs, oldest first (the chain is then dropped, its jobs with it).
    ///
    /// # Safety
    /// As for [`for_each_oldest_first`](Self::for_each_oldest_first).
    #[cfg(any(test, loom))]
    pub unsafe fn into_oldest_first(self, arena: &Arena) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len());
        // SAFETY: forwarded contract.
        unsafe { self.for_each_oldest_first(arena, |idx, _| out.push(idx)) };
        out
    }

    /// Calls `f` on each job (index and entry), oldest first, without allocating, and gives
    /// the chain back for [`Freelist::push_chain`](crate::freelist::Freelist::push_chain): the
    /// links are reversed in place, so the oldest job is the returned top and the newest its
    /// last (`None` for an empty chain). `f` may read and clear a job's payload, but the jobs
    /// stay linked and remain the caller's until it returns the chain whole.
    ///
    /// Writing every link here is deliberate: a job's memory then leaves this thread's cache in
    /// the modified state, and the CPU that queued it gets it back by a plain transfer when it
    /// pops the job again. Lines this thread had only read would make that CPU's stores wait
    /// for the other copies to be invalidated, one line at a time: measured here, a walk that
    /// wrote nothing made a teardown loop on the other CPU two to ten times slower.
    ///
    /// # Safety
    /// The chain was taken from lists whose jobs were all allocated by `arena`.
    pub unsafe fn for_each_oldest_first<'a>(
        self,
        arena: &'a Arena,
        mut f: impl FnMut(u32, &'a Entry),
    ) -> Option<(u32, &'a Entry)> {
        if self.top == NIL {
            return None;
        }
        // Reverse the chain in place: we own every job in it, so the links are ours to rewrite.
        let mut prev = NIL;
        let mut cur = self.top;
        while cur != NIL {
            // SAFETY: `cur` came from a job list of `arena`'s jobs (contract).
            let link = unsafe { arena.entry(cur) }.link();
            // Relaxed: these jobs are ours; the take's Acquire made their links visible.
            let next = link.load(Ordering::Relaxed);
            link.store(prev, Ordering::Relaxed);
            prev = cur;
            cur = next;
        }
        let oldest = prev;
        let mut cur = oldest;
        while cur != NIL {
            // SAFETY: as above.
            let entry = unsafe { arena.entry(cur) };
            // Relaxed: our own jobs, whose links we rewrote just above on this thread.
            let next = entry.link().load(Ordering::Relaxed);
            f(cur, entry);
            cur = next;
        }
        // SAFETY: as above; the old top is the reversed chain's last job.
        Some((oldest, unsafe { arena.entry(self.top) }))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::arena::GrowState;

    #[test]
    fn take_returns_oldest_first_and_reports_empty_transitions() {
        let arena = Arena::new(1);
        let mut st = GrowState::default();
        let lists = JobLists::new(2);
        // SAFETY: `st` is this arena's only grow state.
        let jobs: Vec<u32> = (0..5)
            .map(|_| unsafe { arena.alloc_job(&mut st) }.unwrap())
            .collect();
        for (i, &j) in jobs.iter().enumerate() {
            // SAFETY: fresh jobs, owned by us; shard 1 of two.
            let was_empty = unsafe { lists.push(&arena, 1, j) } == 0;
            assert_eq!(was_empty, i == 0);
        }
        assert_eq!(lists.queued(), 5);
        assert!(lists.take(0).is_empty());
        let chain = lists.take(1);
        assert_eq!(chain.len(), 5);
        // SAFETY: the chain's jobs came from `arena`.
        assert_eq!(unsafe { chain.into_oldest_first(&arena) }, jobs);
        assert_eq!(lists.queued(), 0);
        // SAFETY: we own `jobs[0]` again; shard 1 of two.
        assert_eq!(unsafe { lists.push(&arena, 1, jobs[0]) }, 0);
    }

    #[test]
    fn concurrent_pushes_and_takes_lose_nothing() {
        let arena = Arena::new(1);
        let mut st = GrowState::default();
        let lists = JobLists::new(1);
        let per = 2000;
        let jobs: Vec<Vec<u32>> = (0..3)
            .map(|_| {
                (0..per)
                    // SAFETY: `st` is this arena's only grow state.
                    .map(|_| unsafe { arena.alloc_job(&mut st) }.unwrap())
                    .collect()
            })
            .collect();
        let mut taken = Vec::new();
        std::thread::scope(|s| {
            for mine in &jobs {
                let (arena, lists) = (&arena, &lists);
                s.spawn(move || {
                    for &j in mine {
                        // SAFETY: each thread owns its own jobs.
                        unsafe { lists.push(arena, 0, j) };
                    }
                });
            }
            while taken.len() < 3 * per {
                // SAFETY: the chain's jobs came from `arena`.
                taken.extend(unsafe { lists.take(0).into_oldest_first(&arena) });
            }
        });
        // Per producer, jobs come out in the order they were pushed.
        for mine in &jobs {
            let order: Vec<u32> = taken.iter().copied().filter(|j| mine.contains(j)).collect();
            assert_eq!(&order, mine);
        }
    }
}
