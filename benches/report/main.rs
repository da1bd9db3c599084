//! Reads the latest `cargo bench` results (criterion's `new/estimates.json` files, plus the
//! figures the benches and `scripts/callgrind.sh` write to `target/sigdrop-bench/`) and prints a
//! markdown report: every figure, its ratio to `AtomicPtr::swap` and to each peer, and every
//! target of issue 5 (and issue 6's read-guard target) with ✓ or ✗.
//!
//! ```sh
//! cargo bench -p sigdrop-benches                                 # all groups, one run (~10 minutes)
//! scripts/callgrind.sh                          # instruction counts (valgrind)
//! cargo run --release -p sigdrop-benches --bin bench_report -- --out BENCHMARKS.md
//! ```
//!
//! Figures are criterion's median estimates. Ratios are only meaningful between figures of the
//! same run; the report prints how far apart in time its inputs were written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One benchmark's estimates, in nanoseconds.
#[derive(Clone, Copy, Debug)]
struct Estimate {
    median: f64,
    lower: f64,
    upper: f64,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Where criterion writes, resolved as criterion does (`CRITERION_HOME`, else the target dir).
fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("criterion"))
}

fn extras_dir() -> PathBuf {
    target_dir().join("sigdrop-bench")
}

/// The string value of `"key":"..."` in a JSON text (criterion's files are flat enough for this).
fn json_str(text: &str, key: &str) -> Option<String> {
    let start = text.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = text[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// The number after `"key":` in `text`.
fn json_num(text: &str, key: &str) -> Option<f64> {
    let start = text.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = text[start..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// `"median":{... "point_estimate":X, "confidence_interval":{"lower_bound":L,"upper_bound":U}}`.
fn parse_estimates(text: &str) -> Option<Estimate> {
    let median = &text[text.find("\"median\":")?..];
    let end = median.find("\"standard_error\"").unwrap_or(median.len());
    let median = &median[..end];
    Some(Estimate {
        median: json_num(median, "point_estimate")?,
        lower: json_num(median, "lower_bound")?,
        upper: json_num(median, "upper_bound")?,
    })
}

/// Every benchmark under `dir`: full id -> (estimate, when its estimates were written).
fn load(dir: &Path) -> BTreeMap<String, (Estimate, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "new") {
                    let bench = std::fs::read_to_string(path.join("benchmark.json"));
                    let est = std::fs::read_to_string(path.join("estimates.json"));
                    let when = std::fs::metadata(path.join("estimates.json"))
                        .and_then(|m| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    if let (Ok(bench), Ok(est)) = (bench, est)
                        && let (Some(id), Some(e)) =
                            (json_str(&bench, "full_id"), parse_estimates(&est))
                    {
                        out.insert(id, (e, when));
                    }
                } else if path.file_name().is_none_or(|n| n != "report") {
                    stack.push(path);
                }
            }
        }
    }
    out
}

fn extra(name: &str) -> Option<String> {
    std::fs::read_to_string(extras_dir().join(name)).ok()
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 10_000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else if ns >= 100.0 {
        format!("{ns:.0} ns")
    } else {
        format!("{ns:.2} ns")
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "—".into(), |r| format!("{r:.2}x"))
}

fn mark(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "not measured",
    }
}

/// `YYYY-MM-DD HH:MM UTC` of a time (civil-from-days, no dependencies).
fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn machine() -> Vec<(&'static str, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let model = field("model name").unwrap_or_else(|| "unknown".into());
    let family = field("cpu family").unwrap_or_default();
    let model_no = field("model").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    vec![
        ("nproc", nproc.to_string()),
        (
            "CPU",
            format!("{model} (family {family}, model {model_no})"),
        ),
        ("kernel", kernel),
        ("rustc", rustc),
    ]
}

struct Report {
    est: BTreeMap<String, (Estimate, SystemTime)>,
    out: String,
}

impl Report {
    fn get(&self, id: &str) -> Option<f64> {
        self.est.get(id).map(|(e, _)| e.median)
    }

    fn ratio(&self, a: &str, b: &str) -> Option<f64> {
        Some(self.get(a)? / self.get(b)?)
    }

    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    /// A table of `rows` with the median, its 95% interval, and its ratio to each of `cols`.
    fn table(&mut self, rows: &[(&str, &str)], cols: &[(&str, &str)]) {
        let mut head = String::from("| benchmark | median | 95% CI |");
        let mut sep = String::from("|---|---:|---:|");
        for (label, _) in cols {
            let _ = write!(head, " ÷ {label} |");
            sep.push_str("---:|");
        }
        self.line(&head);
        self.line(&sep);
        for (label, id) in rows {
            let mut row = format!("| {label} |");
            match self.est.get(*id) {
                Some((e, _)) => {
                    let _ = write!(
                        row,
                        " {} | {} – {} |",
                        fmt_ns(e.median),
                        fmt_ns(e.lower),
                        fmt_ns(e.upper)
                    );
                }
                None => row.push_str(" — | — |"),
            }
            for (_, col) in cols {
                let cell = if col == id {
                    "1.00x".to_string()
                } else {
                    fmt_ratio(self.ratio(id, col))
                };
                let _ = write!(row, " {cell} |");
            }
            self.line(&row);
        }
        self.line("");
    }
}

const SWAP: &str = "slot/AtomicPtr::swap";
const RAW: &str = "slot/RawSlot::xchg";
const REPLACE: &str = "slot/RefSlot replace present->present";
const INSTALL: &str = "slot/RefSlot install into empty";
const TAKE: &str = "slot/RefSlot take out";
const RMW3: &str = "slot/3 uncontended RMWs";
const T_SIGDROP: &str = "teardown/sigdrop RefSlot take+defer";
const T_BASEDROP: &str = "teardown/basedrop drop(Owned)";
const T_EPOCH: &str = "teardown/crossbeam-epoch pin+defer_destroy";
const T_MUTEX: &str = "teardown/Mutex<Vec> push";
const T_V2: &str = "teardown/kernel v2 model";
const L_SIGDROP: &str = "lifecycle/sigdrop";
const L_BASEDROP: &str = "lifecycle/basedrop";
const L_EPOCH: &str = "lifecycle/crossbeam-epoch";
const TT_S1: &str = "two_threads/sigdrop 1 thread";
const TT_S2: &str = "two_threads/sigdrop 2 threads";
const TT_SSEP: &str = "two_threads/sigdrop 2 threads, a runtime each";
const TT_DEF: &str = "two_threads/sigdrop 2 threads, default headroom";
const TT_F1: &str = "two_threads/3 RMWs 1 thread";
const TT_F2: &str = "two_threads/3 RMWs 2 threads";
const TT_V1: &str = "two_threads/v2 model 1 thread";
const TT_V2: &str = "two_threads/v2 model 2 threads";
const D_NOOP: &str = "drain/no-op destructor";
const D_BOX: &str = "drain/Box free";
const D_FREE: &str = "drain/Box free alone";
const LAT: &str = "latency/offload to destructor (drainer asleep)";
const S_NONE: &str = "signal/no offload";
const S_THREAD: &str = "signal/8 offloads (drainer thread)";
const S_PENDING: &str = "signal/8 offloads (pending set)";
const R_FETCH_ADD: &str = "read/one uncontended fetch_add";
const R_GUARD_NMI: &str = "read/guard enter+exit (restricted)";
const R_GUARD: &str = "read/guard enter+exit";
const R_LOAD: &str = "read/sigdrop load";
const R_LOAD_EPOCH: &str = "read/crossbeam-epoch load";
const R_LOAD_ARCSWAP: &str = "read/arc-swap load";
const R_LOAD_W: &str = "read/sigdrop load, writer";
const R_LOAD_EPOCH_W: &str = "read/crossbeam-epoch load, writer";
const R_LOAD_ARCSWAP_W: &str = "read/arc-swap load, writer";
const R_CLONE: &str = "read/sigdrop clone_current";
const R_CLONE_ARCSWAP: &str = "read/arc-swap load_full";

fn main() {
    let mut args = std::env::args().skip(1);
    let mut out_path: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out_path = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("usage: bench_report [--out FILE]");
                return;
            }
            other => {
                eprintln!("unknown argument {other}; usage: bench_report [--out FILE]");
                std::process::exit(2);
            }
        }
    }
    let dir = criterion_dir();
    let est = load(&dir);
    if est.is_empty() {
        eprintln!(
            "no criterion results under {}: run `cargo bench` first",
            dir.display()
        );
        std::process::exit(1);
    }
    let mut r = Report {
        est,
        out: String::new(),
    };

    let ours: Vec<SystemTime> = r
        .est
        .iter()
        .filter(|(id, _)| {
            [
                "slot/",
                "teardown/",
                "lifecycle/",
                "two_threads/",
                "drain/",
                "latency/",
                "signal/",
                "read/",
            ]
            .iter()
            .any(|p| id.starts_with(p))
        })
        .map(|(_, (_, t))| *t)
        .collect();
    let oldest = ours.iter().min().copied().unwrap_or(SystemTime::UNIX_EPOCH);
    let newest = ours.iter().max().copied().unwrap_or(SystemTime::UNIX_EPOCH);
    let span = newest.duration_since(oldest).unwrap_or_default();

    r.line("# Benchmarks");
    r.line("");
    r.line(
        "sigdrop against the peers a user would pick, every peer measured in the same `cargo bench` \
         run (issue 5; protected reads: issue 6). Generated by `cargo run --release --example \
         bench_report -- --out BENCHMARKS.md`; the benches are in `benches/peers/`, the \
         instruction counts come from `scripts/callgrind.sh`.",
    );
    r.line("");
    r.line(&format!(
        "Figures are criterion's median estimates with their 95% confidence interval; `÷ X` is the \
         figure divided by X's figure from the same run. Results written {} – {} ({} s apart{}).",
        utc(oldest),
        utc(newest),
        span.as_secs(),
        if span.as_secs() > 1800 {
            ": more than one run, ratios may mix runs"
        } else {
            ""
        }
    ));
    r.line("");
    r.line("## Machine");
    r.line("");
    r.line("| | |");
    r.line("|---|---|");
    for (k, v) in machine() {
        r.line(&format!("| {k} | {v} |"));
    }
    r.line("| note | shared 2-vCPU VM: noisy; single-threaded benches are pinned to CPU 0 |");
    r.line("");

    // ---- targets
    let callgrind = extra("callgrind.json");
    let per_teardown_ir = callgrind
        .as_deref()
        .and_then(|t| json_num(t, "teardown_per_op"));
    let storm = extra("storm.json");
    let storm_num = |k: &str| storm.as_deref().and_then(|t| json_num(t, k));
    let drain_beyond_box = r.get(D_BOX).zip(r.get(D_FREE)).map(|(d, f)| d - f);
    let s2_vs_v2 = r.ratio(TT_V2, TT_S2);
    let le = |v: Option<f64>, lim: f64| v.map(|v| v <= lim);
    // Drain cycles, at least: those that took a chain, plus one empty cycle before each sleep.
    let cycles_min = storm_num("drain_cycles_min")
        .zip(storm_num("drainer_sleeps"))
        .map(|(c, s)| c + s);
    let wakes_ok = match (storm_num("wakes"), cycles_min, storm_num("offloaded")) {
        (Some(w), Some(c), Some(o)) if o > 0.0 => Some(w <= c + 1.0),
        _ => None,
    };
    type Target = (String, String, Option<bool>);
    let targets: Vec<Target> = vec![
        (
            "`RawSlot::xchg` ≤ 1.05x `AtomicPtr::swap`".into(),
            fmt_ratio(r.ratio(RAW, SWAP)),
            le(r.ratio(RAW, SWAP), 1.05),
        ),
        (
            "`RefSlot` replace (present -> present) ≤ 1.25x `AtomicPtr::swap`".into(),
            fmt_ratio(r.ratio(REPLACE, SWAP)),
            le(r.ratio(REPLACE, SWAP), 1.25),
        ),
        (
            "install into empty ≤ 2.5x `AtomicPtr::swap`".into(),
            fmt_ratio(r.ratio(INSTALL, SWAP)),
            le(r.ratio(INSTALL, SWAP), 2.5),
        ),
        (
            "take out ≤ 2.5x `AtomicPtr::swap`".into(),
            fmt_ratio(r.ratio(TAKE, SWAP)),
            le(r.ratio(TAKE, SWAP), 2.5),
        ),
        (
            "restricted teardown ≤ 1.3x three uncontended RMWs".into(),
            fmt_ratio(r.ratio(T_SIGDROP, RMW3)),
            le(r.ratio(T_SIGDROP, RMW3), 1.3),
        ),
        (
            "restricted teardown ≤ 2.5x basedrop `drop(Owned)`".into(),
            fmt_ratio(r.ratio(T_SIGDROP, T_BASEDROP)),
            le(r.ratio(T_SIGDROP, T_BASEDROP), 2.5),
        ),
        (
            "restricted teardown ≤ 0.35x crossbeam-epoch `pin` + `defer_destroy`".into(),
            fmt_ratio(r.ratio(T_SIGDROP, T_EPOCH)),
            le(r.ratio(T_SIGDROP, T_EPOCH), 0.35),
        ),
        (
            "restricted teardown ≤ 45 instructions without a wake (callgrind)".into(),
            per_teardown_ir.map_or("—".into(), |v| format!("{v:.1} instructions")),
            le(per_teardown_ir, 45.0),
        ),
        (
            "two threads: per-thread teardown ≤ 1.3x one thread".into(),
            format!(
                "{} (the machine's floor, 3 RMWs sharing nothing: {})",
                fmt_ratio(r.ratio(TT_S2, TT_S1)),
                fmt_ratio(r.ratio(TT_F2, TT_F1))
            ),
            le(r.ratio(TT_S2, TT_S1), 1.3),
        ),
        (
            "two threads: ≥ 5x faster than the v2 model's global list (two threads)".into(),
            s2_vs_v2.map_or("—".into(), |v| format!("{v:.2}x faster")),
            s2_vs_v2.map(|v| v >= 5.0),
        ),
        (
            "drain ≤ 10 ns per job beyond the destructor body: no-op destructor".into(),
            r.get(D_NOOP).map_or("—".into(), fmt_ns),
            le(r.get(D_NOOP), 10.0),
        ),
        (
            "drain ≤ 10 ns per job beyond the destructor body: `Box` free (drain − free alone)"
                .into(),
            drain_beyond_box.map_or("—".into(), fmt_ns),
            le(drain_beyond_box, 10.0),
        ),
        (
            "at most one wake syscall per drain cycle under a storm".into(),
            match (storm_num("wakes"), cycles_min) {
                (Some(w), Some(c)) => format!("{w:.0} wakes, ≥ {c:.0} drain cycles"),
                _ => "—".into(),
            },
            wakes_ok,
        ),
        (
            "restricted read guard enter+exit ≤ 2x one uncontended `fetch_add`".into(),
            format!(
                "{} (ordinary context: {})",
                fmt_ratio(r.ratio(R_GUARD_NMI, R_FETCH_ADD)),
                fmt_ratio(r.ratio(R_GUARD, R_FETCH_ADD))
            ),
            le(r.ratio(R_GUARD_NMI, R_FETCH_ADD), 2.0),
        ),
    ];
    r.line("## Targets");
    r.line("");
    r.line("| target | measured | |");
    r.line("|---|---:|:---:|");
    for (t, m, ok) in &targets {
        r.line(&format!("| {t} | {m} | {} |", mark(*ok)));
    }
    r.line(
        "| steady-state replace, install, take and restricted teardown allocate nothing | \
         a test with a counting allocator, not a bench (see below) | — |",
    );
    r.line("");
    let met = targets.iter().filter(|t| t.2 == Some(true)).count();
    r.line(&format!(
        "{met} of {} measured targets met. Offload-to-destructor latency is reported, not a target.",
        targets.len()
    ));
    r.line("");

    // ---- sections
    r.line("## Slot operations");
    r.line("");
    r.line(
        "`Box<u64>` payloads, ordinary context. Install and take are measured over 256 slots \
         with the inverse operation untimed in between, in steady state (no growth or trim in the \
         timed region). The three RMWs (a swap and two CASes on separate cache lines) are the \
         floor of the restricted path: a teardown's take, freelist pop and job-list push.",
    );
    r.line("");
    r.table(
        &[
            ("`AtomicPtr::swap`", SWAP),
            ("`RawSlot::xchg`", RAW),
            ("`RefSlot` replace present -> present", REPLACE),
            ("`RefSlot` install into empty", INSTALL),
            ("`RefSlot` take out (`take` + `into_inner`)", TAKE),
            ("3 uncontended RMWs", RMW3),
        ],
        &[("swap", SWAP)],
    );

    r.line("## Restricted teardown");
    r.line("");
    r.line(
        "Guard active (`restricted::enter()`), no signal, no wake: the drainer is manual and one \
         job stays queued, so this CPU's list is non-empty and the pending flag set. sigdrop's \
         figure is `RefSlot::clear` (the take from the slot included); basedrop's and \
         crossbeam-epoch's are the bare hand-over (`drop(Owned)`; `pin` + `defer_destroy`), with \
         no slot exchange; `Mutex<Vec>` is lock + push + unlock; the kernel v2 model \
         (`benches/peers/v2.rs`) is `xchg` + offload + `offload_dec` on one global idle list.",
    );
    r.line("");
    r.table(
        &[
            ("sigdrop (`RefSlot::clear`)", T_SIGDROP),
            ("basedrop `drop(Owned)`", T_BASEDROP),
            ("crossbeam-epoch `pin` + `defer_destroy`", T_EPOCH),
            ("`Mutex<Vec>` push", T_MUTEX),
            ("kernel v2 model", T_V2),
            ("3 uncontended RMWs", RMW3),
        ],
        &[
            ("swap", SWAP),
            ("3 RMWs", RMW3),
            ("basedrop", T_BASEDROP),
            ("crossbeam", T_EPOCH),
            ("Mutex<Vec>", T_MUTEX),
            ("v2", T_V2),
        ],
    );

    r.line("## Full lifecycle per object");
    r.line("");
    r.line(
        "Create + install + restricted teardown + drain/collect, per object, in batches of 256. \
         sigdrop: `Box::new`, `RefSlot` install, `clear` under the guard, `drain()`. basedrop: \
         `Owned::new` (kept in a `Vec`), drop, `collect()`. crossbeam-epoch: `Owned::new`, store \
         into an `Atomic`, `pin` + swap out + `defer_destroy`, `flush()`.",
    );
    r.line("");
    r.table(
        &[
            ("sigdrop", L_SIGDROP),
            ("basedrop", L_BASEDROP),
            ("crossbeam-epoch", L_EPOCH),
        ],
        &[
            ("swap", SWAP),
            ("basedrop", L_BASEDROP),
            ("crossbeam", L_EPOCH),
        ],
    );

    r.line("## Two threads");
    r.line("");
    r.line(
        "Restricted teardowns on each thread, thread t pinned to CPU t, rounds of 1024 that start \
         together (spinning barrier); figure per teardown per thread. sigdrop threads share one \
         runtime whose headroom covers a round's installs. Diagnostic rows: a runtime per thread \
         (nothing shared); the default headroom (64), with which the pool grows on the \
         installing threads' shards and trims from the draining thread's shard every round, so \
         teardowns pop from the other CPU's freelist; and the machine's floor, three RMWs per \
         operation on cache lines each thread has to itself.",
    );
    r.line("");
    r.table(
        &[
            ("sigdrop, 1 thread", TT_S1),
            ("sigdrop, 2 threads", TT_S2),
            ("sigdrop, 2 threads, a runtime each (diagnostic)", TT_SSEP),
            ("sigdrop, 2 threads, default headroom (diagnostic)", TT_DEF),
            ("3 RMWs, 1 thread (floor)", TT_F1),
            ("3 RMWs, 2 threads (floor)", TT_F2),
            ("v2 model, 1 thread", TT_V1),
            ("v2 model, 2 threads", TT_V2),
        ],
        &[
            ("swap", SWAP),
            ("sigdrop 1 thread", TT_S1),
            ("v2 2 threads", TT_V2),
            ("floor 1 thread", TT_F1),
            ("floor 2 threads", TT_F2),
        ],
    );

    r.line("## Drain");
    r.line("");
    r.line(
        "Per job, one `drain()` of 256 jobs queued by restricted teardowns (manual drainer). The \
         `Box` free alone is the destructor body, subtracted for the target.",
    );
    r.line("");
    r.table(
        &[
            ("no-op destructor", D_NOOP),
            ("`Box` free", D_BOX),
            ("`Box` free alone (the body)", D_FREE),
        ],
        &[("swap", SWAP), ("Box free alone", D_FREE)],
    );
    if let Some(v) = drain_beyond_box {
        r.line(&format!(
            "Drain cost beyond the destructor body (`Box` free − free alone): {}.",
            fmt_ns(v)
        ));
        r.line("");
    }

    r.line("## Offload-to-destructor latency (reported, not a target)");
    r.line("");
    r.line(
        "Drainer thread asleep in `futex_wait` before each offload (60 µs gap); time from just \
         before the restricted teardown to the destructor's first instruction.",
    );
    r.line("");
    let lat = extra("latency.json");
    let lat_num = |k: &str| lat.as_deref().and_then(|t| json_num(t, k));
    r.line("| samples | p50 | p90 | p99 | max | criterion median | wakes / offloads |");
    r.line("|---:|---:|---:|---:|---:|---:|---:|");
    r.line(&format!(
        "| {} | {} | {} | {} | {} | {} | {} / {} |",
        lat_num("samples").map_or("—".into(), |v| format!("{v:.0}")),
        lat_num("p50_ns").map_or("—".into(), fmt_ns),
        lat_num("p90_ns").map_or("—".into(), fmt_ns),
        lat_num("p99_ns").map_or("—".into(), fmt_ns),
        lat_num("max_ns").map_or("—".into(), fmt_ns),
        r.get(LAT).map_or("—".into(), fmt_ns),
        lat_num("wakes").map_or("—".into(), |v| format!("{v:.0}")),
        lat_num("offloaded").map_or("—".into(), |v| format!("{v:.0}")),
    ));
    r.line("");

    r.line("## End to end: real signals");
    r.line("");
    r.line(
        "`tgkill` to the own thread, handler enters the guard and clears 0 or 8 slots; figure per \
         signal. \"Drainer thread\" includes the wake syscalls the handler makes when it finds \
         the drainer idle; \"pending set\" (manual drainer, one job left queued) has none.",
    );
    r.line("");
    r.table(
        &[
            ("empty handler (guard only)", S_NONE),
            ("8 offloads, drainer thread", S_THREAD),
            ("8 offloads, pending set", S_PENDING),
        ],
        &[("swap", SWAP), ("empty handler", S_NONE)],
    );
    if let (Some(a), Some(b), Some(c)) = (r.get(S_NONE), r.get(S_THREAD), r.get(S_PENDING)) {
        // A signal round trip varies by more than 8 offloads cost between benches of one run; a
        // negative difference is noise, not a gain.
        let per = |d: f64| {
            if d > 0.0 {
                fmt_ns(d / 8.0)
            } else {
                "not resolvable (below the noise of a signal round trip)".to_string()
            }
        };
        r.line(&format!(
            "Per offload inside a handler: {} with the drainer thread (wakes included); {} with \
             the pending flag set (compare the restricted teardown figure above).",
            per(b - a),
            per(c - a)
        ));
        r.line("");
    }
    if let Some(sig) = extra("signal.json") {
        let (o, w) = (json_num(&sig, "offloaded"), json_num(&sig, "wakes"));
        if let (Some(o), Some(w)) = (o, w) {
            r.line(&format!(
                "During the drainer-thread variant: {o:.0} offloads, {w:.0} wake syscalls ({:.1} \
                 offloads per wake).",
                if w > 0.0 { o / w } else { f64::INFINITY }
            ));
            r.line("");
        }
    }

    r.line("## Wakes under a storm");
    r.line("");
    r.line(
        "A producer pinned to one CPU installs 8 objects and tears them down in restricted context, \
         as fast as it can, against the drainer thread. Drain cycles are bounded from below by the \
         cycles that took a job list (counted from the destructors) plus the drainer's sleeps \
         (each preceded by a cycle that found nothing); the target holds if wakes ≤ that + 1 \
         (only the swap that sets the pending flag wakes, and only a drain cycle clears it).",
    );
    r.line("");
    r.line(
        "| offloads | wake syscalls | cycles that took a list | drainer sleeps | offloads per wake |",
    );
    r.line("|---:|---:|---:|---:|---:|");
    r.line(&format!(
        "| {} | {} | {} | {} | {} |",
        storm_num("offloaded").map_or("—".into(), |v| format!("{v:.0}")),
        storm_num("wakes").map_or("—".into(), |v| format!("{v:.0}")),
        storm_num("drain_cycles_min").map_or("—".into(), |v| format!("{v:.0}")),
        storm_num("drainer_sleeps").map_or("—".into(), |v| format!("{v:.0}")),
        match (storm_num("offloaded"), storm_num("wakes")) {
            (Some(o), Some(w)) if w > 0.0 => format!("{:.0}", o / w),
            _ => "—".into(),
        },
    ));
    r.line("");

    r.line("## Protected reads");
    r.line("");
    r.line(
        "Read guards (`read::enter()`, dropped at once), against one uncontended `fetch_add` on a \
         counter of its own cache line: entering is an epoch load, `sched_getcpu`, one `SeqCst` \
         `fetch_add` on this CPU's reader counter and a thread-local depth update; leaving is one \
         `Release` `fetch_sub` and the depth update. \"Restricted\" enters `restricted::enter()` \
         once outside the timed loop, as a signal handler would.",
    );
    r.line("");
    r.table(
        &[
            ("guard enter + exit, restricted context", R_GUARD_NMI),
            ("guard enter + exit, ordinary context", R_GUARD),
            ("one uncontended `fetch_add`", R_FETCH_ADD),
        ],
        &[("fetch_add", R_FETCH_ADD), ("swap", SWAP)],
    );
    r.line(
        "Loads, ordinary context: enter the guard, load the pointer, read a `u64` field through \
         it, leave. sigdrop: `read::enter()` + `ReadSlot<Arc<_>>::load`; crossbeam-epoch: `pin()` \
         + `Atomic::load(Acquire)` + `deref`; arc-swap: `ArcSwap::load()` (its guard). First \
         alone, then with a thread pinned to the other CPU replacing the object as fast as it can \
         (a fresh allocation each time): sigdrop `ReadSlot::xchg` with the old object sent to a \
         manual drainer that the writer drains every 64 replacements (a grace period each); \
         crossbeam-epoch `pin` + `swap` + `defer_destroy`; arc-swap `store`.",
    );
    r.line("");
    r.table(
        &[
            ("sigdrop `load`", R_LOAD),
            ("crossbeam-epoch `load`", R_LOAD_EPOCH),
            ("arc-swap `load`", R_LOAD_ARCSWAP),
        ],
        &[("crossbeam", R_LOAD_EPOCH), ("arc-swap", R_LOAD_ARCSWAP)],
    );
    r.table(
        &[
            ("sigdrop `load`, writer", R_LOAD_W),
            ("crossbeam-epoch `load`, writer", R_LOAD_EPOCH_W),
            ("arc-swap `load`, writer", R_LOAD_ARCSWAP_W),
        ],
        &[
            ("crossbeam, writer", R_LOAD_EPOCH_W),
            ("arc-swap, writer", R_LOAD_ARCSWAP_W),
            ("sigdrop alone", R_LOAD),
        ],
    );
    if let Some(w) = extra("read_writers.json") {
        let rate = |peer: &str| match (
            json_num(&w, &format!("{peer}_replacements")),
            json_num(&w, &format!("{peer}_ns")),
        ) {
            (Some(n), Some(ns)) if ns > 0.0 => {
                format!("{:.1} M/s ({} each)", n / ns * 1000.0, fmt_ns(ns / n))
            }
            _ => "—".into(),
        };
        r.line(&format!(
            "The writers' replacement rates (over the whole benchmark, analysis included): \
             sigdrop {}, crossbeam-epoch {}, arc-swap {}. The writers run at different rates, so \
             the readers do not see the same amount of contention.",
            rate("sigdrop"),
            rate("epoch"),
            rate("arcswap"),
        ));
        r.line("");
    }
    r.line(
        "A reference of one's own, ordinary context: sigdrop `ReadSlot::clone_current()` (a guard \
         and a strong-count increment) + `Detached::into_inner()` (no grace period for a clone) + \
         drop of the `Arc`; arc-swap `load_full()` + drop. crossbeam-epoch has no counterpart.",
    );
    r.line("");
    r.table(
        &[
            ("sigdrop `clone_current`", R_CLONE),
            ("arc-swap `load_full`", R_CLONE_ARCSWAP),
        ],
        &[("arc-swap", R_CLONE_ARCSWAP), ("sigdrop load", R_LOAD)],
    );

    r.line("## Instructions (callgrind)");
    r.line("");
    match &callgrind {
        Some(t) => {
            r.line(
                "`scripts/callgrind.sh`: instructions per operation inside the probed function of \
                 `examples/teardown_probe.rs` (N operations, minus the same loop doing nothing). \
                 Under valgrind `sched_getcpu` cannot use rseq and takes its fallback path, so \
                 the teardown count includes a few more instructions than on the real CPU.",
            );
            r.line("");
            r.line("| operation | instructions per op |");
            r.line("|---|---:|");
            for (label, key) in [
                ("restricted teardown, no wake", "teardown_per_op"),
                ("replace present -> present", "replace_per_op"),
                ("install into empty", "install_per_op"),
                ("take out", "take_per_op"),
            ] {
                r.line(&format!(
                    "| {label} | {} |",
                    json_num(t, key).map_or("—".into(), |v| format!("{v:.1}"))
                ));
            }
            r.line("");
            if let Some(b) = extra("callgrind-teardown.txt") {
                r.line("Where the teardown's instructions go (per teardown, by source file):");
                r.line("");
                r.line("```");
                r.out.push_str(b.trim_end());
                r.line("");
                r.line("```");
                r.line("");
            }
        }
        None => {
            r.line("Not measured: run `scripts/callgrind.sh` (needs valgrind).");
            r.line("");
        }
    }

    r.line("## Allocation");
    r.line("");
    r.line(
        "\"Steady-state replace, install, take and restricted teardown allocate nothing\" is a \
         test with a counting allocator, not a bench figure: `tests/steady_state_alloc.rs` \
         counts every allocation those operations make once the pool is warm (none), and \
         `tests/no_alloc_in_handler.rs` covers the restricted-context paths under a signal \
         storm (teardown, install from a reserved or spare job, replace, refusal).",
    );
    r.line("");

    r.line("## Reproduce");
    r.line("");
    r.line("```sh");
    r.line("cargo bench                      # all groups, ~10 minutes; HTML in target/criterion/report/");
    r.line("scripts/callgrind.sh             # instruction counts, needs valgrind");
    r.line("cargo run --release -p sigdrop-benches --bin bench_report -- --out BENCHMARKS.md");
    r.line("```");

    print!("{}", r.out);
    if let Some(path) = out_path
        && let Err(e) = std::fs::write(&path, &r.out)
    {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
}
