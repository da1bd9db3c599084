//! The figures criterion does not keep (percentiles, wake counts, writers' rates), written as
//! JSON files for the report, and the `/proc` readings some of them need.

use serde_json::Value;

/// Writes `value` as `name` in the extras directory (`target/sigdrop-bench/`).
pub fn write(name: &str, value: &Value) {
    let dir = sigdrop_benches::extras_dir();
    std::fs::create_dir_all(&dir).expect("create the extras directory");
    std::fs::write(dir.join(name), format!("{value}\n")).expect("write an extras file");
}

/// The `p`-th percentile (0..=100) of sorted `v`, nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Thread ids (`/proc/self/task`) whose name is `name`.
pub fn threads_named(name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.flatten() {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == name
                && let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok())
            {
                out.push(tid);
            }
        }
    }
    out
}

/// `voluntary_ctxt_switches` of thread `tid` of this process (each futex sleep is one).
pub fn voluntary_switches(tid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
