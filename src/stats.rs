//! A plain snapshot of a runtime's gauges and counters.

/// Gauges and counters of a [`Runtime`](crate::Runtime), read with relaxed loads one after the
/// other: figures read while other threads work may be from slightly different instants (and the
/// derived ones, `refs`, `idle` and `offloaded`, can be off by what is in flight then). At a quiescent point (no install, teardown or drain in flight) they are
/// consistent, and then `total == idle + active` and `idle == spare + reserved + refs`.
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
    /// Idle jobs set aside by `Runtime::reserve` for restricted-context installs.
    pub reserved: usize,
    /// Objects handed to the drainer (restricted teardowns, and all teardowns under
    /// `Policy::AlwaysDefer`). Derived, to keep the teardown path free of a counter: what the
    /// drainers have taken, plus what is queued or parked now. While a drainer is between taking
    /// a list and counting it, a snapshot can read low by that list's length; at a quiescent point
    /// it is exact.
    pub offloaded: u64,
    /// Destructors the drainer has run (including parked objects and panicking destructors).
    pub drained: u64,
    /// Wake-up syscalls made by producers.
    pub wakes: u64,
    /// Jobs freed by trim.
    pub trimmed: u64,
    /// Objects ever parked in the emergency area (should stay 0; see `emergency`).
    pub emergency: u64,
    /// Objects leaked, never destroyed (should stay 0): because the emergency area was full too,
    /// or because a destructor on the drainer thread leaked a read guard (`mem::forget`), so the
    /// grace periods the drainer needs could never end.
    pub leaked: u64,
    /// Installs rejected for want of a job (the value went back to the caller).
    pub reserve_failures: u64,
    /// Destructors that panicked on the drainer (caught and counted).
    pub dtor_panics: u64,
    /// Grace periods this runtime's drains waited for before destroying objects that left
    /// readable slots (one per drain batch that had any).
    pub grace_periods: u64,
    /// Highest `total` seen.
    pub peak_total: usize,
    /// Highest number of jobs one drain cycle found queued.
    pub peak_active: usize,
}
