//! An install that waits for the drainer thread gives up on a chain another thread took and
//! finishes nothing of, as it does on a stuck drainer thread: that thread may be blocked on a
//! lock the installing thread holds.
//!
//! An install that finds no spare job while more than `Builder::max_pending` objects wait
//! waits for the drainer thread first, and gives up once that thread has stayed inside one
//! destructor for 10 ms (it may be blocked on a lock the installer holds). But the backlog it
//! waited on also counted the chains other threads took (a thread calling `drain`, allowed
//! alongside a drainer thread; or helping at a batch close), and the give-up watches the
//! drainer thread only: with that thread idle, an install holding a lock that the other
//! thread's destructor was waiting for waited for ever (62 installs of 1000 done, the drainer
//! rung 11 million times in 30 s). Now the give-up also watches the threads other than the
//! drainer thread that hold chains or batches, and their progress (one per chain or batch
//! finished). Counts are asserted, never time.

use sigdrop::{Drainer, Policy, RefSlot, Runtime, Wake, restricted};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// The smallest bound: the chain is well over it.
const MAX_PENDING: usize = 64;
/// Objects torn down as a handler would: one chain of jobs on the one list.
const CHAIN: usize = 200;
/// Installs into empty slots: more than the spare jobs, so the pool must grow.
const INSTALLS: usize = 1000;
/// How long the installs may take before the test reports them stuck and aborts.
const INSTALL_WAIT: Duration = Duration::from_secs(30);

/// The lock the destructors take, and the installing thread holds.
static LOCK: Mutex<()> = Mutex::new(());
static ENTERED: AtomicUsize = AtomicUsize::new(0);
static ON_DRAINER: AtomicBool = AtomicBool::new(false);
static DESTROYED: AtomicUsize = AtomicUsize::new(0);

struct Locking;

impl Drop for Locking {
    fn drop(&mut self) {
        if std::thread::current().name() == Some("sigdrop-drainer") {
            ON_DRAINER.store(true, Ordering::SeqCst);
        }
        ENTERED.fetch_add(1, Ordering::SeqCst);
        let _held = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        DESTROYED.fetch_add(1, Ordering::SeqCst);
    }
}

/// Whether this process's `sigdrop-drainer` thread (there is one) is asleep.
fn drainer_asleep() -> bool {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| {
            let path = t.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            (comm.trim_end() == "sigdrop-drainer")
                .then(|| std::fs::read_to_string(path.join("stat")).ok())?
        })
        // The state follows the command name in parentheses.
        .any(|stat| {
            stat.rsplit(") ")
                .next()
                .is_some_and(|rest| rest.starts_with('S'))
        })
}

#[test]
fn an_install_holding_a_lock_never_waits_for_a_chain_another_thread_drains() {
    // A drainer thread that wakes only when rung (the pushes below never ring it), and
    // keeps no regrowth (whose start would wake it).
    let rt = Runtime::builder()
        .drainer(Drainer::Thread)
        .policy(Policy::Auto)
        .shards(1)
        .max_pending(MAX_PENDING)
        .regrowth_window(Duration::ZERO)
        .wake(Wake::Lazy {
            period: Duration::from_secs(60),
            high_watermark: usize::MAX,
        })
        .build()
        .unwrap();
    // Its first cycle done, it sleeps: the chain below is left for `drain`.
    while !drainer_asleep() {
        std::thread::yield_now();
    }
    let chain: Vec<RefSlot<Box<Locking>>> = (0..CHAIN).map(|_| RefSlot::new(&rt)).collect();
    for slot in &chain {
        slot.xchg(Some(Box::new(Locking))).unwrap();
    }
    {
        let _restricted = restricted::enter();
        for slot in &chain {
            slot.clear();
        }
    }
    let held = LOCK.lock().unwrap();
    // Another thread drains: it takes the chain, and its first destructor waits for the lock.
    let draining = {
        let rt = rt.clone();
        std::thread::spawn(move || rt.drain().unwrap())
    };
    while ENTERED.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    assert!(
        !ON_DRAINER.load(Ordering::SeqCst),
        "the drainer thread took the chain: nothing is tested"
    );

    // This thread, holding the lock, installs into empty slots until the pool must grow.
    let targets: Vec<RefSlot<Box<u64>>> = (0..INSTALLS).map(|_| RefSlot::new(&rt)).collect();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let rt = &rt;
        s.spawn(move || {
            if finished.recv_timeout(INSTALL_WAIT).is_err() {
                eprintln!("installs waiting for the draining thread: {:?}", rt.stats());
                std::process::abort();
            }
        });
        for slot in &targets {
            assert!(slot.xchg(Some(Box::new(1))).unwrap().is_none());
        }
        done.send(()).unwrap();
    });
    drop(held);
    assert_eq!(draining.join().unwrap(), CHAIN);
    assert_eq!(DESTROYED.load(Ordering::SeqCst), CHAIN);
    assert_eq!(rt.stats().refs, INSTALLS);
    // The installs went on over the bound, and said so.
    assert!(rt.stats().drainer_stalls > 0, "{:?}", rt.stats());
}
