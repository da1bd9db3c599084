//! `Builder::build_global`: the process-wide runtime, and the `global()` slots bound to it,
//! with settings of the program's choosing, when built before its first use; refused after.
//! In a file of its own: the global runtime is the process's, and this must come first.

use sigdrop::{Drainer, Error, RefSlot, Runtime, restricted};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

static SLOT: RefSlot<Box<Counted>> = RefSlot::global();

#[test]
fn the_global_runtime_takes_the_settings_built_before_its_first_use() {
    let rt = Runtime::builder()
        .drainer(Drainer::Manual)
        .build_global()
        .unwrap();
    assert_eq!(Runtime::global().unwrap().id(), rt.id());

    // A global slot is bound to it: with a manual drainer, what a handler lets go of waits for
    // a drain of that runtime.
    let dropped = Arc::new(AtomicUsize::new(0));
    assert!(
        SLOT.xchg(Some(Box::new(Counted(dropped.clone()))))
            .unwrap()
            .is_none()
    );
    {
        let _nmi = restricted::enter();
        SLOT.clear();
    }
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        0,
        "no drainer thread ran it"
    );
    assert_eq!(rt.drain().unwrap(), 1);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);

    // Too late for a second one: refused, and the global runtime is unchanged.
    let again = Runtime::builder().build_global();
    assert!(matches!(again, Err(Error::GlobalExists)), "{again:?}");
    assert_eq!(Runtime::global().unwrap().id(), rt.id());
}
