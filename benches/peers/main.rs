//! sigdrop against the peers a user would pick, every peer measured in the same run (issue 5).
//!
//! Run with `cargo bench`; then `cargo run --release -p sigdrop-benches --bin bench_report` prints the ratio
//! table (and `-- --out BENCHMARKS.md` writes it). Groups:
//!
//! - `slot`: `AtomicPtr::swap` (the floor), `RawSlot::xchg`, `RefSlot` replace present->present,
//!   install into empty, take out; three uncontended RMWs in a row (the restricted-path floor).
//! - `teardown`: one restricted teardown with the guard active, no signal, and no wake because
//!   the pending flag is already set; sigdrop vs basedrop `drop(Owned)` vs crossbeam-epoch `pin`
//!   + `defer_destroy` vs a `Mutex<Vec>` push vs the kernel v2 model (`v2.rs`).
//! - `lifecycle`: create + install + restricted teardown + drain/collect, per object.
//! - `two_threads`: restricted teardowns on two threads, each pinned to its own CPU, vs one
//!   thread, for sigdrop and for the v2 model's global idle list; the figure is per teardown per
//!   thread.
//! - `drain`: drain cost per job with a no-op destructor and with a `Box` free, and the `Box` free
//!   alone (to subtract).
//! - `latency`: offload-to-destructor latency with the drainer thread asleep (criterion's mean;
//!   p50/p99 go to `target/sigdrop-bench/latency.json`), and a teardown storm whose wake and
//!   drain-cycle counts go to `target/sigdrop-bench/storm.json`.
//! - `signal`: cost per real signal (tgkill to the own thread) with an empty handler and with 8
//!   offloads in it (drainer thread; and pending already set, to isolate the wake).
//! - `read`: protected reads. A read guard's enter + exit (in restricted context, as a handler
//!   would, and in ordinary context) vs one uncontended `fetch_add`; a load under a guard plus a
//!   field read, sigdrop (`read::enter` + `ReadSlot::load`) vs crossbeam-epoch (`pin` +
//!   `Atomic::load`) vs arc-swap (`ArcSwap::load`), alone and with a thread on the other CPU
//!   replacing the object as fast as it can (the writers' rates go to
//!   `target/sigdrop-bench/read_writers.json`); and a new reference, `ReadSlot::clone_current` +
//!   `into_inner` + drop vs arc-swap `load_full` + drop.
//!
//! Single-threaded groups pin the measuring thread to CPU 0 (restored afterwards), so that every
//! teardown uses the same shard and the figures do not depend on where the scheduler put us.
//! Runtimes with a drainer thread are built before pinning, so the drainer may run anywhere.

mod util;
mod v2;

use arc_swap::ArcSwap;
use basedrop::{Collector, Owned as BdOwned};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use crossbeam_epoch as epoch;
use crossbeam_utils::CachePadded;
use sigdrop::{Destroy, Drainer, Raw, RawSlot, ReadSlot, RefSlot, Runtime, read, restricted};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use util::{Pinned, SpinBarrier, chunked, percentile, write_extra};
use v2::V2;

/// Operations per timed chunk in the single-threaded groups.
const CHUNK: usize = 256;
/// Teardowns per thread per round in the two-thread group (long enough that the two threads'
/// timed regions overlap: ~10-50 µs each).
const CHUNK_2T: usize = 1024;
/// The CPU single-threaded benches run on.
const CPU: usize = 0;

/// A runtime without a drainer thread (drain is called between timed chunks, so the pending flag
/// stays set during them), sized for `claims` installs between two drains.
///
/// Its headroom is at least twice that: a burst of `claims` installs never takes the spare count
/// below the refill watermark (headroom / 2), and the drain that credits them back never lifts it
/// above the trim watermark (headroom + headroom / 2). So install, take, teardown and drain are
/// measured in steady state, and the pool neither grows nor trims between rounds. (With less, it
/// grows on the installing thread's shard and trims from the draining thread's shard every round,
/// which moves jobs between shards: see the two-thread group.)
fn manual_runtime(claims: usize) -> Runtime {
    Runtime::builder()
        .drainer(Drainer::Manual)
        .headroom(2 * claims + 16)
        .build()
        .expect("build a manual runtime")
}

/// # Safety
/// `p` came from `Box::<u64>::into_raw` and is owned by the caller.
unsafe fn drop_box_u64(p: *mut ()) {
    // SAFETY: the caller's contract.
    drop(unsafe { Box::from_raw(p.cast::<u64>()) });
}

fn boxed_raw(v: u64) -> *mut () {
    Box::into_raw(Box::new(v)).cast()
}

/// Leaves one job queued on this CPU's list with the pending flag set: after a drain (which clears
/// the flag and empties the lists) the next restricted teardown would ring; this one does, outside
/// the timed region, so every timed teardown finds the list non-empty and the flag set and takes
/// the path without a wake. (The flag is internal; this is the public-API way to set it.)
fn set_pending(sentinel: &RefSlot<Box<u64>>) {
    let _ = sentinel
        .xchg(Some(Box::new(0)))
        .expect("install the sentinel");
    let _nmi = restricted::enter();
    sentinel.clear();
}

// ---------------------------------------------------------------------------------------------
// slot operations

fn slot_ops(c: &mut Criterion) {
    let mut g = c.benchmark_group("slot");
    let mut a = 1u64;
    let mut b = 2u64;
    let (pa, pb) = (&mut a as *mut u64, &mut b as *mut u64);

    let atomic = AtomicPtr::new(pa);
    g.bench_function("AtomicPtr::swap", |bench| {
        let _pin = Pinned::to(CPU);
        let mut next = pb;
        bench.iter(|| next = atomic.swap(black_box(next), Ordering::AcqRel))
    });

    let raw = RawSlot::new();
    raw.xchg(NonNull::new(pa));
    g.bench_function("RawSlot::xchg", |bench| {
        let _pin = Pinned::to(CPU);
        let mut next = NonNull::new(pb);
        bench.iter(|| next = raw.xchg(black_box(next)))
    });

    let rt = manual_runtime(CHUNK + 1);
    let slot = RefSlot::new(&rt);
    let _ = slot.xchg(Some(Box::new(0u64))).expect("install");
    let mut spare = Some(Box::new(1u64));
    g.bench_function("RefSlot replace present->present", |bench| {
        let _pin = Pinned::to(CPU);
        bench.iter(|| {
            let old = slot.xchg(black_box(spare.take())).unwrap().unwrap();
            spare = Some(old.into_inner().unwrap());
        })
    });

    // Install and take over a chunk of slots: each op is measured alone, the inverse op restores
    // the state untimed. Boxes are made once and move between `spare` and the slots.
    let slots: Vec<RefSlot<Box<u64>>> = (0..CHUNK).map(|_| RefSlot::new(&rt)).collect();
    let mut spares: Vec<Option<Box<u64>>> = (0..CHUNK as u64).map(|i| Some(Box::new(i))).collect();
    let empty_all = |spares: &mut Vec<Option<Box<u64>>>, n: usize| {
        for (s, b) in slots[..n].iter().zip(spares.iter_mut()) {
            if let Some(d) = s.take() {
                *b = Some(d.into_inner().unwrap());
            }
        }
    };
    let fill_all = |spares: &mut Vec<Option<Box<u64>>>, n: usize| {
        for (s, b) in slots[..n].iter().zip(spares.iter_mut()) {
            if let Some(v) = b.take() {
                let _ = s.xchg(Some(v)).unwrap();
            }
        }
    };
    g.bench_function("RefSlot install into empty", |bench| {
        let _pin = Pinned::to(CPU);
        bench.iter_custom(|iters| chunked(iters, CHUNK, &mut spares, empty_all, fill_all))
    });
    g.bench_function("RefSlot take out", |bench| {
        let _pin = Pinned::to(CPU);
        bench.iter_custom(|iters| chunked(iters, CHUNK, &mut spares, fill_all, empty_all))
    });
    empty_all(&mut spares, CHUNK);

    // The restricted path's floor: a swap and two CASes (what a teardown's take, freelist pop and
    // job-list push are at minimum), each on its own cache line, uncontended.
    let r1 = CachePadded::new(AtomicPtr::new(pa));
    let r2 = CachePadded::new(AtomicU64::new(0));
    let r3 = CachePadded::new(AtomicU64::new(0));
    g.bench_function("3 uncontended RMWs", |bench| {
        let _pin = Pinned::to(CPU);
        let mut next = pb;
        let (mut k2, mut k3) = (r2.load(Ordering::Relaxed), r3.load(Ordering::Relaxed));
        bench.iter(|| {
            next = r1.swap(black_box(next), Ordering::AcqRel);
            let _ = r2.compare_exchange(k2, k2 + 1, Ordering::AcqRel, Ordering::Relaxed);
            let _ = r3.compare_exchange(k3, k3 + 1, Ordering::AcqRel, Ordering::Relaxed);
            k2 += 1;
            k3 += 1;
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// restricted teardown

fn teardown(c: &mut Criterion) {
    let mut g = c.benchmark_group("teardown");

    // sigdrop: `RefSlot::clear` (take + drop of the `Detached`, which defers) with the guard
    // active. Setup (untimed): drain, re-set the pending flag, install a chunk of boxes.
    {
        let rt = manual_runtime(CHUNK + 1);
        let slots: Vec<RefSlot<Box<u64>>> = (0..CHUNK).map(|_| RefSlot::new(&rt)).collect();
        let sentinel = RefSlot::new(&rt);
        g.bench_function("sigdrop RefSlot take+defer", |bench| {
            let _pin = Pinned::to(CPU);
            bench.iter_custom(|iters| {
                chunked(
                    iters,
                    CHUNK,
                    &mut (),
                    |_, n| {
                        rt.drain().unwrap();
                        set_pending(&sentinel);
                        for (i, s) in slots[..n].iter().enumerate() {
                            let _ = s.xchg(Some(Box::new(i as u64))).unwrap();
                        }
                    },
                    |_, n| {
                        let _nmi = restricted::enter();
                        for s in &slots[..n] {
                            s.clear();
                        }
                    },
                )
            })
        });
        rt.drain().unwrap();
    }

    // basedrop: dropping an `Owned` pushes its node on the collector's queue (basedrop has no
    // slot, so no exchange is included: the peer's figure is its bare hand-over).
    {
        let mut collector = Collector::new();
        let handle = collector.handle();
        let mut objs: Vec<BdOwned<u64>> = Vec::with_capacity(CHUNK);
        g.bench_function("basedrop drop(Owned)", |bench| {
            let _pin = Pinned::to(CPU);
            bench.iter_custom(|iters| {
                chunked(
                    iters,
                    CHUNK,
                    &mut objs,
                    |objs, n| {
                        collector.collect();
                        objs.extend((0..n as u64).map(|i| BdOwned::new(&handle, i)));
                    },
                    |objs, _| {
                        for o in objs.drain(..) {
                            drop(o);
                        }
                    },
                )
            })
        });
        collector.collect();
    }

    // crossbeam-epoch: `pin` + `defer_destroy` per object (again no exchange). Its own
    // collection work (sealing full bags, collecting every 128 pins, which runs destructors)
    // happens inside these calls and is part of its cost.
    {
        let mut objs: Vec<epoch::Owned<u64>> = Vec::with_capacity(CHUNK);
        g.bench_function("crossbeam-epoch pin+defer_destroy", |bench| {
            let _pin = Pinned::to(CPU);
            bench.iter_custom(|iters| {
                chunked(
                    iters,
                    CHUNK,
                    &mut objs,
                    |objs, n| objs.extend((0..n as u64).map(epoch::Owned::new)),
                    |objs, _| {
                        for o in objs.drain(..) {
                            let guard = epoch::pin();
                            let shared = o.into_shared(&guard);
                            // SAFETY: `shared` was never published anywhere, so no other thread
                            // can hold a reference to it; destroying it later is sound.
                            unsafe { guard.defer_destroy(shared) };
                        }
                    },
                )
            })
        });
    }

    // Mutex<Vec>: lock, push the box, unlock (capacity reserved, so no reallocation).
    {
        let queue: Mutex<Vec<Box<u64>>> = Mutex::new(Vec::with_capacity(CHUNK + 1));
        let mut objs: Vec<Box<u64>> = Vec::with_capacity(CHUNK);
        g.bench_function("Mutex<Vec> push", |bench| {
            let _pin = Pinned::to(CPU);
            bench.iter_custom(|iters| {
                chunked(
                    iters,
                    CHUNK,
                    &mut objs,
                    |objs, n| {
                        queue.lock().unwrap().clear();
                        objs.extend((0..n as u64).map(Box::new));
                    },
                    |objs, _| {
                        for o in objs.drain(..) {
                            queue.lock().unwrap().push(o);
                        }
                    },
                )
            })
        });
    }

    // The kernel v2 model: xchg + offload + offload_dec, job list already non-empty (no
    // irq_work), one global idle list.
    {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let model = V2::new(4 * CHUNK, cpus);
        let slots: Vec<AtomicPtr<()>> = (0..CHUNK)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect();
        let sentinel = AtomicPtr::new(std::ptr::null_mut());
        g.bench_function("kernel v2 model", |bench| {
            let _pin = Pinned::to(CPU);
            bench.iter_custom(|iters| {
                chunked(
                    iters,
                    CHUNK,
                    &mut (),
                    |_, n| {
                        model.drain();
                        model.install(&sentinel, boxed_raw(0));
                        model.nmi_teardown(&sentinel, drop_box_u64);
                        for (i, s) in slots[..n].iter().enumerate() {
                            model.install(s, boxed_raw(i as u64));
                        }
                    },
                    |_, n| {
                        for s in &slots[..n] {
                            model.nmi_teardown(s, drop_box_u64);
                        }
                    },
                )
            })
        });
        model.drain();
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// full lifecycle

fn lifecycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("lifecycle");

    // sigdrop: Box::new, install into an empty RefSlot, restricted teardown, drain (manual).
    {
        let rt = manual_runtime(CHUNK + 1);
        let slots: Vec<RefSlot<Box<u64>>> = (0..CHUNK).map(|_| RefSlot::new(&rt)).collect();
        g.bench_function("sigdrop", |bench| {
            let _pin = Pinned::to(CPU);
            bench.iter_custom(|iters| {
                chunked(
                    iters,
                    CHUNK,
                    &mut (),
                    |_, _| {},
                    |_, n| {
                        for (i, s) in slots[..n].iter().enumerate() {
                            let _ = s.xchg(Some(Box::new(i as u64))).unwrap();
                        }
                        {
                            let _nmi = restricted::enter();
                            for s in &slots[..n] {
                                s.clear();
                            }
                        }
                        black_box(rt.drain().unwrap());
                    },
                )
            })
        });
    }

    // basedrop: Owned::new, keep it (basedrop has no slot: a Vec holds it), drop, collect.
    {
        let mut collector = Collector::new();
        let handle = collector.handle();
        let mut objs: Vec<BdOwned<u64>> = Vec::with_capacity(CHUNK);
        g.bench_function("basedrop", |bench| {
            let _pin = Pinned::to(CPU);
            bench.iter_custom(|iters| {
                chunked(
                    iters,
                    CHUNK,
                    &mut objs,
                    |_, _| {},
                    |objs, n| {
                        objs.extend((0..n as u64).map(|i| BdOwned::new(&handle, i)));
                        for o in objs.drain(..) {
                            drop(o);
                        }
                        collector.collect();
                    },
                )
            })
        });
    }

    // crossbeam-epoch: Owned::new, store into an empty Atomic, pin + swap out + defer_destroy,
    // then flush (which also collects what earlier epochs left).
    {
        let slots: Vec<epoch::Atomic<u64>> = (0..CHUNK).map(|_| epoch::Atomic::null()).collect();
        g.bench_function("crossbeam-epoch", |bench| {
            let _pin = Pinned::to(CPU);
            bench.iter_custom(|iters| {
                chunked(
                    iters,
                    CHUNK,
                    &mut (),
                    |_, _| {},
                    |_, n| {
                        for (i, s) in slots[..n].iter().enumerate() {
                            s.store(epoch::Owned::new(i as u64), Ordering::Release);
                        }
                        for s in &slots[..n] {
                            let guard = epoch::pin();
                            let old = s.swap(epoch::Shared::null(), Ordering::AcqRel, &guard);
                            // SAFETY: `old` was unlinked from the only place that published it;
                            // readers pinned before the swap are protected by the epoch.
                            unsafe { guard.defer_destroy(old) };
                        }
                        epoch::pin().flush();
                    },
                )
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// two threads

/// Something restricted teardowns can be run on from several threads at once.
trait Teardowns: Sync {
    type Local;
    fn local(&self) -> Self::Local;
    /// Ordinary context, untimed, by one thread while the others wait: drain everything.
    fn collect(&self);
    /// Ordinary context, untimed: fill `n` slots and leave this CPU's list non-empty with the
    /// pending flag set.
    fn refill(&self, local: &mut Self::Local, n: usize);
    /// Timed: `n` restricted teardowns.
    fn teardown(&self, local: &mut Self::Local, n: usize);
}

struct SigdropSubject {
    rt: Runtime,
    /// One runtime per thread instead of one shared (a diagnostic row: nothing shared at all).
    per_thread_rt: bool,
}

impl Teardowns for SigdropSubject {
    type Local = (Vec<RefSlot<Box<u64>>>, RefSlot<Box<u64>>);
    fn local(&self) -> Self::Local {
        let rt = if self.per_thread_rt {
            manual_runtime(CHUNK_2T + 1)
        } else {
            self.rt.clone()
        };
        (
            (0..CHUNK_2T).map(|_| RefSlot::new(&rt)).collect(),
            RefSlot::new(&rt),
        )
    }
    fn collect(&self) {
        self.rt.drain().unwrap();
    }
    fn refill(&self, (slots, sentinel): &mut Self::Local, n: usize) {
        if self.per_thread_rt {
            sentinel.runtime().drain().unwrap();
        }
        set_pending(sentinel);
        for (i, s) in slots[..n].iter().enumerate() {
            let _ = s.xchg(Some(Box::new(i as u64))).unwrap();
        }
    }
    fn teardown(&self, (slots, _): &mut Self::Local, n: usize) {
        let _nmi = restricted::enter();
        for s in &slots[..n] {
            s.clear();
        }
    }
}

struct V2Subject {
    model: V2,
}

impl Teardowns for V2Subject {
    type Local = (Vec<AtomicPtr<()>>, AtomicPtr<()>);
    fn local(&self) -> Self::Local {
        (
            (0..CHUNK_2T)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            AtomicPtr::new(std::ptr::null_mut()),
        )
    }
    fn collect(&self) {
        self.model.drain();
    }
    fn refill(&self, (slots, sentinel): &mut Self::Local, n: usize) {
        self.model.install(sentinel, boxed_raw(0));
        self.model.nmi_teardown(sentinel, drop_box_u64);
        for (i, s) in slots[..n].iter().enumerate() {
            self.model.install(s, boxed_raw(i as u64));
        }
    }
    fn teardown(&self, (slots, _): &mut Self::Local, n: usize) {
        for s in &slots[..n] {
            self.model.nmi_teardown(s, drop_box_u64);
        }
    }
}

/// The floor in the same harness: three uncontended RMWs per "teardown", on cache lines of the
/// thread's own (what the machine itself gives two threads that share nothing).
struct FloorSubject;

impl Teardowns for FloorSubject {
    type Local = Box<[CachePadded<AtomicU64>; 3]>;
    fn local(&self) -> Self::Local {
        Box::new(std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))))
    }
    fn collect(&self) {}
    fn refill(&self, _: &mut Self::Local, _: usize) {}
    fn teardown(&self, local: &mut Self::Local, n: usize) {
        let [a, b, c] = &**local;
        let (mut kb, mut kc) = (b.load(Ordering::Relaxed), c.load(Ordering::Relaxed));
        for _ in 0..n {
            black_box(a.swap(kb, Ordering::AcqRel));
            let _ = b.compare_exchange(kb, kb + 1, Ordering::AcqRel, Ordering::Relaxed);
            let _ = c.compare_exchange(kc, kc + 1, Ordering::AcqRel, Ordering::Relaxed);
            kb += 1;
            kc += 1;
        }
    }
}

/// `iters` teardowns on each of `threads` threads (thread `t` pinned to CPU `t`), in rounds of
/// `CHUNK_2T` that start together (spinning barrier); returns the mean per-thread timed total.
fn per_thread<S: Teardowns>(subject: &S, threads: usize, iters: u64) -> Duration {
    let barrier = SpinBarrier::new(threads);
    let total: Duration = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let _pin = Pinned::to(t);
                    let mut local = subject.local();
                    let mut timed = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(CHUNK_2T as u64) as usize;
                        barrier.wait();
                        if t == 0 {
                            subject.collect();
                        }
                        barrier.wait();
                        subject.refill(&mut local, n);
                        barrier.wait();
                        let start = Instant::now();
                        subject.teardown(&mut local, n);
                        timed += start.elapsed();
                        left -= n as u64;
                    }
                    barrier.wait();
                    if t == 0 {
                        subject.collect();
                    }
                    barrier.wait();
                    timed
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total / threads as u32
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Both threads' installs (and sentinels) fall between two drains.
    let sigdrop = SigdropSubject {
        rt: manual_runtime(2 * (CHUNK_2T + 1)),
        per_thread_rt: false,
    };
    let separate = SigdropSubject {
        rt: manual_runtime(2 * (CHUNK_2T + 1)),
        per_thread_rt: true,
    };
    let model = V2Subject {
        model: V2::new(8 * CHUNK_2T, cpus),
    };
    for threads in [1, 2] {
        let label = if threads == 1 {
            "1 thread"
        } else {
            "2 threads"
        };
        g.bench_function(format!("sigdrop {label}"), |b| {
            b.iter_custom(|iters| per_thread(&sigdrop, threads, iters))
        });
        g.bench_function(format!("v2 model {label}"), |b| {
            b.iter_custom(|iters| per_thread(&model, threads, iters))
        });
    }
    // Diagnostic rows: nothing shared at all; the default headroom (64), with which every round
    // grows the pool on the installing threads' shards and trims it from the drainer's; and the
    // machine's own floor for two threads.
    g.bench_function("sigdrop 2 threads, a runtime each", |b| {
        b.iter_custom(|iters| per_thread(&separate, 2, iters))
    });
    let churning = SigdropSubject {
        rt: Runtime::builder()
            .drainer(Drainer::Manual)
            .build()
            .expect("build a manual runtime"),
        per_thread_rt: false,
    };
    g.bench_function("sigdrop 2 threads, default headroom", |b| {
        b.iter_custom(|iters| per_thread(&churning, 2, iters))
    });
    for threads in [1, 2] {
        let label = if threads == 1 {
            "1 thread"
        } else {
            "2 threads"
        };
        g.bench_function(format!("3 RMWs {label}"), |b| {
            b.iter_custom(|iters| per_thread(&FloorSubject, threads, iters))
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// drain throughput

/// # Safety
/// None needed: it does nothing (the objects are elements of a leaked array).
unsafe fn noop_dtor(_: NonNull<u64>) {}

/// `noop_dtor` as a slot destructor type.
struct NoopDtor;
impl Destroy<u64> for NoopDtor {
    unsafe fn destroy(p: NonNull<u64>) {
        // SAFETY: forwarded contract.
        unsafe { noop_dtor(p) }
    }
}

fn drain(c: &mut Criterion) {
    let mut g = c.benchmark_group("drain");

    // No-op destructor: the per-job cost of the drain machinery itself. A chunk of objects is
    // torn down in restricted context (untimed), then one `drain()` runs them all (timed).
    {
        let rt = manual_runtime(CHUNK + 1);
        // One function-pointer value for the slot and every `Raw`: the slot compares addresses,
        // and two coercions of the same function may differ (codegen units may each have a
        // copy), which would be refused as a mismatch.
        let slots: Vec<RefSlot<Raw<u64, NoopDtor>>> =
            (0..CHUNK).map(|_| RefSlot::new(&rt)).collect();
        let objects: &'static mut [u64] = Box::leak(vec![0u64; CHUNK].into_boxed_slice());
        let ptrs: Vec<NonNull<u64>> = objects.iter_mut().map(NonNull::from).collect();
        g.bench_function("no-op destructor", |bench| {
            let _pin = Pinned::to(CPU);
            bench.iter_custom(|iters| {
                chunked(
                    iters,
                    CHUNK,
                    &mut (),
                    |_, n| {
                        for (s, &p) in slots[..n].iter().zip(&ptrs) {
                            // SAFETY: each element of the leaked array is used by one `Raw` at
                            // a time, and its destructor does nothing.
                            let raw = unsafe { Raw::new(p) };
                            let _ = s.xchg(Some(raw)).unwrap();
                        }
                        let _nmi = restricted::enter();
                        for s in &slots[..n] {
                            s.clear();
                        }
                    },
                    |_, n| assert_eq!(rt.drain().unwrap(), n),
                )
            })
        });
    }

    // Box free: the same with `Box<u64>`.
    {
        let rt = manual_runtime(CHUNK + 1);
        let slots: Vec<RefSlot<Box<u64>>> = (0..CHUNK).map(|_| RefSlot::new(&rt)).collect();
        g.bench_function("Box free", |bench| {
            let _pin = Pinned::to(CPU);
            bench.iter_custom(|iters| {
                chunked(
                    iters,
                    CHUNK,
                    &mut (),
                    |_, n| {
                        for (i, s) in slots[..n].iter().enumerate() {
                            let _ = s.xchg(Some(Box::new(i as u64))).unwrap();
                        }
                        let _nmi = restricted::enter();
                        for s in &slots[..n] {
                            s.clear();
                        }
                    },
                    |_, n| assert_eq!(rt.drain().unwrap(), n),
                )
            })
        });
    }

    // The destructor body alone: freeing the same boxes in a plain loop.
    {
        let mut boxes: Vec<Box<u64>> = Vec::with_capacity(CHUNK);
        g.bench_function("Box free alone", |bench| {
            let _pin = Pinned::to(CPU);
            bench.iter_custom(|iters| {
                chunked(
                    iters,
                    CHUNK,
                    &mut boxes,
                    |boxes, n| boxes.extend((0..n as u64).map(Box::new)),
                    |boxes, _| boxes.clear(),
                )
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// latency and the wake storm

fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

static LAT_DONE: AtomicU64 = AtomicU64::new(0);
static LAT_DONE_AT: AtomicU64 = AtomicU64::new(0);

/// # Safety
/// None needed: it only stamps the time (the object is a leaked `u64`).
unsafe fn stamp_dtor(_: NonNull<u64>) {
    LAT_DONE_AT.store(now_ns(), Ordering::Relaxed);
    // Release: the waiter that sees the count sees the stamp.
    LAT_DONE.fetch_add(1, Ordering::Release);
}

/// `stamp_dtor` as a slot destructor type.
struct StampDtor;
impl Destroy<u64> for StampDtor {
    unsafe fn destroy(p: NonNull<u64>) {
        // SAFETY: forwarded contract.
        unsafe { stamp_dtor(p) }
    }
}

/// How long the measuring thread spins between samples so that the drainer is asleep in
/// `futex_wait` when the offload happens (it goes to sleep within a few µs of its last cycle).
const LAT_GAP: Duration = Duration::from_micros(60);

fn latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("latency");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(20);
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_millis(1500));
    let rt = Runtime::new().expect("runtime with a drainer thread");
    // One function-pointer value for the slot and the `Raw`s (see the drain group).
    let slot: RefSlot<Raw<u64, StampDtor>> = RefSlot::new(&rt);
    let object = NonNull::from(Box::leak(Box::new(0u64)));
    let mut samples: Vec<u64> = Vec::new();
    let before = rt.stats();
    g.bench_function("offload to destructor (drainer asleep)", |bench| {
        let _pin = Pinned::to(CPU);
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // SAFETY: the leaked u64 is used by one `Raw` at a time; its destructor only
                // stamps the time.
                let raw = unsafe { Raw::new(object) };
                let _ = slot.xchg(Some(raw)).unwrap();
                let seen = LAT_DONE.load(Ordering::Acquire);
                let gap = Instant::now();
                while gap.elapsed() < LAT_GAP {
                    std::hint::spin_loop();
                }
                let t0 = now_ns();
                {
                    let _nmi = restricted::enter();
                    slot.clear();
                }
                while LAT_DONE.load(Ordering::Acquire) == seen {
                    std::hint::spin_loop();
                }
                let ns = LAT_DONE_AT.load(Ordering::Relaxed).saturating_sub(t0);
                samples.push(ns);
                total += Duration::from_nanos(ns);
            }
            total
        })
    });
    g.finish();
    let after = rt.stats();
    samples.sort_unstable();
    let json = format!(
        "{{\"samples\":{},\"p50_ns\":{},\"p90_ns\":{},\"p99_ns\":{},\"max_ns\":{},\"offloaded\":{},\"wakes\":{}}}\n",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 90.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or(0),
        after.offloaded - before.offloaded,
        after.wakes - before.wakes,
    );
    write_extra("latency.json", &json);
    drop(slot);
    drop(rt);

    storm();
}

/// The runtime the storm's destructor reads its stats from.
static STORM_RT: Mutex<Option<Runtime>> = Mutex::new(None);
static STORM_CHAINS: AtomicU64 = AtomicU64::new(0);
static STORM_LAST_KEY: AtomicU64 = AtomicU64::new(u64::MAX);

/// Frees the box and counts the job lists the drainer took (drain cycles that found work).
///
/// While a drainer runs a taken chain, `offloaded - active` (both from one `Stats` snapshot) is
/// the number of jobs taken by the chains it completed before: it changes exactly when a new
/// chain starts. The storm's producer is pinned to one CPU, so it uses one shard and each drain
/// cycle takes at most one chain: the chain count is the number of cycles that found work. (Cycles
/// that found nothing are not seen here; each drainer sleep follows one, which the report adds.)
///
/// # Safety
/// `p` came from `Box::<u64>::into_raw` and is owned by the caller.
unsafe fn storm_dtor(p: NonNull<u64>) {
    // SAFETY: the caller's contract.
    drop(unsafe { Box::from_raw(p.as_ptr()) });
    if let Some(rt) = STORM_RT.lock().unwrap().as_ref() {
        let s = rt.stats();
        let key = s.offloaded - s.active as u64;
        if STORM_LAST_KEY.swap(key, Ordering::Relaxed) != key {
            STORM_CHAINS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `storm_dtor` as a slot destructor type.
struct StormDtor;
impl Destroy<u64> for StormDtor {
    unsafe fn destroy(p: NonNull<u64>) {
        // SAFETY: forwarded contract.
        unsafe { storm_dtor(p) }
    }
}

/// A teardown storm against the drainer thread: a producer pinned to one CPU installs 8 objects
/// (ordinary context) and tears them down in restricted context, as a handler clearing 8 slots
/// would, as fast as it can. Reports offloads, wake syscalls, drain cycles (lower bound), and the
/// drainer's sleeps (voluntary context switches).
fn storm() {
    const ROUNDS: usize = 50_000;
    const PER: usize = 8;
    let rt = Runtime::new().expect("runtime with a drainer thread");
    *STORM_RT.lock().unwrap() = Some(rt.clone());
    STORM_CHAINS.store(0, Ordering::Relaxed);
    STORM_LAST_KEY.store(u64::MAX, Ordering::Relaxed);
    // The drainer names itself once it starts: wait for it (all drainers of this process are
    // counted; the others, if any, are idle).
    let mut drainer = util::threads_named("sigdrop-drainer");
    let looking = Instant::now();
    while drainer.is_empty() && looking.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(1));
        drainer = util::threads_named("sigdrop-drainer");
    }
    let sleeps_before: u64 = drainer.iter().map(|&t| util::voluntary_switches(t)).sum();
    let slots: Vec<RefSlot<Raw<u64, StormDtor>>> = (0..PER).map(|_| RefSlot::new(&rt)).collect();
    let start = Instant::now();
    {
        let _pin = Pinned::to(CPU);
        for round in 0..ROUNDS {
            for s in &slots {
                let p = NonNull::from(Box::leak(Box::new(round as u64)));
                // SAFETY: `p` is a fresh box; `storm_dtor` frees it once.
                let raw = unsafe { Raw::new(p) };
                let _ = s.xchg(Some(raw)).unwrap();
            }
            let _nmi = restricted::enter();
            for s in &slots {
                s.clear();
            }
        }
    }
    let elapsed = start.elapsed();
    let offloaded = (ROUNDS * PER) as u64;
    while rt.stats().drained < offloaded {
        std::thread::yield_now();
    }
    let stats = rt.stats();
    let sleeps_after: u64 = drainer.iter().map(|&t| util::voluntary_switches(t)).sum();
    STORM_RT.lock().unwrap().take();
    let json = format!(
        "{{\"offloaded\":{},\"wakes\":{},\"drain_cycles_min\":{},\"drainer_sleeps\":{},\"elapsed_ns\":{}}}\n",
        stats.offloaded,
        stats.wakes,
        STORM_CHAINS.load(Ordering::Relaxed),
        sleeps_after.saturating_sub(sleeps_before),
        elapsed.as_nanos(),
    );
    write_extra("storm.json", &json);
}

// ---------------------------------------------------------------------------------------------
// end to end: real signals

static SIG_SLOTS: AtomicPtr<RefSlot<Box<u64>>> = AtomicPtr::new(std::ptr::null_mut());
static SIG_LEN: AtomicUsize = AtomicUsize::new(0);
static SIG_NEXT: AtomicUsize = AtomicUsize::new(0);
static SIG_PER: AtomicUsize = AtomicUsize::new(0);

/// Signals per timed chunk.
const SIG_CHUNK: usize = 64;
/// Offloads per signal in the loaded variants.
const SIG_OFFLOADS: usize = 8;

extern "C" fn on_sigusr1(_: libc::c_int) {
    let _nmi = restricted::enter();
    let per = SIG_PER.load(Ordering::Relaxed);
    if per == 0 {
        return;
    }
    // Only this thread signals itself, and the handler does not nest (SIGUSR1 is blocked while it
    // runs): a plain load and store of the cursor suffice.
    let base = SIG_NEXT.load(Ordering::Relaxed);
    SIG_NEXT.store(base + per, Ordering::Relaxed);
    let slots = SIG_SLOTS.load(Ordering::Acquire);
    let len = SIG_LEN.load(Ordering::Relaxed);
    if slots.is_null() {
        return;
    }
    for i in base..(base + per).min(len) {
        // SAFETY: `SIG_SLOTS` points to `SIG_LEN` live slots while it is non-null (the bench
        // clears it before dropping them).
        unsafe { (*slots.add(i)).clear() };
    }
}

fn install_handler() {
    // SAFETY: `sigaction` is plain data; all-zero is a valid starting point.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_sigusr1 as *const () as libc::sighandler_t;
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: `sa.sa_mask` is a valid sigset to initialise.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    // SAFETY: installs a handler that only uses sigdrop's restricted-context paths and atomics.
    let rc = unsafe { libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "sigaction failed");
}

/// Sends SIGUSR1 to the calling thread: one `tgkill`; the handler runs before it returns.
#[inline]
fn signal_self(pid: libc::pid_t, tid: libc::pid_t) {
    // SAFETY: tgkill to our own thread with a signal whose handler is installed.
    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR1) };
}

fn signal_bench(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    rt: &Runtime,
    per: usize,
    manual: bool,
) {
    let len = SIG_CHUNK * per.max(1);
    let slots: Vec<RefSlot<Box<u64>>> = (0..len).map(|_| RefSlot::new(rt)).collect();
    let sentinel = RefSlot::new(rt);
    SIG_LEN.store(len, Ordering::Relaxed);
    SIG_SLOTS.store(slots.as_ptr().cast_mut(), Ordering::Release);
    SIG_PER.store(per, Ordering::Relaxed);
    // SAFETY: no preconditions.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    g.bench_function(name, |bench| {
        let _pin = Pinned::to(CPU);
        bench.iter_custom(|iters| {
            chunked(
                iters,
                SIG_CHUNK,
                &mut (),
                |_, _| {
                    if manual {
                        rt.drain().unwrap();
                        set_pending(&sentinel);
                    }
                    for (i, s) in slots
                        .iter()
                        .enumerate()
                        .take(if per == 0 { 0 } else { len })
                    {
                        if s.is_empty() {
                            let _ = s.xchg(Some(Box::new(i as u64))).unwrap();
                        }
                    }
                    SIG_NEXT.store(0, Ordering::Relaxed);
                },
                |_, n| {
                    for _ in 0..n {
                        signal_self(pid, tid);
                    }
                },
            )
        })
    });
    SIG_PER.store(0, Ordering::Relaxed);
    SIG_SLOTS.store(std::ptr::null_mut(), Ordering::Release);
    SIG_LEN.store(0, Ordering::Relaxed);
}

fn signals(c: &mut Criterion) {
    install_handler();
    let mut g = c.benchmark_group("signal");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(30);
    let threaded = Runtime::new().expect("runtime with a drainer thread");
    let manual = manual_runtime(SIG_CHUNK * SIG_OFFLOADS + 1);
    signal_bench(&mut g, "no offload", &threaded, 0, false);
    let before = threaded.stats();
    signal_bench(
        &mut g,
        "8 offloads (drainer thread)",
        &threaded,
        SIG_OFFLOADS,
        false,
    );
    let after = threaded.stats();
    signal_bench(
        &mut g,
        "8 offloads (pending set)",
        &manual,
        SIG_OFFLOADS,
        true,
    );
    manual.drain().unwrap();
    g.finish();
    write_extra(
        "signal.json",
        &format!(
            "{{\"offloaded\":{},\"wakes\":{}}}\n",
            after.offloaded - before.offloaded,
            after.wakes - before.wakes
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// protected reads

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

fn reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("read");

    // The read guard's floor: one uncontended RMW on a counter of its own cache line (entering a
    // guard is one such increment, leaving it one decrement).
    let counter = CachePadded::new(AtomicUsize::new(0));
    g.bench_function("one uncontended fetch_add", |bench| {
        let _pin = Pinned::to(CPU);
        bench.iter(|| counter.fetch_add(1, Ordering::SeqCst))
    });
    // As a signal handler would: restricted context entered once, outside the timed loop.
    g.bench_function("guard enter+exit (restricted)", |bench| {
        let _pin = Pinned::to(CPU);
        let _nmi = restricted::enter();
        bench.iter(|| drop(read::enter()))
    });
    g.bench_function("guard enter+exit", |bench| {
        let _pin = Pinned::to(CPU);
        bench.iter(|| drop(read::enter()))
    });

    // Ordinary-context loads: enter the peer's guard, load the pointer, read a field, leave.
    let rt = manual_runtime(WRITER_DRAIN_EVERY + 1);
    let slot: ReadSlot<Arc<Config>> = ReadSlot::new(&rt);
    drop(slot.xchg(Some(config_arc(0))).expect("install"));
    let atomic = epoch::Atomic::new(Config { version: 0 });
    let swap = ArcSwap::new(config_arc(0));

    let sigdrop_load = |bench: &mut criterion::Bencher<'_>| {
        let _pin = Pinned::to(CPU);
        bench.iter(|| {
            let guard = read::enter();
            slot.load(&guard).expect("the slot is never empty").version
        })
    };
    let epoch_load = |bench: &mut criterion::Bencher<'_>| {
        let _pin = Pinned::to(CPU);
        bench.iter(|| {
            let guard = epoch::pin();
            // Acquire: pairs with the Release half of the store or swap that published the
            // object, so its contents are seen.
            let shared = atomic.load(Ordering::Acquire, &guard);
            // SAFETY: the `Atomic` always holds an object (every swap puts a new one in), and it
            // is destroyed only after every guard pinned before its removal is gone; `guard` is
            // alive for as long as the borrow.
            unsafe { shared.deref() }.version
        })
    };
    let arcswap_load = |bench: &mut criterion::Bencher<'_>| {
        let _pin = Pinned::to(CPU);
        bench.iter(|| swap.load().version)
    };
    g.bench_function("sigdrop load", sigdrop_load);
    g.bench_function("crossbeam-epoch load", epoch_load);
    g.bench_function("arc-swap load", arcswap_load);

    // The same loads while a thread on the other CPU replaces the object as fast as it can (a
    // fresh allocation each time; the old one goes to each peer's reclamation).
    let mut next = 1u64;
    let (n, ns) = with_writer(
        || {
            drop(slot.xchg(Some(config_arc(next))).expect("replace"));
            next += 1;
            if next.is_multiple_of(WRITER_DRAIN_EVERY as u64) {
                rt.drain()
                    .expect("drain in ordinary context, no guard held");
            }
        },
        || {
            g.bench_function("sigdrop load, writer", sigdrop_load);
        },
    );
    rt.drain().expect("drain");
    let sigdrop_writer = (n, ns);
    let mut next = 1u64;
    let epoch_writer = with_writer(
        || {
            let guard = epoch::pin();
            let old = atomic.swap(
                epoch::Owned::new(Config { version: next }),
                // AcqRel: Release publishes the new object to the readers' Acquire loads;
                // Acquire makes the old object's contents ours to destroy.
                Ordering::AcqRel,
                &guard,
            );
            // SAFETY: `old` was unlinked from the only place that published it; readers pinned
            // before the swap are protected by the epoch.
            unsafe { guard.defer_destroy(old) };
            next += 1;
        },
        || {
            g.bench_function("crossbeam-epoch load, writer", epoch_load);
        },
    );
    let mut next = 1u64;
    let arcswap_writer = with_writer(
        || {
            swap.store(config_arc(next));
            next += 1;
        },
        || {
            g.bench_function("arc-swap load, writer", arcswap_load);
        },
    );
    write_extra(
        "read_writers.json",
        &format!(
            "{{\"sigdrop_replacements\":{},\"sigdrop_ns\":{},\"epoch_replacements\":{},\"epoch_ns\":{},\"arcswap_replacements\":{},\"arcswap_ns\":{}}}\n",
            sigdrop_writer.0,
            sigdrop_writer.1,
            epoch_writer.0,
            epoch_writer.1,
            arcswap_writer.0,
            arcswap_writer.1,
        ),
    );

    // A reference of one's own: sigdrop's `clone_current` (guard + strong-count increment) taken
    // out with `into_inner` (no grace period for a clone) and dropped, vs arc-swap's `load_full`.
    g.bench_function("sigdrop clone_current", |bench| {
        let _pin = Pinned::to(CPU);
        bench.iter(|| {
            let mine = slot.clone_current().expect("the slot is never empty");
            let arc = mine
                .into_inner()
                .ok()
                .expect("ordinary context, no guard held");
            drop(arc)
        })
    });
    g.bench_function("arc-swap load_full", |bench| {
        let _pin = Pinned::to(CPU);
        bench.iter(|| drop(swap.load_full()))
    });
    g.finish();

    drop(slot);
    rt.drain().expect("drain");
    // SAFETY: the writer has been joined and no guard is alive: nothing else can reach the
    // object in the `Atomic` any more.
    drop(unsafe { atomic.into_owned() });
    epoch::pin().flush();
}

/// About five minutes for the whole run on a 2-vCPU VM (chunked benches spend most of their wall
/// time in untimed setup, so their wall time is a few times `measurement_time`).
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(60)
        .nresamples(20_000)
}

criterion_group! {
    name = benches;
    config = config();
    targets = slot_ops, teardown, lifecycle, two_threads, drain, latency, signals, reads
}
criterion_main!(benches);
