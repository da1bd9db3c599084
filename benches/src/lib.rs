//! What the benches and the bench report share: where their figures are written.

use std::path::PathBuf;

/// The workspace's target directory: `$CARGO_TARGET_DIR`, else `target/` at the repository root.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Where criterion writes, resolved as criterion does (`CRITERION_HOME`, else the target dir).
pub fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("criterion"))
}

/// Where the figures criterion does not keep (percentiles, wake counts, callgrind's instruction
/// counts) are written, one JSON file each: `<target>/sigdrop-bench`.
pub fn extras_dir() -> PathBuf {
    target_dir().join("sigdrop-bench")
}
