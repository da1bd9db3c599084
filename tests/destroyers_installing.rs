//! Two threads destroying at once — one running a chain of jobs, the other batches — whose
//! destructors install objects with no spare job left: neither waits for the other.
//!
//! An install that finds no spare job waits for the backlog to come under
//! `Builder::max_pending` before it grows the pool. A thread running a chain left the taken
//! chains out of the backlog it reads, and a thread running batches left the batches being
//! run out, but neither left out the other's: the chain's thread waited for the batches'
//! thread to finish its batches, which waited for the chain to finish. With a manual drainer
//! both ran empty cycles for ever (every run of this test, before the fix: 95 of 456
//! destructors done, `helped` at 25 million after 20 s); with an idle drainer thread they
//! rang it for ever instead (a drainer outside any destructor is never given up on), 1 run in
//! 3 with a lazy one. Counts are asserted, never time.

use sigdrop::{Drainer, ReadSlot, RefSlot, Runtime, read, restricted};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// The smallest bound: a few destructors' installs are over it.
const MAX_PENDING: usize = 64;
/// Objects torn down as a handler would: one chain of jobs.
const IN_CHAIN: usize = 200;
/// Objects retired from readable slots: four full batches.
const IN_BATCHES: usize = 256;
/// How long a thread's first destructor waits for the other thread's (a bound, not a timing
/// assertion: the test checks that they met).
const MEET_WITHIN: Duration = Duration::from_secs(10);
/// How long the drains may take before the test reports them stuck and aborts.
const DRAIN_WAIT: Duration = Duration::from_secs(30);

static STARTED: AtomicUsize = AtomicUsize::new(0);
static MET: AtomicUsize = AtomicUsize::new(0);
static DESTROYED: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    static FIRST_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// An object whose destructor installs a fresh one into an empty slot (which needs a job).
/// The first destructor each thread runs waits until the other thread runs one too, so that
/// both hold what they took (a chain, batches) while they install.
struct Installing {
    into: Arc<RefSlot<Box<u64>>>,
}

impl Drop for Installing {
    fn drop(&mut self) {
        if FIRST_HERE.with(|first| first.replace(false)) {
            STARTED.fetch_add(1, Ordering::SeqCst);
            let since = Instant::now();
            while STARTED.load(Ordering::SeqCst) < 2 && since.elapsed() < MEET_WITHIN {
                std::thread::yield_now();
            }
            if STARTED.load(Ordering::SeqCst) >= 2 {
                MET.fetch_add(1, Ordering::SeqCst);
            }
        }
        // Ordinary context: never refused (the pool grows if it must).
        let displaced = self.into.xchg(Some(Box::new(7))).expect("an install");
        assert!(displaced.is_none());
        DESTROYED.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_chain_and_batches_destroyed_at_once_install_without_waiting_for_each_other() {
    let rt = Runtime::builder()
        .drainer(Drainer::Manual)
        .shards(1)
        .max_pending(MAX_PENDING)
        .build()
        .unwrap();
    let mut targets = Vec::new();
    let mut installing = |rt: &Runtime| {
        let into = Arc::new(RefSlot::new(rt));
        targets.push(Arc::clone(&into));
        Box::new(Installing { into })
    };
    let chain: Vec<RefSlot<Box<Installing>>> = (0..IN_CHAIN).map(|_| RefSlot::new(&rt)).collect();
    for slot in &chain {
        slot.xchg(Some(installing(&rt))).unwrap();
    }
    let batched: Vec<ReadSlot<Box<Installing>>> =
        (0..IN_BATCHES).map(|_| ReadSlot::new(&rt)).collect();
    for slot in &batched {
        slot.xchg(Some(installing(&rt))).unwrap();
    }
    {
        // Retired under this thread's own guard: closed batches, which it neither waits for
        // nor destroys while the guard holds them up.
        let _guard = read::enter();
        for slot in &batched {
            slot.clear();
        }
    }
    {
        // As a signal handler would: each object goes with its job onto the one list.
        let _restricted = restricted::enter();
        for slot in &chain {
            slot.clear();
        }
    }
    assert_eq!(rt.stats().pending, IN_CHAIN + IN_BATCHES);
    assert!(
        rt.stats().spare < IN_CHAIN + IN_BATCHES,
        "the installs must run out of spare jobs: {:?}",
        rt.stats()
    );

    // Two drains at once: one takes the chain, the other (finding the list empty) the batches.
    let (done, finished) = std::sync::mpsc::channel();
    let go = Arc::new(Barrier::new(2));
    for _ in 0..2 {
        let (rt, go, done) = (rt.clone(), Arc::clone(&go), done.clone());
        std::thread::spawn(move || {
            go.wait();
            rt.drain().unwrap();
            done.send(()).unwrap();
        });
    }
    for _ in 0..2 {
        if finished.recv_timeout(DRAIN_WAIT).is_err() {
            eprintln!(
                "drains waiting for each other: {} of {} destroyed; {:?}",
                DESTROYED.load(Ordering::SeqCst),
                IN_CHAIN + IN_BATCHES,
                rt.stats()
            );
            std::process::abort();
        }
    }
    assert_eq!(
        MET.load(Ordering::SeqCst),
        2,
        "both threads destroyed at once"
    );
    while rt.drain().unwrap() > 0 {}
    assert_eq!(DESTROYED.load(Ordering::SeqCst), IN_CHAIN + IN_BATCHES);
    assert_eq!(rt.stats().pending, 0);
    assert_eq!(rt.stats().refs, IN_CHAIN + IN_BATCHES); // every install went in
}
