//! What a `fork` child does with an owned box some parent thread was pushing.
//!
//! A push links its node last (`owned_list.rs`, step 5). If `fork` copies the process while a
//! thread other than the forking one is between its swap and its link, that thread does not
//! exist in the child: the node stays unlinked there for ever, and everything queued before it
//! on that CPU with it (the pointer to them was in that thread's registers). Left alone, the
//! child's drainer would find the node unlinked at every cycle and poll for it.
//!
//! So the child's `fork` handler *seals* such nodes: on the child's only thread, before any
//! other thread of the child exists, it walks each shard's list up to its first unlinked node,
//! and each stashed node, and links every unlinked one it finds to nothing, with the grace bit
//! (the forking thread may hold a read guard that borrows its value). The drainer then runs
//! the node like any other; what was queued before it stays the parent's, never destroyed in
//! the child (counted among the boxes that exist: the child never frees the runtime state).
//!
//! Not when the forking thread is itself in restricted context: it may be a signal handler
//! that interrupted a push on the same thread, which links its node once the handler returns —
//! sealing it would let a drainer destroy the node under that link. Pushes happen only in
//! restricted context, so outside it the forking thread has no push in progress. The child then
//! keeps the fallback: its drainer polls while it holds such a node.

use super::{GRACE, Link, Shard, UNLINKED};
use crate::fork::{ForkLocks, Held};
use crate::sync::{AtomicPtr, Ordering};
use crossbeam_utils::CachePadded;
use std::ptr::{self, NonNull};

/// What `fork` registers for a runtime's owned lists: their heads and stashes, which live in
/// allocations of their own that the lists own through raw pointers, so neither a `&mut` of
/// the runtime state nor a `Box` covers them while a `fork` looks.
pub(crate) struct ForkSeal {
    shards: NonNull<[CachePadded<Shard>]>,
    stashes: NonNull<[AtomicPtr<Link>]>,
}

// SAFETY: the pointers name atomics (`Sync`) in the lists' slices, which outlive the seal's
// registration (the runtime unregisters it first thing in its `Drop`).
unsafe impl Send for ForkSeal {}
// SAFETY: as above; only atomics and, on the child's only thread, `stash_next` are touched.
unsafe impl Sync for ForkSeal {}

impl ForkSeal {
    /// The seal for a runtime's owned-list heads and stashes (the lists' slices, owned through
    /// raw pointers: no `Box` claims them).
    pub(super) fn new(
        shards: NonNull<[CachePadded<Shard>]>,
        stashes: NonNull<[AtomicPtr<Link>]>,
    ) -> ForkSeal {
        ForkSeal { shards, stashes }
    }

    /// Seals every node left unlinked (module docs); returns how many. Only on the child's only
    /// thread, in its `fork` handler: nothing else touches the lists meanwhile.
    #[cfg_attr(loom, allow(dead_code))]
    fn seal(&self) -> usize {
        // SAFETY: the slices outlive the registration (see `Send`).
        let (shards, stashes) = unsafe { (self.shards.as_ref(), self.stashes.as_ref()) };
        let mut sealed = 0;
        for (shard, stash) in shards.iter().zip(stashes) {
            // The list, newest first, up to its first unlinked node (nothing older is reachable).
            // Acquire, here and below: the child's one thread reads what the parent's threads
            // wrote before `fork` copied it (a formality: no thread runs concurrently).
            let mut cur = shard.head.load(Ordering::Acquire);
            while let Some(node) = NonNull::new(cur) {
                // SAFETY: a node in a list is live until a drainer takes it, and none runs.
                let word = unsafe { node.as_ref() }.next.load(Ordering::Acquire);
                if word.addr() == UNLINKED {
                    // SAFETY: as above.
                    sealed += usize::from(unsafe { seal_node(node) });
                    break;
                }
                cur = word.map_addr(|a| a & !GRACE);
            }
            // Each stashed node (found unlinked by a parent's drainer; its pusher may have
            // linked it since).
            let mut cur = stash.load(Ordering::Acquire);
            while let Some(node) = NonNull::new(cur) {
                // SAFETY: a stashed node is live until a drainer takes the stash, and none runs.
                let link = unsafe { node.as_ref() };
                // SAFETY: `stash_next` is written only by drainers, and none runs.
                cur = link.stash_next.with(|p| unsafe { *p });
                // SAFETY: live, and nothing else runs (above).
                sealed += usize::from(unsafe { seal_node(node) });
            }
        }
        sealed
    }
}

/// Links `node` to nothing, with the grace bit, if it is still unlinked; whether it was.
///
/// # Safety
/// `node` is a live pushed node that no other thread can touch (the child's `fork` handler).
#[cfg_attr(loom, allow(dead_code))]
unsafe fn seal_node(node: NonNull<Link>) -> bool {
    // SAFETY: live (contract).
    let next = unsafe { &node.as_ref().next };
    if next.load(Ordering::Acquire).addr() != UNLINKED {
        return false;
    }
    // Release: pairs with a walk's Acquire load of `next`, as the pusher's link would.
    next.store(ptr::without_provenance_mut(GRACE), Ordering::Release);
    true
}

impl ForkLocks for ForkSeal {
    /// Nothing to hold: the lists take no lock.
    fn hold(&self) -> Box<dyn Held + '_> {
        Box::new(())
    }

    fn after_fork_in_child(&self) {
        #[cfg(not(loom))]
        if !crate::restricted::is_active() {
            self.seal();
        }
    }
}
