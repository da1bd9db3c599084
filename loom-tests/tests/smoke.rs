//! Smoke model: the shipped freelist under loom. Two threads — one of them playing a signal
//! handler — each pop a job and push it back while the other does the same; every job must be
//! owned by at most one party at every moment, and both jobs are back at the end.
//!
//! Bound: 2 threads, 2 jobs, 1 shard, loom's default preemption bound (see the README).
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use sigdrop::model::{Arena, Freelist, GrowState};

#[test]
fn freelist_pop_push_keeps_single_ownership() {
    loom::model(|| {
        let arena = Arc::new(Arena::new(1));
        let free = Arc::new(Freelist::<32>::new(1));
        let mut state = GrowState::default();
        for _ in 0..2 {
            // SAFETY: `state` is this arena's only grow state.
            let idx = unsafe { arena.alloc_job(&mut state) }.unwrap();
            // SAFETY: a fresh job is ours to give to the freelist.
            unsafe { free.push(&*arena, 0, idx) };
        }
        let owned: Arc<[AtomicBool; 2]> =
            Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let worker = |arena: Arc<Arena>, free: Arc<Freelist<32>>, owned: Arc<[AtomicBool; 2]>| {
            move || {
                // SAFETY: every job on `free` came from `arena`; shard 0 of one.
                if let Some(idx) = unsafe { free.pop(&*arena, 0) } {
                    assert!(
                        !owned[idx as usize].swap(true, Ordering::SeqCst),
                        "job owned twice"
                    );
                    owned[idx as usize].store(false, Ordering::SeqCst);
                    // SAFETY: we popped it.
                    unsafe { free.push(&*arena, 0, idx) };
                }
            }
        };
        let t = loom::thread::spawn(worker(arena.clone(), free.clone(), owned.clone()));
        worker(arena.clone(), free.clone(), owned.clone())();
        t.join().unwrap();
        // SAFETY: every job on `free` came from `arena`; shard 0 of one.
        assert_eq!(unsafe { free.count_idle(&*arena, 10) }, 2);
    });
}

/// The whole runtime under loom: an object installed in ordinary context is torn down by a
/// "signal handler" thread (inside the restricted guard) while the main thread drains. The
/// destructor runs exactly once, never inside the guard, and the pool is whole afterwards.
///
/// Bound: 2 threads, headroom 1, 1 shard, manual drainer.
#[test]
fn restricted_teardown_races_drain() {
    use sigdrop::{Drainer, RefSlot, Runtime, restricted};

    struct Tracked(Arc<loom::sync::atomic::AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            assert!(
                !restricted::is_active(),
                "destructor ran in restricted context"
            );
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    loom::model(|| {
        let rt = Runtime::builder()
            .shards(1)
            .headroom(1)
            .hysteresis(0)
            .emergency_capacity(1)
            .drainer(Drainer::Manual)
            .build()
            .unwrap();
        let drops = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let slot = Arc::new(RefSlot::new(&rt));
        assert!(
            slot.xchg(Some(Box::new(Tracked(drops.clone()))))
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
        rt.drain().unwrap();
        handler.join().unwrap();
        rt.drain().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        let s = rt.stats();
        assert_eq!((s.active, s.refs, s.emergency), (0, 0, 0));
        assert_eq!(rt.audit_idle(), s.total);
    });
}
