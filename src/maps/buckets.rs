//! A hash map's buckets: each the head of a chain and a try-lock, and the table of them, which
//! keeps its locks from being inherited taken across `fork`.
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
//! child for ever, and the chain under it could be half-linked. Taking every bucket around the
//! fork, as the runtime's own locks are taken, would be correct but costly: a write to every
//! bucket before the fork and two after it, each on a page the fork has just shared, so a
//! copy-on-write fault per page in both processes (a map of 2^20 keys made a `fork` 150 ms
//! slower). Instead the table has a `forking` flag, which the thread calling `fork` raises
//! (its prepare handler: the table registers itself with the fork handlers when it is made):
//!
//! ```text
//! lock (any thread):             CAS(bucket: free -> taken)          (Acquire, or spin)
//!                                fence(SeqCst)
//!                                if load(forking):                   let go at once, unchanged:
//!                                    release; ordinary: wait until not forking, try again;
//!                                    restricted: WouldBlock
//! prepare (the forking thread):  store(forking, true); fence(SeqCst)
//!                                for each bucket: wait until a load (Acquire) sees it free
//! after fork, parent:            store(forking, false)
//! after fork, child:             for each bucket seen taken: store free; store(forking, false)
//! ```
//!
//! Why no holder is half-way through a chain when `fork` copies the table: the locker's fence
//! (between its CAS and its load of `forking`) and prepare's fence (between its store and its
//! loads of the buckets) are both SeqCst, so one comes first in their total order. Prepare's
//! first: the locker's load sees the flag, and it lets go without touching the chain. The
//! locker's first: prepare's load of that bucket sees the CAS's taking or a later release, so
//! it waits for (and, Acquire against the unlock's Release, sees) the end of the change.
//! (Fences rather than SeqCst accesses: loom checks fences' total order, not that of SeqCst
//! loads and stores, and its model of this path, `a_prepared_fork_copies_no_half_made_chain`,
//! reports the race without them.)
//! So once prepare has seen every bucket free, any bucket still taken is held by a locker that
//! will let go unchanged: in the parent it does; in the child that thread does not exist, and
//! the child's handler frees the bucket for it. The table costs a `fork` one store and a read
//! of every bucket before it, and a read of every bucket in the child (reads fault no page
//! in); an operation pays one load of a flag that is written only around forks.
//!
//! The table unregisters itself before it is freed. Lock order: a runtime's registered locks
//! are taken before any table's (runtimes register first: a map needs a runtime to be made);
//! prepare holds no bucket, and nothing that holds a bucket takes a runtime lock (an insert
//! claims its job before it locks the bucket; objects leave the map under the lock but are
//! destroyed after it is released).

use crate::error::Error;
use crate::restricted;
use crate::sync::{AtomicBool, AtomicU32, Ordering, fence};
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

/// Spins (backing off, then yielding the CPU) while `busy` holds. Under loom, yields to the
/// checker instead (loom cannot see past `Backoff`'s spins and OS yields).
fn wait_while(mut busy: impl FnMut() -> bool) {
    #[cfg(not(loom))]
    let backoff = Backoff::new();
    while busy() {
        #[cfg(not(loom))]
        backoff.snooze();
        #[cfg(loom)]
        crate::sync::spin_hint();
    }
}

impl Bucket {
    fn new(head: u32) -> Self {
        Bucket {
            locked: AtomicBool::new(false),
            head: AtomicU32::new(head),
        }
    }

    /// One try at the lock. Acquire on success: pairs with the Release in `Locked::drop` of
    /// the previous holder (loom models in `loom-tests/tests/hash.rs`, one per path). Relaxed on
    /// failure: nothing was acquired.
    fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }
}

/// Every bucket of one map, registered with the fork handlers while it lives.
pub(super) struct Buckets(Box<BucketTable>);

/// The registered allocation: its address stays put however the map moves.
struct BucketTable {
    buckets: Box<[Bucket]>,
    /// Raised by a `fork`'s prepare handler until the fork is over (module docs).
    forking: AtomicBool,
}

impl Buckets {
    /// `count` empty buckets (a power of two), each chain starting at `empty`.
    pub(super) fn new(count: usize, empty: u32) -> Self {
        debug_assert!(count.is_power_of_two());
        let table = Box::new(BucketTable {
            buckets: (0..count).map(|_| Bucket::new(empty)).collect(),
            forking: AtomicBool::new(false),
        });
        crate::fork::register(&*table);
        Buckets(table)
    }

    /// The bucket a key with this hash lives in.
    pub(super) fn for_hash(&self, hash: u64) -> &Bucket {
        let buckets = &self.0.buckets;
        &buckets[hash as usize & (buckets.len() - 1)]
    }

    /// Takes `bucket`'s lock (one of this table's): spinning in ordinary context, one try in
    /// restricted context ([`Error::WouldBlock`] if busy, or while a `fork` is being prepared).
    pub(super) fn lock<'a>(&self, bucket: &'a Bucket) -> Result<Locked<'a>, Error> {
        let restricted = restricted::is_active();
        loop {
            if bucket.try_lock() {
                // The fence pairs with prepare's (module docs); through it, Relaxed suffices.
                fence(Ordering::SeqCst);
                if !self.0.forking.load(Ordering::Relaxed) {
                    return Ok(Locked(bucket));
                }
                // A fork is being prepared: let go, unchanged.
                drop(Locked(bucket));
            }
            if restricted {
                // Bounded, and never waits for anybody.
                return Err(Error::WouldBlock);
            }
            // The holder never blocks inside, and a fork's prepare ends once every holder has
            // let go, so this ends. Relaxed: a hint; the CAS, the fence and the load decide.
            wait_while(|| {
                bucket.locked.load(Ordering::Relaxed) || self.0.forking.load(Ordering::Relaxed)
            });
        }
    }
}

/// What the loom models reach of a fork's handlers (loom builds register none).
#[cfg(loom)]
impl Buckets {
    /// Prepares a fork as the prepare handler does; the fork is over when the result is dropped.
    pub(super) fn model_prepare_fork(&self) -> Box<dyn crate::fork::Held + '_> {
        crate::fork::ForkLocks::hold(&*self.0)
    }

    /// Every bucket.
    pub(super) fn model_all(&self) -> &[Bucket] {
        &self.0.buckets
    }
}

impl Drop for Buckets {
    fn drop(&mut self) {
        // Waits while a `fork` is under way; after this no fork handler reaches the table.
        crate::fork::unregister(&*self.0);
    }
}

/// A raised `forking` flag; dropping it lowers the flag.
struct Forking<'a>(&'a BucketTable);

impl Drop for Forking<'_> {
    fn drop(&mut self) {
        // Release: in the child, orders the freeing of abandoned buckets before lockers'
        // loads of the flag (none run there until the child's code goes on); in the
        // parent, lets the lockers waiting in `lock` go on.
        self.0.forking.store(false, Ordering::Release);
    }
}

impl crate::fork::ForkLocks for BucketTable {
    fn hold(&self) -> Box<dyn crate::fork::Held + '_> {
        // Relaxed store, then the fence that pairs with lockers' fences (module docs).
        self.forking.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        for bucket in self.buckets.iter() {
            // Acquire (the load that sees it free): pairs with the holder's Release in
            // `Locked::drop`, so its change is complete in what the fork copies.
            wait_while(|| bucket.locked.load(Ordering::Acquire));
        }
        Box::new(Forking(self))
    }

    fn after_fork_in_child(&self) {
        // Only lockers that saw `forking` and were letting go unchanged can hold a bucket now
        // (module docs), and none of them exists here: free their buckets for them. Relaxed:
        // the child's only thread; nothing was changed under these locks.
        for bucket in self.buckets.iter() {
            if bucket.locked.load(Ordering::Relaxed) {
                bucket.locked.store(false, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::fork::ForkLocks;
    use std::sync::atomic::AtomicBool as StdAtomicBool;

    /// A table the process's fork handlers do not know: a `fork` by another test running
    /// beside these must not raise or lower its flag.
    fn unregistered(count: usize) -> Buckets {
        Buckets(Box::new(BucketTable {
            buckets: (0..count).map(|_| Bucket::new(0)).collect(),
            forking: AtomicBool::new(false),
        }))
    }

    #[test]
    fn while_a_fork_is_prepared_handlers_are_refused_and_threads_wait() {
        let table = unregistered(4);
        let bucket = table.for_hash(1);
        let preparing = table.0.hold();
        {
            let _handler = restricted::enter();
            assert!(matches!(table.lock(bucket), Err(Error::WouldBlock)));
        }
        assert!(!bucket.locked.load(Ordering::SeqCst), "let go unchanged");
        let locked = StdAtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                drop(table.lock(bucket).unwrap());
                locked.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(
                !locked.load(Ordering::SeqCst),
                "took a bucket during the fork"
            );
            drop(preparing); // the fork is over
        });
        assert!(locked.load(Ordering::SeqCst));
    }

    #[test]
    fn the_child_frees_buckets_that_vanished_threads_were_letting_go() {
        let table = unregistered(4);
        let preparing = table.0.hold(); // every bucket was seen free
        // A locker of another thread took this one, saw the flag, and was about to let go when
        // the fork copied the process: in the child, it never will.
        let abandoned = table.for_hash(2);
        assert!(abandoned.try_lock());
        table.0.after_fork_in_child();
        drop(preparing);
        let _handler = restricted::enter(); // one try: a taken bucket would be refused
        assert!(
            table.lock(abandoned).is_ok(),
            "the child inherited a taken bucket"
        );
    }
}
