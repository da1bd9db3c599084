//! sigdrop against the peers a user would pick, every peer measured in the same run.
//!
//! Run with `cargo bench -p sigdrop-benches`; then
//! `cargo run --release -p sigdrop-benches --bin bench_report` prints the ratio table (and
//! `-- --out BENCHMARKS.md` writes it). One file per group (each says what its rows measure):
//! `slot`, `teardown`, `lifecycle`, `two_threads`, `drain`, `latency` (and the wake `storm`),
//! `signal`, `read`, `reclaim`. How a row is timed is in `harness.rs`; what rows are built from is in
//! `fixtures.rs`; figures criterion does not keep go through `extras.rs`. `benches/README.md`
//! says how to add a row.
//!
//! Single-threaded rows pin the measuring thread to CPU 0 (restored afterwards), so that every
//! teardown uses the same shard and the figures do not depend on where the scheduler put us.
//! Runtimes with a drainer thread are built before pinning, so the drainer may run anywhere.

mod drain;
mod extras;
mod fixtures;
mod harness;
mod latency;
mod lifecycle;
mod read;
mod reclaim;
mod signal;
mod slot;
mod storm;
mod teardown;
mod two_threads;
mod v2;

use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Duration;

/// About five minutes for the whole run on a 2-vCPU VM (chunked benches spend most of their wall
/// time in untimed setup, so their wall time is a few times `measurement_time`).
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(60)
        .nresamples(20_000)
}

criterion_group! {
    name = benches;
    config = config();
    targets = slot::group, teardown::group, lifecycle::group, two_threads::group, drain::group,
        latency::group, storm::run, signal::group, read::group, reclaim::group
}
criterion_main!(benches);
