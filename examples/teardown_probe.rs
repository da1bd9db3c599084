//! A harness for `scripts/callgrind.sh`: runs N operations of one kind inside a function of its
//! own, so that callgrind can count instructions there alone (`--toggle-collect`).
//!
//! ```sh
//! cargo run --release --example teardown_probe -- teardown 10000
//! ```
//!
//! Modes (each in its own `#[inline(never)]` function named `probe_<mode>`):
//! - `teardown`: restricted teardown without a wake (`RefSlot::clear` under the guard) of N
//!   installed boxes. A manual drainer and one job left queued (the sentinel) keep this CPU's job
//!   list non-empty and the pending flag set: the public-API way to reach the no-wake path.
//! - `baseline`: the same loop over the same slots doing nothing but touching each slot; the
//!   script subtracts it from every other mode.
//! - `replace`: ordinary-context replace present -> present (`xchg(Some)` + `into_inner`).
//! - `install`: ordinary-context install into an empty slot (spare jobs available).
//! - `take`: ordinary-context take out (`take` + `into_inner`, the box kept).
//! - `owned`: restricted-context drop of N `Owned<u64>` boxes (one push each onto this CPU's
//!   list; a box dropped before keeps the list non-empty and the pending flag set: no wake).
//! - `owned_baseline`: the same loop over the same boxes, forgetting each instead (subtracted
//!   from `owned`).
//!
//! Setup (installs, growth) happens before the probed function and the drain after it.

#[path = "common/cli.rs"]
mod cli;

use cli::Command;
use sigdrop::{Drainer, Owned, RefSlot, Runtime, restricted};
use std::hint::black_box;

#[inline(never)]
fn probe_teardown(slots: &[RefSlot<Box<u64>>]) {
    let _nmi = restricted::enter();
    for s in slots {
        s.clear();
    }
}

#[inline(never)]
fn probe_baseline(slots: &[RefSlot<Box<u64>>]) {
    let _nmi = restricted::enter();
    for s in slots {
        black_box(s);
    }
}

#[inline(never)]
fn probe_replace(slots: &[RefSlot<Box<u64>>], spares: &mut [Option<Box<u64>>]) {
    for (s, b) in slots.iter().zip(spares.iter_mut()) {
        let old = s.xchg(b.take()).unwrap().unwrap();
        *b = Some(old.into_inner().unwrap());
    }
}

#[inline(never)]
fn probe_install(slots: &[RefSlot<Box<u64>>], spares: &mut [Option<Box<u64>>]) {
    for (s, b) in slots.iter().zip(spares.iter_mut()) {
        let _ = s.xchg(b.take()).unwrap();
    }
}

#[inline(never)]
fn probe_take(slots: &[RefSlot<Box<u64>>], spares: &mut [Option<Box<u64>>]) {
    for (s, b) in slots.iter().zip(spares.iter_mut()) {
        *b = s.take().map(|d| d.into_inner().unwrap());
    }
}

#[inline(never)]
fn probe_owned(objs: &mut Vec<Owned<u64>>) {
    let _nmi = restricted::enter();
    objs.drain(..).for_each(drop);
}

#[inline(never)]
fn probe_owned_baseline(objs: &mut Vec<Owned<u64>>) {
    let _nmi = restricted::enter();
    objs.drain(..).for_each(|o| std::mem::forget(black_box(o)));
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Teardown,
    Baseline,
    Replace,
    Install,
    Take,
    Owned,
    OwnedBaseline,
}

const MODES: [(&str, Mode); 7] = [
    ("teardown", Mode::Teardown),
    ("baseline", Mode::Baseline),
    ("replace", Mode::Replace),
    ("install", Mode::Install),
    ("take", Mode::Take),
    ("owned", Mode::Owned),
    ("owned_baseline", Mode::OwnedBaseline),
];

const HELP: &str = "\
teardown_probe: runs N operations of one kind inside a function of its own (probe_<mode>), so
that callgrind can count the instructions there alone (scripts/callgrind.sh).

usage: teardown_probe [MODE [N]]

  MODE   teardown (default): restricted teardown without a wake, N installed boxes;
         baseline: the same loop doing nothing but touching each slot (subtracted by the script);
         replace: ordinary-context replace present -> present;
         install: ordinary-context install into an empty slot;
         take: ordinary-context take out;
         owned: restricted drop of N Owned boxes without a wake;
         owned_baseline: the same loop forgetting each box (subtracted from owned)
  N      operations, one per slot (default 10000, 1 to 10000000)
  -h, --help   this text

Output: one line `mode=... n=... drained=... wakes=... emergency=... leaked=...`.
";

fn parse(parser: &mut lexopt::Parser) -> Result<Command<(Mode, usize)>, lexopt::Error> {
    use lexopt::Arg::{Long, Short, Value};
    let (mut mode, mut n) = (None, None);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("help") | Short('h') => return Ok(Command::Help),
            Value(value) if mode.is_none() => {
                mode = Some(cli::choice_in("MODE", &value.to_string_lossy(), &MODES)?);
            }
            Value(value) if n.is_none() => {
                n = Some(cli::number_in(
                    "N",
                    &value.to_string_lossy(),
                    1..=10_000_000,
                )?);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Command::Run((
        mode.unwrap_or(Mode::Teardown),
        n.unwrap_or(10_000),
    )))
}

fn main() -> Result<(), sigdrop::Error> {
    let (mode, n) = cli::parse_or_exit("teardown_probe", HELP, parse);

    // Headroom above 2n: the installs below never hit the refill watermark inside a probe.
    let rt = Runtime::builder()
        .drainer(Drainer::Manual)
        .headroom(2 * n + 2)
        .build()?;
    let slots: Vec<RefSlot<Box<u64>>> = (0..n).map(|_| RefSlot::new(&rt)).collect();
    let mut spares: Vec<Option<Box<u64>>> = (0..n as u64).map(|i| Some(Box::new(i))).collect();
    // Warm the pool: one install and take of everything grows it to its steady size.
    let fill = |spares: &mut [Option<Box<u64>>]| {
        for (s, b) in slots.iter().zip(spares.iter_mut()) {
            if let Some(v) = b.take() {
                let _ = s.xchg(Some(v)).map_err(|r| r.into_error())?;
            }
        }
        Ok::<(), sigdrop::Error>(())
    };
    let empty = |spares: &mut [Option<Box<u64>>]| {
        for (s, b) in slots.iter().zip(spares.iter_mut()) {
            if let Some(d) = s.take() {
                *b = Some(d.into_inner().expect("ordinary context"));
            }
        }
    };
    fill(&mut spares)?;
    empty(&mut spares);

    let sentinel = RefSlot::new(&rt);
    match mode {
        Mode::Teardown | Mode::Baseline => {
            fill(&mut spares)?;
            let _ = sentinel
                .xchg(Some(Box::new(0u64)))
                .map_err(|r| r.into_error())?;
            {
                let _nmi = restricted::enter();
                sentinel.clear(); // queued: the list is non-empty and the pending flag set
            }
            if mode == Mode::Teardown {
                probe_teardown(&slots);
            } else {
                probe_baseline(&slots);
            }
        }
        Mode::Replace => {
            fill(&mut spares)?;
            // `fill` moved every spare into a slot: make the replacements.
            let mut fresh: Vec<Option<Box<u64>>> =
                (0..n as u64).map(|i| Some(Box::new(i))).collect();
            probe_replace(&slots, &mut fresh);
        }
        Mode::Install => probe_install(&slots, &mut spares),
        Mode::Take => {
            fill(&mut spares)?;
            probe_take(&slots, &mut spares);
        }
        Mode::Owned | Mode::OwnedBaseline => {
            {
                let _nmi = restricted::enter();
                drop(Owned::new(&rt, 0u64)); // queued: the list is non-empty, the flag set
            }
            let mut objs: Vec<Owned<u64>> = (0..n as u64).map(|i| Owned::new(&rt, i)).collect();
            if mode == Mode::Owned {
                probe_owned(&mut objs);
            } else {
                probe_owned_baseline(&mut objs);
            }
        }
    }
    let drained = rt.drain()?;
    let stats = rt.stats();
    let mode = MODES
        .iter()
        .find(|(_, m)| *m == mode)
        .map_or("?", |(name, _)| *name);
    println!(
        "mode={mode} n={n} drained={drained} wakes={} emergency={} leaked={}",
        stats.wakes, stats.emergency, stats.leaked
    );
    Ok(())
}
