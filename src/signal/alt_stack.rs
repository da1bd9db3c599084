//! [`AltStack`]: an alternate signal stack for the calling thread, so that a handler installed
//! with [`InstallOptions::on_alt_stack`](super::InstallOptions::on_alt_stack) still has a stack
//! to run on when the thread's own stack is exhausted (a stack overflow is a `SIGSEGV`).

use crate::error::Error;
use crate::restricted;
use std::marker::PhantomData;

/// An alternate signal stack installed for the calling thread (`sigaltstack`), in memory mapped
/// for it with an inaccessible guard page below, so that a handler that overflows it faults
/// instead of overwriting other memory.
///
/// Create it in ordinary context, on each thread that may take the signal (a thread's alternate
/// stack is its own; threads do not inherit it). Dropping it puts back the stack the thread had
/// before (for threads started by Rust's standard library, the small one it sets up to report
/// stack overflows) and unmaps the memory; [`keep`](AltStack::keep) leaves it installed for the
/// rest of the thread's life instead.
///
/// Not `Send`: it belongs to the thread it was installed on.
#[must_use = "dropping the alternate stack uninstalls it at once"]
#[derive(Debug)]
pub struct AltStack {
    /// The start of the mapping (the guard page).
    mapping: *mut libc::c_void,
    /// The mapping's length, guard page included.
    len: usize,
    previous: libc::stack_t,
    _this_thread: PhantomData<*mut ()>,
}

impl AltStack {
    /// A size that fits a handler doing sigdrop's restricted-context work plus a little
    /// formatting into a fixed buffer: 64 KiB.
    pub const DEFAULT_SIZE: usize = 64 * 1024;

    /// Maps a stack of at least `size` bytes (rounded up to whole pages, and to no less than the
    /// system's minimum for a signal stack) and installs it as the calling thread's alternate
    /// signal stack.
    ///
    /// Ordinary context only ([`Error::Restricted`] otherwise): not from a signal handler (it
    /// maps memory).
    pub fn install(size: usize) -> Result<AltStack, Error> {
        if restricted::is_active() {
            return Err(Error::Restricted);
        }
        let os = |call| Error::Os {
            call,
            source: std::io::Error::last_os_error(),
        };
        // SAFETY: `sysconf` and `getauxval` have no preconditions.
        let (page, kernel_min) = unsafe {
            (
                libc::sysconf(libc::_SC_PAGESIZE).max(4096) as usize,
                libc::getauxval(libc::AT_MINSIGSTKSZ) as usize,
            )
        };
        let min = libc::SIGSTKSZ.max(kernel_min);
        let stack_len = size.max(min).div_ceil(page) * page;
        let len = stack_len + page;
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let mapping = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if mapping == libc::MAP_FAILED {
            return Err(os("mmap"));
        }
        // The guard page: stacks grow down, so it is the lowest page.
        // SAFETY: the first page of the mapping just made.
        if unsafe { libc::mprotect(mapping, page, libc::PROT_NONE) } != 0 {
            let error = os("mprotect");
            // SAFETY: the mapping just made, not yet shared with anything.
            unsafe { libc::munmap(mapping, len) };
            return Err(error);
        }
        let stack = libc::stack_t {
            // SAFETY: `page` is within the mapping of `len` bytes.
            ss_sp: unsafe { mapping.cast::<u8>().add(page) }.cast(),
            ss_flags: 0,
            ss_size: stack_len,
        };
        // SAFETY: `stack_t` is plain data; filled in by `sigaltstack`.
        let mut previous: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers; the stack is mapped, writable, and owned by the value returned.
        if unsafe { libc::sigaltstack(&stack, &mut previous) } != 0 {
            let error = os("sigaltstack");
            // SAFETY: as above.
            unsafe { libc::munmap(mapping, len) };
            return Err(error);
        }
        Ok(AltStack {
            mapping,
            len,
            previous,
            _this_thread: PhantomData,
        })
    }

    /// Leaves the stack installed for the rest of the thread's life. Its memory is never
    /// returned (one mapping per thread that calls this). Ordinary context.
    pub fn keep(self) {
        std::mem::forget(self);
    }

    /// The usable size of the stack in bytes (the guard page excluded). May be called from a
    /// signal handler.
    pub fn size(&self) -> usize {
        self.len - self.guard_len()
    }

    fn stack_start(&self) -> *mut libc::c_void {
        // SAFETY: the guard page is within the mapping of `len` bytes.
        unsafe { self.mapping.cast::<u8>().add(self.guard_len()) }.cast()
    }

    fn guard_len(&self) -> usize {
        // SAFETY: `sysconf` has no preconditions.
        unsafe { libc::sysconf(libc::_SC_PAGESIZE).max(4096) as usize }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: `stack_t` is plain data; filled in by `sigaltstack`.
        let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: querying only.
        let queried = unsafe { libc::sigaltstack(std::ptr::null(), &mut current) } == 0;
        if !queried {
            return; // cannot tell whether it is in use: leave everything in place
        }
        if current.ss_sp == self.stack_start() {
            if current.ss_flags & libc::SS_ONSTACK != 0 {
                // Dropped by a handler running on this very stack: the memory cannot be taken
                // away from under it; leave everything in place.
                return;
            }
            // SAFETY: puts back the stack this thread had before `install` (still valid: it
            // belongs to whoever installed it, e.g. the standard library for the thread's life).
            unsafe { libc::sigaltstack(&self.previous, std::ptr::null_mut()) };
        }
        // SAFETY: the mapping made in `install`, not (or no longer) the thread's signal stack.
        unsafe { libc::munmap(self.mapping, self.len) };
    }
}
