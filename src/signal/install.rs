//! Installing a handler through sigdrop: the trampoline the kernel calls (errno saved, restricted
//! context entered, your function called with a [`SignalInfo`]), and [`install`] /
//! [`install_with`] / [`Installed::uninstall`].
//!
//! ## Installs of one signal, in any order
//!
//! Every install of a signal is a link in that signal's chain: it remembers what it replaced
//! (the disposition, and the handler in the trampoline's table). The chain lives in a table
//! behind a lock ([`CHAINS`]), and an [`Installed`] is only the signal and its link's id, so
//! uninstalls may come in any order:
//!
//! - uninstalling the newest link puts back what it replaced (`sigaction`, then the table);
//! - uninstalling an older one changes nothing the kernel or the trampoline sees: the link
//!   after it inherits what it replaced, so that when that one goes, it goes back past both.
//!
//! Installs and uninstalls hold the lock across their `sigaction` and table updates, so two
//! threads installing the same signal at once cannot cross their links either. An `Installed`
//! dropped without an uninstall leaves its link for good (its handler stays installed, or stays
//! what a newer link puts back). The lock is a mutex: ordinary context only, which is all
//! these functions may run in (the trampoline reads only the table of handlers); `fork` holds
//! it across the copy, so a child never finds it taken.

use super::{ErrnoGuard, Signal, SignalInfo};
use crate::error::Error;
use crate::restricted;
use crate::sync::{AtomicBool, AtomicPtr, Mutex, MutexGuard, Ordering};
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
    // Saved first and put back last: the handler stays invisible to the code it interrupted.
    let _errno = ErrnoGuard::save();
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

/// One install's link in its signal's chain (module docs): what it replaced.
struct Link {
    signal: Signal,
    id: u64,
    /// The disposition before this install (or, once an older link went, before that one).
    previous: libc::sigaction,
    /// The handler it replaced in the trampoline's table (null if none); as `previous`.
    previous_handler: *mut (),
}

/// Every signal's chain of installs, oldest first, and the next link id.
struct Chains {
    links: Vec<Link>,
    next_id: u64,
}

// SAFETY: `previous_handler` is a function pointer kept only to be stored back in the table; it
// is never dereferenced as data, and `previous` is plain data, so the links may be touched from
// whichever thread holds the lock.
unsafe impl Send for Chains {}

/// The chains (module docs). Ordinary context only.
static CHAINS: Mutex<Chains> = Mutex::new(Chains {
    links: Vec::new(),
    next_id: 0,
});

/// Registers [`CHAINS`] with `fork`'s lock registry, once.
static FORK_SAFE: AtomicBool = AtomicBool::new(false);

/// The chains, locked. A panic while the lock was held left them as they were before its
/// update or after it (each update is a single push, removal or field copy after its
/// `sigaction` succeeded), so a poisoned lock is still consistent.
///
/// The first call registers the lock with `fork` (held by the forking thread across the
/// `fork`, as a runtime's locks are), so that a child never finds it taken by a thread it does
/// not have. Not with a `Once`: registering waits for `fork`'s registry, which a `fork` in
/// progress holds, and a child copied then would find the `Once` running for ever, and hang in
/// its first install. Other first callers go on without waiting for the registration (a
/// `fork` in that moment, while another thread holds the lock, is the one case not covered).
fn chains() -> MutexGuard<'static, Chains> {
    // Relaxed: only elects the one caller that registers; the registry's own lock orders the
    // registration against `fork`.
    if !FORK_SAFE.load(Ordering::Relaxed) && !FORK_SAFE.swap(true, Ordering::Relaxed) {
        crate::fork::watch();
        crate::fork::register(&CHAINS);
    }
    CHAINS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An installed handler; [`uninstall`](Installed::uninstall) takes it out again, in any order
/// with the signal's other installs. Dropping it leaves the handler installed.
#[must_use = "keep it to uninstall the handler later, or drop it to leave the handler installed"]
#[derive(Debug)]
pub struct Installed {
    signal: Signal,
    /// Its link in the signal's chain.
    id: u64,
}

/// Why a signal cannot have a handler, or `None`.
fn uncatchable(signal: Signal) -> Option<&'static str> {
    let signo = signal.as_raw();
    if signo == libc::SIGKILL || signo == libc::SIGSTOP {
        return Some("SIGKILL and SIGSTOP cannot be caught");
    }
    if signo > 31 && signo < libc::SIGRTMIN() {
        return Some("the C library keeps the signals below SIGRTMIN for itself");
    }
    None
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
/// module for that signal; uninstalling the newer one puts the older one back, and
/// uninstalling the older one first leaves the newer one in place (installs of one signal may
/// be uninstalled in any order).
///
/// Ordinary context only ([`Error::Restricted`] otherwise): not from a signal handler.
/// [`Error::InvalidConfig`] for `SIGKILL` and `SIGSTOP`, which cannot be caught, and for the
/// signals between 31 and `SIGRTMIN`, which the C library keeps for itself.
///
/// # Safety
/// `handler` must be async-signal-safe, and replacing the signal's current disposition must not
/// break other code in the process (as with any `sigaction` call). For `SIGSEGV` and `SIGBUS`
/// that includes the Rust runtime's own handler, which prints "thread '...' has overflowed its
/// stack" before the process aborts: once yours is installed, a stack overflow reaches it
/// instead, and reporting or ending the process is up to it.
pub unsafe fn install_with(
    signal: Signal,
    handler: Handler,
    options: InstallOptions,
) -> Result<Installed, Error> {
    if restricted::is_active() {
        return Err(Error::Restricted);
    }
    if let Some(reason) = uncatchable(signal) {
        return Err(Error::InvalidConfig {
            field: "signal",
            reason,
        });
    }
    let mut chains = chains();
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
    let id = chains.next_id;
    chains.next_id += 1;
    chains.links.push(Link {
        signal,
        id,
        previous,
        previous_handler,
    });
    Ok(Installed { signal, id })
}

impl Installed {
    /// The signal. May be called from a signal handler.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Takes this install out. If it is the signal's newest install through this module, the
    /// signal gets back the disposition it had before it (and, if that was an earlier
    /// `install`, its handler); if a newer install is still in place, nothing changes now, and
    /// uninstalling that one later goes back past both. Ordinary context only
    /// ([`Error::Restricted`] otherwise): not from a signal handler.
    ///
    /// A signal still pending anywhere in the process when this returns gets the restored
    /// disposition — for most signals, by default, the end of the process. Stop what sends it
    /// first, and make sure nothing it already sent is still on its way: a [`ThreadTimer`]
    /// aimed at another thread may have queued one there just before it was deleted (see
    /// [`ThreadTimer`]). A process-wide interval timer (`setitimer(ITIMER_PROF, ...)` for
    /// `SIGPROF`) keeps firing until it is disarmed: call `setitimer` with a zero
    /// `it_interval` and `it_value` before uninstalling.
    ///
    /// [`ThreadTimer`]: crate::signal::ThreadTimer
    pub fn uninstall(self) -> Result<(), Error> {
        if restricted::is_active() {
            return Err(Error::Restricted);
        }
        let mut chains = chains();
        let links = &mut chains.links;
        let at = links
            .iter()
            .position(|l| l.id == self.id)
            .expect("an install's link stays until its uninstall");
        let newer = links[at + 1..]
            .iter()
            .position(|l| l.signal == self.signal)
            .map(|i| at + 1 + i);
        let link = &links[at];
        match newer {
            // An older install: the next one inherits what this one replaced.
            Some(newer) => {
                let (previous, previous_handler) = (link.previous, link.previous_handler);
                links[newer].previous = previous;
                links[newer].previous_handler = previous_handler;
            }
            None => {
                // SAFETY: restoring a disposition that was in place before; no old value is
                // asked for.
                if unsafe {
                    libc::sigaction(self.signal.as_raw(), &link.previous, std::ptr::null_mut())
                } != 0
                {
                    return Err(Error::Os {
                        call: "sigaction",
                        source: std::io::Error::last_os_error(),
                    });
                }
                // Release: as in `install_with`.
                HANDLERS[self.signal.as_raw() as usize]
                    .store(link.previous_handler, Ordering::Release);
            }
        }
        links.remove(at);
        Ok(())
    }
}
