//! P4 nothing lost: when the job pool cannot grow — the allocator refuses, the `max_jobs` limit
//! is reached, or the install is in restricted context — the install is refused, the slot is
//! unchanged, the very same value comes back to the caller, and the accounting is untouched.
//!
//! A `#[global_allocator]` wraps `System` and fails (returns null) on the calling thread while a
//! `const`-initialised thread-local budget is exhausted, so only the code under test sees the
//! failures (tests in this file run on parallel threads, each with its own budget).

use sigdrop::{Drainer, Error, Owned, RefSlot, Runtime, Shared, restricted};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

std::thread_local! {
    /// Allocations this thread may still make; `usize::MAX` means unlimited.
    static BUDGET: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Allocations refused so far (all threads), to show the failure path was really taken.
static REFUSED: AtomicU64 = AtomicU64::new(0);

fn permit() -> bool {
    BUDGET.with(|b| match b.get() {
        usize::MAX => true,
        0 => {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            false
        }
        n => {
            b.set(n - 1);
            true
        }
    })
}

struct FailingAlloc;

// SAFETY: every method either forwards to `System` with the caller's arguments unchanged or
// returns null, which `GlobalAlloc` allows for allocation failure; `dealloc` always forwards.
unsafe impl GlobalAlloc for FailingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !permit() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !permit() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !permit() {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: FailingAlloc = FailingAlloc;

/// Runs `f` with at most `allowed` allocations on this thread (0: every allocation fails).
/// Nothing in `f` may panic or format: both allocate.
fn with_budget<R>(allowed: usize, f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            BUDGET.with(|b| b.set(usize::MAX));
        }
    }
    BUDGET.with(|b| b.set(allowed));
    let _reset = Reset;
    f()
}

fn manual(headroom: usize, hysteresis: usize) -> Runtime {
    Runtime::builder()
        .headroom(headroom)
        .hysteresis(hysteresis)
        .drainer(Drainer::Manual)
        .build()
        .unwrap()
}

#[test]
fn refused_allocation_hands_the_value_back_and_changes_nothing() {
    let rt = manual(4, 2);
    let slot = RefSlot::new(&rt);
    let value = Box::new(0xC0FFEE_u64);
    let addr: *const u64 = &*value;
    let refused_before = REFUSED.load(Ordering::Relaxed);

    // A fresh runtime has no spare job: the install must grow the pool, and cannot.
    let result = with_budget(0, || slot.xchg(Some(value)));
    assert!(REFUSED.load(Ordering::Relaxed) > refused_before);
    let rejected = match result {
        Err(rejected) => rejected,
        Ok(prev) => panic!("install succeeded without memory (previous: {prev:?})"),
    };
    assert!(
        matches!(rejected.error(), Error::OutOfMemory),
        "{rejected:?}"
    );
    let back = rejected.into_inner();
    assert!(std::ptr::eq(&*back, addr), "the same box came back");
    assert_eq!(*back, 0xC0FFEE);
    assert!(slot.is_empty());
    let s = rt.stats();
    assert_eq!(s.reserve_failures, 1, "{s:?}");
    assert_eq!(
        (s.total, s.refs, s.spare, s.peak_total),
        (0, 0, 0, 0),
        "{s:?}"
    );

    // Reserving fails the same way and reserves nothing.
    let reserved = with_budget(0, || rt.reserve(4));
    assert!(matches!(reserved, Err(Error::OutOfMemory)), "{reserved:?}");
    let s = rt.stats();
    assert_eq!((s.total, s.reserved, s.spare), (0, 0, 0), "{s:?}");

    // With memory again, the same value installs.
    assert!(slot.xchg(Some(back)).unwrap().is_none());
    let s = rt.stats();
    assert_eq!(s.refs, 1, "{s:?}");
    assert!(s.total >= 1 && s.total <= 1 + 4, "{s:?}");
    assert_eq!(s.reserve_failures, 1, "{s:?}");

    // Installs that find a spare job need no memory: with the headroom grown above, two more
    // installs succeed while every allocation fails (the refill they may attempt just fails).
    let more: Vec<RefSlot<Box<u64>>> = (0..2).map(|_| RefSlot::new(&rt)).collect();
    let (a, b) = (Box::new(1u64), Box::new(2u64));
    let results = with_budget(0, || {
        let ra = more[0]
            .xchg(Some(a))
            .map(|p| p.is_none())
            .map_err(|r| r.into_parts());
        let rb = more[1]
            .xchg(Some(b))
            .map(|p| p.is_none())
            .map_err(|r| r.into_parts());
        (ra, rb)
    });
    assert!(matches!(results, (Ok(true), Ok(true))), "{results:?}");
    assert_eq!(rt.stats().refs, 3);

    slot.clear();
    for s in &more {
        s.clear();
    }
    let s = rt.stats();
    assert_eq!((s.refs, s.active), (0, 0), "{s:?}");
    assert_eq!(rt.audit_idle(), s.total);
}

#[test]
fn partial_growth_reserves_nothing_and_keeps_what_it_made_as_spare() {
    let rt = manual(0, 0);
    // Enough for a run of jobs or two, not for a hundred: growth allocates the index table's
    // first block and its bookkeeping, then a slab of bodies per run of 16 jobs.
    let result = with_budget(5, || rt.reserve(100));
    assert!(matches!(result, Err(Error::OutOfMemory)), "{result:?}");
    let s = rt.stats();
    assert_eq!(s.reserved, 0, "nothing half-reserved: {s:?}");
    assert_eq!(s.spare, s.total, "jobs made became spare: {s:?}");
    assert!(s.total >= 1 && s.total < 100, "{s:?}");
    assert_eq!(rt.audit_idle(), s.total);

    // Trim cannot record freed indices without memory: it keeps the jobs, consistently.
    rt.reserve(4).unwrap();
    let before = rt.stats();
    let moved = with_budget(0, || rt.unreserve(4).map_err(|_| ()));
    assert_eq!(moved, Ok(4));
    let s = rt.stats();
    assert_eq!(s.reserved, 0, "{s:?}");
    assert_eq!(s.spare + s.reserved, s.total, "{s:?}");
    assert!(s.total <= before.total, "{s:?}");

    assert_eq!(rt.audit_idle(), s.total);

    // With memory, trim brings the pool down to the (zero) headroom.
    rt.trim().unwrap();
    let s = rt.stats();
    assert_eq!((s.total, s.spare), (0, 0), "{s:?}");
    assert_eq!(rt.audit_idle(), 0);
}

#[test]
fn job_limit_hands_the_value_back() {
    let rt = Runtime::builder()
        .max_jobs(2)
        .headroom(0)
        .hysteresis(0)
        .drainer(Drainer::Manual)
        .build()
        .unwrap();
    let slots: Vec<RefSlot<Box<u32>>> = (0..3).map(|_| RefSlot::new(&rt)).collect();
    assert!(slots[0].xchg(Some(Box::new(0))).unwrap().is_none());
    assert!(slots[1].xchg(Some(Box::new(1))).unwrap().is_none());

    let third = Box::new(3u32);
    let addr: *const u32 = &*third;
    let rejected = match slots[2].xchg(Some(third)) {
        Err(rejected) => rejected,
        Ok(prev) => panic!("third install succeeded (previous: {prev:?})"),
    };
    assert!(
        matches!(rejected.error(), Error::CapacityExceeded { max_jobs: 2 }),
        "{rejected:?}"
    );
    let back = rejected.into_inner();
    assert!(std::ptr::eq(&*back, addr));
    assert_eq!(*back, 3);
    assert!(slots[2].is_empty());
    let s = rt.stats();
    assert_eq!((s.total, s.refs, s.reserve_failures), (2, 2, 1), "{s:?}");

    // A replace needs no new job and is allowed at the limit.
    let old = slots[1].xchg(Some(Box::new(11))).unwrap().unwrap();
    assert_eq!(*old, 1);
    drop(old);
    // Freeing a job makes room for the refused value.
    slots[0].clear();
    assert!(slots[2].xchg(Some(back)).unwrap().is_none());
    let s = rt.stats();
    assert_eq!((s.total, s.refs), (2, 2), "{s:?}");
}

#[test]
fn restricted_install_without_spare_job_is_refused_not_grown() {
    let rt = manual(0, 0);
    let slot = RefSlot::new(&rt);
    let value = Box::new(5u8);
    let addr: *const u8 = &*value;
    let back = {
        let _nmi = restricted::enter();
        match slot.xchg(Some(value)) {
            Err(rejected) => {
                assert!(matches!(rejected.error(), Error::NoSpareJob { .. }));
                // Not dropped here: that would free in restricted context.
                rejected.into_inner()
            }
            Ok(_) => panic!("restricted install succeeded with no job"),
        }
    };
    assert!(std::ptr::eq(&*back, addr));
    assert!(slot.is_empty());
    let s = rt.stats();
    assert_eq!(
        (s.total, s.peak_total, s.reserve_failures),
        (0, 0, 1),
        "{s:?}"
    );
}

#[test]
fn owned_boxes_made_without_memory_hand_the_value_back_and_count_nothing() {
    let rt = manual(0, 0);
    let template = Owned::new(&rt, [5u64; 16]);
    let alive = rt.stats().owned_alive;
    let refused_before = REFUSED.load(Ordering::Relaxed);
    let (made, cloned, shared) = with_budget(0, || {
        (
            Owned::try_new(&rt, [9u64; 16]),
            template.try_clone(),
            Shared::try_new(&rt, [7u64; 16]),
        )
    });
    assert!(REFUSED.load(Ordering::Relaxed) >= refused_before + 3);
    match made {
        Err((value, Error::OutOfMemory)) => assert_eq!(value, [9; 16], "the very value"),
        other => panic!("Owned::try_new without memory: {:?}", other.map(|b| *b)),
    }
    assert!(matches!(cloned, Err(Error::OutOfMemory)), "{cloned:?}");
    match shared {
        Err((value, Error::OutOfMemory)) => assert_eq!(value, [7; 16]),
        other => panic!("Shared::try_new without memory: {:?}", other.map(|b| *b)),
    }
    assert_eq!(
        rt.stats().owned_alive,
        alive,
        "a refused box is not counted"
    );
    // With memory again, the same calls succeed.
    let copy = template.try_clone().expect("memory is back");
    assert_eq!(*copy, [5; 16]);
    assert_eq!(rt.stats().owned_alive, alive + 1);
}
