//! Install a signal handler that runs in restricted context — the path that cannot forget to
//! enter it — and drive handlers from per-thread timers or a `tgkill` storm, for tests, demos and
//! profilers.
//!
//! ```
//! use sigdrop::signal::{self, Signal, SignalInfo};
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! static SEEN: AtomicUsize = AtomicUsize::new(0);
//!
//! fn on_usr2(info: &SignalInfo) {
//!     // Already in restricted context: sigdrop's slot operations defer every destructor. (No
//!     // `assert!` or `unwrap` here: a handler must not panic. Count, and check outside.)
//!     if sigdrop::restricted::is_active() && info.interrupted_pc().is_some() {
//!         SEEN.fetch_add(1, Ordering::Relaxed); // atomics only: no allocation, no lock
//!     }
//! }
//!
//! // SAFETY: `on_usr2` only touches an atomic; nothing else in this program handles SIGUSR2.
//! let installed = unsafe { signal::install(Signal::SIGUSR2, on_usr2) }?;
//! // SAFETY: raising a signal whose handler is installed.
//! unsafe { libc::raise(Signal::SIGUSR2.as_raw()) };
//! assert_eq!(SEEN.load(Ordering::Relaxed), 1);
//! installed.uninstall()?;
//! # Ok::<(), sigdrop::Error>(())
//! ```
//!
//! A handler installed here is installed *without* `SA_NODEFER` (the same signal does not nest
//! in itself), with an empty mask (every other signal may land inside it), with `SA_RESTART` (the
//! interrupted code's system calls resume) and `SA_SIGINFO`. sigdrop's trampoline saves `errno`,
//! enters [`restricted::enter`](crate::restricted::enter), calls your function with a
//! [`SignalInfo`] (signal number, sender, fault address, the interrupted code's registers), and
//! restores `errno`. A crash handler asks for [`InstallOptions::on_alt_stack`] and gives each
//! thread an [`AltStack`].
//!
//! | item                                                | from a signal handler? | notes                                  |
//! |-----------------------------------------------------|------------------------|----------------------------------------|
//! | [`install`], [`install_with`], [`Installed::uninstall`] | no                 | `sigaction`                            |
//! | your [`Handler`]                                    | must be safe there     | runs inside the restricted guard       |
//! | [`SignalInfo`]'s methods                            | yes                    | read what the kernel filled in         |
//! | [`Signal`]'s methods (but [`Signal::realtime`])     | yes                    | plain numbers                          |
//! | [`AltStack::install`], dropping an [`AltStack`]     | no                     | `mmap`, `sigaltstack`                  |
//! | [`current_tid`]                                     | yes                    | one `gettid` syscall                   |
//! | [`ThreadTimer`]                                     | no                     | `timer_create`/`timer_delete`          |
//! | [`Storm`]                                           | no                     | owns a thread that calls `tgkill`      |
//! | [`ErrnoGuard::save`], dropping an [`ErrnoGuard`]    | yes                    | for handlers installed another way     |

mod alt_stack;
mod info;
mod install;
mod number;
mod storm;
#[cfg(test)]
mod tests;
mod timer;

pub use crate::errno::ErrnoGuard;
pub use alt_stack::AltStack;
pub use info::SignalInfo;
pub use install::{Handler, InstallOptions, Installed, install, install_with};
pub use number::Signal;
pub use storm::Storm;
pub use timer::{ThreadTimer, TimerClock};

/// A kernel thread id (what `gettid` returns and `tgkill` and `SIGEV_THREAD_ID` take).
pub type Tid = libc::pid_t;

/// The calling thread's kernel thread id. May be called from a signal handler (one `gettid`
/// system call).
pub fn current_tid() -> Tid {
    // SAFETY: `gettid` has no preconditions.
    unsafe { libc::gettid() }
}
