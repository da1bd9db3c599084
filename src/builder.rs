//! Runtime settings: the builder, its validation, and the deferral policy.

use crate::arena::MAX_JOBS;
use crate::drainer::{self, Drainer};
use crate::error::Error;
use crate::handle::Runtime;
use crate::restricted;
use crate::runtime::Inner;
use crate::sync::Arc;

/// When a value that leaves a slot is destroyed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Defer to the drainer only in restricted context; in ordinary context the destructor runs
    /// inline (the kernel's `in_nmi()` check).
    #[default]
    Auto,
    /// Always defer to the drainer, whatever the context.
    AlwaysDefer,
}

/// Validated settings.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub shards: usize,
    pub headroom: usize,
    pub hysteresis: usize,
    pub emergency_capacity: usize,
    pub policy: Policy,
    pub max_jobs: usize,
}

/// Builds a [`Runtime`]; every setting is checked by [`build`](Builder::build).
///
/// The setters only store values and may be called anywhere; [`build`](Builder::build) is for
/// ordinary context.
///
/// ```
/// use sigdrop::{Drainer, Policy, Runtime};
///
/// let rt = Runtime::builder()
///     .shards(2)
///     .headroom(16)
///     .drainer(Drainer::Manual)
///     .policy(Policy::Auto)
///     .build()?;
/// assert_eq!(rt.stats().total, 0);
/// # Ok::<(), sigdrop::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    shards: Option<usize>,
    headroom: usize,
    hysteresis: Option<usize>,
    emergency_capacity: usize,
    drainer: Drainer,
    policy: Policy,
    max_jobs: usize,
}

/// The largest shard count accepted.
pub const MAX_SHARDS: usize = 1 << 12;

impl Default for Builder {
    fn default() -> Self {
        Builder {
            shards: None,
            headroom: 64,
            hysteresis: None,
            emergency_capacity: 64,
            drainer: Drainer::Thread,
            policy: Policy::Auto,
            max_jobs: MAX_JOBS,
        }
    }
}

impl Builder {
    /// Number of per-CPU shards (freelists and job lists). Default: the number of CPUs this
    /// process may use. Must be between 1 and [`MAX_SHARDS`].
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Spare jobs kept for future installs (default 64). Growth refills to this many spare jobs
    /// once fewer than half remain; trim frees back down to it.
    pub fn headroom(mut self, headroom: usize) -> Self {
        self.headroom = headroom;
        self
    }

    /// How far above the headroom the spare count may rise before trim runs (default: half the
    /// headroom). The gap keeps growth and trim from thrashing.
    pub fn hysteresis(mut self, hysteresis: usize) -> Self {
        self.hysteresis = Some(hysteresis);
        self
    }

    /// Cells in the emergency area (default 64, must be at least 1). See [`Stats::emergency`](crate::Stats::emergency).
    pub fn emergency_capacity(mut self, capacity: usize) -> Self {
        self.emergency_capacity = capacity;
        self
    }

    /// Who runs deferred destructors (default: [`Drainer::Thread`]).
    pub fn drainer(mut self, drainer: Drainer) -> Self {
        self.drainer = drainer;
        self
    }

    /// When values leaving a slot are deferred (default: [`Policy::Auto`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The most jobs the pool may hold (default and maximum: `u32::MAX`, every index but the list terminator). Installs that
    /// would need more are refused with [`Error::CapacityExceeded`] and hand the value back.
    pub fn max_jobs(mut self, max_jobs: usize) -> Self {
        self.max_jobs = max_jobs;
        self
    }

    fn validate(&self) -> Result<Config, Error> {
        let invalid = |field, reason| Err(Error::InvalidConfig { field, reason });
        let shards = self.shards.unwrap_or_else(crate::cpu::available);
        if shards == 0 {
            return invalid("shards", "must be at least 1");
        }
        if shards > MAX_SHARDS {
            return invalid("shards", "must be at most MAX_SHARDS (4096)");
        }
        if self.emergency_capacity == 0 {
            return invalid("emergency_capacity", "must be at least 1");
        }
        if self.max_jobs == 0 {
            return invalid("max_jobs", "must be at least 1");
        }
        if self.max_jobs > MAX_JOBS {
            return invalid("max_jobs", "must be at most u32::MAX");
        }
        let hysteresis = self.hysteresis.unwrap_or(self.headroom / 2);
        match self.headroom.checked_add(hysteresis) {
            None => return invalid("headroom", "headroom + hysteresis overflows"),
            Some(high) if high > self.max_jobs => {
                return invalid("headroom", "headroom + hysteresis exceeds max_jobs");
            }
            Some(_) => {}
        }
        Ok(Config {
            shards,
            headroom: self.headroom,
            hysteresis,
            emergency_capacity: self.emergency_capacity,
            policy: self.policy,
            max_jobs: self.max_jobs,
        })
    }

    /// Checks every setting and starts the runtime (and its drainer thread, if any).
    ///
    /// Ordinary context only: allocates, and may spawn a thread. Returns
    /// [`Error::InvalidConfig`] for a setting that cannot be honoured, [`Error::DrainerSpawn`] if
    /// the thread cannot start, [`Error::Restricted`] in restricted context.
    pub fn build(self) -> Result<Runtime, Error> {
        if restricted::is_active() {
            return Err(Error::Restricted);
        }
        let config = self.validate()?;
        let inner = Arc::new(Inner::new(config, self.drainer == Drainer::Thread));
        let thread = match self.drainer {
            Drainer::Thread => Some(drainer::spawn(inner.clone()).map_err(Error::DrainerSpawn)?),
            Drainer::Manual => None,
        };
        Ok(Runtime::from_parts(inner, thread))
    }
}
