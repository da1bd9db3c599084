//! [`Signal`]: a signal number, sigdrop's own type, so that no other crate's version of a signal
//! type leaks into the API.

use crate::error::Error;
use libc::c_int;

/// The highest signal number Linux delivers (`SIGRTMAX`).
const MAX: c_int = 64;

/// A signal number (1 to 64), as `kill`, `sigaction` and `tgkill` take it.
///
/// The constants name the signals a handler installed through [`install`](super::install)
/// usually serves; any other number comes from [`Signal::new`], and a real-time signal from
/// [`Signal::realtime`]. All methods may be called from a signal handler except
/// [`Signal::realtime`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(c_int);

impl Signal {
    /// `SIGPROF`: profiling timer expired (the profiler's signal).
    pub const SIGPROF: Signal = Signal(libc::SIGPROF);
    /// `SIGUSR1`: user-defined.
    pub const SIGUSR1: Signal = Signal(libc::SIGUSR1);
    /// `SIGUSR2`: user-defined.
    pub const SIGUSR2: Signal = Signal(libc::SIGUSR2);
    /// `SIGURG`: urgent socket data; ignored by default, so handy for tests and preemption.
    pub const SIGURG: Signal = Signal(libc::SIGURG);
    /// `SIGWINCH`: terminal resized; ignored by default.
    pub const SIGWINCH: Signal = Signal(libc::SIGWINCH);
    /// `SIGALRM`: `alarm`/`setitimer(ITIMER_REAL)` expired.
    pub const SIGALRM: Signal = Signal(libc::SIGALRM);
    /// `SIGVTALRM`: `setitimer(ITIMER_VIRTUAL)` expired.
    pub const SIGVTALRM: Signal = Signal(libc::SIGVTALRM);
    /// `SIGSEGV`: invalid memory access (a crash handler's signal; a stack overflow is one).
    pub const SIGSEGV: Signal = Signal(libc::SIGSEGV);
    /// `SIGBUS`: bus error (e.g. a truncated memory-mapped file).
    pub const SIGBUS: Signal = Signal(libc::SIGBUS);
    /// `SIGILL`: illegal instruction.
    pub const SIGILL: Signal = Signal(libc::SIGILL);
    /// `SIGFPE`: arithmetic fault.
    pub const SIGFPE: Signal = Signal(libc::SIGFPE);
    /// `SIGTRAP`: trace or breakpoint trap.
    pub const SIGTRAP: Signal = Signal(libc::SIGTRAP);
    /// `SIGHUP`: hang-up; by convention, "reload your configuration".
    pub const SIGHUP: Signal = Signal(libc::SIGHUP);
    /// `SIGINT`: interrupt from the terminal (Ctrl-C).
    pub const SIGINT: Signal = Signal(libc::SIGINT);
    /// `SIGTERM`: a polite request to terminate.
    pub const SIGTERM: Signal = Signal(libc::SIGTERM);
    /// `SIGQUIT`: quit from the terminal (Ctrl-\\), by default with a core dump.
    pub const SIGQUIT: Signal = Signal(libc::SIGQUIT);
    /// `SIGCHLD`: a child process stopped or ended; ignored by default.
    pub const SIGCHLD: Signal = Signal(libc::SIGCHLD);
    /// `SIGPIPE`: a write to a pipe or socket nobody reads.
    pub const SIGPIPE: Signal = Signal(libc::SIGPIPE);

    /// The signal numbered `signo`; [`Error::InvalidConfig`] unless it is between 1 and 64.
    /// May be called from a signal handler.
    pub const fn new(signo: c_int) -> Result<Signal, Error> {
        if signo >= 1 && signo <= MAX {
            Ok(Signal(signo))
        } else {
            Err(Error::InvalidConfig {
                field: "signal",
                reason: "a signal number is between 1 and 64",
            })
        }
    }

    /// The `n`-th real-time signal (`SIGRTMIN + n`), if there is one. The C library keeps the
    /// first few real-time signals for itself, which is why `SIGRTMIN` is asked for at run time.
    /// Ordinary context: call it before a handler needs the value.
    pub fn realtime(n: u32) -> Result<Signal, Error> {
        let signo = i64::from(libc::SIGRTMIN()) + i64::from(n);
        if signo <= i64::from(libc::SIGRTMAX()) {
            Signal::new(signo as c_int)
        } else {
            Err(Error::InvalidConfig {
                field: "signal",
                reason: "beyond the last real-time signal",
            })
        }
    }

    /// The number, for `libc` calls. May be called from a signal handler.
    pub const fn as_raw(self) -> c_int {
        self.0
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            libc::SIGPROF => "SIGPROF",
            libc::SIGUSR1 => "SIGUSR1",
            libc::SIGUSR2 => "SIGUSR2",
            libc::SIGURG => "SIGURG",
            libc::SIGWINCH => "SIGWINCH",
            libc::SIGALRM => "SIGALRM",
            libc::SIGVTALRM => "SIGVTALRM",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGBUS => "SIGBUS",
            libc::SIGILL => "SIGILL",
            libc::SIGFPE => "SIGFPE",
            libc::SIGTRAP => "SIGTRAP",
            libc::SIGHUP => "SIGHUP",
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            libc::SIGQUIT => "SIGQUIT",
            libc::SIGCHLD => "SIGCHLD",
            libc::SIGPIPE => "SIGPIPE",
            n => return write!(f, "signal {n}"),
        };
        f.write_str(name)
    }
}
