//! The NMI exerciser: the kernel's "kptr destructor NMI" selftest, ported to signals.
//!
//! Each worker thread owns `--slots` entries in a map (`KptrArray` in `array` mode, a shared
//! `KptrHash` keyed by `(thread, slot)` in `hash` mode). Every round, the worker populates its
//! entries in ordinary context; a per-thread POSIX timer (`SIGEV_THREAD_ID`) delivers the NMI
//! signal to that worker, whose handler — restricted context, entered by `sigdrop::signal` —
//! deletes every entry it finds. The worker waits, with a bound, until every object of the round
//! has been destroyed by the drainer, then starts the next round. A cleanup phase empties the
//! maps at the end.
//!
//! Every check is made on atomics shared with the handler (the kernel selftest's lost-update bug,
//! D6, cannot happen here): each object is destroyed exactly once, never in restricted context;
//! nothing leaks; the handler never touches the allocator (a counting global allocator watches);
//! no object needs the emergency area.
//!
//! ```text
//! cargo run --release --example nmi_exerciser -- [--mode array|hash|both] [--rounds N]
//!     [--slots S] [--threads T] [--interval-us U] [--seconds F] [--json]
//! ```
//!
//! The last line is machine-readable; the exit status is 0 only if every check held.

use sigdrop::alloc_check::RestrictedAllocs;
use sigdrop::signal::{self, Signal, SignalInfo, ThreadTimer, TimerClock};
use sigdrop::{KptrArray, KptrHash, Runtime, Stats, restricted};
use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The signal that plays NMI.
const NMI: Signal = Signal::SIGPROF;

/// Counts allocator calls made while the restricted guard is active (the handler).
#[global_allocator]
static ALLOC: RestrictedAllocs = RestrictedAllocs::system();

/// Which container the round uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `KptrArray`, one per worker.
    Array,
    /// One shared `KptrHash`.
    Hash,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Array => "array",
            Mode::Hash => "hash",
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Modes, in order.
    pub modes: Vec<Mode>,
    /// Rounds per worker (ignored with `seconds`).
    pub rounds: u64,
    /// Entries per worker.
    pub slots: usize,
    /// Worker threads.
    pub threads: usize,
    /// Timer interval.
    pub interval: Duration,
    /// A time-boxed soak per mode instead of a round count.
    pub seconds: Option<f64>,
    /// Print JSON instead of the table.
    pub json: bool,
    /// Show progress.
    pub progress: bool,
}

/// State shared with the handler: set up before the handler is installed, never moved.
struct World {
    slots: usize,
    arrays: Vec<KptrArray<Box<Obj>>>,
    hash: KptrHash<(u32, u32), Box<Obj>>,
    /// The generation of the live object in each (thread, slot), 0 if none.
    live: Vec<AtomicU64>,
}

static WORLD: OnceLock<World> = OnceLock::new();
/// The mode the handler acts on; changed only between modes, with no signal pending.
static CURRENT: AtomicUsize = AtomicUsize::new(usize::MAX);

// Counters shared with the handler and the drainer: atomics only (D6).
static SIGNALS: AtomicU64 = AtomicU64::new(0);
static DELETED: AtomicU64 = AtomicU64::new(0);
static WOULD_BLOCK: AtomicU64 = AtomicU64::new(0);
static CREATED: AtomicU64 = AtomicU64::new(0);
static DESTROYED: AtomicU64 = AtomicU64::new(0);
static DTOR_IN_RESTRICTED: AtomicU64 = AtomicU64::new(0);
static DOUBLE_DTOR: AtomicU64 = AtomicU64::new(0);

std::thread_local! {
    /// This thread's worker index, or `usize::MAX`. Const-initialised, no destructor: safe to
    /// read in a handler. Not an atomic, and need not be: only its own thread reads or writes it
    /// (the handler runs on that thread), and it is set before the thread's timer starts.
    static WORKER: Cell<usize> = const { Cell::new(usize::MAX) };
}

struct Obj {
    cell: usize,
    generation: u64,
    _payload: [u64; 4],
}

impl Drop for Obj {
    fn drop(&mut self) {
        if restricted::is_active() {
            DTOR_IN_RESTRICTED.fetch_add(1, Ordering::Relaxed);
        }
        let world = WORLD.get().expect("objects exist only once the world does");
        // The object must be the live one of its cell: a second destruction finds 0.
        if world.live[self.cell]
            .compare_exchange(self.generation, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            DOUBLE_DTOR.fetch_add(1, Ordering::Relaxed);
        }
        DESTROYED.fetch_add(1, Ordering::Release);
    }
}

/// The NMI handler: runs inside the restricted guard (sigdrop::signal enters it).
fn on_nmi(_: &SignalInfo) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
    let (Some(world), Ok(worker)) = (WORLD.get(), WORKER.try_with(Cell::get)) else {
        return;
    };
    let mode = match CURRENT.load(Ordering::Acquire) {
        m if m == Mode::Array as usize => Mode::Array,
        m if m == Mode::Hash as usize => Mode::Hash,
        _ => return, // between modes
    };
    if worker == usize::MAX {
        return;
    }
    for slot in 0..world.slots {
        let deleted = match mode {
            Mode::Array => world.arrays[worker].delete(slot),
            Mode::Hash => world.hash.delete(&(worker as u32, slot as u32)),
        };
        match deleted {
            Ok(true) => {
                DELETED.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(_) => {
                // The bucket is held by the code we interrupted: try again on the next signal.
                WOULD_BLOCK.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The result of one mode.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The mode.
    pub mode: &'static str,
    /// Rounds completed (all workers).
    pub rounds: u64,
    /// Signals handled.
    pub signals: u64,
    /// Objects created.
    pub objects: u64,
    /// Objects deleted from the handler.
    pub deleted_in_handler: u64,
    /// Deletes that found their bucket busy.
    pub would_block: u64,
    /// Objects handed to the drainer.
    pub offloaded: u64,
    /// Destructors run.
    pub dtors: u64,
    /// Destructors run in restricted context (must be 0).
    pub dtor_in_restricted: u64,
    /// Objects destroyed twice (must be 0).
    pub double_dtor: u64,
    /// Objects never destroyed, plus the runtime's leak count (must be 0).
    pub leaked: u64,
    /// Allocator calls in restricted context (must be 0).
    pub restricted_allocs: u64,
    /// Objects parked in the emergency area (must be 0).
    pub emergency: u64,
    /// Rounds whose wait ran out (must be 0).
    pub failed_waits: u64,
    /// Pool high-water mark.
    pub pool_peak: usize,
    /// Pool size at the end.
    pub pool_final: usize,
    /// Wall time.
    pub elapsed: Duration,
}

impl Outcome {
    /// Whether every check held.
    pub fn pass(&self) -> bool {
        self.dtor_in_restricted == 0
            && self.double_dtor == 0
            && self.leaked == 0
            && self.restricted_allocs == 0
            && self.emergency == 0
            && self.failed_waits == 0
            && self.dtors == self.objects
            && self.deleted_in_handler > 0
    }

    fn line(&self) -> String {
        format!(
            "exerciser: result={} mode={} rounds={} signals={} objects={} offloaded={} dtors={} dtor_in_restricted={} double_dtor={} leaked={} restricted_allocs={} emergency={} pool_peak={} pool_final={}",
            if self.pass() { "PASS" } else { "FAIL" },
            self.mode,
            self.rounds,
            self.signals,
            self.objects,
            self.offloaded,
            self.dtors,
            self.dtor_in_restricted,
            self.double_dtor,
            self.leaked,
            self.restricted_allocs,
            self.emergency,
            self.pool_peak,
            self.pool_final
        )
    }

    fn json(&self) -> String {
        format!(
            "{{\"mode\":\"{}\",\"result\":\"{}\",\"rounds\":{},\"signals\":{},\"objects\":{},\"deleted_in_handler\":{},\"would_block\":{},\"offloaded\":{},\"dtors\":{},\"dtor_in_restricted\":{},\"double_dtor\":{},\"leaked\":{},\"restricted_allocs\":{},\"emergency\":{},\"failed_waits\":{},\"pool_peak\":{},\"pool_final\":{},\"seconds\":{:.3}}}",
            self.mode,
            if self.pass() { "PASS" } else { "FAIL" },
            self.rounds,
            self.signals,
            self.objects,
            self.deleted_in_handler,
            self.would_block,
            self.offloaded,
            self.dtors,
            self.dtor_in_restricted,
            self.double_dtor,
            self.leaked,
            self.restricted_allocs,
            self.emergency,
            self.failed_waits,
            self.pool_peak,
            self.pool_final,
            self.elapsed.as_secs_f64()
        )
    }
}

/// Runs one mode. The world (runtime, maps) is created here; the handler must be installed.
fn run_mode(cfg: &Config, mode: Mode, rt: &Runtime, world: &'static World) -> Outcome {
    let before = Counters::read();
    let stats_before = rt.stats();
    let started = Instant::now();
    let deadline = cfg.seconds.map(|s| started + Duration::from_secs_f64(s));
    let rounds_done = AtomicU64::new(0);
    let failed_waits = AtomicU64::new(0);
    let finished = AtomicUsize::new(0);
    CURRENT.store(mode as usize, Ordering::Release);

    std::thread::scope(|s| {
        for worker in 0..cfg.threads {
            let (rounds_done, failed_waits, finished) = (&rounds_done, &failed_waits, &finished);
            s.spawn(move || {
                // Counted as finished however the worker ends (a panic included), so the
                // progress loop below always terminates.
                struct Finished<'a>(&'a AtomicUsize);
                impl Drop for Finished<'_> {
                    fn drop(&mut self) {
                        self.0.fetch_add(1, Ordering::Release);
                    }
                }
                let _finished = Finished(finished);
                WORKER.with(|w| w.set(worker));
                let timer = ThreadTimer::start(
                    NMI,
                    signal::current_tid(),
                    cfg.interval,
                    TimerClock::Monotonic,
                )
                .expect("per-thread timer");
                let mut generation = 0u64;
                let mut round = 0u64;
                loop {
                    let more = match deadline {
                        Some(d) => Instant::now() < d,
                        None => round < cfg.rounds,
                    };
                    if !more || failed_waits.load(Ordering::Relaxed) > 0 {
                        break;
                    }
                    for slot in 0..cfg.slots {
                        generation += 1;
                        let cell = worker * cfg.slots + slot;
                        world.live[cell].store(generation, Ordering::Relaxed);
                        CREATED.fetch_add(1, Ordering::Relaxed);
                        let obj = Box::new(Obj {
                            cell,
                            generation,
                            _payload: [round; 4],
                        });
                        let replaced = match mode {
                            Mode::Array => world.arrays[worker].insert(slot, obj),
                            Mode::Hash => world.hash.insert((worker as u32, slot as u32), obj),
                        };
                        match replaced {
                            Ok(None) => {}
                            Ok(Some(_)) => panic!("entry {cell} was still occupied"),
                            Err(rejected) => panic!("install refused: {}", rejected.error()),
                        }
                    }
                    // Wait, bounded, until the handler has deleted every entry and the drainer
                    // has destroyed every object of this round.
                    let limit = Instant::now() + Duration::from_secs(10);
                    let cells = worker * cfg.slots..(worker + 1) * cfg.slots;
                    while cells
                        .clone()
                        .any(|c| world.live[c].load(Ordering::Acquire) != 0)
                    {
                        if Instant::now() > limit {
                            eprintln!(
                                "worker {worker}, round {round}: objects not destroyed within 10 s"
                            );
                            for c in cells.clone() {
                                eprintln!(
                                    "  cell {c}: live generation {}, signals {}, deleted {}",
                                    world.live[c].load(Ordering::Relaxed),
                                    SIGNALS.load(Ordering::Relaxed),
                                    DELETED.load(Ordering::Relaxed)
                                );
                            }
                            failed_waits.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        std::thread::yield_now();
                    }
                    round += 1;
                    rounds_done.fetch_add(1, Ordering::Relaxed);
                }
                drop(timer);
                WORKER.with(|w| w.set(usize::MAX));
            });
        }
        progress(cfg, mode, rt, &rounds_done, &finished, started);
    });
    CURRENT.store(usize::MAX, Ordering::Release);

    // Cleanup phase: whatever is left (a failed round) is deleted in ordinary context.
    for array in &world.arrays {
        array.clear();
    }
    for worker in 0..cfg.threads {
        for slot in 0..cfg.slots {
            let _ = world.hash.delete(&(worker as u32, slot as u32));
        }
    }
    let want = CREATED.load(Ordering::Relaxed);
    let limit = Instant::now() + Duration::from_secs(10);
    while DESTROYED.load(Ordering::Acquire) < want && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(1));
    }
    let after = Counters::read();
    let stats = rt.stats();
    let created = after.created - before.created;
    let dtors = after.destroyed - before.destroyed;
    Outcome {
        mode: mode.name(),
        rounds: rounds_done.into_inner(),
        signals: after.signals - before.signals,
        objects: created,
        deleted_in_handler: after.deleted - before.deleted,
        would_block: after.would_block - before.would_block,
        offloaded: stats.offloaded - stats_before.offloaded,
        dtors,
        dtor_in_restricted: after.dtor_in_restricted - before.dtor_in_restricted,
        double_dtor: after.double_dtor - before.double_dtor,
        leaked: created.saturating_sub(dtors) + (stats.leaked - stats_before.leaked),
        restricted_allocs: after.restricted_allocs - before.restricted_allocs,
        emergency: stats.emergency - stats_before.emergency,
        failed_waits: failed_waits.into_inner(),
        pool_peak: stats.peak_total,
        pool_final: stats.total,
        elapsed: started.elapsed(),
    }
}

/// Live progress on a terminal; a plain line a second otherwise.
fn progress(
    cfg: &Config,
    mode: Mode,
    rt: &Runtime,
    rounds: &AtomicU64,
    finished: &AtomicUsize,
    started: Instant,
) {
    let tty = std::io::stdout().is_terminal();
    let tick = if tty {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    };
    let mut last = Instant::now();
    let mut last_signals = SIGNALS.load(Ordering::Relaxed);
    while finished.load(Ordering::Acquire) < cfg.threads {
        std::thread::sleep(Duration::from_millis(10));
        if !cfg.progress || last.elapsed() < tick {
            continue;
        }
        let signals = SIGNALS.load(Ordering::Relaxed);
        let rate = (signals - last_signals) as f64 / last.elapsed().as_secs_f64();
        (last, last_signals) = (Instant::now(), signals);
        let s: Stats = rt.stats();
        let line = format!(
            "[{:>6.1}s] {:<5} rounds {:>7}  signals/s {:>8.0}  offloaded {:>8}  active {:>4}  would-block {:>6}  pool {:>5}",
            started.elapsed().as_secs_f64(),
            mode.name(),
            rounds.load(Ordering::Relaxed),
            rate,
            s.offloaded,
            s.active,
            WOULD_BLOCK.load(Ordering::Relaxed),
            s.total
        );
        if tty {
            print!("\r{line}");
            let _ = std::io::stdout().flush();
        } else {
            println!("{line}");
        }
    }
    if cfg.progress && tty {
        println!();
    }
}

struct Counters {
    signals: u64,
    deleted: u64,
    would_block: u64,
    created: u64,
    destroyed: u64,
    dtor_in_restricted: u64,
    double_dtor: u64,
    restricted_allocs: u64,
}

impl Counters {
    fn read() -> Counters {
        let r = |a: &AtomicU64| a.load(Ordering::Acquire);
        Counters {
            signals: r(&SIGNALS),
            deleted: r(&DELETED),
            would_block: r(&WOULD_BLOCK),
            created: r(&CREATED),
            destroyed: r(&DESTROYED),
            dtor_in_restricted: r(&DTOR_IN_RESTRICTED),
            double_dtor: r(&DOUBLE_DTOR),
            restricted_allocs: ALLOC.counts().restricted(),
        }
    }
}

/// Runs every configured mode and returns their outcomes. Installs the NMI handler. Once per
/// process: the handler's world is a static sized for the first configuration.
pub fn run(cfg: &Config) -> Vec<Outcome> {
    static READY: AtomicBool = AtomicBool::new(false);
    static RAN: AtomicBool = AtomicBool::new(false);
    assert!(
        !RAN.swap(true, Ordering::AcqRel),
        "the exerciser runs once per process"
    );
    let rt = Runtime::new().expect("runtime");
    let mut outcomes = Vec::new();
    for &mode in &cfg.modes {
        // One world per process (the handler reads a static), holding both containers; the
        // handler acts on the mode in `CURRENT`.
        let world = WORLD.get_or_init(|| World {
            slots: cfg.slots,
            arrays: (0..cfg.threads)
                .map(|_| KptrArray::new(&rt, cfg.slots).expect("array map"))
                .collect(),
            hash: KptrHash::new(&rt, cfg.threads * cfg.slots).expect("hash map"),
            live: (0..cfg.threads * cfg.slots)
                .map(|_| AtomicU64::new(0))
                .collect(),
        });
        if !READY.swap(true, Ordering::AcqRel) {
            // SAFETY: `on_nmi` touches only atomics, an initialised OnceLock, a const
            // thread-local, and sigdrop's restricted-context operations.
            let installed = unsafe { signal::install(NMI, on_nmi) }.expect("install the handler");
            drop(installed); // stays installed for the life of the process
        }
        outcomes.push(run_mode(cfg, mode, &rt, world));
    }
    outcomes
}

fn parse(args: &[String]) -> Result<Config, String> {
    let mut cfg = Config {
        modes: vec![Mode::Array, Mode::Hash],
        rounds: 256,
        slots: 8,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        interval: Duration::from_micros(100),
        seconds: None,
        json: false,
        progress: true,
    };
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} wants a number, got {v:?}"))
        };
        match flag.as_str() {
            "--mode" => {
                cfg.modes = match value()?.as_str() {
                    "array" => vec![Mode::Array],
                    "hash" => vec![Mode::Hash],
                    "both" => vec![Mode::Array, Mode::Hash],
                    other => return Err(format!("--mode array|hash|both, got {other:?}")),
                }
            }
            "--rounds" => cfg.rounds = number(value()?)?,
            "--slots" => cfg.slots = number(value()?)?.max(1) as usize,
            "--threads" => cfg.threads = number(value()?)?.max(1) as usize,
            "--interval-us" => cfg.interval = Duration::from_micros(number(value()?)?.max(1)),
            "--seconds" => {
                let v = value()?;
                let secs: f64 = v
                    .parse()
                    .map_err(|_| format!("--seconds wants a number, got {v:?}"))?;
                if !(secs > 0.0 && secs.is_finite()) {
                    return Err(format!("--seconds must be positive, got {v:?}"));
                }
                cfg.seconds = Some(secs);
            }
            "--json" => cfg.json = true,
            "--quiet" => cfg.progress = false,
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    Ok(cfg)
}

const USAGE: &str = "usage: nmi_exerciser [--mode array|hash|both] [--rounds N (256)] [--slots S (8)] \
[--threads T (CPUs)] [--interval-us U (100)] [--seconds F] [--json] [--quiet]";

#[allow(dead_code)] // unused when this file is included by the integration test
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cfg = match parse(&args) {
        Ok(cfg) => cfg,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("nmi_exerciser: {msg}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if msg.is_empty() { 0 } else { 2 });
        }
    };
    let outcomes = run(&cfg);
    if cfg.json {
        let items: Vec<String> = outcomes.iter().map(Outcome::json).collect();
        println!("[{}]", items.join(","));
    } else {
        println!();
        println!(
            "| mode  | result | rounds | signals | objects | deleted in handler | would block | dtors | dtor in restricted | double | leaked | allocs in handler | emergency | pool peak | pool final | time |"
        );
        println!(
            "|-------|--------|--------|---------|---------|--------------------|-------------|-------|--------------------|--------|--------|-------------------|-----------|-----------|------------|------|"
        );
        for o in &outcomes {
            println!(
                "| {:<5} | {:<6} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2?} |",
                o.mode,
                if o.pass() { "PASS" } else { "FAIL" },
                o.rounds,
                o.signals,
                o.objects,
                o.deleted_in_handler,
                o.would_block,
                o.dtors,
                o.dtor_in_restricted,
                o.double_dtor,
                o.leaked,
                o.restricted_allocs,
                o.emergency,
                o.pool_peak,
                o.pool_final,
                o.elapsed
            );
        }
        println!();
    }
    let total = merge(&outcomes, &cfg);
    println!("{}", total.line());
    std::process::exit(if total.pass() { 0 } else { 1 });
}

/// One outcome over every mode, for the machine-readable last line.
fn merge(outcomes: &[Outcome], cfg: &Config) -> Outcome {
    let mut total = Outcome {
        mode: match cfg.modes.as_slice() {
            [Mode::Array] => "array",
            [Mode::Hash] => "hash",
            _ => "both",
        },
        ..Outcome::default()
    };
    for o in outcomes {
        total.rounds += o.rounds;
        total.signals += o.signals;
        total.objects += o.objects;
        total.deleted_in_handler += o.deleted_in_handler;
        total.would_block += o.would_block;
        total.offloaded += o.offloaded;
        total.dtors += o.dtors;
        total.dtor_in_restricted += o.dtor_in_restricted;
        total.double_dtor += o.double_dtor;
        total.leaked += o.leaked;
        total.restricted_allocs += o.restricted_allocs;
        total.emergency += o.emergency;
        total.failed_waits += o.failed_waits;
        total.pool_peak = total.pool_peak.max(o.pool_peak);
        total.pool_final = o.pool_final;
        total.elapsed += o.elapsed;
    }
    total
}
