//! The report's sections after the targets, as data: each is a title and a list of parts —
//! paragraphs, ratio tables, and notes computed from the extras. Adding a row to a table is one
//! `(label, id)` line here (and its id in `ids.rs`).

use crate::ids::*;
use crate::markdown::{Markdown, Table, count, ns, opt_ns};
use crate::results::Results;
use crate::targets::drain_beyond_box;

/// A piece of a section.
pub enum Part {
    /// A paragraph.
    Text(&'static str),
    /// A ratio table.
    Table(Table),
    /// Lines computed from the results (written only if there is something to say).
    Note(fn(&Results, &mut Markdown)),
}

pub struct Section {
    pub title: &'static str,
    pub parts: &'static [Part],
}

/// Writes every section.
pub fn write(r: &Results, md: &mut Markdown) {
    for section in SECTIONS {
        md.para(&format!("## {}", section.title));
        for part in section.parts {
            match part {
                Part::Text(text) => md.para(text),
                Part::Table(table) => md.table(r, table),
                Part::Note(note) => note(r, md),
            }
        }
    }
}

use Part::{Note, Text};

const SECTIONS: &[Section] = &[
    Section {
        title: "Slot operations",
        parts: &[
            Text(
                "`Box<u64>` payloads, ordinary context. Install and take are measured over 256 \
                 slots with the inverse operation untimed in between, in steady state (no growth \
                 or trim in the timed region). The three RMWs (a swap and two CASes on separate \
                 cache lines) are the floor of the restricted path: a teardown's take, freelist \
                 pop and job-list push. A load followed by a compare-and-swap of the same word \
                 is the floor of a replace that must know what it displaces (an empty slot \
                 needs a job first); `RawSlot::xchg`, which need not, is a bare swap.",
            ),
            Part::Table(Table {
                rows: &[
                    ("`AtomicPtr::swap`", SWAP),
                    ("`RawSlot::xchg`", RAW),
                    ("`AtomicPtr` load + `compare_exchange`", LOAD_CAS),
                    ("`RefSlot` replace present -> present", REPLACE),
                    ("`RefSlot` install into empty", INSTALL),
                    ("`RefSlot` take out (`take` + `into_inner`)", TAKE),
                    ("3 uncontended RMWs", RMW3),
                ],
                cols: &[("swap", SWAP)],
            }),
        ],
    },
    Section {
        title: "Restricted teardown",
        parts: &[
            Text(
                "Guard active (`restricted::enter()`), no signal, no wake: the drainer is manual \
                 and one job stays queued, so this CPU's list is non-empty and the pending flag \
                 set. sigdrop's first figure is `RefSlot::clear` (the take from the slot included), its second \
                 an `Owned` dropped (the bare hand-over, like basedrop's); \
                 basedrop's and crossbeam-epoch's are the bare hand-over (`drop(Owned)`; `pin` + \
                 `defer_destroy`), with no slot exchange; `Mutex<Vec>` is lock + push + unlock; \
                 the kernel v2 model (`benches/peers/v2.rs`) is `xchg` + offload + `offload_dec` \
                 on one global idle list.",
            ),
            Part::Table(Table {
                rows: &[
                    ("sigdrop (`RefSlot::clear`)", T_SIGDROP),
                    ("sigdrop `drop(Owned)`", T_OWNED),
                    ("basedrop `drop(Owned)`", T_BASEDROP),
                    ("crossbeam-epoch `pin` + `defer_destroy`", T_EPOCH),
                    ("`Mutex<Vec>` push", T_MUTEX),
                    ("kernel v2 model", T_V2),
                    ("3 uncontended RMWs", RMW3),
                ],
                cols: &[
                    ("swap", SWAP),
                    ("3 RMWs", RMW3),
                    ("basedrop", T_BASEDROP),
                    ("crossbeam", T_EPOCH),
                    ("Mutex<Vec>", T_MUTEX),
                    ("v2", T_V2),
                ],
            }),
        ],
    },
    Section {
        title: "Full lifecycle per object",
        parts: &[
            Text(
                "Create + install + restricted teardown + drain/collect, per object, in batches \
                 of 256. sigdrop: `Box::new`, `RefSlot` install, `clear` under the guard, \
                 `drain()`. sigdrop `Owned`: `Owned::new` (kept in a `Vec`), drop under the \
                 guard, `drain()`. basedrop: `Owned::new` (kept in a `Vec`), drop, `collect()`. \
                 crossbeam-epoch: `Owned::new`, store into an `Atomic`, `pin` + swap out + \
                 `defer_destroy`, `flush()`.",
            ),
            Part::Table(Table {
                rows: &[
                    ("sigdrop", L_SIGDROP),
                    ("sigdrop `Owned`", L_OWNED),
                    ("basedrop", L_BASEDROP),
                    ("crossbeam-epoch", L_EPOCH),
                ],
                cols: &[
                    ("swap", SWAP),
                    ("basedrop", L_BASEDROP),
                    ("crossbeam", L_EPOCH),
                ],
            }),
        ],
    },
    Section {
        title: "Two threads",
        parts: &[
            Text(
                "Restricted teardowns on each thread, thread t pinned to CPU t, rounds of 1024 \
                 that start together (spinning barrier); figure per teardown per thread. sigdrop \
                 threads share one runtime whose headroom covers a round's installs. Diagnostic \
                 rows: a runtime per thread (nothing shared); the default settings (headroom 64 \
                 and a regrowth window of 1 s, with which the pool keeps the jobs it grew back \
                 after the first trim); the same with no window (`Builder::regrowth_window` \
                 zero), with which every round grows the pool for the installs (jobs written by \
                 one CPU, dealt to both shards) and trims it from the draining thread, so jobs \
                 move between CPUs every round; and the machine's floor, three RMWs per \
                 operation on cache lines each thread has to itself.",
            ),
            Part::Table(Table {
                rows: &[
                    ("sigdrop, 1 thread", TT_S1),
                    ("sigdrop, 2 threads", TT_S2),
                    ("sigdrop, 2 threads, a runtime each (diagnostic)", TT_SSEP),
                    ("sigdrop, 2 threads, default settings (diagnostic)", TT_DEF),
                    (
                        "sigdrop, 2 threads, default headroom, no regrowth window (diagnostic)",
                        TT_NO_WINDOW,
                    ),
                    ("3 RMWs, 1 thread (floor)", TT_F1),
                    ("3 RMWs, 2 threads (floor)", TT_F2),
                    ("v2 model, 1 thread", TT_V1),
                    ("v2 model, 2 threads", TT_V2),
                ],
                cols: &[
                    ("swap", SWAP),
                    ("sigdrop 1 thread", TT_S1),
                    ("v2 2 threads", TT_V2),
                    ("floor 1 thread", TT_F1),
                    ("floor 2 threads", TT_F2),
                ],
            }),
        ],
    },
    Section {
        title: "Drain",
        parts: &[
            Text(
                "Per job, one `drain()` of 256 jobs queued by restricted teardowns (manual \
                 drainer). The `Box` free alone is the destructor body, subtracted for the target.",
            ),
            Part::Table(Table {
                rows: &[
                    ("no-op destructor", D_NOOP),
                    ("`Box` free", D_BOX),
                    ("`Box` free alone (the body)", D_FREE),
                ],
                cols: &[("swap", SWAP), ("Box free alone", D_FREE)],
            }),
            Note(drain_note),
        ],
    },
    Section {
        title: "Offload-to-destructor latency (reported, not a target)",
        parts: &[
            Text(
                "Drainer thread asleep in `futex_wait` before each hand-over (60 µs gap); time \
                 from just before the restricted teardown (or the restricted drop of an `Owned` \
                 box) to the destructor's first instruction.",
            ),
            Note(latency_table),
        ],
    },
    Section {
        title: "End to end: real signals",
        parts: &[
            Text(
                "`tgkill` to the own thread, handler enters the guard and clears 0 or 8 slots; \
                 figure per signal. \"Drainer thread\" includes the wake syscalls the handler \
                 makes when it finds the drainer idle; \"pending set\" (manual drainer, one job \
                 left queued) has none.",
            ),
            Part::Table(Table {
                rows: &[
                    ("empty handler (guard only)", S_NONE),
                    ("8 offloads, drainer thread", S_THREAD),
                    ("8 offloads, pending set", S_PENDING),
                ],
                cols: &[("swap", SWAP), ("empty handler", S_NONE)],
            }),
            Note(signal_notes),
        ],
    },
    Section {
        title: "Wakes under a storm",
        parts: &[
            Text(
                "A producer pinned to one CPU installs 8 objects and tears them down in \
                 restricted context, as fast as it can, against the drainer thread. Drain cycles \
                 are bounded from below by the cycles that took a job list (counted from the \
                 destructors) plus the drainer's sleeps (each preceded by a cycle that found \
                 nothing); the target holds if the teardowns' wakes (`Stats::restricted_wakes`) \
                 ≤ that + 1 (only the swap that sets the pending flag wakes, and only a drain \
                 cycle clears it).",
            ),
            Note(storm_table),
        ],
    },
    Section {
        title: "Protected reads",
        parts: &[
            Text(
                "Read guards (`read::enter()`, dropped at once), against one uncontended \
                 `fetch_add` on a counter of its own cache line: entering is an epoch load, \
                 the CPU number (one load from the rseq area), one `SeqCst` `fetch_add` on this \
                 CPU's reader counter and a \
                 thread-local depth update; leaving is one `Release` `fetch_sub` and the depth \
                 update. \"Restricted\" enters `restricted::enter()` once outside the timed loop, \
                 as a signal handler would.",
            ),
            Part::Table(Table {
                rows: &[
                    ("guard enter + exit, restricted context", R_GUARD_NMI),
                    ("guard enter + exit, ordinary context", R_GUARD),
                    ("one uncontended `fetch_add`", R_FETCH_ADD),
                ],
                cols: &[("fetch_add", R_FETCH_ADD), ("swap", SWAP)],
            }),
            Text(
                "Loads, ordinary context: enter the guard, load the pointer, read a `u64` field \
                 through it, leave. sigdrop: `read::enter()` + `ReadSlot<Arc<_>>::load`; \
                 crossbeam-epoch: `pin()` + `Atomic::load(Acquire)` + `deref`; arc-swap: \
                 `ArcSwap::load()` (its guard). First alone, then with a thread pinned to the \
                 other CPU replacing the object as fast as it can (a fresh allocation each time): \
                 sigdrop `ReadSlot::xchg` with the old object sent to a manual drainer that the \
                 writer drains every 64 replacements (a grace period each); crossbeam-epoch `pin` \
                 + `swap` + `defer_destroy`; arc-swap `store`.",
            ),
            Part::Table(Table {
                rows: &[
                    ("sigdrop `load`", R_LOAD),
                    ("crossbeam-epoch `load`", R_LOAD_EPOCH),
                    ("arc-swap `load`", R_LOAD_ARCSWAP),
                ],
                cols: &[("crossbeam", R_LOAD_EPOCH), ("arc-swap", R_LOAD_ARCSWAP)],
            }),
            Part::Table(Table {
                rows: &[
                    ("sigdrop `load`, writer", R_LOAD_W),
                    ("crossbeam-epoch `load`, writer", R_LOAD_EPOCH_W),
                    ("arc-swap `load`, writer", R_LOAD_ARCSWAP_W),
                ],
                cols: &[
                    ("crossbeam, writer", R_LOAD_EPOCH_W),
                    ("arc-swap, writer", R_LOAD_ARCSWAP_W),
                    ("sigdrop alone", R_LOAD),
                ],
            }),
            Note(writer_rates),
            Text(
                "A reference of one's own, ordinary context: sigdrop `ReadSlot::clone_current()` \
                 (a guard and a strong-count increment) + `Detached::into_inner()` (no grace \
                 period for a clone) + drop of the `Arc`; arc-swap `load_full()` + drop. \
                 crossbeam-epoch has no counterpart.",
            ),
            Part::Table(Table {
                rows: &[
                    ("sigdrop `clone_current`", R_CLONE),
                    ("arc-swap `load_full`", R_CLONE_ARCSWAP),
                ],
                cols: &[("arc-swap", R_CLONE_ARCSWAP), ("sigdrop load", R_LOAD)],
            }),
        ],
    },
    Section {
        title: "Reclamation under a writer",
        parts: &[
            Text(
                "A writer replaces the object readers may hold with a fresh one and lets the old \
                 one go, as fast as it can, while 0, 1 or 2 threads read it: sigdrop \
                 `ReadSlot<Arc<u64>>::xchg` + drop (default runtime: a drainer thread, objects \
                 retired into per-CPU batches of 64, the writer destroying its own ready \
                 batches), arc-swap `store` (frees inline after paying readers' debts), \
                 crossbeam-epoch `swap` + `defer_destroy`. Time per store; the ratio column is \
                 the row's time over arc-swap's (below 1: faster than arc-swap).",
            ),
            Part::Table(Table {
                rows: &[
                    ("sigdrop, 0 readers", RC_S0),
                    ("arc-swap, 0 readers", RC_A0),
                    ("crossbeam-epoch, 0 readers", RC_E0),
                ],
                cols: &[("arc-swap", RC_A0)],
            }),
            Part::Table(Table {
                rows: &[
                    ("sigdrop, 1 reader", RC_S1),
                    ("arc-swap, 1 reader", RC_A1),
                    ("crossbeam-epoch, 1 reader", RC_E1),
                ],
                cols: &[("arc-swap", RC_A1)],
            }),
            Part::Table(Table {
                rows: &[
                    ("sigdrop, 2 readers", RC_S2),
                    ("arc-swap, 2 readers", RC_A2),
                    ("crossbeam-epoch, 2 readers", RC_E2),
                ],
                cols: &[("arc-swap", RC_A2)],
            }),
            Text(
                "Before batches (one pooled job per retired object, a drainer that blocked in \
                 each grace period), a store cost about 850 ns here (1.17 M/s with no reader \
                 against arc-swap's 4.1 M/s). Under callgrind, per store: about 180 \
                 instructions claiming a job, 146 of them growing the pool (a job body \
                 allocated per pending object); 172 trimming it back (the bodies freed again); \
                 about 115 popping and pushing the job and reading the CPU; and on the drainer \
                 380, a third of them the `Arc` free done on the other CPU, where glibc's \
                 allocator state bounces between cores. Wake-ups were rare (3 per 1000 stores). \
                 Retiring into a batch costs an uncontended compare-and-swap on this CPU's \
                 line, no job, no ledger; the writer frees its own batches once their grace \
                 period has passed.",
            ),
            Note(writer_note),
        ],
    },
    Section {
        title: "Wake modes",
        parts: &[
            Text(
                "A storm of signals at one worker thread (about 20 000/s aimed), whose handler \
                 tears one object down per signal (deferred with its job); the worker refills \
                 the slots; default settings otherwise. Measured per mode in the same run: the \
                 handlers' wake-up syscalls (`Stats::restricted_wakes`) per handled signal, the \
                 handler's own time per signal (entry to exit, the wake included), and the \
                 latency from the handler letting the object go to its destructor.",
            ),
            Note(wake_modes_table),
        ],
    },
    Section {
        title: "Instructions (callgrind)",
        parts: &[Note(callgrind)],
    },
    Section {
        title: "Allocation",
        parts: &[Text(
            "\"Steady-state replace, install, take and restricted teardown allocate nothing\" is \
             a test with a counting allocator, not a bench figure: `tests/steady_state_alloc.rs` \
             counts every allocation those operations make once the pool is warm (none), and \
             `tests/no_alloc_in_handler.rs` covers the restricted-context paths under a signal \
             storm (teardown, install from a reserved or spare job, replace, refusal).",
        )],
    },
    Section {
        title: "Reproduce",
        parts: &[Note(reproduce)],
    },
];

fn writer_note(r: &Results, md: &mut Markdown) {
    let w = |k: &str| r.extra("reclaim_writer", k);
    if let (Some(rate), Some(peak), Some(bound), Some(rss)) = (
        w("stores_per_s"),
        w("peak_pending"),
        w("max_pending"),
        w("rss_growth_bytes"),
    ) {
        md.para(&format!(
            "One second of a full-speed writer with one reader (default runtime): {:.1} M \
             stores/s, at most {peak:.0} objects pending (the bound is {bound:.0}, plus each \
             CPU's open batch of up to 64), RSS growth {:.1} MiB, job pool at most {} jobs, {} \
             wake-up syscalls.",
            rate / 1e6,
            rss / (1024.0 * 1024.0),
            count(w("peak_total_jobs")),
            count(w("wakes")),
        ));
    }
}

fn wake_modes_table(r: &Results, md: &mut Markdown) {
    let w = |mode: &str, k: &str| r.extra("wake_modes", &format!("{mode}_{k}"));
    if !r.has_extra("wake_modes") {
        md.para("Not measured.");
        return;
    }
    md.line(
        "| mode | signals | wake syscalls | per signal | handler per signal | latency p50 | latency p99 |",
    );
    md.line("|---|---:|---:|---:|---:|---:|---:|");
    let period = r
        .extra("wake_modes", "lazy_period_ns")
        .map_or("—".into(), ns);
    for (label, mode) in [
        ("immediate".to_string(), "immediate"),
        (format!("lazy, period {period}"), "lazy"),
    ] {
        md.line(&format!(
            "| {label} | {} | {} | {} | {} | {} | {} |",
            count(w(mode, "signals")),
            count(w(mode, "wakes")),
            w(mode, "wakes_per_signal").map_or("—".into(), |v| format!("{v:.3}")),
            opt_ns(w(mode, "handler_ns")),
            opt_ns(w(mode, "p50_ns")),
            opt_ns(w(mode, "p99_ns")),
        ));
    }
    md.line("");
}

fn drain_note(r: &Results, md: &mut Markdown) {
    if let Some(v) = drain_beyond_box(r) {
        md.para(&format!(
            "Drain cost beyond the destructor body (`Box` free − free alone): {}.",
            ns(v)
        ));
    }
}

fn latency_table(r: &Results, md: &mut Markdown) {
    md.line(
        "| hand-over | samples | p50 | p90 | p99 | max | criterion median | wakes / hand-overs |",
    );
    md.line("|---|---:|---:|---:|---:|---:|---:|---:|");
    let rows = [
        ("`RefSlot::clear` (a job)", "latency", LAT, "offloaded"),
        ("`drop(Owned)`", "latency_owned", LAT_OWNED, "owned"),
    ];
    for (what, file, id, handed) in rows {
        let lat = |k: &str| r.extra(file, k);
        md.line(&format!(
            "| {what} | {} | {} | {} | {} | {} | {} | {} / {} |",
            count(lat("samples")),
            opt_ns(lat("p50_ns")),
            opt_ns(lat("p90_ns")),
            opt_ns(lat("p99_ns")),
            opt_ns(lat("max_ns")),
            opt_ns(r.get(id)),
            count(lat("wakes")),
            count(lat(handed)),
        ));
    }
    md.line("");
}

fn signal_notes(r: &Results, md: &mut Markdown) {
    if let (Some(a), Some(b), Some(c)) = (r.get(S_NONE), r.get(S_THREAD), r.get(S_PENDING)) {
        // A signal round trip varies by more than 8 offloads cost between benches of one run; a
        // negative difference is noise, not a gain.
        let per = |d: f64| {
            if d > 0.0 {
                ns(d / 8.0)
            } else {
                "not resolvable (below the noise of a signal round trip)".to_string()
            }
        };
        md.para(&format!(
            "Per offload inside a handler: {} with the drainer thread (wakes included); {} with \
             the pending flag set (compare the restricted teardown figure above).",
            per(b - a),
            per(c - a)
        ));
    }
    if let (Some(o), Some(w)) = (r.extra("signal", "offloaded"), r.extra("signal", "wakes")) {
        md.para(&format!(
            "During the drainer-thread variant: {o:.0} offloads, {w:.0} wake syscalls ({:.1} \
             offloads per wake).",
            if w > 0.0 { o / w } else { f64::INFINITY }
        ));
    }
}

fn storm_table(r: &Results, md: &mut Markdown) {
    let storm = |k: &str| r.extra("storm", k);
    md.line(
        "| offloads | wake syscalls | cycles that took a list | drainer sleeps | offloads per wake |",
    );
    md.line("|---:|---:|---:|---:|---:|");
    md.para(&format!(
        "| {} | {} | {} | {} | {} |",
        count(storm("offloaded")),
        count(storm("wakes")),
        count(storm("drain_cycles_min")),
        count(storm("drainer_sleeps")),
        match (storm("offloaded"), storm("wakes")) {
            (Some(o), Some(w)) if w > 0.0 => format!("{:.0}", o / w),
            _ => "—".into(),
        },
    ));
}

fn writer_rates(r: &Results, md: &mut Markdown) {
    if !r.has_extra("read_writers") {
        return;
    }
    let rate = |peer: &str| {
        let n = r.extra("read_writers", &format!("{peer}_replacements"));
        match (n, r.extra("read_writers", &format!("{peer}_ns"))) {
            (Some(n), Some(t)) if t > 0.0 => {
                format!("{:.1} M/s ({} each)", n / t * 1000.0, ns(t / n))
            }
            _ => "—".into(),
        }
    };
    md.para(&format!(
        "The writers' replacement rates (over the whole benchmark, analysis included): sigdrop \
         {}, crossbeam-epoch {}, arc-swap {}. The writers run at different rates, so the readers \
         do not see the same amount of contention.",
        rate("sigdrop"),
        rate("epoch"),
        rate("arcswap"),
    ));
}

fn callgrind(r: &Results, md: &mut Markdown) {
    if !r.has_extra("callgrind") {
        md.para("Not measured: run `scripts/callgrind.sh` (needs valgrind).");
        return;
    }
    md.para(
        "`scripts/callgrind.sh`: instructions per operation inside the probed function of \
         `examples/teardown_probe.rs` (N operations, minus the same loop doing nothing). \
         valgrind does not support rseq, so under it a thread has no rseq area to read its CPU \
         number from, and every CPU lookup falls back to `sched_getcpu` (about 33 instructions \
         per teardown, in the breakdown below) where the real CPU loads one word. An `Owned` \
         drop then takes its out-of-line path (a tail call, then the `sched_getcpu` hint), so \
         its count here is well above its native path's: 27 instructions, no call, in the \
         release build's disassembly on x86-64.",
    );
    md.line("| operation | instructions per op |");
    md.line("|---|---:|");
    for (label, key) in [
        ("restricted teardown, no wake", "teardown_per_op"),
        ("replace present -> present", "replace_per_op"),
        ("install into empty", "install_per_op"),
        ("take out", "take_per_op"),
        (
            "`Owned` drop in restricted context, no wake",
            "owned_per_op",
        ),
    ] {
        let v = r.extra("callgrind", key);
        md.line(&format!(
            "| {label} | {} |",
            v.map_or("—".into(), |v| format!("{v:.1}"))
        ));
    }
    md.line("");
    if let Some(breakdown) = r.callgrind_breakdown() {
        md.para("Where the teardown's instructions go (per teardown, by source file):");
        md.line("```");
        md.line(breakdown.trim_end());
        md.para("```");
    }
}

fn reproduce(_: &Results, md: &mut Markdown) {
    md.line("```sh");
    md.line(
        "cargo bench -p sigdrop-benches   # all groups, ~10 minutes; HTML in target/criterion/report/",
    );
    md.line("scripts/callgrind.sh             # instruction counts, needs valgrind");
    md.line("cargo run --release -p sigdrop-benches --bin bench_report -- --out BENCHMARKS.md");
    md.line("```");
}
