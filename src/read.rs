//! Protected reads: read guards, from any context, and the grace periods that destruction waits
//! for.
//!
//! A [`ReadGuard`] lets its holder borrow the object in a [`ReadSlot`](crate::ReadSlot) while
//! other threads, or a signal handler on this very thread, replace or tear it down: the object's
//! destructor does not run until every guard that could have seen it is gone. Guards work the
//! same in ordinary and restricted context: entering one is an atomic load and one atomic
//! increment, leaving it one atomic decrement; neither ever allocates, locks or waits, so a
//! guard can be entered in a signal handler that interrupted a reader, a writer or a drainer.
//!
//! This is the crate's only grace-period mechanism. (Trim, the other place where memory is
//! returned while lock-free code may run, needs none: see `runtime.rs`.)
//!
//! ## Protocol (sleepable-RCU style, two reader counters per shard)
//!
//! ```text
//! state: epoch (its low bit is the parity new readers count under)
//!        readers[shard][parity]: how many guards entered under that parity on that shard
//!
//! enter:   p = epoch & 1                       (any value is safe; see below)
//!          c = &readers[this CPU's shard][p]; c += 1      (SeqCst RMW)
//!          ... slot reads are SeqCst loads ...
//! exit:    c -= 1                              (Release; the same counter, whatever CPU now)
//!
//! synchronize (ordinary context, one at a time):
//!          fence(SeqCst)                       (F)
//!          e = epoch; p = e & 1
//!          wait until every readers[*][p ^ 1] == 0     (latecomers of the previous parity)
//!          epoch = e + 1                       (new readers now count under p ^ 1)
//!          wait until every readers[*][p] == 0
//! ```
//!
//! ## Why a grace period waits for every reader that could see a removed object
//!
//! An object is removed from its slot (an exchange) before its destructor is queued, and the
//! queue hands it to the drainer with release/acquire, so the removal happens before `F`. Take a
//! reader whose slot load `L` returned the object, so `L` reads a value older than the removal.
//! In the C++20 model (which Rust uses): `L` is `SeqCst` and coherence-ordered before the
//! removal, which happens before the `SeqCst` fence `F`, so `L` precedes `F` in the single total
//! order `S`; the reader's increment `I` is `SeqCst` and sequenced before `L`, so `I` precedes
//! `F` in `S` too. Every counter load of the waiter comes after `F`; if one of them read a value
//! older than `I`, it would be coherence-ordered before `I` while `F` happens before it, which
//! would put `F` before `I` in `S`. So each load sees `I`. A counter only ever reads zero when
//! every increment it includes has its decrement included too (a guard decrements the counter it
//! incremented, after incrementing it), so a zero means the reader has left, and its Release
//! decrement, or a later read-modify-write in that counter's release sequence, synchronises with
//! the waiter's Acquire load: everything the reader did with the object happens before the
//! destructor. Both parities are waited for after `F`, so this holds whichever parity the reader
//! counted under: the parity only steers *new* readers away from the counter being drained.
//!
//! The removal is the exchange that took the object out; if `L` read the same pointer installed
//! again later (an `Arc` cloned with `clone_current` and put back), the object is alive through
//! that later install's reference, and the drainer releases only the removed one.
//!
//! ## Why a grace period never waits for a reader that began after its flip
//!
//! A reader that loads the flipped epoch counts under `p ^ 1`, and after the flip the waiter only
//! waits for parity `p`. So once the flip is visible, no new reader delays the grace period:
//! readers cannot starve it. Before the flip the waiter waits for parity `p ^ 1`, where only
//! latecomers can be: readers that loaded the epoch before the *previous* flip and incremented
//! after it; readers that enter between the call and the flip count under `p` and are waited
//! for in the second phase. Both sets are bounded by readers that had read the epoch before the
//! flip. A reader that holds its guard forever blocks grace periods forever; that is the
//! contract of every RCU.
//!
//! ## Concurrency
//!
//! | operation            | concurrent with any other | restricted context                     |
//! |----------------------|---------------------------|----------------------------------------|
//! | [`enter`], guard drop | yes (wait-free)          | yes; nests inside any code on the thread |
//! | [`is_active`]        | yes                       | yes                                    |
//! | [`synchronize`]      | yes; grace periods take turns on a lock | no ([`Error::Restricted`]); not while this thread holds a guard ([`Error::ReadGuardHeld`]) |
//!
//! ## Why not crossbeam-epoch's `Guard` in ordinary context
//!
//! A slot's objects must wait for *every* reader, and readers in signal handlers cannot use
//! crossbeam-epoch (`pin` may allocate its thread's record and run deferred destructors). Taking
//! crossbeam's guards as well would mean waiting for two grace-period mechanisms; one guard type
//! for both contexts keeps one. The cost, measured in the same run (`BENCHMARKS.md`, "Protected
//! reads"): alone, a guarded load is about 1.3 ns slower than crossbeam's `pin` + `load` (two
//! read-modify-writes and `sched_getcpu` against one read-modify-write and a store) and faster
//! than arc-swap's `load`; with a writer replacing the object on another CPU it is the fastest of
//! the three, because readers on different CPUs share no cache line.
//!
//! ```
//! use sigdrop::{Drainer, ReadSlot, Runtime, read};
//!
//! let rt = Runtime::builder().drainer(Drainer::Manual).build()?;
//! let slot = ReadSlot::new(&rt);
//! slot.xchg(Some(Box::new(String::from("v1")))).map_err(|r| r.into_error())?;
//! let guard = read::enter();
//! let v1: &String = slot.load(&guard).unwrap();
//! drop(slot.xchg(Some(Box::new(String::from("v2")))).unwrap()); // "v1" goes to the drainer
//! assert_eq!(v1, "v1"); // still valid: the drainer waits for this guard
//! assert!(matches!(rt.drain(), Err(sigdrop::Error::ReadGuardHeld))); // would wait for itself
//! drop(guard);
//! assert_eq!(rt.drain()?, 1); // a grace period, then "v1"'s destructor
//! # Ok::<(), sigdrop::Error>(())
//! ```

use crate::cpu::current_shard;
use crate::error::Error;
use crate::restricted;
use crate::sync::{self, AtomicU64, AtomicUsize, Mutex, Ordering, fence};
use crossbeam_utils::CachePadded;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

/// Reader counter shards. Readers pick theirs by CPU, so that readers on different CPUs do not
/// contend; a guard remembers its counter, so migrating while holding one costs nothing.
const SHARDS: usize = if cfg!(loom) { 2 } else { 32 };

/// Spins before a waiting grace period starts yielding its CPU to the readers it waits for.
const SPINS: u32 = 64;

/// The process-wide read domain: every guard and every grace period.
pub(crate) struct Domain {
    /// Grace periods started; its low bit is the parity new readers count under. Written only
    /// under `waiters`.
    epoch: AtomicUsize,
    /// `readers[shard][parity]`: guards alive that counted under that parity on that shard.
    readers: [CachePadded<[AtomicUsize; 2]>; SHARDS],
    /// Grace periods take turns: each one drains a parity, then flips it.
    waiters: Mutex<()>,
    /// Grace periods completed (a statistic).
    completed: AtomicU64,
}

impl Domain {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Domain {
            epoch: AtomicUsize::new(0),
            readers: [const { CachePadded::new([AtomicUsize::new(0), AtomicUsize::new(0)]) };
                SHARDS],
            waiters: Mutex::new(()),
            completed: AtomicU64::new(0),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Domain {
            epoch: AtomicUsize::new(0),
            readers: std::array::from_fn(|_| {
                CachePadded::new([AtomicUsize::new(0), AtomicUsize::new(0)])
            }),
            waiters: Mutex::new(()),
            completed: AtomicU64::new(0),
        }
    }

    /// One grace period: returns once every guard that existed when it was called is gone.
    /// Ordinary context; the caller has checked that this thread holds no guard.
    fn synchronize(&self) {
        let _turn = self
            .waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // F in the module docs: every removal that happened before this call is ordered, in the
        // SeqCst total order, before every counter load below.
        fence(Ordering::SeqCst);
        // Relaxed: only grace periods write the epoch, and they take turns under `waiters`.
        let epoch = self.epoch.load(Ordering::Relaxed);
        let parity = epoch & 1;
        self.wait_for_readers(parity ^ 1);
        // Relaxed: the parity only steers new readers to the other counter (progress, not
        // safety: both counters are waited for after F).
        self.epoch.store(epoch.wrapping_add(1), Ordering::Relaxed);
        self.wait_for_readers(parity);
        // Relaxed: a statistic.
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits until every shard's counter of `parity` has read zero once.
    fn wait_for_readers(&self, parity: usize) {
        for shard in &self.readers {
            let mut spins = 0;
            // Acquire: pairs with the Release decrement of each leaving reader (and the release
            // sequence it heads), so the readers' borrows happen before what we do next.
            while shard[parity].load(Ordering::Acquire) != 0 {
                if spins < SPINS {
                    spins += 1;
                    sync::spin_hint();
                } else {
                    sync::yield_now();
                }
            }
        }
    }
}

#[cfg(not(loom))]
static DOMAIN: Domain = Domain::new();

#[cfg(not(loom))]
#[inline]
fn domain() -> &'static Domain {
    &DOMAIN
}

#[cfg(loom)]
loom::lazy_static! {
    static ref DOMAIN: Domain = Domain::new();
}

#[cfg(loom)]
fn domain() -> &'static Domain {
    &DOMAIN
}

// Guards alive on this thread: a `const`-initialised thread-local without a destructor, safe to
// touch from a signal handler (see `restricted.rs` for the `dlopen` caveat, which applies here
// too). Only `synchronize` reads it, to refuse waiting for itself.
#[cfg(not(loom))]
std::thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

#[cfg(loom)]
loom::thread_local! {
    static DEPTH: Cell<u32> = Cell::new(0);
}

/// A read-side critical section: while it is alive, no object that a
/// [`ReadSlot`](crate::ReadSlot) held when it was entered is destroyed.
///
/// References borrowed under a guard cannot outlive it:
///
/// ```compile_fail,E0505
/// use sigdrop::{ReadSlot, Runtime, read};
/// let rt = Runtime::new().unwrap();
/// let slot: ReadSlot<Box<u32>> = ReadSlot::new(&rt);
/// let guard = read::enter();
/// let value = slot.load(&guard);
/// drop(guard); // error: `guard` is still borrowed by `value`
/// println!("{value:?}");
/// ```
///
/// ```compile_fail,E0597
/// use sigdrop::{ReadSlot, Runtime, read};
/// let rt = Runtime::new().unwrap();
/// let slot: ReadSlot<Box<u32>> = ReadSlot::new(&rt);
/// let value = {
///     let guard = read::enter();
///     slot.load(&guard) // error: `guard` does not live long enough
/// };
/// println!("{value:?}");
/// ```
///
/// Not `Send`: the thread that entered it leaves it (a signal handler's guard stays in the
/// handler).
///
/// ```compile_fail,E0277
/// let guard = sigdrop::read::enter();
/// std::thread::spawn(move || drop(guard)); // error: `*mut ()` cannot be sent between threads
/// ```
#[must_use = "the read-side critical section ends when the guard is dropped"]
pub struct ReadGuard {
    /// The counter this guard incremented; leaving decrements the same one.
    counter: &'static AtomicUsize,
    _not_send: PhantomData<*mut ()>,
}

/// Enters a read-side critical section; nestable, and usable in any context.
///
/// May be called from a signal handler: wait-free (a load, one atomic increment and a
/// thread-local update), no allocation, no lock. Dropping the guard is one atomic decrement.
#[inline]
pub fn enter() -> ReadGuard {
    // The depth first (and last on the way out): code on this thread that can see the counter
    // raised, such as a handler landing between the two, also sees `is_active()` and so never
    // waits for a grace period that would wait for this guard.
    DEPTH.with(|d| d.set(d.get().wrapping_add(1)));
    let domain = domain();
    // Relaxed: the parity only steers which counter we use; any parity is safe (module docs).
    let parity = domain.epoch.load(Ordering::Relaxed) & 1;
    let counter = &domain.readers[current_shard(SHARDS)][parity];
    // SeqCst: I in the module docs; with the SeqCst slot loads after it and the waiter's fence,
    // a grace period that could miss this reader cannot exist.
    // loom cannot check this ordering or the slot load's (see `sync::model_seq_cst_fence`):
    // do not weaken either.
    counter.fetch_add(1, Ordering::SeqCst);
    sync::model_seq_cst_fence();
    ReadGuard {
        counter,
        _not_send: PhantomData,
    }
}

/// Whether this thread holds a [`ReadGuard`] now. May be called from a signal handler.
pub fn is_active() -> bool {
    DEPTH.with(|d| d.get() != 0)
}

/// Waits for a grace period: returns once every [`ReadGuard`] that existed when it was called
/// has been dropped. An object removed from a [`ReadSlot`](crate::ReadSlot) before the call is
/// then borrowed by nobody. Guards entered after the call started may be waited for too, until
/// the grace period flips the epoch; guards entered after that never are.
///
/// You rarely need it: the drainer waits for grace periods by itself, and
/// [`Detached::into_inner`](crate::Detached::into_inner) of an object that left a readable slot
/// calls it. It blocks, spinning briefly and then yielding the CPU (never sleeping), while
/// readers finish: keep read-side sections short. After `fork`, guards held by the parent's
/// other threads are never dropped in the child, so a grace period there never ends.
///
/// Not for signal handlers ([`Error::Restricted`]); refused with [`Error::ReadGuardHeld`] while
/// this thread holds a guard, which it would wait for forever.
pub fn synchronize() -> Result<(), Error> {
    if restricted::is_active() {
        return Err(Error::Restricted);
    }
    if is_active() {
        return Err(Error::ReadGuardHeld);
    }
    domain().synchronize();
    Ok(())
}

/// Grace periods completed in this process so far (a snapshot). May be called from a signal
/// handler.
pub fn grace_periods() -> u64 {
    // Relaxed: a statistic.
    domain().completed.load(Ordering::Relaxed)
}

/// The epoch new readers see (loom models only: lets a model start a reader after a flip).
#[cfg(loom)]
pub fn model_epoch() -> usize {
    // Relaxed: an observation; a reader that sees the flip here sees it (at least) in its own
    // `enter` after, by read-read coherence.
    domain().epoch.load(Ordering::Relaxed)
}

impl Drop for ReadGuard {
    #[inline]
    fn drop(&mut self) {
        // Release: pairs with the Acquire loads of `wait_for_readers`; everything done under
        // this guard happens before a grace period that sees the decrement returns.
        self.counter.fetch_sub(1, Ordering::Release);
        DEPTH.with(|d| d.set(d.get().wrapping_sub(1)));
    }
}

impl fmt::Debug for ReadGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGuard").finish_non_exhaustive()
    }
}
