//! Batches that a thread retiring objects in ordinary context fills (a `ReadSlot` write; any
//! deferred drop under `Policy::AlwaysDefer`) are that thread's to close:
//!
//! - under `Policy::Auto`, the writer that closes a batch destroys ready batches itself, and
//!   `Stats::helped` counts it;
//! - the drainer thread closes a batch a producer is still filling only on its first cycle
//!   after a sleep (or its own, on the cycle after its destructors opened one): while it goes
//!   from one cycle that ran destructors to the next, it leaves that batch alone, also after it
//!   once tore a structure down under `AlwaysDefer`, whose levels its own destructors retired;
//! - objects in a batch still open count in `Stats::pending`, and only batches of objects that
//!   left readable slots count in `Stats::grace_periods`.
//!
//! Asserted on counts, never on time. No test here holds a read guard: the first needs grace
//! periods to pass as its batches close.

mod common;

use common::counted::{Counted, DESTROYED};
use common::lists::push_front;
use common::wait_until;
use sigdrop::{Drainer, Policy, ReadSlot, RefSlot, Runtime, restricted};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Objects per batch.
const BATCH: usize = 64;

/// A writer that replaces a `ReadSlot`'s object batch after batch, with nobody else draining (a
/// manual drainer) and under the backlog bound, destroys the batches it closed once their grace
/// period has passed, when it closes the next ones: `Stats::helped` counts those helps, at most
/// one per batch closed, each running at most two batches.
#[test]
fn a_writer_that_destroys_ready_batches_itself_counts_as_helping() {
    const BATCHES: usize = 10;
    let rt = Runtime::builder()
        .drainer(Drainer::Manual)
        .policy(Policy::Auto)
        .build()
        .unwrap();
    let slot: ReadSlot<Box<usize>> = ReadSlot::new(&rt);
    for i in 0..BATCHES * BATCH {
        drop(slot.xchg(Some(Box::new(i))).unwrap());
    }
    let s = rt.stats();
    assert!(
        s.batched > 0,
        "no reader holds a grace period up, yet the writer destroyed nothing: {s:?}"
    );
    assert!(
        s.helped > 0 && s.helped <= BATCHES as u64,
        "helps counted for the batches the writer destroyed: {s:?}"
    );
    assert!(
        s.batched <= s.helped * 2 * BATCH as u64,
        "more destroyed than the helps counted could run: {s:?}"
    );
}

/// The shared state of a [`Step`] chain and the test.
struct Chain {
    /// Set by the step that waits for the producer, once it runs (on the drainer thread).
    waiting: AtomicBool,
    /// Set by the test once its objects are retired into its open batch.
    retired: AtomicBool,
    /// How many of the test's objects (the file's only [`Counted`] values) the last step found
    /// destroyed (`usize::MAX` until it runs).
    seen: AtomicUsize,
}

/// What a [`Step`]'s destructor does, on the drainer thread.
#[derive(Clone, Copy)]
enum Then {
    /// Nothing: its slot, dropped with it in ordinary context, retires the next step into a
    /// batch (under `AlwaysDefer`) that the drainer thread itself opened.
    LetGo,
    /// Hands the next step over in restricted context: onto a job list, into no batch, for the
    /// drainer's next cycle.
    HandOver,
    /// Waits (at most 10 s) until the test has retired its objects, then hands over.
    WaitThenHandOver,
    /// Records how many of the test's objects are destroyed.
    Record,
}

/// A link of a chain that keeps the drainer thread busy, one step per cycle.
struct Step {
    then: Then,
    next: RefSlot<Box<Step>>,
    chain: Arc<Chain>,
}

impl Step {
    fn hand_over_next(&self) {
        let _nmi = restricted::enter();
        self.next.clear();
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        match self.then {
            Then::LetGo => {}
            Then::HandOver => self.hand_over_next(),
            Then::WaitThenHandOver => {
                self.chain.waiting.store(true, Ordering::SeqCst);
                let deadline = Instant::now() + Duration::from_secs(10);
                while !self.chain.retired.load(Ordering::SeqCst) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                self.hand_over_next();
            }
            Then::Record => {
                let gone = DESTROYED.load(Ordering::SeqCst);
                self.chain.seen.store(gone, Ordering::SeqCst);
            }
        }
    }
}

/// The drainer thread tears down a chain whose first step's slot retires the second into a
/// batch the drainer opened itself (which it closes without waiting for a sleep), and each
/// later step hands the next over in restricted context, so that every cycle runs a step and
/// the drainer never sleeps. While
/// one step waits on the drainer thread, this thread retires a few objects into its open batch:
/// the cycles after that, which follow cycles that ran destructors without opening any batch,
/// must leave the batch to its producer. It is closed after the drainer's next sleep.
#[test]
fn a_busy_drainer_leaves_a_producers_open_batch_to_the_producer() {
    const PRODUCED: usize = 10;
    let rt = Runtime::builder()
        .policy(Policy::AlwaysDefer)
        .build()
        .unwrap();
    let chain = Arc::new(Chain {
        waiting: AtomicBool::new(false),
        retired: AtomicBool::new(false),
        seen: AtomicUsize::new(usize::MAX),
    });
    let head: RefSlot<Box<Step>> = RefSlot::new(&rt);
    // Built from the last step to the first. Between the drainer's own batch and the waiting
    // step, a cycle that hands over and opens nothing: the one after it must not close batches.
    let steps = [
        Then::LetGo,
        Then::HandOver,
        Then::HandOver,
        Then::WaitThenHandOver,
        Then::Record,
    ];
    for &then in steps.iter().rev() {
        let step = Box::new(Step {
            then,
            next: RefSlot::new(&rt),
            chain: chain.clone(),
        });
        push_front(&head, step, |s| &s.next);
    }
    {
        let _nmi = restricted::enter();
        head.clear(); // the first step, to the drainer thread
    }
    wait_until(
        Duration::from_secs(10),
        "the drainer thread to reach the waiting step",
        || format!("{:?}", rt.stats()),
        || chain.waiting.load(Ordering::SeqCst),
    );
    // Under AlwaysDefer each object replaced (all but the first install's) goes into this
    // CPU's open batch: too few to fill it.
    let producer: RefSlot<Box<Counted>> = RefSlot::new(&rt);
    for _ in 0..=PRODUCED {
        drop(producer.xchg(Some(Box::new(Counted))).unwrap());
    }
    chain.retired.store(true, Ordering::SeqCst);
    wait_until(
        Duration::from_secs(10),
        "the drainer thread to reach the last step",
        || format!("{:?}", rt.stats()),
        || chain.seen.load(Ordering::SeqCst) != usize::MAX,
    );
    assert_eq!(
        chain.seen.load(Ordering::SeqCst),
        0,
        "the drainer thread closed a batch its producer was still filling, on a cycle that \
         followed cycles that ran destructors and opened no batch: {:?}",
        rt.stats()
    );
    wait_until(
        Duration::from_secs(10),
        "the drainer thread to close the open batch after a sleep",
        || format!("{:?}", rt.stats()),
        || DESTROYED.load(Ordering::SeqCst) == PRODUCED,
    );
}

/// What the statistics say of batches: objects in a batch still open are pending (their batch
/// has not filled), and only batches of objects that left readable slots count as grace
/// periods; batches of other objects (retired under `Policy::AlwaysDefer`) need none.
#[test]
fn open_batches_are_pending_and_only_readable_batches_count_as_grace_periods() {
    const OPEN: usize = BATCH / 4;
    let rt = Runtime::builder()
        .shards(1)
        .drainer(Drainer::Manual)
        .policy(Policy::AlwaysDefer)
        .build()
        .unwrap();
    // Write-only objects: two full batches and one still open.
    let plain: RefSlot<Box<usize>> = RefSlot::new(&rt);
    for i in 0..2 * BATCH + OPEN {
        drop(plain.xchg(Some(Box::new(i))).unwrap());
    }
    // The first install displaced nothing.
    let retired = 2 * BATCH + OPEN - 1;
    let s = rt.stats();
    assert_eq!(
        s.pending, retired,
        "the open batch's objects wait too: {s:?}"
    );
    rt.drain_and_wait().unwrap();
    let s = rt.stats();
    assert_eq!((s.pending, s.batched), (0, retired as u64), "{s:?}");
    assert_eq!(s.grace_periods, 0, "no batch needed a grace period: {s:?}");
    // Readable objects: one batch, still open, then closed and destroyed after its grace period.
    let readable: ReadSlot<Box<usize>> = ReadSlot::new(&rt);
    for i in 0..=OPEN {
        drop(readable.xchg(Some(Box::new(i))).unwrap());
    }
    assert_eq!(rt.stats().pending, OPEN, "{:?}", rt.stats());
    rt.drain_and_wait().unwrap();
    let s = rt.stats();
    assert_eq!(
        (s.pending, s.batched),
        (0, (retired + OPEN) as u64),
        "{s:?}"
    );
    assert_eq!(s.grace_periods, 1, "one batch of readable objects: {s:?}");
}
