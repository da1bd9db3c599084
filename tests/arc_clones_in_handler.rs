//! `Arc` references that a signal handler clones out of a `ReadSlot` (`clone_current`) and drops
//! there, with real signals and no job to spare:
//!
//! - while the slot keeps its object, a clone dropped in the handler is a plain decrement: no
//!   job spent, nothing parked or leaked, nothing queued, no allocator call, and however many
//!   the handler drops, the count comes back to the slot's one reference;
//! - a clone that outlives its object's stay in the slot may be the last reference, so it is
//!   deferred, never destroyed in the handler: with no job spare, it is parked in the emergency
//!   area, and the drainer destroys it once.
//!
//! The handler is installed on one signal for the whole file, so the file holds one test.

mod common;

use common::{NMI, install_handler, restore_handler, this_thread};
use nix::sys::pthread::pthread_kill;
use sigdrop::alloc_check::RestrictedAllocs;
use sigdrop::{Drainer, ReadSlot, Runtime, restricted};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

#[global_allocator]
static GLOBAL: RestrictedAllocs = RestrictedAllocs::system();

/// Clones each delivery takes and drops while the slot keeps its object.
const CLONES_PER_SIGNAL: u64 = 1_000;
const SIGNALS: u64 = 200;
const VALUE: u64 = 0x00C1_0AE5;

/// What the handler does when it runs.
static PHASE: AtomicUsize = AtomicUsize::new(CLONE_AND_DROP);
const CLONE_AND_DROP: usize = 0;
const CLONE_TAKE_THEN_DROP: usize = 1;

static CLONES: AtomicU64 = AtomicU64::new(0);
static WRONG_VALUES: AtomicU64 = AtomicU64::new(0);
static DESTROYED: AtomicU64 = AtomicU64::new(0);
static DTOR_IN_RESTRICTED: AtomicU64 = AtomicU64::new(0);

/// A value with a heap part, so that a destructor run in the handler would free.
struct Config {
    value: u64,
    _payload: Vec<u64>,
}

impl Drop for Config {
    fn drop(&mut self) {
        if restricted::is_active() {
            DTOR_IN_RESTRICTED.fetch_add(1, Ordering::Relaxed);
        }
        DESTROYED.fetch_add(1, Ordering::Relaxed);
    }
}

struct State {
    rt: Runtime,
    slot: ReadSlot<Arc<Config>>,
}

static STATE: OnceLock<State> = OnceLock::new();

extern "C" fn on_nmi(_: libc::c_int) {
    let _nmi = restricted::enter();
    let Some(st) = STATE.get() else { return };
    match PHASE.load(Ordering::Relaxed) {
        CLONE_AND_DROP => {
            for _ in 0..CLONES_PER_SIGNAL {
                let Some(clone) = st.slot.clone_current() else {
                    WRONG_VALUES.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                if clone.value != VALUE {
                    WRONG_VALUES.fetch_add(1, Ordering::Relaxed);
                }
                CLONES.fetch_add(1, Ordering::Relaxed);
                drop(clone); // the slot still holds the object: a decrement
            }
        }
        _ => {
            let clone = st.slot.clone_current();
            drop(st.slot.take()); // its own job: deferred
            drop(clone); // maybe the last reference now: deferred, with no job to spare
        }
    }
}

fn make_config() -> Arc<Config> {
    Arc::new(Config {
        value: VALUE,
        _payload: vec![1; 16],
    })
}

#[test]
fn clones_dropped_in_a_handler_need_no_job_while_the_slot_keeps_the_object() {
    let rt = Runtime::builder()
        .drainer(Drainer::Manual)
        .headroom(0)
        .hysteresis(0)
        .build()
        .unwrap();
    let slot = ReadSlot::new(&rt);
    slot.xchg(Some(make_config())).unwrap();
    assert!(STATE.set(State { rt, slot }).is_ok());
    let st = STATE.get().unwrap();
    st.rt.trim().unwrap();
    let before = st.rt.stats();
    assert_eq!((before.spare, before.reserved), (0, 0), "{before:?}");

    // Touch the restricted-context thread-local before any handler can run (see restricted.rs).
    assert!(!restricted::is_active());
    let previous = install_handler(NMI, on_nmi);
    GLOBAL.take();
    for _ in 0..SIGNALS {
        // The handler has run when `pthread_kill` to this thread returns.
        pthread_kill(this_thread(), NMI).expect("pthread_kill self");
    }
    let allocs = GLOBAL.take();
    let s = st.rt.stats();
    assert_eq!(CLONES.load(Ordering::Relaxed), SIGNALS * CLONES_PER_SIGNAL);
    assert_eq!(WRONG_VALUES.load(Ordering::Relaxed), 0);
    assert_eq!(
        allocs.restricted(),
        0,
        "allocator calls in the handler: {allocs:?}"
    );
    assert_eq!((s.emergency, s.leaked, s.pending), (0, 0, 0), "{s:?}");
    assert_eq!(s.total, before.total, "no job grown or spent: {s:?}");
    {
        let mine = st.slot.clone_current().unwrap().into_inner().ok().unwrap();
        assert_eq!(Arc::strong_count(&mine), 2, "the slot's and this one");
    }
    assert_eq!(DESTROYED.load(Ordering::Relaxed), 0);

    // Now the handler takes the object out before dropping its clone: that clone may be the
    // last reference, so it must be deferred, and with no job spare it is parked.
    PHASE.store(CLONE_TAKE_THEN_DROP, Ordering::Relaxed);
    pthread_kill(this_thread(), NMI).expect("pthread_kill self");
    let allocs = GLOBAL.take();
    restore_handler(NMI, &previous);
    let s = st.rt.stats();
    assert_eq!(
        allocs.restricted(),
        0,
        "allocator calls in the handler: {allocs:?}"
    );
    assert_eq!((s.emergency, s.leaked), (1, 0), "the clone parked: {s:?}");
    assert_eq!(
        DESTROYED.load(Ordering::Relaxed),
        0,
        "destroyed in the handler"
    );
    st.rt.drain_and_wait().unwrap();
    assert_eq!(DESTROYED.load(Ordering::Relaxed), 1);
    assert_eq!(DTOR_IN_RESTRICTED.load(Ordering::Relaxed), 0);
    assert!(st.slot.is_empty());
}
