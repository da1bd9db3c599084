//! `KptrHash` (`src/maps/hash.rs`, its buckets in `src/maps/buckets.rs`) under loom: its bucket
//! lock must order the chain and the element's key cell (plain memory, a loom `UnsafeCell`) from
//! one holder to the next, on the ordinary path (a spinning CAS loop, which yields to loom under `--cfg loom`) and on the
//! restricted path (one try, `WouldBlock` if busy).
//!
//! The maps have capacity 1, hence one bucket, so the random hasher cannot make two executions
//! differ. The inserter writes the key under the lock; the other party locks and reads it in
//! `find`. Nothing else orders the two before that read (the inserter's job growth and claim do
//! not reach the other thread), so weakening the lock's Acquire or the unlock's Release is a
//! data race that loom reports. The values are [`Canary`]s, so the slot's hand-over is checked
//! too.
//!
//! Bound: 2 threads, 1 element, 1 bucket, headroom 1.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom_tests::canary::Canary;
use sigdrop::{Drainer, Error, KptrHash, Runtime, restricted};

fn runtime() -> Runtime {
    Runtime::builder()
        .shards(1)
        .headroom(1)
        .hysteresis(0)
        .emergency_capacity(1)
        .drainer(Drainer::Manual)
        .build()
        .unwrap()
}

type Map = KptrHash<u32, Box<Canary>>;

/// A map of one bucket, and a thread that inserts key 7 into it (racing what the model does
/// next).
fn one_bucket_map_with_an_insert_racing(
    rt: &Runtime,
    drops: &Arc<AtomicUsize>,
) -> (Arc<Map>, loom::thread::JoinHandle<()>) {
    let map = Arc::new(Map::new(rt, 1).unwrap());
    let inserter = {
        let (map, drops) = (map.clone(), drops.clone());
        loom::thread::spawn(move || {
            assert!(map.insert(7, Canary::boxed(&drops)).unwrap().is_none());
        })
    };
    (map, inserter)
}

fn settle(rt: &Runtime, map: &Map, drops: &Arc<AtomicUsize>) {
    let _ = map.delete(&7).unwrap();
    rt.drain().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert!(map.is_empty());
    let s = rt.stats();
    assert_eq!(
        (s.active, s.refs, s.emergency, s.leaked),
        (0, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(rt.audit_idle(), s.total);
}

/// Ordinary path: an insert and an ordinary take of the same key race for the bucket lock
/// (the loser spins). Whoever locks second sees the first one's chain and key.
#[test]
fn ordinary_bucket_lock_publishes_chain_and_key() {
    loom::model(|| {
        let rt = runtime();
        let drops = Arc::new(AtomicUsize::new(0));
        let (map, inserter) = one_bucket_map_with_an_insert_racing(&rt, &drops);
        if let Some(taken) = map.take(&7).unwrap() {
            taken.check();
            // Dropped here, in ordinary context: destroyed inline.
        }
        inserter.join().unwrap();
        settle(&rt, &map, &drops);
    });
}

/// Restricted path: a handler's delete tries the bucket lock once while an ordinary insert
/// holds or has released it. Busy: `WouldBlock`, nothing changed. Won: it sees the insert's
/// chain and key, and the object goes to the drainer.
#[test]
fn restricted_try_lock_publishes_chain_and_key() {
    loom::model(|| {
        let rt = runtime();
        let drops = Arc::new(AtomicUsize::new(0));
        let (map, inserter) = one_bucket_map_with_an_insert_racing(&rt, &drops);
        {
            let _nmi = restricted::enter();
            match map.take(&7) {
                Ok(Some(taken)) => taken.check(), // then deferred: dropped in the handler
                Ok(None) | Err(Error::WouldBlock) => {}
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        inserter.join().unwrap();
        settle(&rt, &map, &drops);
    });
}

/// Fork path: a fork is prepared (the flag raised, every bucket seen free) while an insert
/// races for the bucket; the chain and key are then read with no lock, as the child's copy
/// holds them. The insert either finished before the bucket was seen free (its key is
/// published to the copy) or saw the flag and let go unchanged, waiting for the fork to end;
/// an insert that went on changing the chain would race with the copy's reads.
#[test]
fn a_prepared_fork_copies_no_half_made_chain() {
    loom::model(|| {
        let rt = runtime();
        let drops = Arc::new(AtomicUsize::new(0));
        let (map, inserter) = one_bucket_map_with_an_insert_racing(&rt, &drops);
        let copied = map.model_fork_copy();
        assert!(copied.is_empty() || copied == [7], "{copied:?}");
        inserter.join().unwrap();
        settle(&rt, &map, &drops);
    });
}
