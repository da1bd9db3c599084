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
//! returned while lock-free code may run, needs none: pops never read the memory it frees.)
//!
//! ## Example
//!
//! ```
//! use sigdrop::{Drainer, ReadSlot, Runtime, read};
//!
//! let rt = Runtime::builder().drainer(Drainer::Manual).build()?;
//! let slot = ReadSlot::new(&rt);
//! slot.xchg(Some(Box::new(String::from("v1"))))?;
//! let guard = read::enter();
//! let v1: &String = slot.load(&guard).unwrap();
//! drop(slot.xchg(Some(Box::new(String::from("v2")))).unwrap()); // "v1" goes to the drainer
//! assert_eq!(v1, "v1"); // still valid: the drainer waits for this guard
//! assert_eq!(rt.drain()?, 0); // it never waits: "v1" stays for a later drain
//! drop(guard);
//! assert_eq!(rt.drain()?, 1); // the grace period has passed: "v1"'s destructor
//! # Ok::<(), sigdrop::Error>(())
//! ```
//!
//! The rest of this page is the protocol and its proof, for those who check such things.
//!
//! ## Protocol (sleepable-RCU style, two reader counters per shard, polled grace periods)
//!
//! ```text
//! state: epoch (its low bit is the parity new readers count under)
//!        readers[shard][parity]: how many guards entered under that parity on that shard
//!        started, completed: grace periods begun / ended; phase (under a try-lock)
//!
//! enter:   p = epoch & 1                       (any value is safe; see below)
//!          c = &readers[this CPU's shard][p]; c += 1      (SeqCst RMW)
//!          ... slot reads are SeqCst loads ...
//! exit:    c -= 1                              (Release; the same counter, whatever CPU now)
//!
//! start_grace_period (any context, after the removals it must cover):
//!          fence(SeqCst)                       (R)
//!          return cookie = started + 1         (the first grace period that has not begun)
//!
//! advance(cookie) (any context; whoever wins the try-lock; never waits):
//!   idle:  if completed >= cookie: done.  started += 1; fence(SeqCst) (F); p = epoch & 1
//!   old:   every readers[*][p ^ 1] == 0 ?  else come back later  (latecomers of the old parity)
//!          epoch += 1                      (new readers now count under p ^ 1)
//!   cur:   every readers[*][p] == 0 ?      else come back later
//!          completed = started; idle
//!
//! grace_period_passed(cookie) = advance(cookie); completed >= cookie
//! synchronize = cookie = start_grace_period(); until grace_period_passed(cookie): spin, yield
//! ```
//!
//! Only [`synchronize`] waits for a reader, and what asks for it: `Runtime::drain_and_wait`,
//! and a writer over `Builder::max_pending` (back-pressure). The drainer, and a writer helping
//! it under the bound, stamp what they retire with a cookie and poll (the polled grace periods of
//! Linux's sleepable RCU). A reader that never leaves keeps `completed` below the cookies of
//! objects retired after it entered, and delays nothing else but those writers.
//!
//! ## Why a grace period waits for every reader that could see a removed object
//!
//! An object is removed from its slot (an exchange) before its destructor is queued, and the
//! queue hands it to the drainer with release/acquire, so the removal happens before the fence `R`
//! of the `start_grace_period` that stamped it, and `R` precedes in `S` (the single total order
//! of `SeqCst` operations and fences) the fence `F` of every grace period numbered at or after
//! the cookie: `R` is sequenced before the load of `started` that read a value older than the
//! store `started += 1` that is sequenced before `F`, and C++20 orders two such fences ([atomics.order]
//! p4.4). So it is enough to show that a reader whose load preceded `F` is waited for. Take a
//! reader whose slot load `L` returned the object, so `L` reads a value older than the removal.
//! In the C++20 model (which Rust uses): `L` is `SeqCst` and coherence-ordered before the
//! removal, which happens before the `SeqCst` fence `R`, so `L` precedes `R` and so `F` in `S`; the reader's increment `I` is `SeqCst` and sequenced before `L`, so `I` precedes
//! `F` in `S` too. Every counter load of the waiter comes after `F`; if one of them read a value
//! older than `I`, it would be coherence-ordered before `I` while `F` happens before it (the
//! load may run in a later `advance`, on another thread: the try-lock's release/acquire orders it
//! after `F`), which would put `F` before `I` in `S`. So each load sees `I`. A counter only ever reads zero when
//! every increment it includes has its decrement included too (a guard decrements the counter it
//! incremented, after incrementing it), so a zero means the reader has left, and its Release
//! decrement, or a later read-modify-write in that counter's release sequence, synchronises with
//! the waiter's Acquire load: everything the reader did with the object happens before the
//! destructor (through the Release store of `completed` and the poller's Acquire load of it).
//! Both parities are waited for after `F`, so this holds whichever parity the reader
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
//! ## One read domain for the process
//!
//! Every guard and every grace period belong to one process-wide domain, not one per runtime. A
//! guard protects whatever it reads — a handler that reads a configuration slot of one runtime
//! and a buffer slot of another enters one guard, not one per runtime — so a grace period must
//! wait for every guard, whichever slots it read. Domains per runtime would make the guard name
//! its runtime and make readers of several runtimes nest guards. The price: a guard that is
//! never dropped holds up the grace periods of every runtime, so it delays the objects that left
//! readable slots of every runtime. It delays nothing else: objects that readers cannot borrow
//! never wait for a grace period, and no drainer ever waits for one.
//!
//! ## Concurrency
//!
//! | operation            | concurrent with any other | restricted context                     |
//! |----------------------|---------------------------|----------------------------------------|
//! | [`enter`], guard drop | yes (wait-free)          | yes; nests inside any code on the thread |
//! | [`is_active`]        | yes                       | yes                                    |
//! | [`start_grace_period`], [`grace_period_passed`] | yes (lock-free: one try-lock, never waits) | yes |
//! | [`synchronize`]      | yes                       | no ([`Error::Restricted`]); not while this thread holds a guard ([`Error::ReadGuardHeld`]) |
//!
//! ## Why not crossbeam-epoch's `Guard` in ordinary context
//!
//! A slot's objects must wait for *every* reader, and readers in signal handlers cannot use
//! crossbeam-epoch (`pin` may allocate its thread's record and run deferred destructors). Taking
//! crossbeam's guards as well would mean waiting for two grace-period mechanisms; one guard type
//! for both contexts keeps one. The cost, measured in the same run (`BENCHMARKS.md`, "Protected
//! reads"): alone, a guarded load is slower than crossbeam's `pin` + `load` (two
//! read-modify-writes and a CPU-number lookup against one read-modify-write and a store) and faster
//! than arc-swap's `load`; with a writer replacing the object on another CPU it is the fastest of
//! the three, because readers on different CPUs share no cache line.

use crate::cpu::current_shard;
use crate::error::Error;
use crate::restricted;
use crate::sync::{self, AtomicBool, AtomicU64, AtomicUsize, Ordering, UnsafeCell, fence};
use crossbeam_utils::CachePadded;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

/// Reader counter shards. Readers pick theirs by CPU, so that readers on different CPUs do not
/// contend; a guard remembers its counter, so migrating while holding one costs nothing.
const SHARDS: usize = if cfg!(loom) { 2 } else { 32 };

/// Spins before a waiting grace period starts yielding its CPU to the readers it waits for.
const SPINS: u32 = 64;

/// Where a grace period stands; touched only by the holder of `Domain::advancing`.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// No grace period in progress.
    Idle,
    /// Waiting for readers of the parity opposite to the one given to leave (latecomers).
    Old(usize),
    /// The epoch is flipped; waiting for readers of the given parity to leave.
    Current(usize),
}

/// The process-wide read domain: every guard and every grace period.
pub(crate) struct Domain {
    /// Grace periods started; its low bit is the parity new readers count under. Written only by
    /// the holder of `advancing`.
    epoch: AtomicUsize,
    /// `readers[shard][parity]`: guards alive that counted under that parity on that shard.
    readers: [CachePadded<[AtomicUsize; 2]>; SHARDS],
    /// Grace periods begun (their fence `F` issued, or about to be). Written only by the holder of
    /// `advancing`.
    started: AtomicU64,
    /// Grace periods ended: every guard that existed at the `F` of grace period `n` was gone by
    /// the time `completed` became `n`.
    completed: AtomicU64,
    /// The try-lock whose holder moves `phase` on; nobody ever waits for it.
    advancing: AtomicBool,
    phase: UnsafeCell<Phase>,
}

// SAFETY: `phase` is only accessed by the holder of `advancing` (acquired with Acquire, released
// with Release); everything else is atomic.
unsafe impl Sync for Domain {}

impl Domain {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Domain {
            epoch: AtomicUsize::new(0),
            readers: [const { CachePadded::new([AtomicUsize::new(0), AtomicUsize::new(0)]) };
                SHARDS],
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            advancing: AtomicBool::new(false),
            phase: UnsafeCell::new(Phase::Idle),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Domain {
            epoch: AtomicUsize::new(0),
            readers: std::array::from_fn(|_| {
                CachePadded::new([AtomicUsize::new(0), AtomicUsize::new(0)])
            }),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            advancing: AtomicBool::new(false),
            phase: UnsafeCell::new(Phase::Idle),
        }
    }

    /// `R` in the module docs: the first grace period that begins after everything this thread
    /// did before the call (its removals included).
    fn start(&self) -> Cookie {
        fence(Ordering::SeqCst);
        // Relaxed: the fence above carries the argument (module docs); a stale value only makes
        // the cookie later, never earlier, because `started` only grows.
        Cookie(self.started.load(Ordering::Relaxed) + 1)
    }

    /// Whether grace period `cookie` has ended. Acquire: pairs with the Release store of
    /// `completed` in `advance`, which follows the Acquire loads that saw every reader leave; so
    /// everything those readers did happens before what the caller does next.
    fn passed(&self, cookie: Cookie) -> bool {
        self.completed.load(Ordering::Acquire) >= cookie.0
    }

    /// Moves grace periods on, without waiting, until `cookie` has passed or readers hold it up.
    /// Returns whether it has passed. Lock-free: if another thread (or the code this signal
    /// handler interrupted) is advancing, returns at once.
    fn advance(&self, cookie: Cookie) -> bool {
        if self.passed(cookie) {
            return true;
        }
        // Acquire: pairs with the Release store that ended the last holder's turn, so its
        // `phase` and its fence `F` happen before our counter loads.
        if self.advancing.swap(true, Ordering::Acquire) {
            return self.passed(cookie);
        }
        // SAFETY: we hold `advancing`, the only licence to touch `phase`.
        let mut phase = self.phase.with(|p| unsafe { *p });
        loop {
            phase = match phase {
                Phase::Idle => {
                    // Relaxed: written only by `advancing` holders, ordered by its Acquire.
                    if self.completed.load(Ordering::Relaxed) >= cookie.0 {
                        break;
                    }
                    // Relaxed: ordered before `F` by program order; `R` of `start` reads it
                    // (module docs: the fences carry the argument).
                    let started = self.started.load(Ordering::Relaxed);
                    self.started.store(started + 1, Ordering::Relaxed);
                    // F in the module docs.
                    fence(Ordering::SeqCst);
                    // Relaxed: the parity only steers new readers (progress, not safety: both
                    // counters are checked after F).
                    Phase::Old(self.epoch.load(Ordering::Relaxed) & 1)
                }
                Phase::Old(parity) => {
                    if !self.readers_gone(parity ^ 1) {
                        break;
                    }
                    // Relaxed: as above, the parity is only a hint to new readers.
                    let epoch = self.epoch.load(Ordering::Relaxed);
                    self.epoch.store(epoch.wrapping_add(1), Ordering::Relaxed);
                    Phase::Current(parity)
                }
                Phase::Current(parity) => {
                    if !self.readers_gone(parity) {
                        break;
                    }
                    // Relaxed load: ours. Release store: see `passed`.
                    let started = self.started.load(Ordering::Relaxed);
                    self.completed.store(started, Ordering::Release);
                    Phase::Idle
                }
            };
        }
        // SAFETY: we still hold `advancing`.
        self.phase.with_mut(|p| unsafe { *p = phase });
        // Release: hands `phase` and our fence to the next holder (its Acquire swap).
        self.advancing.store(false, Ordering::Release);
        self.passed(cookie)
    }

    /// Whether every shard's counter of `parity` reads zero now.
    fn readers_gone(&self, parity: usize) -> bool {
        // Acquire: pairs with the Release decrement of each leaving reader (and the release
        // sequence it heads), so the readers' borrows happen before what we do next.
        self.readers
            .iter()
            .all(|shard| shard[parity].load(Ordering::Acquire) == 0)
    }

    /// One grace period: returns once every guard that existed when it was called is gone.
    /// Ordinary context; the caller has checked that this thread holds no guard.
    fn synchronize(&self) {
        let cookie = self.start();
        let mut spins = 0;
        while !self.advance(cookie) {
            if spins < SPINS {
                spins += 1;
                sync::spin_hint();
            } else {
                sync::yield_now();
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

/// In a child process, just after `fork` (the forking thread is the only one): forgets what
/// the parent's other threads left in the read domain. Called from the `pthread_atfork` child
/// handler, so it touches only atomics and this thread's `const` thread-local.
#[cfg(not(loom))]
pub(crate) fn after_fork_in_child() {
    let domain = domain();
    if DEPTH.with(|d| d.get()) == 0 {
        // No guard exists in this process (this thread holds none, and it is the only thread):
        // every count is a dead thread's, and would hold grace periods up for ever. Relaxed:
        // nothing else runs; the handler's return orders these before everything after it.
        for shard in &domain.readers {
            for counter in shard.iter() {
                counter.store(0, Ordering::Relaxed);
            }
        }
    }
    // A grace period a dead thread was moving on: its try-lock would stay taken for ever. Take
    // it over from the start (a new grace period, whose fence comes after every removal so far,
    // covers every cookie handed out). If this thread is the one that held it (`fork` called
    // from a signal handler that interrupted `advance`), the interrupted call finishes its own
    // step when the handler returns: no worse than a poll racing this reset.
    // SAFETY: the only thread of the process; nobody else can touch `phase`.
    domain.phase.with_mut(|p| unsafe { *p = Phase::Idle });
    // Release: as every holder's release of the try-lock.
    domain.advancing.store(false, Ordering::Release);
}

/// A read-side critical section: while it is alive, no object that a
/// [`ReadSlot`](crate::ReadSlot) held when it was entered is destroyed — unless that slot
/// itself is dropped, which borrows through it rule out (dropping a slot needs `&mut`, and
/// every reference `load` gives out borrows the slot).
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
/// readers finish: keep read-side sections short. After `fork`, guards the parent's other
/// threads held are forgotten in the child (they can never be dropped there) — unless the
/// thread that called `fork` held a guard itself at the time: then the child keeps waiting for
/// them, and a grace period there may never end.
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

/// A grace period to wait for, from [`start_grace_period`]: once it has passed, every
/// [`ReadGuard`] that existed when the cookie was taken is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cookie(u64);

/// The grace period that covers everything the calling thread has done so far — in particular
/// objects it removed from [`ReadSlot`](crate::ReadSlot)s: once
/// [`grace_period_passed`] says so for the returned cookie, no reader borrows them any more.
///
/// It starts nothing and never waits (one fence and one load). May be called from a signal
/// handler.
pub fn start_grace_period() -> Cookie {
    domain().start()
}

/// Whether the grace period of `cookie` has passed, moving grace periods on if it can: a
/// non-blocking poll (the polled grace periods of Linux's sleepable RCU). Readers still inside
/// keep it `false`; poll again later.
///
/// Never waits, never allocates: one try-lock and a scan of the reader counters. May be called
/// from a signal handler and while this thread holds a guard (it then stays `false` until the
/// guard is dropped, if the guard is one the grace period waits for).
///
/// ```
/// use sigdrop::read;
///
/// let cookie = read::start_grace_period();
/// while !read::grace_period_passed(cookie) {
///     std::thread::yield_now(); // or do other work and come back
/// }
/// ```
pub fn grace_period_passed(cookie: Cookie) -> bool {
    domain().advance(cookie)
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
