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
//! - Consecutive give-ups at the same heartbeat double the grant (64, 128, ...), up to a cap
//!   (the runtime's `max_pending`); a give-up at a new heartbeat starts again at 64.
//! - Once the drainer thread finishes a destructor, the heartbeat moves, no pass matches it,
//!   and the next call over the bound waits again.
//!
//! So a stall costs one patience per grant, and a thread holding a lock through `n` installs
//! waits about `log2(n / 64)` patiences, then one per `cap` installs. What a stall lets through
//! is bounded too: per patience, at most `cap` objects, plus one call's worth per thread (the
//! call that gives up, and a call that takes the last passes).
//!
//! Races between threads only move how many passes are granted or taken (a grant may overwrite
//! passes not yet taken, two give-ups may each grant): everything here is a hint, Relaxed, and
//! no one relies on an exact count.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// The first grant after a give-up at a new heartbeat.
const FIRST_GRANT: usize = 64;

/// No give-up recorded (a heartbeat never reaches it: it counts destructors).
const NONE: u64 = u64::MAX;

/// Passes over the bound granted while the drainer thread is stalled (module docs).
pub(crate) struct StallPasses {
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
            beat: AtomicU64::new(NONE),
            passes: AtomicUsize::new(0),
            grant: AtomicUsize::new(0),
        }
    }

    /// A thread gave up waiting for a drainer thread whose heartbeat stayed at `beat`: grant
    /// passes (doubling the last grant if it was at the same heartbeat), at most `cap`.
    pub(crate) fn gave_up(&self, beat: u64, cap: usize) {
        // Relaxed: a hint (module docs); the heartbeat itself is read Relaxed too.
        let grant = if self.beat.swap(beat, Ordering::Relaxed) == beat {
            self.grant.load(Ordering::Relaxed).saturating_mul(2)
        } else {
            FIRST_GRANT
        }
        .clamp(1, cap.max(1));
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

    #[test]
    fn no_pass_before_a_give_up_nor_after_the_heartbeat_moves() {
        let passes = StallPasses::new();
        assert!(!passes.take_pass(0, 1));
        passes.gave_up(7, 4096);
        assert!(!passes.take_pass(8, 1), "the drainer moved: wait again");
        assert!(passes.take_pass(7, 1));
    }

    #[test]
    fn passes_are_counted_in_objects() {
        let passes = StallPasses::new();
        passes.gave_up(1, 4096);
        assert!(passes.take_pass(1, 60));
        assert!(passes.take_pass(1, 60), "the last 4 objects' passes");
        assert!(!passes.take_pass(1, 1));
    }

    #[test]
    fn grants_double_at_the_same_heartbeat_up_to_the_cap_and_restart_at_a_new_one() {
        let passes = StallPasses::new();
        let taken = |beat| (0..).take_while(|_| passes.take_pass(beat, 1)).count();
        passes.gave_up(3, 200);
        assert_eq!(taken(3), 64);
        passes.gave_up(3, 200);
        assert_eq!(taken(3), 128);
        passes.gave_up(3, 200);
        assert_eq!(taken(3), 200, "capped");
        passes.gave_up(4, 200);
        assert_eq!(taken(4), 64, "a new stall starts small");
        passes.gave_up(4, 0);
        assert_eq!(taken(4), 1, "at least one pass");
    }
}
