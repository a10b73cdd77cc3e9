//! A compiled playbook's decision graph as Mermaid or Graphviz DOT, for
//! `GET /v1/playbooks/{id}/graph`.
//!
//! The graph is the one the compiler built and validated (`Playbook::graph`), so the picture
//! is what the walk follows. Node names are generated (`n0`, `n1`, ...) because ids of
//! different kinds may coincide; ids and kinds go in the labels, escaped for each format.
//! petgraph's own DOT output is not used because its format may change between versions.

use std::fmt::Write;

use whyfail_engine::compile::{GEdge, GKind, Playbook};

/// Output formats of the graph route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

impl std::str::FromStr for GraphFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mermaid" => Ok(GraphFormat::Mermaid),
            "dot" => Ok(GraphFormat::Dot),
            other => Err(format!(
                "unknown graph format `{other}`; expected mermaid or dot"
            )),
        }
    }
}

impl GraphFormat {
    /// The media type of the rendered text.
    pub fn content_type(self) -> &'static str {
        match self {
            GraphFormat::Mermaid => "text/vnd.mermaid; charset=utf-8",
            GraphFormat::Dot => "text/vnd.graphviz; charset=utf-8",
        }
    }
}

/// Renders the playbook's graph.
pub fn render(pb: &Playbook, format: GraphFormat) -> String {
    match format {
        GraphFormat::Mermaid => mermaid(pb),
        GraphFormat::Dot => dot(pb),
    }
}

fn kind_name(k: GKind) -> &'static str {
    match k {
        GKind::Symptom => "symptom",
        GKind::Step => "step",
        GKind::Cause => "cause",
        GKind::Check => "check",
        GKind::Action => "action",
    }
}

/// Mermaid labels go inside `"..."`; quotes and angle brackets become entity codes.
fn mermaid_label(s: &str) -> String {
    s.replace('&', "#amp;")
        .replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

fn mermaid(pb: &Playbook) -> String {
    let g = &pb.graph;
    let mut out = String::from("flowchart TD\n");
    for idx in g.node_indices() {
        let n = &g[idx];
        let label = mermaid_label(&format!("{}: {}", kind_name(n.kind), n.id));
        let (open, close) = match n.kind {
            GKind::Symptom => ("([\"", "\"])"),
            GKind::Step => ("{\"", "\"}"),
            GKind::Cause => ("[\"", "\"]"),
            GKind::Check => ("[/\"", "\"/]"),
            GKind::Action => ("(\"", "\")"),
        };
        let _ = writeln!(out, "  n{}{open}{label}{close}", idx.index());
    }
    for e in g.raw_edges() {
        let arrow = match e.weight {
            GEdge::Checks | GEdge::Fixes => "-.->",
            _ => "-->",
        };
        let _ = writeln!(
            out,
            "  n{} {arrow}|{}| n{}",
            e.source().index(),
            e.weight.label(),
            e.target().index()
        );
    }
    for (class, style) in [
        ("symptom", "fill:#dbeafe,stroke:#1d4ed8"),
        ("cause", "fill:#fef3c7,stroke:#b45309"),
        ("action", "fill:#dcfce7,stroke:#15803d"),
    ] {
        let members: Vec<String> = g
            .node_indices()
            .filter(|i| kind_name(g[*i].kind) == class)
            .map(|i| format!("n{}", i.index()))
            .collect();
        if !members.is_empty() {
            let _ = writeln!(out, "  classDef {class} {style}");
            let _ = writeln!(out, "  class {} {class}", members.join(","));
        }
    }
    out
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot(pb: &Playbook) -> String {
    let g = &pb.graph;
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [fontname=\"sans-serif\"];\n",
        dot_escape(&pb.id)
    );
    for idx in g.node_indices() {
        let n = &g[idx];
        let shape = match n.kind {
            GKind::Symptom => "doubleoctagon",
            GKind::Step => "diamond",
            GKind::Cause => "box",
            GKind::Check => "parallelogram",
            GKind::Action => "ellipse",
        };
        let _ = writeln!(
            out,
            "  n{} [label=\"{}\\n{}\", shape={shape}];",
            idx.index(),
            kind_name(n.kind),
            dot_escape(&n.id)
        );
    }
    for e in g.raw_edges() {
        let style = match e.weight {
            GEdge::Checks | GEdge::Fixes => ", style=dashed",
            _ => "",
        };
        let _ = writeln!(
            out,
            "  n{} -> n{} [label=\"{}\"{style}];",
            e.source().index(),
            e.target().index(),
            e.weight.label()
        );
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playbook() -> std::sync::Arc<Playbook> {
        let (lib, _) = crate::load_library(&[] as &[std::path::PathBuf], true);
        lib.playbooks()
            .iter()
            .find(|p| p.id == "oauth_refresh_failed")
            .cloned()
            .expect("built-in playbook")
    }

    #[test]
    fn mermaid_has_every_node_and_edge() {
        let pb = playbook();
        let m = render(&pb, GraphFormat::Mermaid);
        assert!(m.starts_with("flowchart TD\n"));
        assert!(m.contains("symptom: oauth_refresh_failed"));
        assert!(m.contains("cause: refresh_token_expired"));
        assert_eq!(
            m.matches("-->").count() + m.matches("-.->").count(),
            pb.graph.edge_count()
        );
    }

    #[test]
    fn dot_is_one_digraph() {
        let pb = playbook();
        let d = render(&pb, GraphFormat::Dot);
        assert!(d.starts_with("digraph \"oauth_refresh_failed\" {"));
        assert!(d.trim_end().ends_with('}'));
        assert_eq!(d.matches(" -> ").count(), pb.graph.edge_count());
    }
}
