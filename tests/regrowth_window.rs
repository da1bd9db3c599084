//! The pool's hysteresis over time (`Builder::regrowth_window`, one second by default): bursts
//! larger than the count hysteresis, torn down in restricted context and drained one after
//! another, must not make every drain free what the next burst grows back; the jobs kept for
//! that are freed once a window passes without regrowth (by the next drain, or by the drainer
//! thread on its own), and at once by an explicit trim. A single burst is still trimmed at its
//! drain.
//!
//! Asserted in grow and trim events and in jobs, never on time. The windows are either far
//! longer than a test (an hour) or short ones waited out with a generous deadline; a test with
//! a short window skips its check if its bursts took longer than the window (a stalled
//! machine), rather than fail.

use sigdrop::{Drainer, Policy, RefSlot, Runtime, Stats, Wake, restricted};
use std::time::{Duration, Instant};

const HEADROOM: usize = 4;
const HYSTERESIS: usize = 2;
/// Objects per burst: far above the hysteresis.
const BURST: usize = 64;
const BURSTS: usize = 40;
const HOUR: Duration = Duration::from_secs(3600);

/// `window: None`: the default (one second).
fn runtime(window: Option<Duration>, drainer: Drainer) -> Runtime {
    let builder = Runtime::builder()
        .shards(2)
        .headroom(HEADROOM)
        .hysteresis(HYSTERESIS)
        .drainer(drainer);
    match window {
        Some(window) => builder.regrowth_window(window),
        None => builder,
    }
    .build()
    .unwrap()
}

/// Jobs ever grown plus jobs ever trimmed: the pool's round trips.
fn grow_and_trim_events(s: &Stats) -> usize {
    s.total + 2 * s.trimmed as usize
}

/// Fills every slot (ordinary context, growing the pool as needed), then tears every object
/// down in restricted context.
fn burst(slots: &[RefSlot<Box<u64>>]) {
    for (i, s) in slots.iter().enumerate() {
        assert!(s.xchg(Some(Box::new(i as u64))).unwrap().is_none());
    }
    let _nmi = restricted::enter();
    for s in slots {
        s.clear();
    }
}

/// Bursts with a manual drain after each: returns the stats after the last drain.
fn drained_bursts(rt: &Runtime, slots: &[RefSlot<Box<u64>>], n: usize) -> Stats {
    for _ in 0..n {
        burst(slots);
        assert_eq!(rt.drain().unwrap(), slots.len());
    }
    rt.stats()
}

#[test]
fn repeated_bursts_grow_the_pool_back_once_then_keep_it() {
    let rt = runtime(Some(HOUR), Drainer::Manual);
    let slots: Vec<RefSlot<Box<u64>>> = (0..BURST).map(|_| RefSlot::new(&rt)).collect();
    let s = drained_bursts(&rt, &slots, BURSTS);
    // The first burst grows about BURST jobs and its drain trims them; the second grows them
    // back, and from then on the pool keeps them: a few bursts' worth of events, not BURSTS'.
    let events = grow_and_trim_events(&s);
    assert!(
        events <= 4 * (BURST + HEADROOM),
        "{events} grow/trim events over {BURSTS} bursts: the pool thrashes: {s:?}"
    );
    assert!(
        s.kept >= BURST - HEADROOM,
        "the regrown jobs are kept: {s:?}"
    );
    assert!(s.spare >= s.kept, "kept jobs are spare ones: {s:?}");
    assert_eq!((s.active, s.refs), (0, 0), "{s:?}");
    assert_eq!(rt.audit_idle(), s.total, "every job is back in a freelist");
}

#[test]
fn bursts_that_grow_larger_are_kept_at_the_larger_size() {
    let rt = runtime(Some(HOUR), Drainer::Manual);
    let slots: Vec<RefSlot<Box<u64>>> = (0..2 * BURST).map(|_| RefSlot::new(&rt)).collect();
    // A small burst teaches the pool to keep about BURST jobs; then small and large bursts
    // take turns. Each large one needs what the last trim kept plus what it freed: once grown
    // back, that is kept too, instead of being trimmed after every large burst and grown back
    // by the next (BURST jobs a round, as when only the regrowth itself was counted).
    for round in 0..BURSTS {
        let n = if round % 2 == 0 { BURST } else { 2 * BURST };
        burst(&slots[..n]);
        assert_eq!(rt.drain().unwrap(), n);
    }
    let s = rt.stats();
    let events = grow_and_trim_events(&s);
    assert!(
        events <= 4 * (2 * BURST + HEADROOM),
        "{events} grow/trim events over {BURSTS} bursts: the pool thrashes: {s:?}"
    );
    assert!(
        (2 * BURST - HEADROOM..=2 * BURST).contains(&s.kept),
        "the large bursts' jobs are kept, and no more: {s:?}"
    );
    assert_eq!(rt.audit_idle(), s.total, "every job is back in a freelist");
}

#[test]
fn by_default_the_pool_keeps_what_bursts_grow_back() {
    let rt = runtime(None, Drainer::Manual);
    let slots: Vec<RefSlot<Box<u64>>> = (0..BURST).map(|_| RefSlot::new(&rt)).collect();
    let start = Instant::now();
    let s = drained_bursts(&rt, &slots, BURSTS);
    if start.elapsed() >= Duration::from_secs(1) {
        eprintln!("skipped: {BURSTS} bursts took longer than the default window");
        return;
    }
    assert!(
        grow_and_trim_events(&s) <= 4 * (BURST + HEADROOM),
        "the pool thrashes with the default settings: {s:?}"
    );
    assert!(s.kept >= BURST - HEADROOM, "{s:?}");
}

#[test]
fn with_a_zero_window_every_drain_trims_what_the_next_burst_grows() {
    let rt = runtime(Some(Duration::ZERO), Drainer::Manual);
    let slots: Vec<RefSlot<Box<u64>>> = (0..BURST).map(|_| RefSlot::new(&rt)).collect();
    let s = drained_bursts(&rt, &slots, BURSTS);
    // What the window saves: each burst grows and each drain trims most of a burst.
    let events = grow_and_trim_events(&s);
    assert!(
        events >= BURSTS * (BURST - HEADROOM - HYSTERESIS),
        "{events} grow/trim events over {BURSTS} bursts: {s:?}"
    );
    assert_eq!(s.kept, 0, "{s:?}");
    assert!(
        s.total <= HEADROOM + HYSTERESIS,
        "trimmed at every drain: {s:?}"
    );
}

#[test]
fn jobs_kept_raise_the_trim_trigger_as_well_as_its_target() {
    let rt = runtime(Some(HOUR), Drainer::Manual);
    let slots: Vec<RefSlot<Box<u64>>> = (0..BURST).map(|_| RefSlot::new(&rt)).collect();
    let s = drained_bursts(&rt, &slots, 3);
    assert!(s.kept > 0 && s.spare == HEADROOM + s.kept, "{s:?}");
    // One spare job more than the pool keeps: within the hysteresis above the kept jobs.
    rt.reserve(1).unwrap();
    assert_eq!(rt.unreserve(1).unwrap(), 1);
    let before = rt.stats();
    assert_eq!(before.spare, HEADROOM + before.kept + 1, "{before:?}");
    rt.drain().unwrap(); // looks at the kept jobs; nothing above the trigger to trim
    let after = rt.stats();
    assert_eq!(
        after.trimmed, before.trimmed,
        "trimmed below the trigger: {after:?}"
    );
    assert_eq!(after.kept, before.kept, "{after:?}");
}

#[test]
fn a_single_burst_is_still_trimmed_at_its_drain() {
    let rt = runtime(Some(HOUR), Drainer::Manual);
    let slots: Vec<RefSlot<Box<u64>>> = (0..BURST).map(|_| RefSlot::new(&rt)).collect();
    let s = drained_bursts(&rt, &slots, 1);
    assert_eq!(
        s.kept, 0,
        "nothing was trimmed before the burst grew: {s:?}"
    );
    assert!(s.total <= HEADROOM + HYSTERESIS, "{s:?}");
    assert!(s.trimmed > 0, "{s:?}");
}

#[test]
fn an_explicit_trim_frees_the_kept_jobs_at_once() {
    let rt = runtime(Some(HOUR), Drainer::Manual);
    let slots: Vec<RefSlot<Box<u64>>> = (0..BURST).map(|_| RefSlot::new(&rt)).collect();
    let s = drained_bursts(&rt, &slots, 3);
    assert!(s.kept > 0, "{s:?}");
    assert!(rt.trim().unwrap() >= s.kept);
    let s = rt.stats();
    assert_eq!(s.kept, 0, "{s:?}");
    assert_eq!(s.total, HEADROOM, "down to the headroom: {s:?}");
    // Forgotten, not suspended, and what it freed is not owed: the next burst grows as a first
    // one does, and its drain trims it.
    let s = drained_bursts(&rt, &slots, 1);
    assert_eq!(s.kept, 0, "{s:?}");
    assert!(s.total <= HEADROOM + HYSTERESIS, "{s:?}");
}

/// Polls `rt`'s stats until `done` holds, for up to `limit`; returns the last stats and
/// whether it held.
fn wait_for(rt: &Runtime, limit: Duration, done: impl Fn(&Stats) -> bool) -> (Stats, bool) {
    let deadline = Instant::now() + limit;
    loop {
        let s = rt.stats();
        if done(&s) {
            return (s, true);
        }
        if Instant::now() >= deadline {
            return (s, false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A window of 200 ms: the bursts of a test take well under a millisecond each, so on any
/// machine but a badly stalled one they fall inside it.
const SHORT: Duration = Duration::from_millis(200);

/// Runs `bursts`, timed: `Some(stats)` if they took less than `SHORT` (then jobs must have
/// been kept), `None` if the machine stalled longer (nothing to check).
fn quick(rt: &Runtime, bursts: impl FnOnce() -> Stats) -> Option<Stats> {
    let start = Instant::now();
    let s = bursts();
    if start.elapsed() >= SHORT {
        eprintln!("bursts took longer than the window; skipped: {s:?}");
        return None;
    }
    assert!(
        s.kept > 0,
        "bursts inside a window keep what they grew back: {s:?}"
    );
    assert!(s.kept <= s.trimmed as usize, "{:?}", rt.stats());
    Some(s)
}

#[test]
fn kept_jobs_are_freed_by_the_first_drain_a_window_after_the_last_regrowth() {
    let rt = runtime(Some(SHORT), Drainer::Manual);
    let slots: Vec<RefSlot<Box<u64>>> = (0..BURST).map(|_| RefSlot::new(&rt)).collect();
    if quick(&rt, || drained_bursts(&rt, &slots, 3)).is_none() {
        return;
    }
    std::thread::sleep(2 * SHORT);
    rt.drain().unwrap();
    let s = rt.stats();
    assert_eq!(s.kept, 0, "{s:?}");
    assert!(s.total <= HEADROOM + HYSTERESIS, "{s:?}");
}

#[test]
fn kept_jobs_expire_even_while_the_regrown_jobs_are_in_use() {
    // The spare count stays below the trim trigger (the jobs are in slots), so only the drain's
    // own look at the kept jobs can notice that the window has passed.
    let rt = runtime(Some(SHORT), Drainer::Manual);
    let slots: Vec<RefSlot<Box<u64>>> = (0..BURST).map(|_| RefSlot::new(&rt)).collect();
    if quick(&rt, || drained_bursts(&rt, &slots, 3)).is_none() {
        return;
    }
    for (i, s) in slots.iter().enumerate() {
        assert!(s.xchg(Some(Box::new(i as u64))).unwrap().is_none());
    }
    std::thread::sleep(2 * SHORT);
    rt.drain().unwrap();
    let s = rt.stats();
    assert!(s.spare <= HEADROOM + HYSTERESIS, "{s:?}");
    assert_eq!(s.kept, 0, "expired, though nothing was left to trim: {s:?}");
}

/// Three bursts torn down in restricted context, each run by the drainer thread: the most
/// jobs `Stats::kept` showed after one.
fn bursts_on_the_drainer_thread(rt: &Runtime, slots: &[RefSlot<Box<u64>>]) -> usize {
    let mut kept_seen = 0;
    for round in 1..=3u64 {
        burst(slots);
        // Run, and trimmed: the cycle's trim comes after the destructors, and the next burst
        // must find it done (what it freed is what that burst grows back).
        let (s, done) = wait_for(rt, Duration::from_secs(10), |s| {
            s.drained == round * slots.len() as u64
                && s.active == 0
                && s.spare <= HEADROOM + HYSTERESIS + s.kept
        });
        assert!(done, "the drainer thread ran the burst and trimmed: {s:?}");
        kept_seen = kept_seen.max(s.kept);
    }
    kept_seen
}

/// Lets a new drainer thread find nothing to do and go to sleep, then runs three bursts of
/// installs and removals in ordinary context only (nothing is handed to the drainer, nothing
/// rings). Returns the most jobs `Stats::kept` showed after one; if the bursts fell inside a
/// window, some must have been kept.
fn ordinary_bursts_while_the_drainer_sleeps(rt: &Runtime, slots: &[RefSlot<Box<u64>>]) -> usize {
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let mut kept_seen = 0;
    for _ in 0..3 {
        for (i, s) in slots.iter().enumerate() {
            assert!(s.xchg(Some(Box::new(i as u64))).unwrap().is_none());
        }
        slots.iter().for_each(|s| s.clear()); // destroyed inline; the jobs go back as spare
        kept_seen = kept_seen.max(rt.stats().kept);
    }
    if start.elapsed() < SHORT {
        assert!(kept_seen > 0, "{:?}", rt.stats());
    }
    assert_eq!(rt.stats().drained, 0, "nothing went through the drainer");
    kept_seen
}

/// Fails unless the drainer thread, on its own, frees the kept jobs within 10 s.
fn assert_kept_jobs_freed(rt: &Runtime, kept_seen: usize, what: &str) {
    let (s, done) = wait_for(rt, Duration::from_secs(10), |s| {
        s.kept == 0 && s.total <= HEADROOM + HYSTERESIS
    });
    assert!(done, "{what} (most seen kept: {kept_seen}): {s:?}");
}

#[test]
fn the_drainer_thread_frees_kept_jobs_once_bursts_stop() {
    let rt = runtime(Some(SHORT), Drainer::Thread);
    let slots: Vec<RefSlot<Box<u64>>> = (0..BURST).map(|_| RefSlot::new(&rt)).collect();
    let start = Instant::now();
    let kept_seen = bursts_on_the_drainer_thread(&rt, &slots);
    if start.elapsed() < SHORT {
        assert!(kept_seen > 0, "{:?}", rt.stats());
    }
    // Once the bursts stop, the drainer gives the pool back without being rung again.
    assert_kept_jobs_freed(&rt, kept_seen, "kept jobs never freed");
}

#[test]
fn kept_jobs_of_ordinary_bursts_are_freed_by_the_drainer_thread_it_was_never_rung_for() {
    // Installs and removals in ordinary context only: nothing is handed to the drainer, which
    // sleeps until rung from the start. Jobs kept must still be freed once the bursts stop.
    let rt = runtime(Some(SHORT), Drainer::Thread);
    let slots: Vec<RefSlot<Box<u64>>> = (0..BURST).map(|_| RefSlot::new(&rt)).collect();
    let kept_seen = ordinary_bursts_while_the_drainer_sleeps(&rt, &slots);
    assert_kept_jobs_freed(&rt, kept_seen, "kept jobs never freed");
}

#[test]
fn a_drainer_thread_sleeping_on_kept_jobs_still_wakes_for_objects_retired_in_ordinary_context() {
    // A window of an hour: the drainer's sleep while jobs are kept is that long, so only a
    // nudge can get the retired object destroyed within the test's deadline.
    let rt = Runtime::builder()
        .shards(2)
        .headroom(HEADROOM)
        .hysteresis(HYSTERESIS)
        .regrowth_window(HOUR)
        .policy(Policy::AlwaysDefer)
        .build()
        .unwrap();
    let slots: Vec<RefSlot<Box<u64>>> = (0..BURST).map(|_| RefSlot::new(&rt)).collect();
    let kept = bursts_on_the_drainer_thread(&rt, &slots);
    assert!(kept > 0, "{:?}", rt.stats());
    // Let the drainer find nothing more to do and go to sleep on the kept jobs.
    std::thread::sleep(Duration::from_millis(200));
    let drained = rt.stats().drained;
    assert!(slots[0].xchg(Some(Box::new(7))).unwrap().is_none());
    slots[0].clear(); // ordinary context, always defer: retired into a batch, which nudges
    let (s, done) = wait_for(&rt, Duration::from_secs(10), |s| s.drained > drained);
    assert!(
        done,
        "the retired object waited for the kept jobs' window: {s:?}"
    );
}

#[test]
fn a_lazy_drainer_asleep_for_a_long_period_is_woken_to_free_kept_jobs() {
    // Ordinary installs and removals only, so nothing rings; the lazy drainer sleeps for its
    // period, a minute, from the start. Jobs the pool starts keeping must wake it, so that they
    // are freed about a window after the bursts, not at the end of that minute.
    let rt = Runtime::builder()
        .shards(2)
        .headroom(HEADROOM)
        .hysteresis(HYSTERESIS)
        .regrowth_window(SHORT)
        .wake(Wake::lazy(Duration::from_secs(60)))
        .build()
        .unwrap();
    let slots: Vec<RefSlot<Box<u64>>> = (0..BURST).map(|_| RefSlot::new(&rt)).collect();
    let kept_seen = ordinary_bursts_while_the_drainer_sleeps(&rt, &slots);
    assert_kept_jobs_freed(&rt, kept_seen, "kept jobs waited for the lazy period");
}
