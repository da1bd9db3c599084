//! Readable slots: borrowing a [`ReadSlot`]'s object under a read guard, and taking a new
//! reference to an `Arc` in one (the kernel's `KF_KPTR_GET`).
//!
//! Readability is a type-level choice (the `A` of [`Slot<P, A>`]): a [`RefSlot`] keeps the
//! cheapest exchanges (an ordinary-context replace is one CAS and the old object may be destroyed
//! inline), a [`ReadSlot`] pays for its readers. In a `ReadSlot`:
//!
//! - [`load`](Slot::load) reads the pointer with one `SeqCst` load under a
//!   [`ReadGuard`](crate::read::ReadGuard); the reference it returns borrows both the slot and the
//!   guard, so it cannot outlive either (the compiler enforces the verifier's parent/child rule);
//! - every object that leaves the slot — replaced or taken, in any context — is destroyed after
//!   a grace period (`read.rs`), never inline, because a reader on another thread or in an
//!   interrupted frame may still hold it: in ordinary context it is retired into a batch (no
//!   job), in restricted context it goes to the drainer with a job, as a `RefSlot`'s does;
//! - the object still in the slot when the slot itself is dropped is the exception: every
//!   reference `load` gave out borrows the slot, and dropping it takes `&mut`, so none is left.
//!   It is destroyed as a `RefSlot`'s would be, with no grace period, so a list whose nodes hold
//!   the next in a `ReadSlot` is torn down at once, not a grace period per node;
//! - `clone_current` (for `Arc`s and [`Shared`]s) increments the reference count of the
//!   object under a guard, so it can never resurrect an object whose last reference is gone: the
//!   slot's own reference is only released after a grace period (or by the slot's drop, which
//!   cannot run while `clone_current` borrows the slot).
//!
//! | operation           | concurrent with any other | restricted context                      |
//! |---------------------|---------------------------|-----------------------------------------|
//! | `load`              | yes (one load)            | yes                                     |
//! | `clone_current`     | yes (guard + one increment) | yes; a clone dropped there is a decrement while the slot keeps the object, else deferred |
//! | `xchg`, `take`, `clear`, `Drop` | yes           | yes; needs a reserved or spare job for `xchg(Some)` |

use crate::handle::Runtime;
use crate::pointer::SlotPointer;
use crate::read::{self, ReadGuard};
use crate::shared::Shared;
use crate::slot::{Detached, ReadSlot, Slot};
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::Arc;

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// Whether a [`Slot`] may be read: [`WriteOnly`] or [`Readable`] (sealed).
pub trait Access: sealed::Sealed + 'static {
    /// Whether objects leaving the slot may still be borrowed by readers.
    #[doc(hidden)]
    const READABLE: bool;
}

/// The [`Access`] of a [`RefSlot`](crate::RefSlot): only writers use it.
#[derive(Debug)]
pub enum WriteOnly {}

/// The [`Access`] of a [`ReadSlot`]: readers may borrow its object under a read guard.
#[derive(Debug)]
pub enum Readable {}

impl sealed::Sealed for WriteOnly {}
impl Access for WriteOnly {
    const READABLE: bool = false;
}

impl sealed::Sealed for Readable {}
impl Access for Readable {
    const READABLE: bool = true;
}

impl<P: SlotPointer> Slot<P, Readable> {
    /// An empty readable slot whose objects are accounted in `runtime`. May be called from a
    /// signal handler (it clones the handle: one atomic increment).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sigdrop::{ReadSlot, Runtime, read, restricted};
    ///
    /// let rt = Runtime::new()?;
    /// let config: ReadSlot<Arc<String>> = ReadSlot::new(&rt);
    /// config.xchg(Some(Arc::new("fast".into())))?;
    ///
    /// // In a signal handler: borrow it, no reference count touched.
    /// {
    ///     let _restricted = restricted::enter();
    ///     let guard = read::enter();
    ///     assert_eq!(config.load(&guard).map(|s| s.as_str()), Some("fast"));
    /// }
    ///
    /// // Anywhere: a reference of your own.
    /// let mine = config.clone_current().unwrap().into_inner().ok().unwrap();
    /// drop(config.xchg(Some(Arc::new("slow".into()))).unwrap()); // "fast" goes to the drainer
    /// assert_eq!(*mine, "fast");
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    pub fn new(runtime: &Runtime) -> Self {
        Slot::empty(runtime)
    }

    /// The object in the slot now, borrowed for as long as both `guard` and the slot are:
    /// replacing or tearing it down meanwhile, from any thread or from a signal handler on this
    /// one, does not destroy it before `guard` is dropped.
    ///
    /// May be called from a signal handler: one atomic load.
    ///
    /// The borrow cannot outlive the slot either:
    ///
    /// ```compile_fail,E0505
    /// use sigdrop::{ReadSlot, Runtime, read};
    /// let rt = Runtime::new().unwrap();
    /// let slot: ReadSlot<Box<u32>> = ReadSlot::new(&rt);
    /// let guard = read::enter();
    /// let value = slot.load(&guard);
    /// drop(slot); // error: `slot` is still borrowed by `value`
    /// println!("{value:?}");
    /// ```
    ///
    /// Only a [`ReadSlot`] can be read; a [`RefSlot`](crate::RefSlot) keeps its cheaper
    /// exchanges and has no `load`:
    ///
    /// ```compile_fail,E0599
    /// use sigdrop::{RefSlot, Runtime, read};
    /// let rt = Runtime::new().unwrap();
    /// let slot: RefSlot<Box<u32>> = RefSlot::new(&rt);
    /// let guard = read::enter();
    /// let _ = slot.load(&guard); // error: no method `load` on a write-only slot
    /// ```
    ///
    /// Readers on other threads share the object, so it must be `Sync`:
    ///
    /// ```compile_fail,E0277
    /// use std::cell::Cell;
    /// use sigdrop::{ReadSlot, Runtime, read};
    /// let rt = Runtime::new().unwrap();
    /// let slot: ReadSlot<Box<Cell<u32>>> = ReadSlot::new(&rt);
    /// let guard = read::enter();
    /// let _ = slot.load(&guard); // error: `Cell<u32>` cannot be shared between threads
    /// ```
    #[inline]
    pub fn load<'g>(&'g self, guard: &'g ReadGuard) -> Option<&'g P::Target>
    where
        P::Target: Sync,
    {
        let ptr = self.load_raw(guard);
        // A non-null pointer in the slot came from `P::into_raw`, so it points to a valid
        // `P::Target` (`SlotPointer`'s contract); it was in the slot after `guard` was entered, so
        // its destructor waits for a grace period that waits for `guard`, which outlives `'g`.
        // SAFETY: valid `P::Target` until `guard` drops (above); `P::Target: Sync` to share it.
        unsafe { ptr.cast::<P::Target>().as_ref() }
    }

    /// The slot's pointer now, with the provenance `P::into_raw` gave it (not narrowed to a
    /// shared reference), valid while `guard` is.
    #[inline]
    fn load_raw(&self, guard: &ReadGuard) -> *mut () {
        self.core.load_raw(guard)
    }
}

impl<T: Send + Sync + 'static> ReadSlot<Arc<T>> {
    /// A new strong reference to the `Arc` in the slot now, or `None` if it is empty; safe
    /// against a concurrent replace or teardown, from any context.
    ///
    /// It comes in an unreserved [`Detached`]: in ordinary context take the `Arc` out with
    /// [`into_inner`](Detached::into_inner) (no grace period needed: nobody borrows through a
    /// fresh reference) or just use it through `Deref`. Dropped in a signal handler while the
    /// slot still holds the same object, it is a plain decrement of the count, which cannot be
    /// the last one (the slot's own reference outlives the check): no job, nothing deferred.
    /// Dropped there after the object has left the slot, it might be the last reference, so it
    /// goes to the drainer using a reserved or spare job (see [`Detached::is_reserved`]).
    ///
    /// So a handler may clone and drop at any rate while the object stays installed. Clones that
    /// outlive a replace each spend a job until the drainer gives it back; once the spare and
    /// reserved jobs and the emergency area are used up, such a clone dropped in a handler is
    /// leaked (counted in [`Stats::leaked`](crate::Stats::leaked)), and the object with it, for
    /// its count never reaches zero. Handlers that keep clones across frequent replaces should
    /// use a `ReadSlot<Shared<T>>`, whose clones never need a job
    /// ([`ReadSlot::<Shared<T>>::clone_current`](ReadSlot::clone_current)).
    ///
    /// May be called from a signal handler: a read guard and one atomic increment.
    #[inline]
    pub fn clone_current(&self) -> Option<Detached<'_, Arc<T>>> {
        let guard = read::enter();
        let raw = NonNull::new(self.load_raw(&guard))?;
        let ptr = raw.as_ptr().cast_const().cast::<T>();
        // `ptr` is the slot's `Arc::into_raw` pointer, with its provenance (it was not derived
        // from a `&T`); the slot's strong reference is released only by the drainer after a
        // grace period that waits for `guard`, so the count is at least one here. (The
        // increment rebuilds an `Arc` for a moment while readers borrow the `T`: an `Arc` is a
        // shared pointer, a `NonNull` inside, and asserts no uniqueness over it.)
        // SAFETY: a live `Arc::into_raw` pointer whose count `guard` keeps above zero (above).
        unsafe { Arc::increment_strong_count(ptr) };
        drop(guard);
        // SAFETY: the increment made a strong reference of our own, given up to the guard as the
        // `Arc::into_raw` pointer it stands for; an `Arc` shares its target; `raw` was loaded
        // from this readable slot.
        Some(unsafe { Detached::cloned(raw, self) })
    }
}

impl<T: Send + Sync + 'static> ReadSlot<Shared<T>> {
    /// A new reference to the value in the slot now, or `None` if it is empty; safe against a
    /// concurrent replace or teardown, from any context (basedrop's `SharedCell::get`).
    ///
    /// It comes as a plain [`Shared`], to keep anywhere and drop anywhere: if it turns out to
    /// be the last reference and is dropped in a signal handler, the value goes to the drainer
    /// in its own allocation — no job, nothing to reserve.
    ///
    /// May be called from a signal handler: a read guard and one atomic increment.
    ///
    /// ```
    /// use sigdrop::{ReadSlot, Runtime, Shared, restricted};
    ///
    /// let rt = Runtime::new()?;
    /// let config = ReadSlot::new(&rt);
    /// config.xchg(Some(Shared::new(&rt, String::from("fast"))))?;
    /// // In a signal handler:
    /// let _restricted = restricted::enter();
    /// let mine = config.clone_current().unwrap();
    /// assert_eq!(*mine, "fast");
    /// drop(mine); // not the last reference here; if it were: one push, no free()
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    #[inline]
    pub fn clone_current(&self) -> Option<Shared<T>> {
        let guard = read::enter();
        let raw = NonNull::new(self.load_raw(&guard))?;
        // The slot's own reference, rebuilt only to lend itself to `clone`, and never dropped
        // (a `Shared` is a shared pointer: a copy asserts uniqueness only in `get_mut`, when the
        // count says it is the one reference left, which it cannot while the slot holds one).
        let slots = ManuallyDrop::new(
            // SAFETY: `raw` came from `Shared::into_raw` (only `Shared`s are installed here);
            // the slot gives its reference up only after a grace period that waits for
            // `guard`, so the value is live and its count at least one.
            unsafe { <Shared<T> as SlotPointer>::from_raw(raw) },
        );
        let mine = Shared::clone(&slots);
        drop(guard);
        Some(mine)
    }
}
