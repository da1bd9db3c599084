//! [`Owned<T>`]: a box whose allocation carries its own way to the drainer.
//!
//! ## Protocol
//!
//! `Owned::new(&runtime, value)` makes one allocation, a `#[repr(C)]` node:
//!
//! ```text
//! [ Link { next (+ grace bit), stash_next, free } | runtime state (a pointer) | value: T ]
//! ```
//!
//! - the [`Link`] is the node's list entry and its type-erased destructor (`owned_list.rs`),
//!   which destroys the value and frees the allocation;
//! - the pointer tells a drop where to go: the runtime's state (its lists, its doorbell), as
//!   its `Arc` gives it (`Arc::as_ptr`, a pointer that covers the reference counts);
//! - the value.
//!
//! What keeps that state in memory for as long as a box exists: the runtime counts its boxes
//! (`OwnedLists::box_made`, `boxes_gone`), and while the count is above zero the boxes share
//! one strong reference to the state, taken by the maker of a box that finds none, given back
//! by whoever uncounts the last. A box costs one atomic increment when it is made (what
//! basedrop's `Owned` pays for its collector's count) and is uncounted when it is gone:
//!
//! - destroyed (dropped in ordinary context, `into_inner`, or a slot's object destroyed,
//!   inline or later from a batch, by the slot's destructor function): one decrement, after
//!   the free;
//! - dropped in ordinary context under `Policy::AlwaysDefer`: retired into a batch as a plain
//!   object, with a destroy function that does not uncount, and uncounted once `retire` has
//!   returned (a batch lives in the state, whose last cycles run it: the box no longer needs
//!   to keep the state);
//! - pushed onto an owned list: still counted there (it keeps the state, and so the list,
//!   alive until it is linked); the drain cycle that walks it uncounts every node it handed
//!   over with one decrement for the lot, so the drainer pays no atomic per box.
//!
//! The count is one cache line of its own, and a transition from or to zero takes or gives
//! one strong reference (a second atomic operation, on those transitions only): the maker
//! holds a runtime handle while it counts (or, for a clone, the box it clones, counted in the
//! same state), and a box cannot be uncounted before its `new` or `clone` has returned, so the
//! state's strong count never reaches zero while a box exists.
//!
//! Dropping the box:
//!
//! - in restricted context: swap the node into this CPU's owned list of its runtime, ring the
//!   doorbell like a job push, then link the node (store the head it replaced into it: the
//!   last access to memory), then make the ring's wake-up syscall if it needs one (an address
//!   only; `owned_list.rs`). No ledger, no freelist, no reserve, never the
//!   emergency area: nothing can run out. The box stays counted, and so keeps the runtime
//!   state alive, until a walk hands it over, which is after the link;
//! - in ordinary context: under [`Policy::Auto`](crate::Policy::Auto) destroy it inline (the
//!   value, then the allocation, then the count); under
//!   [`Policy::AlwaysDefer`](crate::Policy::AlwaysDefer) retire it into this CPU's open batch,
//!   as a [`Detached`](crate::Detached) does — unless the runtime has shut down, when it is
//!   destroyed inline (nobody would run the batch).
//!
//! The drainer's cycle takes the owned lists right after the job lists (same doorbell clear,
//! so the same no-lost-wake-up argument holds) and destroys each node, oldest first — or, for a
//! node that left a [`ReadSlot`](crate::ReadSlot), batches it for a grace period. A node it
//! finds not yet linked (its pusher preempted between the swap and the link) waits, with what
//! is older than it, for a later cycle.
//!
//! In a slot, an `Owned<T>` is a *self-deferring* [`SlotPointer`]: the slot never claims a job
//! for it (installs never fail for want of one, in any context), and a [`Detached`] holding one
//! is dropped in restricted context by pushing its node: a restricted teardown is a swap and a
//! push.
//!
//! Exactly once: the node is owned by exactly one party at every moment — the `Owned`, a slot,
//! a `Detached`, a list (between a push and a take), a drainer (after its take), a batch — and
//! each hand-over is an ownership transfer (a move, the slot's atomic exchange, the list's
//! swaps, a stalled node's stash). The destroy function is called only by the party that owns
//! the node, in ordinary context; the count is given up once per box (module docs above).
//!
//! What the box does *not* keep alive is the runtime's drainer: that stops with the runtime's
//! last [`Runtime`] handle (slots hold handles, boxes do not, so that making and destroying a
//! box costs one atomic operation each, not two, unless the count goes from or to zero). A
//! box dropped in ordinary context after that is destroyed inline; one dropped in a signal
//! handler after that has nobody to destroy it and is leaked (a push onto a list nobody takes
//! any more; not counted, to keep the push short). Keep a handle for as long as boxes may be
//! dropped in handlers. Boxes already queued when the
//! last handle goes are run by that handle's drop (counted, they keep the runtime state alive
//! from its own lists, so `Drop for Inner` alone would never see them).

use crate::arena::Payload;
use crate::error::Error;
use crate::handle::Runtime;
use crate::nested;
use crate::pointer::{SlotPointer, sealed};
use crate::reclaim::owned_list::Link;
use crate::restricted;
use crate::runtime::Inner;
use std::alloc::{Layout, alloc, handle_alloc_error};
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// The allocation behind an [`Owned<T>`]. `#[repr(C)]` with the [`Link`] first, so the node's
/// address is its link's, and `state` at the same offset whatever `T` is.
#[repr(C)]
struct Node<T> {
    link: Link,
    /// The runtime state the box is counted in (module docs).
    state: NonNull<Inner>,
    value: T,
}

/// An owned box whose destructor never runs in a signal handler: dropped in restricted context,
/// it goes to its runtime's drainer in the same allocation — one push onto this CPU's list, no
/// pool, no reservation, nothing that can run out.
///
/// It derefs (mutably) to the value, is `Send` (and `Sync`) when `T` is, and can live in slots
/// and maps: a [`RefSlot<Owned<T>>`](crate::RefSlot) never needs a job, so installing into it
/// never fails, and tearing it down in a handler is a swap and a push.
///
/// Keep a [`Runtime`] handle (or a slot of it) alive while boxes may be dropped in signal
/// handlers: the box keeps the runtime's memory, not its drainer (a box dropped in a handler
/// after the last handle is gone is leaked, never destroyed there). A box belongs to the
/// runtime it was made with, whichever runtime's slot it sits in: that runtime destroys it. With
/// [`Drainer::Manual`](crate::Drainer::Manual), boxes dropped in handlers wait for your next
/// [`Runtime::drain`] (or the drop of the runtime's last handle, which runs them); a box whose
/// drop another thread was in the middle of when that drain looked, and the boxes dropped
/// before it on that CPU, wait for a later one.
///
/// A handler must not leave an `Owned` drop it interrupted unfinished (by `siglongjmp` out of
/// it, or by ending the thread): the boxes dropped before it on that CPU would then never be
/// destroyed, and the drainer would poll for them. [`Stats::owned_stalled`](crate::Stats)
/// staying above 0 is the sign of it.
///
/// ```
/// use sigdrop::{Owned, Runtime, restricted};
///
/// let rt = Runtime::new()?;
/// let mut samples = Owned::new(&rt, Vec::<u64>::with_capacity(1024));
/// samples.push(42); // DerefMut, in any context (if it does not reallocate)
///
/// // In a signal handler:
/// {
///     let _restricted = restricted::enter();
///     drop(samples); // no free() here: one push, and the drainer frees it
/// }
/// # while rt.stats().owned < 1 { std::thread::yield_now(); }
/// # Ok::<(), sigdrop::Error>(())
/// ```
pub struct Owned<T: Send + 'static> {
    node: NonNull<Node<T>>,
    /// We own a `Node<T>` (drop check, variance).
    _owns: PhantomData<Node<T>>,
}

// SAFETY: an `Owned<T>` owns its `T` like a `Box<T>` does; sending it sends the `T` (`T: Send`)
// and a pointer to the runtime's state (which is `Sync`, and kept alive by the box's count).
unsafe impl<T: Send + 'static> Send for Owned<T> {}
// SAFETY: `&Owned<T>` only gives `&T` (needs `T: Sync`).
unsafe impl<T: Send + Sync + 'static> Sync for Owned<T> {}

impl<T: Send + 'static> Owned<T> {
    /// Moves `value` into a new allocation that carries its own way to `runtime`'s drainer.
    ///
    /// Not for signal handlers: it allocates (and counts the box in the runtime's state: one
    /// atomic increment). Make your boxes in ordinary context; a handler may then fill, swap and
    /// drop them.
    ///
    /// Boxes dropped in handlers are counted nowhere on their way to the drainer, so the code
    /// that makes them keeps them bounded: when boxes wait and no drain cycle has finished for
    /// a while (it looks each time the count of boxes passes a multiple of 64), `new` first
    /// waits for the drainer thread's next cycle (for as long as that thread keeps finishing
    /// destructors; 10 ms once it stays inside one), or, with
    /// [`Drainer::Manual`](crate::Drainer::Manual), runs one itself: that may run other
    /// objects' destructors here (see [`Builder::max_pending`](crate::Builder::max_pending)).
    /// Boxes made faster than the drainer destroys them are then made at its pace, and the
    /// boxes waiting stay within a few times 64 per maker. [`try_new`](Self::try_new),
    /// [`clone`](Clone::clone), [`try_clone`](Self::try_clone) and
    /// [`Shared::new`](crate::Shared::new) do the same.
    ///
    /// If the allocator fails, this calls [`handle_alloc_error`] as `Box::new` does;
    /// [`try_new`](Self::try_new) hands the value back instead, and refuses in a handler.
    pub fn new(runtime: &Runtime, value: T) -> Owned<T> {
        // SAFETY: the state of `runtime`, whose handle we borrow across the call.
        match unsafe { Self::alloc_node(Self::state_of(runtime), value) } {
            Ok(owned) => owned,
            Err(_) => handle_alloc_error(Layout::new::<Node<T>>()),
        }
    }

    /// As [`new`](Self::new), but it refuses, handing `value` back with the reason, where `new`
    /// must not be used or cannot succeed:
    ///
    /// - in restricted context (a signal handler under
    ///   [`restricted::enter`](crate::restricted::enter)) with [`Error::Restricted`], at once
    ///   and without touching the allocator: make boxes beforehand, in ordinary context, and
    ///   hand them to the handler (through a slot, for instance);
    /// - when the allocator fails, with [`Error::OutOfMemory`] (nothing is counted then).
    ///
    /// May be called from a signal handler (it refuses there).
    ///
    /// ```
    /// use sigdrop::{Error, Owned, Runtime, restricted};
    ///
    /// let rt = Runtime::new()?;
    /// let buffer = Owned::try_new(&rt, [0u64; 64]).map_err(|(_, e)| e)?;
    /// assert_eq!(buffer.len(), 64);
    ///
    /// let _in_a_handler = restricted::enter();
    /// let (value, error) = Owned::try_new(&rt, 7u64).unwrap_err();
    /// assert!(matches!(error, Error::Restricted));
    /// assert_eq!(value, 7); // handed back, nothing allocated
    /// # drop(_in_a_handler);
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    pub fn try_new(runtime: &Runtime, value: T) -> Result<Owned<T>, (T, Error)> {
        if restricted::is_active() {
            return Err((value, Error::Restricted));
        }
        // SAFETY: the state of `runtime`, whose handle we borrow across the call.
        unsafe { Self::alloc_node(Self::state_of(runtime), value) }
            .map_err(|value| (value, Error::OutOfMemory))
    }

    /// The state a new box of `runtime` is counted in, fork check made: `Arc::as_ptr`, a
    /// pointer that covers the reference counts, which the box that turns out to be the last
    /// gives its shared reference back through.
    fn state_of(runtime: &Runtime) -> NonNull<Inner> {
        let inner = runtime.inner_arc();
        // SAFETY: never null (it points into a live `Arc`).
        unsafe { NonNull::new_unchecked(crate::sync::Arc::as_ptr(inner).cast_mut()) }
    }

    /// A new box holding `value`, counted in `state`; the value back if the allocator fails.
    ///
    /// # Safety
    /// `state` is a runtime state's `Arc` pointer, which the caller keeps alive across the call
    /// (it borrows a handle of that runtime, or a box counted in that state).
    unsafe fn alloc_node(state: NonNull<Inner>, value: T) -> Result<Owned<T>, T> {
        let layout = Layout::new::<Node<T>>();
        // SAFETY: not zero-sized: a node holds its link.
        let Some(node) = NonNull::new(unsafe { alloc(layout) }.cast::<Node<T>>()) else {
            return Err(value);
        };
        // SAFETY: the caller keeps the state alive.
        let link = unsafe { state.as_ref() }.owned_link(free::<T>);
        // SAFETY: a fresh allocation with the layout of a `Node<T>`, written once before
        // anything reads it; it is freed as a `Box<Node<T>>` (same layout, same allocator).
        unsafe { node.as_ptr().write(Node { link, state, value }) };
        // Counted once allocated: a refused allocation leaves no count behind.
        // SAFETY: the caller's contract.
        unsafe { Inner::hold_for_box(state.as_ptr()) };
        Ok(Owned {
            node,
            _owns: PhantomData,
        })
    }

    /// The value, out of its allocation (which is freed). Ordinary context: in restricted
    /// context it is refused and the box comes back (freeing there is what the box avoids), so
    /// it is harmless to call from a signal handler.
    pub fn into_inner(this: Self) -> Result<T, Self> {
        if restricted::is_active() {
            return Err(this);
        }
        let this = ManuallyDrop::new(this);
        let node = this.node.as_ptr();
        // We own the node and never use `this` again; the value is read out once, then the
        // allocation is freed without dropping it again (`Link` has no drop glue; the value is
        // viewed as `ManuallyDrop<T>`, which has the same layout), then the box uncounted.
        // SAFETY: sole owner of a live node; the value moved out once, the memory freed once;
        // the box was counted in `state` by `new` and is uncounted once, here, after its last
        // access to the node; nothing of the state is borrowed across that.
        unsafe {
            let state = (*node).state;
            let value = std::ptr::read(&(*node).value);
            drop(Box::from_raw(node.cast::<Node<ManuallyDrop<T>>>()));
            Inner::release_boxes(state.as_ptr(), 1);
            Ok(value)
        }
    }

    fn node(&self) -> &Node<T> {
        // SAFETY: we own a live node.
        unsafe { self.node.as_ref() }
    }

    /// The value's address, with the allocation's provenance, made without a reference to the
    /// node (so without one that covers its link or a `Shared` count next to the value).
    pub(crate) fn value_ptr(&self) -> *mut T {
        // SAFETY: a place projection into the live node we own (no read, no reference).
        unsafe { &raw mut (*self.node.as_ptr()).value }
    }

    /// Hands the node to its runtime's drainer from restricted context: a swap, maybe a ring,
    /// and the link. Async-signal-safe: no allocation, no lock, no destructor.
    ///
    /// # Safety
    /// `node` is the live node of an `Owned<T>` (of some `T`) that the caller owns and gives up.
    #[inline]
    unsafe fn push(node: NonNull<Link>, grace: bool) {
        // `state` sits at the same offset in every `Node<T>` (`#[repr(C)]`, right after the
        // `Link`, whatever `T` is). The box is counted in that state, which keeps it alive: a
        // pushed node stays counted until a walk hands it over, which is after its link, the
        // push's last access (so no reference into the state is held across it).
        // SAFETY: a live node (contract), read through `Node<()>` (same offset, above).
        let state = unsafe { node.cast::<Node<()>>().as_ref().state };
        // SAFETY: the state the box is counted in; the caller gives the node up, and its link's
        // destroy function frees it.
        unsafe { Inner::offload_owned(state.as_ptr(), node, grace) };
    }

    /// The ordinary-context drop (out of line: the restricted push is the path to keep short).
    #[inline(never)]
    fn drop_ordinary(&mut self) {
        let state = self.node().state;
        // SAFETY: our box is counted in `state`, which keeps it alive until we uncount it.
        let inner: &Inner = unsafe { state.as_ref() };
        let node = self.node.cast::<Link>().as_ptr().cast::<()>();
        if inner.defers_in_ordinary_context(false) && !inner.stopping() {
            // The batch (or whatever `retire` chooses) will hold the node as a plain object of
            // the state's, which runs it before it goes: the box is uncounted when `retire` has
            // returned (or unwound), so the state stays alive for every cycle `retire` runs,
            // even if the last handle goes right now.
            #[cfg(all(test, not(loom)))]
            crate::reclaim::owned_list::pause_if_armed(
                crate::reclaim::owned_list::PauseAt::BeforeRetire,
            );
            let _uncount = Uncount(state);
            inner.retire(Payload {
                obj: node,
                dtor: free::<T>,
                grace: false,
            });
        } else {
            // Destroyed now, unless this thread is already deep in destructors: then after the
            // outermost one returns (`nested.rs`), so that a chain of boxes is destroyed in a
            // loop, never by a recursion that could overflow the stack. The box stays counted
            // until `destroy` runs, which keeps the state alive.
            let payload = Payload {
                obj: node,
                dtor: destroy::<T>,
                grace: false,
            };
            // SAFETY: we own the node and are being dropped, and `destroy` is its destructor,
            // used once: by the closure or through the payload; ordinary context.
            unsafe { nested::destroy_inline(payload, || destroy::<T>(node)) };
        }
    }
}

/// Destroys a box's node: the value, then the allocation, then uncounts the box (last, so
/// that the runtime state outlives the value's destructor; and if that panics, the allocation
/// is still freed and the box uncounted as the panic unwinds).
///
/// # Safety
/// `ptr` is the node of an `Owned<T>`, owned by the caller, still counted, never used again.
/// Ordinary context.
unsafe fn destroy<T: Send + 'static>(ptr: *mut ()) {
    // SAFETY: the caller owns the live node.
    let _uncount = Uncount(unsafe { (*ptr.cast::<Node<T>>()).state });
    // SAFETY: forwarded contract; `free` does not uncount.
    unsafe { free::<T>(ptr) };
}

/// Uncounts one box when dropped (on a panic too): made by the one party that gives the box up
/// as a box (`destroy`, after the free; `drop_ordinary`, after the retire), with the box's
/// `state`, the `Arc` pointer it was counted in; nothing may use the state after the drop.
struct Uncount(NonNull<Inner>);

impl Drop for Uncount {
    fn drop(&mut self) {
        // SAFETY: the box this was made for was counted in this state by `new`, and each box
        // gets one `Uncount`, dropped after its maker's last use of the node and of the state.
        unsafe { Inner::release_boxes(self.0.as_ptr(), 1) };
    }
}

/// Destroys a node's value and frees the allocation, without uncounting the box: the node's
/// link's destroy function, which whoever a drain's walk hands the node to calls (the cycle
/// uncounts every node it walked, at once), as does the batch a box retired into (uncounted
/// by its retirer).
///
/// # Safety
/// `ptr` is the node of an `Owned<T>`, owned by the caller, never used again, and already
/// uncounted or uncounted by the caller. Ordinary context.
unsafe fn free<T: Send + 'static>(ptr: *mut ()) {
    debug_assert!(!restricted::is_active());
    // SAFETY: the node came from `Box::into_raw` in `Owned::new`; `Node<T>`'s only drop glue
    // is the value's.
    drop(unsafe { Box::from_raw(ptr.cast::<Node<T>>()) });
}

impl<T: Send + 'static> Drop for Owned<T> {
    /// In restricted context: one push onto this CPU's list of boxes (and, for the first box of
    /// a burst, a wake-up of the drainer: at most one `futex` syscall, none with
    /// [`Wake::Lazy`](crate::Wake::Lazy)). Async-signal-safe. In ordinary
    /// context: destroyed inline under [`Policy::Auto`](crate::Policy::Auto), retired to the
    /// drainer under [`Policy::AlwaysDefer`](crate::Policy::AlwaysDefer).
    ///
    /// Boxes dropped in restricted context on one CPU are destroyed in the order they were
    /// dropped, with one exception: if the drainer looks while a drop is in the middle of its
    /// push (its thread preempted there for a moment), the boxes dropped after it may be
    /// destroyed first, and that box and the ones before it in a later cycle, once it is linked.
    #[inline]
    fn drop(&mut self) {
        if restricted::is_active() {
            // SAFETY: we own the node and are being dropped: it is given up here.
            unsafe { Self::push(self.node.cast(), false) };
        } else {
            self.drop_ordinary();
        }
    }
}

impl<T: Send + 'static> Deref for Owned<T> {
    type Target = T;
    /// May be called from a signal handler.
    fn deref(&self) -> &T {
        &self.node().value
    }
}

impl<T: Send + 'static> DerefMut for Owned<T> {
    /// May be called from a signal handler.
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: we own the node; `&mut self` makes this the only access.
        unsafe { &mut self.node.as_mut().value }
    }
}

impl<T: Clone + Send + 'static> Clone for Owned<T> {
    /// A new box holding `T::clone` of the value, made with the same runtime.
    ///
    /// Not for signal handlers: it allocates. This is the same as for `Box::clone`, and so is
    /// the value's own `clone`. Besides those, one atomic increment (the runtime counts the
    /// boxes that exist, [`Stats::owned_alive`](crate::Stats)), and, while boxes dropped in
    /// handlers pile up, the wait for the drainer that [`Owned::new`] describes (with a manual
    /// drainer, a drain cycle run here).
    ///
    /// The clone is whatever `T::clone` makes: a `Vec`'s clone has room for its elements only,
    /// not the spare capacity of the original. For buffers a handler fills, make each one with
    /// [`Owned::new`] and `Vec::with_capacity`, and have the handler check `len() < capacity()`
    /// before it pushes.
    ///
    /// ```
    /// use sigdrop::{Owned, Runtime};
    ///
    /// let rt = Runtime::new()?;
    /// let template = Owned::new(&rt, vec![0u64; 4]);
    /// let mut copy = template.clone();
    /// copy[0] = 7;
    /// assert_eq!((template[0], copy[0]), (0, 7));
    ///
    /// let empty = Owned::new(&rt, Vec::<u64>::with_capacity(1024));
    /// assert_eq!(empty.clone().capacity(), 0); // `Vec::clone` keeps no spare room
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    fn clone(&self) -> Self {
        // SAFETY: `state` is the `Arc` pointer our own box is counted in, and our box, still
        // counted (we borrow it), keeps that state alive across the call.
        match unsafe { Self::alloc_node(self.node().state, self.node().value.clone()) } {
            Ok(owned) => owned,
            Err(_) => handle_alloc_error(Layout::new::<Node<T>>()),
        }
    }
}

impl<T: Clone + Send + 'static> Owned<T> {
    /// As [`clone`](Clone::clone), but it refuses where `clone` must not be used or cannot
    /// succeed: in restricted context with [`Error::Restricted`], at once (`T::clone` is not
    /// called, and nothing is allocated); when the allocator fails for the box, with
    /// [`Error::OutOfMemory`] (the clone of the value is dropped, and nothing is counted). May be
    /// called from a signal handler (it refuses there).
    ///
    /// ```
    /// use sigdrop::{Error, Owned, Runtime, restricted};
    ///
    /// let rt = Runtime::new()?;
    /// let template = Owned::new(&rt, [1u64; 8]);
    /// let copy = template.try_clone()?;
    /// assert_eq!(*copy, *template);
    ///
    /// let _in_a_handler = restricted::enter();
    /// assert!(matches!(template.try_clone(), Err(Error::Restricted)));
    /// # drop(_in_a_handler);
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    pub fn try_clone(&self) -> Result<Owned<T>, Error> {
        if restricted::is_active() {
            return Err(Error::Restricted);
        }
        // SAFETY: as in `clone`.
        unsafe { Self::alloc_node(self.node().state, self.node().value.clone()) }
            .map_err(|_| Error::OutOfMemory)
    }
}

impl<T: Send + fmt::Debug + 'static> fmt::Debug for Owned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Owned").field(&**self).finish()
    }
}

/// The offset of the value in a node: a slot holds the value's address (what readers borrow),
/// and this finds the node again.
const fn value_offset<T>() -> usize {
    std::mem::offset_of!(Node<T>, value)
}

/// [`destroy`] for a slot's pointer, which is the value's address.
///
/// # Safety
/// As for [`destroy`], with `ptr` the `value` field's address in the node (from `into_raw`).
unsafe fn destroy_value<T: Send + 'static>(ptr: *mut ()) {
    // SAFETY: `ptr` points `value_offset` bytes into the node's allocation, with its provenance.
    unsafe { destroy::<T>(ptr.byte_sub(value_offset::<T>())) }
}

impl<T: Send + 'static> sealed::Sealed for Owned<T> {}
// SAFETY: `into_raw` gives the value's address (derived from the node pointer, so with the
// whole allocation's provenance) and `from_raw` steps back to the node; `DESTRUCTOR` destroys
// the node exactly as dropping the `Owned` inline does; `T: Send` lets any thread destroy it;
// until then the node, and so the `T` at that address, stays valid.
unsafe impl<T: Send + 'static> SlotPointer for Owned<T> {
    type Target = T;
    const SELF_DEFERRING: bool = true;
    fn into_raw(self) -> NonNull<()> {
        let node = ManuallyDrop::new(self).node;
        // SAFETY: in bounds of the node's allocation (the `value` field).
        unsafe { node.cast::<()>().byte_add(value_offset::<T>()) }
    }
    unsafe fn from_raw(ptr: NonNull<()>) -> Self {
        Owned {
            // SAFETY: `ptr` came from `into_raw` (the caller's contract): stepping back gives
            // the node's address, within the same allocation.
            node: unsafe { ptr.byte_sub(value_offset::<T>()) }.cast(),
            _owns: PhantomData,
        }
    }
    const DESTRUCTOR: crate::arena::Dtor = destroy_value::<T>;
    unsafe fn defer_raw(ptr: NonNull<()>, grace: bool) {
        // SAFETY: `ptr` came from `into_raw` (the caller's contract): stepping back gives the
        // node's address, within the same allocation, with its provenance.
        let node = unsafe { ptr.byte_sub(value_offset::<T>()) }.cast::<Link>();
        // No `Owned` is rebuilt, and `push` touches only the node's link and runtime pointer
        // (through `&Link` and `&Node<()>`, which do not cover the value): readers may go on
        // borrowing the value.
        // SAFETY: the caller owns the node (given up as `ptr`) and gives it up to the list.
        unsafe { Self::push(node, grace) };
    }
}

impl<T: Send + 'static> crate::RefSlot<Owned<T>> {
    /// Empties the slot and returns its box itself, in any context: what
    /// [`take`](crate::RefSlot::take) and then [`Detached::into_inner`](crate::Detached::into_inner)
    /// give, without an error case to handle (an owned box from a slot nobody reads is never
    /// refused: it defers itself wherever it is dropped). One atomic swap. May be called from a
    /// signal handler: fill the box there, move it into another slot, or drop it (one push).
    ///
    /// ```
    /// use sigdrop::{Owned, RefSlot, Runtime, restricted};
    ///
    /// static BUFFER: RefSlot<Owned<Vec<u64>>> = RefSlot::global();
    ///
    /// let rt = Runtime::global()?;
    /// drop(BUFFER.replace(Owned::new(&rt, Vec::with_capacity(16))));
    /// {
    ///     let _handler = restricted::enter(); // as in a signal handler
    ///     let mut buffer = BUFFER.take_owned().expect("installed above");
    ///     buffer.push(7); // within capacity: no allocation
    ///     drop(BUFFER.replace(buffer)); // never refused: no job needed
    /// }
    /// assert_eq!(BUFFER.take_owned().map(|b| b.len()), Some(1));
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    #[inline]
    pub fn take_owned(&self) -> Option<Owned<T>> {
        let taken = self.take()?;
        // Never refused for a write-only slot's owned box (`into_inner`); were it refused, the
        // guard would defer the box when dropped here, in any context.
        let owned = taken.into_inner().ok();
        debug_assert!(owned.is_some(), "an owned box from a RefSlot was refused");
        owned
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{Drainer, Policy, ReadSlot, RefSlot, Wake, read};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// Counts destructions; fails if one runs in restricted context.
    #[derive(Debug)]
    struct Tracked(Arc<AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            assert!(!restricted::is_active(), "destroyed in restricted context");
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn manual() -> Runtime {
        Runtime::builder()
            .drainer(Drainer::Manual)
            .headroom(0)
            .hysteresis(0)
            .build()
            .unwrap()
    }

    #[test]
    fn restricted_drop_is_one_push_and_the_drain_destroys_it_once() {
        let rt = manual();
        let drops = Arc::new(AtomicUsize::new(0));
        let boxed = Owned::new(&rt, Tracked(drops.clone()));
        {
            let _nmi = restricted::enter();
            drop(boxed);
        }
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        let s = rt.stats();
        assert_eq!(
            (s.total, s.emergency, s.owned),
            (0, 0, 0),
            "no job used: {s:?}"
        );
        assert_eq!(rt.drain().unwrap(), 1);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(rt.drain().unwrap(), 0);
        let s = rt.stats();
        assert_eq!((s.owned, s.drained, s.total), (1, 1, 0));
    }

    #[test]
    fn try_new_and_try_clone_refuse_in_restricted_context_and_count_nothing() {
        let rt = manual();
        let drops = Arc::new(AtomicUsize::new(0));
        let made = Owned::try_new(&rt, [3u64; 4]).expect("ordinary context");
        assert_eq!(rt.stats().owned_alive, 1);
        let nmi = restricted::enter();
        let (back, error) = match Owned::try_new(&rt, Tracked(drops.clone())) {
            Err(refused) => refused,
            Ok(_) => panic!("made a box in restricted context"),
        };
        assert!(matches!(error, Error::Restricted), "{error:?}");
        assert!(Arc::ptr_eq(&back.0, &drops), "the very value came back");
        assert!(matches!(made.try_clone(), Err(Error::Restricted)));
        assert_eq!(rt.stats().owned_alive, 1, "nothing counted");
        drop(nmi);
        drop(back); // in ordinary context, where its destructor may run
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        let copy = made.try_clone().expect("ordinary context");
        assert_eq!((*copy, rt.stats().owned_alive), ([3; 4], 2));
        drop((made, copy));
        assert_eq!(rt.stats().owned_alive, 0);
    }

    #[test]
    fn a_clone_is_a_box_of_its_own_counted_and_destroyed_once() {
        let rt = manual();
        let drops = Arc::new(AtomicUsize::new(0));
        #[derive(Debug)]
        struct Cloned(Tracked, u64);
        impl Clone for Cloned {
            fn clone(&self) -> Self {
                Cloned(Tracked(self.0.0.clone()), self.1)
            }
        }
        let alone = strong(&rt);
        let mut original = Owned::new(&rt, Cloned(Tracked(drops.clone()), 1));
        let mut copy = original.clone();
        copy.1 = 2;
        assert_eq!((original.1, copy.1), (1, 2), "two values");
        assert_ne!(&*original as *const Cloned, &*copy as *const Cloned);
        assert_eq!(rt.stats().owned_alive, 2);
        assert_eq!(strong(&rt), alone + 1, "one reference for both boxes");
        original.1 = 3;
        {
            let _nmi = restricted::enter();
            drop(copy);
        }
        drop(original); // ordinary context: inline
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(rt.drain().unwrap(), 1);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_eq!(rt.stats().owned_alive, 0);
        assert_eq!(strong(&rt), alone, "the boxes' reference given back");
    }

    #[test]
    fn a_clone_whose_value_panics_leaves_no_box_counted() {
        #[derive(Debug)]
        struct PanicsOnClone;
        impl Clone for PanicsOnClone {
            fn clone(&self) -> Self {
                panic!("clone refused");
            }
        }
        let rt = manual();
        let alone = strong(&rt);
        let original = Owned::new(&rt, PanicsOnClone);
        let cloned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| original.clone()));
        assert!(cloned.is_err());
        assert_eq!(rt.stats().owned_alive, 1, "only the original");
        drop(original);
        assert_eq!(rt.stats().owned_alive, 0);
        assert_eq!(strong(&rt), alone, "the boxes' reference given back");
    }

    /// The runtime state's strong count, handles and the boxes' shared reference included.
    fn strong(rt: &Runtime) -> usize {
        crate::sync::Arc::strong_count(rt.inner_arc())
    }

    #[test]
    fn the_boxes_share_one_reference_to_the_runtime_given_back_by_the_last_one_gone() {
        for policy in [Policy::Auto, Policy::AlwaysDefer] {
            let rt = Runtime::builder()
                .drainer(Drainer::Manual)
                .policy(policy)
                .build()
                .unwrap();
            let alone = strong(&rt);
            let mut boxes: Vec<_> = (0..4u64).map(|i| Owned::new(&rt, i)).collect();
            assert_eq!(rt.stats().owned_alive, 4);
            assert_eq!(
                strong(&rt),
                alone + 1,
                "{policy:?}: one reference for all boxes"
            );
            {
                let _nmi = restricted::enter();
                boxes.truncate(1); // three pushes
            }
            assert_eq!(
                strong(&rt),
                alone + 1,
                "{policy:?}: queued boxes still count"
            );
            assert_eq!(rt.drain().unwrap(), 3);
            assert_eq!(strong(&rt), alone + 1, "{policy:?}: one box is left");
            assert_eq!(rt.stats().owned_alive, 1);
            let last = boxes.pop().unwrap();
            assert_eq!(Owned::into_inner(last).unwrap(), 0);
            assert_eq!(strong(&rt), alone, "{policy:?}: the last box gave it back");
            // Again from zero, ending with a walk's uncount, and with an ordinary drop.
            drop(Owned::new(&rt, 5u64));
            rt.drain().unwrap();
            assert_eq!(
                strong(&rt),
                alone,
                "{policy:?}: the ordinary drop gave it back"
            );
            let queued = Owned::new(&rt, 6u64);
            {
                let _nmi = restricted::enter();
                drop(queued);
            }
            assert_eq!(strong(&rt), alone + 1);
            assert_eq!(rt.drain().unwrap(), 1);
            assert_eq!(strong(&rt), alone, "{policy:?}: the walk gave it back");
            assert_eq!(rt.stats().owned_alive, 0);
        }
    }

    #[test]
    fn ordinary_drop_destroys_inline_or_retires_under_always_defer() {
        let rt = manual();
        let drops = Arc::new(AtomicUsize::new(0));
        drop(Owned::new(&rt, Tracked(drops.clone())));
        assert_eq!(drops.load(Ordering::SeqCst), 1);

        let rt = Runtime::builder()
            .drainer(Drainer::Manual)
            .policy(Policy::AlwaysDefer)
            .build()
            .unwrap();
        drop(Owned::new(&rt, Tracked(drops.clone())));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn derefs_mutably_and_unwraps_in_ordinary_context_only() {
        let rt = manual();
        let mut v = Owned::new(&rt, vec![1u64, 2]);
        v.push(3);
        assert_eq!(*v, [1, 2, 3]);
        assert_eq!(format!("{v:?}"), "Owned([1, 2, 3])");
        let v = {
            let _nmi = restricted::enter();
            Owned::into_inner(v).unwrap_err()
        };
        assert_eq!(Owned::into_inner(v).unwrap(), [1, 2, 3]);
        assert_eq!(rt.drain().unwrap(), 0);
    }

    #[test]
    fn a_slot_of_owned_boxes_needs_no_job_in_any_context() {
        let rt = manual(); // headroom 0, nothing reserved: a Box slot would refuse below
        let drops = Arc::new(AtomicUsize::new(0));
        let slot: RefSlot<Owned<Tracked>> = RefSlot::new(&rt);
        let fresh = || Owned::new(&rt, Tracked(drops.clone()));
        {
            let _nmi = restricted::enter();
            assert!(slot.xchg(Some(fresh())).unwrap().is_none()); // install
            let old = slot.xchg(Some(fresh())).unwrap().unwrap(); // replace
            assert!(old.is_reserved());
            drop(old); // a push
            // A handler may take a box out (to fill it) and put it back: no job either way.
            let mut mine = slot.take().unwrap().into_inner().ok().unwrap();
            mine.0 = drops.clone();
            assert!(slot.xchg(Some(mine)).unwrap().is_none());
            slot.clear(); // a swap and a push
        }
        let s = rt.stats();
        assert_eq!(
            (s.total, s.reserve_failures, s.emergency),
            (0, 0, 0),
            "{s:?}"
        );
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        assert_eq!(rt.drain().unwrap(), 2);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        // Ordinary context: replace and take as usual.
        slot.xchg(Some(fresh())).unwrap();
        let old = slot.xchg(Some(fresh())).unwrap().unwrap();
        assert!(Owned::into_inner(old.into_inner().unwrap()).is_ok());
        drop(slot); // destroys the last one inline
        assert_eq!(drops.load(Ordering::SeqCst), 4);
        assert_eq!(rt.stats().total, 0);
    }

    #[test]
    fn a_map_insert_gives_its_claim_back_for_owned_boxes() {
        let rt = manual();
        let map: crate::KptrHash<u32, Owned<u64>> = crate::KptrHash::new(&rt, 4).unwrap();
        map.insert(1, Owned::new(&rt, 7)).unwrap();
        map.insert(1, Owned::new(&rt, 8)).unwrap();
        assert_eq!(rt.stats().refs, 0);
        {
            let _nmi = restricted::enter();
            assert!(map.delete(&1).unwrap());
        }
        assert_eq!(rt.drain().unwrap(), 1);
        let s = rt.stats();
        assert_eq!((s.refs, s.active, s.owned), (0, 0, 1), "{s:?}");
    }

    #[test]
    fn a_readable_slot_defers_a_restricted_teardown_past_its_readers() {
        let rt = manual();
        let drops = Arc::new(AtomicUsize::new(0));
        let slot: ReadSlot<Owned<Tracked>> = ReadSlot::new(&rt);
        slot.xchg(Some(Owned::new(&rt, Tracked(drops.clone()))))
            .unwrap();
        let guard = read::enter();
        let seen = slot.load(&guard).unwrap();
        {
            let _nmi = restricted::enter();
            slot.clear();
        }
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 0, "destroyed under a reader");
        assert_eq!(seen.0.load(Ordering::SeqCst), 0); // still readable
        drop(guard);
        rt.drain_and_wait().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_box_outliving_its_runtime_handles_is_destroyed_inline_in_ordinary_context() {
        let rt = Runtime::new().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let boxed = Owned::new(&rt, Tracked(drops.clone()));
        drop(rt); // the drainer stops; the box keeps the runtime's memory
        drop(boxed); // ordinary context: destroyed inline
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        let rt = Runtime::builder()
            .policy(Policy::AlwaysDefer)
            .build()
            .unwrap();
        let boxed = Owned::new(&rt, Tracked(drops.clone()));
        // Another box keeps the state alive: the last box's uncount drops the state, whose
        // drop would run a batch the first box was retired into, hiding where it went.
        let other = Owned::new(&rt, Tracked(drops.clone()));
        drop(rt);
        drop(boxed); // not retired into a batch nobody would run
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        drop(other);
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn boxes_queued_when_the_last_handle_goes_are_destroyed_by_its_drop() {
        let rt = manual();
        let drops = Arc::new(AtomicUsize::new(0));
        let boxed = Owned::new(&rt, Tracked(drops.clone()));
        {
            let _nmi = restricted::enter();
            drop(boxed); // queued; the manual drainer never runs
        }
        drop(rt); // the last handle: runs what is queued (the box keeps the state alive)
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn lazy_mode_rings_at_the_high_watermark_only() {
        let rt = Runtime::builder()
            .wake(Wake::Lazy {
                period: Duration::from_secs(60),
                high_watermark: 3,
            })
            .shards(1)
            .build()
            .unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        let boxes: Vec<_> = (0..3)
            .map(|_| Owned::new(&rt, Tracked(drops.clone())))
            .collect();
        // Let the drainer thread make its first cycle (it finds nothing, then sleeps for the
        // period): a first cycle late enough would find the boxes dropped below.
        let deadline = Instant::now() + Duration::from_secs(10);
        while rt.inner().cycles() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_ne!(rt.inner().cycles(), 0, "the drainer thread made no cycle");
        let mut it = boxes.into_iter();
        {
            let _nmi = restricted::enter();
            drop(it.next());
            drop(it.next());
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(drops.load(Ordering::SeqCst), 0, "rang below the watermark");
        {
            let _nmi = restricted::enter();
            drop(it.next());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while drops.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(drops.load(Ordering::SeqCst), 3);
        assert_eq!(rt.stats().owned, 3);
    }

    #[test]
    fn a_panicking_destructor_on_the_drainer_is_contained() {
        #[derive(Debug)]
        struct Panics;
        impl Drop for Panics {
            fn drop(&mut self) {
                panic!("destructor panics");
            }
        }
        let rt = manual();
        let drops = Arc::new(AtomicUsize::new(0));
        let a = Owned::new(&rt, Panics);
        let b = Owned::new(&rt, Tracked(drops.clone()));
        {
            let _nmi = restricted::enter();
            drop(a);
            drop(b);
        }
        assert_eq!(rt.drain().unwrap(), 2);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(rt.stats().dtor_panics, 1);
    }
}
