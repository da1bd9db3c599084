//! Passes over the backlog bound while the drainer thread is stalled.
//!
//! A thread over the bound that waits for the drainer thread gives up once that thread has
//! finished no destructor for a while (the runtime's patience): it may be blocked on a lock the
//! waiting thread holds. Without memory of that, every later call over the bound would wait
//! the whole patience again — a thread that holds the lock through a thousand installs would
//! spend ten seconds on them, while the drainer thread cannot move until it lets go.
//!
//! ## Protocol
//!
//! - A thread that gives up records the drainer thread's heartbeat it gave up at (`gave_up`),
//!   and grants *passes*, counted in objects: a later call over the bound that finds the
//!   heartbeat unchanged takes as many as it may add before it looks again (`take_pass`: one
//!   for an install, a batch's worth for a thread filling batches) and goes on at once.
//! - Give-ups grant nothing (only their own call goes on) until the heartbeat has stayed put
//!   for four patiences since the first give-up at it: a drainer thread whose destructors
//!   each take longer than a patience, but return, is so held to about its pace (one call
//!   per give-up). Past that — the drainer thread really stuck — a give-up grants 64, then
//!   twice the last grant each time, up to a cap (the runtime's `max_pending`); a give-up
//!   within a patience of the last grant (another thread's, at the same moment) grants
//!   nothing new, so several threads do not multiply the grant.
//! - Once the drainer thread finishes a destructor, the heartbeat moves, no pass matches it,
//!   and the next call over the bound waits again.
//!
//! So a stall costs one patience per grant, and a thread holding a lock through `n` installs
//! waits about `5 + log2(n / 64)` patiences, then one per `cap` installs. What a stall lets through
//! is bounded too: per patience, at most `cap` objects, plus one call's worth per thread (the
//! call that gives up, and a call that takes the last passes).
//!
//! Races between threads only move how many passes are granted or taken (a grant may overwrite
//! passes not yet taken, two give-ups may each grant): everything here is a hint, Relaxed, and
//! no one relies on an exact count.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// The first grant at a heartbeat (made by its second give-up).
const FIRST_GRANT: usize = 64;

/// No give-up recorded (a heartbeat never reaches it: it counts destructors).
const NONE: u64 = u64::MAX;

/// Passes over the bound granted while the drainer thread is stalled (module docs).
pub(crate) struct StallPasses {
    /// What `granted_at` and `stuck_since` count from.
    epoch: std::time::Instant,
    /// When the first give-up at `beat` was, in nanoseconds since `epoch`.
    stuck_since: AtomicU64,
    /// When the last grant was made, in nanoseconds since `epoch`.
    granted_at: AtomicU64,
    /// The heartbeat the last give-up saw, or [`NONE`].
    beat: AtomicU64,
    /// Passes left for calls that find `beat` unchanged.
    passes: AtomicUsize,
    /// The last grant, doubled by the next give-up at the same heartbeat.
    grant: AtomicUsize,
}

impl StallPasses {
    pub(crate) fn new() -> Self {
        StallPasses {
            epoch: std::time::Instant::now(),
            granted_at: AtomicU64::new(0),
            stuck_since: AtomicU64::new(0),
            beat: AtomicU64::new(NONE),
            passes: AtomicUsize::new(0),
            grant: AtomicUsize::new(0),
        }
    }

    /// A thread gave up, after `patience`, waiting for a drainer thread whose heartbeat stayed
    /// at `beat`: at a new heartbeat, record it and grant nothing; at the same one, once it
    /// has stayed put for three more patiences, grant passes (64, then twice the last grant),
    /// at most `cap` — unless the last grant is less than a `patience` old.
    pub(crate) fn gave_up(&self, beat: u64, cap: usize, patience: std::time::Duration) {
        // Relaxed: a hint (module docs); the heartbeat itself is read Relaxed too.
        let now = self.epoch.elapsed().as_nanos() as u64;
        let patience = patience.as_nanos() as u64;
        if self.beat.swap(beat, Ordering::Relaxed) != beat {
            self.grant.store(0, Ordering::Relaxed);
            self.passes.store(0, Ordering::Relaxed);
            self.stuck_since.store(now, Ordering::Relaxed);
            self.granted_at.store(now, Ordering::Relaxed);
            return;
        }
        let stuck_for = now.saturating_sub(self.stuck_since.load(Ordering::Relaxed));
        let since_grant = now.saturating_sub(self.granted_at.load(Ordering::Relaxed));
        if stuck_for < 3 * patience || since_grant < patience {
            return;
        }
        self.granted_at.store(now, Ordering::Relaxed);
        let grant = self
            .grant
            .load(Ordering::Relaxed)
            .saturating_mul(2)
            .clamp(FIRST_GRANT.min(cap.max(1)), cap.max(1));
        self.grant.store(grant, Ordering::Relaxed);
        self.passes.store(grant, Ordering::Relaxed);
    }

    /// Whether a call over the bound, finding the drainer thread's heartbeat at `beat`, may go
    /// on without waiting, adding up to `objects` before it looks again: a give-up at that
    /// same heartbeat left passes, of which it takes that many (or the last ones).
    pub(crate) fn take_pass(&self, beat: u64, objects: usize) -> bool {
        // Relaxed: a hint (module docs).
        self.beat.load(Ordering::Relaxed) == beat
            && self
                .passes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    (left > 0).then(|| left.saturating_sub(objects))
                })
                .is_ok()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    /// No patience: every give-up at the same heartbeat is a fresh one.
    const NONE_YET: Duration = Duration::ZERO;

    #[test]
    fn no_pass_before_a_second_give_up_nor_after_the_heartbeat_moves() {
        let passes = StallPasses::new();
        assert!(!passes.take_pass(0, 1));
        passes.gave_up(7, 4096, NONE_YET);
        assert!(!passes.take_pass(7, 1), "a first give-up grants nothing");
        passes.gave_up(7, 4096, NONE_YET);
        assert!(!passes.take_pass(8, 1), "the drainer moved: wait again");
        assert!(passes.take_pass(7, 1));
    }

    #[test]
    fn passes_are_counted_in_objects() {
        let passes = StallPasses::new();
        passes.gave_up(1, 4096, NONE_YET);
        passes.gave_up(1, 4096, NONE_YET);
        assert!(passes.take_pass(1, 60));
        assert!(passes.take_pass(1, 60), "the last 4 objects' passes");
        assert!(!passes.take_pass(1, 1));
    }

    #[test]
    fn grants_double_at_the_same_heartbeat_up_to_the_cap_and_restart_at_a_new_one() {
        let passes = StallPasses::new();
        let taken = |beat| (0..).take_while(|_| passes.take_pass(beat, 1)).count();
        passes.gave_up(3, 200, NONE_YET);
        assert_eq!(taken(3), 0);
        passes.gave_up(3, 200, NONE_YET);
        assert_eq!(taken(3), 64);
        passes.gave_up(3, 200, NONE_YET);
        assert_eq!(taken(3), 128);
        passes.gave_up(3, 200, NONE_YET);
        assert_eq!(taken(3), 200, "capped");
        passes.gave_up(4, 200, NONE_YET);
        assert_eq!(taken(4), 0, "a new stall starts over");
        passes.gave_up(4, 0, NONE_YET);
        assert_eq!(taken(4), 1, "at least one pass");
    }

    #[test]
    fn give_ups_within_a_patience_of_the_last_grant_grant_nothing_new() {
        let passes = StallPasses::new();
        // Long enough that no preemption between the calls below outlasts it.
        let patience = Duration::from_millis(500);
        passes.gave_up(5, 4096, patience);
        // Stuck for three patiences since that first give-up: the next one grants.
        std::thread::sleep(3 * patience);
        passes.gave_up(5, 4096, patience);
        assert!(passes.take_pass(5, 64));
        // Other threads giving up at the same moment (within a patience of the grant; stuck
        // for three patiences, so only that keeps them from granting): no new passes, no
        // doubling.
        passes.gave_up(5, 4096, patience);
        passes.gave_up(5, 4096, patience);
        assert!(!passes.take_pass(5, 1));
    }
}
