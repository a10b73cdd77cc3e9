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

/// One resolution in `format`; `compact` JSON is one line (for JSON Lines).
pub fn render(res: &Resolution, format: Format, compact: bool) -> String {
    match format {
        Format::Json if compact => serde_json::to_string(res).unwrap_or_default(),
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
