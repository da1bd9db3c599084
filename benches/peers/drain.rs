//! Group `drain`: drain cost per job with a no-op destructor and with a `Box` free, and the `Box`
//! free alone (to subtract).

use crate::fixtures::{CHUNK, clear_restricted, fill, manual_runtime, slots};
use crate::harness::pinned_chunks;
use criterion::Criterion;
use sigdrop::{Destroy, Raw, RefSlot};
use std::ptr::NonNull;

/// A destructor that does nothing (the objects are elements of a leaked array).
struct NoopDtor;
impl Destroy<u64> for NoopDtor {
    unsafe fn destroy(_: NonNull<u64>) {}
}

pub fn group(c: &mut Criterion) {
    let mut g = c.benchmark_group("drain");

    // No-op destructor: the per-job cost of the drain machinery itself. A chunk of objects is
    // torn down in restricted context (untimed), then one `drain()` runs them all (timed).
    {
        let rt = manual_runtime(CHUNK + 1);
        let slots: Vec<RefSlot<Raw<u64, NoopDtor>>> = slots(&rt, CHUNK);
        let objects: &'static mut [u64] = Box::leak(vec![0u64; CHUNK].into_boxed_slice());
        let ptrs: Vec<NonNull<u64>> = objects.iter_mut().map(NonNull::from).collect();
        let setup = |_: &mut (), n| {
            for (s, &p) in slots[..n].iter().zip(&ptrs) {
                // SAFETY: each element of the leaked array is used by one `Raw` at a time, and
                // its destructor does nothing.
                let raw = unsafe { Raw::new(p) };
                let _ = s.xchg(Some(raw)).unwrap();
            }
            clear_restricted(&slots, n);
        };
        let timed = |_: &mut (), n| assert_eq!(rt.drain().unwrap(), n);
        pinned_chunks(&mut g, "no-op destructor", CHUNK, &mut (), setup, timed);
    }

    // Box free: the same with `Box<u64>`.
    {
        let rt = manual_runtime(CHUNK + 1);
        let slots: Vec<RefSlot<Box<u64>>> = slots(&rt, CHUNK);
        let setup = |_: &mut (), n| {
            fill(&slots, n);
            clear_restricted(&slots, n);
        };
        let timed = |_: &mut (), n| assert_eq!(rt.drain().unwrap(), n);
        pinned_chunks(&mut g, "Box free", CHUNK, &mut (), setup, timed);
    }

    // The destructor body alone: freeing the same boxes in a plain loop.
    {
        let mut boxes: Vec<Box<u64>> = Vec::with_capacity(CHUNK);
        let setup = |boxes: &mut Vec<Box<u64>>, n| boxes.extend((0..n as u64).map(Box::new));
        let timed = |boxes: &mut Vec<Box<u64>>, _| boxes.clear();
        pinned_chunks(&mut g, "Box free alone", CHUNK, &mut boxes, setup, timed);
    }
    g.finish();
}
