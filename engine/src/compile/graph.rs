//! Structural checks on one playbook's decision graph, built with petgraph: acyclic (naming
//! the cycle), every cause and step reachable from the symptom, every cause ending in an action.
//!
//! Each rule is its own function so a failure names the rule that caught it.

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::Dfs;

use crate::diag::{Diagnostic, code};

/// The node kinds of the graph used for validation and export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GKind {
    Symptom,
    Step,
    Cause,
    Check,
    Action,
}

/// A graph node: its kind, its id and where it was declared (for diagnostics).
#[derive(Debug, Clone)]
pub struct GNode {
    pub kind: GKind,
    pub id: String,
    pub yaml_path: String,
    pub line: u64,
    pub column: u64,
}

/// Edge labels: the outcome that routes the walk, or the structural relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GEdge {
    Start,
    Pass,
    Fail,
    Unknown,
    Checks,
    Fixes,
}

impl GEdge {
    pub fn label(self) -> &'static str {
        match self {
            GEdge::Start => "start",
            GEdge::Pass => "pass",
            GEdge::Fail => "fail",
            GEdge::Unknown => "unknown",
            GEdge::Checks => "checks",
            GEdge::Fixes => "fixes",
        }
    }
}

pub type Graph = DiGraph<GNode, GEdge>;

fn diag_at(file: &str, code: &'static str, node: &GNode, msg: String) -> Diagnostic {
    Diagnostic::error(code, file, msg)
        .at_path(node.yaml_path.clone())
        .at(node.line, node.column)
}

/// Runs every structural rule; returns the problems found.
pub fn validate(file: &str, g: &Graph, root: NodeIndex) -> Vec<Diagnostic> {
    let mut out = check_cycles(file, g);
    // Reachability is meaningless inside a cycle report; the cycle is the real problem.
    if out.is_empty() {
        out.extend(check_reachable(file, g, root));
    }
    out.extend(check_causes_have_actions(file, g));
    out
}

/// Every strongly connected component with more than one node, and every self-loop, is a cycle.
fn check_cycles(file: &str, g: &Graph) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for scc in tarjan_scc(g) {
        let self_loop = scc.len() == 1 && g.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        let chain = cycle_chain(g, &scc);
        let first = &g[chain[0]];
        let names: Vec<&str> = chain
            .iter()
            .chain(std::iter::once(&chain[0]))
            .map(|n| g[*n].id.as_str())
            .collect();
        out.push(
            diag_at(
                file,
                code::CYCLE,
                first,
                format!("the decision graph has a cycle: {}", names.join(" -> ")),
            )
            .hint("a step may only route to steps and causes that come after it; break the loop"),
        );
    }
    out
}

/// Orders an SCC's nodes along real edges, starting from its earliest-declared node.
fn cycle_chain(g: &Graph, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    let mut start = scc[0];
    for n in scc {
        if n.index() < start.index() {
            start = *n;
        }
    }
    let mut chain = vec![start];
    let mut cur = start;
    while chain.len() < scc.len() {
        let next = g
            .neighbors(cur)
            .filter(|n| scc.contains(n) && !chain.contains(n))
            .min_by_key(|n| n.index());
        match next {
            Some(n) => {
                chain.push(n);
                cur = n;
            }
            None => break,
        }
    }
    chain
}

fn check_reachable(file: &str, g: &Graph, root: NodeIndex) -> Vec<Diagnostic> {
    let mut seen = vec![false; g.node_count()];
    let mut dfs = Dfs::new(g, root);
    while let Some(n) = dfs.next(g) {
        seen[n.index()] = true;
    }
    g.node_indices()
        .filter(|n| !seen[n.index()] && matches!(g[*n].kind, GKind::Cause | GKind::Step))
        .map(|n| {
            let node = &g[n];
            let what = if node.kind == GKind::Cause {
                "cause"
            } else {
                "step"
            };
            diag_at(
                file,
                code::UNREACHABLE,
                node,
                format!("{what} `{}` can never be reached", node.id),
            )
            .hint("list it under `start:` or route a step's `on_pass`/`on_fail`/`on_unknown` to it")
        })
        .collect()
}

fn check_causes_have_actions(file: &str, g: &Graph) -> Vec<Diagnostic> {
    g.node_indices()
        .filter(|n| g[*n].kind == GKind::Cause)
        .filter(|n| !g.neighbors(*n).any(|m| g[m].kind == GKind::Action))
        .map(|n| {
            diag_at(
                file,
                code::NO_ACTION,
                &g[n],
                format!("cause `{}` has no action", g[n].id),
            )
            .hint("every cause must say how to fix it: add action ids under `actions:`")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: GKind, id: &str) -> GNode {
        GNode {
            kind,
            id: id.into(),
            yaml_path: String::new(),
            line: 1,
            column: 1,
        }
    }

    #[test]
    fn names_the_cycle() {
        let mut g = Graph::new();
        let s = g.add_node(node(GKind::Symptom, "sym"));
        let a = g.add_node(node(GKind::Step, "a"));
        let b = g.add_node(node(GKind::Step, "b"));
        let c = g.add_node(node(GKind::Step, "c"));
        g.add_edge(s, a, GEdge::Start);
        g.add_edge(a, b, GEdge::Pass);
        g.add_edge(b, c, GEdge::Fail);
        g.add_edge(c, a, GEdge::Pass);
        let d = validate("p.yaml", &g, s);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, code::CYCLE);
        assert!(
            d[0].message.ends_with("a -> b -> c -> a"),
            "{}",
            d[0].message
        );
    }
}
