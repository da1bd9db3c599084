//! No lost wake-up: an offload from a "signal handler" thread racing with the drainer thread
//! going to sleep always gets its destructor run, without anybody else poking the drainer.
//!
//! The main thread blocks until the destructor has run. If the drainer could fall asleep with the
//! job queued and the doorbell unrung, every thread would be blocked and loom reports a deadlock.
//! The runtime's drop (which wakes the drainer itself) happens only after the wait, so it cannot
//! mask a lost wake-up.
//!
//! Bound: 3 threads (drainer, handler, main), 1 object, 1 shard; preemptions 2.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use sigdrop::{Drainer, RefSlot, Runtime, restricted};

struct Done {
    flag: Mutex<bool>,
    cond: Condvar,
    in_restricted: AtomicBool,
}

struct Obj(Arc<Done>);

impl Drop for Obj {
    fn drop(&mut self) {
        if restricted::is_active() {
            self.0.in_restricted.store(true, Ordering::SeqCst);
        }
        *self.0.flag.lock().unwrap() = true;
        self.0.cond.notify_all();
    }
}

#[test]
fn offload_racing_drainer_sleep_is_never_stranded() {
    loom::model(|| {
        let rt = Runtime::builder()
            .shards(1)
            .headroom(1)
            .hysteresis(0)
            .emergency_capacity(1)
            .drainer(Drainer::Thread)
            .build()
            .unwrap();
        let done = Arc::new(Done {
            flag: Mutex::new(false),
            cond: Condvar::new(),
            in_restricted: AtomicBool::new(false),
        });
        let slot = Arc::new(RefSlot::new(&rt));
        assert!(
            slot.xchg(Some(Box::new(Obj(done.clone()))))
                .unwrap()
                .is_none()
        );

        let handler = {
            let slot = slot.clone();
            loom::thread::spawn(move || {
                let _nmi = restricted::enter();
                slot.clear();
            })
        };
        handler.join().unwrap();

        let mut ran = done.flag.lock().unwrap();
        while !*ran {
            ran = done.cond.wait(ran).unwrap();
        }
        drop(ran);
        assert!(!done.in_restricted.load(Ordering::SeqCst));
        drop(slot);
        drop(rt);
    });
}

/// The doorbell's argument itself, on the shipped `Doorbell` and `JobLists` (no futex): two
/// producers each push one job and ring as an offload does, while a drain cycle clears the flag
/// and takes the list. Afterwards, every job is either taken by that cycle or still announced
/// by the pending flag, so the drainer's next check finds it. A job left in the list behind a
/// cleared flag is what a sleeping drainer would never wake for (a lost wake-up); this model
/// reports it directly, where the model above would need a drainer thread and a second
/// producer to reach it.
///
/// The argument rests on `pending` and the list heads being written only by read-modify-writes,
/// and on one Release/Acquire pair: the producer's swap in `ring` (Release) read by the
/// drainer's `clear` (Acquire), which makes the take after the clear see the producer's push.
///
/// Bound: 3 threads, 2 jobs, 1 shard.
#[test]
fn every_push_is_taken_or_still_announced() {
    use sigdrop::model::{Arena, Doorbell, GrowState, JobLists, Wake};

    loom::model(|| {
        let arena = Arc::new(Arena::new(1));
        let lists = Arc::new(JobLists::new(1));
        let bell = Arc::new(Doorbell::new(false, Wake::Immediate));
        let mut state = GrowState::default();
        // SAFETY: `state` is this arena's only grow state.
        let jobs: Vec<u32> = (0..2)
            .map(|_| unsafe { arena.alloc_job(&mut state) }.unwrap())
            .collect();
        let producers: Vec<_> = jobs
            .iter()
            .map(|&job| {
                let (arena, lists, bell) = (arena.clone(), lists.clone(), bell.clone());
                loom::thread::spawn(move || {
                    // SAFETY: each producer owns its own fresh job; shard 0 of one.
                    let before = unsafe { lists.push(&arena, 0, job) };
                    bell.after_push(before);
                })
            })
            .collect();
        // One drain cycle: clear, then take.
        bell.clear();
        let taken = lists.take(0);
        let taken_len = taken.len();
        // SAFETY: the chain's jobs came from `arena`.
        drop(unsafe { taken.into_oldest_first(&arena) });
        for producer in producers {
            producer.join().unwrap();
        }
        let left = lists.take(0);
        assert!(
            left.is_empty() || bell.is_pending(),
            "{} job(s) left behind a cleared pending flag ({taken_len} taken)",
            left.len()
        );
        // SAFETY: the chain's jobs came from `arena`.
        drop(unsafe { left.into_oldest_first(&arena) });
    });
}
