//! Group `teardown`: one restricted teardown with the guard active, no signal, and no wake
//! because the pending flag is already set; sigdrop against each peer's bare hand-over.

use crate::fixtures::{
    CHUNK, boxed_raw, clear_restricted, drop_box_u64, fill, manual_runtime, set_pending, slots,
};
use crate::harness::pinned_chunks;
use crate::v2::V2;
use basedrop::{Collector, Owned as BdOwned};
use criterion::Criterion;
use crossbeam_epoch as epoch;
use sigdrop::RefSlot;

/// Drops `value` in restricted context, as a handler would.
fn drop_restricted<T>(value: T) {
    let _nmi = sigdrop::restricted::enter();
    drop(value);
}
use std::sync::Mutex;
use std::sync::atomic::AtomicPtr;

pub fn group(c: &mut Criterion) {
    let mut g = c.benchmark_group("teardown");

    // sigdrop: `RefSlot::clear` (take + drop of the `Detached`, which defers) with the guard
    // active. Setup (untimed): drain, re-set the pending flag, install a chunk of boxes.
    {
        let rt = manual_runtime(CHUNK + 1);
        let slots: Vec<RefSlot<Box<u64>>> = slots(&rt, CHUNK);
        let sentinel = RefSlot::new(&rt);
        let setup = |_: &mut (), n| {
            rt.drain().unwrap();
            set_pending(&sentinel);
            fill(&slots, n);
        };
        let timed = |_: &mut (), n| clear_restricted(&slots, n);
        pinned_chunks(
            &mut g,
            "sigdrop RefSlot take+defer",
            CHUNK,
            &mut (),
            setup,
            timed,
        );
        rt.drain().unwrap();
    }

    // sigdrop's own `Owned`: dropping it in restricted context pushes its node on this CPU's
    // list (no slot, no job: the same bare hand-over as basedrop's row below). The pending flag
    // is kept set by a box left queued, so no wake is made.
    {
        let rt = manual_runtime(1);
        let mut objs: Vec<sigdrop::Owned<u64>> = Vec::with_capacity(CHUNK);
        let setup = |objs: &mut Vec<sigdrop::Owned<u64>>, n| {
            rt.drain().unwrap();
            drop_restricted(sigdrop::Owned::new(&rt, 0u64)); // re-sets the pending flag
            objs.extend((0..n as u64).map(|i| sigdrop::Owned::new(&rt, i)));
        };
        let timed = |objs: &mut Vec<sigdrop::Owned<u64>>, _| {
            let _nmi = sigdrop::restricted::enter();
            objs.drain(..).for_each(drop);
        };
        pinned_chunks(
            &mut g,
            "sigdrop drop(Owned)",
            CHUNK,
            &mut objs,
            setup,
            timed,
        );
        rt.drain().unwrap();
    }
    // basedrop: dropping an `Owned` pushes its node on the collector's queue (basedrop has no
    // slot, so no exchange is included: the peer's figure is its bare hand-over).
    {
        let mut collector = Collector::new();
        let handle = collector.handle();
        let mut objs: Vec<BdOwned<u64>> = Vec::with_capacity(CHUNK);
        let setup = |objs: &mut Vec<BdOwned<u64>>, n| {
            collector.collect();
            objs.extend((0..n as u64).map(|i| BdOwned::new(&handle, i)));
        };
        let timed = |objs: &mut Vec<BdOwned<u64>>, _| objs.drain(..).for_each(drop);
        pinned_chunks(
            &mut g,
            "basedrop drop(Owned)",
            CHUNK,
            &mut objs,
            setup,
            timed,
        );
        collector.collect();
    }

    // crossbeam-epoch: `pin` + `defer_destroy` per object (again no exchange). Its own
    // collection work (sealing full bags, collecting every 128 pins, which runs destructors)
    // happens inside these calls and is part of its cost.
    {
        let mut objs: Vec<epoch::Owned<u64>> = Vec::with_capacity(CHUNK);
        let setup = |objs: &mut Vec<epoch::Owned<u64>>, n| {
            objs.extend((0..n as u64).map(epoch::Owned::new))
        };
        let timed = |objs: &mut Vec<epoch::Owned<u64>>, _| {
            for o in objs.drain(..) {
                let guard = epoch::pin();
                let shared = o.into_shared(&guard);
                // SAFETY: `shared` was never published anywhere, so no other thread can hold a
                // reference to it; destroying it later is sound.
                unsafe { guard.defer_destroy(shared) };
            }
        };
        let name = "crossbeam-epoch pin+defer_destroy";
        pinned_chunks(&mut g, name, CHUNK, &mut objs, setup, timed);
    }

    // Mutex<Vec>: lock, push the box, unlock (capacity reserved, so no reallocation).
    {
        let queue: Mutex<Vec<Box<u64>>> = Mutex::new(Vec::with_capacity(CHUNK + 1));
        let mut objs: Vec<Box<u64>> = Vec::with_capacity(CHUNK);
        let setup = |objs: &mut Vec<Box<u64>>, n| {
            queue.lock().unwrap().clear();
            objs.extend((0..n as u64).map(Box::new));
        };
        let timed = |objs: &mut Vec<Box<u64>>, _| {
            for o in objs.drain(..) {
                queue.lock().unwrap().push(o);
            }
        };
        pinned_chunks(&mut g, "Mutex<Vec> push", CHUNK, &mut objs, setup, timed);
    }

    // The kernel v2 model: xchg + offload + offload_dec, job list already non-empty (no
    // irq_work), one global idle list.
    {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let model = V2::new(4 * CHUNK, cpus);
        let slots: Vec<AtomicPtr<()>> = (0..CHUNK)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect();
        let sentinel = AtomicPtr::new(std::ptr::null_mut());
        let setup = |_: &mut (), n| {
            model.drain();
            model.install(&sentinel, boxed_raw(0));
            model.nmi_teardown(&sentinel, drop_box_u64);
            for (i, s) in slots[..n].iter().enumerate() {
                model.install(s, boxed_raw(i as u64));
            }
        };
        let timed = |_: &mut (), n| {
            for s in &slots[..n] {
                model.nmi_teardown(s, drop_box_u64);
            }
        };
        pinned_chunks(&mut g, "kernel v2 model", CHUNK, &mut (), setup, timed);
        model.drain();
    }
    g.finish();
}
