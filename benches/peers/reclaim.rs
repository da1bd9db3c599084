//! Group `reclaim`: what the destroying side costs under a real workload.
//!
//! - Criterion rows: a writer replacing the object a reader may hold with a fresh `Arc` (or
//!   `Box`, for crossbeam-epoch) and letting the old one go, with 0, 1 and 2 reader threads
//!   spinning on loads: sigdrop (`ReadSlot::xchg` + drop, default runtime), arc-swap (`store`),
//!   crossbeam-epoch (`swap` + `defer_destroy`).
//! - `target/sigdrop-bench/reclaim_writer.json`: one second of a full-speed sigdrop writer with
//!   one reader: stores per second, the peak of objects pending destruction, and RSS growth.
//! - `target/sigdrop-bench/wake_modes.json`: per wake mode, a signal storm whose handler tears
//!   one object down per signal: wake syscalls per signal, the handler's cost per signal, and
//!   the offload-to-destructor latency (p50, p99).

use crate::extras::{self, percentile};
use arc_swap::ArcSwap;
use criterion::Criterion;
use crossbeam_epoch as epoch;
use serde_json::json;
use sigdrop::signal::{self, Signal, SignalInfo, Storm};
use sigdrop::{ReadSlot, RefSlot, Runtime, Wake, read};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A peer's writer and reader, over one shared object.
trait Peer: Sync {
    const NAME: &'static str;
    /// Replaces the object with a fresh one; the old one goes to the peer's reclamation.
    fn replace(&self, next: u64);
    /// Loads the object under the peer's protection and reads it.
    fn read(&self) -> u64;
}

struct Sigdrop {
    slot: ReadSlot<Arc<u64>>,
}

impl Peer for Sigdrop {
    const NAME: &'static str = "sigdrop ReadSlot xchg + drop";
    fn replace(&self, next: u64) {
        drop(self.slot.xchg(Some(Arc::new(next))).expect("replace"));
    }
    fn read(&self) -> u64 {
        let guard = read::enter();
        *self.slot.load(&guard).expect("never empty")
    }
}

impl Peer for ArcSwap<u64> {
    const NAME: &'static str = "arc-swap store";
    fn replace(&self, next: u64) {
        self.store(Arc::new(next));
    }
    fn read(&self) -> u64 {
        **self.load()
    }
}

impl Peer for epoch::Atomic<u64> {
    const NAME: &'static str = "crossbeam-epoch swap + defer_destroy";
    fn replace(&self, next: u64) {
        let guard = epoch::pin();
        // AcqRel: Release publishes the new object, Acquire takes the old one's contents.
        let old = self.swap(epoch::Owned::new(next), Ordering::AcqRel, &guard);
        // SAFETY: `old` was unlinked by the swap; readers pinned before it are waited for.
        unsafe { guard.defer_destroy(old) };
    }
    fn read(&self) -> u64 {
        let guard = epoch::pin();
        // Acquire: pairs with the swap that published the object.
        let shared = self.load(Ordering::Acquire, &guard);
        // SAFETY: never null (every swap puts an object in); kept alive by `guard`.
        *unsafe { shared.deref() }
    }
}

/// One criterion row: `peer`'s writer timed while `readers` threads read as fast as they can.
fn store_row<P: Peer>(g: &mut crate::harness::Group<'_>, peer: &P, readers: usize) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..readers {
            s.spawn(|| {
                let mut sum = 0u64;
                // Relaxed: a stop flag; the scope's join synchronises.
                while !stop.load(Ordering::Relaxed) {
                    sum = sum.wrapping_add(peer.read());
                }
                std::hint::black_box(sum);
            });
        }
        let mut next = 0u64;
        let name = format!("store {}, {readers} readers", P::NAME);
        g.bench_function(name, |b| {
            b.iter(|| {
                next += 1;
                peer.replace(next);
            })
        });
        // Relaxed: see above.
        stop.store(true, Ordering::Relaxed);
    });
}

/// Resident set size in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// One second of a full-speed sigdrop writer with one reader thread: peak pending and RSS.
fn full_speed_writer() {
    let rt = Runtime::new().expect("runtime");
    let peer = Sigdrop {
        slot: ReadSlot::new(&rt),
    };
    peer.replace(0);
    let stop = AtomicBool::new(false);
    let (stores, elapsed, baseline, peak) = std::thread::scope(|s| {
        s.spawn(|| {
            // Relaxed: a stop flag.
            while !stop.load(Ordering::Relaxed) {
                std::hint::black_box(peer.read());
            }
        });
        let mut n = 0u64;
        // Warm up the allocator and the pool, then take the baseline.
        let warm = Instant::now();
        while warm.elapsed() < Duration::from_millis(200) {
            n += 1;
            peer.replace(n);
        }
        let baseline = rss();
        let mut peak = baseline;
        let start = Instant::now();
        let mut stores = 0u64;
        while start.elapsed() < Duration::from_secs(1) {
            for _ in 0..4096 {
                n += 1;
                peer.replace(n);
            }
            stores += 4096;
            peak = peak.max(rss());
        }
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        (stores, elapsed, baseline, peak)
    });
    let st = rt.stats();
    extras::write(
        "reclaim_writer.json",
        &json!({
            "stores_per_s": stores as f64 / elapsed.as_secs_f64(),
            "peak_pending": st.peak_pending,
            "max_pending": sigdrop::DEFAULT_MAX_PENDING,
            "rss_growth_bytes": peak.saturating_sub(baseline),
            "peak_total_jobs": st.peak_total,
            "wakes": st.wakes,
        }),
    );
}

/// Samples of offload-to-destructor latency, preallocated (the destructor runs on the drainer).
const SAMPLES: usize = 1 << 16;
static LATENCY: [AtomicU64; SAMPLES] = [const { AtomicU64::new(0) }; SAMPLES];
static LATENCY_N: AtomicUsize = AtomicUsize::new(0);
static HANDLER_NS: AtomicU64 = AtomicU64::new(0);
static HANDLED: AtomicU64 = AtomicU64::new(0);

fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// An object that remembers when a handler let it go; its destructor records the latency.
struct Stamped {
    released_at: AtomicU64,
}

impl Drop for Stamped {
    fn drop(&mut self) {
        let ns = now_ns().saturating_sub(self.released_at.load(Ordering::Relaxed));
        let i = LATENCY_N.fetch_add(1, Ordering::Relaxed);
        if i < SAMPLES {
            LATENCY[i].store(ns, Ordering::Relaxed);
        }
    }
}

/// Each mode's slots (published before its storm starts) and the mode the handler serves now.
static MODES: [OnceLock<Vec<RefSlot<Box<Stamped>>>>; 2] = [OnceLock::new(), OnceLock::new()];
static CURRENT: AtomicUsize = AtomicUsize::new(usize::MAX);
static CURSOR: AtomicUsize = AtomicUsize::new(0);

/// The handler: tears one slot down (deferred: restricted context), timing itself.
fn on_signal(_: &SignalInfo) {
    let start = now_ns();
    // Acquire: pairs with the Release store of `CURRENT` after the mode's slots were published.
    let mode = MODES.get(CURRENT.load(Ordering::Acquire));
    if let Some(slots) = mode.and_then(OnceLock::get) {
        let i = CURSOR.fetch_add(1, Ordering::Relaxed) % slots.len();
        if let Some(taken) = slots[i].take() {
            taken.released_at.store(now_ns(), Ordering::Relaxed);
            drop(taken);
        }
    }
    HANDLER_NS.fetch_add(now_ns() - start, Ordering::Relaxed);
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// Signals per second the storm aims at (one target thread).
const STORM_PAUSE: Duration = Duration::from_micros(50);
const STORM_FOR: Duration = Duration::from_secs(1);
/// The lazy mode's period in the storm.
const LAZY_PERIOD: Duration = Duration::from_millis(1);

/// A storm against one worker thread that keeps mode `index`'s slots full; writes its figures
/// into `out` with keys prefixed `mode`.
fn storm_in_mode(
    index: usize,
    mode: &str,
    wake: Wake,
    out: &mut serde_json::Map<String, serde_json::Value>,
) {
    // Default settings otherwise; the wakes reported are the handlers' (`restricted_wakes`), not
    // those the worker's installs make when the pool starts keeping jobs.
    let rt = Runtime::builder().wake(wake).build().expect("runtime");
    let slots = MODES[index].get_or_init(|| (0..64).map(|_| RefSlot::new(&rt)).collect());
    LATENCY_N.store(0, Ordering::Relaxed);
    HANDLER_NS.store(0, Ordering::Relaxed);
    HANDLED.store(0, Ordering::Relaxed);
    let refill = || {
        for slot in slots {
            if slot.is_empty() {
                let fresh = Box::new(Stamped {
                    released_at: AtomicU64::new(0),
                });
                let _ = slot.xchg(Some(fresh));
            }
        }
    };
    refill();
    let before = rt.stats();
    CURRENT.store(index, Ordering::Release);
    let stop = AtomicBool::new(false);
    let sent = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, refill) = (&stop, &refill);
        s.spawn(move || {
            tx.send(signal::current_tid())
                .expect("send the worker's tid");
            // Relaxed: a stop flag; the scope's join synchronises.
            while !stop.load(Ordering::Relaxed) {
                refill();
                std::thread::yield_now();
            }
        });
        let tid = rx.recv().expect("the worker's tid");
        let storm = Storm::start(Signal::SIGUSR2, vec![tid], STORM_PAUSE).expect("storm");
        std::thread::sleep(STORM_FOR);
        let sent = storm.stop();
        stop.store(true, Ordering::Relaxed);
        sent
    });
    CURRENT.store(usize::MAX, Ordering::Release);
    let waited = Instant::now();
    while rt.stats().drained < rt.stats().offloaded && waited.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let after = rt.stats();
    let handled = HANDLED.load(Ordering::Relaxed).max(1);
    let n = LATENCY_N.load(Ordering::Relaxed).min(SAMPLES);
    let mut samples: Vec<u64> = LATENCY[..n]
        .iter()
        .map(|l| l.load(Ordering::Relaxed))
        .collect();
    samples.sort_unstable();
    let wakes = after.restricted_wakes - before.restricted_wakes;
    let figures = [
        ("signals_sent", sent as f64),
        ("signals", handled as f64),
        ("teardowns", (after.offloaded - before.offloaded) as f64),
        ("wakes", wakes as f64),
        ("wakes_per_signal", wakes as f64 / handled as f64),
        (
            "handler_ns",
            HANDLER_NS.load(Ordering::Relaxed) as f64 / handled as f64,
        ),
        ("p50_ns", percentile(&samples, 50.0) as f64),
        ("p99_ns", percentile(&samples, 99.0) as f64),
    ];
    for (key, value) in figures {
        out.insert(format!("{mode}_{key}"), json!(value));
    }
}

/// Both wake modes, one after the other, in the same run.
fn wake_modes() {
    // SAFETY: `on_signal` only reads statics published before `CURRENT` points at them, tears a
    // slot down in restricted context (the trampoline enters it), and reads the clock (vDSO).
    let installed =
        unsafe { signal::install(Signal::SIGUSR2, on_signal) }.expect("install the handler");
    let mut out = serde_json::Map::new();
    storm_in_mode(0, "immediate", Wake::Immediate, &mut out);
    storm_in_mode(1, "lazy", Wake::lazy(LAZY_PERIOD), &mut out);
    installed.uninstall().expect("uninstall the handler");
    out.insert(
        "lazy_period_ns".into(),
        json!(LAZY_PERIOD.as_nanos() as u64),
    );
    extras::write("wake_modes.json", &serde_json::Value::Object(out));
}

pub fn group(c: &mut Criterion) {
    let mut g = c.benchmark_group("reclaim");
    for readers in 0..=2 {
        let rt = Runtime::new().expect("runtime");
        let sigdrop = Sigdrop {
            slot: ReadSlot::new(&rt),
        };
        sigdrop.replace(0);
        store_row(&mut g, &sigdrop, readers);
        store_row(&mut g, &ArcSwap::from_pointee(0u64), readers);
        store_row(&mut g, &epoch::Atomic::new(0u64), readers);
    }
    g.finish();
    full_speed_writer();
    wake_modes();
}
