//! Batches of retired objects: how ordinary-context code hands objects to the drainer (or to
//! itself, later) without a job per object.
//!
//! ## Protocol
//!
//! ```text
//! open batches: one per shard (CPU) and kind (needs a grace period or not), each behind a
//!               try-lock that only ordinary-context code takes, and never waits for
//! closed queue: batches stamped with the grace period they need (`read::Cookie`), or none
//!
//! add(obj):     lock this CPU's open batch (try the others if it is busy; none free: refuse);
//!               push; full? take it out; unlock; close it
//! close(b):     cookie = read::start_grace_period()  (after every removal in `b`); queue it
//! take_ready:   move grace periods on (never waiting); unqueue every batch whose grace
//!               period has passed or that needs none
//! close_open:   (the drainer) close every open batch it can lock
//! fork, child:  an open batch found locked was a thread's that the child does not have: it is
//!               never unlocked, so it is abandoned (its objects are the parent's; the batch
//!               may be half-written, so it is leaked, not read) and an empty one unlocked
//! ```
//!
//! Objects of readable slots are retired here only after they were removed from their slot, by
//! the thread that closes the batch or by one whose removal happens before the close (the batch's
//! lock hands it over with release/acquire); the close's `start_grace_period` comes after that,
//! so its cookie covers every reader that could have seen any object in the batch (`read.rs`).
//! Batches that need no grace period are always ready: a reader that never leaves delays only the
//! objects that readers could have seen.
//!
//! Adding is an uncontended compare-and-swap and a store on a line of this CPU's; the shared
//! queue is touched once per [`BATCH`] objects. A signal handler never touches any of this (it
//! hands objects over with jobs); if a handler that forgot to enter restricted context
//! interrupts an `add`, its own `add` finds the lock taken and is refused, never waits.
//!
//! | operation     | concurrent with add | with take_ready / close_open | restricted context |
//! |---------------|---------------------|------------------------------|--------------------|
//! | `add`         | yes                 | yes                          | no (refused batches fall back to jobs) |
//! | `take_ready`  | yes                 | yes (the queue's lock)       | no                 |
//! | `close_open`  | yes (try-locks)     | yes                          | no                 |

use crate::arena::Payload;
use crate::read::{self, Cookie};
use crate::reclaim::backlog::Backlog;
use crate::sync::{Arc, AtomicBool, AtomicUsize, Mutex, Ordering, UnsafeCell};
use crossbeam_utils::CachePadded;
use std::collections::VecDeque;

/// Objects per batch (crossbeam-epoch's bags hold as many); two in loom models, so that a model
/// fills and closes batches with a handful of objects.
pub(crate) const BATCH: usize = if cfg!(loom) { 2 } else { 64 };

/// Closed batches whose storage is kept for reuse.
const RECYCLED: usize = 8;

/// A closed batch: its objects and the grace period they wait for (`None`: none needed).
pub(crate) struct Closed {
    pub cookie: Option<Cookie>,
    pub items: Vec<Payload>,
}

/// One shard's open batches: `[plain, grace]`.
struct Open {
    locked: AtomicBool,
    batches: UnsafeCell<[Vec<Payload>; 2]>,
    /// Objects in `batches` (a statistic, and the drainer's hint that there is something to close).
    len: AtomicUsize,
}

struct Queue {
    closed: VecDeque<Closed>,
    recycled: Vec<Vec<Payload>>,
}

// SAFETY: the queue holds payloads, whose objects are `Send` by the runtime's contract (they
// came from `SlotPointer`s); it is only reached through its mutex.
unsafe impl Send for Queue {}

/// Every batch of one runtime.
pub(crate) struct Batches {
    /// The batches and their counts, in an allocation of their own (shared, not owned by the
    /// runtime's fields) so that a `fork` may hold the queue's lock, and its child handler
    /// reach the open batches, while the runtime is being dropped (`fork.rs`).
    shared: Arc<Shared>,
}

/// What `fork` registers: the queue's lock, and what its child handler resets.
pub(crate) struct Shared {
    /// One shard's open batches each.
    open: Box<[CachePadded<Open>]>,
    queue: Mutex<Queue>,
    /// The count of objects past the job lists (`backlog.rs`), shared with the runtime: a
    /// batch closed here enters it, a batch destroyed leaves it.
    backlog: Arc<Backlog>,
    /// Objects in closed batches still queued, counted from their close (before they are
    /// queued) until a drainer takes them.
    closed_len: AtomicUsize,
    /// Objects in the queue, counted under its lock: what `closed_len` is reset to in a child
    /// after `fork`, where the batches the parent's threads had closed but not queued yet
    /// (counted in `closed_len`, held in their `Vec`s) never will be.
    #[cfg(not(loom))]
    queued: AtomicUsize,
    /// Objects in batches drainers have taken and are destroying.
    running: AtomicUsize,
    /// In a child after `fork`: how many of `running` were the parent's threads', which nobody
    /// here will finish (0 otherwise). Never in loom models, which have no `fork`.
    #[cfg(not(loom))]
    forgotten: AtomicUsize,
}

impl Shared {
    /// Objects being destroyed by threads of this process (a snapshot).
    fn running(&self) -> usize {
        // Relaxed: statistics.
        let running = self.running.load(Ordering::Relaxed);
        #[cfg(not(loom))]
        let running = running.saturating_sub(self.forgotten.load(Ordering::Relaxed));
        running
    }
}

// Objects in batches this thread has taken and is destroying: back-pressure never makes a
// thread that destroys batches wait for batches being destroyed, its own or another thread's
// (`excluded_here`). Ordinary context only; `const`-initialised, no destructor.
#[cfg(not(loom))]
std::thread_local! {
    static RUNNING_HERE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(loom)]
loom::thread_local! {
    static RUNNING_HERE: std::cell::Cell<usize> = std::cell::Cell::new(0);
}

impl crate::fork::ForkLocks for Shared {
    fn hold(&self) -> Box<dyn crate::fork::Held + '_> {
        // The queue is updated with single operations; a panic cannot leave it inconsistent.
        Box::new(
            self.queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    fn after_fork_in_child(&self) {
        self.abandon_open_batches_held_by_vanished_threads();
        // The batches being destroyed were the parent's threads' (or, if it forked from a
        // destructor, the forking thread's own, which it finishes: then the count drops below
        // what is forgotten, and `running` saturates): nobody here will finish the others.
        // Relaxed: the child has one thread.
        #[cfg(not(loom))]
        {
            self.forgotten
                .store(self.running.load(Ordering::Relaxed), Ordering::Relaxed);
            // The queue's lock is held (`hold`): `queued` is exact. Without this, a batch a
            // writer had filled when another thread forked stayed in `pending` (and the
            // backlog) for ever in the child: 64 objects in a measured case.
            let queued = self.queued.load(Ordering::Relaxed);
            self.closed_len.store(queued, Ordering::Relaxed);
            // Past the lists, only the queue's objects are the child's (`backlog.rs`).
            self.backlog.reset_in_child(queued);
        }
    }
}

// SAFETY: an open batch is only touched by the holder of its `locked` flag (Acquire to take,
// Release to give back); the queue is behind a mutex; payload objects are `Send` by the
// runtime's contract (they came from `SlotPointer`s).
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    /// In a child after `fork`: an open batch's lock is not taken around `fork` (it is held for
    /// a push, and `close_open` never waits for it long), so one may be inherited taken.
    fn abandon_open_batches_held_by_vanished_threads(&self) {
        for open in self.open.iter() {
            // Relaxed: the child has one thread, the one that forked, and it holds no open
            // batch's lock (`add` is ordinary-context code and never forks; a fork from a
            // handler that interrupted one is not supported, `fork.rs`): a lock taken here was
            // another thread's, and nobody would ever release it. `close_open` used to wait for
            // it (up to `OPEN_WAIT` yields a call, seconds in a drain_and_wait).
            if !open.locked.load(Ordering::Relaxed) {
                continue;
            }
            // The old batches may be half-written by the vanished holder's push, so they are
            // overwritten without being read or dropped (leaked: their objects are the
            // parent's, like those of the batches the parent's drainers had taken).
            open.batches.with_mut(|b| {
                // SAFETY: the lock's holder is gone, so nothing else touches `batches`; `b`
                // points to them, valid for writes; nothing is dropped (above).
                unsafe { std::ptr::write(b, [Vec::new(), Vec::new()]) }
            });
            // Relaxed: as above.
            open.len.store(0, Ordering::Relaxed);
            open.locked.store(false, Ordering::Relaxed);
        }
    }
}

/// What `add` did.
pub(crate) enum Added<G> {
    /// The object is in an open batch, which held `before` objects.
    Open { before: usize },
    /// The object filled its batch, which the caller must close; with what `on_full` made while
    /// the batch was still locked.
    Full(Vec<Payload>, bool, G),
}

/// Yields a waiting `close_open` gives a locked open batch before it leaves it to a later
/// cycle: a holder is in the middle of an `add` (a push, at worst a trip to the queue's lock).
const OPEN_WAIT: u32 = 10_000;

impl Open {
    /// Takes the batch's lock: once, or with `wait`, until it is free (spinning, then
    /// yielding, at most [`OPEN_WAIT`] times). Whether it was taken.
    fn lock(&self, wait: bool) -> bool {
        let mut tries = 0u32;
        // Acquire: as in `add` (the Release unlock of the last holder).
        while self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            if !wait || tries >= OPEN_WAIT {
                return false;
            }
            tries += 1;
            if tries < 64 {
                crate::sync::spin_hint();
            } else {
                crate::sync::yield_now();
            }
        }
        true
    }
}

impl Batches {
    /// `shards` shards' open batches, and an empty queue; closed batches count in `backlog`.
    pub fn new(shards: usize, backlog: Arc<Backlog>) -> Self {
        Batches {
            shared: Arc::new(Shared {
                open: (0..shards)
                    .map(|_| {
                        CachePadded::new(Open {
                            locked: AtomicBool::new(false),
                            batches: UnsafeCell::new([Vec::new(), Vec::new()]),
                            len: AtomicUsize::new(0),
                        })
                    })
                    .collect(),
                queue: Mutex::new(Queue {
                    closed: VecDeque::new(),
                    recycled: Vec::new(),
                }),
                backlog,
                closed_len: AtomicUsize::new(0),
                #[cfg(not(loom))]
                queued: AtomicUsize::new(0),
                running: AtomicUsize::new(0),
                #[cfg(not(loom))]
                forgotten: AtomicUsize::new(0),
            }),
        }
    }

    /// Adds an object to an open batch, starting with `shard`'s. Ordinary context. Gives the
    /// object back if every open batch is locked (the caller hands it over some other way).
    /// If the object fills its batch, `on_full` runs before the batch's lock is released (the
    /// runtime enters its drains' gate there: from then until the close, the batch is in no
    /// structure a drain could find it in).
    #[inline]
    pub fn add<G>(
        &self,
        shard: usize,
        payload: Payload,
        on_full: impl FnOnce() -> G,
    ) -> Result<Added<G>, Payload> {
        let shards = self.shared.open.len();
        for i in 0..shards {
            let open = &self.shared.open[(shard + i) % shards];
            // Acquire: pairs with the Release unlock of the last holder: its pushes are ours.
            if open
                .locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let kind = usize::from(payload.grace);
            // SAFETY: we hold `locked`, the only licence to touch `batches`.
            let added = open.batches.with_mut(|b| unsafe {
                let batch = &mut (*b)[kind];
                if batch.capacity() == 0 {
                    *batch = self.fresh();
                }
                batch.push(payload);
                if batch.len() >= BATCH {
                    Added::Full(std::mem::take(batch), payload.grace, on_full())
                } else {
                    Added::Open {
                        before: batch.len() - 1,
                    }
                }
            });
            let n = match added {
                Added::Full(..) => open.len.load(Ordering::Relaxed) + 1 - BATCH,
                Added::Open { .. } => open.len.load(Ordering::Relaxed) + 1,
            };
            // Relaxed: a statistic and a hint; the lock orders the batches themselves.
            open.len.store(n, Ordering::Relaxed);
            if let Added::Full(items, ..) = &added {
                // Out of the open count, then into the closed one (snapshots read them the
                // other way round: never twice), before it is queued and before the lock goes:
                // a writer preempted after unlocking no longer hides a whole batch from the
                // backlog checks of the others, who would add past the bound meanwhile.
                // Relaxed: a statistic.
                self.shared
                    .closed_len
                    .fetch_add(items.len(), Ordering::Relaxed);
                self.shared.backlog.enter(items.len());
            }
            // Release: hands the batches to the next holder.
            open.locked.store(false, Ordering::Release);
            return Ok(added);
        }
        Err(payload)
    }

    /// Storage for a new open batch: a recycled one, or a new allocation.
    fn fresh(&self) -> Vec<Payload> {
        let recycled = self.lock().recycled.pop();
        recycled.unwrap_or_else(|| Vec::with_capacity(BATCH))
    }

    /// Closes a batch taken out of `add` (already counted): stamps it with the grace period its
    /// objects need and queues it. Ordinary context.
    pub fn close(&self, items: Vec<Payload>, grace: bool) {
        let cookie = grace.then(read::start_grace_period);
        let mut queue = self.lock();
        // Relaxed: under the queue's lock, like the queue.
        #[cfg(not(loom))]
        self.shared.queued.fetch_add(items.len(), Ordering::Relaxed);
        queue.closed.push_back(Closed { cookie, items });
    }

    /// Closes objects gathered elsewhere (a drain's): counts, stamps and queues. `from_chain`:
    /// they came from a chain of jobs, and so are past the lists already (`backlog.rs`); else
    /// (owned boxes, parked objects) they enter the backlog here.
    pub fn close_new(&self, items: Vec<Payload>, grace: bool, from_chain: bool) {
        if items.is_empty() {
            return;
        }
        // Relaxed: a statistic.
        self.shared
            .closed_len
            .fetch_add(items.len(), Ordering::Relaxed);
        if !from_chain {
            self.shared.backlog.enter(items.len());
        }
        self.close(items, grace);
    }

    /// Closes every open batch that is not locked now. Ordinary context (the drainer's cycle).
    /// With `wait`, a batch locked by a thread adding to it is waited for (spinning, then
    /// yielding; given up after [`OPEN_WAIT`] yields, which only a holder stopped for that long
    /// takes), so that an object added before the call is closed by it, or is in the batch the
    /// holder filled (`add`'s `on_full`).
    pub fn close_open(&self, wait: bool) {
        for open in self.shared.open.iter() {
            // Relaxed: a hint; a batch we miss is closed on a later cycle. (An object added
            // before the call is counted in it, or went out in a batch `add` filled.)
            if open.len.load(Ordering::Relaxed) == 0 {
                continue;
            }
            if !open.lock(wait) {
                continue;
            }
            // SAFETY: we hold `locked`.
            let taken = open.batches.with_mut(|b| unsafe {
                [std::mem::take(&mut (*b)[0]), std::mem::take(&mut (*b)[1])]
            });
            // Relaxed: as in `add`.
            open.len.store(0, Ordering::Relaxed);
            open.locked.store(false, Ordering::Release);
            for (kind, items) in taken.into_iter().enumerate() {
                if items.is_empty() {
                    self.recycle(items);
                } else {
                    // Relaxed: a statistic (moved from open to closed).
                    self.shared
                        .closed_len
                        .fetch_add(items.len(), Ordering::Relaxed);
                    self.shared.backlog.enter(items.len());
                    self.close(items, kind == 1);
                }
            }
        }
    }

    /// Unqueues every closed batch that is ready: it needs no grace period, or its grace period
    /// has passed (moving grace periods on as far as readers let it, without waiting); with
    /// `all`, every batch (the runtime is stopping: nobody can read them). At most `max`
    /// batches. Ordinary context.
    pub fn take_ready(&self, max: usize, all: bool, out: &mut Vec<Closed>) {
        let mut queue = self.lock();
        // The newest cookie first: one poll that moves grace periods on serves every older one.
        let newest = queue.closed.iter().filter_map(|c| c.cookie).max();
        if let Some(cookie) = newest
            && !all
        {
            read::grace_period_passed(cookie);
        }
        let mut i = 0;
        while i < queue.closed.len() && out.len() < max {
            let ready = match queue.closed[i].cookie {
                _ if all => true,
                None => true,
                Some(cookie) => read::grace_period_passed(cookie),
            };
            if ready {
                let batch = queue.closed.remove(i).expect("index checked above");
                let n = batch.items.len();
                // Relaxed: statistics (moved from queued to running, here and in all). Out of
                // one count before into the next: a snapshot may miss them for a moment (it
                // reads the counts against this flow), never count them twice.
                // (`queued` is only written under the queue's lock, which we hold.)
                #[cfg(not(loom))]
                self.shared.queued.fetch_sub(n, Ordering::Relaxed);
                self.shared.closed_len.fetch_sub(n, Ordering::Relaxed);
                self.shared.running.fetch_add(n, Ordering::Relaxed);
                RUNNING_HERE.with(|r| r.set(r.get() + n));
                out.push(batch);
            } else {
                i += 1;
            }
        }
    }

    /// Gives back a batch's storage after its objects were destroyed, and uncounts them.
    pub fn finished(&self, mut items: Vec<Payload>, destroyed: usize) {
        // Relaxed: a statistic. Before the backlog: a thread destroying batches, which leaves
        // `running` out of its backlog, may read it high for a moment, never low.
        self.shared.running.fetch_sub(destroyed, Ordering::Relaxed);
        RUNNING_HERE.with(|r| r.set(r.get().saturating_sub(destroyed)));
        self.shared.backlog.leave(destroyed);
        items.clear();
        self.recycle(items);
    }

    fn recycle(&self, items: Vec<Payload>) {
        if items.capacity() != BATCH {
            return;
        }
        let mut queue = self.lock();
        if queue.recycled.len() < RECYCLED {
            queue.recycled.push(items);
        }
    }

    /// Objects in open batches (a snapshot; not in the backlog until their batch closes).
    pub fn open(&self) -> usize {
        // Relaxed: statistics.
        self.shared
            .open
            .iter()
            .map(|o| o.len.load(Ordering::Relaxed))
            .sum()
    }

    /// Objects in open batches and in closed batches no drainer has taken (a snapshot). Read
    /// with the flow (open, then closed): an object closed between the reads counts twice
    /// rather than not at all, so that `any` never misses one.
    fn waiting(&self) -> usize {
        let open = self.open();
        // Relaxed: a statistic.
        open + self.shared.closed_len.load(Ordering::Relaxed)
    }

    /// What back-pressure leaves out of the backlog on this thread: if it is destroying batches
    /// itself, or `chain_here` (it is running a chain of jobs: `Inner::backlog`), the objects
    /// of every batch being destroyed (0 otherwise). Waiting for its own would be waiting for
    /// itself, and waiting for another thread's could be waiting for a thread that waits for
    /// ours (two threads whose destructors retire or install past the bound, each in the
    /// middle of its batches, or one in its batches and one in its chain). Queued batches it
    /// can always run itself. The bound then excludes batches other threads are destroying: at
    /// most what those threads took, each finite. A snapshot.
    pub fn excluded_here(&self, chain_here: bool) -> usize {
        if chain_here || self.destroying_here() {
            self.shared.running()
        } else {
            0
        }
    }

    /// Whether this thread has taken batches and is destroying them.
    pub fn destroying_here(&self) -> bool {
        RUNNING_HERE.with(|r| r.get()) > 0
    }

    /// Takes shard `shard`'s open batch's lock, as a thread in the middle of an `add` holds it
    /// (tests: every open batch busy); whether it was free.
    #[cfg(all(test, not(loom)))]
    pub fn hold_open(&self, shard: usize) -> bool {
        self.shared.open[shard].lock(false)
    }

    /// Gives back a lock [`hold_open`](Self::hold_open) took (tests).
    #[cfg(all(test, not(loom)))]
    pub fn release_open(&self, shard: usize) {
        self.shared.open[shard]
            .locked
            .store(false, Ordering::Release);
    }

    /// Objects in closed batches, queued or being destroyed (tests: what the backlog's count
    /// past the lists holds of the batches).
    #[cfg(all(test, not(loom)))]
    pub fn closed_or_running(&self) -> usize {
        self.shared.closed_len.load(Ordering::Relaxed) + self.shared.running()
    }

    /// Whether any batch holds objects a cycle could still close or run (a snapshot).
    pub fn any(&self) -> bool {
        // Not counting batches being destroyed: those are their drainer's business (and in a
        // child after `fork`, a dead thread's, for ever).
        self.waiting() > 0
    }

    /// What `fork` registers (`fork.rs`): the queue's lock.
    pub fn fork_locks(&self) -> &Shared {
        &self.shared
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, Queue> {
        // The queue is updated with single operations; a panic cannot leave it inconsistent.
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::fork::ForkLocks;

    unsafe fn never_run(_: *mut ()) {
        panic!("an abandoned batch's object is the parent's: never destroyed in the child");
    }

    fn payload() -> Payload {
        Payload {
            obj: std::ptr::null_mut(),
            dtor: never_run,
            grace: false,
        }
    }

    #[test]
    fn a_child_after_fork_abandons_the_open_batches_a_vanished_thread_held() {
        let batches = Batches::new(2, Arc::new(Backlog::new()));
        assert!(matches!(
            batches.add(0, payload(), || ()),
            Ok(Added::Open { before: 0 })
        ));
        assert!(matches!(
            batches.add(1, payload(), || ()),
            Ok(Added::Open { before: 0 })
        ));
        // Shard 0's lock taken, as by a thread caught in a push when another thread forked.
        assert!(batches.shared.open[0].lock(false));
        // The parent's copy of that batch, whose storage the child's handler leaks (it may be
        // half-written there): freed here, so that the leak checkers see the handler's work
        // only.
        let parents = std::mem::ManuallyDrop::new(batches.shared.open[0].batches.with_mut(|b| {
            // SAFETY: we hold the batch's lock; a bitwise copy, which the handler overwrites
            // without dropping, so the storage is owned once, by `parents`.
            unsafe { std::ptr::read(b) }
        }));
        batches.fork_locks().after_fork_in_child();
        // In the child: that batch is free and empty, without its (the parent's) object; the
        // other, which nobody held, is as it was, and a drain closes it without waiting.
        assert!(!batches.shared.open[0].locked.load(Ordering::Relaxed));
        // The handler did overwrite it (else the storage would be the batch's still).
        drop(std::mem::ManuallyDrop::into_inner(parents));
        assert_eq!(batches.open(), 1);
        batches.close_open(true);
        let closed = batches.shared.closed_len.load(Ordering::Relaxed);
        assert_eq!((batches.open(), closed), (0, 1));
        assert_eq!(batches.shared.backlog.past_lists(), 1);
        assert!(matches!(
            batches.add(0, payload(), || ()),
            Ok(Added::Open { before: 0 })
        ));
        // Dropping batches runs no destructor (the runtime's drains do); the payloads are
        // plain data.
        drop(batches);
    }
}
