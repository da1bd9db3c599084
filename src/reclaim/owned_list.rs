//! Per-CPU multi-producer lists of *self-carrying* nodes, emptied whole by the drainer: how an
//! [`Owned`](crate::Owned) box reaches the drainer from a signal handler with no job.
//!
//! ## Protocol
//!
//! An owned box's allocation starts with a [`Link`]: the list pointer `next`, a `grace` flag and
//! the type-erased function that destroys the whole allocation. The box *is* its own job, so a
//! restricted-context drop needs nothing from the pool — no claim, no freelist pop, no reserve,
//! never the emergency area:
//!
//! 1. the owner (the code dropping the box, alone with it) writes `next`, and `grace` if it is set
//!    (a link is made with `grace` false and pushed once);
//! 2. it CASes the shard's head from `next` to its node (Treiber push), retrying with the new
//!    head on failure;
//! 3. it rings the doorbell as a job push does (`doorbell.rs`'s `after_push`), passing the list
//!    length before the push: in [`Wake::Immediate`](crate::Wake) only "empty or not" matters
//!    (the head it replaced was null or not); in [`Wake::Lazy`](crate::Wake) a per-shard counter
//!    incremented *before* the push gives the length the high watermark is compared with.
//!
//! The drainer takes a shard's whole list with one swap to null, reverses it (oldest first) and
//! hands each node to the cycle, which runs its destroy function — or, for a node that left a
//! [`ReadSlot`](crate::ReadSlot) (`grace`), puts it in a batch that waits for a grace period.
//!
//! Free of ABA without a tag, as the job lists are (`llist.rs`): a push never reads another
//! node (it only writes its own node's `next`, then CASes the head, and a stale head only makes
//! the CAS fail), and the only consumer operation is take-all, one swap that reads no node. A
//! node may be freed by the drainer the moment after it was taken; no pusher ever dereferences
//! the head it loaded, so that is harmless.
//!
//! ## Orderings
//!
//! - push: the node's fields (and the value in the same allocation) are written before the head
//!   CAS, which is Release; the CAS is also Acquire so that a push that finds the list empty
//!   happens-after the take that emptied it (the doorbell's no-lost-wake-up argument, exactly as
//!   for job lists);
//! - take: the swap is AcqRel: Acquire pairs with every push's Release (each push's CAS continues
//!   the release sequence of the pushes before it), so the drainer sees every node's fields and
//!   value; Release so that a later push that finds the list empty synchronises with it;
//! - the take first looks at a head with a Relaxed load and skips a list it sees empty (an idle
//!   cycle then writes nothing producers read). A push that load misses loses no wake-up: the
//!   push precedes its ring's swap of `pending`; if the drainer's clear (an Acquire swap, made
//!   before the load) comes after that swap in `pending`'s order, it synchronises with it and
//!   the load sees the push; if it comes before, `pending` is set again after the clear, and
//!   the drainer does not sleep before another cycle (`doorbell.rs`). Loom checks this
//!   (`owned_push_racing_drainer_sleep_is_never_stranded`);
//! - the lazy-mode counter is Relaxed: it only decides whether to ring early (the drainer wakes
//!   by itself within its period anyway). It is incremented before the push and decreased by
//!   the drainer after the take, so it never goes below the number of nodes in the list.
//!
//! ## Concurrency table
//!
//! | operation  | concurrent with push | with take | restricted context |
//! |------------|----------------------|-----------|--------------------|
//! | `push`     | yes                  | yes       | yes: one load, one CAS (retried only if another push or a take moved the head); in lazy mode one more `fetch_add` |
//! | `take_all` | yes                  | yes (each node goes to exactly one taker) | no (it runs destructors) |
//! | `taken`    | yes (snapshot)       | yes       | yes                |

use crate::arena::{Dtor, Payload};
use crate::cpu::current_shard;
use crate::sync::{AtomicPtr, AtomicU64, AtomicUsize, Ordering, UnsafeCell};
use crossbeam_utils::CachePadded;
use std::ptr::{self, NonNull};

#[cfg(loom)]
loom::thread_local! {
    /// A model's "signal handler" that interrupts this thread's next push between its load of
    /// the head and its CAS (run once, on the same loom thread: `set_model_interrupt`).
    static INTERRUPT: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        std::cell::RefCell::new(None);
}

/// Makes the calling model thread's next owned-list push run `handler` between its load of the
/// head and its CAS, on the same thread, as a signal landing there would (loom only).
#[cfg(loom)]
pub fn set_model_interrupt(handler: Box<dyn FnOnce()>) {
    INTERRUPT.with(|h| *h.borrow_mut() = Some(handler));
}

#[cfg(loom)]
fn model_interrupt() {
    if let Some(handler) = INTERRUPT.with(|h| h.borrow_mut().take()) {
        handler();
    }
}

/// The first field of every owned box's allocation: what the list and the drainer need.
#[derive(Debug)]
pub(crate) struct Link {
    /// The next (older) node while the node is in a list. Written only by the node's owner
    /// before its push; read only by the drainer that took the list.
    next: UnsafeCell<*mut Link>,
    /// Whether readers may still borrow the value (it left a readable slot): then it is
    /// destroyed only after a grace period. Written and read like `next`.
    grace: UnsafeCell<bool>,
    /// Destroys the whole allocation, given the node's address (the `Link`'s, which is the
    /// allocation's: the `Link` comes first in a `#[repr(C)]` node).
    destroy: Dtor,
}

impl Link {
    /// A link for a node destroyed by `destroy`.
    pub(crate) fn new(destroy: Dtor) -> Link {
        Link {
            next: UnsafeCell::new(ptr::null_mut()),
            grace: UnsafeCell::new(false),
            destroy,
        }
    }
}

/// One shard: the head and, in lazy mode, the length counter, on one cache line.
struct Shard {
    head: AtomicPtr<Link>,
    /// Nodes pushed and not yet taken (only kept when `counted`).
    len: AtomicUsize,
}

/// One multi-producer, take-all list of owned-box nodes per shard.
pub(crate) struct OwnedLists {
    shards: Box<[CachePadded<Shard>]>,
    /// Whether pushes keep the length counter ([`Wake::Lazy`](crate::Wake) needs it for its
    /// high watermark; immediate mode only needs "was the list empty").
    counted: bool,
    /// Nodes taken by drainers (a statistic).
    taken: AtomicU64,
}

impl OwnedLists {
    /// `shards` empty lists; `counted`: keep per-shard lengths (lazy wake mode).
    pub(crate) fn new(shards: usize, counted: bool) -> Self {
        OwnedLists {
            shards: (0..shards)
                .map(|_| {
                    CachePadded::new(Shard {
                        head: AtomicPtr::new(ptr::null_mut()),
                        len: AtomicUsize::new(0),
                    })
                })
                .collect(),
            counted,
            taken: AtomicU64::new(0),
        }
    }

    /// Pushes `node` onto this CPU's list and returns the length the doorbell compares: the
    /// list's length before the push in lazy mode, else 0 if the list was empty and 1 if not.
    /// Lock-free, allocation-free: safe in restricted context.
    ///
    /// # Safety
    /// `node` points to the `Link` at the start of a live owned-box allocation whose `destroy`
    /// frees it; the caller owns it and gives that ownership up to the list (and so to
    /// whichever drainer takes it).
    #[inline]
    pub(crate) unsafe fn push(&self, node: NonNull<Link>, grace: bool) -> usize {
        let shard = current_shard(self.shards.len());
        debug_assert!(shard < self.shards.len());
        // SAFETY: `current_shard(n)` is below `n`.
        let s = unsafe { self.shards.get_unchecked(shard) };
        // Before the push, so that the drainer's decrement (after its take) never underflows.
        // Relaxed: a heuristic for the lazy high watermark (module docs).
        let counted = if self.counted {
            s.len.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        // SAFETY: the caller owns `node`; nobody else reads its fields until our CAS publishes it.
        let link = unsafe { node.as_ref() };
        if grace {
            // SAFETY: as above: exclusive until published. (A link is made with `false` and
            // pushed once, so only `true` needs writing: an owned box's own drop skips it.)
            link.grace.with_mut(|g| unsafe { *g = true });
        }
        // Relaxed: only compared; the CAS validates it and the pointer is never dereferenced.
        let mut cur = s.head.load(Ordering::Relaxed);
        #[cfg(loom)]
        model_interrupt();
        loop {
            // SAFETY: as above: exclusive until published.
            link.next.with_mut(|n| unsafe { *n = cur });
            // AcqRel on success: Release publishes the node (and the value after it) to the
            // taker's Acquire swap; Acquire orders a push onto an empty list after the take that
            // emptied it (module docs). Relaxed on failure: the value is only compared again.
            match s.head.compare_exchange_weak(
                cur,
                node.as_ptr(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        if self.counted {
            counted
        } else {
            usize::from(!cur.is_null())
        }
    }

    /// Takes every shard's list whole and hands each node, oldest first per shard, to `f` as a
    /// payload (`obj` is the node, `dtor` its destroy function, `grace` its flag), which then
    /// owns it: it must destroy it, or keep it for later, exactly once. Returns the number of
    /// nodes taken. Ordinary context (the drainer's).
    pub(crate) fn take_all(&self, mut f: impl FnMut(Payload)) -> usize {
        let mut total = 0;
        for s in self.shards.iter() {
            // Relaxed: a cheap look first, so an idle cycle writes nothing; a node pushed after
            // this load is found by the next cycle, which its ring asks for.
            if s.head.load(Ordering::Relaxed).is_null() {
                continue;
            }
            // AcqRel: see the module docs.
            let mut cur = s.head.swap(ptr::null_mut(), Ordering::AcqRel);
            // Reverse in place: the nodes are ours now, so their links are ours to rewrite.
            let mut prev: *mut Link = ptr::null_mut();
            let mut n = 0;
            while !cur.is_null() {
                // SAFETY: `cur` was pushed (so it is a live node) and our take made it ours; the
                // swap's Acquire made its fields visible.
                let link = unsafe { &*cur };
                // SAFETY: ours (above); no other access.
                let next = link.next.with(|p| unsafe { *p });
                // SAFETY: ours (above); no other access.
                link.next.with_mut(|p| unsafe { *p = prev });
                prev = cur;
                cur = next;
                n += 1;
            }
            let mut cur = prev;
            while !cur.is_null() {
                // SAFETY: ours (above). Read everything before `f`, which may free the node.
                let link = unsafe { &*cur };
                // SAFETY: ours; rewritten just above on this thread.
                let next = link.next.with(|p| unsafe { *p });
                // SAFETY: ours; written by the pusher before its Release CAS.
                let grace = link.grace.with(|g| unsafe { *g });
                f(Payload {
                    obj: cur.cast(),
                    dtor: link.destroy,
                    grace,
                });
                cur = next;
            }
            if self.counted {
                // Relaxed: the heuristic counter (module docs).
                s.len.fetch_sub(n, Ordering::Relaxed);
            }
            total += n;
        }
        if total > 0 {
            // Relaxed: a statistic.
            self.taken.fetch_add(total as u64, Ordering::Relaxed);
        }
        total
    }

    /// Nodes taken by drainers so far (a snapshot). Safe anywhere.
    pub(crate) fn taken(&self) -> u64 {
        // Relaxed: a statistic.
        self.taken.load(Ordering::Relaxed)
    }
}

impl Drop for OwnedLists {
    fn drop(&mut self) {
        // The runtime's last cycles (`Drop for Inner`) take every list; and every node holds a
        // handle to its runtime, so no node can be left in a runtime being dropped.
        debug_assert!(
            self.shards
                .iter()
                .all(|s| s.head.load(Ordering::Relaxed).is_null()),
            "owned boxes left in a dropped runtime's lists"
        );
    }
}
