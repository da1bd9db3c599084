//! `KptrHash`: a fixed-capacity hash map from small `Copy` keys to owned pointers, every element
//! preallocated — the kernel's preallocated hash map with a kptr field.
//!
//! ## Layout
//!
//! - `capacity` elements, allocated up front. Each has a key cell, a [`RefSlot`] for the value and
//!   a `next` link. An element is, at any moment, in exactly one place: the free stack, one
//!   bucket's chain, or held by the one operation that is moving it between the two.
//! - Buckets (a power of two, at least `capacity`) hold the head of a chain and a try-lock. A
//!   chain and the keys of its elements are only read or written with the bucket locked.
//! - Free elements sit on a [`Freelist`] (the same ABA-safe tagged stack as idle jobs) linked
//!   through the elements' `next` fields, so inserting from a signal handler allocates nothing.
//!
//! ## Locking, and why a handler never waits
//!
//! In ordinary context, taking a bucket spins (with backoff, yielding the CPU) until the holder
//! lets go; holders never block inside. In restricted context it tries once: a busy bucket
//! answers [`Error::WouldBlock`] and the map is unchanged, as the kernel's rqspinlock answers
//! `-EDEADLK`. That is what makes a handler that interrupts a thread holding the same bucket
//! safe: it cannot wait for the thread it interrupted.
//!
//! Objects leave the map with the lock held but are destroyed (or deferred) only after it is
//! released, so a destructor may use the map again.
//!
//! The buckets (`buckets.rs`) register with the fork handlers, so a child process never
//! inherits one taken by a thread it does not have; while a `fork` is being prepared, a handler
//! gets `WouldBlock` and an ordinary caller waits for the fork.
//!
//! | operation                      | concurrent with any other | restricted context            |
//! |--------------------------------|---------------------------|-------------------------------|
//! | `insert`, `take`, `delete`, `contains_key` | yes (per-bucket lock) | yes; `WouldBlock` if the bucket is busy |
//! | `len`                          | yes (snapshot)            | yes                           |

use super::buckets::{Bucket, Buckets, Locked};
use crate::arena::{Links, NIL};
use crate::error::Error;
use crate::freelist::Freelist;
use crate::handle::Runtime;
use crate::pointer::SlotPointer;
use crate::rejected::Rejected;
use crate::restricted;
use crate::slot::{Detached, RefSlot};
use crate::sync::{AtomicU32, AtomicUsize, Ordering, UnsafeCell};
use std::hash::{BuildHasher, Hash, RandomState};
use std::mem::MaybeUninit;

struct Element<K, P: SlotPointer> {
    next: AtomicU32,
    key: KeyCell<K>,
    slot: RefSlot<P>,
}

/// An element's key, read and written only by the holder of its bucket's lock (or by the one
/// operation that owns the element off any chain), which may be any thread.
struct KeyCell<K>(UnsafeCell<MaybeUninit<K>>);

// SAFETY: see `KeyCell`: a key is moved in and read on whichever thread holds the lock, so
// sending or sharing the map sends and shares keys: `K: Send + Sync`. (Bounds on auto traits
// only, so that a map may hold boxes of the type that holds it: the compiler accepts a cycle of
// auto-trait goals, not one through `SlotPointer`. The map is then `Send` and `Sync` by its
// fields: its values live in `RefSlot`s, which are for any `P: Send`.)
unsafe impl<K: Send + Sync> Send for KeyCell<K> {}
// SAFETY: as above.
unsafe impl<K: Send + Sync> Sync for KeyCell<K> {}

/// The element table, as the link storage of the free stack.
struct Elements<K, P: SlotPointer>(Box<[Element<K, P>]>);

impl<K, P: SlotPointer> Links for Elements<K, P> {
    unsafe fn link(&self, idx: u32) -> &AtomicU32 {
        &self.0[idx as usize].next
    }
}

/// A fixed-capacity map from `K` to objects held in reserve-accounted slots.
///
/// The map holds objects for their owner: values go in, come out (`take`) or are torn down
/// (`delete`), but are not read in place. To read objects by a small integer key while others
/// replace them, use an array of [`ReadSlot`](crate::ReadSlot)s (see [`KptrArray`](crate::KptrArray)).
///
/// Keys are `Copy` so that removing one never runs a destructor; hashing uses std's SipHash with
/// keys drawn when the map is made, which allocates nothing. A key type's `Hash` and `Eq` must be
/// async-signal-safe if the map is used from a handler (true of integers, tuples and arrays of
/// them).
///
/// ```
/// use sigdrop::{Drainer, Error, KptrHash, Runtime, restricted};
///
/// let rt = Runtime::builder().drainer(Drainer::Manual).build()?;
/// let map: KptrHash<u32, Box<String>> = KptrHash::new(&rt, 16)?;
/// map.insert(7, Box::new("seven".into()))?;
/// assert!(map.contains_key(&7)?);
/// {
///     let _restricted = restricted::enter();
///     assert!(map.delete(&7)?); // deferred to the drainer
/// }
/// assert_eq!(rt.drain()?, 1);
/// assert_eq!(map.len(), 0);
/// # Ok::<(), Error>(())
/// ```
pub struct KptrHash<K, P: SlotPointer> {
    runtime: Runtime,
    elements: Elements<K, P>,
    buckets: Buckets,
    free: Freelist,
    hasher: RandomState,
    len: AtomicUsize,
}

impl<K: Hash + Eq + Copy, P: SlotPointer> KptrHash<K, P> {
    /// A map for up to `capacity` keys, every element allocated now. Ordinary context only.
    /// Fails with [`Error::InvalidConfig`] for a capacity of 0 or one that does not fit the
    /// 32-bit element index, and [`Error::Restricted`] in restricted context.
    pub fn new(runtime: &Runtime, capacity: usize) -> Result<Self, Error> {
        if restricted::is_active() {
            return Err(Error::Restricted);
        }
        if capacity == 0 || capacity >= NIL as usize {
            return Err(Error::InvalidConfig {
                field: "capacity",
                reason: "must be between 1 and u32::MAX - 1",
            });
        }
        let elements = Elements(
            (0..capacity)
                .map(|_| Element {
                    next: AtomicU32::new(NIL),
                    key: KeyCell(UnsafeCell::new(MaybeUninit::uninit())),
                    slot: RefSlot::new(runtime),
                })
                .collect(),
        );
        let buckets = Buckets::new(capacity.next_power_of_two(), NIL);
        // One shard: elements are shared by all CPUs, not per CPU.
        let free = Freelist::new(1);
        for idx in (0..capacity as u32).rev() {
            // SAFETY: a fresh element, ours, handed out by `elements`.
            unsafe { free.push(&elements, 0, idx) };
        }
        Ok(KptrHash {
            runtime: runtime.clone(),
            elements,
            buckets,
            free,
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
        })
    }
}

impl<K: Hash + Eq + Copy, P: SlotPointer> KptrHash<K, P> {
    /// The number of keys the map can hold. May be called from a signal handler.
    pub fn capacity(&self) -> usize {
        self.elements.0.len()
    }

    /// The number of keys now (a snapshot). May be called from a signal handler.
    pub fn len(&self) -> usize {
        // Relaxed: a snapshot statistic; nothing synchronises through it.
        self.len.load(Ordering::Relaxed)
    }

    /// Whether the map holds no key now (a snapshot). May be called from a signal handler.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bucket(&self, key: &K) -> &Bucket {
        self.buckets.for_hash(self.hasher.hash_one(key))
    }

    /// The element holding `key` in `bucket`'s chain and its predecessor, if any.
    fn find(&self, _held: &Locked<'_>, bucket: &Bucket, key: &K) -> Option<(Option<u32>, u32)> {
        let mut prev = None;
        // Relaxed (here and in the loop): chains are only touched under the bucket lock, whose
        // Acquire/Release orders every access.
        let mut idx = bucket.head.load(Ordering::Relaxed);
        while idx != NIL {
            let element = &self.elements.0[idx as usize];
            let key_matches = |k: *const MaybeUninit<K>| {
                // SAFETY: `idx` is on a chain we hold the lock of, so its key was written
                // (before it was linked, under this lock) and nobody writes it while we hold it.
                unsafe { (*k).assume_init_ref() == key }
            };
            let found = element.key.0.with(key_matches);
            if found {
                return Some((prev, idx));
            }
            prev = Some(idx);
            idx = element.next.load(Ordering::Relaxed);
        }
        None
    }

    /// Inserts or replaces the object for `key`; returns the previous object, if any (see
    /// [`RefSlot::xchg`] for what a replace returns). Hands the value back, the map unchanged,
    /// on [`Error::WouldBlock`] (restricted context, bucket busy), [`Error::MapFull`], or when
    /// no job can be reserved for it.
    ///
    /// In ordinary context it claims a job before it looks the key up, as an install into an
    /// empty slot does: with no spare job while more than
    /// [`Builder::max_pending`](crate::Builder::max_pending) objects wait, it first waits for
    /// the drainer thread (see [`RefSlot::xchg`]), even for a key that is then replaced.
    ///
    /// May be called from a signal handler; there an insert (of a new key, or a replace, whose
    /// displaced object needs a job) takes a job reserved with
    /// [`Runtime::reserve`](crate::Runtime::reserve) (or a spare one). A refused insert gives
    /// that job back: refusals spend no reservation.
    pub fn insert(&self, key: K, value: P) -> Result<Option<Detached<'_, P>>, Rejected<P>> {
        // Claim the job first: growing the pool (ordinary context) then never happens under a
        // bucket lock, and a failed claim never holds a free element (which would make another
        // insert see the map full). A self-deferring pointer (`Owned`) needs none. On every
        // refusal below the unspent claim is dropped, after the bucket is released: it goes back
        // to the counter it came from (a reserved job stays reserved), and only then may a spare
        // one be trimmed.
        let claim = if P::SELF_DEFERRING {
            None
        } else {
            match self.runtime.inner().claim_for_install() {
                Ok(claim) => Some(claim),
                Err(error) => return Err(Rejected::new(value, error, Some(&self.runtime))),
            }
        };
        let bucket = self.bucket(&key);
        let held = match self.buckets.lock(bucket) {
            Ok(held) => held,
            Err(error) => {
                drop(claim);
                return Err(Rejected::new(value, error, Some(&self.runtime)));
            }
        };
        if let Some((_, idx)) = self.find(&held, bucket, &key) {
            // Replace: our claim goes to the displaced object, which comes back reserved.
            return self.elements.0[idx as usize].slot.exchange(value, claim);
        }
        // SAFETY: the free stack only ever holds indices of `self.elements`; it has one shard.
        let Some(idx) = (unsafe { self.free.pop(&self.elements, 0) }) else {
            drop(held);
            drop(claim);
            let capacity = self.capacity();
            let error = Error::MapFull { capacity };
            return Err(Rejected::new(value, error, Some(&self.runtime)));
        };
        let element = &self.elements.0[idx as usize];
        // The element's slot is empty (elements on the free stack always are) and only we can
        // reach it, so this installs with our claim and cannot fail.
        let previous = element.slot.exchange(value, claim);
        debug_assert!(matches!(previous, Ok(None)));
        // SAFETY: the element is ours (popped, not yet on a chain): no other access.
        element.key.0.with_mut(|k| unsafe { (*k).write(key) });
        // Relaxed (links, head): under the bucket lock, whose Release in `Locked::drop` publishes
        // them to the next holder's Acquire. `len` is a snapshot statistic.
        element
            .next
            .store(bucket.head.load(Ordering::Relaxed), Ordering::Relaxed);
        bucket.head.store(idx, Ordering::Relaxed);
        self.len.fetch_add(1, Ordering::Relaxed);
        drop(held);
        Ok(None)
    }

    /// Removes `key` and returns its object (to drop, or unwrap in ordinary context). `Ok(None)`
    /// if the key is absent; [`Error::WouldBlock`] in restricted context if the bucket is busy.
    /// May be called from a signal handler.
    pub fn take(&self, key: &K) -> Result<Option<Detached<'_, P>>, Error> {
        let bucket = self.bucket(key);
        let held = self.buckets.lock(bucket)?;
        let Some((prev, idx)) = self.find(&held, bucket, key) else {
            return Ok(None);
        };
        let element = &self.elements.0[idx as usize];
        // Relaxed (links, head, `len`): as in `insert`, ordered by the bucket lock.
        let next = element.next.load(Ordering::Relaxed);
        match prev {
            None => bucket.head.store(next, Ordering::Relaxed),
            Some(prev) => self.elements.0[prev as usize]
                .next
                .store(next, Ordering::Relaxed),
        }
        let taken = element.slot.take();
        self.len.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: unlinked under the lock, so the element is ours to give back (its slot is
        // empty and `K: Copy` needs no drop).
        unsafe { self.free.push(&self.elements, 0, idx) };
        drop(held);
        Ok(taken)
    }

    /// Deletes `key`; its object is destroyed inline in ordinary context (under
    /// [`Policy::Auto`](crate::Policy::Auto)) or deferred to the drainer, after the bucket lock
    /// is released. Returns whether the key was present. May be called from a signal handler.
    pub fn delete(&self, key: &K) -> Result<bool, Error> {
        Ok(self.take(key)?.is_some())
    }

    /// Whether `key` is present. May be called from a signal handler
    /// ([`Error::WouldBlock`] if its bucket is busy there).
    pub fn contains_key(&self, key: &K) -> Result<bool, Error> {
        let bucket = self.bucket(key);
        let held = self.buckets.lock(bucket)?;
        Ok(self.find(&held, bucket, key).is_some())
    }
}

#[cfg(loom)]
impl<K: Hash + Eq + Copy, P: SlotPointer> KptrHash<K, P> {
    /// (Loom models.) Prepares a fork as its handler does, then reads every chain and key with
    /// no bucket lock, as the child's copy holds them, and returns the keys. A holder still
    /// changing a chain then (the fork protocol broken) is a data race loom reports.
    #[doc(hidden)]
    pub fn model_fork_copy(&self) -> Vec<K> {
        let _preparing = self.buckets.model_prepare_fork();
        let mut keys = Vec::new();
        for bucket in self.buckets.model_all() {
            // Relaxed: what the fork copies; the key reads below are what the model checks.
            let mut idx = bucket.head.load(Ordering::Relaxed);
            while idx != NIL {
                let element = &self.elements.0[idx as usize];
                // SAFETY: linked, so its key was written before it was linked; no holder is
                // changing a chain once the fork is prepared (the property under test).
                keys.push(element.key.0.with(|k| unsafe { (*k).assume_init() }));
                idx = element.next.load(Ordering::Relaxed);
            }
        }
        keys
    }
}

impl<K, P: SlotPointer> std::fmt::Debug for KptrHash<K, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KptrHash")
            .field("capacity", &self.elements.0.len())
            .field("len", &self.len.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::Drainer;

    fn rt() -> Runtime {
        Runtime::builder().drainer(Drainer::Manual).build().unwrap()
    }

    #[test]
    fn insert_replace_take_and_reuse_elements() {
        let rt = rt();
        let map: KptrHash<u64, Box<u64>> = KptrHash::new(&rt, 4).unwrap();
        for k in 0..4 {
            assert!(map.insert(k, Box::new(k * 10)).unwrap().is_none());
        }
        let full = map.insert(9, Box::new(90)).unwrap_err();
        assert!(matches!(full.error(), Error::MapFull { capacity: 4 }));
        assert_eq!(*full.into_inner(), 90);
        let old = map.insert(2, Box::new(21)).unwrap().unwrap();
        assert_eq!(*old, 20);
        drop(old);
        assert_eq!(*map.take(&2).unwrap().unwrap(), 21);
        assert!(map.take(&2).unwrap().is_none());
        assert!(map.insert(9, Box::new(90)).unwrap().is_none()); // the freed element, reused
        assert_eq!(map.len(), 4);
        for k in [0, 1, 3, 9] {
            assert!(map.contains_key(&k).unwrap());
            assert!(map.delete(&k).unwrap());
        }
        assert!(map.is_empty());
        assert_eq!(rt.stats().refs, 0);
    }

    #[test]
    fn a_busy_bucket_answers_would_block_in_restricted_context_only() {
        let rt = rt();
        let map: KptrHash<u32, Box<u32>> = KptrHash::new(&rt, 8).unwrap();
        map.insert(1, Box::new(1)).unwrap();
        let bucket = map.bucket(&1);
        let held = map.buckets.lock(bucket).unwrap(); // as if the interrupted thread held it
        let refused = {
            let _nmi = restricted::enter();
            assert!(matches!(map.delete(&1), Err(Error::WouldBlock)));
            let rejected = map.insert(1, Box::new(2)).unwrap_err();
            assert!(matches!(rejected.error(), Error::WouldBlock));
            rejected.into_inner() // kept for later (dropped here, it would go to the drainer)
        };
        assert_eq!(*refused, 2);
        drop(refused); // ordinary context again
        drop(held);
        assert!(map.contains_key(&1).unwrap());
        {
            let _nmi = restricted::enter();
            assert!(map.delete(&1).unwrap());
        }
        assert_eq!(rt.drain().unwrap(), 1);
    }

    #[test]
    fn refused_inserts_in_restricted_context_keep_the_reservation() {
        let rt = Runtime::builder()
            .shards(1)
            .headroom(0)
            .hysteresis(0)
            .drainer(Drainer::Manual)
            .build()
            .unwrap();
        let map: KptrHash<u32, Box<u32>> = KptrHash::new(&rt, 1).unwrap();
        map.insert(1, Box::new(1)).unwrap();
        rt.reserve(1).unwrap();
        let held = map.buckets.lock(map.bucket(&1)).unwrap(); // as if the interrupted thread held it
        let (two, three) = (Box::new(2), Box::new(3)); // made in ordinary context
        let busy = {
            let _nmi = restricted::enter();
            let rejected = map.insert(2, two).unwrap_err();
            assert!(matches!(rejected.error(), Error::WouldBlock));
            rejected.into_inner()
        };
        drop(held);
        let full = {
            let _nmi = restricted::enter();
            let rejected = map.insert(3, three).unwrap_err();
            assert!(matches!(rejected.error(), Error::MapFull { capacity: 1 }));
            rejected.into_inner()
        };
        drop((busy, full)); // ordinary context
        let s = rt.stats();
        assert_eq!((s.reserved, s.spare), (1, 0), "{s:?}");
        assert_eq!(rt.trim().unwrap(), 0);
        assert_eq!(rt.stats().reserved, 1);
    }

    #[test]
    fn owned_inserts_need_no_job_even_in_restricted_context() {
        let rt = rt();
        let map: KptrHash<u32, crate::Owned<u32>> = KptrHash::new(&rt, 2).unwrap();
        let (a, b) = (crate::Owned::new(&rt, 1), crate::Owned::new(&rt, 2));
        {
            let _nmi = restricted::enter();
            assert!(map.insert(1, a).unwrap().is_none());
            drop(map.insert(1, b).unwrap()); // the displaced box defers itself
        }
        let s = rt.stats();
        assert_eq!((s.total, s.reserve_failures), (0, 0), "{s:?}");
        assert_eq!(rt.drain().unwrap(), 1);
        assert!(map.delete(&1).unwrap());
    }

    #[test]
    fn concurrent_inserts_and_deletes_keep_every_key_once() {
        let rt = rt();
        let map: KptrHash<u32, Box<u32>> = KptrHash::new(&rt, 64).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let map = &map;
                s.spawn(move || {
                    for round in 0..500u32 {
                        let key = t * 16 + round % 16;
                        if round % 2 == 0 {
                            drop(map.insert(key, Box::new(round)).unwrap());
                        } else {
                            map.delete(&key).unwrap();
                        }
                    }
                });
            }
        });
        let present = (0..64).filter(|k| map.contains_key(k).unwrap()).count();
        assert_eq!(present, map.len());
        assert_eq!(rt.stats().refs, map.len());
    }
}
