//! Objects that destructors let go of, destroyed one after another instead of one inside
//! another once the nesting gets deep.
//!
//! A slot dropped in ordinary context destroys its object inline, whose destructor may drop a
//! slot of its own, and so on: a list of a million nodes, each holding the next one in a slot,
//! would recurse a million frames deep and overflow the stack of whichever thread destroys it
//! (the drainer, or the thread that cleared the list's head). So every such destruction, and
//! every deferred destructor a drain runs, counts how deep this thread is in destructors; past
//! `INLINE_DEPTH` of them, an object a slot (or an `Owned` box) would destroy inline is put
//! aside instead, and the outermost destructor's caller destroys it once that destructor has
//! returned, then whatever that one put aside, and so on. Shallow structures — every object
//! within `INLINE_DEPTH` levels of the one torn down — are destroyed exactly as without this:
//! inline, before the call that let go of them returns (a destructor may clear a slot and then
//! rely on its object being gone). Deeper ones are destroyed in a loop that never goes more than
//! `INLINE_DEPTH` levels deep.
//!
//! ```text
//! destroy(payload):   depth += 1            (a drain's run, or destroy_in_a_loop)
//!                     destructor(payload)   (inside: a slot's object is destroyed the same way
//!                                            while depth < INLINE_DEPTH, else put aside)
//!                     if depth == 1: while take() -> p: destroy(p)
//!                     depth -= 1
//! ```
//!
//! The places: a list needs one at a time; a tree as many as the children of the nodes on one
//! path below `INLINE_DEPTH`. The first `CAPACITY` are a fixed array; more go into a vector the
//! thread keeps for this (it allocates: all of this is ordinary context), emptied and freed
//! after a loop that needed it. Only if that vector cannot be reached (the thread is exiting
//! and has destroyed its thread-locals) is an object destroyed inline regardless of depth.
//!
//! Objects put aside are destroyed by the same thread, before the outermost call returns (a
//! drain, a `clear`): a `drain_and_wait` that destroyed a list's head has destroyed the whole
//! list. They are destroyed as the slot would have destroyed them (inline, ordinary context), so
//! they are not counted as drained: nothing queued them. (A destructor panic among them is
//! counted in the runtime whose drain ran the outermost destructor.)
//!
//! Per thread, `const`-initialised; the array has no destructor, the overflow vector has one
//! and is reached with `try_with`. Ordinary context only: a signal handler's slots never destroy
//! inline (their objects go to the drainer), so it never comes here, and a handler that
//! interrupts a thread in the middle of these operations does not touch them.

use crate::arena::Payload;
use std::cell::{Cell, RefCell};

/// Destructors one inside another that run inline before objects are put aside: bounds the
/// stack a destruction uses to about this many levels of a structure's nesting.
pub(crate) const INLINE_DEPTH: u32 = 32;

/// Objects one thread holds aside in its fixed array; more go into its overflow vector.
pub(crate) const CAPACITY: usize = 32;

/// Overflow capacity a thread keeps after a loop; a larger vector is freed.
const KEPT_OVERFLOW: usize = 1024;

/// One thread's objects put aside, and how deep in deferred destructors it is.
struct Aside {
    /// Destructors this thread is running one inside another (a drain's, or
    /// `destroy_in_a_loop`'s).
    depth: Cell<u32>,
    /// How many of `items` hold an object: the first `len`.
    len: Cell<usize>,
    /// Whether the overflow vector was used since the outermost loop last looked, so that a
    /// loop that did not need it does not touch it.
    overflowed: Cell<bool>,
    items: [Cell<Option<Payload>>; CAPACITY],
}

impl Aside {
    const fn new() -> Aside {
        Aside {
            depth: Cell::new(0),
            len: Cell::new(0),
            overflowed: Cell::new(false),
            items: [const { Cell::new(None) }; CAPACITY],
        }
    }
}

#[cfg(not(loom))]
std::thread_local! {
    static ASIDE: Aside = const { Aside::new() };
}

#[cfg(loom)]
loom::thread_local! {
    static ASIDE: Aside = Aside::new();
}

// Objects put aside once the array is full, last on top. Its buffer is kept for the thread's
// next overflow, and freed when the thread exits.
#[cfg(not(loom))]
std::thread_local! {
    static OVERFLOW: RefCell<Vec<Payload>> = const { RefCell::new(Vec::new()) };
}

#[cfg(loom)]
loom::thread_local! {
    static OVERFLOW: RefCell<Vec<Payload>> = RefCell::new(Vec::new());
}

/// Puts an object aside, for the outermost destructor this thread is running to have destroyed
/// after it returns, if this thread is `INLINE_DEPTH` destructors deep; else hands it back, to
/// be destroyed now with [`destroy_in_a_loop`] (also if, exiting, the thread has destroyed its
/// overflow vector already). Ordinary context: it may allocate.
#[inline]
pub(crate) fn put_aside(payload: Payload) -> Result<(), Payload> {
    let full = ASIDE.with(|aside| {
        let len = aside.len.get();
        if aside.depth.get() < INLINE_DEPTH {
            return Err(payload);
        }
        if len == CAPACITY {
            return Ok(Some(payload));
        }
        aside.items[len].set(Some(payload));
        aside.len.set(len + 1);
        Ok(None)
    })?;
    match full {
        None => Ok(()),
        Some(payload) => {
            ASIDE.with(|aside| aside.overflowed.set(true));
            overflow(payload)
        }
    }
}

/// Puts an object aside in the overflow vector.
#[cold]
#[inline(never)]
fn overflow(payload: Payload) -> Result<(), Payload> {
    OVERFLOW
        .try_with(|overflow| overflow.borrow_mut().push(payload))
        .map_err(|_| payload)
}

/// The object put aside last, if any: the overflow vector's top, else the array's.
fn take() -> Option<Payload> {
    // The vector holds objects only while the array is full, and they came after its.
    let from_overflow = || {
        OVERFLOW
            .try_with(|overflow| overflow.borrow_mut().pop())
            .ok()
            .flatten()
    };
    ASIDE.with(|aside| {
        let len = aside.len.get().checked_sub(1)?;
        if len + 1 == CAPACITY
            && let Some(payload) = from_overflow()
        {
            return Some(payload);
        }
        aside.len.set(len);
        aside.items[len].take()
    })
}

/// This thread is running a deferred destructor while one lives (the depth goes back down on a
/// panic too).
pub(crate) struct Running {
    outermost: bool,
}

impl Running {
    /// Counts a deferred destructor about to run on this thread.
    #[inline]
    pub(crate) fn enter() -> Running {
        let depth = ASIDE.with(|aside| {
            let depth = aside.depth.get() + 1;
            aside.depth.set(depth);
            depth
        });
        Running {
            outermost: depth == 1,
        }
    }

    /// Destroys, with `destroy`, every object put aside while this (outermost) destructor ran,
    /// and those their destructors put aside in turn, last first. Does nothing for a destructor
    /// that runs inside another: the outermost one's loop takes its objects.
    #[inline]
    pub(crate) fn destroy_put_aside(&self, mut destroy: impl FnMut(Payload)) {
        if !self.outermost {
            return;
        }
        while let Some(payload) = take() {
            destroy(payload);
        }
        // A vector grown for one wide structure is not kept for the thread's lifetime.
        if ASIDE.with(|aside| aside.overflowed.replace(false)) {
            let _ = OVERFLOW.try_with(|overflow| {
                let mut overflow = overflow.borrow_mut();
                if overflow.capacity() > KEPT_OVERFLOW {
                    *overflow = Vec::new();
                }
            });
        }
    }
}

/// Destroys `payload` now, in ordinary context, one level deeper; if this is the outermost
/// destructor on this thread, then also, one after another, the objects put aside below it,
/// and theirs. A panic in a destructor unwinds to the caller, as it would have from a plain
/// inline destruction (once the objects put aside so far are destroyed, if outermost).
///
/// # Safety
/// `payload.obj` is owned by the caller, who gives it up: `payload.dtor` is its destructor and
/// this is its one call; ordinary context.
pub(crate) unsafe fn destroy_in_a_loop(payload: Payload) {
    /// Destroys what was put aside, on return and on unwind alike.
    struct Rest(Running);
    impl Drop for Rest {
        fn drop(&mut self) {
            // SAFETY: every object put aside was given up by its owner with its destructor
            // (`put_aside`'s callers), and `take` hands each out once.
            self.0.destroy_put_aside(|p| unsafe { (p.dtor)(p.obj) });
        }
    }
    let _rest = Rest(Running::enter());
    // SAFETY: the caller's contract.
    unsafe { (payload.dtor)(payload.obj) };
}

impl Drop for Running {
    fn drop(&mut self) {
        ASIDE.with(|aside| aside.depth.set(aside.depth.get() - 1));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn payload(n: usize) -> Payload {
        unsafe fn nothing(_: *mut ()) {}
        Payload {
            obj: std::ptr::without_provenance_mut(n),
            dtor: nothing,
            grace: false,
        }
    }

    /// `INLINE_DEPTH` destructors one inside another; the first is the outermost.
    fn deep() -> Vec<Running> {
        (0..INLINE_DEPTH).map(|_| Running::enter()).collect()
    }

    #[test]
    fn objects_are_destroyed_inline_until_the_inline_depth() {
        assert!(put_aside(payload(1)).is_err(), "no destructor running");
        let mut levels: Vec<Running> = (1..INLINE_DEPTH).map(|_| Running::enter()).collect();
        assert!(put_aside(payload(2)).is_err(), "one level short");
        levels.push(Running::enter());
        put_aside(payload(3)).unwrap();
        let mut seen = Vec::new();
        levels[0].destroy_put_aside(|p| seen.push(p.obj.addr()));
        assert_eq!(seen, [3]);
    }

    #[test]
    fn the_outermost_destructor_destroys_what_was_put_aside_last_first() {
        let levels = deep();
        put_aside(payload(1)).unwrap();
        {
            // A destructor inside: its objects wait for the outermost one's loop.
            let inner = Running::enter();
            put_aside(payload(2)).unwrap();
            let mut seen = Vec::new();
            inner.destroy_put_aside(|p| seen.push(p.obj.addr()));
            assert!(seen.is_empty());
        }
        let mut seen = Vec::new();
        levels[0].destroy_put_aside(|p| seen.push(p.obj.addr()));
        assert_eq!(seen, [2, 1]);
        drop(levels);
        assert!(put_aside(payload(3)).is_err(), "depth back to zero");
    }

    #[test]
    fn past_the_array_objects_go_into_the_overflow_vector_and_still_come_back_last_first() {
        let levels = deep();
        let n = 3 * CAPACITY;
        for i in 0..n {
            put_aside(payload(i)).unwrap();
        }
        let mut seen = Vec::new();
        levels[0].destroy_put_aside(|p| seen.push(p.obj.addr()));
        assert_eq!(seen, (0..n).rev().collect::<Vec<_>>());
        // Empty again, array and vector both.
        let mut more = 0;
        levels[0].destroy_put_aside(|_| more += 1);
        assert_eq!(more, 0);
    }

    #[test]
    fn a_vector_grown_for_a_wide_structure_is_freed_after_the_loop() {
        let levels = deep();
        for i in 0..CAPACITY + 4 * KEPT_OVERFLOW {
            put_aside(payload(i)).unwrap();
        }
        assert!(OVERFLOW.with(|o| o.borrow().capacity()) > KEPT_OVERFLOW);
        levels[0].destroy_put_aside(|_| ());
        assert!(OVERFLOW.with(|o| o.borrow().capacity()) <= KEPT_OVERFLOW);
    }

    #[test]
    fn a_panicking_destructor_unwinds_after_what_it_put_aside_is_destroyed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static CHILDREN: AtomicUsize = AtomicUsize::new(0);
        unsafe fn child(_: *mut ()) {
            CHILDREN.fetch_add(1, Ordering::Relaxed);
        }
        unsafe fn parent(_: *mut ()) {
            // As deep as a structure gets before its objects are put aside.
            let _below: Vec<Running> = (1..INLINE_DEPTH).map(|_| Running::enter()).collect();
            for n in 0..3 * CAPACITY {
                put_aside(Payload {
                    obj: std::ptr::without_provenance_mut(n),
                    dtor: child,
                    grace: false,
                })
                .unwrap();
            }
            panic!("the parent's destructor");
        }
        let payload = Payload {
            obj: std::ptr::null_mut(),
            dtor: parent,
            grace: false,
        };
        // SAFETY: the destructors above own nothing.
        let unwound = std::panic::catch_unwind(|| unsafe { destroy_in_a_loop(payload) });
        assert!(unwound.is_err());
        assert_eq!(CHILDREN.load(Ordering::Relaxed), 3 * CAPACITY);
        assert!(
            ASIDE.with(|a| (a.depth.get(), a.len.get())) == (0, 0),
            "depth back to zero, nothing left aside"
        );
    }
}
