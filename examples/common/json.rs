//! A tiny JSON writer for the examples' `--json` output (included with `#[path]`): objects and
//! arrays of numbers, strings and nested values, with strings escaped as JSON requires.

use std::fmt::Write as _;

/// A JSON value.
pub enum Json {
    /// A whole number.
    Count(u64),
    /// A finite number (written with three decimals; a non-finite one is written as `null`).
    Float(f64),
    /// A string.
    Text(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, fields in order.
    Object(Vec<(&'static str, Json)>),
}

impl Json {
    /// The value as JSON text, on one line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Count(n) => write!(out, "{n}").expect("writing to a String"),
            Json::Float(x) if x.is_finite() => write!(out, "{x:.3}").expect("writing to a String"),
            Json::Float(_) => out.push_str("null"),
            Json::Text(s) => string(out, s),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    string(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// `s` as a JSON string: quotes, backslashes and control characters escaped.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                write!(out, "\\u{:04x}", u32::from(c)).expect("writing to a String")
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
