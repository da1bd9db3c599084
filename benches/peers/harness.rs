//! How a row is timed: one helper per shape of run (criterion's own loop, or chunks with untimed
//! setup, both pinned to one CPU), CPU pinning, and a spinning barrier for multi-thread rows.

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A criterion group, as every group function gets it.
pub type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// The CPU single-threaded rows run on.
pub const CPU: usize = 0;

/// A row timed operation by operation in criterion's loop, on [`CPU`].
pub fn pinned<O>(g: &mut Group<'_>, name: &str, mut op: impl FnMut() -> O) {
    g.bench_function(name, |bench| {
        let _pin = Pinned::to(CPU);
        bench.iter(&mut op)
    });
}

/// A row timed in chunks of at most `chunk` operations, on [`CPU`]: `setup(state, n)` prepares
/// a chunk (untimed, ordinary context), `timed(state, n)` performs it (timed).
pub fn pinned_chunks<S>(
    g: &mut Group<'_>,
    name: &str,
    chunk: usize,
    state: &mut S,
    mut setup: impl FnMut(&mut S, usize),
    mut timed: impl FnMut(&mut S, usize),
) {
    g.bench_function(name, |bench| {
        let _pin = Pinned::to(CPU);
        bench.iter_custom(|iters| chunked(iters, chunk, state, &mut setup, &mut timed))
    });
}

/// Runs `iters` operations in chunks of at most `chunk`; returns the timed total.
///
/// Chunks keep the timer's own cost (two clock reads, ~50 ns on a VM) below 0.2 ns per operation
/// for 256-operation chunks, and let setup happen in ordinary context between timed runs.
pub fn chunked<S>(
    iters: u64,
    chunk: usize,
    state: &mut S,
    mut setup: impl FnMut(&mut S, usize),
    mut timed: impl FnMut(&mut S, usize),
) -> Duration {
    let mut left = iters;
    let mut total = Duration::ZERO;
    while left > 0 {
        let n = left.min(chunk as u64) as usize;
        setup(state, n);
        let start = Instant::now();
        timed(state, n);
        total += start.elapsed();
        left -= n as u64;
    }
    total
}

/// The calling thread's CPU affinity, restored when dropped.
pub struct Pinned {
    saved: libc::cpu_set_t,
}

impl Pinned {
    /// Pins the calling thread to `cpu` (modulo the CPUs online). Threads created while pinned
    /// inherit the mask, so runtimes with a drainer thread are built outside a `Pinned` scope.
    pub fn to(cpu: usize) -> Pinned {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: `cpu_set_t` is plain data; all-zero is the empty set.
        let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid, writable `cpu_set_t` of the size passed; 0 = this thread.
        let got = unsafe {
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved)
        };
        assert_eq!(got, 0, "sched_getaffinity failed");
        // SAFETY: as above, the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu % cpus` is below `CPU_SETSIZE` on any machine this runs on.
        unsafe { libc::CPU_SET(cpu % cpus, &mut set) };
        // SAFETY: `set` is a valid `cpu_set_t` of the size passed; 0 = this thread.
        let ok =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        assert_eq!(ok, 0, "sched_setaffinity failed");
        Pinned { saved }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: `saved` is the mask read in `to`, a valid `cpu_set_t`; 0 = this thread.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.saved);
        }
    }
}

/// A barrier that spins, so that threads leave it within a few hundred nanoseconds of each other
/// (a condvar barrier's wake-up skew, tens of microseconds, would keep timed regions that last
/// microseconds from overlapping at all).
pub struct SpinBarrier {
    parties: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
}

impl SpinBarrier {
    pub fn new(parties: usize) -> Self {
        SpinBarrier {
            parties,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    pub fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.parties {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
        } else {
            let mut spins = 0u32;
            while self.generation.load(Ordering::Acquire) == generation {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(4096) {
                    // Noisy machine: let a preempted partner run if we share its CPU.
                    std::thread::yield_now();
                }
                std::hint::spin_loop();
            }
        }
    }
}
