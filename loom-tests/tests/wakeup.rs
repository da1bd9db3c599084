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
