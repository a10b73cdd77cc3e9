//! Raw playbook types: one YAML file, as written, before any reference is resolved.
//!
//! Every struct denies unknown fields so a typo is an error with a position, not a silently
//! ignored key. Values that later checks must point back at (ids, references, scripts,
//! templates) are wrapped in [`Spanned`] to keep their line and column. Enums are plain string
//! enums on purpose: internally tagged or untagged serde enums lose locations.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// A playbook file: either a playbook for one symptom family (it has `id`, `applies_when` and
/// `causes`), or a catalogue of shared `actions` and `signals` that playbooks refer to by id.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "whyfail playbook")]
pub struct RawPlaybook {
    /// Stable id of the symptom this playbook diagnoses, in snake_case (e.g. `oauth_refresh_failed`).
    /// Omit it in a catalogue file that only holds shared `actions` and `signals`.
    #[schemars(with = "Option<String>")]
    pub id: Option<Spanned<String>>,
    /// Short title of the symptom, shown to users ("The OAuth token could not be refreshed").
    pub title: Option<String>,
    /// What the playbook covers, for authors and support staff.
    pub description: Option<String>,
    /// Playbooks are tried from the highest priority down; the first one that reaches a diagnosis
    /// wins. Specific playbooks get higher numbers than catch-all ones.
    #[serde(default)]
    pub priority: i64,
    /// Rhai expression over the event that decides whether this playbook applies.
    /// It must return `true` or `false`; `()` (missing data) counts as `false`.
    #[schemars(with = "Option<String>")]
    pub applies_when: Option<Spanned<String>>,
    /// Node ids (steps or causes) the walk starts from, in order. Default: every step and cause
    /// that no step routes to, in file order (steps first).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub start: Vec<Spanned<String>>,
    /// Named families of error texts: each name maps to case-insensitive regular expressions
    /// matched against the error's message, code, body and `www-authenticate` header.
    /// Scripts ask for them with `signal("name")`. Names are shared by the whole library.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Vec<String>>")]
    pub signals: BTreeMap<String, Vec<Spanned<String>>>,
    /// Sequential diagnostic steps: checks whose outcome routes the walk to further steps or causes.
    #[serde(default)]
    pub steps: Vec<RawStep>,
    /// The hypotheses: each cause has the checks that confirm or rule it out, and the actions that fix it.
    #[serde(default)]
    pub causes: Vec<RawCause>,
    /// Actions defined by this file. Action ids are shared by the whole library.
    #[serde(default)]
    pub actions: Vec<RawAction>,
    /// What to recommend when the playbook applies but no cause is confirmed or likely.
    pub inconclusive: Option<RawInconclusive>,
}

/// A sequential step: a check whose outcome decides where the walk goes next.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Node id, unique within the playbook.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// What the step verifies, in a few words.
    pub title: Option<String>,
    /// Rhai expression returning `true` (pass), `false` (fail) or `()` (unknown).
    #[schemars(with = "Option<String>")]
    pub expr: Option<Spanned<String>>,
    /// A short Rhai script (statements allowed); its last value is the outcome, as for `expr`.
    #[schemars(with = "Option<String>")]
    pub script: Option<Spanned<String>>,
    /// Live facts the check reads through `facts["name"]`; fetched only when the walk gets here.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub needs: Vec<Spanned<String>>,
    /// What the evidence rests on (default: inferred from what the script reads; see `Basis`).
    /// Mark `protocol` where the script matches only a generic protocol code or phrase.
    pub basis: Option<Basis>,
    /// Evidence shown when the check passes. `{expression}` placeholders are filled from the event.
    #[schemars(with = "Option<String>")]
    pub evidence: Option<Spanned<String>>,
    /// Evidence shown when the check fails.
    #[schemars(with = "Option<String>")]
    pub evidence_fail: Option<Spanned<String>>,
    /// Where to go when the check passes: step or cause ids, in order.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub on_pass: Vec<Spanned<String>>,
    /// Where to go when the check fails.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub on_fail: Vec<Spanned<String>>,
    /// Where to go when the check cannot decide (missing data, unavailable fact, script error).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub on_unknown: Vec<Spanned<String>>,
}

/// What a check's evidence rests on. Specific evidence (the provider's own words, the
/// connection's state, a live fact) outranks generic evidence (an HTTP status, a generic protocol
/// code), across every playbook that applies: see "Ranking" in docs/playbooks.md.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    JsonSchema,
    serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The HTTP status, the error kind or the phase alone.
    Status,
    /// A generic protocol code or reason phrase that many different failures share
    /// (OAuth `invalid_grant`, `invalid_token`, `interaction_required`, "Forbidden").
    Protocol,
    /// The stored connection record (expiry times, scopes, base URL, environment).
    State,
    /// The provider's own error code, message, body or headers.
    Provider,
    /// A live fact fetched from the provider or the network during this diagnosis.
    Live,
}

impl Basis {
    /// Whether evidence of this basis is specific (outranks status and protocol codes).
    pub fn is_specific(self) -> bool {
        self >= Basis::State
    }
}

/// How much a cause's check counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Must pass for the cause to be confirmed; a failure rules the cause out.
    #[default]
    Require,
    /// Raises an otherwise undecided cause to `likely` when it passes; never rules out.
    Support,
}

/// A check attached to a cause.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Node id, unique within the playbook.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// What the check verifies, in a few words.
    pub title: Option<String>,
    /// `require` (default) or `support`.
    #[serde(default)]
    pub role: Role,
    /// Rhai expression returning `true` (pass), `false` (fail) or `()` (unknown).
    #[schemars(with = "Option<String>")]
    pub expr: Option<Spanned<String>>,
    /// A short Rhai script; its last value is the outcome, as for `expr`.
    #[schemars(with = "Option<String>")]
    pub script: Option<Spanned<String>>,
    /// Live facts the check reads through `facts["name"]`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub needs: Vec<Spanned<String>>,
    /// What the evidence rests on (default: inferred from what the script reads; see `Basis`).
    /// Mark `protocol` where the script matches only a generic protocol code or phrase.
    pub basis: Option<Basis>,
    /// Evidence shown when the check passes, with `{expression}` placeholders.
    #[schemars(with = "Option<String>")]
    pub evidence: Option<Spanned<String>>,
    /// Evidence shown when the check fails (why the cause was ruled out).
    #[schemars(with = "Option<String>")]
    pub evidence_fail: Option<Spanned<String>>,
}

/// A hypothesis about why the failure happened.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCause {
    /// Cause id; use the standard ids of the contract where one fits (e.g. `scope_missing`).
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// Short title for support staff ("The refresh token has expired").
    pub title: String,
    /// The cause in plain words for an end user; `{expression}` placeholders allowed.
    #[schemars(with = "Option<String>")]
    pub explain: Option<Spanned<String>>,
    /// Among causes of equal confidence, a higher weight ranks first (default 0, then file order).
    #[serde(default)]
    pub weight: i64,
    /// This cause is the generic reading of a status or protocol code (e.g. "a 403 means the
    /// account lacks access"): it is never confirmed, only `likely`, and it yields to any cause
    /// with specific evidence. Saying so silences `whyfail check`'s `generic_only_cause` warning.
    #[serde(default)]
    pub fallback: bool,
    /// Checks, evaluated in order; the first failing `require` check rules the cause out.
    #[serde(default)]
    pub checks: Vec<RawCheck>,
    /// Action ids that fix this cause, most useful first.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub actions: Vec<Spanned<String>>,
    /// Overrides the disposition derived from the first action.
    pub disposition: Option<RawDisposition>,
}

/// Who performs an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The end user who owns the connection.
    User,
    /// An administrator of the provider app, tenant or network.
    Admin,
    /// The calling automation platform, without a person.
    Platform,
    /// The provider's own support or operations team.
    ProviderSupport,
}

/// What the calling platform should do with the failed node now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DispositionKind {
    /// Retry now.
    Retry,
    /// Retry after `retry_after_seconds`.
    RetryAfter,
    /// Refresh the OAuth token, then retry.
    RefreshThenRetry,
    /// A person who owns the connection must act.
    NeedsUser,
    /// An administrator must act.
    NeedsAdmin,
    /// Do not retry.
    Stop,
}

/// An explicit disposition.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDisposition {
    /// The disposition kind.
    pub kind: DispositionKind,
    /// Rhai expression giving the seconds to wait (for `retry_after`).
    #[schemars(with = "Option<String>")]
    pub retry_after: Option<Spanned<String>>,
    /// Another kind to give when a condition holds (a billing cap that waiting will not lift).
    pub instead: Option<RawDispositionInstead>,
}

/// The other disposition kind a cause gives when `when` is true.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDispositionInstead {
    /// The disposition kind given instead.
    pub kind: DispositionKind,
    /// Rhai condition.
    #[schemars(with = "String")]
    pub when: Spanned<String>,
}

/// A fix.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    /// Action id; use the standard ids of the contract where one fits (e.g. `reconnect`).
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// Button label ("Reconnect the account").
    pub title: String,
    /// Who performs it.
    pub actor: Actor,
    /// Whether the platform may run it without asking anyone.
    #[serde(default)]
    pub automatic: bool,
    /// Instructions, in order; `{expression}` placeholders allowed.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub steps: Vec<Spanned<String>>,
    /// Parameters computed from the event: name → Rhai expression or short script
    /// (e.g. `retry_after_seconds`). A parameter whose value is `()` is left out.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub params: BTreeMap<String, Spanned<String>>,
    /// Disposition when this is the first action; default from the actor (user → needs_user,
    /// admin → needs_admin, provider_support → stop, platform → retry).
    pub disposition: Option<DispositionKind>,
    /// Rhai expression: recommend the action only when it is true.
    #[schemars(with = "Option<String>", rename = "when")]
    #[serde(rename = "when")]
    pub when: Option<Spanned<String>>,
}

/// Recommendation when no cause is confirmed or likely.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawInconclusive {
    /// Action ids to recommend anyway, in order.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub actions: Vec<Spanned<String>>,
    /// Disposition to hand back.
    pub disposition: Option<RawDisposition>,
}
