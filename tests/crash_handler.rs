//! A crash handler installed through `sigdrop::signal`: `SIGSEGV` on an alternate signal stack,
//! told the faulting address. The "crash" is a read of a page mapped without access; the handler
//! records what it was told, then makes the page readable so that the read can complete.

use sigdrop::restricted;
use sigdrop::signal::{self, AltStack, InstallOptions, Signal, SignalInfo};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static FAULT_ADDRESS: AtomicUsize = AtomicUsize::new(0);
static ON_ALT_STACK: AtomicBool = AtomicBool::new(false);
static RESTRICTED: AtomicBool = AtomicBool::new(false);

fn on_segv(info: &SignalInfo) {
    let address = info.fault_address().map_or(0, |a| a as usize);
    FAULT_ADDRESS.store(address, Ordering::Relaxed);
    RESTRICTED.store(restricted::is_active(), Ordering::Relaxed);
    // SAFETY: `stack_t` is plain data; `sigaltstack` only queries here.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer; no new stack is set.
    unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
    ON_ALT_STACK.store(current.ss_flags & libc::SS_ONSTACK != 0, Ordering::Relaxed);
    let page = address & !4095;
    // SAFETY: the page the test mapped without access; making it readable lets the faulting read
    // complete when the handler returns (a test-only recovery: a real crash handler reports and
    // re-raises).
    unsafe { libc::mprotect(page as *mut libc::c_void, 4096, libc::PROT_READ) };
}

#[test]
fn a_segv_handler_runs_on_the_alternate_stack_and_sees_the_faulting_address() {
    // SAFETY: a fresh private anonymous mapping with no access.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED);
    let stack = AltStack::install(AltStack::DEFAULT_SIZE).unwrap();
    assert!(stack.size() >= AltStack::DEFAULT_SIZE);
    let options = InstallOptions::new().on_alt_stack(true);
    // SAFETY: `on_segv` touches atomics and makes system calls; the only SIGSEGV expected while
    // it is installed is the read below.
    let installed = unsafe { signal::install_with(Signal::SIGSEGV, on_segv, options) }.unwrap();
    // SAFETY: a read of the mapped page; it faults once, and the handler makes it readable.
    let value = unsafe { std::ptr::read_volatile(page.cast::<u8>().add(8)) };
    installed.uninstall().unwrap();
    drop(stack);
    assert_eq!(value, 0, "anonymous memory reads as zero");
    assert_eq!(FAULT_ADDRESS.load(Ordering::Relaxed), page as usize + 8);
    assert!(
        ON_ALT_STACK.load(Ordering::Relaxed),
        "ran on the alternate stack"
    );
    assert!(
        RESTRICTED.load(Ordering::Relaxed),
        "ran in restricted context"
    );
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(page, 4096) };
}
