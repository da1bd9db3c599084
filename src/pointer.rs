//! Owned pointers a [`RefSlot`](crate::RefSlot) can hold: `Box<T>`, `Arc<T>` and [`Raw<T>`] (a raw
//! pointer with its own destructor function).
//!
//! A slot stores one machine word, the object pointer, and knows the destructor from the slot's
//! type (or, for `Raw`, from the destructor it was created with), so an exchange stays a single
//! atomic operation and a job needs only `(pointer, destructor)` to destroy the object later.

use crate::arena::Dtor;
use std::ptr::NonNull;
use std::sync::Arc;

mod sealed {
    pub trait Sealed {}
}

/// An owning pointer that can live in a [`RefSlot`](crate::RefSlot) and be destroyed later, on
/// another thread, through a type-erased destructor.
///
/// Implemented for `Box<T>` (`T: Send`), `Arc<T>` (`T: Send + Sync`) and [`Raw<T>`]; sealed.
/// Objects must be `'static` because their destructor may run after the code that handed them
/// over has returned.
///
/// # Safety
///
/// Implemented only in this crate (the trait is sealed). Each implementation guarantees:
/// `into_raw` gives up ownership as a non-null pointer; `from_raw(p, d)` with `d ==
/// destructor()` of the value that produced `p` rebuilds exactly that value; calling `d(p)`
/// destroys it exactly as dropping the rebuilt value would, on any thread.
pub unsafe trait SlotPointer: sealed::Sealed + Send + Sized + 'static {
    /// Gives up ownership as a raw pointer.
    #[doc(hidden)]
    fn into_raw(self) -> NonNull<()>;
    /// Rebuilds the value from [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `ptr` came from `into_raw` of a value whose destructor is `dtor`, and ownership of it
    /// is held by the caller.
    #[doc(hidden)]
    unsafe fn from_raw(ptr: NonNull<()>, dtor: Dtor) -> Self;
    /// Whether a slot whose destructor is `slot_dtor` may hold this value (always, for types
    /// whose destructor is fixed by the type).
    #[doc(hidden)]
    fn fits(&self, slot_dtor: Dtor) -> bool;
}

/// Pointer types whose destructor is fixed by the type (`Box<T>`, `Arc<T>`), so that
/// [`RefSlot::new`](crate::RefSlot::new) needs no destructor argument. Slots for [`Raw<T>`] use
/// [`RefSlot::with_destructor`](crate::RefSlot::with_destructor).
pub trait TypedDestructor: SlotPointer {
    /// The destructor of every value of this type.
    #[doc(hidden)]
    const DESTRUCTOR: Dtor;
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
    fn into_raw(self) -> NonNull<()> {
        // SAFETY: `Box::into_raw` never returns null.
        unsafe { NonNull::new_unchecked(Box::into_raw(self).cast()) }
    }
    unsafe fn from_raw(ptr: NonNull<()>, _: Dtor) -> Self {
        // SAFETY: the caller's contract: `ptr` came from `into_raw` above.
        unsafe { Box::from_raw(ptr.as_ptr().cast()) }
    }
    fn fits(&self, _: Dtor) -> bool {
        true
    }
}

impl<T: Send + 'static> TypedDestructor for Box<T> {
    const DESTRUCTOR: Dtor = drop_box::<T>;
}

impl<T: Send + Sync + 'static> sealed::Sealed for Arc<T> {}
// SAFETY: `Arc::into_raw`/`from_raw` round-trip one strong reference; `drop_arc::<T>` releases it;
// `Arc<T>: Send` (T: Send + Sync) lets the drainer thread release it.
unsafe impl<T: Send + Sync + 'static> SlotPointer for Arc<T> {
    fn into_raw(self) -> NonNull<()> {
        // SAFETY: `Arc::into_raw` never returns null.
        unsafe { NonNull::new_unchecked(Arc::into_raw(self).cast_mut().cast()) }
    }
    unsafe fn from_raw(ptr: NonNull<()>, _: Dtor) -> Self {
        // SAFETY: the caller's contract: `ptr` came from `into_raw` above.
        unsafe { Arc::from_raw(ptr.as_ptr().cast_const().cast()) }
    }
    fn fits(&self, _: Dtor) -> bool {
        true
    }
}

impl<T: Send + Sync + 'static> TypedDestructor for Arc<T> {
    const DESTRUCTOR: Dtor = drop_arc::<T>;
}

/// An owned raw pointer with its own destructor function: for objects that are not a `Box` or an
/// `Arc` (memory from another allocator, a handle to release, a pooled buffer).
///
/// Dropping a `Raw` calls its destructor inline (so do not drop one in a signal handler; a
/// [`Detached`](crate::Detached) guard defers instead). A slot for `Raw<T>` is created with one destructor
/// ([`RefSlot::with_destructor`](crate::RefSlot::with_destructor)) and accepts only values built
/// with that same function, so the slot can hold a single word and still destroy its object.
///
/// ```
/// use std::ptr::NonNull;
/// use sigdrop::Raw;
///
/// unsafe fn free_u64(p: NonNull<u64>) {
///     // SAFETY: every pointer given to this destructor came from `Box::into_raw`.
///     drop(unsafe { Box::from_raw(p.as_ptr()) });
/// }
///
/// let ptr = NonNull::from(Box::leak(Box::new(7u64)));
/// // SAFETY: `ptr` is owned and `free_u64` may destroy it, once, on any thread.
/// let raw = unsafe { Raw::new(ptr, free_u64) };
/// assert_eq!(unsafe { *raw.as_ptr().as_ref() }, 7);
/// drop(raw); // runs `free_u64`
/// ```
pub struct Raw<T> {
    ptr: NonNull<T>,
    dtor: unsafe fn(NonNull<T>),
}

impl<T> Raw<T> {
    /// Takes ownership of `ptr`, to be destroyed by `dtor`.
    ///
    /// May be called from a signal handler (it only stores two words).
    ///
    /// # Safety
    /// The caller owns the object at `ptr` and gives that ownership up; calling `dtor(ptr)`
    /// exactly once, on any thread, at any later time, is sound and destroys the object. (The
    /// object must therefore be safe to send to another thread.)
    pub unsafe fn new(ptr: NonNull<T>, dtor: unsafe fn(NonNull<T>)) -> Self {
        Raw { ptr, dtor }
    }

    /// The pointer (ownership stays with `self`). May be called from a signal handler.
    pub fn as_ptr(&self) -> NonNull<T> {
        self.ptr
    }

    /// The destructor this value will be destroyed with. May be called from a signal handler.
    pub fn destructor(&self) -> unsafe fn(NonNull<T>) {
        self.dtor
    }

    /// Gives up ownership without running the destructor; the caller becomes responsible. May
    /// be called from a signal handler.
    pub fn into_parts(self) -> (NonNull<T>, unsafe fn(NonNull<T>)) {
        let parts = (self.ptr, self.dtor);
        std::mem::forget(self);
        parts
    }

    /// The destructor, type-erased.
    fn erased(dtor: unsafe fn(NonNull<T>)) -> Dtor {
        // SAFETY: fn-pointer ABI compatibility (std `fn` docs, "ABI compatibility"): `NonNull<T>`
        // and `*mut ()` are both thin pointers (T: Sized), so calling through `unsafe fn(*mut ())`
        // with a non-null pointer is calling `dtor` with that pointer.
        unsafe { std::mem::transmute::<unsafe fn(NonNull<T>), Dtor>(dtor) }
    }
}

impl<T> Drop for Raw<T> {
    fn drop(&mut self) {
        // SAFETY: `Raw::new`'s contract: `dtor(ptr)` is sound once; we own the object.
        unsafe { (self.dtor)(self.ptr) }
    }
}

impl<T> std::fmt::Debug for Raw<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raw").field("ptr", &self.ptr).finish()
    }
}

// SAFETY: `Raw::new`'s contract lets the object be destroyed on any thread; `T: Send` lets it be
// used there.
unsafe impl<T: Send> Send for Raw<T> {}

impl<T: Send + 'static> sealed::Sealed for Raw<T> {}
// SAFETY: `into_parts`/`new` round-trip; the erased destructor is `dtor` itself (see `erased`).
unsafe impl<T: Send + 'static> SlotPointer for Raw<T> {
    fn into_raw(self) -> NonNull<()> {
        self.into_parts().0.cast()
    }
    unsafe fn from_raw(ptr: NonNull<()>, dtor: Dtor) -> Self {
        // SAFETY: `dtor` is the erased form of the value's own destructor (caller's contract), so
        // transmuting back restores it (same ABI argument as in `erased`).
        let dtor = unsafe { std::mem::transmute::<Dtor, unsafe fn(NonNull<T>)>(dtor) };
        Raw {
            ptr: ptr.cast(),
            dtor,
        }
    }
    fn fits(&self, slot_dtor: Dtor) -> bool {
        // Address comparison: equal addresses mean the same machine code, so destroying with
        // the slot's function is destroying with the value's own. (Distinct addresses for the
        // same function only cause a refusal, never unsoundness.)
        Self::erased(self.dtor) as usize == slot_dtor as usize
    }
}

/// Erases a `Raw<T>` destructor (for `RefSlot::with_destructor`).
pub(crate) fn erase_raw_dtor<T>(dtor: unsafe fn(NonNull<T>)) -> Dtor {
    Raw::<T>::erased(dtor)
}
