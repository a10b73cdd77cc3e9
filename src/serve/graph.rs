//! `GET /v1/playbooks/{id}/graph`: the format parameter and its media types; the drawing is
//! the same as `whyfail graph`'s (`crate::graph`).

use whyfail_engine::compile::Playbook;

use crate::graph::{Drawing, dot, mermaid};

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
    let d = Drawing::of(pb);
    match format {
        GraphFormat::Mermaid => mermaid(&d),
        GraphFormat::Dot => dot(&d, &pb.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_draw_every_cause() {
        let (lib, _) = crate::load_library(&[] as &[std::path::PathBuf], true);
        let pb = lib
            .playbooks()
            .iter()
            .find(|p| p.id == "oauth_refresh_failed")
            .cloned()
            .expect("built-in playbook");
        let m = render(&pb, GraphFormat::Mermaid);
        let d = render(&pb, GraphFormat::Dot);
        assert!(m.starts_with("flowchart TD\n"));
        assert!(d.starts_with("digraph \"oauth_refresh_failed\" {"));
        for n in pb.nodes.iter() {
            if let whyfail_engine::compile::Node::Cause(c) = n {
                assert!(m.contains(&format!("cause_{}", c.id)), "{}", c.id);
                assert!(d.contains(&format!("cause_{}", c.id)), "{}", c.id);
            }
        }
    }
}
