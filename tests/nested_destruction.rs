//! What a destructor that sigdrop runs may rely on about the objects it lets go of itself:
//!
//! - clearing a slot (or dropping one) destroys its object before the call returns, as it does
//!   anywhere in ordinary context, as long as the structure is not deeper than the levels
//!   sigdrop destroys inline (a deep one is destroyed in a loop after the outermost destructor);
//! - a `drain_and_wait` it calls destroys what it drains, and what those objects hold, however
//!   deep, before it returns;
//! - a destructor that panics deep in a structure leaves nothing of it behind, and the panic
//!   comes out of the call that started the teardown, as from any inline destructor;
//! - an `Owned` box it lets go of through a slot of another runtime keeps its own runtime's
//!   policy;
//! - under `Policy::AlwaysDefer`, where each level of a structure is retired by the destructor
//!   of the level above, the drainer thread goes on to the next level at once, not at its next
//!   wake-up;
//! - a long, wide structure held by a thread-local is torn down in bounded stack when its
//!   thread exits, also after sigdrop's own thread-locals on that thread are gone.

mod common;

use common::lists::push_front;
use common::wait_until;
use sigdrop::{Drainer, Owned, Policy, RefSlot, Runtime, Wake, restricted};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Sets its flag when destroyed.
struct Flag(Arc<AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Clears its child's slot in its destructor, then records whether the child was gone.
struct ClearsChild {
    child: RefSlot<Box<Flag>>,
    child_gone: Arc<AtomicBool>,
    /// 1: the child was gone when `clear` returned; 2: it was not.
    seen: Arc<AtomicUsize>,
}

impl Drop for ClearsChild {
    fn drop(&mut self) {
        self.child.clear();
        let gone = self.child_gone.load(Ordering::SeqCst);
        self.seen.store(if gone { 1 } else { 2 }, Ordering::SeqCst);
    }
}

fn manual() -> Runtime {
    Runtime::builder().drainer(Drainer::Manual).build().unwrap()
}

#[test]
fn a_slot_cleared_in_a_drained_destructor_has_destroyed_its_object_when_clear_returns() {
    let rt = manual();
    let gone = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let node = Box::new(ClearsChild {
        child: RefSlot::new(&rt),
        child_gone: gone.clone(),
        seen: seen.clone(),
    });
    node.child.xchg(Some(Box::new(Flag(gone.clone())))).unwrap();
    let holder = RefSlot::new(&rt);
    holder.xchg(Some(node)).unwrap();
    {
        let _handler = restricted::enter();
        holder.clear(); // the node goes to the drain below
    }
    assert_eq!(rt.drain().unwrap(), 1);
    assert_eq!(seen.load(Ordering::SeqCst), 1, "the child outlived clear()");
}

/// A list node; the list's nodes count their destructions in `gone`.
struct ListNode {
    next: RefSlot<Box<ListNode>>,
    gone: Arc<AtomicUsize>,
    /// Panics in its destructor (after counting itself).
    panics: bool,
}

impl Drop for ListNode {
    fn drop(&mut self) {
        self.gone.fetch_add(1, Ordering::SeqCst);
        if self.panics {
            panic!("a list node's destructor");
        }
    }
}

/// A list of `len` nodes in slots of `rt`, deep enough that most of it is destroyed in a loop;
/// node `panics_at` panics in its destructor.
fn list(
    rt: &Runtime,
    len: usize,
    gone: &Arc<AtomicUsize>,
    panics_at: usize,
) -> RefSlot<Box<ListNode>> {
    let head: RefSlot<Box<ListNode>> = RefSlot::new(rt);
    for i in (0..len).rev() {
        let node = Box::new(ListNode {
            next: RefSlot::new(rt),
            gone: gone.clone(),
            panics: i == panics_at,
        });
        push_front(&head, node, |n| &n.next);
    }
    head
}

const LIST: usize = 100;

/// Drains `other` in its destructor and records how many list nodes were gone by then.
struct DrainsOther {
    other: Runtime,
    gone: Arc<AtomicUsize>,
    seen: Arc<AtomicUsize>,
}

impl Drop for DrainsOther {
    fn drop(&mut self) {
        self.other.drain_and_wait().unwrap();
        self.seen
            .store(self.gone.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

#[test]
fn a_drain_and_wait_inside_a_destructor_destroys_what_it_drains_whole() {
    let (a, b) = (manual(), manual());
    let gone = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(AtomicUsize::new(0));
    let head = list(&b, LIST, &gone, usize::MAX);
    let drains = RefSlot::new(&a);
    drains
        .xchg(Some(Box::new(DrainsOther {
            other: b.clone(),
            gone: gone.clone(),
            seen: seen.clone(),
        })))
        .unwrap();
    {
        let _handler = restricted::enter();
        head.clear(); // queued in b
        drains.clear(); // queued in a
    }
    assert_eq!(a.drain().unwrap(), 1);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        LIST,
        "b's drain_and_wait returned with nodes of the list alive"
    );
}

#[test]
fn a_destructor_that_panics_deep_in_a_list_leaves_no_node_behind_and_the_thread_as_it_was() {
    let rt = manual();
    let gone = Arc::new(AtomicUsize::new(0));
    let head = list(&rt, LIST, &gone, LIST / 2);
    let cleared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| head.clear()));
    assert!(
        cleared.is_err(),
        "the panic comes out of clear, as from an inline destructor"
    );
    assert_eq!(gone.load(Ordering::SeqCst), LIST, "every node destroyed");
    // The thread is back at its outermost level: a new list goes whole too.
    let again = Arc::new(AtomicUsize::new(0));
    let head = list(&rt, 2 * LIST, &again, usize::MAX);
    head.clear();
    assert_eq!(again.load(Ordering::SeqCst), 2 * LIST);
}

/// Counts its destructions.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Holds an `Owned` box in a slot of another runtime.
struct HoldsOwned {
    _child: RefSlot<Owned<Counted>>,
}

#[test]
fn an_owned_box_let_go_of_in_a_destructor_keeps_its_own_runtimes_policy() {
    let auto = manual();
    let always_defer = Runtime::builder()
        .drainer(Drainer::Manual)
        .policy(Policy::AlwaysDefer)
        .build()
        .unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let parent = Box::new(HoldsOwned {
        _child: RefSlot::new(&auto),
    });
    parent
        ._child
        .xchg(Some(Owned::new(&always_defer, Counted(drops.clone()))))
        .unwrap();
    let held = RefSlot::new(&auto);
    held.xchg(Some(parent)).unwrap();
    {
        let _handler = restricted::enter();
        held.clear();
    }
    assert_eq!(auto.drain().unwrap(), 1);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "destroyed inline");
    assert_eq!(always_defer.stats().pending, 1);
    always_defer.drain_and_wait().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn a_list_torn_down_under_always_defer_goes_on_to_each_level_without_waiting() {
    // Each node's destructor, on the drainer thread, retires the next node into a batch that no
    // other producer fills or closes. With a lazy wake of 10 s, a drainer thread that left that
    // batch to the cycle after its next sleep took 10 s per node (a poll interval, 1 ms, per
    // node with the default immediate wake: a second per thousand nodes).
    const NODES: usize = 200;
    let rt = Runtime::builder()
        .policy(Policy::AlwaysDefer)
        .wake(Wake::Lazy {
            period: Duration::from_secs(10),
            high_watermark: 1,
        })
        .build()
        .unwrap();
    let gone = Arc::new(AtomicUsize::new(0));
    let head = list(&rt, NODES, &gone, usize::MAX);
    {
        // The first object queued on a CPU reaches the high watermark: it wakes the drainer.
        let _nmi = restricted::enter();
        head.clear();
    }
    wait_until(
        Duration::from_secs(30),
        "every node of the list to be destroyed",
        || {
            format!(
                "{} of {NODES}: {:?}",
                gone.load(Ordering::SeqCst),
                rt.stats()
            )
        },
        || gone.load(Ordering::SeqCst) == NODES,
    );
}

/// A list node with leaves: tearing one down puts its leaves aside, past the fixed places.
struct WideNode {
    _leaves: Vec<Owned<Counted>>,
    _next: Option<Owned<WideNode>>,
    stack: Arc<StackSpan>,
}

/// The lowest and highest stack addresses seen by `WideNode` destructors.
struct StackSpan {
    low: AtomicUsize,
    high: AtomicUsize,
}

impl Drop for WideNode {
    fn drop(&mut self) {
        // The address of a local: where this destructor's frame is.
        let marker = 0u8;
        let sp = std::hint::black_box(&raw const marker).addr();
        self.stack.low.fetch_min(sp, Ordering::Relaxed);
        self.stack.high.fetch_max(sp, Ordering::Relaxed);
    }
}

fn wide_list(
    rt: &Runtime,
    nodes: usize,
    leaves: usize,
    drops: &Arc<AtomicUsize>,
    stack: &Arc<StackSpan>,
) -> Option<Owned<WideNode>> {
    let mut head = None;
    for _ in 0..nodes {
        let node = WideNode {
            _leaves: (0..leaves)
                .map(|_| Owned::new(rt, Counted(drops.clone())))
                .collect(),
            _next: head.take(),
            stack: stack.clone(),
        };
        head = Some(Owned::new(rt, node));
    }
    head
}

std::thread_local! {
    static HELD_AT_EXIT: std::cell::RefCell<Option<Owned<WideNode>>> =
        const { std::cell::RefCell::new(None) };
}

#[test]
fn a_wide_list_held_by_a_thread_local_is_torn_down_in_bounded_stack_at_thread_exit() {
    // 3 000 nodes of 40 leaves: destroyed inline regardless of depth (what an exiting thread
    // did once sigdrop's overflow vector was gone), they need about 500 KiB of stack (and
    // 20 000 overflowed it); in the loop that bounds nesting, a few kilobytes.
    const NODES: usize = 3_000;
    const LEAVES: usize = 40;
    let rt = manual();
    for warm_first in [true, false] {
        let drops = Arc::new(AtomicUsize::new(0));
        let stack = Arc::new(StackSpan {
            low: AtomicUsize::new(usize::MAX),
            high: AtomicUsize::new(0),
        });
        let thread = {
            let (rt, drops, stack) = (rt.clone(), drops.clone(), stack.clone());
            std::thread::Builder::new()
                .stack_size(1 << 20)
                .spawn(move || {
                    // This thread-local's destructor is registered first, so it runs last:
                    // after the ones sigdrop set up during the wide teardown below.
                    HELD_AT_EXIT.with(|held| *held.borrow_mut() = None);
                    if warm_first {
                        let warm = Arc::new(AtomicUsize::new(0));
                        drop(wide_list(&rt, 64, LEAVES, &warm, &stack));
                        assert_eq!(warm.load(Ordering::SeqCst), 64 * LEAVES);
                    }
                    let list = wide_list(&rt, NODES, LEAVES, &drops, &stack);
                    stack.low.store(usize::MAX, Ordering::Relaxed);
                    stack.high.store(0, Ordering::Relaxed);
                    HELD_AT_EXIT.with(|held| *held.borrow_mut() = list);
                })
                .unwrap()
        };
        thread.join().expect("the thread holding the list");
        assert_eq!(
            drops.load(Ordering::SeqCst),
            NODES * LEAVES,
            "warm first: {warm_first}"
        );
        let span = stack.high.load(Ordering::Relaxed) - stack.low.load(Ordering::Relaxed);
        assert!(
            span < 256 << 10,
            "warm first: {warm_first}: node destructors spanned {span} bytes of stack"
        );
    }
    assert_eq!(rt.stats().pending, 0);
}
