//! A plain snapshot of a runtime's gauges and counters.

/// Gauges and counters of a [`Runtime`](crate::Runtime), read with relaxed loads one after the
/// other: figures read while other threads work may be from slightly different instants (and the
/// derived ones, `refs`, `idle` and `offloaded`, can be off by what is in flight then). At a
/// quiescent point (no install, teardown or drain in flight) they are consistent, and then
/// `total == idle + active` and `idle == spare + reserved + refs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Jobs allocated (idle or active).
    pub total: usize,
    /// Objects installed in slots, each owed one idle job (includes objects parked in the
    /// emergency area, which keep their claim until drained).
    pub refs: usize,
    /// Jobs holding an object: queued on a job list or being run by a drainer.
    pub active: usize,
    /// Jobs in the freelists.
    pub idle: usize,
    /// Idle jobs nobody has claimed.
    pub spare: usize,
    /// Idle jobs set aside by `Runtime::reserve` and `Runtime::reserve_to` for
    /// restricted-context installs.
    pub reserved: usize,
    /// Objects handed to the drainer with a job: teardowns in signal handlers, and objects
    /// retired in ordinary context at an instant when every open batch was busy (other threads
    /// adding to each; with more writer threads than CPUs, a few percent of them). Derived, to keep
    /// the teardown path free of a counter: what the drainers have taken, plus what is queued or
    /// parked now. While a drainer is between taking a list and counting it, a snapshot can read
    /// low by that list's length; at a quiescent point it is exact.
    pub offloaded: u64,
    /// [`Owned`](crate::Owned) boxes handed to the drainer in restricted context (each in its
    /// own allocation, with no job), taken off their lists by drainers so far. Their destructors
    /// are counted in `drained` too.
    pub owned: u64,
    /// [`Owned`](crate::Owned) boxes of this runtime that exist now, as boxes: made and not
    /// yet destroyed — in your hands, in slots, or dropped in a handler and still queued (a
    /// [`Shared`](crate::Shared) value counts as one box, however many references it has). A box
    /// stops counting when a drain takes it (or when, dropped in ordinary context under
    /// `Policy::AlwaysDefer`, it is retired), even if it then waits in a batch for a grace
    /// period. A `Shared` value stays counted while any reference to it exists, a reference
    /// that left a [`ReadSlot`](crate::ReadSlot) and waits for its grace period included. At a
    /// quiescent point after [`Runtime::drain_and_wait`](crate::Runtime::drain_and_wait), the
    /// boxes your program holds (a box leaked with `mem::forget` stays counted).
    pub owned_alive: usize,
    /// Times a drain found an [`Owned`](crate::Owned) box dropped in a handler whose hand-over
    /// had not finished: its thread was interrupted or preempted between the two steps of the
    /// push. That box, and those dropped before it on the same CPU, then wait for a later drain
    /// (the drainer thread comes back for them by itself). Each such box counts once.
    pub owned_stalls: u64,
    /// Boxes counted in `owned_stalls` still waiting for their hand-over to finish now. It
    /// normally drops back to 0 within microseconds; a value that stays up means a handler
    /// never finished a drop it started (it jumped out with `siglongjmp`, or ended its thread),
    /// and the boxes dropped before it on that CPU are stranded: their destructors never run.
    pub owned_stalled: usize,
    /// Deferred destructors run (by the drainer, by `Runtime::drain`, or by a thread helping;
    /// including parked objects and panicking destructors). A destructor here is what a slot or
    /// a handler let go of, not necessarily a value freed: a slot giving up its reference to a
    /// [`Shared`](crate::Shared) or an `Arc` that is still referenced elsewhere counts too.
    pub drained: u64,
    /// Wake-up syscalls made for the drainer: by handlers handing objects over (immediate wake),
    /// by threads that start a batch while the drainer sleeps for good, and (with a
    /// [`regrowth_window`](crate::Builder::regrowth_window)) by installs that grow the pool
    /// back and start it keeping jobs, while the drainer sleeps. The handlers' share is
    /// `restricted_wakes`.
    pub wakes: u64,
    /// Of `wakes`, those made in restricted context: by signal handlers handing objects over
    /// (and code under [`restricted::enter`](crate::restricted::enter)). What to check when a
    /// handler must make no syscall: installs and batches in ordinary context count in `wakes`
    /// only. With [`Wake::Lazy`](crate::Wake::Lazy), a handler wakes the drainer only when one
    /// CPU's queue reaches the high watermark, or when it parks an object in the emergency area
    /// (`emergency`, which should stay 0).
    pub restricted_wakes: u64,
    /// Jobs freed by trim.
    pub trimmed: u64,
    /// How many spare jobs above the headroom the automatic trims leave for now, because the
    /// workload used that many soon after a trim: what the trim left above the headroom, plus
    /// what the pool then had to grow back of what it freed (see
    /// [`Builder::regrowth_window`](crate::Builder::regrowth_window); always 0 with a zero one). A
    /// limit, not a count: `spare` may be below `headroom + kept` while jobs are in use. Back to
    /// 0 at a drain cycle once a window has passed without such regrowth (normally the first;
    /// a later one if another thread was growing or trimming the pool then), or at
    /// [`Runtime::trim`](crate::Runtime::trim).
    pub kept: usize,
    /// Objects ever parked in the emergency area (should stay 0): a value with no reserved job
    /// (see [`Detached::is_reserved`](crate::Detached::is_reserved)) dropped in a handler when
    /// no spare job was left; the drainer destroys it later.
    pub emergency: u64,
    /// Objects leaked, never destroyed (should stay 0): because the emergency area was full too,
    /// or because a destructor on the drainer thread leaked a read guard (`mem::forget`), so the
    /// grace periods the drainer needs could never end.
    pub leaked: u64,
    /// Reserved jobs spent on values that had no job of their own (see
    /// [`Detached::is_reserved`](crate::Detached::is_reserved)) in a signal handler (should stay
    /// 0): dropped there when no spare job was left and the emergency area was full, or given one
    /// by [`Detached::reserve`](crate::Detached::reserve) when no spare job was left. Each took a
    /// job set aside for a handler's install.
    pub reserved_for_teardowns: u64,
    /// Installs rejected for want of a job (the value went back to the caller).
    pub reserve_failures: u64,
    /// Destructors that panicked on the drainer (caught and counted).
    pub dtor_panics: u64,
    /// Batches of objects that left readable slots destroyed after their grace period passed
    /// (each batch holds up to 64 objects).
    pub grace_periods: u64,
    /// Objects waiting for destruction now: queued with jobs, being destroyed, parked, or
    /// retired into batches (waiting for a grace period, or for their batch to fill). Owned
    /// boxes dropped in handlers are not in it: they need no job, and their push counts nothing
    /// (see `owned`).
    pub pending: usize,
    /// Highest `pending` seen when a thread handing objects over checked the backlog, or a drain
    /// cycle ended: what [`Builder::max_pending`](crate::Builder::max_pending) bounds (plus the
    /// batches it leaves out of the bound: each CPU's open batch, and the batches threads are
    /// closing at that moment). `pending` is read as several counts one after another; a new
    /// peak is read twice and the lower reading kept, so that a thread preempted between two
    /// reads does not report a peak no moment had.
    pub peak_pending: usize,
    /// Objects destroyed out of batches: those retired in ordinary context (objects that left
    /// readable slots, or every deferred object under `Policy::AlwaysDefer`) and those that came
    /// with a job but had to wait for a grace period.
    pub batched: u64,
    /// Drain cycles run by threads other than the drainer thread, helping: by threads that
    /// handed objects over (destroying ready batches when they closed one, or keeping the
    /// backlog under `max_pending`), and by installs and makers of owned boxes that keep up
    /// themselves (with a manual drainer).
    pub helped: u64,
    /// Times a thread over [`Builder::max_pending`](crate::Builder::max_pending) gave up
    /// waiting for the drainer thread because it had stayed inside one destructor for 10 ms:
    /// blocked (perhaps on a lock the waiting thread held), or in a slow destructor. Each let
    /// that call go on over the bound, and, once the drainer had been stuck for 40 ms, the
    /// calls after it too (up to `max_pending` objects per 10 ms). Non-zero while `pending` keeps growing:
    /// look for a lock held around installs, drops or new boxes that the destructors take.
    pub drainer_stalls: u64,
    /// Destructors that returned with this thread's restricted-context depth changed (they
    /// forgot a [`RestrictedGuard`](crate::restricted::RestrictedGuard), or dropped one they
    /// did not enter). The depth is put back after each: without that, the thread that ran them
    /// would defer every later destructor, and leak a runtime whose last handle it dropped, as
    /// if in a signal handler. Non-zero means a destructor misuses restricted context.
    pub stray_restricted: u64,
    /// Highest `total` seen.
    pub peak_total: usize,
    /// Highest number of jobs one drain cycle found queued.
    pub peak_active: usize,
}
