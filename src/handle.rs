//! The public handle: `Runtime`, its lifetime, and the process-wide default.

use crate::builder::{Builder, Policy};
use crate::error::Error;
use crate::fork;
use crate::reclaim::drainer::{self, Drainer, DrainerThread, Joined};
use crate::restricted;
use crate::runtime::Inner;
use crate::stats::Stats;
use crate::sync::{Arc, AtomicU32, AtomicUsize, Mutex, Ordering};
use std::mem::ManuallyDrop;
// The handle itself is a std `Arc` even under loom: the last-drop path needs
// `Arc::decrement_strong_count`, which loom's `Arc` lacks. The counts that decide who shuts the
// runtime down (`handles`, `forgotten`) are the shim's atomics; `tests/handle_lifetime.rs`
// races restricted and ordinary drops with real threads.
use std::sync::Arc as StdArc;

/// A handle to a sigdrop runtime: cheap to clone, `Send + Sync`.
///
/// Dropping the last handle (slots hold one each) stops the drainer and runs every pending
/// destructor (see [`shutdown`](Runtime::shutdown) for the exceptions and how long it may
/// take). A handle dropped in restricted context (a slot dropped inside a signal handler,
/// say) frees nothing there: its reference is handed to whoever drops the last handle, and if it
/// *was* the last handle the runtime is deliberately leaked rather than shut down in a handler.
///
/// ```
/// use sigdrop::{Drainer, RefSlot, Runtime, restricted};
///
/// let rt = Runtime::builder().drainer(Drainer::Manual).build()?;
/// let slot = RefSlot::new(&rt);
/// slot.xchg(Some(Box::new(5u32)))?;
/// {
///     let _restricted = restricted::enter();      // as a signal handler would
///     drop(slot.take());                   // deferred: no destructor runs here
/// }
/// assert_eq!(rt.drain()?, 1);              // ran on this thread, in ordinary context
/// # Ok::<(), sigdrop::Error>(())
/// ```
pub struct Runtime {
    handle: ManuallyDrop<StdArc<Handle>>,
}

/// What every `Runtime` handle points to. `handles` counts the handles (the `Arc` count also
/// includes clones that a signal handler had to forget, see `Drop for Runtime`).
struct Handle {
    inner: Arc<Inner>,
    thread: Mutex<Option<DrainerThread>>,
    /// Live `Runtime` handles.
    handles: AtomicUsize,
    /// `Arc` references given up in restricted context without being decremented.
    forgotten: AtomicUsize,
    /// The process's fork count when `thread` was started: if it has moved, this is a child
    /// process, where that thread does not exist.
    forks: AtomicU32,
}

impl Runtime {
    pub(crate) fn from_parts(inner: Arc<Inner>, thread: Option<DrainerThread>) -> Runtime {
        Runtime {
            handle: ManuallyDrop::new(StdArc::new(Handle {
                inner,
                thread: Mutex::new(thread),
                handles: AtomicUsize::new(1),
                forgotten: AtomicUsize::new(0),
                forks: AtomicU32::new(fork::count()),
            })),
        }
    }
}

impl Clone for Runtime {
    /// Another handle. May be called from a signal handler (two atomic increments).
    fn clone(&self) -> Self {
        // Relaxed: like `Arc::clone`, a new handle is made from an existing one, which keeps the
        // count above zero; nothing is published.
        self.handle.handles.fetch_add(1, Ordering::Relaxed);
        Runtime {
            handle: ManuallyDrop::new(StdArc::clone(&self.handle)),
        }
    }
}

impl Drop for Runtime {
    /// Dropping the last handle shuts the runtime down, as [`shutdown`](Runtime::shutdown)
    /// describes: stops the drainer, runs every pending destructor, frees the pool. That only
    /// ever happens in ordinary context, and it never waits for readers: once the last handle is
    /// gone so is every slot, so no reader can still borrow any of the runtime's objects, and
    /// objects that were waiting for a grace period are destroyed at once.
    ///
    /// In restricted context a handle is given up without touching memory: its `Arc` reference
    /// is forgotten (and counted, so the last ordinary drop can release it), and if it was the
    /// last handle the runtime is leaked rather than shut down inside a signal handler.
    fn drop(&mut self) {
        self.release();
    }
}

/// What shutting a runtime down did: from [`Runtime::shutdown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Destructors that ran from the moment the last handle went until the shutdown returned,
    /// on any thread.
    pub destroyed: u64,
    /// Objects still waiting when the shutdown returned: the drainer thread holds them and runs
    /// them when the destructor it is running returns (unless the process exits first), with
    /// whatever that destructor hands over. Zero unless `drainer_waited` is false. Like
    /// [`Stats::pending`](crate::Stats::pending), it leaves out [`Owned`](crate::Owned) and
    /// [`Shared`](crate::Shared) boxes, which are counted nowhere on their way to the drainer
    /// (so that handing one over stays one swap); the drainer runs those too.
    pub left_to_drainer: usize,
    /// Whether the shutdown waited for the drainer thread until it finished (also true with
    /// [`Drainer::Manual`], which has none). False when it gave up on a drainer stuck in one
    /// destructor (see [`Builder::shutdown_timeout`]), when it ran on a drainer thread (a
    /// destructor dropped the last handle: a drainer never blocks waiting for another), and in
    /// a child process after `fork`, where the parent's drainer thread does not exist.
    pub drainer_waited: bool,
}

impl Runtime {
    /// Gives up this handle and, if it was the last, shuts the runtime down and says what that
    /// did; `None` if other handles (or slots, which hold one each) remain, or in restricted
    /// context, where the last handle is leaked rather than shut down (as dropping it would).
    /// Dropping the last handle does the same and discards the report.
    ///
    /// The shutdown tells the drainer thread to stop and waits for it while it keeps finishing
    /// destructors, then runs every destructor still pending on the calling thread. It never
    /// waits for readers, and it is bounded:
    ///
    /// - a drainer thread stuck in one destructor for longer than
    ///   [`Builder::shutdown_timeout`] (default one second) is no longer waited for: the
    ///   shutdown runs everything else and returns, leaving that thread the objects it holds
    ///   (`left_to_drainer`);
    /// - on a drainer thread (a destructor dropped the last handle, of this runtime or another)
    ///   it never waits for a drainer: two runtimes whose objects own each other's last handles
    ///   do not wait for each other;
    /// - in a child process after `fork` it does not wait for the parent's drainer thread, which
    ///   does not exist there;
    /// - an [`Owned`](crate::Owned) box some thread is in the middle of dropping in a handler
    ///   (preempted between putting it on its CPU's list and linking it) is waited for, yielding,
    ///   at most one second (or the shutdown timeout, if shorter), and run with the boxes dropped
    ///   before it; past that, or in a process forked since the runtime was built, they are
    ///   leaked, as a box dropped after the shutdown would be.
    ///
    /// Not for signal handlers (it runs destructors); there it only gives up the handle.
    ///
    /// ```
    /// use sigdrop::{RefSlot, Runtime, restricted};
    ///
    /// let rt = Runtime::new()?;
    /// let slot = RefSlot::new(&rt);
    /// slot.xchg(Some(Box::new(1u32)))?;
    /// {
    ///     let _restricted = restricted::enter();
    ///     slot.clear(); // handed to the drainer
    /// }
    /// drop(slot);
    /// let report = rt.shutdown().expect("the last handle");
    /// assert_eq!(report.left_to_drainer, 0);
    /// assert!(report.drainer_waited);
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    pub fn shutdown(self) -> Option<ShutdownReport> {
        let mut this = ManuallyDrop::new(self);
        this.release()
    }

    /// Gives up this handle (`Drop` and `shutdown`); shuts down if it was the last. The handle
    /// must not be used afterwards.
    fn release(&mut self) -> Option<ShutdownReport> {
        let handle = &*self.handle;
        if restricted::is_active() {
            // Count the forgotten reference *before* giving up the handle, so that whoever drops
            // the last handle (Acquire, below) sees it.
            handle.forgotten.fetch_add(1, Ordering::Relaxed);
            // Relaxed: a first guess for the CAS.
            let mut n = handle.handles.load(Ordering::Relaxed);
            loop {
                if n == 1 {
                    // The last handle, in a signal handler: leak the runtime.
                    return None;
                }
                // Release: orders the `forgotten` increment before the decrement that the last
                // dropper's AcqRel `fetch_sub` reads.
                match handle.handles.compare_exchange_weak(
                    n,
                    n - 1,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return None, // the `Arc` reference is forgotten, never decremented
                    Err(actual) => n = actual,
                }
            }
        }
        let mut report = None;
        // AcqRel: Release for our own uses of the runtime; Acquire (for the last dropper) to see
        // every other handle's uses and `forgotten` increments.
        if handle.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            report = Some(handle.shut_down());
            let forgotten = handle.forgotten.load(Ordering::Relaxed);
            for _ in 0..forgotten {
                // SAFETY: each counted forgotten handle still owns one strong reference to this
                // `Arc` (it was never decremented), and no handle remains to use them: we drop
                // them on their owners' behalf. Our own reference keeps the count above zero.
                unsafe { StdArc::decrement_strong_count(StdArc::as_ptr(&self.handle)) };
            }
        }
        // SAFETY: callers never use `self.handle` again (`Drop`, or a `ManuallyDrop` in
        // `shutdown`).
        unsafe { ManuallyDrop::drop(&mut self.handle) };
        report
    }
}

impl Handle {
    /// Stops the drainer thread (waiting for it as `Runtime::shutdown` says) and runs what is
    /// left on this thread. The drainer never waits for readers, so the wait is for the
    /// destructors it is running. The runtime state itself goes when the last reference to it
    /// does: this thread's, or the drainer's when it exits.
    fn shut_down(&self) -> ShutdownReport {
        let before = self.inner.destroyed();
        // Release: the drainer's Acquire load of `stop` sees everything before this.
        self.inner.stop.store(true, Ordering::Release);
        self.inner.doorbell.wake();
        let thread = self.lock_thread().take();
        let joined = match thread {
            None => Joined::Finished,
            Some(thread) if self.forked() => {
                self.forget_parents_drainer(thread);
                Joined::Gone
            }
            Some(thread) => thread.stop(self.inner.cfg.shutdown_timeout, || self.inner.heartbeat()),
        };
        // Owned boxes handed over in handlers keep the runtime state alive from its own lists,
        // so `Drop for Inner` would never come to run them: run them now (with a manual drainer
        // nobody else will; with a thread, this catches boxes queued after its last cycle, and
        // everything a drainer we did not wait for has not taken).
        while self.inner.drain() > 0 {}
        self.inner.settle_stalled_boxes();
        ShutdownReport {
            destroyed: self.inner.destroyed() - before,
            left_to_drainer: self.inner.pending(),
            drainer_waited: joined == Joined::Finished,
        }
    }

    /// Whether this is a child process whose drainer thread (if any) was the parent's.
    #[inline]
    fn forked(&self) -> bool {
        // Relaxed: see `fork::count`; our own store below is ordered by the `thread` lock.
        self.forks.load(Ordering::Relaxed) != fork::count()
    }

    /// In a child process after `fork`: starts a drainer thread in place of the parent's, which
    /// does not exist here. Ordinary context only (a handler cannot start a thread; the next
    /// ordinary use will). (Loom builds have no `fork`.)
    #[cfg(not(loom))]
    #[cold]
    #[inline(never)]
    fn after_fork(&self) {
        if restricted::is_active() {
            return;
        }
        // One thread of the child wins the respawn (Relaxed: the CAS only picks the winner; the
        // `thread` lock orders the handle it stores).
        let seen = self.forks.load(Ordering::Relaxed);
        let now = fork::count();
        if seen == now
            || self
                .forks
                .compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        // The lock is held only for moments, never while the thread starts: another thread of
        // this child may call `fork` meanwhile, and its child must not inherit it taken.
        let old = self.lock_thread().take();
        let Some(old) = old else {
            return; // a manual drainer: nothing to start
        };
        self.forget_parents_drainer(old);
        self.inner.forget_others_inside();
        // If the thread cannot start (out of threads or memory), the runtime runs on as with
        // `Drainer::Manual` in this process: `Runtime::drain` and shutdown still run
        // everything, and a thread over the backlog bound runs cycles itself.
        let new = drainer::spawn(self.inner.clone(), self.inner.cfg.wake).ok();
        self.inner.set_has_thread(new.is_some());
        *self.lock_thread() = new;
    }

    /// In a child after `fork`: gives up the handle of the parent's drainer thread, which does
    /// not exist here, and the reference to the runtime state it held, which no thread here
    /// will give back (unless it had already let go when `fork` ran).
    fn forget_parents_drainer(&self, old: DrainerThread) {
        #[cfg(not(loom))]
        if old.held_state_at_fork() {
            // That reference was counted in the state's strong count (the drainer thread had not
            // yet dropped it when `fork` copied the process), and no thread in this process owns
            // it: we release it on its behalf.
            // SAFETY: one counted, unowned reference; the handle's own keeps the count above zero.
            unsafe { StdArc::decrement_strong_count(Arc::as_ptr(&self.inner)) };
        }
        old.forget();
    }

    fn lock_thread(&self) -> crate::sync::MutexGuard<'_, Option<DrainerThread>> {
        // Only `Option::take` and assignments happen under it: never inconsistent.
        self.thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("id", &self.id())
            .field("config", &self.inner().cfg)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(not(loom))]
static GLOBAL: std::sync::OnceLock<Runtime> = std::sync::OnceLock::new();

impl Runtime {
    /// A builder with the defaults: one shard per CPU, headroom 64, hysteresis 32, a regrowth
    /// window of one second, emergency capacity 64, at most 4096 objects pending, a drainer
    /// thread woken at once ([`Wake::Immediate`](crate::Wake::Immediate)), [`Policy::Auto`].
    /// May be called anywhere (it allocates nothing); building is for ordinary context.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A runtime with the default settings. Ordinary context only ([`Error::Restricted`] in a
    /// signal handler).
    pub fn new() -> Result<Runtime, Error> {
        Builder::default().build()
    }

    /// The process-wide default runtime, created with the default settings on first use (or
    /// with yours, by [`Builder::build_global`] before that).
    ///
    /// May be called from a signal handler once it exists (then it is one atomic load). Reaching
    /// it for the first time from restricted context returns [`Error::GlobalUninitialized`] and
    /// allocates nothing: touch it once in ordinary context, before installing the handler.
    #[cfg(not(loom))]
    pub fn global() -> Result<&'static Runtime, Error> {
        if let Some(rt) = GLOBAL.get() {
            return Ok(rt);
        }
        if restricted::is_active() {
            return Err(Error::GlobalUninitialized);
        }
        let rt = Runtime::new()?;
        // If another thread won the race, ours is dropped (and shut down) here.
        let _ = GLOBAL.set(rt);
        Ok(GLOBAL
            .get()
            .expect("set above or by the winner of the race"))
    }

    /// [`Runtime::global`] for the slots bound to it: the common case (it exists) inline, the
    /// first use out of line, so that a slot's exchange stays small enough to inline.
    #[cfg(not(loom))]
    #[inline]
    pub(crate) fn global_or_init() -> Result<&'static Runtime, Error> {
        match GLOBAL.get() {
            Some(rt) => Ok(rt),
            None => Runtime::global_cold(),
        }
    }

    #[cfg(not(loom))]
    #[cold]
    #[inline(never)]
    fn global_cold() -> Result<&'static Runtime, Error> {
        Runtime::global()
    }

    /// The process-wide runtime, which the caller knows exists (a global slot held an object).
    #[cfg(not(loom))]
    pub(crate) fn global_existing() -> &'static Runtime {
        GLOBAL
            .get()
            .expect("a global slot got the global runtime before it held an object")
    }

    /// The runtime state, for every operation on it. In a child process after `fork`, the first
    /// call in ordinary context starts the drainer thread the child lacks (one relaxed load and a
    /// comparison otherwise).
    #[inline]
    pub(crate) fn inner(&self) -> &Inner {
        #[cfg(not(loom))]
        if self.handle.forked() {
            self.handle.after_fork();
        }
        &self.handle.inner
    }

    /// The runtime state without the fork check, for restricted context, where the check can
    /// never act: `after_fork` returns at once there (a handler cannot start a thread; the next
    /// ordinary use does), so a teardown in a handler skips its loads.
    #[inline(always)]
    pub(crate) fn inner_in_restricted(&self) -> &Inner {
        debug_assert!(restricted::is_active());
        &self.handle.inner
    }

    /// The runtime state itself, for an [`Owned`](crate::Owned) box to count itself in.
    #[inline]
    pub(crate) fn inner_arc(&self) -> &Arc<Inner> {
        let _ = self.inner(); // the fork check
        &self.handle.inner
    }

    /// A snapshot of the gauges and counters. May be called from a signal handler (relaxed
    /// loads only).
    pub fn stats(&self) -> Stats {
        self.inner().stats()
    }

    /// The policy this runtime was built with. May be called from a signal handler.
    pub fn policy(&self) -> Policy {
        self.inner().cfg.policy
    }

    /// One drain cycle on the calling thread: runs every destructor deferred so far that can
    /// run now, returns jobs to the pool and trims it; returns how many destructors ran. With
    /// [`Drainer::Manual`](crate::Drainer::Manual) this is how deferred destructors run; with a
    /// drainer thread it is also allowed (each object is destroyed exactly once, by whichever
    /// drainer takes it).
    ///
    /// An [`Owned`](crate::Owned) box whose drop another thread is in the middle of (preempted
    /// for a moment between putting it on its CPU's list and linking it there) is left, with
    /// the boxes dropped before it on that CPU, for a later call once it is linked: a loop
    /// `while rt.drain()? > 0 {}` may stop before them.
    ///
    /// It never waits for readers: objects that left a [`ReadSlot`](crate::ReadSlot) are
    /// destroyed only once no read guard that could have seen them is alive, and those still
    /// borrowable stay for a later call (see [`drain_and_wait`](Self::drain_and_wait)). So it may
    /// be called while this thread holds a read guard.
    ///
    /// Not for signal handlers: returns [`Error::Restricted`] in restricted context.
    pub fn drain(&self) -> Result<usize, Error> {
        if restricted::is_active() {
            return Err(Error::Restricted);
        }
        Ok(self.inner().drain())
    }

    /// Runs every destructor deferred before the call, waiting for readers if some of those
    /// objects left a [`ReadSlot`](crate::ReadSlot) and may still be borrowed, and for the
    /// drainer thread (or any thread draining) if it had already taken some of them: when this
    /// returns, they have all been destroyed, by this call or by the thread that took them.
    /// It spins, then yields, never sleeps (like
    /// [`read::synchronize`](crate::read::synchronize)). Returns how many destructors this call
    /// ran itself. An object that another thread is handing over at the very moment of the call
    /// may be left for the next drain, and so may the [`Owned`](crate::Owned) boxes dropped
    /// before it on the same CPU (see [`drain`](Self::drain)).
    ///
    /// Called from a destructor that a drain is running, it does not wait for other drains in
    /// progress (one of them may be waiting for this one): it runs what it finds and waits for
    /// readers only. Do not call it while holding a lock that destructors of objects already
    /// handed over may take: it waits for them; and a destructor that never returns (it blocks
    /// for good, or leaves its thread with `siglongjmp` or `pthread_exit`) makes every later
    /// call wait for ever.
    ///
    /// Not for signal handlers ([`Error::Restricted`]); refused with [`Error::ReadGuardHeld`]
    /// while this thread holds a read guard, which it would wait for forever.
    ///
    /// ```
    /// use sigdrop::{Drainer, ReadSlot, Runtime};
    ///
    /// let rt = Runtime::builder().drainer(Drainer::Manual).build()?;
    /// let slot = ReadSlot::new(&rt);
    /// slot.xchg(Some(Box::new(1u32)))?;
    /// slot.clear(); // readers may still borrow it: it waits for a grace period
    /// assert_eq!(rt.drain_and_wait()?, 1);
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    pub fn drain_and_wait(&self) -> Result<usize, Error> {
        if restricted::is_active() {
            return Err(Error::Restricted);
        }
        if crate::read::is_active() {
            return Err(Error::ReadGuardHeld);
        }
        Ok(self.inner().drain_and_wait())
    }

    /// Grows the pool by `n` jobs set aside for installs in restricted context, so that up to `n`
    /// more such installs succeed without allocating. To make sure a number of jobs are reserved,
    /// whatever is left of earlier reservations, use [`reserve_to`](Self::reserve_to).
    ///
    /// Not for signal handlers ([`Error::Restricted`]). Fails with
    /// [`Error::CapacityExceeded`] (before allocating anything) if `n` jobs would exceed
    /// `max_jobs`, or [`Error::OutOfMemory`] if the allocator refuses; on failure nothing is
    /// reserved and jobs already made become ordinary spare jobs.
    ///
    /// # How a signal handler uses jobs
    ///
    /// Only *reserved* jobs are promised to a handler; *spare* ones are what ordinary code keeps
    /// ready ([`Builder::headroom`](crate::Builder::headroom)), and trim may free them at any
    /// time. [`Stats::reserved`] and [`Stats::spare`] count them.
    ///
    /// - An install in a handler (into an empty slot, a replace, which needs a job for the object
    ///   it displaces, or a map insert) takes a reserved job first, then a spare one. With neither
    ///   it is refused with [`Error::NoSpareJob`] and the value comes back.
    /// - An install refused after it took its job (a busy map bucket,
    ///   [`Error::WouldBlock`]; a full map, [`Error::MapFull`]) gives that job back to where it
    ///   came from: a refusal never spends a reservation.
    /// - An object installed with a job leaves with it: taking it out of a slot in a handler
    ///   touches neither count, and its job becomes spare once the drainer is done with it.
    /// - A value with no job of its own dropped in a handler (see
    ///   [`Detached::is_reserved`](crate::Detached::is_reserved): a clone from
    ///   [`clone_current`](crate::ReadSlot::clone_current) whose object has left the slot — while
    ///   the slot keeps it, a clone's drop is a plain decrement — or a value displaced by an
    ///   ordinary-context replace that was never reserved) takes a spare job; with none it is
    ///   parked in the emergency area ([`Stats::emergency`]), which the drainer empties; if that is
    ///   full it takes a reserved job ([`Stats::reserved_for_teardowns`]), because leaking is
    ///   worse than a refused install, which hands its value back; with none of those it is
    ///   leaked ([`Stats::leaked`]). Its destructor never runs in the handler.
    ///   [`Detached::reserve`](crate::Detached::reserve) called in a handler likewise takes a
    ///   spare job before a reserved one.
    ///
    /// So with `n` jobs reserved, the next `n` installs in handlers succeed, whatever trim does
    /// and however many installs are refused for other reasons, unless ordinary code
    /// [`unreserve`](Self::unreserve)s them, or values without a job of their own dropped in
    /// handlers have filled the emergency area and taken some.
    pub fn reserve(&self, n: usize) -> Result<(), Error> {
        if restricted::is_active() {
            return Err(Error::Restricted);
        }
        self.inner().reserve(n)
    }

    /// Makes sure at least `n` jobs are reserved for installs in restricted context: the
    /// shortfall is taken from the spare jobs first (the jobs handlers used come back spare once
    /// drained), and the pool grows by the rest; returns how many it added to the reservation
    /// (0 if `n` or more were reserved already). Call it in ordinary code to top the
    /// reservation up as handlers use it; see [`reserve`](Self::reserve) for how handlers use
    /// jobs. A top-up every round grows the pool in the first rounds only: growth it needed
    /// soon after a trim is kept, as an install's is
    /// ([`Builder::regrowth_window`](crate::Builder::regrowth_window)).
    ///
    /// Concurrent calls do not add for the same shortfall twice: `reserve_to(8)` from several
    /// threads at once leaves 8 reserved, not more. Counted as it runs, the reservation may
    /// still end above `n` by the installs in flight in handlers at that moment that are then
    /// refused (they give their jobs back), or below it by the installs that go through.
    ///
    /// Not for signal handlers ([`Error::Restricted`]). Fails as [`reserve`](Self::reserve) does:
    /// [`Error::CapacityExceeded`] before allocating anything if the shortfall would exceed
    /// `max_jobs`, [`Error::OutOfMemory`] if the allocator refuses; on failure nothing is
    /// reserved and jobs already made become ordinary spare jobs.
    ///
    /// ```
    /// use sigdrop::{Drainer, Runtime};
    ///
    /// let rt = Runtime::builder().drainer(Drainer::Manual).build()?;
    /// assert_eq!(rt.reserve_to(4)?, 4);
    /// assert_eq!(rt.reserve_to(4)?, 0); // already there
    /// assert_eq!(rt.reserve_to(6)?, 2);
    /// assert_eq!(rt.stats().reserved, 6);
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    pub fn reserve_to(&self, n: usize) -> Result<usize, Error> {
        if restricted::is_active() {
            return Err(Error::Restricted);
        }
        self.inner().reserve_to(n)
    }

    /// This runtime's number: unique in the process, given in the order runtimes are built
    /// (from 1). Errors that name a runtime ([`Error::NoSpareJob`]) and `Debug` use it. May be
    /// called from a signal handler.
    pub fn id(&self) -> u64 {
        self.inner().id
    }

    /// Moves up to `n` reserved jobs back to the spare pool (where trim may free them); returns
    /// how many moved. Not for signal handlers ([`Error::Restricted`]).
    pub fn unreserve(&self, n: usize) -> Result<usize, Error> {
        if restricted::is_active() {
            return Err(Error::Restricted);
        }
        Ok(self.inner().unreserve(n))
    }

    /// Frees spare jobs beyond the headroom now, rather than at the next drain or removal;
    /// returns how many were freed. Not for signal handlers ([`Error::Restricted`]).
    pub fn trim(&self) -> Result<usize, Error> {
        if restricted::is_active() {
            return Err(Error::Restricted);
        }
        Ok(self.inner().trim(true))
    }

    /// Counts idle jobs by walking every freelist (bounded by `total`). Exact only at a
    /// quiescent point; tests use it to check the gauges against the lists themselves. May be
    /// called from a signal handler (atomic loads only).
    #[doc(hidden)]
    pub fn audit_idle(&self) -> usize {
        self.inner().audit_idle()
    }
}

impl Builder {
    /// Checks every setting and starts the runtime (and its drainer thread, if any).
    ///
    /// Ordinary context only: allocates, and may spawn a thread. Returns
    /// [`Error::InvalidConfig`] for a setting that cannot be honoured, [`Error::DrainerSpawn`] if
    /// the thread cannot start, [`Error::Restricted`] in restricted context.
    pub fn build(self) -> Result<Runtime, Error> {
        if restricted::is_active() {
            return Err(Error::Restricted);
        }
        let config = self.validate()?;
        fork::watch();
        let (kind, wake) = (config.drainer, config.wake);
        let inner = Arc::new(Inner::new(config));
        Inner::placed(&inner);
        let thread = match kind {
            Drainer::Thread => {
                Some(drainer::spawn(inner.clone(), wake).map_err(Error::DrainerSpawn)?)
            }
            Drainer::Manual => None,
        };
        Ok(Runtime::from_parts(inner, thread))
    }

    /// Builds the runtime with these settings and makes it the process-wide one
    /// ([`Runtime::global`]), to which the `global()` slots ([`RefSlot::global`](crate::RefSlot),
    /// `ReadSlot::global`) are bound: for a program that wants them with other settings than
    /// the defaults (a lazy wake, a manual drainer, another `max_pending`). Call it before
    /// anything uses the global runtime: once it exists (created by an earlier call, or with
    /// the defaults by a first use), this is refused with [`Error::GlobalExists`], and the
    /// runtime it built is shut down again.
    ///
    /// Ordinary context only, as [`build`](Self::build).
    ///
    /// ```
    /// use sigdrop::{RefSlot, Runtime, Wake};
    /// use std::time::Duration;
    ///
    /// static SAMPLES: RefSlot<Box<[u64; 64]>> = RefSlot::global();
    ///
    /// // First thing in main: handlers that drop samples never make a wake-up syscall.
    /// let rt = Runtime::builder()
    ///     .wake(Wake::lazy(Duration::from_millis(10)))
    ///     .build_global()?;
    /// assert_eq!(Runtime::global()?.id(), rt.id());
    /// SAMPLES.xchg(Some(Box::new([0; 64])))?; // bound to that runtime
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn build_global(self) -> Result<&'static Runtime, Error> {
        let rt = self.build()?;
        // Refused: the runtime just built comes back, and is dropped (shut down) here.
        GLOBAL.set(rt).map_err(|_| Error::GlobalExists)?;
        Ok(GLOBAL.get().expect("set just above"))
    }
}
