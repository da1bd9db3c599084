//! The targets the figures are held to (issue 5's, issue 6's read-guard target, and issue 12's):
//! most are a ratio of two rows under a limit, listed as data; the rest need a figure of their
//! own.

use crate::ids::*;
use crate::markdown::{ns, ratio};
use crate::results::Results;

/// One line of the targets table.
pub struct Target {
    pub name: String,
    pub measured: String,
    /// Met, missed, or not measured.
    pub ok: Option<bool>,
}

/// `(target, row, divided by row, at most)`.
const RATIOS: &[(&str, &str, &str, f64)] = &[
    ("`RawSlot::xchg` ≤ 1.05x `AtomicPtr::swap`", RAW, SWAP, 1.05),
    (
        "install into empty ≤ 2.5x `AtomicPtr::swap`",
        INSTALL,
        SWAP,
        2.5,
    ),
    ("take out ≤ 2.5x `AtomicPtr::swap`", TAKE, SWAP, 2.5),
    (
        "restricted teardown ≤ 1.3x three uncontended RMWs",
        T_SIGDROP,
        RMW3,
        1.3,
    ),
    (
        "restricted teardown ≤ 2.5x basedrop `drop(Owned)`",
        T_SIGDROP,
        T_BASEDROP,
        2.5,
    ),
    (
        "restricted teardown ≤ 0.35x crossbeam-epoch `pin` + `defer_destroy`",
        T_SIGDROP,
        T_EPOCH,
        0.35,
    ),
    (
        "`Owned` dropped in restricted context ≤ 1.0x basedrop `drop(Owned)`",
        T_OWNED,
        T_BASEDROP,
        1.0,
    ),
    (
        "two threads, default settings: per-thread teardown ≤ 1.5x one thread",
        TT_DEF,
        TT_S1,
        1.5,
    ),
    (
        "`Owned` full lifecycle ≤ 1.0x basedrop's",
        L_OWNED,
        L_BASEDROP,
        1.0,
    ),
];

fn at_most(v: Option<f64>, limit: f64) -> Option<bool> {
    v.map(|v| v <= limit)
}

/// Drain cost per job beyond the destructor body (`Box` free − free alone).
pub fn drain_beyond_box(r: &Results) -> Option<f64> {
    r.get(D_BOX).zip(r.get(D_FREE)).map(|(d, f)| d - f)
}

/// Every target, in the order of the report's table.
pub fn all(r: &Results) -> Vec<Target> {
    let mut out: Vec<Target> = RATIOS
        .iter()
        .map(|&(name, a, b, limit)| Target {
            name: name.into(),
            measured: ratio(r.ratio(a, b)),
            ok: at_most(r.ratio(a, b), limit),
        })
        .collect();
    let per_teardown_ir = r.extra("callgrind", "teardown_per_op");
    let s2_vs_v2 = r.ratio(TT_V2, TT_S2);
    let drain_beyond_box = drain_beyond_box(r);
    // Drain cycles, at least: those that took a chain, plus one empty cycle before each sleep.
    let storm = |k: &str| r.extra("storm", k);
    let cycles_min = storm("drain_cycles_min")
        .zip(storm("drainer_sleeps"))
        .map(|(c, s)| c + s);
    let wakes_ok = match (storm("wakes"), cycles_min, storm("offloaded")) {
        (Some(w), Some(c), Some(o)) if o > 0.0 => Some(w <= c + 1.0),
        _ => None,
    };
    let mut add = |name: &str, measured: String, ok: Option<bool>| {
        out.push(Target {
            name: name.into(),
            measured,
            ok,
        })
    };
    // Throughput ratios: the peer's time per store over ours.
    for (readers, ours, theirs) in [(0, RC_S0, RC_A0), (1, RC_S1, RC_A1), (2, RC_S2, RC_A2)] {
        let x = r.ratio(theirs, ours);
        add(
            &format!(
                "`ReadSlot<Arc>` replace + drop, {readers} reader threads: ≥ 1.0x arc-swap \
                 `store` throughput"
            ),
            x.map_or("—".into(), |v| format!("{v:.2}x")),
            x.map(|v| v >= 1.0),
        );
    }
    let writer = |k: &str| r.extra("reclaim_writer", k);
    let bound = writer("max_pending").map(|m| m + 64.0 * 2.0);
    add(
        "full-speed writer: peak pending ≤ `max_pending` + one open batch per CPU",
        match (writer("peak_pending"), bound) {
            (Some(p), Some(b)) => format!("{p:.0} (bound {b:.0})"),
            _ => "—".into(),
        },
        writer("peak_pending").zip(bound).map(|(p, b)| p <= b),
    );
    add(
        "lazy wake: no wake-up syscall from handlers in a storm",
        r.extra("wake_modes", "lazy_wakes")
            .map_or("—".into(), |w| format!("{w:.0} wakes")),
        r.extra("wake_modes", "lazy_wakes").map(|w| w == 0.0),
    );
    let instructions = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.1} instructions"));
    add(
        "restricted teardown ≤ 45 instructions without a wake (callgrind)",
        instructions(per_teardown_ir),
        at_most(per_teardown_ir, 45.0),
    );
    add(
        "restricted teardown ≤ 120 instructions without a wake (callgrind; issue 12)",
        instructions(per_teardown_ir),
        at_most(per_teardown_ir, 120.0),
    );
    // A ratio held to a limit, shown beside the same ratio of the machine's floor for it.
    let mut with_floor =
        |name: &str, (row, base): (&str, &str), floor: (&str, &str, &str), limit| {
            let (what, floor_row, floor_base) = floor;
            add(
                name,
                format!(
                    "{} (the machine's floor, {what}: {})",
                    ratio(r.ratio(row, base)),
                    ratio(r.ratio(floor_row, floor_base))
                ),
                at_most(r.ratio(row, base), limit),
            );
        };
    with_floor(
        "`RefSlot` replace (present -> present) ≤ 1.25x `AtomicPtr::swap`",
        (REPLACE, SWAP),
        ("load + CAS, for a compare-and-swap replace", LOAD_CAS, SWAP),
        1.25,
    );
    with_floor(
        "two threads: per-thread teardown ≤ 1.3x one thread",
        (TT_S2, TT_S1),
        ("3 RMWs sharing nothing", TT_F2, TT_F1),
        1.3,
    );
    add(
        "two threads: ≥ 5x faster than the v2 model's global list (two threads)",
        s2_vs_v2.map_or("—".into(), |v| format!("{v:.2}x faster")),
        s2_vs_v2.map(|v| v >= 5.0),
    );
    add(
        "drain ≤ 10 ns per job beyond the destructor body: no-op destructor",
        r.get(D_NOOP).map_or("—".into(), ns),
        at_most(r.get(D_NOOP), 10.0),
    );
    add(
        "drain ≤ 10 ns per job beyond the destructor body: `Box` free (drain − free alone)",
        drain_beyond_box.map_or("—".into(), ns),
        at_most(drain_beyond_box, 10.0),
    );
    add(
        "at most one wake syscall per drain cycle under a storm",
        match (storm("wakes"), cycles_min) {
            (Some(w), Some(c)) => format!("{w:.0} wakes, ≥ {c:.0} drain cycles"),
            _ => "—".into(),
        },
        wakes_ok,
    );
    add(
        "restricted read guard enter+exit ≤ 2x one uncontended `fetch_add`",
        format!(
            "{} (ordinary context: {})",
            ratio(r.ratio(R_GUARD_NMI, R_FETCH_ADD)),
            ratio(r.ratio(R_GUARD, R_FETCH_ADD))
        ),
        at_most(r.ratio(R_GUARD_NMI, R_FETCH_ADD), 2.0),
    );
    out
}
