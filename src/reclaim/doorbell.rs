//! The drainer's doorbell: a pending flag, a sleeping flag and one async-signal-safe wake-up (the
//! `irq_work` analog), in two modes ([`Wake`]).
//!
//! ## The protocol
//!
//! State: `pending` (a ring is outstanding), `seq` (the futex word the drainer sleeps on) and
//! `sleeping` (`AWAKE`, `POLLING`: asleep for a poll interval, or `IDLE`: asleep until rung or
//! nudged — with, while the pool keeps jobs for regrowth, a long timeout of its own: see
//! [`Sleep`]).
//!
//! Producers of jobs (teardowns in signal handlers) ring after their push:
//!
//! - [`Wake::Immediate`]: a push that found its list empty rings; a push onto a non-empty list
//!   rings only if a relaxed load sees `pending` clear (a backstop, see below);
//! - [`Wake::Lazy`]: only a push that takes its list to the high watermark rings; otherwise the
//!   drainer's next periodic wake-up finds the job.
//!
//! A ring: `pending.swap(true)`; if that swap set it, `seq += 1`, `fence(SeqCst)`, and a futex
//! wake **only if** `sleeping` is not `AWAKE`. While the drainer runs, a ring makes no syscall.
//!
//! Producers of batches (ordinary-context retirement, `batches.rs`) *nudge* when they put the
//! first object into an empty batch, and so does a drain cycle that leaves an owned box its
//! pusher has not linked yet (`owned_list.rs`; nobody rings for a link): `fence(SeqCst)`, and
//! a futex wake only if `sleeping` is `IDLE`. A polling drainer comes back by itself within
//! its period.
//!
//! A pool that starts keeping jobs for regrowth (`regrowth.rs`) wants the drainer to sleep
//! less long from then on: it wakes it from any sleep as a ring does (`wake_any`: `seq += 1`,
//! `fence(SeqCst)`, a futex wake if `sleeping` is not `AWAKE`), without setting `pending`; the
//! drainer's next sleep is then limited to a window.
//!
//! The drainer, after a cycle that found nothing to run:
//!
//! ```text
//! seen = seq;  sleeping = POLLING (a poll) or IDLE;  fence(SeqCst)
//! if !pending && !call_off(): futex_wait(seq == seen, timeout)
//! sleeping = AWAKE
//! ```
//!
//! and at the start of each cycle it clears `pending` (a swap) before it takes the lists.
//!
//! ## No lost wake-up
//!
//! A job push that finds its list empty comes after the take that emptied it, and that take came
//! after the drainer cleared `pending` (AcqRel on both list operations makes the push happen-after
//! the clear), so the producer's swap sees the clear or a later set. (A later cycle's take that
//! finds the list still empty writes nothing, `llist.rs`: a push it misses is not ordered
//! before that cycle's clear either, and its swap, which cannot come before that clear, reads
//! it or a later set.) If it finds the flag already
//! set, its swap precedes the drainer's next clear, which reads it (Acquire) and so the take after
//! that clear sees this push. (This is why the flag is tested with a swap and not a load: a load
//! that sees `true` is not ordered before the next clear, and the push could be stranded — a
//! store-buffering race.) If its swap sets the flag, the two `SeqCst` fences decide: either the
//! producer's fence comes first in their total order, and then the drainer's load of `pending`
//! after its own fence sees the set and it does not sleep; or the drainer's comes first, and the
//! producer's load of `sleeping` sees `POLLING`/`IDLE` (or the `AWAKE` of a drainer that is awake
//! again) and it wakes it. The futex word closes the last gap: `seq` was bumped before the fence,
//! and the drainer read `seen` before it published `sleeping` (Release; the producer's load is
//! Acquire), so a wake that comes before the drainer's `futex_wait` makes the kernel's value
//! check fail and the wait return at once. The same argument, with "work waiting" (batches, or
//! owned boxes not yet linked) in place of `pending`, covers a nudge; and with "jobs kept since
//! the drainer chose its sleep" in place of `pending`, `wake_any` (the drainer's `call_off`
//! checks that for every kind of sleep).
//!
//! For a push onto a non-empty list, the push that made the list non-empty is responsible. In the
//! kernel that producer cannot be preempted between its push and its ring; in user space it can
//! (or a handler can interrupt it there, or it can be cancelled), so a later push that sees
//! `pending` clear rings as a backstop; with the drainer awake that costs no syscall.
//!
//! In [`Wake::Lazy`] no job push below the watermark rings, so no argument is needed: the drainer
//! sleeps at most one period and then drains, so no job waits longer than the period plus one
//! drain cycle.
//!
//! An idle sleep may have a time limit (while the pool keeps jobs for regrowth): it publishes
//! `IDLE` all the same, so rings and nudges wake it as they wake one without. loom's futex
//! stand-in treats every timed wait as already over, so the models cannot tell whether a nudge
//! woke such a sleep; `tests/regrowth_window.rs` checks it with real threads (kit mutant G7).
//!
//! ## Concurrency table
//!
//! | operation | concurrent with ring | with clear/wait | restricted context |
//! |-----------|----------------------|-----------------|--------------------|
//! | `ring`, `after_push`, `nudge` | yes      | yes             | yes: one swap, one add, one fence, at most one `futex` syscall (only if the drainer sleeps; then one more add, to the wake count), errno preserved |
//! | `after_push_deferred`, then `Wakeup::make` | yes | yes   | yes: as `after_push`; the syscall may come after the doorbell's memory is gone (it takes the address only) |
//! | `clear`   | yes                  | single drainer per doorbell or several `drain()` callers: yes | no need |
//! | `sleep`   | yes                  | drainer only    | no (blocks)        |

use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};
use std::time::Duration;

/// When the drainer thread is woken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wake {
    /// The first object of each burst that a signal handler hands over wakes the drainer, if it
    /// sleeps (one `futex` syscall in that handler): the lowest latency.
    #[default]
    Immediate,
    /// The drainer wakes by itself every `period`; a handler wakes it only when one CPU's queue
    /// reaches `high_watermark` objects, or when it has to park an object in the emergency area
    /// (which should not happen: [`Stats::emergency`](crate::Stats)). In a steady signal storm
    /// the handlers make no syscall at all; an object waits at most `period` plus one drain
    /// cycle.
    Lazy {
        /// How often the drainer wakes by itself.
        period: Duration,
        /// Objects queued on one CPU that make a handler wake the drainer early.
        high_watermark: usize,
    },
}

impl Wake {
    /// [`Wake::Lazy`] with `period` and a high watermark of 256 objects per CPU.
    pub const fn lazy(period: Duration) -> Wake {
        Wake::Lazy {
            period,
            high_watermark: 256,
        }
    }
}

/// How the drainer sleeps ([`Doorbell::sleep`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sleep {
    /// For a poll interval: it comes back by itself; a ring wakes it sooner, a nudge does not.
    Poll(Duration),
    /// Until rung or nudged, or at most the time given (while the pool keeps jobs for
    /// regrowth, a trim should look at them again after a window).
    Idle(Option<Duration>),
}

/// `sleeping`: the drainer runs.
const AWAKE: u32 = 0;
/// `sleeping`: the drainer sleeps for a poll interval and will look again by itself.
const POLLING: u32 = 1;
/// `sleeping`: the drainer sleeps until rung or nudged (or a long time limit passes).
const IDLE: u32 = 2;

/// The pending flag, the sleeping flag and the futex word the drainer sleeps on.
pub struct Doorbell {
    pending: AtomicBool,
    seq: AtomicU32,
    sleeping: AtomicU32,
    /// Whether anybody ever sleeps on `seq`; with a manual drainer, ringing makes no syscall.
    has_sleeper: bool,
    /// Pushes that take a list to this length ring ([`Wake::Lazy`]); 1 for [`Wake::Immediate`].
    high_watermark: usize,
    /// Wake-up syscalls made by producers (a statistic, Relaxed).
    wakes: AtomicU64,
    /// Of `wakes`, those made in restricted context: by signal handlers (a statistic, Relaxed).
    restricted_wakes: AtomicU64,
    #[cfg(loom)]
    model: ModelFutex,
}

impl Doorbell {
    /// A doorbell; `has_sleeper` is false for a manual drainer (nobody sleeps, so no syscall).
    pub fn new(has_sleeper: bool, wake: Wake) -> Self {
        Doorbell {
            pending: AtomicBool::new(false),
            seq: AtomicU32::new(0),
            sleeping: AtomicU32::new(AWAKE),
            has_sleeper,
            high_watermark: match wake {
                Wake::Immediate => 0,
                Wake::Lazy { high_watermark, .. } => high_watermark,
            },
            wakes: AtomicU64::new(0),
            restricted_wakes: AtomicU64::new(0),
            #[cfg(loom)]
            model: ModelFutex::new(),
        }
    }

    /// Called by a producer after pushing a job onto a list that held `before` jobs. Returns
    /// whether it issued a wake syscall. Async-signal-safe.
    ///
    /// Immediate mode: a push onto an empty list must ring (see the module docs); a push onto a
    /// non-empty list rings only if it sees the flag clear: a backstop for the case where the
    /// producer that made the list non-empty stalls (preempted, or interrupted by us) before its
    /// own ring. Lazy mode: only the push that reaches the high watermark rings.
    #[inline]
    pub fn after_push(&self, before: usize) -> bool {
        self.after_push_deferred(before).map(Wakeup::make).is_some()
    }

    /// [`after_push`](Self::after_push) up to the wake-up syscall, which it leaves to the caller
    /// ([`Wakeup::make`]), who may make it after its own last access to this doorbell's memory:
    /// the syscall needs only an address (see [`Wakeup`]). Async-signal-safe.
    #[inline]
    pub fn after_push_deferred(&self, before: usize) -> Option<Wakeup> {
        if self.quiet_after_push(before) {
            return None;
        }
        self.ring_after_push()
    }

    /// Whether a push onto a list that held `before` objects may skip the ring
    /// ([`after_push`](Self::after_push) says when it may). A caller that answers `false` rings
    /// with [`ring_deferred`](Self::ring_deferred). Async-signal-safe.
    #[inline]
    pub fn quiet_after_push(&self, before: usize) -> bool {
        if self.high_watermark > 0 {
            return before + 1 != self.high_watermark;
        }
        self.quiet_after_push_immediate(before == 0)
    }

    /// [`quiet_after_push`](Self::quiet_after_push) for a caller that knows this doorbell has no
    /// high watermark ([`Wake::Immediate`]), and so needs only whether the list was empty before
    /// its push. Async-signal-safe.
    #[inline]
    pub fn quiet_after_push_immediate(&self, was_empty: bool) -> bool {
        debug_assert_eq!(self.high_watermark, 0);
        // Relaxed: only a filter for the backstop; correctness rests on the empty-list ring.
        !was_empty && self.pending.load(Ordering::Relaxed)
    }

    /// [`ring`](Self::ring), deferred and out of line: only the first push of a burst gets here,
    /// and keeping it out of the push leaves that path a leaf function with no registers to save.
    #[cold]
    #[inline(never)]
    fn ring_after_push(&self) -> Option<Wakeup> {
        self.ring_deferred()
    }

    /// Sets the pending flag and, if this call set it and the drainer sleeps, wakes it. Returns
    /// whether it issued a wake syscall. Async-signal-safe.
    #[inline]
    pub fn ring(&self) -> bool {
        self.ring_deferred().map(Wakeup::make).is_some()
    }

    /// [`ring`](Self::ring) up to the syscall, which it returns for the caller to make (after
    /// its own last access to this doorbell's memory, if it likes: see [`Wakeup`]).
    /// Async-signal-safe.
    #[inline]
    pub fn ring_deferred(&self) -> Option<Wakeup> {
        // An RMW, never a plain load: if we find the flag already set, our swap must come before
        // the drainer's next clear in the flag's modification order, so that the clear reads our
        // write (Release) and the take after it sees our push. A load that sees `true` could be
        // ordered after that clear by coherence alone and the push would be stranded.
        // AcqRel: Acquire orders us after the drainer's last clear; Release publishes our push to
        // the drainer's next clear (Acquire).
        if self.pending.swap(true, Ordering::AcqRel) {
            return None;
        }
        self.wake_if_asleep(POLLING)
    }

    /// Tells the drainer that work appeared it would not otherwise look for (the first object of
    /// an empty batch): wakes it only if it sleeps idle ([`Sleep::Idle`], with a time limit or
    /// not), not from a poll. Returns whether a syscall was made.
    #[inline]
    pub fn nudge(&self) -> bool {
        self.wake_if_asleep(IDLE).map(Wakeup::make).is_some()
    }

    /// Wakes the drainer from any sleep, a poll included, without ringing: for a change in how
    /// long it should sleep (jobs the pool started keeping, which a lazy drainer asleep for its
    /// period would otherwise see only at the end of it). Returns whether a syscall was made.
    pub fn wake_any(&self) -> bool {
        self.wake_if_asleep(POLLING).map(Wakeup::make).is_some()
    }

    /// Bumps `seq` and wakes the drainer if `sleeping` is at least `min` (POLLING: any sleep;
    /// IDLE: only an idle one), counting the wake; the syscall itself is left to the caller.
    /// The caller has published its work (`pending`, or a batch).
    fn wake_if_asleep(&self, min: u32) -> Option<Wakeup> {
        if !self.has_sleeper {
            return None;
        }
        // Release: pairs with the drainer's Acquire load of `seq` in `sleep` (a `seen` that
        // includes this bump comes with our work). The fences below carry the argument in every
        // case but one: the drainer's load reading this bump although its fence comes first in
        // the SeqCst order (load buffering); then only this pair makes it see our work instead
        // of sleeping past our wake. loom does not explore load buffering and cannot check this
        // pair (mutation kit 48, 49). The value check in `futex_wait` needs the bump before the
        // fence.
        self.seq.fetch_add(1, Ordering::Release);
        // The producer's fence of the module docs' store-buffering argument: with the drainer's
        // fence in `sleep`, either it sees our work or we see it asleep. (loom checks this pair.)
        fence(Ordering::SeqCst);
        // Acquire: pairs with the Release store of `sleeping` in `sleep`, so the drainer's load
        // of `seen` comes before our bump in `seq`'s modification order.
        if self.sleeping.load(Ordering::Acquire) < min {
            return None;
        }
        // Relaxed: statistics. Counted before the syscall, which may come after the last access
        // to this doorbell's memory. (The depth is a `const` thread-local without a destructor:
        // safe to read in a handler; under loom it is the model's thread-local.)
        self.wakes.fetch_add(1, Ordering::Relaxed);
        if crate::restricted::is_active() {
            self.restricted_wakes.fetch_add(1, Ordering::Relaxed);
        }
        Some(self.wakeup())
    }

    /// A wake-up of whoever sleeps on `seq`, to make now or a little later.
    fn wakeup(&self) -> Wakeup {
        Wakeup {
            #[cfg(not(loom))]
            word: self.seq.as_ptr(),
            #[cfg(loom)]
            bell: self,
        }
    }

    /// Wake-up syscalls producers have made (`ring`, `after_push`, `nudge`; a snapshot). Safe
    /// anywhere.
    pub fn wakes(&self) -> u64 {
        // Relaxed: a statistic.
        self.wakes.load(Ordering::Relaxed)
    }

    /// Of [`wakes`](Self::wakes), those made in restricted context (a snapshot). Safe anywhere.
    pub fn restricted_wakes(&self) -> u64 {
        // Relaxed: a statistic.
        self.restricted_wakes.load(Ordering::Relaxed)
    }

    /// Bumps `seq` and wakes the sleeper unconditionally (shutdown); returns whether a syscall was
    /// made.
    pub fn wake(&self) -> bool {
        // Release: a drainer that loads this `seq` (Acquire) sees what we did before.
        self.seq.fetch_add(1, Ordering::Release);
        if !self.has_sleeper {
            return false;
        }
        self.wakeup().make();
        true
    }

    /// Clears the pending flag; the drainer calls this before it takes the lists.
    #[inline]
    pub fn clear(&self) {
        // AcqRel: Acquire synchronises with the producer swap that set the flag (and so with its
        // push); Release orders later producers' swaps after this clear.
        self.pending.swap(false, Ordering::AcqRel);
    }

    /// Whether a ring is outstanding.
    #[cfg(any(test, loom))]
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Sleeps as `how` says, unless a ring is outstanding or `call_off`, asked once the sleep is
    /// announced, says not to (work already waiting, for an idle sleep). Ordinary context only;
    /// the drainer's side of the module docs' protocol.
    pub(crate) fn sleep(&self, how: Sleep, call_off: impl FnOnce() -> bool) {
        // Acquire: pairs with the producers' Release bump.
        let seen = self.seq.load(Ordering::Acquire);
        let (state, timeout) = match how {
            Sleep::Poll(interval) => (POLLING, Some(interval)),
            Sleep::Idle(limit) => (IDLE, limit),
        };
        // Release: see `wake_if_asleep`.
        self.sleeping.store(state, Ordering::Release);
        // The drainer's fence of the store-buffering argument (module docs).
        fence(Ordering::SeqCst);
        // Relaxed: the fences carry the argument. What `call_off` looks at for each kind of
        // sleep is the drainer's choice (`drainer.rs`: a poll must not look at batches).
        if !self.pending.load(Ordering::Relaxed) && !call_off() {
            self.wait(seen, timeout);
        }
        // Relaxed: a producer that still sees us asleep makes one spare syscall, nothing worse.
        self.sleeping.store(AWAKE, Ordering::Relaxed);
    }

    /// Sleeps while `seq` still equals `seen` (returns at once otherwise), at most `timeout`.
    fn wait(&self, seen: u32, timeout: Option<Duration>) {
        #[cfg(not(loom))]
        {
            let ts = timeout.map(|t| libc::timespec {
                tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
                tv_nsec: t.subsec_nanos() as libc::c_long,
            });
            let ts_ptr = ts
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `seq` is a live, aligned u32 for the duration of the call; FUTEX_WAIT only
            // reads it. `ts_ptr` is null (no timeout) or points to `ts`, alive across the call.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.seq.as_ptr(),
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    seen,
                    ts_ptr,
                );
            }
        }
        #[cfg(loom)]
        self.model.wait(&self.seq, seen, timeout.is_some());
    }
}

/// A futex wake-up decided on (and counted) by a ring or a nudge, not yet made.
///
/// Making it needs no memory of the doorbell's: `FUTEX_WAKE` on a private futex is keyed by the
/// word's address alone and reads nothing at it. So a producer may make it after its last access
/// to the runtime state, even if that state is freed in between (an owned box's push:
/// `owned_list.rs`). If the address is reused by then for another futex word, whoever waits on
/// that one sees one spurious wake-up, which every futex waiter must tolerate anyway (it
/// rechecks its condition); glibc's own unlock paths rely on the same.
#[must_use = "a wake-up decided on must be made"]
pub struct Wakeup {
    /// The futex word (`seq`), as an address only.
    #[cfg(not(loom))]
    word: *mut u32,
    /// Models wake through the doorbell's model futex: models keep the runtime alive.
    #[cfg(loom)]
    bell: *const Doorbell,
}

impl Wakeup {
    /// Makes the wake-up syscall. Async-signal-safe (errno preserved).
    #[cfg(not(loom))]
    pub fn make(self) {
        // Put back when we return: a wake from a signal handler stays invisible to the code it
        // interrupted.
        let _errno = crate::errno::ErrnoGuard::save();
        // The one syscall sigdrop makes in restricted context. Under RealtimeSanitizer
        // (`--cfg sigdrop_rtsan`, see scripts/rtsan.sh) it is the only exemption — unless
        // `--cfg sigdrop_rtsan_strict` removes it, to show that lazy wake needs none: a futex wake
        // is async-signal-safe and never blocks, but RTSan flags every syscall.
        #[cfg(all(sigdrop_rtsan, not(sigdrop_rtsan_strict)))]
        // SAFETY: RTSan's runtime entry points take no arguments; they toggle its checks for the
        // calling thread and are paired below.
        unsafe {
            rtsan::__rtsan_disable()
        };
        // SAFETY: FUTEX_WAKE on a private futex takes the word's address as a key and touches no
        // memory (see the type's docs): the address may even be freed by now.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.word,
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            );
        }
        #[cfg(all(sigdrop_rtsan, not(sigdrop_rtsan_strict)))]
        // SAFETY: pairs with the `__rtsan_disable` above.
        unsafe {
            rtsan::__rtsan_enable()
        };
    }

    /// Makes the wake-up (the model futex's).
    #[cfg(loom)]
    pub fn make(self) {
        // SAFETY: loom models keep the runtime, and so the doorbell, alive until they end.
        unsafe { (*self.bell).model.wake() };
    }
}

/// RealtimeSanitizer's runtime interface (linked in by `-Zsanitizer=realtime`).
#[cfg(all(sigdrop_rtsan, not(sigdrop_rtsan_strict)))]
mod rtsan {
    unsafe extern "C" {
        pub fn __rtsan_disable();
        pub fn __rtsan_enable();
    }
}

/// A futex for models: `wait` checks the word and sleeps atomically with respect to `wake`.
#[cfg(loom)]
struct ModelFutex {
    lock: crate::sync::Mutex<()>,
    cond: crate::sync::Condvar,
}

#[cfg(loom)]
impl ModelFutex {
    fn new() -> Self {
        ModelFutex {
            lock: crate::sync::Mutex::new(()),
            cond: crate::sync::Condvar::new(),
        }
    }

    /// A timed wait is modelled as a timeout that has already elapsed: it returns at once, so
    /// models see the drainer come back by itself, which is all a period promises.
    fn wait(&self, word: &AtomicU32, seen: u32, timed: bool) {
        if timed {
            loom::thread::yield_now();
            return;
        }
        let guard = self.lock.lock().unwrap();
        // Acquire, not SeqCst: the kernel's value check gives no more than this in the
        // language's model, so the models check that the fences carry the no-lost-wake-up
        // argument (a SeqCst load here would hide a missing fence from loom).
        if word.load(Ordering::Acquire) == seen {
            drop(self.cond.wait(guard).unwrap());
        }
    }

    fn wake(&self) {
        let _guard = self.lock.lock().unwrap();
        self.cond.notify_all();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn ring_sets_pending_once() {
        let bell = Doorbell::new(false, Wake::Immediate);
        assert!(!bell.is_pending());
        bell.ring();
        assert!(bell.is_pending());
        bell.ring();
        bell.clear();
        assert!(!bell.is_pending());
    }

    /// A drainer-like thread that sleeps idle until `bell` is rung, returned once it sleeps (so
    /// that the next ring must wake it with a syscall).
    fn asleep_until_rung(bell: &Arc<Doorbell>) -> std::thread::JoinHandle<()> {
        let sleeper = {
            let bell = bell.clone();
            std::thread::spawn(move || {
                while !bell.is_pending() {
                    bell.sleep(Sleep::Idle(None), || false);
                }
            })
        };
        while bell.sleeping.load(Ordering::Acquire) != IDLE {
            std::thread::yield_now();
        }
        sleeper
    }

    #[test]
    fn ring_wakes_a_sleeper() {
        let bell = Arc::new(Doorbell::new(true, Wake::Immediate));
        let sleeper = asleep_until_rung(&bell);
        assert!(bell.ring());
        sleeper.join().unwrap();
        assert_eq!(
            (bell.wakes(), bell.restricted_wakes()),
            (1, 0),
            "ordinary context"
        );
    }

    #[test]
    fn a_ring_in_restricted_context_counts_as_a_handlers_wake() {
        let bell = Arc::new(Doorbell::new(true, Wake::Immediate));
        {
            // Nobody sleeps: no syscall, nothing counted.
            let _nmi = crate::restricted::enter();
            assert!(!bell.ring());
        }
        assert_eq!((bell.wakes(), bell.restricted_wakes()), (0, 0));
        for round in 1..=2u64 {
            bell.clear();
            let sleeper = asleep_until_rung(&bell);
            let restricted = round == 2;
            let woke = {
                let _nmi = restricted.then(crate::restricted::enter);
                bell.ring()
            };
            assert!(woke);
            sleeper.join().unwrap();
            assert_eq!(
                (bell.wakes(), bell.restricted_wakes()),
                (round, u64::from(restricted)),
                "round {round}"
            );
        }
    }

    #[test]
    fn no_syscall_while_the_drainer_is_awake() {
        let bell = Doorbell::new(true, Wake::Immediate);
        assert!(
            !bell.ring(),
            "nobody sleeps: the ring must not make a syscall"
        );
        assert!(!bell.nudge());
    }

    #[test]
    fn lazy_rings_only_at_the_watermark() {
        let bell = Doorbell::new(
            false,
            Wake::Lazy {
                period: Duration::from_millis(10),
                high_watermark: 3,
            },
        );
        bell.after_push(0);
        bell.after_push(1);
        assert!(!bell.is_pending());
        bell.after_push(2);
        assert!(bell.is_pending());
    }
}
