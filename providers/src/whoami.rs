//! Whoami probes: call the provider's "who am I" endpoint with the connection's credentials and
//! report whether they work, who they belong to, and which scopes they carry.
//!
//! Stored connection records often lack `granted_scopes`; the provider knows them. Every
//! provider answers in a different shape, so each is normalised to one fact:
//! `{provider, endpoint, status, authenticated, identity, scopes, sso_required, sso_url,
//! rate_limited, retry_after_seconds, error}`. `whoami` dispatches on `connection.provider`;
//! `github.whoami`, `slack.whoami`, ... force one shape; `http.whoami` is the generic
//! "call this URL with these credentials" probe (`connection.whoami_url`, else the base URL).

use std::sync::Arc;

use serde_json::{Value, json};
use url::Url;
use whyfail_engine::FactError;

use crate::conn::{Conn, join};
use crate::probe::{Creds, Ctx, Fetched, Probe, ProbeResult, retry_after_seconds};

/// The probes of this module.
pub fn probes() -> Vec<Probe> {
    fn p(name: &'static str, run: fn(Arc<Ctx>) -> crate::probe::ProbeFuture) -> Probe {
        Probe {
            name,
            cost: 5,
            mutating: false,
            calls_api: true,
            run,
        }
    }
    vec![
        p("whoami", |cx| Box::pin(whoami(cx, None))),
        p("github.whoami", |cx| {
            Box::pin(whoami(cx, Some(Kind::GitHub)))
        }),
        p("slack.whoami", |cx| Box::pin(whoami(cx, Some(Kind::Slack)))),
        p("microsoft.whoami", |cx| {
            Box::pin(whoami(cx, Some(Kind::Microsoft)))
        }),
        p("google.whoami", |cx| {
            Box::pin(whoami(cx, Some(Kind::Google)))
        }),
        p("gitlab.whoami", |cx| {
            Box::pin(whoami(cx, Some(Kind::GitLab)))
        }),
        p("jira.whoami", |cx| Box::pin(whoami(cx, Some(Kind::Jira)))),
        p("http.whoami", |cx| {
            Box::pin(whoami(cx, Some(Kind::Generic)))
        }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    GitHub,
    Slack,
    Microsoft,
    Google,
    GitLab,
    Jira,
    Generic,
}

impl Kind {
    fn of(provider: &str) -> Kind {
        match provider {
            "github" | "github_enterprise" => Kind::GitHub,
            "slack" => Kind::Slack,
            "microsoft" | "microsoft_graph" | "azure" | "azure_ad" | "entra" | "outlook"
            | "teams" | "sharepoint" | "onedrive" => Kind::Microsoft,
            "google" | "gmail" | "google_sheets" | "google_drive" | "google_calendar" => {
                Kind::Google
            }
            "gitlab" => Kind::GitLab,
            "jira" | "atlassian" | "confluence" => Kind::Jira,
            _ => Kind::Generic,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::GitHub => "github",
            Kind::Slack => "slack",
            Kind::Microsoft => "microsoft",
            Kind::Google => "google",
            Kind::GitLab => "gitlab",
            Kind::Jira => "jira",
            Kind::Generic => "generic",
        }
    }

    /// The public API a connection without a base URL talks to.
    fn default_base(self) -> Option<&'static str> {
        match self {
            Kind::GitHub => Some("https://api.github.com"),
            Kind::Slack => Some("https://slack.com/api"),
            Kind::Microsoft => Some("https://graph.microsoft.com/v1.0"),
            Kind::Google => Some("https://www.googleapis.com"),
            Kind::GitLab => Some("https://gitlab.com"),
            Kind::Jira | Kind::Generic => None,
        }
    }
}

/// The base URL to call and whether it is the connection's own or the provider's public one.
fn base(conn: &Conn, kind: Kind) -> Result<(Url, Creds), FactError> {
    if let Some(b) = &conn.base_url {
        return Ok((b.clone(), Creds::Attached));
    }
    let d = kind.default_base().ok_or_else(|| {
        FactError::new(format!(
            "the connection has no base_url, and {} has no single public API to ask",
            kind.name()
        ))
    })?;
    Url::parse(d)
        .map(|u| (u, Creds::Official))
        .map_err(|e| FactError::new(e.to_string()))
}

fn url_at(base: &Url, path: &str) -> Result<Url, FactError> {
    join(base, path).ok_or_else(|| FactError::new(format!("cannot build a URL from {base}")))
}

/// Whether a base URL names only a host (`https://slack.com`), not an API root under it.
fn is_root(u: &Url) -> bool {
    u.path().trim_matches('/').is_empty()
}

/// `base` without any of `suffixes` at the end of its path (`/api/v4`, `/rest/api/3`), so a base
/// URL given with or without the API prefix leads to the same place.
fn strip_suffix(base: &Url, suffixes: &[&str]) -> Url {
    let mut r = base.clone();
    let mut p = r.path().trim_end_matches('/');
    for s in suffixes {
        if let Some(rest) = p.strip_suffix(s) {
            p = rest;
            break;
        }
    }
    let p = p.to_string();
    r.set_path(&p);
    r
}

/// Adds the connection's credentials the way it is configured to send them.
fn authorize(
    req: reqwest::RequestBuilder,
    conn: &Conn,
) -> Result<reqwest::RequestBuilder, FactError> {
    let s = &conn.secrets;
    if conn.auth_type == "api_key" {
        let key = s
            .api_key
            .as_deref()
            .ok_or_else(|| FactError::new("the connection has no api_key secret to try"))?;
        let header = conn.api_key_header.as_deref().unwrap_or("Authorization");
        let value = match conn.api_key_prefix.as_deref().map(str::trim) {
            Some(p) if !p.is_empty() => format!("{p} {key}"),
            _ if header.eq_ignore_ascii_case("authorization") => format!("Bearer {key}"),
            _ => key.to_string(),
        };
        return Ok(req.header(header, value));
    }
    let token = s.bearer().ok_or_else(|| {
        FactError::new("the connection has no access_token or api_key secret to try")
    })?;
    Ok(req.bearer_auth(token))
}

/// Scopes from a comma- or space-separated header value.
fn split_scopes(v: &str) -> Vec<String> {
    v.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Scopes from a JSON `scope` / `scopes` member: an array, or a space/comma separated string.
fn scopes_in(b: &Value) -> Option<Vec<String>> {
    b.get("scope").or(b.get("scopes")).and_then(|s| match s {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        Value::String(s) => Some(split_scopes(s)),
        _ => None,
    })
}

/// Seconds until a rate-limit reset: epoch seconds (GitHub, GitLab), seconds from now when the
/// number is small (some APIs send a delta), or an ISO 8601 time (Atlassian).
fn reset_seconds(v: &str, now: jiff::Timestamp) -> Option<u64> {
    let v = v.trim();
    let secs = if let Ok(n) = v.parse::<f64>() {
        if !n.is_finite() {
            return None;
        }
        if n >= 1e9 {
            n - now.as_second() as f64
        } else {
            n
        }
    } else {
        let t = v.parse::<jiff::Timestamp>().ok()?;
        (t.as_second() - now.as_second()) as f64
    };
    Some(secs.max(0.0).ceil() as u64)
}

struct Answer {
    endpoint: String,
    status: u16,
    /// The call succeeded with these credentials. False for anything else, including answers
    /// that say nothing about them (a rate limit, a redirect, a 5xx): `rate_limited` and
    /// `status` tell those apart.
    authenticated: bool,
    identity: Option<String>,
    scopes: Option<Vec<String>>,
    sso_required: bool,
    sso_url: Option<String>,
    rate_limited: bool,
    retry_after: Option<u64>,
    redirect: Option<String>,
    error: Option<String>,
}

impl Answer {
    /// The answer with the body parsed as JSON (when it is), and the provider's own error
    /// wording taken from it when the call was not authenticated.
    fn with_body(url: &Url, r: &Fetched) -> (Answer, Option<Value>) {
        let mut a = Answer::from(url, r);
        let body = r.json().ok();
        if !a.authenticated {
            a.error = body.as_ref().and_then(body_error);
        }
        (a, body)
    }

    fn from(url: &Url, r: &Fetched) -> Answer {
        let now = jiff::Timestamp::now();
        let first = |names: &[&str]| names.iter().find_map(|n| r.header(n));
        let exhausted = first(&["x-ratelimit-remaining", "ratelimit-remaining"])
            .is_some_and(|v| v.trim() == "0");
        let retry = r
            .header("retry-after")
            .and_then(|v| retry_after_seconds(v, now));
        let reset =
            first(&["x-ratelimit-reset", "ratelimit-reset"]).and_then(|v| reset_seconds(v, now));
        // GitHub answers a spent primary limit with 403 (or 429) and `x-ratelimit-remaining: 0`,
        // a secondary limit with 403 and `Retry-After`.
        let rate_limited = r.status == 429 || (r.status == 403 && (exhausted || retry.is_some()));
        // A 2xx that spent the last call still tells us when the next one may go.
        let retry_after = (rate_limited || exhausted).then(|| retry.or(reset).unwrap_or(60));
        Answer {
            endpoint: format!("{}{}", url.origin().ascii_serialization(), url.path()),
            status: r.status,
            authenticated: (200..300).contains(&r.status),
            identity: None,
            scopes: None,
            sso_required: false,
            sso_url: None,
            rate_limited,
            retry_after,
            redirect: r.redirect().map(str::to_string),
            error: None,
        }
    }

    fn into_fact(self, kind: Kind, cx: &Ctx) -> Value {
        let status = self.status;
        let error = self.error.or_else(|| match status {
            200..=299 => None,
            401 => Some("unauthorized".into()),
            _ if self.rate_limited => Some(format!("rate limited (HTTP {status})")),
            _ => Some(match &self.redirect {
                Some(to) => format!("HTTP {status}: redirected to {to} (not followed)"),
                None => format!("HTTP {status}"),
            }),
        });
        let mut fact = json!({
            "provider": kind.name(),
            "endpoint": self.endpoint,
            "status": status,
            "authenticated": self.authenticated,
            "identity": self.identity,
            "scopes": self.scopes,
            "sso_required": self.sso_required,
            "sso_url": self.sso_url,
            "rate_limited": self.rate_limited,
            "retry_after_seconds": self.retry_after,
            // Scrubbed before it is cut short, so no prefix of a secret survives the cut.
            "error": error.map(|s| cx.scrub(&s).chars().take(300).collect::<String>()),
        });
        scrub_all(cx, &mut fact);
        fact
    }
}

/// Scrubs every string of a fact: providers echo tokens in bodies, headers and redirects.
fn scrub_all(cx: &Ctx, v: &mut Value) {
    cx.scrubber().clean_json(v);
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// The provider's error wording from a JSON body, in the shapes the big APIs use. Not cut
/// short here: the fact scrubs it first.
fn body_error(v: &Value) -> Option<String> {
    str_at(v, &["error", "message"])
        .or_else(|| str_at(v, &["error", "code"]))
        .or_else(|| str_at(v, &["error_description"]))
        .or_else(|| str_at(v, &["error"]))
        .or_else(|| str_at(v, &["message"]))
        .or_else(|| {
            v.get("errorMessages")
                .and_then(|m| m.get(0))
                .and_then(Value::as_str)
        })
        .map(str::to_string)
}

/// Who a generic API says the caller is, from the member names APIs commonly use.
fn generic_identity(b: &Value) -> Option<String> {
    const NAMES: [&str; 7] = [
        "email",
        "username",
        "login",
        "preferred_username",
        "user",
        "name",
        "sub",
    ];
    [Some(b), b.get("user"), b.get("data")]
        .into_iter()
        .flatten()
        .find_map(|o| NAMES.iter().find_map(|n| str_at(o, &[*n])))
        .map(str::to_string)
}

/// Google's own API hosts, where the tokeninfo endpoint is the official one whatever API the
/// connection's base URL names (`https://www.googleapis.com/gmail/v1`, `sheets.googleapis.com`).
fn is_google_api(u: &Url) -> bool {
    u.scheme() == "https"
        && u.host_str().is_some_and(|h| {
            let h = h.trim_end_matches('.').to_ascii_lowercase();
            h == "googleapis.com" || h.ends_with(".googleapis.com")
        })
}

async fn whoami(cx: Arc<Ctx>, forced: Option<Kind>) -> ProbeResult {
    let kind = forced.unwrap_or_else(|| Kind::of(&cx.conn.provider));
    let conn = &cx.conn;
    let http = &cx.env.http;
    let (base, creds) = if kind == Kind::Generic {
        // `connection.whoami_url`, else the base URL; credentials go to it only if it is on
        // one of the connection's own origins (`Ctx::send` checks).
        let url = conn
            .whoami_url
            .clone()
            .or_else(|| conn.base_url.clone())
            .ok_or_else(|| {
                FactError::new(
                    "the connection has neither a whoami_url nor a base_url to ask who it is",
                )
            })?;
        (url, Creds::Attached)
    } else {
        base(conn, kind)?
    };
    let a = match kind {
        Kind::GitHub => {
            let url = url_at(&base, "user")?;
            let req = http
                .get(url.clone())
                .header("accept", "application/vnd.github+json");
            let r = cx.send(authorize(req, conn)?, creds).await?;
            let (mut a, body) = Answer::with_body(&url, &r);
            a.identity = body
                .as_ref()
                .and_then(|b| str_at(b, &["login"]))
                .map(str::to_string);
            // Fine-grained tokens send no X-OAuth-Scopes: unknown, not "none".
            a.scopes = r.header("x-oauth-scopes").map(split_scopes);
            if let Some(sso) = r.header("x-github-sso") {
                a.sso_required = sso.trim_start().starts_with("required");
                a.sso_url = sso
                    .split("url=")
                    .nth(1)
                    .map(|u| u.split(';').next().unwrap_or(u).trim().to_string())
                    .filter(|u| !u.is_empty());
            }
            a
        }
        Kind::Slack => {
            // `https://slack.com` and `https://slack.com/api` both name the Web API.
            let path = if is_root(&base) {
                "api/auth.test"
            } else {
                "auth.test"
            };
            let url = url_at(&base, path)?;
            let req = http
                .post(url.clone())
                .header("content-type", "application/x-www-form-urlencoded");
            let r = cx.send(authorize(req, conn)?, creds).await?;
            let mut a = Answer::from(&url, &r);
            a.scopes = r.header("x-oauth-scopes").map(split_scopes);
            match r.json() {
                Ok(body) => {
                    // Slack answers 200 with `ok: false` for bad tokens.
                    let ok = body.get("ok") == Some(&Value::Bool(true));
                    a.authenticated = a.authenticated && ok;
                    if ok {
                        a.identity = str_at(&body, &["user"]).map(str::to_string);
                    } else {
                        a.error = str_at(&body, &["error"]).map(str::to_string);
                    }
                    if a.error.as_deref() == Some("ratelimited") {
                        a.rate_limited = true;
                        a.retry_after.get_or_insert(60);
                    }
                }
                // A 2xx that is not JSON says nothing about the token; a rate limit or an
                // outage may come with any body and is still a fact.
                Err(e) if a.authenticated => return Err(e),
                Err(_) => {}
            }
            a
        }
        Kind::Microsoft => {
            // `https://graph.microsoft.com` names no API version; v1.0 is the stable one.
            let path = if is_root(&base) { "v1.0/me" } else { "me" };
            let url = url_at(&base, path)?;
            let r = cx
                .send(authorize(http.get(url.clone()), conn)?, creds)
                .await?;
            let (mut a, body) = Answer::with_body(&url, &r);
            a.identity = body
                .as_ref()
                .and_then(|b| str_at(b, &["userPrincipalName"]).or(str_at(b, &["mail"])))
                .map(str::to_string);
            // Graph does not list scopes; its access tokens carry them in the `scp` claim
            // (delegated) or the `roles` claim (application permissions).
            a.scopes = conn
                .secrets
                .access_token
                .as_deref()
                .and_then(crate::oauth::decode_jwt_claims)
                .and_then(|c| {
                    c.get("scp")
                        .and_then(Value::as_str)
                        .map(split_scopes)
                        .or_else(|| {
                            c.get("roles").and_then(Value::as_array).map(|r| {
                                r.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_string)
                                    .collect()
                            })
                        })
                });
            a
        }
        Kind::Google => {
            // Tokeninfo lives on www.googleapis.com whichever Google API the connection uses.
            let (url, creds) = if creds == Creds::Attached && is_google_api(&base) {
                (
                    url_at(
                        &Url::parse("https://www.googleapis.com")
                            .map_err(|e| FactError::new(e.to_string()))?,
                        "oauth2/v3/tokeninfo",
                    )?,
                    Creds::Official,
                )
            } else {
                (url_at(&base, "oauth2/v3/tokeninfo")?, creds)
            };
            let token = conn.secrets.access_token.as_deref().ok_or_else(|| {
                FactError::new("the connection has no access_token secret to try")
            })?;
            // The token goes in the body, never the query string, so no log line carries it.
            let form = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("access_token", token)
                .finish();
            let req = http
                .post(url.clone())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form);
            let r = cx.send(req, creds).await?;
            let (mut a, body) = Answer::with_body(&url, &r);
            if let Some(b) = &body {
                // `email` only with the email scope; `sub` always.
                a.identity = str_at(b, &["email"])
                    .or(str_at(b, &["sub"]))
                    .map(str::to_string);
                a.scopes = str_at(b, &["scope"]).map(split_scopes);
            }
            a
        }
        Kind::GitLab => {
            // Self-managed base URLs are given with or without the `/api/v4` suffix.
            let root = strip_suffix(&base, &["/api/v4"]);
            let url = url_at(&root, "api/v4/user")?;
            let r = cx
                .send(authorize(http.get(url.clone()), conn)?, creds)
                .await?;
            let (mut a, body) = Answer::with_body(&url, &r);
            a.identity = body
                .as_ref()
                .and_then(|b| str_at(b, &["username"]))
                .map(str::to_string);
            // A 403 `insufficient_scope` is a valid token missing a scope: exactly when its
            // scopes matter.
            if a.authenticated || (r.status == 403 && !a.rate_limited) {
                // OAuth tokens describe themselves at /oauth/token/info; personal access tokens
                // at /api/v4/personal_access_tokens/self.
                let info = if conn.auth_type == "oauth2" {
                    url_at(&root, "oauth/token/info")?
                } else {
                    url_at(&root, "api/v4/personal_access_tokens/self")?
                };
                if let Ok(r2) = cx.send(authorize(http.get(info), conn)?, creds).await
                    && (200..300).contains(&r2.status)
                    && let Ok(b) = r2.json()
                {
                    a.scopes = scopes_in(&b);
                }
            }
            a
        }
        Kind::Jira => {
            // Jira Data Center speaks REST v2; Jira Cloud v3. A base URL may already name one.
            let root = strip_suffix(&base, &["/rest/api/2", "/rest/api/3", "/rest/api/latest"]);
            let path = if conn.deployment_mode == "self_hosted" {
                "rest/api/2/myself"
            } else {
                "rest/api/3/myself"
            };
            let url = url_at(&root, path)?;
            let r = cx
                .send(
                    authorize(http.get(url.clone()), conn)?.header("accept", "application/json"),
                    creds,
                )
                .await?;
            let (mut a, body) = Answer::with_body(&url, &r);
            a.identity = body
                .as_ref()
                .and_then(|b| {
                    str_at(b, &["emailAddress"])
                        .or(str_at(b, &["name"]))
                        .or(str_at(b, &["accountId"]))
                })
                .map(str::to_string);
            a
        }
        Kind::Generic => {
            let url = base;
            let r = cx
                .send(
                    authorize(http.get(url.clone()), conn)?.header("accept", "application/json"),
                    creds,
                )
                .await?;
            let (mut a, body) = Answer::with_body(&url, &r);
            a.scopes = r
                .header("x-oauth-scopes")
                .map(split_scopes)
                .or_else(|| body.as_ref().and_then(scopes_in));
            if a.authenticated {
                a.identity = body.as_ref().and_then(generic_identity);
            }
            a
        }
    };
    Ok(a.into_fact(kind, &cx))
}
