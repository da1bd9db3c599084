//! The runtime engine behind every `Runtime` handle: the job pool, its accounting, offload,
//! drain, growth and trim.
//!
//! ## Paths and the contexts they may run in
//!
//! | path                     | restricted context | what it does                                          |
//! |--------------------------|--------------------|-------------------------------------------------------|
//! | install (claim)          | yes, if a job is reserved or spare | one CAS on the ledger; in restricted context reserved jobs first, then spare |
//! | install (grow)           | no                 | allocates a batch under the grow lock                 |
//! | install refused after its claim | yes         | the claim goes back to the counter it came from (a reserved job stays reserved) |
//! | replace present->present | yes                | ordinary: nothing (the claim moves to the new object); restricted: a claim for the displaced object, as an install |
//! | ordinary removal         | no need            | credits the claim back as spare; maybe trims          |
//! | offload                  | yes                | pops the owed job, fills it, pushes it, maybe rings   |
//! | teardown without a claim | yes                | restricted: a spare job, else the emergency area, else a reserved job (counted), else a leak (counted); ordinary: claims as an install |
//! | reserve, reserve_to      | no                 | grows under the grow lock, credits the jobs as reserved |
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
//! Over time, a second hysteresis (`regrowth.rs`; a window of one second by default, set by
//! `Builder::regrowth_window`, zero for none): jobs the pool had to grow back soon after a trim
//! freed them are *kept*, `k` of them, and the trim trigger and target rise by `k`, until a
//! window passes with no such regrowth.
//! Automatic trims (after a drain cycle, a removal or an unreserve) respect `k`;
//! `Runtime::trim` forgets it. Whether to try a trim is decided from two lock-free reads (spare,
//! `k`); a drain cycle with jobs kept tries one anyway, under a try-lock, whatever the spare
//! count, so that an expired `k` is noticed and cleared. The drainer thread sleeps at most a
//! window at a time while `k > 0`.
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
//! ## Reclamation (the `reclaim` module has the pieces)
//!
//! Objects leave slots in two ways, and are destroyed in two ways:
//!
//! - in restricted context, each object goes with its own job (claimed before, so it never
//!   allocates) onto this CPU's job list, and the doorbell tells the drainer; an `Owned` box
//!   needs no job: its own node goes onto this CPU's owned list (`owned_list.rs`), same doorbell;
//! - in ordinary context, an object that must not be destroyed inline (it left a readable slot,
//!   or the policy says always defer) is *retired* into this CPU's open batch: no job, no
//!   ledger, an uncontended try-lock. A full batch is closed, stamped with the grace period it
//!   needs (`read::start_grace_period`), and queued.
//!
//! A drain cycle (the drainer thread's, [`Inner::cycle`]) takes the job lists, runs at once every
//! object that needs no grace period, moves the others into a batch of its own (so the jobs go
//! back to the pool at once), closes that batch and, on the drainer, every open batch, then runs
//! every closed batch whose grace period a non-blocking poll says has passed. Nothing in it waits
//! for readers: a reader that never leaves delays only objects readers could have seen.
//!
//! ## Help and back-pressure
//!
//! The thread that closes a batch helps (under [`Policy::Auto`]): it runs up to [`HELP_BATCHES`]
//! ready batches itself — which keeps a fast writer's frees on its own thread, where the
//! allocator is fastest — and, if more than `max_pending` objects wait in closed batches, job
//! lists and the chains drainers took from them (one count: `reclaim/backlog.rs`), it runs
//! drain cycles (waiting for grace periods itself if it holds no read guard)
//! until they are back under the bound. Under [`Policy::AlwaysDefer`] with a drainer thread it
//! rings and waits for the drainer instead, for as long as that thread keeps finishing
//! destructors (`DRAINER_PATIENCE`: it may be blocked on a lock the waiting thread holds).
//! Restricted context never helps and never waits.
//!
//! Who never waits for whom: a drainer thread never waits for another drainer thread; a thread
//! holding a read guard never waits for a grace period (its guard may be what holds it up); and
//! a thread in the middle of destroying batches (a destructor it runs retires more) leaves
//! batches being destroyed out of the bound — its own, or another thread's, which may be
//! waiting for ours (and one running a chain leaves the taken chains out). Queued batches it can run itself, so every wait
//! either runs something or waits for readers.
//!
use crate::arena::{Arena, Dtor, Entry, GrowState, Payload, deal_shard};
use crate::builder::{Config, Policy};
use crate::cpu::current_shard;
use crate::emergency::{Emergency, Parked};
use crate::error::Error;
use crate::freelist::Freelist;
use crate::ledger::{Ledger, Source};
use crate::llist::{Chain, JobLists};
use crate::nested;
use crate::read;
use crate::reclaim::backlog::Backlog;
use crate::reclaim::batches::{Added, BATCH, Batches, Closed};
use crate::reclaim::cycle_gate::CycleGate;
use crate::reclaim::doorbell::{Doorbell, Wake};
use crate::reclaim::drainer::{Cycle, Drain, Drainer};
use crate::reclaim::owned_list::{Link, OwnedLists};
#[cfg(not(loom))]
use crate::reclaim::stall_passes::StallPasses;
use crate::reclaim::taken_jobs::TakenJobs;
use crate::regrowth::Regrowth;
use crate::restricted;
use crate::stats::Stats;
use crate::supply_countdown::{self, SUPPLY_LOOK_EVERY};
use crate::sync::{
    Arc, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering,
};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

/// What [`Inner::run`] needs to know of the thread that runs destructors, read once per level
/// of destructors ([`Inner::destroying`]), not once per destructor: it does not change while
/// the level runs (`run` puts back the depth a destructor changed).
#[derive(Clone, Copy)]
struct Runner {
    /// The restricted-context depth outside the destructors.
    depth: u32,
    /// Whether this is the runtime's drainer thread.
    on_drainer: bool,
}

/// Cumulative counters and high-water marks. Every access to them is Relaxed: they are
/// statistics, read as snapshots by `stats()`, and nothing synchronises through them. The same
/// holds for the `total` and `running` gauges (`total` is only written under the grow lock) and
/// the test-only fault hook.
#[derive(Default)]
struct Counters {
    /// Jobs taken off the job lists by drainers.
    taken: AtomicU64,
    /// Drain cycles finished (by anyone).
    cycles: AtomicU64,
    drained: AtomicU64,
    trimmed: AtomicU64,
    emergency: AtomicU64,
    leaked: AtomicU64,
    /// Reserved jobs taken for values that had no job of their own, in restricted context.
    reserved_for_teardowns: AtomicU64,
    reserve_failures: AtomicU64,
    dtor_panics: AtomicU64,
    grace_periods: AtomicU64,
    /// Objects destroyed out of batches.
    batched: AtomicU64,
    /// Drain cycles run by producers over the backlog bound, or helping at a batch close.
    helped: AtomicU64,
    /// Threads over the bound that gave up waiting for a drainer thread that finished nothing
    /// for `DRAINER_PATIENCE`.
    drainer_stalls: AtomicU64,
    /// Destructors this runtime's drainer thread is inside now (nested), written by it alone.
    drainer_inside: AtomicU32,
    /// Chains and runs of batches that threads other than this runtime's drainer thread (a
    /// thread calling `drain`, one helping over the bound) took and are destroying now
    /// (`OthersInside`): objects a supplier waiting for the drainer thread may be waiting
    /// for, held by a thread its patience must watch too.
    others_inside: AtomicUsize,
    /// Bumped (not exactly, as `heartbeat`) each time such a thread finishes a chain or a
    /// batch: their progress, as `heartbeat` is the drainer thread's.
    others_beat: AtomicU64,
    /// Set when a destructor on this runtime's drainer thread opens a batch (under
    /// `Policy::AlwaysDefer`, what it lets go of is retired): the thread's next cycle closes
    /// the open batches, as after a sleep, instead of leaving its own to a later one
    /// (`drainer.rs`). Relaxed: only that thread sets and takes it.
    drainer_opened_batch: AtomicBool,
    /// Destructors that left restricted context entered (or left more than they entered).
    stray_restricted: AtomicU64,
    /// Bumped after every destructor this runtime's drainer thread runs (not exactly: a lost
    /// bump is possible): how a shutdown, or a supplier waiting for the drainer
    /// thread (`supply_waits`), tells a drainer thread that keeps finishing destructors from one
    /// stuck in a single destructor. Destructors other threads run (another runtime's drainer
    /// thread included) do not count: they say nothing about the thread being waited for (which may be blocked on a lock the waiter
    /// holds while others drain).
    heartbeat: AtomicU64,
    peak_pending: AtomicUsize,
    peak_total: AtomicUsize,
    peak_active: AtomicUsize,
}

/// The longest a shutdown waits for a box some thread is in the middle of pushing (its thread
/// preempted for a moment between the swap and the link; or stopped, or gone for good if a
/// handler jumped out of the push with `siglongjmp`).
const STALLED_BOX_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a thread over the bound waits for a drainer thread that finishes no destructor
/// meanwhile before it goes on over the bound: an install or the maker of an owned box
/// (`supply_waits`), or, under `Policy::AlwaysDefer`, a thread handing objects over
/// (`after_close`). That thread may be blocked on a lock the waiting thread holds (other
/// threads' destructors do not count).
#[cfg(not(loom))]
const DRAINER_PATIENCE: std::time::Duration = std::time::Duration::from_millis(10);

/// The longest an install waits for the backlog (`supply_waits_limited`): the install can go
/// on without the drainer (it has a job, or may grow one), and what holds the backlog over
/// the bound may be a reader, or another thread's destructor, waiting for this very thread —
/// which no patience sees, as the drainer thread is inside no destructor then. A little
/// longer than `DRAINER_PATIENCE`, so that a drainer thread stuck inside a destructor (on a
/// lock this thread may hold) is given up on by the patience's own rule first: that one is
/// counted in `Stats::drainer_stalls` and grants the passes (`stall_passes.rs`) that let the
/// waits after it go on at once, where the limit would cost each wait its whole length.
#[cfg(not(loom))]
const LOOK_LIMIT: std::time::Duration =
    std::time::Duration::from_nanos(DRAINER_PATIENCE.as_nanos() as u64 * 3 / 2);

/// How a thread over the bound that waits for the drainer thread gives up (`help_while`):
/// after `DRAINER_PATIENCE` without progress, or at once with a pass an earlier give-up
/// granted (`stall_passes.rs`) for the `objects` it may add before it looks again.
/// (The models have no clock: they never give up.)
#[derive(Clone, Copy)]
struct Patience {
    #[cfg_attr(loom, allow(dead_code))]
    objects: usize,
}

/// The maker of an owned box that takes the runtime's count of boxes past a multiple of this
/// looks whether the drainers keep up with the boxes handed over in restricted context
/// (`keep_up_with_boxes`): while boxes pile up, one box made in this many (by any thread); never
/// while the count stays within such a stretch.
const KEEP_UP_EVERY: usize = 64;

/// Ready batches the thread that closes a batch runs itself (under `Policy::Auto`).
const HELP_BATCHES: usize = 2;

/// How many times a thread that holds a read guard, and can get no job, tries the busy open
/// batches again, yielding before each try, before it parks the object (`Inner::retire`).
const BUSY_BATCH_RETRIES: u32 = 64;

/// Ready batches one drain cycle runs at most before it looks at the job lists again.
const CYCLE_BATCHES: usize = 64;

// How many chains of jobs this thread is running (`run_chain`; nested if a destructor drains).
// A chain's jobs count in the backlog until they are run or batched, except on the thread
// running it, whose destructors may retire objects and must not wait for their own chain
// (`backlog`). Ordinary context only; `const`-initialised, no destructor.
#[cfg(not(loom))]
std::thread_local! {
    static CHAINS_HERE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

#[cfg(loom)]
loom::thread_local! {
    static CHAINS_HERE: std::cell::Cell<u32> = std::cell::Cell::new(0);
}

/// This thread runs a chain while one lives (the count goes back down on a panic too).
struct ChainHere;

impl ChainHere {
    fn enter() -> ChainHere {
        CHAINS_HERE.with(|c| c.set(c.get() + 1));
        ChainHere
    }

    /// Whether this thread is running a chain.
    fn active() -> bool {
        CHAINS_HERE.with(|c| c.get()) > 0
    }
}

impl Drop for ChainHere {
    fn drop(&mut self) {
        CHAINS_HERE.with(|c| c.set(c.get() - 1));
    }
}

/// A chain, or a run of batches, that a thread other than the runtime's drainer thread took
/// and is destroying, counted in `others_inside` while this lives (the count goes back down on
/// a panic too); its [`beat`](Self::beat)s are that thread's progress (`help_while`). Nothing
/// on the drainer thread, whose destructors count themselves (`Inner::run`).
struct OthersInside<'a>(Option<&'a Inner>);

impl<'a> OthersInside<'a> {
    /// Counts the calling thread in, if `taken` (it took something) and it is not this
    /// runtime's drainer thread. One read-modify-write per chain or run of batches.
    fn enter(inner: &'a Inner, taken: bool) -> OthersInside<'a> {
        if !taken || crate::reclaim::drainer::drains_for(inner.id) {
            return OthersInside(None);
        }
        // Relaxed: a hint, as `drainer_inside` (`help_while`).
        inner.counters.others_inside.fetch_add(1, Ordering::Relaxed);
        OthersInside(Some(inner))
    }

    /// A chain or a batch of it finished: progress. A plain load and store, as the drainer
    /// thread's heartbeat (`Inner::run`): it only has to change.
    fn beat(&self) {
        if let Some(inner) = self.0 {
            // Relaxed: compared, never synchronised on.
            let beat = &inner.counters.others_beat;
            beat.store(
                beat.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        }
    }
}

impl Drop for OthersInside<'_> {
    fn drop(&mut self) {
        if let Some(inner) = self.0 {
            // Relaxed: as in `enter`. Saturating: a child after `fork` forgets the parent's
            // threads' entries (`forget_others_inside`), and one of its own may leave after.
            let _ = inner.counters.others_inside.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |n| Some(n.saturating_sub(1)),
            );
        }
    }
}

/// What the grow lock protects: the arena's growth bookkeeping, and the log of trims and
/// regrowth that decides how many spare jobs trim keeps.
struct Growth {
    jobs: GrowState,
    regrowth: Regrowth,
}

/// Test-only fault hooks.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Faults {
    /// Offloads that act as if the freelists were empty.
    pub fail_pops: AtomicUsize,
    /// Run once by the next drain cycle right after it takes a non-empty list, before it
    /// counts the chain: a stand-in for a drainer preempted there.
    pub pause_after_take: Pause,
    /// Run once by the next `pending` snapshot between its first read and the next: a
    /// stand-in for a reader preempted there.
    pub pause_in_pending: Pause,
}

/// A test hook run once, where a thread could be preempted.
#[cfg(test)]
pub(crate) type Pause = Mutex<Option<Box<dyn FnOnce() + Send>>>;

#[cfg(test)]
fn pause(hook: &Pause) {
    let paused = hook.lock().unwrap().take();
    if let Some(paused) = paused {
        paused();
    }
}

/// The shared state behind every handle, the drainer thread and every slot.
pub(crate) struct Inner {
    pub(crate) cfg: Config,
    /// This runtime's number, unique in the process (`Runtime::id`).
    pub(crate) id: u64,
    arena: Arena,
    free: Freelist,
    lists: JobLists,
    /// Owned boxes handed over in restricted context, each in its own node (`owned.rs`).
    owned: OwnedLists,
    /// The process's fork count when the runtime was built: if it has moved, threads of a
    /// parent process may have been in the middle of handing boxes over.
    built_at_fork: u32,
    /// This state's address as its `Arc` gives it (`Arc::as_ptr`: a pointer that covers the
    /// reference counts too), set by [`placed`](Self::placed): what a drain cycle gives the
    /// owned boxes' shared reference back through (`release_boxes`). A `&self` covers only the
    /// state's own bytes.
    me: AtomicPtr<Inner>,
    batches: Batches,
    /// Objects past the job lists (in chains drainers took, and in closed batches) and the
    /// jobs drainers are taking: with the lists' own counts, what `max_pending` bounds
    /// (`backlog.rs`). Shared with the batches, which count what they close and destroy.
    backlog: Arc<Backlog>,
    /// Every drain passes it; `drain_and_wait` waits for the drains inside (`cycle_gate.rs`).
    /// In an allocation of its own, shared (as the grow lock), so that `fork` may reset it
    /// while the runtime is being dropped.
    gate: Arc<CycleGate>,
    ledger: Ledger,
    pub(crate) doorbell: Doorbell,
    emergency: Emergency,
    /// In an allocation of its own (shared, not owned by the runtime's fields) so that a `fork`
    /// may hold it while the runtime is being dropped (`fork.rs`).
    grow: Arc<Mutex<Growth>>,
    /// The spare jobs automatic trims keep above the headroom (`regrowth.rs`): a copy of the
    /// log's `keep`, written under the grow lock. Relaxed everywhere: a heuristic that decides
    /// whether a trim is tried and how long the drainer thread may sleep; it guards nothing
    /// (trim claims what it frees from the ledger). The one place it must not be missed, a
    /// drainer going to sleep until rung, is covered by the wake-up after `regrown`.
    kept: AtomicUsize,
    /// Whether a drainer thread runs for this runtime now (false with `Drainer::Manual`, and in
    /// a child after `fork` until one is started, or if it could not be).
    has_thread: AtomicBool,
    /// The process's fork count when `has_thread` was last set: in a child forked since, the
    /// thread it speaks of is the parent's, which does not exist here (`drainer_thread_here`).
    thread_at_fork: AtomicU32,
    total: AtomicUsize,
    /// The jobs drainers took and are running, and those of them whose objects their chain
    /// has already closed into batches: what a thread running a chain leaves out of its
    /// backlog (`backlog`), and the statistics' active jobs.
    /// In an allocation of its own, which `fork`'s child handler may reach while the runtime
    /// is being dropped (`fork.rs`).
    taken: Arc<TakenJobs>,
    /// `Counters::cycles` as the last maker of boxes to look saw it (`keep_up_with_boxes`;
    /// `u64::MAX` before the first look).
    cycles_seen_by_makers: AtomicU64,
    /// Passes over the bound granted by threads that gave up waiting for a stalled drainer
    /// thread (`help_while`). Not in the models, which have no clock and so no patience.
    #[cfg(not(loom))]
    stall_passes: StallPasses,
    counters: Counters,
    pub(crate) stop: AtomicBool,
    #[cfg(test)]
    pub(crate) faults: Faults,
}

impl Inner {
    pub(crate) fn new(cfg: Config) -> Self {
        // Ordinary context: find the rseq area now, so handlers can read the CPU from it.
        crate::cpu::init();
        let backlog = Arc::new(Backlog::new());
        Inner {
            arena: Arena::new(cfg.shards),
            free: Freelist::new(cfg.shards),
            lists: JobLists::new(cfg.shards),
            owned: OwnedLists::new(cfg.shards, matches!(cfg.wake, Wake::Lazy { .. })),
            built_at_fork: crate::fork::count(),
            me: AtomicPtr::new(std::ptr::null_mut()),
            batches: Batches::new(cfg.shards, backlog.clone()),
            backlog,
            gate: Arc::new(CycleGate::new()),
            ledger: Ledger::new(),
            doorbell: Doorbell::new(cfg.drainer == Drainer::Thread, cfg.wake),
            emergency: Emergency::new(cfg.emergency_capacity),
            grow: Arc::new(Mutex::new(Growth {
                jobs: GrowState::default(),
                regrowth: Regrowth::new(cfg.regrowth_window),
            })),
            kept: AtomicUsize::new(0),
            has_thread: AtomicBool::new(cfg.drainer == Drainer::Thread),
            thread_at_fork: AtomicU32::new(crate::fork::count()),
            total: AtomicUsize::new(0),
            taken: Arc::new(TakenJobs::new()),
            // No look yet: the first maker to look only records what it saw.
            cycles_seen_by_makers: AtomicU64::new(u64::MAX),
            #[cfg(not(loom))]
            stall_passes: StallPasses::new(),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            #[cfg(test)]
            faults: Faults::default(),
            id: next_id(),
            cfg,
        }
    }

    fn lock_grow(&self) -> MutexGuard<'_, Growth> {
        // A panic while holding the lock can only come from a failed internal assertion; the
        // state it protects is updated with single assignments, so it is still consistent.
        self.grow
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn try_lock_grow(&self) -> Option<MutexGuard<'_, Growth>> {
        #[cfg(not(loom))]
        return match self.grow.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        #[cfg(loom)]
        return self.grow.try_lock().ok();
    }

    /// Whether an object leaving a slot in ordinary context must be deferred (not destroyed
    /// inline): it left a readable slot, or the policy says so.
    #[inline]
    pub(crate) fn defers_in_ordinary_context(&self, readers: bool) -> bool {
        readers || self.cfg.policy == Policy::AlwaysDefer
    }

    /// Once the state is in its `Arc`, before anyone else sees it: records its address
    /// ([`me`](Self::me)) and registers the locks a `fork` must hold (`fork.rs`): the grow
    /// lock, then the batch queue's (the order nothing else takes them in reverse); and the
    /// owned lists' seal and the drains' gate, which hold nothing but have work to do in the
    /// child.
    pub(crate) fn placed(this: &Arc<Inner>) {
        // Relaxed: stored before the `Arc` is shared; whatever shares it (a clone sent to a
        // thread, a thread spawned) orders this store before that thread's loads.
        this.me
            .store(Arc::as_ptr(this).cast_mut(), Ordering::Relaxed);
        crate::fork::register(&*this.grow);
        crate::fork::register(this.batches.fork_locks());
        crate::fork::register(&*this.taken);
        crate::fork::register(this.owned.fork_seal());
        crate::fork::register(&*this.gate);
    }

    fn unregister_fork_locks(&self) {
        crate::fork::unregister(&*self.grow);
        crate::fork::unregister(self.batches.fork_locks());
        crate::fork::unregister(&*self.taken);
        crate::fork::unregister(self.owned.fork_seal());
        crate::fork::unregister(&*self.gate);
    }

    /// In a child after `fork`: the chains and batches the parent's other threads were
    /// destroying are never finished here (their threads do not exist): forget their entries
    /// in `others_inside`, which would otherwise make suppliers give up on the bound.
    #[cfg(not(loom))]
    pub(crate) fn forget_others_inside(&self) {
        // Relaxed: as `others_inside`'s other accesses.
        self.counters.others_inside.store(0, Ordering::Relaxed);
    }

    /// Records whether a drainer thread runs for this runtime (`Runtime` after `fork`; loom
    /// builds have no `fork`).
    #[cfg(not(loom))]
    pub(crate) fn set_has_thread(&self, running: bool) {
        // Relaxed: read by `drainer_thread_here` to choose between waiting for the drainer and
        // running cycles itself; a stale value for a moment only picks the other (both are
        // correct).
        self.has_thread.store(running, Ordering::Relaxed);
        // Relaxed: as above. A reader that sees the new count with the old flag (or the other
        // way round) also just picks the other way for that pass; the waits ask again at every
        // pass (`help_while`).
        self.thread_at_fork
            .store(crate::fork::count(), Ordering::Relaxed);
    }

    /// Whether a drainer thread of this runtime runs in this process: not in a child forked
    /// since the thread was started, until a handle used there starts one of its own (a box
    /// cloned, or dropped, in the child reaches the runtime without a handle's fork check).
    fn drainer_thread_here(&self) -> bool {
        // Relaxed: see `set_has_thread`.
        self.has_thread.load(Ordering::Relaxed)
            && self.thread_at_fork.load(Ordering::Relaxed) == crate::fork::count()
    }

    /// Whether the last handle is gone. Then every slot is (each holds a handle), and a reader's
    /// borrow cannot outlive its slot, so no reader can reach any object of this runtime: its
    /// cycles destroy everything without waiting for grace periods. The handle counts'
    /// release/acquire and the Release store of `stop` order every reader's last use of an object
    /// before our Acquire load of `stop`.
    pub(crate) fn stopping(&self) -> bool {
        // Acquire: pairs with the Release store in `Handle::drop`.
        self.stop.load(Ordering::Acquire)
    }

    /// Claims the job an install needs. In restricted context only reserved or spare jobs can be
    /// used, reserved first (they are set aside for exactly this); in ordinary context the pool
    /// grows if none is spare. The claim remembers where it came from: an install refused after
    /// claiming drops it, which gives it back there.
    ///
    /// Inlined into the install: the ordinary path is one RMW, a compare and a thread-local
    /// countdown (one install in 64 into this runtime on each thread looks at the backlog,
    /// `supply_looks`); the look, refill, growth and the restricted-context order are out of
    /// line, so the install keeps its registers.
    #[inline]
    pub(crate) fn claim_for_install(&self) -> Result<Claim<'_>, Error> {
        self.claim_for_install_in(restricted::is_active())
    }

    /// [`claim_for_install`](Self::claim_for_install) for a caller that has just checked
    /// whether this thread is in restricted context (`restricted`), saving the second look.
    #[inline]
    pub(crate) fn claim_for_install_in(&self, restricted: bool) -> Result<Claim<'_>, Error> {
        debug_assert_eq!(restricted, restricted::is_active());
        if restricted {
            return self.claim_for_install_restricted();
        }
        self.claim_ordinary(true)
    }

    /// A claim in ordinary context: a spare job, or one the pool grows. `supplies`: the claim
    /// is an install's, which hands nothing over, so it keeps the backlog bounded before it
    /// grows the pool (`supply_waits`); a thread deferring an object with the job checks the
    /// backlog itself once the object is queued.
    #[inline]
    fn claim_ordinary(&self, supplies: bool) -> Result<Claim<'_>, Error> {
        match self.ledger.claim_spare() {
            Some(left) => {
                let claim = Claim::new(self, Source::Spare);
                // A spare job is no licence to supply past the bound: jobs come back to the
                // pool as soon as their objects are destroyed *or batched*, so a pool of
                // `max_pending` jobs can be queued again while the batches still hold as many
                // objects (`supply_looks`).
                if supplies && supply_countdown::look_due(self.id) {
                    self.supply_looks();
                }
                if left < self.cfg.headroom / 2 {
                    self.refill(supplies);
                }
                Ok(claim)
            }
            None => self.grow_for_install(supplies),
        }
    }

    /// [`claim_for_install`](Self::claim_for_install) in restricted context: reserved jobs
    /// first (they are set aside for exactly this), then spare ones; never grows.
    #[inline(never)]
    fn claim_for_install_restricted(&self) -> Result<Claim<'_>, Error> {
        if self.ledger.claim_reserved() {
            return Ok(Claim::new(self, Source::Reserved));
        }
        if self.ledger.claim_spare().is_some() {
            return Ok(Claim::new(self, Source::Spare));
        }
        Err(self.no_spare_job())
    }

    /// Claims a job for a value that is leaving a slot without one (`Detached::reserve`). In
    /// restricted context spare jobs first, then reserved ones: the reserved jobs are promised to
    /// installs. In ordinary context as for an install, but without waiting for the drainer
    /// over the bound: the value already exists (its claim adds nothing to the backlog until
    /// it is let go of).
    pub(crate) fn claim_for_value(&self) -> Result<Claim<'_>, Error> {
        if !restricted::is_active() {
            return self.claim_ordinary(false);
        }
        if self.ledger.claim_spare().is_some() {
            return Ok(Claim::new(self, Source::Spare));
        }
        if self.ledger.claim_reserved() {
            self.counters
                .reserved_for_teardowns
                .fetch_add(1, Ordering::Relaxed);
            return Ok(Claim::new(self, Source::Reserved));
        }
        Err(self.no_spare_job())
    }

    /// The refusal of a restricted-context claim, counted, with the counters as they are now.
    /// Allocates nothing.
    #[cold]
    fn no_spare_job(&self) -> Error {
        self.counters
            .reserve_failures
            .fetch_add(1, Ordering::Relaxed);
        Error::NoSpareJob {
            runtime: self.id,
            reserved: self.ledger.reserved(),
            spare: self.ledger.spare(),
        }
    }

    /// Gives back an object's claim (it left its slot in ordinary context, or a parked object was
    /// drained): the job becomes spare. Safe in restricted context (then never trims).
    pub(crate) fn release_claim(&self) {
        self.give_back(Source::Spare);
    }

    /// Gives back a claim to the counter it came from. Safe in restricted context (then never
    /// trims; a reserved job is never trimmed).
    fn give_back(&self, source: Source) {
        self.ledger.give_back(source);
        if source == Source::Spare && !restricted::is_active() {
            self.maybe_trim(false);
        }
    }

    /// An install that found a spare job, one in `SUPPLY_LOOK_EVERY` of its thread's installs
    /// into this runtime (`supply_countdown.rs`): over the bound, it waits for the drainer as
    /// one that finds no spare job does, for `LOOK_LIMIT` at most (`supply_waits_limited`).
    /// Without this, the jobs that exist are handed out with no look at the backlog, and
    /// objects handlers tear down with them pile up on top of the batches, up to the pool's
    /// size (itself sized against a backlog that the batches may have left for a moment).
    /// While the backlog stays over the bound because readers hold batches up, these installs
    /// go on at 64 per `LOOK_LIMIT` per thread.
    #[cold]
    #[inline(never)]
    fn supply_looks(&self) {
        if self.backlog() <= self.cfg.max_pending {
            return;
        }
        self.supply_waits_limited(SUPPLY_LOOK_EVERY as usize, || {
            self.backlog() > self.cfg.max_pending
        });
    }

    /// [`supply_waits`](Self::supply_waits) for an install, which can go on without the
    /// drainer: `LOOK_LIMIT` at most. Ordinary context.
    fn supply_waits_limited(&self, objects: usize, over: impl Fn() -> bool) {
        #[cfg(not(loom))]
        let until = std::time::Instant::now() + LOOK_LIMIT;
        // (The models have no clock, and never make 64 installs on a thread.)
        #[cfg(not(loom))]
        let waited_enough = || std::time::Instant::now() >= until;
        #[cfg(loom)]
        let waited_enough = || false;
        self.supply_waits(objects, || over() && !waited_enough());
    }

    /// Slow path: no spare job. Grows a batch whose first job is this install's own claim.
    #[cold]
    #[inline(never)]
    fn grow_for_install(&self, supplies: bool) -> Result<Claim<'_>, Error> {
        // No spare job because objects wait for destruction holding them: wait for the drainer
        // first (`supply_waits_limited`) rather than grow the pool (and the backlog with it)
        // for installs whose objects handlers tear down faster than the drainer destroys them
        // — while waiting can give a job back (`jobs_over`: objects in batches hold none), and
        // for `LOOK_LIMIT` at most. Either way round, a reader or a destructor that waits for
        // this thread would wait for ever: what it holds up is no job, or needs this thread.
        let mut want = self.cfg.headroom.max(1);
        if supplies && self.grow_over() {
            self.supply_waits_limited(1, || self.grow_over() && self.jobs_over());
            if self.ledger.claim_spare().is_some() {
                return Ok(Claim::new(self, Source::Spare));
            }
            if self.grow_over() {
                // It gave up waiting (the drainer is stuck): grow this install's job only, so
                // that each install goes through here and waits again.
                want = 1;
            }
        }
        let mut state = self.lock_grow();
        // Somebody may have grown or released while we waited.
        if self.ledger.claim_spare().is_some() {
            return Ok(Claim::new(self, Source::Spare));
        }
        let (grown, err) = self.grow_locked(&mut state.jobs, want);
        let wake = self.regrown(&mut state, grown);
        drop(state);
        if wake {
            self.doorbell.wake_any();
        }
        if grown == 0 {
            self.counters
                .reserve_failures
                .fetch_add(1, Ordering::Relaxed);
            return Err(err.unwrap_or(Error::OutOfMemory));
        }
        // The first job is ours (claimed without ever being credited); the rest become spare.
        self.ledger.credit_spare(grown - 1);
        // Given back unused, it becomes spare like the others.
        Ok(Claim::new(self, Source::Spare))
    }

    /// Opportunistic refill up to the headroom; skipped if another thread holds the grow lock.
    /// Out of line: one install in half a headroom's worth gets here.
    #[cold]
    #[inline(never)]
    fn refill(&self, supplies: bool) {
        // Spare jobs run low because objects wait for destruction holding them: do not grow
        // the pool for that. Nor wait here: this install has its job, and has looked at the
        // backlog if it was due to (`supply_looks`); one that finds none waits in
        // `grow_for_install`.
        if supplies && self.grow_over() {
            return;
        }
        let Some(mut state) = self.try_lock_grow() else {
            return;
        };
        let spare = self.ledger.spare();
        if spare < self.cfg.headroom {
            let (grown, _) = self.grow_locked(&mut state.jobs, self.cfg.headroom - spare);
            let wake = self.regrown(&mut state, grown);
            self.ledger.credit_spare(grown);
            drop(state);
            if wake {
                self.doorbell.wake_any();
            }
        }
    }

    /// Logs growth for demand (`regrowth.rs`), with the grow lock held. Returns whether jobs
    /// just started being kept: the caller then wakes a sleeping drainer thread (from any
    /// sleep: an idle one, or a lazy drainer's period), once it has dropped the lock (the
    /// drainer's cycle try-locks it), so that the drainer sleeps at most a window from then on
    /// (`Drain::kept_for`).
    #[must_use]
    fn regrown(&self, state: &mut Growth, grown: usize) -> bool {
        if grown == 0 || !state.regrowth.enabled() {
            return false;
        }
        let keep = state.regrowth.grown(grown, Instant::now());
        // Relaxed: see `kept`. Before the caller's wake-up, whose SeqCst fence orders it
        // against the drainer's fence after it announced its sleep (`doorbell.rs`'s
        // store-buffering pair): the drainer sees the jobs kept (an untimed idle sleep checks
        // `kept_for`; any sleep's futex wait sees the wake-up's bump of its word), or the
        // wake-up sees it asleep.
        self.kept.swap(keep, Ordering::Relaxed) == 0 && keep > 0
    }

    /// Allocates up to `n` jobs and deals them out over the shards (a batch grown by one thread
    /// serves teardowns on every CPU), in runs of neighbouring indices ([`deal_shard`]: one
    /// CPU's jobs keep to lines, and in large enough buckets to pages, of their own).
    /// Returns how many were made, and the error that stopped it early, if any. The caller
    /// credits them.
    fn grow_locked(&self, state: &mut GrowState, n: usize) -> (usize, Option<Error>) {
        let total = self.total.load(Ordering::Relaxed);
        let room = self.cfg.max_jobs.saturating_sub(total);
        let n_ok = n.min(room);
        let shards = self.cfg.shards;
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
                    let home = deal_shard(idx, shards);
                    // SAFETY: a fresh job is owned by us until this push; `home` is below the
                    // shard count the freelists were made with.
                    unsafe { self.free.push(&self.arena, home, idx) };
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
        self.reserve_locked(&mut state.jobs, n)
    }

    /// Grows the pool so that at least `n` jobs are reserved; returns how many it added. Under
    /// the grow lock, so concurrent callers never add for the same shortfall twice.
    pub(crate) fn reserve_to(&self, n: usize) -> Result<usize, Error> {
        let mut state = self.lock_grow();
        // Every credit `reserve` and `reserve_to` make happens under this lock, so this load sees
        // them all; claims and give-backs from installs in flight may move it either way.
        let short = n.saturating_sub(self.ledger.reserved());
        if short == 0 {
            return Ok(0);
        }
        // Spare jobs first: the jobs a reservation's installs used come back spare once drained,
        // and a top-up that grew new ones instead left those for trim, every round (a pool
        // topped up to 1 000 each tick grew and trimmed 1 000 jobs a tick).
        let mut taken = 0;
        while taken < short && self.ledger.claim_spare().is_some() {
            taken += 1;
        }
        let rest = short - taken;
        let mut wake = false;
        if rest > 0 {
            if let Err(e) = self.reserve_locked(&mut state.jobs, rest) {
                // Nothing reserved on failure: the spare jobs taken go back.
                self.ledger.credit_spare(taken);
                return Err(e);
            }
            // Growth for the same demand every round, like an install's: logged, so that the
            // trims between rounds keep what the next round would grow back (`regrowth.rs`).
            wake = self.regrown(&mut state, rest);
        }
        self.ledger.credit_reserved(taken);
        drop(state);
        if wake {
            self.doorbell.wake_any();
        }
        Ok(short)
    }

    /// `reserve` with the grow lock held: all or nothing.
    fn reserve_locked(&self, state: &mut GrowState, n: usize) -> Result<(), Error> {
        let total = self.total.load(Ordering::Relaxed);
        if n > self.cfg.max_jobs.saturating_sub(total) {
            return Err(Error::CapacityExceeded {
                max_jobs: self.cfg.max_jobs,
            });
        }
        let (grown, err) = self.grow_locked(state, n);
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
        self.maybe_trim(false);
        moved
    }

    /// The automatic trim: tried when the spare jobs pass the trigger, `h + y` plus the jobs
    /// kept for regrowth; after a drain cycle also whenever jobs are kept, whatever the spare
    /// count, so that a window that has passed is noticed and `kept` cleared (one clock read
    /// per cycle, under the try-lock).
    fn maybe_trim(&self, after_drain: bool) {
        let high = self.cfg.headroom + self.cfg.hysteresis;
        let spare = self.ledger.spare();
        // The common case of a removal, first: one load and a compare, as without a window.
        if spare <= high && !after_drain {
            return;
        }
        // Relaxed: see `kept`.
        let kept = self.kept.load(Ordering::Relaxed);
        if spare > high.saturating_add(kept) || (after_drain && kept > 0) {
            self.trim(false);
        }
    }

    /// How long the drainer thread may sleep, at most, before a cycle should look at the jobs
    /// kept for regrowth again: `None` while none are kept.
    pub(crate) fn kept_for(&self) -> Option<Duration> {
        // Relaxed: see `kept`; a 0 read just before a grower raises it is covered by the
        // grower's wake-up and the drainer's check after announcing its sleep (`regrown`).
        (self.kept.load(Ordering::Relaxed) > 0).then_some(self.cfg.regrowth_window)
    }

    /// Frees spare jobs down to the headroom, plus the jobs kept for regrowth (`regrowth.rs`).
    /// Ordinary context only. Returns how many it freed.
    ///
    /// `explicit` (`Runtime::trim`): waits for the grow lock, and forgets the regrowth log
    /// first (what is kept, and what trims freed), so it frees down to the headroom itself and
    /// what it frees is not owed. Otherwise (the automatic trims after drains and
    /// removals) it gives up if another thread holds the grow lock: that thread is growing or
    /// trimming, and the next drain or removal checks again.
    pub(crate) fn trim(&self, explicit: bool) -> usize {
        let mut state = if explicit {
            self.lock_grow()
        } else {
            match self.try_lock_grow() {
                Some(state) => state,
                None => return 0,
            }
        };
        if explicit {
            state.regrowth.reset();
        }
        // Automatic trims log what they free; explicit ones start afresh.
        let now = (!explicit && state.regrowth.enabled()).then(Instant::now);
        let keep = now.map_or(0, |now| state.regrowth.keep_at(now));
        // Relaxed: see `kept`.
        self.kept.store(keep, Ordering::Relaxed);
        // An automatic trim tried after a drain only to notice an expired window frees nothing
        // below the (raised) trigger: the count hysteresis holds with jobs kept too.
        let trigger = (self.cfg.headroom + self.cfg.hysteresis).saturating_add(keep);
        if !explicit && self.ledger.spare() <= trigger {
            return 0;
        }
        let floor = self.cfg.headroom.saturating_add(keep);
        let shards = self.cfg.shards;
        let first = current_shard(shards);
        let mut freed = 0;
        // Claim first, then pop: the job we pop is then one nobody else was promised (D3).
        while self.ledger.claim_spare_above(floor) {
            // Start each pop at the next shard, so trim takes evenly from every CPU's freelist
            // rather than emptying the trimming thread's own.
            let shard = (first + freed) % shards;
            // Models only: a signal handler may interrupt this thread here, between the claim
            // and the pop (`model_hooks`); nothing in the build that ships.
            #[cfg(loom)]
            model_hooks::trim_claimed();
            // SAFETY: all the runtime's jobs come from its arena; we hold the claim just won;
            // `shard` is below `shards`, the freelists' shard count.
            let (idx, _) = unsafe { self.free.pop_owed(&self.arena, shard) };
            // SAFETY: we popped `idx`, so we own it; idle jobs hold no payload.
            if unsafe { self.arena.free_job(&mut state.jobs, idx) }.is_err() {
                // Could not record the index for reuse: keep the job instead.
                // SAFETY: we still own `idx`.
                unsafe { self.free.push(&self.arena, shard, idx) };
                self.ledger.credit_spare(1);
                break;
            }
            self.total.fetch_sub(1, Ordering::Relaxed);
            freed += 1;
        }
        if let Some(now) = now {
            state.regrowth.trimmed(freed, now);
        }
        self.counters
            .trimmed
            .fetch_add(freed as u64, Ordering::Relaxed);
        freed
    }

    /// Hands an object to the drainer. `claimed` says whether the caller holds the object's
    /// claim, which then travels with it. Without one, a job is found now: in restricted context
    /// as `defer_unclaimed` says; in ordinary context by a claim that may grow the pool.
    ///
    /// Returns the payload if it must be destroyed inline instead: only in ordinary context, when
    /// no job could be had. In restricted context it always takes the object (at worst parking
    /// or leaking it, counted). Async-signal-safe in restricted context.
    #[inline]
    pub(crate) fn defer(&self, payload: Payload, claimed: bool) -> Option<Payload> {
        if !claimed {
            if restricted::is_active() {
                self.defer_unclaimed(payload);
                return None;
            }
            match self.claim_ordinary(false) {
                Ok(claim) => claim.spend(),
                Err(_) => return Some(payload),
            }
        }
        self.offload(payload);
        None
    }

    /// Defers, in restricted context, an object that holds no claim (a clone from
    /// `clone_current` whose object has left its slot, a refused install's value, or a value an
    /// ordinary replace displaced and nobody reserved). In this
    /// order: a spare job; else the emergency area (the drainer empties it); else a reserved job
    /// (counted: it was promised to an install, but leaking is worse); else it is leaked, counted.
    /// Spare before reserved so that such teardowns do not eat the jobs set aside for installs.
    /// Never runs the destructor. Async-signal-safe.
    fn defer_unclaimed(&self, payload: Payload) {
        if self.ledger.claim_spare().is_some() {
            self.offload(payload);
            return;
        }
        let parked = match self.emergency.park(Parked {
            payload,
            claimed: false,
        }) {
            Ok(()) => {
                self.counters.emergency.fetch_add(1, Ordering::Relaxed);
                self.doorbell.ring();
                return;
            }
            Err(parked) => parked,
        };
        if self.ledger.claim_reserved() {
            self.counters
                .reserved_for_teardowns
                .fetch_add(1, Ordering::Relaxed);
            self.offload(parked.payload);
            return;
        }
        self.counters.leaked.fetch_add(1, Ordering::Relaxed);
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
        // The job is located once, by the pop, and handled through its entry from then on.
        // SAFETY: all the runtime's jobs come from its arena; the caller's claim is spent here;
        // `shard` is `current_shard(cfg.shards)`, below the shard count of the freelists and of
        // the job lists (both made with `cfg.shards`).
        let (idx, entry) = unsafe { self.free.pop_owed(&self.arena, shard) };
        // SAFETY: the pop made the job ours; it has a body (only trim removes bodies, and only
        // from jobs it owns).
        unsafe { entry.set_payload(payload) };
        // SAFETY: ours, given up to the list; `entry` is `idx`'s, in the lists' arena; `shard`
        // is in range (above).
        let before = unsafe { self.lists.push_entry(shard, idx, entry) };
        self.doorbell.after_push(before);
    }

    /// Queues an owned box's node on this CPU's owned list, rings the doorbell as a job push
    /// does (one swap and, for the first node of a burst, the ring), links the node, then makes
    /// the ring's wake-up syscall if it needs one (`owned_list.rs`). Takes the state as a raw
    /// pointer: the node's count may be what keeps it alive, and a drainer may uncount the node
    /// the moment it is linked. Async-signal-safe.
    ///
    /// # Safety
    /// `this` is the state the node is counted in; the caller owns the live node (made with
    /// [`owned_link`](Self::owned_link) of this state, never pushed) and gives it up.
    #[inline]
    pub(crate) unsafe fn offload_owned(this: *const Inner, node: NonNull<Link>, grace: bool) {
        // SAFETY: place projections (no reference) into the state the node keeps alive;
        // forwarded contract.
        unsafe {
            OwnedLists::push(
                &raw const (*this).owned,
                &raw const (*this).doorbell,
                node,
                grace,
            )
        }
    }

    /// The list entry of a new owned box of this runtime, destroyed by `destroy`: it names the
    /// lists [`offload_owned`](Self::offload_owned) pushes it onto. Ordinary context.
    #[inline]
    pub(crate) fn owned_link(&self, destroy: Dtor) -> Link {
        Link::new(destroy, &self.owned)
    }

    /// Counts an owned box being made (`owned.rs`): the first of the boxes that exist takes
    /// the strong reference to this state that they share, and a box that takes the count past
    /// a multiple of `KEEP_UP_EVERY` looks whether the drainers keep up. Ordinary context.
    ///
    /// # Safety
    /// `this` is the state as its `Arc` gives it (`Arc::as_ptr`), and the caller keeps it alive
    /// across the call with a reference of its own: a runtime handle, or a box still counted in
    /// it (the box being cloned).
    #[inline]
    pub(crate) unsafe fn hold_for_box(this: *const Inner) {
        // SAFETY: alive across the call (contract).
        let before = unsafe { (*this).owned.box_made() };
        // One branch for the two rare cases (and, 1 box in 64, neither): the first box, and a
        // box that takes the count past a multiple of `KEEP_UP_EVERY`.
        if before.wrapping_add(1) % KEEP_UP_EVERY <= 1 {
            // SAFETY: forwarded contract.
            unsafe { Inner::box_count_turned(this, before) };
        }
    }

    /// [`hold_for_box`](Self::hold_for_box)'s rare cases: `before` boxes existed.
    ///
    /// # Safety
    /// As for `hold_for_box`.
    #[cold]
    #[inline(never)]
    unsafe fn box_count_turned(this: *const Inner, before: usize) {
        if before == 0 {
            // SAFETY: an `Arc` pointer to a live state (contract); the count added is the
            // boxes' shared reference, given back once, by the `release_boxes` that uncounts the
            // last of them.
            unsafe { Arc::increment_strong_count(this) };
        } else if before % KEEP_UP_EVERY == KEEP_UP_EVERY - 1 {
            // Past a multiple of `KEEP_UP_EVERY` boxes: look whether drainers keep up with the
            // boxes dropped in handlers (and help if not).
            // SAFETY: alive (contract), and kept so by the box just counted.
            unsafe { (*this).keep_up_with_boxes() };
        }
    }

    /// Uncounts `n` owned boxes that are gone; if they were the last, gives the boxes' shared
    /// reference back, which may free this state. Safe anywhere (a handler never gets here:
    /// boxes are destroyed in ordinary context).
    ///
    /// # Safety
    /// `this` is the state the `n` boxes were counted in by [`hold_for_box`](Self::hold_for_box),
    /// as its `Arc` gives it (`Arc::as_ptr`: the pointer must cover the reference counts), each
    /// box uncounted once, here. Unless the caller holds a strong reference of its own,
    /// `this` may dangle once this returns: no reference into the state may live across the
    /// call (it takes a raw pointer for that).
    #[inline]
    pub(crate) unsafe fn release_boxes(this: *const Inner, n: usize) {
        // SAFETY: the boxes being uncounted keep the state alive until this decrement; the
        // borrow ends with it.
        let last = unsafe { (*this).owned.boxes_gone(n) };
        if last {
            // SAFETY: the shared reference taken by `hold_for_box`, given back once (the
            // count went to zero here; the next box to be made takes a new one).
            unsafe { Arc::decrement_strong_count(this) };
        }
    }

    /// The D7 fallback: park the object; if even that fails, leak it. Never runs a destructor.
    fn offload_emergency(&self, parked: Parked) {
        match self.emergency.park(parked) {
            Ok(()) => {
                self.counters.emergency.fetch_add(1, Ordering::Relaxed);
                self.doorbell.ring();
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

    /// Defers an object in ordinary context: into this CPU's open batch (no job, no ledger). The
    /// thread that fills a batch closes it and helps (module docs). If every open batch is busy
    /// (other threads adding to or closing each of them at that instant, rare with a few
    /// instructions under each lock; or a handler that forgot to enter restricted context,
    /// interrupting an `add` on its own thread), the object goes with a job instead, or, with no
    /// job to be had, is destroyed here after a grace period. A thread that cannot wait for
    /// that grace period (it holds a read guard itself) tries the open batches again, yielding
    /// to their holders, before it parks the object in the emergency area: that area is the
    /// handlers' last resort, and writers under a job limit that filled it leaked what came
    /// after (`tests/retire_under_a_job_limit.rs`).
    pub(crate) fn retire(&self, payload: Payload) {
        debug_assert!(!restricted::is_active());
        let Err(payload) = self.add_to_batch(payload) else {
            return;
        };
        let Some(payload) = self.defer(payload, false) else {
            // Queued with a job, which the backlog counts: the bound holds on this path too.
            // (Writers that outnumber the shards find every open batch busy often, and
            // without this check kept queuing jobs, and growing the pool, past the bound.)
            if self.backlog() > self.cfg.max_pending {
                self.after_close(1);
            }
            return;
        };
        if payload.grace && read::synchronize().is_err() {
            // This thread holds a guard: waiting would never end. The batches' holders keep
            // them for a few instructions and never wait: wait for one of them instead.
            let mut payload = payload;
            for _ in 0..BUSY_BATCH_RETRIES {
                crate::sync::yield_now();
                match self.add_to_batch(payload) {
                    Ok(()) => return,
                    Err(refused) => payload = refused,
                }
            }
            // Still refused (a handler interrupting this thread's own `add`): park it.
            self.offload_emergency(Parked {
                payload,
                claimed: false,
            });
            return;
        }
        self.destroying(|runner| self.run(runner, payload));
        self.counters.drained.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds an object to an open batch (`retire`), closing the batch if that fills it, and
    /// helping as the thread that opens or closes a batch does; hands the object back if every
    /// open batch is busy. Ordinary context.
    fn add_to_batch(&self, payload: Payload) -> Result<(), Payload> {
        // A batch this fills is in no structure until it is closed: the gate is entered while it
        // is still locked, and left once it is queued, so `drain_and_wait` waits for it.
        let on_full = || self.gate.enter();
        match self
            .batches
            .add(current_shard(self.cfg.shards), payload, on_full)?
        {
            Added::Open { before: 0 } => {
                // The first object of a batch: a drainer asleep with nothing to poll must learn
                // that something waits (it then polls until the batch is gone).
                self.doorbell.nudge();
                if crate::reclaim::drainer::drains_for(self.id) {
                    // A destructor of the drainer thread's (a structure being torn down, one
                    // level per cycle): its next cycle closes this batch rather than wait.
                    // Relaxed: only this thread reads it (`opened_a_batch`).
                    self.counters
                        .drainer_opened_batch
                        .store(true, Ordering::Relaxed);
                }
                // The drainer may have closed our last batch before it filled: the backlog is
                // checked at the start of each batch too, so it is bounded either way.
                if self.backlog() > self.cfg.max_pending {
                    self.after_close(BATCH);
                }
            }
            Added::Open { .. } => {}
            Added::Full(items, grace, inside) => {
                self.batches.close(items, grace);
                drop(inside);
                self.after_close(BATCH);
            }
        }
        Ok(())
    }

    /// What the thread that closed a batch does next: help, then keep the backlog bounded.
    /// `objects`: how many it may add before it looks again (a batch's worth after a batch
    /// closed or opened, one after an object queued with a job).
    fn after_close(&self, objects: usize) {
        // Destructors may run on this thread under Policy::Auto, and under AlwaysDefer only when
        // nobody else would run them (a manual drainer) and the backlog is over the bound — or
        // when this thread is a drainer (a destructor retiring into this runtime).
        let (runs_here, on_a_drainer) = self.helps_here();
        if self.cfg.policy == Policy::Auto {
            let ran = {
                let _inside = self.gate.enter();
                self.run_ready(HELP_BATCHES, false)
            };
            if ran > 0 {
                self.counters.helped.fetch_add(1, Ordering::Relaxed);
            }
        }
        // A thread that waits for the drainer thread rather than drain (AlwaysDefer) gives up
        // once that thread has stayed inside one destructor for `DRAINER_PATIENCE`: it may be
        // blocked on a lock this thread holds (a deadlock, were it waited for). The price: a
        // drainer whose destructors each take longer than that lets such threads go on by a
        // batch per destructor. One that drains itself waits only for readers, as
        // `synchronize` would.
        let patience = (!runs_here).then_some(Patience { objects });
        self.help_while(
            || self.helps_here().0,
            on_a_drainer,
            patience,
            || self.backlog() > self.cfg.max_pending,
        );
    }

    /// How an install that would grow the pool, or the maker of an owned box, keeps up while
    /// `over()`: it supplies objects but hands none over, so it runs no other object's
    /// destructor while a drainer thread could (its caller may hold a lock those destructors
    /// take): it wakes that thread and waits for it for as long as it keeps finishing
    /// destructors, and goes on over the bound once it has finished none for
    /// `DRAINER_PATIENCE` (it may be blocked on such a lock). A supplier faster than the drainer
    /// is so held to its pace, and while the drainer is stuck to `max_pending` objects or fewer
    /// per `DRAINER_PATIENCE` (the give-up's passes, `stall_passes.rs`; `grow_for_install` then
    /// grows one job, not a headroom's worth). Without a drainer thread here (a manual drainer,
    /// or a forked child that has not started its own), or on a drainer, it runs cycles
    /// itself. `objects`: how many the caller may supply before it looks again (one install;
    /// the boxes made until the next look). Ordinary context.
    #[cold]
    #[inline(never)]
    fn supply_waits(&self, objects: usize, over: impl Fn() -> bool) {
        let on_a_drainer = crate::reclaim::drainer::on_a_drainer();
        let runs_here = || !self.drainer_thread_here() || on_a_drainer;
        self.help_while(runs_here, on_a_drainer, Some(Patience { objects }), over);
    }

    /// Whether this thread may run destructors to keep a backlog bounded: under `Policy::Auto`,
    /// and under `AlwaysDefer` when nobody else would (a manual drainer) — or when this thread
    /// is a drainer (a destructor handing objects over to this runtime): a drainer never waits
    /// for another, which may be waiting for it the same way. The second answer: whether this
    /// thread is a drainer.
    fn helps_here(&self) -> (bool, bool) {
        let on_a_drainer = crate::reclaim::drainer::on_a_drainer();
        let runs_here =
            self.cfg.policy == Policy::Auto || !self.drainer_thread_here() || on_a_drainer;
        (runs_here, on_a_drainer)
    }

    /// While `over()`, runs drain cycles (while `runs_here()`: asked on every pass, as a
    /// drainer thread may be started meanwhile, in a forked child), or rings the drainer thread
    /// and waits for it — giving up on the bound where waiting could last for ever (below),
    /// and, with a `patience`, once the drainer thread has finished no destructor for that long
    /// (it may be blocked on a lock this thread holds). A give-up grants passes to the calls
    /// after it that find the drainer thread still stalled: they go on at once
    /// (`stall_passes.rs`). Ordinary context.
    fn help_while(
        &self,
        runs_here: impl Fn() -> bool,
        on_a_drainer: bool,
        patience: Option<Patience>,
        over: impl Fn() -> bool,
    ) {
        let mut spins = 0u32;
        #[cfg(not(loom))]
        let mut progress = (self.heartbeat(), std::time::Instant::now());
        #[cfg(loom)]
        let _ = patience;
        while over() {
            if runs_here() {
                let cycle = self.cycle_inner(false);
                self.counters.helped.fetch_add(1, Ordering::Relaxed);
                if cycle.ran > 0 {
                    continue;
                }
            } else {
                self.doorbell.ring();
            }
            if read::is_active() || on_a_drainer || self.stopping() {
                // Give up on the bound rather than wait, whoever runs the destructors: the grace
                // period may be waiting for this thread's own guard; a drainer never waits for
                // readers (nor for another drainer); a stopping runtime's last cycles run
                // everything anyway (and its drainer thread may be gone).
                return;
            }
            #[cfg(not(loom))]
            if let Some(patience) = patience {
                // The drainer thread's progress and other destroying threads': the backlog
                // counts the chains and batches those took too, and any of them may be
                // blocked on a lock this thread holds (a thread calling `drain` whose
                // destructor waits for it, while the drainer thread sleeps: waited for ever).
                let beat = self
                    .heartbeat()
                    .wrapping_add(self.counters.others_beat.load(Ordering::Relaxed));
                // Relaxed: a hint (see `run`). A drainer thread outside any destructor (idle,
                // waiting for readers, or not yet scheduled) cannot be blocked on a lock this
                // thread holds: waiting for it is waiting for readers or for a CPU, and the
                // clock restarts. Only one that stays inside a destructor, or another thread
                // that finishes none of what it took, is given up on.
                let inside = self.counters.drainer_inside.load(Ordering::Relaxed) > 0
                    || self.counters.others_inside.load(Ordering::Relaxed) > 0;
                if beat != progress.0 || !inside {
                    progress = (beat, std::time::Instant::now());
                } else if self.stall_passes.take_pass(beat, patience.objects) {
                    return;
                } else if progress.1.elapsed() >= DRAINER_PATIENCE {
                    self.stall_passes
                        .gave_up(beat, self.cfg.max_pending, DRAINER_PATIENCE);
                    self.counters.drainer_stalls.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            // Readers hold the grace period up (or the drainer is busy): wait as `synchronize`
            // does, spinning briefly, then yielding.
            if spins < 64 {
                spins += 1;
                crate::sync::spin_hint();
            } else {
                crate::sync::yield_now();
            }
        }
    }

    /// What the maker of an owned box does when the box count passes a multiple of 64 (while
    /// boxes pile up, one box made in 64, by any thread): if boxes wait on the lists and no
    /// drain cycle has finished since the last maker looked, the drainers do not keep up with
    /// the boxes dropped in handlers (or nobody drains: a manual drainer, or a drainer thread
    /// that gets no CPU). The maker then waits for the drainer thread's next cycle, or runs
    /// one without a drainer thread (`supply_waits`). A push counts nothing (it stays one
    /// swap), so this is what keeps boxes from piling up without bound: a cycle finds about 128
    /// more than the last one took, per maker (the first look after a cycle only records it,
    /// the next one waits). Out of line, and not in restricted context (where `Owned::new`
    /// must not be called anyway).
    #[cold]
    #[inline(never)]
    pub(crate) fn keep_up_with_boxes(&self) {
        if restricted::is_active() || !self.owned.any_queued() {
            return;
        }
        // Relaxed, here and below: heuristics, ordered with nothing.
        let cycles = self.counters.cycles.load(Ordering::Relaxed);
        if self.cycles_seen_by_makers.swap(cycles, Ordering::Relaxed) != cycles {
            return;
        }
        self.supply_waits(KEEP_UP_EVERY, || {
            self.counters.cycles.load(Ordering::Relaxed) == cycles && self.owned.any_queued()
        });
    }

    /// Objects waiting in job lists, in the chains drainers took from them and in closed
    /// batches: what `max_pending` bounds. Also records the peak of everything pending.
    ///
    /// A taken chain's objects count until they are destroyed, as one count with the batches'
    /// (`backlog.rs`): a drainer preempted while it takes a list, or moves a chain's objects
    /// into a batch, hides none of them from the writers, who would queue as many again
    /// meanwhile. Read in the order that count's argument needs: lists, announced jobs, then
    /// past the lists. A thread that is destroying what it took — running a chain, or
    /// batches — leaves out everything being destroyed, the taken chains and the batches
    /// being run alike (`Batches::excluded_here`): a destructor of its own retiring or
    /// installing an object would otherwise wait for its own chain or batches, or for another
    /// thread's, whose destructors may be waiting for ours the same way (a thread in a chain
    /// and one in batches, each installing with no spare job, waited for each other for ever:
    /// `tests/destroyers_installing.rs`).
    fn backlog(&self) -> usize {
        self.record_peak_pending();
        let queued = self.lists.queued();
        let announced = self.backlog.announced();
        let past = self.backlog.past_lists();
        let chain_here = ChainHere::active();
        let chains = if chain_here || self.batches.destroying_here() {
            self.taken.waiting()
        } else {
            0
        };
        queued + announced + past.saturating_sub(chains + self.batches.excluded_here(chain_here))
    }

    /// Whether this thread is destroying objects it took: running a chain, or batches.
    fn destroying_here(&self) -> bool {
        ChainHere::active() || self.batches.destroying_here()
    }

    /// Whether the pool must not grow for an install: the backlog, plus the jobs chains being
    /// run still hold for objects they batched (`TakenJobs::held_for_batched`; counted twice
    /// while those objects wait in batches, which only makes growth wait a little), is over
    /// the bound. Without them, a long (or preempted) chain walk whose batches other threads
    /// have destroyed holds up to a chain's worth of jobs that count nowhere: installs find
    /// spare jobs run out while the backlog reads low, the pool grows by as much, and the
    /// regrowth log keeps the jobs. Not on a thread that is destroying what it took (as in
    /// `backlog`): those jobs are the chains' it would otherwise wait for.
    fn grow_over(&self) -> bool {
        let held = if self.destroying_here() {
            0
        } else {
            self.taken.held_for_batched()
        };
        self.backlog() + held > self.cfg.max_pending
    }

    /// Whether more than `max_pending` jobs are held by objects waiting for destruction: queued,
    /// announced by a drain taking them, or in the chains drainers run (none of them on a
    /// thread that is destroying what it took, as in `backlog`). Only those jobs come back to the pool as the drainers catch up;
    /// objects waiting in batches (for readers, say) hold none. A snapshot that may read high
    /// for a moment (a chain both announced and counted as taken).
    fn jobs_over(&self) -> bool {
        let chains = if self.destroying_here() {
            0
        } else {
            self.taken.running()
        };
        self.lists.queued() + self.backlog.announced() + chains > self.cfg.max_pending
    }

    /// Records `pending` in `peak_pending` if it is a new peak, confirmed by a second
    /// snapshot (the lower of the two is recorded). A snapshot reads several counts one after
    /// the other; a thread preempted between two of them can add up objects that never waited
    /// at the same time (a chain counted before it was destroyed, and jobs queued after), and
    /// report a peak no moment had. Both snapshots must be so inflated for the record to be.
    /// Only a new peak pays for the second one.
    fn record_peak_pending(&self) {
        // Relaxed, here and below: a statistic.
        let peak = self.counters.peak_pending.load(Ordering::Relaxed);
        let first = self.pending();
        if first <= peak {
            return;
        }
        let confirmed = first.min(self.pending());
        self.counters
            .peak_pending
            .fetch_max(confirmed, Ordering::Relaxed);
    }

    /// Whether a drain found an owned box its pusher had not linked yet, and has not run it
    /// since (`owned_list.rs`). A snapshot; safe anywhere.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn owned_stalled(&self) -> bool {
        self.owned.stalled()
    }

    /// Wakes the drainer thread from any sleep, as a ring's wake-up would (tests only: one whose
    /// push is paused before its link, when the ring's syscall waits for the link).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn wake_drainer(&self) {
        self.doorbell.wake_any();
    }

    /// The owned lists (tests only).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn owned_lists(&self) -> &OwnedLists {
        &self.owned
    }

    /// At a shutdown (the last handle's, and the drainer thread's exit): a box some thread was
    /// still pushing when a drain took its list (preempted between putting it on the list and
    /// linking it: a few instructions) is linked within moments. Wait for that, yielding, at
    /// most [`STALLED_BOX_WAIT`] (or the shutdown timeout, if shorter), running it and what is
    /// older. Nobody else would: the box, still counted, keeps the runtime state, and so the
    /// stash that holds the box, alive. Not in a process forked since the runtime was built, where
    /// that thread may be one of a parent's, which never resumes there. Ordinary context.
    pub(crate) fn settle_stalled_boxes(&self) {
        if !self.owned.stalled() || crate::fork::count() != self.built_at_fork {
            return;
        }
        self.settle_stalled_boxes_slowly();
    }

    #[cold]
    #[inline(never)]
    fn settle_stalled_boxes_slowly(&self) {
        let limit = self
            .cfg
            .shutdown_timeout
            .map_or(STALLED_BOX_WAIT, |t| t.min(STALLED_BOX_WAIT));
        #[cfg(not(loom))]
        let deadline = std::time::Instant::now() + limit;
        #[cfg(loom)]
        let _ = limit;
        while self.owned.stalled() {
            #[cfg(not(loom))]
            if std::time::Instant::now() >= deadline {
                return;
            }
            crate::sync::yield_now();
            while self.drain() > 0 {}
        }
    }

    /// Everything waiting for destruction now (a snapshot; owned boxes are counted apart):
    /// past the lists, in the lists, in open batches, parked. Read against the flow (past the
    /// lists first: `backlog.rs`): an object that moves on between two reads is missed by this
    /// snapshot, never counted twice (which could count a whole list twice, and `peak_pending`
    /// is checked against the bound).
    pub(crate) fn pending(&self) -> usize {
        let past = self.backlog.past_lists();
        #[cfg(test)]
        pause(&self.faults.pause_in_pending);
        past + self.lists.queued() + self.batches.open() + self.emergency.parked()
    }

    /// Runs up to `max` ready batches (all batches, if `all`: nobody can read them any more).
    /// Returns the destructors run.
    /// Callers outside a drain cycle enter the gate first (`cycle_gate.rs`): the batches taken
    /// here are destroyed before it is left.
    fn run_ready(&self, max: usize, all: bool) -> usize {
        let mut ready: Vec<Closed> = Vec::new();
        self.batches.take_ready(max, all, &mut ready);
        let others = OthersInside::enter(self, !ready.is_empty());
        let mut ran = 0;
        for batch in ready {
            if batch.cookie.is_some() {
                self.counters.grace_periods.fetch_add(1, Ordering::Relaxed);
            }
            let n = batch.items.len();
            self.destroying(|runner| {
                for payload in batch.items.iter() {
                    self.run(runner, *payload);
                }
            });
            self.batches.finished(batch.items, n);
            others.beat();
            ran += n;
        }
        self.counters
            .batched
            .fetch_add(ran as u64, Ordering::Relaxed);
        self.counters
            .drained
            .fetch_add(ran as u64, Ordering::Relaxed);
        ran
    }

    /// Destructors run so far (a snapshot; counted when a batch or chain is done).
    pub(crate) fn destroyed(&self) -> u64 {
        self.counters.drained.load(Ordering::Relaxed)
    }

    /// Drain cycles finished so far, by anyone (a snapshot): for tests that must know the
    /// drainer thread has made its first.
    #[cfg(test)]
    pub(crate) fn cycles(&self) -> u64 {
        self.counters.cycles.load(Ordering::Relaxed)
    }

    /// A value that changes whenever a destructor this runtime's drainer thread ran has
    /// returned (a snapshot).
    pub(crate) fn heartbeat(&self) -> u64 {
        // Relaxed: only compared with an earlier snapshot (see `run`).
        self.counters.heartbeat.load(Ordering::Relaxed)
    }

    /// Runs `f`, which runs deferred destructors with [`run`](Self::run) and the [`Runner`] it
    /// is given, as one level of destructors on this thread (`nested.rs`): objects those
    /// destructors let go of deep in a structure are put aside, and if this is the outermost
    /// level, destroyed here once `f` has returned, one after another.
    #[inline]
    fn destroying<R>(&self, f: impl FnOnce(Runner) -> R) -> R {
        let running = nested::Running::enter();
        let runner = Runner {
            depth: restricted::depth(),
            on_drainer: crate::reclaim::drainer::drains_for(self.id),
        };
        let result = f(runner);
        running.destroy_put_aside(|payload| self.run(runner, payload));
        result
    }

    /// Runs one destructor, catching a panic. The caller counts it in `drained`.
    ///
    /// A destructor that forgets a [`RestrictedGuard`](crate::restricted::RestrictedGuard) would
    /// leave this thread — a drainer, or a thread helping — in restricted context for good:
    /// every later destructor would defer instead of run, and a runtime handle dropped there
    /// would be leaked as if in a signal handler. The depth is put back, and counted.
    ///
    /// Called inside [`destroying`](Self::destroying), which counts the destructors this thread
    /// runs for `nested.rs` and reads what `runner` says of the thread, once for a whole chain
    /// or batch (a thread-local access per destructor doubled the cost of draining a no-op
    /// one).
    #[inline]
    fn run(&self, runner: Runner, payload: Payload) {
        let Runner { depth, on_drainer } = runner;
        // The drainer thread says when it is inside a destructor (the only place it can block
        // on a lock a waiting thread holds: `help_while`). Plain loads and stores, as for the
        // heartbeat below; the count nests (a destructor that drains its own runtime), and
        // wraps rather than panics if a store is ever lost. Relaxed: read as a hint, never
        // synchronised on.
        let inside = &self.counters.drainer_inside;
        if on_drainer {
            inside.store(
                inside.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        }
        // Every payload was built from an owned pointer and its own destructor; each job or
        // batch is taken by exactly one drainer, each object put aside (`nested.rs`) once by
        // the thread that put it aside.
        // SAFETY: so this is the one call of `dtor(obj)` (above).
        let result = catch_unwind(AssertUnwindSafe(|| unsafe { (payload.dtor)(payload.obj) }));
        // A plain load and store, not a read-modify-write: it only has to change (a lost bump
        // from a concurrent drainer still changes it). Relaxed: compared, never synchronised on.
        if on_drainer {
            inside.store(
                inside.load(Ordering::Relaxed).wrapping_sub(1),
                Ordering::Relaxed,
            );
            let beat = &self.counters.heartbeat;
            beat.store(
                beat.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        }
        if restricted::depth() != depth {
            self.put_back_depth(depth);
        }
        if let Err(panic) = result {
            self.contain_panic(panic);
        }
    }

    /// A destructor left restricted context entered (or left more than it entered): put the
    /// depth back, and count it.
    #[cold]
    #[inline(never)]
    fn put_back_depth(&self, depth: u32) {
        restricted::reset_depth(depth);
        self.counters
            .stray_restricted
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A destructor panicked: count it, and drop the panic's payload without letting a second
    /// panic unwind out of the drain.
    #[cold]
    #[inline(never)]
    fn contain_panic(&self, panic: Box<dyn std::any::Any + Send>) {
        self.counters.dtor_panics.fetch_add(1, Ordering::Relaxed);
        // Dropping the payload may panic too; contain that as well, and if even that panic's
        // payload panics when dropped, forget it rather than let it unwind out of the drain.
        if let Err(inner) = catch_unwind(AssertUnwindSafe(move || drop(panic))) {
            std::mem::forget(inner);
        }
    }

    /// One drain cycle, as `Runtime::drain` and the drainer thread run it. Ordinary context.
    pub(crate) fn drain(&self) -> usize {
        self.cycle_inner(true).ran
    }

    /// A drain cycle (module docs): clear the doorbell, take every list, run what needs no grace
    /// period, batch the rest, close open batches (`close_open`), run ready batches, trim. Never
    /// waits for readers. Ordinary context only.
    fn cycle_inner(&self, close_open: bool) -> Cycle {
        self.cycle_closing(close_open, false)
    }

    /// [`cycle_inner`](Self::cycle_inner); with `wait_open`, an open batch some thread is
    /// adding to is waited for rather than left to a later cycle (`drain_and_wait`).
    fn cycle_closing(&self, close_open: bool, wait_open: bool) -> Cycle {
        debug_assert!(!restricted::is_active());
        // Inside the gate until everything taken is destroyed or closed into a batch
        // (`cycle_gate.rs`).
        let _inside = self.gate.enter();
        // Clear before taking: see `doorbell.rs` for why this order means no lost wake-up.
        self.doorbell.clear();
        // Once stopping, no reader can reach this runtime's objects (see `stopping_frees_all`).
        let all = self.stopping();
        let mut ran = 0;
        let mut grace: Vec<Payload> = Vec::new();
        for shard in 0..self.lists.shards() {
            // Announced before the take, counted past the lists right after it, then withdrawn:
            // the writers' backlog sees the list's jobs at every step (`backlog.rs`).
            let (chain, announced) = self
                .lists
                .take_announced(shard, |n| self.backlog.announce(n));
            #[cfg(test)]
            if !chain.is_empty() {
                pause(&self.faults.pause_after_take);
            }
            self.backlog.enter(chain.len());
            self.backlog.withdraw(announced);
            if !chain.is_empty() {
                ran += self.run_chain(shard, chain, all);
            }
        }
        // Owned boxes (`owned.rs`) come in their own nodes: no job to return, no claim.
        let mut owned = 0;
        let taken = self.destroying(|runner| {
            self.owned.take_all(|payload| {
                if payload.grace && !all {
                    self.batch_for_grace(&mut grace, payload);
                } else {
                    self.run(runner, payload);
                    owned += 1;
                }
            })
        });
        // The boxes handed over are gone as boxes (destroyed, or batched as plain objects):
        // uncount them at once, one decrement for the lot, not one per destructor.
        if taken > 0 {
            // Relaxed: see `placed`; a node was pushed onto our lists, so the state was placed.
            let me = self.me.load(Ordering::Relaxed);
            // Each node the walks handed over was counted by its `Owned::new` and is uncounted
            // here only (a walked node's destroy function frees it without uncounting). Whoever
            // runs a cycle holds a strong reference of its own (a handle, the drainer thread's,
            // or a box being dropped here, still counted), so `self` stays valid; `Drop for
            // Inner`, which holds none, never gets here: while a box exists the state cannot be
            // dropped, so its lists are empty then.
            // SAFETY: `taken` counted boxes, uncounted once (above); `me` is the state's `Arc`
            // pointer; the caller's own reference keeps the state past the call (above).
            unsafe { Inner::release_boxes(me, taken) };
        }
        self.counters
            .drained
            .fetch_add(owned as u64, Ordering::Relaxed);
        ran += owned;
        // One snapshot serves the nudge and the cycle's report.
        let stalled = self.owned.stalled();
        if stalled {
            // A box found unlinked (its pusher preempted mid-push) is linked by nobody who
            // rings. If this is not the drainer thread, that thread may be going to sleep until
            // rung: tell it work waits, as a batch's first object does (it then polls).
            self.doorbell.nudge();
        }
        let mut unparked = 0;
        self.destroying(|runner| {
            self.emergency.drain(|parked| {
                if parked.payload.grace && !all {
                    self.batch_for_grace(&mut grace, parked.payload);
                } else {
                    self.run(runner, parked.payload);
                    unparked += 1;
                }
                if parked.claimed {
                    // The parked object kept its claim; its job is idle in a freelist.
                    self.ledger.credit_spare(1);
                }
            });
        });
        self.counters
            .drained
            .fetch_add(unparked as u64, Ordering::Relaxed);
        ran += unparked;
        // Every object in `grace` was removed from its slot before it was queued, and we took it
        // (Acquire) before this close stamps it: the cookie covers it (`batches.rs`).
        self.batches.close_new(grace, true, false);
        if close_open || all {
            self.batches.close_open(wait_open);
        }
        ran += self.run_ready(CYCLE_BATCHES, all);
        self.backlog();
        self.maybe_trim(true);
        // Relaxed: a heuristic for makers of boxes (`keep_up_with_boxes`).
        self.counters.cycles.fetch_add(1, Ordering::Relaxed);
        Cycle {
            ran,
            // A stalled owned box is linked by nobody who rings: come back for it.
            waiting: self.batches.any() || stalled,
            stalled,
        }
    }

    /// Adds an object that needs a grace period to the cycle's own batch, closing it when full.
    fn batch_for_grace(&self, grace: &mut Vec<Payload>, payload: Payload) {
        grace.push(payload);
        if grace.len() >= BATCH {
            self.batches.close_new(std::mem::take(grace), true, false);
        }
    }

    /// Runs what can run of a chain taken from `shard`'s list, oldest first, batches what needs
    /// a grace period (in batches of its own: the objects move from the chain's count to the
    /// batches' as each batch closes), and returns the jobs to that shard's freelist, whole,
    /// with one push. Returns destructors run.
    fn run_chain(&self, shard: usize, chain: Chain, all: bool) -> usize {
        let _here = ChainHere::enter();
        let others = OthersInside::enter(self, true);
        let len = chain.len();
        let active = self.taken.take(len);
        self.counters
            .peak_active
            .fetch_max(active, Ordering::Relaxed);
        self.counters.taken.fetch_add(len as u64, Ordering::Relaxed);
        let mut ran = 0;
        let mut grace: Vec<Payload> = Vec::new();
        let mut batched = 0;
        let mut run_one = |runner: Runner, entry: &Entry| {
            // SAFETY: we took the chain, so we own the job; its offload set its payload.
            if let Some(payload) = unsafe { entry.take_payload() } {
                if payload.grace && !all {
                    grace.push(payload);
                    if grace.len() >= BATCH {
                        // Out of the chain's count, then into the batches': the backlog
                        // counts both as one (`backlog.rs`), so only a thread running a chain,
                        // which leaves the chains' count out of its backlog, sees the move: it
                        // counts these objects from here on, as batched.
                        self.taken.batched(BATCH);
                        batched += BATCH;
                        self.batches
                            .close_new(std::mem::take(&mut grace), true, true);
                    }
                } else {
                    self.run(runner, payload);
                    ran += 1;
                }
            }
        };
        // SAFETY: all the runtime's jobs come from its arena.
        let walked = self.destroying(|runner| unsafe {
            chain.for_each_oldest_first(&self.arena, |_, entry| run_one(runner, entry))
        });
        if let Some((top, last)) = walked {
            // SAFETY: the chain is ours, linked from `top` to `last` (the walk left it so); back
            // to the freelist of the shard it was offloaded on.
            unsafe { self.free.push_chain::<Arena>(shard, top, last) };
        }
        // The jobs are visible in the freelist: now their claims may become credit.
        self.ledger.credit_spare(len);
        // The rest of the chain's objects that need a grace period: a partial batch. Every one
        // was removed from its slot before it was queued, and we took it (Acquire) before this
        // close stamps it: the cookie covers it (`batches.rs`).
        let kept = batched + grace.len();
        self.batches.close_new(grace, true, true);
        self.taken.finished(len, batched);
        others.beat();
        // What the chain did not hand to batches was destroyed (or was a job with no object).
        self.backlog.leave(len - kept);
        self.counters
            .drained
            .fetch_add(ran as u64, Ordering::Relaxed);
        ran
    }

    /// Runs every destructor deferred before the call, waiting for readers (grace periods) if
    /// some of them need it, and for the drains other threads had started on them
    /// (`cycle_gate.rs`) — unless this thread is inside a drain itself (a destructor called
    /// this), which must not wait for another. Ordinary context; the caller checked that this
    /// thread holds no read guard. Returns destructors this call ran.
    pub(crate) fn drain_and_wait(&self) -> usize {
        // Inside a destructor too, what this destroys is destroyed before it returns
        // (`nested.rs`).
        let _outermost = nested::Outermost::enter();
        let waits = !CycleGate::inside_here();
        // Every open batch is closed, one another thread is adding to included: an object
        // retired before the call is then in a closed batch, or in one a drain holds.
        let mut ran = self.cycle_closing(true, waits).ran;
        if waits {
            // Drains that took objects before ours did have run them, or closed the ones that
            // need a grace period into batches, by the time this returns.
            self.gate.wait_for_drains_inside();
        }
        self.wait_for_grace_period();
        // Also walks the owned boxes a drain found unlinked and stashed, linked since.
        ran += self.cycle_inner(true).ran;
        ran += self.run_ready_batches();
        if waits {
            // And the ones another thread took first.
            self.gate.wait_for_drains_inside();
            // A box that was stashed when this was called, and needs a grace period, was
            // batched after the grace period above started (by the cycle just above, or by
            // another drain, which has closed its batch by now): one more round for it.
            if self.batches.any() {
                self.wait_for_grace_period();
                ran += self.run_ready_batches();
                self.gate.wait_for_drains_inside();
            }
        }
        ran
    }

    /// Waits until a grace period started now has passed (every batch closed so far is then
    /// ready), spinning, then yielding. The caller holds no read guard.
    fn wait_for_grace_period(&self) {
        let cookie = read::start_grace_period();
        let mut spins = 0u32;
        while !read::grace_period_passed(cookie) {
            if spins < 64 {
                spins += 1;
                crate::sync::spin_hint();
            } else {
                crate::sync::yield_now();
            }
        }
    }

    /// Runs every ready batch, not a cycle's share, inside the gate (for other callers of
    /// `drain_and_wait`).
    fn run_ready_batches(&self) -> usize {
        let _inside = self.gate.enter();
        self.run_ready(usize::MAX, self.stopping())
    }

    /// The backlog's count past the lists, its announced jobs, and what the stages it spans
    /// hold by their own counts (taken chains, closed batches): equal when no drain is running
    /// (tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn audit_backlog(&self) -> (usize, usize, usize) {
        (
            self.backlog.past_lists(),
            self.backlog.announced(),
            self.taken.waiting() + self.batches.closed_or_running(),
        )
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
        let running = self.taken.running();
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
            owned: self.owned.taken(),
            owned_alive: self.owned.boxes(),
            owned_stalls: self.owned.stalls(),
            owned_stalled: self.owned.stalled_now(),
            drained: relaxed(&c.drained),
            wakes: self.doorbell.wakes(),
            restricted_wakes: self.doorbell.restricted_wakes(),
            trimmed: relaxed(&c.trimmed),
            // Relaxed: a snapshot, like the counters (see `kept`).
            kept: self.kept.load(Ordering::Relaxed),
            emergency: relaxed(&c.emergency),
            leaked: relaxed(&c.leaked),
            reserved_for_teardowns: relaxed(&c.reserved_for_teardowns),
            reserve_failures: relaxed(&c.reserve_failures),
            dtor_panics: relaxed(&c.dtor_panics),
            grace_periods: relaxed(&c.grace_periods),
            pending: self.pending(),
            peak_pending: c.peak_pending.load(Ordering::Relaxed),
            batched: relaxed(&c.batched),
            helped: relaxed(&c.helped),
            drainer_stalls: relaxed(&c.drainer_stalls),
            stray_restricted: relaxed(&c.stray_restricted),
            peak_total: c.peak_total.load(Ordering::Relaxed),
            peak_active: c.peak_active.load(Ordering::Relaxed),
        }
    }
}

/// One claim on an idle job, taken for an install (or for a value about to be deferred) and not
/// spent yet. It remembers the counter it came from: dropped unused — the install was refused
/// after claiming, by a busy bucket or a full map — it goes back there, so a refused install never
/// turns a reserved job into a spare one that trim may free. [`Claim::spend`] hands it to an
/// object: from then on it is the object's claim (a `claimed` flag beside the object), which goes
/// back as spare when the object leaves. Dropping it is async-signal-safe (one atomic add; a trim
/// only in ordinary context).
#[must_use = "an unused claim goes back to its counter when dropped; `spend` it to keep the job"]
pub(crate) struct Claim<'a> {
    inner: &'a Inner,
    source: Source,
}

impl<'a> Claim<'a> {
    fn new(inner: &'a Inner, source: Source) -> Self {
        Claim { inner, source }
    }

    /// The claim now belongs to an object (installed, or about to be deferred with its job).
    #[inline]
    pub(crate) fn spend(self) {
        std::mem::forget(self);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.inner.give_back(self.source);
    }
}

/// Runtime numbers: 1, 2, 3... in the order runtimes are built in this process.
#[cfg(not(loom))]
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[cfg(loom)]
loom::lazy_static! {
    static ref NEXT_ID: AtomicU64 = AtomicU64::new(1);
}

fn next_id() -> u64 {
    // Relaxed: only uniqueness matters, which the read-modify-write gives at any ordering;
    // nothing is published through the number.
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

impl Drain for Inner {
    fn cycle(&self, close_open: bool) -> Cycle {
        self.cycle_inner(close_open)
    }

    fn doorbell(&self) -> &Doorbell {
        &self.doorbell
    }

    fn stopping(&self) -> bool {
        Inner::stopping(self)
    }

    fn work_waiting(&self) -> bool {
        self.batches.any() || self.owned.stalled()
    }

    fn opened_a_batch(&self) -> bool {
        // Relaxed: set and taken by this thread only (`retire`).
        self.counters
            .drainer_opened_batch
            .swap(false, Ordering::Relaxed)
    }

    fn kept_for(&self) -> Option<Duration> {
        Inner::kept_for(self)
    }

    fn settle(&self) {
        // What this thread's last cycle handed over it did not run: boxes a destructor of that
        // cycle (or a handler elsewhere) dropped after the cycle had taken its lists. The
        // shutdown may have stopped waiting for this thread long ago (a destructor outlived its
        // timeout) and drained for the last time; the boxes keep the runtime state alive, so
        // `Drop for Inner` would never run them either: this thread is the last that can.
        while self.cycle_inner(true).ran > 0 {}
        self.settle_stalled_boxes();
    }

    fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Before anything else: a `fork` may be holding our locks (it waits for nothing we do;
        // the locks live in allocations of their own, which this `&mut` does not cover).
        self.unregister_fork_locks();
        // Normally set by the last handle already. Relaxed: we hold the only reference.
        self.stop.store(true, Ordering::Relaxed);
        // Last reference: nobody can offload any more, and no reader can reach our objects (see
        // `stopping`), so every cycle runs everything, grace periods or not. A destructor may
        // defer more (it may own slots of other runtimes, not of this one), so loop until a
        // cycle finds nothing. Bounded: nothing here waits for readers.
        while self.cycle_inner(true).ran > 0 {}
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

    /// The backlog a writer on this thread would compare with `max_pending` now.
    pub fn backlog(rt: &crate::Runtime) -> usize {
        rt.inner().backlog()
    }

    /// Everything pending now, as `Stats::pending` reads it (alone: `stats` reads much more).
    pub fn pending(rt: &crate::Runtime) -> usize {
        rt.inner().pending()
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
