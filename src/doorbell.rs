//! The drainer's doorbell: a pending flag and one async-signal-safe wake-up (the `irq_work`
//! analog).
//!
//! ## The protocol
//!
//! Producers (restricted teardowns, anywhere):
//!
//! 1. push the job on this CPU's list (`llist.rs`); the push reports whether the list was empty;
//! 2. if it was empty: set `pending` with a swap and, if this swap is the one that set it, bump
//!    `seq` and issue one futex wake on `seq`;
//! 3. if it was not empty: the same, but only if a relaxed load sees `pending` clear (a
//!    backstop, see below).
//!
//! The drainer:
//!
//! 1. clears `pending` (a swap), then takes every list;
//! 2. if it found nothing, loads `seq`, checks `pending` once more, and sleeps in `futex_wait`
//!    only while `seq` still holds the value it loaded.
//!
//! No lost wake-up: a push that finds its list empty comes after the take that emptied it, and
//! that take came after the drainer cleared `pending` (AcqRel on both list operations makes the
//! push happen-after the clear), so the producer's swap sees the clear or a later set. If it sets
//! the flag, it rings: the drainer either sees the new `seq` or `pending` before sleeping, or the
//! kernel's value check in `futex_wait` sees the new `seq`, or the wake finds it asleep. If it finds
//! the flag already set, its swap precedes the drainer's next clear, which reads it (Acquire) and
//! so the take after that clear sees this push. (This is why the flag is tested with a swap and not
//! a load: a load that sees `true` is not ordered before the next clear, and the push could be
//! stranded — a store-buffering race.) For a push onto a non-empty list, the push that made the
//! list non-empty is responsible. In the kernel that producer cannot be preempted between its
//! push and its ring; in user space it can (or a handler can interrupt it there, or it can be
//! cancelled), so a later push that sees `pending` clear rings as a backstop. The backstop is not
//! needed for correctness of the empty-list case, only to bound the delay.
//!
//! So a burst of offloads costs at most one wake per drain cycle (only the swap that sets the flag
//! wakes), and while the drainer is pending other pushes only load the flag.
//!
//! ## Concurrency table
//!
//! | operation | concurrent with ring | with clear/wait | restricted context |
//! |-----------|----------------------|-----------------|--------------------|
//! | `ring`    | yes                  | yes             | yes: one atomic swap, one add, one `futex` syscall, errno preserved |
//! | `clear`   | yes                  | single drainer per doorbell or several `drain()` callers: yes | no need |
//! | `wait`    | yes                  | drainer only    | no (blocks)        |

use crate::sync::{AtomicBool, AtomicU32, Ordering};

/// The pending flag and the futex word the drainer sleeps on.
pub struct Doorbell {
    pending: AtomicBool,
    seq: AtomicU32,
    /// Whether anybody ever sleeps on `seq`; with a manual drainer, ringing makes no syscall.
    has_sleeper: bool,
    #[cfg(loom)]
    model: ModelFutex,
}

impl Doorbell {
    /// A doorbell; `has_sleeper` is false for a manual drainer (nobody sleeps, so no syscall).
    pub fn new(has_sleeper: bool) -> Self {
        Doorbell {
            pending: AtomicBool::new(false),
            seq: AtomicU32::new(0),
            has_sleeper,
            #[cfg(loom)]
            model: ModelFutex::new(),
        }
    }

    /// Called by a producer after its push; `was_empty` is what the push reported. Returns
    /// whether it issued a wake syscall. Async-signal-safe.
    ///
    /// A push onto an empty list must ring (see the module docs). A push onto a non-empty list
    /// rings only if it sees the flag clear: a backstop for the case where the producer that
    /// made the list non-empty stalls (preempted, or interrupted by us) before its own ring.
    /// It costs one relaxed load while the drainer is pending, and at most one extra swap per
    /// drain cycle otherwise.
    #[inline]
    pub fn after_push(&self, was_empty: bool) -> bool {
        // Relaxed: only a filter for the backstop; correctness rests on the empty-list ring.
        if !was_empty && self.pending.load(Ordering::Relaxed) {
            return false;
        }
        self.ring()
    }

    /// Sets the pending flag and, if this call set it, wakes the drainer. Returns whether it
    /// issued a wake syscall. Async-signal-safe.
    #[inline]
    pub fn ring(&self) -> bool {
        // An RMW, never a plain load: if we find the flag already set, our swap must come before
        // the drainer's next clear in the flag's modification order, so that the clear reads our
        // write (Release) and the take after it sees our push. A load that sees `true` could be
        // ordered after that clear by coherence alone and the push would be stranded.
        // AcqRel: Acquire orders us after the drainer's last clear; Release publishes our push to
        // the drainer's next clear (Acquire).
        if self.pending.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.wake()
    }

    /// Bumps `seq` and wakes the sleeper, if any; returns whether a syscall was made.
    pub fn wake(&self) -> bool {
        // Release: a drainer that loads this `seq` (Acquire) sees `pending` set.
        self.seq.fetch_add(1, Ordering::Release);
        if !self.has_sleeper {
            return false;
        }
        self.futex_wake();
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
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Reads the sequence word; pass the result to [`wait`](Self::wait).
    pub fn seq(&self) -> u32 {
        // Acquire: pairs with the Release increment in `wake`.
        self.seq.load(Ordering::Acquire)
    }

    /// Sleeps while `seq` still equals `seen` (returns at once otherwise). Ordinary context only.
    pub fn wait(&self, seen: u32) {
        #[cfg(not(loom))]
        {
            // SAFETY: `seq` is a live, aligned u32 for the duration of the call; FUTEX_WAIT only
            // reads it. A null timeout means "no timeout".
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    self.seq.as_ptr(),
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    seen,
                    std::ptr::null::<libc::timespec>(),
                );
            }
        }
        #[cfg(loom)]
        self.model.wait(&self.seq, seen);
    }

    #[cfg(not(loom))]
    fn futex_wake(&self) {
        // SAFETY: `__errno_location` returns this thread's errno; saving and restoring it keeps a
        // wake from a signal handler invisible to the code it interrupted.
        let errno = unsafe { libc::__errno_location() };
        // SAFETY: as above; reading our own errno.
        let saved = unsafe { *errno };
        // The one syscall sigdrop makes in restricted context. Under RealtimeSanitizer
        // (`--cfg sigdrop_rtsan`, see scripts/rtsan.sh) it is the only exemption: a futex wake
        // is async-signal-safe and never blocks, but RTSan flags every syscall.
        #[cfg(sigdrop_rtsan)]
        // SAFETY: RTSan's runtime entry points take no arguments; they toggle its checks for the
        // calling thread and are paired below.
        unsafe {
            rtsan::__rtsan_disable()
        };
        // SAFETY: FUTEX_WAKE on a live aligned u32 wakes at most one waiter and touches no memory.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.seq.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            );
        }
        #[cfg(sigdrop_rtsan)]
        // SAFETY: pairs with the `__rtsan_disable` above.
        unsafe {
            rtsan::__rtsan_enable()
        };
        // SAFETY: restoring the errno saved above, on the same thread.
        unsafe { *errno = saved };
    }

    #[cfg(loom)]
    fn futex_wake(&self) {
        self.model.wake();
    }
}

/// RealtimeSanitizer's runtime interface (linked in by `-Zsanitizer=realtime`).
#[cfg(sigdrop_rtsan)]
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

    fn wait(&self, word: &AtomicU32, seen: u32) {
        let guard = self.lock.lock().unwrap();
        if word.load(Ordering::SeqCst) == seen {
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
        let bell = Doorbell::new(false);
        assert!(!bell.is_pending());
        let before = bell.seq();
        bell.ring();
        assert!(bell.is_pending());
        bell.ring();
        assert_eq!(bell.seq(), before.wrapping_add(1));
        bell.clear();
        assert!(!bell.is_pending());
    }

    #[test]
    fn ring_wakes_a_sleeper() {
        let bell = Arc::new(Doorbell::new(true));
        let seen = bell.seq();
        let sleeper = {
            let bell = bell.clone();
            std::thread::spawn(move || {
                while bell.seq() == seen {
                    bell.wait(seen);
                }
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        assert!(bell.ring());
        sleeper.join().unwrap();
    }
}
