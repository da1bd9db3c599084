//! The loom shim: every atomic, `UnsafeCell`, lock and spin hint in the crate comes from here.
//!
//! Built normally, these are `core`/`std` types. Built with `RUSTFLAGS="--cfg loom"`, they are
//! loom's instrumented types, so the code the model checker explores is the code that ships.
//!
//! `UnsafeCell` follows loom's closure API (`with`, `with_mut`) in both builds, so that loom can
//! check every access to cell contents for data races.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) use std::sync::atomic::Ordering;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::fence;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::fence;

/// Tells the scheduler (or loom) that this thread is waiting for another one to make progress.
///
/// Used in the few lock-free retry loops; under loom it yields so that the checker explores the
/// other threads instead of spinning forever.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// Lets other threads run while this one waits for them for longer than a spin (a grace period
/// waiting for readers). Never sleeps: a sleeping thread that signals target can livelock in
/// `nanosleep` (see `examples/nmi_exerciser.rs`).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

/// A point where a loom model may run another thread; nothing in the build that ships.
///
/// loom switches threads only at operations it instruments, and an `Arc`'s reference count is
/// not one of them: without this, no model could run another thread between a read guard's exit
/// and a decrement of a count that guard protects, and so none could tell whether the decrement
/// comes first. Placed just before such an operation.
#[inline(always)]
pub(crate) fn model_switch_point() {
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// A `SeqCst` fence in loom models only; nothing in the build that ships.
///
/// loom does not model `SeqCst` on loads, stores and read-modify-writes (it treats them as
/// acquire/release; tokio-rs/loom#180), but it does model `SeqCst` fences. A read guard relies on
/// "a `SeqCst` read-modify-write, then a `SeqCst` load" in one thread against "a `SeqCst` fence,
/// then a load" in the grace-period waiter (`read.rs` gives the proof). For the store-buffering
/// pattern this is the same guarantee as putting a `SeqCst` fence between the reader's two
/// operations, which loom can check; on x86 that fence would cost an `mfence` (about three
/// uncontended `fetch_add`s) that the `SeqCst` operations make redundant, so only the models pay
/// it.
///
/// The price: loom cannot tell whether the reader's two operations really are `SeqCst`.
/// Weakening either would still pass every model and would be a use-after-free; the comments at
/// both sites say so. (loom's fence is also somewhat stronger than C++20's: it joins a global
/// view. The models' safety conclusions rest on the store-buffering case, where the two agree.)
#[inline(always)]
pub(crate) fn model_seq_cst_fence() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// An `UnsafeCell` whose accesses loom can track.
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(
    #[cfg(loom)] loom::cell::UnsafeCell<T>,
    #[cfg(not(loom))] core::cell::UnsafeCell<T>,
);

impl<T> UnsafeCell<T> {
    #[cfg(not(loom))]
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(core::cell::UnsafeCell::new(value))
    }

    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Self {
        UnsafeCell(loom::cell::UnsafeCell::new(value))
    }

    /// Calls `f` with a shared raw pointer to the contents.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(loom)]
        return self.0.with(f);
        #[cfg(not(loom))]
        f(self.0.get())
    }

    /// Calls `f` with a mutable raw pointer to the contents.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(loom)]
        return self.0.with_mut(f);
        #[cfg(not(loom))]
        f(self.0.get())
    }
}
