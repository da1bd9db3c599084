//! A forked child keeps the runtime's promises: objects handed over in the child are destroyed
//! there (its drainer thread is started again), objects that wait for readers are not held up by
//! read guards of parent threads that do not exist in the child, `drain_and_wait` does not wait
//! for a drain a parent thread was in the middle of, and dropping a runtime whose drainer thread
//! was the parent's neither panics nor waits.
//!
//! The child reports through its exit status (one code per check) and never returns into the
//! test harness.

use sigdrop::{KptrHash, ReadSlot, RefSlot, Runtime, read, restricted};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone)]
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// Serialises the tests: they share the process's read domain (one holds a read guard across its
/// fork, which holds every grace period up meanwhile) and fork while others run.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls `cond` for up to five seconds.
fn within_5s(cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// The child's checks; `Err(code)` names the first that failed.
fn in_child(rt: Runtime, untouched: Runtime) -> Result<(), i32> {
    let dropped = Arc::new(AtomicUsize::new(0));

    // Handed over in restricted context, as a signal handler would: only a drainer thread can
    // run it (nobody calls `drain` here).
    let slot = RefSlot::new(&rt);
    let _ = slot
        .xchg(Some(Box::new(Counted(dropped.clone()))))
        .map_err(|_| 10)?;
    {
        let _restricted = restricted::enter();
        slot.clear();
    }
    if !within_5s(|| dropped.load(Ordering::Acquire) == 1) {
        return Err(11);
    }

    // Replaced in ordinary context while readers might borrow it: destroyed after a grace
    // period, which the parent's reader thread (absent here) must not hold up.
    let readable = ReadSlot::new(&rt);
    let _ = readable
        .xchg(Some(Box::new(Counted(dropped.clone()))))
        .map_err(|_| 12)?;
    readable.clear();
    if !within_5s(|| {
        let _ = rt.drain();
        dropped.load(Ordering::Acquire) == 2
    }) {
        return Err(13);
    }
    // And a guard taken in the child is still waited for.
    let guard = read::enter();
    let _ = readable
        .xchg(Some(Box::new(Counted(dropped.clone()))))
        .map_err(|_| 14)?;
    readable.clear();
    std::thread::sleep(Duration::from_millis(50));
    let _ = rt.drain();
    if dropped.load(Ordering::Acquire) != 2 {
        return Err(15);
    }
    drop(guard);
    if !within_5s(|| {
        let _ = rt.drain();
        dropped.load(Ordering::Acquire) == 3
    }) {
        return Err(16);
    }

    // A runtime never used in the child: its drainer is the parent's. Dropping it must neither
    // panic nor wait for that thread.
    match catch_unwind(AssertUnwindSafe(|| untouched.shutdown())) {
        Ok(Some(report)) if !report.drainer_waited => {}
        _ => return Err(17),
    }

    drop((slot, readable));
    match rt.shutdown() {
        Some(report) if report.drainer_waited && report.left_to_drainer == 0 => Ok(()),
        _ => Err(18),
    }
}

#[test]
fn a_forked_child_destroys_what_it_hands_over() {
    let _serial = serial();
    let rt = Runtime::new().unwrap();
    // No shutdown timeout: only knowing that its drainer does not exist in the child lets the
    // child's shutdown of it return.
    let untouched = Runtime::builder().shutdown_timeout(None).build().unwrap();
    // A parent thread inside a read-side section across the fork.
    let entered = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let reader = {
        let (entered, release) = (entered.clone(), release.clone());
        std::thread::spawn(move || {
            let _guard = read::enter();
            entered.store(true, Ordering::Release);
            while !release.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    while !entered.load(Ordering::Acquire) {
        std::thread::yield_now();
    }

    // The closure owns both runtimes: in the parent, where it never runs, they are dropped
    // with it, untouched by what the child did.
    let code = run_in_child(|| in_child(rt, untouched).err().unwrap_or(0));
    release.store(true, Ordering::Release);
    reader.join().unwrap();
    assert_eq!(code, 0, "child check failed (codes in in_child)");
}

/// Forks `child` and returns its exit status code; kills it (and fails) after 60 s.
fn run_in_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs `child` and leaves with `_exit`, never returning into the harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = catch_unwind(AssertUnwindSafe(child)).unwrap_or(99);
        // SAFETY: ends the child at once, without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    wait_for_child(pid)
}

/// Waits for child `pid` and returns its exit code; kills it and fails after 60 s.
fn wait_for_child(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // SAFETY: polls our own child.
        let waited = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if waited == pid {
            assert!(libc::WIFEXITED(status), "child status {status:#x}");
            return libc::WEXITSTATUS(status);
        }
        if Instant::now() >= deadline {
            // SAFETY: our own child, still running; then reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the child did not finish within 60 s (a lock held across fork?)");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn forks_while_a_writer_and_the_drainer_take_their_locks() {
    let _serial = serial();
    const FORKS: usize = 1_000;
    let rt = Runtime::builder().headroom(4).build().unwrap();
    let slot = Arc::new(ReadSlot::new(&rt));
    let stop = Arc::new(AtomicBool::new(false));
    // A writer replacing at full speed: batches close (the queue's lock) all the time, and the
    // drainer takes the queue's lock and trims (the grow lock) behind it.
    let writer = {
        let (slot, stop) = (slot.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                drop(slot.xchg(Some(Box::new(n))));
                n += 1;
            }
        })
    };
    let dropped = Arc::new(AtomicUsize::new(0));
    for _ in 0..FORKS {
        let code = run_in_child(|| {
            // Closes batches, runs them, grows and trims the pool: every lock the parent's
            // threads were taking.
            let mine = ReadSlot::new(&rt);
            for _ in 0..1_000 {
                drop(mine.xchg(Some(Box::new(Counted(dropped.clone())))));
            }
            drop(mine);
            if !within_5s(|| {
                let _ = rt.drain();
                dropped.load(Ordering::Acquire) == 1_000
            }) {
                return 20;
            }
            // Nothing the parent's threads had in flight stays counted here: a batch the
            // writer had filled but not queued, an open batch it was pushing to (whose lock
            // nobody here would release), a chain the parent's drainer was running.
            if rt.drain_and_wait().is_err() {
                return 21;
            }
            let pending = rt.stats().pending;
            if pending != 0 {
                eprintln!("child: {pending} objects pending after drain_and_wait");
                return 22;
            }
            0
        });
        assert_eq!(code, 0, "child check failed");
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

/// A two-bucket map that two writer threads keep inserting into and taking from (each holds a
/// bucket most of the time) until dropped.
struct BusyMap {
    map: Arc<KptrHash<u32, Box<u64>>>,
    stop: Arc<AtomicBool>,
    writers: Vec<std::thread::JoinHandle<()>>,
}

impl BusyMap {
    fn start(rt: &Runtime) -> BusyMap {
        let map: Arc<KptrHash<u32, Box<u64>>> = Arc::new(KptrHash::new(rt, 2).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let writers = (0..2u32)
            .map(|key| {
                let (map, stop) = (map.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        drop(map.insert(key, Box::new(n)));
                        drop(map.take(&key));
                        let _ = map.contains_key(&(key ^ 1));
                    }
                })
            })
            .collect();
        BusyMap { map, stop, writers }
    }

    /// Forks, and has the child use every bucket; its exit code (0: every check held).
    fn fork_and_use_every_bucket(&self) -> i32 {
        let map = &self.map;
        run_in_child(|| {
            // A bucket left taken would make these spin for ever: the alarm ends the child.
            // SAFETY: `alarm` only arms a timer.
            unsafe { libc::alarm(10) };
            for key in 0..4 {
                if map.contains_key(&key).is_err() {
                    return 40;
                }
            }
            // The chains are whole: every key the writers might have held comes and goes.
            for key in 0..2 {
                drop(map.take(&key));
                if map.insert(key, Box::new(7)).is_err() || map.take(&key).ok().flatten().is_none()
                {
                    return 41;
                }
            }
            if !map.is_empty() {
                return 42;
            }
            0
        })
    }
}

impl Drop for BusyMap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers.drain(..) {
            writer.join().unwrap();
        }
    }
}

#[test]
fn a_child_never_inherits_a_map_bucket_taken_by_another_thread() {
    let _serial = serial();
    let rt = Runtime::new().unwrap();
    let busy = BusyMap::start(&rt);
    for _ in 0..300 {
        std::thread::sleep(Duration::from_micros(200));
        assert_eq!(busy.fork_and_use_every_bucket(), 0, "child check failed");
    }
}

/// Forks from its destructor, which runs when its thread exits, and records the child's code
/// (or 98 if forking panicked).
struct ForksAtExit {
    busy: Option<Arc<BusyMap>>,
    code: Arc<std::sync::atomic::AtomicI32>,
}

impl Drop for ForksAtExit {
    fn drop(&mut self) {
        if let Some(busy) = self.busy.take() {
            let forked = catch_unwind(AssertUnwindSafe(|| busy.fork_and_use_every_bucket()));
            self.code.store(forked.unwrap_or(98), Ordering::SeqCst);
        }
    }
}

std::thread_local! {
    static FORKS_AT_EXIT: std::cell::RefCell<Option<ForksAtExit>> =
        const { std::cell::RefCell::new(None) };
}

#[test]
fn a_fork_from_a_thread_local_destructor_takes_the_locks_too() {
    let _serial = serial();
    let rt = Runtime::new().unwrap();
    let busy = Arc::new(BusyMap::start(&rt));
    for _ in 0..30 {
        let code = Arc::new(std::sync::atomic::AtomicI32::new(-1));
        let thread = {
            let (busy, code) = (busy.clone(), code.clone());
            std::thread::spawn(move || {
                // Registered before the fork below, so destroyed after what that fork set up
                // on this thread: the fork in it comes after sigdrop's own thread-locals here.
                FORKS_AT_EXIT.with(|f| *f.borrow_mut() = Some(ForksAtExit { busy: None, code }));
                assert_eq!(busy.fork_and_use_every_bucket(), 0, "child check failed");
                FORKS_AT_EXIT.with(|f| f.borrow_mut().as_mut().unwrap().busy = Some(busy));
            })
        };
        thread.join().unwrap();
        assert_eq!(
            code.load(Ordering::SeqCst),
            0,
            "the child forked at thread exit"
        );
    }
}

static BLOCKER_ENTERED: AtomicBool = AtomicBool::new(false);
static BLOCKER_RELEASE: AtomicBool = AtomicBool::new(false);
static BLOCKER_FIRST: AtomicBool = AtomicBool::new(true);

/// The first one destroyed blocks its drainer until the test releases it (bounded at 60 s).
struct Blocker;

impl Drop for Blocker {
    fn drop(&mut self) {
        if BLOCKER_FIRST.swap(false, Ordering::AcqRel) {
            BLOCKER_ENTERED.store(true, Ordering::Release);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !BLOCKER_RELEASE.load(Ordering::Acquire) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

#[test]
fn a_child_does_not_wait_for_batches_its_parent_was_destroying() {
    let _serial = serial();
    let rt = Runtime::builder()
        .drainer(sigdrop::Drainer::Manual)
        .max_pending(64)
        .build()
        .unwrap();
    let slot = ReadSlot::new(&rt);
    {
        // Under a guard: four batches wait for a grace period (the writer gives up on the bound
        // rather than wait for its own guard).
        let _guard = read::enter();
        for _ in 0..257 {
            drop(slot.xchg(Some(Box::new(Blocker))));
        }
    }
    // Another thread takes them all (once their grace period has passed) and blocks in the
    // first destructor; it drains what is left once released.
    let drainer = {
        let rt = rt.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let ran = rt.drain().unwrap();
                if ran == 0 && BLOCKER_RELEASE.load(Ordering::Acquire) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !BLOCKER_ENTERED.load(Ordering::Acquire) {
        assert!(
            Instant::now() < deadline,
            "the batches were never taken: {:?}",
            rt.stats()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let code = run_in_child(|| {
        // Closes batches: the back-pressure check must not count the parent's batches, which
        // nobody here will ever finish.
        let mine = ReadSlot::new(&rt);
        for _ in 0..1_000 {
            drop(mine.xchg(Some(Box::new(Counted(dropped.clone())))));
        }
        drop(mine);
        if !within_5s(|| {
            let _ = rt.drain();
            dropped.load(Ordering::Acquire) == 1_000
        }) {
            return 30;
        }
        // `drain_and_wait` waits for drains in progress: not for the parent's, which nobody
        // here will ever finish. On a thread of its own, so that a hang is reported, not waited
        // out.
        let returned = Arc::new(AtomicBool::new(false));
        {
            let (rt, returned) = (rt.clone(), returned.clone());
            std::thread::spawn(move || {
                let _ = rt.drain_and_wait();
                returned.store(true, Ordering::Release);
            });
        }
        if !within_5s(|| returned.load(Ordering::Acquire)) {
            return 31;
        }
        0
    });
    BLOCKER_RELEASE.store(true, Ordering::Release);
    drainer.join().unwrap();
    assert_eq!(code, 0, "child check failed");
}

#[test]
fn boxes_cloned_in_a_child_before_it_starts_a_drainer_stay_bounded() {
    use sigdrop::Owned;
    let _serial = serial();
    let rt = Runtime::new().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let template = Owned::new(&rt, Counted(dropped.clone()));
    let code = run_in_child(move || {
        // A clone reaches the runtime through the box, not through a handle: nothing here starts
        // the child's drainer thread, and the parent's does not exist in the child. Cloned and
        // dropped in restricted context as fast as one thread can, the boxes must not pile up:
        // their maker drains them itself (it looks once per 64 boxes made), rather than wait
        // for a thread that is not there.
        const CLONES: usize = 2000;
        let mut worst = 0;
        for made in 1..=CLONES {
            let copy = Owned::clone(&template);
            {
                let _nmi = restricted::enter();
                drop(copy);
            }
            worst = worst.max(made - dropped.load(Ordering::Acquire));
        }
        if worst > 4 * 64 { 1 } else { 0 }
    });
    drop(rt);
    assert_eq!(code, 0, "boxes piled up in the child");
}

/// The drainer thread a child starts in place of its parent's wakes as the runtime was built
/// to: with `Wake::Lazy`, on its period. Objects handlers hand over below the high watermark
/// never ring, so a child's drainer that slept until rung instead (as with `Wake::Immediate`)
/// would leave them waiting for good. Each round lets the child's drainer fall asleep first.
#[test]
fn a_lazy_runtimes_drainer_in_a_child_still_comes_by_itself_every_period() {
    let _serial = serial();
    let rt = Runtime::builder()
        .wake(sigdrop::Wake::Lazy {
            period: Duration::from_millis(20),
            high_watermark: 256,
        })
        // No jobs kept for regrowth: they would bound an untimed sleep to a window.
        .regrowth_window(Duration::ZERO)
        .build()
        .unwrap();
    let code = run_in_child(|| {
        let dropped = Arc::new(AtomicUsize::new(0));
        let slot = RefSlot::new(&rt);
        for round in 1..=3 {
            // An ordinary install: the child's first one starts its drainer thread.
            if slot.xchg(Some(Box::new(Counted(dropped.clone())))).is_err() {
                return 50;
            }
            // Long enough for a drainer that sleeps until rung to be asleep.
            std::thread::sleep(Duration::from_millis(50));
            {
                let _restricted = restricted::enter();
                slot.clear(); // one object on its CPU's list: below the watermark, no ring
            }
            if !within_5s(|| dropped.load(Ordering::Acquire) == round) {
                return 51;
            }
        }
        0
    });
    assert_eq!(
        code, 0,
        "child check failed (51: an object handed over in the child was never destroyed)"
    );
}

/// Set in a child forked by [`ForksInDrain`]'s destructor.
static IN_CHILD: AtomicBool = AtomicBool::new(false);
/// The child [`ForksInDrain`]'s destructor forked (in the parent).
static FORKED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Forks from its destructor, which a drain runs: the child goes on with the drain.
struct ForksInDrain;

impl Drop for ForksInDrain {
    fn drop(&mut self) {
        // SAFETY: the child goes on with the drain and then leaves with `_exit` (the test below),
        // never returning into the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            IN_CHILD.store(true, Ordering::SeqCst);
        } else {
            FORKED.store(pid, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_child_forked_from_a_drains_destructor_counts_what_it_finishes_once() {
    let _serial = serial();
    const READABLE: usize = 64; // a batch's worth
    let rt = Runtime::builder()
        .shards(1)
        .headroom(READABLE + 1)
        .drainer(sigdrop::Drainer::Manual)
        .build()
        .unwrap();
    // Another runtime, idle: what the drain held at the fork is none of its business.
    let other = Runtime::builder()
        .drainer(sigdrop::Drainer::Manual)
        .build()
        .unwrap();
    let readable: Vec<ReadSlot<Box<u64>>> = (0..READABLE).map(|_| ReadSlot::new(&rt)).collect();
    let forks = RefSlot::new(&rt);
    for slot in &readable {
        slot.xchg(Some(Box::new(1))).unwrap();
    }
    forks.xchg(Some(Box::new(ForksInDrain))).unwrap();
    {
        // One chain, oldest first: the readable objects (batched for a grace period by the
        // drain, a full batch), then the object whose destructor forks.
        let _nmi = restricted::enter();
        for slot in &readable {
            slot.clear();
        }
        forks.clear();
    }
    rt.drain().unwrap();
    if IN_CHILD.load(Ordering::SeqCst) {
        // The child finished the drain its parent had started: the batch it had closed from
        // the chain is in its queue, the rest of the chain was its own. Everything is gone
        // after a drain, and the count reads zero: not wrapped around below zero by the rest
        // of the chain (its count was reset to the queue's), and not high in either runtime.
        let code = match catch_unwind(AssertUnwindSafe(|| {
            rt.drain_and_wait().unwrap();
            other.drain_and_wait().unwrap();
            (rt.stats().pending, other.stats().pending)
        })) {
            Ok((0, 0)) => 0,
            Ok((pending, others)) => {
                eprintln!("child: {pending} objects pending after drain_and_wait ({others})");
                30
            }
            Err(_) => 99,
        };
        // SAFETY: ends the child at once, without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let pid = FORKED.load(Ordering::SeqCst);
    assert!(pid > 0, "the destructor did not fork");
    assert_eq!(wait_for_child(pid), 0, "child check failed");
    rt.drain_and_wait().unwrap();
    assert_eq!(rt.stats().pending, 0);
}

/// Objects a `Retiring` retires, and those destroyed, in the child of the test below; and the
/// most seen waiting at once.
static INNER_RETIRED: AtomicUsize = AtomicUsize::new(0);
static INNER_GONE: AtomicUsize = AtomicUsize::new(0);
static INNER_WORST: AtomicUsize = AtomicUsize::new(0);

struct Inner;

impl Drop for Inner {
    fn drop(&mut self) {
        INNER_GONE.fetch_add(1, Ordering::SeqCst);
    }
}

/// Retires the objects of its slots when destroyed (`Policy::AlwaysDefer`: into batches), and
/// records how many wait after each.
struct Retiring(Vec<RefSlot<Box<Inner>>>);

impl Drop for Retiring {
    fn drop(&mut self) {
        for slot in &self.0 {
            slot.clear();
            let retired = INNER_RETIRED.fetch_add(1, Ordering::SeqCst) + 1;
            let waiting = retired - INNER_GONE.load(Ordering::SeqCst);
            INNER_WORST.fetch_max(waiting, Ordering::SeqCst);
        }
    }
}

/// The batches the parent's threads were destroying when it forked are nobody's in the child:
/// a child thread destroying batches of its own, whose destructors retire past the bound, must
/// not leave them out of its backlog (as it leaves out the batches being destroyed here). It
/// would then read the backlog short by all of them, and go on past the bound by as much
/// before it helps.
#[test]
fn a_child_destroying_batches_does_not_leave_the_parents_batches_out_of_its_bound() {
    const BATCH: usize = 64;
    // Objects each `Retiring` retires: six batches' worth from one batch of them.
    const EACH: usize = 6;
    let _serial = serial();
    let rt = Runtime::builder()
        .shards(1)
        .drainer(sigdrop::Drainer::Manual)
        .policy(sigdrop::Policy::AlwaysDefer)
        .max_pending(BATCH)
        .build()
        .unwrap();
    let entered = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let slot = ReadSlot::new(&rt);
    {
        // Under a guard: four batches wait for a grace period (the writer gives up on the bound
        // rather than wait for its own guard). The first object blocks its destructor.
        let _guard = read::enter();
        for i in 0..4 * BATCH + 1 {
            let holds = (i == 0).then(|| (entered.clone(), release.clone()));
            drop(slot.xchg(Some(Box::new(Holds(holds)))));
        }
    }
    // Another thread takes all four and blocks in the first destructor until released.
    let drainer = {
        let (rt, release) = (rt.clone(), release.clone());
        std::thread::spawn(move || {
            while !release.load(Ordering::Acquire) {
                rt.drain().unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            rt.drain_and_wait().unwrap();
        })
    };
    assert!(
        within_5s(|| entered.load(Ordering::Acquire)),
        "the batches were never taken: {:?}",
        rt.stats()
    );
    let code = run_in_child(|| {
        // A batch of `Retiring`s, which this thread takes and destroys: each retires its
        // objects past the bound while this thread is in the middle of that batch.
        let outer: RefSlot<Box<Retiring>> = RefSlot::new(&rt);
        for _ in 0..=BATCH {
            let slots: Vec<RefSlot<Box<Inner>>> = (0..EACH)
                .map(|_| {
                    let slot = RefSlot::new(&rt);
                    assert!(slot.xchg(Some(Box::new(Inner))).unwrap().is_none());
                    slot
                })
                .collect();
            drop(outer.xchg(Some(Box::new(Retiring(slots)))));
        }
        let _ = rt.drain();
        // The bound, the batch that took the backlog over it (closed before its check), and
        // the open batch.
        if INNER_WORST.load(Ordering::SeqCst) > 3 * BATCH {
            return 41;
        }
        if INNER_RETIRED.load(Ordering::SeqCst) != BATCH * EACH {
            return 42;
        }
        0
    });
    release.store(true, Ordering::Release);
    drainer.join().unwrap();
    assert_eq!(code, 0, "child check failed");
}

/// Blocks its destructor, if given the flags, until the test releases it (bounded at 60 s).
struct Holds(Option<(Arc<AtomicBool>, Arc<AtomicBool>)>);

impl Drop for Holds {
    fn drop(&mut self) {
        if let Some((entered, release)) = self.0.take() {
            entered.store(true, Ordering::Release);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !release.load(Ordering::Acquire) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
