//! Slots: [`Slot<P, A>`] for owned pointers with destructors (reserve-accounted) — a
//! [`RefSlot<P>`] that only writers use, or a [`ReadSlot<P>`] that readers may also borrow from
//! (`read_slot.rs`) — and `RawSlot<T>` for pointers without destructors (one atomic swap).
//!
//! Whether a slot is accounted, and whether it may be read, are properties of its *type*: the
//! kernel v2 design decided accounting per call site, and a stale flag made one site skip it for
//! pointers that needed it (D5). Here a `Slot` always accounts and a `RawSlot` never owns
//! anything, and only a `ReadSlot` pays for readers, so mixing any of them up is a compile error.
//!
//! ## Protocol
//!
//! The slot is one `AtomicPtr`. An object inside it owns one *claim* (see `ledger.rs`).
//!
//! - install into an empty slot: claim first, then CAS `null -> new` (so no object is ever
//!   visible without its claim);
//! - replace present -> present: CAS `old -> new`; the claim moves from the old object to the new
//!   one, so the common replace (ordinary context) is a single atomic operation. The old object
//!   comes back without a claim; it needs none to be destroyed inline, and claims one if it is
//!   deferred after all;
//! - replace in restricted context: the old object will have to be deferred from there, where
//!   no job can be grown, so a claim for it is taken (from reserved or spare jobs) *before* the
//!   CAS; if none is available the new value is refused and the slot is unchanged;
//! - take: swap with `null`; the claim leaves with the object, inside a [`Detached`] guard;
//! - install only into an empty slot (`try_install`): a first look refuses a full slot with no
//!   claim; otherwise claim, then CAS `null -> new` once: if another install got there first,
//!   the claim goes back and the value is refused (`Occupied`). It never displaces anything.
//!
//! The slot's runtime is looked up (and a global slot's created) only by an exchange that
//! claims or that finds the slot empty, so before any object goes in; a slot that holds one
//! therefore has a runtime, which the install's Release published. A take never looks it up,
//! and a replace in ordinary context only after its CAS, for the runtime's fork check; the
//! [`Detached`] guard looks it up when it needs it.
//!
//! If an install raced with a take and finds the slot empty, it claims and retries; if it claimed
//! and then finds the slot full again, its replace moves the old claim to the new object and its
//! own goes with the displaced one. Every loop iteration that fails does so because another
//! operation on the slot succeeded. A claim taken for an exchange that is then refused goes back
//! to the counter it came from (reserved or spare); once the exchange succeeds it belongs to an
//! object.
//!
//! A `ReadSlot` differs in one place (see `read_slot.rs`): the [`Detached`] it returns says that
//! readers may still borrow the object, so that its drop defers it past a grace period (in
//! ordinary context into a batch, which needs no job) and its `into_inner` waits for one.
//!
//! Orderings: every exchange that installs is Release (publishes the object and, through the
//! claim's Acquire, the freelist push that backs it); every exchange that removes is Acquire
//! (the new owner sees the object's contents and the push). Replace is both. Of the two things
//! carried, the object's contents are load-bearing (the loom models' canaries check them: kit
//! mutants 31-33); the push only lets the taker's pop find the job at its first sweep, which
//! `ledger.rs` explains and no model can tell from a retry.
//!
//! | operation        | concurrent with any other | restricted context                         |
//! |------------------|---------------------------|--------------------------------------------|
//! | `xchg(Some)`     | yes                       | yes; needs a reserved or spare job if the slot is empty |
//! | `try_install`    | yes                       | yes; needs a reserved or spare job; refused if full |
//! | `xchg(None)`, `take` | yes                   | yes; the value comes back in a [`Detached`] |
//! | `clear`, `Drop`  | yes                       | yes; the object is deferred to the drainer  |
//! | `is_empty`       | yes                       | yes                                         |

use crate::arena::Payload;
use crate::error::Error;
use crate::handle::Runtime;
use crate::nested;
use crate::pointer::SlotPointer;
use crate::read::{self, ReadGuard};
use crate::read_slot::{Access, Readable, WriteOnly};
use crate::rejected::Rejected;
use crate::restricted;
use crate::runtime::{Claim, Inner};
use crate::sync::{self, AtomicPtr, Ordering};
use std::fmt;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::sync::Arc;

/// A slot for an owned pointer with a destructor (`Box<T>`, `Arc<T>`, [`Raw<T, D>`](crate::Raw)) that may be
/// emptied from a signal handler. Used through its two aliases: [`RefSlot<P>`] (writers only)
/// and [`ReadSlot<P>`] (readers may borrow its object under a [`ReadGuard`](crate::read::ReadGuard)).
///
/// Every object in the slot owns a reserved job in its runtime (an [`Owned`](crate::Owned) box
/// needs none: its allocation carries it), so tearing it down in restricted context never
/// allocates and never runs its destructor there: the object goes to the drainer.
///
/// ```
/// use sigdrop::{Drainer, RefSlot, Runtime};
///
/// let rt = Runtime::builder().drainer(Drainer::Manual).build()?;
/// let slot = RefSlot::new(&rt);
/// assert!(slot.xchg(Some(Box::new(1u64))).unwrap().is_none()); // installed
/// let old = slot.xchg(Some(Box::new(2u64))).unwrap().unwrap(); // replaced
/// assert_eq!(*old, 1); // derefs to the object
/// assert_eq!(*old.into_inner().unwrap(), 1); // ordinary context: the Box itself
/// slot.clear(); // destroys the 2 inline (ordinary context, Policy::Auto)
/// # Ok::<(), sigdrop::Error>(())
/// ```
pub struct Slot<P: SlotPointer, A: Access> {
    pub(crate) core: SlotCore,
    /// We own a `P` (drop check, variance, and the auto traits: see `Owns`).
    _owns: PhantomData<(Owns<P>, A)>,
}

/// A slot without its types: the pointer and the runtime it accounts in. What a [`Detached`]
/// borrows, to find the runtime and, for a clone, to look at the slot again.
pub(crate) struct SlotCore {
    /// The object's `P::into_raw` pointer, or null.
    pub(crate) ptr: AtomicPtr<()>,
    /// The runtime the object's claim belongs to.
    runtime: Binding,
}

/// Which runtime a slot accounts in.
enum Binding {
    /// A handle of its own.
    Handle(Runtime),
    /// The process-wide runtime ([`Runtime::global`]), created the first time the slot needs it
    /// in ordinary context.
    #[cfg(not(loom))]
    Global,
}

impl Binding {
    /// The runtime, creating the process-wide one if this is its first use (ordinary context;
    /// in restricted context a global runtime that does not exist yet is an error).
    #[inline]
    fn get(&self) -> Result<&Runtime, Error> {
        match self {
            Binding::Handle(rt) => Ok(rt),
            #[cfg(not(loom))]
            Binding::Global => Runtime::global_or_init(),
        }
    }

    /// The runtime of a slot that holds, or held, an object: it exists, because the install
    /// that put the object there got it first (`get`), and publishing the object (Release)
    /// published the runtime too.
    #[inline]
    fn existing(&self) -> &Runtime {
        match self {
            Binding::Handle(rt) => rt,
            #[cfg(not(loom))]
            Binding::Global => Runtime::global_existing(),
        }
    }
}

impl SlotCore {
    /// The slot's pointer now, with the provenance `P::into_raw` gave it (not narrowed to a
    /// shared reference), loaded under `guard`: in a readable slot, an object seen here is not
    /// destroyed, nor the slot's reference to it released, before `guard` is dropped.
    #[inline]
    pub(crate) fn load_raw(&self, guard: &ReadGuard) -> *mut () {
        let _ = guard;
        // SeqCst: L in `read.rs`: after the guard's SeqCst increment, so that a grace period
        // either sees this reader or the object was never visible to this load (loom cannot
        // check this ordering, see `sync::model_seq_cst_fence`: do not weaken it). Also Acquire:
        // pairs with the Release exchange that installed the object, so its contents are seen.
        self.ptr.load(Ordering::SeqCst)
    }
}

/// A slot that only writers use: install, replace, take, clear (see [`Slot`]). Its exchanges
/// are the cheapest (an ordinary-context replace is one CAS).
pub type RefSlot<P> = Slot<P, WriteOnly>;

/// A slot whose object readers may also borrow, under a [`ReadGuard`](crate::read::ReadGuard),
/// from any context (see [`Slot`] and [`Slot::load`]).
pub type ReadSlot<P> = Slot<P, Readable>;

/// What a slot owns, for the auto traits: a `P`, so the slot is `Send` when `P` is, and `Sync`
/// when `P` is `Send` (not `Sync`): through `&Slot` a thread can only move the `P` out whole
/// (a take) or put one in; borrowing the object from another thread (`ReadSlot::load`) requires
/// `P::Target: Sync` where it is offered. Auto traits, not impls bounded by `SlotPointer`, so
/// that a type may hold a slot of boxes of itself (`struct Node { next: RefSlot<Box<Node>> }`):
/// the compiler accepts a cycle of auto-trait goals, not one through `SlotPointer`.
struct Owns<P>(PhantomData<P>);

// SAFETY: see `Owns`: shared access to a slot moves a `P` between threads, which `P: Send`
// allows, and never shares a `&P`.
unsafe impl<P: Send> Sync for Owns<P> {}

impl<P: SlotPointer> Slot<P, WriteOnly> {
    /// An empty slot whose objects are accounted in `runtime`. May be called from a signal
    /// handler (it clones the handle: one atomic increment).
    pub fn new(runtime: &Runtime) -> Self {
        Slot::empty(runtime)
    }
}

impl<P: SlotPointer, A: Access> Slot<P, A> {
    pub(crate) fn empty(runtime: &Runtime) -> Self {
        Slot {
            core: SlotCore {
                ptr: AtomicPtr::new(ptr::null_mut()),
                runtime: Binding::Handle(runtime.clone()),
            },
            _owns: PhantomData,
        }
    }

    /// An empty slot that accounts in the process-wide runtime ([`Runtime::global`]), which is
    /// created the first time the slot needs it: `const`, so the slot can be a `static`, with no
    /// `OnceLock` in front of it. May be called anywhere.
    ///
    /// Installing into it in a signal handler before the global runtime exists is refused with
    /// [`Error::GlobalUninitialized`] (creating a runtime allocates): call
    /// [`Runtime::global`], or install once, in ordinary context first — then reserve jobs for
    /// the handler's installs on that runtime as usual. Tearing it down in a handler never has
    /// that problem: a slot that holds an object got its runtime when the object went in.
    ///
    /// ```
    /// use sigdrop::{RefSlot, Runtime, restricted};
    ///
    /// static BUFFER: RefSlot<Box<Vec<u64>>> = RefSlot::global();
    ///
    /// extern "C" fn on_signal(_: libc::c_int) {
    ///     let _restricted = restricted::enter(); // or install with `sigdrop::signal`, which does this
    ///     BUFFER.clear(); // the Vec goes to the drainer
    /// }
    ///
    /// BUFFER.xchg(Some(Box::new(vec![0; 1024])))?; // creates the global runtime
    /// // SAFETY: `on_signal` only uses sigdrop's restricted-context paths on a static.
    /// unsafe { libc::signal(libc::SIGUSR2, on_signal as *const () as libc::sighandler_t) };
    /// // SAFETY: raising a signal whose handler is installed.
    /// unsafe { libc::raise(libc::SIGUSR2) };
    /// assert!(BUFFER.is_empty());
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub const fn global() -> Self {
        Slot {
            core: SlotCore {
                ptr: AtomicPtr::new(ptr::null_mut()),
                runtime: Binding::Global,
            },
            _owns: PhantomData,
        }
    }

    /// The runtime this slot accounts in. May be called from a signal handler. Fails only for a
    /// slot made with [`global`](Self::global) whose runtime does not exist yet, when asked in
    /// restricted context ([`Error::GlobalUninitialized`]) or when creating it fails; in
    /// ordinary context it creates it.
    pub fn runtime(&self) -> Result<&Runtime, Error> {
        self.core.runtime.get()
    }

    /// Whether the slot is empty now. May be called from a signal handler.
    pub fn is_empty(&self) -> bool {
        // Relaxed: a snapshot; the pointer is not dereferenced.
        self.core.ptr.load(Ordering::Relaxed).is_null()
    }

    /// Exchanges the slot's content. `Some(new)` installs `new`, `None` empties the slot.
    ///
    /// Returns the previous object, if any, in a [`Detached`] guard. Returns `Err` with the new
    /// value, untouched, and the slot unchanged, if a job was needed and could not be had
    /// (nothing is lost): in restricted context when no job is reserved or spare
    /// ([`Error::NoSpareJob`]), in ordinary context when growing failed
    /// ([`Error::OutOfMemory`], [`Error::CapacityExceeded`]).
    ///
    /// When a job is needed (never for an [`Owned`](crate::Owned) box, which carries its own
    /// way to the drainer: a slot of them never refuses):
    /// - installing into an empty slot needs one, in any context. In ordinary context, if no
    ///   job is spare because objects wait for destruction holding theirs (more than
    ///   [`Builder::max_pending`](crate::Builder::max_pending)), the install first waits for
    ///   the drainer thread (with a manual drainer, drains) rather than grow the pool;
    /// - replacing a present object in ordinary context needs none: the old object's job moves
    ///   to the new one, so the replace is a single CAS. The old object comes back
    ///   *unreserved* ([`Detached::is_reserved`] is false): dropping it in ordinary context needs
    ///   no job; if you mean to let it reach a signal handler, call [`Detached::reserve`] first.
    ///   (Dropped in restricted context without one, it is deferred with a spare or reserved job
    ///   if there is one, else parked in the emergency area, else leaked — and counted.)
    /// - replacing in restricted context needs one, for the old object that will be deferred
    ///   from there.
    ///
    /// May be called from a signal handler. There it never allocates: it uses a job reserved
    /// with [`Runtime::reserve`] (or a spare one).
    #[inline(always)]
    pub fn xchg(&self, new: Option<P>) -> Result<Option<Detached<'_, P>>, Rejected<P>> {
        match new {
            None => Ok(self.take()),
            Some(new) => self.exchange(new, None),
        }
    }

    /// Puts `new` in the slot and returns the previous object, if any: `xchg(Some(new))`, named
    /// like [`Option::replace`] and [`std::mem::replace`]. Everything [`xchg`](Self::xchg) says
    /// holds, including when it may be called from a signal handler.
    ///
    /// Why both names: `xchg` is the one operation behind install, replace and take (the
    /// kernel's exchange, and `RawSlot::xchg`'s twin), and takes an `Option`; `replace` and
    /// [`take`](Self::take) are the two halves most code wants, under the names Rust's own types
    /// use. (`swap` is left out: arc-swap's and crossbeam's `swap` return the old value as
    /// plainly as `replace` does here, but in `std`, `swap` exchanges two places.)
    #[inline(always)]
    pub fn replace(&self, new: P) -> Result<Option<Detached<'_, P>>, Rejected<P>> {
        self.exchange(new, None)
    }

    /// [`xchg`](Self::xchg) with a value; `claim` is one the caller already took (a map insert
    /// claims before it locks its bucket), which the exchange uses (empty slot) or hands to the
    /// displaced object (full slot), so it never claims again. A claim of its own is taken only
    /// when needed; once the CAS succeeds the claim is spent (it belongs to an object), and on
    /// every refusal an unspent claim is dropped, which gives it back to the counter it came
    /// from.
    #[inline(always)]
    pub(crate) fn exchange(
        &self,
        new: P,
        claim: Option<Claim<'_>>,
    ) -> Result<Option<Detached<'_, P>>, Rejected<P>> {
        // A self-deferring pointer (`Owned`) needs no job in any context: a slot of them holds
        // no claims, and callers never claim for one.
        debug_assert!(!(P::SELF_DEFERRING && claim.is_some()));
        // A caller's claim came from the slot's own runtime, which it holds: only map slots
        // claim first, and they are bound to a handle (a global slot must look its runtime up,
        // below, before anything goes in).
        debug_assert!(claim.is_none() || matches!(self.core.runtime, Binding::Handle(_)));
        // In restricted context the object we may displace needs a job of its own to be
        // deferred with, so a claim is taken even for a replace. In ordinary context a replace
        // moves the old object's claim to the new one and takes none: one CAS, and no claim or
        // guard state from the runtime (the old object's guard looks it up when it needs it).
        // (A readable slot's displaced object is retired into a batch there, which needs no
        // job.)
        let claim_always = restricted::is_active();
        let raw = new.into_raw().as_ptr();
        // Relaxed: the value is only compared, never dereferenced; the CAS validates it.
        let mut cur = self.core.ptr.load(Ordering::Relaxed);
        if claim.is_none() && !claim_always && !cur.is_null() {
            // An ordinary replace of a full slot, the common case, on a path of its own that
            // carries no claim: the displaced object's claim stays with the new one. It makes
            // the runtime's fork check (in a child after `fork`, this first use restarts its
            // drainer), which every other exchange makes when it looks the runtime up: before
            // the CAS for a slot bound to a handle, so that its loads overlap the slot's; after
            // it for a global slot, whose runtime is known to exist only once a CAS has read the
            // object it displaced (whose install looked the runtime up first).
            let handle = match &self.core.runtime {
                Binding::Handle(runtime) => {
                    let _ = runtime.inner();
                    true
                }
                #[cfg(not(loom))]
                Binding::Global => false,
            };
            while let Some(old) = NonNull::new(cur) {
                // Orderings as in `exchange_claiming`.
                match self
                    .core
                    .ptr
                    .compare_exchange(cur, raw, Ordering::AcqRel, Ordering::Relaxed)
                {
                    Ok(_) => {
                        if !handle {
                            let _ = self.core.runtime.existing().inner();
                        }
                        return Ok(Some(self.detached(old, false)));
                    }
                    Err(actual) => cur = actual,
                }
            }
        }
        // SAFETY: `raw` came from `into_raw` of `new` just above and was never shared (every
        // CAS that could have published it failed).
        unsafe { self.exchange_claiming(raw, claim, cur, claim_always) }
    }

    /// [`exchange`](Self::exchange) from its first look at the slot (`cur`), for every case
    /// that may need a claim: an empty slot, restricted context, or a claim the caller took.
    /// `claim_always`: whether this thread is in restricted context (the caller just looked).
    ///
    /// # Safety
    /// `raw` came from `P::into_raw` and was never shared: the caller gives it up.
    #[inline(always)]
    unsafe fn exchange_claiming<'s: 'c, 'c>(
        &'s self,
        raw: *mut (),
        mut claim: Option<Claim<'c>>,
        mut cur: *mut (),
        claim_always: bool,
    ) -> Result<Option<Detached<'s, P>>, Rejected<P>> {
        loop {
            // The runtime is looked up (created, for a global slot's first install) before
            // anything can go into an empty slot, so a slot that holds an object has one: a
            // later exchange's Acquire, or a take's, reads it through the Release below.
            if (cur.is_null() || claim_always) && claim.is_none() {
                // A refusal keeps the runtime, if there is one, to hand the value to if it is
                // dropped in restricted context (`rejected.rs`).
                let claimed = match self.core.runtime.get() {
                    Ok(runtime) if !P::SELF_DEFERRING => runtime
                        .inner()
                        .claim_for_install_in(claim_always)
                        .map(Some)
                        .map_err(|error| (error, Some(runtime))),
                    Ok(_) => Ok(None),
                    Err(error) => Err((error, None)),
                };
                match claimed {
                    Ok(got) => claim = got,
                    Err((error, runtime)) => {
                        // SAFETY: `raw` is ours and unshared (contract, and every CAS that
                        // could have published it failed).
                        let value = unsafe { P::from_raw(NonNull::new_unchecked(raw)) };
                        return Err(Rejected::new(value, error, runtime));
                    }
                }
            }
            // AcqRel on success: Release publishes the new object (and its claim's history);
            // Acquire makes us the owner of the previous object's contents.
            // Relaxed on failure: the value read is only compared.
            match self
                .core
                .ptr
                .compare_exchange(cur, raw, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(prev) => {
                    if claim.is_none() && !claim_always {
                        // An ordinary exchange that claimed nothing (an owned box, which
                        // needs no claim, into a slot found empty) made no fork check: make it,
                        // as above. The runtime exists: the slot held `prev`, or this call
                        // looked it up.
                        let _ = self.core.runtime.existing().inner();
                    }
                    // Installed: a claim we hold is spent, on the new object (empty slot) or on
                    // the displaced one (restricted context, or a race with a take).
                    let claimed = claim.map(Claim::spend).is_some();
                    // The previous object's claim now belongs to the new one; if we claimed,
                    // ours goes with the old.
                    return Ok(NonNull::new(prev).map(|prev| self.detached(prev, claimed)));
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Puts `new` in the slot if it is empty; if the slot holds an object, leaves it there and
    /// hands `new` back with [`Error::Occupied`]. What [`replace`](Self::replace) would displace
    /// stays where it is: a handler can pass a value to a thread that takes it out of the slot,
    /// without dropping one that thread has not taken yet.
    ///
    /// Like an install into an empty slot it needs a job (none for an
    /// [`Owned`](crate::Owned) box), so it may be refused for want of one as
    /// [`xchg`](Self::xchg) says; a refusal for any reason gives the job back. One load, and when
    /// the slot is empty a claim and one compare-and-swap.
    ///
    /// May be called from a signal handler. There it never allocates: it uses a job reserved
    /// with [`Runtime::reserve`] (or a spare one).
    ///
    /// ```
    /// use sigdrop::{Error, RefSlot, Runtime};
    ///
    /// let rt = Runtime::new()?;
    /// let full: RefSlot<Box<[u64; 4]>> = RefSlot::new(&rt);
    /// full.try_install(Box::new([1; 4]))?;
    /// let refused = full.try_install(Box::new([2; 4])).unwrap_err();
    /// assert!(matches!(refused.error(), Error::Occupied));
    /// assert_eq!(refused.into_inner()[0], 2); // handed back; the slot still holds the first
    /// assert_eq!(full.take().unwrap()[0], 1);
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    pub fn try_install(&self, new: P) -> Result<(), Rejected<P>> {
        // Relaxed: a first look, to refuse without a claim; the CAS below decides.
        if !self.core.ptr.load(Ordering::Relaxed).is_null() {
            return Err(Rejected::new(
                new,
                Error::Occupied,
                self.core.runtime.get().ok(),
            ));
        }
        // The runtime first, as for any install into an empty slot (`exchange`): its fork
        // check, and for a global slot its creation, before anything can go in.
        let runtime = match self.core.runtime.get() {
            Ok(runtime) => runtime,
            Err(error) => return Err(Rejected::new(new, error, None)),
        };
        let inner = runtime.inner();
        let claim = match P::SELF_DEFERRING {
            true => None,
            false => match inner.claim_for_install() {
                Ok(claim) => Some(claim),
                Err(error) => return Err(Rejected::new(new, error, Some(runtime))),
            },
        };
        let raw = new.into_raw().as_ptr();
        // AcqRel on success, as in `exchange`: Release publishes the object (and the runtime
        // lookup above) to whoever takes it (Acquire). Relaxed on failure: we only learn that
        // the slot is occupied.
        match self.core.ptr.compare_exchange(
            ptr::null_mut(),
            raw,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => {
                // Spent on the object now in the slot.
                if let Some(claim) = claim {
                    claim.spend();
                }
                Ok(())
            }
            Err(_) => {
                // Dropped unspent: the claim goes back to the counter it came from.
                drop(claim);
                // SAFETY: `raw` came from `into_raw` of `new` just above and was never shared
                // (the CAS that would have published it failed).
                let value = unsafe { P::from_raw(NonNull::new_unchecked(raw)) };
                Err(Rejected::new(value, Error::Occupied, Some(runtime)))
            }
        }
    }

    /// Empties the slot, returning its object (with its claim) in a [`Detached`] guard. One
    /// atomic swap. May be called from a signal handler.
    #[inline]
    pub fn take(&self) -> Option<Detached<'_, P>> {
        // Acquire: we become the owner of the object and must see its contents.
        let prev = self.core.ptr.swap(ptr::null_mut(), Ordering::Acquire);
        // The claim leaves with the object (a self-deferring one has none).
        NonNull::new(prev).map(|p| self.detached(p, !P::SELF_DEFERRING))
    }

    /// Empties the slot and destroys its object: inline in ordinary context under
    /// [`Policy::Auto`](crate::Policy::Auto) (but a [`ReadSlot`]'s object, which readers may
    /// still borrow, is retired and destroyed once they are gone), on the drainer otherwise.
    /// May be called from a signal handler (then it defers).
    #[inline]
    pub fn clear(&self) {
        drop(self.take());
    }

    /// The guard for `ptr`, which the caller's successful exchange removed from the slot, so
    /// the caller owns it (it came from `into_raw` of a `P` with this slot's destructor) and
    /// gives it up to the guard. It stays a raw pointer: in a readable slot, readers may still
    /// borrow the object, and rebuilding a `Box` now would assert a uniqueness they contradict.
    ///
    /// The guard looks the runtime up only when it needs it (a replace's guard unwrapped in
    /// ordinary context never does): the slot held the object, so its runtime exists.
    #[inline(always)]
    fn detached(&self, ptr: NonNull<()>, claimed: bool) -> Detached<'_, P> {
        Detached {
            ptr,
            slot: &self.core,
            claimed,
            readers: A::READABLE,
            cloned: false,
            _owns: PhantomData,
        }
    }
}

impl<P: SlotPointer, A: Access> Drop for Slot<P, A> {
    /// Destroys the object in the slot, as [`clear`](Slot::clear) does, except that a
    /// [`ReadSlot`]'s object needs no grace period here: every reference `load` gave out
    /// borrows the slot, and `&mut self` means no borrow of the slot is left. (Whoever drops a
    /// slot that readers reached by other means — inside an object retired from another
    /// readable slot, say — waited for those readers first: that is what gave it `&mut`.) So a
    /// chain of objects that each hold the next in a `ReadSlot` is torn down at once, not a
    /// grace period per link.
    fn drop(&mut self) {
        if let Some(mut detached) = self.take() {
            detached.readers = false;
            drop(detached);
        }
    }
}

impl<P: SlotPointer, A: Access> fmt::Debug for Slot<P, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(if A::READABLE { "ReadSlot" } else { "RefSlot" })
            .field("empty", &self.is_empty())
            .finish_non_exhaustive()
    }
}

/// An object that left a [`Slot`] (taken, or displaced by an exchange), usually still holding
/// its reserved job; or a new reference cloned from a [`ReadSlot`]
/// ([`clone_current`](Slot::clone_current)).
///
/// It derefs to the object (`&T` for a `Box<T>` or an `Arc<T>`), in any context, for as long as
/// it lives; never mutably, because readers of a [`ReadSlot`] may still share the object.
/// What dropping it does depends on where: in
/// restricted context the object goes to the drainer with its job — no allocation, no
/// destructor; in ordinary context the job is released and, under
/// [`Policy::Auto`](crate::Policy::Auto), the destructor runs inline — except for an object that
/// left a [`ReadSlot`]: readers may still borrow it, so it is retired into a batch and destroyed
/// once no read guard that could have seen it is alive (by the drainer, or by this thread when it
/// next fills a batch). Under [`Policy::AlwaysDefer`](crate::Policy::AlwaysDefer) every object is
/// retired that way in ordinary context.
/// [`into_inner`](Detached::into_inner) unwraps it in ordinary context (for an object that left
/// a [`ReadSlot`], once the readers are gone); [`Detached::clone_arc`] takes a new reference to
/// an `Arc` without unwrapping.
///
/// The guard holds the object as the raw pointer the slot held, and rebuilds the owning pointer
/// (the `Box`, the `Arc`) only where no reader can borrow the object any more (see
/// [Aliasing](crate#aliasing)).
///
/// ```
/// use sigdrop::{Drainer, ReadSlot, Runtime, read};
///
/// let rt = Runtime::builder().drainer(Drainer::Manual).build()?;
/// let slot = ReadSlot::new(&rt);
/// slot.xchg(Some(Box::new(vec![1u8, 2])))?;
/// let guard = read::enter();
/// let seen: &Vec<u8> = slot.load(&guard).unwrap();
/// let old = slot.take().unwrap();
/// assert_eq!(old.len(), 2); // derefs to the Vec, which the reader shares
/// assert_eq!(seen.len(), 2);
/// drop(guard);
/// let vec: Box<Vec<u8>> = old.into_inner().unwrap(); // after a grace period
/// # drop(vec);
/// # Ok::<(), sigdrop::Error>(())
/// ```
///
/// No `&mut` to an object readers may share, not even after taking it out of the slot (unwrap
/// it with [`into_inner`](Detached::into_inner) first):
///
/// ```compile_fail,E0596
/// use sigdrop::{ReadSlot, Runtime};
/// let rt = Runtime::new().unwrap();
/// let slot: ReadSlot<Box<Vec<u8>>> = ReadSlot::new(&rt);
/// slot.xchg(Some(Box::new(Vec::new()))).unwrap();
/// let mut old = slot.take().unwrap();
/// old.push(1); // error: `Detached` does not deref mutably
/// ```
///
/// Nor a borrow of the owning pointer itself, which would stand for a unique `Box` while readers
/// share its object:
///
/// ```compile_fail,E0308
/// use sigdrop::{ReadSlot, Runtime};
/// let rt = Runtime::new().unwrap();
/// let slot: ReadSlot<Box<u32>> = ReadSlot::new(&rt);
/// slot.xchg(Some(Box::new(7))).unwrap();
/// let old = slot.take().unwrap();
/// let _: &Box<u32> = &*old; // error: it derefs to the `u32`
/// ```
#[must_use = "dropping a Detached destroys (or defers) the object"]
pub struct Detached<'a, P: SlotPointer> {
    /// The object, as `P::into_raw` gave it up (with that pointer's provenance), owned by this
    /// guard. Not rebuilt as a `P` while readers may borrow the object: rebuilding a `Box`
    /// asserts uniqueness over its target, which a reader's `&T` contradicts.
    ptr: NonNull<()>,
    /// The slot it left (or was cloned from), whose runtime exists (the slot held the object)
    /// and is looked up when the guard needs it ([`inner`](Self::inner)).
    slot: &'a SlotCore,
    /// Whether the object holds a claim on an idle job. A take, or any exchange in restricted
    /// context, hands one out; an ordinary-context replace does not (the claim stayed in the slot
    /// with the new object), and dropping such a value under deferral claims one then.
    claimed: bool,
    /// Whether readers may still borrow the object (it left a readable slot): it is then
    /// destroyed only after a grace period, and rebuilt as a `P` only after one.
    readers: bool,
    /// Whether this is a reference `clone_current` took from a readable slot (an `Arc`'s): while
    /// that slot still holds the same object, the slot's own reference outlives any read guard
    /// that sees it there, so under such a guard dropping this one is never the last decrement.
    cloned: bool,
    /// We own a `P` (drop check, variance).
    _owns: PhantomData<P>,
}

// SAFETY: a `Detached` owns one `P` (held as its raw pointer) and borrows its slot's pointer
// and binding to a runtime; sending it sends the `P` (`SlotPointer: Send`) and a `&SlotCore`
// (`SlotCore: Sync`, asserted below: an atomic pointer and a binding).
unsafe impl<P: SlotPointer> Send for Detached<'_, P> {}
// SAFETY: through `&Detached` another thread gets only `&P::Target` (`Deref`, `Debug`; hence the
// bound), copies of the flags, and, for an `Arc<T>`, a new strong reference (`clone_arc`,
// sound on any thread because `Arc<T>` is a `SlotPointer` only for `T: Send + Sync`).
unsafe impl<P: SlotPointer> Sync for Detached<'_, P> where P::Target: Sync {}

/// `Send for Detached` sends a `&SlotCore`.
const _: fn() = || {
    fn sync<T: Sync>() {}
    sync::<SlotCore>();
};

impl<'a, P: SlotPointer> Detached<'a, P> {
    /// A new owned reference that no reader borrows through, cloned from the object in `slot`
    /// (`clone_current`), holding no claim.
    ///
    /// # Safety
    /// `ptr` came from `P::into_raw` and the caller gives that ownership up to the guard; `P`
    /// shares its target (an `Arc`), so rebuilding it while readers borrow the target asserts no
    /// uniqueness, and dropping it while another reference exists only decrements a count.
    /// `ptr` was loaded from `slot`, a readable slot, whose own reference to an object is
    /// released only after a grace period.
    pub(crate) unsafe fn cloned(ptr: NonNull<()>, slot: &'a Slot<P, Readable>) -> Self {
        Detached {
            ptr,
            slot: &slot.core,
            claimed: false,
            readers: false,
            cloned: true,
            _owns: PhantomData,
        }
    }

    /// The runtime state of the slot the object left, fork check included.
    #[inline(always)]
    fn inner(&self) -> &'a Inner {
        self.slot.runtime.existing().inner()
    }

    /// Hands the object to the drainer from restricted context; `claimed` says whether this
    /// guard holds a claim, which then travels with it into the job. The object is always
    /// taken (at worst parked or leaked, counted), so this gives `ptr` up: only `drop` calls
    /// it, as its last use of the guard.
    #[inline(always)]
    fn defer_in_restricted(&self, claimed: bool) {
        let payload = Payload {
            obj: self.ptr.as_ptr(),
            dtor: P::DESTRUCTOR,
            grace: self.readers,
        };
        let kept = self
            .slot
            .runtime
            .existing()
            .inner_in_restricted()
            .defer(payload, claimed);
        debug_assert!(kept.is_none());
    }

    /// [`drop`](Drop::drop) in restricted context, for an object without a claim (out of line:
    /// taken objects and those every restricted exchange displaces hold one): a clone's
    /// reference is a plain decrement while its slot keeps the object; anything else is
    /// deferred with whatever job can be found.
    #[cold]
    #[inline(never)]
    fn drop_unclaimed_in_restricted(&self) {
        if self.cloned && self.release_clone_while_installed() {
            // Not the last reference: no job needed, none spent.
            return;
        }
        self.defer_in_restricted(false);
    }

    /// Drops a clone's reference in restricted context with no job, if that is sure not to be
    /// the last one: under a read guard, the slot it was cloned from still holds the object, so
    /// the slot's reference is released only after a grace period that waits for the guard.
    /// (If the object was installed again since the clone, the reference alive is the new
    /// install's: any install's will do.) Whether it did; if not, the reference is still owned.
    #[inline]
    fn release_clone_while_installed(&self) -> bool {
        debug_assert!(self.cloned && !self.readers);
        let guard = read::enter();
        if self.slot.load_raw(&guard) != self.ptr.as_ptr() {
            return false;
        }
        // (Models may run another thread here: loom does not see the count.)
        sync::model_switch_point();
        // `ptr` came from `P::into_raw` and this guard owns it (a clone's, an `Arc`'s: `cloned`'s
        // contract); the slot's reference to the same object is alive until `guard` drops
        // (above). The caller gives `ptr` up if this returns true.
        // SAFETY: so rebuilding and dropping ours is a decrement that cannot reach zero.
        drop(unsafe { P::from_raw(self.ptr) });
        drop(guard);
        true
    }

    /// Whether this value holds a reserved job, so that dropping it in restricted context is
    /// guaranteed to defer it without a fallback. True for values taken out of a slot and for
    /// every value that left a slot in restricted context; false for the value an
    /// ordinary-context replace displaced (see [`Slot::xchg`]) and for a clone from
    /// [`clone_current`](Slot::clone_current) (which needs a job only if it is dropped in a
    /// signal handler after its object has left the slot). May be called anywhere.
    pub fn is_reserved(&self) -> bool {
        // A self-deferring pointer ([`Owned`](crate::Owned)) needs no job at all.
        self.claimed || P::SELF_DEFERRING
    }

    /// Reserves a job for this value if it has none, so that it can later be dropped in
    /// restricted context (moved into a signal handler's reach) with the same guarantee as a
    /// taken value. In ordinary context this may grow the pool; in restricted context it uses a
    /// spare job, else a reserved one (those are promised to installs: see
    /// [`Runtime::reserve`]), else fails with [`Error::NoSpareJob`]. On failure the value is
    /// unchanged and the error says why. May be called from a signal handler.
    pub fn reserve(&mut self) -> Result<(), Error> {
        if !self.claimed && !P::SELF_DEFERRING {
            self.inner().claim_for_value()?.spend();
            self.claimed = true;
        }
        Ok(())
    }

    /// The object itself, releasing its reserved job. Ordinary context: in restricted context
    /// this is refused and the guard comes back (a bare `P` dropped in a handler would run its
    /// destructor there), so it is harmless to call from a signal handler. The exception is an
    /// [`Owned`](crate::Owned) box from a [`RefSlot`]: it defers itself wherever it is dropped,
    /// so a handler gets it back (to fill it, or to move it into another slot).
    ///
    /// For an object that left a [`ReadSlot`] it first waits for a grace period
    /// ([`read::synchronize`](crate::read::synchronize)), after which no reader borrows it; it
    /// is refused, and the guard comes back, if this thread holds a read guard (it would wait
    /// for itself). An object from a [`RefSlot`], or a reference from
    /// [`clone_current`](Slot::clone_current), comes back at once.
    #[inline(always)]
    pub fn into_inner(self) -> Result<P, Self> {
        // An owned box from a write-only slot defers itself: a handler may have it back.
        if restricted::is_active() && (self.readers || !P::SELF_DEFERRING) {
            return Err(self);
        }
        if self.readers && crate::read::synchronize().is_err() {
            return Err(self);
        }
        let this = ManuallyDrop::new(self);
        // Nobody can borrow the object any more, or it does not matter: `readers` was false (the
        // object left a write-only slot, which nobody reads, or this is a fresh reference from
        // `clone_current`, an `Arc`, whose rebuild asserts no uniqueness), or `synchronize` has
        // just returned, and it waits for every read guard that could have loaded the pointer
        // from the slot before its removal (`read.rs`), and readers' borrows end with their
        // guards. The only other borrows went through `Deref`, and `self` is moved here.
        // SAFETY: `ptr` came from `P::into_raw` and this guard owns it; `this` is never
        // dropped, so the pointer is given up exactly once, here, while no reader borrows its
        // target (above).
        let value = unsafe { P::from_raw(this.ptr) };
        if this.claimed {
            this.inner().release_claim();
        }
        Ok(value)
    }
}

impl<T: Send + Sync + 'static> Detached<'_, Arc<T>> {
    /// A new strong reference to the `Arc` this guard holds (one atomic increment), leaving the
    /// guard as it is: what `Arc::clone(&detached)` would give if `Detached` dereferenced to the
    /// `Arc` (it dereferences to the `T`). In any context, readers or not, and without waiting
    /// for a grace period: an `Arc` is shared, so nobody is disturbed.
    ///
    /// May be called from a signal handler; but dropping the `Arc` there may run `T`'s
    /// destructor, so keep it or put it in a slot (whose teardown defers it). A handler that
    /// only needs the object for a while should keep the `Detached` itself instead: dropped
    /// there, it is deferred (or, for a clone whose object is still in its slot, a plain
    /// decrement), never destroyed in the handler.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sigdrop::{ReadSlot, Runtime};
    ///
    /// let rt = Runtime::new()?;
    /// let slot: ReadSlot<Arc<String>> = ReadSlot::new(&rt);
    /// slot.xchg(Some(Arc::new("v1".into())))?;
    /// let old = slot.xchg(Some(Arc::new("v2".into()))).unwrap().unwrap();
    /// let mine: Arc<String> = old.clone_arc();
    /// drop(old); // the slot's reference goes to the drainer
    /// assert_eq!(*mine, "v1");
    /// # Ok::<(), sigdrop::Error>(())
    /// ```
    pub fn clone_arc(&self) -> Arc<T> {
        let ptr = self.ptr.as_ptr().cast_const().cast::<T>();
        // `ptr` is an `Arc::into_raw` pointer (with its provenance) whose strong reference this
        // guard owns, so the count stays above zero while `&self` lives; building an `Arc` from
        // it makes no unique claim on the `T` that readers may share.
        // SAFETY: a live `Arc::into_raw` pointer whose count this guard keeps above zero; the
        // increment makes the reference `from_raw` takes ours, not the guard's.
        unsafe {
            Arc::increment_strong_count(ptr);
            Arc::from_raw(ptr)
        }
    }
}

impl<P: SlotPointer> Deref for Detached<'_, P> {
    type Target = P::Target;
    /// The object, borrowed from the guard. May be called from a signal handler.
    fn deref(&self) -> &P::Target {
        // A shared borrow through the pointer the slot held (no owning pointer is rebuilt): it
        // coexists with readers' shared borrows of the same object under Stacked and Tree
        // Borrows, and nobody holds, or can get, `&mut` to the object while the guard owns it
        // (readers and other `Arc`s only share it; the guard has no `DerefMut`).
        // `ptr` came from `P::into_raw` and this guard owns it, so it points to a valid
        // `P::Target` that shared references may read until its destructor runs
        // (`SlotPointer`'s contract); the guard gives the pointer up only in `drop` and
        // `into_inner`, which the borrow of `self` excludes for the reference's lifetime.
        // SAFETY: a live object this guard owns, borrowed shared for no longer than `&self`.
        unsafe { self.ptr.cast::<P::Target>().as_ref() }
    }
}

impl<P: SlotPointer> Drop for Detached<'_, P> {
    #[inline]
    fn drop(&mut self) {
        // `drop` runs once and `into_inner` (the other way out) forgets the guard, so every
        // branch below gives `ptr` up exactly once. None rebuilds a `P` while readers may borrow
        // the object: those go on as the raw pointer, and their destructor function rebuilds
        // the `P` after the grace period.
        let obj = self.ptr;
        if restricted::is_active() {
            if P::SELF_DEFERRING {
                // Its own node carries it (`owned.rs`): one push, no job. (It holds no claim:
                // slots never give one to a self-deferring pointer.)
                debug_assert!(!self.claimed);
                // SAFETY: `obj` came from `P::into_raw` and this guard owns it; it is given up
                // here, once (above); restricted context, where the call is async-signal-safe.
                unsafe { P::defer_raw(obj, self.readers) };
                return;
            }
            if !self.claimed {
                self.drop_unclaimed_in_restricted();
                return;
            }
            // The claim travels with the object into the job.
            self.defer_in_restricted(true);
            return;
        }
        let inner = self.inner();
        if self.claimed {
            // Give the job back first: the destructor is user code and may panic.
            inner.release_claim();
        }
        if inner.defers_in_ordinary_context(self.readers) {
            inner.retire(Payload {
                obj: obj.as_ptr(),
                dtor: P::DESTRUCTOR,
                grace: self.readers,
            });
        } else {
            // An object from a readable slot is always retired (above), so no reader can borrow
            // this one: it left a write-only slot, or it is a fresh `Arc` reference from
            // `clone_current`, whose rebuild asserts no uniqueness.
            debug_assert!(!self.readers);
            if P::SELF_DEFERRING {
                // An owned box's own drop applies its own runtime's policy (which may not be the
                // slot's) and keeps deep chains from recursing.
                // SAFETY: `obj` came from `P::into_raw` and this guard owns it; it is given up
                // here, once (above); an owned box is in no readable slot here (`readers`).
                drop(unsafe { P::from_raw(obj) });
                return;
            }
            // Destroyed now, unless this thread is already deep in destructors: then after the
            // outermost one returns (`nested.rs`), so that a chain of objects in slots is
            // destroyed in a loop, never by a recursion that could overflow the stack.
            let payload = Payload {
                obj: obj.as_ptr(),
                dtor: P::DESTRUCTOR,
                grace: false,
            };
            // `obj` came from `P::into_raw` and this guard owns it; the closure and
            // `P::DESTRUCTOR` each rebuild and drop the `P`, and `destroy_inline` uses one of
            // them, while no reader borrows the target in a way a `P` could contradict.
            // SAFETY: so `obj` is given up here, once (above); ordinary context.
            unsafe { nested::destroy_inline(payload, || drop(P::from_raw(obj))) };
        }
    }
}

impl<P: SlotPointer> fmt::Debug for Detached<'_, P>
where
    P::Target: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Detached").field(&**self).finish()
    }
}

/// A slot for a pointer without a destructor: one atomic swap, no accounting, never frees.
///
/// Use it for pointers whose target outlives every use (static data, objects owned elsewhere).
/// It is a different type from [`RefSlot`] so that no call site can confuse the two.
///
/// ```
/// use std::ptr::NonNull;
/// use sigdrop::RawSlot;
///
/// static CONFIG: u32 = 7;
/// let slot = RawSlot::new();
/// assert_eq!(slot.xchg(Some(NonNull::from(&CONFIG))), None);
/// assert_eq!(slot.take(), Some(NonNull::from(&CONFIG)));
/// ```
pub struct RawSlot<T> {
    ptr: AtomicPtr<T>,
}

impl<T> RawSlot<T> {
    /// An empty slot; `const`, so it can be a `static`. May be called from a signal handler.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        RawSlot {
            ptr: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// An empty slot (loom's atomics have no `const` constructor).
    #[cfg(loom)]
    pub fn new() -> Self {
        RawSlot {
            ptr: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Stores `new` (or empties the slot) and returns the previous pointer: one atomic swap.
    /// May be called from a signal handler.
    #[inline]
    pub fn xchg(&self, new: Option<NonNull<T>>) -> Option<NonNull<T>> {
        let new = new.map_or(ptr::null_mut(), NonNull::as_ptr);
        // AcqRel: Release publishes whatever the caller wrote before storing `new`; Acquire lets
        // the caller see what was written before the previous pointer was stored.
        NonNull::new(self.ptr.swap(new, Ordering::AcqRel))
    }

    /// Empties the slot and returns the previous pointer. May be called from a signal handler.
    #[inline]
    pub fn take(&self) -> Option<NonNull<T>> {
        self.xchg(None)
    }

    /// Whether the slot is empty now. May be called from a signal handler.
    pub fn is_empty(&self) -> bool {
        // Relaxed: a snapshot; the pointer is not dereferenced.
        self.ptr.load(Ordering::Relaxed).is_null()
    }
}

impl<T> Default for RawSlot<T> {
    fn default() -> Self {
        RawSlot::new()
    }
}

impl<T> fmt::Debug for RawSlot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSlot")
            .field("ptr", &self.ptr.load(Ordering::Relaxed))
            .finish()
    }
}
