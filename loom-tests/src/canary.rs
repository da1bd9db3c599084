//! The test object of the read and reclamation models.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use sigdrop::restricted;

/// An object whose contents a reader reads and whose destructor overwrites, counted.
pub struct Canary {
    value: UnsafeCell<u64>,
    drops: Arc<AtomicUsize>,
}

// SAFETY: shared access only reads the cell (`read`); the one write is in `Drop`, through
// `&mut self`. loom's cell reports any read that is not ordered before that write.
unsafe impl Sync for Canary {}

impl Canary {
    /// A canary holding `value`, counted in `drops` when destroyed.
    pub fn new(value: u64, drops: &Arc<AtomicUsize>) -> Self {
        Canary {
            value: UnsafeCell::new(value),
            drops: drops.clone(),
        }
    }

    /// Its value, read through a shared reference (what a reader does).
    pub fn read(&self) -> u64 {
        // SAFETY: shared reads only; the destructor's write is what loom checks against.
        self.value.with(|v| unsafe { *v })
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        assert!(
            !restricted::is_active(),
            "destructor ran in restricted context"
        );
        // SAFETY: the destructor has `&mut self`; loom checks that no reader's access races it.
        self.value.with_mut(|v| unsafe { *v = 0 });
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}
