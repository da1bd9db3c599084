//! What several groups build their rows from: chunk sizes, a runtime sized for a chunk, boxed
//! raw objects, and the public-API way to keep the pending flag set.

use sigdrop::{Drainer, RefSlot, Runtime, restricted};

/// Operations per timed chunk in the single-threaded groups.
pub const CHUNK: usize = 256;

/// A runtime without a drainer thread (drain is called between timed chunks, so the pending flag
/// stays set during them), sized for `claims` installs between two drains.
///
/// Its headroom is at least twice that: a burst of `claims` installs never takes the spare count
/// below the refill watermark (headroom / 2), and the drain that credits them back never lifts it
/// above the trim watermark (headroom + headroom / 2). So install, take, teardown and drain are
/// measured in steady state, and the pool neither grows nor trims between rounds. (With less, it
/// grows for the installs and trims from the draining thread every round, which moves jobs
/// between CPUs: see the two-thread group.)
pub fn manual_runtime(claims: usize) -> Runtime {
    Runtime::builder()
        .drainer(Drainer::Manual)
        .headroom(2 * claims + 16)
        .build()
        .expect("build a manual runtime")
}

/// `n` empty slots of `rt`.
pub fn slots<P: sigdrop::SlotPointer>(rt: &Runtime, n: usize) -> Vec<RefSlot<P>> {
    (0..n).map(|_| RefSlot::new(rt)).collect()
}

/// Installs a fresh `Box` into each of the first `n` slots (ordinary context).
pub fn fill(slots: &[RefSlot<Box<u64>>], n: usize) {
    for (i, s) in slots[..n].iter().enumerate() {
        let _ = s.xchg(Some(Box::new(i as u64))).expect("install");
    }
}

/// Clears the first `n` slots in restricted context, as a handler would.
pub fn clear_restricted<P: sigdrop::SlotPointer>(slots: &[RefSlot<P>], n: usize) {
    let _nmi = restricted::enter();
    for s in &slots[..n] {
        s.clear();
    }
}

/// # Safety
/// `p` came from `Box::<u64>::into_raw` and is owned by the caller.
pub unsafe fn drop_box_u64(p: *mut ()) {
    // SAFETY: the caller's contract.
    drop(unsafe { Box::from_raw(p.cast::<u64>()) });
}

/// A boxed `u64` as a raw pointer (for the v2 model).
pub fn boxed_raw(v: u64) -> *mut () {
    Box::into_raw(Box::new(v)).cast()
}

/// Leaves one job queued on this CPU's list with the pending flag set: after a drain (which clears
/// the flag and empties the lists) the next restricted teardown would ring; this one does, outside
/// the timed region, so every timed teardown finds the list non-empty and the flag set and takes
/// the path without a wake. (The flag is internal; this is the public-API way to set it.)
pub fn set_pending(sentinel: &RefSlot<Box<u64>>) {
    let _ = sentinel
        .xchg(Some(Box::new(0)))
        .expect("install the sentinel");
    let _nmi = restricted::enter();
    sentinel.clear();
}
