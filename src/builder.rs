//! Runtime settings: the builder, its validation, and the deferral policy.

use crate::arena::MAX_JOBS;
use crate::error::Error;
use crate::reclaim::doorbell::Wake;
use crate::reclaim::drainer::Drainer;
use std::time::Duration;

/// When a value that leaves a slot is destroyed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Defer to the drainer only in restricted context; in ordinary context the destructor runs
    /// inline — except for an object that left a [`ReadSlot`](crate::ReadSlot), which readers
    /// may still borrow: it is retired into a batch and destroyed once they are gone. Batches
    /// are destroyed by the drainer, and also by the threads that fill them (they help, and
    /// run many of them).
    ///
    /// "Inline" has one refinement, for deep structures: an object that a destructor lets go of
    /// through a slot or an [`Owned`](crate::Owned) box more than 32 destructors deep (one
    /// inside another) is destroyed right after the outermost of them returns, on the same
    /// thread and before the call that started it returns, rather than inside it. So a list
    /// whose nodes each hold the next one in a slot is destroyed in a loop, not by a recursion
    /// that could overflow the stack; anything shallower is destroyed exactly inline (a
    /// destructor that clears a slot may rely on the slot's object being gone).
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
    pub regrowth_window: Duration,
    pub emergency_capacity: usize,
    pub policy: Policy,
    pub max_jobs: usize,
    pub max_pending: usize,
    pub drainer: Drainer,
    pub wake: Wake,
    pub shutdown_timeout: Option<Duration>,
}

/// Builds a [`Runtime`](crate::Runtime); every setting is checked by [`build`](Builder::build).
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
    regrowth_window: Duration,
    emergency_capacity: usize,
    drainer: Drainer,
    policy: Policy,
    max_jobs: usize,
    max_pending: usize,
    wake: Wake,
    shutdown_timeout: Option<Duration>,
}

/// The largest shard count accepted.
pub const MAX_SHARDS: usize = 1 << 12;

/// The default headroom (its hysteresis defaults to half of it), which the headroom error
/// message spells out.
const DEFAULT_HEADROOM: usize = 64;
const _: () = assert!(DEFAULT_HEADROOM == 64, "update the headroom error message");

impl Default for Builder {
    fn default() -> Self {
        Builder {
            shards: None,
            headroom: DEFAULT_HEADROOM,
            hysteresis: None,
            regrowth_window: DEFAULT_REGROWTH_WINDOW,
            emergency_capacity: 64,
            drainer: Drainer::Thread,
            policy: Policy::Auto,
            max_jobs: MAX_JOBS,
            max_pending: DEFAULT_MAX_PENDING,
            wake: Wake::Immediate,
            shutdown_timeout: Some(DEFAULT_SHUTDOWN_TIMEOUT),
        }
    }
}

/// The default bound on objects waiting for destruction.
pub const DEFAULT_MAX_PENDING: usize = 4096;

/// How long a shutdown waits, by default, for a drainer thread that finishes no destructor.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// The shortest non-zero regrowth window accepted (shorter would wake the drainer thread
/// too often while jobs are kept).
const MIN_REGROWTH_WINDOW: Duration = Duration::from_millis(1);

/// The longest regrowth window accepted.
const MAX_REGROWTH_WINDOW: Duration = Duration::from_secs(3600);

/// The smallest `max_pending` accepted: one batch.
const MIN_MAX_PENDING: usize = crate::reclaim::batches::BATCH;

/// The shortest lazy period accepted (shorter is a busy drainer, not a lazy one).
const MIN_PERIOD: Duration = Duration::from_micros(100);

/// The default regrowth window ([`Builder::regrowth_window`]): long enough to span the
/// ticks of a sampling profiler or the frames of an audio callback, short enough that the jobs
/// kept for bursts that have stopped are trimmed within about two seconds.
#[cfg(not(loom))]
const DEFAULT_REGROWTH_WINDOW: Duration = Duration::from_secs(1);
/// Off in models: loom has no clock, and a decision taken on the real one would differ between
/// the executions of a model. The window moves only heuristics (how many spare jobs a trim
/// leaves, how long an idle drainer may sleep), never what a lock-free operation may assume;
/// `tests/regrowth_window.rs` checks it with real threads.
#[cfg(loom)]
const DEFAULT_REGROWTH_WINDOW: Duration = Duration::ZERO;

/// The longest lazy period accepted.
const MAX_PERIOD: Duration = Duration::from_secs(60);

impl Builder {
    /// Number of per-CPU shards (freelists and job lists). Default: the number of CPUs this
    /// process may use. Must be between 1 and [`MAX_SHARDS`].
    #[must_use]
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Spare jobs kept for future installs (default 64). Growth refills to this many spare jobs
    /// once fewer than half remain; trim frees back down to it.
    #[must_use]
    pub fn headroom(mut self, headroom: usize) -> Self {
        self.headroom = headroom;
        self
    }

    /// How far above the headroom the spare count may rise before trim runs (default: half the
    /// headroom). The gap keeps growth and trim from thrashing.
    #[must_use]
    pub fn hysteresis(mut self, hysteresis: usize) -> Self {
        self.hysteresis = Some(hysteresis);
        self
    }

    /// How long the pool remembers having to grow back jobs that a trim had just freed: one
    /// second by default; zero turns this off; otherwise between 1 ms and an hour.
    ///
    /// The hysteresis above stops growth and trim from chasing each other over swings smaller
    /// than it. A workload whose bursts are larger (a profiler that swaps out thousands of
    /// buffers at each tick, then drains) still has every drain free what the next burst grows
    /// back: bookkeeping per job and an allocation and a free per run of 16 to 256 jobs, per
    /// burst, and teardowns on jobs another CPU has just written. If you know the burst size, a
    /// hysteresis that large keeps the jobs for good. A window adapts instead: when jobs are
    /// grown back within it of a trim (never more than the trims freed), they and the spare jobs
    /// that trim left stay spare, on top of the headroom, so bursts that grow larger are kept at
    /// their larger size, until a whole window passes without such regrowth; a drain after that
    /// frees them (the drainer thread looks at least once a window while jobs are kept, so with
    /// it they go within about two windows, lazy or not).
    ///
    /// On by default, for the workloads that burst again and again: in our benchmark of two
    /// threads tearing down bursts at once with the default settings, a teardown took 8-16%
    /// less time with the window than without in five runs of six (`BENCHMARKS.md` has one
    /// run, both ways). What it trades: with a window, after a drain the pool may hold up to
    /// [`Stats::kept`](crate::Stats::kept) spare jobs (their bodies, 24 to 32 bytes each) on
    /// top of `headroom + hysteresis`, for as long as bursts keep growing them back and about
    /// two windows after; a zero window keeps that count exact. A single burst is still trimmed
    /// at its drain, and [`Runtime::trim`](crate::Runtime::trim) always frees down to the
    /// headroom.
    ///
    /// ```
    /// use sigdrop::{Drainer, RefSlot, Runtime, restricted};
    /// use std::time::Duration;
    ///
    /// let rt = Runtime::builder()
    ///     .drainer(Drainer::Manual)
    ///     .regrowth_window(Duration::from_secs(60))
    ///     .build()?;
    /// let slots: Vec<RefSlot<Box<u64>>> = (0..1000).map(|_| RefSlot::new(&rt)).collect();
    /// for _tick in 0..3 {
    ///     for s in &slots {
    ///         s.xchg(Some(Box::new(0)))?; // grows the pool when no job is spare
    ///     }
    ///     let _in_handler = restricted::enter(); // as a signal handler would
    ///     slots.iter().for_each(|s| s.clear());
    ///     drop(_in_handler);
    ///     rt.drain()?; // the first drain trims; the next ones keep what was grown back
    /// }
    /// assert!(rt.stats().kept > 0);
    /// rt.trim()?; // now, whatever the window
    /// assert_eq!(rt.stats().kept, 0);
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    #[must_use]
    pub fn regrowth_window(mut self, window: Duration) -> Self {
        self.regrowth_window = window;
        self
    }

    /// Cells in the emergency area (default 64, must be at least 1). See [`Stats::emergency`](crate::Stats::emergency).
    #[must_use]
    pub fn emergency_capacity(mut self, capacity: usize) -> Self {
        self.emergency_capacity = capacity;
        self
    }

    /// Who runs deferred destructors (default: [`Drainer::Thread`]).
    #[must_use]
    pub fn drainer(mut self, drainer: Drainer) -> Self {
        self.drainer = drainer;
        self
    }

    /// When values leaving a slot are deferred (default: [`Policy::Auto`]).
    #[must_use]
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The most jobs the pool may hold (default and maximum: `u32::MAX`, every index but the list terminator). Installs that
    /// would need more are refused with [`Error::CapacityExceeded`] and hand the value back.
    #[must_use]
    pub fn max_jobs(mut self, max_jobs: usize) -> Self {
        self.max_jobs = max_jobs;
        self
    }

    /// The most objects that may wait for destruction — in job lists and in closed batches —
    /// before the threads that hand objects over in ordinary context help (default 4096, at
    /// least 64).
    ///
    /// A thread over the bound runs drain cycles itself until the backlog is back under the bound;
    /// if readers hold a grace period up, it waits for them, as
    /// [`read::synchronize`](crate::read::synchronize) would — unless it holds a read guard itself,
    /// when it goes on over the bound rather than wait for itself. Under [`Policy::AlwaysDefer`]
    /// with a drainer thread it wakes the drainer and waits for it instead; once the drainer has
    /// stayed inside one destructor for 10 ms (it may be blocked on a lock the caller holds) the
    /// thread goes on over the bound (see below for how far). A drainer outside destructors
    /// (waiting for readers, say) is waited for. Signal handlers never help and never wait: the
    /// ordinary code that supplies them is what keeps their objects bounded, and it waits for the
    /// drainer thread rather than run other objects' destructors while there is one:
    ///
    /// - an install looks at the backlog when it finds no spare job (the jobs it needs are the ones
    ///   waiting), and at every 64th install into this runtime on its thread (jobs come back to the
    ///   pool once their objects are batched). Over the bound it waits, for 15 ms at most: it can
    ///   go on without the drainer, and a reader, or a thread running a drain, may be what holds
    ///   the backlog up while it waits for the installing thread. One that found no spare job waits
    ///   only while more than `max_pending` objects wait with jobs (objects in batches hold none);
    /// - the maker of an [`Owned`](crate::Owned) box, while boxes dropped in handlers pile up
    ///   faster than drain cycles take them (they hold no job and count nowhere until taken), waits
    ///   for as long as the drainer thread keeps finishing destructors.
    ///
    /// Both go on over the bound once the drainer thread has stayed inside one destructor for 10 ms
    /// (it may be blocked on a lock the caller holds). The same holds for the objects another
    /// thread took to destroy (one calling [`Runtime::drain`](crate::Runtime::drain), or helping
    /// over the bound): once it has finished none of the chain or batches it took for 10 ms, they
    /// go on. With [`Drainer::Manual`] (or in a child process after `fork` whose drainer thread
    /// has not been started yet) they run drain cycles themselves.
    ///
    /// How far over: each give-up lets its own call go on (one install, the boxes made until
    /// the next look, or a batch of 64 handed over). Destructors that each take longer than
    /// 10 ms so let the backlog grow by about that much per destructor. Once the drainer
    /// thread has been stuck in one destructor for 40 ms, a give-up also lets the calls after
    /// it go on at once while it stays stuck: 64 objects, then twice as many at each further
    /// 10 ms wait, up to `max_pending` objects per wait (plus a call per thread). So a thread
    /// that holds a lock the destructors need through many calls waits a few times, not at
    /// every call.
    ///
    /// On top of the bound, each CPU's open batch holds up to 64 objects not yet counted in it
    /// (two, if some objects need a grace period and others do not), and a thread that fills
    /// a batch closes it (64 objects) before it checks: with more such threads than CPUs,
    /// allow a batch for each. An object retired while every open batch is busy goes with a
    /// job (see [`Stats::offloaded`](crate::Stats)), within the same bound. A thread whose
    /// installs find spare jobs looks at the backlog once in 64 installs into it: allow 64 objects
    /// per such thread for what handlers tear down of them.
    ///
    /// So a thread over the bound may run other objects' destructors: one that hands objects
    /// over in ordinary context (a write to a [`ReadSlot`](crate::ReadSlot); with a manual
    /// drainer and `AlwaysDefer`, any drop), and, with a manual drainer, an install, a map
    /// insert, or a new or cloned box ([`Owned`](crate::Owned), [`Shared`](crate::Shared)). Do
    /// not make those calls while holding a lock that this runtime's destructors take. With a
    /// drainer thread and `AlwaysDefer`, no call but the drains and the shutdown runs other
    /// objects' destructors: holding such a lock costs some waits of 10 ms, never a deadlock.
    #[must_use]
    pub fn max_pending(mut self, max_pending: usize) -> Self {
        self.max_pending = max_pending;
        self
    }

    /// When the drainer thread wakes (default [`Wake::Immediate`]). [`Wake::Lazy`] trades
    /// latency for handlers that make no syscall. Ignored with [`Drainer::Manual`].
    #[must_use]
    pub fn wake(mut self, wake: Wake) -> Self {
        self.wake = wake;
        self
    }

    /// How long dropping the last handle waits for a drainer thread that finishes no destructor
    /// (default [`DEFAULT_SHUTDOWN_TIMEOUT`], one second; `None`: wait for as long as it takes).
    ///
    /// The shutdown waits while the drainer keeps finishing destructors, however many there
    /// are; the timeout is for one destructor that does not return (it blocks on a lock the
    /// dropping thread holds, say). Past it, the shutdown stops waiting, runs everything the
    /// drainer has not taken on the calling thread, and returns; the drainer keeps the objects
    /// it holds and runs them if its destructor ever returns (unless the process exits first).
    /// [`Runtime::shutdown`](crate::Runtime::shutdown) reports what was left. With
    /// [`Drainer::Manual`] there is no drainer thread to wait for. In every mode the timeout
    /// also caps the shutdown's wait (never longer than one second) for an
    /// [`Owned`](crate::Owned) box that some thread is in the middle of dropping in a signal
    /// handler.
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    pub(crate) fn validate(&self) -> Result<Config, Error> {
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
        if self.max_pending < MIN_MAX_PENDING {
            return invalid("max_pending", "must be at least 64 (one batch)");
        }
        if let Wake::Lazy {
            period,
            high_watermark,
        } = self.wake
        {
            if !(MIN_PERIOD..=MAX_PERIOD).contains(&period) {
                return invalid("wake", "the lazy period must be between 100 µs and 60 s");
            }
            if high_watermark == 0 {
                return invalid("wake", "the lazy high watermark must be at least 1");
            }
        }
        let window = self.regrowth_window;
        if !window.is_zero() && !(MIN_REGROWTH_WINDOW..=MAX_REGROWTH_WINDOW).contains(&window) {
            return invalid(
                "regrowth_window",
                "must be zero (off) or between 1 ms and one hour",
            );
        }
        let hysteresis = self.hysteresis.unwrap_or(self.headroom / 2);
        match self.headroom.checked_add(hysteresis) {
            None => return invalid("headroom", "headroom + hysteresis overflows"),
            Some(high) if high > self.max_jobs => {
                return invalid(
                    "headroom",
                    "headroom + hysteresis (64 + 32 unless set) exceeds max_jobs: \
                     lower headroom (and hysteresis) or raise max_jobs",
                );
            }
            Some(_) => {}
        }
        Ok(Config {
            shards,
            headroom: self.headroom,
            hysteresis,
            regrowth_window: self.regrowth_window,
            emergency_capacity: self.emergency_capacity,
            policy: self.policy,
            max_jobs: self.max_jobs,
            max_pending: self.max_pending,
            drainer: self.drainer,
            wake: self.wake,
            shutdown_timeout: self.shutdown_timeout,
        })
    }
}
