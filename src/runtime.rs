//! The runtime engine behind every `Runtime` handle: the job pool, its accounting, offload,
//! drain, growth and trim.
//!
//! ## Paths and the contexts they may run in
//!
//! | path                     | restricted context | what it does                                          |
//! |--------------------------|--------------------|-------------------------------------------------------|
//! | install (claim)          | yes, if a job is reserved or spare | one CAS on the ledger               |
//! | install (grow)           | no                 | allocates a batch under the grow lock                 |
//! | replace present->present | yes                | ordinary: nothing (the claim moves to the new object); restricted: a claim for the displaced object |
//! | ordinary removal         | no need            | credits the claim back; maybe trims                   |
//! | offload                  | yes                | pops the owed job, fills it, pushes it, maybe rings   |
//! | drain                    | no                 | takes lists, runs destructors, returns jobs, trims    |
//! | trim                     | no                 | claims surplus credit, pops, frees, under the lock    |
//!
//! ## Growth and trim (hysteresis)
//!
//! With headroom `h` and hysteresis `y`: an ordinary install that leaves fewer than `h / 2` spare
//! jobs refills the pool up to `h` spare (the low watermark; bpf_mem_alloc's 32 with the default
//! 64); an install that finds none grows a batch whose first job becomes its own claim directly,
//! with no credit round trip (so a concurrent trim cannot starve it). Trim runs when more than
//! `h + y` jobs are spare (the high watermark; 96 by default) and frees down to `h`. Growth never
//! aims above `h`, trim never cuts below `h`, and the gap `y` between `h` and the trim trigger
//! means the two cannot chase each other.
//!
//! ## Why trim may free memory while restricted-context pops run
//!
//! Trim claims a spare credit first, then pops; the popped job is trim's alone (every pop is an
//! ownership transfer, see `freelist.rs`). A concurrent pop elsewhere may still hold the freed
//! job's *index* from a stale head, and may load its link — but links live in the arena's stable
//! entries, which are never freed while the runtime lives; only the body (payload storage) is
//! freed, and only its owner ever touches a body. So no pop can read freed memory, and no grace
//! period is needed for trim.
//!
//! ## Grace periods
//!
//! The crate has one grace-period mechanism, the read domain of `read.rs`; the only memory that
//! waits for it is the objects of readable slots (their payloads say `grace`). A drain takes up
//! to [`TAKE_BATCH`] lists first, then waits for one grace period — before the first such
//! destructor, if there is one — which covers every object in them, since each was removed from
//! its slot before it was queued. Objects from the emergency area wait for a grace period each
//! (they only get there when a job could not be had, which a readable slot's exchange rules out
//! except in fallbacks).

use crate::arena::{Arena, GrowState, Payload};
use crate::builder::{Config, Policy};
use crate::cpu::current_shard;
use crate::doorbell::Doorbell;
use crate::emergency::{Emergency, Parked};
use crate::error::Error;
use crate::freelist::Freelist;
use crate::ledger::Ledger;
use crate::llist::{Chain, JobLists};
use crate::read;
use crate::restricted;
use crate::stats::Stats;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Cumulative counters and high-water marks. Every access to them is Relaxed: they are
/// statistics, read as snapshots by `stats()`, and nothing synchronises through them. The same
/// holds for the `total` and `running` gauges (`total` is only written under the grow lock) and
/// the test-only fault hook.
#[derive(Default)]
struct Counters {
    /// Jobs taken off the job lists by drainers.
    taken: AtomicU64,
    drained: AtomicU64,
    wakes: AtomicU64,
    trimmed: AtomicU64,
    emergency: AtomicU64,
    leaked: AtomicU64,
    reserve_failures: AtomicU64,
    dtor_panics: AtomicU64,
    grace_periods: AtomicU64,
    peak_total: AtomicUsize,
    peak_active: AtomicUsize,
}

/// Lists a drain takes before it runs their destructors: one grace period covers them all.
const TAKE_BATCH: usize = 64;

/// Test-only fault hooks.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Faults {
    /// Offloads that act as if the freelists were empty.
    pub fail_pops: AtomicUsize,
}

/// The shared state behind every handle, the drainer thread and every slot.
pub(crate) struct Inner {
    pub(crate) cfg: Config,
    arena: Arena,
    free: Freelist,
    lists: JobLists,
    ledger: Ledger,
    pub(crate) doorbell: Doorbell,
    emergency: Emergency,
    grow: Mutex<GrowState>,
    total: AtomicUsize,
    running: AtomicUsize,
    counters: Counters,
    pub(crate) stop: AtomicBool,
    #[cfg(test)]
    pub(crate) faults: Faults,
}

impl Inner {
    pub(crate) fn new(cfg: Config, has_sleeper: bool) -> Self {
        Inner {
            arena: Arena::new(),
            free: Freelist::new(cfg.shards),
            lists: JobLists::new(cfg.shards),
            ledger: Ledger::new(),
            doorbell: Doorbell::new(has_sleeper),
            emergency: Emergency::new(cfg.emergency_capacity),
            grow: Mutex::new(GrowState::default()),
            total: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            #[cfg(test)]
            faults: Faults::default(),
            cfg,
        }
    }

    fn lock_grow(&self) -> MutexGuard<'_, GrowState> {
        // A panic while holding the lock can only come from a failed internal assertion; the
        // state it protects is updated with single assignments, so it is still consistent.
        self.grow
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn try_lock_grow(&self) -> Option<MutexGuard<'_, GrowState>> {
        #[cfg(not(loom))]
        return match self.grow.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        #[cfg(loom)]
        return self.grow.try_lock().ok();
    }

    /// Whether a value leaving a slot now must go to the drainer.
    #[inline]
    pub(crate) fn must_defer(&self) -> bool {
        self.cfg.policy == Policy::AlwaysDefer || restricted::is_active()
    }

    pub(crate) fn stopping(&self) -> bool {
        // Acquire: pairs with the Release store in `Handle::drop`.
        self.stop.load(Ordering::Acquire)
    }

    /// Claims the job an install needs. In restricted context only reserved or spare jobs can be
    /// used; in ordinary context the pool grows if none is spare.
    pub(crate) fn claim_for_install(&self) -> Result<(), Error> {
        if restricted::is_active() {
            if self.ledger.claim_reserved() || self.ledger.claim_spare().is_some() {
                return Ok(());
            }
            self.counters
                .reserve_failures
                .fetch_add(1, Ordering::Relaxed);
            return Err(Error::NoSpareJob);
        }
        match self.ledger.claim_spare() {
            Some(left) => {
                if left < self.cfg.headroom / 2 {
                    self.refill();
                }
                Ok(())
            }
            None => self.grow_for_install(),
        }
    }

    /// Gives back an install's claim (its object left the slot in ordinary context, or the
    /// install was not needed). Safe in restricted context (then never trims).
    pub(crate) fn release_claim(&self) {
        self.ledger.credit_spare(1);
        if !restricted::is_active() {
            self.maybe_trim();
        }
    }

    /// Slow path: no spare job. Grows a batch whose first job is this install's own claim.
    fn grow_for_install(&self) -> Result<(), Error> {
        let mut state = self.lock_grow();
        // Somebody may have grown or released while we waited.
        if self.ledger.claim_spare().is_some() {
            return Ok(());
        }
        let want = self.cfg.headroom.max(1);
        let (grown, err) = self.grow_locked(&mut state, want);
        if grown == 0 {
            self.counters
                .reserve_failures
                .fetch_add(1, Ordering::Relaxed);
            return Err(err.unwrap_or(Error::OutOfMemory));
        }
        // The first job is ours (claimed without ever being credited); the rest become spare.
        self.ledger.credit_spare(grown - 1);
        Ok(())
    }

    /// Opportunistic refill up to the headroom; skipped if another thread holds the grow lock.
    fn refill(&self) {
        let Some(mut state) = self.try_lock_grow() else {
            return;
        };
        let spare = self.ledger.spare();
        if spare < self.cfg.headroom {
            let (grown, _) = self.grow_locked(&mut state, self.cfg.headroom - spare);
            self.ledger.credit_spare(grown);
        }
    }

    /// Allocates up to `n` jobs and deals them out over the shards, starting with this CPU's
    /// (a batch grown by one thread serves teardowns on every CPU). Returns how many were made,
    /// and the error that stopped it early, if any. The caller credits them.
    fn grow_locked(&self, state: &mut GrowState, n: usize) -> (usize, Option<Error>) {
        let total = self.total.load(Ordering::Relaxed);
        let room = self.cfg.max_jobs.saturating_sub(total);
        let n_ok = n.min(room);
        let shards = self.cfg.shards;
        let first = current_shard(shards);
        let mut grown = 0;
        let mut err = (n_ok < n).then_some(Error::CapacityExceeded {
            max_jobs: self.cfg.max_jobs,
        });
        while grown < n_ok {
            // SAFETY: the runtime's grow state, behind the grow lock, is this arena's only one.
            match unsafe { self.arena.alloc_job(state) } {
                Ok(idx) => {
                    // Relaxed: a gauge; the lock orders updates, readers take snapshots.
                    let now = self.total.fetch_add(1, Ordering::Relaxed) + 1;
                    self.counters.peak_total.fetch_max(now, Ordering::Relaxed);
                    // SAFETY: a fresh job is owned by us until this push.
                    unsafe { self.free.push(&self.arena, (first + grown) % shards, idx) };
                    grown += 1;
                }
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        (grown, err)
    }

    /// Grows the pool by `n` jobs and sets them aside for restricted-context installs.
    pub(crate) fn reserve(&self, n: usize) -> Result<(), Error> {
        let mut state = self.lock_grow();
        let total = self.total.load(Ordering::Relaxed);
        if n > self.cfg.max_jobs.saturating_sub(total) {
            return Err(Error::CapacityExceeded {
                max_jobs: self.cfg.max_jobs,
            });
        }
        let (grown, err) = self.grow_locked(&mut state, n);
        match err {
            None => {
                self.ledger.credit_reserved(grown);
                Ok(())
            }
            Some(e) => {
                // Keep nothing half-done: the jobs made so far become ordinary spare jobs, which
                // trim will return if they are not needed.
                self.ledger.credit_spare(grown);
                Err(e)
            }
        }
    }

    pub(crate) fn unreserve(&self, n: usize) -> usize {
        let moved = self.ledger.unreserve(n);
        self.maybe_trim();
        moved
    }

    fn maybe_trim(&self) {
        if self.ledger.spare() > self.cfg.headroom + self.cfg.hysteresis {
            self.trim(false);
        }
    }

    /// Frees spare jobs down to the headroom. Ordinary context only. Returns how many it freed.
    /// With `wait == false` (the automatic trims after drains and removals) it gives up if
    /// another thread holds the grow lock: that thread is growing or trimming, and the next
    /// drain or removal checks again.
    pub(crate) fn trim(&self, wait: bool) -> usize {
        let mut state = if wait {
            self.lock_grow()
        } else {
            match self.try_lock_grow() {
                Some(state) => state,
                None => return 0,
            }
        };
        let shards = self.cfg.shards;
        let first = current_shard(shards);
        let mut freed = 0;
        // Claim first, then pop: the job we pop is then one nobody else was promised (D3).
        while self.ledger.claim_spare_above(self.cfg.headroom) {
            // Start each pop at the next shard, so trim takes evenly from every CPU's freelist
            // rather than emptying the trimming thread's own.
            let shard = (first + freed) % shards;
            // Models only: a signal handler may interrupt this thread here, between the claim
            // and the pop (`model_hooks`); nothing in the build that ships.
            #[cfg(loom)]
            model_hooks::trim_claimed();
            // SAFETY: all the runtime's jobs come from its arena; we hold the claim just won.
            let idx = unsafe { self.free.pop_owed(&self.arena, shard) };
            // SAFETY: we popped `idx`, so we own it; idle jobs hold no payload.
            if unsafe { self.arena.free_job(&mut state, idx) }.is_err() {
                // Could not record the index for reuse: keep the job instead.
                // SAFETY: we still own `idx`.
                unsafe { self.free.push(&self.arena, shard, idx) };
                self.ledger.credit_spare(1);
                break;
            }
            self.total.fetch_sub(1, Ordering::Relaxed);
            freed += 1;
        }
        self.counters
            .trimmed
            .fetch_add(freed as u64, Ordering::Relaxed);
        freed
    }

    /// Hands an object to the drainer. `claimed` says whether the caller holds the object's
    /// claim, which then travels with it; without one, a claim is taken now (from reserved or
    /// spare jobs in restricted context; growing the pool if needed in ordinary context).
    ///
    /// Returns the payload if it must be destroyed inline instead: only in ordinary context, when
    /// no job could be had. In restricted context it always takes the object (at worst parking
    /// or leaking it, counted). Async-signal-safe in restricted context.
    #[inline]
    pub(crate) fn defer(&self, payload: Payload, claimed: bool) -> Option<Payload> {
        if !claimed {
            let got = if restricted::is_active() {
                self.ledger.claim_reserved() || self.ledger.claim_spare().is_some()
            } else {
                self.claim_for_install().is_ok()
            };
            if !got {
                if !restricted::is_active() {
                    return Some(payload);
                }
                self.offload_emergency(Parked {
                    payload,
                    claimed: false,
                });
                return None;
            }
        }
        self.offload(payload);
        None
    }

    /// Queues an object whose claim the caller holds: pops the owed job, fills it, pushes it on
    /// this CPU's list and rings the doorbell if the list was empty. Async-signal-safe: two CASes
    /// and, for the first job of a burst, one swap and one wake syscall.
    #[inline]
    fn offload(&self, payload: Payload) {
        let shard = current_shard(self.cfg.shards);
        #[cfg(test)]
        let faulted = self
            .faults
            .fail_pops
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        #[cfg(not(test))]
        let faulted = false;
        if faulted {
            self.offload_emergency(Parked {
                payload,
                claimed: true,
            });
            return;
        }
        // SAFETY: all the runtime's jobs come from its arena; the caller's claim is spent here.
        let idx = unsafe { self.free.pop_owed(&self.arena, shard) };
        // SAFETY: the pop made the job ours; it has a body (only trim removes bodies, and only
        // from jobs it owns).
        unsafe { self.arena.set_payload(idx, payload) };
        // SAFETY: ours, given up to the list.
        let was_empty = unsafe { self.lists.push(&self.arena, shard, idx) };
        if self.doorbell.after_push(was_empty) {
            self.counters.wakes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The D7 fallback: park the object; if even that fails, leak it. Never runs a destructor.
    fn offload_emergency(&self, parked: Parked) {
        match self.emergency.park(parked) {
            Ok(()) => {
                self.counters.emergency.fetch_add(1, Ordering::Relaxed);
                if self.doorbell.ring() {
                    self.counters.wakes.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(parked) => {
                self.counters.leaked.fetch_add(1, Ordering::Relaxed);
                if parked.claimed {
                    // The claim's job is still idle in a freelist: give the claim back.
                    self.ledger.credit_spare(1);
                }
            }
        }
    }

    /// Destroys an object that a removal in ordinary context could not defer (no job to be had):
    /// inline, after a grace period if readers may borrow it. If this thread holds a read guard,
    /// that wait is impossible, so the object is parked for the drainer (or leaked, counted).
    pub(crate) fn destroy_in_ordinary_context(&self, payload: Payload) {
        if payload.grace && read::synchronize().is_err() {
            self.offload_emergency(Parked {
                payload,
                claimed: false,
            });
            return;
        }
        // SAFETY: `payload` is an object the caller owns and its own destructor; no reader can
        // borrow it any more (it needed no grace period, or one just passed).
        unsafe { (payload.dtor)(payload.obj) };
    }

    /// Waits for a grace period before a drain runs its first destructor that needs one;
    /// `waited` remembers that it did.
    ///
    /// Once the runtime is stopping, none is needed: the last handle is gone, so every slot is
    /// (each holds a handle), and a reader's borrow cannot outlive its slot; the handle counts'
    /// release/acquire and the Release store of `stop` order every reader's last use of an object
    /// before our Acquire load of `stop`. That is what lets a runtime shut down on a thread that
    /// holds a read guard.
    ///
    /// Returns false if the wait is needed but this thread holds a read guard, so it would never
    /// end: `Runtime::drain` refuses that case, so only a guard leaked (`mem::forget`) by a
    /// destructor on the drainer thread gets here; the object is then never destroyed.
    fn grace_before(&self, payload: &Payload, waited: &mut bool) -> bool {
        if !payload.grace || *waited || self.stopping() {
            return true;
        }
        if read::synchronize().is_err() {
            return false;
        }
        self.counters.grace_periods.fetch_add(1, Ordering::Relaxed);
        *waited = true;
        true
    }

    /// Runs one destructor, catching a panic. The caller counts it in `drained`.
    fn run(&self, payload: Payload) {
        // SAFETY: every payload was built from an owned pointer and its own destructor, and each
        // job is taken by exactly one drainer, so this is the one call of `dtor(obj)`.
        let result = catch_unwind(AssertUnwindSafe(|| unsafe { (payload.dtor)(payload.obj) }));
        if let Err(panic) = result {
            self.counters.dtor_panics.fetch_add(1, Ordering::Relaxed);
            // Dropping the payload may panic too; contain that as well, and if even that panic's
            // payload panics when dropped, forget it rather than let it unwind out of the drain.
            if let Err(inner) = catch_unwind(AssertUnwindSafe(move || drop(panic))) {
                std::mem::forget(inner);
            }
        }
    }

    /// One drain cycle: clear the doorbell, take every list, run each job oldest first, return
    /// the jobs, empty the emergency area, trim. Ordinary context only. Returns destructors run.
    pub(crate) fn drain(&self) -> usize {
        debug_assert!(!restricted::is_active());
        // Clear before taking: see `doorbell.rs` for why this order means no lost wake-up.
        self.doorbell.clear();
        let mut ran = 0;
        let shards = self.lists.shards();
        let mut first = 0;
        while first < shards {
            // Take a batch of lists before running anything: one grace period then covers
            // every object in them.
            let mut batch: [Option<(usize, Chain)>; TAKE_BATCH] = [const { None }; TAKE_BATCH];
            let end = shards.min(first + TAKE_BATCH);
            for (shard, taken) in (first..end).zip(batch.iter_mut()) {
                let chain = self.lists.take(shard);
                if !chain.is_empty() {
                    *taken = Some((shard, chain));
                }
            }
            first = end;
            let mut waited = false;
            for (shard, chain) in batch.into_iter().flatten() {
                ran += self.run_chain(shard, chain, &mut waited);
            }
        }
        let mut unparked = 0;
        self.emergency.drain(|parked| {
            // Parked objects were taken one by one: each waits for its own grace period.
            if self.grace_before(&parked.payload, &mut false) {
                self.run(parked.payload);
                unparked += 1;
            } else {
                self.counters.leaked.fetch_add(1, Ordering::Relaxed);
            }
            if parked.claimed {
                // The parked object kept its claim; its job is idle in a freelist.
                self.ledger.credit_spare(1);
            }
        });
        self.counters
            .drained
            .fetch_add(unparked as u64, Ordering::Relaxed);
        ran += unparked;
        self.maybe_trim();
        ran
    }

    /// Runs a chain taken from `shard`'s list, oldest first, and returns its jobs to that
    /// shard's freelist. Returns how many destructors ran.
    fn run_chain(&self, shard: usize, chain: Chain, waited: &mut bool) -> usize {
        {
            let len = chain.len();
            let active = self.running.fetch_add(len, Ordering::Relaxed) + len;
            self.counters
                .peak_active
                .fetch_max(active, Ordering::Relaxed);
            self.counters.taken.fetch_add(len as u64, Ordering::Relaxed);
            let mut leaked = 0;
            let run_and_return = |idx: u32| {
                // SAFETY: we took the chain, so we own `idx`; offload set its payload.
                let payload = unsafe { self.arena.take_payload(idx) };
                if let Some(payload) = payload {
                    if self.grace_before(&payload, waited) {
                        self.run(payload);
                    } else {
                        // Readers may still borrow it and we cannot wait: never destroy it.
                        self.counters.leaked.fetch_add(1, Ordering::Relaxed);
                        leaked += 1;
                    }
                }
                // SAFETY: ours; back to the freelist of the shard it was offloaded on.
                unsafe { self.free.push(&self.arena, shard, idx) };
            };
            // SAFETY: all the runtime's jobs come from its arena.
            unsafe { chain.for_each_oldest_first(&self.arena, run_and_return) };
            // The jobs are visible in the freelist: now their claims may become credit.
            self.ledger.credit_spare(len);
            self.running.fetch_sub(len, Ordering::Relaxed);
            let ran = len - leaked;
            self.counters
                .drained
                .fetch_add(ran as u64, Ordering::Relaxed);
            ran
        }
    }

    /// Counts idle jobs by walking the freelists (bounded by `total`); exact when quiescent.
    pub(crate) fn audit_idle(&self) -> usize {
        let bound = self.total.load(Ordering::Relaxed) + 1;
        // SAFETY: all the runtime's jobs come from its arena.
        unsafe { self.free.count_idle(&self.arena, bound) }
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        let relaxed = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // Cumulative counts first, then the gauges they are taken from: an object moving from
        // a list (or the emergency area) to a drainer is then counted twice at worst, never
        // missed, so `offloaded` never dips.
        let taken = relaxed(&c.taken);
        let unparked = self.emergency.unparked() as u64;
        let queued = self.lists.queued();
        let parked = self.emergency.parked() as u64;
        let running = self.running.load(Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed);
        let spare = self.ledger.spare();
        let reserved = self.ledger.reserved();
        let active = queued + running;
        let idle = total.saturating_sub(active);
        Stats {
            total,
            refs: idle.saturating_sub(spare + reserved),
            active,
            idle,
            spare,
            reserved,
            offloaded: taken + unparked + queued as u64 + parked,
            drained: relaxed(&c.drained),
            wakes: relaxed(&c.wakes),
            trimmed: relaxed(&c.trimmed),
            emergency: relaxed(&c.emergency),
            leaked: relaxed(&c.leaked),
            reserve_failures: relaxed(&c.reserve_failures),
            dtor_panics: relaxed(&c.dtor_panics),
            grace_periods: relaxed(&c.grace_periods),
            peak_total: c.peak_total.load(Ordering::Relaxed),
            peak_active: c.peak_active.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Normally set by the last handle already; without a handle there is no slot, so no
        // reader either, and the drains below need no grace period (see `grace_before`).
        // Relaxed: we hold the only reference.
        self.stop.store(true, Ordering::Relaxed);
        // Last reference: nobody can offload any more. Run everything still pending, including
        // parked objects; a destructor may offload more (it may own slots of other runtimes, not
        // of this one), so loop until a cycle finds nothing.
        while self.drain() > 0 {}
        // The arena's Drop frees every job body and bucket.
    }
}

/// Interruption points for loom models (built only with `--cfg loom`).
///
/// A signal handler that interrupts a thread in the middle of an operation runs to completion
/// before that thread takes another step. Loom models a handler as another thread, which is
/// free to wait for the interrupted one, so it cannot show a handler spinning for something
/// only the interrupted thread can do. A hook runs the handler's code at one exact point of the
/// interrupted operation, on the same loom thread, which models that case faithfully.
#[cfg(loom)]
pub mod model_hooks {
    use std::cell::RefCell;

    type Hook = Box<dyn FnOnce()>;

    loom::thread_local! {
        static AFTER_TRIM_CLAIM: RefCell<Option<Hook>> = RefCell::new(None);
    }

    /// Runs `handler` once, on this loom thread, the next time this thread's trim has claimed a
    /// spare credit and not yet popped the job it stands for.
    pub fn after_next_trim_claim(handler: impl FnOnce() + 'static) {
        AFTER_TRIM_CLAIM.with(|h| *h.borrow_mut() = Some(Box::new(handler)));
    }

    /// Whether the hook set by [`after_next_trim_claim`] is still waiting to run.
    pub fn trim_hook_pending() -> bool {
        AFTER_TRIM_CLAIM.with(|h| h.borrow().is_some())
    }

    /// Drops a hook that has not run. A model must do this before its execution ends (also
    /// when it fails): the hook holds loom objects, which cannot be dropped outside it.
    pub fn clear_trim_hook() {
        let hook = AFTER_TRIM_CLAIM.with(|h| h.borrow_mut().take());
        drop(hook);
    }

    pub(crate) fn trim_claimed() {
        let hook = AFTER_TRIM_CLAIM.with(|h| h.borrow_mut().take());
        if let Some(handler) = hook {
            handler();
        }
    }
}

#[cfg(all(test, not(loom)))]
#[path = "runtime_tests.rs"]
mod tests;
