//! Slot operations against the floor of one `AtomicPtr::swap` (the full suite is issue 5's).

use criterion::{Criterion, criterion_group, criterion_main};
use sigdrop::{Drainer, RawSlot, RefSlot, Runtime};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering};

fn slot_ops(c: &mut Criterion) {
    let mut g = c.benchmark_group("slot");
    let mut a = 1u64;
    let mut b = 2u64;
    let (pa, pb) = (&mut a as *mut u64, &mut b as *mut u64);

    let atomic = AtomicPtr::new(pa);
    g.bench_function("AtomicPtr::swap", |bench| {
        let mut next = pb;
        bench.iter(|| next = atomic.swap(black_box(next), Ordering::AcqRel))
    });

    let raw = RawSlot::new();
    raw.xchg(NonNull::new(pa));
    g.bench_function("RawSlot::xchg", |bench| {
        let mut next = NonNull::new(pb);
        bench.iter(|| next = raw.xchg(black_box(next)))
    });

    let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
    let slot = RefSlot::new(&rt);
    slot.xchg(Some(Box::new(0u64))).unwrap();
    let mut spare = Some(Box::new(1u64));
    g.bench_function("RefSlot replace present->present", |bench| {
        bench.iter(|| {
            let old = slot.xchg(black_box(spare.take())).unwrap().unwrap();
            spare = Some(old.into_inner().unwrap());
        })
    });
    g.finish();
}

criterion_group!(benches, slot_ops);
criterion_main!(benches);
