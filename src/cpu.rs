//! Which shard the calling thread should use: the CPU it runs on, modulo the shard count.
//!
//! `sched_getcpu` reads the CPU number the kernel keeps in the thread's rseq area (or asks the
//! vDSO): no lock, no allocation, safe in a signal handler. The answer may be stale by the time it
//! is used (the thread can migrate); that costs locality, never correctness, because every shard
//! structure is safe for any number of threads.

/// The shard for the calling thread among `shards` (which must be non-zero).
#[cfg(not(loom))]
#[inline]
pub fn current_shard(shards: usize) -> usize {
    // SAFETY: `sched_getcpu` has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    match usize::try_from(cpu) {
        // The default is one shard per CPU, so the division is rarely needed.
        Ok(cpu) if cpu < shards => cpu,
        Ok(cpu) => cpu % shards,
        Err(_) => 0,
    }
}

#[cfg(loom)]
loom::thread_local! {
    static MODEL_SHARD: std::cell::Cell<usize> = std::cell::Cell::new(0);
}

/// Under loom there are no CPUs: a model picks each thread's shard with [`set_model_shard`].
#[cfg(loom)]
pub fn current_shard(shards: usize) -> usize {
    MODEL_SHARD.with(|s| s.get()) % shards
}

/// Sets the calling model thread's shard (loom only).
#[cfg(loom)]
pub fn set_model_shard(shard: usize) {
    MODEL_SHARD.with(|s| s.set(shard));
}

/// The number of CPUs this process may run on (at least 1); the default shard count.
pub fn available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
