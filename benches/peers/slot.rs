//! Group `slot`: single slot operations in ordinary context against `AtomicPtr::swap` (the
//! floor), and three uncontended RMWs (the restricted path's floor).

use crate::fixtures::{CHUNK, manual_runtime, slots};
use crate::harness::{pinned, pinned_chunks};
use criterion::Criterion;
use crossbeam_utils::CachePadded;
use sigdrop::{RawSlot, RefSlot};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

pub fn group(c: &mut Criterion) {
    let mut g = c.benchmark_group("slot");
    let mut a = 1u64;
    let mut b = 2u64;
    let (pa, pb) = (&mut a as *mut u64, &mut b as *mut u64);

    let atomic = AtomicPtr::new(pa);
    let mut next = pb;
    pinned(&mut g, "AtomicPtr::swap", || {
        next = atomic.swap(black_box(next), Ordering::AcqRel)
    });

    // The floor of any compare-and-swap replace: read the current value, then CAS it out. On
    // the machines we measured, a plain load just before a locked RMW of the same line costs
    // a third of the RMW again, so this is not the swap's figure.
    let atomic = AtomicPtr::new(pa);
    let mut next = pb;
    pinned(&mut g, "AtomicPtr load + compare_exchange", || {
        let cur = atomic.load(Ordering::Relaxed);
        if let Ok(prev) =
            atomic.compare_exchange(cur, black_box(next), Ordering::AcqRel, Ordering::Relaxed)
        {
            next = prev;
        }
    });

    let raw = RawSlot::new();
    raw.xchg(NonNull::new(pa));
    let mut next = NonNull::new(pb);
    pinned(&mut g, "RawSlot::xchg", || next = raw.xchg(black_box(next)));

    let rt = manual_runtime(CHUNK + 1);
    let slot = RefSlot::new(&rt);
    let _ = slot.xchg(Some(Box::new(0u64))).expect("install");
    let mut spare = Some(Box::new(1u64));
    pinned(&mut g, "RefSlot replace present->present", || {
        let old = slot.xchg(black_box(spare.take())).unwrap().unwrap();
        spare = Some(old.into_inner().unwrap());
    });

    // Install and take over a chunk of slots: each op is measured alone, the inverse op restores
    // the state untimed. Boxes are made once and move between `spares` and the slots.
    let slots: Vec<RefSlot<Box<u64>>> = slots(&rt, CHUNK);
    let mut spares: Vec<Option<Box<u64>>> = (0..CHUNK as u64).map(|i| Some(Box::new(i))).collect();
    let empty_all = |spares: &mut Vec<Option<Box<u64>>>, n: usize| {
        for (s, b) in slots[..n].iter().zip(spares.iter_mut()) {
            if let Some(d) = s.take() {
                *b = Some(d.into_inner().unwrap());
            }
        }
    };
    let fill_all = |spares: &mut Vec<Option<Box<u64>>>, n: usize| {
        for (s, b) in slots[..n].iter().zip(spares.iter_mut()) {
            if let Some(v) = b.take() {
                let _ = s.xchg(Some(v)).unwrap();
            }
        }
    };
    type Step<'a> = &'a dyn Fn(&mut Vec<Option<Box<u64>>>, usize);
    let rows: [(&str, Step<'_>, Step<'_>); 2] = [
        ("RefSlot install into empty", &empty_all, &fill_all),
        ("RefSlot take out", &fill_all, &empty_all),
    ];
    for (name, setup, timed) in rows {
        pinned_chunks(&mut g, name, CHUNK, &mut spares, setup, timed);
    }
    empty_all(&mut spares, CHUNK);

    // The restricted path's floor: a swap and two CASes (what a teardown's take, freelist pop and
    // job-list push are at minimum), each on its own cache line, uncontended.
    let r1 = CachePadded::new(AtomicPtr::new(pa));
    let r2 = CachePadded::new(AtomicU64::new(0));
    let r3 = CachePadded::new(AtomicU64::new(0));
    let mut next = pb;
    let (mut k2, mut k3) = (r2.load(Ordering::Relaxed), r3.load(Ordering::Relaxed));
    pinned(&mut g, "3 uncontended RMWs", || {
        next = r1.swap(black_box(next), Ordering::AcqRel);
        let _ = r2.compare_exchange(k2, k2 + 1, Ordering::AcqRel, Ordering::Relaxed);
        let _ = r3.compare_exchange(k3, k3 + 1, Ordering::AcqRel, Ordering::Relaxed);
        k2 += 1;
        k3 += 1;
    });
    g.finish();
}
