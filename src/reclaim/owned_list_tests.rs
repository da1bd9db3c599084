//! Owned lists with a push caught between its ring and its link (a thread preempted there),
//! with real threads: the drain that finds the node unlinked stashes it and runs nothing it
//! cannot reach; the node and everything older run once it is linked — by a later drain, by
//! a drainer thread that polls for it, or by a shutdown that waits for it. And a push caught
//! right after its link, while the runtime goes away: it must touch nothing of it any more
//! (the sanitizer run, `scripts/asan.sh`, checks that with these tests). And a real `fork`
//! while another thread is caught before its link: the child seals and runs that box; and one
//! from a handler that interrupted a push on the forking thread itself: the child must leave
//! that box to the push's own link.

use super::{PauseAt, pause_next_push};
use crate::{Drainer, Owned, Runtime, restricted};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records the order values are destroyed in; fails if one is destroyed in restricted context.
struct Logged(u32, Arc<Mutex<Vec<u32>>>);

impl Drop for Logged {
    fn drop(&mut self) {
        assert!(!restricted::is_active(), "destroyed in restricted context");
        self.1.lock().unwrap().push(self.0);
    }
}

/// One shard, so that every thread's push lands on the same list.
fn one_shard(drainer: Drainer) -> Runtime {
    Runtime::builder()
        .shards(1)
        .headroom(0)
        .hysteresis(0)
        .drainer(drainer)
        .build()
        .unwrap()
}

/// Drops `boxed` in restricted context; `paused` runs in the middle of the push, after its
/// ring, before its link.
fn drop_paused(boxed: Owned<Logged>, paused: impl FnOnce() + Send + 'static) {
    pause_next_push(PauseAt::BeforeLink, Box::new(paused));
    let _nmi = restricted::enter();
    drop(boxed);
}

/// Waits (up to 10 s, then fails) until `done` says so.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::yield_now();
    }
}

#[test]
fn a_drain_runs_what_it_reaches_and_the_unlinked_box_with_what_is_older_once_linked() {
    let rt = Arc::new(one_shard(Drainer::Manual));
    let log = Arc::new(Mutex::new(Vec::new()));
    let older = Owned::new(&rt, Logged(1, log.clone()));
    let paused = Owned::new(&rt, Logged(2, log.clone()));
    let newer = Owned::new(&rt, Logged(3, log.clone()));
    {
        let _nmi = restricted::enter();
        drop(older);
    }
    let ran_while_paused = Arc::new(Mutex::new(None));
    {
        let (rt, ran) = (rt.clone(), ran_while_paused.clone());
        drop_paused(paused, move || {
            // Another CPU's handler pushes on top of the unlinked node, then a drain runs.
            std::thread::spawn(move || {
                {
                    let _nmi = restricted::enter();
                    drop(newer);
                }
                *ran.lock().unwrap() = Some(rt.drain().unwrap());
                assert!(rt.inner().owned_stalled(), "the unlinked node is stashed");
                // Found unlinked again: the same stall, counted once.
                assert_eq!(rt.drain().unwrap(), 0);
                let s = rt.stats();
                assert_eq!((s.owned_stalls, s.owned_stalled), (1, 1), "{s:?}");
            })
            .join()
            .unwrap();
        });
    }
    // The drain reached only the newer box: the paused one and the older one were behind it.
    assert_eq!(*ran_while_paused.lock().unwrap(), Some(1));
    assert_eq!(*log.lock().unwrap(), [3]);
    // Linked now: the next drain resumes from the stash, oldest first.
    assert_eq!(rt.drain().unwrap(), 2);
    assert_eq!(*log.lock().unwrap(), [3, 1, 2]);
    assert!(!rt.inner().owned_stalled());
    assert_eq!(rt.drain().unwrap(), 0);
    let s = rt.stats();
    assert_eq!(
        (s.owned, s.owned_stalls, s.owned_stalled),
        (3, 1, 0),
        "{s:?}"
    );
}

#[test]
fn the_drainer_thread_comes_back_for_a_box_it_found_unlinked() {
    // A fresh drainer: its first cycle finds nothing and it sleeps until rung.
    let rt = Arc::new(one_shard(Drainer::Thread));
    let log = Arc::new(Mutex::new(Vec::new()));
    let paused = Owned::new(&rt, Logged(1, log.clone()));
    let stashed = Arc::new(AtomicBool::new(false));
    {
        let (rt, stashed) = (rt.clone(), stashed.clone());
        drop_paused(paused, move || {
            // The push rang: the drainer takes the list and finds our node unlinked. If the
            // drainer was asleep by then, the ring's wake-up syscall waits for the link (after
            // this pause): make it here instead.
            rt.inner().wake_drainer();
            wait_until("the drainer stashes the unlinked box", || {
                rt.inner().owned_stalled()
            });
            // Stay preempted for longer than the drainer's few yields to us: from then on only
            // its own coming back (polling) can find the link.
            std::thread::sleep(Duration::from_millis(50));
            stashed.store(true, Ordering::SeqCst);
        });
    }
    assert!(stashed.load(Ordering::SeqCst));
    // Nobody rings for a link: the drainer must come back for it by itself.
    wait_until("the drainer runs the box", || {
        log.lock().unwrap().len() == 1
    });
    assert!(!rt.inner().owned_stalled());
}

#[test]
fn the_shutdown_waits_for_a_box_found_unlinked_and_runs_it() {
    let rt = one_shard(Drainer::Manual);
    let log = Arc::new(Mutex::new(Vec::new()));
    let older = Owned::new(&rt, Logged(1, log.clone()));
    let paused = Owned::new(&rt, Logged(2, log.clone()));
    {
        let _nmi = restricted::enter();
        drop(older);
    }
    let inner = rt.inner_arc().clone();
    let shutdown = Arc::new(Mutex::new(None));
    {
        let shutdown = shutdown.clone();
        drop_paused(paused, move || {
            // The last handle goes while our node is unlinked: its final drains stash it.
            *shutdown.lock().unwrap() = Some(std::thread::spawn(move || rt.shutdown()));
            wait_until("the shutdown's drain stashes the unlinked box", || {
                inner.owned_stalled()
            });
        });
    }
    let report = shutdown
        .lock()
        .unwrap()
        .take()
        .unwrap()
        .join()
        .unwrap()
        .expect("the last handle");
    assert_eq!(report.destroyed, 2, "{report:?}");
    assert_eq!(*log.lock().unwrap(), [1, 2]);
}

#[test]
fn a_push_touches_nothing_of_the_runtime_once_its_box_is_linked() {
    let rt = one_shard(Drainer::Manual);
    let log = Arc::new(Mutex::new(Vec::new()));
    let boxed = Owned::new(&rt, Logged(1, log.clone()));
    let state = Arc::downgrade(&std::sync::Arc::clone(rt.inner_arc()));
    pause_next_push(
        PauseAt::AfterLink,
        Box::new(move || {
            // The moment the box is linked, another thread destroys it (the box's reference to
            // the runtime state goes) and drops the last handle: the state is freed while the
            // push has not returned yet. Under AddressSanitizer, any access the push still made
            // to that state (a ring after the link, say) is a reported use after free.
            std::thread::spawn(move || {
                assert_eq!(rt.drain().unwrap(), 1);
                drop(rt);
            })
            .join()
            .unwrap();
            // Gone; and with this last weak reference, its memory is freed too.
            assert!(
                state.upgrade().is_none(),
                "the runtime state outlived its references"
            );
            drop(state);
        }),
    );
    {
        let _nmi = restricted::enter();
        drop(boxed);
    }
    assert_eq!(*log.lock().unwrap(), [1]);
}

#[test]
fn an_always_defer_drop_keeps_the_runtime_state_alive_through_its_retire_when_the_last_handle_goes()
{
    let rt = Runtime::builder()
        .shards(1)
        .policy(crate::Policy::AlwaysDefer)
        .drainer(Drainer::Manual)
        .build()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let boxed = Owned::new(&rt, Logged(1, log.clone()));
    let state = Arc::downgrade(&std::sync::Arc::clone(rt.inner_arc()));
    let state_in_pause = state.clone();
    pause_next_push(
        PauseAt::BeforeRetire,
        Box::new(move || {
            // The drop found the runtime running and is about to retire the box; another
            // thread drops the last handle right then. The box, still counted, keeps the state
            // alive (under AddressSanitizer, a retire into a freed state is a reported use after
            // free; without it, the box would never be destroyed).
            std::thread::spawn(move || drop(rt)).join().unwrap();
            assert!(
                state_in_pause.upgrade().is_some(),
                "the box keeps the state"
            );
        }),
    );
    drop(boxed); // ordinary context, always defer: retired
    // Retired, then uncounted: that gave up the state's last reference, whose drop ran the
    // batch holding the box.
    assert_eq!(*log.lock().unwrap(), [1]);
    assert!(
        state.upgrade().is_none(),
        "the state outlived its references"
    );
}

/// Fails the test if `flag` is not set within 10 s.
fn wait_for(what: &str, flag: &AtomicBool) {
    wait_until(what, || flag.load(Ordering::SeqCst));
}

#[test]
fn the_drainer_thread_runs_boxes_found_unlinked_after_a_destructor_shut_its_runtime_down() {
    /// Holds up the drainer thread until `go` is set.
    struct Gate(Arc<AtomicBool>);
    impl Drop for Gate {
        fn drop(&mut self) {
            wait_for("the gate opens", &self.0);
        }
    }
    /// The runtime's last handle, given up by a destructor on its own drainer thread.
    struct LastHandle(Option<Runtime>, Arc<AtomicBool>);
    impl Drop for LastHandle {
        fn drop(&mut self) {
            drop(self.0.take());
            self.1.store(true, Ordering::SeqCst);
        }
    }
    let rt = Runtime::builder()
        .shards(1)
        .headroom(0)
        .hysteresis(0)
        .shutdown_timeout(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    let inner = rt.inner_arc().clone();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (go, shut_down) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let gate = Owned::new(&rt, Gate(go.clone()));
    let first = Owned::new(&rt, Logged(1, log.clone()));
    let second = Owned::new(&rt, Logged(2, log.clone()));
    let last = Owned::new(&rt, LastHandle(Some(rt.clone()), shut_down.clone()));
    drop(rt);
    {
        let _nmi = restricted::enter();
        drop(gate); // the drainer takes it and waits in its destructor
        drop(last); // queued behind the gate (the drainer may take both at once)
    }
    let second_pusher = Arc::new(Mutex::new(None));
    {
        let (inner, second_pusher) = (inner.clone(), second_pusher.clone());
        drop_paused(first, move || {
            // Open the gate: the drainer runs `last` (taken with the gate, or now with `first`
            // on top of it), whose destructor shuts the runtime down from the drainer thread;
            // a drain there, or the cycle that took it, stashes `first`, unlinked.
            go.store(true, Ordering::SeqCst);
            wait_until("the drainer stashes `first`", || inner.owned_stalled());
            // Another thread's push, caught unlinked too: stashed too.
            let (inner2, shut_down) = (inner.clone(), shut_down.clone());
            let stashed = Arc::new(AtomicBool::new(false));
            let pushed = stashed.clone();
            *second_pusher.lock().unwrap() = Some(std::thread::spawn(move || {
                drop_paused(second, move || {
                    wait_until("the drainer takes `second`", || {
                        inner2.owned_lists().lists_empty()
                    });
                    pushed.store(true, Ordering::SeqCst);
                    // Linked only once `last`'s destructor has given up the last handle on
                    // the drainer thread (that shutdown waits 300 ms for it, then gives up).
                    wait_for("the runtime is shut down", &shut_down);
                });
            }));
            wait_for("the drainer stashes `second`", &stashed);
        });
    }
    // `first` is linked now, and runs. `second` is linked after that shutdown gave up: only the
    // drainer thread, before it exits, can still run it.
    wait_until("`second` runs", || log.lock().unwrap().contains(&2));
    second_pusher
        .lock()
        .unwrap()
        .take()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(*log.lock().unwrap(), [1, 2]);
    assert!(!inner.owned_stalled());
}

/// A one-shard manual runtime whose list holds box 1 (dropped in restricted context, linked),
/// its destruction log, and box 2, for the test to drop with a pause in its push.
fn one_box_queued_and_one_to_push() -> (Arc<Runtime>, Arc<Mutex<Vec<u32>>>, Owned<Logged>) {
    let rt = Arc::new(one_shard(Drainer::Manual));
    let log = Arc::new(Mutex::new(Vec::new()));
    let older = Owned::new(&rt, Logged(1, log.clone()));
    let paused = Owned::new(&rt, Logged(2, log.clone()));
    {
        let _nmi = restricted::enter();
        drop(older);
    }
    (rt, log, paused)
}

#[test]
fn a_fork_child_seals_a_box_a_parent_thread_was_pushing_and_runs_it() {
    let (rt, log, paused) = one_box_queued_and_one_to_push();
    let at_link = Arc::new(AtomicBool::new(false));
    let forked = Arc::new(AtomicBool::new(false));
    let pusher = {
        let (at_link, forked) = (at_link.clone(), forked.clone());
        std::thread::spawn(move || {
            drop_paused(paused, move || {
                at_link.store(true, Ordering::SeqCst);
                wait_until("the test thread forks", || forked.load(Ordering::SeqCst));
            });
        })
    };
    wait_until("the push reaches its link", || {
        at_link.load(Ordering::SeqCst)
    });
    // SAFETY: the child only drains, reads plain values and calls `_exit`; the threads it does
    // not have hold none of the locks that takes (the pusher is paused inside its push).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // The child: the pusher does not exist here. Its box must run (the one before it on
        // the list stays the parent's), and nothing may be left stalled.
        let code = match rt.drain_and_wait() {
            Err(_) => 2,
            Ok(_) if rt.inner().owned_stalled() => 3,
            Ok(_) if *log.lock().unwrap() != [2] => 4,
            Ok(_) if rt.stats().owned_alive != 1 => 5,
            Ok(_) => 0,
        };
        // SAFETY: ends the child at once, running nothing of the parent's.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    forked.store(true, Ordering::SeqCst);
    pusher.join().unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed its checks: status {status:#x} (2: drain failed, 3: a box left \
         stalled, 4: wrong boxes destroyed, 5: wrong count of boxes alive)"
    );
    // The parent is untouched: its pusher linked, and both boxes run here, oldest first.
    assert_eq!(rt.drain().unwrap(), 2);
    assert_eq!(*log.lock().unwrap(), [1, 2]);
}

#[test]
fn a_fork_from_a_handler_that_interrupted_a_push_leaves_that_box_to_its_own_link() {
    let (rt, log, paused) = one_box_queued_and_one_to_push();
    // What the child found, from inside the handler: (stalled, destructors run).
    let in_handler = Arc::new(Mutex::new(None));
    let pid = Arc::new(std::sync::atomic::AtomicI32::new(-1));
    {
        let (rt, in_handler, pid) = (rt.clone(), in_handler.clone(), pid.clone());
        // The pause stands in for a handler that interrupted the push on this thread: it runs
        // in restricted context, between the ring and the link, and forks.
        drop_paused(paused, move || {
            // SAFETY: the child drains on a thread of its own, records plain values and comes
            // back here; the parent's other threads hold none of the locks that takes but
            // the allocator's, which glibc's `fork` makes safe to use in the child.
            let child = unsafe { libc::fork() };
            assert!(child >= 0, "fork failed");
            pid.store(child, Ordering::SeqCst);
            if child == 0 {
                // A drainer thread of the child drains before the handler returns: the box
                // whose push the handler interrupted is unlinked, and must stay so, to be run
                // once the push links it. Sealed, it would be destroyed here and the link
                // would land on freed memory, and the older box be lost.
                std::thread::spawn(move || {
                    let ran = rt.drain_and_wait().unwrap();
                    *in_handler.lock().unwrap() = Some((rt.inner().owned_stalled(), ran));
                })
                .join()
                .unwrap();
            }
        });
    }
    let child = pid.load(Ordering::SeqCst);
    if child == 0 {
        // The child, the handler returned and the push linked: both boxes run, oldest first.
        let code = match *in_handler.lock().unwrap() {
            None => 2,
            Some((false, _)) => 3,
            Some((true, ran)) if ran != 0 => 4,
            Some(_) => match rt.drain_and_wait() {
                Err(_) => 5,
                Ok(_) if *log.lock().unwrap() != [1, 2] => 6,
                Ok(_) if rt.inner().owned_stalled() => 7,
                Ok(_) => 0,
            },
        };
        // SAFETY: ends the child at once, running nothing of the parent's.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed its checks: status {status:#x} (2: no drain in the handler, 3: the \
         interrupted box was not left unlinked, 4: that drain ran something, 5: drain failed, \
         6: wrong boxes destroyed, 7: a box left stalled)"
    );
    // The parent is untouched: its push linked, and both boxes run here, oldest first.
    assert_eq!(rt.drain().unwrap(), 2);
    assert_eq!(*log.lock().unwrap(), [1, 2]);
}
