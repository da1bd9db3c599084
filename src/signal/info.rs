//! [`SignalInfo`]: what a handler installed through sigdrop is told about the signal it serves —
//! which signal, who sent it or which address faulted, and the interrupted code's registers.

use super::Signal;
use libc::{c_int, c_void};
use std::marker::PhantomData;

/// The context of one signal delivery, lent to a [`Handler`](super::Handler) for the duration
/// of the call. Every method may be called from a signal handler (each reads memory the kernel
/// filled in for this delivery; none calls into the C library).
///
/// It cannot be copied or sent to another thread: the pointers it holds describe the
/// interrupted code of this thread, and are valid only until the handler returns.
pub struct SignalInfo {
    signal: Signal,
    info: *const libc::siginfo_t,
    context: *mut c_void,
    _this_delivery: PhantomData<*mut ()>,
}

impl SignalInfo {
    /// # Safety
    /// `info` and `context` are the pointers the kernel passed to an `SA_SIGINFO` handler for
    /// this delivery (valid until the handler returns), and the value does not outlive it.
    pub(super) unsafe fn new(
        signal: Signal,
        info: *const libc::siginfo_t,
        context: *mut c_void,
    ) -> Self {
        SignalInfo {
            signal,
            info,
            context,
            _this_delivery: PhantomData,
        }
    }

    /// The signal being handled.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// The raw `siginfo_t` the kernel filled in, for fields this type has no accessor for.
    pub fn siginfo(&self) -> &libc::siginfo_t {
        // SAFETY: the kernel passes a valid `siginfo_t` to an `SA_SIGINFO` handler, valid until
        // it returns (`new`'s contract); `&self` cannot outlive the handler call.
        unsafe { &*self.info }
    }

    /// Why the signal was sent (`si_code`): positive when the kernel raised it for a reason of
    /// its own (e.g. `SEGV_MAPERR` for a fault), `SI_USER` (`kill`), `SI_TKILL` (`tgkill`,
    /// `raise`, `pthread_kill`), `SI_QUEUE` (`sigqueue`), `SI_TIMER` (a POSIX timer such as
    /// [`ThreadTimer`](super::ThreadTimer)).
    pub fn code(&self) -> c_int {
        self.siginfo().si_code
    }

    /// Whether a POSIX timer (`timer_create`, e.g. a [`ThreadTimer`](super::ThreadTimer)) sent
    /// the signal.
    pub fn is_from_timer(&self) -> bool {
        self.code() == libc::SI_TIMER
    }

    /// The process that sent the signal with `kill`, `tgkill` (`raise`, `pthread_kill`) or
    /// `sigqueue`; `None` when the kernel or a timer raised it.
    pub fn sender_pid(&self) -> Option<libc::pid_t> {
        match self.code() {
            libc::SI_USER | libc::SI_TKILL | libc::SI_QUEUE => {
                // SAFETY: for these codes the kernel fills in the sender's pid and uid.
                Some(unsafe { self.siginfo().si_pid() })
            }
            _ => None,
        }
    }

    /// The faulting address of a fault the kernel raised (`SIGSEGV`, `SIGBUS`, `SIGILL`,
    /// `SIGFPE`, `SIGTRAP` with a positive [`code`](Self::code)); `None` for any other signal, or
    /// one sent by a process.
    pub fn fault_address(&self) -> Option<*mut c_void> {
        let fault = [
            Signal::SIGSEGV,
            Signal::SIGBUS,
            Signal::SIGILL,
            Signal::SIGFPE,
            Signal::SIGTRAP,
        ];
        if fault.contains(&self.signal) && self.code() > 0 {
            // SAFETY: for a kernel-raised fault signal the kernel fills in `si_addr`.
            Some(unsafe { self.siginfo().si_addr() })
        } else {
            None
        }
    }

    /// The raw `ucontext_t` pointer the kernel passed: the interrupted code's registers and
    /// signal mask. Valid until the handler returns; writing through it changes the state the
    /// interrupted code resumes with.
    pub fn ucontext(&self) -> *mut c_void {
        self.context
    }

    /// The address of the instruction the signal interrupted (its program counter): what a
    /// sampling profiler records. `None` on architectures this helper does not know yet
    /// (read [`ucontext`](Self::ucontext) there).
    pub fn interrupted_pc(&self) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        {
            if self.context.is_null() {
                return None;
            }
            // SAFETY: the kernel passes a valid `ucontext_t` to an `SA_SIGINFO` handler, valid
            // until it returns (`new`'s contract); `REG_RIP` indexes its general registers.
            let rip = unsafe {
                (*self.context.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RIP as usize]
            };
            Some(rip as usize)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    }
}

impl std::fmt::Debug for SignalInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalInfo")
            .field("signal", &self.signal)
            .field("code", &self.code())
            .field("sender_pid", &self.sender_pid())
            .field("fault_address", &self.fault_address())
            .field("interrupted_pc", &self.interrupted_pc())
            .finish()
    }
}
