//! Reclamation: how objects handed over are destroyed, and who does it — the half of the crate
//! that runs in ordinary context. It sits below the runtime and knows nothing of slots or jobs'
//! accounting; the runtime (`runtime.rs`) drives it.
//!
//! - `doorbell.rs`: telling the drainer there is work: a pending flag, a sleeping flag so no
//!   syscall is made while it runs, and two wake modes (immediate, lazy);
//! - `batches.rs`: objects retired in ordinary context, many per unit, stamped with the grace
//!   period they need and destroyed once a non-blocking poll says it has passed;
//! - `drainer.rs`: the drainer thread's loop, which never waits for readers;
//! - `owned_list.rs`: per-CPU lists of owned boxes' own nodes (no jobs), taken whole by a cycle;
//! - `cycle_gate.rs`: which drains in progress a `drain_and_wait` must wait for;
//! - `backlog.rs`: the count of objects past the job lists (taken chains, closed batches) that,
//!   with the lists' own, back-pressure bounds;
//! - `taken_jobs.rs`: the count of jobs drainers took and are running (forgotten after `fork`);
//! - `stall_passes.rs`: passes over the backlog bound while the drainer thread is stalled.
//!
//! Back-pressure (producers over the backlog bound help) is the runtime's, because it needs the
//! job lists too: see `runtime.rs`.

pub(crate) mod backlog;
pub(crate) mod batches;
pub(crate) mod cycle_gate;
pub(crate) mod doorbell;
pub(crate) mod drainer;
pub(crate) mod owned_list;
#[cfg(not(loom))]
pub(crate) mod stall_passes;
pub(crate) mod taken_jobs;
