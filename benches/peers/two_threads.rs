//! Group `two_threads`: restricted teardowns on two threads, each pinned to its own CPU, against
//! one thread, for sigdrop, for the v2 model's global idle list and for the machine's floor; the
//! figure is per teardown per thread.

use crate::fixtures::{
    boxed_raw, clear_restricted, drop_box_u64, fill, manual_runtime, set_pending, slots,
};
use crate::harness::{Pinned, SpinBarrier};
use crate::v2::V2;
use criterion::Criterion;
use crossbeam_utils::CachePadded;
use sigdrop::{Drainer, RefSlot, Runtime};
use std::hint::black_box;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Teardowns per thread per round (long enough that the two threads' timed regions overlap:
/// ~10-50 µs each).
const CHUNK_2T: usize = 1024;

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
        (slots(&rt, CHUNK_2T), RefSlot::new(&rt))
    }
    fn collect(&self) {
        self.rt.drain().unwrap();
    }
    fn refill(&self, (slots, sentinel): &mut Self::Local, n: usize) {
        if self.per_thread_rt {
            sentinel.runtime().and_then(|rt| rt.drain()).unwrap();
        }
        set_pending(sentinel);
        fill(slots, n);
    }
    fn teardown(&self, (slots, _): &mut Self::Local, n: usize) {
        clear_restricted(slots, n);
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

pub fn group(c: &mut Criterion) {
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
    let defaults = SigdropSubject {
        rt: Runtime::builder()
            .drainer(Drainer::Manual)
            .build()
            .expect("build a manual runtime"),
        per_thread_rt: false,
    };
    let forgetting = SigdropSubject {
        rt: Runtime::builder()
            .drainer(Drainer::Manual)
            .regrowth_window(Duration::ZERO)
            .build()
            .expect("build a manual runtime"),
        per_thread_rt: false,
    };
    let model = V2Subject {
        model: V2::new(8 * CHUNK_2T, cpus),
    };
    type Row<'a> = (&'static str, Box<dyn Fn(u64) -> Duration + 'a>);
    let rows: Vec<Row<'_>> = vec![
        ("sigdrop 1 thread", Box::new(|i| per_thread(&sigdrop, 1, i))),
        ("v2 model 1 thread", Box::new(|i| per_thread(&model, 1, i))),
        (
            "sigdrop 2 threads",
            Box::new(|i| per_thread(&sigdrop, 2, i)),
        ),
        ("v2 model 2 threads", Box::new(|i| per_thread(&model, 2, i))),
        // Diagnostic rows: nothing shared at all; the default settings (headroom 64, and a
        // regrowth window that keeps what the rounds grow back once the first trim freed it);
        // the same without the window, with which every round grows the pool for the installs
        // and trims it from the drainer, so jobs move between CPUs; and the machine's own floor
        // for one and two threads.
        (
            "sigdrop 2 threads, a runtime each",
            Box::new(|i| per_thread(&separate, 2, i)),
        ),
        (
            "sigdrop 2 threads, default settings",
            Box::new(|i| per_thread(&defaults, 2, i)),
        ),
        (
            "sigdrop 2 threads, default headroom, no regrowth window",
            Box::new(|i| per_thread(&forgetting, 2, i)),
        ),
        (
            "3 RMWs 1 thread",
            Box::new(|i| per_thread(&FloorSubject, 1, i)),
        ),
        (
            "3 RMWs 2 threads",
            Box::new(|i| per_thread(&FloorSubject, 2, i)),
        ),
    ];
    for (name, run) in &rows {
        g.bench_function(*name, |b| b.iter_custom(run));
    }
    g.finish();
}
