//! In steady state, the operations a user repeats allocate nothing: replace (present ->
//! present), install into an empty slot, take out, and a restricted-context teardown. The pool
//! is grown once, during a warm-up; after that every job comes from the freelists.
//!
//! A `#[global_allocator]` counts `alloc`/`alloc_zeroed`/`realloc` calls made by the calling
//! thread while a thread-local flag is set (frees are not counted: dropping a user's `Box` frees
//! it, which is the user's deallocation, not the runtime's allocation).

use sigdrop::{Drainer, RefSlot, Runtime, restricted};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct ThreadCountingAlloc;

std::thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator may be called while thread-locals are being torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every method forwards to `System` unchanged; counting touches only `const`
// thread-locals without destructors, and never allocates.
unsafe impl GlobalAlloc for ThreadCountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: ThreadCountingAlloc = ThreadCountingAlloc;

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCS.with(Cell::get)
}

#[test]
fn replace_install_take_and_restricted_teardown_allocate_nothing_in_steady_state() {
    const SLOTS: usize = 8;
    const ROUNDS: usize = 200;
    // The counter is live: it sees an allocation made in a measured region.
    assert_eq!(
        allocations_in(|| drop(std::hint::black_box(Box::new(1u8)))),
        1
    );
    let rt = Runtime::builder()
        .shards(1)
        .drainer(Drainer::Manual)
        .build()
        .unwrap();
    let slots: Vec<RefSlot<Box<u64>>> = (0..SLOTS).map(|_| RefSlot::new(&rt)).collect();
    // Warm-up: grow the pool, and run every operation once.
    for s in &slots {
        s.xchg(Some(Box::new(0))).unwrap();
    }
    {
        let _nmi = restricted::enter();
        slots[0].clear();
    }
    rt.drain().unwrap();
    slots[0].xchg(Some(Box::new(0))).unwrap();
    assert_eq!(
        allocations_in(|| {
            let _ = rt.stats();
        }),
        0
    );

    // Values are made before each measured region, and what comes out is kept (in vectors
    // with room reserved) and dropped after it.
    for _ in 0..ROUNDS {
        let fresh: Vec<Box<u64>> = (0..3 * SLOTS as u64).map(Box::new).collect();
        let mut fresh = fresh.into_iter();
        let mut out = Vec::with_capacity(3 * SLOTS);
        let n = allocations_in(|| {
            for s in &slots {
                // Replace present -> present.
                let old = s.xchg(fresh.next()).unwrap().unwrap();
                out.push(old.into_inner().unwrap());
                // Take out, then install into the empty slot.
                out.push(s.take().unwrap().into_inner().unwrap());
                assert!(s.xchg(fresh.next()).unwrap().is_none());
            }
            // Restricted teardown of every slot (deferred, not destroyed here).
            let _nmi = restricted::enter();
            for s in &slots {
                s.clear();
            }
        });
        assert_eq!(
            n,
            0,
            "allocations in a steady-state round: {:?}",
            rt.stats()
        );
        drop(out);
        rt.drain().unwrap();
        for s in &slots {
            s.xchg(fresh.next()).unwrap();
        }
    }
    let s = rt.stats();
    assert_eq!((s.emergency, s.leaked, s.reserve_failures), (0, 0, 0));
    assert!(s.offloaded >= (ROUNDS * SLOTS) as u64);
}
