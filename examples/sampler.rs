//! A SIGPROF-driven sampling profiler whose handler never allocates or frees.
//!
//! Profilers that free a full sample buffer inside their SIGPROF handler deadlock when the signal
//! lands while the interrupted thread holds the allocator's lock (pprof-rs issue 36). Here the
//! handler hands the full buffer to sigdrop instead, and the buffer's destructor — on the drainer
//! thread, in ordinary context — folds its samples into the profile.
//!
//! - Each worker thread does CPU work in phases (hash, sort, alloc, math; the `alloc` phase
//!   mallocs and frees all the time, so signals do land inside the allocator) and has its own
//!   `ThreadTimer` on its own CPU clock (`TimerClock::ThreadCpu`) delivering SIGPROF.
//! - The handler (installed with `sigdrop::signal::install`, so it runs in restricted context)
//!   finds its worker's state through a `static OnceLock`, indexed by a `const`-initialised
//!   thread-local worker index, and records the worker's current phase into the current buffer.
//! - The buffer is owned by a `RefSlot<Box<Buffer>>`; the handler writes through a non-owning
//!   pointer kept in a `RawSlot` (the buffer's storage is atomics). That pointer stays valid
//!   because only this worker's handler ever replaces the buffer, and SIGPROF does not nest.
//! - When the buffer is full, the handler takes a fresh preallocated buffer from the worker's
//!   lock-free pool (`AtomicPtr` cells the main thread refills in ordinary context), swaps it in
//!   with `RefSlot::xchg` — in restricted context this needs a job set aside with
//!   `Runtime::reserve`, which the main thread tops up — and retires the full buffer by dropping
//!   the returned `Detached`: deferred, never freed in the handler. With no fresh buffer or no
//!   reserved job, the sample is counted as lost; nothing is allocated.
//! - The profiler's settings are a `Config` behind an `Arc` in a `ReadSlot<Arc<Config>>`, which
//!   the main thread replaces with a new generation about every 2 ms while the workers run (it
//!   receives no SIGPROF, so it may sleep between rounds). On every signal the handler enters a
//!   read guard (`sigdrop::read::enter`: wait-free, no allocation), borrows the config with
//!   `ReadSlot::load` — no reference count touched — checks its integrity (a checksum over its
//!   generation and its heap data, a `String` tag and a `Vec` of salt) and records its
//!   generation in the sample, then leaves the guard. A replaced config goes to the drainer,
//!   which destroys it (and frees its heap data) only after a grace period, once no handler can
//!   still be reading it: never inline, never in a handler. The config's destructor inverts its
//!   checksum before the memory is freed, so a handler that read a destroyed config would count
//!   an integrity failure even before valgrind or ASan saw the use after free.
//!
//! A counting global allocator counts allocator calls made in restricted context (the handler):
//! the run fails unless that count is 0, and unless every sample recorded is accounted for by the
//! retired buffers' destructors plus the buffers still in the slots at the end. It also fails
//! unless every config read in the handler passed its integrity check, the generations in every
//! buffer never go backwards, and, once the config slot is cleared and the drainer has caught up,
//! every config made was destroyed exactly once, on the drainer, outside any read guard.
//!
//! ```text
//! cargo run --release --example sampler -- --help
//! ```

#[path = "common/cli.rs"]
mod cli;

use cli::Command;
use sigdrop::alloc_check::RestrictedAllocs;
use sigdrop::signal::{self, Signal, SignalInfo, ThreadTimer, TimerClock};
use sigdrop::{RawSlot, ReadSlot, RefSlot, Runtime, read, restricted};
use std::cell::Cell;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Counts allocator calls made while the restricted guard is active (the handler).
#[global_allocator]
static ALLOC: RestrictedAllocs = RestrictedAllocs::system();

/// Samples per buffer.
const BUFFER_SAMPLES: usize = 16;
/// Fresh buffers kept ready per worker.
const POOL_LEN: usize = 4;
/// Jobs set aside for the handler's swaps; topped up when fewer than half are left.
const RESERVE: usize = 16;
/// What the workers do; a sample records the phase its worker was in.
const PHASES: [&str; 4] = ["hash", "sort", "alloc", "math"];
/// A sample is `phase | generation << PHASE_BITS`: the phase, and the generation of the config
/// the handler read (0 if it found none, or a corrupt one).
const PHASE_BITS: u32 = 8;
/// How often the main thread installs a new config.
const CONFIG_PERIOD: Duration = Duration::from_millis(2);
/// Words of salt per config (heap data the handler reads on every signal).
const SALT_WORDS: usize = 16;

/// The profiler's settings, replaced as a whole by the main thread and read by the handler.
/// Its heap data (`tag`, `salt`) is what makes a use after free visible to valgrind and ASan.
struct Config {
    /// 1 for the first config, one more for each replacement.
    generation: u64,
    /// A label for the samples taken under this config.
    tag: String,
    /// Derived from the generation; folded into the checksum.
    salt: Vec<u64>,
    /// Over everything above. `Drop` inverts it, so a reader that borrowed a destroyed config
    /// fails the check even before the memory is reused.
    checksum: u64,
}

impl Config {
    /// Builds the config of `generation` (ordinary context: it allocates).
    fn new(generation: u64) -> Arc<Config> {
        let mut x = generation.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let salt: Vec<u64> = (0..SALT_WORDS)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect();
        let tag = format!("epoch-{generation}");
        let checksum = config_checksum(generation, tag.as_bytes(), &salt);
        // Relaxed: a statistic, compared with the destructor count only after the drainer is
        // done (which the Acquire load of `CONFIGS_DROPPED` orders).
        CONFIGS_MADE.fetch_add(1, Ordering::Relaxed);
        Arc::new(Config {
            generation,
            tag,
            salt,
            checksum,
        })
    }

    /// Whether the fields still agree with the checksum. Reads every field, including the heap
    /// data; no allocation, so the handler may call it.
    fn intact(&self) -> bool {
        self.salt.len() == SALT_WORDS
            && config_checksum(self.generation, self.tag.as_bytes(), &self.salt) == self.checksum
    }
}

impl Drop for Config {
    /// Runs on the drainer, after a grace period: no handler borrows this config any more.
    fn drop(&mut self) {
        if restricted::is_active() || read::is_active() || APP_THREAD.with(Cell::get) {
            // Relaxed: a statistic, read after the run.
            CONFIG_DROPS_MISPLACED.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `&mut self.checksum` is valid, aligned and exclusively ours. Volatile, so that
        // this store to memory about to be freed is not optimised away.
        unsafe { ptr::write_volatile(&mut self.checksum, !self.checksum) };
        // Release: pairs with the main thread's Acquire loads; whoever sees the count sees the
        // misplaced-drop count above.
        CONFIGS_DROPPED.fetch_add(1, Ordering::Release);
    }
}

/// A word-wise FNV-style hash over a config's fields. No allocation.
fn config_checksum(generation: u64, tag: &[u8], salt: &[u64]) -> u64 {
    let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(0x1000_0000_01b3).rotate_left(29);
    let mut h = mix(0xcbf2_9ce4_8422_2325, generation);
    for &b in tag {
        h = mix(h, u64::from(b));
    }
    for &w in salt {
        h = mix(h, w);
    }
    mix(h, (tag.len() as u64) << 32 | salt.len() as u64)
}

/// A preallocated sample buffer. Its storage is atomics, so the handler can write through a
/// shared pointer while the `RefSlot` owns it.
struct Buffer {
    len: AtomicUsize,
    samples: [AtomicU64; BUFFER_SAMPLES],
}

impl Buffer {
    fn new() -> Box<Buffer> {
        BUFFERS_MADE.fetch_add(1, Ordering::Relaxed);
        Box::new(Buffer {
            len: AtomicUsize::new(0),
            samples: [const { AtomicU64::new(0) }; BUFFER_SAMPLES],
        })
    }
}

impl Drop for Buffer {
    /// Folds the samples into the profile. For a retired buffer this runs on the drainer, in
    /// ordinary context, and the `Box` is freed there.
    fn drop(&mut self) {
        if restricted::is_active() {
            DTOR_IN_RESTRICTED.fetch_add(1, Ordering::Relaxed);
        }
        // Acquire: pairs with the handler's Release store of `len`.
        let len = self.len.load(Ordering::Acquire);
        let mut previous = 0;
        for sample in &self.samples[..len] {
            // Relaxed: ordered by the Acquire load of `len` above.
            let sample = sample.load(Ordering::Relaxed);
            let phase = (sample & ((1 << PHASE_BITS) - 1)) as usize;
            // Relaxed here and below: statistics, read after the run.
            PROFILE[phase.min(PHASES.len() - 1)].fetch_add(1, Ordering::Relaxed);
            let generation = sample >> PHASE_BITS;
            if generation == 0 {
                continue; // no config: counted by the handler
            }
            // One thread's handler appended these samples in order, and its slot loads cannot
            // go back in the slot's modification order: the generations never decrease.
            if generation < previous {
                GENERATIONS_BACKWARDS.fetch_add(1, Ordering::Relaxed);
            } else if previous != 0 && generation > previous {
                CONFIG_SWITCHES_SEEN.fetch_add(1, Ordering::Relaxed);
            }
            previous = generation;
            GENERATION_MIN.fetch_min(generation, Ordering::Relaxed);
            GENERATION_MAX.fetch_max(generation, Ordering::Relaxed);
        }
        FOLDED.fetch_add(len as u64, Ordering::Relaxed);
        // Release: whoever sees the count sees the folded samples.
        DESTRUCTORS.fetch_add(1, Ordering::Release);
    }
}

/// Marks a pool cell whose buffer a handler has taken; never a real buffer address.
const BORROWED: *mut Buffer = ptr::dangling_mut();

/// One worker's profiler state, reached from its SIGPROF handler.
struct Worker {
    /// Owns the current buffer.
    slot: RefSlot<Box<Buffer>>,
    /// A non-owning pointer to the same buffer, for the handler to write through.
    current: RawSlot<Buffer>,
    /// Fresh buffers: null (the main thread may fill it), a buffer, or `BORROWED`.
    pool: [AtomicPtr<Buffer>; POOL_LEN],
    /// The phase the worker is in now (the sampled "program counter").
    phase: AtomicUsize,
    signals: AtomicU64,
    recorded: AtomicU64,
    retired: AtomicU64,
    lost_no_buffer: AtomicU64,
    lost_no_job: AtomicU64,
    /// Configs read by the handler (one per signal).
    config_reads: AtomicU64,
    /// Configs that failed their integrity check.
    config_corrupt: AtomicU64,
    /// Reads that found the config slot empty (it never is while the workers run).
    config_missing: AtomicU64,
}

struct Profiler {
    rt: Runtime,
    workers: Vec<Worker>,
    /// The current settings: replaced by the main thread, read by the handler.
    config: ReadSlot<Arc<Config>>,
}

static PROFILER: OnceLock<Profiler> = OnceLock::new();

std::thread_local! {
    /// This thread's worker index, or `usize::MAX`. Const-initialised, no destructor: safe to
    /// read in a handler.
    static WORKER: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Set on the main thread and the workers: a config destroyed here was not destroyed by the
    /// drainer.
    static APP_THREAD: Cell<bool> = const { Cell::new(false) };
}

static PROFILE: [AtomicU64; PHASES.len()] = [const { AtomicU64::new(0) }; PHASES.len()];
static FOLDED: AtomicU64 = AtomicU64::new(0);
static DESTRUCTORS: AtomicU64 = AtomicU64::new(0);
static DTOR_IN_RESTRICTED: AtomicU64 = AtomicU64::new(0);
static BUFFERS_MADE: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);
static CONFIGS_MADE: AtomicU64 = AtomicU64::new(0);
static CONFIGS_DROPPED: AtomicU64 = AtomicU64::new(0);
static CONFIG_DROPS_MISPLACED: AtomicU64 = AtomicU64::new(0);
static GENERATIONS_BACKWARDS: AtomicU64 = AtomicU64::new(0);
static CONFIG_SWITCHES_SEEN: AtomicU64 = AtomicU64::new(0);
static GENERATION_MIN: AtomicU64 = AtomicU64::new(u64::MAX);
static GENERATION_MAX: AtomicU64 = AtomicU64::new(0);

/// Takes a fresh buffer from the worker's pool, leaving its cell `BORROWED`. Atomics only.
fn take_fresh(w: &Worker) -> Option<(&AtomicPtr<Buffer>, Box<Buffer>)> {
    for cell in &w.pool {
        let p = cell.load(Ordering::Relaxed);
        if p.is_null() || p == BORROWED {
            continue;
        }
        // Acquire: pairs with the main thread's Release CAS that published the buffer. A CAS,
        // so the cell is never overwritten behind the main thread's back.
        if cell
            .compare_exchange(p, BORROWED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: every buffer pointer in a pool came from `Box::into_raw`, and the CAS
            // moved this one out of the pool: it is ours alone. Rebuilding the `Box` allocates
            // nothing.
            return Some((cell, unsafe { Box::from_raw(p) }));
        }
    }
    None
}

/// Appends `sample` if the buffer has room. The buffer is only ever appended to by the handler
/// of the thread that owns it, so a load and a store suffice.
fn append(buf: &Buffer, sample: u64) -> bool {
    let n = buf.len.load(Ordering::Relaxed);
    if n == BUFFER_SAMPLES {
        return false;
    }
    buf.samples[n].store(sample, Ordering::Relaxed);
    // Release: the destructor (Acquire) sees the sample.
    buf.len.store(n + 1, Ordering::Release);
    true
}

/// Borrows the current config under a read guard, checks it and returns its generation, or 0
/// if the slot was empty or the config corrupt (both counted). Wait-free, no allocation: the
/// guard is two atomic counter updates, the borrow one atomic load. The guard is held only for
/// the check, so the grace periods the drainer waits for stay short.
fn read_config(profiler: &Profiler, w: &Worker) -> u64 {
    let guard = read::enter();
    // Relaxed here and below: statistics, read after the workers have exited.
    w.config_reads.fetch_add(1, Ordering::Relaxed);
    let Some(config) = profiler.config.load(&guard) else {
        w.config_missing.fetch_add(1, Ordering::Relaxed);
        return 0;
    };
    if !config.intact() {
        w.config_corrupt.fetch_add(1, Ordering::Relaxed);
        return 0;
    }
    config.generation
}

/// The SIGPROF handler: runs inside sigdrop's restricted guard. Never allocates or frees.
fn on_sigprof(_: &SignalInfo) {
    let (Some(profiler), Ok(index)) = (PROFILER.get(), WORKER.try_with(Cell::get)) else {
        return;
    };
    let Some(w) = profiler.workers.get(index) else {
        return; // not a worker thread
    };
    w.signals.fetch_add(1, Ordering::Relaxed);
    let generation = read_config(profiler, w);
    let sample = w.phase.load(Ordering::Relaxed) as u64 | generation << PHASE_BITS;
    // Only this thread's handler moves `current` and SIGPROF does not nest: taking it and
    // putting it (or its successor) back is race-free.
    let Some(cur) = w.current.take() else {
        w.lost_no_buffer.fetch_add(1, Ordering::Relaxed);
        return;
    };
    // SAFETY: `cur` points into the buffer `w.slot` owns. Only this handler replaces that
    // buffer (below), and the main thread reads it only after this worker has exited, so it is
    // alive while we use it; all access to it is shared, through atomics.
    let buf = unsafe { cur.as_ref() };
    if append(buf, sample) {
        w.current.xchg(Some(cur));
        w.recorded.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // Full: swap in a fresh buffer and retire this one.
    let Some((cell, fresh)) = take_fresh(w) else {
        w.current.xchg(Some(cur));
        w.lost_no_buffer.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let fresh_ptr = NonNull::from(&*fresh);
    match w.slot.xchg(Some(fresh)) {
        Ok(full) => {
            // Release: the emptied cell may be refilled by the main thread.
            cell.store(ptr::null_mut(), Ordering::Release);
            w.current.xchg(Some(fresh_ptr));
            // SAFETY: `fresh_ptr` points into the buffer the slot now owns; as above.
            append(unsafe { fresh_ptr.as_ref() }, sample);
            w.recorded.fetch_add(1, Ordering::Relaxed);
            if let Some(full) = full {
                // Deferred with the job the restricted exchange claimed for it: the drainer
                // runs the destructor (which folds the samples) and frees the Box.
                drop(full);
                w.retired.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(rejected) => {
            // No reserved or spare job: keep everything as it was (dropping the fresh buffer
            // here would free it). Release: publishes the buffer to whoever takes it next.
            cell.store(Box::into_raw(rejected.into_inner()), Ordering::Release);
            w.current.xchg(Some(cur));
            w.lost_no_job.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// CPU work in phases, until told to stop; sets `phase` before each chunk.
fn work(w: &Worker) {
    let mut seed = 0x2545_F491_4F6C_DD1Du64 ^ (w as *const Worker as u64);
    let mut sink = 0u64;
    let mut round = 0usize;
    while !STOP.load(Ordering::Acquire) {
        let phase = round % PHASES.len();
        w.phase.store(phase, Ordering::Relaxed);
        match phase {
            0 => {
                // FNV-1a over a few KiB.
                let data = [seed as u8; 4096];
                let mut h = 0xcbf2_9ce4_8422_2325u64;
                for _ in 0..4 {
                    for &b in std::hint::black_box(&data[..]) {
                        h = (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3);
                    }
                }
                sink ^= h;
            }
            1 => {
                let mut v = [0u32; 1024];
                for x in &mut v {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    *x = seed as u32;
                }
                std::hint::black_box(&mut v).sort_unstable();
                sink ^= u64::from(v[512]);
            }
            2 => {
                // malloc and free all the time: SIGPROF lands inside the allocator.
                for i in 0..256 {
                    let v: Vec<u64> = std::hint::black_box((0..64 + i).collect());
                    sink ^= v.iter().sum::<u64>();
                }
            }
            _ => {
                let mut x = (seed % 1000) as f64 / 1000.0;
                for _ in 0..5_000 {
                    x = std::hint::black_box(x * 3.9 * (1.0 - x));
                }
                sink ^= x.to_bits();
            }
        }
        round += 1;
    }
    std::hint::black_box(sink);
}

/// Fills every empty pool cell with a fresh buffer (ordinary context).
fn refill(w: &Worker) {
    for cell in &w.pool {
        if cell.load(Ordering::Relaxed).is_null() {
            let p = Box::into_raw(Buffer::new());
            // Release: publishes the buffer to the handler's Acquire CAS. Only null cells are
            // filled; a BORROWED one belongs to a handler.
            if cell
                .compare_exchange(ptr::null_mut(), p, Ordering::Release, Ordering::Relaxed)
                .is_err()
            {
                // SAFETY: `p` came from `Box::into_raw` just above and was never shared.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

struct Args {
    seconds: f64,
    workers: usize,
    interval: Duration,
    /// Never refill the pools or top up the reservation: the handler runs out and must count
    /// lost samples instead of allocating.
    starve: bool,
}

const HELP: &str = "\
sampler: a SIGPROF sampling profiler whose handler never allocates or frees. Each worker's own
CPU-time timer interrupts it; the handler records a sample into a preallocated buffer, retires
full buffers through sigdrop (their destructor, on the drainer, folds them into the profile) and
reads a configuration the main thread keeps replacing.

usage: sampler [options]

  --seconds F       how long the workers run, wall time (default 1, 0.01 to 86400)
  --workers N       worker threads, each with its own timer (default 3, 1 to 64)
  --interval-us U   CPU time between two samples of one worker, in microseconds
                    (default 1000, 10 to 1000000)
  --starve          never refill the workers' fresh buffers nor top up the reserved jobs: the
                    handler runs out and must count lost samples instead of allocating
  -h, --help        this text

Output: samples recorded and lost, buffers retired, config generations read, allocations in
the handler (must be 0), the profile by phase, then one machine-readable line
`sampler: result=PASS|FAIL ...`. Exit status: 0 if every check held, 1 if one failed, 2 for a
bad command line.
";

fn parse(parser: &mut lexopt::Parser) -> Result<Command<Args>, lexopt::Error> {
    use lexopt::Arg::{Long, Short};
    let mut args = Args {
        seconds: 1.0,
        workers: 3,
        interval: Duration::from_millis(1),
        starve: false,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("seconds") => args.seconds = cli::number(parser, "--seconds", 0.01..=86400.0)?,
            Long("workers") => args.workers = cli::number(parser, "--workers", 1..=64)?,
            Long("interval-us") => {
                let us = cli::number(parser, "--interval-us", 10..=1_000_000)?;
                args.interval = Duration::from_micros(us);
            }
            Long("starve") => args.starve = true,
            Long("help") | Short('h') => return Ok(Command::Help),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Command::Run(args))
}

/// Shows that the counting allocator sees an allocation made under the guard, so the zero it
/// reports for the handler means something.
fn calibrate() {
    {
        let _guard = restricted::enter();
        drop(std::hint::black_box(Box::new(7u64)));
    }
    let seen = ALLOC.take().restricted();
    assert_eq!(
        seen, 2,
        "the counting allocator must see an alloc and a free"
    );
}

fn main() {
    let args = cli::parse_or_exit("sampler", HELP, parse);
    calibrate();
    // Headroom 0: no spare jobs linger, so the handler's swaps live on the reservation.
    let rt = Runtime::builder()
        .headroom(0)
        .hysteresis(0)
        .build()
        .expect("runtime");
    // Starved, the handler gets fewer jobs than there are fresh buffers: it soon runs out and
    // must count lost samples.
    rt.reserve(if args.starve { POOL_LEN / 2 } else { RESERVE })
        .expect("reserve");
    let profiler = Profiler {
        workers: (0..args.workers)
            .map(|_| Worker {
                slot: RefSlot::new(&rt),
                current: RawSlot::new(),
                pool: [const { AtomicPtr::new(ptr::null_mut()) }; POOL_LEN],
                phase: AtomicUsize::new(0),
                signals: AtomicU64::new(0),
                recorded: AtomicU64::new(0),
                retired: AtomicU64::new(0),
                lost_no_buffer: AtomicU64::new(0),
                lost_no_job: AtomicU64::new(0),
                config_reads: AtomicU64::new(0),
                config_corrupt: AtomicU64::new(0),
                config_missing: AtomicU64::new(0),
            })
            .collect(),
        config: ReadSlot::new(&rt),
        rt,
    };
    assert!(PROFILER.set(profiler).is_ok(), "PROFILER set once");
    let p = PROFILER.get().expect("just set");
    for w in &p.workers {
        refill(w);
    }
    APP_THREAD.with(|c| c.set(true));
    // The first config, before any worker (and so any handler that reads it) starts.
    let mut generation = 1;
    let replaced = p
        .config
        .xchg(Some(Config::new(generation)))
        .expect("install the first config");
    assert!(replaced.is_none());
    // SAFETY: `on_sigprof` touches only atomics, an initialised OnceLock, a const thread-local
    // and sigdrop's restricted-context operations; it never allocates, frees or locks.
    let installed = unsafe { signal::install(Signal::SIGPROF, on_sigprof) }.expect("install");
    // Left installed: a SIGPROF still pending when a worker's timer is deleted must not find the
    // default action (which terminates the process).
    drop(installed);

    let started = Instant::now();
    let mut topups = 0u64;
    std::thread::scope(|s| {
        for (index, w) in p.workers.iter().enumerate() {
            s.spawn(move || {
                // The first buffer, installed in ordinary context before any SIGPROF can come.
                let first = Buffer::new();
                let first_ptr = NonNull::from(&*first);
                let replaced = w.slot.xchg(Some(first)).expect("install the first buffer");
                assert!(replaced.is_none());
                w.current.xchg(Some(first_ptr));
                APP_THREAD.with(|c| c.set(true));
                WORKER.with(|c| c.set(index));
                let timer = ThreadTimer::start(
                    Signal::SIGPROF,
                    signal::current_tid(),
                    args.interval,
                    TimerClock::ThreadCpu,
                )
                .expect("per-thread CPU-time timer");
                work(w);
                drop(timer); // a signal already pending is handled before this returns
            });
        }
        // The main thread: replace the config every CONFIG_PERIOD (starved or not: a reader
        // needs no job), and keep the pools full and the reservation topped up, in ordinary
        // context, until the time is up. It sleeps between rounds: every SIGPROF targets a
        // worker's thread id, so none interrupts (and livelocks) this thread's sleep.
        let deadline = started + Duration::from_secs_f64(args.seconds);
        let mut next_config = started + CONFIG_PERIOD;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if now >= next_config {
                generation += 1;
                // The replaced config comes back in a `Detached`: dropping it hands it to the
                // drainer, which destroys it after a grace period (never here, inline).
                drop(
                    p.config
                        .xchg(Some(Config::new(generation)))
                        .expect("replace the config"),
                );
                // Keep the cadence through small delays; after a long one, start afresh.
                next_config += CONFIG_PERIOD;
                if next_config < now {
                    next_config = now + CONFIG_PERIOD;
                }
            }
            if !args.starve {
                for w in &p.workers {
                    refill(w);
                }
                if p.rt.stats().reserved < RESERVE / 2 {
                    p.rt.reserve(RESERVE).expect("top up the reservation");
                    topups += 1;
                }
            }
            std::thread::sleep(
                Duration::from_millis(1).min(next_config.saturating_duration_since(now)),
            );
        }
        STOP.store(true, Ordering::Release);
    });
    let elapsed = started.elapsed();

    // Every worker has exited: no handler runs any more. What is still in the current buffers?
    let mut in_last = 0u64;
    for w in &p.workers {
        if let Some(cur) = w.current.take() {
            // SAFETY: the slot still owns this buffer and nothing else touches it now.
            in_last += unsafe { cur.as_ref() }.len.load(Ordering::Acquire) as u64;
        }
    }
    let retired: u64 = p
        .workers
        .iter()
        .map(|w| w.retired.load(Ordering::Relaxed))
        .sum();
    // Wait (bounded) for the drainer to run every retired buffer's destructor.
    let limit = Instant::now() + Duration::from_secs(10);
    while DESTRUCTORS.load(Ordering::Acquire) < retired && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(1));
    }
    let dtors_retired = DESTRUCTORS.load(Ordering::Acquire);
    let folded_retired = FOLDED.load(Ordering::Relaxed);

    // Tear down in ordinary context: the last buffers (destroyed inline, folding their samples)
    // and the unused fresh ones.
    for w in &p.workers {
        w.slot.clear();
        for cell in &w.pool {
            let b = cell.swap(ptr::null_mut(), Ordering::Acquire);
            if !b.is_null() && b != BORROWED {
                // SAFETY: a buffer pointer in a pool came from `Box::into_raw`; the swap took it.
                drop(unsafe { Box::from_raw(b) });
            }
        }
    }

    // The config: what is in the slot now (a reference of our own, KF_KPTR_GET style), then
    // empty the slot — what its `Drop` does — and wait (bounded) for the drainer to destroy it
    // and every config replaced before it, each after a grace period.
    let last_config = p
        .config
        .clone_current()
        .map(|c| (c.generation, c.tag.clone()));
    // Acquire: pairs with the Release increment in `Config::drop`.
    let configs_dropped_in_run = CONFIGS_DROPPED.load(Ordering::Acquire);
    p.config.clear();
    // Relaxed: every config was made on this thread.
    let configs_made = CONFIGS_MADE.load(Ordering::Relaxed);
    let limit = Instant::now() + Duration::from_secs(10);
    while CONFIGS_DROPPED.load(Ordering::Acquire) < configs_made && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Acquire: as above; the misplaced count below is then complete.
    let configs_dropped = CONFIGS_DROPPED.load(Ordering::Acquire);
    // Relaxed: statistics, ordered by the Acquire load above (configs) or by the workers'
    // joins and the buffer destructor counts' Acquire loads (generations).
    let config_drops_misplaced = CONFIG_DROPS_MISPLACED.load(Ordering::Relaxed);
    let generations_backwards = GENERATIONS_BACKWARDS.load(Ordering::Relaxed);
    let config_switches = CONFIG_SWITCHES_SEEN.load(Ordering::Relaxed);
    let generation_min = GENERATION_MIN.load(Ordering::Relaxed);
    let generation_max = GENERATION_MAX.load(Ordering::Relaxed);

    let sum = |f: fn(&Worker) -> &AtomicU64| -> u64 {
        p.workers.iter().map(|w| f(w).load(Ordering::Relaxed)).sum()
    };
    let signals = sum(|w| &w.signals);
    let recorded = sum(|w| &w.recorded);
    let lost_no_buffer = sum(|w| &w.lost_no_buffer);
    let lost_no_job = sum(|w| &w.lost_no_job);
    let lost = lost_no_buffer + lost_no_job;
    let config_reads = sum(|w| &w.config_reads);
    let config_corrupt = sum(|w| &w.config_corrupt);
    let config_missing = sum(|w| &w.config_missing);
    let folded = FOLDED.load(Ordering::Relaxed);
    let dtors = DESTRUCTORS.load(Ordering::Acquire);
    let made = BUFFERS_MADE.load(Ordering::Relaxed);
    let allocs = ALLOC.counts().restricted();
    let dtor_in_restricted = DTOR_IN_RESTRICTED.load(Ordering::Relaxed);
    let stats = p.rt.stats();

    let mut failures = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };
    check(allocs == 0, format!("allocations in the handler: {allocs}"));
    check(
        recorded == folded_retired + in_last,
        format!(
            "samples recorded {recorded} != folded by retired buffers {folded_retired} + in the last buffers {in_last}"
        ),
    );
    check(
        signals == recorded + lost,
        format!("signals {signals} != recorded {recorded} + lost {lost}"),
    );
    check(
        dtors_retired == retired,
        format!("destructors of retired buffers {dtors_retired} != buffers retired {retired}"),
    );
    check(
        dtors == made && folded == recorded,
        format!(
            "every buffer destroyed once ({dtors} of {made}), every sample folded ({folded} of {recorded})"
        ),
    );
    check(
        dtor_in_restricted == 0,
        format!("destructors in restricted context: {dtor_in_restricted}"),
    );
    check(
        stats.emergency == 0 && stats.leaked == 0,
        format!("emergency {} leaked {}", stats.emergency, stats.leaked),
    );
    check(
        retired > 0,
        "no buffer was retired (too short a run?)".to_string(),
    );
    check(
        config_corrupt == 0,
        format!("configs that failed their integrity check in the handler: {config_corrupt}"),
    );
    check(
        config_missing == 0,
        format!("handler reads that found no config: {config_missing}"),
    );
    check(
        config_reads == signals,
        format!("config reads {config_reads} != signals {signals}"),
    );
    check(
        configs_made == generation,
        format!("configs made {configs_made} != configs installed {generation}"),
    );
    check(
        configs_dropped == configs_made,
        format!("configs destroyed {configs_dropped} != configs installed {configs_made}"),
    );
    check(
        config_drops_misplaced == 0,
        format!(
            "configs destroyed off the drainer, in restricted context or under a read guard: {config_drops_misplaced}"
        ),
    );
    check(
        generations_backwards == 0,
        format!(
            "samples whose config generation went backwards in a buffer: {generations_backwards}"
        ),
    );
    check(
        generation_max <= generation,
        format!(
            "a sample carries generation {generation_max}, above the last installed {generation}"
        ),
    );
    check(
        stats.grace_periods > 0,
        "no grace period: no replaced config reached the drainer".to_string(),
    );

    println!(
        "sampler: {} workers, {:.2} s, SIGPROF every {:?} of thread CPU time, {} samples per buffer",
        args.workers,
        elapsed.as_secs_f64(),
        args.interval,
        BUFFER_SAMPLES
    );
    println!("  samples                 {recorded} recorded of {signals} signals");
    println!(
        "  samples lost            {lost} (no fresh buffer {lost_no_buffer}, no reserved job {lost_no_job})"
    );
    println!("  buffers retired         {retired} (from the handler, deferred to the drainer)");
    println!(
        "  destructors run         {dtors} ({dtors_retired} retired on the drainer, then the last and unused buffers)"
    );
    println!(
        "  samples folded          {folded_retired} by retired buffers + {in_last} in the last buffers = {}",
        folded_retired + in_last
    );
    println!("  reservation top-ups     {topups}");
    println!(
        "  configs installed       {generation} (one every {CONFIG_PERIOD:?} or so; last: {})",
        last_config.map_or_else(
            || "none".to_string(),
            |(g, tag)| format!("generation {g}, tag {tag:?}")
        )
    );
    println!(
        "  configs destroyed       {configs_dropped} by the drainer ({configs_dropped_in_run} during the run, the rest once the slot was cleared)"
    );
    println!(
        "  config reads            {config_reads} in the handler, under a read guard (integrity failures {config_corrupt}, slot empty {config_missing})"
    );
    if generation_min <= generation_max {
        println!(
            "  generations sampled     {generation_min}..={generation_max}, {config_switches} switches seen within buffers, {generations_backwards} backwards"
        );
    } else {
        println!("  generations sampled     none");
    }
    println!("  grace periods           {}", stats.grace_periods);
    println!("  allocations in handler  {allocs}");
    let total = PROFILE
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum::<u64>()
        .max(1);
    let profile: Vec<String> = PHASES
        .iter()
        .zip(&PROFILE)
        .map(|(name, c)| {
            format!(
                "{name} {:.0}%",
                100.0 * c.load(Ordering::Relaxed) as f64 / total as f64
            )
        })
        .collect();
    println!("  profile                 {}", profile.join(", "));
    for f in &failures {
        eprintln!("sampler: check failed: {f}");
    }
    let pass = failures.is_empty();
    println!(
        "sampler: result={} samples={recorded} lost={lost} retired={retired} dtors={dtors} folded={folded} configs={generation} config_dtors={configs_dropped} config_reads={config_reads} integrity_failures={config_corrupt} grace_periods={} allocs_in_handler={allocs}",
        if pass { "PASS" } else { "FAIL" },
        stats.grace_periods
    );
    std::process::exit(if pass { 0 } else { 1 });
}
