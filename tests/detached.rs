//! What a `Detached` guard gives while readers may still borrow its object: it derefs to the
//! object (never to the `Box`, never mutably), dropping it does not run the destructor while a
//! reader on another thread still holds `&T` from `load`, `into_inner` waits for that reader
//! before it rebuilds the `Box`, and a write-only slot's object (or a fresh `Arc` reference) comes
//! back at once. Restricted-context drops still defer.
//!
//! Tests in this file run in parallel and share the process-wide read domain, so none of them
//! waits for a grace period while holding a read guard.

use sigdrop::{Detached, Drainer, Owned, ReadSlot, RefSlot, Runtime, read, restricted};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

const MAGIC: u64 = 0xD0_7AC4_ED00_0001;

/// A test object: counts its destructions, fails loudly if one runs in restricted context, and
/// poisons its word so that a reader that sees a destroyed object notices.
#[derive(Debug)]
struct Tracked {
    word: AtomicU64,
    drops: Arc<AtomicUsize>,
}

impl Tracked {
    fn new(drops: &Arc<AtomicUsize>) -> Self {
        Tracked {
            word: AtomicU64::new(MAGIC),
            drops: drops.clone(),
        }
    }

    fn intact(&self) -> bool {
        // Relaxed: only compared; the grace period orders the poisoning after every reader.
        self.word.load(Ordering::Relaxed) == MAGIC
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        assert!(!restricted::is_active(), "destroyed in restricted context");
        self.word.store(0, Ordering::Relaxed);
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn manual() -> Runtime {
    Runtime::builder().drainer(Drainer::Manual).build().unwrap()
}

/// A reader on another thread: enters a guard, loads the slot's object, reports its address,
/// waits for `go`, checks the object, sets `left` and leaves the guard.
fn spawn_reader(
    slot: Arc<ReadSlot<Box<Tracked>>>,
    left: Arc<AtomicBool>,
    pause: Duration,
) -> (
    mpsc::Receiver<usize>,
    mpsc::Sender<()>,
    thread::JoinHandle<()>,
) {
    let (seen_tx, seen_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        let guard = read::enter();
        let obj: &Tracked = slot.load(&guard).expect("the slot is full");
        seen_tx.send(obj as *const Tracked as usize).unwrap();
        go_rx.recv().unwrap();
        thread::sleep(pause);
        assert!(obj.intact(), "the object was destroyed under a reader");
        left.store(true, Ordering::SeqCst);
        drop(guard);
    });
    (seen_rx, go_tx, reader)
}

#[test]
fn derefs_to_the_object_a_reader_holds_and_its_drop_waits_for_the_reader() {
    let rt = manual();
    let drops = Arc::new(AtomicUsize::new(0));
    let slot = Arc::new(ReadSlot::new(&rt));
    slot.xchg(Some(Box::new(Tracked::new(&drops)))).unwrap();
    let left = Arc::new(AtomicBool::new(false));
    let (seen, go, reader) = spawn_reader(slot.clone(), left.clone(), Duration::ZERO);
    let address = seen.recv().unwrap();

    let old: Detached<'_, Box<Tracked>> = slot.take().unwrap();
    // The guard lends the very object the reader borrows, as `&Tracked`.
    let obj: &Tracked = &old;
    assert_eq!(obj as *const Tracked as usize, address);
    assert!(old.intact());
    assert!(old.is_reserved());
    assert_eq!(
        format!("{old:?}"),
        format!("Detached(Tracked {{ word: {MAGIC}, drops: {} }})", 0)
    );

    drop(old); // ordinary context: retired, not destroyed (the reader still holds `&Tracked`)
    assert_eq!(drops.load(Ordering::SeqCst), 0, "destroyed under a reader");
    rt.drain().unwrap(); // never waits: the reader holds its grace period up
    assert_eq!(drops.load(Ordering::SeqCst), 0, "destroyed under a reader");

    go.send(()).unwrap();
    reader.join().unwrap();
    assert!(left.load(Ordering::SeqCst));
    rt.drain_and_wait().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn into_inner_rebuilds_the_box_only_after_the_reader_has_left() {
    let rt = manual();
    let drops = Arc::new(AtomicUsize::new(0));
    let slot = Arc::new(ReadSlot::new(&rt));
    slot.xchg(Some(Box::new(Tracked::new(&drops)))).unwrap();
    let left = Arc::new(AtomicBool::new(false));
    // The reader lingers after `go`, so an `into_inner` that did not wait would return first.
    let (seen, go, reader) = spawn_reader(slot.clone(), left.clone(), Duration::from_millis(100));
    seen.recv().unwrap();

    let old = slot.take().unwrap();
    // With a guard of our own it would wait for itself: refused, the guard comes back.
    let own = read::enter();
    let old = old.into_inner().unwrap_err();
    drop(own);

    go.send(()).unwrap();
    let boxed: Box<Tracked> = old.into_inner().unwrap();
    assert!(
        left.load(Ordering::SeqCst),
        "into_inner returned while a reader still borrowed the object"
    );
    assert!(boxed.intact());
    reader.join().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(boxed); // ours now: destroyed inline
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(rt.drain().unwrap(), 0);
}

#[test]
fn a_write_only_slot_gives_its_box_back_at_once() {
    let rt = manual();
    let drops = Arc::new(AtomicUsize::new(0));
    let slot = RefSlot::new(&rt);
    slot.xchg(Some(Box::new(Tracked::new(&drops)))).unwrap();
    // A guard on this thread: a grace period would be refused, so `Ok` proves nothing waited.
    let guard = read::enter();
    let old = slot.take().unwrap();
    assert!(old.intact());
    let boxed = old.into_inner().unwrap();
    assert!(boxed.intact());
    drop(boxed);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    // Dropped inline too: nobody can borrow an object of a write-only slot.
    slot.xchg(Some(Box::new(Tracked::new(&drops)))).unwrap();
    slot.clear();
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    drop(guard);
}

#[test]
fn arc_references_come_at_once_without_rebuilding_a_unique_pointer() {
    let rt = manual();
    let drops = Arc::new(AtomicUsize::new(0));
    let slot: ReadSlot<Arc<Tracked>> = ReadSlot::new(&rt);
    slot.xchg(Some(Arc::new(Tracked::new(&drops)))).unwrap();
    let guard = read::enter();
    let seen = slot.load(&guard).unwrap();

    // A clone of the slot's reference: unwrapped at once, even under this thread's guard.
    let clone = slot.clone_current().unwrap();
    assert!(!clone.is_reserved());
    let mine = clone.into_inner().unwrap();
    assert!(Arc::ptr_eq(
        &mine,
        &slot.clone_current().unwrap().clone_arc()
    ));

    // The slot's own reference, taken: `clone_arc` needs no grace period either.
    let old = slot.take().unwrap();
    let also_mine = old.clone_arc();
    assert!(std::ptr::eq(&*old, seen));
    assert_eq!(Arc::strong_count(&mine), 3);
    drop(old); // the slot's reference waits for the grace period
    drop(guard);
    rt.drain_and_wait().unwrap();
    assert_eq!(Arc::strong_count(&mine), 2);
    drop(also_mine);
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(mine); // the last reference
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn a_restricted_context_drop_still_defers_past_the_readers() {
    let rt = manual();
    let drops = Arc::new(AtomicUsize::new(0));
    let slot = ReadSlot::new(&rt);
    slot.xchg(Some(Box::new(Tracked::new(&drops)))).unwrap();
    let guard = read::enter();
    let seen = slot.load(&guard).unwrap();
    {
        // In a signal handler: take, read through the guard, drop.
        let _restricted = restricted::enter();
        let old = slot.take().unwrap();
        assert!(old.intact());
        assert!(std::ptr::eq(&*old, seen));
        let old = old.into_inner().unwrap_err(); // refused in a handler
        drop(old); // to the drainer with its job: no destructor here
    }
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    rt.drain().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 0, "destroyed under a reader");
    assert!(seen.intact());
    drop(guard);
    rt.drain_and_wait().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);

    // A write-only slot's object dropped in a handler goes to the drainer too.
    let slot = RefSlot::new(&rt);
    slot.xchg(Some(Box::new(Tracked::new(&drops)))).unwrap();
    {
        let _restricted = restricted::enter();
        let old = slot.take().unwrap();
        assert!(old.intact());
        drop(old);
    }
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(rt.drain().unwrap(), 1);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn an_owned_box_from_a_readable_slot_defers_itself_past_the_readers() {
    let rt = manual();
    let drops = Arc::new(AtomicUsize::new(0));
    let slot: ReadSlot<Owned<Tracked>> = ReadSlot::new(&rt);
    slot.xchg(Some(Owned::new(&rt, Tracked::new(&drops))))
        .unwrap();
    let guard = read::enter();
    let seen = slot.load(&guard).unwrap();
    {
        let _restricted = restricted::enter();
        let old = slot.take().unwrap();
        assert!(std::ptr::eq(&*old, seen));
        drop(old); // one push of its own node, no `Owned` rebuilt
    }
    rt.drain().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 0, "destroyed under a reader");
    assert!(seen.intact());
    drop(guard);
    rt.drain_and_wait().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn a_detached_can_be_sent_and_shared_like_the_object() {
    fn send<T: Send>(_: &T) {}
    fn sync<T: Sync>(_: &T) {}
    let rt = manual();
    let slot: RefSlot<Box<u32>> = RefSlot::new(&rt);
    slot.xchg(Some(Box::new(7))).unwrap();
    let old = slot.take().unwrap();
    send(&old);
    sync(&old);
    let value = thread::scope(|s| s.spawn(|| *old).join().unwrap());
    assert_eq!(value, 7);
    let moved = thread::scope(|s| s.spawn(move || *old.into_inner().unwrap()).join().unwrap());
    assert_eq!(moved, 7);
}
