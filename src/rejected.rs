//! [`Rejected`]: a value an install refused, handed back with the reason.
//!
//! ## Where the value goes when nobody takes it back
//!
//! The value was never published: the refusal holds it, whole, until the caller takes it back
//! (`into_inner`, `into_parts`) or lets it go (drops the refusal, `into_error`, `?`). Letting it
//! go destroys it as a [`Detached`](crate::Detached) guard without a job would be destroyed:
//!
//! - in ordinary context, inline (the value never reached a slot, so no reader can hold it);
//! - in restricted context, never there: an [`Owned`](crate::Owned) box pushes itself; any other
//!   value is handed to the runtime of the slot that refused it, with a spare job if one is
//!   left, else parked in the emergency area, else leaked (each counted, as for a guard). A
//!   refusal that has no runtime to hand it to (a global slot's install in a handler before the
//!   process-wide runtime exists) leaks the value.
//!
//! So the refusal keeps a handle of the slot's runtime (two atomic increments, on the refusal
//! path only; a handle dropped in restricted context is given up as a handler's handle is).

use crate::arena::Payload;
use crate::error::Error;
use crate::handle::Runtime;
use crate::pointer::SlotPointer;
use crate::restricted;
use std::fmt;
use std::mem::ManuallyDrop;

/// A value whose install was refused; it holds the value, untouched, and the reason.
///
/// It is a [`std::error::Error`] and converts into [`Error`], so `?` works in functions that
/// return either (or a `Box<dyn Error>`). **`?` drops the value.** In ordinary context, which is
/// where installs usually fail, that runs its destructor inline. In a signal handler the value
/// is never destroyed there: it goes to the drainer like a value taken out of a slot without a
/// job — with a spare job if one is left, else parked in the emergency area (counted in
/// [`Stats::emergency`](crate::Stats)), else leaked (counted in `Stats::leaked`). To keep it
/// instead, take it back with [`into_inner`](Self::into_inner) or
/// [`into_parts`](Self::into_parts).
///
/// ```
/// use sigdrop::{RefSlot, Runtime};
///
/// fn install(slot: &RefSlot<Box<u32>>) -> Result<(), sigdrop::Error> {
///     slot.xchg(Some(Box::new(7)))?; // a refusal becomes its `Error`, dropping the Box
///     Ok(())
/// }
/// let rt = Runtime::new()?;
/// install(&RefSlot::new(&rt))?;
/// # Ok::<(), sigdrop::Error>(())
/// ```
pub struct Rejected<P: SlotPointer> {
    /// Taken once: by `Drop`, or moved out by `split`, which skips `Drop`.
    value: ManuallyDrop<P>,
    error: Error,
    /// Where the value goes if it is dropped in restricted context (module docs).
    runtime: Option<Runtime>,
}

impl<P: SlotPointer> Rejected<P> {
    /// A refusal of `value` by a slot of `runtime` (`None`: no runtime exists yet). May be
    /// called in restricted context (a handle clone: two atomic increments).
    #[cold]
    pub(crate) fn new(value: P, error: Error, runtime: Option<&Runtime>) -> Self {
        Rejected {
            value: ManuallyDrop::new(value),
            error,
            runtime: runtime.cloned(),
        }
    }

    /// The value handed back, to keep (or to drop, which in a signal handler defers it as the
    /// type's docs say). May be called from a signal handler.
    pub fn into_inner(self) -> P {
        self.split().0
    }

    /// Why it was refused. May be called from a signal handler.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The reason, letting the value go: destroyed inline in ordinary context, handed to the
    /// drainer in a signal handler (see the type's docs). May be called from a signal handler.
    pub fn into_error(self) -> Error {
        let (value, error, runtime) = self.split();
        let_go(value, runtime);
        error
    }

    /// Both parts. May be called from a signal handler.
    pub fn into_parts(self) -> (P, Error) {
        let (value, error, _) = self.split();
        (value, error)
    }

    /// The three fields, moved out without running `Drop`.
    fn split(self) -> (P, Error, Option<Runtime>) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped or used again, so each field is moved out exactly
        // once, here; `value` was not taken before (only `Drop` and this take it).
        unsafe {
            (
                ManuallyDrop::take(&mut this.value),
                std::ptr::read(&this.error),
                std::ptr::read(&this.runtime),
            )
        }
    }
}

/// Destroys a refused value the way its context allows (module docs).
fn let_go<P: SlotPointer>(value: P, runtime: Option<Runtime>) {
    if !restricted::is_active() || P::SELF_DEFERRING {
        // Ordinary context: inline. An `Owned` box in restricted context: its own push.
        drop(value);
        return;
    }
    let Some(runtime) = runtime else {
        // No runtime to hand it to, and never a destructor here: leaked.
        std::mem::forget(value);
        return;
    };
    let payload = Payload {
        obj: value.into_raw().as_ptr(),
        dtor: P::DESTRUCTOR,
        // It never reached a slot: no reader can hold it.
        grace: false,
    };
    // In restricted context an unclaimed object is always taken (deferred with a spare job,
    // parked or leaked, counted).
    let kept = runtime.inner().defer(payload, false);
    debug_assert!(kept.is_none());
}

impl<P: SlotPointer> Drop for Rejected<P> {
    fn drop(&mut self) {
        // SAFETY: `value` is taken once: here, or in `split`, which never runs this `Drop`.
        let value = unsafe { ManuallyDrop::take(&mut self.value) };
        let_go(value, self.runtime.take());
    }
}

impl<P: SlotPointer> fmt::Debug for Rejected<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<P: SlotPointer> fmt::Display for Rejected<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "install refused: {}", self.error)
    }
}

impl<P: SlotPointer> std::error::Error for Rejected<P> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<P: SlotPointer> From<Rejected<P>> for Error {
    /// The reason; the value is let go as [`Rejected::into_error`] says.
    fn from(rejected: Rejected<P>) -> Error {
        rejected.into_error()
    }
}
