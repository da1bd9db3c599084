//! The backlog bound (`Builder::max_pending`) on the paths that hand objects over with jobs.
//!
//! More writers than shards: writers that retire objects in ordinary context as fast as they
//! can, four of them on one shard, stay within the bound, and so does the job pool.
//!
//! With one shard there is one open batch, so writers often find it locked by another (adding
//! to it, or preempted while it held the lock). Such a writer hands its object over with a job
//! instead. That path once skipped the back-pressure: with three writers on a two-CPU machine
//! the backlog reached 72 715 objects against a bound of 4096, and the pool 48 368 jobs, growing
//! for as long as the writers ran. Bounds are asserted on counts, never on time.
//!
//! And the other side of the bound: a drain's own destructors, retiring objects while the
//! chain of jobs they came in is longer than the bound, never wait for that chain; and a writer
//! that holds a read guard itself goes on past the bound rather than wait for a grace period
//! its own guard holds up, whoever runs the destructors.
//!
//! And the pool: installs do not grow it for the jobs a chain being walked still holds for
//! objects it batched (the backlog no longer counts those once their batches are destroyed);
//! and a writer whose batches are closed before they fill looks at the backlog when it opens
//! each one.

mod common;

use sigdrop::{Drainer, Policy, ReadSlot, RefSlot, Runtime, restricted};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The bound under test (smaller than the default, so the writers hit it constantly).
const MAX_PENDING: usize = 512;
/// Objects per batch (`BATCH` in the crate); each shard's open batch is not yet counted.
const BATCH: usize = 64;
/// Shards: one open batch for every writer to contend for.
const SHARDS: usize = 1;
/// Writer threads (more than the shards, and than the CPUs of a small machine).
const WRITERS: usize = 4;
/// Spare jobs the pool keeps (the default).
const HEADROOM: usize = 64;
/// How long the writers run flat out.
const WRITE_FOR: Duration = Duration::from_millis(1500);

/// The tests here measure peaks under load they make themselves: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

static MADE: AtomicU64 = AtomicU64::new(0);
static DESTROYED: AtomicU64 = AtomicU64::new(0);

struct Obj;

impl Obj {
    fn new() -> Arc<Obj> {
        MADE.fetch_add(1, Ordering::Relaxed);
        Arc::new(Obj)
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        DESTROYED.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn writers_outnumbering_shards_stay_within_the_bound() {
    let _serial = serial();
    let rt = Runtime::builder()
        .shards(SHARDS)
        .headroom(HEADROOM)
        .max_pending(MAX_PENDING)
        // No jobs kept for regrowth: the pool's bound below is the backlog's plus the headroom.
        .regrowth_window(Duration::ZERO)
        .build()
        .unwrap();
    let slots: Vec<ReadSlot<Arc<Obj>>> = (0..WRITERS).map(|_| ReadSlot::new(&rt)).collect();
    let stop = AtomicBool::new(false);
    let waited = std::thread::scope(|s| {
        for slot in &slots {
            let stop = &stop;
            s.spawn(move || {
                // Relaxed: a stop flag; the scope's join orders everything after it.
                while !stop.load(Ordering::Relaxed) {
                    drop(slot.replace(Obj::new()).unwrap());
                }
            });
        }
        // Objects waiting, counted by the test itself rather than by the runtime's counts
        // (which `peak_pending` reads): made, less destroyed, less the one each slot holds.
        // Made is read first, so a sample never counts more than waited at some moment.
        let until = Instant::now() + WRITE_FOR;
        let mut waited = 0;
        while Instant::now() < until {
            let made = MADE.load(Ordering::SeqCst);
            let destroyed = DESTROYED.load(Ordering::SeqCst);
            waited = waited.max(made.saturating_sub(destroyed + WRITERS as u64));
            std::thread::sleep(Duration::from_micros(200));
        }
        stop.store(true, Ordering::Relaxed);
        waited
    });
    drop(slots);
    rt.drain_and_wait().unwrap();
    let s = rt.stats();
    let (made, destroyed) = (
        MADE.load(Ordering::Relaxed),
        DESTROYED.load(Ordering::Relaxed),
    );
    eprintln!("{made} objects, at most {waited} seen waiting; {s:?}");

    // The path under test was taken: some objects went with a job (the only way an ordinary
    // retirement is offloaded), because the one open batch was busy.
    assert!(
        s.offloaded > 0,
        "no retirement found the open batch busy: the test did not exercise the fallback: {s:?}"
    );
    // The bound, plus the open batch, plus per writer the batch it may be closing (each closes
    // its batch, then checks the backlog), or the object it may be handing over with a job.
    let bound = MAX_PENDING + BATCH * (SHARDS + WRITERS);
    assert!(
        s.peak_pending <= bound,
        "backlog {} over the bound {bound}: {s:?}",
        s.peak_pending
    );
    // And as the test counts them (the statistic shares its counts with the bound it checks).
    assert!(
        waited <= bound as u64,
        "{waited} objects seen waiting, over the bound {bound}: {s:?}"
    );
    // Jobs: those queued (within the backlog's bound), those a drainer took and has not given
    // back yet (at most what the lists held when it took them: within the bound too, though
    // once their objects are batched the backlog no longer counts them), the spare ones the
    // pool keeps (the headroom, and half as many again before a trim: the hysteresis), and one
    // per writer claiming.
    let pool_bound = 2 * bound + HEADROOM + HEADROOM / 2 + WRITERS;
    assert!(
        s.peak_total <= pool_bound,
        "job pool peaked at {} jobs, over {pool_bound}: {s:?}",
        s.peak_total
    );
    assert_eq!(made, destroyed, "every object destroyed once: {s:?}");
    assert_eq!((s.emergency, s.leaked), (0, 0), "{s:?}");
}

/// An object whose destructor retires another (`Policy::AlwaysDefer`: into a batch).
struct Retiring {
    inner: RefSlot<Box<u64>>,
}

impl Drop for Retiring {
    fn drop(&mut self) {
        self.inner.clear();
        INNER_RETIRED.fetch_add(1, Ordering::Relaxed);
    }
}

static INNER_RETIRED: AtomicU64 = AtomicU64::new(0);

/// Objects torn down in restricted context, each with a job: one chain, longer than the bound.
const CHAIN: usize = 200;
/// The smallest bound accepted (one batch).
const SMALL_BOUND: usize = 64;
/// Far longer than the drain takes (milliseconds); it never returns if it waits for itself.
const DRAIN_WAIT: Duration = Duration::from_secs(30);

/// Runs `work` on a thread of its own. One that has not finished within `DRAIN_WAIT` is
/// waiting for something that never comes: report `what` with the runtime's figures and abort,
/// rather than hang the suite.
fn finishes_or_aborts(rt: &Runtime, what: &str, work: impl FnOnce() + Send) {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(move || {
            work();
            done.send(()).unwrap();
        });
        if finished.recv_timeout(DRAIN_WAIT).is_err() {
            eprintln!("{what}: {:?}", rt.stats());
            std::process::abort();
        }
    });
}

#[test]
fn destructors_retiring_past_the_bound_never_wait_for_their_own_chain() {
    let _serial = serial();
    // A manual drainer: the thread that calls `drain` is the only one that runs destructors,
    // so a wait for the chain it is running would never end.
    let rt = Runtime::builder()
        .drainer(Drainer::Manual)
        .policy(Policy::AlwaysDefer)
        .max_pending(SMALL_BOUND)
        .headroom(CHAIN)
        .build()
        .unwrap();
    let slots: Vec<RefSlot<Box<Retiring>>> = (0..CHAIN).map(|_| RefSlot::new(&rt)).collect();
    for slot in &slots {
        let inner = RefSlot::new(&rt);
        inner.xchg(Some(Box::new(7))).unwrap();
        slot.xchg(Some(Box::new(Retiring { inner }))).unwrap();
    }
    {
        // As a signal handler would: each object goes with a job, onto this CPU's list.
        let _restricted = restricted::enter();
        for slot in &slots {
            slot.clear();
        }
    }
    assert_eq!(rt.stats().pending, CHAIN);
    // One cycle takes the whole chain; each destructor retires an object, and the first of
    // every batch checks the backlog, which is over the bound as long as the chain is counted.
    // A drain that waited for its own chain would never return: fail instead of hanging.
    finishes_or_aborts(&rt, "the drain waited for its own chain", || {
        rt.drain().unwrap();
    });
    assert_eq!(INNER_RETIRED.load(Ordering::Relaxed), CHAIN as u64);
    rt.drain_and_wait().unwrap();
    let s = rt.stats();
    assert_eq!((s.pending, s.drained), (0, 2 * CHAIN as u64), "{s:?}");
}

/// A writer that replaces the object it has just read, under its own read guard (read, copy,
/// update): the objects it displaces wait for a grace period that guard holds up, so past the
/// bound it must go on rather than wait. With a drainer thread and `Policy::AlwaysDefer` it
/// waited for that thread, which could destroy nothing: after `max_pending` + 1 replaces it
/// spun for good.
#[test]
fn a_writer_holding_a_read_guard_goes_on_past_the_bound_whoever_drains() {
    let _serial = serial();
    const REPLACES: u64 = 4 * SMALL_BOUND as u64;
    for (policy, drainer) in [
        (Policy::AlwaysDefer, Drainer::Thread),
        (Policy::Auto, Drainer::Thread),
        (Policy::AlwaysDefer, Drainer::Manual),
    ] {
        let rt = Runtime::builder()
            .policy(policy)
            .drainer(drainer)
            .max_pending(SMALL_BOUND)
            .build()
            .unwrap();
        let slot: ReadSlot<Box<u64>> = ReadSlot::new(&rt);
        slot.xchg(Some(Box::new(0))).unwrap();
        let what = format!("{policy:?}, {drainer:?}: a writer waited for its own read guard");
        finishes_or_aborts(&rt, &what, || {
            let guard = sigdrop::read::enter();
            for i in 1..=REPLACES {
                let seen = *slot.load(&guard).expect("the slot is never empty");
                assert_eq!(seen, i - 1);
                drop(slot.replace(Box::new(i)).unwrap());
            }
            drop(guard);
        });
        // Once the guard is gone, everything it held up is destroyed.
        rt.drain_and_wait().unwrap();
        let s = rt.stats();
        assert_eq!(
            (s.pending, s.drained),
            (0, REPLACES),
            "{policy:?}, {drainer:?}: {s:?}"
        );
    }
}

/// Objects whose destructor allocates (a scratch buffer), so that destruction is slower than
/// supply, as in a workload that logs or formats on teardown.
struct Slow(#[allow(dead_code)] Vec<u8>);

static SLOW_MADE: AtomicU64 = AtomicU64::new(0);
static SLOW_GONE: AtomicU64 = AtomicU64::new(0);

impl Slow {
    fn new() -> Slow {
        SLOW_MADE.fetch_add(1, Ordering::Relaxed);
        Slow(vec![1; 1024])
    }
}

impl Drop for Slow {
    fn drop(&mut self) {
        let scratch: Vec<u64> = (0..256).collect();
        std::hint::black_box(&scratch);
        SLOW_GONE.fetch_add(1, Ordering::Relaxed);
    }
}

/// A handler's objects are bounded by the ordinary code that supplies them: one thread installs
/// values that a "handler" (restricted context) clears, each going with a job, while another
/// replaces readable values (batches, grace periods) and takes some in a handler. Installs that
/// found a spare job used to supply without looking at the backlog, and a drain hands a chain's
/// jobs back as soon as its readable objects are batched, so the pool's jobs were queued again
/// on top of the batches: `peak_pending` reached 2-3x the bound (the pool grew past it too),
/// while each kind of work alone stayed within it.
#[test]
fn handlers_tearing_down_supplied_values_stay_within_the_bound() {
    let _serial = serial();
    const BOUND: usize = 512;
    const THREADS: usize = 2;
    const MIX_SHARDS: usize = 2;
    let rt = Runtime::builder()
        .shards(MIX_SHARDS)
        .max_pending(BOUND)
        .build()
        .unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (rt, stop) = (&rt, &stop);
        s.spawn(move || {
            let slot: RefSlot<Box<Slow>> = RefSlot::new(rt);
            while !stop.load(Ordering::Relaxed) {
                drop(slot.xchg(Some(Box::new(Slow::new()))).unwrap());
                let _handler = restricted::enter();
                slot.clear();
            }
        });
        s.spawn(move || {
            let slot: ReadSlot<Arc<Slow>> = ReadSlot::new(rt);
            let mut take = false;
            while !stop.load(Ordering::Relaxed) {
                drop(slot.xchg(Some(Arc::new(Slow::new()))).unwrap());
                // Every other value is taken in a handler (then the next write is an install).
                take = !take;
                if take {
                    let _handler = restricted::enter();
                    drop(slot.take());
                }
            }
        });
        let until = Instant::now() + WRITE_FOR;
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
    });
    rt.drain_and_wait().unwrap();
    let s = rt.stats();
    eprintln!("{s:?}");
    // The bound, plus each shard's open batch of readable objects (the only open batches
    // here: the handlers' objects go with jobs), plus per thread a batch closed before its
    // check and the installs it makes between two looks at the backlog (one in 64).
    let bound = BOUND + BATCH * (MIX_SHARDS + 2 * THREADS);
    assert!(
        s.peak_pending <= bound,
        "backlog {} over the bound {bound}: {s:?}",
        s.peak_pending
    );
    assert_eq!(
        SLOW_MADE.load(Ordering::Relaxed),
        SLOW_GONE.load(Ordering::Relaxed),
        "{s:?}"
    );
}

/// One thread installs into two runtimes in turn, and a "handler" (restricted context) tears
/// down each value. Its installs find spare jobs, so what bounds each runtime's backlog is the
/// look one install in 64 takes: counted per thread only, every look fell on one of the two,
/// and the other's backlog reached its whole pool (1 024 against a bound of 64).
#[test]
fn installs_alternating_between_two_runtimes_look_at_each_backlog() {
    let _serial = serial();
    const POOL: usize = 1024;
    const INSTALLS: usize = 4 * POOL;
    let runtime = || {
        Runtime::builder()
            .drainer(Drainer::Manual)
            .max_pending(SMALL_BOUND)
            .headroom(POOL)
            .build()
            .unwrap()
    };
    let runtimes = [runtime(), runtime()];
    let slots: Vec<RefSlot<Box<u64>>> = runtimes.iter().map(RefSlot::new).collect();
    for i in 0..INSTALLS as u64 {
        for slot in &slots {
            assert!(slot.xchg(Some(Box::new(i))).unwrap().is_none());
            let _handler = restricted::enter();
            slot.clear();
        }
    }
    for rt in &runtimes {
        let s = rt.stats();
        // The bound, plus the installs between two looks, plus the batch a drain may be
        // closing.
        let bound = SMALL_BOUND + 64 + BATCH;
        assert!(
            s.peak_pending <= bound,
            "runtime {}: backlog {} over {bound}: {s:?}",
            rt.id(),
            s.peak_pending
        );
        rt.drain_and_wait().unwrap();
        assert_eq!(rt.stats().pending, 0);
    }
}

/// A reader that waits for an installing thread while its own guard holds the backlog over the
/// bound: the installs look at the backlog (one in 64 that find a spare job, every one that
/// finds none) and find it over, but each goes on after a short wait, rather than wait for the
/// readers, which wait for it. `kept`: each install goes into a slot of its own and stays
/// there, so that the spare jobs run out and the installs need the pool to grow (the objects
/// over the bound, in batches, hold no job that waiting could give back); otherwise one slot
/// is filled and emptied, and every install finds a spare job.
fn installs_under_a_reader_that_waits_for_them(kept: bool) {
    let _serial = serial();
    const INSTALLS: usize = 4 * 64;
    // One shard: the writer's objects fill closed batches, not open ones on several CPUs
    // (which the backlog leaves out), so the bound is passed for sure.
    let rt = Runtime::builder()
        .shards(1)
        .max_pending(SMALL_BOUND)
        .build()
        .unwrap();
    let readable: ReadSlot<Box<u64>> = ReadSlot::new(&rt);
    readable.xchg(Some(Box::new(0))).unwrap();
    let plain: Vec<RefSlot<Box<u64>>> = (0..if kept { INSTALLS } else { 1 })
        .map(|_| RefSlot::new(&rt))
        .collect();
    let what = "an install waited for a reader that waited for it";
    finishes_or_aborts(&rt, what, || {
        let guard = sigdrop::read::enter();
        // Past the bound under its own guard (a writer holding a guard goes on past it).
        for i in 1..=2 * SMALL_BOUND as u64 {
            drop(readable.replace(Box::new(i)).unwrap());
        }
        assert!(rt.stats().pending > SMALL_BOUND, "{:?}", rt.stats());
        // Now it waits for the installer, guard held.
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..INSTALLS {
                    let slot = &plain[i % plain.len()];
                    assert!(slot.xchg(Some(Box::new(i as u64))).unwrap().is_none());
                    if !kept {
                        drop(slot.take());
                    }
                }
            });
        });
        drop(guard);
    });
    drop(plain);
    rt.drain_and_wait().unwrap();
    assert_eq!(rt.stats().pending, 0);
}

#[test]
fn installs_finding_spare_jobs_never_wait_for_a_reader_that_waits_for_them() {
    installs_under_a_reader_that_waits_for_them(false);
}

#[test]
fn installs_growing_the_pool_never_wait_for_a_reader_that_waits_for_them() {
    installs_under_a_reader_that_waits_for_them(true);
}

/// Set by a `Blocker`'s destructor when it starts; it returns once `RELEASE` is set.
static BLOCKED: AtomicBool = AtomicBool::new(false);
static RELEASE: AtomicBool = AtomicBool::new(false);

/// An object whose destructor holds up the drain that runs it (the chain it came in, with it)
/// until the test lets it go.
struct Blocker;

impl Drop for Blocker {
    fn drop(&mut self) {
        BLOCKED.store(true, Ordering::Release);
        while !RELEASE.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
    }
}

/// The pool grows for an install only while the backlog plus the jobs that chains being run
/// still hold for objects they closed into batches is under the bound. A chain of readable
/// objects torn down in a handler is batched by the drain that takes it, and another thread
/// destroys those batches, while the chain's walk is held up (here, by a destructor further
/// along it): the backlog reads almost nothing, yet every job of the chain is still the
/// walk's, none spare. Installs then wait for the walk rather than grow the pool by as many
/// jobs as they make (a manual drainer: they run cycles, which find nothing to run, until the
/// walk is done).
#[test]
fn installs_do_not_grow_the_pool_for_jobs_a_held_up_chain_keeps_after_batching() {
    let _serial = serial();
    // A chain of this many readable objects (four batches), then the blocker.
    const READABLE: usize = 4 * BATCH;
    // Installs made while the chain is held up: each needs a job of its own.
    const INSTALLS: usize = 4 * HEADROOM;
    let rt = Runtime::builder()
        .shards(1)
        .drainer(Drainer::Manual)
        .max_pending(SMALL_BOUND)
        .headroom(HEADROOM)
        // No jobs kept for regrowth: the pool is the chain's jobs, the spare ones and the
        // installs'.
        .regrowth_window(Duration::ZERO)
        .build()
        .unwrap();
    let readable: Vec<ReadSlot<Box<u64>>> = (0..READABLE).map(|_| ReadSlot::new(&rt)).collect();
    for (i, slot) in readable.iter().enumerate() {
        assert!(slot.xchg(Some(Box::new(i as u64))).unwrap().is_none());
    }
    let blocker: RefSlot<Box<Blocker>> = RefSlot::new(&rt);
    assert!(blocker.xchg(Some(Box::new(Blocker))).unwrap().is_none());
    {
        // As a handler would: each object goes with its job onto the one list, the blocker
        // last (a chain is walked oldest first).
        let _handler = restricted::enter();
        for slot in &readable {
            drop(slot.take());
        }
        blocker.clear();
    }
    assert_eq!(rt.stats().pending, READABLE + 1);
    let installed: Vec<RefSlot<Box<u64>>> = (0..INSTALLS).map(|_| RefSlot::new(&rt)).collect();
    let done = AtomicU64::new(0);
    let (pool_while_held, installs_done, before) = std::thread::scope(|s| {
        // The chain's drain: batches the readable objects (the chain still holds their jobs),
        // then stops in the blocker's destructor.
        let walker = s.spawn(|| rt.drain().unwrap());
        common::wait_until(
            Duration::from_secs(20),
            "the chain's walk to reach the blocker",
            || format!("{:?}", rt.stats()),
            || BLOCKED.load(Ordering::Acquire),
        );
        // Another thread destroys the batches: only the blocker is left in the backlog.
        common::wait_until(
            Duration::from_secs(20),
            "the batches to be destroyed",
            || format!("{:?}", rt.stats()),
            || {
                rt.drain().unwrap();
                rt.stats().pending == 1
            },
        );
        let before = rt.stats();
        let (installed, done) = (&installed, &done);
        let installer = s.spawn(move || {
            for (i, slot) in installed.iter().enumerate() {
                assert!(slot.xchg(Some(Box::new(i as u64))).unwrap().is_none());
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
        // The installs are all made, or one is waiting: it runs a cycle on each pass (counted
        // in `helped`), and nothing else runs any now.
        common::wait_until(
            Duration::from_secs(20),
            "the installs to finish or to wait",
            || format!("{before:?} then {:?}", rt.stats()),
            || installer.is_finished() || rt.stats().helped >= before.helped + 10_000,
        );
        let pool = rt.stats().peak_total;
        let installs_done = done.load(Ordering::Relaxed);
        RELEASE.store(true, Ordering::Release);
        walker.join().unwrap();
        // Once the walk is done its jobs are spare again (and its batched objects counted
        // nowhere): the installs go on.
        let what = "the installs waited on once the chain was done";
        finishes_or_aborts(&rt, what, || installer.join().unwrap());
        eprintln!(
            "pool {} before the installs, peaked at {pool} while the chain was held up, \
             {installs_done} of {INSTALLS} installs made then; {before:?}",
            before.total
        );
        (pool, installs_done, before)
    });
    // The chain's jobs were still the walk's then: active, not idle.
    assert_eq!(before.active, READABLE + 1, "{before:?}");
    // The chain's jobs (the readable objects' and the blocker's), the spare jobs (the headroom,
    // and half as many again before a trim) and the one job of an install that grew the pool.
    let pool_bound = READABLE + 1 + HEADROOM + HEADROOM / 2 + 1;
    assert!(
        pool_while_held <= pool_bound,
        "the pool grew to {pool_while_held} jobs (over {pool_bound}) for {installs_done} installs \
         while a held-up chain kept the jobs of its batched objects: {:?}",
        rt.stats()
    );
    drop(installed);
    drop(readable);
    rt.drain_and_wait().unwrap();
    assert_eq!(rt.stats().pending, 0, "{:?}", rt.stats());
}

/// A writer whose batches a drain closes before they fill (here the writer's own drain after
/// each write, as a drainer thread's cycles close a slow writer's) opens a batch with every
/// object, and never fills one: the first object of a batch looks at the backlog too. So while
/// another thread's read guard holds the closed batches up, the writer waits at the bound
/// (running cycles, which find nothing ready), rather than queue batches of one without end.
#[test]
fn a_writer_whose_batches_are_closed_before_they_fill_stays_within_the_bound() {
    let _serial = serial();
    const WRITES: usize = 4 * SMALL_BOUND;
    let rt = Runtime::builder()
        .shards(1)
        .drainer(Drainer::Manual)
        .max_pending(SMALL_BOUND)
        .build()
        .unwrap();
    let slot: ReadSlot<Box<u64>> = ReadSlot::new(&rt);
    slot.xchg(Some(Box::new(0))).unwrap();
    let done = AtomicU64::new(0);
    // Held by this thread, not the writer's (a writer under its own guard goes on).
    let guard = sigdrop::read::enter();
    let (waiting, writes) = std::thread::scope(|s| {
        let (rt, slot, done) = (&rt, &slot, &done);
        let writer = s.spawn(move || {
            for i in 1..=WRITES as u64 {
                drop(slot.replace(Box::new(i)).unwrap());
                rt.drain().unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
        let before = rt.stats();
        // The writes are all made, or the writer waits: it runs a cycle on each pass (counted
        // in `helped`), and nobody else runs any.
        common::wait_until(
            Duration::from_secs(20),
            "the writes to finish or to wait",
            || format!("{before:?} then {:?}", rt.stats()),
            || writer.is_finished() || rt.stats().helped >= before.helped + 10_000,
        );
        let waiting = rt.stats().pending;
        let writes = done.load(Ordering::Relaxed);
        drop(guard);
        let what = "the writer waited on once the read guard was gone";
        finishes_or_aborts(rt, what, || writer.join().unwrap());
        (waiting, writes)
    });
    // The bound (a write goes on while the backlog is at it, so one more passes it), and the
    // object that opened the batch which found the backlog over it.
    assert!(
        waiting <= SMALL_BOUND + 2,
        "{waiting} objects waiting (over {SMALL_BOUND} + 2) after {writes} of {WRITES} writes: {:?}",
        rt.stats()
    );
    rt.drain_and_wait().unwrap();
    let s = rt.stats();
    assert_eq!((s.pending, s.drained), (0, WRITES as u64), "{s:?}");
}
