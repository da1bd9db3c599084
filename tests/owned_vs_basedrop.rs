//! Issue 12, item 2: a self-contained measurement of `Owned` against basedrop's `Owned`, run by
//! hand until the bench harness (being moved into a workspace member) gets these rows:
//!
//! ```sh
//! cargo test --release --test owned_vs_basedrop -- --ignored --nocapture
//! ```
//!
//! - restricted drop: N boxes made beforehand, then dropped in a loop (sigdrop: inside one
//!   restricted guard, with one box already queued so every push finds its list non-empty and
//!   makes no wake-up; basedrop: plain `drop`);
//! - lifecycle: make 64 boxes, drop them (sigdrop: in restricted context), then drain on the
//!   same thread (`Runtime::drain` with a manual drainer; basedrop's `Collector::collect`).
//!
//! Medians of 41 rounds of N = 10 000, the two libraries interleaved in each round. Each probe is
//! its own `#[inline(never)]` function (`probe_*`), so callgrind can count it alone:
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*probe_sd_drop*' <test
//! binary> --ignored --exact owned_vs_basedrop`. Ratios, never timed assertions.

use sigdrop::{Drainer, Owned, Runtime, restricted};
use std::time::Instant;

type Value = [u64; 4];
const N: usize = 10_000;
const PER_DRAIN: usize = 64;
const ROUNDS: usize = 41;

#[inline(never)]
fn probe_sd_drop(boxes: &mut Vec<Owned<Value>>) {
    let _nmi = restricted::enter();
    for b in boxes.drain(..) {
        drop(b);
    }
}

#[inline(never)]
fn probe_bd_drop(boxes: &mut Vec<basedrop::Owned<Value>>) {
    for b in boxes.drain(..) {
        drop(b);
    }
}

#[inline(never)]
fn probe_sd_life(rt: &Runtime) {
    let mut batch: Vec<Owned<Value>> = Vec::with_capacity(PER_DRAIN);
    for i in 0..N / PER_DRAIN {
        for j in 0..PER_DRAIN {
            batch.push(Owned::new(rt, [(i * PER_DRAIN + j) as u64; 4]));
        }
        {
            let _nmi = restricted::enter();
            for b in batch.drain(..) {
                drop(b);
            }
        }
        rt.drain().unwrap();
    }
}

#[inline(never)]
fn probe_bd_life(collector: &mut basedrop::Collector) {
    let handle = collector.handle();
    let mut batch: Vec<basedrop::Owned<Value>> = Vec::with_capacity(PER_DRAIN);
    for i in 0..N / PER_DRAIN {
        for j in 0..PER_DRAIN {
            batch.push(basedrop::Owned::new(
                &handle,
                [(i * PER_DRAIN + j) as u64; 4],
            ));
        }
        for b in batch.drain(..) {
            drop(b);
        }
        collector.collect();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn per_op(t: Instant) -> f64 {
    t.elapsed().as_nanos() as f64 / N as f64
}

#[test]
#[ignore = "a measurement, run by hand"]
fn owned_vs_basedrop() {
    let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
    let mut collector = basedrop::Collector::new();
    let handle = collector.handle();
    {
        let sentinel = Owned::new(&rt, [0; 4]);
        let _nmi = restricted::enter();
        drop(sentinel);
    }
    let (mut sd, mut bd, mut sdl, mut bdl) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let mut boxes: Vec<_> = (0..N).map(|i| Owned::new(&rt, [i as u64; 4])).collect();
        let t = Instant::now();
        probe_sd_drop(&mut boxes);
        sd.push(per_op(t));
        rt.drain().unwrap();

        let mut boxes: Vec<_> = (0..N)
            .map(|i| basedrop::Owned::new(&handle, [i as u64; 4]))
            .collect();
        let t = Instant::now();
        probe_bd_drop(&mut boxes);
        bd.push(per_op(t));
        collector.collect();

        let t = Instant::now();
        probe_sd_life(&rt);
        sdl.push(per_op(t));

        let t = Instant::now();
        probe_bd_life(&mut collector);
        bdl.push(per_op(t));
    }
    let (sd, bd, sdl, bdl) = (median(sd), median(bd), median(sdl), median(bdl));
    println!(
        "restricted drop: sigdrop {sd:.2} ns, basedrop {bd:.2} ns, ratio {:.2}",
        sd / bd
    );
    println!(
        "lifecycle:       sigdrop {sdl:.2} ns, basedrop {bdl:.2} ns, ratio {:.2}",
        sdl / bdl
    );
    drop(handle);
    collector.collect();
}
