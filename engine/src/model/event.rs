//! The failure event as the contract defines it, for documentation and the generated schema.
//!
//! The engine does not deserialise events into these structs: it parses them straight into
//! script values (see `crate::eval::event`) so unknown fields stay visible to playbooks and a
//! field of an unexpected type never rejects the whole event. These types are the documented
//! shape (`whyfail schema event`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One failed workflow node. Every field is optional except `error`; unknown fields are kept.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(title = "whyfail failure event")]
pub struct FailureEvent {
    /// Echoed back in the resolution.
    pub event_id: Option<String>,
    /// RFC 3339; every time comparison uses it as "now" when present.
    pub occurred_at: Option<String>,
    pub workflow: Option<Named>,
    pub execution: Option<Execution>,
    pub node: Option<NodeRef>,
    /// authorize | token_exchange | token_refresh | request | test_connection | delete_connection
    pub phase: Option<String>,
    /// What went wrong (required; `{}` when only a code is known).
    pub error: ErrorInfo,
    pub connection: Option<Connection>,
    pub platform: Option<Platform>,
    pub history: Option<History>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct Named {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct Execution {
    pub id: Option<String>,
    /// test | production
    pub mode: Option<String>,
    pub trigger: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct NodeRef {
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub node_type: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct ErrorInfo {
    /// http | network | tls | timeout | oauth | platform (a hint only)
    pub kind: Option<String>,
    /// HTTP status, if any.
    pub status: Option<i64>,
    /// OAuth error, provider code or platform code.
    pub code: Option<String>,
    /// Raw error text as the HTTP client or provider produced it.
    pub message: Option<String>,
    /// Response headers, keys lower-case.
    pub headers: Option<BTreeMap<String, String>>,
    /// Provider response body: JSON value or string.
    pub body: Option<Value>,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct Connection {
    pub id: Option<String>,
    /// github | slack | microsoft | google | jira | gitlab | halopsa | salesforce | generic | ...
    pub provider: Option<String>,
    /// oauth2 | api_key | basic | bearer | none
    pub auth_type: Option<String>,
    pub base_url: Option<String>,
    /// cloud | self_hosted
    pub deployment_mode: Option<String>,
    pub environment: Option<String>,
    /// active | invalid | expired | revoked | pending | error
    pub status: Option<String>,
    pub provider_error_code: Option<String>,
    pub created_at: Option<String>,
    pub last_success_at: Option<String>,
    pub required_scopes: Option<Scopes>,
    pub granted_scopes: Option<Scopes>,
    pub retry_after_seconds: Option<i64>,
    /// pending | done
    pub revoke_status: Option<String>,
    pub oauth: Option<OAuth>,
    pub api_key: Option<ApiKey>,
    pub network: Option<Network>,
    pub used_by: Option<Vec<UsedBy>>,
    /// Used only by live checks; never echoed in any output.
    pub secrets: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct OAuth {
    pub client_id: Option<String>,
    pub client_secret_set: Option<bool>,
    pub client_secret_expires_at: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub refresh_url: Option<String>,
    pub redirect_uri: Option<String>,
    pub access_token_expires_at: Option<String>,
    pub has_refresh_token: Option<bool>,
    pub refresh_token_expires_at: Option<String>,
    pub last_refresh_error: Option<String>,
    pub last_refreshed_at: Option<String>,
    /// testing | published | unverified | disabled
    pub app_status: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct ApiKey {
    pub expires_at: Option<String>,
    /// header | query
    pub location: Option<String>,
    pub header_name: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct Network {
    pub allowlist_status: Option<String>,
    pub tunnel_status: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct UsedBy {
    pub id: Option<String>,
    pub name: Option<String>,
    pub deployed: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct Platform {
    /// The OAuth callback the platform really uses.
    pub oauth_redirect_uri: Option<String>,
    /// Outbound IPs by execution mode (`test`, `production`).
    pub egress_ips: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
pub struct History {
    pub recent_failures: Option<i64>,
    pub consecutive_failures: Option<i64>,
    /// Seconds between the connection's last (re)authorisation and the failure.
    pub failure_after_seconds: Option<i64>,
}

/// OAuth scopes: a list, or one string separated by spaces or commas (`"repo, read:org"`), as
/// platforms store them; the engine reads both the same.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Scopes {
    List(Vec<String>),
    Text(String),
}
