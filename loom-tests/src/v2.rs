//! The kernel v2 design ("bpf: Offload kptr destructors that run from NMI", v2), as a small
//! model: a global idle list popped with an untagged `del_first`-style CAS by several consumers,
//! and three counters — `total` jobs, `refs` installed objects, `active` queued jobs — with
//! reserve and trim deciding from snapshots of them. It keeps `total >= refs + active` only in
//! the absence of races. It is not sigdrop's code and is never used by it; the tests in
//! `tests/kernel_v2.rs` show loom catching its defects.
//!
//! Jobs are indices into a fixed table, so the model never frees memory; a "freed" job is
//! simply no longer counted, which is enough to show the accounting going wrong.

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// End of the idle list.
pub const NIL: usize = usize::MAX;

/// The v2 state.
pub struct V2 {
    head: AtomicUsize,
    next: Vec<AtomicUsize>,
    owned: Vec<AtomicBool>,
    allocated: AtomicUsize,
    /// Jobs allocated (the patch's `total`).
    pub total: AtomicUsize,
    /// Objects installed (the patch's `refs`).
    pub refs: AtomicUsize,
    /// Jobs queued or running (the patch's `active`).
    pub active: AtomicUsize,
}

impl V2 {
    /// A model with room for `capacity` jobs, `idle` of them allocated and on the idle list.
    pub fn new(capacity: usize, idle: usize) -> Self {
        let v2 = V2 {
            head: AtomicUsize::new(NIL),
            next: (0..capacity).map(|_| AtomicUsize::new(NIL)).collect(),
            owned: (0..capacity).map(|_| AtomicBool::new(false)).collect(),
            allocated: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            refs: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
        };
        for _ in 0..idle {
            v2.grow_one();
        }
        v2
    }

    /// Allocates a job and puts it on the idle list (`total` first, as the patch does).
    pub fn grow_one(&self) {
        let idx = self.allocated.fetch_add(1, Ordering::SeqCst);
        assert!(idx < self.next.len(), "model capacity exceeded");
        self.total.fetch_add(1, Ordering::SeqCst);
        self.add(idx);
    }

    /// `llist_add`: push on the idle list.
    pub fn add(&self, idx: usize) {
        self.owned[idx].store(false, Ordering::SeqCst);
        let mut head = self.head.load(Ordering::SeqCst);
        loop {
            self.next[idx].store(head, Ordering::SeqCst);
            match self
                .head
                .compare_exchange(head, idx, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// `llist_del_first` used by several consumers: read head, read its next, CAS — untagged.
    /// Records the new owner and panics if the job already had one.
    pub fn del_first(&self) -> Option<usize> {
        let mut head = self.head.load(Ordering::SeqCst);
        loop {
            if head == NIL {
                return None;
            }
            let next = self.next[head].load(Ordering::SeqCst);
            match self
                .head
                .compare_exchange(head, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    let was = self.owned[head].swap(true, Ordering::SeqCst);
                    assert!(!was, "v2 D1: job owned by two parties after an ABA pop");
                    return Some(head);
                }
                Err(actual) => head = actual,
            }
        }
    }

    /// `bpf_kptr_offload_inc` for an install: read `active`, then increment `refs`, then grow
    /// until `total` covers `refs + active` (a decision from two separate reads: D2).
    pub fn reserve_for_install(&self) {
        let active = self.active.load(Ordering::SeqCst);
        let refs = self.refs.fetch_add(1, Ordering::SeqCst) + 1;
        while self.total.load(Ordering::SeqCst) < refs + active {
            self.grow_one();
        }
    }

    /// An NMI teardown: the object leaves its slot and takes an idle job (None: none found).
    pub fn nmi_teardown(&self) -> Option<usize> {
        self.refs.fetch_sub(1, Ordering::SeqCst);
        self.active.fetch_add(1, Ordering::SeqCst);
        self.del_first()
    }

    /// The trimmer: snapshot the three counters; if the pool exceeds `refs + active`, pop a job
    /// and CAS `total` down from the snapshot, pushing the job back if the CAS fails (D3).
    pub fn trim_one(&self) -> bool {
        let total = self.total.load(Ordering::SeqCst);
        let refs = self.refs.load(Ordering::SeqCst);
        let active = self.active.load(Ordering::SeqCst);
        if total <= refs + active {
            return false;
        }
        let Some(job) = self.del_first() else {
            return false;
        };
        if self
            .total
            .compare_exchange(total, total - 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            true // freed (in the model: simply dropped from circulation)
        } else {
            self.add(job);
            false
        }
    }
}
