//! P8 panics contained: a destructor that panics on the drainer thread is caught and counted,
//! and the drainer and every other destructor carry on.
//!
//! A runtime with a drainer thread and `Policy::AlwaysDefer` (so every teardown, ordinary ones
//! included, goes to the drainer). Two producer threads install objects with unique ids into
//! their slots, replacing and clearing them; every 7th object's destructor panics, and every
//! 21st panics with a payload whose own destructor panics too. The test waits (bounded) until
//! everything is drained and asserts: every destructor ran exactly once and on the drainer,
//! `dtor_panics` equals the number of panicking destructors, `drained == offloaded == objects`,
//! and the drainer still runs destructors afterwards.
//!
//! A panic hook keeps the expected panics quiet; any other panic is reported as usual.

use sigdrop::{Policy, RefSlot, Runtime};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

const PRODUCERS: u64 = 2;
const SLOTS_PER_PRODUCER: usize = 16;
const PER_PRODUCER: u64 = 3_000;
const OBJECTS: u64 = PRODUCERS * PER_PRODUCER;

/// The payload of an expected panic.
struct QuietPanic;

/// An expected panic payload whose own destructor panics (with a `QuietPanic`).
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        std::panic::panic_any(QuietPanic);
    }
}

fn quiet_expected_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            if !(p.is::<QuietPanic>() || p.is::<Bomb>()) {
                default(info);
            }
        }));
    });
}

static RAN: OnceLock<Vec<AtomicU8>> = OnceLock::new();
static OFF_DRAINER: AtomicU64 = AtomicU64::new(0);

fn panics(id: u64) -> bool {
    id.is_multiple_of(7)
}

struct Obj {
    id: u64,
}

impl Drop for Obj {
    fn drop(&mut self) {
        RAN.get().unwrap()[self.id as usize].fetch_add(1, Ordering::Relaxed);
        if std::thread::current().name() != Some("sigdrop-drainer") {
            OFF_DRAINER.fetch_add(1, Ordering::Relaxed);
        }
        if panics(self.id) {
            if self.id.is_multiple_of(21) {
                std::panic::panic_any(Bomb);
            }
            std::panic::panic_any(QuietPanic);
        }
    }
}

fn wait_for(rt: &Runtime, what: &str, cond: impl Fn(&sigdrop::Stats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = rt.stats();
        if cond(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn panicking_destructors_are_caught_counted_and_do_not_stop_the_drainer() {
    quiet_expected_panics();
    RAN.set((0..OBJECTS + 1).map(|_| AtomicU8::new(0)).collect())
        .unwrap();
    let rt = Runtime::builder()
        .policy(Policy::AlwaysDefer)
        .build()
        .unwrap();

    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let rt = &rt;
            s.spawn(move || {
                let slots: Vec<RefSlot<Box<Obj>>> =
                    (0..SLOTS_PER_PRODUCER).map(|_| RefSlot::new(rt)).collect();
                for n in 0..PER_PRODUCER {
                    let id = p * PER_PRODUCER + n;
                    let slot = &slots[(n as usize * 5) % SLOTS_PER_PRODUCER];
                    // Install or replace (the old object is deferred: AlwaysDefer).
                    drop(slot.xchg(Some(Box::new(Obj { id }))).expect("install"));
                    if n.is_multiple_of(3) {
                        slot.clear(); // deferred too
                    }
                }
                // Dropping the slots clears them: deferred as well.
            });
        }
    });

    wait_for(&rt, "every object to be drained", |s| s.drained == OBJECTS);
    let s = rt.stats();
    let expected_panics = (0..OBJECTS).filter(|&id| panics(id)).count() as u64;
    // Into a batch; or, if every open batch is busy at that instant (other threads adding to or
    // closing each of them: under load it happens), with a job. Never destroyed inline.
    assert_eq!(
        s.batched + s.offloaded,
        OBJECTS,
        "AlwaysDefer defers every teardown (in ordinary context: in batches, else with jobs): \
         {s:?}"
    );
    assert_eq!(s.drained, OBJECTS, "{s:?}");
    assert_eq!(s.dtor_panics, expected_panics, "{s:?}");
    assert_eq!((s.emergency, s.leaked), (0, 0), "{s:?}");
    let ran = RAN.get().unwrap();
    let wrong: Vec<(u64, u8)> = (0..OBJECTS)
        .map(|id| (id, ran[id as usize].load(Ordering::Relaxed)))
        .filter(|&(_, n)| n != 1)
        .take(10)
        .collect();
    assert!(wrong.is_empty(), "(id, runs) not exactly once: {wrong:?}");
    assert_eq!(
        OFF_DRAINER.load(Ordering::Relaxed),
        0,
        "a destructor ran off the drainer"
    );

    // The drainer is still alive and draining.
    let slot = RefSlot::new(&rt);
    drop(slot.xchg(Some(Box::new(Obj { id: OBJECTS }))).unwrap());
    slot.clear();
    wait_for(&rt, "the drainer to run one more destructor", |s| {
        s.drained == OBJECTS + 1
    });
    assert_eq!(ran[OBJECTS as usize].load(Ordering::Relaxed), 1);
    assert_eq!(rt.stats().dtor_panics, expected_panics);
}
