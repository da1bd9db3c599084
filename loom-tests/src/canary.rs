//! The shared test object of the runtime models: a destruction counter plus *plain memory*.
//!
//! Objects that hold only atomics cannot show whether the protocol publishes an object's
//! contents: every access to an atomic is race-free by definition. A [`Canary`] also holds a
//! loom `UnsafeCell` (a non-atomic word as far as loom is concerned). The thread that makes it
//! writes the word before it hands the object over; whoever takes the object may read it
//! ([`Canary::check`]) or, as its sole owner, write it again ([`Canary::rewrite`]); the
//! destructor reads it, checks it, and overwrites it. If any hand-over on the way (slot exchange
//! or take, job list, emergency area, drainer) were missing its happens-before edge, two of those
//! accesses would be unordered and loom would report a causality violation (a data race), so
//! every model that uses a `Canary` checks publication as well as exactly-once destruction.
//!
//! The read models give each canary a value of its own ([`Canary::with_value`]), so that a
//! reader can also say *which* object it borrowed ([`Canary::read`]).

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use sigdrop::{ReadSlot, Runtime, read, restricted};

/// The value a live canary's word holds.
pub const ALIVE: u64 = 0x5157_a11e;
/// What the destructor leaves behind (a use after it would read this).
pub const DEAD: u64 = 0xdead;

/// A counted object with one plain (non-atomic) word that loom checks for races: its value while
/// alive ([`ALIVE`] unless made [`with_value`](Canary::with_value)), [`DEAD`] once destroyed.
pub struct Canary {
    word: UnsafeCell<u64>,
    drops: Arc<AtomicUsize>,
}

// SAFETY: shared access only reads the word (`check`); the writes are by the sole owner
// (`rewrite`, under its contract, and `Drop`, through `&mut self`). loom's cell reports any pair
// of accesses that the protocol under test fails to order.
unsafe impl Sync for Canary {}

impl Canary {
    /// A canary whose word is written now, by the calling thread (before any hand-over).
    pub fn new(drops: &Arc<AtomicUsize>) -> Self {
        Canary::with_value(ALIVE, drops)
    }

    /// A canary whose word holds `value` (not [`DEAD`]), written now by the calling thread.
    pub fn with_value(value: u64, drops: &Arc<AtomicUsize>) -> Self {
        assert_ne!(value, DEAD);
        let canary = Canary {
            word: UnsafeCell::new(0),
            drops: drops.clone(),
        };
        // SAFETY: nobody else can reach the canary yet.
        canary.word.with_mut(|w| unsafe { *w = value });
        canary
    }

    /// A boxed canary, the usual slot content.
    pub fn boxed(drops: &Arc<AtomicUsize>) -> Box<Self> {
        Box::new(Canary::new(drops))
    }

    /// Reads the word and checks the object is alive: the reader must see the maker's write.
    pub fn check(&self) {
        self.read();
    }

    /// The canary's value, read through a shared reference (what a reader does); panics if the
    /// object is not alive.
    pub fn read(&self) -> u64 {
        // SAFETY: a read; loom checks it against every write.
        let word = self.word.with(|w| unsafe { *w });
        assert!(word != DEAD && word != 0, "read a canary that is not alive");
        word
    }

    /// Writes the word again, as the object's current sole owner would.
    ///
    /// # Safety
    /// The caller is the object's only holder (it took the object out of a slot and nobody else
    /// can reach it); loom then checks that the next owner's accesses happen after this write.
    pub unsafe fn rewrite(&self) {
        // SAFETY: the caller's contract; loom reports any access this races with.
        let word = self.word.with(|w| unsafe { *w });
        // SAFETY: as above.
        self.word.with_mut(|w| unsafe { *w = word });
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        assert!(
            !restricted::is_active(),
            "destructor ran in restricted context"
        );
        // SAFETY: `&mut self`; loom checks that the maker's and every owner's accesses happen
        // before these two.
        let word = self.word.with(|w| unsafe { *w });
        assert!(
            word != DEAD && word != 0,
            "destroyed a canary twice or before it was published"
        );
        // SAFETY: as above.
        self.word.with_mut(|w| unsafe { *w = DEAD });
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// A readable slot of `rt` holding canary 1 (the read models' starting point).
pub fn readable_slot_with_canary(
    rt: &Runtime,
    drops: &Arc<AtomicUsize>,
) -> Arc<ReadSlot<Box<Canary>>> {
    let slot = Arc::new(ReadSlot::new(rt));
    slot.xchg(Some(Box::new(Canary::with_value(1, drops))))
        .unwrap();
    slot
}

/// Spawns a reader that borrows `slot`'s canary under a read guard (in restricted context if
/// `in_handler`), reads it, and checks it saw canary 1 or 2, alive.
pub fn spawn_reader(
    slot: &Arc<ReadSlot<Box<Canary>>>,
    in_handler: bool,
) -> loom::thread::JoinHandle<()> {
    let slot = slot.clone();
    loom::thread::spawn(move || {
        let _restricted = in_handler.then(restricted::enter);
        let guard = read::enter();
        let seen = slot.load(&guard).map(Canary::read);
        assert!(matches!(seen, Some(1 | 2)), "read {seen:?}");
    })
}
