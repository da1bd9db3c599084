//! The report's output: markdown lines and ratio tables, and how figures are written.

use crate::results::Results;
use std::fmt::Write as _;
use std::time::SystemTime;

/// A table: `rows` (label, row id) with their median, its 95% interval, and their ratio to each
/// of `cols` (label, row id).
pub struct Table {
    pub rows: &'static [(&'static str, &'static str)],
    pub cols: &'static [(&'static str, &'static str)],
}

/// The report being written.
#[derive(Default)]
pub struct Markdown {
    pub out: String,
}

impl Markdown {
    pub fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    /// A paragraph: `text`, then an empty line.
    pub fn para(&mut self, text: &str) {
        self.line(text);
        self.line("");
    }

    pub fn table(&mut self, results: &Results, table: &Table) {
        let mut head = String::from("| benchmark | median | 95% CI |");
        let mut sep = String::from("|---|---:|---:|");
        for (label, _) in table.cols {
            let _ = write!(head, " ÷ {label} |");
            sep.push_str("---:|");
        }
        self.line(&head);
        self.line(&sep);
        for (label, id) in table.rows {
            let mut row = format!("| {label} |");
            match results.estimates.get(*id) {
                Some(e) => {
                    let _ = write!(
                        row,
                        " {} | {} – {} |",
                        ns(e.median),
                        ns(e.lower),
                        ns(e.upper)
                    );
                }
                None => row.push_str(" — | — |"),
            }
            for (_, col) in table.cols {
                let cell = if col == id {
                    "1.00x".to_string()
                } else {
                    ratio(results.ratio(id, col))
                };
                let _ = write!(row, " {cell} |");
            }
            self.line(&row);
        }
        self.line("");
    }
}

/// Nanoseconds, with the precision that matters at that size.
pub fn ns(ns: f64) -> String {
    if ns >= 10_000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else if ns >= 100.0 {
        format!("{ns:.0} ns")
    } else {
        format!("{ns:.2} ns")
    }
}

/// `1.23x`, or `—` if either figure is missing.
pub fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "—".into(), |r| format!("{r:.2}x"))
}

/// A count, or `—`.
pub fn count(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.0}"))
}

/// Nanoseconds, or `—`.
pub fn opt_ns(v: Option<f64>) -> String {
    v.map_or("—".into(), ns)
}

/// ✓, ✗, or "not measured".
pub fn mark(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "not measured",
    }
}

/// `YYYY-MM-DD HH:MM UTC` of a time (civil-from-days, no dependencies).
pub fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The machine the figures come from: CPUs, CPU model, kernel, compiler.
pub fn machine() -> Vec<(&'static str, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let model = field("model name").unwrap_or_else(|| "unknown".into());
    let family = field("cpu family").unwrap_or_default();
    let model_no = field("model").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    vec![
        ("nproc", nproc.to_string()),
        (
            "CPU",
            format!("{model} (family {family}, model {model_no})"),
        ),
        ("kernel", kernel),
        ("rustc", rustc),
    ]
}
