//! A writer replacing a `ReadSlot<Arc<_>>` as fast as it can, for a few seconds, while reader
//! threads and signal handlers on every thread read it: the objects waiting for destruction, the
//! job pool and the process's resident memory stay bounded, whatever the writer's rate, and
//! every object is still destroyed exactly once, never under a reader.
//!
//! Without back-pressure this workload left about a million objects (hundreds of MB) pending:
//! nothing stopped the writer from retiring faster than grace periods let objects go. Bounds are
//! asserted on counts and on RSS, never on time.

mod common;

use common::{NMI, StopFlag, install_handler, storm_workers};
use sigdrop::{ReadSlot, Runtime, read, restricted};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The bound under test (the default is 4096; smaller makes the writer hit it constantly).
const MAX_PENDING: usize = 512;
/// Objects per batch (`BATCH` in the crate); each CPU's open batch is not yet counted.
const BATCH: usize = 64;
/// How long the writer runs flat out.
const WRITE_FOR: Duration = Duration::from_secs(3);
/// Reader threads (also storm targets, with the writer).
const READERS: usize = 2;
/// Words per object: 1 KiB each, so an unbounded backlog shows in RSS quickly.
const WORDS: usize = 128;
/// RSS growth allowed over the warmed-up baseline. A million pending 1 KiB objects would be
/// 1 GiB; the bound allows (512 + 64 per CPU + a batch per writer) objects.
const MAX_RSS_GROWTH: usize = 48 << 20;

/// An object whose words all equal its id; the destructor poisons them, so a reader that ever
/// sees a destroyed object sees a mismatch.
struct Obj {
    words: [AtomicU64; WORDS],
}

impl Obj {
    fn new(id: u64) -> Self {
        Obj {
            words: std::array::from_fn(|_| AtomicU64::new(id)),
        }
    }

    /// Whether every word agrees (Relaxed: the object was published by the slot's exchange).
    fn intact(&self) -> bool {
        let first = self.words[0].load(Ordering::Relaxed);
        first != POISON
            && self
                .words
                .iter()
                .all(|w| w.load(Ordering::Relaxed) == first)
    }
}

const POISON: u64 = u64::MAX;

impl Drop for Obj {
    fn drop(&mut self) {
        if restricted::is_active() {
            DTOR_IN_HANDLER.fetch_add(1, Ordering::Relaxed);
        }
        for w in &self.words {
            w.store(POISON, Ordering::Relaxed);
        }
        DESTROYED.fetch_add(1, Ordering::Relaxed);
    }
}

struct State {
    rt: Runtime,
    slot: ReadSlot<Arc<Obj>>,
}

static STATE: OnceLock<State> = OnceLock::new();
static STOP: StopFlag = StopFlag::new();
static DESTROYED: AtomicU64 = AtomicU64::new(0);
static DTOR_IN_HANDLER: AtomicU64 = AtomicU64::new(0);
static BAD_READS: AtomicU64 = AtomicU64::new(0);
static HANDLER_READS: AtomicU64 = AtomicU64::new(0);
static THREAD_READS: AtomicU64 = AtomicU64::new(0);
static WRITER_DONE: AtomicBool = AtomicBool::new(false);

/// Reads the slot under a guard and checks the object.
fn read_once(reads: &AtomicU64) {
    let Some(st) = STATE.get() else { return };
    let guard = read::enter();
    if let Some(obj) = st.slot.load(&guard) {
        if !obj.intact() {
            BAD_READS.fetch_add(1, Ordering::Relaxed);
        }
        reads.fetch_add(1, Ordering::Relaxed);
    }
}

extern "C" fn on_nmi(_: libc::c_int) {
    let _nmi = restricted::enter();
    read_once(&HANDLER_READS);
}

/// Resident set size in bytes, from `/proc/self/statm`.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm's second field");
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

#[test]
fn a_full_speed_writer_stays_within_the_bound() {
    let rt = Runtime::builder().max_pending(MAX_PENDING).build().unwrap();
    let st = STATE.get_or_init(|| State {
        slot: ReadSlot::new(&rt),
        rt,
    });
    st.slot.xchg(Some(Arc::new(Obj::new(0)))).unwrap();
    let _previous = install_handler(NMI, on_nmi);

    let created = AtomicU64::new(1);
    let peak_rss = AtomicU64::new(0);
    let baseline = AtomicU64::new(0);
    let report = storm_workers(
        READERS + 1,
        NMI,
        u64::MAX,
        WRITE_FOR + Duration::from_secs(2),
        &STOP,
        || WRITER_DONE.load(Ordering::Acquire),
        |w| {
            if w < READERS {
                while !STOP.is_set() {
                    read_once(&THREAD_READS);
                }
                return;
            }
            // The writer: warm up (allocator arenas, the pool), take the baseline, then run
            // flat out, sampling RSS as it goes.
            let mut id = 1;
            let write_for = |d: Duration, id: &mut u64| {
                let end = Instant::now() + d;
                while Instant::now() < end {
                    for _ in 0..1024 {
                        drop(st.slot.xchg(Some(Arc::new(Obj::new(*id)))).unwrap());
                        *id += 1;
                    }
                    peak_rss.fetch_max(rss() as u64, Ordering::Relaxed);
                }
            };
            write_for(Duration::from_millis(300), &mut id);
            baseline.store(rss() as u64, Ordering::Relaxed);
            peak_rss.store(0, Ordering::Relaxed);
            write_for(WRITE_FOR, &mut id);
            created.store(id, Ordering::Relaxed);
            peak_rss.fetch_max(rss() as u64, Ordering::Relaxed);
            // Tell the storm to stop (its `done`), then wait for it like the readers: a storm
            // target must outlive the storm.
            WRITER_DONE.store(true, Ordering::Release);
            while !STOP.is_set() {
                std::thread::yield_now();
            }
        },
    );

    let s = st.rt.stats();
    let created = created.load(Ordering::Relaxed);
    let (baseline, peak) = (
        baseline.load(Ordering::Relaxed) as usize,
        peak_rss.load(Ordering::Relaxed) as usize,
    );
    eprintln!(
        "backpressure: {report:?}, created {created}, handler reads {}, thread reads {}, \
         RSS baseline {} MiB, peak {} MiB, {s:?}",
        HANDLER_READS.load(Ordering::Relaxed),
        THREAD_READS.load(Ordering::Relaxed),
        baseline >> 20,
        peak >> 20,
    );

    // Not vacuous: the writer ran, readers read in threads and in handlers.
    assert!(created > 100_000, "only {created} objects were created");
    assert!(HANDLER_READS.load(Ordering::Relaxed) > 0, "no handler read");
    assert!(THREAD_READS.load(Ordering::Relaxed) > 0, "no thread read");

    // The bound: closed batches and job lists within max_pending, plus one open batch per CPU
    // and the batch being closed.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let allowed = MAX_PENDING + BATCH * (cpus + 1);
    assert!(
        s.peak_pending <= allowed,
        "peak pending {} over the bound {allowed}: {s:?}",
        s.peak_pending
    );
    // No wake-up syscall on the writer's path in steady state: the drainer keeps polling while
    // batches come (the handlers here only read, so every wake would be the writer's). A writer
    // descheduled for long enough lets the drainer go to sleep for good, hence a rate, not zero.
    // The rate is per batch, what a regression would show (a wake for every batch, one per 64
    // stores): on a loaded machine the writer makes fewer stores and is descheduled more often,
    // so a rate per store is not a bound (measured, two busy loops beside: down to one wake
    // per 627 stores, about ten batches; it was once asserted at 2000 and failed there).
    assert!(
        s.wakes * 4 * (BATCH as u64) < created,
        "{} wake-ups for {created} stores: {s:?}",
        s.wakes
    );
    // No job per pending object: the pool stays at its headroom.
    assert!(s.peak_total <= 256, "the job pool grew: {s:?}");
    assert!(
        peak.saturating_sub(baseline) <= MAX_RSS_GROWTH,
        "RSS grew by {} MiB (baseline {} MiB, peak {} MiB)",
        peak.saturating_sub(baseline) >> 20,
        baseline >> 20,
        peak >> 20
    );

    // Nothing seen destroyed, nothing destroyed in a handler, and every object but the one in
    // the slot destroyed exactly once once the backlog is drained.
    assert_eq!(
        BAD_READS.load(Ordering::Relaxed),
        0,
        "a reader saw a destroyed object"
    );
    assert_eq!(DTOR_IN_HANDLER.load(Ordering::Relaxed), 0);
    st.slot.clear();
    st.rt.drain_and_wait().unwrap();
    common::wait_until(
        Duration::from_secs(30),
        "every object to be destroyed",
        || format!("{:?}", st.rt.stats()),
        || DESTROYED.load(Ordering::Relaxed) >= created,
    );
    assert_eq!(
        DESTROYED.load(Ordering::Relaxed),
        created,
        "destroyed twice"
    );
    let s = st.rt.stats();
    assert_eq!((s.emergency, s.leaked), (0, 0), "{s:?}");
}
