//! A value whose install a signal handler had refused (for want of a job, or because
//! `try_install` found the slot full), let go right there (the `Rejected` dropped, or turned
//! into its `Error` by `?`), is never destroyed in the handler: it goes to
//! the drainer as a value without a job does (a spare job, else the emergency area, else
//! leaked, and counted), and the drainer destroys it once. Real signals: the handler raises
//! nothing, allocates nothing and frees nothing; its values come from `Box::into_raw`.

mod common;

use common::counted::{Counted, DESTROYED, DESTROYED_IN_RESTRICTED};
use sigdrop::signal::{self, Signal, SignalInfo};
use sigdrop::{Drainer, Error, RefSlot, Runtime};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

/// The slot the handler installs into, and the value it installs (from `Box::into_raw`).
static SLOT: OnceLock<RefSlot<Box<Counted>>> = OnceLock::new();
static VALUE: AtomicPtr<Counted> = AtomicPtr::new(ptr::null_mut());
/// How the handler installs, and lets a refused value go: `DROP` or `QUESTION_MARK` after a
/// `replace`, or `TRY_INSTALL` (dropped after a `try_install`, refused if the slot is full).
static HOW: AtomicU8 = AtomicU8::new(DROP);
const DROP: u8 = 0;
const QUESTION_MARK: u8 = 1;
const TRY_INSTALL: u8 = 2;
/// Installs the handler saw refused.
static REFUSED: AtomicUsize = AtomicUsize::new(0);

fn install_from_handler(slot: &RefSlot<Box<Counted>>, value: Box<Counted>) -> Result<(), Error> {
    drop(slot.replace(value)?); // a refusal becomes its `Error` here, letting the value go
    Ok(())
}

fn on_signal(_: &SignalInfo) {
    let (Some(slot), p) = (SLOT.get(), VALUE.swap(ptr::null_mut(), Ordering::SeqCst)) else {
        return;
    };
    if p.is_null() {
        return;
    }
    // SAFETY: from `Box::into_raw` in the test; the swap made it ours.
    let value = unsafe { Box::from_raw(p) };
    let refused = match HOW.load(Ordering::SeqCst) {
        DROP => match slot.replace(value) {
            Ok(previous) => {
                drop(previous);
                false
            }
            Err(rejected) => {
                drop(rejected);
                true
            }
        },
        QUESTION_MARK => install_from_handler(slot, value).is_err(),
        _ => slot.try_install(value).is_err(), // the refusal dropped at once
    };
    if refused {
        REFUSED.fetch_add(1, Ordering::SeqCst);
    }
}

fn raise_with(how: u8) {
    HOW.store(how, Ordering::SeqCst);
    VALUE.store(Box::into_raw(Box::new(Counted)), Ordering::SeqCst);
    // SAFETY: raising a signal whose handler is installed, on this thread.
    assert_eq!(unsafe { libc::raise(libc::SIGUSR1) }, 0);
    assert!(VALUE.load(Ordering::SeqCst).is_null(), "the handler ran");
}

#[test]
fn a_refused_value_let_go_in_a_handler_goes_to_the_drainer() {
    // No spare job ever kept, nothing reserved, room to park one object.
    let rt = Runtime::builder()
        .shards(1)
        .headroom(0)
        .hysteresis(0)
        .emergency_capacity(1)
        .drainer(Drainer::Manual)
        .build()
        .unwrap();
    assert!(SLOT.set(RefSlot::new(&rt)).is_ok());
    // SAFETY: the handler touches only atomics, the static slot's restricted-context
    // operations, and a value allocated before the signal.
    let _installed = unsafe { signal::install(Signal::SIGUSR1, on_signal) }.unwrap();
    rt.trim().unwrap();
    assert_eq!(rt.stats().spare, 0, "{:?}", rt.stats());

    // Dropped: parked in the emergency area.
    raise_with(DROP);
    assert_eq!(REFUSED.load(Ordering::SeqCst), 1, "no job: refused");
    assert_eq!(
        DESTROYED.load(Ordering::SeqCst),
        0,
        "not destroyed in the handler"
    );
    assert_eq!(rt.stats().emergency, 1, "{:?}", rt.stats());

    // `?`: the emergency area is full now, so leaked, and counted.
    raise_with(QUESTION_MARK);
    assert_eq!(REFUSED.load(Ordering::SeqCst), 2);
    assert_eq!(
        DESTROYED.load(Ordering::SeqCst),
        0,
        "not destroyed in the handler"
    );
    let s = rt.stats();
    assert_eq!((s.emergency, s.leaked), (1, 1), "{s:?}");

    // The parked one is destroyed by the drain, once.
    assert_eq!(rt.drain().unwrap(), 1);
    assert_eq!(DESTROYED.load(Ordering::SeqCst), 1);
    assert_eq!(rt.drain().unwrap(), 0);

    // After a drain the emergency area has room again, and a spare job appears only if the
    // pool keeps one: with a job reserved, the install goes in.
    rt.reserve(1).unwrap();
    raise_with(DROP);
    assert_eq!(
        REFUSED.load(Ordering::SeqCst),
        2,
        "installed with the reserved job"
    );
    assert!(!SLOT.get().unwrap().is_empty());

    // An install that never displaces, into the full slot: refused, and the value dropped
    // there goes to the emergency area (no spare job), destroyed by the next drain.
    raise_with(TRY_INSTALL);
    assert_eq!(REFUSED.load(Ordering::SeqCst), 3, "occupied");
    assert_eq!(
        DESTROYED.load(Ordering::SeqCst),
        1,
        "not destroyed in the handler"
    );
    assert_eq!(rt.stats().emergency, 2, "{:?}", rt.stats());
    assert_eq!(rt.drain().unwrap(), 1);
    assert_eq!(DESTROYED.load(Ordering::SeqCst), 2);
    assert_eq!(DESTROYED_IN_RESTRICTED.load(Ordering::SeqCst), 0);
}
