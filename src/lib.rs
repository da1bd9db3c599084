//! # sigdrop
//!
//! Lock-free, async-signal-safe deferred destructors: code running in a signal handler hands
//! over objects that have destructors (`Box`, `Arc`, a raw pointer with a destructor function)
//! without allocating, locking, blocking or running the destructor there; a drainer runs the
//! destructor later, in ordinary thread context.
//!
//! **Linux only**: other targets fail to compile, with a message saying so.
//!
//! ## In a signal handler
//!
//! Install the handler through [`signal`]: it enters restricted context before calling your
//! function, every time, so sigdrop never frees, allocates or locks there.
//!
//! ```
//! use sigdrop::signal::{self, Signal, SignalInfo};
//! use sigdrop::{RefSlot, Runtime};
//! use std::sync::OnceLock;
//!
//! static SLOT: OnceLock<RefSlot<Box<Vec<u8>>>> = OnceLock::new();
//!
//! fn on_usr1(_: &SignalInfo) {
//!     if let Some(slot) = SLOT.get() {
//!         slot.clear(); // already in restricted context: the Vec goes to the drainer
//!     }
//! }
//!
//! let rt = Runtime::new()?;
//! let slot = SLOT.get_or_init(|| RefSlot::new(&rt));
//! slot.xchg(Some(Box::new(vec![0u8; 4096])))?;
//! // SAFETY: `on_usr1` only uses sigdrop's restricted-context operations and a set OnceLock.
//! let installed = unsafe { signal::install(Signal::SIGUSR1, on_usr1) }?;
//! // SAFETY: raising a signal whose handler is installed.
//! unsafe { libc::raise(Signal::SIGUSR1.as_raw()) };
//! while rt.stats().drained < 1 {
//!     std::thread::yield_now(); // the drainer frees the Vec, in ordinary context
//! }
//! installed.uninstall()?;
//! # Ok::<(), sigdrop::Error>(())
//! ```
//!
//! A handler **must** only touch what was set up before it was installed, hand objects over
//! with slot operations, read shared objects under [`read::enter`], and use atomics; if it
//! installs or replaces objects in slots (of anything but [`Owned`] boxes), keep jobs reserved
//! for it with [`Runtime::reserve_to`]: each such exchange there needs one. It **must not** allocate or
//! free, lock (a `Mutex`, the first use of a `OnceLock`), block, print, or panic (a panic in a
//! handler aborts the process: it cannot unwind out of the signal frame, and Rust prints
//! `panic in a function that cannot unwind` or `failed to initiate panic` and aborts; so no
//! `unwrap` there either). Test that with
//! [`alloc_check::RestrictedAllocs`]. Embedding sigdrop in a library: see [`guide`].
//!
//! **The expert path.** A handler installed some other way (your own `sigaction`) must call
//! [`restricted::enter`] as its very first statement and keep the guard until it returns;
//! without it sigdrop believes it is in ordinary context and may run a destructor or grow its
//! pool inside the handler.
//!
//! ## How it works
//!
//! It ports a fix the Linux kernel needed for the same problem, without the races its reviewers
//! found; readers who know the kernel will find the mapping at the end of this page.
//!
//! ## The story in a page
//!
//! - A [`Runtime`] owns a pool of *jobs*: preallocated records of `(object, destructor)`. Idle
//!   jobs sit in per-CPU freelists that any number of threads and handlers may pop at once.
//! - A [`RefSlot`] holds one object. Installing an object into an empty slot first *claims* one
//!   spare job; in ordinary context, replacing an object with another moves the claim to the
//!   new one, so a replace is one atomic operation (in restricted context a replace claims a job
//!   for the displaced object, which will be deferred from there). In ordinary context a claim
//!   that finds no spare job grows the pool; in restricted context it uses jobs set aside by
//!   [`Runtime::reserve`], or hands the object back ([`Rejected`]) — nothing is ever lost.
//! - Code is in *restricted context* while a [`restricted::enter`] guard is alive on its thread
//!   (your signal handler enters it first thing). An object that leaves a slot there comes back
//!   in a [`Detached`] guard; dropping that guard fills the job the claim stands for and pushes
//!   it on this CPU's job list. The drainer is woken as [`Wake`] says: at once (one `futex`
//!   syscall, only if it sleeps) or lazily, on a period, so that handlers make no syscall (unless
//!   a CPU's queue reaches the lazy mode's high watermark, or an object has to be parked).
//! - The drainer ([`Drainer::Thread`], or your own calls to [`Runtime::drain`] with
//!   [`Drainer::Manual`]) takes each list whole, runs destructors oldest first (catching panics),
//!   returns the jobs and credits their claims back, then trims the pool towards
//!   `refs + active + headroom`, with hysteresis so growth and trim never chase each other
//!   (and, for a [`Builder::regrowth_window`], one second by default, keeps what bursts larger
//!   than the hysteresis keep growing back).
//! - Because a claim is taken before an object becomes visible and a credit is published only
//!   after its job is back in a freelist, a teardown in a signal handler always finds its job
//!   (lock-free: it never waits for the thread it interrupted). A value that leaves a slot with
//!   no claim (see [`Detached::is_reserved`]) and meets no spare job in a handler is parked in a
//!   bounded emergency area, or leaked if that is full — counted either way; its destructor
//!   never runs in the handler.
//! - A [`ReadSlot`] can also be read, from any context: [`ReadSlot::load`] borrows its object
//!   under a [`read::enter`] guard (wait-free: one atomic increment, one decrement). An object
//!   that leaves it is destroyed only once no guard that could have seen it is alive. (The one
//!   still in it when the slot itself is dropped needs no wait: nothing borrows from a slot
//!   being dropped.)
//!   Readability is part of the type, so a [`RefSlot`] keeps its one-CAS replace.
//! - In ordinary context, objects that must wait for readers (or all deferred objects, under
//!   [`Policy::AlwaysDefer`]) need no job: they are *retired* into this CPU's batch of up to 64,
//!   and a full batch is stamped with the grace period it needs. The drainer never waits for
//!   readers: it polls ([`read::grace_period_passed`]), and a reader that never leaves delays
//!   only objects readers could have seen. The thread that fills a batch destroys ready batches
//!   itself, and when more than [`Builder::max_pending`] objects wait it helps until they are
//!   back under the bound — waiting for readers if they hold those objects up: memory stays
//!   bounded at any write rate, and a read guard that is never dropped ends up stalling the
//!   writers that retire past the bound. The exception is a writer that holds a read guard
//!   itself (read, copy, replace under one guard): it cannot wait for a grace period its own
//!   guard holds up, so it goes on past the bound. Replace outside the guard (take what you
//!   need from the read, drop the guard, then replace) to keep such writers bounded.
//! - An [`Owned`] box carries its own way to the drainer in the same allocation (basedrop's
//!   `Owned`): dropped in restricted context it is one push onto this CPU's list of boxes,
//!   which the drainer takes with the job lists — no job, no claim, nothing to reserve; a
//!   [`RefSlot<Owned<T>>`](RefSlot) never needs a job either. [`Shared`] is its
//!   reference-counted sibling: the last reference, dropped anywhere, goes the same way.
//!   Handlers never wait, so the code that makes boxes (and installs objects) keeps their
//!   backlog bounded: [`Owned::new`] waits for the drainer thread when boxes pile up faster
//!   than drains take them (see [`Builder::max_pending`]).
//! - A [`RawSlot`] is for pointers without destructors: one atomic swap, no accounting.
//! - [`KptrArray`] and [`KptrHash`] are arrays and preallocated hash maps of slots;
//!   [`signal`] installs handlers that enter restricted context for you and drives them with
//!   timers and storms.
//!
//! ## Example
//!
//! ```
//! use sigdrop::{RefSlot, Runtime, restricted};
//!
//! let rt = Runtime::new()?; // with a background drainer thread
//! let slot = RefSlot::new(&rt);
//! slot.xchg(Some(Box::new(vec![1u8; 4096])))?;
//!
//! // In a signal handler:
//! {
//!     let _restricted = restricted::enter();
//!     slot.clear(); // no free() here: the Vec goes to the drainer
//! }
//!
//! while rt.stats().drained < 1 {
//!     std::thread::yield_now();
//! }
//! # Ok::<(), sigdrop::Error>(())
//! ```
//!
//! ## What may run in a signal handler
//!
//! Each public item's documentation says whether it may be called from a signal handler. In
//! short: [`restricted::enter`], slot exchanges and takes, reading or dropping a [`Detached`],
//! dropping an [`Owned`] (and using one: it derefs mutably), [`read::enter`], [`ReadSlot::load`],
//! [`ReadSlot::clone_current`], [`Runtime::stats`] and [`Runtime::id`] may; building a runtime
//! and [`Owned::new`] or cloning an `Owned` (they allocate) may not, nor may
//! [`Runtime::reserve`], [`Runtime::reserve_to`], [`Runtime::drain`], [`Runtime::trim`] and
//! [`read::synchronize`] (they refuse with [`Error::Restricted`]). Code that may run on either
//! side makes boxes with [`Owned::try_new`] and [`Owned::try_clone`], which refuse there too.
//!
//! ## What becomes of objects at shutdown
//!
//! Dropping the last handle to a runtime (slots hold one each) stops its drainer and destroys
//! every object still pending, without waiting for readers: with every slot gone, no reader can
//! borrow any of them. It takes as long as those destructors, and no longer: a drainer stuck in
//! one destructor is given up on after [`Builder::shutdown_timeout`], and a drainer thread never
//! waits for another, so runtimes whose objects own each other's handles shut down too
//! ([`Runtime::shutdown`] says what was left, and to whom). A handle dropped in a signal
//! handler never shuts down there (see [`Runtime`]); objects still pending when the process
//! exits are not destroyed, like any other heap memory then. A child process after `fork` gets
//! a drainer of its own (see [`guide`]).
//!
//! ## Aliasing
//!
//! The unsafe code is written against both of the aliasing models Rust is choosing between,
//! Stacked Borrows and Tree Borrows (the ones Miri checks): no unique pointer (a `Box`, a
//! `&mut`) is ever rebuilt or made to an object while a shared borrow of that object may still
//! be in use, by a reader on another thread or in an interrupted frame. What that means for you:
//!
//! - A [`Detached`] derefs to the object (`&T`), not to the `Box` or `Arc` that held it, and
//!   never mutably: readers of a [`ReadSlot`] may still share the object. To own it again, call
//!   [`Detached::into_inner`], which for an object that left a [`ReadSlot`] first waits until no
//!   reader borrows it; for another reference to an `Arc`, call [`Detached::clone_arc`], which
//!   never waits.
//! - An object that readers may still borrow goes to the drainer as the raw pointer the slot
//!   held; its `Box` (or `Arc`) is rebuilt only by its destructor, after the grace period.
//! - A [`Raw`] pointer is lent out as `&T` the same way, so nothing may write to its object
//!   while sigdrop holds it, except through interior mutability (see [`Raw::new`]).
//!
//! ## Model checking
//!
//! Every atomic and `UnsafeCell` goes through a shim that becomes loom's types under
//! `--cfg loom`, so the code the model checker explores is the code that ships; the models live
//! in the `loom-tests` crate of the repository.
//!
//! ## For readers who know the Linux kernel
//!
//! sigdrop ports the kernel's fix for referenced-kptr destructors run from NMI to user space.
//! The words map as follows:
//!
//! | kernel | sigdrop |
//! |---|---|
//! | NMI context, `in_nmi()` | restricted context, [`restricted::is_active`] |
//! | referenced kptr in a map value | an owned pointer (`Box`, `Arc`, [`Raw`]) in a [`RefSlot`] |
//! | `bpf_kptr_xchg` with / without a destructor | [`Slot::xchg`] / [`RawSlot::xchg`] |
//! | `KF_KPTR_GET` | [`ReadSlot::clone_current`] |
//! | offload job, `pcpu_freelist`, per-CPU `llist` | job, per-CPU freelists, per-CPU job lists |
//! | `irq_work` (and `IRQ_WORK_LAZY`) | the drainer and its doorbell ([`Wake::Immediate`], [`Wake::Lazy`]) |
//! | sleepable RCU: `srcu_read_lock`, `synchronize_srcu`, `start_poll_synchronize_srcu`, `poll_state_synchronize_srcu` | [`read::enter`], [`read::synchronize`], [`read::start_grace_period`], [`read::grace_period_passed`] |
//! | RCU callback flood handling | [`Builder::max_pending`] back-pressure |
//! | array map / hash map with a kptr field | [`KptrArray`] / [`KptrHash`] |
//! | rqspinlock's `-EDEADLK` | [`Error::WouldBlock`] from a busy bucket in a handler |

#![cfg_attr(sigdrop_rtsan, feature(sanitize))]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(rust_2018_idioms)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "sigdrop supports Linux only: it relies on Linux signal delivery, futexes, gettid/tgkill and SIGEV_THREAD_ID timers"
);

#[cfg(not(loom))]
pub mod alloc_check;
mod arena;
mod builder;
mod cpu;
mod emergency;
#[cfg(not(loom))]
mod errno;
mod error;
mod fork;
mod freelist;
pub mod guide;
mod handle;
mod ledger;
mod llist;
mod maps;
mod nested;
mod owned;
mod pointer;
pub mod read;
mod read_slot;
mod reclaim;
mod regrowth;
mod rejected;
pub mod restricted;
mod runtime;
mod shared;
#[cfg(not(loom))]
pub mod signal;
mod slot;
mod stats;
mod supply_countdown;
mod sync;

pub use builder::{Builder, DEFAULT_MAX_PENDING, DEFAULT_SHUTDOWN_TIMEOUT, MAX_SHARDS, Policy};
pub use error::Error;
pub use handle::{Runtime, ShutdownReport};
pub use maps::{KptrArray, KptrHash};
pub use owned::Owned;
pub use pointer::{Destroy, Raw, SlotPointer};
pub use read_slot::{Access, Readable, WriteOnly};
pub use reclaim::doorbell::Wake;
pub use reclaim::drainer::Drainer;
pub use rejected::Rejected;
pub use shared::Shared;
pub use slot::{Detached, RawSlot, ReadSlot, RefSlot, Slot};
pub use stats::Stats;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Internals exposed to the loom models (built only with `--cfg loom`).
#[cfg(loom)]
#[doc(hidden)]
pub mod model {
    pub use crate::arena::{Arena, GrowState, NIL, Payload};
    pub use crate::cpu::set_model_shard;
    pub use crate::freelist::Freelist;
    pub use crate::ledger::Ledger;
    pub use crate::llist::{Chain, JobLists};
    pub use crate::reclaim::doorbell::{Doorbell, Wake};
    pub use crate::reclaim::drainer::set_model_on_drainer;
    pub use crate::reclaim::owned_list::set_model_interrupt;
    pub use crate::runtime::model_hooks;
}
