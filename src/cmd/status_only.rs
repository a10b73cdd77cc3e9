//! `whyfail check`'s status probe: which causes a bare HTTP status makes the diagnosis.
//!
//! Each playbook is asked about synthetic events that carry nothing but a status, a phase and
//! the kind of connection: no message, no body, no stored state. A cause that comes out as the
//! diagnosis there wins on a status code alone. The engine gives such a cause as `likely` at
//! most and steps back to `inconclusive` when the provider's words say something more
//! specific, so this is a note for authors, not an error: it lists the generic readings a
//! library makes, so each is a deliberate one (or is marked `fallback: true`, which says so).

use std::collections::BTreeMap;

use serde::Serialize;
use whyfail_engine::compile::Node;
use whyfail_engine::model::resolution::Status;
use whyfail_engine::{Library, Options, diagnose_json};

/// Statuses a failing call commonly ends with.
const STATUSES: &[u16] = &[
    400, 401, 402, 403, 404, 405, 408, 409, 410, 413, 415, 422, 429, 500, 502, 503, 504, 520, 522,
    524,
];
const PHASES: &[&str] = &[
    "request",
    "token_refresh",
    "token_exchange",
    "authorize",
    "test_connection",
];
const AUTH_TYPES: &[&str] = &["api_key", "oauth2", "basic", "bearer"];

/// One cause that a bare status makes the diagnosis.
#[derive(Debug, Serialize)]
pub struct StatusOnly {
    pub playbook: String,
    pub file: String,
    pub cause: String,
    /// The probes it won, as `status/phase/auth_type`.
    pub probes: Vec<String>,
}

/// Probes the library; causes marked `fallback: true` are the declared generic readings and
/// are left out.
pub fn probe(lib: &Library) -> Vec<StatusOnly> {
    let mut found: BTreeMap<(String, String), StatusOnly> = BTreeMap::new();
    let opts = Options::default();
    for &status in STATUSES {
        for phase in PHASES {
            for auth in AUTH_TYPES {
                let event = serde_json::json!({
                    "phase": phase,
                    "error": {"status": status},
                    "connection": {"auth_type": auth, "provider": "generic", "base_url": "https://api.example.com"},
                })
                .to_string();
                let Ok(res) = diagnose_json(lib, &event, &opts) else {
                    continue;
                };
                if res.status != Status::Diagnosed {
                    continue;
                }
                let (Some(symptom), Some(cause)) = (&res.symptom, res.root_causes.first()) else {
                    continue;
                };
                let Some(pb) = lib.playbook(&symptom.id) else {
                    continue;
                };
                let fallback = pb
                    .nodes
                    .iter()
                    .any(|n| matches!(n, Node::Cause(c) if c.id == cause.id && c.fallback));
                if fallback {
                    continue;
                }
                found
                    .entry((pb.id.clone(), cause.id.clone()))
                    .or_insert_with(|| StatusOnly {
                        playbook: pb.id.clone(),
                        file: pb.file.clone(),
                        cause: cause.id.clone(),
                        probes: Vec::new(),
                    })
                    .probes
                    .push(format!("{status}/{phase}/{auth}"));
            }
        }
    }
    found.into_values().collect()
}

impl std::fmt::Display for StatusOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<&str> = self.probes.iter().take(4).map(String::as_str).collect();
        let more = self.probes.len().saturating_sub(shown.len());
        write!(
            f,
            "{}: note[status_only_diagnosis]: cause `{}` of `{}` is the diagnosis (likely at most) on a bare HTTP status with no words and no stored state: {}{}\n  hint: that is a generic reading; mark the cause `fallback: true` if it should never be more than that, or add a check on the provider's words",
            self.file,
            self.cause,
            self.playbook,
            shown.join(", "),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        )
    }
}
