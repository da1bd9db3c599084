//! What the report reads: criterion's estimates (`<criterion>/<group>/<row>/new/*.json`) and the
//! extras the benches and `scripts/callgrind.sh` write, all parsed with serde_json.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

/// One row's estimates, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub median: f64,
    pub lower: f64,
    pub upper: f64,
    /// When criterion wrote them.
    pub written: SystemTime,
}

/// Every row criterion has results for, by full id (`group/row`), and the extras.
pub struct Results {
    pub estimates: BTreeMap<String, Estimate>,
    extras: BTreeMap<String, Value>,
    callgrind_breakdown: Option<String>,
}

impl Results {
    /// Reads everything under `criterion` and `extras`; rows or files that cannot be read are
    /// left out (the report shows them as not measured).
    pub fn load(criterion: &Path, extras: &Path) -> Results {
        let mut estimates = BTreeMap::new();
        let mut stack = vec![criterion.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for path in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
                match path.file_name().and_then(|n| n.to_str()) {
                    Some("new") => {
                        if let Some((id, estimate)) = read_row(&path) {
                            estimates.insert(id, estimate);
                        }
                    }
                    Some("report") => {} // criterion's HTML
                    _ => stack.push(path),
                }
            }
        }
        let files: BTreeMap<String, Value> = [
            "latency",
            "latency_owned",
            "storm",
            "signal",
            "read_writers",
            "callgrind",
            "reclaim_writer",
            "wake_modes",
        ]
        .into_iter()
        .filter_map(|name| {
            let text = std::fs::read_to_string(extras.join(format!("{name}.json"))).ok()?;
            Some((name.to_string(), serde_json::from_str(&text).ok()?))
        })
        .collect();
        let callgrind_breakdown =
            std::fs::read_to_string(extras.join("callgrind-teardown.txt")).ok();
        Results {
            estimates,
            extras: files,
            callgrind_breakdown,
        }
    }

    /// The median of row `id`.
    pub fn get(&self, id: &str) -> Option<f64> {
        self.estimates.get(id).map(|e| e.median)
    }

    /// Row `a`'s median over row `b`'s.
    pub fn ratio(&self, a: &str, b: &str) -> Option<f64> {
        Some(self.get(a)? / self.get(b)?)
    }

    /// The number `key` of extras file `file` (`latency` for `latency.json`).
    pub fn extra(&self, file: &str, key: &str) -> Option<f64> {
        self.extras.get(file)?.get(key)?.as_f64()
    }

    /// Whether extras file `file` was there.
    pub fn has_extra(&self, file: &str) -> bool {
        self.extras.contains_key(file)
    }

    /// `scripts/callgrind.sh`'s per-teardown breakdown, as text.
    pub fn callgrind_breakdown(&self) -> Option<&str> {
        self.callgrind_breakdown.as_deref()
    }
}

/// One row from criterion's `new/benchmark.json` (its full id) and `new/estimates.json` (the
/// median's point estimate and 95% confidence interval).
fn read_row(new: &Path) -> Option<(String, Estimate)> {
    let read = |name: &str| -> Option<Value> {
        serde_json::from_str(&std::fs::read_to_string(new.join(name)).ok()?).ok()
    };
    let id = read("benchmark.json")?
        .get("full_id")?
        .as_str()?
        .to_string();
    let estimates = read("estimates.json")?;
    let median = estimates.get("median")?;
    let interval = median.get("confidence_interval")?;
    let written = std::fs::metadata(new.join("estimates.json"))
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Some((
        id,
        Estimate {
            median: median.get("point_estimate")?.as_f64()?,
            lower: interval.get("lower_bound")?.as_f64()?,
            upper: interval.get("upper_bound")?.as_f64()?,
            written,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_criterion_row_is_read_from_its_two_files() {
        let dir = std::env::temp_dir().join(format!("sigdrop-report-{}", std::process::id()));
        let new = dir.join("slot").join("RawSlot__xchg").join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"slot","function_id":"RawSlot::xchg","full_id":"slot/RawSlot::xchg"}"#,
        )
        .unwrap();
        std::fs::write(
            new.join("estimates.json"),
            r#"{"mean":{"point_estimate":9.0},"median":{"confidence_interval":
               {"confidence_level":0.95,"lower_bound":6.5,"upper_bound":7.5},
               "point_estimate":7.0,"standard_error":0.1}}"#,
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("report")).unwrap();
        let results = Results::load(&dir, &dir.join("no-extras"));
        std::fs::remove_dir_all(&dir).unwrap();
        let e = results.estimates["slot/RawSlot::xchg"];
        assert_eq!((e.median, e.lower, e.upper), (7.0, 6.5, 7.5));
        assert_eq!(
            results.ratio("slot/RawSlot::xchg", "slot/RawSlot::xchg"),
            Some(1.0)
        );
        assert_eq!(results.extra("storm", "wakes"), None);
    }
}
