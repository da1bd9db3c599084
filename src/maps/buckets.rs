//! A hash map's buckets: each the head of a chain and a try-lock, and the table of them that
//! `fork` takes whole.
//!
//! ## The lock
//!
//! A bucket's lock is one flag. In ordinary context taking it spins (with backoff, yielding the
//! CPU) until the holder lets go; holders never block inside. In restricted context it tries
//! once and answers [`Error::WouldBlock`] if the bucket is busy, so a handler that interrupts a
//! thread holding the same bucket never waits for the thread it interrupted.
//!
//! ## Across `fork`
//!
//! A bucket lock another thread held when `fork` copied the process would stay taken in the
//! child for ever, and the chain under it could be half-linked. So the table registers itself
//! with the fork handlers when it is made: the thread calling `fork` takes every bucket of
//! every live table before it forks and releases them after, in parent and child, as it does
//! the runtime's own locks. A bucket is held only for a chain walk and a few stores, so this
//! waits for moments; it costs a `fork` one lock and unlock per bucket of every live map. The
//! table unregisters itself before it is freed.
//!
//! Lock order: a runtime's registered locks are taken before any table's (runtimes register
//! first: a map needs a runtime to be made), and nothing that holds a bucket takes a runtime
//! lock (an insert claims its job before it locks the bucket; objects leave the map under the
//! lock but are destroyed after it is released).

use crate::error::Error;
use crate::restricted;
use crate::sync::{AtomicBool, AtomicU32, Ordering};
#[cfg(not(loom))]
use crossbeam_utils::Backoff;

pub(super) struct Bucket {
    locked: AtomicBool,
    /// The first element of the chain (`NIL` when empty); read and written only with the lock.
    pub(super) head: AtomicU32,
}

/// A held bucket lock; dropping it releases the lock.
pub(super) struct Locked<'a>(&'a Bucket);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Release: publishes every chain and key change made under the lock.
        self.0.locked.store(false, Ordering::Release);
    }
}

impl Bucket {
    fn new(head: u32) -> Self {
        Bucket {
            locked: AtomicBool::new(false),
            head: AtomicU32::new(head),
        }
    }

    /// Takes the lock: spinning in ordinary context, one try in restricted context
    /// ([`Error::WouldBlock`] if busy).
    pub(super) fn lock(&self) -> Result<Locked<'_>, Error> {
        if restricted::is_active() {
            // One strong try: bounded, and never waits for anybody. Acquire on success: pairs
            // with the Release in `Locked::drop` of the previous holder (loom models in
            // `loom-tests/tests/hash.rs`, one per path). Relaxed on failure: nothing acquired.
            return match self.locked.compare_exchange(
                false,
                true,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => Ok(Locked(self)),
                Err(_) => Err(Error::WouldBlock),
            };
        }
        Ok(self.lock_spinning())
    }

    /// Takes the lock, waiting for the holder whatever the context (the fork handler's way).
    fn lock_spinning(&self) -> Locked<'_> {
        #[cfg(not(loom))]
        let backoff = Backoff::new();
        // Acquire on success: as in `lock`. Relaxed on failure: nothing was acquired.
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // The holder never blocks inside, so this ends once it lets go. Under loom, yield to
            // the checker instead (loom cannot see past `Backoff`'s spins and OS yields); the
            // build that ships backs off as before.
            #[cfg(not(loom))]
            backoff.snooze();
            #[cfg(loom)]
            crate::sync::spin_hint();
        }
        Locked(self)
    }
}

/// Every bucket of one map, registered with the fork handlers while it lives.
pub(super) struct Buckets(Box<BucketTable>);

/// The registered allocation: its address stays put however the map moves.
struct BucketTable(Box<[Bucket]>);

impl Buckets {
    /// `count` empty buckets (a power of two), each chain starting at `empty`.
    pub(super) fn new(count: usize, empty: u32) -> Self {
        debug_assert!(count.is_power_of_two());
        let table = Box::new(BucketTable(
            (0..count).map(|_| Bucket::new(empty)).collect(),
        ));
        crate::fork::register(&*table);
        Buckets(table)
    }

    /// The bucket a key with this hash lives in.
    pub(super) fn for_hash(&self, hash: u64) -> &Bucket {
        let buckets = &self.0.0;
        &buckets[hash as usize & (buckets.len() - 1)]
    }
}

impl Drop for Buckets {
    fn drop(&mut self) {
        // Waits while a `fork` holds the table's locks; after this no fork handler reaches it.
        crate::fork::unregister(&*self.0);
    }
}

impl crate::fork::ForkLocks for BucketTable {
    fn hold(&self) -> Box<dyn crate::fork::Held + '_> {
        // Every bucket, in order (the only thread that takes more than one at a time is the
        // forking thread, so any order is deadlock-free among buckets).
        Box::new(self.0.iter().map(Bucket::lock_spinning).collect::<Vec<_>>())
    }
}
