//! The resolution: what whyfail answers for one failure event (contract section 2).
//!
//! Field names are the contract; fields may be added, never renamed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::playbook::{Actor, DispositionKind};

/// The diagnosis of one failure event.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "whyfail resolution")]
pub struct Resolution {
    /// The event's `event_id`, echoed.
    pub event_id: Option<String>,
    /// Version of the engine that produced this resolution.
    pub engine_version: String,
    /// Hash of the playbook set used, so the diagnosis can be audited and replayed.
    pub playbook_set: String,
    pub status: Status,
    /// The symptom (playbook) that matched; absent when nothing matched.
    pub symptom: Option<Symptom>,
    /// Best first; empty unless `status` is `diagnosed` (see `candidates`).
    pub root_causes: Vec<RootCause>,
    /// With `inconclusive`: the causes still open, best first, so a person sees what it might
    /// be. Absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
    /// Ordered: do the first one first.
    pub actions: Vec<Action>,
    pub disposition: Disposition,
    /// The walk through the playbook graph, in visit order.
    pub path: Vec<PathStep>,
    /// Markdown for a "why did this fail" panel, in the requested audience's voice.
    pub explanation: String,
    /// Offline only, when the answer is inconclusive or only likely: the live checks that would
    /// settle it, so the platform can ask again with live checks on. Absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settled_by: Vec<SettledBy>,
    /// Actions whyfail carried out because the caller opted in (`--act refresh_token`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acted: Vec<Acted>,
    /// SECRET. New credentials from an action whyfail carried out (a refreshed token): store
    /// them in the connection, never log or display them. Absent unless an action produced some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_credentials: Option<serde_json::Map<String, Value>>,
    /// Every script evaluated, in order, when asked for (`diagnose --trace`): for authors
    /// debugging a playbook, not for end users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<TraceStep>,
}

/// A live check that an offline diagnosis could not run, and what its answer would decide.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SettledBy {
    /// The live fact (`oauth.client`, `oauth.introspection`, `whoami`, ...).
    pub fact: String,
    /// The causes its answer would confirm or rule out.
    pub would_settle: Vec<String>,
}

/// One evaluated script: a playbook's `applies_when`, a step, or a cause's check.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TraceStep {
    /// The playbook it belongs to.
    pub playbook: String,
    /// The node id (the playbook id for `applies_when`).
    pub node: String,
    /// `applies_when`, `step` or `check`.
    pub kind: String,
    /// `matched`/`not_matched` for `applies_when`; the check outcome otherwise.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The script's source, as written in the playbook.
    pub script: String,
    /// The event values the script reads, by dotted path (`null` when absent; secrets shown
    /// only as `[secret]`).
    pub reads: serde_json::Map<String, Value>,
    /// The live facts it needed, with the values it saw.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub facts: serde_json::Map<String, Value>,
    /// Whether the load-time native form ran it (else the Rhai interpreter).
    pub native: bool,
    /// Evaluation time in microseconds (fetching facts included).
    pub micros: u64,
}

/// One action whyfail carried out itself.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Acted {
    /// The action id (`refresh_token`).
    pub action: String,
    /// `done`, `failed` or `not_applicable`.
    pub status: String,
    /// Whether re-running the failed check with the result succeeded; `null` when it could not
    /// be re-run.
    pub verified: Option<bool>,
    /// What happened, in words (never a secret).
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A cause is confirmed or likely.
    Diagnosed,
    /// A playbook applied but nothing in the event supports a cause.
    Inconclusive,
    /// No playbook applies to the event.
    NoMatch,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Symptom {
    pub id: String,
    pub title: String,
    /// File the playbook came from.
    pub playbook: String,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// Every required check passed.
    Confirmed,
    /// Nothing ruled it out and some evidence supports it.
    Likely,
    /// Nothing ruled it out, nothing supports it either.
    Possible,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RootCause {
    pub id: String,
    pub title: String,
    pub confidence: Confidence,
    /// Why: one sentence per piece of evidence.
    pub evidence: Vec<String>,
    /// The cause in plain words for an end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<String>,
}

/// A cause still open in an inconclusive resolution.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Candidate {
    pub id: String,
    pub title: String,
    /// Why it is neither confirmed nor ruled out.
    pub why_open: String,
    /// How far the evidence went: `likely` (only generic evidence, which the provider's own
    /// words do not bear out) or `possible` (nothing for it, nothing against it).
    pub confidence: Confidence,
    /// The symptom (playbook) it belongs to.
    pub symptom: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Action {
    pub id: String,
    pub title: String,
    pub actor: Actor,
    pub automatic: bool,
    pub params: serde_json::Map<String, Value>,
    pub steps: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Disposition {
    pub kind: DispositionKind,
    pub retry_after_seconds: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Symptom,
    Cause,
    Check,
    Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Matched,
    Confirmed,
    RuledOut,
    Inconclusive,
    Skipped,
    Pass,
    Fail,
    Unknown,
    Error,
    Recommended,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PathStep {
    pub node: String,
    pub kind: NodeKind,
    pub outcome: Outcome,
    /// Evidence or the reason for the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Event fields and live facts the check read.
    // Shared with the compiled check: the list is fixed at load time, so no event copies it.
    #[serde(default, skip_serializing_if = "<[String]>::is_empty")]
    pub facts: std::sync::Arc<[String]>,
    /// The outcome rests on an answer the provider gave just now (a live check), not only on
    /// the event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub live: bool,
}
