//! The NMI exerciser: objects installed in ordinary context are torn down from a signal handler
//! (our stand-in for NMI), and every destructor must run exactly once, later, outside the handler.
//!
//! Each round populates `--slots` slots on the main thread; a storm thread then sends the
//! exerciser's signal to the main thread, whose handler (inside `sigdrop::restricted::enter()`)
//! clears every slot. The round waits, with a bound, until every cleared object's destructor has
//! run on the drainer thread, then goes on. A counting allocator checks that the handler never
//! allocates or frees.
//!
//! ```text
//! cargo run --release --example nmi_exerciser -- [--rounds N] [--slots S]
//! ```
//!
//! The last line is machine-readable; the exit status is 0 only if every check held.

use sigdrop::{RefSlot, Runtime, restricted};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counts allocator calls made while the restricted guard is active on the calling thread.
struct CountingAlloc;
static RESTRICTED_ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to `System` unchanged; the counting is a relaxed atomic add and a
// read of sigdrop's const-initialised thread-local (neither allocates).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if restricted::is_active() {
            RESTRICTED_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if restricted::is_active() {
            RESTRICTED_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// What the handler needs, set up before the handler is installed.
struct Shared {
    slots: Vec<RefSlot<Box<Obj>>>,
}
static SHARED: OnceLock<Shared> = OnceLock::new();

static SIGNALS: AtomicU64 = AtomicU64::new(0);
static DTORS: AtomicU64 = AtomicU64::new(0);
static DTOR_IN_RESTRICTED: AtomicU64 = AtomicU64::new(0);
static DOUBLE_DTOR: AtomicU64 = AtomicU64::new(0);
static DESTROYED: OnceLock<Vec<AtomicU8>> = OnceLock::new();

struct Obj {
    id: usize,
    _payload: [u64; 4],
}

impl Drop for Obj {
    fn drop(&mut self) {
        if restricted::is_active() {
            DTOR_IN_RESTRICTED.fetch_add(1, Ordering::Relaxed);
        }
        let seen = DESTROYED.get().expect("set up before any object")[self.id]
            .fetch_add(1, Ordering::Relaxed);
        if seen != 0 {
            DOUBLE_DTOR.fetch_add(1, Ordering::Relaxed);
        }
        DTORS.fetch_add(1, Ordering::Relaxed);
    }
}

extern "C" fn on_nmi(_: libc::c_int) {
    let _nmi = restricted::enter();
    SIGNALS.fetch_add(1, Ordering::Relaxed);
    if let Some(shared) = SHARED.get() {
        for slot in &shared.slots {
            slot.clear();
        }
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} wants a number, got {v:?}"))
        })
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: nmi_exerciser [--rounds N (256)] [--slots S (8)]");
        return;
    }
    let rounds = arg(&args, "--rounds", 256);
    let slots = arg(&args, "--slots", 8).max(1);
    let objects = rounds * slots;

    let rt = Runtime::new().expect("runtime");
    DESTROYED.get_or_init(|| (0..objects).map(|_| AtomicU8::new(0)).collect());
    SHARED.get_or_init(|| Shared {
        slots: (0..slots).map(|_| RefSlot::new(&rt)).collect(),
    });
    let shared = SHARED.get().expect("just set");

    // The NMI signal: no SA_NODEFER (an NMI does not nest in itself), nothing else blocked.
    // SAFETY: `on_nmi` only touches atomics, a OnceLock that is already set, and sigdrop's
    // restricted-context paths, all async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_nmi as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    // SAFETY: `pthread_self` has no preconditions.
    let main_thread = unsafe { libc::pthread_self() };
    let round_open = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let mut failed_waits = 0usize;

    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                if round_open.load(Ordering::Acquire) {
                    // SAFETY: the main thread outlives this scope, so its id is valid.
                    unsafe { libc::pthread_kill(main_thread, libc::SIGUSR1) };
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        });
        for round in 0..rounds {
            for (i, slot) in shared.slots.iter().enumerate() {
                let obj = Box::new(Obj {
                    id: round * slots + i,
                    _payload: [round as u64; 4],
                });
                if let Err(rejected) = slot.xchg(Some(obj)) {
                    panic!("install refused: {}", rejected.error());
                }
            }
            round_open.store(true, Ordering::Release);
            let want = ((round + 1) * slots) as u64;
            let deadline = Instant::now() + Duration::from_secs(10);
            while DTORS.load(Ordering::Relaxed) < want {
                if Instant::now() > deadline {
                    eprintln!("round {round}: destructors did not all run within 10 s");
                    failed_waits += 1;
                    break;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            round_open.store(false, Ordering::Release);
            if failed_waits > 0 {
                break;
            }
        }
        done.store(true, Ordering::Release);
    });

    let stats = rt.stats();
    let destroyed = DESTROYED.get().expect("set");
    let leaked = destroyed
        .iter()
        .filter(|d| d.load(Ordering::Relaxed) == 0)
        .count() as u64;
    let signals = SIGNALS.load(Ordering::Relaxed);
    let checks = [
        (
            "dtor_in_restricted",
            DTOR_IN_RESTRICTED.load(Ordering::Relaxed),
        ),
        ("double_dtor", DOUBLE_DTOR.load(Ordering::Relaxed)),
        ("leaked", leaked + stats.leaked),
        (
            "restricted_allocs",
            RESTRICTED_ALLOCS.load(Ordering::Relaxed),
        ),
        ("emergency", stats.emergency),
        ("failed_waits", failed_waits as u64),
    ];
    let pass = checks.iter().all(|(_, v)| *v == 0) && stats.offloaded == objects as u64;

    println!(
        "{} rounds x {} slots in {:.2?}: {} signals, {} objects offloaded from the handler, {} destructors, {} wakes, pool peak {} jobs",
        rounds,
        slots,
        started.elapsed(),
        signals,
        stats.offloaded,
        DTORS.load(Ordering::Relaxed),
        stats.wakes,
        stats.peak_total
    );
    let mut line = format!(
        "exerciser: result={} mode=array rounds={rounds} signals={signals} objects={objects} offloaded={} dtors={}",
        if pass { "PASS" } else { "FAIL" },
        stats.offloaded,
        DTORS.load(Ordering::Relaxed),
    );
    for (name, value) in checks.iter().filter(|(n, _)| *n != "failed_waits") {
        line.push_str(&format!(" {name}={value}"));
    }
    line.push_str(&format!(
        " pool_peak={} pool_final={}",
        stats.peak_total, stats.total
    ));
    println!("{line}");
    if !pass {
        std::process::exit(1);
    }
}
