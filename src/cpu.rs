//! Which shard the calling thread should use: the CPU it runs on, modulo the shard count.
//!
//! The kernel keeps the number of the CPU a thread runs on in the thread's *rseq area* (restartable
//! sequences), updating it on every return to user space after a migration, a preemption or a
//! signal. glibc (2.35 and later) registers that area for every thread it starts and exports where
//! it is: `__rseq_offset`, its offset from the thread pointer, and `__rseq_size`, non-zero if
//! registration is enabled. The CPU number is the `cpu_id` field, a 32-bit word at offset 4 of
//! `struct rseq`; it is negative while the thread has no registered area (-1: not yet registered,
//! -2: registration failed, e.g. under valgrind, which does not support rseq).
//!
//! ## How a shard is found
//!
//! - [`init`] (ordinary context, called whenever a runtime is built) looks both symbols up once
//!   with `dlsym` (so the crate still links, and works, with a libc that lacks them) and caches
//!   `__rseq_offset + 4` in a static atomic. It never runs in a signal handler: `dlsym` may lock.
//! - [`current_shard`] (any context, async-signal-safe) loads the cached offset; if there is one
//!   (x86-64 Linux), it reads `cpu_id` with a single load relative to the thread pointer (`fs`),
//!   and if that is non-negative it is the CPU (one unsigned compare with the shard count
//!   settles both that and whether the CPU needs the modulo, which is out of line). In every
//!   other case — not initialised yet, no symbols, registration disabled or failed for this
//!   thread, another architecture — it uses the CPU `sched_getcpu` (itself async-signal-safe:
//!   the vDSO, or a syscall) gave this thread within its last 64 calls, kept in a
//!   `const`-initialised thread-local without a destructor.
//!
//! Neither path locks, allocates or initialises anything lazily, so both are safe in a signal
//! handler. The answer may be stale by the time it is used (the thread can migrate); that costs
//! locality, never correctness, because every shard structure is safe for any number of threads.

/// The shard for the calling thread among `shards` (which must be non-zero).
#[cfg(not(loom))]
#[inline]
pub fn current_shard(shards: usize) -> usize {
    let cpu = match rseq::cpu_id() {
        // A negative id reads as 2^31 or more: the out-of-line path asks the hint.
        Some(raw) => raw as usize,
        None => hint::cpu(),
    };
    // The default is one shard per CPU, so the rest is rarely needed.
    if cpu < shards {
        cpu
    } else {
        shard_beyond(cpu, shards)
    }
}

/// The calling thread's CPU number from its rseq area, for a caller that keeps every other case
/// off its own path by passing a number not below its shard count to [`shard_beyond`]: the CPU,
/// or 2^31 or more if there is no rseq area to read (`usize::MAX`) or it has no CPU number (a
/// negative `cpu_id`, read as unsigned). One load from a static and one from the thread's
/// control block, no call. Async-signal-safe.
#[cfg(not(loom))]
#[inline]
pub fn current_cpu() -> usize {
    match rseq::cpu_id() {
        Some(raw) => raw as usize,
        None => usize::MAX,
    }
}

/// The shard among `shards` for a [`current_cpu`] number that is not below `shards`: the CPU
/// modulo the count, asking `sched_getcpu` (through the hint) for a number the rseq area did
/// not have. Out of line, off the push's path. Async-signal-safe.
#[cfg(not(loom))]
#[cold]
#[inline(never)]
pub fn shard_beyond(cpu: usize, shards: usize) -> usize {
    let cpu = if cpu > i32::MAX as usize {
        hint::cpu()
    } else {
        cpu
    };
    if cpu < shards { cpu } else { cpu % shards }
}

/// Without an rseq area: the CPU `sched_getcpu` gave a few calls ago.
#[cfg(not(loom))]
mod hint {
    /// Calls a thread makes on the CPU it last looked up before it asks again.
    const CALLS: u32 = 64;

    std::thread_local! {
        /// The CPU this thread last ran on and the calls left before it asks again, packed as
        /// `cpu << 8 | left`. `const`-initialised, no destructor: safe to touch in a handler. A
        /// handler that interrupts an update here makes its own; either may overwrite the
        /// other, which only moves the next look-up (it is a hint).
        static CPU_HINT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    /// `sched_getcpu` costs about as much as the push it serves (a vDSO call; a few dozen
    /// instructions more under valgrind, where it cannot use rseq either), so a thread asks
    /// once per [`CALLS`] calls. Async-signal-safe.
    #[inline]
    pub(super) fn cpu() -> usize {
        CPU_HINT.with(|c| {
            let v = c.get();
            if v & 0xff != 0 {
                c.set(v - 1);
                return v >> 8;
            }
            refresh(c)
        }) as usize
    }

    /// Looks the CPU up again (out of line: once per [`CALLS`] calls).
    #[cold]
    #[inline(never)]
    fn refresh(cell: &std::cell::Cell<u32>) -> u32 {
        // A failing `sched_getcpu` (no vDSO, a kernel without `getcpu`) sets `errno`, and this
        // may run in a signal handler: put it back, as every call sigdrop makes there does.
        let _errno = crate::errno::ErrnoGuard::save();
        // SAFETY: `sched_getcpu` has no preconditions; it is async-signal-safe (see the module
        // docs).
        let cpu = u32::try_from(unsafe { libc::sched_getcpu() }).unwrap_or(0) & 0xff_ffff;
        cell.set(cpu << 8 | (CALLS - 1));
        cpu
    }
}

/// Looks up glibc's rseq area once, so that [`current_shard`] can read the CPU number from it.
/// Ordinary context only (`dlsym` may lock); idempotent and cheap after the first call.
#[cfg(not(loom))]
pub fn init() {
    rseq::init();
}

/// Under loom there is no rseq area to look up.
#[cfg(loom)]
pub fn init() {}

#[cfg(all(not(loom), target_os = "linux", target_arch = "x86_64"))]
mod rseq {
    use crate::sync::{AtomicUsize, Ordering};

    /// `CPU_ID_OFFSET` before `init` ran.
    const UNINIT: usize = usize::MAX;
    /// `CPU_ID_OFFSET` when there is no rseq area to read (no symbols, or registration off).
    const UNAVAILABLE: usize = usize::MAX - 1;

    /// Offset of the `cpu_id` field from the thread pointer (`__rseq_offset + 4`, as a `usize`
    /// bit pattern: it is an `isize`, negative on some architectures), or one of the two values
    /// above (impossible offsets: the rseq area is 32-byte aligned).
    static CPU_ID_OFFSET: AtomicUsize = AtomicUsize::new(UNINIT);

    pub(super) fn init() {
        // Relaxed (both accesses): the value is a number that every thread computes alike from
        // the same two symbols; nothing else is published through it, and a thread that reads a
        // stale `UNINIT` just takes the fallback.
        if CPU_ID_OFFSET.load(Ordering::Relaxed) != UNINIT {
            return;
        }
        CPU_ID_OFFSET.store(lookup().unwrap_or(UNAVAILABLE), Ordering::Relaxed);
    }

    /// `__rseq_offset + 4` if glibc exports both symbols and registration is enabled.
    fn lookup() -> Option<usize> {
        // SAFETY: `dlsym` with `RTLD_DEFAULT` and a NUL-terminated name has no other
        // preconditions; ordinary context (`init`'s contract), where it may lock.
        let (offset, size) = unsafe {
            (
                libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr()),
                libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()),
            )
        };
        if offset.is_null() || size.is_null() {
            return None;
        }
        // SAFETY: glibc declares `const ptrdiff_t __rseq_offset` and `const unsigned int
        // __rseq_size`, set before `main` and never changed; the pointers are those objects.
        let (offset, size) = unsafe { (*offset.cast::<isize>(), *size.cast::<u32>()) };
        // `cpu_id` is the second 32-bit word of the area: the area must reach past it.
        (size >= 8).then(|| offset.wrapping_add(4) as usize)
    }

    /// The `cpu_id` field of this thread's rseq area, if `init` found one: the CPU number, or
    /// (as an `i32`) negative if the kernel does not fill the area for this thread.
    /// Async-signal-safe: one relaxed load and one load from the thread's own control block.
    #[inline(always)]
    pub(super) fn cpu_id() -> Option<u32> {
        // Relaxed: see `init`.
        let offset = CPU_ID_OFFSET.load(Ordering::Relaxed);
        if offset >= UNAVAILABLE {
            return None;
        }
        let cpu: u32;
        // `offset` is `__rseq_offset + 4`, so `fs:[offset]` is the `cpu_id` field of the calling
        // thread's rseq area, which glibc places in the thread's control block for every thread
        // it starts (the thread pointer is `fs`'s base on x86-64 Linux); it lives as long as the
        // thread. The kernel writes the field only while the thread is not running user code, so
        // an aligned 32-bit load reads a whole value. Not `pure`: the value changes between calls.
        // SAFETY: a load from this thread's live rseq area (above); no memory is written.
        unsafe {
            core::arch::asm!(
                "mov {cpu:e}, dword ptr fs:[{offset}]",
                offset = in(reg) offset,
                cpu = lateout(reg) cpu,
                options(nostack, preserves_flags, readonly),
            );
        }
        // Negative as an `i32` if no area is registered for this thread
        // (`RSEQ_CPU_ID_UNINITIALIZED` or `RSEQ_CPU_ID_REGISTRATION_FAILED`): the caller's.
        Some(cpu)
    }
}

/// Elsewhere only `sched_getcpu`.
#[cfg(all(not(loom), not(all(target_os = "linux", target_arch = "x86_64"))))]
mod rseq {
    pub(super) fn init() {}

    #[inline(always)]
    pub(super) fn cpu_id() -> Option<u32> {
        None
    }
}

#[cfg(loom)]
loom::thread_local! {
    static MODEL_SHARD: std::cell::Cell<usize> = std::cell::Cell::new(0);
}

/// Under loom there are no CPUs: a model picks each thread's shard with [`set_model_shard`].
#[cfg(loom)]
pub fn current_shard(shards: usize) -> usize {
    shard_beyond(current_cpu(), shards)
}

/// Under loom, the shard the model picked for this thread ([`set_model_shard`]).
#[cfg(loom)]
pub fn current_cpu() -> usize {
    MODEL_SHARD.with(|s| s.get())
}

/// Under loom, the modulo.
#[cfg(loom)]
pub fn shard_beyond(cpu: usize, shards: usize) -> usize {
    cpu % shards
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The rseq read and `sched_getcpu` agree (both read the same field natively; a thread
    /// pinned to one CPU cannot migrate between the two reads).
    #[test]
    fn rseq_cpu_agrees_with_sched_getcpu() {
        init();
        // SAFETY: a zeroed `cpu_set_t` is a valid empty set; the calls have no preconditions.
        let pinned = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let cpu = libc::sched_getcpu();
            assert!(cpu >= 0);
            libc::CPU_SET(cpu as usize, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        };
        // SAFETY: no preconditions.
        let expected = unsafe { libc::sched_getcpu() };
        if let Some(cpu) = rseq::cpu_id().filter(|&raw| raw as i32 >= 0)
            && pinned
        {
            assert_eq!(cpu as i32, expected);
        }
        if pinned {
            let shards = 1 + expected as usize;
            assert_eq!(current_shard(shards), expected as usize);
            assert_eq!(current_shard(1), 0);
        }
    }

    /// Pins the calling thread to `cpu`; false if it may not run there.
    fn pin(cpu: usize) -> bool {
        // SAFETY: a zeroed `cpu_set_t` is a valid empty set; the call has no preconditions.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        }
    }

    /// The fallback without rseq (valgrind, older glibc) keeps `sched_getcpu`'s answer for a
    /// bounded number of calls: after a migration it names the new CPU within 64 calls.
    #[test]
    fn the_cpu_hint_follows_a_migration_within_its_call_budget() {
        std::thread::spawn(|| {
            if !pin(0) {
                return;
            }
            assert_eq!(hint::cpu(), 0, "a fresh thread looks its CPU up at once");
            if available() < 2 || !pin(1) {
                return;
            }
            let moved = (0..64).position(|_| hint::cpu() == 1);
            assert!(moved.is_some(), "still on the old CPU after 64 calls");
            assert!(
                (0..200).all(|_| hint::cpu() == 1),
                "the hint went stale while pinned"
            );
        })
        .join()
        .unwrap();
    }
}
