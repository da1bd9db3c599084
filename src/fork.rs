//! What a child process inherits from `fork`, and how sigdrop keeps its promises there.
//!
//! `fork` copies the whole address space — every runtime, the read domain, every queue — but
//! only the thread that called it. In the child:
//!
//! - **A runtime's drainer thread does not exist.** Each handle remembers the fork count at
//!   which its drainer was started; the first use of the runtime in ordinary context in the
//!   child sees the count has moved and starts a new drainer (a signal handler cannot start a
//!   thread, so objects handed over only from handlers wait for that first ordinary use).
//!   Shutting down never joins a thread the child does not have.
//! - **Read guards of the parent's other threads are never dropped.** Their counts would hold
//!   every grace period up for ever, so the child's handler below clears the reader counts —
//!   exactly, when the forking thread holds no guard itself (the usual case). If it does hold
//!   one, the counts are kept (its guards must still be waited for) and grace periods in the
//!   child may wait for the parent's readers for ever: the only case that is not recovered.
//! - **A grace period another thread was moving on** is taken over from its start.
//! - **A box another thread was handing over** (an [`Owned`](crate::Owned) dropped in a handler,
//!   caught between putting its node on a list and linking it) is never linked in the child by
//!   that thread. The child's handler links it to nothing (it *seals* it, `owned_list_fork.rs`),
//!   so the child's drainer destroys it, after a grace period; the boxes queued before it on
//!   that CPU are the parent's, like the objects below, and are never destroyed there. Only if
//!   the forking thread was itself in restricted context (a signal handler that may have
//!   interrupted a push of its own, which links once the handler returns) is nothing sealed:
//!   while the child's drainer then holds such a box, it polls (at most every 16 ms) instead
//!   of sleeping until rung. A shutdown in a process forked since the runtime was built does
//!   not wait for such a box.
//! - **Objects the parent's drainer had taken** when `fork` ran are destroyed in the parent; the
//!   child's copies of them are never destroyed (their destructors would run twice over the
//!   same resources, say the same file descriptor, otherwise). The drains that took them never
//!   end in the child, so the child's handler forgets them (`reclaim/cycle_gate.rs`): a
//!   `drain_and_wait` there does not wait for them, and the counts of what the parent's
//!   threads had in flight — batches and chains being destroyed, a batch filled but not yet
//!   queued — are reset to what the child holds (`reclaim/batches.rs`, `reclaim/backlog.rs`,
//!   `reclaim/taken_jobs.rs`), so they stay in no `pending` and no backlog. (A `fork` from a
//!   signal handler that interrupted the forking thread's own drain between two steps of
//!   entering or leaving the gate can leave a count off by one in the child, and its
//!   `drain_and_wait` waiting for ever: another reason not to fork from a handler that
//!   interrupted sigdrop code.)
//!
//! - **A lock another thread held** would stay taken for ever. The locks that ordinary-context
//!   code takes for longer than an instruction — each runtime's grow lock and batch-queue lock,
//!   which the drainer thread takes every cycle — are taken by the thread calling `fork` before
//!   it forks and released after, in parent and child (as the C library does for `malloc`):
//!   every live runtime registers them here. Every hash map's bucket table registers too
//!   (`maps/buckets.rs`: a bucket is held for moments, but by any thread, and a half-linked
//!   chain under it would be inherited too); rather than take every bucket, its handler raises
//!   a flag that turns new lockers away and waits for the holders of the moment. (A handle's drainer-thread lock is only ever held
//!   for moments, never while a thread starts, and is not registered.) The per-CPU open-batch
//!   try-locks are not taken around `fork`: a child whose copy of one is taken (a thread was
//!   pushing to that batch) has its handler abandon that batch, whose objects are the
//!   parent's, and unlock an empty one (`reclaim/batches.rs`). Before, a `drain_and_wait` in
//!   the child waited for that lock up to 10 000 yields a call: seconds, in 18 of 600 forks
//!   under four writer threads.
//!
//! The handlers are registered with `pthread_atfork` once, when the first runtime is built. The
//! child handler's counter, reader-count and sealing work touches only atomics (and the
//! drainer-only links of stashed boxes, on the child's only thread); releasing the held
//! locks and freeing their record is what any child that goes on to use the runtime does
//! anyway (a child that only calls `exec` never reaches sigdrop code but this). `fork` called
//! from a signal handler that interrupted sigdrop code holding one of these locks on the same
//! thread would wait for itself: do not fork from such a handler.

/// What holding an object's fork locks looks like: dropping it releases them. (Loom builds
/// register no fork handlers, so there nothing holds them.)
#[cfg_attr(loom, allow(dead_code))]
pub(crate) trait Held {}
impl<T> Held for T {}

/// A lock that no other thread may hold when `fork` copies it.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) trait ForkLocks: Send + Sync {
    /// Takes the lock (waiting for it); dropping the result releases it.
    fn hold(&self) -> Box<dyn Held + '_>;

    /// In the child, while the lock is still held: forgets what the parent's other threads had
    /// in flight. Only atomics.
    fn after_fork_in_child(&self) {}
}

impl<T: Send> ForkLocks for crate::sync::Mutex<T> {
    fn hold(&self) -> Box<dyn Held + '_> {
        // Poisoned: the holder panicked; the registered locks' data is updated with single
        // operations (their owners say so), so take it over.
        Box::new(self.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

#[cfg(not(loom))]
mod imp {
    use super::{ForkLocks, Held};
    use crate::sync::{AtomicU32, Mutex, MutexGuard, Ordering};
    use std::cell::RefCell;
    use std::mem::ManuallyDrop;
    use std::sync::Once;

    /// Forks this process has gone through since it started (in its line of descent).
    static FORKS: AtomicU32 = AtomicU32::new(0);
    static WATCH: Once = Once::new();

    /// A registered lock. Its address stays valid while it is registered (its owner unregisters
    /// it, under the registry's lock, before dropping it). Registered locks live in allocations
    /// of their own, not inside a value that may be under a `&mut` while we touch them (a
    /// runtime being dropped unregisters its locks from inside its `Drop`).
    struct Entry(*const (dyn ForkLocks + 'static));
    // SAFETY: the pointee is `Send + Sync`; the pointer is only dereferenced under the registry
    // lock while the object is registered.
    unsafe impl Send for Entry {}

    static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

    type HeldLocks = (MutexGuard<'static, Vec<Entry>>, Vec<Box<dyn Held>>);

    // What the forking thread holds from `prepare` to `parent`/`child` (all three run on it).
    // Never touched by a signal handler. `ManuallyDrop`: no destructor, so a `fork` from a
    // thread-local destructor still finds it (it is `None` whenever no `fork` is under way, so
    // nothing is left to drop when the thread exits).
    std::thread_local! {
        static HELD: RefCell<ManuallyDrop<Option<HeldLocks>>> =
            const { RefCell::new(ManuallyDrop::new(None)) };
    }

    fn registry() -> MutexGuard<'static, Vec<Entry>> {
        // The list is changed with single pushes and removals: a panic leaves it consistent.
        REGISTRY
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `object` until [`unregister`]; its owner must call that before dropping it.
    /// Locks are held in the order they were registered.
    pub(crate) fn register(object: &(dyn ForkLocks + 'static)) {
        registry().push(Entry(object));
    }

    /// Removes `object` from the registry (waiting while a `fork` holds its locks).
    pub(crate) fn unregister(object: &(dyn ForkLocks + 'static)) {
        let target: *const (dyn ForkLocks + 'static) = object;
        registry().retain(|entry| !std::ptr::addr_eq(entry.0, target));
    }

    extern "C" fn prepare() {
        let registry = registry();
        let held = registry
            .iter()
            .map(|entry| {
                // SAFETY: registered, so alive until its owner unregisters it, which waits for
                // the registry lock we hold until `parent`/`child` drop these guards first; and
                // in an allocation of its own, which no `&mut` covers (see `Entry`).
                let object: &'static dyn ForkLocks = unsafe { &*entry.0 };
                object.hold()
            })
            .collect();
        HELD.with(|h| **h.borrow_mut() = Some((registry, held)));
    }

    /// Releases what `prepare` took: the objects' locks first, then the registry's.
    fn release() {
        if let Some((registry, held)) = HELD.with(|h| h.borrow_mut().take()) {
            drop(held);
            drop(registry);
        }
    }

    extern "C" fn in_parent() {
        release();
    }

    /// Registers the handlers (once per process; children inherit them).
    pub(crate) fn watch() {
        WATCH.call_once(|| {
            // SAFETY: the handlers are `extern "C" fn()`s that never unwind (nothing in them
            // panics: poisoned locks are taken over).
            let rc =
                unsafe { libc::pthread_atfork(Some(prepare), Some(in_parent), Some(in_child)) };
            // It fails only without memory for the registration; children then keep the parent's
            // view (no new drainer, reader counts kept): what happened before this existed.
            debug_assert_eq!(rc, 0, "pthread_atfork");
        });
    }

    /// The fork count now. Relaxed: the count only changes in a child's handler, on the one
    /// thread the child has, before any other thread of the child exists (its creation
    /// synchronises with the handler), so every thread of a process reads its own count.
    #[inline]
    pub(crate) fn count() -> u32 {
        FORKS.load(Ordering::Relaxed)
    }

    extern "C" fn in_child() {
        // Relaxed: see `count`.
        FORKS.fetch_add(1, Ordering::Relaxed);
        crate::read::after_fork_in_child();
        HELD.with(|h| {
            if let Some((registry, _)) = &**h.borrow() {
                for entry in registry.iter() {
                    // SAFETY: as in `prepare`: registered and its owner blocked from
                    // unregistering it by the registry lock we still hold.
                    unsafe { &*entry.0 }.after_fork_in_child();
                }
            }
        });
        release();
    }
}

/// Loom models have no `fork`.
#[cfg(loom)]
mod imp {
    use super::ForkLocks;

    pub(crate) fn watch() {}

    pub(crate) fn register(_: &(dyn ForkLocks + 'static)) {}

    pub(crate) fn unregister(_: &(dyn ForkLocks + 'static)) {}

    #[inline]
    pub(crate) fn count() -> u32 {
        0
    }
}

pub(crate) use imp::{count, register, unregister, watch};
