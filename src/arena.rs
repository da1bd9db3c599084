//! Job storage: a stable index table whose links never move, and job bodies that can be freed.
//!
//! A *job* is named by a `u32` index. Each index owns an [`Entry`] in a table of buckets that
//! double in size (bucket `b` holds `FIRST << b` entries), so an index maps to its entry with a
//! few shifts and entries never move once created. Buckets live until the arena is dropped.
//!
//! An entry holds exactly what a lock-free list needs to read without owning the job — the
//! `link` to the next index — plus a pointer to the job's *body* (the object pointer and its
//! destructor), which only the job's current owner touches. This split is what lets trim give
//! memory back without a grace period:
//!
//! - a concurrent (possibly stale) pop in `freelist.rs` only ever loads `link` of an index it saw
//!   at a list head; `link` lives in a bucket, and buckets are never freed while the arena lives;
//! - trim first *owns* a job (it popped it after claiming its credit in the ledger), so nobody
//!   else can reach the body; it gives the body up and recycles the index.
//!
//! Growth deals jobs to the CPUs in *runs* of consecutive indices, 16 to 256 of them
//! ([`deal_shard`], used by `runtime.rs`), and the bodies of a run live in one allocation, its
//! *slab*, aligned to a cache line, so the cache lines of a slab, like the lines of its
//! entries (buckets are aligned to a line, and a run's entries fill whole lines on 64-bit
//! targets), hold one CPU's jobs only. In buckets of at least `512 * shards` entries a run is a
//! page of entries (256 jobs): such buckets are aligned to a page, and such a run's slab fills
//! whole pages of its own (6 KiB of bodies, padded to 8), so the hardware prefetchers, which
//! follow a CPU's writes to the end of its page, fetch neither the other CPU's entry lines
//! nor its bodies nor anybody else's allocations (the explanation our measurements leave:
//! these VMs have no performance counters to show it directly). A slab is made when the first
//! job of its run is, and freed when trim gives up the last job of the run it had not freed
//! (the grow state counts them).
//!
//! Slabs were [`RUN`] bodies each at first, allocated one by one as growth reached them: the
//! allocator placed them among other memory (the objects the growing threads allocated, the
//! other CPU's slabs), and with the default settings, whose pool is grown a few dozen jobs at
//! a time by whichever thread installs, the thread that also drained took 15-59 ns per
//! teardown in a two-thread test where one thread alone takes about 10, against 11-19 ns with a
//! slab per run (and 9-12 ns for a pool grown at once by one thread).
//!
//! What trim cannot return is the entry itself: 16 bytes per index at the high-water mark of
//! live jobs. Recycled indices are reused before the table grows, so the table is bounded by the
//! peak pool size, while body memory (24 bytes a job, 32 in page-sized runs, on 64-bit
//! targets) follows the pool down by runs: every job trim has not freed (in use or spare)
//! keeps its run's slab alive, 16 to 256 bodies (at most 8 KiB). So a pool trimmed to `k` jobs
//! keeps at most `8 KiB * k` of bodies, and usually far less: two threads, rounds of 3 000 to
//! 5 000 jobs each trimmed to 64 after its drain, kept 57-137 KiB of slabs (slabs of 16 bodies
//! kept 15-21 KiB there: the price of the layout above; the entries of those pools, which no
//! trim returns, take 80 KiB).
//!
//! Two layouts were measured against this one (two threads tearing down at once, which the
//! first made share lines): a body allocated per job, with neighbouring bodies of different
//! CPUs' jobs side by side in the allocator's memory (and unaligned entry buckets): per-thread
//! teardown 1.5-2.5x one thread; and the payload inside the entry, which saves the body's
//! pointer load and a line per teardown (in back-to-back runs here, 36-42 ns per teardown on
//! each of two threads against 46 ns for this layout, at about the same ratio to one thread),
//! but can never give memory back: entries cannot be freed while a stale pop may read them.
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
use std::ptr::{self, NonNull};

/// The index that means "no job": the end of every list.
pub const NIL: u32 = u32::MAX;

/// The shortest run of consecutive indices that growth deals to one CPU's freelist
/// (`runtime.rs`, [`deal_shard`]): a run's entries (four to a cache line) fill whole lines,
/// and its bodies are one slab ([`slab_len`]).
pub const RUN: usize = 16;

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

/// A job body, in its run's slab: what only the job's owner touches.
struct Body {
    payload: UnsafeCell<Option<Payload>>,
}

/// The stable part of a job: its list link, and its body.
pub struct Entry {
    /// Next index in whichever list holds this job (freelist or job list).
    link: AtomicU32,
    /// The body, in the run's slab; `None` while the index is recycled (no job behind it).
    body: UnsafeCell<Option<NonNull<Body>>>,
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
    /// The caller owns the job (popped it from a freelist and has not pushed it anywhere), and it
    /// has a body (it came from a freelist, where only jobs with bodies are kept).
    #[inline]
    pub unsafe fn set_payload(&self, payload: Payload) {
        // SAFETY: ownership of the job makes this the only access to the entry's body pointer
        // and to the body; the job has a body (the caller's contract), and a slab is freed only
        // when no index of its run has one, so the body is live.
        unsafe {
            let body = self.body.with(|b| *b);
            debug_assert!(body.is_some(), "job without body");
            let body = body.unwrap_unchecked();
            body.as_ref().payload.with_mut(|p| *p = Some(payload));
        }
    }

    /// Removes and returns the payload of this entry's job.
    ///
    /// # Safety
    /// The caller owns the job (took it from a job list) and it has a body.
    #[inline]
    pub unsafe fn take_payload(&self) -> Option<Payload> {
        // SAFETY: as in `set_payload`: the caller owns the job, so no other access exists.
        unsafe {
            let body = self.body.with(|b| *b).expect("job without body");
            body.as_ref().payload.with_mut(|p| (*p).take())
        }
    }
}

/// Growth bookkeeping; lives behind the runtime's grow lock.
#[derive(Debug, Default)]
pub struct GrowState {
    /// Indices below this have had an entry created.
    next_index: u32,
    /// Indices ready for reuse: trimmed ones, and fresh ones a failed growth gave back.
    free_indices: Vec<u32>,
    /// Per bucket, per run of it that growth deals to one shard ([`slab_len`]): its slab of
    /// bodies, while any job of the run exists (trim has not freed them all).
    runs: Vec<Vec<RunSlab>>,
}

/// The bodies of one run that growth deals to one shard, in one allocation ([`slab_layout`]),
/// and how many of them belong to jobs now.
#[derive(Debug, Default)]
struct RunSlab {
    base: Option<NonNull<Body>>,
    live: u16,
}

// `live` counts the run's jobs.
const _: () = assert!(DEAL_RUN_MAX <= u16::MAX as usize);

// SAFETY: a `RunSlab` stands for sole ownership of its slab's allocation (bodies of plain data,
// no drop glue), which the grow state's owner manages under its lock; moving it to another
// thread moves that ownership.
unsafe impl Send for RunSlab {}

/// The bodies in a slab of bucket `bucket`'s runs, for `shards` shards: the run growth deals
/// to one shard there ([`deal_shard`]), or the whole bucket if it is shorter (in models only).
fn slab_len(bucket: usize, shards: usize) -> usize {
    let len = bucket_len(bucket);
    deal_run(len, shards).min(len)
}

/// A slab of `n` bodies: aligned to a cache line, so that the bodies of jobs dealt to one CPU
/// share lines with nobody else's; and a slab of a page or more is whole pages, so that no
/// other allocation shares its pages either (the prefetchers follow a CPU's writes to the end
/// of its page, see [`deal_shard`]).
fn slab_layout(n: usize) -> Layout {
    let bodies = Layout::array::<Body>(n).expect("a small layout");
    let page_or_line = if bodies.size() >= 4096 { 4096 } else { 64 };
    bodies
        .align_to(page_or_line)
        .expect("a small layout")
        .pad_to_align()
}

impl GrowState {
    /// The body of job `idx`, about to be handed out: its place in its run's slab, allocating
    /// the slab (all its bodies initialised empty) if the run has none (no job of it exists).
    fn body_for(&mut self, idx: u32, shards: usize) -> Result<NonNull<Body>, Error> {
        let (bucket, offset) = locate(idx);
        let n = slab_len(bucket, shards);
        if self.runs.len() <= bucket {
            self.runs
                .try_reserve(bucket + 1 - self.runs.len())
                .map_err(|_| Error::OutOfMemory)?;
            self.runs.resize_with(bucket + 1, Vec::new);
        }
        let runs = &mut self.runs[bucket];
        if runs.is_empty() {
            let count = bucket_len(bucket) / n;
            runs.try_reserve_exact(count)
                .map_err(|_| Error::OutOfMemory)?;
            runs.resize_with(count, RunSlab::default);
        }
        let slab = &mut runs[offset / n];
        let base = match slab.base {
            Some(base) => base,
            None => {
                // SAFETY: the layout is not zero-sized.
                let raw = unsafe { alloc(slab_layout(n)) }.cast::<Body>();
                let base = NonNull::new(raw).ok_or(Error::OutOfMemory)?;
                for i in 0..n {
                    // SAFETY: `i < n`, inside the fresh allocation of `n` bodies.
                    unsafe {
                        raw.add(i).write(Body {
                            payload: UnsafeCell::new(None),
                        })
                    };
                }
                slab.base = Some(base);
                base
            }
        };
        slab.live += 1;
        // SAFETY: `offset % n < n`, inside the slab.
        Ok(unsafe { base.add(offset % n) })
    }

    /// Job `idx`'s body is no longer in use: the last of its run frees the slab.
    fn body_gone(&mut self, idx: u32, shards: usize) {
        let (bucket, offset) = locate(idx);
        let n = slab_len(bucket, shards);
        let slab = &mut self.runs[bucket][offset / n];
        slab.live -= 1;
        if slab.live == 0 {
            let base = slab.base.take().expect("a run in use has a slab");
            // SAFETY: no job of the run holds a body of this slab any more (`live` counted them
            // all out), so nothing else can reach it; its `n` bodies were initialised when it
            // was made, and it was allocated with `slab_layout(n)`.
            unsafe {
                ptr::slice_from_raw_parts_mut(base.as_ptr(), n).drop_in_place();
                dealloc(base.as_ptr().cast(), slab_layout(n));
            }
        }
    }
}

/// The job table.
pub struct Arena {
    buckets: [AtomicPtr<Entry>; BUCKETS],
    /// The shards growth deals jobs to ([`deal_shard`]): a slab holds the bodies of one run.
    shards: usize,
}

// SAFETY: entries are reached through atomics (`link`) or through the owner-only protocol
// documented on each method; bodies hold raw object pointers that are `Send` by the runtime's
// contract (every object handed over is `Send`).
unsafe impl Send for Arena {}
// SAFETY: as above; shared access never races on a body because only an owner touches one.
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

/// The longest run of consecutive indices growth deals to one shard ([`deal_shard`]): a page
/// of entries (4 KiB, 16 bytes each on 64-bit targets).
pub const DEAL_RUN_MAX: usize = 256;

/// The shard that growth deals job `idx` to, of `shards`: runs of consecutive indices go to the
/// shards in turn, each run at least [`RUN`] indices and at most [`DEAL_RUN_MAX`], its bodies
/// one slab. Within a bucket, the run is the longest power of two that still gives every shard two
/// runs of the bucket (so runs reach a page only in buckets of at least `512 * shards` entries).
/// The turn goes on from one bucket to the next, as if the runs of all buckets were dealt one after
/// the other: a pool of `k` runs leaves no shard empty once `k >= shards`, and the shards' shares
/// of any pool differ by at most a run of its largest bucket. (Starting every bucket at shard 0
/// favoured the low shards in every bucket: 64 shards and 960 jobs left 32 shards without one, and
/// their CPUs all took jobs from the same few others.)
///
/// Why runs, and why long ones: a job is written by the CPU that tears down through it, and its
/// entry and body sit next to the entries and bodies of its neighbouring indices. In runs of
/// 16 jobs (256 bytes of entries), two threads tearing down at once on a two-CPU host cost
/// 1.6-3.0x one thread each, the thread that also drained paying most; the CPUs' hardware
/// prefetchers, following one CPU's run into the next, took the other CPU's lines. In runs of a
/// page (where those prefetchers stop) the same tests measured 0.9-1.2x. (A function of the
/// index alone, so that runs stay whole whatever the sizes of the batches that grow them.)
pub fn deal_shard(idx: u32, shards: usize) -> usize {
    let (bucket, offset) = locate(idx);
    let earlier: usize = (0..bucket)
        .map(|b| bucket_len(b) / deal_run(bucket_len(b), shards))
        .sum();
    (earlier + offset / deal_run(bucket_len(bucket), shards)) % shards.max(1)
}

/// The run [`deal_shard`] deals a bucket of `len` entries in.
fn deal_run(len: usize, shards: usize) -> usize {
    match (len / (2 * shards.max(1))).checked_ilog2() {
        Some(log) => (1usize << log).clamp(RUN, DEAL_RUN_MAX),
        None => RUN,
    }
}

/// A bucket of `len` entries, aligned to a cache line, and to a page once it holds a page or
/// more: entries are four to a line, and growth deals them to the shards in runs of whole lines
/// (at least [`RUN`] indices, from a multiple of [`RUN`]), up to a page ([`deal_shard`]), so that
/// no line, and past the first buckets no page, holds entries of two CPUs' jobs. Unaligned (a
/// boxed slice, 16 bytes), every run's first and last line were shared with the neighbouring
/// runs, and two threads tearing down at once wrote them both.
fn bucket_layout(len: usize) -> Option<Layout> {
    // Four entries to a line, so a run of jobs covers whole lines.
    #[cfg(all(not(loom), target_pointer_width = "64"))]
    const _: () = assert!(std::mem::size_of::<Entry>() == 16);
    let layout = Layout::array::<Entry>(len).ok()?;
    let align = if layout.size() >= 4096 { 4096 } else { 64 };
    layout.align_to(align).ok()
}

impl Arena {
    /// An empty arena whose jobs growth deals to `shards` shards ([`deal_shard`]); no memory is
    /// allocated until the first job.
    pub fn new(shards: usize) -> Self {
        Arena {
            buckets: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            shards: shards.max(1),
        }
    }

    /// Allocates one job (an index, and its body in its run's slab, made if the run has none).
    /// The job is owned by the caller and is in no list. Fails if memory or the index space is
    /// exhausted; an index it took then goes back for the next growth.
    ///
    /// Ordinary context only.
    ///
    /// # Safety
    /// `state` is the one grow state used with this arena (a second one would hand out indices
    /// that are already owned).
    pub unsafe fn alloc_job(&self, state: &mut GrowState) -> Result<u32, Error> {
        // Room to give the index back if the body cannot be had (a recycled index, popped,
        // leaves room for itself).
        if state.free_indices.is_empty() {
            state
                .free_indices
                .try_reserve(1)
                .map_err(|_| Error::OutOfMemory)?;
        }
        let idx = self.alloc_index(state)?;
        let body = match state.body_for(idx, self.shards) {
            Ok(body) => body,
            Err(e) => {
                // Nothing else changed: the index goes back for the next growth.
                state.free_indices.push(idx);
                return Err(e);
            }
        };
        // SAFETY: `idx` is either fresh or recycled by trim (and `state` is this arena's only
        // grow state); in both cases no list holds it and nobody owns it but us, so we are the
        // only one touching its body pointer.
        unsafe { self.entry(idx).body.with_mut(|b| *b = Some(body)) };
        Ok(idx)
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
                        body: UnsafeCell::new(None),
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

    /// Gives a job's body up (the last of its run in use frees the run's slab) and recycles its
    /// index. Fails (keeping the job) only if the recycle list cannot grow; the caller then
    /// keeps the job as it was.
    ///
    /// # Safety
    /// The caller owns job `idx`, it has a body, and it holds no payload.
    pub unsafe fn free_job(&self, state: &mut GrowState, idx: u32) -> Result<(), Error> {
        state
            .free_indices
            .try_reserve(1)
            .map_err(|_| Error::OutOfMemory)?;
        // SAFETY: ownership of `idx` (caller's contract) makes this the only access to its body
        // pointer and body; a stale pop elsewhere may still load `link`, which stays valid.
        unsafe {
            let body = self
                .entry(idx)
                .body
                .with_mut(|b| (*b).take())
                .expect("job without body");
            debug_assert!(body.as_ref().payload.with(|p| (*p).is_none()));
        }
        state.body_gone(idx, self.shards);
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
        // Acquire: pairs with the Release store that published the bucket in `alloc_index`. Not
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
        // The slabs of the runs still in use are found through their jobs' bodies (the grow
        // state, which counts them, is its owner's). The walk goes up the indices and a run's
        // are consecutive, in one bucket, so a slab's bodies come together: each is freed when
        // the walk moves past it.
        let mut slab: Option<(NonNull<Body>, usize)> = None;
        let free_slab = |(slab, n): (NonNull<Body>, usize)| {
            // SAFETY: a slab still in use when the arena goes (a job's body points into it):
            // allocated with `slab_layout(n)`, its `n` bodies initialised when it was made, freed
            // once (the walk leaves it once), and with the arena gone nothing can reach it.
            unsafe {
                ptr::slice_from_raw_parts_mut(slab.as_ptr(), n).drop_in_place();
                dealloc(slab.as_ptr().cast(), slab_layout(n));
            }
        };
        for (bucket, slot) in self.buckets.iter_mut().enumerate() {
            let base = slot.with_mut_ptr();
            if base.is_null() {
                // Buckets are made in order: none after this one either.
                break;
            }
            let len = bucket_len(bucket);
            let n = slab_len(bucket, self.shards);
            // SAFETY: `base` was allocated in `alloc_index` for exactly `len` entries, all
            // initialised there, and `&mut self` means no other access to them exists.
            let entries = unsafe { &*ptr::slice_from_raw_parts(base, len) };
            for (offset, entry) in entries.iter().enumerate() {
                // SAFETY: exclusive access through `&mut self`.
                if let Some(body) = entry.body.with_mut(|b| unsafe { (*b).take() }) {
                    // SAFETY: a body sits at its index's place in its run's slab (`body_for`).
                    let its = (unsafe { body.sub(offset % n) }, n);
                    if slab != Some(its)
                        && let Some(done) = slab.replace(its)
                    {
                        free_slab(done);
                    }
                }
            }
            // SAFETY: as above; each entry is dropped once, then the bucket is freed with the
            // layout it was allocated with (which `bucket_layout` gave then, for the same `len`).
            unsafe {
                ptr::slice_from_raw_parts_mut(base, len).drop_in_place();
                dealloc(base.cast(), bucket_layout(len).expect("allocated before"));
            }
        }
        if let Some(last) = slab {
            free_slab(last);
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
    fn growth_deals_whole_slabs_evenly_and_large_buckets_a_page_at_a_time() {
        for shards in [1, 2, 3, 4, 8, 64] {
            let mut first_of_run = 0u32;
            for idx in 0..(1u32 << 14) {
                let shard = deal_shard(idx, shards);
                assert!(shard < shards);
                if locate(idx).1 == 0 {
                    first_of_run = idx; // a bucket (an allocation) of its own starts here
                } else if !(idx as usize).is_multiple_of(RUN) {
                    // A slab's bodies (and its entries' lines) belong to one shard.
                    assert_eq!(shard, deal_shard(idx - 1, shards), "{idx} of {shards}");
                } else if shard != deal_shard(idx - 1, shards) {
                    let run = (idx - first_of_run) as usize;
                    assert!(run <= DEAL_RUN_MAX, "a run of {run} ending at {idx}");
                    first_of_run = idx;
                }
            }
            // Every bucket is split evenly, to within one run, when its length allows two runs
            // per shard.
            for bucket in 0..8 {
                let len = bucket_len(bucket);
                if len < 2 * shards * RUN {
                    continue;
                }
                let start = (len - bucket_len(0)) as u32;
                let mut per_shard = vec![0usize; shards];
                for idx in start..start + len as u32 {
                    assert_eq!(locate(idx).0, bucket);
                    per_shard[deal_shard(idx, shards)] += 1;
                }
                let (min, max) = (per_shard.iter().min(), per_shard.iter().max());
                let run = deal_run(len, shards);
                assert!(*min.unwrap() >= 2 * run, "{per_shard:?}");
                assert!(max.unwrap() - min.unwrap() <= run, "{per_shard:?}");
            }
        }
        // Two shards, the bucket of 1024 entries (indices 960..1984): runs of a page.
        let runs: Vec<usize> = (960..1984)
            .step_by(DEAL_RUN_MAX)
            .map(|i| deal_shard(i, 2))
            .collect();
        assert_eq!(runs, [0, 1, 0, 1]);
        assert!((960..960 + DEAL_RUN_MAX as u32).all(|i| deal_shard(i, 2) == 0));
    }

    #[test]
    fn dealing_goes_on_from_bucket_to_bucket_so_every_pool_is_spread() {
        for shards in [1, 2, 3, 5, 8, 64, 200] {
            let mut per_shard = vec![0usize; shards];
            let mut runs = 0;
            let mut largest_run = 0;
            let mut last = None;
            for idx in 0..(1u32 << 17) {
                let shard = deal_shard(idx, shards);
                assert!(shard < shards);
                if Some(shard) != last || locate(idx).1 == 0 {
                    // A new run: the next shard in turn, across bucket boundaries too.
                    if let Some(last) = last {
                        assert_eq!(shard, (last + 1) % shards, "{idx} of {shards}");
                    }
                    runs += 1;
                    largest_run = largest_run.max(deal_run(bucket_len(locate(idx).0), shards));
                }
                last = Some(shard);
                per_shard[shard] += 1;
                // Every pool, whatever its size: no shard left out once there are runs enough,
                // and the shares within a run of the largest bucket of each other.
                let (min, max) = (
                    *per_shard.iter().min().unwrap(),
                    *per_shard.iter().max().unwrap(),
                );
                if runs >= shards {
                    assert!(min > 0, "{} jobs, {shards} shards: {per_shard:?}", idx + 1);
                }
                assert!(max - min <= largest_run, "{} jobs: {per_shard:?}", idx + 1);
            }
        }
    }

    #[test]
    fn a_page_sized_run_of_entries_starts_on_a_page() {
        let arena = Arena::new(1);
        let mut st = GrowState::default();
        // SAFETY: `st` is this arena's only grow state.
        let jobs: Vec<u32> = (0..2048)
            .map(|_| unsafe { arena.alloc_job(&mut st) }.unwrap())
            .collect();
        for idx in (960u32..1984).step_by(DEAL_RUN_MAX) {
            // SAFETY: handed out above.
            let addr = std::ptr::from_ref(unsafe { arena.entry(idx) }).addr();
            assert_eq!(addr % 4096, 0, "entry {idx}");
        }
        for idx in jobs {
            // SAFETY: ours, in no list; freed once each.
            let _ = unsafe { arena.free_job(&mut st, idx) };
        }
    }

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

    /// A job of `arena`, whose only grow state is `st` (every test keeps one per arena).
    fn alloc(arena: &Arena, st: &mut GrowState) -> u32 {
        // SAFETY: `st` is this arena's only grow state (the callers' rule).
        unsafe { arena.alloc_job(st) }.unwrap()
    }

    #[test]
    fn indices_are_recycled_after_free() {
        let arena = Arena::new(1);
        let mut st = GrowState::default();
        let a = alloc(&arena, &mut st);
        let b = alloc(&arena, &mut st);
        assert_ne!(a, b);
        // SAFETY: we own `a`; it holds no payload.
        unsafe { arena.free_job(&mut st, a).unwrap() };
        assert_eq!(alloc(&arena, &mut st), a);
        let c = alloc(&arena, &mut st);
        assert_ne!(c, a);
        assert_ne!(c, b);
    }

    #[test]
    fn each_block_of_entries_starts_a_cache_line() {
        let arena = Arena::new(1);
        let mut st = GrowState::default();
        let first = 1u32 << FIRST_SHIFT;
        // The first four blocks start at these indices (each block twice the last).
        let starts = [0, first, 3 * first, 7 * first];
        for _ in 0..=starts[3] {
            alloc(&arena, &mut st);
        }
        for idx in starts {
            // SAFETY: allocated above.
            let at = unsafe { arena.entry(idx) } as *const Entry as usize;
            assert_eq!(at % 64, 0, "block of index {idx} at {at:#x}");
        }
    }

    #[test]
    fn a_runs_slab_lives_while_one_of_its_jobs_does() {
        let arena = Arena::new(2);
        let mut st = GrowState::default();
        let free = |st: &mut GrowState, idx| {
            // SAFETY: `st` is this arena's only grow state; every job freed here is one we
            // allocated, in no list, holding no payload, freed once.
            unsafe { arena.free_job(st, idx) }.unwrap()
        };
        // The first bucket's runs, for two shards: one slab of `n` bodies each.
        let n = slab_len(0, 2);
        assert_eq!(n, RUN);
        let jobs: Vec<u32> = (0..=n).map(|_| alloc(&arena, &mut st)).collect();
        assert_eq!(jobs, (0..=n as u32).collect::<Vec<_>>());
        let slab = |st: &GrowState, run: usize| st.runs[0][run].base;
        let first = slab(&st, 0).unwrap();
        assert_eq!(first.as_ptr() as usize % 64, 0, "slabs start a cache line");
        // The whole run but one: its slab stays.
        for &idx in &jobs[1..n] {
            free(&mut st, idx);
        }
        assert_eq!(slab(&st, 0), Some(first));
        // The last one: freed. The next run's is untouched.
        free(&mut st, jobs[0]);
        assert_eq!(slab(&st, 0), None);
        assert!(slab(&st, 1).is_some());
        // Growth reuses an index of the run, with a new slab.
        let again = alloc(&arena, &mut st);
        assert!((again as usize) < n, "{again}");
        assert!(slab(&st, 0).is_some());
    }

    #[test]
    fn a_slab_holds_one_shards_run_and_a_page_sized_one_whole_pages() {
        let arena = Arena::new(2);
        let mut st = GrowState::default();
        let jobs: Vec<u32> = (0..2048).map(|_| alloc(&arena, &mut st)).collect();
        // SAFETY: every index below was handed out above, and we own it: reading its body
        // pointer races with nothing.
        let body = |idx: u32| unsafe { arena.entry(idx).body.with(|b| *b) }.unwrap();
        for idx in 0..2047u32 {
            // A run's bodies are consecutive: the slab is the run's, and none crosses a run.
            let (bucket, offset) = locate(idx);
            let n = slab_len(bucket, 2);
            let next_in_run = (offset + 1) % n != 0 && offset + 1 < bucket_len(bucket);
            if next_in_run {
                // SAFETY: both bodies are in the slab of `idx`'s run.
                assert_eq!(unsafe { body(idx).add(1) }, body(idx + 1), "{idx}");
                assert_eq!(deal_shard(idx, 2), deal_shard(idx + 1, 2), "{idx}");
            }
        }
        // The bucket of 1024 entries (indices 960..1984) goes in runs of a page of entries:
        // their bodies fill whole pages of their own.
        assert_eq!(slab_len(4, 2), DEAL_RUN_MAX);
        let layout = slab_layout(DEAL_RUN_MAX);
        assert_eq!((layout.align(), layout.size() % 4096), (4096, 0));
        for idx in (960u32..1984).step_by(DEAL_RUN_MAX) {
            assert_eq!(body(idx).as_ptr().addr() % 4096, 0, "slab of {idx}");
        }
        for idx in jobs {
            // SAFETY: ours, in no list, no payload; freed once each.
            unsafe { arena.free_job(&mut st, idx) }.unwrap();
        }
        assert!(st.runs.iter().flatten().all(|slab| slab.base.is_none()));
    }

    #[test]
    fn payload_round_trips() {
        unsafe fn noop(_: *mut ()) {}
        let arena = Arena::new(1);
        let mut st = GrowState::default();
        let idx = alloc(&arena, &mut st);
        let obj = 0x1000 as *mut ();
        // SAFETY: we own `idx`, which has a body.
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
