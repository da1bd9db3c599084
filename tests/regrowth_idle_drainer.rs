//! A drainer thread that sleeps while the pool keeps jobs for regrowth
//! (`Builder::regrowth_window`) must sleep, not spin: its sleep is idle with a time limit, and
//! a check meant for an untimed sleep must not call it off again and again.
//!
//! Measured in CPU time the drainer thread uses (from `/proc/self/task/*/stat`) while nothing
//! happens for half a second: a sleeping thread uses about none, a spinning one most of it. In
//! a file of its own, so that its runtime's drainer is the only `sigdrop-drainer` thread in the
//! process.

use sigdrop::{RefSlot, Runtime, restricted};
use std::time::{Duration, Instant};

/// CPU time, in clock ticks, used so far by this process's `sigdrop-drainer` threads.
fn drainer_cpu_ticks() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| {
            let path = task.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            if comm.trim_end() != "sigdrop-drainer" {
                return None;
            }
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            // Fields after the command name (which ends with the last ')'): state is the 3rd
            // field of the line, utime the 14th, stime the 15th.
            let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .sum()
}

#[test]
fn a_drainer_thread_keeping_jobs_sleeps_instead_of_spinning() {
    const BURST: usize = 64;
    let rt = Runtime::builder()
        .shards(2)
        .headroom(4)
        .hysteresis(2)
        .regrowth_window(Duration::from_secs(3600))
        .build()
        .unwrap();
    let slots: Vec<RefSlot<Box<u64>>> = (0..BURST).map(|_| RefSlot::new(&rt)).collect();
    for round in 1..=3u64 {
        for (i, s) in slots.iter().enumerate() {
            assert!(s.xchg(Some(Box::new(i as u64))).unwrap().is_none());
        }
        {
            let _nmi = restricted::enter();
            slots.iter().for_each(|s| s.clear());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = rt.stats();
            if s.drained == round * BURST as u64 && s.active == 0 && s.spare <= 6 + s.kept {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the drainer ran the burst: {s:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert!(rt.stats().kept > 0, "{:?}", rt.stats());
    // Past the drainer's quiet polls: from now on it sleeps on the kept jobs (an hour's window).
    std::thread::sleep(Duration::from_millis(200));
    let before = drainer_cpu_ticks();
    std::thread::sleep(Duration::from_millis(500));
    let used = drainer_cpu_ticks() - before;
    // Clock ticks are usually 10 ms: a spinning drainer would show tens of them.
    assert!(
        used <= 5,
        "the drainer used {used} ticks of CPU in 500 ms with nothing to do: {:?}",
        rt.stats()
    );
    assert!(rt.stats().kept > 0, "{:?}", rt.stats());
}
