//! Regrowth memory: the pool's hysteresis over time, on top of its hysteresis in count.
//!
//! The count hysteresis (`runtime.rs`: refill up to the headroom `h`, trim only above `h + y`)
//! keeps growth and trim from chasing each other over swings smaller than `y`. A workload whose
//! bursts are larger — a profiler that swaps out a few thousand buffers at every tick, a batch
//! of installs torn down together — still makes each drain trim what the next burst grows back:
//! every round pays bookkeeping per job and an allocation and a free per run of jobs
//! (`arena.rs`), and the jobs its teardowns pop are fresh ones, written by whichever CPU grew
//! them.
//!
//! ## Protocol
//!
//! The log lives behind the runtime's grow lock, which every growth and every trim holds.
//!
//! - An automatic trim that frees jobs starts a *window* (`Builder::regrowth_window`; one
//!   second by default): the jobs it freed are *owed*, added to what earlier trims of a window
//!   still running freed and nothing grew back yet.
//! - Growth for demand (an install that found no spare job, a refill below the low
//!   watermark, or a `reserve_to` top-up short of spare jobs; not `reserve`, which asks for
//!   more jobs explicitly) inside that window grows back owed jobs first: up to what is owed
//!   counts as *regrowth*, and the rest is new demand.
//!   `keep` becomes what the last trim that freed jobs kept (its `keep`) plus the regrowth
//!   counted since, and the regrowth's time is noted. (What that trim kept was used too before
//!   the regrowth was needed, even if the keep it came from has expired since: counting the
//!   regrowth alone, a workload whose bursts grew from one size to a larger one kept the
//!   smaller size, and every larger burst trimmed and grew back the difference, a thousand
//!   jobs a round in a measured case.) Never less than before: `keep` was what that trim kept.
//! - Automatic trims free down to `h + keep`, not `h`. Once a window passes with no regrowth,
//!   `keep` expires: the first drain cycle after that
//!   frees down to `h` again (and starts a window, so a workload still bursting regrows once
//!   and is remembered again: one grow-and-trim round per window at most, instead of one per
//!   burst).
//! - An explicit [`Runtime::trim`](crate::Runtime::trim) forgets everything (what is kept,
//!   owed, regrown) and frees down to `h`.
//!
//! So `keep` grows only by what trims freed and the workload grew back within a window: a
//! single burst is trimmed after its drain as before (no trim, or a small one, preceded its
//! growth), and the memory kept is at most what the pool held above the headroom after a
//! regrowth (what the trim before it left, plus the regrowth), held until the first drain
//! cycle a window after the last regrowth.
//!
//! With a drainer thread that cycle comes by itself. While jobs are kept it sleeps at most a
//! window at a time, so they go about two windows after the last regrowth at most (later only
//! if the grow lock is busy at that cycle). A grower that starts keeping jobs wakes it from
//! whatever sleep it is in, until rung or a lazy drainer's period (`doorbell.rs`'s
//! store-buffering pair, as for a ring), so even a workload that never hands it anything gets
//! its memory back. With a manual drainer: at the first drain a window after
//! the last regrowth.
//!
//! `keep` is mirrored in an atomic the runtime reads without the lock to decide whether a trim
//! is worth trying and how long the drainer thread may sleep: a heuristic, like the spare count
//! it is compared with. Nothing is freed or kept on its say-so alone: trim claims every job it
//! frees from the ledger, under the lock.

use std::time::{Duration, Instant};

/// What trims and regrowth happened lately. Behind the grow lock.
#[derive(Debug)]
pub(crate) struct Regrowth {
    window: Duration,
    /// When the last trim that freed jobs ran.
    last_trim: Option<Instant>,
    /// Jobs freed by the trims of the current window and not grown back yet.
    owed: usize,
    /// Owed jobs grown back since the last trim that freed jobs.
    regrown: usize,
    /// The `keep` the last trim that freed jobs freed down to (above the headroom): what the
    /// workload had before it needed the regrowth.
    kept_at_trim: usize,
    /// Spare jobs automatic trims leave above the headroom.
    keep: usize,
    /// When `keep` was last raised or confirmed by regrowth.
    kept_since: Option<Instant>,
}

impl Regrowth {
    /// An empty log; a zero `window` turns regrowth memory off (`keep` stays 0).
    pub(crate) fn new(window: Duration) -> Self {
        Regrowth {
            window,
            last_trim: None,
            owed: 0,
            regrown: 0,
            kept_at_trim: 0,
            keep: 0,
            kept_since: None,
        }
    }

    /// Whether the log is on (a non-zero window): callers read the clock only then.
    pub(crate) fn enabled(&self) -> bool {
        !self.window.is_zero()
    }

    /// Whether `now` is within a window of the last trim that freed jobs.
    fn in_window(&self, now: Instant) -> bool {
        self.last_trim
            .is_some_and(|t| now.saturating_duration_since(t) <= self.window)
    }

    /// The pool grew `n` jobs for demand at `now`. Returns the new `keep`.
    pub(crate) fn grown(&mut self, n: usize, now: Instant) -> usize {
        if !self.enabled() {
            return 0;
        }
        // An expired `keep` goes first: regrowth now must not renew it.
        self.keep_at(now);
        if !self.in_window(now) {
            return self.keep;
        }
        let back = n.min(self.owed);
        if back > 0 {
            self.owed -= back;
            self.regrown = self.regrown.saturating_add(back);
            self.keep = self.kept_at_trim.saturating_add(self.regrown);
            self.kept_since = Some(now);
        }
        self.keep
    }

    /// The jobs an automatic trim at `now` leaves above the headroom: `keep`, or 0 once a window
    /// has passed since the last regrowth (then forgotten).
    pub(crate) fn keep_at(&mut self, now: Instant) -> usize {
        if self
            .kept_since
            .is_some_and(|t| now.saturating_duration_since(t) > self.window)
        {
            // Not `kept_at_trim`: regrowth after that trim still shows what it kept was used.
            self.keep = 0;
            self.kept_since = None;
        }
        self.keep
    }

    /// An automatic trim at `now` freed `freed` jobs down to the headroom plus `keep_at(now)`:
    /// they are owed, in a window starting now.
    pub(crate) fn trimmed(&mut self, freed: usize, now: Instant) {
        if freed > 0 {
            let still_owed = if self.in_window(now) { self.owed } else { 0 };
            self.owed = still_owed.saturating_add(freed);
            self.last_trim = Some(now);
            self.regrown = 0;
            self.kept_at_trim = self.keep;
        }
    }

    /// Forgets everything (an explicit trim).
    pub(crate) fn reset(&mut self) {
        *self = Regrowth::new(self.window);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(100);

    fn ms(base: Instant, n: u64) -> Instant {
        base + Duration::from_millis(n)
    }

    #[test]
    fn growth_before_any_trim_is_not_regrowth() {
        let t0 = Instant::now();
        let mut log = Regrowth::new(W);
        assert_eq!(log.grown(1000, t0), 0);
        assert_eq!(log.keep_at(ms(t0, 1)), 0);
    }

    #[test]
    fn growth_soon_after_a_trim_is_kept_until_a_window_without_regrowth() {
        let t0 = Instant::now();
        let mut log = Regrowth::new(W);
        log.trimmed(1000, t0);
        assert_eq!(log.grown(600, ms(t0, 10)), 600);
        assert_eq!(
            log.grown(400, ms(t0, 20)),
            1000,
            "regrowth adds up until the next trim"
        );
        // Kept across later trims while the window since the last regrowth lasts.
        assert_eq!(log.keep_at(ms(t0, 20 + 100)), 1000);
        log.trimmed(0, ms(t0, 20 + 100));
        assert_eq!(log.keep_at(ms(t0, 20 + 101)), 0, "expired");
        assert_eq!(log.keep_at(ms(t0, 20 + 50)), 0, "forgotten, not recomputed");
    }

    #[test]
    fn growth_long_after_a_trim_is_not_regrowth() {
        let t0 = Instant::now();
        let mut log = Regrowth::new(W);
        log.trimmed(1000, t0);
        assert_eq!(log.grown(1000, ms(t0, 101)), 0);
    }

    #[test]
    fn only_what_trims_freed_can_be_kept() {
        let t0 = Instant::now();
        let mut log = Regrowth::new(W);
        // A small trim, then a first large burst: it is mostly new demand, trimmed at its drain.
        log.trimmed(1, t0);
        assert_eq!(log.grown(10_000, ms(t0, 1)), 1);
        // Trims within a window add up what is owed.
        log.trimmed(300, ms(t0, 2));
        log.trimmed(200, ms(t0, 3));
        // They freed down to the keep of 1, and what is owed is grown back on top of it.
        assert_eq!(log.grown(900, ms(t0, 4)), 1 + 500);
    }

    #[test]
    fn regrowth_after_a_trim_adds_to_what_that_trim_kept() {
        let t0 = Instant::now();
        let mut log = Regrowth::new(W);
        log.trimmed(1000, t0);
        assert_eq!(log.grown(1000, ms(t0, 1)), 1000);
        // A larger burst: the trim after it keeps 1000 and frees 500, which the next one grows
        // back on top of the 1000 it used first.
        assert_eq!(log.keep_at(ms(t0, 2)), 1000);
        log.trimmed(500, ms(t0, 2));
        assert_eq!(log.grown(200, ms(t0, 3)), 1200);
        assert_eq!(
            log.grown(900, ms(t0, 4)),
            1500,
            "at most the 500 owed count"
        );
    }

    #[test]
    fn regrowth_counts_from_what_the_trim_before_it_kept() {
        let t0 = Instant::now();
        let mut log = Regrowth::new(W);
        log.trimmed(1000, t0);
        assert_eq!(log.grown(1000, ms(t0, 1)), 1000);
        // A trim that found the keep expired frees down to the headroom: what it kept was 0.
        assert_eq!(log.keep_at(ms(t0, 102)), 0);
        log.trimmed(1000, ms(t0, 102));
        assert_eq!(log.grown(300, ms(t0, 103)), 300);
        // A trim that kept 300 and freed 700: regrowth of 100 keeps 400, not 100.
        assert_eq!(log.keep_at(ms(t0, 104)), 300);
        log.trimmed(700, ms(t0, 104));
        assert_eq!(log.grown(100, ms(t0, 105)), 400);
    }

    #[test]
    fn an_expired_keep_is_not_renewed_by_later_regrowth() {
        let t0 = Instant::now();
        let mut log = Regrowth::new(W);
        log.trimmed(2000, t0);
        assert_eq!(log.grown(1000, ms(t0, 1)), 1000);
        // Growth after the trim's window: not regrowth, and the keep of 1000 expired at 101 ms.
        assert_eq!(log.grown(10, ms(t0, 150)), 0);
        // A trim that finds it expired frees down to the headroom; regrowth after it counts
        // from there.
        assert_eq!(log.keep_at(ms(t0, 160)), 0);
        log.trimmed(10, ms(t0, 160));
        assert_eq!(log.grown(10, ms(t0, 170)), 10);
        assert_eq!(log.keep_at(ms(t0, 171)), 10);
    }

    #[test]
    fn regrowth_counts_what_the_trim_before_it_kept_even_once_that_keep_expired() {
        let t0 = Instant::now();
        let mut log = Regrowth::new(W);
        log.trimmed(1000, t0);
        assert_eq!(log.grown(1000, ms(t0, 1)), 1000);
        // A trim while the keep still holds: it keeps 1000 and frees 500. The keep expires at
        // 101 ms, but regrowth after that trim shows the 1000 it kept were used.
        assert_eq!(log.keep_at(ms(t0, 95)), 1000);
        log.trimmed(500, ms(t0, 95));
        assert_eq!(log.grown(500, ms(t0, 105)), 1500);
    }

    #[test]
    fn a_trim_that_frees_nothing_changes_nothing() {
        let t0 = Instant::now();
        let mut log = Regrowth::new(W);
        log.trimmed(1000, t0);
        assert_eq!(log.grown(500, ms(t0, 1)), 500);
        assert_eq!(log.keep_at(ms(t0, 2)), 500);
        log.trimmed(0, ms(t0, 2));
        // Still the regrowth since the trim that freed the 1000 (which kept none).
        assert_eq!(log.grown(100, ms(t0, 3)), 600);
    }

    #[test]
    fn what_is_owed_lapses_with_its_window() {
        let t0 = Instant::now();
        let mut log = Regrowth::new(W);
        log.trimmed(1000, t0);
        log.trimmed(10, ms(t0, 150));
        assert_eq!(
            log.grown(1000, ms(t0, 151)),
            10,
            "the first trim's window had passed"
        );
    }

    #[test]
    fn a_zero_window_keeps_nothing() {
        let t0 = Instant::now();
        let mut log = Regrowth::new(Duration::ZERO);
        assert!(!log.enabled());
        log.trimmed(1000, t0);
        assert_eq!(log.grown(1000, ms(t0, 1)), 0);
    }

    #[test]
    fn reset_forgets_what_is_kept_and_owed() {
        let t0 = Instant::now();
        let mut log = Regrowth::new(W);
        log.trimmed(10, t0);
        assert_eq!(log.grown(5, t0), 5);
        log.reset();
        assert_eq!(log.keep_at(t0), 0);
        assert_eq!(log.grown(5, t0), 0, "nothing owed any more");
    }
}
