//! The wake storm (not a criterion row): a producer tears objects down in restricted context as
//! fast as it can against the drainer thread; its wake and drain-cycle counts go to
//! `target/sigdrop-bench/storm.json`.

use crate::extras;
use crate::harness::{CPU, Pinned};
use criterion::Criterion;
use serde_json::json;
use sigdrop::{Destroy, Raw, RefSlot, Runtime, restricted};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The runtime the storm's destructor reads its stats from.
static STORM_RT: Mutex<Option<Runtime>> = Mutex::new(None);
static STORM_CHAINS: AtomicU64 = AtomicU64::new(0);
static STORM_LAST_KEY: AtomicU64 = AtomicU64::new(u64::MAX);

/// Frees the box and counts the job lists the drainer took (drain cycles that found work).
///
/// While a drainer runs a taken chain, `offloaded - active` (both from one `Stats` snapshot) is
/// the number of jobs taken by the chains it completed before: it changes exactly when a new
/// chain starts. The storm's producer is pinned to one CPU, so it uses one shard and each drain
/// cycle takes at most one chain: the chain count is the number of cycles that found work. (Cycles
/// that found nothing are not seen here; each drainer sleep follows one, which the report adds.)
///
struct StormDtor;
impl Destroy<u64> for StormDtor {
    unsafe fn destroy(p: NonNull<u64>) {
        // SAFETY: every object of the storm is a `Box<u64>` leaked into a `Raw`, destroyed once.
        drop(unsafe { Box::from_raw(p.as_ptr()) });
        if let Some(rt) = STORM_RT.lock().unwrap().as_ref() {
            let s = rt.stats();
            let key = s.offloaded - s.active as u64;
            if STORM_LAST_KEY.swap(key, Ordering::Relaxed) != key {
                STORM_CHAINS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A teardown storm against the drainer thread: a producer pinned to one CPU installs 8 objects
/// (ordinary context) and tears them down in restricted context, as a handler clearing 8 slots
/// would, as fast as it can. Reports offloads, wake syscalls, drain cycles (lower bound), and the
/// drainer's sleeps (voluntary context switches).
pub fn run(_: &mut Criterion) {
    const ROUNDS: usize = 50_000;
    const PER: usize = 8;
    let rt = Runtime::new().expect("runtime with a drainer thread");
    *STORM_RT.lock().unwrap() = Some(rt.clone());
    STORM_CHAINS.store(0, Ordering::Relaxed);
    STORM_LAST_KEY.store(u64::MAX, Ordering::Relaxed);
    // The drainer names itself once it starts: wait for it (all drainers of this process are
    // counted; the others, if any, are idle).
    let mut drainer = extras::threads_named("sigdrop-drainer");
    let looking = Instant::now();
    while drainer.is_empty() && looking.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(1));
        drainer = extras::threads_named("sigdrop-drainer");
    }
    let sleeps_before: u64 = drainer.iter().map(|&t| extras::voluntary_switches(t)).sum();
    let slots: Vec<RefSlot<Raw<u64, StormDtor>>> = (0..PER).map(|_| RefSlot::new(&rt)).collect();
    let start = Instant::now();
    {
        let _pin = Pinned::to(CPU);
        for round in 0..ROUNDS {
            for s in &slots {
                let p = NonNull::from(Box::leak(Box::new(round as u64)));
                // SAFETY: `p` is a fresh box; `StormDtor` frees it once.
                let raw = unsafe { Raw::new(p) };
                let _ = s.xchg(Some(raw)).unwrap();
            }
            let _nmi = restricted::enter();
            for s in &slots {
                s.clear();
            }
        }
    }
    let elapsed = start.elapsed();
    let offloaded = (ROUNDS * PER) as u64;
    while rt.stats().drained < offloaded {
        std::thread::yield_now();
    }
    let stats = rt.stats();
    let sleeps_after: u64 = drainer.iter().map(|&t| extras::voluntary_switches(t)).sum();
    STORM_RT.lock().unwrap().take();
    extras::write(
        "storm.json",
        &json!({
            "offloaded": stats.offloaded,
            // The teardowns' wake-ups (restricted context), not the installs'.
            "wakes": stats.restricted_wakes,
            "drain_cycles_min": STORM_CHAINS.load(Ordering::Relaxed),
            "drainer_sleeps": sleeps_after.saturating_sub(sleeps_before),
            "elapsed_ns": elapsed.as_nanos() as u64,
        }),
    );
}
