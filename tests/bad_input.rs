//! Every way to misuse the public API is refused with the documented error, without a panic and
//! without side effects:
//!
//! - each invalid builder setting gives `Error::InvalidConfig` naming the right field (and the
//!   boundary values just inside the limits are accepted);
//! - `reserve(usize::MAX)` gives `Error::CapacityExceeded` and allocates nothing, and a
//!   `reserve_to` beyond `max_jobs` gives it back the spare jobs it had taken towards the
//!   shortfall;
//! - the ordinary-context calls that change the reservation or drain (`unreserve`,
//!   `reserve_to`, `drain_and_wait`) give `Error::Restricted` in restricted context and touch
//!   nothing;
//! - `Runtime::global()` reached first from restricted context gives
//!   `Error::GlobalUninitialized`, then works once touched in ordinary context, and from then on
//!   also inside the guard (the same runtime);
//! - a `Raw` slot's destructor is part of its type (nothing to mismatch at run time);
//! - every error has a non-empty `Display`.

use sigdrop::{
    Builder, Destroy, Drainer, Error, MAX_SHARDS, Raw, RefSlot, Runtime, Wake, restricted,
};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Builds with a manual drainer so that accepted configurations start no thread.
fn build(b: Builder) -> Result<Runtime, Error> {
    b.drainer(Drainer::Manual).build()
}

/// Asserts that `b` is refused as `InvalidConfig` for `field`.
#[track_caller]
fn assert_invalid(b: Builder, field: &str) {
    match build(b) {
        Err(Error::InvalidConfig { field: f, reason }) => {
            assert_eq!(f, field, "wrong field (reason: {reason})");
            assert!(!reason.is_empty());
        }
        Err(other) => panic!("expected InvalidConfig for {field}, got {other:?}"),
        Ok(rt) => panic!("expected InvalidConfig for {field}, built {rt:?}"),
    }
}

/// The default (and largest) job limit, as reported by `CapacityExceeded`.
fn default_max_jobs() -> usize {
    let rt = build(Runtime::builder()).unwrap();
    match rt.reserve(usize::MAX) {
        Err(Error::CapacityExceeded { max_jobs }) => max_jobs,
        other => panic!("expected CapacityExceeded, got {other:?}"),
    }
}

/// The limit the builder accepts is the default limit, and it is the arena's index space: about
/// `u32::MAX`. (The `Builder::max_jobs` documentation says `u32::MAX - 1` while the code allows
/// `u32::MAX`; this test holds either way and pins down that the two limits agree.)
#[test]
fn max_jobs_limit_is_consistent() {
    let limit = default_max_jobs();
    assert!(
        limit == u32::MAX as usize || limit == u32::MAX as usize - 1,
        "{limit}"
    );
    build(Runtime::builder().max_jobs(limit)).expect("the default limit is accepted");
    assert_invalid(Runtime::builder().max_jobs(limit + 1), "max_jobs");
}

#[test]
fn invalid_builder_settings_name_their_field() {
    let b = Runtime::builder;
    assert_invalid(b().shards(0), "shards");
    assert_invalid(b().shards(MAX_SHARDS + 1), "shards");
    assert_invalid(b().shards(usize::MAX), "shards");
    assert_invalid(b().emergency_capacity(0), "emergency_capacity");
    assert_invalid(b().max_jobs(0), "max_jobs");
    assert_invalid(b().max_jobs(usize::MAX), "max_jobs");
    // The largest accepted value is the default limit (see `max_jobs_limit_is_consistent`).
    assert_invalid(b().max_jobs(default_max_jobs() + 1), "max_jobs");
    // headroom + the default hysteresis (headroom / 2) overflows.
    assert_invalid(b().headroom(usize::MAX), "headroom");
    // An explicit hysteresis that overflows with the headroom.
    assert_invalid(b().hysteresis(usize::MAX), "headroom");
    // headroom + hysteresis above max_jobs: 8 + 4 > 10, and 0 + 11 > 10.
    assert_invalid(b().max_jobs(10).headroom(8), "headroom");
    assert_invalid(b().max_jobs(10).headroom(0).hysteresis(11), "headroom");
    // The default headroom (64 + 32) does not fit a 1-job pool either.
    assert_invalid(b().max_jobs(1), "headroom");
    // Setting only max_jobs gets an error about the headroom: it says what the defaults are
    // and what to change.
    let message = build(b().max_jobs(4)).unwrap_err().to_string();
    assert!(
        message.contains("64 + 32") && message.contains("raise max_jobs"),
        "{message}"
    );
    // The backlog bound is at least one batch.
    assert_invalid(b().max_pending(0), "max_pending");
    assert_invalid(b().max_pending(63), "max_pending");
    // A lazy drainer's period is between 100 µs and 60 s, and its watermark at least 1.
    let lazy = |period, high_watermark| Wake::Lazy {
        period,
        high_watermark,
    };
    assert_invalid(b().wake(lazy(Duration::ZERO, 1)), "wake");
    assert_invalid(b().wake(lazy(Duration::from_micros(99), 1)), "wake");
    assert_invalid(b().wake(lazy(Duration::from_secs(61), 1)), "wake");
    assert_invalid(b().wake(lazy(Duration::from_millis(1), 0)), "wake");
    // The regrowth window is zero (off) or between 1 ms and an hour.
    assert_invalid(
        b().regrowth_window(Duration::from_micros(999)),
        "regrowth_window",
    );
    assert_invalid(
        b().regrowth_window(Duration::from_secs(3601)),
        "regrowth_window",
    );
    assert_invalid(b().regrowth_window(Duration::MAX), "regrowth_window");
}

#[test]
fn boundary_settings_are_accepted() {
    let b = Runtime::builder;
    for builder in [
        b().shards(1),
        b().shards(MAX_SHARDS),
        b().emergency_capacity(1),
        b().max_jobs(1).headroom(0).hysteresis(0),
        b().max_jobs(10).headroom(8).hysteresis(2),
        b().max_jobs(default_max_jobs()),
        b().headroom(0),
        b().max_pending(64),
        b().max_pending(usize::MAX),
        b().wake(Wake::lazy(Duration::from_micros(100))),
        b().wake(Wake::lazy(Duration::from_secs(60))),
        b().wake(Wake::Lazy {
            period: Duration::from_millis(1),
            high_watermark: 1,
        }),
        b().regrowth_window(Duration::ZERO),
        b().regrowth_window(Duration::from_millis(1)),
        b().regrowth_window(Duration::from_secs(3600)),
    ] {
        let rt = build(builder.clone()).unwrap_or_else(|e| panic!("{builder:?}: {e}"));
        assert_eq!(rt.stats().total, 0);
    }
}

#[test]
fn reserve_beyond_any_limit_is_refused_without_allocating() {
    let rt = build(Runtime::builder()).unwrap();
    let slot = RefSlot::new(&rt);
    slot.xchg(Some(Box::new(1u32))).unwrap();
    let before = rt.stats();
    assert!(before.total > 0);
    match rt.reserve(usize::MAX) {
        Err(Error::CapacityExceeded { max_jobs }) => assert_eq!(max_jobs, default_max_jobs()),
        other => panic!("expected CapacityExceeded, got {other:?}"),
    }
    let after = rt.stats();
    assert_eq!(after.total, before.total);
    assert_eq!(after.reserved, 0);
    assert_eq!(after.peak_total, before.peak_total);
    // The runtime still works.
    rt.reserve(2).unwrap();
    assert_eq!(rt.stats().reserved, 2);
}

// The only test in this file that touches the global runtime, so it sees it uninitialised.
#[test]
fn global_runtime_must_be_touched_first_in_ordinary_context() {
    {
        let _nmi = restricted::enter();
        match Runtime::global() {
            Err(Error::GlobalUninitialized) => {}
            other => panic!("expected GlobalUninitialized, got {other:?}"),
        }
    }
    let rt = Runtime::global().expect("global runtime in ordinary context");
    let again = {
        let _nmi = restricted::enter();
        Runtime::global().expect("global runtime inside the guard once it exists")
    };
    assert!(std::ptr::eq(rt, again), "one global runtime");
    assert!(std::ptr::eq(rt, Runtime::global().unwrap()));
}

static FREED: AtomicUsize = AtomicUsize::new(0);

/// Frees boxed `u64`s handed over as `Raw`, counting them.
struct FreeBoxed;

impl Destroy<u64> for FreeBoxed {
    unsafe fn destroy(p: NonNull<u64>) {
        FREED.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `Raw::new`'s contract: every pointer came from `Box::into_raw` and is owned.
        drop(unsafe { Box::from_raw(p.as_ptr()) });
    }
}

fn boxed_raw(value: u64) -> Raw<u64, FreeBoxed> {
    let ptr = NonNull::from(Box::leak(Box::new(value)));
    // SAFETY: `ptr` is a fresh, owned `Box<u64>` allocation, which `FreeBoxed` frees.
    unsafe { Raw::new(ptr) }
}

#[test]
fn a_raw_slot_destroys_with_the_destructor_of_its_type() {
    let rt = build(Runtime::builder()).unwrap();
    let slot: RefSlot<Raw<u64, FreeBoxed>> = RefSlot::new(&rt);
    let raw = boxed_raw(7);
    let ptr = raw.as_ptr();
    assert!(slot.xchg(Some(raw)).unwrap().is_none());
    // Taken back out in ordinary context: the same pointer, still owned, not yet freed.
    let back = slot.take().unwrap().into_inner().unwrap();
    assert_eq!(back.as_ptr(), ptr);
    assert_eq!(FREED.load(Ordering::Relaxed), 0);
    slot.xchg(Some(back)).unwrap();
    {
        let _nmi = restricted::enter();
        slot.clear(); // deferred, not destroyed here
    }
    assert_eq!(FREED.load(Ordering::Relaxed), 0);
    assert_eq!(rt.drain().unwrap(), 1);
    assert_eq!(FREED.load(Ordering::Relaxed), 1);
    // `into_ptr` hands ownership back without destroying.
    let kept = boxed_raw(8).into_ptr();
    // SAFETY: `kept` is the owned box `into_ptr` gave back.
    assert_eq!(*unsafe { Box::from_raw(kept.as_ptr()) }, 8);
    assert_eq!(FREED.load(Ordering::Relaxed), 1);
}

#[test]
fn every_error_displays_a_message() {
    let errors = [
        Error::InvalidConfig {
            field: "shards",
            reason: "must be at least 1",
        },
        Error::OutOfMemory,
        Error::CapacityExceeded { max_jobs: 2 },
        Error::Restricted,
        Error::NoSpareJob {
            runtime: 3,
            reserved: 0,
            spare: 5,
        },
        Error::GlobalUninitialized,
        Error::DrainerSpawn(std::io::Error::other("no threads")),
    ];
    for e in &errors {
        let text = e.to_string();
        assert!(!text.trim().is_empty(), "{e:?}");
        assert!(!format!("{e:?}").is_empty());
    }
    // The InvalidConfig message names the field; the spawn error keeps its source.
    assert!(errors[0].to_string().contains("shards"));
    assert!(errors[2].to_string().contains('2'));
    assert!(std::error::Error::source(&errors[6]).is_some());
    // The refused install names its runtime and the jobs it found.
    let no_job = errors[4].to_string();
    assert!(
        no_job.contains("runtime 3") && no_job.contains("0 reserved") && no_job.contains("5 spare"),
        "{no_job}"
    );

    // And the errors the runtime actually returns display too.
    let real = build(Runtime::builder().shards(0)).unwrap_err();
    assert!(real.to_string().contains("shards"));
}

/// In restricted context, as in a signal handler, `unreserve` (which may trim: free memory),
/// `reserve_to` (which may allocate) and `drain_and_wait` (which runs destructors and waits) are
/// refused with `Error::Restricted`, and the reservation and the spare jobs are left as they were.
#[test]
fn ordinary_only_calls_are_refused_in_restricted_context() {
    let rt = build(Runtime::builder()).unwrap();
    rt.reserve(4).unwrap();
    let before = rt.stats();
    assert_eq!(before.reserved, 4);
    {
        let _nmi = restricted::enter();
        assert!(matches!(rt.unreserve(1), Err(Error::Restricted)));
        assert!(matches!(rt.reserve_to(8), Err(Error::Restricted)));
        assert!(matches!(rt.drain_and_wait(), Err(Error::Restricted)));
    }
    let after = rt.stats();
    assert_eq!(
        (after.reserved, after.spare, after.total),
        (before.reserved, before.spare, before.total),
        "{after:?}"
    );
}

/// A `reserve_to` refused because the shortfall would take the pool past `max_jobs` first
/// took the spare jobs it could towards that shortfall: it gives them back as spare, reserving
/// nothing, so that they still serve installs and a later, smaller `reserve_to`.
#[test]
fn reserve_to_beyond_the_limit_gives_back_the_spare_jobs_it_took() {
    let rt = build(Runtime::builder().max_jobs(100)).unwrap();
    let slot = RefSlot::new(&rt);
    // The first install grows a headroom's worth of jobs: one for the object, the rest spare.
    slot.xchg(Some(Box::new(1u32))).unwrap();
    let before = rt.stats();
    assert!(before.spare > 0, "{before:?}");
    match rt.reserve_to(1_000) {
        Err(Error::CapacityExceeded { max_jobs }) => assert_eq!(max_jobs, 100),
        other => panic!("expected CapacityExceeded, got {other:?}"),
    }
    let after = rt.stats();
    assert_eq!(
        (after.spare, after.reserved, after.refs, after.total),
        (before.spare, 0, before.refs, before.total),
        "the refused reserve_to kept jobs: {after:?}"
    );
    // Those spare jobs are what a reservation within the limit takes first: no growth.
    assert_eq!(rt.reserve_to(before.spare).unwrap(), before.spare);
    let reserved = rt.stats();
    assert_eq!(
        (reserved.reserved, reserved.spare, reserved.total),
        (before.spare, 0, before.total),
        "{reserved:?}"
    );
}
