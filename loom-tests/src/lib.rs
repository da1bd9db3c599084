//! Loom models of sigdrop's lock-free protocols.
//!
//! The models are integration tests in `tests/`; they only build with `RUSTFLAGS="--cfg loom"`
//! (see this crate's README). Built without it, this crate is empty.
//!
//! [`v2`] is a small, test-only model of the kernel v2 design that sigdrop replaces: the suite
//! must catch its races (D1-D3), which is the evidence that the models of sigdrop have teeth.
//! [`canary`] is the object the runtime models hand over: it carries plain memory, so that the
//! models check that an object's contents are published along with it.
//! [`smallest_runtime`] is the runtime the back-pressure and reclamation models share.

#[cfg(loom)]
pub mod canary;
#[cfg(loom)]
pub mod v2;

/// A builder for the smallest runtime a model can explore: one shard, one job of headroom, no
/// hysteresis, one emergency slot, and a backlog bound of one batch (2 objects under loom).
#[cfg(loom)]
pub fn smallest_runtime() -> sigdrop::Builder {
    sigdrop::Runtime::builder()
        .shards(1)
        .headroom(1)
        .hysteresis(0)
        .emergency_capacity(1)
        .max_pending(2)
}
