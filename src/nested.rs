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
//! a drain's batch or chain (Running):    depth += 1
//!                                        run each destructor
//!                                        if depth == 1: while take() -> p: destructor(p)
//!                                        depth -= 1
//! destroy_inline(payload, destroy):      if depth >= INLINE_DEPTH: put_aside(payload); return
//!   (a slot's or an owned box's          depth += 1
//!    inline destruction)                 destroy()      (may call destroy_inline again)
//!                                        if depth == 1: while take() -> p: destructor(p)
//!                                        depth -= 1
//! ```
//!
//! The loop runs before the depth goes back down, so the objects it destroys are never
//! outermost themselves: what they put aside comes back to the same loop, not to a loop nested
//! inside it. A drain counts one level for a whole chain or batch, not one per destructor: a
//! thread-local access per destructor cost the drain of a no-op destructor 7 ns (8.5 ns to
//! 15.7 ns). An inline destruction costs about 2 ns more than without this.
//!
//! The places: a list needs one at a time; a tree as many as the children of the nodes on one
//! path below `INLINE_DEPTH`. The first `CAPACITY` are a fixed array; more go into a vector the
//! thread keeps for this (it allocates: all of this is ordinary context), emptied after a loop
//! that needed it, its buffer kept up to `KEPT_OVERFLOW` places. The vector has no destructor
//! of its own, so it can always be reached — also while the thread exits and destroys its
//! thread-locals, whose destructors may tear down a wide structure after sigdrop's other
//! thread-locals are gone (it had one, and a list held by a thread-local then went back to
//! destroying inline regardless of depth: 20 000 nodes overflowed an exiting thread's stack).
//! Its kept buffer is freed by a separate thread-local's destructor (`OverflowFreer`, set up by
//! the first loop that keeps a buffer); a loop that runs after that destructor has run frees
//! the buffer it used when it ends.
//!
//! Objects put aside are destroyed by the same thread, before the outermost call returns (a
//! drain, a `clear`): a `drain_and_wait` that destroyed a list's head has destroyed the whole
//! list — also inside a destructor, where it starts from the outermost level again
//! (`Outermost`). A panic in a destructor the loop runs does not stop the loop, nor keep the
//! thread from leaving its level (see `destroy_all_then_leave`). They are destroyed as the slot would have destroyed them (inline, ordinary context), so
//! they are not counted as drained: nothing queued them. (A destructor panic among them is
//! counted in the runtime whose drain ran the outermost destructor.)
//!
//! Per thread, `const`-initialised; only `OverflowFreer` has a destructor, and it is reached
//! with `try_with`. Ordinary context only: a signal handler's slots never destroy
//! inline (their objects go to the drainer), so it never comes here, and a handler that
//! interrupts a thread in the middle of these operations does not touch them.

use crate::arena::Payload;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// Destructors one inside another that run inline before objects are put aside: bounds the
/// stack a destruction uses to about this many levels of a structure's nesting.
pub(crate) const INLINE_DEPTH: u32 = 32;

/// Objects one thread holds aside in its fixed array; more go into its overflow vector.
pub(crate) const CAPACITY: usize = 32;

/// Overflow capacity a thread keeps after a loop; a larger vector is freed.
const KEPT_OVERFLOW: usize = 1024;

/// How deep one thread is in destructors, and how much it holds aside: a few words of their
/// own, apart from the places, because every inline destruction reads and writes them.
struct Level {
    /// Levels of destructors this thread is in, one inside another (a drain's batch or chain,
    /// or a `destroy_inline`).
    depth: Cell<u32>,
    /// How many places of `PLACES` hold an object: the first `len`.
    len: Cell<usize>,
    /// Whether the overflow vector was used since the outermost loop last looked, so that a
    /// loop that did not need it does not touch it.
    overflowed: Cell<bool>,
}

type Places = [Cell<Option<Payload>>; CAPACITY];

#[cfg(not(loom))]
std::thread_local! {
    static LEVEL: Level = const {
        Level { depth: Cell::new(0), len: Cell::new(0), overflowed: Cell::new(false) }
    };
    static PLACES: Places = const { [const { Cell::new(None) }; CAPACITY] };
}

#[cfg(loom)]
loom::thread_local! {
    static LEVEL: Level =
        Level { depth: Cell::new(0), len: Cell::new(0), overflowed: Cell::new(false) };
    static PLACES: Places = [const { Cell::new(None) }; CAPACITY];
}

// Objects put aside once the places are full, last on top. `ManuallyDrop`: no destructor, so
// it is never destroyed before the thread's other thread-locals (see the module docs); its
// buffer is freed by `OVERFLOW_FREER`, or by the loop that used it once that has gone.
#[cfg(not(loom))]
std::thread_local! {
    static OVERFLOW: RefCell<ManuallyDrop<Vec<Payload>>> =
        const { RefCell::new(ManuallyDrop::new(Vec::new())) };
    static OVERFLOW_FREER: OverflowFreer = const { OverflowFreer };
}

#[cfg(loom)]
loom::thread_local! {
    static OVERFLOW: RefCell<ManuallyDrop<Vec<Payload>>> =
        RefCell::new(ManuallyDrop::new(Vec::new()));
    static OVERFLOW_FREER: OverflowFreer = OverflowFreer;
}

/// Frees the thread's overflow buffer when the thread destroys its thread-locals. Runs between
/// two of those destructors, never inside a loop (a loop runs inside one destructor call), so
/// the vector is empty then.
struct OverflowFreer;

impl Drop for OverflowFreer {
    fn drop(&mut self) {
        OVERFLOW.with(|overflow| free_buffer(&mut overflow.borrow_mut()));
    }
}

/// Replaces the vector with an empty one without a buffer, freeing the old buffer.
fn free_buffer(overflow: &mut ManuallyDrop<Vec<Payload>>) {
    debug_assert!(overflow.is_empty(), "a loop left objects put aside");
    // Assigning through the `ManuallyDrop` drops the old vector, which frees its buffer.
    **overflow = Vec::new();
}

/// Puts an object aside, for the outermost destructor this thread is running to have destroyed
/// after it returns (the thread is `INLINE_DEPTH` destructors deep). Ordinary context: it may
/// allocate.
#[cold]
#[inline(never)]
fn put_aside(payload: Payload) {
    let len = LEVEL.with(|level| level.len.get());
    if len == CAPACITY {
        LEVEL.with(|level| level.overflowed.set(true));
        OVERFLOW.with(|overflow| overflow.borrow_mut().push(payload));
        return;
    }
    PLACES.with(|places| places[len].set(Some(payload)));
    LEVEL.with(|level| level.len.set(len + 1));
}

/// The object put aside last, if any: the overflow vector's top, else the last place's.
fn take() -> Option<Payload> {
    let len = LEVEL.with(|level| level.len.get()).checked_sub(1)?;
    // The vector holds objects only while the places are full, and they came after theirs.
    if len + 1 == CAPACITY
        && let Some(payload) = OVERFLOW.with(|overflow| overflow.borrow_mut().pop())
    {
        return Some(payload);
    }
    LEVEL.with(|level| level.len.set(len));
    PLACES.with(|places| places[len].take())
}

/// This thread is running deferred destructors (a drain's chain or batch) while one lives: one
/// level (the depth goes back down on a panic too).
pub(crate) struct Running {
    outermost: bool,
}

impl Running {
    /// Counts a destructor about to run on this thread.
    #[inline]
    pub(crate) fn enter() -> Running {
        let depth = LEVEL.with(|level| {
            let depth = level.depth.get() + 1;
            level.depth.set(depth);
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
    pub(crate) fn destroy_put_aside(&self, destroy: impl FnMut(Payload)) {
        if self.outermost && LEVEL.with(|level| level.len.get() > 0 || level.overflowed.get()) {
            destroy_all(destroy);
        }
    }
}

/// The loop of [`Running::destroy_put_aside`], out of line: most destructors put nothing aside.
#[cold]
#[inline(never)]
fn destroy_all(mut destroy: impl FnMut(Payload)) {
    while let Some(payload) = take() {
        destroy(payload);
    }
    // A vector grown for one wide structure is not kept for the thread's lifetime, nor one
    // nobody would free: kept only while the freer is alive (this sets it up the first time).
    if LEVEL.with(|level| level.overflowed.replace(false)) {
        let freer_alive = OVERFLOW_FREER.try_with(|_| ()).is_ok();
        OVERFLOW.with(|overflow| {
            let mut overflow = overflow.borrow_mut();
            if !freer_alive || overflow.capacity() > KEPT_OVERFLOW {
                free_buffer(&mut overflow);
            }
        });
    }
}

/// Destroys an object that a slot or an owned box destroys inline (ordinary context): now,
/// with `destroy`, one level deeper in destructors — unless this thread is `INLINE_DEPTH` deep
/// already: then `payload` is put aside for the outermost destructor's loop. If this is the
/// outermost destructor on the thread, the objects put aside below it are destroyed after it,
/// one after another, and theirs. A panic in a destructor unwinds to the caller, as it would
/// have from a plain inline destruction (once the objects put aside so far are destroyed, if
/// outermost).
///
/// # Safety
/// The caller owns the object and gives it up; `destroy` and `payload` (its pointer and its
/// destructor) each destroy it, and exactly one of them is used; ordinary context.
#[inline]
pub(crate) unsafe fn destroy_inline(payload: Payload, destroy: impl FnOnce()) {
    let depth = LEVEL.with(|level| level.depth.get());
    if depth >= INLINE_DEPTH {
        put_aside(payload);
        return;
    }
    // One level deeper for as long as `destroy` runs, on return and on unwind alike; the
    // outermost level then destroys what was put aside below it.
    struct Level(bool);
    impl Drop for Level {
        #[inline]
        fn drop(&mut self) {
            // Still one level deep while the loop runs: the objects it destroys are not
            // outermost themselves, so what they put aside comes back to this loop, not to a
            // loop of their own inside it.
            if self.0 && LEVEL.with(|level| level.len.get() > 0 || level.overflowed.get()) {
                destroy_all_then_leave();
            } else {
                LEVEL.with(|level| level.depth.set(level.depth.get() - 1));
            }
        }
    }
    LEVEL.with(|level| level.depth.set(depth + 1));
    let _level = Level(depth == 0);
    destroy();
}

/// The outermost inline level's loop, then leaving the level. A destructor in the loop that
/// panics does not stop it: every object put aside is destroyed, the level is left (else the
/// thread would never be outermost again, and what it put aside later would never be
/// destroyed), and then the first panic goes on unwinding, as it would have from the inline
/// destruction — unless the thread is unwinding already (the outermost destructor panicked):
/// then it is dropped, for a second panic would abort the process.
#[cold]
#[inline(never)]
fn destroy_all_then_leave() {
    let mut first = None;
    destroy_all(|p| {
        // SAFETY: every object put aside was given up by its owner with its destructor
        // (`destroy_inline`'s callers), and `take` hands each out once.
        let destroyed = catch_unwind(AssertUnwindSafe(|| unsafe { (p.dtor)(p.obj) }));
        if let Err(panic) = destroyed {
            match first {
                None => first = Some(panic),
                Some(_) => drop_panic(panic),
            }
        }
    });
    LEVEL.with(|level| level.depth.set(level.depth.get() - 1));
    if let Some(panic) = first {
        if std::thread::panicking() {
            drop_panic(panic);
        } else {
            resume_unwind(panic);
        }
    }
}

/// Drops a panic's payload, which may panic in turn: that one is forgotten.
fn drop_panic(panic: Box<dyn Any + Send>) {
    if let Err(inner) = catch_unwind(AssertUnwindSafe(move || drop(panic))) {
        std::mem::forget(inner);
    }
}

/// Makes this thread's levels start again from the outermost while it lives, and puts the
/// depth back when it goes: for a `drain_and_wait` called inside a destructor, so that
/// everything it destroys — a deep structure included — is destroyed before it returns, as it
/// promises, and not by the loop of the destructor that called it. (That loop finds fewer
/// objects put aside afterwards, if this one destroyed some of its own: they go earlier than
/// they would have, never later than inline destruction would have destroyed them.) The stack
/// then grows by up to `INLINE_DEPTH` more levels for each such call inside a destructor.
pub(crate) struct Outermost {
    depth: u32,
}

impl Outermost {
    #[inline]
    pub(crate) fn enter() -> Outermost {
        Outermost {
            depth: LEVEL.with(|level| level.depth.replace(0)),
        }
    }
}

impl Drop for Outermost {
    #[inline]
    fn drop(&mut self) {
        LEVEL.with(|level| level.depth.set(self.depth));
    }
}

impl Drop for Running {
    #[inline]
    fn drop(&mut self) {
        LEVEL.with(|level| level.depth.set(level.depth.get() - 1));
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
    fn a_chain_is_destroyed_inline_to_the_inline_depth_then_in_a_loop_never_deeper() {
        use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
        const LINKS: usize = 5 * INLINE_DEPTH as usize + 3;
        static GONE: [AtomicBool; LINKS] = [const { AtomicBool::new(false) }; LINKS];
        static DEPTHS: [AtomicU32; LINKS] = [const { AtomicU32::new(0) }; LINKS];
        /// Links whose successor was gone when their `destroy_inline` of it returned.
        static INLINE: AtomicUsize = AtomicUsize::new(0);
        fn link_payload(n: usize) -> Payload {
            Payload {
                obj: std::ptr::without_provenance_mut(n),
                dtor: link,
                grace: false,
            }
        }
        /// Link `n`'s destructor: destroys link `n + 1` as a slot would.
        unsafe fn link(obj: *mut ()) {
            let n = obj.addr();
            DEPTHS[n].store(LEVEL.with(|l| l.depth.get()), Ordering::Relaxed);
            if n + 1 < LINKS {
                let next = link_payload(n + 1);
                // SAFETY: the links own nothing.
                unsafe { destroy_inline(next, || link(next.obj)) };
                if GONE[n + 1].load(Ordering::Relaxed) {
                    INLINE.fetch_add(1, Ordering::Relaxed);
                }
            }
            GONE[n].store(true, Ordering::Relaxed);
        }
        let first = link_payload(0);
        // SAFETY: the links own nothing.
        unsafe { destroy_inline(first, || link(first.obj)) };
        assert!(
            GONE.iter().all(|g| g.load(Ordering::Relaxed)),
            "every link destroyed"
        );
        let depths: Vec<u32> = DEPTHS.iter().map(|d| d.load(Ordering::Relaxed)).collect();
        assert!(
            depths.iter().all(|&d| (1..=INLINE_DEPTH).contains(&d)),
            "never deeper than the inline depth, never outside a level: {depths:?}"
        );
        assert_eq!(
            depths[..INLINE_DEPTH as usize],
            (1..=INLINE_DEPTH).collect::<Vec<_>>()
        );
        // The first links, and every link within a run of the loop, destroyed their successor
        // inline: all but the one in each `INLINE_DEPTH` that reached the depth.
        let runs = (LINKS - 1).div_ceil(INLINE_DEPTH as usize);
        assert_eq!(INLINE.load(Ordering::Relaxed), LINKS - 1 - (runs - 1));
        assert_eq!(LEVEL.with(|l| (l.depth.get(), l.len.get())), (0, 0));
    }

    #[test]
    fn the_outermost_destructor_destroys_what_was_put_aside_last_first() {
        let levels = deep();
        put_aside(payload(1));
        {
            // A destructor inside: its objects wait for the outermost one's loop.
            let inner = Running::enter();
            put_aside(payload(2));
            let mut seen = Vec::new();
            inner.destroy_put_aside(|p| seen.push(p.obj.addr()));
            assert!(seen.is_empty());
        }
        let mut seen = Vec::new();
        levels[0].destroy_put_aside(|p| seen.push(p.obj.addr()));
        assert_eq!(seen, [2, 1]);
        drop(levels);
        assert_eq!(LEVEL.with(|l| l.depth.get()), 0);
    }

    #[test]
    fn past_the_array_objects_go_into_the_overflow_vector_and_still_come_back_last_first() {
        let levels = deep();
        let n = 3 * CAPACITY;
        for i in 0..n {
            put_aside(payload(i));
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
            put_aside(payload(i));
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
                });
            }
            panic!("the parent's destructor");
        }
        let payload = Payload {
            obj: std::ptr::null_mut(),
            dtor: parent,
            grace: false,
        };
        let unwound = std::panic::catch_unwind(|| {
            // SAFETY: the destructors above own nothing.
            unsafe { destroy_inline(payload, || parent(payload.obj)) }
        });
        assert!(unwound.is_err());
        assert_eq!(CHILDREN.load(Ordering::Relaxed), 3 * CAPACITY);
        assert!(
            LEVEL.with(|l| (l.depth.get(), l.len.get())) == (0, 0),
            "depth back to zero, nothing left aside"
        );
    }
}
