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
//!                          take(len); withdraw(announced)
//! a chain closes a batch:  hand_on(n)                  (its objects stay past the lists)
//! batches taken to run:    hold(n)
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
//! So the batch queue's handler (`batches.rs`) resets the count to what the child will still
//! destroy: the objects in the queue, and what the forking thread itself holds — a chain it
//! was running, batches it had taken, announcements it had made (a fork from a destructor, or
//! from a handler) — which each thread keeps a note of (`HELD_HERE`). Every later `leave` and
//! `withdraw` is then matched by what the count holds: it never goes below zero, in the parent
//! or the child.

use crate::sync::{AtomicUsize, Ordering};

pub(crate) struct Backlog {
    /// Objects in chains drainers took and in closed batches, not destroyed yet.
    past_lists: AtomicUsize,
    /// Jobs drainers are taking off lists, not yet counted in `past_lists`.
    announced: AtomicUsize,
}

/// What this thread holds of the counts (`Backlog`): objects past the lists that it will destroy
/// or hand on (a chain it took, batches it took to run), and jobs it announced. What a child
/// after `fork`, whose one thread is this one, keeps. Ordinary context (and a handler that
/// interrupts a drain); `const`-initialised, no destructor.
#[derive(Clone, Copy)]
struct Held {
    past_lists: usize,
    announced: usize,
}

#[cfg(not(loom))]
std::thread_local! {
    static HELD_HERE: std::cell::Cell<Held> =
        const { std::cell::Cell::new(Held { past_lists: 0, announced: 0 }) };
}

#[cfg(loom)]
loom::thread_local! {
    static HELD_HERE: std::cell::Cell<Held> =
        std::cell::Cell::new(Held { past_lists: 0, announced: 0 });
}

/// Changes this thread's note of what it holds.
fn held_here(change: impl FnOnce(&mut Held)) {
    HELD_HERE.with(|h| {
        let mut held = h.get();
        change(&mut held);
        h.set(held);
    });
}

impl Backlog {
    pub(crate) fn new() -> Self {
        Backlog {
            past_lists: AtomicUsize::new(0),
            announced: AtomicUsize::new(0),
        }
    }

    /// `n` objects are now past the lists, in a batch closed (queued, not this thread's).
    pub(crate) fn enter(&self, n: usize) {
        if n > 0 {
            // Release: pairs with the Acquire read in `pending` (module docs).
            self.past_lists.fetch_add(n, Ordering::Release);
        }
    }

    /// This thread took a chain of `n` jobs off a list: past the lists now, and this thread's.
    pub(crate) fn take(&self, n: usize) {
        if n > 0 {
            held_here(|h| h.past_lists += n);
            // Release: pairs with the Acquire read in `pending` (module docs: a chain counted
            // here is no longer in its list).
            self.past_lists.fetch_add(n, Ordering::Release);
        }
    }

    /// This thread's chain closed `n` of its objects into a batch: still past the lists, but
    /// the batch queue's now.
    pub(crate) fn hand_on(&self, n: usize) {
        held_here(|h| h.past_lists -= n);
    }

    /// This thread took batches of `n` objects off the queue, to destroy them.
    pub(crate) fn hold(&self, n: usize) {
        held_here(|h| h.past_lists += n);
    }

    /// This thread destroyed `n` objects it held past the lists (or let go of chain jobs that
    /// held none).
    pub(crate) fn leave(&self, n: usize) {
        if n > 0 {
            held_here(|h| h.past_lists -= n);
            // Release: a reader that sees the count drop sees the destructors before it (and
            // the other counts updated before it: `Batches::finished` lowers `running` first,
            // so that a thread leaving `running` out of its backlog reads it high, never low).
            self.past_lists.fetch_sub(n, Ordering::Release);
        }
    }

    /// This thread is about to take `n` more jobs off a list (before the head's CAS, which
    /// publishes this to the writers that read the emptied head).
    pub(crate) fn announce(&self, n: usize) {
        if n > 0 {
            held_here(|h| h.announced += n);
            // Relaxed: the take's CAS (Release) that follows carries it (module docs).
            self.announced.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The `n` jobs this thread announced are counted in `past_lists` now (or were never
    /// taken).
    pub(crate) fn withdraw(&self, n: usize) {
        if n > 0 {
            held_here(|h| h.announced -= n);
            // Release: pairs with the Acquire read in `backlog`: whoever reads this withdrawal
            // (or a later value) sees the chain counted before it.
            self.announced.fetch_sub(n, Ordering::Release);
        }
    }

    /// Objects past the lists (a snapshot).
    pub(crate) fn past_lists(&self) -> usize {
        // Acquire: pairs with `take` (module docs, pending: the take's CAS before it is then
        // visible to the list reads after this one). The backlog's argument is carried by the
        // `announced` read before this one (Acquire, and program order).
        self.past_lists.load(Ordering::Acquire)
    }

    /// Jobs announced and not yet counted past the lists (a snapshot): the backlog's only.
    pub(crate) fn announced(&self) -> usize {
        // Acquire: pairs with `withdraw` (module docs, backlog).
        self.announced.load(Ordering::Acquire)
    }

    /// In a child after `fork`, on the forking thread (its handler runs there): `queued`
    /// objects wait in the batch queue, and this thread holds what its note says; everything
    /// else was the parent's other threads' (module docs). Relaxed: the child has one thread.
    #[cfg(not(loom))]
    pub(crate) fn reset_in_child(&self, queued: usize) {
        let held = HELD_HERE.with(|h| h.get());
        self.past_lists
            .store(queued + held.past_lists, Ordering::Relaxed);
        self.announced.store(held.announced, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_child_keeps_the_queue_and_what_the_forking_thread_holds() {
        let backlog = Backlog::new();
        backlog.enter(5); // a batch queued
        // This thread took a chain of 40 and batched 10 of them, and announced 7 more jobs.
        backlog.take(40);
        backlog.hand_on(10);
        backlog.announce(7);
        assert_eq!((backlog.past_lists(), backlog.announced()), (45, 7));
        // Another thread's chain of 100, which the child will never finish.
        std::thread::scope(|s| {
            s.spawn(|| backlog.take(100));
        });
        // The queue holds the 5 and the 10 batched (the handler reads it under its lock).
        backlog.reset_in_child(15);
        assert_eq!((backlog.past_lists(), backlog.announced()), (45, 7));
        // This thread finishes its chain and its take, and the queue's batches are destroyed:
        // the count comes back to zero, never below.
        backlog.leave(30);
        backlog.take(7);
        backlog.withdraw(7);
        backlog.leave(7);
        backlog.hold(15);
        backlog.leave(15);
        assert_eq!((backlog.past_lists(), backlog.announced()), (0, 0));
    }
}
