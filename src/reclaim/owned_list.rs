//! Per-CPU multi-producer lists of *self-carrying* nodes, emptied whole by the drainer: how an
//! [`Owned`](crate::Owned) box reaches the drainer from a signal handler with no job.
//!
//! ## Protocol
//!
//! An owned box's allocation starts with a [`Link`]: the list word `next`, a drainer-only
//! `stash_next`, and the type-erased function that destroys the whole allocation. The box *is*
//! its own job, so a restricted-context drop needs nothing from the pool — no claim, no freelist
//! pop, no reserve, never the emergency area. A push is one swap, as in basedrop's queue, not a
//! load and a CAS loop:
//!
//! 1. a node is made with `next` = `UNLINKED` (a value no node address can have) and the
//!    address of its lists' shards (so that a push reaches its shard from the node, with one
//!    load less than through the runtime state), and pushed once;
//! 2. in lazy wake mode, the pusher increments the shard's length counter (the length the
//!    doorbell compares with its high watermark);
//! 3. it swaps its node into the shard's head and gets the head it replaced: the node is in the
//!    list from here, but *unlinked*: nobody can reach what is older than it yet;
//! 4. it rings the doorbell (`doorbell.rs`'s `after_push_deferred`) with the list's length
//!    before the push (lazy mode: the counter; immediate mode: 0 if the head it replaced was
//!    null, else 1) — all of the ring but its wake-up syscall, if it needs one;
//! 5. it *links* the node: stores the replaced head, with the grace bit if the value may still
//!    be borrowed by readers (it left a readable slot), into `next`. That store is the pusher's
//!    last access to memory: the node, the list, the doorbell;
//! 6. it makes the wake-up syscall, if the ring decided on one: a futex wake, which needs the
//!    futex word's address only (`doorbell.rs`'s `Wakeup`).
//!
//! The drainer takes a shard's whole list with one swap to null and walks it, newest first, up
//! to its end or to the first node still unlinked (its pusher is between steps 3 and 5:
//! preempted there, or interrupted by a handler). It reverses the linked part in place and
//! hands each node, oldest first, to the cycle, which runs its destroy function — or, for a node
//! with the grace bit, puts it in a batch that waits for a grace period. An unlinked node is
//! *stalled*: it is neither destroyed nor read further, but pushed (through `stash_next`) onto
//! its shard's stash; every cycle first takes the stashes and walks each stalled node again
//! from itself, once it is linked. While a stash holds a node the cycle reports work waiting
//! (and nudges a drainer that sleeps until rung: nobody rings for a link), so the drainer
//! thread comes back by itself: at once, yielding, a few times (the pusher is a few
//! instructions from its link, unless preempted there), then polling. A shutdown waits for
//! the link, bounded (`Inner::settle_stalled_boxes`). In a `fork` child, where a parent
//! thread's push never links, the child's handler links such nodes to nothing
//! (`owned_list_fork.rs`).
//!
//! Why the ring comes before the link: a pushed node is still counted among the runtime's boxes
//! ([`box_made`](OwnedLists::box_made)), which keeps the runtime state (these lists, the
//! doorbell) alive, and no node is handed over, nor uncounted, before it is linked. So while
//! the pusher rings, its own node keeps the state alive; once it has linked, it touches no
//! memory. A ring after the link could find the state freed: the drainer may hand the node
//! over and uncount it, and with it the last box go, the moment the link is stored. Why the
//! wake-up syscall comes after the link: a drainer woken before it would find the node
//! unlinked — and the scheduler often runs the woken drainer at once on the waker's CPU,
//! which keeps the pusher from linking until the drainer sleeps again (measured: an owned
//! box's hand-over-to-destructor latency went from 20 µs to 44 µs at the median and to
//! 3.7 ms at the 99th percentile, the drainer's poll). The syscall uses only the address.
//!
//! Order: per shard, boxes run oldest first, except that boxes queued before a push that was
//! still unlinked when the drainer took the list run after the boxes queued since (in a later
//! cycle, once it is linked).
//!
//! Free of ABA without a tag: a push never reads another node (it swaps the head and writes
//! its own `next`), and the consumer operations are take-alls, one swap that reads no node.
//! The stash is the same shape: a drainer pushes a stalled node with a CAS (validated by the
//! stash head only, never dereferenced), and drainers take it whole with a swap. Each node has
//! one owner at a time: its pusher, the list, the drainer whose take (or stash take) reached
//! it, a stash. (While a stalled node sits in a stash its pusher still writes its `next`; the
//! stash writes only `stash_next`, so the two never touch the same field.)
//!
//! ## Orderings
//!
//! - head swap in a push: AcqRel. Release publishes the node (its value, `destroy`) to the
//!   taker's Acquire swap; Acquire orders a push onto an empty list after the take that
//!   emptied it (the doorbell's no-lost-wake-up argument, exactly as for job lists).
//! - the link store: Release, paired with the walker's Acquire load of `next`: the pusher's last
//!   access to the node happens before the drainer destroys (or reverses into) it. The nodes
//!   the link points to were published by their own head swaps, which come before ours in the
//!   head's order: the taker's Acquire swap synchronises with them through the head's release
//!   sequence (every push and take is an RMW on it), so this pair carries nothing else.
//! - take: the swap is AcqRel: Acquire as above; Release so that a later push that finds the
//!   list empty synchronises with it.
//! - the take first looks at a head with a Relaxed load and skips a list it sees empty (an idle
//!   cycle then writes nothing producers read). A push that load misses loses no wake-up: the
//!   push's swap precedes its ring's swap of `pending`; if the drainer's clear (an Acquire
//!   swap, made before the load) comes after that swap in `pending`'s order, it synchronises
//!   with it and the load sees the push; if it comes before, `pending` is set again after the
//!   clear, and the drainer does not sleep before another cycle (`doorbell.rs`). Loom checks
//!   this (`owned_push_racing_drainer_sleep_is_never_stranded`).
//! - the reversal's stores to `next` and the walk's second pass are the drainer's own accesses
//!   to nodes it owns: Relaxed.
//! - stash: a stalling drainer writes `stash_next` and CASes the stash head with Release; the
//!   taker's swap is Acquire, pairing with it, so it reads `stash_next` and the node as the
//!   stalling drainer left them. The cheap look at a stash before its swap is Relaxed, as for
//!   heads: a stash it misses is taken by a later cycle, which the stalling drainer's own
//!   "work waiting" answer makes sure comes.
//! - the lazy-mode counter is Relaxed: it only decides whether to ring early (the drainer wakes
//!   by itself within its period anyway). It is incremented before the push and decreased by
//!   the walks that hand its nodes over, so it never goes below the number of nodes in the
//!   list (nodes behind a stalled one stay counted until their walk).
//!
//! ## Concurrency table
//!
//! | operation  | concurrent with push | with take | restricted context |
//! |------------|----------------------|-----------|--------------------|
//! | `push`     | yes                  | yes       | yes: one swap, one store, never a retry; in lazy mode one more `fetch_add` |
//! | `take_all` | yes                  | yes (each node goes to exactly one taker) | no (it runs destructors) |
//! | `stalled`, `taken`, `stalls`, `stalled_now` | yes (snapshot) | yes | yes |

use crate::arena::{Dtor, Payload};
use crate::cpu::{current_cpu, shard_beyond};
use crate::reclaim::doorbell::{Doorbell, Wakeup};
use crate::sync::{Arc, AtomicPtr, AtomicU64, AtomicUsize, Ordering, UnsafeCell};
use crossbeam_utils::CachePadded;
use std::ptr::{self, NonNull};

#[cfg(loom)]
loom::thread_local! {
    /// A model's "signal handler" that interrupts this thread's next push between its swap of
    /// the head and its link, on the same loom thread (`set_model_interrupt`).
    static INTERRUPT: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        std::cell::RefCell::new(None);
}

/// Makes the calling model thread's next owned-list push run `handler` between its swap of the
/// head and its link store, on the same thread, as a signal landing there would (loom only).
#[cfg(loom)]
pub fn set_model_interrupt(handler: Box<dyn FnOnce()>) {
    INTERRUPT.with(|h| *h.borrow_mut() = Some(handler));
}

#[cfg(loom)]
fn model_interrupt() {
    if let Some(handler) = INTERRUPT.with(|h| h.borrow_mut().take()) {
        handler();
    }
}

/// Where a test pauses a box's hand-over (`pause_next_push`).
#[cfg(all(test, not(loom)))]
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PauseAt {
    /// After the ring, before the link: a stand-in for a pusher preempted there.
    BeforeLink,
    /// Right after the link store: whatever the pause frees, the push must not touch again.
    AfterLink,
    /// In an ordinary-context drop that defers (`Owned::drop_ordinary`), after it found the
    /// runtime not stopping and before it retires the box: the last handle may go right there.
    BeforeRetire,
}

#[cfg(all(test, not(loom)))]
std::thread_local! {
    /// Where this thread's next push pauses, if it does (`pause_next_push`). A `const` cell of
    /// a type with no destructor: reading it in a handler registers nothing, allocates nothing.
    static PAUSE_ARMED: std::cell::Cell<Option<PauseAt>> = const { std::cell::Cell::new(None) };
}

/// What an armed push runs, per thread. Looked at only by a thread whose push is armed.
#[cfg(all(test, not(loom)))]
#[allow(clippy::type_complexity)]
static PAUSED: std::sync::Mutex<Vec<(std::thread::ThreadId, Box<dyn FnOnce() + Send>)>> =
    std::sync::Mutex::new(Vec::new());

/// Makes this thread's next push run `paused` at `at` (tests only: a deterministic stalled
/// node, or a runtime gone the moment a box is linked).
#[cfg(all(test, not(loom)))]
pub(crate) fn pause_next_push(at: PauseAt, paused: Box<dyn FnOnce() + Send>) {
    let me = std::thread::current().id();
    PAUSED.lock().unwrap().push((me, paused));
    PAUSE_ARMED.with(|a| a.set(Some(at)));
}

/// Runs this thread's pause if it is armed at `at`.
#[cfg(all(test, not(loom)))]
pub(crate) fn pause_if_armed(at: PauseAt) {
    if PAUSE_ARMED.with(|a| a.get()) != Some(at) {
        return;
    }
    PAUSE_ARMED.with(|a| a.set(None));
    let me = std::thread::current().id();
    let paused = {
        let mut paused = PAUSED.lock().unwrap();
        let i = paused.iter().position(|(id, _)| *id == me);
        paused
            .swap_remove(i.expect("an armed push has its pause"))
            .1
    };
    paused();
}

/// The value of `next` before the node's pusher links it: never a node's address (nodes are
/// aligned to 8) nor such an address with [`GRACE`] set.
const UNLINKED: usize = 0b10;
/// The bit of a linked `next` that says the node left a readable slot (it waits for a grace
/// period before it is destroyed).
const GRACE: usize = 0b01;
const _: () = assert!(std::mem::align_of::<Link>() > (UNLINKED | GRACE));

/// The first field of every owned box's allocation: what the list and the drainer need.
#[derive(Debug)]
pub(crate) struct Link {
    /// [`UNLINKED`] until the node's pusher links it; then the next (older) node's address, or
    /// null, with [`GRACE`] set if the value may still be borrowed. After a walk's reversal, the
    /// next *newer* node (with the grace bit kept), for the walk's second pass.
    next: AtomicPtr<Link>,
    /// The next node in a shard's stash of stalled nodes. Written and read only by drainers
    /// (the stash's pushes and takes order them).
    stash_next: UnsafeCell<*mut Link>,
    /// Destroys the whole allocation, given the node's address (the `Link`'s, which is the
    /// allocation's: the `Link` comes first in a `#[repr(C)]` node).
    destroy: Dtor,
    /// The first shard of the lists the node is pushed onto (theirs: `OwnedLists::shards`), so
    /// that a push finds its shard from the node itself, not through the runtime state: one
    /// dependent load less before the swap.
    shards: NonNull<CachePadded<Shard>>,
}

impl Link {
    /// A link for a node of `lists`, destroyed by `destroy`, not yet pushed.
    #[inline]
    pub(crate) fn new(destroy: Dtor, lists: &OwnedLists) -> Link {
        Link {
            next: AtomicPtr::new(ptr::without_provenance_mut(UNLINKED)),
            stash_next: UnsafeCell::new(ptr::null_mut()),
            destroy,
            shards: lists.shards.cast(),
        }
    }
}

/// One shard: the head and, in lazy mode, the length counter, on one cache line.
struct Shard {
    head: AtomicPtr<Link>,
    /// Nodes pushed and not yet handed over by a walk (only kept when `counted`).
    len: AtomicUsize,
}

/// One multi-producer, take-all list of owned-box nodes per shard.
pub(crate) struct OwnedLists {
    /// The shards, in an allocation of their own, owned through a raw pointer (from
    /// `Box::into_raw`, freed by `Drop`) rather than a `Box`: the fork seal keeps a pointer into
    /// them too, which a `Box`, moved as the runtime state is built, would claim for itself.
    shards: NonNull<[CachePadded<Shard>]>,
    /// Per shard, the stalled nodes drainers found unlinked (module docs). Drainers only, apart
    /// from the heads' cache lines. Owned like `shards`, for the same reason.
    stashes: NonNull<[AtomicPtr<Link>]>,
    /// Whether pushes keep the length counter ([`Wake::Lazy`](crate::Wake) needs it for its
    /// high watermark; immediate mode only needs "was the list empty").
    counted: bool,
    /// Nodes handed over by drainers' walks (a statistic).
    taken: AtomicU64,
    /// Nodes a walk found unlinked for the first time (a statistic: every stall counted once,
    /// however many cycles find it unlinked again).
    stalls: AtomicU64,
    /// Nodes in the stashes now, waiting for their pushers' links (a statistic: up when a walk
    /// stashes a node for the first time, down when a walk from a stash finds it linked).
    stalled: AtomicUsize,
    /// What `fork` registers to seal nodes a parent thread was pushing (`owned_list_fork.rs`).
    /// In an allocation of its own, shared (as the runtime's registered locks are), like the
    /// slices it points into.
    fork_seal: Arc<ForkSeal>,
    /// Owned boxes of this runtime that exist: made and not yet destroyed, nor handed over by a
    /// walk. While there is one, they share one strong reference to the runtime state
    /// (`owned.rs`); this count says who takes it ([`box_made`](Self::box_made)) and who gives
    /// it back ([`boxes_gone`](Self::boxes_gone)). On a line of its own: every box's maker
    /// and destroyer writes it.
    boxes: CachePadded<AtomicUsize>,
}

// SAFETY: the lists own their two slices as `Box`es would (freed once, by `Drop`); everything
// reached through them is atomics (and `stash_next`, which only a node's owning drainer
// touches), shared between threads as the lists' protocol says.
unsafe impl Send for OwnedLists {}
// SAFETY: as above.
unsafe impl Sync for OwnedLists {}

impl OwnedLists {
    /// `shards` empty lists; `counted`: keep per-shard lengths (lazy wake mode).
    pub(crate) fn new(shards: usize, counted: bool) -> Self {
        let stashes: Box<[AtomicPtr<Link>]> = (0..shards)
            .map(|_| AtomicPtr::new(ptr::null_mut()))
            .collect();
        let shards: Box<[CachePadded<Shard>]> = (0..shards)
            .map(|_| {
                CachePadded::new(Shard {
                    head: AtomicPtr::new(ptr::null_mut()),
                    len: AtomicUsize::new(0),
                })
            })
            .collect();
        // SAFETY: `Box::into_raw` never returns null.
        let (shards, stashes) = unsafe {
            (
                NonNull::new_unchecked(Box::into_raw(shards)),
                NonNull::new_unchecked(Box::into_raw(stashes)),
            )
        };
        let fork_seal = Arc::new(ForkSeal::new(shards, stashes));
        OwnedLists {
            shards,
            stashes,
            counted,
            taken: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            stalled: AtomicUsize::new(0),
            fork_seal,
            boxes: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// What `fork` registers for these lists (`fork.rs`): in a child, it seals the nodes a
    /// parent thread was pushing (`owned_list_fork.rs`).
    pub(crate) fn fork_seal(&self) -> &ForkSeal {
        &self.fork_seal
    }

    /// The shards' heads and counters.
    #[inline]
    fn shards(&self) -> &[CachePadded<Shard>] {
        // SAFETY: from `Box::into_raw` in `new`, freed only by our `Drop`; only shared
        // references to it are ever made (its contents are atomics).
        unsafe { self.shards.as_ref() }
    }

    /// The shards' stashes.
    #[inline]
    fn stashes(&self) -> &[AtomicPtr<Link>] {
        // SAFETY: as for `shards`.
        unsafe { self.stashes.as_ref() }
    }

    /// Counts a box being made; returns the boxes there were before it (0: no other box
    /// exists, and the caller must take the boxes' shared reference to the runtime state). Not
    /// for signal handlers (making a box allocates), though the count itself is one atomic
    /// increment.
    #[inline]
    pub(crate) fn box_made(&self) -> usize {
        // Relaxed: as for `Arc::clone`: the maker holds a reference of its own (a runtime
        // handle, or the counted box it clones) while it counts, so the state cannot go away
        // under the increment.
        self.boxes.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether some shard's list holds a box (a snapshot; stashed boxes are not looked at).
    /// Safe anywhere.
    pub(crate) fn any_queued(&self) -> bool {
        // Relaxed: a heuristic (makers of boxes deciding whether to help).
        self.shards()
            .iter()
            .any(|s| !s.head.load(Ordering::Relaxed).is_null())
    }

    /// Uncounts `n` boxes that are gone (destroyed, or handed over by a walk); true if they
    /// were the last, when the caller must give the shared reference back. Safe anywhere.
    #[inline]
    pub(crate) fn boxes_gone(&self, n: usize) -> bool {
        // AcqRel, as for an `Arc`'s decrement: Release, so that this thread's accesses to the
        // state happen before the decrement of whoever finds the count at zero; Acquire for
        // that thread, which then gives back the strong reference (whose last decrement frees
        // the state, and synchronises with the earlier decrements of the strong count only).
        n > 0 && self.boxes.fetch_sub(n, Ordering::AcqRel) == n
    }

    /// Pushes `node` onto this CPU's list of `lists`, rings `bell`, links the node, then makes
    /// the ring's wake-up syscall if it needs one (module docs, steps 2-6). Lock-free,
    /// allocation-free, never retried: safe in restricted context.
    ///
    /// Raw pointers, not references: the lists and the doorbell are part of the runtime state,
    /// which the node keeps alive only until it is linked (a reference argument would claim them
    /// for the whole call). The path that rings and the one for a CPU past the shard count are
    /// out of line and end the push themselves, so the common one saves no registers.
    ///
    /// # Safety
    /// - `node` points to the `Link` at the start of a live owned-box allocation whose `destroy`
    ///   frees it, made by [`Link::new`] for `lists`, never pushed before; the caller owns it
    ///   and gives that ownership up to the list (and so to whichever drainer takes it).
    /// - `lists` and `bell` are the lists and doorbell of one runtime state, which the node,
    ///   counted there, keeps alive until it is linked.
    #[inline]
    pub(crate) unsafe fn push(
        lists: *const OwnedLists,
        bell: *const Doorbell,
        node: NonNull<Link>,
        grace: bool,
    ) {
        let cpu = current_cpu();
        // SAFETY: the lists are alive while our node is unlinked (contract); a read of the
        // slice pointer's length, no reference made.
        let shards = unsafe { (*lists).shards.len() };
        if cpu < shards {
            // SAFETY: forwarded contract; `cpu` is below the shard count.
            unsafe { Self::push_onto(lists, bell, node, grace, cpu) }
        } else {
            // SAFETY: forwarded contract.
            unsafe { Self::push_beyond(lists, bell, node, grace, cpu, shards) }
        }
    }

    /// [`push`](Self::push) for a CPU number at or past the shard count (or none).
    ///
    /// # Safety
    /// [`push`](Self::push)'s; `shards` is the lists' shard count.
    #[cold]
    #[inline(never)]
    unsafe fn push_beyond(
        lists: *const OwnedLists,
        bell: *const Doorbell,
        node: NonNull<Link>,
        grace: bool,
        cpu: usize,
        shards: usize,
    ) {
        // SAFETY: forwarded contract; `shard_beyond` answers below `shards`.
        unsafe { Self::push_onto(lists, bell, node, grace, shard_beyond(cpu, shards)) }
    }

    /// [`push`](Self::push) onto `shard`.
    ///
    /// # Safety
    /// [`push`](Self::push)'s; `shard` is below the lists' shard count.
    #[inline(always)]
    unsafe fn push_onto(
        lists: *const OwnedLists,
        bell: *const Doorbell,
        node: NonNull<Link>,
        grace: bool,
        shard: usize,
    ) {
        let (word, quiet) = {
            // SAFETY: alive while our node is unlinked (contract), and these references end
            // before the link.
            let (lists, bell) = unsafe { (&*lists, &*bell) };
            debug_assert!(shard < lists.shards.len());
            // SAFETY: the caller owns the live node (contract).
            let first = unsafe { node.as_ref() }.shards;
            debug_assert_eq!(first, lists.shards.cast());
            // SAFETY: the node's `shards` is these lists' (`Link::new` took it from them:
            // contract), and `shard` is below their count, so the element is in the slice
            // (live: see `shards`).
            let s = unsafe { &*first.as_ptr().add(shard) };
            let swap = || {
                // AcqRel: Release publishes the node (and the value after it) to the taker's
                // Acquire swap; Acquire orders a push onto an empty list after the take that
                // emptied it.
                let older = s.head.swap(node.as_ptr(), Ordering::AcqRel);
                #[cfg(loom)]
                model_interrupt();
                older
            };
            // The two modes apart, so that the immediate one (the default) tests nothing it
            // does not need.
            let (older, quiet) = if lists.counted {
                // Before the push, so that a walk's decrement never underflows. Relaxed: a
                // heuristic for the lazy high watermark (module docs).
                let before = s.len.fetch_add(1, Ordering::Relaxed);
                let older = swap();
                (older, bell.quiet_after_push(before))
            } else {
                let older = swap();
                (older, bell.quiet_after_push_immediate(older.is_null()))
            };
            let word = if grace {
                older.map_addr(|a| a | GRACE)
            } else {
                older
            };
            (word, quiet)
        };
        if quiet {
            // SAFETY: our node, pushed just now and not linked.
            unsafe { link(node, word, None) };
        } else {
            // SAFETY: as above; the doorbell is alive while our node is unlinked (contract).
            unsafe { ring_and_link(bell, node, word) };
        }
    }
    /// Takes every shard's stash and list and hands each linked node (oldest first per list) to
    /// `f` as a payload (`obj` is the node, `dtor` its destroy function, `grace` its flag), which
    /// then owns it: it must destroy it, or keep it for later, exactly once. Nodes found
    /// unlinked are stashed for a later call. Returns the number of nodes handed over. Ordinary
    /// context (the drainer's).
    pub(crate) fn take_all(&self, mut f: impl FnMut(Payload)) -> usize {
        let mut total = 0;
        for (shard, (s, stash)) in self.shards().iter().zip(self.stashes()).enumerate() {
            let mut n = 0;
            // Stalled nodes first: what they lead to is older than anything in the list. (The
            // stash is last in, first out: of two stalled chains, the newer runs first.)
            // Relaxed: a cheap look (module docs).
            if !stash.load(Ordering::Relaxed).is_null() {
                // Acquire: pairs with the stalling drainers' Release CAS.
                let mut stalled = stash.swap(ptr::null_mut(), Ordering::Acquire);
                while let Some(node) = NonNull::new(stalled) {
                    // SAFETY: our stash take made the node ours, so it is live.
                    let link = unsafe { node.as_ref() };
                    // SAFETY: a plain read of a node we own: its stasher wrote `stash_next`
                    // before its Release CAS, which our Acquire swap synchronised with.
                    stalled = link.stash_next.with(|p| unsafe { *p });
                    // SAFETY: a stalled node we own (above), pushed and not yet walked.
                    n += unsafe { self.walk(shard, node.as_ptr(), true, &mut f) };
                }
            }
            // Relaxed: a cheap look first, so an idle cycle writes nothing; a node pushed after
            // this load is found by the next cycle, which its ring asks for.
            if !s.head.load(Ordering::Relaxed).is_null() {
                // AcqRel: see the module docs.
                let top = s.head.swap(ptr::null_mut(), Ordering::AcqRel);
                // SAFETY: our take made the chain ours.
                n += unsafe { self.walk(shard, top, false, &mut f) };
            }
            if n > 0 && self.counted {
                // Relaxed: the heuristic counter (module docs).
                s.len.fetch_sub(n, Ordering::Relaxed);
            }
            total += n;
        }
        if total > 0 {
            // Relaxed: a statistic.
            self.taken.fetch_add(total as u64, Ordering::Relaxed);
        }
        total
    }

    /// Walks a chain from `top` (newest first) to its end or to the first node still unlinked,
    /// which it stashes; hands the nodes before that to `f`, oldest first. Returns how many.
    /// `stashed`: `top` is a stalled node taken from the stash (the statistics count a node
    /// stashed again as the same stall).
    ///
    /// # Safety
    /// The chain from `top` (null: empty) is the caller's: taken from a shard's list, or a
    /// stalled node taken from `shard`'s stash. Every node in it was pushed on `shard`.
    unsafe fn walk(
        &self,
        shard: usize,
        top: *mut Link,
        stashed: bool,
        f: &mut impl FnMut(Payload),
    ) -> usize {
        // First pass: reverse the linked part in place (the nodes are ours: so are their links,
        // once linked).
        let mut newer: *mut Link = ptr::null_mut();
        let mut cur = top;
        let mut n = 0;
        while let Some(node) = NonNull::new(cur) {
            // SAFETY: `cur` was pushed, so it is a live node, and it is ours (contract); the
            // take's (or stash take's) Acquire made its fields visible.
            let link = unsafe { node.as_ref() };
            // Acquire: pairs with the link store (module docs).
            let word = link.next.load(Ordering::Acquire);
            let again = stashed && cur == top;
            if word.addr() == UNLINKED {
                if !again {
                    // Relaxed: statistics.
                    self.stalls.fetch_add(1, Ordering::Relaxed);
                    self.stalled.fetch_add(1, Ordering::Relaxed);
                }
                // SAFETY: a stalled node of `shard`, ours, and not yet walked.
                unsafe { self.stash(shard, node) };
                break;
            }
            if again {
                // Relaxed: a statistic (a stalled node, linked since).
                self.stalled.fetch_sub(1, Ordering::Relaxed);
            }
            // Relaxed: our own node (module docs); the grace bit stays.
            link.next.store(
                newer.map_addr(|a| a | (word.addr() & GRACE)),
                Ordering::Relaxed,
            );
            newer = cur;
            cur = word.map_addr(|a| a & !GRACE);
            n += 1;
        }
        // Second pass: oldest first.
        let mut cur = newer;
        while let Some(node) = NonNull::new(cur) {
            // SAFETY: ours and linked (first pass). Read everything before `f`, which may free it.
            let link = unsafe { node.as_ref() };
            // Relaxed: our own store in the first pass.
            let word = link.next.load(Ordering::Relaxed);
            f(Payload {
                obj: cur.cast(),
                dtor: link.destroy,
                grace: word.addr() & GRACE != 0,
            });
            cur = word.map_addr(|a| a & !GRACE);
        }
        n
    }

    /// Pushes a stalled node onto `shard`'s stash.
    ///
    /// # Safety
    /// `node` is a pushed node of `shard`, still unlinked, owned by the caller (reached by its
    /// take), who gives it up to the stash.
    unsafe fn stash(&self, shard: usize, node: NonNull<Link>) {
        let stash = &self.stashes()[shard];
        // SAFETY: ours (contract); `stash_next` is only touched by drainers that own the node.
        let link = unsafe { node.as_ref() };
        // Relaxed: only compared; the CAS validates it and it is never dereferenced here.
        let mut cur = stash.load(Ordering::Relaxed);
        loop {
            // SAFETY: ours until the CAS below publishes it.
            link.stash_next.with_mut(|p| unsafe { *p = cur });
            // Release: publishes `stash_next` to the stash taker's Acquire swap. Relaxed on
            // failure: the value is only compared again.
            match stash.compare_exchange_weak(
                cur,
                node.as_ptr(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Whether a stash holds a node still waiting for its pusher to link it (a snapshot): the
    /// drainer must come back by itself. Safe anywhere.
    pub(crate) fn stalled(&self) -> bool {
        // Relaxed: a snapshot; see the module docs.
        self.stashes()
            .iter()
            .any(|s| !s.load(Ordering::Relaxed).is_null())
    }

    /// Whether every shard's list is empty (a snapshot; tests only: stashes not included).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn lists_empty(&self) -> bool {
        // Relaxed: a snapshot.
        self.shards()
            .iter()
            .all(|s| s.head.load(Ordering::Relaxed).is_null())
    }

    /// Boxes counted now (a snapshot). Safe anywhere.
    pub(crate) fn boxes(&self) -> usize {
        // Relaxed: a statistic.
        self.boxes.load(Ordering::Relaxed)
    }

    /// Nodes handed over by drainers so far (a snapshot). Safe anywhere.
    pub(crate) fn taken(&self) -> u64 {
        // Relaxed: a statistic.
        self.taken.load(Ordering::Relaxed)
    }

    /// Nodes walks found unlinked, each counted once (a snapshot). Safe anywhere.
    pub(crate) fn stalls(&self) -> u64 {
        // Relaxed: a statistic.
        self.stalls.load(Ordering::Relaxed)
    }

    /// Stalled nodes in the stashes now (a snapshot). Safe anywhere.
    pub(crate) fn stalled_now(&self) -> usize {
        // Relaxed: a statistic.
        self.stalled.load(Ordering::Relaxed)
    }
}

/// Rings `bell` for a push that needs it (step 4), then links the node and makes the ring's
/// wake-up syscall, if any (steps 5 and 6). Out of line: only the first push of a burst (in lazy
/// mode, the one that reaches the high watermark) gets here.
///
/// # Safety
/// `node` was pushed just now by the caller, who has not linked it; `bell` is the doorbell of
/// the runtime state the node is counted in (alive while it is unlinked).
#[cold]
#[inline(never)]
unsafe fn ring_and_link(bell: *const Doorbell, node: NonNull<Link>, word: *mut Link) {
    // SAFETY: alive while our node is unlinked (contract); the reference ends here.
    let wakeup = unsafe { &*bell }.ring_deferred();
    // SAFETY: forwarded contract.
    unsafe { link(node, word, wakeup) };
}

/// Links a node pushed just now (step 5): stores `word`, the head its push replaced (with the
/// grace bit), into its `next`: the pusher's last access to anything of the runtime's. Then
/// makes the ring's wake-up syscall, if it needs one (step 6), which uses an address only. A
/// drainer may destroy and uncount the node, and with it what kept the runtime state alive, the
/// moment the store lands, so the caller holds no reference into that state across the call.
/// Async-signal-safe.
///
/// # Safety
/// `node` was pushed just now by the caller, who links it once, here.
#[inline(always)]
unsafe fn link(node: NonNull<Link>, word: *mut Link, wakeup: Option<Wakeup>) {
    #[cfg(all(test, not(loom)))]
    pause_if_armed(PauseAt::BeforeLink);
    // SAFETY: an unlinked node is never destroyed (no walk hands it over), so it is live; only
    // the atomic is borrowed, for the store.
    let next = unsafe { &(*node.as_ptr()).next };
    // Release: pairs with the walk's Acquire load of `next` (module docs). Our last access.
    next.store(word, Ordering::Release);
    #[cfg(all(test, not(loom)))]
    pause_if_armed(PauseAt::AfterLink);
    // Only now: a drainer woken before the link could find the node unlinked (and, woken on
    // this CPU, keep us from linking it). The syscall needs only an address (`Wakeup`).
    if let Some(wakeup) = wakeup {
        wakeup.make();
    }
}

impl Drop for OwnedLists {
    fn drop(&mut self) {
        // The runtime's last cycles (`Drop for Inner`) take every list; and while any box
        // exists (a node on a list or in a stash included) the boxes hold a strong reference to
        // the runtime state, so none can be left in a runtime being dropped.
        debug_assert!(
            self.shards()
                .iter()
                .all(|s| s.head.load(Ordering::Relaxed).is_null())
                && !self.stalled()
                && self.boxes.load(Ordering::Relaxed) == 0,
            "owned boxes left in a dropped runtime's lists"
        );
        // SAFETY: from `Box::into_raw` in `new`, freed once, here; the fork seal that points
        // into them was unregistered first thing in the runtime state's `Drop`, so nothing
        // uses them any more (the seal itself may outlive this, unused, until its last `Arc`).
        unsafe {
            drop(Box::from_raw(self.shards.as_ptr()));
            drop(Box::from_raw(self.stashes.as_ptr()));
        }
    }
}

#[path = "owned_list_fork.rs"]
mod fork_seal;
pub(crate) use fork_seal::ForkSeal;

#[cfg(all(test, not(loom)))]
#[path = "owned_list_tests.rs"]
mod tests;
