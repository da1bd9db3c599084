//! A SIGPROF-driven sampling profiler whose handler never allocates or frees — in safe code.
//!
//! Profilers that free a full sample buffer inside their SIGPROF handler deadlock when the signal
//! lands while the interrupted thread holds the allocator's lock (pprof-rs issue 36). Here each
//! buffer is a `sigdrop::Owned<Buffer>` (a `Vec<u64>` with room for `BUFFER_SAMPLES`, made in
//! ordinary context): the handler takes the current buffer out of its `RefSlot`, pushes the
//! sample (no reallocation: it never grows past its capacity), and puts it back. When the buffer
//! is full, the handler takes a fresh one from the worker's spare slots and drops the full one:
//! dropping an `Owned` in a signal handler is one push onto this CPU's list — no job, nothing to
//! reserve, nothing that can be refused — and the buffer's destructor, on the drainer thread,
//! folds its samples into the profile. No `AtomicPtr`, no `Box::into_raw`, no `unsafe` in the
//! handler (what is left: installing it, and the config destructor's volatile poison write).
//!
//! - Each worker thread does CPU work in phases (hash, sort, alloc, math; the `alloc` phase
//!   mallocs and frees all the time, so signals do land inside the allocator) and has its own
//!   `ThreadTimer` on its own CPU clock delivering SIGPROF; the handler (installed with
//!   `sigdrop::signal::install`, so it runs in restricted context) records the worker's phase.
//! - The profiler's settings are a `Config` in a `ReadSlot<Arc<Config>>`, replaced by the main
//!   thread about every 2 ms. The handler borrows it under a read guard (wait-free, no reference
//!   count touched), checks its integrity and records its generation in the sample; a replaced
//!   config is destroyed by the drainer only after a grace period (its `Drop` inverts its
//!   checksum, so a handler that read a destroyed config would see it).
//!
//! A counting global allocator counts allocator calls made in restricted context: the run fails
//! unless that count is 0, unless every sample recorded is accounted for by the destroyed
//! buffers, every buffer is destroyed exactly once and never in a handler, and every config
//! check passed.
//!
//! ```text
//! cargo run --release --example sampler -- [--seconds F] [--workers N] [--interval-us U] [--starve]
//! ```

#[path = "common/cli.rs"]
mod cli;

use cli::Command;
use sigdrop::alloc_check::RestrictedAllocs;
use sigdrop::signal::{self, Signal, SignalInfo, ThreadTimer, TimerClock};
use sigdrop::{Owned, ReadSlot, RefSlot, Runtime, read, restricted};
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Counts allocator calls made while the restricted guard is active (the handler).
#[global_allocator]
static ALLOC: RestrictedAllocs = RestrictedAllocs::system();

/// Samples per buffer.
const BUFFER_SAMPLES: usize = 16;
/// Fresh buffers kept ready per worker.
const SPARES: usize = 4;
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

/// A sample buffer: filled by one worker's handler, folded into the profile when destroyed.
struct Buffer {
    samples: Vec<u64>,
}

impl Buffer {
    /// A fresh, empty buffer (ordinary context: it allocates).
    fn new(rt: &Runtime) -> Owned<Buffer> {
        BUFFERS_MADE.fetch_add(1, Ordering::Relaxed);
        Owned::new(
            rt,
            Buffer {
                samples: Vec::with_capacity(BUFFER_SAMPLES),
            },
        )
    }
}

impl Drop for Buffer {
    /// Folds the samples into the profile. For a buffer retired by a handler this runs on the
    /// drainer thread, in ordinary context, and the buffer is freed there.
    fn drop(&mut self) {
        if restricted::is_active() {
            DTOR_IN_RESTRICTED.fetch_add(1, Ordering::Relaxed);
        }
        let mut previous = 0;
        for &sample in &self.samples {
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
            }
            previous = generation;
            GENERATION_MAX.fetch_max(generation, Ordering::Relaxed);
        }
        FOLDED.fetch_add(self.samples.len() as u64, Ordering::Relaxed);
        // Release: whoever sees the count sees the folded samples.
        DESTRUCTORS.fetch_add(1, Ordering::Release);
    }
}

/// One worker's profiler state, reached from its SIGPROF handler.
struct Worker {
    /// The buffer being filled.
    current: RefSlot<Owned<Buffer>>,
    /// Fresh buffers; the main thread refills empty ones in ordinary context.
    spares: [RefSlot<Owned<Buffer>>; SPARES],
    /// The phase the worker is in now (the sampled "program counter").
    phase: AtomicUsize,
    signals: AtomicU64,
    recorded: AtomicU64,
    retired: AtomicU64,
    lost: AtomicU64,
    config_reads: AtomicU64,
    config_corrupt: AtomicU64,
    config_missing: AtomicU64,
}

impl Worker {
    fn new(rt: &Runtime) -> Worker {
        Worker {
            current: RefSlot::new(rt),
            spares: std::array::from_fn(|_| RefSlot::new(rt)),
            phase: AtomicUsize::new(0),
            signals: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
            retired: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            config_reads: AtomicU64::new(0),
            config_corrupt: AtomicU64::new(0),
            config_missing: AtomicU64::new(0),
        }
    }

    /// Fills every empty spare slot with a fresh buffer (ordinary context).
    fn refill(&self, rt: &Runtime) {
        for spare in &self.spares {
            if spare.is_empty() {
                // Only this thread fills spares, so nothing is displaced.
                drop(spare.xchg(Some(Buffer::new(rt))));
            }
        }
    }
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
static GENERATION_MAX: AtomicU64 = AtomicU64::new(0);

/// Borrows the current config under a read guard, checks it and returns its generation, or 0
/// if the slot was empty or the config corrupt (both counted). Wait-free, no allocation.
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
    let sample = w.phase.load(Ordering::Relaxed) as u64 | read_config(profiler, w) << PHASE_BITS;
    // Take the buffer out (an owned box comes back whole, even here), fill it, put it back.
    let Some(mut buf) = w.current.take_owned() else {
        w.lost.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if buf.samples.len() == BUFFER_SAMPLES {
        match w.spares.iter().find_map(RefSlot::take_owned) {
            // The full buffer goes to the drainer: one push, no free here.
            Some(fresh) => {
                drop(std::mem::replace(&mut buf, fresh));
                w.retired.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                w.lost.fetch_add(1, Ordering::Relaxed); // no fresh buffer: the sample is lost
            }
        }
    }
    if buf.samples.len() < BUFFER_SAMPLES {
        buf.samples.push(sample); // within capacity: no reallocation
        w.recorded.fetch_add(1, Ordering::Relaxed);
    }
    // Never refused: an owned box needs no job. (Only this handler touches `current`.)
    drop(w.current.xchg(Some(buf)));
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

struct Args {
    seconds: f64,
    workers: usize,
    interval: Duration,
    /// No spare buffers at all: once its first buffer is full, the handler must count lost
    /// samples instead of allocating.
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
  --starve          no spare buffers at all: once its first buffer is full, the handler must
                    count lost samples instead of allocating
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
    let rt = Runtime::new().expect("runtime");
    let profiler = Profiler {
        workers: (0..args.workers).map(|_| Worker::new(&rt)).collect(),
        config: ReadSlot::new(&rt),
        rt,
    };
    assert!(PROFILER.set(profiler).is_ok(), "PROFILER set once");
    let p = PROFILER.get().expect("just set");
    for w in &p.workers {
        if !args.starve {
            w.refill(&p.rt);
        }
        drop(w.current.xchg(Some(Buffer::new(&p.rt))));
    }
    APP_THREAD.with(|c| c.set(true));
    // The first config, before any handler can read it.
    let mut generation = 1;
    drop(
        p.config
            .xchg(Some(Config::new(generation)))
            .expect("install the first config"),
    );
    // SAFETY: `on_sigprof` touches only atomics, an initialised OnceLock, const thread-locals
    // and sigdrop's restricted-context operations; it never allocates, frees or locks.
    let installed = unsafe { signal::install(Signal::SIGPROF, on_sigprof) }.expect("install");
    // Left installed: a SIGPROF still pending when a worker's timer is deleted must not find the
    // default action (which terminates the process).
    drop(installed);

    let started = Instant::now();
    std::thread::scope(|s| {
        for (index, w) in p.workers.iter().enumerate() {
            s.spawn(move || {
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
        // The main thread (it receives no SIGPROF, so it may sleep): a new config every
        // CONFIG_PERIOD, and, unless starved, fresh buffers in the spare slots.
        let deadline = started + Duration::from_secs_f64(args.seconds);
        let mut next_config = started + CONFIG_PERIOD;
        while Instant::now() < deadline {
            if Instant::now() >= next_config {
                generation += 1;
                // The replaced config goes to the drainer, destroyed after a grace period.
                drop(
                    p.config
                        .xchg(Some(Config::new(generation)))
                        .expect("replace"),
                );
                next_config = Instant::now() + CONFIG_PERIOD;
            }
            if !args.starve {
                for w in &p.workers {
                    w.refill(&p.rt);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        STOP.store(true, Ordering::Release);
    });
    let elapsed = started.elapsed();

    // Every worker has exited: no handler runs any more. Wait (bounded) for the drainer to
    // destroy every retired buffer, then tear everything down in ordinary context.
    let sum = |f: fn(&Worker) -> &AtomicU64| -> u64 {
        p.workers.iter().map(|w| f(w).load(Ordering::Relaxed)).sum()
    };
    let retired = sum(|w| &w.retired);
    let limit = Instant::now() + Duration::from_secs(10);
    while DESTRUCTORS.load(Ordering::Acquire) < retired && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(1));
    }
    let dtors_retired = DESTRUCTORS.load(Ordering::Acquire);
    for w in &p.workers {
        w.current.clear(); // destroyed inline: folds the last samples
        for spare in &w.spares {
            spare.clear();
        }
    }
    p.config.clear();
    let configs_made = CONFIGS_MADE.load(Ordering::Relaxed);
    let limit = Instant::now() + Duration::from_secs(10);
    while CONFIGS_DROPPED.load(Ordering::Acquire) < configs_made && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(1));
    }

    let signals = sum(|w| &w.signals);
    let recorded = sum(|w| &w.recorded);
    let lost = sum(|w| &w.lost);
    let config_reads = sum(|w| &w.config_reads);
    let config_corrupt = sum(|w| &w.config_corrupt);
    let config_missing = sum(|w| &w.config_missing);
    // Acquire: pairs with the destructors' Release increments; the Relaxed counts they made
    // before are then visible.
    let dtors = DESTRUCTORS.load(Ordering::Acquire);
    let configs_dropped = CONFIGS_DROPPED.load(Ordering::Acquire);
    let folded = FOLDED.load(Ordering::Relaxed);
    let made = BUFFERS_MADE.load(Ordering::Relaxed);
    let allocs = ALLOC.counts().restricted();
    let stats = p.rt.stats();
    let mut failures = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };
    check(allocs == 0, format!("allocations in the handler: {allocs}"));
    check(
        signals == recorded + lost,
        format!("signals {signals} != recorded {recorded} + lost {lost}"),
    );
    check(
        dtors == made && folded == recorded,
        format!("buffers destroyed {dtors} of {made}, samples folded {folded} of {recorded}"),
    );
    check(
        dtors_retired >= retired,
        format!("retired buffers destroyed by the drainer {dtors_retired} < {retired}"),
    );
    check(
        DTOR_IN_RESTRICTED.load(Ordering::Relaxed) == 0,
        "a buffer was destroyed in the handler".to_string(),
    );
    check(
        stats.emergency == 0 && stats.leaked == 0 && stats.reserve_failures == 0,
        format!("fallbacks: {stats:?}"),
    );
    check(
        retired > 0 || args.starve,
        "no buffer retired (too short a run?)".to_string(),
    );
    check(
        config_corrupt == 0 && config_missing == 0 && config_reads == signals,
        format!(
            "config reads {config_reads} of {signals}: {config_corrupt} corrupt, {config_missing} missing"
        ),
    );
    check(
        configs_dropped == configs_made && configs_made == generation,
        format!("configs installed {generation}, made {configs_made}, destroyed {configs_dropped}"),
    );
    check(
        CONFIG_DROPS_MISPLACED.load(Ordering::Relaxed) == 0,
        "a config destroyed off the drainer, in a handler or under a read guard".to_string(),
    );
    check(
        GENERATIONS_BACKWARDS.load(Ordering::Relaxed) == 0
            && GENERATION_MAX.load(Ordering::Relaxed) <= generation,
        "config generations out of order in a buffer".to_string(),
    );
    check(stats.grace_periods > 0, "no grace period".to_string());

    println!(
        "sampler: {} workers, {:.2} s, SIGPROF every {:?} of thread CPU time, {} samples per buffer",
        args.workers,
        elapsed.as_secs_f64(),
        args.interval,
        BUFFER_SAMPLES
    );
    println!("  samples                 {recorded} recorded of {signals} signals, {lost} lost");
    println!(
        "  buffers                 {retired} retired by handlers ({} owned boxes handed over, no job), {dtors} destroyed",
        stats.owned
    );
    println!(
        "  configs                 {generation} installed, {configs_dropped} destroyed after {} grace periods",
        stats.grace_periods
    );
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
