//! The explanation: the same resolution told in three voices.
//!
//! - `user`: plain words for the person whose workflow failed: what happened, why, what to do.
//! - `support`: adds the evidence, the causes ruled out and why, and other possibilities.
//! - `developer`: adds the whole path through the playbook and the playbook set's hash.

use std::fmt::Write;
use std::str::FromStr;

use crate::model::resolution::{Confidence, NodeKind, Outcome, Resolution, Status};

/// Who the explanation is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Audience {
    #[default]
    User,
    Support,
    Developer,
}

impl FromStr for Audience {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Audience::User),
            "support" => Ok(Audience::Support),
            "developer" => Ok(Audience::Developer),
            other => Err(format!(
                "unknown audience `{other}`; expected user, support or developer"
            )),
        }
    }
}

fn sentence(s: &str) -> String {
    let t = s.trim();
    if t.ends_with(['.', '!', '?']) {
        t.to_string()
    } else {
        format!("{t}.")
    }
}

/// Renders the explanation markdown for `audience`.
pub fn render(res: &Resolution, audience: Audience) -> String {
    let mut out = String::new();
    let title = res.symptom.as_ref().map(|s| s.title.as_str());
    match (res.status, title) {
        (Status::NoMatch, _) | (_, None) => {
            out.push_str("**We could not recognise this failure.**\n\n");
            out.push_str("None of the known failure patterns matches it. Check the error message from the service, or contact support with the details below.\n");
        }
        (Status::Inconclusive, Some(title)) => {
            let _ = writeln!(out, "**{}**\n", sentence(title).trim_end_matches('.'));
            out.push_str("The information available is not enough to say why it happened.\n");
            if !res.candidates.is_empty() {
                out.push_str("\n**It may be one of these**\n\n");
                for c in &res.candidates {
                    if audience == Audience::User {
                        let _ = writeln!(out, "- {}", sentence(&c.title));
                    } else {
                        let _ = writeln!(
                            out,
                            "- `{}` ({}): {}. Open because {}",
                            c.id,
                            confidence_word(c.confidence),
                            sentence(&c.title).trim_end_matches('.'),
                            sentence(&c.why_open)
                        );
                    }
                }
            }
        }
        (Status::Diagnosed, Some(title)) => {
            let _ = writeln!(out, "**{}**\n", sentence(title).trim_end_matches('.'));
            if let Some(c) = res.root_causes.first() {
                let why = c.explain.as_deref().unwrap_or(&c.title);
                let hedge = if c.confidence == Confidence::Likely {
                    "Most likely: "
                } else {
                    ""
                };
                let _ = writeln!(out, "{hedge}{}", sentence(why));
            }
        }
    }
    if !res.actions.is_empty() {
        out.push_str("\n**What to do**\n\n");
        for (i, a) in res.actions.iter().enumerate() {
            let _ = writeln!(out, "{}. {}", i + 1, sentence(&a.title));
            if audience != Audience::User || i == 0 {
                for s in &a.steps {
                    let _ = writeln!(out, "   - {s}");
                }
            }
        }
    }
    if audience == Audience::User {
        return out;
    }

    if let Some(c) = res
        .root_causes
        .first()
        .filter(|_| res.status == Status::Diagnosed)
    {
        let _ = writeln!(
            out,
            "\n**Evidence for `{}`** ({})\n",
            c.id,
            confidence_word(c.confidence)
        );
        if c.evidence.is_empty() {
            out.push_str("- no single check decides it; see the path\n");
        }
        for e in &c.evidence {
            let _ = writeln!(out, "- {}", sentence(e));
        }
    }
    let others: Vec<_> = res
        .root_causes
        .iter()
        .skip(usize::from(res.status == Status::Diagnosed))
        .collect();
    if !others.is_empty() {
        out.push_str("\n**Other possibilities**\n\n");
        for c in others {
            let _ = writeln!(
                out,
                "- `{}` ({}): {}",
                c.id,
                confidence_word(c.confidence),
                c.title
            );
        }
    }
    let ruled: Vec<_> = res
        .path
        .iter()
        .filter(|p| p.kind == NodeKind::Cause && p.outcome == Outcome::RuledOut)
        .collect();
    if !ruled.is_empty() {
        out.push_str("\n**Ruled out**\n\n");
        for p in ruled {
            match &p.detail {
                Some(d) => {
                    let _ = writeln!(out, "- `{}`: {}", p.node, sentence(d));
                }
                None => {
                    let _ = writeln!(out, "- `{}`", p.node);
                }
            }
        }
    }
    if audience == Audience::Support {
        return out;
    }

    out.push_str("\n**Path**\n\n| # | node | kind | outcome | detail |\n|---|---|---|---|---|\n");
    for (i, p) in res.path.iter().enumerate() {
        let kind = serde_json::to_value(p.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let outcome = serde_json::to_value(p.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let detail = p
            .detail
            .as_deref()
            .unwrap_or("")
            .replace('|', "\\|")
            .replace('\n', " ");
        let _ = writeln!(
            out,
            "| {} | `{}` | {kind} | {outcome} | {detail} |",
            i + 1,
            p.node
        );
    }
    let playbook = res.symptom.as_ref().map_or("none", |s| s.playbook.as_str());
    let _ = writeln!(
        out,
        "\nPlaybook `{playbook}`, set `{}`, engine {}.",
        res.playbook_set, res.engine_version
    );
    out
}

fn confidence_word(c: Confidence) -> &'static str {
    match c {
        Confidence::Confirmed => "confirmed",
        Confidence::Likely => "likely",
        Confidence::Possible => "possible",
    }
}
