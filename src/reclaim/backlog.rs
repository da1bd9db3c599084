//! The count behind the backlog bound (`Builder::max_pending`): objects *past the job lists* —
//! in chains drainers took off the lists, and in closed batches, queued or being destroyed —
//! and not destroyed yet. The job lists count their own jobs (in their heads), and a drainer
//! about to take a list *announces* the jobs it will take.
//!
//! ## Protocol
//!
//! ```text
//! a batch closed (a writer's, an open one, or one of owned boxes or parked objects):
//!                          enter(n)                    before the batch leaves its lock's holder
//! a list taken:            announce(len) ... CAS head -> empty (announcing what a retry adds)
//!                          enter(len); withdraw(announced)
//! a chain closes a batch:  nothing (its objects stay past the lists)
//! objects destroyed:       leave(n)                    after their destructors ran
//! backlog (for writers):   queued (each list head), then announced, then past_lists
//! pending (statistics):    past_lists, then queued, open batches, parked objects
//! ```
//!
//! One count for everything past the lists, instead of one per stage: an object moving from a
//! chain into a batch, or from the batch queue to a drainer, changes no count, so no drainer
//! preempted in the middle of such a move hides the objects from the writers' back-pressure
//! (who would queue as many again meanwhile). Only the step from a list to a chain crosses two
//! counts (the list's head and this one), and the announcement covers it.
//!
//! ## Why the backlog never misses a chain being taken
//!
//! A writer reads a list's head (Acquire), then `announced` (Acquire), then `past_lists`
//! (Acquire). If the head read saw the jobs, they count. If it saw the take's CAS (Release) or
//! a push after it (a read-modify-write, so in the take's release sequence), the announcement,
//! made before the CAS, is visible to the `announced` read, which reads it or a later value:
//! one that still holds it, or one at or after the withdrawal (Release; later read-modify-writes
//! continue its release sequence), which was made after `enter`: then the `past_lists` read
//! sees the chain. Counting twice for a moment (the announcement and the list, or the
//! announcement and the chain) only makes a writer help a little early.
//!
//! ## Why pending never counts a taken chain twice
//!
//! `pending` and `peak_pending` (checked against the bound by tests and users) read
//! `past_lists` first (Acquire): if it saw `enter` (Release), the take's CAS before it is
//! visible to the head reads after it, which find the list emptied. A batch closed from an open
//! batch, or from objects parked in the emergency area, leaves their counts before `enter`, so
//! the reads after it miss it rather than count it twice. The announcement is the backlog's
//! only.
//!
//! Every count here is Relaxed where it is only a number and Release/Acquire where an argument
//! above needs it; nothing else is published through them (they guard no memory).
//!
//! ## After `fork`
//!
//! In the child, the chains and batches the parent's threads were running are never finished
//! (those threads are not there): the batch queue's handler resets the count to the objects in
//! the queue (`batches.rs`), and forgets announcements. A fork from a destructor a drain runs
//! finishes that drain in the child, and its `leave` stops at zero: the count then reads low by
//! what was left of that drain's chain or batches (as the other counts of taken work do,
//! `taken_jobs.rs`).

use crate::sync::{AtomicUsize, Ordering};

pub(crate) struct Backlog {
    /// Objects in chains drainers took and in closed batches, not destroyed yet.
    past_lists: AtomicUsize,
    /// Jobs drainers are taking off lists, not yet counted in `past_lists`.
    announced: AtomicUsize,
}

impl Backlog {
    pub(crate) fn new() -> Self {
        Backlog {
            past_lists: AtomicUsize::new(0),
            announced: AtomicUsize::new(0),
        }
    }

    /// `n` objects are now past the lists (a batch closed, or a chain taken).
    pub(crate) fn enter(&self, n: usize) {
        if n > 0 {
            // Release: pairs with the Acquire read in `pending` (module docs: a chain counted
            // here is no longer in its list).
            self.past_lists.fetch_add(n, Ordering::Release);
        }
    }

    /// `n` objects past the lists were destroyed. Never below zero: see the module docs on
    /// `fork`.
    pub(crate) fn leave(&self, n: usize) {
        // Relaxed: a number; whoever reads it high only helps early.
        subtract_down_to_zero(&self.past_lists, n, Ordering::Relaxed);
    }

    /// A drainer is about to take `n` more jobs off a list (before the head's CAS, which
    /// publishes this to the writers that read the emptied head).
    pub(crate) fn announce(&self, n: usize) {
        if n > 0 {
            // Relaxed: the take's CAS (Release) that follows carries it (module docs).
            self.announced.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The `n` jobs announced are counted in `past_lists` now (or were never taken).
    /// Never below zero: in a child after `fork` the announcements were reset.
    pub(crate) fn withdraw(&self, n: usize) {
        // Release: pairs with the Acquire read in `backlog`: whoever reads this withdrawal
        // (or a later value) sees the `enter` before it.
        subtract_down_to_zero(&self.announced, n, Ordering::Release);
    }

    /// Objects past the lists (a snapshot).
    pub(crate) fn past_lists(&self) -> usize {
        // Acquire: pairs with `enter` (module docs, pending) and carries `withdraw`'s argument
        // to the caller (backlog).
        at_least_zero(self.past_lists.load(Ordering::Acquire))
    }

    /// Jobs announced and not yet counted past the lists (a snapshot): the backlog's only.
    pub(crate) fn announced(&self) -> usize {
        // Acquire: pairs with `withdraw` (module docs, backlog).
        at_least_zero(self.announced.load(Ordering::Acquire))
    }

    /// In a child after `fork`: `queued` objects wait in the batch queue; everything else past
    /// the lists was the parent's threads' (module docs). Relaxed: the child has one thread.
    #[cfg(not(loom))]
    pub(crate) fn reset_in_child(&self, queued: usize) {
        self.past_lists.store(queued, Ordering::Relaxed);
        self.announced.store(0, Ordering::Relaxed);
    }
}

/// Subtracts `n` from `count` with one read-modify-write (`order`), as a signed count: if that
/// takes it below zero, which only a child after `fork` sees (module docs), the part of `n`
/// below zero is added back, so that the count settles at zero, never below: each subtraction
/// puts back what it alone took below zero, so concurrent ones settle there too. Between the
/// two, readers see a negative count, which [`at_least_zero`] reads as zero.
fn subtract_down_to_zero(count: &AtomicUsize, n: usize, order: Ordering) {
    if n == 0 {
        return;
    }
    let before = count.fetch_sub(n, order) as isize;
    let below = n as isize - before.max(0);
    if below > 0 {
        // Relaxed: a number (the subtraction above carries any ordering).
        count.fetch_add(below as usize, Ordering::Relaxed);
    }
}

/// A count read as a signed number, negative read as zero (`subtract_down_to_zero`).
fn at_least_zero(count: usize) -> usize {
    (count as isize).max(0) as usize
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_drained_count_stops_at_zero_after_a_reset_in_a_child() {
        let backlog = Backlog::new();
        backlog.enter(40);
        backlog.announce(7);
        backlog.reset_in_child(5);
        assert_eq!((backlog.past_lists(), backlog.announced()), (5, 0));
        // The forking thread finishes its own drain of 40: the count does not wrap around.
        backlog.leave(40);
        backlog.withdraw(7);
        assert_eq!((backlog.past_lists(), backlog.announced()), (0, 0));
        backlog.enter(3);
        assert_eq!(backlog.past_lists(), 3);
    }

    #[test]
    fn subtractions_that_cross_zero_together_settle_at_zero() {
        let count = AtomicUsize::new(5);
        // Two subtractions, the second made before the first puts back what it took below zero
        // (5 - 8 = -3, then -3 - 4 = -7): each puts back its own part, 3 and 4.
        let first = count.fetch_sub(8, Ordering::Relaxed) as isize;
        subtract_down_to_zero(&count, 4, Ordering::Relaxed);
        assert_eq!(
            at_least_zero(count.load(Ordering::Relaxed)),
            0,
            "read as zero meanwhile"
        );
        count.fetch_add((8 - first.max(0)) as usize, Ordering::Relaxed);
        assert_eq!(count.load(Ordering::Relaxed), 0);
        subtract_down_to_zero(&count, 2, Ordering::Relaxed);
        assert_eq!(count.load(Ordering::Relaxed), 0);
        count.fetch_add(6, Ordering::Relaxed);
        subtract_down_to_zero(&count, 2, Ordering::Relaxed);
        assert_eq!(count.load(Ordering::Relaxed), 4);
    }
}
