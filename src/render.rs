//! Renderers: a resolution as JSON, as plain text for a terminal, or as markdown.
//! They only format; the explanation's wording comes from the engine.

use std::fmt::Write;

use whyfail_engine::Resolution;
use whyfail_engine::model::resolution::{Confidence, Status};

/// Output formats of `diagnose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Text,
    Markdown,
}

fn word<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A resolution as one line of JSON, appended to `out`: what `diagnose` prints, each line of a
/// batch and the service's answers. sonic-rs writes the same bytes as serde_json (tested
/// below on arbitrary values and on every case's resolution) and scans strings for characters
/// to escape with SIMD: serde_json's byte-at-a-time scan was 13% of a batch's instructions
/// (~7 KB of JSON per resolution, mostly text).
pub fn write_json(out: &mut Vec<u8>, res: &Resolution) {
    let start = out.len();
    if sonic_rs::to_writer(&mut *out, res).is_err() {
        out.truncate(start);
    }
}

/// One resolution in `format`; `compact` JSON is one line (for JSON Lines).
pub fn render(res: &Resolution, format: Format, compact: bool) -> String {
    match format {
        Format::Json if compact => {
            let mut out = Vec::with_capacity(8 << 10);
            write_json(&mut out, res);
            String::from_utf8(out).unwrap_or_default()
        }
        Format::Json => serde_json::to_string_pretty(res).unwrap_or_default(),
        Format::Markdown => {
            let mut md = res.explanation.clone();
            for a in &res.acted {
                md.push_str(&format!(
                    "\n\n**whyfail did:** {} ({}): {}",
                    a.action, a.status, a.detail
                ));
            }
            md
        }
        Format::Text => text(res),
    }
}

fn text(res: &Resolution) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "status:      {}", word(&res.status));
    if let Some(s) = &res.symptom {
        let _ = writeln!(out, "symptom:     {} - {} ({})", s.id, s.title, s.playbook);
    }
    for (i, c) in res.root_causes.iter().enumerate() {
        let label = if i == 0 && res.status == Status::Diagnosed {
            "root cause:"
        } else {
            "possible:   "
        };
        let _ = writeln!(
            out,
            "{label} {} ({}) - {}",
            c.id,
            confidence(c.confidence),
            c.title
        );
        for e in &c.evidence {
            let _ = writeln!(out, "               {e}");
        }
    }
    for (i, a) in res.actions.iter().enumerate() {
        let auto = if a.automatic { ", automatic" } else { "" };
        let _ = writeln!(
            out,
            "{} {}. {} [{}{auto}] - {}",
            if i == 0 { "actions:   " } else { "           " },
            i + 1,
            a.id,
            word(&a.actor),
            a.title
        );
        if !a.params.is_empty() {
            let _ = writeln!(
                out,
                "                 params: {}",
                serde_json::Value::Object(a.params.clone())
            );
        }
    }
    let _ = write!(out, "disposition: {}", word(&res.disposition.kind));
    if let Some(s) = res.disposition.retry_after_seconds {
        let _ = write!(out, " ({s} s)");
    }
    out.push('\n');
    // What whyfail did itself; the new credentials are only in the JSON output, never here.
    for a in &res.acted {
        let _ = writeln!(out, "acted:       {} {}: {}", a.action, a.status, a.detail);
    }
    if res.new_credentials.is_some() {
        out.push_str(
            "credentials: new credentials returned in the JSON output (`new_credentials`)\n",
        );
    }
    if !res.trace.is_empty() {
        out.push_str(&trace(res));
    }
    out
}

/// `--trace` as text: one block per evaluated script, in evaluation order.
fn trace(res: &Resolution) -> String {
    let mut out = String::from("\ntrace (every script evaluated, in order):\n");
    for t in &res.trace {
        let _ = writeln!(
            out,
            "\n[{}] {}/{} ({}, {} us, {})",
            t.outcome,
            t.playbook,
            t.node,
            t.kind,
            t.micros,
            if t.native { "native" } else { "rhai" }
        );
        for line in t.script.lines() {
            let _ = writeln!(out, "    | {line}");
        }
        for (path, v) in &t.reads {
            let _ = writeln!(out, "    read  {path} = {v}");
        }
        for (fact, v) in &t.facts {
            let _ = writeln!(out, "    fact  {fact} = {v}");
        }
        if let Some(d) = &t.detail {
            let _ = writeln!(out, "    -> {d}");
        }
    }
    out
}

fn confidence(c: Confidence) -> &'static str {
    match c {
        Confidence::Confirmed => "confirmed",
        Confidence::Likely => "likely",
        Confidence::Possible => "possible",
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    /// Any JSON value: strings of any characters (control characters, quotes, backslashes,
    /// non-ASCII, astral planes), integers at their limits, finite floats, nested.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[\\x00-\\x1f\"\\\\/\\x7f\\u{80}-\\u{2030}a ]{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        /// `write_json`'s writer gives serde_json's bytes for every value (the cases test does
        /// the same on real resolutions).
        #[test]
        fn the_json_writer_writes_serde_jsons_bytes(v in value()) {
            let ours = sonic_rs::to_string(&v).expect("sonic-rs serialises any JSON value");
            prop_assert_eq!(ours, serde_json::to_string(&v).expect("serde_json"));
        }
    }
}
