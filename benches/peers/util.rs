//! Helpers shared by the benches: chunked timing, CPU pinning, a spinning barrier, the
//! directory for figures criterion does not hold.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs `iters` operations in chunks of at most `chunk`: `setup(state, n)` prepares a chunk of
/// `n` (untimed), `timed(state, n)` performs it (timed). Returns the timed total.
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

/// Where the figures criterion does not keep (percentiles, wake counts) are written:
/// `$CARGO_TARGET_DIR/sigdrop-bench`, else `<crate>/target/sigdrop-bench`.
pub fn extras_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("sigdrop-bench")
}

/// Writes `contents` to `name` in [`extras_dir`].
pub fn write_extra(name: &str, contents: &str) {
    let dir = extras_dir();
    std::fs::create_dir_all(&dir).expect("create the extras directory");
    std::fs::write(dir.join(name), contents).expect("write an extras file");
}

/// The `p`-th percentile (0..=100) of sorted `v`, nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Thread ids (`/proc/self/task`) whose name is `name`.
pub fn threads_named(name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.flatten() {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == name
                && let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok())
            {
                out.push(tid);
            }
        }
    }
    out
}

/// `voluntary_ctxt_switches` of thread `tid` of this process (each futex sleep is one).
pub fn voluntary_switches(tid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
