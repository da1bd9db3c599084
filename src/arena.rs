//! Job storage: a stable index table whose entries never move and are never freed while the
//! arena lives.
//!
//! A *job* is named by a `u32` index. Each index owns an [`Entry`] in a table of buckets that
//! double in size (bucket `b` holds `FIRST << b` entries), so an index maps to its entry with a
//! few shifts and entries never move once created. Buckets live until the arena is dropped.
//!
//! An entry holds the `link` to the next index (what a lock-free list needs to read without
//! owning the job) and the job's payload (the object pointer and its destructor), which only
//! the job's current owner touches. Because entries are never freed, trim needs no grace period:
//!
//! - a concurrent (possibly stale) pop in `freelist.rs` only ever loads `link` of an index it saw
//!   at a list head, and `link` stays valid memory for as long as the arena lives;
//! - trim first *owns* a job (it popped it after claiming its credit in the ledger), so nobody
//!   else can reach its payload; it recycles the index, and a later growth hands it out again.
//!
//! What this costs: the table's memory follows the pool's high-water mark, not its current size
//! (32 bytes per index, two entries to a cache line); trim returns jobs to nobody but the
//! recycle list, and growth allocates nothing but, now and then, a new bucket. An earlier layout
//! kept the payload in a separately allocated body, so that trim could free it: growth then
//! paid an allocation per job, every teardown one more cache line, and neighbouring bodies of
//! jobs dealt to different CPUs shared lines, which two threads tearing down at once passed
//! between them.
//!
//! ## Locating a job once
//!
//! Index -> entry costs a few shifts and a load of the bucket pointer. A hot path locates a job
//! once and keeps the `&Entry`: the freelist's pop has to locate the job it pops anyway (to load
//! its link), so it hands the entry back ([`Table`]); the payload is set through that entry, and
//! the job list push takes it too. An `&Entry` is only a faster name for its index: it may be
//! held by anyone who may hold the index, and what it allows depends, as for the index, on
//! whether its holder owns the job.
//!
//! | operation            | who may call it                | concurrent with                   | restricted context |
//! |----------------------|--------------------------------|-----------------------------------|--------------------|
//! | `entry`, `Entry::link` | anyone holding a seen index  | everything                        | yes                |
//! | `Entry::set_payload` / `Entry::take_payload` | the job's owner only | everything but another owner | yes  |
//! | `alloc_job`          | ordinary context, grow lock    | `link`, payload access of others  | no (allocates)     |
//! | `free_job`           | the job's owner, grow lock     | `link`, payload access of others  | no (frees)         |

use crate::error::Error;
use crate::sync::{AtomicPtr, AtomicU32, Ordering, UnsafeCell};
use std::alloc::{Layout, alloc, dealloc};
use std::ptr;

/// The index that means "no job": the end of every list.
pub const NIL: u32 = u32::MAX;

/// A table of list links that stays put while any list over it is in use: what the lock-free
/// lists (`freelist.rs`, `llist.rs`) need to walk indices they do not own. A table whose entries
/// are bare links implements this; every `Links` is a [`Table`] whose entry is the link.
pub trait Links {
    /// The link of index `idx`.
    ///
    /// # Safety
    /// `idx` was handed out by this table.
    unsafe fn link(&self, idx: u32) -> &AtomicU32;
}

/// A table of entries, each holding a list link, that stays put while any list over it is in
/// use. The lists locate an entry once per operation and hand it back to the caller, who may
/// keep using it instead of the index (the arena's jobs: see the module docs).
pub trait Table {
    /// What an index names.
    type Entry;

    /// The entry of index `idx`.
    ///
    /// # Safety
    /// `idx` was handed out by this table (for the arena: returned by `alloc_job`).
    unsafe fn entry(&self, idx: u32) -> &Self::Entry;

    /// The list link of an entry.
    fn link(entry: &Self::Entry) -> &AtomicU32;
}

impl<L: Links + ?Sized> Table for L {
    type Entry = AtomicU32;

    #[inline]
    unsafe fn entry(&self, idx: u32) -> &AtomicU32 {
        // SAFETY: forwarded contract.
        unsafe { self.link(idx) }
    }

    #[inline]
    fn link(entry: &AtomicU32) -> &AtomicU32 {
        entry
    }
}

/// The largest number of jobs an arena can name (every index but [`NIL`]).
pub const MAX_JOBS: usize = NIL as usize;

/// Entries in the first bucket (a power of two). Tiny under loom so models reach new buckets.
#[cfg(not(loom))]
const FIRST_SHIFT: u32 = 6;
#[cfg(loom)]
const FIRST_SHIFT: u32 = 1;

/// Buckets needed to cover every index below [`NIL`] (the last one only partly).
const BUCKETS: usize = (u32::BITS - FIRST_SHIFT + 1) as usize;

/// A destructor, type-erased: called once with the object pointer it was handed with.
pub type Dtor = unsafe fn(*mut ());

/// What a queued job carries: the object and the function that destroys it.
#[derive(Clone, Copy, Debug)]
pub struct Payload {
    /// The object, as handed over by its owner.
    pub obj: *mut (),
    /// Its destructor.
    pub dtor: Dtor,
    /// Whether readers may still borrow the object (it left a readable slot): the destructor
    /// then runs only after a grace period (`read.rs`).
    pub grace: bool,
}

/// A job: its list link and its payload, in one place that never moves.
pub struct Entry {
    /// Next index in whichever list holds this job (freelist or job list).
    link: AtomicU32,
    /// The object handed over; `Some` from the offload that queued the job until the drain that
    /// runs it.
    payload: UnsafeCell<Option<Payload>>,
}

impl Entry {
    /// The list link. Any party may load or store it atomically; what a value *means* is decided
    /// by the list that holds the job (see `freelist.rs` and `llist.rs`).
    #[inline]
    pub fn link(&self) -> &AtomicU32 {
        &self.link
    }

    /// Stores the payload of this entry's job.
    ///
    /// # Safety
    /// The caller owns the job (popped it from a freelist and has not pushed it anywhere).
    #[inline]
    pub unsafe fn set_payload(&self, payload: Payload) {
        // SAFETY: ownership of the job makes this the only access to its payload.
        unsafe { self.payload.with_mut(|p| *p = Some(payload)) }
    }

    /// Removes and returns the payload of this entry's job.
    ///
    /// # Safety
    /// The caller owns the job (took it from a job list).
    #[inline]
    pub unsafe fn take_payload(&self) -> Option<Payload> {
        // SAFETY: as in `set_payload`: the caller owns the job, so no other access exists.
        unsafe { self.payload.with_mut(|p| (*p).take()) }
    }
}

/// Growth bookkeeping; lives behind the runtime's grow lock.
#[derive(Debug, Default)]
pub struct GrowState {
    /// Indices below this have had an entry created.
    next_index: u32,
    /// Indices trim gave back, ready for reuse.
    free_indices: Vec<u32>,
}

/// The job table.
pub struct Arena {
    buckets: [AtomicPtr<Entry>; BUCKETS],
}

// SAFETY: entries are reached through atomics (`link`) or through the owner-only protocol
// documented on each method; payloads hold raw object pointers that are `Send` by the
// runtime's contract (every object handed over is `Send`).
unsafe impl Send for Arena {}
// SAFETY: as above; shared access never races on a payload because only an owner touches one.
unsafe impl Sync for Arena {}

/// Splits an index into (bucket, offset within bucket).
#[inline]
fn locate(idx: u32) -> (usize, usize) {
    let biased = idx as u64 + (1u64 << FIRST_SHIFT);
    let top = 63 - biased.leading_zeros();
    let bucket = top - FIRST_SHIFT;
    let offset = biased - (1u64 << top);
    (bucket as usize, offset as usize)
}

fn bucket_len(bucket: usize) -> usize {
    1usize << (FIRST_SHIFT as usize + bucket)
}

/// A bucket of `len` entries, aligned to a cache line: entries are four to a line, and growth
/// deals them to the shards in runs of `DEAL_RUN` indices (`runtime.rs`; a multiple of
/// four, from a multiple of four), so that no line holds entries of two CPUs' jobs. Unaligned (a
/// boxed slice, 16 bytes), every run's first and last line were shared with the neighbouring
/// runs, and two threads tearing down at once wrote them both.
fn bucket_layout(len: usize) -> Option<Layout> {
    // Two entries to a line, so a run of jobs covers whole lines (and the docs' "32 bytes a
    // job" stays true).
    #[cfg(all(not(loom), target_pointer_width = "64"))]
    const _: () = assert!(std::mem::size_of::<Entry>() == 32);
    Layout::array::<Entry>(len).ok()?.align_to(64).ok()
}

impl Arena {
    /// An empty arena; no memory is allocated until the first job.
    pub fn new() -> Self {
        Arena {
            buckets: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    /// Allocates one job: an index (recycled, or new, with a new bucket when the table needs
    /// one), holding no payload. The job is owned by the caller and is in no list. Fails,
    /// without side effects, if memory or the index space is exhausted.
    ///
    /// Ordinary context only.
    ///
    /// # Safety
    /// `state` is the one grow state used with this arena (a second one would hand out indices
    /// that are already owned).
    pub unsafe fn alloc_job(&self, state: &mut GrowState) -> Result<u32, Error> {
        self.alloc_index(state)
    }

    fn alloc_index(&self, state: &mut GrowState) -> Result<u32, Error> {
        if let Some(idx) = state.free_indices.pop() {
            return Ok(idx);
        }
        let idx = state.next_index;
        if idx == NIL {
            return Err(Error::CapacityExceeded { max_jobs: MAX_JOBS });
        }
        let (bucket, offset) = locate(idx);
        if offset == 0 {
            let len = bucket_len(bucket);
            let layout = bucket_layout(len).ok_or(Error::OutOfMemory)?;
            // SAFETY: the layout is not zero-sized (a bucket holds at least one entry).
            let base = unsafe { alloc(layout) }.cast::<Entry>();
            if base.is_null() {
                return Err(Error::OutOfMemory);
            }
            for i in 0..len {
                // SAFETY: `i < len`, inside the fresh allocation made for `len` entries.
                unsafe {
                    base.add(i).write(Entry {
                        link: AtomicU32::new(NIL),
                        payload: UnsafeCell::new(None),
                    })
                };
            }
            // Release: publishes the initialised entries to every later `entry()` (Acquire).
            // Belt and braces: the freelist push that hands out the first index of this bucket
            // (Release, after this store) already carries the entries to whoever pops it.
            self.buckets[bucket].store(base, Ordering::Release);
        }
        state.next_index = idx + 1;
        Ok(idx)
    }

    /// Recycles a job's index (trim). Fails (keeping the job) only if the recycle list cannot
    /// grow; the caller then keeps the job as it was.
    ///
    /// # Safety
    /// The caller owns job `idx`, and it holds no payload.
    pub unsafe fn free_job(&self, state: &mut GrowState, idx: u32) -> Result<(), Error> {
        state
            .free_indices
            .try_reserve(1)
            .map_err(|_| Error::OutOfMemory)?;
        // SAFETY: ownership of `idx` (caller's contract) makes this the only access to its
        // payload (a stale pop elsewhere may still load `link`, which stays valid). Read in
        // every build: the models see trim's access, so trim racing an owner would show.
        let idle = unsafe { self.entry(idx).payload.with(|p| (*p).is_none()) };
        debug_assert!(idle, "trimmed a job that holds a payload");
        state.free_indices.push(idx);
        Ok(())
    }
}

impl Table for Arena {
    type Entry = Entry;

    /// The entry of an index that has been allocated at some point.
    ///
    /// # Safety
    /// `idx` must have been returned by [`alloc_job`](Arena::alloc_job) of this arena (the bucket
    /// then exists and is never freed while `self` lives).
    #[inline]
    unsafe fn entry(&self, idx: u32) -> &Entry {
        let (bucket, offset) = locate(idx);
        // Acquire: pairs with the Release store that published the bucket in `alloc_job`. Not
        // load-bearing: every caller learned `idx` through a freelist or job list whose push
        // (Release) follows that store and whose pop or take (Acquire) precedes this load, and
        // that pair is what carries the argument; this one keeps the reasoning local. loom
        // cannot see this pair weakened alone (`scripts/mutants.txt`: equivalent).
        let base = self.buckets[bucket].load(Ordering::Acquire);
        debug_assert!(!base.is_null(), "index {idx} was never allocated");
        // SAFETY: by the caller's contract the bucket exists, `offset < bucket_len(bucket)`, and
        // buckets are only freed in `Drop`, which has `&mut self`.
        unsafe { &*base.add(offset) }
    }

    #[inline]
    fn link(entry: &Entry) -> &AtomicU32 {
        entry.link()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for (bucket, slot) in self.buckets.iter_mut().enumerate() {
            let base = slot.with_mut_ptr();
            if base.is_null() {
                continue;
            }
            let len = bucket_len(bucket);
            // SAFETY: `base` was allocated in `alloc_index` for exactly `len` entries, all
            // initialised there, and `&mut self` means no other access to them exists; each
            // entry is dropped once (payloads are plain data: the runtime ran or leaked every
            // object before dropping its arena), then the bucket is freed with the layout it
            // was allocated with (which `bucket_layout` gave then, for the same `len`).
            unsafe {
                ptr::slice_from_raw_parts_mut(base, len).drop_in_place();
                dealloc(base.cast(), bucket_layout(len).expect("allocated before"));
            }
        }
    }
}

/// `AtomicPtr::get_mut` for both std and loom (loom's atomics have no `get_mut`).
trait WithMutPtr<T> {
    fn with_mut_ptr(&mut self) -> *mut T;
}

impl<T> WithMutPtr<T> for AtomicPtr<T> {
    fn with_mut_ptr(&mut self) -> *mut T {
        #[cfg(loom)]
        return self.with_mut(|p| *p);
        #[cfg(not(loom))]
        *self.get_mut()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn locate_covers_index_space_contiguously() {
        assert_eq!(locate(0), (0, 0));
        let first = 1u32 << FIRST_SHIFT;
        assert_eq!(locate(first - 1), (0, first as usize - 1));
        assert_eq!(locate(first), (1, 0));
        assert_eq!(locate(3 * first - 1), (1, 2 * first as usize - 1));
        assert_eq!(locate(3 * first), (2, 0));
        let (b, o) = locate(NIL - 1);
        assert!(b < BUCKETS);
        assert!(o < bucket_len(b));
    }

    #[test]
    fn indices_are_recycled_after_free() {
        let arena = Arena::new();
        let mut st = GrowState::default();
        // `st` is this arena's only grow state in every `alloc_job` call below.
        let alloc = |st: &mut GrowState| {
            // SAFETY: `st` is this arena's only grow state.
            unsafe { arena.alloc_job(st) }.unwrap()
        };
        let a = alloc(&mut st);
        let b = alloc(&mut st);
        assert_ne!(a, b);
        // SAFETY: we own `a`; it holds no payload.
        unsafe { arena.free_job(&mut st, a).unwrap() };
        assert_eq!(alloc(&mut st), a);
        let c = alloc(&mut st);
        assert_ne!(c, a);
        assert_ne!(c, b);
    }

    #[test]
    fn each_block_of_entries_starts_a_cache_line() {
        let arena = Arena::new();
        let mut st = GrowState::default();
        let first = 1u32 << FIRST_SHIFT;
        // The first four blocks start at these indices (each block twice the last).
        let starts = [0, first, 3 * first, 7 * first];
        for _ in 0..=starts[3] {
            // SAFETY: `st` is this arena's only grow state.
            unsafe { arena.alloc_job(&mut st) }.unwrap();
        }
        for idx in starts {
            // SAFETY: allocated above.
            let at = unsafe { arena.entry(idx) } as *const Entry as usize;
            assert_eq!(at % 64, 0, "block of index {idx} at {at:#x}");
        }
    }

    #[test]
    fn payload_round_trips() {
        unsafe fn noop(_: *mut ()) {}
        let arena = Arena::new();
        let mut st = GrowState::default();
        // SAFETY: `st` is this arena's only grow state.
        let idx = unsafe { arena.alloc_job(&mut st) }.unwrap();
        let obj = 0x1000 as *mut ();
        // SAFETY: we own `idx`.
        unsafe {
            arena.entry(idx).set_payload(Payload {
                obj,
                dtor: noop,
                grace: false,
            });
            let p = arena.entry(idx).take_payload().unwrap();
            assert_eq!(p.obj, obj);
            assert!(arena.entry(idx).take_payload().is_none());
        }
    }
}
