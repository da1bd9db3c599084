//! [`ErrnoGuard`]: this thread's `errno`, saved and put back, so that a signal handler's system
//! calls stay invisible to the code it interrupted.
//!
//! A handler runs between two instructions of arbitrary code, which may be about to read
//! `errno` after a failed call of its own. Anything the handler does that sets `errno` (a
//! failing syscall, a library function that reports through it) would change what that code
//! reads. The guard saves the value on entry and restores it when dropped, on every way out of
//! the scope.

use std::marker::PhantomData;

/// Saves this thread's `errno` when made and puts it back when dropped.
///
/// [`signal::install`](crate::signal::install) already does this around your handler, and every
/// system call sigdrop itself makes in restricted context preserves `errno`. Make one yourself
/// as the first statement of a handler installed some other way (a library that chains to a
/// previous handler, say), before [`restricted::enter`](crate::restricted::enter), so that it is
/// dropped last:
///
/// ```standalone_crate
/// use sigdrop::{restricted, signal::ErrnoGuard};
///
/// extern "C" fn on_signal(_: libc::c_int) {
///     let _errno = ErrnoGuard::save();
///     let _restricted = restricted::enter();
///     // ... sigdrop's restricted-context operations, and syscalls of your own:
///     // SAFETY: closing an invalid descriptor only fails (EBADF).
///     unsafe { libc::close(-1) };
/// } // `errno` is what the interrupted code left
///
/// # // SAFETY: the handler is async-signal-safe; nothing else handles SIGUSR1 in this example.
/// # unsafe { libc::signal(libc::SIGUSR1, on_signal as libc::sighandler_t) };
/// // SAFETY: `__errno_location` is this thread's errno.
/// unsafe { *libc::__errno_location() = libc::EAGAIN };
/// // SAFETY: raising a signal whose handler is installed.
/// unsafe { libc::raise(libc::SIGUSR1) };
/// // SAFETY: as above.
/// assert_eq!(unsafe { *libc::__errno_location() }, libc::EAGAIN);
/// ```
///
/// Not `Send`: the value belongs to the thread that saved it. May be made and dropped in a signal
/// handler (two accesses to a thread-local integer, no call but `__errno_location`).
#[must_use = "errno is put back when the guard is dropped"]
#[derive(Debug)]
pub struct ErrnoGuard {
    saved: libc::c_int,
    _not_send: PhantomData<*mut ()>,
}

impl ErrnoGuard {
    /// Saves this thread's `errno`. Async-signal-safe.
    #[inline]
    pub fn save() -> ErrnoGuard {
        // SAFETY: `__errno_location` returns this thread's errno, valid for the thread's life.
        let saved = unsafe { *libc::__errno_location() };
        ErrnoGuard {
            saved,
            _not_send: PhantomData,
        }
    }

    /// The value saved (what the interrupted code left). Async-signal-safe.
    pub fn saved(&self) -> libc::c_int {
        self.saved
    }
}

impl Drop for ErrnoGuard {
    /// Puts the saved value back. Async-signal-safe.
    #[inline]
    fn drop(&mut self) {
        // SAFETY: as in `save`; the guard is not `Send`, so this is the thread that saved it.
        unsafe { *libc::__errno_location() = self.saved };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno() -> libc::c_int {
        // SAFETY: this thread's errno.
        unsafe { *libc::__errno_location() }
    }

    #[test]
    fn the_saved_value_comes_back_whatever_happened_in_between() {
        // SAFETY: this thread's errno.
        unsafe { *libc::__errno_location() = libc::EINTR };
        {
            let guard = ErrnoGuard::save();
            assert_eq!(guard.saved(), libc::EINTR);
            // SAFETY: closing an invalid descriptor only fails.
            assert_eq!(unsafe { libc::close(-1) }, -1);
            assert_eq!(errno(), libc::EBADF, "the call did change errno");
        }
        assert_eq!(errno(), libc::EINTR);
    }
}
