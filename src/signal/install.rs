//! Installing a handler through sigdrop: the trampoline the kernel calls (errno saved, restricted
//! context entered, your function called with a [`SignalInfo`]), and [`install`] /
//! [`install_with`] / [`Installed::uninstall`].

use super::{Signal, SignalInfo};
use crate::error::Error;
use crate::restricted;
use crate::sync::{AtomicPtr, Ordering};
use libc::{c_int, c_void};

/// A function run inside the restricted guard when its signal arrives, told about the delivery
/// by a [`SignalInfo`]. It must be async-signal-safe: sigdrop's restricted-context operations,
/// atomics, no allocation, no lock, no `println!`.
pub type Handler = fn(&SignalInfo);

/// One registered handler per signal number (null = none), stored as a pointer (not an integer)
/// so that the function pointer keeps its provenance; read by the trampoline.
static HANDLERS: [AtomicPtr<()>; 65] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 65];

// Under RealtimeSanitizer (scripts/rtsan.sh) the whole trampoline, and so every handler
// installed through it, is checked as real-time code.
#[cfg_attr(sigdrop_rtsan, sanitize(realtime = "nonblocking"))]
extern "C" fn trampoline(signo: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: `__errno_location` returns this thread's errno; reading and restoring it keeps the
    // handler invisible to the code it interrupted.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved = unsafe { *errno };
    {
        // Always first: a handler installed through sigdrop runs in restricted context.
        let _nmi = restricted::enter();
        // Acquire: pairs with the Release store in `install_with`.
        let raw = usize::try_from(signo)
            .ok()
            .and_then(|index| HANDLERS.get(index))
            .map_or(std::ptr::null_mut(), |h| h.load(Ordering::Acquire));
        if let (false, Ok(signal)) = (raw.is_null(), Signal::new(signo)) {
            // SAFETY: non-null entries are only ever stored from a `Handler` (`install_with`),
            // and function and data pointers have the same size and representation on Linux.
            let handler = unsafe { std::mem::transmute::<*mut (), Handler>(raw) };
            // SAFETY: the kernel's pointers for this delivery (the handler is installed with
            // SA_SIGINFO); `info` lives in this frame and is only lent to the handler.
            let info = unsafe { SignalInfo::new(signal, info, context) };
            handler(&info);
        }
    }
    // SAFETY: as above.
    unsafe { *errno = saved };
}

/// How [`install_with`] installs a handler. The default is what [`install`] does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstallOptions {
    on_alt_stack: bool,
}

impl InstallOptions {
    /// The defaults: the handler runs on the interrupted thread's own stack. May be called
    /// anywhere, a signal handler included (it only builds a value).
    pub const fn new() -> Self {
        InstallOptions {
            on_alt_stack: false,
        }
    }

    /// Run the handler on the thread's alternate signal stack, if it has one (`SA_ONSTACK`):
    /// what a crash handler needs to survive a stack overflow. Give each thread that may take
    /// the signal an [`AltStack`](super::AltStack); a thread without one runs the handler on
    /// its own stack. May be called anywhere (it only builds a value).
    #[must_use = "the options do nothing until passed to install_with"]
    pub const fn on_alt_stack(mut self, yes: bool) -> Self {
        self.on_alt_stack = yes;
        self
    }
}

/// An installed handler; [`uninstall`](Installed::uninstall) puts the previous disposition back.
/// Dropping it leaves the handler installed.
#[must_use = "keep it to uninstall the handler later, or drop it to leave the handler installed"]
pub struct Installed {
    signal: Signal,
    previous: libc::sigaction,
    /// The handler this install replaced in the trampoline's table (null if none).
    previous_handler: *mut (),
}

// SAFETY: `previous_handler` is a function pointer kept only to be stored back; it is never
// dereferenced as data, and `previous` is plain data, so moving them to another thread is
// harmless.
unsafe impl Send for Installed {}

impl std::fmt::Debug for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installed")
            .field("signal", &self.signal)
            .finish_non_exhaustive()
    }
}

/// Installs `handler` for `signal` with the default [`InstallOptions`]; see [`install_with`].
///
/// Ordinary context only ([`Error::Restricted`] otherwise): not from a signal handler.
///
/// # Safety
/// As for [`install_with`].
pub unsafe fn install(signal: Signal, handler: Handler) -> Result<Installed, Error> {
    // SAFETY: the caller's promise.
    unsafe { install_with(signal, handler, InstallOptions::new()) }
}

/// Installs `handler` for `signal`, to run in restricted context, never nested in itself and
/// blocking no other signal (see the module docs). Replaces any handler installed through this
/// module for that signal; uninstalling the newer one puts the older one back.
///
/// Ordinary context only ([`Error::Restricted`] otherwise): not from a signal handler.
///
/// # Safety
/// `handler` must be async-signal-safe, and replacing the signal's current disposition must not
/// break other code in the process (as with any `sigaction` call).
pub unsafe fn install_with(
    signal: Signal,
    handler: Handler,
    options: InstallOptions,
) -> Result<Installed, Error> {
    if restricted::is_active() {
        return Err(Error::Restricted);
    }
    let slot = &HANDLERS[signal.as_raw() as usize];
    // AcqRel: Release so that a trampoline that loads this (Acquire) sees a complete function
    // pointer; Acquire to take over the previous one.
    let previous_handler = slot.swap(handler as *const () as *mut (), Ordering::AcqRel);
    // SAFETY: `sigaction` is plain data; all-zero is a valid value to fill in.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = trampoline as *const () as libc::sighandler_t;
    // No SA_NODEFER (the signal does not nest in itself); SA_RESTART (interrupted system calls
    // of ordinary code resume); SA_SIGINFO (the trampoline takes the kernel's siginfo and
    // ucontext).
    action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    if options.on_alt_stack {
        action.sa_flags |= libc::SA_ONSTACK;
    }
    // SAFETY: `sa_mask` is a valid `sigset_t` to empty: nothing else is blocked in the handler.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: as above, filled in by `sigaction`.
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers; the trampoline is async-signal-safe given the caller's promise
    // about `handler`.
    if unsafe { libc::sigaction(signal.as_raw(), &action, &mut previous) } != 0 {
        let source = std::io::Error::last_os_error();
        // Release: as above (the table goes back to what it was).
        slot.store(previous_handler, Ordering::Release);
        return Err(Error::Os {
            call: "sigaction",
            source,
        });
    }
    Ok(Installed {
        signal,
        previous,
        previous_handler,
    })
}

impl Installed {
    /// The signal. May be called from a signal handler.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Restores the disposition the signal had before [`install`] (and, if that was an earlier
    /// `install`, its handler). Ordinary context only: not from a signal handler.
    ///
    /// A signal still pending anywhere in the process when this returns gets the restored
    /// disposition — for most signals, by default, the end of the process. Stop what sends it
    /// first, and make sure nothing it already sent is still on its way: a [`ThreadTimer`]
    /// aimed at another thread may have queued one there just before it was deleted (see
    /// [`ThreadTimer`]).
    ///
    /// [`ThreadTimer`]: crate::signal::ThreadTimer
    pub fn uninstall(self) -> Result<(), Error> {
        // SAFETY: restoring a disposition that was in place before; no old value is asked for.
        if unsafe { libc::sigaction(self.signal.as_raw(), &self.previous, std::ptr::null_mut()) }
            != 0
        {
            return Err(Error::Os {
                call: "sigaction",
                source: std::io::Error::last_os_error(),
            });
        }
        // Release: as in `install_with`.
        HANDLERS[self.signal.as_raw() as usize].store(self.previous_handler, Ordering::Release);
        Ok(())
    }
}
