//! An object that counts its destructions, and separately those run in restricted context,
//! which sigdrop must never do: a test asserts the second stays 0. The counters are statics, so
//! a file whose tests run in parallel must not compare them across tests.

use sigdrop::restricted;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Destructions of [`Counted`] values.
pub static DESTROYED: AtomicUsize = AtomicUsize::new(0);
/// Destructions of [`Counted`] values that ran in restricted context (must stay 0).
pub static DESTROYED_IN_RESTRICTED: AtomicUsize = AtomicUsize::new(0);

/// A value whose drop is counted.
pub struct Counted;

impl Drop for Counted {
    fn drop(&mut self) {
        if restricted::is_active() {
            DESTROYED_IN_RESTRICTED.fetch_add(1, Ordering::SeqCst);
        }
        DESTROYED.fetch_add(1, Ordering::SeqCst);
    }
}
