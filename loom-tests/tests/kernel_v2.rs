//! The kernel v2 design must be caught: each of the races its reviewers found (D1 ABA, D2
//! reserve TOCTOU, D3 trim vs install) is a `should_panic` model with its own message. If loom
//! stopped finding one, that test would fail — so these tests show the suite has teeth, and the
//! matching sigdrop models (`freelist.rs`, `runtime.rs`) show sigdrop does not have the defect.
//!
//! Bound: 2 threads each, 1-3 jobs; the suite's preemption bound (2).
#![cfg(loom)]

use loom::sync::Arc;
use loom_tests::v2::V2;

/// D1: an NMI teardown stalls inside `del_first` while another consumer pops two jobs and
/// pushes the first back; the stale CAS installs a job that consumer still owns.
#[test]
#[should_panic(expected = "v2 D1: job owned by two parties after an ABA pop")]
fn d1_aba_pop_is_caught() {
    loom::model(|| {
        let v2 = Arc::new(V2::new(3, 3));
        let nmi = {
            let v2 = v2.clone();
            loom::thread::spawn(move || {
                if let Some(job) = v2.del_first() {
                    v2.add(job);
                }
            })
        };
        let first = v2.del_first();
        let _second = v2.del_first();
        if let Some(first) = first {
            v2.add(first);
        }
        nmi.join().unwrap();
        // Pop whatever is left while still holding `_second`: after a stale CAS by the NMI
        // consumer, the list contains a job we own.
        for _ in 0..3 {
            if v2.del_first().is_none() {
                break;
            }
        }
    });
}

/// D2: an NMI teardown lands between the install's read of `active` and its increment of
/// `refs`; the install computes a need one short and the invariant breaks.
#[test]
#[should_panic(expected = "v2 D2: reserve one short")]
fn d2_reserve_toctou_is_caught() {
    loom::model(|| {
        // One object installed, its job idle.
        let v2 = Arc::new(V2::new(3, 1));
        v2.refs.store(1, loom::sync::atomic::Ordering::SeqCst);
        let nmi = {
            let v2 = v2.clone();
            loom::thread::spawn(move || {
                v2.nmi_teardown().expect("the first teardown has its job");
            })
        };
        v2.reserve_for_install();
        nmi.join().unwrap();
        // Before the worker returns the first job, the new object is torn down from NMI too.
        assert!(v2.nmi_teardown().is_some(), "v2 D2: reserve one short");
    });
}

/// D3: the trimmer decides from a snapshot taken before an install incremented `refs`; the
/// install sees the old, high `total` and skips growing; the trimmer frees a job; a later NMI
/// teardown finds none.
#[test]
#[should_panic(expected = "v2 D3: trim freed a job an install counted on")]
fn d3_trim_vs_install_is_caught() {
    loom::model(|| {
        // One object installed, two idle jobs: one surplus that trim may free.
        let v2 = Arc::new(V2::new(3, 2));
        v2.refs.store(1, loom::sync::atomic::Ordering::SeqCst);
        let trimmer = {
            let v2 = v2.clone();
            loom::thread::spawn(move || {
                v2.trim_one();
            })
        };
        v2.reserve_for_install();
        trimmer.join().unwrap();
        // Both objects are torn down from NMI before the worker runs.
        assert!(v2.nmi_teardown().is_some());
        assert!(
            v2.nmi_teardown().is_some(),
            "v2 D3: trim freed a job an install counted on"
        );
    });
}
