//! Objects made in ordinary context and let go of in restricted context as fast as one thread
//! can: the supply side of handlers' hand-overs keeps the backlog bounded.
//!
//! Handlers never help and never wait, so what bounds their backlog is the ordinary code that
//! feeds them. For objects with jobs, an install that finds no spare job while the backlog is
//! over `max_pending` helps (or waits for the drainer) rather than grow the pool; before, a thread
//! installing `Box`es and tearing them down in restricted context in a loop grew the pool to
//! 292 508 jobs and the backlog to 291 782 objects in two seconds, against a bound of 4096. For
//! owned boxes, which need no job and whose push counts nothing, the maker of a box that takes
//! the count of boxes past a multiple of 64 helps if boxes wait and no drain cycle has finished
//! since the last maker looked; before,
//! one thread making and dropping boxes that way left ten million of them waiting (668 MB)
//! after six seconds.
//!
//! Each case runs a fixed number of iterations on the test thread, under every policy and
//! drainer, and samples the figures as it goes; bounds are asserted on counts, never on time.
//! With `Drainer::Manual` nobody else drains at all, so without the supply side's help these
//! figures would grow with the iterations.
//!
//! While a drainer thread exists, the supplying thread never runs other objects' destructors
//! itself: it waits for the drainer thread, and goes on over the bound once that thread has
//! destroyed nothing for a while. The last test holds a lock that the pending destructors take
//! (a registry's, say) while it installs and makes boxes over the bound, and another thread
//! keeps draining boxes of its own: running them there would deadlock, and so would waiting for
//! the drainer, blocked on that lock, for as long as the backlog stays over the bound or other
//! threads' destructors keep finishing.

mod common;

use common::wait_until;
use sigdrop::{Drainer, Owned, Policy, ReadSlot, RefSlot, Runtime, Stats, Wake, read, restricted};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The bound under test (the smallest allowed, so that the loops hit it at once).
const MAX_PENDING: usize = 64;
/// Iterations per case: far past every bound below.
const ITERATIONS: usize = 100_000;
/// Iterations between two samples of the figures.
const SAMPLE_EVERY: usize = 256;
/// The maker of a box that takes the count of boxes past a multiple of this looks whether the
/// drainers keep up (`KEEP_UP_EVERY` in the crate).
const KEEP_UP_EVERY: usize = 64;

/// Objects made and destroyed, per case (the cases run in parallel: one counter pair each).
struct Counts {
    made: AtomicU64,
    destroyed: AtomicU64,
}

impl Counts {
    fn new() -> Arc<Counts> {
        Arc::new(Counts {
            made: AtomicU64::new(0),
            destroyed: AtomicU64::new(0),
        })
    }
}

struct Obj(Arc<Counts>);

impl Obj {
    fn new(counts: &Arc<Counts>) -> Obj {
        counts.made.fetch_add(1, Ordering::Relaxed);
        Obj(Arc::clone(counts))
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        assert!(!restricted::is_active(), "destroyed in restricted context");
        self.0.destroyed.fetch_add(1, Ordering::Relaxed);
    }
}

const CASES: [(Policy, Drainer); 4] = [
    (Policy::Auto, Drainer::Thread),
    (Policy::Auto, Drainer::Manual),
    (Policy::AlwaysDefer, Drainer::Thread),
    (Policy::AlwaysDefer, Drainer::Manual),
];

fn runtime(policy: Policy, drainer: Drainer, headroom: usize) -> Runtime {
    Runtime::builder()
        .policy(policy)
        .drainer(drainer)
        .headroom(headroom)
        .max_pending(MAX_PENDING)
        .build()
        .unwrap()
}

/// Runs `ITERATIONS` of `step`, sampling `figure` of the stats; returns the highest sample,
/// and how many times a supplier gave up waiting for the drainer thread (one that gets no CPU
/// for a while on a loaded machine; none without a drainer thread, where suppliers drain
/// themselves). Each give-up lets a bounded number of objects over the bound.
fn peak(
    rt: &Runtime,
    mut step: impl FnMut(),
    mut figure: impl FnMut(&Stats) -> usize,
) -> (usize, usize) {
    let mut peak = 0;
    for i in 0..ITERATIONS {
        step();
        if i % SAMPLE_EVERY == 0 {
            peak = peak.max(figure(&rt.stats()));
        }
    }
    (peak, rt.stats().drainer_stalls as usize)
}

/// Waits, 20 s at most, until `worker` (a thread of its own, not a scoped one: if it hangs, the
/// test fails rather than waits) has set `done`; then joins it.
fn finished_in_time(
    rt: &Runtime,
    what: &str,
    done: &AtomicBool,
    worker: std::thread::JoinHandle<()>,
) {
    wait_until(
        Duration::from_secs(20),
        what,
        || format!("{:?}", rt.stats()),
        || done.load(Ordering::Acquire),
    );
    worker.join().unwrap();
}

/// Every object made so far is destroyed once `rt` has drained and gone.
fn all_destroyed(rt: Runtime, counts: &Counts) {
    let made = counts.made.load(Ordering::Relaxed);
    rt.drain_and_wait().unwrap();
    drop(rt);
    assert_eq!(counts.destroyed.load(Ordering::Relaxed), made);
}

/// Every object made was destroyed once, when everything has been drained.
fn settle(rt: Runtime, counts: &Counts, case: &str) {
    rt.drain_and_wait().unwrap();
    drop(rt);
    let made = counts.made.load(Ordering::Relaxed);
    assert_eq!(made, ITERATIONS as u64, "{case}");
    assert_eq!(counts.destroyed.load(Ordering::Relaxed), made, "{case}");
}

#[test]
fn installs_feeding_restricted_teardowns_keep_the_pool_and_the_backlog_bounded() {
    // The default headroom, whose refills look at the backlog before the pool runs dry; and
    // none, where every install that finds no spare job is one that would grow the pool.
    for ((policy, drainer), headroom) in CASES.into_iter().flat_map(|c| [(c, 64), (c, 0)]) {
        let case = format!("{policy:?}, {drainer:?}, headroom {headroom}");
        let counts = Counts::new();
        let rt = runtime(policy, drainer, headroom);
        let slot = RefSlot::new(&rt);
        let (mut peak_pending, mut peak_kept) = (0, 0);
        let (peak_pool, give_ups) = peak(
            &rt,
            || {
                // An install into the empty slot claims a job (growing the pool if none is
                // spare); the teardown queues the object with it.
                assert!(
                    slot.xchg(Some(Box::new(Obj::new(&counts))))
                        .unwrap()
                        .is_none()
                );
                let _nmi = restricted::enter();
                slot.clear();
            },
            |s| {
                peak_pending = peak_pending.max(s.pending);
                peak_kept = peak_kept.max(s.kept);
                s.total
            },
        );
        let s = rt.stats();
        // The spare jobs the pool keeps: the headroom, the trim's hysteresis (half of it), and
        // what the regrowth window keeps (never more than trims freed). Installs that find one
        // look at the backlog only once in 64, so it may pass the bound by about that many. One
        // that finds none and gives up waiting grows the pool by a headroom's worth (at least
        // one job), and lets the installs after it go on, while the drainer thread still
        // finishes nothing, by up to `MAX_PENDING` jobs. The pool: the backlog and the spare
        // jobs.
        let spare = headroom + headroom / 2 + peak_kept;
        let backlog_bound = MAX_PENDING + 64 + spare + give_ups * (headroom.max(1) + MAX_PENDING);
        assert!(
            peak_pending <= backlog_bound,
            "{case}: backlog {peak_pending} > {backlog_bound}: {s:?}"
        );
        let pool_bound = backlog_bound + spare;
        assert!(
            peak_pool <= pool_bound,
            "{case}: pool {peak_pool} > {pool_bound}: {s:?}"
        );
        eprintln!("{case}: peak backlog {peak_pending}, peak pool {peak_pool}");
        drop(slot);
        settle(rt, &counts, &case);
    }
}

#[test]
fn owned_boxes_dropped_in_restricted_context_as_fast_as_they_are_made_stay_bounded() {
    for (policy, drainer) in CASES {
        let case = format!("{policy:?}, {drainer:?}");
        let counts = Counts::new();
        let rt = runtime(policy, drainer, 64);
        let (peak_alive, give_ups) = peak(
            &rt,
            || {
                let boxed = Owned::new(&rt, Obj::new(&counts));
                let _nmi = restricted::enter();
                drop(boxed);
            },
            |s| s.owned_alive,
        );
        // Every box alive at a sample is one this thread dropped: on a list, or in the chain
        // a drainer is running. A maker helps within `KEEP_UP_EVERY` boxes of the last finished
        // cycle, so a cycle finds at most a few of those intervals' worth. Each time a maker
        // gave up waiting for a drainer thread that got no CPU: one more, and the intervals
        // after it go on while that thread still finishes nothing, up to `MAX_PENDING` boxes
        // (rounded up to whole intervals).
        let per_give_up = 1 + MAX_PENDING.div_ceil(KEEP_UP_EVERY) + 1;
        let bound = (4 + give_ups * per_give_up) * KEEP_UP_EVERY;
        assert!(
            peak_alive <= bound,
            "{case}: {peak_alive} boxes alive > {bound}: {:?}",
            rt.stats()
        );
        eprintln!("{case}: peak boxes alive {peak_alive}");
        settle(rt, &counts, &case);
    }
}

#[test]
fn makers_of_owned_boxes_do_not_help_while_drains_keep_up() {
    let counts = Counts::new();
    let rt = runtime(Policy::Auto, Drainer::Manual, 64);
    // A drain after every 64th box: whenever a maker looks (at the 64th box alive), 63 boxes
    // wait, and a drain cycle has finished since the last look. The drains keep up: nobody
    // else has to.
    for i in 0..ITERATIONS {
        let boxed = Owned::new(&rt, Obj::new(&counts));
        {
            let _nmi = restricted::enter();
            drop(boxed);
        }
        if i % KEEP_UP_EVERY == KEEP_UP_EVERY - 1 {
            rt.drain().unwrap();
        }
    }
    let s = rt.stats();
    assert_eq!(
        s.helped, 0,
        "a maker ran a cycle although drains kept up: {s:?}"
    );
    settle(rt, &counts, "drains keeping up");
}

/// The name of the thread that keeps draining boxes of its own beside the supplier.
const NEIGHBOUR: &str = "neighbour";

/// Serialises the tests that use [`REGISTRY`] and [`BLOCKED`] (tests run in parallel: one
/// holding the registry would block the other's drainer thread).
fn registry_tests() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The lock of a registry whose objects' destructors take it.
static REGISTRY: Mutex<()> = Mutex::new(());

/// An object whose destructor takes the registry's lock (then counts itself destroyed) —
/// except on the neighbour thread, whose drains must keep finishing destructors.
struct Registered {
    _counted: Obj,
}

impl Registered {
    fn new(counts: &Arc<Counts>) -> Registered {
        Registered {
            _counted: Obj::new(counts),
        }
    }
}

/// Set by a destructor of a [`Registered`] object just before it takes the registry's lock.
static BLOCKED: AtomicBool = AtomicBool::new(false);

/// [`Registered`] objects the neighbour thread destroyed.
static NEIGHBOUR_DESTROYED: AtomicU64 = AtomicU64::new(0);

/// Drains that finished destructors beside the supplier (the neighbour's, or A's drainer
/// thread's drains of B), in this try.
static DRAINS_BESIDE: AtomicU64 = AtomicU64::new(0);

/// Before the supplier starts waiting, the drains beside it are under way, so that they
/// finish destructors all through its wait (were they slow to start, its patience could run
/// out first and prove nothing). Gives up after a while: a try whose drains beside block on
/// the lock held here (`Setup::Raced`) must still end.
fn drains_beside_under_way() {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while DRAINS_BESIDE.load(Ordering::Acquire) < 3 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
}

/// Objects the lock-holding tests queue: far over the bound.
const QUEUED: usize = 4 * MAX_PENDING;

/// A runtime whose drainer thread takes every one of [`QUEUED`] objects in one chain and
/// blocks on the first: no spare jobs (an install over the bound would grow), one queue, and a
/// drainer thread woken when all of them are queued, not at the first. (It may still wake by
/// itself while they are queued: [`Setup::Raced`].)
fn one_chain_runtime(policy: Policy) -> Runtime {
    Runtime::builder()
        .policy(policy)
        .headroom(0)
        .max_pending(MAX_PENDING)
        .shards(1)
        .wake(Wake::Lazy {
            period: Duration::from_secs(1),
            high_watermark: QUEUED,
        })
        .build()
        .unwrap()
}

/// `n` slots of `rt`, each holding a [`Registered`] object (each install claims a job).
fn registered_slots(rt: &Runtime, counts: &Arc<Counts>, n: usize) -> Vec<RefSlot<Box<Registered>>> {
    let slots: Vec<RefSlot<Box<Registered>>> = (0..n).map(|_| RefSlot::new(rt)).collect();
    for slot in &slots {
        let object = Box::new(Registered::new(counts));
        assert!(slot.xchg(Some(object)).unwrap().is_none());
    }
    slots
}

/// The supplier's opening: takes the registry's lock, tears `slots` down in restricted context
/// (over the bound: objects the drainer thread will block on), and waits until it has. Returns
/// the lock, still held.
fn queue_under_the_registry(slots: &[RefSlot<Box<Registered>>]) -> MutexGuard<'static, ()> {
    let registry = REGISTRY.lock().unwrap();
    {
        let _nmi = restricted::enter();
        for slot in slots {
            slot.clear();
        }
    }
    while !BLOCKED.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    registry
}

impl Drop for Registered {
    fn drop(&mut self) {
        if std::thread::current().name() == Some(NEIGHBOUR) {
            NEIGHBOUR_DESTROYED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        BLOCKED.store(true, Ordering::Release);
        let _registry = REGISTRY
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

#[test]
fn a_supplier_holding_a_lock_the_pending_destructors_take_goes_on_past_the_bound() {
    let _serial = registry_tests();
    // Each policy alone, then with a neighbour: another thread that keeps handing boxes over and
    // draining them itself, whose destructors finish all along but say nothing about the
    // drainer thread the supplier waits for.
    let cases = [Policy::Auto, Policy::AlwaysDefer]
        .into_iter()
        .flat_map(|policy| [(policy, false), (policy, true)]);
    for (policy, with_neighbour) in cases {
        let case = format!("{policy:?}, neighbour: {with_neighbour}");
        // A try where the neighbour destroyed queued objects proves nothing (see `Setup`):
        // try again, a bounded number of times.
        let tries = (1..=ATTEMPTS)
            .find(|_| supplier_holding_the_lock(&case, policy, with_neighbour) == Setup::Held);
        assert!(
            tries.is_some(),
            "{case}: the neighbour destroyed queued objects in all {ATTEMPTS} tries"
        );
    }
}

/// Tries of a case whose set-up can race with the drainer thread.
const ATTEMPTS: usize = 10;

/// Whether a try of [`supplier_holding_the_lock`] tested what it is for.
#[derive(Debug, PartialEq, Eq)]
enum Setup {
    /// The drainer thread took every queued object and blocked on the first: the backlog stayed
    /// over the bound while the supplier went on.
    Held,
    /// The drainer thread woke while the objects were being queued and took only the first
    /// ones; the neighbour destroyed the rest (its drains take whatever is queued), so the
    /// supplier found the backlog gone and had nothing to wait for.
    Raced,
}

/// One try of a supplier that holds the lock the queued destructors take, over the bound, with
/// `policy` and, if `with_neighbour`, a neighbour thread draining beside it. Panics if the
/// supplier does not go on, or a destructor is lost.
fn supplier_holding_the_lock(case: &str, policy: Policy, with_neighbour: bool) -> Setup {
    let counts = Counts::new();
    let rt = one_chain_runtime(policy);
    let slots = registered_slots(&rt, &counts, QUEUED);
    BLOCKED.store(false, Ordering::Release);
    NEIGHBOUR_DESTROYED.store(0, Ordering::Relaxed);
    DRAINS_BESIDE.store(0, Ordering::Relaxed);
    let done = Arc::new(AtomicBool::new(false));
    // Threads of their own, not scoped ones: if the supplier hangs, the test fails rather
    // than waits.
    let supplier = {
        let (rt, counts, done) = (rt.clone(), Arc::clone(&counts), Arc::clone(&done));
        std::thread::spawn(move || {
            let registry = queue_under_the_registry(&slots);
            if with_neighbour {
                drains_beside_under_way();
            } else {
                // And boxes nobody else drains.
                let _nmi = restricted::enter();
                for _ in 0..QUEUED {
                    drop(Owned::new(&rt, Registered::new(&counts)));
                }
            }
            // Still holding the lock: an install that needs a job the queued objects hold,
            // and boxes made while boxes wait.
            let extra = RefSlot::new(&rt);
            let object = Box::new(Registered::new(&counts));
            assert!(extra.xchg(Some(object)).unwrap().is_none());
            let more: Vec<_> = (0..4 * KEEP_UP_EVERY)
                .map(|_| Owned::new(&rt, Registered::new(&counts)))
                .collect();
            done.store(true, Ordering::Release);
            drop(registry);
            drop((extra, more, slots));
        })
    };
    // The drainer thread is blocked on the lock once it runs the first queued destructor.
    wait_until(
        Duration::from_secs(20),
        &format!("{case}: the drainer thread to block"),
        || format!("{:?}", rt.stats()),
        || BLOCKED.load(Ordering::Acquire),
    );
    let neighbour = with_neighbour.then(|| {
        let (rt, counts, done) = (rt.clone(), Arc::clone(&counts), Arc::clone(&done));
        let spawned = std::thread::Builder::new().name(NEIGHBOUR.into());
        spawned.spawn(move || {
            while !done.load(Ordering::Acquire) {
                let boxed = Owned::new(&rt, Obj::new(&counts));
                {
                    let _nmi = restricted::enter();
                    drop(boxed);
                }
                if rt.drain().unwrap() > 0 {
                    DRAINS_BESIDE.fetch_add(1, Ordering::Release);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    });
    let neighbour = neighbour.map(|spawned| spawned.expect("spawn the neighbour"));
    wait_until(
        Duration::from_secs(20),
        &format!("{case}: the supplier to go on past the bound"),
        || format!("{:?}", rt.stats()),
        || done.load(Ordering::Acquire),
    );
    supplier.join().unwrap();
    if let Some(neighbour) = neighbour {
        neighbour.join().unwrap();
    }
    let setup = if NEIGHBOUR_DESTROYED.load(Ordering::Relaxed) > 0 {
        Setup::Raced
    } else {
        Setup::Held
    };
    let made = counts.made.load(Ordering::Relaxed);
    rt.drain_and_wait().unwrap();
    drop(rt);
    assert_eq!(counts.destroyed.load(Ordering::Relaxed), made, "{case}");
    setup
}

#[test]
fn a_thread_holding_a_lock_the_destructors_take_hands_over_and_installs_without_waiting_at_every_call()
 {
    let _serial = registry_tests();
    // A registry rebuilt under its own lock, whose entries' destructors take that lock: under
    // `AlwaysDefer` with a drainer thread, every old entry goes to the drainer, which blocks on
    // the lock at the first one, while the rebuild keeps handing entries over and installing
    // new ones far past the bound.
    const BOUND: usize = 256;
    const N: usize = 16 * BOUND;
    let counts = Counts::new();
    let rt = Runtime::builder()
        .policy(Policy::AlwaysDefer)
        .max_pending(BOUND)
        .build()
        .unwrap();
    let (handed, queued) = (
        registered_slots(&rt, &counts, N),
        registered_slots(&rt, &counts, N),
    );
    let done = Arc::new(AtomicBool::new(false));
    // A thread of its own, not a scoped one: if it hangs, the test fails rather than waits.
    let rebuild = {
        let (rt, counts, done) = (rt.clone(), Arc::clone(&counts), Arc::clone(&done));
        std::thread::spawn(move || {
            let registry = REGISTRY.lock().unwrap();
            // Hand-overs in ordinary context, into batches: past the bound, each batch waits
            // for the drainer thread.
            for slot in &handed {
                slot.clear();
            }
            // Objects queued with their jobs (as a handler's teardowns would), then installs
            // that find no spare job: each waits for the drainer thread before growing one.
            {
                let _nmi = restricted::enter();
                for slot in &queued {
                    slot.clear();
                }
            }
            let fresh = registered_slots(&rt, &counts, N);
            done.store(true, Ordering::Release);
            drop(registry);
            drop((fresh, handed, queued));
        })
    };
    // Without the passes a give-up grants, the installs alone would wait 10 ms each: 41 s.
    finished_in_time(&rt, "the rebuild to finish", &done, rebuild);
    let s = rt.stats();
    // The drainer thread finished nothing all along (blocked on the lock, or not yet started
    // on an entry): each give-up let 64 objects over the bound, doubling up to `BOUND` at
    // each further one. What went over: N installs, and N hand-overs looked at twice (a batch
    // is checked when it opens and when it closes): 3N / BOUND give-ups, plus the first,
    // smaller grants. Granting nothing, or never more than 64, would take 3N / 64.
    let give_ups = s.drainer_stalls as usize;
    let allowed = 3 * N / BOUND + 3 * 8;
    assert!(
        (1..=allowed).contains(&give_ups),
        "{give_ups} give-ups (allowed 1..={allowed}): {s:?}"
    );
    eprintln!("rebuild under the lock: {give_ups} give-ups");
    all_destroyed(rt, &counts);
}

#[test]
fn installs_that_find_spare_jobs_give_up_on_a_drainer_stuck_on_their_lock_a_few_times_only() {
    let _serial = registry_tests();
    // As above, but the pool holds a spare job for every install: none of them grows it, and
    // the one install in 64 that looks at the backlog (over the bound, the drainer thread
    // blocked on the lock this thread holds) is what waits. Each look's wait is limited; a
    // look that let the limit end its wait rather than the drainer's patience would record
    // nothing and grant no pass, so that every look would wait its whole limit again: 64 of
    // them here, and none counted in `drainer_stalls`.
    const BOUND: usize = 256;
    const N: usize = 16 * BOUND;
    let counts = Counts::new();
    let rt = Runtime::builder()
        .policy(Policy::AlwaysDefer)
        .max_pending(BOUND)
        .headroom(2 * N)
        .build()
        .unwrap();
    let queued = registered_slots(&rt, &counts, N);
    let spare_before = rt.stats().spare;
    assert!(
        spare_before >= N,
        "{spare_before} spare jobs for {N} installs"
    );
    BLOCKED.store(false, Ordering::Release);
    let done = Arc::new(AtomicBool::new(false));
    let installer = {
        let (rt, counts, done) = (rt.clone(), Arc::clone(&counts), Arc::clone(&done));
        std::thread::spawn(move || {
            // The drainer thread is inside the first destructor before the first look.
            let registry = queue_under_the_registry(&queued);
            let fresh = registered_slots(&rt, &counts, N);
            done.store(true, Ordering::Release);
            drop(registry);
            drop((fresh, queued));
        })
    };
    finished_in_time(&rt, "the installs to finish", &done, installer);
    let s = rt.stats();
    // Every install found a spare job: the pool did not grow for them.
    assert!(
        s.peak_total <= spare_before + N + 64,
        "the pool grew to {}: {s:?}",
        s.peak_total
    );
    // Five give-ups before the drainer has been stuck for 40 ms since the first, then one per
    // grant (64 objects, doubling up to `BOUND`), each with its own look (64 installs) going
    // on: N / (BOUND + 64) give-ups once the grants reach `BOUND`, and a few before (17 here).
    // Zero means the looks' limit, not the patience, ended the waits.
    let give_ups = s.drainer_stalls as usize;
    let allowed = 8 + N / (BOUND + 64);
    assert!(
        (1..=allowed).contains(&give_ups),
        "{give_ups} give-ups (allowed 1..={allowed}): {s:?}"
    );
    all_destroyed(rt, &counts);
}

#[test]
fn a_writer_waits_for_a_drainer_that_waits_for_readers() {
    // Under `AlwaysDefer` with a drainer thread, a writer over the bound waits for that thread.
    // While a reader holds its guard, the drainer finishes nothing, but it is inside no
    // destructor either: it cannot be blocked on a lock the writer holds, so the writer waits
    // for the reader (as `synchronize` would) rather than give up and go on over the bound.
    const HOLD: Duration = Duration::from_millis(200);
    let counts = Counts::new();
    let rt = runtime(Policy::AlwaysDefer, Drainer::Thread, 64);
    let slot: ReadSlot<Box<Obj>> = ReadSlot::new(&rt);
    let entered = Arc::new(AtomicBool::new(false));
    let reader = {
        let entered = Arc::clone(&entered);
        std::thread::spawn(move || {
            let _guard = read::enter();
            entered.store(true, Ordering::Release);
            std::thread::sleep(HOLD);
        })
    };
    while !entered.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    // Far past the bound: the writer blocks once the backlog reaches it, until the reader
    // leaves.
    for _ in 0..64 * MAX_PENDING {
        let _ = slot.xchg(Some(Box::new(Obj::new(&counts)))).unwrap();
    }
    reader.join().unwrap();
    let s = rt.stats();
    // The drainer thread may still be caught inside a destructor for 10 ms on a loaded
    // machine, now and then (each such give-up lets a batch over the bound); giving up on a
    // drainer that waits for readers would do it every 10 ms of the hold.
    let give_ups = s.drainer_stalls as usize;
    assert!(
        give_ups <= 2,
        "{give_ups} give-ups while a reader held on: {s:?}"
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bound = MAX_PENDING + 64 * (cpus + 1) + give_ups * 64;
    assert!(
        s.peak_pending <= bound,
        "backlog {} over {bound} while a reader held on: {s:?}",
        s.peak_pending
    );
    drop(slot);
    rt.drain_and_wait().unwrap();
    drop(rt);
    let made = counts.made.load(Ordering::Relaxed);
    assert_eq!(counts.destroyed.load(Ordering::Relaxed), made);
}

/// A box of runtime A whose destructor, on A's drainer thread, hands a box of runtime B over
/// and drains B there.
struct DrainsB {
    b: Runtime,
    counts: Arc<Counts>,
}

impl Drop for DrainsB {
    fn drop(&mut self) {
        let boxed = Owned::new(&self.b, Obj::new(&self.counts));
        {
            let _nmi = restricted::enter();
            drop(boxed);
        }
        if self.b.drain().unwrap() > 0 {
            DRAINS_BESIDE.fetch_add(1, Ordering::Release);
        }
    }
}

#[test]
fn another_runtimes_drainer_draining_this_one_is_not_its_progress() {
    let _serial = registry_tests();
    let tries = (1..=ATTEMPTS).find(|_| drainer_of_a_draining_b() == Setup::Held);
    assert!(
        tries.is_some(),
        "B's drainer thread took only part of the queued objects in all {ATTEMPTS} tries"
    );
}

/// One try of [`another_runtimes_drainer_draining_this_one_is_not_its_progress`]: whether B's
/// drainer thread took every queued object in one chain (otherwise A's drainer, draining B,
/// destroys the rest, blocks on the lock itself, and the supplier has nothing to tell apart).
fn drainer_of_a_draining_b() -> Setup {
    let counts = Counts::new();
    // B's drainer thread takes every queued object in one chain and blocks on the first; the
    // drains A's drainer makes of B then find only its own boxes.
    let b = one_chain_runtime(Policy::Auto);
    let a = Runtime::new().unwrap();
    let slots = registered_slots(&b, &counts, QUEUED);
    BLOCKED.store(false, Ordering::Release);
    DRAINS_BESIDE.store(0, Ordering::Relaxed);
    let done = Arc::new(AtomicBool::new(false));
    let supplier = {
        let (b, counts, done) = (b.clone(), Arc::clone(&counts), Arc::clone(&done));
        std::thread::spawn(move || {
            let registry = queue_under_the_registry(&slots);
            drains_beside_under_way();
            // A's drainer thread keeps finishing B's destructors meanwhile (below): that is
            // not B's drainer thread, which stays blocked on the lock held here.
            let extra = RefSlot::new(&b);
            let object = Box::new(Registered::new(&counts));
            assert!(extra.xchg(Some(object)).unwrap().is_none());
            done.store(true, Ordering::Release);
            drop(registry);
            drop((extra, slots));
        })
    };
    wait_until(
        Duration::from_secs(20),
        "B's drainer thread to block",
        || format!("{:?}", b.stats()),
        || BLOCKED.load(Ordering::Acquire),
    );
    // Nobody else drains B yet: a chain shorter than everything queued was B's drainer's.
    let setup = if b.stats().peak_active == QUEUED {
        Setup::Held
    } else {
        Setup::Raced
    };
    let feeder = {
        let (a, b, counts, done) = (a.clone(), b.clone(), Arc::clone(&counts), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                let hop = DrainsB {
                    b: b.clone(),
                    counts: Arc::clone(&counts),
                };
                let boxed = Owned::new(&a, hop);
                {
                    let _nmi = restricted::enter();
                    drop(boxed);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    wait_until(
        Duration::from_secs(20),
        "the supplier to go on past the bound",
        || format!("{:?}", b.stats()),
        || done.load(Ordering::Acquire),
    );
    supplier.join().unwrap();
    feeder.join().unwrap();
    a.drain_and_wait().unwrap();
    drop(a);
    b.drain_and_wait().unwrap();
    drop(b);
    let made = counts.made.load(Ordering::Relaxed);
    assert_eq!(counts.destroyed.load(Ordering::Relaxed), made);
    setup
}
