//! Building linked lists whose nodes hold the next one in a slot.

use sigdrop::{Access, Slot};

/// Makes `node` the list's first node: it takes the list so far (the object in `head`) as its
/// successor, in the slot `next` names, and goes into `head`. Ordinary context.
pub fn push_front<N: Send + 'static, A: Access>(
    head: &Slot<Box<N>, A>,
    node: Box<N>,
    next: impl FnOnce(&N) -> &Slot<Box<N>, A>,
) {
    if let Some(rest) = head.take() {
        let rest = rest
            .into_inner()
            .ok()
            .expect("ordinary context, no read guard held");
        next(&node)
            .xchg(Some(rest))
            .expect("a job for the successor");
    }
    head.xchg(Some(node)).expect("a job for the new first node");
}
