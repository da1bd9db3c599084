//! Group `read`: protected reads. A read guard's enter + exit (in restricted context, as a
//! handler would, and in ordinary context) against one uncontended `fetch_add`; a load under a
//! guard plus a field read, sigdrop (`read::enter` + `ReadSlot::load`) against crossbeam-epoch
//! (`pin` + `Atomic::load`) and arc-swap (`ArcSwap::load`), alone and with a thread on the other
//! CPU replacing the object as fast as it can (the writers' rates go to
//! `target/sigdrop-bench/read_writers.json`); and a new reference, `ReadSlot::clone_current` +
//! `into_inner` + drop against arc-swap `load_full` + drop.

use crate::extras;
use crate::fixtures::manual_runtime;
use crate::harness::{Pinned, pinned};
use arc_swap::ArcSwap;
use criterion::Criterion;
use crossbeam_epoch as epoch;
use crossbeam_utils::CachePadded;
use sigdrop::{ReadSlot, read, restricted};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// The object readers borrow: they read one field through the reference.
struct Config {
    version: u64,
}

fn config_arc(version: u64) -> Arc<Config> {
    Arc::new(Config { version })
}

/// Replacements between two drains of the sigdrop writer (manual drainer).
const WRITER_DRAIN_EVERY: usize = 64;

/// Runs `replace` in a loop on a thread pinned to CPU 1 while `measure` runs on this thread;
/// returns the writer's replacements and how long it ran, as `(count, ns)`.
fn with_writer(replace: impl FnMut() + Send, measure: impl FnOnce()) -> (u64, u128) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let stop = &stop;
        let mut replace = replace;
        let writer = s.spawn(move || {
            let _pin = Pinned::to(1);
            let start = Instant::now();
            let mut count = 0u64;
            // Relaxed: a stop flag; nothing is published with it (the join synchronises).
            while !stop.load(Ordering::Relaxed) {
                replace();
                count += 1;
            }
            (count, start.elapsed().as_nanos())
        });
        measure();
        // Relaxed: see the load above.
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("the writer thread panicked")
    })
}

pub fn group(c: &mut Criterion) {
    let mut g = c.benchmark_group("read");

    // The read guard's floor: one uncontended RMW on a counter of its own cache line (entering a
    // guard is one such increment, leaving it one decrement).
    let counter = CachePadded::new(AtomicUsize::new(0));
    pinned(&mut g, "one uncontended fetch_add", || {
        counter.fetch_add(1, Ordering::SeqCst)
    });
    // As a signal handler would: restricted context entered once, outside the timed loop.
    {
        let _nmi = restricted::enter();
        pinned(&mut g, "guard enter+exit (restricted)", || {
            drop(read::enter())
        });
    }
    pinned(&mut g, "guard enter+exit", || drop(read::enter()));

    // Ordinary-context loads: enter the peer's guard, load the pointer, read a field, leave.
    let rt = manual_runtime(WRITER_DRAIN_EVERY + 1);
    let slot: ReadSlot<Arc<Config>> = ReadSlot::new(&rt);
    drop(slot.xchg(Some(config_arc(0))).expect("install"));
    let atomic = epoch::Atomic::new(Config { version: 0 });
    let swap = ArcSwap::new(config_arc(0));

    let sigdrop_load = || {
        let guard = read::enter();
        slot.load(&guard).expect("the slot is never empty").version
    };
    let epoch_load = || {
        let guard = epoch::pin();
        // Acquire: pairs with the Release half of the store or swap that published the object,
        // so its contents are seen.
        let shared = atomic.load(Ordering::Acquire, &guard);
        // SAFETY: the `Atomic` always holds an object (every swap puts a new one in), and it is
        // destroyed only after every guard pinned before its removal is gone; `guard` is alive
        // for as long as the borrow.
        unsafe { shared.deref() }.version
    };
    let arcswap_load = || swap.load().version;

    // Each peer's replacement, run as fast as it can by the writer thread (a fresh allocation
    // each time; the old object goes to the peer's reclamation).
    let (slot_ref, rt_ref, atomic_ref, swap_ref) = (&slot, &rt, &atomic, &swap);
    let mut next_sigdrop = 1u64;
    let sigdrop_replace = move || {
        drop(
            slot_ref
                .xchg(Some(config_arc(next_sigdrop)))
                .expect("replace"),
        );
        next_sigdrop += 1;
        if next_sigdrop.is_multiple_of(WRITER_DRAIN_EVERY as u64) {
            rt_ref
                .drain()
                .expect("drain in ordinary context, no guard held");
        }
    };
    let mut next_epoch = 1u64;
    let epoch_replace = move || {
        let guard = epoch::pin();
        let old = atomic_ref.swap(
            epoch::Owned::new(Config {
                version: next_epoch,
            }),
            // AcqRel: Release publishes the new object to the readers' Acquire loads; Acquire
            // makes the old object's contents ours to destroy.
            Ordering::AcqRel,
            &guard,
        );
        // SAFETY: `old` was unlinked from the only place that published it; readers pinned
        // before the swap are protected by the epoch.
        unsafe { guard.defer_destroy(old) };
        next_epoch += 1;
    };
    let mut next_arcswap = 1u64;
    let arcswap_replace = move || {
        swap_ref.store(config_arc(next_arcswap));
        next_arcswap += 1;
    };

    type Peer<'a> = (
        &'static str,
        &'static str,
        &'a dyn Fn() -> u64,
        Box<dyn FnMut() + Send + 'a>,
    );
    let peers: [Peer<'_>; 3] = [
        (
            "sigdrop",
            "sigdrop",
            &sigdrop_load,
            Box::new(sigdrop_replace),
        ),
        (
            "crossbeam-epoch",
            "epoch",
            &epoch_load,
            Box::new(epoch_replace),
        ),
        (
            "arc-swap",
            "arcswap",
            &arcswap_load,
            Box::new(arcswap_replace),
        ),
    ];
    for (name, _, load, _) in &peers {
        pinned(&mut g, &format!("{name} load"), load);
    }
    // The same loads while a thread on the other CPU runs the peer's replacement.
    let mut writers = serde_json::Map::new();
    for (name, key, load, replace) in peers {
        let (count, ns) = with_writer(replace, || {
            pinned(&mut g, &format!("{name} load, writer"), load);
        });
        writers.insert(format!("{key}_replacements"), count.into());
        writers.insert(format!("{key}_ns"), (ns as u64).into());
    }
    rt.drain().expect("drain");
    extras::write("read_writers.json", &writers.into());

    // A reference of one's own: sigdrop's `clone_current` (guard + strong-count increment) taken
    // out with `into_inner` (no grace period for a clone) and dropped, vs arc-swap's `load_full`.
    pinned(&mut g, "sigdrop clone_current", || {
        let mine = slot.clone_current().expect("the slot is never empty");
        let arc = mine
            .into_inner()
            .ok()
            .expect("ordinary context, no guard held");
        drop(arc)
    });
    pinned(&mut g, "arc-swap load_full", || drop(swap.load_full()));
    g.finish();

    drop(slot);
    rt.drain().expect("drain");
    // SAFETY: the writer has been joined and no guard is alive: nothing else can reach the
    // object in the `Atomic` any more.
    drop(unsafe { atomic.into_owned() });
    epoch::pin().flush();
}
