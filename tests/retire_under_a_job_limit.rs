//! Writers that replace readable objects under their own read guard, with a job limit, lose
//! no object.
//!
//! A writer retires the object it replaced into its CPU's open batch. When every open batch is
//! busy (another writer is adding to it: with more writers than shards, often), the object goes
//! with a job instead; under `Builder::max_jobs` there may be none, and then it is destroyed
//! after a grace period — unless the writer holds a read guard itself and cannot wait for one.
//! Such a writer parked the object in the emergency area, the handlers' last resort, and once
//! that was full leaked it: four writers on one shard leaked 58 039 objects in two seconds
//! (3 667 parked), destructors never run. Now the writer waits for the busy batch's holder
//! instead, which keeps it for a few instructions and never waits. Counts are asserted, never
//! time.

use sigdrop::{ReadSlot, Runtime, read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// More writers than shards (and than the CPUs of a small machine): the open batch is busy often.
const WRITERS: usize = 4;
/// One shard: one open batch for every writer.
const SHARDS: usize = 1;
/// The job limit: every job may be taken, so a busy batch leaves no job to fall back on.
const MAX_JOBS: usize = 64;
/// Replacements per writer, under guards of `PER_GUARD`.
const REPLACES: usize = 200_000;
const PER_GUARD: usize = 16;

static MADE: AtomicU64 = AtomicU64::new(0);
static DESTROYED: AtomicU64 = AtomicU64::new(0);

struct Counted;

impl Counted {
    fn new() -> Arc<Counted> {
        MADE.fetch_add(1, Ordering::Relaxed);
        Arc::new(Counted)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        DESTROYED.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn writers_under_their_own_guard_with_no_job_to_spare_lose_nothing() {
    let rt = Runtime::builder()
        .shards(SHARDS)
        .max_jobs(MAX_JOBS)
        .headroom(0)
        .build()
        .unwrap();
    let slots: Arc<Vec<ReadSlot<Arc<Counted>>>> =
        Arc::new((0..WRITERS).map(|_| ReadSlot::new(&rt)).collect());
    for slot in slots.iter() {
        slot.xchg(Some(Counted::new())).unwrap();
    }
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let slots = Arc::clone(&slots);
            std::thread::spawn(move || {
                for _ in 0..REPLACES / PER_GUARD {
                    // Read, then replace, under one guard: the writer cannot wait for a grace
                    // period (its own guard holds it up).
                    let _guard = read::enter();
                    for _ in 0..PER_GUARD {
                        drop(slots[w].replace(Counted::new()).unwrap());
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let stats = rt.stats();
    assert!(
        stats.reserve_failures > 0,
        "no writer found the batch busy with no job to spare: nothing was tested ({stats:?})"
    );
    assert_eq!(stats.leaked, 0, "{stats:?}");
    drop(slots);
    drop(rt); // the last handle: every object still pending is destroyed
    assert_eq!(
        DESTROYED.load(Ordering::Relaxed),
        MADE.load(Ordering::Relaxed)
    );
}
