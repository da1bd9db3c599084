//! Group `latency`: offload-to-destructor latency with the drainer thread asleep, for a slot's
//! object (a job) and for an `Owned` box (criterion's mean; p50/p99 go to
//! `target/sigdrop-bench/latency.json` and `latency_owned.json`).

use crate::extras::{self, percentile};
use crate::harness::{CPU, Pinned};
use criterion::{Criterion, SamplingMode};
use serde_json::json;
use sigdrop::{Destroy, Owned, Raw, RefSlot, Runtime, restricted};
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

static LAT_DONE: AtomicU64 = AtomicU64::new(0);
static LAT_DONE_AT: AtomicU64 = AtomicU64::new(0);

/// A destructor that only stamps the time (the object is a leaked `u64`).
struct StampDtor;
impl Destroy<u64> for StampDtor {
    unsafe fn destroy(_: NonNull<u64>) {
        LAT_DONE_AT.store(now_ns(), Ordering::Relaxed);
        // Release: the waiter that sees the count sees the stamp.
        LAT_DONE.fetch_add(1, Ordering::Release);
    }
}

/// How long the measuring thread spins between samples so that the drainer is asleep in
/// `futex_wait` when the offload happens (it goes to sleep within a few µs of its last cycle).
const LAT_GAP: Duration = Duration::from_micros(60);

/// Stamps the time when an `Owned` holding it is destroyed.
struct Stamp;
impl Drop for Stamp {
    fn drop(&mut self) {
        LAT_DONE_AT.store(now_ns(), Ordering::Relaxed);
        // Release: the waiter that sees the count sees the stamp.
        LAT_DONE.fetch_add(1, Ordering::Release);
    }
}

/// One latency bench: `prepare` (untimed, ordinary context) readies an object, `hand_over`
/// lets it go in restricted context; each sample is the time from just before `hand_over` to the
/// destructor's stamp, after a gap that lets the drainer fall asleep. Writes the percentiles to
/// `target/sigdrop-bench/<extras>.json`.
fn measure<T>(
    c: &mut Criterion,
    name: &str,
    extras: &str,
    rt: &Runtime,
    mut prepare: impl FnMut() -> T,
    mut hand_over: impl FnMut(T),
) {
    let mut g = c.benchmark_group("latency");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(20);
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_millis(1500));
    let mut samples: Vec<u64> = Vec::new();
    let before = rt.stats();
    g.bench_function(name, |bench| {
        let _pin = Pinned::to(CPU);
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let object = prepare();
                let seen = LAT_DONE.load(Ordering::Acquire);
                let gap = Instant::now();
                while gap.elapsed() < LAT_GAP {
                    std::hint::spin_loop();
                }
                let t0 = now_ns();
                {
                    let _nmi = restricted::enter();
                    hand_over(object);
                }
                while LAT_DONE.load(Ordering::Acquire) == seen {
                    std::hint::spin_loop();
                }
                let ns = LAT_DONE_AT.load(Ordering::Relaxed).saturating_sub(t0);
                samples.push(ns);
                total += Duration::from_nanos(ns);
            }
            total
        })
    });
    g.finish();
    let after = rt.stats();
    samples.sort_unstable();
    extras::write(
        &format!("{extras}.json"),
        &json!({
            "samples": samples.len(),
            "p50_ns": percentile(&samples, 50.0),
            "p90_ns": percentile(&samples, 90.0),
            "p99_ns": percentile(&samples, 99.0),
            "max_ns": samples.last().copied().unwrap_or(0),
            "offloaded": after.offloaded - before.offloaded,
            "owned": after.owned - before.owned,
            // The hand-overs' wake-ups (restricted context), not the installs'.
            "wakes": after.restricted_wakes - before.restricted_wakes,
        }),
    );
}

pub fn group(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime with a drainer thread");
    // A slot's object, torn down in restricted context (a job).
    let slot: RefSlot<Raw<u64, StampDtor>> = RefSlot::new(&rt);
    let object = NonNull::from(Box::leak(Box::new(0u64)));
    measure(
        c,
        "offload to destructor (drainer asleep)",
        "latency",
        &rt,
        || {
            // SAFETY: the leaked u64 is used by one `Raw` at a time; its destructor only stamps
            // the time.
            let raw = unsafe { Raw::new(object) };
            let _ = slot.xchg(Some(raw)).unwrap();
        },
        |()| slot.clear(),
    );
    drop(slot);
    // An owned box dropped in restricted context (its own node, no job).
    measure(
        c,
        "Owned drop to destructor (drainer asleep)",
        "latency_owned",
        &rt,
        || Owned::new(&rt, Stamp),
        drop,
    );
    drop(rt);
}
