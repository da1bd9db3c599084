//! Containers like the kernel's BPF maps with a referenced-kptr field: a fixed array of slots and
//! a fixed-capacity hash map. Deleting from either, in either context, tears the value's object
//! down through the runtime: inline in ordinary context (under [`Policy::Auto`](crate::Policy)),
//! deferred to the drainer in restricted context.

mod array;
mod buckets;
mod hash;

pub use array::KptrArray;
pub use hash::KptrHash;
