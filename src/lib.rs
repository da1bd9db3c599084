//! # sigdrop
//!
//! Lock-free, async-signal-safe deferred destructors: code running in a signal handler hands
//! over objects that have destructors (`Box`, `Arc`, a raw pointer with a destructor function)
//! without allocating, locking, blocking or running the destructor there; a drainer runs the
//! destructor later, in ordinary thread context.
//!
//! It is the user-space port of the Linux kernel's fix for referenced-kptr destructors run from
//! NMI, without the races its reviewers found. Signal handlers play NMI; the drainer plays
//! `irq_work`.
//!
//! ## The story in a page
//!
//! - A [`Runtime`] owns a pool of *jobs*: preallocated records of `(object, destructor)`. Idle
//!   jobs sit in per-CPU, ABA-safe freelists (`freelist.rs`).
//! - A [`RefSlot`] holds one object. Installing an object into an empty slot first *claims* one
//!   spare job in the runtime's ledger (`ledger.rs`); in ordinary context, replacing an object
//!   with another moves the claim to the new one, so a replace is one atomic operation (in
//!   restricted context a replace claims a job for the displaced object, which will be
//!   deferred from there). In ordinary context a claim that finds no spare
//!   job grows the pool; in restricted context it uses jobs set aside by [`Runtime::reserve`], or
//!   hands the object back ([`Rejected`]) — nothing is ever lost.
//! - Code is in *restricted context* while a [`restricted::enter`] guard is alive on its thread
//!   (your signal handler enters it first thing). An object that leaves a slot there comes back
//!   in a [`Detached`] guard; dropping that guard pops the job the claim stands for, fills it and
//!   pushes it on this CPU's job list (`llist.rs`). The first push of a burst rings the drainer's
//!   doorbell: one `futex` wake syscall (`doorbell.rs`).
//! - The drainer ([`Drainer::Thread`], or your own calls to [`Runtime::drain`] with
//!   [`Drainer::Manual`]) takes each list whole, runs destructors oldest first (catching panics),
//!   returns the jobs and credits their claims back, then trims the pool towards
//!   `refs + active + headroom`, with hysteresis so growth and trim never chase each other.
//! - Because a claim is taken before an object becomes visible and a credit is published only
//!   after its job is back in a freelist, a teardown in a signal handler always finds its job
//!   (lock-free: it never waits for the thread it interrupted). A value that leaves a slot with
//!   no claim (see [`Detached::is_reserved`]) and meets no spare job in a handler is parked in a
//!   bounded emergency area, or leaked if that is full — counted either way; its destructor
//!   never runs in the handler.
//! - A [`ReadSlot`] can also be read, from any context: [`ReadSlot::load`] borrows its object
//!   under a [`read::enter`] guard (wait-free: one atomic increment, one decrement), and every
//!   object that leaves it is destroyed by the drainer only after a grace period, once no guard
//!   that could have seen it is alive ([`read`] has the protocol and its proof). Readability is
//!   part of the type, so a [`RefSlot`] keeps its one-CAS replace.
//! - A [`RawSlot`] is for pointers without destructors: one atomic swap, no accounting.
//! - [`KptrArray`] and [`KptrHash`] are the kernel's array and preallocated hash maps with a kptr
//!   field; [`signal`] installs NMI-like handlers and drives them with timers and storms.
//!
//! ## Example
//!
//! ```
//! use sigdrop::{RefSlot, Runtime, restricted};
//!
//! let rt = Runtime::new()?; // with a background drainer thread
//! let slot = RefSlot::new(&rt);
//! slot.xchg(Some(Box::new(vec![1u8; 4096]))).map_err(|r| r.into_error())?;
//!
//! // In a signal handler:
//! {
//!     let _nmi = restricted::enter();
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
//! short: [`restricted::enter`], slot exchanges and takes, dropping a [`Detached`],
//! [`read::enter`], [`ReadSlot::load`], [`ReadSlot::clone_current`] and [`Runtime::stats`] may;
//! building a runtime, [`Runtime::reserve`], [`Runtime::drain`], [`Runtime::trim`] and
//! [`read::synchronize`] may not (they refuse with [`Error::Restricted`]).
//!
//! ## Model checking
//!
//! Every atomic and `UnsafeCell` goes through a shim (`sync.rs`) that becomes loom's types under
//! `--cfg loom`; the models live in the `loom-tests` crate of the repository.

#![cfg_attr(sigdrop_rtsan, feature(sanitize))]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(rust_2018_idioms)]

#[cfg(not(loom))]
pub mod alloc_check;
mod arena;
mod builder;
mod cpu;
mod doorbell;
mod drainer;
mod emergency;
mod error;
mod freelist;
mod handle;
mod ledger;
mod llist;
mod maps;
mod pointer;
pub mod read;
mod read_slot;
pub mod restricted;
mod runtime;
#[cfg(not(loom))]
pub mod signal;
mod slot;
mod stats;
mod sync;

pub use builder::{Builder, MAX_SHARDS, Policy};
pub use drainer::Drainer;
pub use error::Error;
pub use handle::Runtime;
pub use maps::{KptrArray, KptrHash};
pub use pointer::{Destroy, Raw, SlotPointer};
pub use read_slot::{Access, Readable, WriteOnly};
pub use slot::{Detached, RawSlot, ReadSlot, RefSlot, Rejected, Slot};
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
    pub use crate::doorbell::Doorbell;
    pub use crate::freelist::Freelist;
    pub use crate::ledger::Ledger;
    pub use crate::llist::{Chain, JobLists};
    pub use crate::runtime::model_hooks;
}
