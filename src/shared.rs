//! [`Shared<T>`]: the reference-counted sibling of [`Owned<T>`](crate::Owned).
//!
//! ## Protocol
//!
//! A `Shared<T>` is an `Owned<Counted<T>>` whose node every clone points to; `Counted` puts a
//! reference count in front of the value. Only `get_mut` ever writes through it (a `&mut` to the
//! value, never to the node or its count), and only through the one reference left (below), so
//! the copies of the `Owned` pointer never alias a mutable borrow.
//!
//! - clone: `refs += 1` (Relaxed, as `Arc`: a new reference is made from a live one, which keeps
//!   the count above zero);
//! - drop: `refs -= 1` (Release); the one that takes it to zero issues an Acquire fence (pairing
//!   with every other reference's Release decrement, so all their uses happen before the
//!   destruction) and drops the `Owned` — which, in restricted context, is one push onto this
//!   CPU's owned list, and in ordinary context is an inline destroy (or a retire under
//!   `Policy::AlwaysDefer`). So the last reference can be let go of anywhere; only one of the
//!   droppers ever owns the node, because only one sees the count go from 1 to 0;
//! - get_mut: `refs == 1` (Acquire, pairing with the Release decrements of the references that
//!   are gone, so their uses of the value happen before the mutable borrow) through `&mut self`.
//!   A count of one means no other reference exists, and none can be made while we hold the
//!   only one mutably: every reference is made from a live one, and a slot holding the value
//!   holds a reference of its own, given up only after the grace period its readers need.
//!
//! In a slot, a `Shared<T>` is accounted like an `Arc<T>` (with a job): a slot's reference to an
//! object that readers may borrow ([`ReadSlot`](crate::ReadSlot)) must be given up only after a
//! grace period, and a node has one list link, not one per reference.

use crate::arena::Dtor;
use crate::error::Error;
use crate::handle::Runtime;
use crate::owned::Owned;
use crate::pointer::{SlotPointer, sealed};
use crate::sync::{AtomicUsize, Ordering, fence};
use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::NonNull;

/// The value of a `Shared<T>`'s node: the count, then the value.
#[repr(C)]
pub(crate) struct Counted<T> {
    refs: AtomicUsize,
    value: T,
}

/// A reference-counted pointer whose last reference may be dropped in a signal handler: like
/// `Arc<T>`, but when the last reference goes in restricted context the value goes to the
/// drainer in its own allocation (one push, no job), as an [`Owned`] does.
///
/// ```
/// use sigdrop::{Drainer, Runtime, Shared, restricted};
///
/// let rt = Runtime::builder().drainer(Drainer::Manual).build()?;
/// let config = Shared::new(&rt, String::from("fast"));
/// let for_the_handler = config.clone();
/// drop(config); // not the last reference: nothing happens
/// {
///     let _restricted = restricted::enter();
///     assert_eq!(*for_the_handler, "fast");
///     drop(for_the_handler); // the last one: a push, no free() here
/// }
/// assert_eq!(rt.drain()?, 1); // the String is freed here
/// # Ok::<(), sigdrop::Error>(())
/// ```
pub struct Shared<T: Send + Sync + 'static> {
    /// Shared by every clone; dropped (once) by the reference that takes the count to zero.
    owned: ManuallyDrop<Owned<Counted<T>>>,
}

// SAFETY: like `Arc<T>`: any clone may be the last and drop the `T` on its thread (`T: Send`),
// and clones on several threads share `&T` (`T: Sync`).
unsafe impl<T: Send + Sync + 'static> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync + 'static> Sync for Shared<T> {}

impl<T: Send + Sync + 'static> Shared<T> {
    /// A new reference-counted value whose last reference may go in a signal handler.
    ///
    /// Not for signal handlers: it allocates. Keep a [`Runtime`] handle alive while references
    /// may be dropped in handlers (see [`Owned`]). Like [`Owned::new`], it may first wait for
    /// the drainer while boxes dropped in handlers pile up.
    pub fn new(runtime: &Runtime, value: T) -> Shared<T> {
        Shared {
            owned: ManuallyDrop::new(Owned::new(
                runtime,
                Counted {
                    refs: AtomicUsize::new(1),
                    value,
                },
            )),
        }
    }

    /// As [`new`](Self::new), but it refuses, handing `value` back with the reason, where `new`
    /// must not be used or cannot succeed: in restricted context with [`Error::Restricted`]
    /// (at once, without touching the allocator), and with [`Error::OutOfMemory`] when the
    /// allocator fails. May be called from a signal handler (it refuses there): see
    /// [`Owned::try_new`].
    pub fn try_new(runtime: &Runtime, value: T) -> Result<Shared<T>, (T, Error)> {
        let counted = Counted {
            refs: AtomicUsize::new(1),
            value,
        };
        match Owned::try_new(runtime, counted) {
            Ok(owned) => Ok(Shared {
                owned: ManuallyDrop::new(owned),
            }),
            Err((counted, error)) => Err((counted.value, error)),
        }
    }

    /// The number of references now (a snapshot). May be called from a signal handler.
    pub fn count(this: &Self) -> usize {
        // Relaxed: a snapshot.
        this.owned.refs.load(Ordering::Relaxed)
    }

    /// The value, mutably, if this is its only reference (as `Arc::get_mut`); `None` while
    /// another reference exists, a slot's included.
    ///
    /// A reference that left a [`ReadSlot`](crate::ReadSlot) still exists until the grace
    /// period its readers need has passed and a drain has destroyed it: after a `take`, get the
    /// slot's reference back with [`Detached::into_inner`](crate::Detached::into_inner) (which
    /// waits for that grace period), or drop it and call
    /// [`Runtime::drain_and_wait`](crate::Runtime::drain_and_wait).
    ///
    /// May be called from a signal handler: one atomic load.
    ///
    /// ```
    /// use sigdrop::{Runtime, Shared};
    ///
    /// let rt = Runtime::new()?;
    /// let mut config = Shared::new(&rt, String::from("fast"));
    /// let other = config.clone();
    /// assert!(Shared::get_mut(&mut config).is_none()); // `other` may be reading it
    /// drop(other);
    /// Shared::get_mut(&mut config).unwrap().push_str("er");
    /// assert_eq!(*config, "faster");
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    pub fn get_mut(this: &mut Self) -> Option<&mut T> {
        // Acquire: pairs with the Release decrement of every reference gone (module docs).
        if this.owned.refs.load(Ordering::Acquire) == 1 {
            let counted = this.owned.value_ptr();
            // Ours alone: no other reference exists and `&mut this` keeps any from being made
            // (module docs). The borrow covers the value only, not the count beside it (as
            // `Arc::get_mut` does).
            // SAFETY: a live value (our reference keeps it), borrowed for as long as `this`.
            Some(unsafe { &mut (*counted).value })
        } else {
            None
        }
    }

    /// Whether two references point to the same value. May be called from a signal handler.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        std::ptr::eq(&**a, &**b)
    }
}

impl<T: Send + Sync + 'static> Clone for Shared<T> {
    /// Another reference: one atomic increment. May be called from a signal handler.
    fn clone(&self) -> Self {
        // Relaxed: see the module docs (as `Arc::clone`).
        let old = self.owned.refs.fetch_add(1, Ordering::Relaxed);
        if old > isize::MAX as usize {
            // As `Arc`: a count this high means clones were leaked in a loop. `abort` is
            // async-signal-safe.
            std::process::abort();
        }
        // A bitwise copy of the pointer to the shared node. Copies only read through it, but for
        // `get_mut`, which writes only while its reference is the one left (the count excludes
        // that while any copy exists).
        // SAFETY: a copy of a pointer to a live node; only the reference that takes the count
        // to zero drops it (`Drop`), so the copy never frees what the others still use.
        let owned = unsafe { std::ptr::read(&self.owned) };
        Shared { owned }
    }
}

impl<T: Send + Sync + 'static> Drop for Shared<T> {
    /// Gives up this reference: one atomic decrement; the last one drops the value as an
    /// [`Owned`] does (in a signal handler: one push, no destructor). May be called from a
    /// signal handler.
    fn drop(&mut self) {
        // Release: our uses of the value happen before the last reference's Acquire fence.
        if self.owned.refs.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Acquire: pairs with every other reference's Release decrement.
        fence(Ordering::Acquire);
        // SAFETY: we took the count to zero: no other reference exists, and this is the one
        // drop of the `Owned`.
        drop(unsafe { ManuallyDrop::take(&mut self.owned) });
    }
}

impl<T: Send + Sync + 'static> Deref for Shared<T> {
    type Target = T;
    /// May be called from a signal handler.
    fn deref(&self) -> &T {
        &self.owned.value
    }
}

impl<T: Send + Sync + fmt::Debug + 'static> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Shared").field(&**self).finish()
    }
}

/// The offset of the value in a `Counted<T>`: a slot holds the value's address.
const fn value_offset<T>() -> usize {
    std::mem::offset_of!(Counted<T>, value)
}

/// Drops one reference given by a slot's pointer (the value's address).
///
/// # Safety
/// `ptr` came from `Shared::<T>::into_raw` and its reference is owned by the caller.
unsafe fn drop_shared<T: Send + Sync + 'static>(ptr: *mut ()) {
    // SAFETY: the caller's contract; `into_raw` never gives null.
    drop(unsafe { <Shared<T> as SlotPointer>::from_raw(NonNull::new_unchecked(ptr)) });
}

impl<T: Send + Sync + 'static> sealed::Sealed for Shared<T> {}
// SAFETY: `into_raw` gives the value's address (derived from the node's pointer, so with its
// provenance) and gives up one reference; `from_raw` steps back to the `Counted` and then the
// node (`Owned`'s own round trip); `DESTRUCTOR` drops that one reference exactly as dropping the
// rebuilt `Shared` does, on any thread (`T: Send + Sync`); the reference keeps the value valid.
unsafe impl<T: Send + Sync + 'static> SlotPointer for Shared<T> {
    type Target = T;
    fn into_raw(self) -> NonNull<()> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped: its `Owned` copy is taken out once, here.
        let owned = unsafe { ManuallyDrop::take(&mut this.owned) };
        // SAFETY: within the `Counted` the `Owned` points to.
        unsafe { owned.into_raw().byte_add(value_offset::<T>()) }
    }
    unsafe fn from_raw(ptr: NonNull<()>) -> Self {
        // SAFETY: `ptr` came from `into_raw` (the caller's contract): stepping back gives the
        // `Counted`'s address, which is what `Owned::into_raw` gave.
        let counted = unsafe { ptr.byte_sub(value_offset::<T>()) };
        Shared {
            // SAFETY: as above.
            owned: ManuallyDrop::new(unsafe { Owned::from_raw(counted) }),
        }
    }
    const DESTRUCTOR: Dtor = drop_shared::<T>;
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{Drainer, ReadSlot, RefSlot, restricted};
    use std::sync::Arc;

    #[derive(Debug)]
    struct Tracked(Arc<std::sync::atomic::AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            assert!(!restricted::is_active(), "destroyed in restricted context");
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn manual() -> Runtime {
        Runtime::builder().drainer(Drainer::Manual).build().unwrap()
    }

    #[test]
    fn try_new_refuses_in_a_handler_and_hands_the_value_back() {
        let rt = manual();
        {
            let _nmi = restricted::enter();
            let (back, error) = match Shared::try_new(&rt, 42u64) {
                Err(refused) => refused,
                Ok(_) => panic!("made a shared value in restricted context"),
            };
            assert!(matches!(error, Error::Restricted), "{error:?}");
            assert_eq!(back, 42);
        }
        assert_eq!(rt.stats().owned_alive, 0, "nothing counted");
        let made = Shared::try_new(&rt, 42u64).expect("ordinary context");
        assert_eq!((*made, Shared::count(&made)), (42, 1));
        assert_eq!(rt.stats().owned_alive, 1);
    }

    #[test]
    fn the_last_reference_dropped_in_a_handler_is_pushed_not_destroyed() {
        let rt = manual();
        let drops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let a = Shared::new(&rt, Tracked(drops.clone()));
        let b = a.clone();
        assert_eq!(Shared::count(&a), 2);
        assert!(Shared::ptr_eq(&a, &b));
        {
            let _nmi = restricted::enter();
            drop(a); // not the last
        }
        assert_eq!(Shared::count(&b), 1);
        {
            let _nmi = restricted::enter();
            drop(b); // the last: pushed
        }
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        assert_eq!(rt.drain().unwrap(), 1);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        let s = rt.stats();
        assert_eq!((s.owned, s.total), (1, 0));
        // The last reference in ordinary context: inline.
        let c = Shared::new(&rt, Tracked(drops.clone()));
        drop(c.clone());
        drop(c);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn get_mut_is_refused_while_another_reference_exists_a_slots_included() {
        let rt = manual();
        let mut mine = Shared::new(&rt, vec![1u64]);
        Shared::get_mut(&mut mine)
            .expect("the only reference")
            .push(2);
        let other = mine.clone();
        assert!(Shared::get_mut(&mut mine).is_none(), "another reference");
        drop(other);
        Shared::get_mut(&mut mine)
            .expect("the other one is gone")
            .push(3);
        assert_eq!(*mine, [1, 2, 3]);

        // A readable slot's reference lasts until the grace period after it leaves the slot.
        let read: ReadSlot<Shared<Vec<u64>>> = ReadSlot::new(&rt);
        read.xchg(Some(mine.clone())).unwrap();
        assert!(Shared::get_mut(&mut mine).is_none(), "the slot's reference");
        let guard = crate::read::enter();
        let seen = read.load(&guard).unwrap();
        read.clear();
        rt.drain().unwrap();
        assert!(
            Shared::get_mut(&mut mine).is_none(),
            "a reader borrows it: the slot's reference waits for the grace period"
        );
        assert_eq!(*seen, [1, 2, 3]);
        drop(guard);
        rt.drain_and_wait().unwrap();
        Shared::get_mut(&mut mine)
            .expect("the grace period has passed")
            .push(4);
        assert_eq!(*mine, [1, 2, 3, 4]);
    }

    #[test]
    fn in_slots_a_shared_value_goes_with_a_job_and_waits_for_readers() {
        let rt = manual();
        let drops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let slot: RefSlot<Shared<Tracked>> = RefSlot::new(&rt);
        let mine = Shared::new(&rt, Tracked(drops.clone()));
        slot.xchg(Some(mine.clone())).unwrap();
        drop(mine);
        {
            let _nmi = restricted::enter();
            slot.clear(); // the slot's (last) reference goes with its job
        }
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);

        let read: ReadSlot<Shared<Tracked>> = ReadSlot::new(&rt);
        let mine = Shared::new(&rt, Tracked(drops.clone()));
        read.xchg(Some(mine.clone())).unwrap();
        let guard = crate::read::enter();
        let seen = read.load(&guard).unwrap();
        read.clear(); // the slot's reference waits for a grace period
        drop(mine); // so this is not the last one
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1, "destroyed under a reader");
        assert_eq!(seen.0.load(Ordering::SeqCst), 1);
        drop(guard);
        rt.drain_and_wait().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_handler_clones_a_readable_slots_value_and_may_drop_the_last_reference_with_no_job() {
        let rt = Runtime::builder()
            .drainer(Drainer::Manual)
            .headroom(0)
            .hysteresis(0)
            .build()
            .unwrap();
        let drops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let slot: ReadSlot<Shared<Tracked>> = ReadSlot::new(&rt);
        assert!(slot.clone_current().is_none(), "an empty slot");
        slot.xchg(Some(Shared::new(&rt, Tracked(drops.clone()))))
            .unwrap();
        let clone = {
            let _nmi = restricted::enter();
            let clone = slot.clone_current().expect("the slot's value");
            assert_eq!(Shared::count(&clone), 2);
            clone
        };
        slot.clear(); // the slot's reference waits for a grace period, then goes
        rt.drain_and_wait().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 0, "the clone keeps it");
        assert_eq!(Shared::count(&clone), 1);
        {
            let _nmi = restricted::enter();
            drop(clone); // the last reference, in a handler, with no job in the pool
        }
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        let s = rt.stats();
        assert_eq!(
            (s.emergency, s.leaked, s.reserve_failures),
            (0, 0, 0),
            "{s:?}"
        );
    }
}
