//! When an install that found a spare job looks at its runtime's backlog: one install in
//! [`SUPPLY_LOOK_EVERY`] on each thread, counted per runtime.
//!
//! Jobs come back to the pool as soon as their objects are destroyed *or batched*, so a spare
//! job is no licence to supply past the bound: objects that handlers tear down with those jobs
//! could pile up on top of the batches. So an install that finds a spare job counts itself,
//! and one in `SUPPLY_LOOK_EVERY` looks at the backlog (the runtime's `supply_looks`).
//!
//! ## Protocol
//!
//! - Each thread keeps a countdown for each of the last [`WAYS`] runtimes it installed into,
//!   most recent first, keyed by the runtime's id (unique in the process, never 0).
//! - An install into the most recent runtime counts its countdown down; at zero it looks, and
//!   the countdown starts again from `SUPPLY_LOOK_EVERY - 1`.
//! - An install into another runtime moves that runtime's entry to the front, keeping its
//!   countdown; one with no entry gets a new one, at zero, so it looks at once, and the least
//!   recent entry is dropped.
//!
//! So between two looks at one runtime, a thread makes at most `SUPPLY_LOOK_EVERY` installs
//! into it that did not look, however it interleaves them with installs into other runtimes. A
//! countdown shared by every runtime (what this replaced) let a thread alternating between two
//! runtimes look only ever at one of them, and the other's backlog grow to the size of its pool.
//! A thread cycling through more than `WAYS` runtimes looks at every install: a look under the
//! bound is a few loads.
//!
//! Ordinary context only (installs in signal handlers never look); `const`-initialised, no
//! destructor; one thread's own state, so no ordering is involved.

use std::cell::Cell;

/// Installs a thread makes into one runtime, each finding a spare job, between two looks at its
/// backlog: how far past the bound one thread's installs go before it waits.
pub(crate) const SUPPLY_LOOK_EVERY: u32 = 64;

/// How many runtimes each thread keeps a countdown for.
const WAYS: usize = 4;

/// One thread's countdowns, most recent runtime first. An id of 0 is an empty entry.
struct Countdowns {
    ids: [Cell<u64>; WAYS],
    left: [Cell<u32>; WAYS],
}

impl Countdowns {
    const fn new() -> Self {
        Countdowns {
            ids: [const { Cell::new(0) }; WAYS],
            left: [const { Cell::new(0) }; WAYS],
        }
    }

    /// Counts an install into runtime `id`: whether it is the one that looks (module docs).
    #[inline]
    fn count(&self, id: u64) -> bool {
        debug_assert_ne!(id, 0);
        if self.ids[0].get() != id {
            self.to_front(id);
        }
        let left = self.left[0].get();
        if left == 0 {
            self.left[0].set(SUPPLY_LOOK_EVERY - 1);
            true
        } else {
            self.left[0].set(left - 1);
            false
        }
    }

    /// Moves runtime `id`'s entry to the front, with its countdown; or, with none, makes one
    /// there at zero, dropping the least recent.
    #[cold]
    #[inline(never)]
    fn to_front(&self, id: u64) {
        let at = (1..WAYS)
            .find(|&i| self.ids[i].get() == id)
            .unwrap_or(WAYS - 1);
        let left = if self.ids[at].get() == id {
            self.left[at].get()
        } else {
            0
        };
        for i in (1..=at).rev() {
            self.ids[i].set(self.ids[i - 1].get());
            self.left[i].set(self.left[i - 1].get());
        }
        self.ids[0].set(id);
        self.left[0].set(left);
    }
}

#[cfg(not(loom))]
std::thread_local! {
    static COUNTDOWNS: Countdowns = const { Countdowns::new() };
}

#[cfg(loom)]
loom::thread_local! {
    static COUNTDOWNS: Countdowns = Countdowns::new();
}

/// Counts an install that found a spare job, on this thread, into the runtime numbered `id`;
/// whether it is the one in `SUPPLY_LOOK_EVERY` that looks at that runtime's backlog. Ordinary
/// context.
#[inline]
pub(crate) fn look_due(id: u64) -> bool {
    COUNTDOWNS.with(|countdowns| countdowns.count(id))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Which of `installs` (runtime ids, in order) looked.
    fn looks(installs: impl IntoIterator<Item = u64>) -> Vec<(usize, u64)> {
        let countdowns = Countdowns::new();
        installs
            .into_iter()
            .enumerate()
            .filter(|&(_, id)| countdowns.count(id))
            .collect()
    }

    #[test]
    fn one_runtime_is_looked_at_first_and_then_once_in_sixty_four() {
        let every = SUPPLY_LOOK_EVERY as usize;
        let looked: Vec<usize> = looks(std::iter::repeat_n(7, 3 * every))
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(looked, [0, every, 2 * every]);
    }

    #[test]
    fn each_of_two_alternating_runtimes_is_looked_at_once_in_sixty_four_of_its_installs() {
        let every = SUPPLY_LOOK_EVERY as usize;
        let looked = looks((0..4 * every).map(|i| 1 + (i % 2) as u64));
        for id in [1, 2] {
            let of_id: Vec<usize> = looked
                .iter()
                .filter(|&&(_, looked_at)| looked_at == id)
                .map(|&(i, _)| i / 2)
                .collect();
            assert_eq!(of_id, [0, every], "runtime {id}: {looked:?}");
        }
    }

    #[test]
    fn a_runtime_keeps_its_countdown_while_others_come_and_go() {
        let every = SUPPLY_LOOK_EVERY as usize;
        // Runtime 1 looks at its first install, then 2, 3 and 4 come in between (one
        // install each) every 16 installs of 1: 1 keeps its place among the four.
        let mut installs = Vec::new();
        for i in 0..every + 1 {
            installs.push(1);
            if i % 16 == 15 {
                installs.extend([2, 3, 4]);
            }
        }
        let of_1 = looks(installs).iter().filter(|&&(_, id)| id == 1).count();
        assert_eq!(of_1, 2);
    }

    #[test]
    fn a_thread_cycling_through_more_runtimes_than_it_keeps_looks_at_every_install() {
        let ids = (0..3 * WAYS).map(|i| 1 + (i % (WAYS + 1)) as u64);
        assert_eq!(looks(ids).len(), 3 * WAYS);
    }
}
