//! `KptrArray`: a fixed number of [`RefSlot`]s addressed by index — the kernel's array map with a
//! kptr field. Every operation is the slot's own, so the array adds no locking: see `slot.rs`
//! for the protocol and its concurrency table.

use crate::error::Error;
use crate::handle::Runtime;
use crate::pointer::SlotPointer;
use crate::rejected::Rejected;
use crate::slot::{Detached, RefSlot};

/// A fixed-length array of reserve-accounted slots.
///
/// Its slots are [`RefSlot`](crate::RefSlot)s, which hold objects for their owner and cannot be
/// read in place (what a slot holds is only reached by taking it out). For objects that
/// handlers or other threads read by index while they are replaced (a registry of handlers,
/// say), use an array of [`ReadSlot`](crate::ReadSlot)s instead, which may be a `static`:
///
/// ```
/// use sigdrop::ReadSlot;
///
/// struct Entry { calls_before_stop: u64 }
/// static REGISTRY: [ReadSlot<Box<Entry>>; 65] = [const { ReadSlot::global() }; 65];
///
/// REGISTRY[10].xchg(Some(Box::new(Entry { calls_before_stop: 3 })))?;
/// let guard = sigdrop::read::enter(); // from any context, a handler included
/// assert_eq!(REGISTRY[10].load(&guard).map(|e| e.calls_before_stop), Some(3));
/// # drop(guard);
/// # REGISTRY[10].clear();
/// # Ok::<(), sigdrop::Error>(())
/// ```
///
/// ```
/// use sigdrop::{Drainer, KptrArray, Runtime, restricted};
///
/// let rt = Runtime::builder().drainer(Drainer::Manual).build()?;
/// let map: KptrArray<Box<u64>> = KptrArray::new(&rt, 4)?;
/// map.insert(2, Box::new(7))?;
/// {
///     let _restricted = restricted::enter();
///     assert!(map.delete(2)?); // deferred: no destructor in restricted context
/// }
/// assert_eq!(rt.drain()?, 1);
/// # Ok::<(), sigdrop::Error>(())
/// ```
pub struct KptrArray<P: SlotPointer> {
    slots: Box<[RefSlot<P>]>,
    /// The slots' runtime, for a refused insert (an index out of range) to hand its value to.
    runtime: Runtime,
}

impl<P: SlotPointer> KptrArray<P> {
    /// `len` empty slots accounted in `runtime`. Ordinary context only (it allocates):
    /// [`Error::Restricted`] otherwise.
    pub fn new(runtime: &Runtime, len: usize) -> Result<Self, Error> {
        if crate::restricted::is_active() {
            return Err(Error::Restricted);
        }
        Ok(KptrArray {
            slots: (0..len).map(|_| RefSlot::new(runtime)).collect(),
            runtime: runtime.clone(),
        })
    }
}

impl<P: SlotPointer> KptrArray<P> {
    /// Number of slots. May be called from a signal handler.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the array has no slots at all. May be called from a signal handler.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot at `index`. May be called from a signal handler.
    pub fn slot(&self, index: usize) -> Option<&RefSlot<P>> {
        self.slots.get(index)
    }

    /// Every slot, in order. May be called from a signal handler.
    pub fn slots(&self) -> &[RefSlot<P>] {
        &self.slots
    }

    /// Installs `value` at `index`, returning the previous object; see [`RefSlot::xchg`]. An
    /// index out of range hands the value back with [`Error::OutOfRange`]. May be called from a
    /// signal handler (see `RefSlot::xchg` for when it needs a reserved job there).
    pub fn insert(&self, index: usize, value: P) -> Result<Option<Detached<'_, P>>, Rejected<P>> {
        match self.slots.get(index) {
            Some(slot) => slot.xchg(Some(value)),
            None => Err(Rejected::new(
                value,
                Error::OutOfRange {
                    index,
                    len: self.len(),
                },
                Some(&self.runtime),
            )),
        }
    }

    /// Empties the slot at `index` and returns its object. May be called from a signal handler.
    pub fn take(&self, index: usize) -> Result<Option<Detached<'_, P>>, Error> {
        self.slots
            .get(index)
            .map(RefSlot::take)
            .ok_or(Error::OutOfRange {
                index,
                len: self.len(),
            })
    }

    /// Deletes the object at `index` (destroyed inline in ordinary context under
    /// [`Policy::Auto`](crate::Policy::Auto), deferred otherwise); returns whether there was one.
    /// May be called from a signal handler.
    pub fn delete(&self, index: usize) -> Result<bool, Error> {
        Ok(self.take(index)?.is_some())
    }

    /// Deletes every object. May be called from a signal handler.
    pub fn clear(&self) {
        for slot in self.slots.iter() {
            slot.clear();
        }
    }
}

impl<P: SlotPointer> std::fmt::Debug for KptrArray<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KptrArray")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{Drainer, restricted};

    #[test]
    fn out_of_range_hands_the_value_back() {
        let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
        let map: KptrArray<Box<u8>> = KptrArray::new(&rt, 2).unwrap();
        let rejected = map.insert(2, Box::new(9)).unwrap_err();
        assert!(matches!(
            rejected.error(),
            Error::OutOfRange { index: 2, len: 2 }
        ));
        assert_eq!(*rejected.into_inner(), 9);
        assert!(matches!(map.delete(5), Err(Error::OutOfRange { .. })));
    }

    #[test]
    fn restricted_delete_defers_and_ordinary_delete_destroys() {
        let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
        let map: KptrArray<Box<u8>> = KptrArray::new(&rt, 3).unwrap();
        for i in 0..3 {
            assert!(map.insert(i, Box::new(i as u8)).unwrap().is_none());
        }
        assert!(map.delete(0).unwrap());
        assert!(!map.delete(0).unwrap());
        {
            let _nmi = restricted::enter();
            assert!(map.delete(1).unwrap());
            map.clear();
        }
        assert_eq!(rt.drain().unwrap(), 2);
        assert_eq!(rt.stats().refs, 0);
    }
}
