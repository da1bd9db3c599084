//! Group `lifecycle`: create + install + restricted teardown + drain/collect, per object.

use crate::fixtures::{CHUNK, clear_restricted, fill, manual_runtime, slots};
use crate::harness::pinned_chunks;
use basedrop::{Collector, Owned as BdOwned};
use criterion::Criterion;
use crossbeam_epoch as epoch;
use sigdrop::RefSlot;
use std::hint::black_box;
use std::sync::atomic::Ordering;

/// Everything is timed: no setup between chunks.
fn no_setup<S>(_: &mut S, _: usize) {}

pub fn group(c: &mut Criterion) {
    let mut g = c.benchmark_group("lifecycle");

    // sigdrop: Box::new, install into an empty RefSlot, restricted teardown, drain (manual).
    {
        let rt = manual_runtime(CHUNK + 1);
        let slots: Vec<RefSlot<Box<u64>>> = slots(&rt, CHUNK);
        let timed = |_: &mut (), n| {
            fill(&slots, n);
            clear_restricted(&slots, n);
            black_box(rt.drain().unwrap());
        };
        pinned_chunks(&mut g, "sigdrop", CHUNK, &mut (), no_setup, timed);
    }

    // sigdrop's Owned: Owned::new, keep it (a Vec, as for basedrop), restricted drop, drain.
    {
        let rt = manual_runtime(1);
        let mut objs: Vec<sigdrop::Owned<u64>> = Vec::with_capacity(CHUNK);
        let timed = |objs: &mut Vec<sigdrop::Owned<u64>>, n| {
            objs.extend((0..n as u64).map(|i| sigdrop::Owned::new(&rt, i)));
            {
                let _nmi = sigdrop::restricted::enter();
                objs.drain(..).for_each(drop);
            }
            black_box(rt.drain().unwrap());
        };
        pinned_chunks(&mut g, "sigdrop Owned", CHUNK, &mut objs, no_setup, timed);
    }

    // basedrop: Owned::new, keep it (basedrop has no slot: a Vec holds it), drop, collect.
    {
        let mut collector = Collector::new();
        let handle = collector.handle();
        let mut objs: Vec<BdOwned<u64>> = Vec::with_capacity(CHUNK);
        let timed = |objs: &mut Vec<BdOwned<u64>>, n| {
            objs.extend((0..n as u64).map(|i| BdOwned::new(&handle, i)));
            objs.drain(..).for_each(drop);
            collector.collect();
        };
        pinned_chunks(&mut g, "basedrop", CHUNK, &mut objs, no_setup, timed);
    }

    // crossbeam-epoch: Owned::new, store into an empty Atomic, pin + swap out + defer_destroy,
    // then flush (which also collects what earlier epochs left).
    {
        let slots: Vec<epoch::Atomic<u64>> = (0..CHUNK).map(|_| epoch::Atomic::null()).collect();
        let timed = |_: &mut (), n| {
            for (i, s) in slots[..n].iter().enumerate() {
                s.store(epoch::Owned::new(i as u64), Ordering::Release);
            }
            for s in &slots[..n] {
                let guard = epoch::pin();
                let old = s.swap(epoch::Shared::null(), Ordering::AcqRel, &guard);
                // SAFETY: `old` was unlinked from the only place that published it; readers
                // pinned before the swap are protected by the epoch.
                unsafe { guard.defer_destroy(old) };
            }
            epoch::pin().flush();
        };
        pinned_chunks(&mut g, "crossbeam-epoch", CHUNK, &mut (), no_setup, timed);
    }
    g.finish();
}
