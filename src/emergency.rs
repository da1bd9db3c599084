//! The emergency area: a bounded, preallocated place to park an object whose restricted teardown
//! found no idle job (defect D7 of the kernel v2 design, which ran the destructor inline in NMI).
//!
//! For an object that holds a claim this area is unreachable (the claim guarantees its job; see
//! `ledger.rs`), and the loom models check that. The one documented way in is an object without
//! a claim — the value an ordinary-context replace displaced (`Detached::is_reserved` is false) —
//! dropped in restricted context when no spare or reserved job is left. Otherwise the area exists
//! so that a bug, or an accounting fault injected by a test, degrades into a counted, bounded,
//! deferred destruction rather than a destructor run in a signal handler. If the area is full
//! too, the object is leaked and counted: leaking is the only thing left that is safe in
//! restricted context.
//!
//! Each cell is a small state machine on one atomic, so parking and emptying are lock-free:
//!
//! ```text
//!   FREE --park: CAS--> WRITING --store--> FULL --drain: CAS--> TAKING --store--> FREE
//! ```
//!
//! | operation | concurrent with park | with drain | restricted context |
//! |-----------|----------------------|------------|--------------------|
//! | `park`    | yes                  | yes        | yes (bounded scan of CASes) |
//! | `drain`   | yes                  | yes        | no need (drainer side) |

use crate::arena::Payload;
use crate::sync::{AtomicU32, AtomicUsize, Ordering, UnsafeCell};

const FREE: u32 = 0;
const WRITING: u32 = 1;
const FULL: u32 = 2;
const TAKING: u32 = 3;

struct Cell {
    state: AtomicU32,
    payload: UnsafeCell<Option<Parked>>,
}

/// A parked object, and whether it holds a claim on an idle job (to be credited back when it is
/// drained).
#[derive(Clone, Copy, Debug)]
pub struct Parked {
    /// The object and its destructor.
    pub payload: Payload,
    /// Whether the object holds a claim.
    pub claimed: bool,
}

/// A fixed number of cells for parked objects.
pub struct Emergency {
    cells: Box<[Cell]>,
    parked: AtomicUsize,
    /// Objects ever taken out by drainers (counted before `parked` goes down, so that
    /// `parked + unparked` never dips).
    unparked: AtomicUsize,
}

// SAFETY: a cell's payload is only touched by the party that moved its state to WRITING or
// TAKING, so sharing the area never races; payload objects are `Send` by the runtime's contract.
unsafe impl Send for Emergency {}
// SAFETY: as above.
unsafe impl Sync for Emergency {}

impl Emergency {
    /// An area with `capacity` cells, allocated now.
    pub fn new(capacity: usize) -> Self {
        Emergency {
            cells: (0..capacity)
                .map(|_| Cell {
                    state: AtomicU32::new(FREE),
                    payload: UnsafeCell::new(None),
                })
                .collect(),
            parked: AtomicUsize::new(0),
            unparked: AtomicUsize::new(0),
        }
    }

    /// Parks a payload; gives it back if every cell is in use. Async-signal-safe.
    pub fn park(&self, parked: Parked) -> Result<(), Parked> {
        for cell in self.cells.iter() {
            // Acquire: pairs with the Release that freed the cell, so the drainer's read of the
            // previous payload is done before we overwrite it.
            if cell
                .state
                .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                // SAFETY: the WRITING state is ours alone.
                cell.payload.with_mut(|p| unsafe { *p = Some(parked) });
                // Counted before the cell is FULL, so the count never dips below the number of
                // FULL cells (a drainer may take the cell the moment it is FULL). A drainer that
                // sees the count but not yet FULL skips the cell; the parker rings afterwards.
                // Relaxed: a filter count; the cell's state (Release below, Acquire in `drain`)
                // is what synchronises the payload.
                self.parked.fetch_add(1, Ordering::Relaxed);
                // Release: publishes the payload to the drainer's Acquire CAS. Load-bearing: the
                // doorbell's swaps order it only when the drainer's clear reads this parker's
                // ring (loom model `parked_objects_are_published_to_the_drainer`).
                cell.state.store(FULL, Ordering::Release);
                return Ok(());
            }
        }
        Err(parked)
    }

    /// Objects parked now (a snapshot).
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Relaxed)
    }

    /// Objects ever taken out by drainers (a snapshot; read it before `parked`).
    pub fn unparked(&self) -> usize {
        self.unparked.load(Ordering::Relaxed)
    }

    /// Takes every parked payload and hands each to `f`. Ordinary context.
    pub fn drain(&self, mut f: impl FnMut(Parked)) -> usize {
        // Relaxed: a filter; the CAS on each cell's state is what synchronises.
        if self.parked.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let mut taken = 0;
        for cell in self.cells.iter() {
            // Acquire: pairs with the Release store of FULL; we then own the payload.
            if cell
                .state
                .compare_exchange(FULL, TAKING, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                // SAFETY: the TAKING state is ours alone.
                let payload = cell.payload.with_mut(|p| unsafe { (*p).take() });
                // Release: pairs with the next parker's Acquire CAS (the same model reuses a
                // cell the drainer has just emptied).
                cell.state.store(FREE, Ordering::Release);
                self.unparked.fetch_add(1, Ordering::Relaxed);
                self.parked.fetch_sub(1, Ordering::Relaxed);
                if let Some(payload) = payload {
                    taken += 1;
                    f(payload);
                }
            }
        }
        taken
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    unsafe fn noop(_: *mut ()) {}

    #[test]
    fn parks_until_full_then_gives_back() {
        let area = Emergency::new(2);
        let p = |n: usize| Parked {
            payload: Payload {
                obj: n as *mut (),
                dtor: noop,
                grace: false,
            },
            claimed: true,
        };
        assert!(area.park(p(1)).is_ok());
        assert!(area.park(p(2)).is_ok());
        assert_eq!(area.park(p(3)).unwrap_err().payload.obj as usize, 3);
        assert_eq!(area.parked(), 2);
        let mut got = Vec::new();
        assert_eq!(area.drain(|p| got.push(p.payload.obj as usize)), 2);
        got.sort();
        assert_eq!(got, [1, 2]);
        assert_eq!(area.parked(), 0);
        assert!(area.park(p(4)).is_ok());
    }
}
