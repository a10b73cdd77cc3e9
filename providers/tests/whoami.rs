//! The whoami probes against wiremock fakes shaped after each provider's documented API: GitHub
//! `GET /user` (`X-OAuth-Scopes`, `X-GitHub-SSO`), Slack `POST /api/auth.test`, Microsoft Graph
//! `GET /v1.0/me` (scopes from the token's `scp` claim), Google `POST /oauth2/v3/tokeninfo`,
//! GitLab `/api/v4/user` plus its token-info endpoints, Jira `/rest/api/{3,2}/myself`, and the
//! generic `http.whoami`. Then what every probe of the family shares: rate limits, outages,
//! malformed bodies, timeouts, redirects, credentials and secrets never leaking into a fact.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use url::Url;
use whyfail_engine::FactError;
use whyfail_providers::Guard;
use whyfail_providers::conn::{Conn, Secrets};
use whyfail_providers::probe::{Ctx, Env};
use whyfail_providers::whoami;
use wiremock::matchers::{any, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "gho_sekritTOKEN0123456789abcdef";
const API_KEY: &str = "ak_sekritKEY9876543210";

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

/// An OAuth connection to `provider` at `base`, holding [`TOKEN`].
fn conn(provider: &str, base: &str) -> Conn {
    Conn {
        provider: provider.into(),
        auth_type: "oauth2".into(),
        base_url: Some(url(base)),
        secrets: Secrets {
            access_token: Some(TOKEN.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// An API-key connection at `base`, holding [`API_KEY`].
fn key_conn(base: &str, header: Option<&str>, prefix: Option<&str>) -> Conn {
    Conn {
        provider: "acme".into(),
        auth_type: "api_key".into(),
        base_url: Some(url(base)),
        api_key_header: header.map(str::to_string),
        api_key_prefix: prefix.map(str::to_string),
        secrets: Secrets {
            api_key: Some(API_KEY.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn ctx_t(conn: Conn, timeout: Duration) -> Arc<Ctx> {
    Arc::new(Ctx {
        conn,
        env: Arc::new(Env::new(
            Guard::new(["127.0.0.1", "localhost"]),
            timeout,
            vec![],
        )),
    })
}

fn ctx(conn: Conn) -> Arc<Ctx> {
    ctx_t(conn, Duration::from_secs(2))
}

async fn run(name: &str, cx: Arc<Ctx>) -> Result<Value, FactError> {
    let p = whoami::probes()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no probe {name}"));
    // A hang is a failure of the test, not a blocked test run.
    tokio::time::timeout(Duration::from_secs(10), (p.run)(cx))
        .await
        .expect("the probe hung")
}

/// Neither secret, nor any piece of one that gives it away, appears in `text`.
fn assert_no_secrets(text: &str) {
    for s in [TOKEN, API_KEY, "sekrit"] {
        assert!(!text.contains(s), "output leaks a secret: {text}");
    }
}

fn output(r: &Result<Value, FactError>) -> String {
    match r {
        Ok(v) => v.to_string(),
        Err(e) => e.reason.clone(),
    }
}

async fn requests(server: &MockServer) -> Vec<wiremock::Request> {
    server.received_requests().await.unwrap()
}

/// The one value of a request header, as text.
fn header_of<'a>(r: &'a wiremock::Request, name: &str) -> Option<&'a str> {
    let mut all = r.headers.get_all(name).iter();
    let v = all.next()?.to_str().ok();
    assert!(all.next().is_none(), "{name} sent twice");
    v
}

/// An unsigned JWT (`alg: none`) carrying `claims`, as Entra ID access tokens look to a client.
fn jwt(claims: &Value) -> String {
    fn b64url(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Every probe of the family, with a connection for `base` it accepts, and the request path
/// it makes first (base URL without a path prefix).
fn family(base: &str) -> Vec<(&'static str, Conn, &'static str)> {
    // Every connection holds both secrets, so each test sees which one is used.
    let with_key = |mut c: Conn| {
        c.secrets.api_key = Some(API_KEY.into());
        c
    };
    let with_token = |mut c: Conn| {
        c.secrets.access_token = Some(TOKEN.into());
        c
    };
    vec![
        ("github.whoami", with_key(conn("github", base)), "/user"),
        (
            "slack.whoami",
            with_key(conn("slack", base)),
            "/api/auth.test",
        ),
        (
            "microsoft.whoami",
            with_key(conn("microsoft", base)),
            "/v1.0/me",
        ),
        (
            "google.whoami",
            with_key(conn("google", base)),
            "/oauth2/v3/tokeninfo",
        ),
        (
            "gitlab.whoami",
            with_key(conn("gitlab", base)),
            "/api/v4/user",
        ),
        (
            "jira.whoami",
            with_key(conn("jira", base)),
            "/rest/api/3/myself",
        ),
        (
            "http.whoami",
            with_token(key_conn(base, Some("X-API-Key"), None)),
            "/",
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// The catalogue and dispatch
// ---------------------------------------------------------------------------------------------

#[test]
fn every_whoami_probe_calls_the_api_and_changes_nothing() {
    let probes = whoami::probes();
    let names: Vec<_> = probes.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "whoami",
            "github.whoami",
            "slack.whoami",
            "microsoft.whoami",
            "google.whoami",
            "gitlab.whoami",
            "jira.whoami",
            "http.whoami"
        ]
    );
    for p in &probes {
        assert!(p.calls_api && !p.mutating, "{}", p.name);
    }
}

#[tokio::test]
async fn whoami_dispatches_on_the_connections_provider() {
    for (provider, kind, method_, path_) in [
        ("github", "github", "GET", "/user"),
        ("github_enterprise", "github", "GET", "/user"),
        ("slack", "slack", "POST", "/api/auth.test"),
        ("outlook", "microsoft", "GET", "/v1.0/me"),
        ("gmail", "google", "POST", "/oauth2/v3/tokeninfo"),
        ("gitlab", "gitlab", "GET", "/api/v4/user"),
        ("confluence", "jira", "GET", "/rest/api/3/myself"),
        ("acme", "generic", "GET", "/"),
    ] {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(401))
            .mount(&server)
            .await;
        let v = run("whoami", ctx(conn(provider, &server.uri())))
            .await
            .unwrap();
        assert_eq!(v["provider"], kind, "{provider}: {v}");
        assert_eq!(v["authenticated"], false, "{provider}: {v}");
        let got = requests(&server).await;
        assert_eq!(got.len(), 1, "{provider}");
        assert_eq!(got[0].method.as_str(), method_, "{provider}");
        assert_eq!(got[0].url.path(), path_, "{provider}");
    }
}

// ---------------------------------------------------------------------------------------------
// GitHub
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn github_reads_the_login_and_classic_scopes() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("accept", "application/vnd.github+json"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-oauth-scopes", "repo, read:org, workflow")
                .insert_header("x-ratelimit-remaining", "4999")
                .insert_header("x-ratelimit-reset", (now() + 3600).to_string().as_str())
                .set_body_json(json!({"login": "octocat", "id": 1, "type": "User"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let v = run("github.whoami", ctx(conn("github", &server.uri())))
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({
            "provider": "github",
            "endpoint": format!("{}/user", server.uri()),
            "status": 200,
            "authenticated": true,
            "identity": "octocat",
            "scopes": ["repo", "read:org", "workflow"],
            "sso_required": false,
            "sso_url": null,
            "rate_limited": false,
            "retry_after_seconds": null,
            "error": null,
        })
    );
}

#[tokio::test]
async fn github_enterprise_keeps_the_api_v3_prefix() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v3/user"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-oauth-scopes", "repo")
                .set_body_json(json!({"login": "mona"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let base = format!("{}/api/v3", server.uri());
    let v = run("github.whoami", ctx(conn("github_enterprise", &base)))
        .await
        .unwrap();
    assert_eq!(v["identity"], "mona", "{v}");
    assert_eq!(v["endpoint"], format!("{base}/user"));
}

#[tokio::test]
async fn github_fine_grained_tokens_have_unknown_scopes_not_none() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"login": "octocat"})))
        .mount(&server)
        .await;
    let v = run("github.whoami", ctx(conn("github", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["authenticated"], true);
    assert!(v["scopes"].is_null(), "{v}");

    // A classic token with no scopes at all sends the header empty: known, and empty.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-oauth-scopes", "")
                .set_body_json(json!({"login": "octocat"})),
        )
        .mount(&server)
        .await;
    let v = run("github.whoami", ctx(conn("github", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["scopes"], json!([]), "{v}");
}

#[tokio::test]
async fn github_bad_credentials() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "message": "Bad credentials",
            "documentation_url": "https://docs.github.com/rest",
            "status": "401"
        })))
        .mount(&server)
        .await;
    let v = run("github.whoami", ctx(conn("github", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["status"], 401);
    assert_eq!(v["authenticated"], false);
    assert_eq!(v["error"], "Bad credentials");
    assert!(v["identity"].is_null() && v["scopes"].is_null(), "{v}");
    assert_eq!(v["rate_limited"], false);
}

#[tokio::test]
async fn github_saml_sso_required_with_scopes() {
    let sso = "https://github.com/orgs/acme/sso?authorization_request=A5B6C7";
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-oauth-scopes", "repo,read:org")
                .insert_header("x-github-sso", format!("required; url={sso}").as_str())
                .set_body_json(json!({
                    "message": "Resource protected by organization SAML enforcement. You must grant your Personal Access token access to this organization.",
                    "documentation_url": "https://docs.github.com/articles/authenticating-to-a-github-organization-with-saml-single-sign-on/"
                })),
        )
        .mount(&server)
        .await;
    let v = run("github.whoami", ctx(conn("github", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["status"], 403);
    assert_eq!(v["authenticated"], false);
    assert_eq!(v["sso_required"], true);
    assert_eq!(v["sso_url"], sso);
    assert_eq!(v["scopes"], json!(["repo", "read:org"]));
    assert_eq!(v["rate_limited"], false);
    assert!(v["retry_after_seconds"].is_null());
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("Resource protected by organization SAML enforcement"),
        "{v}"
    );

    // `partial-results` is not a requirement.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-github-sso", "partial-results; organizations=21955855")
                .set_body_json(json!({"login": "octocat"})),
        )
        .mount(&server)
        .await;
    let v = run("github.whoami", ctx(conn("github", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["sso_required"], false, "{v}");
    assert!(v["sso_url"].is_null(), "{v}");
}

#[tokio::test]
async fn github_primary_rate_limit_is_a_403_with_remaining_zero() {
    let reset = now() + 300;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-oauth-scopes", "repo")
                .insert_header("x-ratelimit-limit", "5000")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(json!({
                    "message": "API rate limit exceeded for user ID 1.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
                })),
        )
        .mount(&server)
        .await;
    let v = run("github.whoami", ctx(conn("github", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["status"], 403);
    assert_eq!(v["rate_limited"], true, "{v}");
    let wait = v["retry_after_seconds"].as_u64().unwrap();
    assert!((295..=301).contains(&wait), "{v}");
    // Not shown to work; `rate_limited` says why.
    assert_eq!(v["authenticated"], false, "{v}");
    assert_eq!(v["scopes"], json!(["repo"]));
    assert_eq!(v["error"], "API rate limit exceeded for user ID 1.");
}

#[tokio::test]
async fn github_secondary_rate_limit_is_a_403_with_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("retry-after", "45")
                .set_body_json(json!({"message": "You have exceeded a secondary rate limit."})),
        )
        .mount(&server)
        .await;
    let v = run("github.whoami", ctx(conn("github", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["rate_limited"], true, "{v}");
    assert_eq!(v["retry_after_seconds"], 45);
}

#[tokio::test]
async fn github_spending_the_last_call_reports_when_the_next_may_go() {
    let reset = now() + 600;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(json!({"login": "octocat"})),
        )
        .mount(&server)
        .await;
    let v = run("github.whoami", ctx(conn("github", &server.uri())))
        .await
        .unwrap();
    // This call worked; the next one would not before the reset.
    assert_eq!(v["authenticated"], true, "{v}");
    assert_eq!(v["rate_limited"], false, "{v}");
    let wait = v["retry_after_seconds"].as_u64().unwrap();
    assert!((595..=601).contains(&wait), "{v}");
}

// ---------------------------------------------------------------------------------------------
// Slack
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn slack_auth_test_reads_the_user_and_scopes() {
    for suffix in ["", "/api", "/api/"] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/auth.test"))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("x-oauth-scopes", "chat:write,channels:read,users:read")
                    .set_body_json(json!({
                        "ok": true,
                        "url": "https://acme.slack.com/",
                        "team": "Acme",
                        "user": "whyfail-bot",
                        "team_id": "T12345",
                        "user_id": "U12345",
                        "bot_id": "B12345",
                        "is_enterprise_install": false
                    })),
            )
            .expect(1)
            .mount(&server)
            .await;
        let base = format!("{}{suffix}", server.uri());
        let v = run("slack.whoami", ctx(conn("slack", &base)))
            .await
            .unwrap();
        assert_eq!(v["status"], 200, "{suffix}: {v}");
        assert_eq!(v["authenticated"], true, "{suffix}: {v}");
        assert_eq!(v["identity"], "whyfail-bot");
        assert_eq!(
            v["scopes"],
            json!(["chat:write", "channels:read", "users:read"])
        );
        assert_eq!(v["endpoint"], format!("{}/api/auth.test", server.uri()));
        assert!(v["error"].is_null(), "{v}");
    }
}

#[tokio::test]
async fn slack_invalid_auth_is_a_200_with_ok_false() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/auth.test"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": "invalid_auth"})),
        )
        .mount(&server)
        .await;
    let v = run("slack.whoami", ctx(conn("slack", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["authenticated"], false, "{v}");
    assert_eq!(v["error"], "invalid_auth");
    assert!(v["identity"].is_null(), "{v}");
}

#[tokio::test]
async fn slack_rate_limit_without_a_json_body_is_still_a_fact() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&server)
        .await;
    let v = run("slack.whoami", ctx(conn("slack", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["status"], 429);
    assert_eq!(v["rate_limited"], true);
    assert_eq!(v["retry_after_seconds"], 30);
    assert_eq!(v["authenticated"], false, "{v}");

    // `ok: false, error: ratelimited` is Slack's other way of saying so.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": "ratelimited"})),
        )
        .mount(&server)
        .await;
    let v = run("slack.whoami", ctx(conn("slack", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["rate_limited"], true, "{v}");
    assert_eq!(v["retry_after_seconds"], 60, "{v}");
    assert_eq!(v["authenticated"], false, "{v}");
}

#[tokio::test]
async fn slack_200_that_is_not_json_is_an_error_not_a_verdict() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("<html>Slack is down</html>", "text/html"),
        )
        .mount(&server)
        .await;
    let e = run("slack.whoami", ctx(conn("slack", &server.uri())))
        .await
        .unwrap_err();
    assert!(e.reason.contains("not valid JSON"), "{e}");
    assert!(e.reason.contains("text/html"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Microsoft Graph
// ---------------------------------------------------------------------------------------------

fn graph_conn(base: &str, token: &str) -> Conn {
    let mut c = conn("microsoft", base);
    c.secrets.access_token = Some(token.into());
    c
}

#[tokio::test]
async fn microsoft_reads_the_upn_and_the_tokens_scp_claim() {
    let token = jwt(&json!({
        "aud": "https://graph.microsoft.com",
        "iss": "https://sts.windows.net/tenant/",
        "scp": "User.Read Mail.Send openid profile",
        "upn": "adele@contoso.com",
        "exp": 1_900_000_000
    }));
    for suffix in ["", "/v1.0", "/v1.0/"] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v1.0/me"))
            .and(header("authorization", format!("Bearer {token}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
                "displayName": "Adele Vance",
                "mail": "AdeleV@contoso.com",
                "userPrincipalName": "AdeleV@contoso.onmicrosoft.com",
                "id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
            })))
            .expect(1)
            .mount(&server)
            .await;
        let base = format!("{}{suffix}", server.uri());
        let v = run("microsoft.whoami", ctx(graph_conn(&base, &token)))
            .await
            .unwrap();
        assert_eq!(v["authenticated"], true, "{suffix}: {v}");
        assert_eq!(v["identity"], "AdeleV@contoso.onmicrosoft.com");
        assert_eq!(
            v["scopes"],
            json!(["User.Read", "Mail.Send", "openid", "profile"])
        );
        assert_eq!(v["endpoint"], format!("{}/v1.0/me", server.uri()));
        // The JWT is the secret: it must not appear.
        let text = v.to_string();
        assert!(!text.contains(&token), "{text}");
    }
}

#[tokio::test]
async fn microsoft_beta_base_and_app_roles() {
    // Application tokens carry `roles`, not `scp`.
    let token = jwt(&json!({"roles": ["User.Read.All", "Mail.Read"]}));
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/beta/me"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {
                "code": "BadRequest",
                "message": "/me request is only valid with delegated authentication flow."
            }
        })))
        .expect(1)
        .mount(&server)
        .await;
    let base = format!("{}/beta", server.uri());
    let v = run("microsoft.whoami", ctx(graph_conn(&base, &token)))
        .await
        .unwrap();
    assert_eq!(v["authenticated"], false, "{v}");
    assert_eq!(v["scopes"], json!(["User.Read.All", "Mail.Read"]));
    assert_eq!(
        v["error"],
        "/me request is only valid with delegated authentication flow."
    );
}

#[tokio::test]
async fn microsoft_expired_token_and_opaque_token() {
    let token = jwt(&json!({"scp": "User.Read", "exp": 1_600_000_000}));
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {
                "code": "InvalidAuthenticationToken",
                "message": "Access token has expired or is not yet valid.",
                "innerError": {"date": "2026-01-01T00:00:00", "request-id": "abc"}
            }
        })))
        .mount(&server)
        .await;
    let v = run("microsoft.whoami", ctx(graph_conn(&server.uri(), &token)))
        .await
        .unwrap();
    assert_eq!(v["status"], 401);
    assert_eq!(v["authenticated"], false);
    assert_eq!(v["error"], "Access token has expired or is not yet valid.");
    // The claims are the token's own, whatever Graph thinks of it.
    assert_eq!(v["scopes"], json!(["User.Read"]));

    // An opaque token carries no claims: scopes unknown.
    let v = run("microsoft.whoami", ctx(graph_conn(&server.uri(), TOKEN)))
        .await
        .unwrap();
    assert!(v["scopes"].is_null(), "{v}");
}

// ---------------------------------------------------------------------------------------------
// Google
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn google_tokeninfo_gets_the_token_in_the_body_only() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/v3/tokeninfo"))
        .and(header(
            "content-type",
            "application/x-www-form-urlencoded",
        ))
        .and(body_string_contains(format!("access_token={TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "azp": "123.apps.googleusercontent.com",
            "aud": "123.apps.googleusercontent.com",
            "sub": "110169484474386276334",
            "scope": "https://www.googleapis.com/auth/gmail.readonly openid https://www.googleapis.com/auth/userinfo.email",
            "exp": "1900000000",
            "expires_in": "3599",
            "email": "ada@example.com",
            "email_verified": "true",
            "access_type": "offline"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let v = run("google.whoami", ctx(conn("google", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["authenticated"], true, "{v}");
    assert_eq!(v["identity"], "ada@example.com");
    assert_eq!(
        v["scopes"],
        json!([
            "https://www.googleapis.com/auth/gmail.readonly",
            "openid",
            "https://www.googleapis.com/auth/userinfo.email"
        ])
    );
    let got = requests(&server).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].url.query().is_none(), "{}", got[0].url);
    assert!(!got[0].url.as_str().contains(TOKEN));
    // Tokeninfo takes the token as a parameter; it is not sent a second time as a header.
    assert!(header_of(&got[0], "authorization").is_none());
}

#[tokio::test]
async fn google_without_the_email_scope_names_the_subject() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "sub": "110169484474386276334",
            "scope": "https://www.googleapis.com/auth/drive.file",
            "expires_in": "120"
        })))
        .mount(&server)
        .await;
    let v = run("google.whoami", ctx(conn("gmail", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["identity"], "110169484474386276334", "{v}");
    assert_eq!(
        v["scopes"],
        json!(["https://www.googleapis.com/auth/drive.file"])
    );
}

#[tokio::test]
async fn google_invalid_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/v3/tokeninfo"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_token",
            "error_description": "Invalid Value"
        })))
        .mount(&server)
        .await;
    let v = run("google.whoami", ctx(conn("google", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["status"], 400);
    assert_eq!(v["authenticated"], false, "{v}");
    assert_eq!(v["error"], "Invalid Value");
    assert!(v["scopes"].is_null() && v["identity"].is_null(), "{v}");
}

#[tokio::test]
async fn google_api_base_urls_use_the_official_tokeninfo_endpoint() {
    // A Gmail connection's base URL names Gmail's API; tokeninfo is not under it. (Offline the
    // call fails resolving the host, which names it; online Google answers for a bad token.)
    let mut c = conn("google", "https://gmail.googleapis.com/gmail/v1");
    c.secrets.access_token = Some("ya29.not-a-real-token".into());
    let r = run("google.whoami", ctx(c)).await;
    match &r {
        Ok(v) => assert_eq!(
            v["endpoint"], "https://www.googleapis.com/oauth2/v3/tokeninfo",
            "{v}"
        ),
        Err(e) => assert!(
            e.reason
                .contains("https://www.googleapis.com/oauth2/v3/tokeninfo"),
            "{e}"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// GitLab
// ---------------------------------------------------------------------------------------------

async fn gitlab_user(server: &MockServer, prefix: &str) {
    Mock::given(method("GET"))
        .and(path(format!("{prefix}/api/v4/user").as_str()))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": 1,
            "username": "jdoe",
            "name": "Jane Doe",
            "state": "active",
            "web_url": "https://gitlab.example.com/jdoe"
        })))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn gitlab_personal_access_token_with_and_without_api_v4() {
    for suffix in ["", "/", "/api/v4", "/api/v4/"] {
        let server = MockServer::start().await;
        gitlab_user(&server, "").await;
        Mock::given(method("GET"))
            .and(path("/api/v4/personal_access_tokens/self"))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": 4,
                "name": "ci token",
                "revoked": false,
                "created_at": "2026-01-01T00:00:00.000Z",
                "scopes": ["api", "read_user"],
                "user_id": 1,
                "active": true,
                "expires_at": "2027-01-01"
            })))
            .expect(1)
            .mount(&server)
            .await;
        let mut c = conn("gitlab", &format!("{}{suffix}", server.uri()));
        c.auth_type = "bearer".into();
        let v = run("gitlab.whoami", ctx(c)).await.unwrap();
        assert_eq!(v["authenticated"], true, "{suffix}: {v}");
        assert_eq!(v["identity"], "jdoe");
        assert_eq!(v["scopes"], json!(["api", "read_user"]), "{suffix}: {v}");
        assert_eq!(v["endpoint"], format!("{}/api/v4/user", server.uri()));
    }
}

#[tokio::test]
async fn gitlab_oauth_token_under_a_relative_url_root() {
    let server = MockServer::start().await;
    gitlab_user(&server, "/gitlab").await;
    Mock::given(method("GET"))
        .and(path("/gitlab/oauth/token/info"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "resource_owner_id": 1,
            "scope": ["api", "read_repository"],
            "expires_in": 7200,
            "application": {"uid": "1cb242f4"},
            "created_at": 1_700_000_000
        })))
        .expect(1)
        .mount(&server)
        .await;
    let base = format!("{}/gitlab/api/v4", server.uri());
    let v = run("gitlab.whoami", ctx(conn("gitlab", &base)))
        .await
        .unwrap();
    assert_eq!(v["identity"], "jdoe", "{v}");
    assert_eq!(v["scopes"], json!(["api", "read_repository"]));
}

#[tokio::test]
async fn gitlab_unauthorized_asks_nothing_more() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/user"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"message": "401 Unauthorized"})),
        )
        .mount(&server)
        .await;
    let v = run("gitlab.whoami", ctx(conn("gitlab", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["authenticated"], false);
    assert_eq!(v["error"], "401 Unauthorized");
    assert!(v["scopes"].is_null());
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn gitlab_insufficient_scope_still_reads_the_tokens_scopes() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v4/user"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "error": "insufficient_scope",
            "error_description": "The request requires higher privileges than provided by the access token.",
            "scope": "api read_user read_api"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v4/personal_access_tokens/self"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": 9, "scopes": ["read_repository"], "active": true})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut c = conn("gitlab", &server.uri());
    c.auth_type = "bearer".into();
    let v = run("gitlab.whoami", ctx(c)).await.unwrap();
    assert_eq!(v["status"], 403);
    assert_eq!(v["authenticated"], false, "{v}");
    // The token's own scopes, not the ones the endpoint wanted.
    assert_eq!(v["scopes"], json!(["read_repository"]), "{v}");
    assert_eq!(
        v["error"],
        "The request requires higher privileges than provided by the access token."
    );
}

#[tokio::test]
async fn gitlab_token_info_that_fails_leaves_scopes_unknown() {
    let server = MockServer::start().await;
    gitlab_user(&server, "").await;
    Mock::given(method("GET"))
        .and(path("/oauth/token/info"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_token",
            "scope": ["api"]
        })))
        .mount(&server)
        .await;
    let v = run("gitlab.whoami", ctx(conn("gitlab", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["authenticated"], true);
    assert!(v["scopes"].is_null(), "{v}");
}

// ---------------------------------------------------------------------------------------------
// Jira
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn jira_cloud_uses_rest_api_3() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/ex/jira/cloud-1234/rest/api/3/myself"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("accept", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "self": "https://acme.atlassian.net/rest/api/3/user?accountId=5b10a2844c20165700ede21g",
            "accountId": "5b10a2844c20165700ede21g",
            "accountType": "atlassian",
            "emailAddress": "mia@acme.com",
            "displayName": "Mia Krystof",
            "active": true
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut c = conn("jira", &format!("{}/ex/jira/cloud-1234", server.uri()));
    c.deployment_mode = "cloud".into();
    let v = run("jira.whoami", ctx(c)).await.unwrap();
    assert_eq!(v["authenticated"], true, "{v}");
    assert_eq!(v["identity"], "mia@acme.com");
    // Jira says nothing about scopes.
    assert!(v["scopes"].is_null());
}

#[tokio::test]
async fn jira_data_center_uses_rest_api_2() {
    for suffix in ["/jira", "/jira/rest/api/2", "/jira/rest/api/2/"] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/jira/rest/api/2/myself"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "self": "https://jira.corp.example/rest/api/2/user?username=jdoe",
                "key": "JIRAUSER10100",
                "name": "jdoe",
                "displayName": "J. Doe",
                "active": true
            })))
            .expect(1)
            .mount(&server)
            .await;
        let mut c = conn("jira", &format!("{}{suffix}", server.uri()));
        c.deployment_mode = "self_hosted".into();
        let v = run("jira.whoami", ctx(c)).await.unwrap();
        assert_eq!(v["identity"], "jdoe", "{suffix}: {v}");
        assert_eq!(
            v["endpoint"],
            format!("{}/jira/rest/api/2/myself", server.uri())
        );
    }
}

#[tokio::test]
async fn jira_unauthorized_with_an_empty_body_and_no_base_url() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).insert_header(
            "www-authenticate",
            "OAuth realm=\"https%3A%2F%2Facme.atlassian.net\"",
        ))
        .mount(&server)
        .await;
    let v = run("jira.whoami", ctx(conn("jira", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["authenticated"], false);
    assert_eq!(v["error"], "unauthorized");

    let mut c = conn("jira", "http://127.0.0.1/");
    c.base_url = None;
    let e = run("jira.whoami", ctx(c)).await.unwrap_err();
    assert!(e.reason.contains("no base_url"), "{e}");
}

#[tokio::test]
async fn jira_rate_limit_reset_as_an_iso_time() {
    // Atlassian sends X-RateLimit-Reset as an ISO 8601 time.
    let reset = jiff::Timestamp::from_second(now() + 90)
        .unwrap()
        .to_string();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.as_str()),
        )
        .mount(&server)
        .await;
    let v = run("jira.whoami", ctx(conn("jira", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["rate_limited"], true, "{v}");
    let wait = v["retry_after_seconds"].as_u64().unwrap();
    assert!((85..=91).contains(&wait), "{v}");
}

// ---------------------------------------------------------------------------------------------
// Generic
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn generic_api_key_in_a_custom_header_to_a_same_origin_whoami_url() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/account/me"))
        .and(header("x-api-key", API_KEY))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-oauth-scopes", "read write")
                .set_body_json(json!({"id": 42, "email": "svc@acme.io", "plan": "pro"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let mut c = key_conn(&format!("{}/v2", server.uri()), Some("X-API-Key"), None);
    c.whoami_url = Some(url(&format!("{}/v2/account/me?verbose=1", server.uri())));
    let v = run("http.whoami", ctx(c)).await.unwrap();
    assert_eq!(v["provider"], "generic");
    assert_eq!(v["authenticated"], true, "{v}");
    assert_eq!(v["identity"], "svc@acme.io");
    assert_eq!(v["scopes"], json!(["read", "write"]));
    // The endpoint is shown without its query.
    assert_eq!(v["endpoint"], format!("{}/v2/account/me", server.uri()));
    let got = requests(&server).await;
    assert_eq!(header_of(&got[0], "x-api-key"), Some(API_KEY));
    assert!(header_of(&got[0], "authorization").is_none());
}

#[tokio::test]
async fn generic_api_key_prefixes() {
    for (hdr, prefix, sent_as, expected) in [
        (None, None, "authorization", format!("Bearer {API_KEY}")),
        (
            Some("Authorization"),
            Some("Token"),
            "authorization",
            format!("Token {API_KEY}"),
        ),
        // A prefix stored with its separator is not doubled.
        (
            Some("Authorization"),
            Some("Bearer "),
            "authorization",
            format!("Bearer {API_KEY}"),
        ),
        (
            Some("X-Auth"),
            Some("ApiKey"),
            "x-auth",
            format!("ApiKey {API_KEY}"),
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(header(sent_as, expected.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"username": "svc"})))
            .expect(1)
            .mount(&server)
            .await;
        let v = run("http.whoami", ctx(key_conn(&server.uri(), hdr, prefix)))
            .await
            .unwrap();
        assert_eq!(v["authenticated"], true, "{hdr:?} {prefix:?}: {v}");
        assert_eq!(v["identity"], "svc");
        let got = requests(&server).await;
        assert_eq!(header_of(&got[0], sent_as), Some(expected.as_str()));
    }
}

#[tokio::test]
async fn generic_whoami_url_on_another_origin_gets_no_credentials() {
    let own = MockServer::start().await;
    let other = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&other)
        .await;
    let mut c = key_conn(&own.uri(), Some("X-API-Key"), None);
    c.whoami_url = Some(url(&format!("{}/me", other.uri())));
    let e = run("http.whoami", ctx(c)).await.unwrap_err();
    assert!(
        e.reason
            .contains("refusing to send the connection's credentials"),
        "{e}"
    );
    assert_no_secrets(&e.reason);
    assert!(requests(&other).await.is_empty());
    assert!(requests(&own).await.is_empty());

    // A whoami_url alone (no base URL to vouch for it) gets none either.
    let mut c = key_conn(&own.uri(), Some("X-API-Key"), None);
    c.base_url = None;
    c.whoami_url = Some(url(&format!("{}/me", other.uri())));
    let e = run("http.whoami", ctx(c)).await.unwrap_err();
    assert!(
        e.reason
            .contains("refusing to send the connection's credentials"),
        "{e}"
    );
    assert!(requests(&other).await.is_empty());
}

#[tokio::test]
async fn generic_without_a_url_or_a_key_is_an_error() {
    let mut c = key_conn("http://127.0.0.1:9/", None, None);
    c.base_url = None;
    let e = run("http.whoami", ctx(c)).await.unwrap_err();
    assert!(
        e.reason.contains("whoami_url") && e.reason.contains("base_url"),
        "{e}"
    );

    let server = MockServer::start().await;
    let mut c = key_conn(&server.uri(), Some("X-API-Key"), None);
    c.secrets.api_key = None;
    c.secrets.access_token = Some(TOKEN.into());
    let e = run("http.whoami", ctx(c)).await.unwrap_err();
    assert!(e.reason.contains("no api_key"), "{e}");
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn generic_bearer_token_and_error_body() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-oauth-scopes", "read")
                .set_body_json(
                    json!({"error": {"code": "forbidden", "message": "Key lacks admin scope"}}),
                ),
        )
        .mount(&server)
        .await;
    let v = run("http.whoami", ctx(conn("acme", &server.uri())))
        .await
        .unwrap();
    assert_eq!(v["status"], 403);
    assert_eq!(v["authenticated"], false);
    assert_eq!(v["rate_limited"], false);
    assert_eq!(v["scopes"], json!(["read"]));
    assert_eq!(v["error"], "Key lacks admin scope");
    assert!(v["identity"].is_null(), "{v}");
}

// ---------------------------------------------------------------------------------------------
// The whole family
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn family_429_with_retry_after() {
    for (name, c, first) in family("http://placeholder") {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "120")
                    .set_body_json(json!({"message": "Too Many Requests"})),
            )
            .mount(&server)
            .await;
        let mut c = c;
        c.base_url = Some(url(&server.uri()));
        let v = run(name, ctx(c)).await.unwrap();
        assert_eq!(v["status"], 429, "{name}: {v}");
        assert_eq!(v["rate_limited"], true, "{name}: {v}");
        assert_eq!(v["retry_after_seconds"], 120, "{name}: {v}");
        assert_eq!(v["authenticated"], false, "{name}: {v}");
        assert!(v["error"].is_string(), "{name}: {v}");
        let got = requests(&server).await;
        assert_eq!(got.len(), 1, "{name}");
        assert_eq!(got[0].url.path(), first, "{name}");
    }
}

#[tokio::test]
async fn family_429_with_a_reset_epoch() {
    let reset = now() + 200;
    for (name, c, _) in family("http://placeholder") {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("x-ratelimit-remaining", "0")
                    .insert_header("x-ratelimit-reset", reset.to_string().as_str()),
            )
            .mount(&server)
            .await;
        let mut c = c;
        c.base_url = Some(url(&server.uri()));
        let v = run(name, ctx(c)).await.unwrap();
        assert_eq!(v["rate_limited"], true, "{name}: {v}");
        let wait = v["retry_after_seconds"].as_u64().unwrap();
        assert!((195..=201).contains(&wait), "{name}: {v}");
    }
}

#[tokio::test]
async fn family_5xx_is_a_fact_not_an_error() {
    for (name, c, _) in family("http://placeholder") {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(503)
                    .set_body_raw("<html><body>Service Unavailable</body></html>", "text/html"),
            )
            .mount(&server)
            .await;
        let mut c = c;
        c.base_url = Some(url(&server.uri()));
        let v = run(name, ctx(c)).await.unwrap();
        assert_eq!(v["status"], 503, "{name}: {v}");
        assert_eq!(v["authenticated"], false, "{name}: {v}");
        assert_eq!(v["rate_limited"], false, "{name}: {v}");
        assert!(v["retry_after_seconds"].is_null(), "{name}: {v}");
        assert_eq!(v["error"], "HTTP 503", "{name}: {v}");
        // An outage is not worth a second request (GitLab's token info).
        assert_eq!(requests(&server).await.len(), 1, "{name}");
    }
}

#[tokio::test]
async fn family_malformed_json_never_panics() {
    for status in [200, 401] {
        for (name, c, _) in family("http://placeholder") {
            let server = MockServer::start().await;
            Mock::given(any())
                .respond_with(
                    ResponseTemplate::new(status)
                        .set_body_raw("{\"login\": \"oct", "application/json"),
                )
                .mount(&server)
                .await;
            let mut c = c;
            c.base_url = Some(url(&server.uri()));
            match run(name, ctx(c)).await {
                Ok(v) => {
                    assert_eq!(v["status"], status, "{name}: {v}");
                    assert!(v["identity"].is_null(), "{name}: {v}");
                    if status == 401 {
                        assert_eq!(v["authenticated"], false, "{name}: {v}");
                        assert_eq!(v["error"], "unauthorized", "{name}: {v}");
                    }
                }
                // Only Slack, whose 200 means nothing without its body, gives up.
                Err(e) => {
                    assert_eq!((name, status), ("slack.whoami", 200), "{e}");
                    assert!(e.reason.contains("not valid JSON"), "{e}");
                }
            }
        }
    }
}

#[tokio::test]
async fn family_slow_provider_times_out_within_the_probe_timeout() {
    for (name, c, _) in family("http://placeholder") {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"login": "late"}))
                    .set_delay(Duration::from_secs(2)),
            )
            .mount(&server)
            .await;
        let mut c = c;
        c.base_url = Some(url(&server.uri()));
        let started = Instant::now();
        let e = run(name, ctx_t(c, Duration::from_millis(300)))
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(e.reason.contains("timed out"), "{name}: {e}");
        assert!(took < Duration::from_millis(1500), "{name}: took {took:?}");
        assert_no_secrets(&e.reason);
    }
}

#[tokio::test]
async fn family_redirect_is_reported_not_followed() {
    for (name, c, _) in family("http://placeholder") {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(302).insert_header("location", "http://169.254.169.254/"),
            )
            .mount(&server)
            .await;
        let mut c = c;
        c.base_url = Some(url(&server.uri()));
        let v = run(name, ctx(c)).await.unwrap();
        assert_eq!(v["status"], 302, "{name}: {v}");
        assert_eq!(v["authenticated"], false, "{name}: {v}");
        let err = v["error"].as_str().unwrap();
        assert!(
            err.contains("http://169.254.169.254/") && err.contains("not followed"),
            "{name}: {v}"
        );
        assert_eq!(requests(&server).await.len(), 1, "{name}");
    }
}

#[tokio::test]
async fn family_sends_credentials_exactly_once_and_only_as_configured() {
    for (name, c, _) in family("http://placeholder") {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(401))
            .mount(&server)
            .await;
        let mut c = c;
        c.base_url = Some(url(&server.uri()));
        run(name, ctx(c)).await.unwrap();
        let got = requests(&server).await;
        assert_eq!(got.len(), 1, "{name}");
        let r = &got[0];
        assert!(!r.url.as_str().contains("sekrit"), "{name}: {}", r.url);
        let auth = header_of(r, "authorization");
        let key = header_of(r, "x-api-key");
        let body = String::from_utf8_lossy(&r.body).to_string();
        match name {
            "google.whoami" => {
                assert_eq!(auth, None, "{name}");
                assert_eq!(body, format!("access_token={TOKEN}"), "{name}");
            }
            "http.whoami" => {
                assert_eq!(auth, None, "{name}");
                assert_eq!(key, Some(API_KEY), "{name}");
            }
            _ => {
                // OAuth connections present the access token, not the API key.
                assert_eq!(auth, Some(format!("Bearer {TOKEN}").as_str()), "{name}");
                assert_eq!(key, None, "{name}");
                assert!(!body.contains("sekrit"), "{name}: {body}");
            }
        }
    }
}

#[tokio::test]
async fn family_never_outputs_a_secret_the_provider_echoes() {
    // Padding that puts the token across the 300-character cut of an error message.
    let pad = "x".repeat(290);
    for status in [200, 302, 401, 403, 429] {
        for (name, c, _) in family("http://placeholder") {
            let server = MockServer::start().await;
            let echo = |s: &str| format!("{s} {TOKEN} {API_KEY}");
            Mock::given(any())
                .respond_with(
                    ResponseTemplate::new(status)
                        .insert_header("x-oauth-scopes", echo("repo").as_str())
                        .insert_header(
                            "x-github-sso",
                            format!("required; url=https://github.com/sso?t={TOKEN}").as_str(),
                        )
                        .insert_header(
                            "location",
                            format!("https://evil.example/?t={TOKEN}").as_str(),
                        )
                        .set_body_json(json!({
                            "ok": status == 200,
                            "message": format!("{pad}{TOKEN}"),
                            "error": echo("bad token"),
                            "error_description": echo("Invalid Value"),
                            "login": echo("octocat"),
                            "user": TOKEN,
                            "username": API_KEY,
                            "email": TOKEN,
                            "userPrincipalName": TOKEN,
                            "emailAddress": TOKEN,
                            "scope": echo("api"),
                            "scopes": [TOKEN, API_KEY],
                        })),
                )
                .mount(&server)
                .await;
            let mut c = c;
            c.base_url = Some(url(&server.uri()));
            let r = run(name, ctx(c)).await;
            let text = output(&r);
            assert_no_secrets(&text);
            // Scrubbed, not dropped: the fact still says something was there.
            if r.is_ok() && status != 200 {
                assert!(text.contains("[redacted]"), "{name} {status}: {text}");
            }
        }
    }
}

#[tokio::test]
async fn an_error_message_is_scrubbed_before_it_is_cut_short() {
    // 290 characters, then the token: a cut at 300 before scrubbing would keep `gho_sekrit`.
    let message = format!("{}{TOKEN} was rejected", "x".repeat(290));
    for (name, c, _) in family("http://placeholder") {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(401)
                    .set_body_json(json!({"ok": false, "message": message, "error": message})),
            )
            .mount(&server)
            .await;
        let mut c = c;
        c.base_url = Some(url(&server.uri()));
        let v = run(name, ctx(c)).await.unwrap();
        let err = v["error"].as_str().unwrap();
        assert_no_secrets(err);
        assert!(err.chars().count() <= 300, "{name}: {err}");
        assert!(err.ends_with("[redacted]"), "{name}: {err}");
    }
}

#[tokio::test]
async fn a_secret_in_the_whoami_url_path_is_not_shown() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let mut c = key_conn(&server.uri(), Some("X-API-Key"), None);
    c.whoami_url = Some(url(&format!("{}/keys/{API_KEY}/owner", server.uri())));
    let v = run("http.whoami", ctx(c)).await.unwrap();
    assert_no_secrets(&v.to_string());
    assert_eq!(
        v["endpoint"],
        format!("{}/keys/[redacted]/owner", server.uri())
    );
}

// ---------------------------------------------------------------------------------------------
// Through the live provider: a rate limit holds back the next API probe on the same host
// ---------------------------------------------------------------------------------------------

#[test]
fn a_429_holds_back_the_next_api_probe_for_another_connection_on_the_same_host() {
    use std::sync::atomic::Ordering;
    use whyfail_engine::{Event, FactProvider};
    use whyfail_providers::{LiveConfig, LiveProvider};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(async {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "120")
                    .set_body_json(json!({"message": "API rate limit exceeded"})),
            )
            .mount(&server)
            .await;
        server
    });
    // Built outside any async context: its `fetch` blocks on its own runtime.
    let live = LiveProvider::new(LiveConfig {
        allow_hosts: vec!["127.0.0.1".into(), "localhost".into()],
        ..LiveConfig::default()
    })
    .unwrap();
    let event = |id: &str, provider: &str| {
        Event::parse(
            &json!({
                "error": {"message": "the step failed"},
                "connection": {
                    "id": id,
                    "provider": provider,
                    "auth_type": "oauth2",
                    "base_url": server.uri(),
                    "secrets": {"access_token": format!("{TOKEN}-{id}")}
                }
            })
            .to_string(),
        )
        .unwrap()
    };

    let first = event("conn-a", "github");
    let v = live
        .fetch("github.whoami", &first.fact_request(None))
        .unwrap();
    assert_eq!(v["rate_limited"], true, "{v}");
    assert_eq!(v["retry_after_seconds"], 120, "{v}");
    assert_no_secrets(&v.to_string());

    let second = event("conn-b", "slack");
    let e = live
        .fetch("slack.whoami", &second.fact_request(None))
        .unwrap_err();
    assert!(e.reason.contains("rate-limiting"), "{e}");
    assert!(e.reason.contains("127.0.0.1"), "{e}");
    assert_no_secrets(&e.reason);
    assert_eq!(rt.block_on(requests(&server)).len(), 1);
    assert_eq!(live.stats.held_back.load(Ordering::Relaxed), 1);
    assert_eq!(live.stats.probes.load(Ordering::Relaxed), 1);
}
