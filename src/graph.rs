//! A compiled playbook's decision graph as a picture: Mermaid, Graphviz DOT, or SVG through
//! Graphviz's `dot`; optionally coloured by the path one resolution took. Used by
//! `whyfail graph` and by the service's `GET /v1/playbooks/{id}/graph`.
//!
//! symptom → steps → causes → checks → actions, shapes by kind (symptom stadium, step diamond,
//! check hexagon, cause box, action rounded) and edges labelled with what they mean (`pass`,
//! `fail`, `unknown`; `require`, `support`; `fix`). petgraph's own DOT output is not used
//! because its format may change between versions; the two emitters here are small.

use std::io::Write;
use std::process::{Command, Stdio};

use whyfail_engine::compile::{Node, Playbook};
use whyfail_engine::model::playbook::Role;
use whyfail_engine::model::resolution::{Confidence, NodeKind, Outcome, Resolution, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Symptom,
    Step,
    Cause,
    Check,
    Action,
}

struct GNode {
    /// Unique, sanitised id for the output language.
    key: String,
    kind: Kind,
    id: String,
    title: Option<String>,
    outcome: Option<Outcome>,
}

struct GEdge {
    from: usize,
    to: usize,
    label: &'static str,
    dashed: bool,
    taken: bool,
}

/// The graph to draw: nodes in declaration order, edges in walk order.
/// A playbook laid out as nodes and labelled edges, ready to emit.
pub struct Drawing {
    nodes: Vec<GNode>,
    edges: Vec<GEdge>,
    /// One-line summary of the `--event` run, if any.
    caption: Option<String>,
}

fn sanitise(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max - 1).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(a, _)| a);
    format!("{cut}…")
}

impl Drawing {
    fn add(&mut self, kind: Kind, id: &str, title: Option<&str>) -> usize {
        let prefix = match kind {
            Kind::Symptom => "symptom",
            Kind::Step => "step",
            Kind::Cause => "cause",
            Kind::Check => "check",
            Kind::Action => "action",
        };
        let key = format!("{prefix}_{}", sanitise(id));
        if let Some(i) = self.nodes.iter().position(|n| n.key == key) {
            return i;
        }
        self.nodes.push(GNode {
            key,
            kind,
            id: id.to_string(),
            title: title.map(|t| short(t, 48)),
            outcome: None,
        });
        self.nodes.len() - 1
    }

    fn edge(&mut self, from: usize, to: usize, label: &'static str, dashed: bool) {
        self.edges.push(GEdge {
            from,
            to,
            label,
            dashed,
            taken: false,
        });
    }

    /// The playbook's nodes and routes.
    pub fn of(pb: &Playbook) -> Drawing {
        let mut d = Drawing {
            nodes: Vec::new(),
            edges: Vec::new(),
            caption: None,
        };
        let root = d.add(Kind::Symptom, &pb.id, Some(&pb.title));
        let idx: Vec<usize> = pb
            .nodes
            .iter()
            .map(|n| match n {
                Node::Step(s) => d.add(Kind::Step, &s.check.id, s.check.title.as_deref()),
                Node::Cause(c) => d.add(Kind::Cause, &c.id, Some(&c.title)),
            })
            .collect();
        for s in &pb.start {
            d.edge(root, idx[*s], "start", false);
        }
        for (i, n) in pb.nodes.iter().enumerate() {
            match n {
                Node::Step(s) => {
                    for (list, label) in [
                        (&s.on_pass, "pass"),
                        (&s.on_fail, "fail"),
                        (&s.on_unknown, "unknown"),
                    ] {
                        for t in list {
                            d.edge(idx[i], idx[*t], label, false);
                        }
                    }
                }
                Node::Cause(c) => {
                    for k in &c.checks {
                        let kn = d.add(Kind::Check, &k.id, k.title.as_deref());
                        let label = match k.role {
                            Role::Require => "require",
                            Role::Support => "support",
                        };
                        d.edge(idx[i], kn, label, k.role == Role::Support);
                    }
                    for a in &c.actions {
                        let an = d.add(Kind::Action, &a.id, Some(&a.title));
                        d.edge(idx[i], an, "fix", false);
                    }
                }
            }
        }
        for a in &pb.inconclusive.actions {
            let an = d.add(Kind::Action, &a.id, Some(&a.title));
            d.edge(root, an, "inconclusive", true);
        }
        d
    }

    /// Colours the nodes the resolution visited and marks the edges the walk took.
    /// Colours the nodes the resolution visited by outcome, and thickens the edges it took.
    pub fn highlight(&mut self, pb: &Playbook, res: &Resolution) {
        let status = serde_json::to_value(res.status).unwrap_or_default();
        let best = res
            .root_causes
            .first()
            .map(|c| format!(", root cause {}", c.id))
            .unwrap_or_default();
        let by = res
            .symptom
            .as_ref()
            .map_or("no playbook".to_string(), |s| format!("playbook {}", s.id));
        self.caption = Some(format!(
            "event path: {} by {by}{best}",
            status.as_str().unwrap_or("")
        ));
        if res.symptom.as_ref().is_none_or(|s| s.id != pb.id) {
            return;
        }
        for n in &mut self.nodes {
            let kind = match n.kind {
                Kind::Symptom => NodeKind::Symptom,
                Kind::Step | Kind::Check => NodeKind::Check,
                Kind::Cause => NodeKind::Cause,
                Kind::Action => NodeKind::Action,
            };
            n.outcome = res
                .path
                .iter()
                .find(|s| s.kind == kind && s.node == n.id)
                .map(|s| s.outcome)
                .filter(|o| *o != Outcome::Skipped);
        }
        let diagnosed: Vec<&str> = res
            .root_causes
            .iter()
            .filter(|c| c.confidence <= Confidence::Likely)
            .map(|c| c.id.as_str())
            .collect();
        for e in &mut self.edges {
            let (from, to) = (&self.nodes[e.from], &self.nodes[e.to]);
            e.taken = match (from.kind, e.label) {
                (Kind::Symptom, "start") => to.outcome.is_some(),
                (Kind::Symptom, "inconclusive") => {
                    res.status == Status::Inconclusive && to.outcome.is_some()
                }
                (Kind::Step, label) => match from.outcome {
                    Some(Outcome::Pass) => label == "pass",
                    Some(Outcome::Fail) => label == "fail",
                    Some(_) => label == "unknown",
                    None => false,
                },
                (Kind::Cause, "fix") => {
                    diagnosed.contains(&from.id.as_str()) && to.outcome.is_some()
                }
                (Kind::Cause, _) => from.outcome.is_some() && to.outcome.is_some(),
                _ => false,
            };
        }
    }
}

/// Fill and stroke colours per outcome, shared by both emitters.
fn colours(o: Outcome) -> (&'static str, &'static str) {
    match o {
        Outcome::Matched => ("#e3f2fd", "#1565c0"),
        Outcome::Confirmed => ("#c8e6c9", "#2e7d32"),
        Outcome::RuledOut => ("#eeeeee", "#9e9e9e"),
        Outcome::Inconclusive => ("#fff9c4", "#f9a825"),
        Outcome::Pass => ("#dcedc8", "#558b2f"),
        Outcome::Fail => ("#ffcdd2", "#c62828"),
        Outcome::Unknown => ("#fff3e0", "#ef6c00"),
        Outcome::Error => ("#ffcdd2", "#b71c1c"),
        Outcome::Skipped => ("#ffffff", "#bdbdbd"),
        Outcome::Recommended => ("#bbdefb", "#0d47a1"),
    }
}

fn outcome_word(o: Outcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Mermaid label text: quotes and angle brackets as entities (`#` first, entities use it).
fn mermaid_text(s: &str) -> String {
    s.replace('#', "#35;")
        .replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

fn label(n: &GNode, line_break: &str, esc: fn(&str) -> String) -> String {
    let mut s = esc(&n.id);
    if let Some(t) = &n.title {
        s.push_str(line_break);
        s.push_str(&esc(t));
    }
    if let Some(o) = n.outcome {
        s.push_str(line_break);
        s.push_str(&esc(&format!("[{}]", outcome_word(o))));
    }
    s
}

/// The drawing as a Mermaid flowchart.
pub fn mermaid(d: &Drawing) -> String {
    let mut out = String::from("flowchart TD\n");
    if let Some(c) = &d.caption {
        out.push_str(&format!("  %% {c}\n"));
    }
    for n in &d.nodes {
        let l = label(n, "<br/>", mermaid_text);
        let shape = match n.kind {
            Kind::Symptom => format!("([\"{l}\"])"),
            Kind::Step => format!("{{\"{l}\"}}"),
            Kind::Check => format!("{{{{\"{l}\"}}}}"),
            Kind::Cause => format!("[\"{l}\"]"),
            Kind::Action => format!("(\"{l}\")"),
        };
        out.push_str(&format!("  {}{shape}\n", n.key));
    }
    for e in &d.edges {
        let arrow = if e.dashed { "-.->" } else { "-->" };
        out.push_str(&format!(
            "  {} {arrow}|{}| {}\n",
            d.nodes[e.from].key, e.label, d.nodes[e.to].key
        ));
    }
    let mut used: Vec<Outcome> = Vec::new();
    for n in &d.nodes {
        if let Some(o) = n.outcome
            && !used.contains(&o)
        {
            used.push(o);
        }
    }
    for o in &used {
        let (fill, stroke) = colours(*o);
        let extra = match o {
            Outcome::RuledOut => ",color:#757575",
            Outcome::Confirmed | Outcome::Recommended => ",stroke-width:3px",
            Outcome::Error => ",stroke-dasharray:4",
            _ => "",
        };
        out.push_str(&format!(
            "  classDef {} fill:{fill},stroke:{stroke}{extra}\n",
            outcome_word(*o)
        ));
    }
    for o in &used {
        let keys: Vec<&str> = d
            .nodes
            .iter()
            .filter(|n| n.outcome == Some(*o))
            .map(|n| n.key.as_str())
            .collect();
        out.push_str(&format!(
            "  class {} {}\n",
            keys.join(","),
            outcome_word(*o)
        ));
    }
    let taken: Vec<String> = d
        .edges
        .iter()
        .enumerate()
        .filter(|(_, e)| e.taken)
        .map(|(i, _)| i.to_string())
        .collect();
    if !taken.is_empty() {
        out.push_str(&format!(
            "  linkStyle {} stroke:#1565c0,stroke-width:3px\n",
            taken.join(",")
        ));
    }
    out
}

fn dot_text(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The drawing as a Graphviz DOT digraph named `name`.
pub fn dot(d: &Drawing, name: &str) -> String {
    let mut out = format!("digraph \"{}\" {{\n", dot_text(name));
    out.push_str("  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=9];\n");
    if let Some(c) = &d.caption {
        out.push_str(&format!("  labelloc=t;\n  label=\"{}\";\n", dot_text(c)));
    }
    for n in &d.nodes {
        let shape = match n.kind {
            Kind::Symptom => "shape=box, style=\"rounded,filled\", peripheries=2",
            Kind::Step => "shape=diamond, style=filled",
            Kind::Check => "shape=hexagon, style=filled",
            Kind::Cause => "shape=box, style=filled",
            Kind::Action => "shape=box, style=\"rounded,filled\"",
        };
        let (fill, stroke) = n.outcome.map_or(("#ffffff", "#424242"), colours);
        let width = if n.outcome.is_some() {
            ", penwidth=2"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {} [{shape}, fillcolor=\"{fill}\", color=\"{stroke}\"{width}, label=\"{}\"];\n",
            n.key,
            label(n, "\\n", dot_text)
        ));
    }
    for e in &d.edges {
        let mut attrs = format!("label=\"{}\"", e.label);
        if e.dashed {
            attrs.push_str(", style=dashed");
        }
        if e.taken {
            attrs.push_str(", color=\"#1565c0\", penwidth=2.5");
        }
        out.push_str(&format!(
            "  {} -> {} [{attrs}];\n",
            d.nodes[e.from].key, d.nodes[e.to].key
        ));
    }
    out.push_str("}\n");
    out
}

/// DOT source rendered to SVG by Graphviz's `dot` (an error says how to do without it).
pub fn svg(dot_src: &str) -> Result<String, String> {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "`--format svg` needs Graphviz's `dot` on the PATH, and it was not found\n  hint: install Graphviz, or use `--format dot` (or `mermaid`) and render it elsewhere".to_string()
            } else {
                format!("cannot run Graphviz's `dot`: {e}")
            }
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(dot_src.as_bytes())
            .map_err(|e| format!("cannot feed Graphviz's `dot`: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("Graphviz's `dot` failed: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "Graphviz's `dot` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_labels_are_safe() {
        assert_eq!(sanitise("a-b.c d"), "a_b_c_d");
        assert_eq!(
            mermaid_text(r#"say "hi" <b> #1"#),
            "say #quot;hi#quot; #lt;b#gt; #35;1"
        );
        assert_eq!(dot_text(r#"a "b" \c"#), r#"a \"b\" \\c"#);
        assert_eq!(short("one two three four", 10), "one two…");
    }
}
