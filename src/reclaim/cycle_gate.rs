//! Which drains a `drain_and_wait` must wait for: the ones that may already hold objects
//! handed over before its call.
//!
//! Several threads may destroy a runtime's objects at once — its drainer thread, threads
//! helping at a batch close, callers of `drain` — and each takes what it destroys (a job list,
//! an owned list, the emergency area, ready batches) whole, before it runs it. A caller of
//! `drain_and_wait` whose own drain found the lists empty has not seen those objects
//! destroyed: another thread may have taken them a moment before and still be running their
//! destructors, or holding the ones that need a grace period in a batch it has not closed yet.
//! So every drain passes a gate, and a waiter waits for the drains that were inside it.
//!
//! ## Protocol (two counts and a phase, as sleepable RCU counts its readers)
//!
//! ```text
//! enter:   i = phase & 1; inside[i] += 1; fence   (before the drain takes anything)
//! exit:    inside[i] -= 1                          (after it ran, or closed into a batch, all
//!                                                   it took)
//! wait:    (after the waiter's own drain looked at everything)
//!          fence; look at both counts; until both were seen at zero:
//!              i = (phase += 1) & 1 before the flip; wait until inside[i] == 0
//! ```
//!
//! Why it is enough. Take an object handed over before the call that the waiter's own drain
//! did not take: a drain *D* took it first. Whatever the waiter's drain did where the object
//! was — a swap of a list head, a CAS on an emergency cell (both read the latest value), or a
//! cheap look that read the structure empty (which it was not before *D*'s take, the hand-over
//! happening before the call) — read *D*'s take or something after it. *D*'s fence comes
//! before its take, the waiter's after that read: so *D*'s fence precedes the waiter's in the
//! one order of SeqCst fences, and *D*'s entry, before its fence, is in every count the waiter
//! loads after its own fence, until *D* exits. (Batches are taken under the queue's lock,
//! whose hand-over orders the two fences just the same.) Each count the waiter sees at zero
//! after its fence is one *D* has left; it waits until it has seen both. A drain that enters
//! later is not waited for, unless it lands in a count being waited on, which delays the
//! waiter by one drain; the flip is what lets a count reach zero under a steady stream of
//! drains: new drains go to the other count.
//!
//! Every access is SeqCst, the fences included: the argument runs through the fences' order and
//! the counts' SeqCst loads. Nothing here is on a hot path (one entry per drain cycle).
//!
//! ## Who never waits for whom
//!
//! A thread inside a drain (a destructor it runs calls `drain_and_wait`) does not wait for the
//! gate at all: another drain it would wait for may be running a destructor that waits for it
//! the same way. [`CycleGate::inside_here`] tells it. Signal handlers never touch the gate.
//!
//! ## `fork`
//!
//! A drain another thread of the parent was inside when `fork` copied the process never exits
//! in the child (that thread does not exist there; what it took is the parent's to destroy).
//! So the gate is registered with `fork` (in an allocation of its own, like the runtime's
//! locks), and the child's handler sets both counts to zero. The forking thread may itself be
//! inside a drain (a destructor that forks): each entry remembers the fork count, and an exit
//! in a process forked since its entry leaves the counts alone (the reset already forgot it).

use crate::fork::{ForkLocks, Held};
use crate::sync::{AtomicUsize, Ordering, fence};
use crossbeam_utils::CachePadded;

#[cfg(not(loom))]
std::thread_local! {
    /// Drains this thread is inside now (of any runtime). `const`, no destructor; never touched
    /// by a signal handler.
    static INSIDE_HERE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

#[cfg(loom)]
loom::thread_local! {
    static INSIDE_HERE: std::cell::Cell<u32> = std::cell::Cell::new(0);
}

/// The gate of one runtime's drains (module docs).
pub(crate) struct CycleGate {
    phase: AtomicUsize,
    inside: [CachePadded<AtomicUsize>; 2],
}

/// A drain inside the gate; dropping it is the exit.
#[must_use = "the drain is inside the gate until this is dropped"]
pub(crate) struct Inside<'a> {
    gate: &'a CycleGate,
    count: usize,
    /// The fork count at the entry (module docs).
    forks: u32,
}

impl CycleGate {
    pub(crate) fn new() -> Self {
        CycleGate {
            phase: AtomicUsize::new(0),
            inside: [
                CachePadded::new(AtomicUsize::new(0)),
                CachePadded::new(AtomicUsize::new(0)),
            ],
        }
    }

    /// Enters the gate: call before taking anything to destroy. Ordinary context.
    pub(crate) fn enter(&self) -> Inside<'_> {
        // SeqCst: see the module docs.
        let count = self.phase.load(Ordering::SeqCst) & 1;
        self.inside[count].fetch_add(1, Ordering::SeqCst);
        // Before the drain takes anything (module docs).
        fence(Ordering::SeqCst);
        INSIDE_HERE.with(|d| d.set(d.get() + 1));
        Inside {
            gate: self,
            count,
            forks: crate::fork::count(),
        }
    }

    /// Whether this thread is inside a drain of some runtime now (it must not wait).
    pub(crate) fn inside_here() -> bool {
        INSIDE_HERE.with(|d| d.get() > 0)
    }

    /// Waits until every drain that was inside the gate when this was called has left it
    /// (module docs). Spins, then yields; never sleeps. Ordinary context, outside any drain.
    pub(crate) fn wait_for_drains_inside(&self) {
        debug_assert!(!Self::inside_here(), "a drain waiting for drains");
        // After the caller's own drain looked at everything (module docs).
        fence(Ordering::SeqCst);
        // SeqCst: see the module docs. Both at zero already: nothing to wait for, no flip.
        let mut seen_zero = [0, 1].map(|i| self.inside[i].load(Ordering::SeqCst) == 0);
        while !(seen_zero[0] && seen_zero[1]) {
            // SeqCst: see the module docs.
            let count = self.phase.fetch_add(1, Ordering::SeqCst) & 1;
            let mut spins = 0u32;
            while self.inside[count].load(Ordering::SeqCst) != 0 {
                if spins < 64 {
                    spins += 1;
                    crate::sync::spin_hint();
                } else {
                    crate::sync::yield_now();
                }
            }
            seen_zero[count] = true;
        }
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        INSIDE_HERE.with(|d| d.set(d.get() - 1));
        if crate::fork::count() != self.forks {
            // Entered in the parent; the child's reset forgot this drain (module docs).
            return;
        }
        // SeqCst: see the module docs (the exit must come after everything the drain did
        // with what it took; Release would do for that, SeqCst keeps one argument).
        self.gate.inside[self.count].fetch_sub(1, Ordering::SeqCst);
    }
}

impl ForkLocks for CycleGate {
    /// Nothing to hold: the gate takes no lock.
    fn hold(&self) -> Box<dyn Held + '_> {
        Box::new(())
    }

    /// No drain is inside in the child but, maybe, the forking thread's, which the reset
    /// forgets too (module docs). Only atomics, on the child's only thread.
    fn after_fork_in_child(&self) {
        for count in &self.inside {
            // SeqCst: as every access (module docs); no other thread exists to race with.
            count.store(0, Ordering::SeqCst);
        }
    }
}
