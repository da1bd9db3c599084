//! Types that hold slots of themselves — a linked list whose nodes hold a `RefSlot<Box<Node>>`,
//! a tree of maps, a chain of `Owned` boxes — compile, are `Send` and `Sync`, and tear down from
//! a signal handler: the handler empties the head, the drainer destroys every node, none of
//! them in the handler, and none one inside another: a list of 100 000 nodes does not overflow
//! the drainer's stack. A list in `ReadSlot`s goes as fast: one drain destroys it all, without a
//! grace period per node (a slot being dropped has no readers left).
//!
//! The handler is installed on one signal for the whole file, so the file holds one signal test.

mod common;

use common::lists::push_front;
use common::{NMI, install_handler, restore_handler, this_thread, wait_until};
use nix::sys::pthread::pthread_kill;
use sigdrop::{
    Drainer, KptrArray, KptrHash, Owned, ReadSlot, RefSlot, Runtime, Shared, restricted,
};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Long enough that destroying the nodes one inside another would overflow a thread's stack.
const NODES: usize = 100_000;

static DESTROYED: AtomicUsize = AtomicUsize::new(0);
static DTOR_IN_RESTRICTED: AtomicUsize = AtomicUsize::new(0);
/// The sum of the destroyed nodes' values: with the count, each node destroyed once.
static VALUES_DESTROYED: AtomicUsize = AtomicUsize::new(0);

/// A singly linked list node: its successor lives in a slot of its own.
struct Node {
    value: usize,
    next: RefSlot<Box<Node>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if restricted::is_active() {
            DTOR_IN_RESTRICTED.fetch_add(1, Ordering::Relaxed);
        }
        VALUES_DESTROYED.fetch_add(self.value, Ordering::Relaxed);
        DESTROYED.fetch_add(1, Ordering::Relaxed);
    }
}

/// More shapes that hold sigdrop's containers of themselves.
#[allow(dead_code)]
struct TreeOfMaps {
    children: KptrHash<u64, Box<TreeOfMaps>>,
}
#[allow(dead_code)]
struct TreeOfArrays {
    children: KptrArray<Box<TreeOfArrays>>,
}
#[allow(dead_code)]
struct SharedChain {
    next: ReadSlot<Shared<SharedChain>>,
}
#[allow(dead_code)]
struct ArcChain {
    next: ReadSlot<Arc<ArcChain>>,
}
#[allow(dead_code)]
struct OwnedChain {
    next: RefSlot<Owned<OwnedChain>>,
}

fn send_sync<T: Send + Sync>() {}

#[test]
fn recursive_types_are_send_and_sync_and_so_are_slots_of_unshared_objects() {
    send_sync::<Node>();
    send_sync::<TreeOfMaps>();
    send_sync::<TreeOfArrays>();
    send_sync::<SharedChain>();
    send_sync::<ArcChain>();
    send_sync::<OwnedChain>();
    // Shared access to a slot only moves its object in and out whole: `Send` objects suffice.
    send_sync::<RefSlot<Box<Cell<u32>>>>();
    send_sync::<ReadSlot<Box<Cell<u32>>>>();
    send_sync::<RefSlot<Owned<Cell<u32>>>>();
    send_sync::<KptrHash<u64, Box<Cell<u32>>>>();
    send_sync::<KptrArray<Box<Cell<u32>>>>();
}

struct State {
    head: RefSlot<Box<Node>>,
}

static STATE: OnceLock<State> = OnceLock::new();

extern "C" fn on_nmi(_: libc::c_int) {
    let _nmi = restricted::enter();
    if let Some(st) = STATE.get() {
        st.head.clear(); // the first node goes to the drainer, and the rest with it
    }
}

#[test]
fn a_linked_list_torn_down_in_a_handler_is_destroyed_by_the_drainer() {
    let rt = Runtime::new().unwrap();
    let head: RefSlot<Box<Node>> = RefSlot::new(&rt);
    // Built back to front: each new node takes the list so far as its successor.
    for value in (0..NODES).rev() {
        let node = Box::new(Node {
            value,
            next: RefSlot::new(&rt),
        });
        push_front(&head, node, |n| &n.next);
    }
    assert!(STATE.set(State { head }).is_ok());
    let st = STATE.get().unwrap();
    assert_eq!(rt.stats().refs, NODES, "one installed object per node");

    // Touch the restricted-context thread-local before any handler can run (see restricted.rs).
    assert!(!restricted::is_active());
    let previous = install_handler(NMI, on_nmi);
    // The handler has run when `pthread_kill` to this thread returns.
    pthread_kill(this_thread(), NMI).expect("pthread_kill self");
    restore_handler(NMI, &previous);
    assert!(st.head.is_empty());
    wait_until(
        Duration::from_secs(20),
        "every node destroyed",
        || {
            format!(
                "destroyed {} {:?}",
                DESTROYED.load(Ordering::Relaxed),
                rt.stats()
            )
        },
        || DESTROYED.load(Ordering::Relaxed) == NODES,
    );
    assert_eq!(
        VALUES_DESTROYED.load(Ordering::Relaxed),
        NODES * (NODES - 1) / 2
    );
    assert_eq!(DTOR_IN_RESTRICTED.load(Ordering::Relaxed), 0);
    let s = rt.stats();
    assert_eq!((s.refs, s.emergency, s.leaked), (0, 0, 0), "{s:?}");
}

/// A list node whose successor readers may follow.
struct ReadNode {
    next: ReadSlot<Box<ReadNode>>,
}

static READ_NODES_DESTROYED: AtomicUsize = AtomicUsize::new(0);

impl Drop for ReadNode {
    fn drop(&mut self) {
        READ_NODES_DESTROYED.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn one_drain_destroys_a_whole_list_of_readable_slots() {
    let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
    let head: ReadSlot<Box<ReadNode>> = ReadSlot::new(&rt);
    for _ in 0..NODES {
        let node = Box::new(ReadNode {
            next: ReadSlot::new(&rt),
        });
        push_front(&head, node, |n| &n.next);
    }
    let guard = sigdrop::read::enter();
    let mut length = 0;
    let mut cursor = head.load(&guard);
    while let Some(node) = cursor {
        length += 1;
        cursor = node.next.load(&guard);
    }
    drop(guard);
    assert_eq!(length, NODES);
    head.clear(); // the head waits for a grace period; the rest of the list does not
    assert_eq!(READ_NODES_DESTROYED.load(Ordering::Relaxed), 0);
    rt.drain_and_wait().unwrap();
    assert_eq!(READ_NODES_DESTROYED.load(Ordering::Relaxed), NODES);
    let s = rt.stats();
    assert_eq!((s.refs, s.pending), (0, 0), "{s:?}");
}

/// Leaves a wide node holds before its successor: more than a thread can put aside at once.
const LEAVES: usize = 40;
const WIDE_NODES: usize = 20_000;

/// A list node that holds many objects of its own in slots, then its successor.
struct WideNode {
    _leaves: KptrArray<Box<u64>>,
    next: RefSlot<Box<WideNode>>,
}

static WIDE_NODES_DESTROYED: AtomicUsize = AtomicUsize::new(0);

impl Drop for WideNode {
    fn drop(&mut self) {
        WIDE_NODES_DESTROYED.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_list_of_wide_nodes_is_destroyed_in_a_loop_too() {
    let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
    let head: RefSlot<Box<WideNode>> = RefSlot::new(&rt);
    for _ in 0..WIDE_NODES {
        let leaves = KptrArray::new(&rt, LEAVES).unwrap();
        for (i, leaf) in leaves.slots().iter().enumerate() {
            leaf.xchg(Some(Box::new(i as u64))).unwrap();
        }
        let node = Box::new(WideNode {
            _leaves: leaves,
            next: RefSlot::new(&rt),
        });
        push_front(&head, node, |n| &n.next);
    }
    let installed = rt.stats().refs;
    assert_eq!(installed, WIDE_NODES * (LEAVES + 1));
    let guard = restricted::enter();
    head.clear(); // in restricted context: the head goes to the drain below
    drop(guard);
    rt.drain_and_wait().unwrap();
    assert_eq!(WIDE_NODES_DESTROYED.load(Ordering::Relaxed), WIDE_NODES);
    let s = rt.stats();
    assert_eq!((s.refs, s.pending), (0, 0), "{s:?}");
}

/// A node that owns its successor directly, in an `Owned` box (no slot), or shares it.
struct BoxNode {
    _next: Option<Owned<BoxNode>>,
    _shared_next: Option<Shared<BoxNode>>,
}

static BOX_NODES_DESTROYED: AtomicUsize = AtomicUsize::new(0);

impl Drop for BoxNode {
    fn drop(&mut self) {
        BOX_NODES_DESTROYED.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn chains_of_owned_and_shared_boxes_are_destroyed_in_a_loop_too() {
    let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
    let mut owned: Option<Owned<BoxNode>> = None;
    let mut shared: Option<Shared<BoxNode>> = None;
    for _ in 0..NODES {
        owned = Some(Owned::new(
            &rt,
            BoxNode {
                _next: owned.take(),
                _shared_next: None,
            },
        ));
        shared = Some(Shared::new(
            &rt,
            BoxNode {
                _next: None,
                _shared_next: shared.take(),
            },
        ));
    }
    let guard = restricted::enter();
    drop(owned); // in restricted context: the first box goes to the drain below
    drop(shared);
    drop(guard);
    assert_eq!(BOX_NODES_DESTROYED.load(Ordering::Relaxed), 0);
    rt.drain_and_wait().unwrap();
    assert_eq!(BOX_NODES_DESTROYED.load(Ordering::Relaxed), 2 * NODES);
    assert_eq!(rt.stats().owned_alive, 0);
}

/// A list node for the ordinary-context teardown below.
struct PlainNode {
    next: RefSlot<Box<PlainNode>>,
    _boxed_next: Option<Owned<PlainNode>>,
}

static PLAIN_NODES_DESTROYED: AtomicUsize = AtomicUsize::new(0);

impl Drop for PlainNode {
    fn drop(&mut self) {
        PLAIN_NODES_DESTROYED.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn lists_torn_down_in_ordinary_context_are_destroyed_in_a_loop_at_once() {
    let rt = Runtime::builder().drainer(Drainer::Manual).build().unwrap();
    let head: RefSlot<Box<PlainNode>> = RefSlot::new(&rt);
    let mut boxed: Option<Owned<PlainNode>> = None;
    for _ in 0..NODES {
        let node = Box::new(PlainNode {
            next: RefSlot::new(&rt),
            _boxed_next: None,
        });
        push_front(&head, node, |n| &n.next);
        boxed = Some(Owned::new(
            &rt,
            PlainNode {
                next: RefSlot::new(&rt),
                _boxed_next: boxed.take(),
            },
        ));
    }
    // Ordinary context, Policy::Auto: destroyed by this call, on this thread's stack.
    head.clear();
    assert_eq!(PLAIN_NODES_DESTROYED.load(Ordering::Relaxed), NODES);
    drop(boxed);
    assert_eq!(PLAIN_NODES_DESTROYED.load(Ordering::Relaxed), 2 * NODES);
    let s = rt.stats();
    assert_eq!((s.refs, s.pending, s.owned_alive), (0, 0, 0), "{s:?}");
}
