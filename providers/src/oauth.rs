//! OAuth 2.0 probes: ask the connection's authorization server what it thinks of the
//! connection, instead of guessing from the error text the workflow step saw.
//!
//! - `oauth.discovery`: the server's metadata (RFC 8414, else OpenID Connect discovery), so a
//!   check can tell a wrong token URL or a missing grant type from a bad credential.
//! - `oauth.introspection`: RFC 7662, whether the access token is still active and with which
//!   scopes, which tells an expired or revoked token from a missing permission.
//! - `oauth.client`: whether the client ID and secret still authenticate, without touching any
//!   user token (the comment on `client` below says why it cannot consume one).
//! - `oauth.refresh`: the one probe that changes state. It is `mutating`, so a diagnosis never
//!   runs it; only `LiveProvider::act` does, when the caller asked for the refresh.
//!
//! Facts never carry the connection's secrets: provider text is scrubbed, and the token that is
//! introspected is sent in a POST body, never echoed. The exception is `oauth.refresh`, whose
//! whole point is the new tokens; its caller moves them to a dedicated field.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use url::Url;
use url::form_urlencoded::{Serializer, byte_serialize};
use whyfail_engine::FactError;

use crate::probe::{Creds, Ctx, Fetched, Probe, ProbeResult};

/// The code the client probe exchanges: no authorization server issues codes that read like
/// this, so the exchange always fails, and only how it fails matters.
const PROBE_CODE: &str = "whyfail-probe-invalid-code";

/// The probes of this module.
pub fn probes() -> Vec<Probe> {
    vec![
        Probe {
            name: "oauth.discovery",
            cost: 4,
            mutating: false,
            calls_api: true,
            run: |cx| Box::pin(discovery(cx)),
        },
        Probe {
            name: "oauth.introspection",
            cost: 5,
            mutating: false,
            calls_api: true,
            run: |cx| Box::pin(introspection(cx)),
        },
        Probe {
            name: "oauth.client",
            cost: 5,
            mutating: false,
            calls_api: true,
            run: |cx| Box::pin(client(cx)),
        },
        Probe {
            name: "oauth.refresh",
            cost: 9,
            mutating: true,
            calls_api: true,
            run: |cx| Box::pin(refresh(cx)),
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------------

/// The issuer discovery starts from: the configured one, else the origin of the token URL, else
/// of the authorize URL (providers that are their own issuer serve metadata at the root).
fn expected_issuer(cx: &Ctx) -> Option<Url> {
    let o = &cx.conn.oauth;
    if let Some(i) = &o.issuer {
        return Some(i.clone());
    }
    [o.token_url.as_ref(), o.authorize_url.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|u| Url::parse(&u.origin().ascii_serialization()).ok())
}

/// An issuer as metadata documents spell it. `Url` adds a `/` to a bare origin that the
/// configuration may not have had, so a root path is dropped.
fn issuer_text(issuer: &Url) -> String {
    let s = issuer.as_str();
    if issuer.path() == "/" && issuer.query().is_none() {
        s.trim_end_matches('/').to_string()
    } else {
        s.to_string()
    }
}

/// The two metadata locations, in the order tried. RFC 8414 §3.1 inserts the well-known
/// segment between the host and the issuer's path; OpenID Connect Discovery appends it.
fn well_known_urls(issuer: &Url) -> Vec<(&'static str, Url)> {
    let mut base = issuer.clone();
    base.set_query(None);
    base.set_fragment(None);
    let path = base.path().trim_end_matches('/').to_string();
    let mut rfc = base.clone();
    rfc.set_path(&format!("/.well-known/oauth-authorization-server{path}"));
    let mut oidc = base;
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    vec![("rfc8414", rfc), ("openid-configuration", oidc)]
}

/// `origin + path` of a URL: what facts show of an endpoint (a query could carry anything).
fn shown(url: &Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}

/// Endpoints are compared as origin and path; a trailing `/` is not a different endpoint to
/// any server we know.
fn same_endpoint(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin() && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
}

/// The metadata document found, and where.
struct Discovered {
    source: &'static str,
    doc: Map<String, Value>,
}

/// Why `ctx.send` failed, when the guard is the reason. A refused target is the caller's
/// problem (wrong URL or a missing `--allow-host`) and must surface as a probe error, while an
/// unreachable server is itself a fact. The guard's resolver refusal arrives inside a reqwest
/// error, so the host is checked again, only on this failure path.
async fn guard_refusal(cx: &Ctx, url: &Url) -> Option<FactError> {
    if let Err(r) = cx.env.guard.check_url(url) {
        return Some(FactError::new(cx.scrub(&r.0)));
    }
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    match cx.env.guard.resolve(host, port).await {
        Err(r) if r.0.starts_with("refusing") => Some(FactError::new(cx.scrub(&r.0))),
        _ => None,
    }
}

/// Fetches the metadata: `Ok(Ok(found))`, `Ok(Err(why not))` (a fact), or `Err` when the guard
/// refuses the issuer.
async fn discover(cx: &Ctx, issuer: &Url) -> Result<Result<Discovered, String>, FactError> {
    let mut failures = Vec::new();
    for (source, url) in well_known_urls(issuer) {
        if let Err(r) = cx.env.guard.check_url(&url) {
            return Err(FactError::new(cx.scrub(&r.0)));
        }
        let req = cx
            .env
            .http
            .get(url.clone())
            .header("accept", "application/json");
        let r = match cx.send(req, Creds::None).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(refused) = guard_refusal(cx, &url).await {
                    return Err(refused);
                }
                // The other location is on the same host: it would fail the same way.
                failures.push(format!("{source} ({}): {}", shown(&url), e.reason));
                break;
            }
        };
        let why = if let Some(to) = r.redirect() {
            format!(
                "HTTP {}, redirects to {} (not followed)",
                r.status,
                cx.scrub(to)
            )
        } else if r.status != 200 {
            format!("HTTP {}", r.status)
        } else {
            match r.json() {
                Ok(Value::Object(doc)) => return Ok(Ok(Discovered { source, doc })),
                Ok(_) => "the document is not a JSON object".to_string(),
                Err(e) => e.reason,
            }
        };
        failures.push(format!("{source} ({}): {why}", shown(&url)));
    }
    Ok(Err(one_line(&cx.scrub(&failures.join("; ")))))
}

fn doc_str(doc: &Map<String, Value>, key: &str) -> Option<String> {
    doc.get(key).and_then(Value::as_str).map(str::to_string)
}

fn doc_url(doc: &Map<String, Value>, key: &str) -> Option<Url> {
    doc.get(key)
        .and_then(Value::as_str)
        .and_then(|s| Url::parse(s).ok())
}

/// A list from the document; absent stays `null`, because "not declared" is not "none"
/// (RFC 8414 gives defaults for some of these, which checks can apply knowingly).
fn doc_list(doc: &Map<String, Value>, key: &str) -> Value {
    match doc.get(key) {
        Some(Value::Array(a)) => Value::Array(
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        _ => Value::Null,
    }
}

async fn discovery(cx: Arc<Ctx>) -> ProbeResult {
    let issuer = expected_issuer(&cx).ok_or_else(|| {
        FactError::new(
            "the connection has no OAuth issuer, token URL or authorize URL to discover from",
        )
    })?;
    Ok(discovery_fact(&cx, &issuer).await?.0)
}

/// The discovery fact, and the document's introspection endpoint for the introspection probe.
async fn discovery_fact(cx: &Ctx, issuer: &Url) -> Result<(Value, Option<Url>), FactError> {
    let expected = issuer_text(issuer);
    let found = match discover(cx, issuer).await? {
        Ok(d) => d,
        Err(why) => {
            return Ok((
                json!({
                    "found": false,
                    "source": null,
                    "issuer": null,
                    "expected_issuer": expected,
                    "issuer_matches": null,
                    "token_endpoint": null,
                    "introspection_endpoint": null,
                    "revocation_endpoint": null,
                    "authorization_endpoint": null,
                    "userinfo_endpoint": null,
                    "grant_types_supported": null,
                    "token_endpoint_auth_methods_supported": null,
                    "scopes_supported": null,
                    "token_endpoint_matches": null,
                    "refresh_endpoint_matches": null,
                    "authorization_endpoint_matches": null,
                    "error": why,
                }),
                None,
            ));
        }
    };
    let doc = &found.doc;
    let doc_issuer = doc_str(doc, "issuer");
    // RFC 8414 §3.3 / OIDC Discovery §4.3: the document's issuer must be the one asked for;
    // a mismatch means the connection points at another tenant or a proxy's metadata.
    let issuer_matches = doc_issuer
        .as_deref()
        .is_some_and(|d| d.trim_end_matches('/') == expected.trim_end_matches('/'));
    let token_endpoint = doc_url(doc, "token_endpoint");
    let token_endpoint_matches = match (&token_endpoint, &cx.conn.oauth.token_url) {
        (Some(d), Some(c)) => Some(same_endpoint(d, c)),
        _ => None,
    };
    // Where refreshes go (a separate refresh URL, else the token URL) and where users are
    // sent to sign in, against the metadata: a configured URL the issuer does not list is a
    // configuration mistake, named with both URLs.
    let refresh_endpoint_matches = match (
        &token_endpoint,
        cx.conn
            .oauth
            .refresh_url
            .as_ref()
            .or(cx.conn.oauth.token_url.as_ref()),
    ) {
        (Some(d), Some(c)) => Some(same_endpoint(d, c)),
        _ => None,
    };
    let authorization_endpoint_matches = match (
        &doc_url(doc, "authorization_endpoint"),
        &cx.conn.oauth.authorize_url,
    ) {
        (Some(d), Some(c)) => Some(same_endpoint(d, c)),
        _ => None,
    };
    let introspection = doc_url(doc, "introspection_endpoint");
    let s = |k: &str| doc_str(doc, k).map(|v| cx.scrub(&v));
    let fact = json!({
        "found": true,
        "source": found.source,
        "issuer": doc_issuer.map(|v| cx.scrub(&v)),
        "expected_issuer": expected,
        "issuer_matches": issuer_matches,
        "token_endpoint": s("token_endpoint"),
        "introspection_endpoint": s("introspection_endpoint"),
        "revocation_endpoint": s("revocation_endpoint"),
        "authorization_endpoint": s("authorization_endpoint"),
        "userinfo_endpoint": s("userinfo_endpoint"),
        "grant_types_supported": doc_list(doc, "grant_types_supported"),
        "token_endpoint_auth_methods_supported":
            doc_list(doc, "token_endpoint_auth_methods_supported"),
        "scopes_supported": doc_list(doc, "scopes_supported"),
        "token_endpoint_matches": token_endpoint_matches,
        "refresh_endpoint_matches": refresh_endpoint_matches,
        "authorization_endpoint_matches": authorization_endpoint_matches,
        "configured_token_url": cx.conn.oauth.token_url.as_ref().map(shown),
        "configured_refresh_url": cx.conn.oauth.refresh_url.as_ref().map(shown),
        "configured_authorize_url": cx.conn.oauth.authorize_url.as_ref().map(shown),
        "error": null,
    });
    Ok((fact, introspection))
}

// ---------------------------------------------------------------------------------------------
// Client authentication and form posts
// ---------------------------------------------------------------------------------------------

/// How the client identified itself, reported so a check can tell "wrong secret" from "no
/// secret configured".
#[derive(Clone, Copy)]
enum ClientAuth {
    Basic,
    IdInBody,
    None,
}

impl ClientAuth {
    fn name(self) -> &'static str {
        match self {
            ClientAuth::Basic => "client_secret_basic",
            ClientAuth::IdInBody => "client_id_only",
            ClientAuth::None => "none",
        }
    }
}

/// A form POST with the client's authentication: HTTP Basic when the secret is known (the
/// method every server must support, RFC 6749 §2.3.1), else the client ID in the body as a
/// public client would send it.
fn form_post(cx: &Ctx, url: &Url, pairs: &[(&str, &str)]) -> (reqwest::RequestBuilder, ClientAuth) {
    let o = &cx.conn.oauth;
    let mut form = Serializer::new(String::new());
    for (k, v) in pairs {
        form.append_pair(k, v);
    }
    let id = o.client_id.as_deref().filter(|s| !s.is_empty());
    let secret = cx.conn.secrets.client_secret.as_deref();
    let mut req = cx
        .env
        .http
        .post(url.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json");
    let auth = match (id, secret) {
        (Some(id), Some(secret)) => {
            req = req.header("authorization", basic_auth(id, secret));
            ClientAuth::Basic
        }
        (Some(id), None) => {
            form.append_pair("client_id", id);
            ClientAuth::IdInBody
        }
        _ => ClientAuth::None,
    };
    (req.body(form.finish()), auth)
}

/// `Basic base64(urlencode(id):urlencode(secret))`. RFC 6749 §2.3.1 form-encodes both parts
/// first, so a secret containing `:` cannot be misread as the separator.
fn basic_auth(id: &str, secret: &str) -> String {
    let enc = |s: &str| byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        base64_encode(format!("{}:{}", enc(id), enc(secret)).as_bytes())
    )
}

/// The OAuth error of a token-endpoint style response (RFC 6749 §5.2), scrubbed.
struct OAuthError {
    code: Option<String>,
    description: Option<String>,
}

fn oauth_error(cx: &Ctx, body: Option<&Value>) -> OAuthError {
    let text = |k: &str| {
        body.and_then(|b| b.get(k))
            .and_then(Value::as_str)
            .map(|s| one_line(&cx.scrub(s)))
    };
    OAuthError {
        code: text("error"),
        description: text("error_description"),
    }
}

/// The body as a JSON object, if it is one (error bodies often are not).
fn json_object(r: &Fetched) -> Option<Value> {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .filter(Value::is_object)
}

/// Provider text as one line of bounded length.
fn one_line(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 300 {
        let cut: String = flat.chars().take(300).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

fn rfc3339(epoch: i64) -> Option<String> {
    jiff::Timestamp::from_second(epoch)
        .ok()
        .map(|t| t.to_string())
}

/// A number that some servers send as a string (`"expires_in": "3600"`).
fn int_of(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Introspection
// ---------------------------------------------------------------------------------------------

fn not_supported(endpoint_note: String) -> Value {
    json!({
        "supported": false,
        "endpoint": null,
        "endpoint_source": null,
        "active": null,
        "expires_at": null,
        "expired": null,
        "scopes": null,
        "client_id": null,
        "token_type": null,
        "sub": null,
        "status": null,
        "error": null,
        "error_description": endpoint_note,
        "client_rejected": false,
    })
}

async fn introspection(cx: Arc<Ctx>) -> ProbeResult {
    let token =
        cx.conn.secrets.access_token.clone().ok_or_else(|| {
            FactError::new("the connection has no access_token secret to introspect")
        })?;
    let (endpoint, source) = match &cx.conn.oauth.introspection_url {
        Some(u) => (u.clone(), "configured"),
        None => {
            let Some(issuer) = expected_issuer(&cx) else {
                return Ok(not_supported(
                    "the connection sets no introspection URL and has no issuer or token URL \
                     to discover one from"
                        .into(),
                ));
            };
            let (fact, found) = discovery_fact(&cx, &issuer).await?;
            let Some(found) = found else {
                let why = if fact.get("found") == Some(&Value::Bool(true)) {
                    "the server's metadata lists no introspection endpoint".to_string()
                } else {
                    format!(
                        "no introspection URL is set and discovery found no metadata: {}",
                        fact.get("error").and_then(Value::as_str).unwrap_or("")
                    )
                };
                return Ok(not_supported(why));
            };
            // The metadata is unauthenticated input: an endpoint it names elsewhere must not
            // receive the token (ctx.send refuses too; this says why in words).
            if !cx.conn.credential_origins().contains(&found.origin()) {
                return Err(FactError::new(cx.scrub(&format!(
                    "the discovered introspection endpoint {} is not on one of the connection's \
                     own origins (base, issuer, token or introspection URL), so the token is not \
                     sent there; set connection.oauth.introspection_url to trust it",
                    shown(&found)
                ))));
            }
            (found, "discovery")
        }
    };
    let (req, _) = form_post(
        &cx,
        &endpoint,
        &[("token", &token), ("token_type_hint", "access_token")],
    );
    let r = cx.send(req, Creds::Attached).await.map_err(|e| {
        FactError::new(one_line(
            &cx.scrub(&format!("token introspection failed: {}", e.reason)),
        ))
    })?;
    let body = json_object(&r);
    let err = oauth_error(&cx, body.as_ref());
    let client_rejected = r.status == 401 || err.code.as_deref() == Some("invalid_client");
    // No endpoint there: report it like a server without introspection, not as a token fact.
    let supported = !matches!(r.status, 404 | 405 | 501);
    if (200..300).contains(&r.status) && body.is_none() {
        return Err(FactError::new(one_line(&cx.scrub(
            &r.json().err().map_or_else(
                || "the introspection response is not a JSON object".to_string(),
                |e| format!("introspection: {}", e.reason),
            ),
        ))));
    }
    let b = body.unwrap_or(Value::Null);
    let ok = (200..300).contains(&r.status);
    let active = ok
        .then(|| b.get("active").and_then(Value::as_bool))
        .flatten();
    let exp = int_of(b.get("exp"));
    let now = jiff::Timestamp::now().as_second();
    let scopes = b
        .get("scope")
        .or_else(|| b.get("scp"))
        .and_then(|v| match v {
            Value::String(s) => Some(s.split_whitespace().map(str::to_string).collect()),
            Value::Array(a) => Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        });
    let s = |k: &str| b.get(k).and_then(Value::as_str).map(|v| cx.scrub(v));
    Ok(json!({
        "supported": supported,
        "endpoint": shown(&endpoint),
        "endpoint_source": source,
        "active": active,
        "expires_at": exp.and_then(rfc3339),
        "expired": exp.map(|e| e <= now),
        "scopes": scopes,
        "client_id": s("client_id"),
        "token_type": s("token_type"),
        "sub": s("sub"),
        "status": r.status,
        "error": err.code,
        "error_description": err.description,
        "client_rejected": client_rejected,
    }))
}

// ---------------------------------------------------------------------------------------------
// Client check
// ---------------------------------------------------------------------------------------------

/// Checks the client ID and secret at the token endpoint.
///
/// It exchanges an authorization code that cannot exist. Servers authenticate the client
/// before they look at the grant (RFC 6749 §3.2.1, §5.2), so `invalid_client` means the
/// credentials are wrong and `invalid_grant` means they are right. A refresh-token grant would
/// answer the same question, but on success it rotates the refresh token (and many servers
/// revoke the old one on first use), which would break the very connection being diagnosed;
/// a made-up code has nothing to consume.
async fn client(cx: Arc<Ctx>) -> ProbeResult {
    let url = cx.conn.oauth.token_url.clone().ok_or_else(|| {
        FactError::new("the connection has no OAuth token URL to check the client at")
    })?;
    if cx.conn.oauth.client_id.as_deref().is_none_or(str::is_empty) {
        return Err(FactError::new(
            "the connection has no OAuth client ID to check",
        ));
    }
    let mut pairs = vec![("grant_type", "authorization_code"), ("code", PROBE_CODE)];
    if let Some(r) = cx.conn.oauth.redirect_uri.as_deref() {
        pairs.push(("redirect_uri", r));
    }
    let (req, auth) = form_post(&cx, &url, &pairs);
    let r = cx.send(req, Creds::Attached).await.map_err(|e| {
        FactError::new(one_line(&cx.scrub(&format!(
            "the client check at the token endpoint failed: {}",
            e.reason
        ))))
    })?;
    let body = json_object(&r);
    let err = oauth_error(&cx, body.as_ref());
    let client_valid = if r.status == 401 || err.code.as_deref() == Some("invalid_client") {
        Some(false)
    } else {
        match err.code.as_deref() {
            Some(
                "invalid_grant"
                | "invalid_request"
                | "unauthorized_client"
                | "unsupported_grant_type",
            ) => Some(true),
            _ => None,
        }
    };
    Ok(json!({
        "client_valid": client_valid,
        "status": r.status,
        "error": err.code,
        "error_description": err.description,
        "token_url": shown(&url),
        "client_auth": auth.name(),
    }))
}

// ---------------------------------------------------------------------------------------------
// Refresh (mutating)
// ---------------------------------------------------------------------------------------------

/// The real refresh-token grant. Mutating: it may rotate the refresh token, so only an explicit
/// action runs it, and its result carries the new tokens for the caller to store.
async fn refresh(cx: Arc<Ctx>) -> ProbeResult {
    let o = &cx.conn.oauth;
    let url = o
        .refresh_url
        .clone()
        .or_else(|| o.token_url.clone())
        .ok_or_else(|| FactError::new("the connection has no OAuth refresh or token URL"))?;
    let refresh_token = cx
        .conn
        .secrets
        .refresh_token
        .clone()
        .ok_or_else(|| FactError::new("the connection has no refresh_token secret"))?;
    let (req, _) = form_post(
        &cx,
        &url,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ],
    );
    let r = cx.send(req, Creds::Attached).await.map_err(|e| {
        FactError::new(one_line(
            &cx.scrub(&format!("the refresh request failed: {}", e.reason)),
        ))
    })?;
    let body = json_object(&r);
    let access = body
        .as_ref()
        .and_then(|b| b.get("access_token"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    match (&body, access) {
        (Some(b), Some(access)) if (200..300).contains(&r.status) => {
            let expires_in = int_of(b.get("expires_in"));
            let expires_at = expires_in
                .and_then(|s| rfc3339(jiff::Timestamp::now().as_second().saturating_add(s)));
            let text = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
            Ok(json!({
                "refreshed": true,
                "access_token": access,
                "refresh_token": text("refresh_token").filter(|s| !s.is_empty()),
                "expires_in": expires_in,
                "expires_at": expires_at,
                "scope": text("scope"),
                "token_type": text("token_type"),
            }))
        }
        _ => {
            let err = oauth_error(&cx, body.as_ref());
            let description = err.description.or_else(|| {
                (200..300)
                    .contains(&r.status)
                    .then(|| "the token endpoint answered without an access token".to_string())
            });
            Ok(json!({
                "refreshed": false,
                "status": r.status,
                "error": err.code,
                "error_description": description,
            }))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JWT claims and base64 (the `base64` crate)
// ---------------------------------------------------------------------------------------------

/// The claims of a JWS-format token (`header.payload.signature`), decoded WITHOUT verifying the
/// signature. Only for reading what the token says about itself (`scp`, `exp`) when diagnosing;
/// never for deciding whom to trust. Opaque and encrypted (JWE) tokens give `None`.
pub fn decode_jwt_claims(token: &str) -> Option<Value> {
    let token = token.trim();
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token);
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64_decode(payload)?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

/// Standard base64 with padding (RFC 4648 §4), for the Basic header.
fn base64_encode(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

/// Base64url (RFC 4648 §5) without or with padding; the standard alphabet's `+` and `/` are
/// accepted too, since tokens from some issuers are not strictly url-safe.
fn base64_decode(input: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
    URL_SAFE
        .decode(input)
        .or_else(|_| STANDARD.decode(input))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_the_rfc_4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), plain.as_bytes());
            assert_eq!(
                base64_decode(enc.trim_end_matches('=')).unwrap(),
                plain.as_bytes()
            );
        }
        // url-safe alphabet: 0xfb 0xff -> "-_8"
        assert_eq!(base64_decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(base64_decode("+/8").unwrap(), vec![0xfb, 0xff]);
        assert!(base64_decode("a").is_none());
        assert!(base64_decode("ab$c").is_none());
    }

    #[test]
    fn jwt_claims_are_read_without_verification() {
        // {"alg":"none"}.{"scp":"User.Read Mail.Send","exp":1700000000}.sig
        let payload = base64_encode(br#"{"scp":"User.Read Mail.Send","exp":1700000000}"#)
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_");
        let token = format!("eyJhbGciOiJub25lIn0.{payload}.c2ln");
        let claims = decode_jwt_claims(&token).unwrap();
        assert_eq!(claims["scp"], "User.Read Mail.Send");
        assert_eq!(claims["exp"], 1_700_000_000);
        assert_eq!(
            decode_jwt_claims(&format!("Bearer {token}")).unwrap()["exp"],
            1_700_000_000
        );
        assert!(decode_jwt_claims("opaque-token").is_none());
        assert!(decode_jwt_claims("a.b.c.d.e").is_none());
        assert!(decode_jwt_claims("a.!!.c").is_none());
        // A payload that is JSON but not an object is not a claims set.
        assert!(decode_jwt_claims("a.MTI.c").is_none());
    }

    #[test]
    fn well_known_urls_follow_rfc_8414_and_oidc() {
        let u = |s: &str| Url::parse(s).unwrap();
        let urls = well_known_urls(&u("https://as.example.com"));
        assert_eq!(
            urls[0].1.as_str(),
            "https://as.example.com/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            urls[1].1.as_str(),
            "https://as.example.com/.well-known/openid-configuration"
        );
        let urls = well_known_urls(&u("https://login.example.com/tenant/v2.0/"));
        assert_eq!(
            urls[0].1.as_str(),
            "https://login.example.com/.well-known/oauth-authorization-server/tenant/v2.0"
        );
        assert_eq!(
            urls[1].1.as_str(),
            "https://login.example.com/tenant/v2.0/.well-known/openid-configuration"
        );
        assert_eq!(
            issuer_text(&u("https://as.example.com")),
            "https://as.example.com"
        );
        assert_eq!(
            issuer_text(&u("https://as.example.com/t/")),
            "https://as.example.com/t/"
        );
    }

    #[test]
    fn basic_auth_form_encodes_both_parts() {
        // RFC 6749 §2.3.1: "a:b" / "p w" -> "a%3Ab:p+w"
        assert_eq!(
            basic_auth("a:b", "p w"),
            format!("Basic {}", base64_encode(b"a%3Ab:p+w"))
        );
        assert_eq!(basic_auth("id", "secret"), "Basic aWQ6c2VjcmV0");
    }

    #[test]
    fn provider_text_becomes_one_bounded_line() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        assert!(one_line(&"x".repeat(1000)).chars().count() <= 301);
    }
}
