//! Owned pointers a [`RefSlot`](crate::RefSlot) can hold: `Box<T>`, `Arc<T>` and [`Raw<T, D>`] (a
//! raw pointer destroyed by the function of a [`Destroy`] type).
//!
//! A slot stores one machine word, the object pointer, and knows the destructor from the slot's
//! type, so an exchange stays a single atomic operation, a slot can never hold an object with
//! another destructor, and a job needs only `(pointer, destructor)` to destroy the object later.

use crate::arena::Dtor;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// An owning pointer that can live in a [`RefSlot`](crate::RefSlot) and be destroyed later, on
/// another thread, through a type-erased destructor.
///
/// Implemented for `Box<T>` (`T: Send`), `Arc<T>` (`T: Send + Sync`), [`Raw<T, D>`],
/// [`Owned<T>`](crate::Owned) (which needs no job in a slot) and [`Shared<T>`](crate::Shared)
/// (accounted like an `Arc`); sealed.
/// Objects must be `'static` because their destructor may run after the code that handed them
/// over has returned, and sized: a slot holds one thin pointer (one atomic word), so a
/// `Box<dyn Fn(..)>` or an `Arc<[T]>` does not fit. Put the unsized value in a sized one and
/// store a box of that:
///
/// ```
/// use sigdrop::{ReadSlot, Runtime};
///
/// struct Handler(Box<dyn Fn(u32) -> u32 + Send + Sync>);
///
/// let rt = Runtime::new()?;
/// let slot: ReadSlot<Box<Handler>> = ReadSlot::new(&rt);
/// slot.xchg(Some(Box::new(Handler(Box::new(|x| x + 1)))))?;
/// let guard = sigdrop::read::enter();
/// assert_eq!(slot.load(&guard).map(|h| (h.0)(1)), Some(2));
/// # Ok::<(), sigdrop::Error>(())
/// ```
///
/// # Safety
///
/// Implemented only in this crate (the trait is sealed). Each implementation guarantees:
/// `into_raw` gives up ownership as a non-null pointer; `from_raw(p)` rebuilds exactly the value
/// that produced `p`; calling `DESTRUCTOR(p)` destroys it exactly as dropping the rebuilt value
/// would, on any thread; until then, `p` points to a valid `Target` that shared references may
/// read, and nothing writes to that `Target` except through interior mutability (the crate hands
/// out `&Target` from `p` while it holds `p`: to readers of a [`ReadSlot`](crate::ReadSlot), and
/// through [`Detached`](crate::Detached)). `p` keeps the provenance of the pointer it came from:
/// the crate never rebuilds a value from `p` while shared references derived from it may still
/// be used, unless the value shares its target (`Arc`).
pub unsafe trait SlotPointer: sealed::Sealed + Send + Sized + 'static {
    /// What the pointer points to: what a reader of a [`ReadSlot`](crate::ReadSlot) borrows.
    type Target;
    /// Gives up ownership as a raw pointer.
    #[doc(hidden)]
    fn into_raw(self) -> NonNull<()>;
    /// Rebuilds the value from [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `ptr` came from `into_raw` of a value of this type, and ownership of it is held by the
    /// caller.
    #[doc(hidden)]
    unsafe fn from_raw(ptr: NonNull<()>) -> Self;
    /// The type-erased destructor of every value of this type: a slot's destructor is part of
    /// the slot's type.
    #[doc(hidden)]
    const DESTRUCTOR: Dtor;
    /// Whether the pointer carries its own way to the drainer ([`Owned`](crate::Owned)): a slot
    /// then never claims a job for it, and a [`Detached`](crate::Detached) holding it defers it
    /// in restricted context with [`defer_raw`](Self::defer_raw) instead of a job. A constant,
    /// so the branch costs nothing for the other pointers.
    #[doc(hidden)]
    const SELF_DEFERRING: bool = false;
    /// Hands the value given up as `ptr` to the drainer from restricted context without a job;
    /// `grace`: readers may still borrow it. It takes the raw pointer, not the value, so that
    /// nothing rebuilds an owning pointer while readers may borrow its target. Called only when
    /// [`SELF_DEFERRING`](Self::SELF_DEFERRING) is true, and then async-signal-safe.
    ///
    /// # Safety
    /// `ptr` came from `into_raw` of a value of this type; the caller owns it and gives it up.
    #[doc(hidden)]
    unsafe fn defer_raw(ptr: NonNull<()>, grace: bool) {
        let _ = (ptr, grace);
        // Never called for pointers that are not self-deferring (every call site checks the
        // constant first); leaking is the one answer that is safe in a signal handler.
        debug_assert!(false, "defer_raw on a pointer that is not self-deferring");
    }
}

/// # Safety
/// `ptr` came from `Box::<T>::into_raw` and is owned by the caller.
unsafe fn drop_box<T>(ptr: *mut ()) {
    // SAFETY: the caller's contract.
    drop(unsafe { Box::from_raw(ptr.cast::<T>()) });
}

/// # Safety
/// `ptr` came from `Arc::<T>::into_raw` and the caller owns that strong reference.
unsafe fn drop_arc<T>(ptr: *mut ()) {
    // SAFETY: the caller's contract.
    drop(unsafe { Arc::from_raw(ptr.cast::<T>()) });
}

impl<T: Send + 'static> sealed::Sealed for Box<T> {}
// SAFETY: `Box::into_raw`/`from_raw` round-trip; `drop_box::<T>` drops the box; `T: Send` lets
// the drainer thread drop it.
unsafe impl<T: Send + 'static> SlotPointer for Box<T> {
    type Target = T;
    fn into_raw(self) -> NonNull<()> {
        // SAFETY: `Box::into_raw` never returns null.
        unsafe { NonNull::new_unchecked(Box::into_raw(self).cast()) }
    }
    unsafe fn from_raw(ptr: NonNull<()>) -> Self {
        // SAFETY: the caller's contract: `ptr` came from `into_raw` above.
        unsafe { Box::from_raw(ptr.as_ptr().cast()) }
    }
    const DESTRUCTOR: Dtor = drop_box::<T>;
}

impl<T: Send + Sync + 'static> sealed::Sealed for Arc<T> {}
// SAFETY: `Arc::into_raw`/`from_raw` round-trip one strong reference; `drop_arc::<T>` releases it;
// `Arc<T>: Send` (T: Send + Sync) lets the drainer thread release it.
unsafe impl<T: Send + Sync + 'static> SlotPointer for Arc<T> {
    type Target = T;
    fn into_raw(self) -> NonNull<()> {
        // SAFETY: `Arc::into_raw` never returns null.
        unsafe { NonNull::new_unchecked(Arc::into_raw(self).cast_mut().cast()) }
    }
    unsafe fn from_raw(ptr: NonNull<()>) -> Self {
        // SAFETY: the caller's contract: `ptr` came from `into_raw` above.
        unsafe { Arc::from_raw(ptr.as_ptr().cast_const().cast()) }
    }
    const DESTRUCTOR: Dtor = drop_arc::<T>;
}

/// The destructor of raw objects of type `T`, named by a type so that a slot's destructor is part
/// of the slot's type: a [`RefSlot<Raw<T, D>>`](crate::RefSlot) holds one machine word and can
/// only ever hold objects destroyed by `D`.
///
/// Usually a unit struct:
///
/// ```
/// use std::ptr::NonNull;
/// use sigdrop::Destroy;
///
/// struct FreeBoxedU64;
/// impl Destroy<u64> for FreeBoxedU64 {
///     unsafe fn destroy(ptr: NonNull<u64>) {
///         // SAFETY: `Raw::new`'s contract: `ptr` came from `Box::into_raw` and is owned.
///         drop(unsafe { Box::from_raw(ptr.as_ptr()) });
///     }
/// }
/// ```
pub trait Destroy<T>: 'static {
    /// Destroys the object at `ptr`.
    ///
    /// # Safety
    /// As promised to [`Raw::new`]: `ptr` is owned by the caller, and this is its one
    /// destruction.
    unsafe fn destroy(ptr: NonNull<T>);
}

/// An owned raw pointer destroyed by `D`: for objects that are not a `Box` or an `Arc` (memory
/// from another allocator, a handle to release, a pooled buffer).
///
/// Dropping a `Raw` calls `D::destroy` inline (so do not drop one in a signal handler; a
/// [`Detached`](crate::Detached) guard defers instead).
///
/// ```
/// use std::ptr::NonNull;
/// use sigdrop::{Destroy, Drainer, Raw, RefSlot, Runtime, restricted};
///
/// struct FreeBoxedU64;
/// impl Destroy<u64> for FreeBoxedU64 {
///     unsafe fn destroy(ptr: NonNull<u64>) {
///         // SAFETY: every pointer handed to `Raw::new` below came from `Box::into_raw`.
///         drop(unsafe { Box::from_raw(ptr.as_ptr()) });
///     }
/// }
///
/// let rt = Runtime::builder().drainer(Drainer::Manual).build()?;
/// let slot: RefSlot<Raw<u64, FreeBoxedU64>> = RefSlot::new(&rt);
/// let ptr = NonNull::from(Box::leak(Box::new(7u64)));
/// // SAFETY: `ptr` is owned and `FreeBoxedU64` may destroy it, once, on any thread.
/// let raw = unsafe { Raw::new(ptr) };
/// assert_eq!(unsafe { *raw.as_ptr().as_ref() }, 7);
/// slot.xchg(Some(raw))?;
/// {
///     let _restricted = restricted::enter();
///     slot.clear(); // deferred
/// }
/// assert_eq!(rt.drain()?, 1); // FreeBoxedU64::destroy ran here
/// # Ok::<(), sigdrop::Error>(())
/// ```
pub struct Raw<T, D: Destroy<T>> {
    ptr: NonNull<T>,
    _destroy: PhantomData<fn() -> D>,
}

impl<T, D: Destroy<T>> Raw<T, D> {
    /// Takes ownership of `ptr`, to be destroyed by `D::destroy`.
    ///
    /// May be called from a signal handler (it only stores a word).
    ///
    /// # Safety
    /// The caller owns the object at `ptr` and gives that ownership up; calling
    /// `D::destroy(ptr)` exactly once, on any thread, at any later time, is sound and destroys
    /// the object. Until then `ptr` points to a valid `T`, which sigdrop lends out as `&T`
    /// (readers of a [`ReadSlot`](crate::ReadSlot), a [`Detached`](crate::Detached)'s `Deref`),
    /// so nothing else may write to it meanwhile, except through interior mutability.
    pub unsafe fn new(ptr: NonNull<T>) -> Self {
        Raw {
            ptr,
            _destroy: PhantomData,
        }
    }

    /// The pointer (ownership stays with `self`). May be called from a signal handler.
    pub fn as_ptr(&self) -> NonNull<T> {
        self.ptr
    }

    /// Gives up ownership without destroying the object; the caller becomes responsible. May
    /// be called from a signal handler.
    pub fn into_ptr(self) -> NonNull<T> {
        let ptr = self.ptr;
        std::mem::forget(self);
        ptr
    }
}

impl<T, D: Destroy<T>> Drop for Raw<T, D> {
    fn drop(&mut self) {
        // SAFETY: `Raw::new`'s contract: `D::destroy(ptr)` is sound once; we own the object.
        unsafe { D::destroy(self.ptr) }
    }
}

impl<T, D: Destroy<T>> std::fmt::Debug for Raw<T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raw").field("ptr", &self.ptr).finish()
    }
}

// SAFETY: `Raw::new`'s contract lets the object be destroyed on any thread; `T: Send` lets it be
// used there.
unsafe impl<T: Send, D: Destroy<T>> Send for Raw<T, D> {}

/// # Safety
/// `ptr` came from `Raw::<T, D>::into_ptr` (or `into_raw`) and is owned by the caller.
unsafe fn drop_raw<T, D: Destroy<T>>(ptr: *mut ()) {
    // SAFETY: the caller's contract; `ptr` is non-null because it came from a `NonNull`.
    unsafe { D::destroy(NonNull::new_unchecked(ptr.cast::<T>())) }
}

impl<T: Send + 'static, D: Destroy<T>> sealed::Sealed for Raw<T, D> {}
// SAFETY: `into_ptr`/`new` round-trip; `drop_raw::<T, D>` is `D::destroy`, as dropping does.
unsafe impl<T: Send + 'static, D: Destroy<T>> SlotPointer for Raw<T, D> {
    type Target = T;
    fn into_raw(self) -> NonNull<()> {
        self.into_ptr().cast()
    }
    unsafe fn from_raw(ptr: NonNull<()>) -> Self {
        // SAFETY: the caller's contract: `ptr` came from `into_raw` of a `Raw<T, D>`.
        unsafe { Raw::new(ptr.cast()) }
    }
    const DESTRUCTOR: Dtor = drop_raw::<T, D>;
}
