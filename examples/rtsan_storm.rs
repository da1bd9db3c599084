//! A signal storm for RealtimeSanitizer (run by `scripts/rtsan.sh`).
//!
//! Worker threads fill 64 shared `RefSlot`s in ordinary context, keep a lock-free pool of
//! pre-made boxes full and top up the reservation; a `sigdrop::signal::Storm` thread sends
//! SIGUSR1 to the workers with `tgkill`. The handler does sigdrop's restricted-context work:
//! teardowns that offload to the drainer (and ring its doorbell: the futex wake), installs into
//! empty slots on reserved jobs, replaces, and refused installs handed back; and the read path:
//! a read guard and a borrow from a `ReadSlot` that the workers keep replacing; and owned boxes
//! (`sigdrop::Owned`): teardowns of `RefSlot<Owned<_>>` slots, swaps of fresh boxes (taken from
//! spare slots) into them, and boxes dropped outright — each a push onto this CPU's list, with no
//! job.
//!
//! Built with `-Zsanitizer=realtime --cfg sigdrop_rtsan`, the handler function carries
//! `#[sanitize(realtime = "nonblocking")]`: RTSan then treats everything it does, down to the
//! libc calls, as real-time code and reports any allocation, lock or system call (the doorbell's
//! futex wake is the one exemption, made inside sigdrop under that cfg). In a normal build the
//! attribute is not applied and this is an ordinary storm with the same checks.
//!
//! ```text
//! cargo run --release --example rtsan_storm -- --help
//! ```
//!
//! - `--via sigaction` (default): the handler is this file's own `extern "C"` function, installed
//!   with `sigaction`; it enters restricted context itself. The attribute covers the whole
//!   handler.
//! - `--via install`: the handler is a `fn(&SignalInfo)` installed with `sigdrop::signal::install`;
//!   the attribute is on that function, so sigdrop's trampoline around it (errno, the guard, the
//!   handler lookup) runs before RTSan's real-time scope begins and after it ends.
//! - `--alloc-in-handler`: the handler also allocates and frees a `Box` on every signal, which
//!   RTSan must report (the script checks that it does: the run has teeth).
//!
//! The last line is machine-readable; the exit status is 0 only if every check held.

#![cfg_attr(sigdrop_rtsan, feature(sanitize))]

#[path = "common/cli.rs"]
mod cli;

use cli::Command;
use sigdrop::signal::{self, Signal, SignalInfo, Storm};
use sigdrop::{Owned, ReadSlot, RefSlot, Runtime, Wake, read, restricted};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The storm's signal.
const SIG: Signal = Signal::SIGUSR1;
const SLOTS: usize = 64;
/// Pre-made boxes the handler may install (filled by the workers in ordinary context).
const POOL_LEN: usize = 128;
/// Slot operations per handler invocation.
const OPS_PER_SIGNAL: usize = 8;
/// `RefSlot<Owned<_>>` slots the handler tears down and swaps into, and spare slots of fresh
/// boxes it takes from (refilled by the workers).
const OWNED_SLOTS: usize = 32;
/// Jobs set aside for restricted installs; topped up when below a quarter of this.
const RESERVE: usize = 64;

struct Obj {
    _id: u64,
}

static CREATED: AtomicU64 = AtomicU64::new(0);
static DESTROYED: AtomicU64 = AtomicU64::new(0);
static DTOR_IN_RESTRICTED: AtomicU64 = AtomicU64::new(0);

impl Obj {
    /// A new object (ordinary context only: it allocates).
    fn boxed() -> Box<Obj> {
        let id = CREATED.fetch_add(1, Ordering::Relaxed);
        Box::new(Obj { _id: id })
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        if restricted::is_active() {
            DTOR_IN_RESTRICTED.fetch_add(1, Ordering::Relaxed);
        }
        // Release: a waiter that sees the count sees the destruction.
        DESTROYED.fetch_add(1, Ordering::Release);
    }
}

struct State {
    rt: Runtime,
    slots: Vec<RefSlot<Box<Obj>>>,
    /// Replaced by the workers, read (and cloned) by the handler under a read guard.
    config: ReadSlot<std::sync::Arc<Obj>>,
    owned: Vec<RefSlot<Owned<Obj>>>,
    owned_spares: Vec<RefSlot<Owned<Obj>>>,
}

/// Everything the handler reaches, published before the handler is installed.
static STATE: OnceLock<State> = OnceLock::new();
/// A cell is null (empty: a worker may fill it), a box, or `BORROWED` (a handler took its box
/// and owns the cell until it stores null or the box back).
static POOL: [AtomicPtr<Obj>; POOL_LEN] = [const { AtomicPtr::new(ptr::null_mut()) }; POOL_LEN];
/// Never a real box address (no `Obj` box lives at address `align_of::<Obj>()`).
const BORROWED: *mut Obj = ptr::dangling_mut();
static POOL_CURSOR: AtomicUsize = AtomicUsize::new(0);
static SLOT_CURSOR: AtomicUsize = AtomicUsize::new(0);
/// Set by `--alloc-in-handler` before the handler is installed.
static ALLOC_IN_HANDLER: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);

static DELIVERED: AtomicU64 = AtomicU64::new(0);
static TEARDOWNS: AtomicU64 = AtomicU64::new(0);
static INSTALLS: AtomicU64 = AtomicU64::new(0);
static REPLACES: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);
static ALLOCS_IN_HANDLER: AtomicU64 = AtomicU64::new(0);
static CONFIG_READS: AtomicU64 = AtomicU64::new(0);
/// Configs that left the readable slot (each goes to the drainer, even in ordinary context).
static CONFIGS_RETIRED: AtomicU64 = AtomicU64::new(0);
/// Owned boxes the handler dropped (torn down, displaced by a swap, or dropped outright).
static OWNED_DROPS: AtomicU64 = AtomicU64::new(0);

/// Takes a pre-made box from the pool, leaving its cell `BORROWED`. Atomics only.
fn take_premade() -> Option<(&'static AtomicPtr<Obj>, Box<Obj>)> {
    for _ in 0..POOL_LEN {
        let cell = &POOL[POOL_CURSOR.fetch_add(1, Ordering::Relaxed) % POOL_LEN];
        let p = cell.load(Ordering::Relaxed);
        if p.is_null() || p == BORROWED {
            continue;
        }
        // Acquire: pairs with the Release CAS that published the box.
        if cell
            .compare_exchange(p, BORROWED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: every box pointer in the pool came from `Box::into_raw`, and the CAS moved
            // this one out of the pool: it is ours alone. Rebuilding the `Box` allocates nothing.
            return Some((cell, unsafe { Box::from_raw(p) }));
        }
    }
    None
}

/// The handler's work, in restricted context: teardowns (offloaded, ringing the doorbell),
/// installs on reserved jobs, replaces, refusals handed back. Never allocates or frees, unless
/// `--alloc-in-handler` asked it to.
fn work() {
    DELIVERED.fetch_add(1, Ordering::Relaxed);
    if ALLOC_IN_HANDLER.load(Ordering::Relaxed) {
        // The deliberate violation RTSan must report: malloc and free in the handler.
        let b = std::hint::black_box(Box::new(DELIVERED.load(Ordering::Relaxed)));
        drop(std::hint::black_box(b));
        ALLOCS_IN_HANDLER.fetch_add(1, Ordering::Relaxed);
    }
    let Some(st) = STATE.get() else { return };
    {
        // The read path: a guard and a borrow of the object the workers keep replacing.
        let guard = read::enter();
        if let Some(config) = st.config.load(&guard) {
            std::hint::black_box(config._id);
            CONFIG_READS.fetch_add(1, Ordering::Relaxed);
        }
    }
    owned_work(st);
    for _ in 0..OPS_PER_SIGNAL {
        let n = SLOT_CURSOR.fetch_add(1, Ordering::Relaxed);
        // Stride 5 (coprime with SLOTS) walks every slot; `n % 3 == 0` installs or replaces.
        let slot = &st.slots[n.wrapping_mul(5) % SLOTS];
        if !slot.is_empty() && !n.is_multiple_of(3) {
            if let Some(d) = slot.take() {
                drop(d); // deferred to the drainer; the first push of a burst wakes it
                TEARDOWNS.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        let Some((cell, obj)) = take_premade() else {
            continue;
        };
        match slot.xchg(Some(obj)) {
            Ok(prev) => {
                // Release: the empty cell may be refilled by a worker.
                cell.store(ptr::null_mut(), Ordering::Release);
                match prev {
                    None => INSTALLS.fetch_add(1, Ordering::Relaxed),
                    Some(old) => {
                        drop(old); // deferred with the job claimed for it before the exchange
                        REPLACES.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            Err(rejected) => {
                // No reserved or spare job: keep the box (dropping it would free here).
                REFUSED.fetch_add(1, Ordering::Relaxed);
                // Release: publishes the box to whoever takes it next.
                cell.store(Box::into_raw(rejected.into_inner()), Ordering::Release);
            }
        }
    }
}

/// The handler's owned-box work: a teardown, a swap of a fresh box into a slot, a box dropped
/// outright. Each drop is one push (and maybe the doorbell's ring); none needs a job.
fn owned_work(st: &State) {
    let n = SLOT_CURSOR.load(Ordering::Relaxed);
    let fresh = |k: usize| {
        (0..OWNED_SLOTS).find_map(|i| {
            st.owned_spares[(k + i) % OWNED_SLOTS]
                .take()?
                .into_inner()
                .ok()
        })
    };
    if let Some(d) = st.owned[n % OWNED_SLOTS].take() {
        drop(d);
        OWNED_DROPS.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(b) = fresh(n) {
        // Never refused: an owned box needs no job.
        if let Ok(Some(old)) = st.owned[(n + 7) % OWNED_SLOTS].xchg(Some(b)) {
            drop(old);
            OWNED_DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(b) = fresh(n + 13) {
        drop(b);
        OWNED_DROPS.fetch_add(1, Ordering::Relaxed);
    }
}

/// `--via sigaction`: the function the kernel calls. Under RTSan the whole handler, including
/// entering restricted context, is real-time code.
#[cfg_attr(sigdrop_rtsan, sanitize(realtime = "nonblocking"))]
extern "C" fn on_signal_raw(_: libc::c_int) {
    let _nmi = restricted::enter();
    work();
}

/// `--via install`: called by sigdrop's trampoline, inside its restricted guard. Under RTSan
/// only this function's body (and what it calls) is real-time code.
#[cfg_attr(sigdrop_rtsan, sanitize(realtime = "nonblocking"))]
fn on_signal(_: &SignalInfo) {
    work();
}

/// Fills every empty pool cell with a new box (ordinary context).
fn refill_pool() {
    for cell in &POOL {
        if cell.load(Ordering::Relaxed).is_null() {
            let p = Box::into_raw(Obj::boxed());
            // Release: publishes the box to the handler's Acquire CAS; only null cells are
            // filled (a BORROWED one belongs to a handler), and another worker may win.
            if cell
                .compare_exchange(ptr::null_mut(), p, Ordering::Release, Ordering::Relaxed)
                .is_err()
            {
                // SAFETY: `p` came from `Box::into_raw` just above and was never shared.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

fn worker(seed: u64, st: &State) {
    let mut rng = seed | 1;
    while !STOP.load(Ordering::Acquire) {
        refill_pool();
        for (spare, slot) in st.owned_spares.iter().zip(&st.owned) {
            // Another worker may fill the same slot first: the box it displaces is destroyed
            // inline (ordinary context).
            if spare.is_empty() {
                drop(spare.xchg(Some(Owned::new(&st.rt, *Obj::boxed()))));
            }
            if slot.is_empty() {
                drop(slot.xchg(Some(Owned::new(&st.rt, *Obj::boxed()))));
            }
        }
        if st.rt.stats().reserved < RESERVE / 4 {
            st.rt.reserve(RESERVE).expect("reserve in ordinary context");
        }
        // The old config is retired into a batch and destroyed once the handlers that may be
        // reading it have left (by this thread when it fills a batch, or by the drainer).
        let new = std::sync::Arc::from(Obj::boxed());
        if let Ok(Some(old)) = st.config.xchg(Some(new)) {
            drop(old);
            CONFIGS_RETIRED.fetch_add(1, Ordering::Relaxed);
        }
        for _ in 0..16 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let slot = &st.slots[(rng % SLOTS as u64) as usize];
            if (rng >> 32).is_multiple_of(4) {
                slot.clear(); // ordinary teardown: destroyed inline
            } else {
                // Ordinary install or replace; the replaced object is destroyed inline.
                drop(slot.xchg(Some(Obj::boxed())));
            }
        }
        std::thread::yield_now();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Sigaction,
    Install,
}

struct Args {
    via: Via,
    seconds: f64,
    threads: usize,
    alloc: bool,
    lazy: bool,
}

const HELP: &str = "\
rtsan_storm: a tgkill storm against worker threads whose handler does sigdrop's
restricted-context work (teardowns, installs on reserved jobs, replaces, refused installs, reads
under a guard). Built for RealtimeSanitizer by scripts/rtsan.sh; an ordinary storm otherwise.

usage: rtsan_storm [options]

  --via sigaction|install  how the handler is installed: this example's own extern \"C\"
                           function through sigaction, entering restricted context itself (the
                           expert path), or a fn(&SignalInfo) through sigdrop::signal::install
                           (default sigaction)
  --seconds F              how long the storm runs, wall time (default 1, 0.01 to 86400)
  --threads T              worker threads the storm signals (default 2, 1 to 64)
  --alloc-in-handler       also allocate and free a Box in the handler on every signal: what
                           RealtimeSanitizer must report
  --wake immediate|lazy    how the drainer is woken: at once by the handler's first teardown
                           of a burst (one futex wake syscall, if the drainer sleeps), or lazily
                           every millisecond, with no syscall from handlers (default immediate)
  -h, --help               this text

Output: one machine-readable line `rtsan_storm: result=PASS|FAIL ...` (signals delivered,
teardowns, installs, replaces, refused installs, reads, doorbell wakes: all, and the
handlers'). Exit status: 0 if every check held, 1 if one failed, 2 for a bad command line.
";

fn parse(parser: &mut lexopt::Parser) -> Result<Command<Args>, lexopt::Error> {
    use lexopt::Arg::{Long, Short};
    let mut args = Args {
        via: Via::Sigaction,
        seconds: 1.0,
        threads: 2,
        alloc: false,
        lazy: false,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("via") => {
                let choices = [("sigaction", Via::Sigaction), ("install", Via::Install)];
                args.via = cli::choice(parser, "--via", &choices)?;
            }
            Long("seconds") => args.seconds = cli::number(parser, "--seconds", 0.01..=86400.0)?,
            Long("threads") => args.threads = cli::number(parser, "--threads", 1..=64)?,
            Long("alloc-in-handler") => args.alloc = true,
            Long("wake") => {
                let choices = [("immediate", false), ("lazy", true)];
                args.lazy = cli::choice(parser, "--wake", &choices)?;
            }
            Long("help") | Short('h') => return Ok(Command::Help),
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Command::Run(args))
}

fn main() {
    let args = cli::parse_or_exit("rtsan_storm", HELP, parse);
    ALLOC_IN_HANDLER.store(args.alloc, Ordering::Relaxed);
    let wake = if args.lazy {
        // A watermark no burst of this storm reaches: the handlers never ring.
        Wake::Lazy {
            period: Duration::from_millis(1),
            high_watermark: 1 << 20,
        }
    } else {
        Wake::Immediate
    };
    // No headroom, no hysteresis and no regrowth window: every drain trims, so the handlers'
    // installs and teardowns run against a pool that shrinks and grows back all the time.
    let rt = Runtime::builder()
        .headroom(0)
        .hysteresis(0)
        .regrowth_window(Duration::ZERO)
        .wake(wake)
        .build()
        .expect("runtime with a drainer thread");
    rt.reserve(RESERVE).expect("reserve");
    let state = State {
        slots: (0..SLOTS).map(|_| RefSlot::new(&rt)).collect(),
        config: ReadSlot::new(&rt),
        owned: (0..OWNED_SLOTS).map(|_| RefSlot::new(&rt)).collect(),
        owned_spares: (0..OWNED_SLOTS).map(|_| RefSlot::new(&rt)).collect(),
        rt,
    };
    assert!(STATE.set(state).is_ok(), "STATE set once");
    let st = STATE.get().expect("just set");
    refill_pool();
    match args.via {
        Via::Sigaction => {
            // The expert path, NMI-like as sigdrop::signal::install does: no SA_NODEFER,
            // nothing else blocked, SA_RESTART.
            // SAFETY: `sigaction` is plain data; all-zero is a valid value to fill in.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_signal_raw as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            // SAFETY: `on_signal_raw` enters restricted context and then uses only atomics, an
            // initialised OnceLock and sigdrop's restricted-context operations (plus, with
            // --alloc-in-handler, a deliberate allocation that RTSan is meant to catch); the
            // action's mask is emptied before it is installed.
            let rc = unsafe {
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(SIG.as_raw(), &action, std::ptr::null_mut())
            };
            assert_eq!(rc, 0, "sigaction: {}", std::io::Error::last_os_error());
        }
        Via::Install => {
            // SAFETY: as above; the trampoline enters restricted context for `on_signal`.
            let installed = unsafe { signal::install(SIG, on_signal) }.expect("install");
            drop(installed); // stays installed for the life of the process
        }
    }

    let started = Instant::now();
    let sent = std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel();
        for w in 0..args.threads {
            let tx = tx.clone();
            s.spawn(move || {
                tx.send(signal::current_tid()).expect("send tid");
                worker(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1), st);
            });
        }
        drop(tx);
        let targets: Vec<_> = rx.iter().take(args.threads).collect();
        let storm = Storm::start(SIG, targets, Duration::ZERO).expect("storm");
        std::thread::sleep(Duration::from_secs_f64(args.seconds));
        let sent = storm.stop();
        // Only now may the targets exit.
        STOP.store(true, Ordering::Release);
        sent
    });
    let elapsed = started.elapsed();

    // Quiescent: empty the slots and the pool in ordinary context, then wait for the drainer.
    for slot in st.slots.iter() {
        slot.clear();
    }
    for slot in st.owned.iter().chain(&st.owned_spares) {
        slot.clear();
    }
    if let Some(last) = st.config.take() {
        drop(last);
        CONFIGS_RETIRED.fetch_add(1, Ordering::Relaxed);
    }
    for cell in &POOL {
        let p = cell.swap(ptr::null_mut(), Ordering::Acquire);
        if !p.is_null() && p != BORROWED {
            // SAFETY: a box pointer in the pool came from `Box::into_raw`; the swap took it out.
            drop(unsafe { Box::from_raw(p) });
        }
    }
    let created = CREATED.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let s = st.rt.stats();
        if DESTROYED.load(Ordering::Acquire) == created
            && s.drained == handed_over_by_handlers() + s.owned + s.batched
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }

    let s = st.rt.stats();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (delivered, teardowns, installs, replaces, refused) = (
        load(&DELIVERED),
        load(&TEARDOWNS),
        load(&INSTALLS),
        load(&REPLACES),
        load(&REFUSED),
    );
    let destroyed = DESTROYED.load(Ordering::Acquire);
    let dtor_in_restricted = load(&DTOR_IN_RESTRICTED);
    let mut failures = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            failures.push(what.to_string());
        }
    };
    check(delivered >= 100, "at least 100 signals delivered");
    check(teardowns > 0, "teardowns in the handler");
    check(installs > 0, "installs in the handler");
    check(
        load(&CONFIG_READS) > 0,
        "reads of the readable slot in the handler",
    );
    if args.lazy {
        check(
            s.restricted_wakes == 0,
            "no wake syscall from handlers (lazy wake)",
        );
    } else {
        check(s.restricted_wakes > 0, "doorbell wakes (from the handler)");
    }
    // Every handler teardown and replace went with a job. So did any config whose retirement
    // found every open batch busy (other threads adding or closing at that instant): it is
    // offloaded, then batched by the drainer for its grace period, and destroyed from there.
    let by_handlers = handed_over_by_handlers();
    check(
        s.offloaded >= by_handlers && s.offloaded - by_handlers <= load(&CONFIGS_RETIRED),
        "offloaded (with a job) == handler teardowns + replaces (+ configs retired by job)",
    );
    let retired = load(&CONFIGS_RETIRED);
    check(
        s.batched == retired,
        &format!(
            "configs retired in ordinary context all went through batches \
             ({} batched, {retired} retired)",
            s.batched
        ),
    );
    check(
        s.drained == by_handlers + s.owned + s.batched,
        "everything handed over (with jobs, owned boxes, batches) was destroyed, once",
    );
    check(load(&OWNED_DROPS) > 0, "owned boxes dropped in the handler");
    check(
        s.owned == load(&OWNED_DROPS),
        "owned boxes handed over == owned boxes the handler dropped",
    );
    check(destroyed == created, "every object destroyed");
    check(
        dtor_in_restricted == 0,
        "no destructor in restricted context",
    );
    check(s.emergency == 0 && s.leaked == 0, "no emergency, no leak");
    let pass = failures.is_empty();
    for f in &failures {
        eprintln!("rtsan_storm: check failed: {f}");
    }
    println!(
        "rtsan_storm: result={} via={} seconds={:.2} sent={sent} delivered={delivered} teardowns={teardowns} installs={installs} replaces={replaces} refused={refused} offloaded={} drained={} wakes={} restricted_wakes={} created={created} destroyed={destroyed} dtor_in_restricted={dtor_in_restricted} emergency={} leaked={} allocs_in_handler={} config_reads={} owned_drops={}",
        if pass { "PASS" } else { "FAIL" },
        match args.via {
            Via::Sigaction => "sigaction",
            Via::Install => "install",
        },
        elapsed.as_secs_f64(),
        s.offloaded,
        s.drained,
        s.wakes,
        s.restricted_wakes,
        s.emergency,
        s.leaked,
        load(&ALLOCS_IN_HANDLER),
        load(&CONFIG_READS),
        load(&OWNED_DROPS),
    );
    std::process::exit(if pass { 0 } else { 1 });
}

/// Objects the handlers handed over with a job: their teardowns and the values their replaces
/// displaced (each destroyed by a drain, never batched: nothing read them).
fn handed_over_by_handlers() -> u64 {
    TEARDOWNS.load(Ordering::Relaxed) + REPLACES.load(Ordering::Relaxed)
}
