//! The kernel selftest ("kptr destructor NMI exerciser"), ported: the same code as the
//! `nmi_exerciser` example (included from it), run with a small configuration. Timer-driven
//! signals delete map entries from a restricted-context handler in both modes; every object must
//! be destroyed exactly once, outside the handler, with no allocation in the handler, no
//! emergency fallback, and no leak.

#[allow(dead_code)]
#[path = "../examples/nmi_exerciser.rs"]
mod exerciser;

use exerciser::{Config, Mode};
use std::time::Duration;

#[test]
fn array_and_hash_modes_pass_every_check() {
    let cfg = Config {
        modes: vec![Mode::Array, Mode::Hash],
        rounds: 64,
        slots: 8,
        threads: 2,
        interval: Duration::from_micros(100),
        seconds: None,
        json: false,
        progress: false,
    };
    let outcomes = exerciser::run(&cfg);
    assert_eq!(outcomes.len(), 2);
    for o in &outcomes {
        assert!(o.pass(), "{o:?}");
        assert_eq!(o.rounds, 2 * 64, "{o:?}");
        assert_eq!(o.objects, 2 * 64 * 8, "{o:?}");
        assert_eq!(o.dtors, o.objects, "{o:?}");
        assert_eq!(
            o.deleted_in_handler, o.objects,
            "every object left through the handler"
        );
        assert_eq!(o.offloaded, o.objects, "{o:?}");
    }
}
