//! Errors: every way an operation can refuse, with enough detail to act on.

use std::fmt;

/// Why a runtime could not be built, or an operation could not be carried out.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A builder value, or an argument (a signal number, a timer interval, a storm's
    /// targets), that cannot be honoured.
    InvalidConfig {
        /// The builder setting, or the argument, at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The allocator refused memory: while growing the job pool, or for a new
    /// [`Owned`](crate::Owned) box ([`Owned::try_new`](crate::Owned::try_new),
    /// [`Owned::try_clone`](crate::Owned::try_clone), [`Shared::try_new`](crate::Shared::try_new)).
    OutOfMemory,
    /// Growing would exceed the runtime's job limit (`Builder::max_jobs`).
    CapacityExceeded {
        /// The limit that would have been exceeded.
        max_jobs: usize,
    },
    /// The operation needs ordinary context (it may allocate or block) but was called with a
    /// restricted-context guard active.
    Restricted,
    /// An install in restricted context (or [`Detached::reserve`](crate::Detached::reserve)
    /// there) found no reserved or spare job; growing the pool is not possible there. Keep jobs
    /// reserved beforehand, in ordinary context, with
    /// [`Runtime::reserve_to`](crate::Runtime::reserve_to) or
    /// [`Runtime::reserve`](crate::Runtime::reserve) — on the runtime named here: a slot or map
    /// uses the runtime it was made with.
    ///
    /// Made in the signal handler without allocating: numbers only.
    NoSpareJob {
        /// The runtime that refused ([`Runtime::id`](crate::Runtime::id)).
        runtime: u64,
        /// Reserved jobs left when it refused (read just after the refusal; 0 unless another
        /// thread reserved or gave one back meanwhile).
        reserved: usize,
        /// Spare jobs left when it refused (read likewise).
        spare: usize,
    },
    /// The operation would wait for a grace period while the calling thread holds a
    /// [`ReadGuard`](crate::read::ReadGuard): it would wait for itself. Drop the guard first.
    ReadGuardHeld,
    /// `Runtime::global()` was reached for the first time from restricted context, where it
    /// cannot be created. Touch it once in ordinary context first.
    GlobalUninitialized,
    /// [`Builder::build_global`](crate::Builder::build_global) came after the process-wide
    /// runtime was created (by an earlier call, or with the defaults on first use).
    GlobalExists,
    /// The drainer thread could not be started.
    DrainerSpawn(std::io::Error),
    /// A map bucket was locked (or another thread was preparing a `fork`, which holds every
    /// map off for moments) and the caller is in restricted context, where sigdrop never
    /// waits (rather than spin against the code it interrupted). The map is unchanged; retry
    /// later, e.g. on the next signal.
    WouldBlock,
    /// The slot already holds an object ([`Slot::try_install`](crate::Slot::try_install) puts
    /// one only into an empty slot). The slot is unchanged.
    Occupied,
    /// A fixed-capacity map has no free element for a new key.
    MapFull {
        /// The map's capacity.
        capacity: usize,
    },
    /// An index beyond a fixed-size container's length.
    OutOfRange {
        /// The index asked for.
        index: usize,
        /// The container's length.
        len: usize,
    },
    /// A system call failed.
    Os {
        /// Which call.
        call: &'static str,
        /// The error it returned.
        source: std::io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig { field, reason } => write!(f, "invalid {field}: {reason}"),
            Error::OutOfMemory => f.write_str("out of memory (for the job pool, or a new box)"),
            Error::CapacityExceeded { max_jobs } => {
                write!(f, "job pool limit of {max_jobs} jobs reached")
            }
            Error::Restricted => f.write_str(
                "not allowed in restricted context (inside restricted::enter, as in a signal \
                 handler): it may allocate or block; call it from ordinary code",
            ),
            Error::ReadGuardHeld => f.write_str(
                "would wait for a grace period while this thread holds a read guard, that is for \
                 itself: drop the guard first",
            ),
            Error::NoSpareJob {
                runtime,
                reserved,
                spare,
            } => write!(
                f,
                "no job for an install in restricted context on runtime {runtime} \
                 ({reserved} reserved, {spare} spare when refused; reserve jobs on that runtime \
                 beforehand)"
            ),
            Error::GlobalUninitialized => f.write_str(
                "the global runtime cannot be created from restricted context; touch it once in ordinary context first",
            ),
            Error::GlobalExists => f.write_str(
                "the global runtime already exists; build_global must come before its first use",
            ),
            Error::DrainerSpawn(e) => write!(f, "could not start the drainer thread: {e}"),
            Error::WouldBlock => {
                f.write_str("map bucket busy and waiting is not allowed in restricted context")
            }
            Error::Occupied => f.write_str("the slot already holds an object"),
            Error::MapFull { capacity } => write!(f, "map full ({capacity} entries)"),
            Error::OutOfRange { index, len } => {
                write!(f, "index {index} out of range for length {len}")
            }
            Error::Os { call, source } => write!(f, "{call} failed: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::DrainerSpawn(e) => Some(e),
            Error::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}
