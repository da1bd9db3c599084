//! Loom models of sigdrop's lock-free protocols.
//!
//! The models are integration tests in `tests/`; they only build with `RUSTFLAGS="--cfg loom"`
//! (see this crate's README). Built without it, this crate is empty.
