//! Reserve accounting by claims: one counter of spare jobs that every claimant decrements before
//! it relies on a job, credited only after the job is visible in a freelist.
//!
//! ## The protocol
//!
//! Every idle job in the freelists is, at every instant, exactly one of:
//!
//! - *spare*: counted by `spare`; anyone in ordinary context may claim it;
//! - *reserved*: counted by `reserved`; set aside by `Runtime::reserve` for installs that happen
//!   in restricted context, where growing the pool is impossible;
//! - *claimed*: owed to an object installed in a slot (or to a trim in progress).
//!
//! A claim is taken with a CAS that never lets a counter go below zero, so a claim is a
//! *decision already made*: nothing is decided from a snapshot of two counters. The operations:
//!
//! | step                                   | spare | reserved | claimed | idle jobs |
//! |----------------------------------------|-------|----------|---------|-----------|
//! | growth pushes k jobs, then credits     | +k    |          |         | +k        |
//! | growth for an install (its own job)    | +k-1  |          | +1      | +k        |
//! | install claims                         | -1    | (or -1)  | +1      |           |
//! | refused install gives its claim back   | +1    | (or +1)  | -1      |           |
//! | replace present -> present (ordinary)  |       |          |         |           |
//! | replace in restricted context          | -1    | (or -1)  | +1      |           |
//! | ordinary removal releases the claim    | +1    |          | -1      |           |
//! | a value with no claim, in a handler    | -1    | (or -1)  | +1      |           |
//! | restricted teardown pops the owed job  |       |          | -1      | -1        |
//! | drainer returns the job, then credits  | +1    |          |         | +1        |
//! | trim claims a credit, then pops, frees | -1    |          |         | -1        |
//!
//! A claim remembers which counter it came from ([`Source`]) until it is spent on an object: an
//! install refused after claiming (a busy map bucket, a full map) gives it back to that counter,
//! so a refusal never turns a reserved job into a spare one that trim may free. Once an object
//! holds it, the claim is the object's, and it comes back as spare when the object leaves. A
//! value that leaves a slot with no claim and is dropped in a handler claims spare first and a
//! reserved job only as a last resort (the runtime's docs give the order), so that reserved jobs
//! stay for the installs they were set aside for.
//!
//! Hence `idle >= spare + reserved + claimed` at every instant: a job is in a freelist before its
//! credit exists and leaves only through a claim. That is property P3 — a restricted teardown
//! always finds its job — and it is why the kernel v2 races cannot happen here:
//!
//! - D2 (reserve TOCTOU): v2 read `active`, then incremented `refs`; a teardown in between moved
//!   a unit and the computed need was one short. Here an install's claim is one CAS on `spare`;
//!   a teardown does not touch `spare` at all (its claim travels with the object).
//! - D3 (trim vs install): v2's trimmer freed from a snapshot that an install had already relied
//!   on. Here trim must win a claim on `spare` before it pops the job it frees, and an install
//!   must win its own claim; the CAS lets only one of them have any given unit.
//!
//! ## Orderings
//!
//! Credits are Release and claims are Acquire: a claimant synchronises with the credit it
//! consumed, and so with the freelist push that preceded that credit; whoever later pops the
//! claimed job (possibly in another thread, after the object travelled through a slot with
//! AcqRel exchanges) happens-after that push and must see the job in some freelist.
//!
//! Which pair carries which argument (they are not interchangeable):
//!
//! - *Safety* — the popped job is the popper's alone and its link and body are what its pusher
//!   wrote: carried by the freelist's own pair (push CAS Release -> the Acquire of the head
//!   load the pop's CAS validates), and by the CASes' atomicity; this pair plays no part in it.
//!   That a unit of credit goes to exactly one claimant is the claim CAS's atomicity, at any
//!   ordering.
//! - *Promptness* — the claimant's first sweep already sees the job its claim stands for, so
//!   that `pop_owed` retries only because somebody else popped or pushed meanwhile: carried by
//!   this pair, credit (Release) -> claim (Acquire), continued through the slot's install
//!   (Release) -> take (Acquire) when the claim travels with an object. Without it a sweep may
//!   also miss a job that is already pushed and retry until the push becomes visible: a delay
//!   bounded by coherence, never a lost job, and never a wait for an interrupted thread (a
//!   handler that interrupted the pusher runs on the pusher's thread and sees its push in
//!   program order). No model observes the difference (the mutation kit's ledger ordering
//!   mutants survive, listed as equivalent for this reason), so the comments below are the
//!   only guard of this pair.

use crate::sync::{AtomicUsize, Ordering};
use crossbeam_utils::CachePadded;

/// Which counter a claim was taken from, and so where an unused claim goes back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The spare jobs (or a job grown for the claimant, never credited).
    Spare,
    /// The jobs set aside for installs in restricted context.
    Reserved,
}

/// The spare and reserved counters.
pub struct Ledger {
    spare: CachePadded<AtomicUsize>,
    reserved: CachePadded<AtomicUsize>,
}

/// Claims one unit from `counter` unless it is zero; returns the value left.
#[inline]
fn claim_from(counter: &AtomicUsize) -> Option<usize> {
    // Relaxed load: only a first guess for the CAS, which validates it.
    let mut cur = counter.load(Ordering::Relaxed);
    loop {
        if cur == 0 {
            return None;
        }
        // Acquire on success: pairs with the Release credit of the unit we take.
        match counter.compare_exchange_weak(cur, cur - 1, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return Some(cur - 1),
            Err(actual) => cur = actual,
        }
    }
}

impl Default for Ledger {
    /// A ledger with nothing spare or reserved.
    fn default() -> Self {
        Ledger::new()
    }
}

impl Ledger {
    /// A ledger with nothing spare or reserved.
    pub fn new() -> Self {
        Ledger {
            spare: CachePadded::new(AtomicUsize::new(0)),
            reserved: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// Claims a spare job; returns how many spare jobs are left. Lock-free (a CAS loop that
    /// fails only when another claim or credit succeeded); safe in restricted context.
    #[inline]
    pub fn claim_spare(&self) -> Option<usize> {
        claim_from(&self.spare)
    }

    /// Claims a spare job only if more than `keep` would be left; used by trim so that it never
    /// takes the pool below its target.
    pub fn claim_spare_above(&self, keep: usize) -> bool {
        // Relaxed: only a first guess for the CAS, which validates it.
        let mut cur = self.spare.load(Ordering::Relaxed);
        loop {
            if cur <= keep {
                return false;
            }
            // Acquire: as in `claim_from`; trim then pops the job this credit stands for.
            match self.spare.compare_exchange_weak(
                cur,
                cur - 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Claims a reserved job. Lock-free; safe in restricted context.
    #[inline]
    pub fn claim_reserved(&self) -> bool {
        claim_from(&self.reserved).is_some()
    }

    /// Credits `n` spare jobs. Call only after those jobs are visible in a freelist (or, for a
    /// released claim, were already). Safe in restricted context.
    #[inline]
    pub fn credit_spare(&self, n: usize) {
        if n > 0 {
            // Release: pairs with the Acquire of the claim that takes these units.
            self.spare.fetch_add(n, Ordering::Release);
        }
    }

    /// Credits `n` reserved jobs (visible in a freelist already).
    pub fn credit_reserved(&self, n: usize) {
        // Release: as in `credit_spare`.
        self.reserved.fetch_add(n, Ordering::Release);
    }

    /// Gives back one unit claimed from `source` that was not used, to the counter it came
    /// from. The job it stands for never left its freelist. Safe in restricted context.
    #[inline]
    pub fn give_back(&self, source: Source) {
        match source {
            Source::Spare => self.credit_spare(1),
            Source::Reserved => self.credit_reserved(1),
        }
    }

    /// Moves up to `n` reserved jobs back to spare; returns how many moved.
    pub fn unreserve(&self, n: usize) -> usize {
        let mut moved = 0;
        while moved < n && self.claim_reserved() {
            moved += 1;
        }
        self.credit_spare(moved);
        moved
    }

    /// Spare jobs now (a snapshot).
    pub fn spare(&self) -> usize {
        self.spare.load(Ordering::Relaxed)
    }

    /// Reserved jobs now (a snapshot).
    pub fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn claims_never_go_below_zero() {
        let l = Ledger::new();
        assert_eq!(l.claim_spare(), None);
        l.credit_spare(2);
        assert_eq!(l.claim_spare(), Some(1));
        assert_eq!(l.claim_spare(), Some(0));
        assert_eq!(l.claim_spare(), None);
        assert!(!l.claim_reserved());
    }

    #[test]
    fn trim_claims_respect_the_floor() {
        let l = Ledger::new();
        l.credit_spare(5);
        assert!(l.claim_spare_above(3));
        assert!(l.claim_spare_above(3));
        assert!(!l.claim_spare_above(3));
        assert_eq!(l.spare(), 3);
    }

    #[test]
    fn unreserve_moves_what_there_is() {
        let l = Ledger::new();
        l.credit_reserved(3);
        assert_eq!(l.unreserve(5), 3);
        assert_eq!(l.reserved(), 0);
        assert_eq!(l.spare(), 3);
    }

    #[test]
    fn a_claim_given_back_returns_to_its_own_counter() {
        let l = Ledger::new();
        l.credit_reserved(1);
        l.credit_spare(1);
        assert!(l.claim_reserved());
        l.give_back(Source::Reserved);
        assert_eq!((l.reserved(), l.spare()), (1, 1));
        assert_eq!(l.claim_spare(), Some(0));
        l.give_back(Source::Spare);
        assert_eq!((l.reserved(), l.spare()), (1, 1));
    }

    #[test]
    fn concurrent_claims_take_each_unit_once() {
        let l = Ledger::new();
        l.credit_spare(10_000);
        let got = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    while l.claim_spare().is_some() {
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(got.into_inner(), 10_000);
    }
}
