//! The jobs drainers have taken off the job lists and are running (`run_chain` in
//! `runtime.rs`), and of those, the ones whose objects their chain has already closed into
//! batches. What they are for: `Stats::active`, the peak of jobs taken, and the chains a
//! thread running a chain leaves out of its own backlog (`Inner::backlog`). The backlog itself
//! counts taken chains in `backlog.rs`'s one count.
//!
//! In a child after `fork`, the chains the parent's drainers had taken are never finished:
//! their threads are not there. The child's handler forgets them, as the batch queue forgets
//! the batches being destroyed (`batches.rs`): else the counts read here stay up for ever in
//! the child (`Stats::active`, and what a chain-running thread leaves out of its backlog).

use crate::sync::{AtomicUsize, Ordering};

pub(crate) struct TakenJobs {
    running: AtomicUsize,
    batched: AtomicUsize,
    /// In a child after `fork`: `running` and `batched` at the fork, the parent's drainers'
    /// (0 otherwise). Never in loom models, which have no `fork`.
    #[cfg(not(loom))]
    forgotten: [AtomicUsize; 2],
}

impl TakenJobs {
    pub(crate) fn new() -> Self {
        TakenJobs {
            running: AtomicUsize::new(0),
            batched: AtomicUsize::new(0),
            #[cfg(not(loom))]
            forgotten: [AtomicUsize::new(0), AtomicUsize::new(0)],
        }
    }

    /// A chain of `len` jobs taken; returns the jobs running now.
    pub(crate) fn take(&self, len: usize) -> usize {
        // Relaxed: statistics and a heuristic (the backlog), like every count here.
        self.running.fetch_add(len, Ordering::Relaxed) + len
    }

    /// `n` of a chain's objects are being closed into a batch (just before the batch is
    /// queued).
    pub(crate) fn batched(&self, n: usize) {
        // Relaxed: as in `take`.
        self.batched.fetch_add(n, Ordering::Relaxed);
    }

    /// A chain of `len` jobs is done, `batched` of its objects having gone to batches.
    pub(crate) fn finished(&self, len: usize, batched: usize) {
        // Relaxed: as in `take`. `running` first: see `waiting`.
        self.running.fetch_sub(len, Ordering::Relaxed);
        if batched > 0 {
            self.batched.fetch_sub(batched, Ordering::Relaxed);
        }
    }

    /// Jobs the chains being run still hold for objects they closed into batches (a
    /// snapshot): those jobs are spare again only once their chain is done, while the objects
    /// leave the backlog as soon as a batch of them is destroyed (`Inner::grow_over`).
    pub(crate) fn held_for_batched(&self) -> usize {
        // Relaxed: as in `take`.
        let batched = self.batched.load(Ordering::Relaxed);
        #[cfg(not(loom))]
        let batched = batched.saturating_sub(self.forgotten[1].load(Ordering::Relaxed));
        batched
    }

    /// Jobs being run by this process's drainers (a snapshot).
    pub(crate) fn running(&self) -> usize {
        // Relaxed: as in `take`.
        let running = self.running.load(Ordering::Relaxed);
        #[cfg(not(loom))]
        let running = running.saturating_sub(self.forgotten[0].load(Ordering::Relaxed));
        running
    }

    /// Objects of the chains drainers took that are neither destroyed nor in a closed batch
    /// yet (a snapshot): what a thread running a chain leaves out of its backlog.
    ///
    /// `batched` is read first: a chain that ends between the two reads takes its jobs out of
    /// `running`, then its batched objects out of `batched`; read the other way round, the old
    /// `running` less the new `batched` would read those objects as still in the chain (left
    /// out of the backlog, where they are in batches by then). Read this way, the snapshot reads
    /// low for that moment instead, which only makes that thread count them.
    pub(crate) fn waiting(&self) -> usize {
        // Relaxed: as in `take`.
        let batched = self.batched.load(Ordering::Relaxed);
        let waiting = self.running.load(Ordering::Relaxed).saturating_sub(batched);
        #[cfg(not(loom))]
        let waiting = waiting.saturating_sub(
            self.forgotten[0]
                .load(Ordering::Relaxed)
                .saturating_sub(self.forgotten[1].load(Ordering::Relaxed)),
        );
        waiting
    }
}

impl crate::fork::ForkLocks for TakenJobs {
    /// Nothing to hold: counters only.
    fn hold(&self) -> Box<dyn crate::fork::Held + '_> {
        Box::new(())
    }

    fn after_fork_in_child(&self) {
        // The chains running were the parent's drainers' (or, if it forked from a destructor,
        // the forking thread's own, which it finishes: then the counts drop below what is
        // forgotten, and the reads saturate). Relaxed: the child has one thread.
        #[cfg(not(loom))]
        {
            self.forgotten[0].store(self.running.load(Ordering::Relaxed), Ordering::Relaxed);
            self.forgotten[1].store(self.batched.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::fork::ForkLocks;

    #[test]
    fn a_child_after_fork_forgets_the_chains_the_parents_drainers_were_running() {
        let taken = TakenJobs::new();
        // The parent's drainer: a chain of 300 jobs, 64 of whose objects went to a batch.
        assert_eq!(taken.take(300), 300);
        taken.batched(64);
        assert_eq!((taken.running(), taken.waiting()), (300, 236));
        taken.after_fork_in_child();
        // In the child nobody finishes that chain: it counts nowhere.
        assert_eq!((taken.running(), taken.waiting()), (0, 0));
        // The child's own drains count as before.
        assert_eq!(taken.take(10), 310);
        assert_eq!((taken.running(), taken.waiting()), (10, 10));
        taken.finished(10, 0);
        assert_eq!((taken.running(), taken.waiting()), (0, 0));
    }
}
