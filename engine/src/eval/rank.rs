//! Ranking: the causes of every playbook that applied, in one order.
//!
//! Every applicable playbook has its say; a cause's place depends on, in order:
//! 1. whether it is diagnosed at all (confirmed or likely, against possible);
//! 2. specificity: evidence from the provider's own words, the connection's state or a live
//!    fact outranks evidence from an HTTP status or a generic protocol code (a `fallback`
//!    cause is never more than likely, so specific evidence that confirms another cause wins);
//! 3. confidence; 4. the playbook's priority; 5. the cause's weight within its playbook;
//! 6. visit order.
//!
//! So a 403 whose body says the request limit is used up is `rate_limited` (the provider's
//! words), not "the account lacks access" (the status), whichever playbook is tried first.

use std::sync::Arc;

use crate::compile::{Cause, Node, Playbook};
use crate::eval::walk::{CauseVerdict, WalkResult};
use crate::model::playbook::Basis;
use crate::model::resolution::Confidence;

/// One playbook that applied, and its walk.
pub(crate) struct Walked<'l> {
    pub pb: &'l Arc<Playbook>,
    pub result: WalkResult,
}

/// A cause with a verdict (not ruled out), placed in the global order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ranked {
    /// Index into the walked playbooks.
    pub walk: usize,
    /// Index into that walk's verdicts.
    pub verdict: usize,
    pub confidence: Confidence,
    /// Rests on specific evidence (see the module doc).
    pub specific: bool,
    /// Some of its evidence, corroboration included, read the provider's words (specific, or
    /// judged generic by a `protocol` check), the connection's state or a live fact.
    pub grounded: bool,
}

impl Ranked {
    pub fn diagnosed(&self) -> bool {
        self.confidence <= Confidence::Likely
    }
}

pub(crate) fn cause_of<'p>(pb: &'p Playbook, v: &CauseVerdict) -> Option<&'p Cause> {
    match &pb.nodes[v.node] {
        Node::Cause(c) => Some(c),
        Node::Step(_) => None,
    }
}

/// Every cause that was not ruled out, best first.
pub(crate) fn rank(walked: &[Walked<'_>]) -> Vec<Ranked> {
    let mut out = Vec::new();
    for (w, walk) in walked.iter().enumerate() {
        for (i, v) in walk.result.verdicts.iter().enumerate() {
            let (Some(confidence), Some(_)) = (v.confidence, cause_of(walk.pb, v)) else {
                continue;
            };
            out.push(Ranked {
                walk: w,
                verdict: i,
                confidence,
                specific: v.basis.is_some_and(Basis::is_specific),
                // A declared `protocol` basis means the author read the provider's code or
                // words and judged them generic: read, not overruled.
                grounded: v.grounds.is_some_and(|b| b >= Basis::Protocol),
            });
        }
    }
    out.sort_by_key(|r| {
        let walk = &walked[r.walk];
        let v = &walk.result.verdicts[r.verdict];
        let weight = cause_of(walk.pb, v).map_or(0, |c| c.weight);
        // Playbooks are walked highest priority first, so the walk index is the priority
        // order (ties by id); weights only order causes within one playbook.
        (
            !r.diagnosed(),
            !r.specific,
            r.confidence,
            r.walk,
            -weight,
            v.order,
        )
    });
    out
}

/// Words for a basis, in evidence and traces.
pub(crate) fn basis_words(b: Option<Basis>) -> &'static str {
    match b {
        None => "no evidence",
        Some(Basis::Status) => "the HTTP status",
        Some(Basis::Protocol) => "a generic protocol code",
        Some(Basis::State) => "the connection's state",
        Some(Basis::Provider) => "the provider's own words",
        Some(Basis::Live) => "a live check",
    }
}
