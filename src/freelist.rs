//! Per-CPU sharded freelists of idle jobs, with an ABA-safe pop for any number of consumers.
//!
//! Each shard is a Treiber stack whose head is one 64-bit word: the index of the top job in the
//! low 32 bits and a generation tag in the high bits. The links between jobs live in stable
//! storage (the arena's entries, or any other [`Table`] that is never freed while the freelist
//! is used), so reading the link of a job that someone else popped a moment ago reads valid
//! memory (a stale value at worst). The same stack serves the hash map's free elements.
//!
//! A pop locates the entry of the job it pops (to load its link), and returns it along with the
//! index ([`pop_entry`](Freelist::pop_entry), [`pop_owed`](Freelist::pop_owed)), so that its
//! caller need not locate the job again; [`push_entry`](Freelist::push_entry) takes an entry the
//! caller already has. An entry is only a faster name for its index: nothing below changes.
//!
//! ## The ABA problem and why the tag closes it
//!
//! A pop reads the head `(a, t)`, then `link(a) = b`, then tries `CAS(head: (a, t) -> (b, t+1))`.
//! If between its read and its CAS other parties pop `a`, pop `b`, and push `a` back, the head is
//! `a` again but `a`'s link is no longer `b`; an untagged CAS would succeed and install `b`, a job
//! somebody else now owns (defect D1 of the kernel v2 design, where NMI teardowns on several CPUs
//! and the trimmer all pop the idle list). Every successful push and pop here increments the tag,
//! so the head word the stale pop expects no longer exists and its CAS fails. The tag would have to
//! wrap (2^32 operations on one shard during one stalled pop) for the CAS to succeed wrongly.
//! Tests and loom models can shrink the tag to a bit or two (`TAG_BITS`) to watch the ABA happen.
//!
//! ## Orderings
//!
//! - push: the job's link is stored (Relaxed) and then published by the head CAS (Release).
//! - pop: the head is loaded with Acquire, so the link load that follows sees the link stored by
//!   the push that made this job the head; the CAS succeeds only if the head word is unchanged,
//!   i.e. that link is still current. Every write to a head is an RMW, so each push's Release
//!   heads a release sequence that all later CASes continue: whoever pops a job synchronises with
//!   the push that put it there, and sees everything its pusher wrote (payload included).
//! - Which pair carries that: the push CAS (Release) and the Acquire of the *load that read the
//!   head word the pop then CASes* — the first load, or the failed CAS before a retry (hence its
//!   Acquire failure ordering). The successful CAS reads that very same store again (every
//!   head word is unique, tags included), so its own Acquire adds no edge: it is kept as cheap
//!   insurance, and loom cannot catch its removal alone (`scripts/mutants.txt` lists that
//!   mutant as equivalent).
//! - Tags: a pop's bump alone already rules out ABA for wide tags (every ABA sequence pops the
//!   stale head's job again, and that pop bumps the tag); the push's bump doubles the distance
//!   to a wrap. The one-bit model (`one_bit_tag_is_caught`) is sized for bumps on both sides:
//!   without the push's bump it no longer finds its ABA, which is how a change of the tag
//!   discipline shows up (kit mutant 9).
//!
//! ## Concurrency table
//!
//! | operation    | concurrent with push | with pop | restricted context |
//! |--------------|----------------------|----------|--------------------|
//! | `push`, `push_entry`, `push_chain` | yes | yes | yes             |
//! | `pop`, `pop_entry`, `pop_any` | yes | yes      | yes                |
//! | `pop_owed`   | yes                  | yes      | yes (lock-free, see below) |
//! | `count_idle` | yes (result is then only a snapshot) | yes | yes   |

use crate::arena::{NIL, Table};
use crate::sync::{AtomicU64, Ordering, spin_hint};
use crossbeam_utils::CachePadded;

/// Per-shard ABA-safe stacks of idle job indices. `TAG_BITS` (1..=32) is the width of the
/// generation tag; anything below 32 exists for tests and models that show why it matters.
pub struct Freelist<const TAG_BITS: u32 = 32> {
    heads: Box<[CachePadded<AtomicU64>]>,
}

#[inline]
const fn pack<const TAG_BITS: u32>(idx: u32, tag: u32) -> u64 {
    let mask = if TAG_BITS >= 32 {
        u32::MAX
    } else {
        (1u32 << TAG_BITS) - 1
    };
    ((tag & mask) as u64) << 32 | idx as u64
}

#[inline]
const fn unpack(word: u64) -> (u32, u32) {
    (word as u32, (word >> 32) as u32)
}

impl<const TAG_BITS: u32> Freelist<TAG_BITS> {
    /// `shards` empty stacks.
    pub fn new(shards: usize) -> Self {
        const { assert!(TAG_BITS >= 1 && TAG_BITS <= 32) };
        assert!(shards > 0);
        Freelist {
            heads: (0..shards)
                .map(|_| CachePadded::new(AtomicU64::new(pack::<TAG_BITS>(NIL, 0))))
                .collect(),
        }
    }

    /// Pushes job `idx` on `shard`. Lock-free; safe in restricted context.
    ///
    /// # Safety
    /// The caller owns job `idx` (it is in no list) and gives that ownership up to the freelist.
    #[inline]
    pub unsafe fn push<T: Table + ?Sized>(&self, table: &T, shard: usize, idx: u32) {
        // SAFETY: the caller owns `idx`, so it was handed out by `table`; the rest is forwarded.
        unsafe { self.push_entry::<T>(shard, idx, table.entry(idx)) }
    }

    /// [`push`](Self::push) with the job's entry already located.
    ///
    /// # Safety
    /// As for [`push`](Self::push), and `entry` is the entry of `idx` in the table every call on
    /// this freelist uses.
    #[inline]
    pub unsafe fn push_entry<T: Table + ?Sized>(&self, shard: usize, idx: u32, entry: &T::Entry) {
        // SAFETY: a single job is a chain whose top is its tail; forwarded contract.
        unsafe { self.push_chain::<T>(shard, idx, entry) }
    }

    /// Pushes a whole chain of jobs on `shard` with one CAS: `top` becomes the head and the
    /// chain's last job, whose entry is `tail`, links to the old head. Only that one link is
    /// written; the others stay as the chain had them (a drainer returns a job list this way
    /// without writing into the jobs). Lock-free; safe in restricted context.
    ///
    /// For a pop, this is a push of `top` whose link happens to lead through the chain: every
    /// link in it was written before this CAS (by this thread, or by threads it synchronised
    /// with), so the Release CAS publishes them all, and the tag bump is the same.
    ///
    /// # Safety
    /// The caller owns every job of the chain (none is in a list) and gives them up to the
    /// freelist; following links from `top` reaches `tail` (`top` itself for one job), each link
    /// written before the call by this thread or by a thread this one synchronised with; `tail`
    /// is an entry in the table every call on this freelist uses.
    #[inline]
    pub unsafe fn push_chain<T: Table + ?Sized>(&self, shard: usize, top: u32, tail: &T::Entry) {
        let head = &self.heads[shard];
        let link = T::link(tail);
        // Relaxed: only the value is needed; the CAS below validates it.
        let mut cur = head.load(Ordering::Relaxed);
        loop {
            let (old_top, tag) = unpack(cur);
            // Relaxed: published by the Release CAS that makes `top` the head.
            link.store(old_top, Ordering::Relaxed);
            // Release on success: publishes the links and the jobs' contents to the popper.
            match head.compare_exchange_weak(
                cur,
                pack::<TAG_BITS>(top, tag.wrapping_add(1)),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Pops a job from `shard` alone; `None` if that shard was empty when looked at. Lock-free;
    /// safe in restricted context. The popped job is owned by the caller.
    ///
    /// # Safety
    /// Every job ever pushed onto this freelist was handed out by `table` (the same table is
    /// passed to every call), and `shard` is below [`shards`](Self::shards) (the restricted
    /// path indexes without a bounds check).
    #[inline]
    pub unsafe fn pop<T: Table + ?Sized>(&self, table: &T, shard: usize) -> Option<u32> {
        // SAFETY: forwarded contract.
        unsafe { self.pop_entry(table, shard) }.map(|(idx, _)| idx)
    }

    /// [`pop`](Self::pop), also returning the popped job's entry (located once, here).
    ///
    /// # Safety
    /// As for [`pop`](Self::pop).
    #[inline]
    pub unsafe fn pop_entry<'t, T: Table + ?Sized>(
        &self,
        table: &'t T,
        shard: usize,
    ) -> Option<(u32, &'t T::Entry)> {
        debug_assert!(shard < self.heads.len());
        // SAFETY: `shard` is below the shard count (contract).
        let head = unsafe { self.heads.get_unchecked(shard) };
        // Acquire: pairs with the Release CAS of the push that made `top` the head, so that the
        // link load below sees that push's link store.
        let mut cur = head.load(Ordering::Acquire);
        loop {
            let (top, tag) = unpack(cur);
            if top == NIL {
                return None;
            }
            // SAFETY: `top` was at a head of this freelist, so `table` handed it out (caller's
            // contract); entries live as long as the table.
            let entry = unsafe { table.entry(top) };
            // Relaxed: the Acquire load of the head ordered us after the push that stored this
            // link. The value may be stale if `top` has moved on since we loaded `cur`; then the
            // tag has changed and the CAS below fails.
            let next = T::link(entry).load(Ordering::Relaxed);
            // Acquire on success: we now own `top` and must see what its pusher wrote.
            // Acquire on failure: we retry with the new head and read its link.
            match head.compare_exchange_weak(
                cur,
                pack::<TAG_BITS>(next, tag.wrapping_add(1)),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some((top, entry)),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Pops from `start`'s shard, then from the others in turn, once around; `None` if every
    /// shard was empty when looked at. Returns the job and its entry.
    ///
    /// # Safety
    /// As for [`pop`](Self::pop).
    pub unsafe fn pop_any<'t, T: Table + ?Sized>(
        &self,
        table: &'t T,
        start: usize,
    ) -> Option<(u32, &'t T::Entry)> {
        let n = self.heads.len();
        // Own shard first, then the others in turn (no division on the fast path); a `start`
        // past the end starts at shard 0.
        let start = start.min(n);
        // SAFETY: forwarded contract; every shard of the two ranges is below `n`.
        (start..n)
            .chain(0..start)
            .find_map(|shard| unsafe { self.pop_entry(table, shard) })
    }

    /// Pops a job that the accounting says is owed to the caller: the caller holds a claim (a
    /// unit of the ledger, see `ledger.rs`) that stands for one idle job in some shard. Returns
    /// the job and its entry.
    ///
    /// Never returns while no job can be found, because one must exist. Why the retry
    /// terminates: every claim holder pops exactly one job, and a job only enters a freelist
    /// before the credit that stands for it is published, so at every instant the freelists hold
    /// at least as many jobs as there are unspent claims. A sweep over all shards can therefore
    /// miss only if jobs moved between shards while it looked — a pop and a push by other
    /// parties, each a completed operation. A failed sweep thus implies system-wide progress
    /// (lock-freedom); it never waits for a particular thread, in particular not for the thread
    /// a signal handler interrupted (that thread is stopped, so it cannot be what moves jobs).
    ///
    /// The fast path (inlined) tries `start`'s shard once; the sweeps are out of line.
    ///
    /// # Safety
    /// As for [`pop`](Self::pop), with `start` as the shard; and the caller holds a claim
    /// (otherwise this may spin).
    #[inline]
    pub unsafe fn pop_owed<'t, T: Table + ?Sized>(
        &self,
        table: &'t T,
        start: usize,
    ) -> (u32, &'t T::Entry) {
        // SAFETY: forwarded contract.
        match unsafe { self.pop_entry(table, start) } {
            Some(found) => found,
            // SAFETY: forwarded contract.
            None => unsafe { self.pop_owed_sweep(table, start) },
        }
    }

    /// `pop_owed`'s sweeps, when `start`'s shard was empty.
    ///
    /// # Safety
    /// As for [`pop_owed`](Self::pop_owed).
    #[cold]
    #[inline(never)]
    unsafe fn pop_owed_sweep<'t, T: Table + ?Sized>(
        &self,
        table: &'t T,
        start: usize,
    ) -> (u32, &'t T::Entry) {
        loop {
            // SAFETY: forwarded contract.
            if let Some(found) = unsafe { self.pop_any(table, start) } {
                return found;
            }
            spin_hint();
        }
    }

    /// Counts the jobs reachable from every head, stopping after `limit` jobs. Exact only while
    /// no push or pop runs; used by audits and tests.
    ///
    /// # Safety
    /// As for [`pop`](Self::pop).
    pub unsafe fn count_idle<T: Table + ?Sized>(&self, table: &T, limit: usize) -> usize {
        let mut count = 0;
        // Acquire (head and links): pairs with the pushes' Release CASes, for a walk at a
        // quiescent point.
        for head in self.heads.iter() {
            let (mut idx, _) = unpack(head.load(Ordering::Acquire));
            while idx != NIL && count < limit {
                count += 1;
                // SAFETY: `idx` was reached from a head, so `table` handed it out (contract).
                idx = T::link(unsafe { table.entry(idx) }).load(Ordering::Acquire);
            }
        }
        count
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::arena::{Arena, GrowState};
    use std::collections::HashSet;

    fn filled(arena: &Arena, jobs: usize, shards: usize) -> Freelist {
        let fl = Freelist::new(shards);
        let mut st = GrowState::default();
        for i in 0..jobs {
            // SAFETY: `st` is this arena's only grow state.
            let idx = unsafe { arena.alloc_job(&mut st) }.unwrap();
            // SAFETY: fresh job, owned by us.
            unsafe { fl.push(arena, i % shards, idx) };
        }
        fl
    }

    #[test]
    fn pop_is_lifo_per_shard_and_drains_all_shards() {
        let arena = Arena::new(1);
        let fl = filled(&arena, 6, 3);
        // SAFETY: every job on `fl` came from `arena`.
        let idle = || unsafe { fl.count_idle(&arena, usize::MAX) };
        assert_eq!(idle(), 6);
        let mut seen = HashSet::new();
        // SAFETY: every job on `fl` came from `arena`.
        while let Some((idx, _)) = unsafe { fl.pop_any(&arena, 1) } {
            assert!(seen.insert(idx), "job {idx} popped twice");
        }
        assert_eq!(seen.len(), 6);
        assert_eq!(idle(), 0);
    }

    #[test]
    fn a_job_list_chain_goes_back_whole_in_one_push() {
        use crate::llist::JobLists;
        let arena = Arena::new(1);
        let fl: Freelist = Freelist::new(1);
        let lists = JobLists::new(1);
        let mut st = GrowState::default();
        // SAFETY: `st` is this arena's only grow state.
        let mut jobs: Vec<u32> = (0..7)
            .map(|_| unsafe { arena.alloc_job(&mut st) }.unwrap())
            .collect();
        for idx in jobs.drain(..2) {
            // SAFETY: fresh jobs, owned by us.
            unsafe { fl.push(&arena, 0, idx) };
        }
        for &j in &jobs {
            // SAFETY: fresh jobs, owned by us; shard 0 of one.
            unsafe { lists.push(&arena, 0, j) };
        }
        let mut order = Vec::new();
        // SAFETY: the chain's jobs came from `arena`.
        let (top, last) = unsafe {
            lists
                .take(0)
                .for_each_oldest_first(&arena, |idx, _| order.push(idx))
        }
        .expect("a non-empty chain");
        assert_eq!(order, jobs, "oldest first");
        // SAFETY: the walked chain is ours, linked from `top` to `last`.
        unsafe { fl.push_chain::<Arena>(0, top, last) };
        // SAFETY: every job on `fl` came from `arena`.
        assert_eq!(unsafe { fl.count_idle(&arena, usize::MAX) }, 7);
        let mut popped = Vec::new();
        // SAFETY: as above; shard 0 of one.
        while let Some(idx) = unsafe { fl.pop(&arena, 0) } {
            popped.push(idx);
        }
        // The chain comes off first, in the order the walk left it, then the two older jobs.
        assert_eq!(&popped[..5], &jobs[..]);
        assert_eq!(popped.len(), 7);
    }

    #[test]
    fn concurrent_pop_push_never_duplicates_ownership() {
        use std::sync::atomic::AtomicBool;
        let arena = Arena::new(1);
        let fl = filled(&arena, 8, 2);
        let owned: Vec<AtomicBool> = (0..8).map(|_| AtomicBool::new(false)).collect();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (arena, fl, owned) = (&arena, &fl, &owned);
                s.spawn(move || {
                    for _ in 0..20_000 {
                        // SAFETY: every job on `fl` came from `arena`.
                        if let Some((idx, _)) = unsafe { fl.pop_any(arena, t % 2) } {
                            let was = owned[idx as usize].swap(true, Ordering::SeqCst);
                            assert!(!was, "job {idx} owned twice");
                            owned[idx as usize].store(false, Ordering::SeqCst);
                            // SAFETY: we own `idx`.
                            unsafe { fl.push(arena, (t + 1) % 2, idx) };
                        }
                    }
                });
            }
        });
        // SAFETY: every job on `fl` came from `arena`.
        assert_eq!(unsafe { fl.count_idle(&arena, usize::MAX) }, 8);
    }
}
