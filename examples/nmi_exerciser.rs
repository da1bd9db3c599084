//! The NMI exerciser: the kernel's "kptr destructor NMI" selftest, ported to signals.
//!
//! Each worker thread owns `--slots` entries in a map (`KptrArray` in `array` mode, a shared
//! `KptrHash` keyed by `(thread, slot)` in `hash` mode). Every round, the worker populates its
//! entries in ordinary context; a per-thread POSIX timer (`SIGEV_THREAD_ID`) delivers the NMI
//! signal to that worker, whose handler — restricted context, entered by `sigdrop::signal` —
//! deletes the entries populated since its last run (so its work per round is the same however
//! fast the signals come). The worker waits, with a bound, until every object of the round has
//! been destroyed by the drainer, then starts the next round. A cleanup phase empties the maps at
//! the end.
//!
//! Every check is made on atomics shared with the handler (the kernel selftest's lost-update bug
//! cannot happen here): each object is destroyed exactly once, never in restricted context;
//! nothing leaks; the handler never touches the allocator (a counting global allocator watches);
//! no object needs the emergency area.
//!
//! ```text
//! cargo run --release --example nmi_exerciser -- --help
//! ```
//!
//! The last line (on stdout, or on stderr with `--json`) is machine-readable; the exit status is
//! 0 only if every check held, 1 if one failed, 2 for a bad command line.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/json.rs"]
mod json;

use cli::Command;
use json::Json;
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
    /// Rounds per worker and mode (ignored with `seconds`).
    pub rounds: u64,
    /// Entries per worker.
    pub slots: usize,
    /// Worker threads.
    pub threads: usize,
    /// Timer interval.
    pub interval: Duration,
    /// A time-boxed soak instead of a round count: total wall time, split evenly between the
    /// modes.
    pub seconds: Option<f64>,
    /// Print one JSON document on stdout instead of the table.
    pub json: bool,
    /// Show progress (on stderr).
    pub progress: bool,
}

/// State shared with the handler: set up before the handler is installed, never moved.
struct World {
    arrays: Vec<KptrArray<Box<Obj>>>,
    hash: KptrHash<(u32, u32), Box<Obj>>,
    /// The generation of the live object in each (thread, slot), 0 if none.
    live: Vec<AtomicU64>,
    /// Per worker: how far this round's populating and the handler's deleting have got.
    progress: Vec<Progress>,
}

/// One worker's round, shared by the worker and its handler (on the same thread).
struct Progress {
    /// Entries populated so far this round (slots `0..populated`).
    populated: AtomicUsize,
    /// Entries the handler has deleted so far this round (slots `0..deleted`).
    deleted: AtomicUsize,
}

impl Progress {
    /// Starts a round: nothing populated, nothing deleted.
    fn reset(&self) {
        // Relaxed then Release: the Release keeps the first store before the second, so a
        // handler landing between them sees `deleted >= populated`: nothing to do.
        self.populated.store(0, Ordering::Relaxed);
        self.deleted.store(0, Ordering::Release);
    }
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

/// The NMI handler: runs inside the restricted guard (sigdrop::signal enters it). Deletes the
/// worker's entries populated since its last run: its work per round is bounded by the slots,
/// whatever the signal rate, so the worker always gets to run.
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
    let Some(progress) = world.progress.get(worker) else {
        return; // not a worker
    };
    // Acquire: pairs with the worker's Release store after each insert (the same thread: it
    // keeps the insert before the count) and with `Progress::reset`.
    let populated = progress.populated.load(Ordering::Acquire);
    let mut next = progress.deleted.load(Ordering::Acquire);
    while next < populated {
        let deleted = match mode {
            Mode::Array => world.arrays[worker].delete(next),
            Mode::Hash => world.hash.delete(&(worker as u32, next as u32)),
        };
        match deleted {
            Ok(true) => {
                DELETED.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {} // not there: its object never dies, and the round's wait reports it
            Err(_) => {
                // The bucket is held by the code we interrupted: try again on the next signal.
                WOULD_BLOCK.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        next += 1;
    }
    progress.deleted.store(next, Ordering::Relaxed);
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

    fn result(&self) -> &'static str {
        if self.pass() { "PASS" } else { "FAIL" }
    }

    /// Every figure, named: the one list behind the table, the last line and the JSON.
    fn fields(&self) -> Vec<(&'static str, Json)> {
        use Json::{Count, Float, Text};
        vec![
            ("mode", Text(self.mode.into())),
            ("result", Text(self.result().into())),
            ("rounds", Count(self.rounds)),
            ("signals", Count(self.signals)),
            ("objects", Count(self.objects)),
            ("deleted_in_handler", Count(self.deleted_in_handler)),
            ("would_block", Count(self.would_block)),
            ("offloaded", Count(self.offloaded)),
            ("dtors", Count(self.dtors)),
            ("dtor_in_restricted", Count(self.dtor_in_restricted)),
            ("double_dtor", Count(self.double_dtor)),
            ("leaked", Count(self.leaked)),
            ("restricted_allocs", Count(self.restricted_allocs)),
            ("emergency", Count(self.emergency)),
            ("failed_waits", Count(self.failed_waits)),
            ("pool_peak", Count(self.pool_peak as u64)),
            ("pool_final", Count(self.pool_final as u64)),
            ("seconds", Float(self.elapsed.as_secs_f64())),
        ]
    }

    /// `exerciser: result=PASS mode=both rounds=... seconds=...`: the machine-readable line.
    fn line(&self) -> String {
        let mut fields = self.fields();
        fields.swap(0, 1); // result first
        let pairs: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect();
        format!("exerciser: {}", pairs.join(" "))
    }
}

/// A figure as the table and the last line show it: strings without quotes.
fn plain(value: &Json) -> String {
    match value {
        Json::Text(t) => t.clone(),
        other => other.render(),
    }
}

/// Runs one mode. The world (runtime, maps) is created here; the handler must be installed.
fn run_mode(cfg: &Config, mode: Mode, rt: &Runtime, world: &'static World) -> Outcome {
    let before = Counters::read();
    let stats_before = rt.stats();
    let started = Instant::now();
    // `--seconds` is the whole run's wall time, split evenly between the modes.
    let deadline = cfg
        .seconds
        .map(|s| started + Duration::from_secs_f64(s / cfg.modes.len() as f64));
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
                    let progress = &world.progress[worker];
                    progress.reset();
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
                        // Release: the handler (Acquire) deletes only what is fully inserted.
                        progress.populated.store(slot + 1, Ordering::Release);
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

/// Live progress on stderr: one rewritten line on a terminal, a plain line a second otherwise.
fn progress(
    cfg: &Config,
    mode: Mode,
    rt: &Runtime,
    rounds: &AtomicU64,
    finished: &AtomicUsize,
    started: Instant,
) {
    let tty = std::io::stderr().is_terminal();
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
            eprint!("\r{line}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{line}");
        }
    }
    if cfg.progress && tty {
        eprintln!();
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
            arrays: (0..cfg.threads)
                .map(|_| KptrArray::new(&rt, cfg.slots).expect("array map"))
                .collect(),
            hash: KptrHash::new(&rt, cfg.threads * cfg.slots).expect("hash map"),
            live: (0..cfg.threads * cfg.slots)
                .map(|_| AtomicU64::new(0))
                .collect(),
            progress: (0..cfg.threads)
                .map(|_| Progress {
                    populated: AtomicUsize::new(0),
                    deleted: AtomicUsize::new(0),
                })
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

const HELP: &str = "\
nmi_exerciser: the kernel's kptr-destructor-from-NMI selftest, ported to signals. Worker threads
populate map entries in ordinary context; a per-thread timer signal deletes them in its handler
(restricted context); the drainer destroys the objects. Checks: every object destroyed exactly
once, never in the handler; no allocation in the handler; nothing leaked or parked.

usage: nmi_exerciser [options]

  --mode array|hash|both  which map the handler deletes from (default both, one after the other)
  --rounds N              rounds per worker and mode; a round populates and waits for every
                          entry of the worker to be deleted and destroyed (default 256, 1 or more)
  --slots S               entries per worker (default 8, 1 to 4096)
  --threads T             worker threads, each with its own timer (default: the CPUs online,
                          1 to 256)
  --interval-us U         timer period in microseconds: one signal per worker per period
                          (default 100, 10 to 1000000; below 10 the thread would do nothing but
                          enter its handler)
  --seconds F             run for F seconds of wall time in total, split evenly between the
                          modes, instead of a round count (0.01 to 86400)
  --json                  print one JSON document on stdout (the table and progress are not
                          printed; the last line goes to stderr)
  --quiet                 no progress lines (they go to stderr)
  -h, --help              this text

Output: a table (one row per mode: rounds completed by all workers, signals handled, objects
created, deleted in the handler, deletes that found their bucket busy, destructors run, and the
counts that must be 0), then one machine-readable line `exerciser: result=PASS|FAIL ...`.
Exit status: 0 if every check held, 1 if one failed, 2 for a bad command line.
";

fn parse(parser: &mut lexopt::Parser) -> Result<Command<Config>, lexopt::Error> {
    use lexopt::Arg::{Long, Short};
    let mut cfg = Config {
        modes: vec![Mode::Array, Mode::Hash],
        rounds: 256,
        slots: 8,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(256)),
        interval: Duration::from_micros(100),
        seconds: None,
        json: false,
        progress: true,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("mode") => {
                let both = &[Mode::Array, Mode::Hash][..];
                let choices = [("array", &both[..1]), ("hash", &both[1..]), ("both", both)];
                cfg.modes = cli::choice(parser, "--mode", &choices)?.to_vec();
            }
            Long("rounds") => cfg.rounds = cli::number(parser, "--rounds", 1..=1_000_000_000)?,
            Long("slots") => cfg.slots = cli::number(parser, "--slots", 1..=4096)?,
            Long("threads") => cfg.threads = cli::number(parser, "--threads", 1..=256)?,
            Long("interval-us") => {
                let us = cli::number(parser, "--interval-us", 10..=1_000_000)?;
                cfg.interval = Duration::from_micros(us);
            }
            Long("seconds") => {
                cfg.seconds = Some(cli::number(parser, "--seconds", 0.01..=86400.0)?)
            }
            Long("json") => cfg.json = true,
            Long("quiet") => cfg.progress = false,
            Long("help") | Short('h') => return Ok(Command::Help),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Command::Run(cfg))
}

#[allow(dead_code)] // unused when this file is included by the integration test
fn main() {
    let mut cfg = cli::parse_or_exit("nmi_exerciser", HELP, parse);
    if cfg.json {
        cfg.progress = false;
    }
    let outcomes = run(&cfg);
    let total = merge(&outcomes, &cfg);
    if cfg.json {
        let document = Json::Object(vec![
            ("result", Json::Text(total.result().into())),
            (
                "modes",
                Json::Array(outcomes.iter().map(|o| Json::Object(o.fields())).collect()),
            ),
            ("total", Json::Object(total.fields())),
        ]);
        println!("{}", document.render());
        eprintln!("{}", total.line());
    } else {
        print_table(&outcomes);
        println!("{}", total.line());
    }
    std::process::exit(if total.pass() { 0 } else { 1 });
}

/// One markdown row per mode.
fn print_table(outcomes: &[Outcome]) {
    let Some(first) = outcomes.first() else {
        return;
    };
    let header: Vec<&str> = first.fields().iter().map(|(k, _)| *k).collect();
    println!();
    println!("| {} |", header.join(" | "));
    println!("|{}", "---|".repeat(header.len()));
    for o in outcomes {
        let row: Vec<String> = o.fields().iter().map(|(_, v)| plain(v)).collect();
        println!("| {} |", row.join(" | "));
    }
    println!();
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
