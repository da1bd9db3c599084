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
//! A writer reads a list's head (Acquire), then `announced` (Acquire), then `past_lists`.
//! If the head read saw the jobs, they count. If it saw the take's CAS (Release) or a push
//! after it (a read-modify-write, so in the take's release sequence), the announcement, made
//! before the CAS, is visible to the `announced` read, which reads it or a later value: one
//! that still holds it, or one at or after the withdrawal (Release; later read-modify-writes
//! continue its release sequence), which was made after the chain was counted: then the
//! `past_lists` read, after it in program order, sees the chain. Counting twice for a moment
//! (the announcement and the list, or the announcement and the chain) only makes a writer help
//! a little early.
//!
//! ## Why pending never counts a taken chain twice
//!
//! `pending` and `peak_pending` (checked against the bound by tests and users) read
//! `past_lists` first (Acquire): if it saw the chain counted (Release), the take's CAS before
//! it is visible to the head reads after it, which find the list emptied. A batch closed from
//! an open batch, or from objects parked in the emergency area, leaves their counts before
//! `enter`, so the reads after it miss it rather than count it twice. The announcement is the
//! backlog's only.
//!
//! Every count here is Relaxed where it is only a number and Release/Acquire where an argument
//! above needs it; nothing else is published through them (they guard no memory).
//!
//! ## After `fork`
//!
//! In the child, the chains and batches the parent's threads were running are never finished
//! (those threads are not there), and neither are the batches they had closed but not queued.
//! So the batch queue's handler (`batches.rs`) resets the count to the objects in the queue,
//! and forgets announcements. The forking thread itself may be in the middle of a drain (a
//! fork from a destructor): it finishes it in the child, and its `leave` and `withdraw` stop at
//! zero (one compare-and-swap each, which takes the count down to zero and never below: no
//! later addition is lost to it). The count then reads low by what was left of that drain (at
//! most a chain and the batches it was destroying), until a subtraction next stops at zero,
//! which absorbs the shortfall: in a child that keeps the count above zero, it may read low for
//! good. Back-pressure there lets that many more objects wait; none is lost or counted twice.
//! (A note of what each thread holds would make it exact at once, but a thread may be in the
//! middle of drains of several runtimes, whose counts a child must keep apart.)

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

    /// `n` objects past the lists were destroyed (or a chain's jobs that held none let go of).
    /// Never below zero: see the module docs on `fork`.
    pub(crate) fn leave(&self, n: usize) {
        // Release: a reader that sees the count drop sees the destructors before it (and the
        // other counts updated before it: `Batches::finished` lowers `running` first, so that
        // a thread leaving `running` out of its backlog reads it high, never low).
        subtract_down_to_zero(&self.past_lists, n, Ordering::Release);
    }

    /// A drainer is about to take `n` more jobs off a list (before the head's CAS, which
    /// publishes this to the writers that read the emptied head).
    pub(crate) fn announce(&self, n: usize) {
        if n > 0 {
            // Relaxed: the take's CAS (Release) that follows carries it (module docs).
            self.announced.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The `n` jobs announced are counted in `past_lists` now (or were never taken). Never
    /// below zero: in a child after `fork` the announcements were reset.
    pub(crate) fn withdraw(&self, n: usize) {
        // Release: pairs with the Acquire read in `backlog`: whoever reads this withdrawal
        // (or a later value) sees the chain counted before it.
        subtract_down_to_zero(&self.announced, n, Ordering::Release);
    }

    /// Objects past the lists (a snapshot).
    pub(crate) fn past_lists(&self) -> usize {
        // Acquire: pairs with `enter` (module docs, pending: the take's CAS before it is then
        // visible to the list reads after this one). The backlog's argument is carried by the
        // `announced` read before this one (Acquire, and program order).
        self.past_lists.load(Ordering::Acquire)
    }

    /// Jobs announced and not yet counted past the lists (a snapshot): the backlog's only.
    pub(crate) fn announced(&self) -> usize {
        // Acquire: pairs with `withdraw` (module docs, backlog).
        self.announced.load(Ordering::Acquire)
    }

    /// In a child after `fork`: `queued` objects wait in the batch queue; everything else past
    /// the lists was the parent's threads', or is the forking thread's (module docs). Relaxed:
    /// the child has one thread.
    #[cfg(not(loom))]
    pub(crate) fn reset_in_child(&self, queued: usize) {
        self.past_lists.store(queued, Ordering::Relaxed);
        self.announced.store(0, Ordering::Relaxed);
    }
}

/// Subtracts `n` from `count` (success ordering `order`), stopping at zero, which only a child
/// after `fork` reaches (module docs): one compare-and-swap when uncontended. (Subtracting,
/// then putting back what went below zero, could put back too much once additions landed
/// between the two steps, and leave the count high for good.)
fn subtract_down_to_zero(count: &AtomicUsize, n: usize, order: Ordering) {
    if n == 0 {
        return;
    }
    // Relaxed on failure: the value read only feeds the next try.
    let _ = count.fetch_update(order, Ordering::Relaxed, |c| Some(c.saturating_sub(n)));
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_count_reset_in_a_child_stops_at_zero_and_loses_no_later_addition() {
        let backlog = Backlog::new();
        backlog.enter(40); // the forking thread's chain
        backlog.announce(7);
        backlog.reset_in_child(5); // the queue holds 5
        assert_eq!((backlog.past_lists(), backlog.announced()), (5, 0));
        // The forking thread finishes its chain of 40 (reading low meanwhile) and withdraws its
        // announcement: zero, not wrapped around.
        backlog.leave(40);
        backlog.withdraw(7);
        assert_eq!((backlog.past_lists(), backlog.announced()), (0, 0));
        // A batch closed after that counts whole, and leaves whole.
        backlog.enter(3);
        assert_eq!(backlog.past_lists(), 3);
        backlog.leave(3);
        assert_eq!(backlog.past_lists(), 0);
    }
}
