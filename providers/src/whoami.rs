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
        let value = match conn.api_key_prefix.as_deref() {
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

struct Answer {
    endpoint: String,
    status: u16,
    authenticated: bool,
    identity: Option<String>,
    scopes: Option<Vec<String>>,
    sso_required: bool,
    sso_url: Option<String>,
    retry_after: Option<u64>,
    error: Option<String>,
}

impl Answer {
    fn from(url: &Url, r: &Fetched) -> Answer {
        let retry_after = (r.status == 429 || r.header("x-ratelimit-remaining") == Some("0"))
            .then(|| {
                r.header("retry-after")
                    .and_then(|v| retry_after_seconds(v, jiff::Timestamp::now()))
                    .or_else(|| {
                        r.header("x-ratelimit-reset")
                            .and_then(|v| v.trim().parse::<i64>().ok())
                            .map(|t| (t - jiff::Timestamp::now().as_second()).max(0) as u64)
                    })
                    .or(Some(60))
            })
            .flatten();
        Answer {
            endpoint: format!("{}{}", url.origin().ascii_serialization(), url.path()),
            status: r.status,
            authenticated: (200..300).contains(&r.status),
            identity: None,
            scopes: None,
            sso_required: false,
            sso_url: None,
            retry_after,
            error: None,
        }
    }

    fn into_fact(self, kind: Kind, cx: &Ctx) -> Value {
        json!({
            "provider": kind.name(),
            "endpoint": self.endpoint,
            "status": self.status,
            "authenticated": self.authenticated,
            "identity": self.identity.map(|s| cx.scrub(&s)),
            "scopes": self.scopes,
            "sso_required": self.sso_required,
            "sso_url": self.sso_url,
            "rate_limited": self.retry_after.is_some() && self.status == 429,
            "retry_after_seconds": self.retry_after,
            "error": self.error.map(|s| cx.scrub(&s)),
        })
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// The provider's error wording from a JSON body, in the shapes the big APIs use.
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
        .map(|s| s.chars().take(300).collect())
}

async fn whoami(cx: Arc<Ctx>, forced: Option<Kind>) -> ProbeResult {
    let kind = forced.unwrap_or_else(|| Kind::of(&cx.conn.provider));
    let conn = &cx.conn;
    let http = &cx.env.http;
    let (base, creds) = base(conn, kind)?;
    let mut a = match kind {
        Kind::GitHub => {
            let url = url_at(&base, "user")?;
            let req = http
                .get(url.clone())
                .header("accept", "application/vnd.github+json");
            let r = cx.send(authorize(req, conn)?, creds).await?;
            let mut a = Answer::from(&url, &r);
            let body = r.json().ok();
            a.identity = body
                .as_ref()
                .and_then(|b| str_at(b, &["login"]))
                .map(str::to_string);
            // Fine-grained tokens send no X-OAuth-Scopes: unknown, not "none".
            a.scopes = r.header("x-oauth-scopes").map(split_scopes);
            if let Some(sso) = r.header("x-github-sso") {
                a.sso_required = sso.starts_with("required");
                a.sso_url = sso.split("url=").nth(1).map(|u| u.trim().to_string());
            }
            a.error = (!a.authenticated)
                .then(|| body.as_ref().and_then(body_error))
                .flatten();
            a
        }
        Kind::Slack => {
            let url = url_at(&base, "auth.test")?;
            let req = http
                .post(url.clone())
                .header("content-type", "application/x-www-form-urlencoded");
            let r = cx.send(authorize(req, conn)?, creds).await?;
            let mut a = Answer::from(&url, &r);
            let body = r.json()?;
            // Slack answers 200 with `ok: false` for bad tokens.
            a.authenticated = a.authenticated && body.get("ok") == Some(&Value::Bool(true));
            a.identity = str_at(&body, &["user"]).map(str::to_string);
            a.scopes = r.header("x-oauth-scopes").map(split_scopes);
            a.error = str_at(&body, &["error"]).map(str::to_string);
            a
        }
        Kind::Microsoft => {
            let url = url_at(&base, "me")?;
            let r = cx
                .send(authorize(http.get(url.clone()), conn)?, creds)
                .await?;
            let mut a = Answer::from(&url, &r);
            let body = r.json().ok();
            a.identity = body
                .as_ref()
                .and_then(|b| str_at(b, &["userPrincipalName"]).or(str_at(b, &["mail"])))
                .map(str::to_string);
            a.error = (!a.authenticated)
                .then(|| body.as_ref().and_then(body_error))
                .flatten();
            // Graph does not list scopes; its access tokens carry them in the `scp` claim.
            a.scopes = conn
                .secrets
                .access_token
                .as_deref()
                .and_then(crate::oauth::decode_jwt_claims)
                .and_then(|c| c.get("scp").and_then(Value::as_str).map(split_scopes));
            a
        }
        Kind::Google => {
            let url = url_at(&base, "oauth2/v3/tokeninfo")?;
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
            let mut a = Answer::from(&url, &r);
            let body = r.json().ok();
            if let Some(b) = &body {
                a.identity = str_at(b, &["email"]).map(str::to_string);
                a.scopes = str_at(b, &["scope"]).map(split_scopes);
                a.error = (!a.authenticated).then(|| body_error(b)).flatten();
            }
            a
        }
        Kind::GitLab => {
            // Self-managed base URLs are given with or without the `/api/v4` suffix.
            let root = {
                let mut r = base.clone();
                let p = r
                    .path()
                    .trim_end_matches('/')
                    .trim_end_matches("/api/v4")
                    .to_string();
                r.set_path(&p);
                r
            };
            let url = url_at(&root, "api/v4/user")?;
            let r = cx
                .send(authorize(http.get(url.clone()), conn)?, creds)
                .await?;
            let mut a = Answer::from(&url, &r);
            let body = r.json().ok();
            a.identity = body
                .as_ref()
                .and_then(|b| str_at(b, &["username"]))
                .map(str::to_string);
            a.error = (!a.authenticated)
                .then(|| body.as_ref().and_then(body_error))
                .flatten();
            if a.authenticated {
                // OAuth tokens describe themselves at /oauth/token/info; personal access tokens
                // at /api/v4/personal_access_tokens/self.
                let info = if conn.auth_type == "oauth2" {
                    url_at(&root, "oauth/token/info")?
                } else {
                    url_at(&root, "api/v4/personal_access_tokens/self")?
                };
                if let Ok(r2) = cx.send(authorize(http.get(info), conn)?, creds).await
                    && let Ok(b) = r2.json()
                {
                    a.scopes = b.get("scope").or(b.get("scopes")).and_then(|s| match s {
                        Value::Array(items) => Some(
                            items
                                .iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect(),
                        ),
                        Value::String(s) => Some(split_scopes(s)),
                        _ => None,
                    });
                }
            }
            a
        }
        Kind::Jira => {
            // Jira Data Center speaks REST v2; Jira Cloud v3.
            let path = if conn.deployment_mode == "self_hosted" {
                "rest/api/2/myself"
            } else {
                "rest/api/3/myself"
            };
            let url = url_at(&base, path)?;
            let r = cx
                .send(
                    authorize(http.get(url.clone()), conn)?.header("accept", "application/json"),
                    creds,
                )
                .await?;
            let mut a = Answer::from(&url, &r);
            let body = r.json().ok();
            a.identity = body
                .as_ref()
                .and_then(|b| {
                    str_at(b, &["emailAddress"])
                        .or(str_at(b, &["name"]))
                        .or(str_at(b, &["accountId"]))
                })
                .map(str::to_string);
            a.error = (!a.authenticated)
                .then(|| body.as_ref().and_then(body_error))
                .flatten();
            a
        }
        Kind::Generic => {
            let url = conn.whoami_url.clone().unwrap_or(base);
            let r = cx
                .send(authorize(http.get(url.clone()), conn)?, creds)
                .await?;
            let mut a = Answer::from(&url, &r);
            a.error = (!a.authenticated)
                .then(|| r.json().ok().as_ref().and_then(body_error))
                .flatten();
            a
        }
    };
    if a.status == 401 && a.error.is_none() {
        a.error = Some("unauthorized".into());
    }
    Ok(a.into_fact(kind, &cx))
}
