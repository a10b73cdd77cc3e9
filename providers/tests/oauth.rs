//! The OAuth probes against mocks shaped after RFC 8414 / 7662 / 6749 (every branch, and what
//! is sent where), and against a real authorization server (oidc-provider on loopback), so our
//! reading of the RFCs is checked against an implementation we did not write.

// `allow-unwrap-in-tests` covers `#[test]` functions only, not this file's helpers.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use url::Url;
use whyfail_engine::FactError;
use whyfail_providers::Guard;
use whyfail_providers::conn::{Conn, OAuthConf, Secrets};
use whyfail_providers::oauth;
use whyfail_providers::probe::{Ctx, Env};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ACCESS: &str = "AT-sekrit-access-1234";
const REFRESH: &str = "RT-sekrit-refresh-5678";
const CLIENT_SECRET: &str = "CS-sekrit-client-9012";
const CLIENT_ID: &str = "whyfail-client";
/// `Basic base64("whyfail-client:CS-sekrit-client-9012")`, computed independently of the crate.
const BASIC: &str = "Basic d2h5ZmFpbC1jbGllbnQ6Q1Mtc2Vrcml0LWNsaWVudC05MDEy";

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

/// A connection whose token URL is on `base`, with every secret set.
fn conn(base: &str) -> Conn {
    Conn {
        provider: "generic".into(),
        base_url: Some(url(base)),
        oauth: OAuthConf {
            client_id: Some(CLIENT_ID.into()),
            token_url: Some(url(&format!("{base}/token"))),
            redirect_uri: Some("https://app.example.com/callback".into()),
            ..Default::default()
        },
        secrets: Secrets {
            access_token: Some(ACCESS.into()),
            refresh_token: Some(REFRESH.into()),
            client_secret: Some(CLIENT_SECRET.into()),
            api_key: None,
        },
        ..Default::default()
    }
}

fn ctx_with(conn: Conn, guard: Guard) -> Arc<Ctx> {
    Arc::new(Ctx {
        conn,
        env: Arc::new(Env::new(guard, Duration::from_secs(2), vec![])),
    })
}

fn ctx(conn: Conn) -> Arc<Ctx> {
    ctx_with(conn, Guard::new(["127.0.0.1", "localhost"]))
}

async fn run(name: &str, cx: Arc<Ctx>) -> Result<Value, FactError> {
    let p = oauth::probes()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no probe {name}"));
    (p.run)(cx).await
}

fn assert_no_secrets(v: &impl std::fmt::Display) {
    let text = v.to_string();
    for s in [ACCESS, REFRESH, CLIENT_SECRET, "sekrit"] {
        assert!(!text.contains(s), "output leaks a secret: {text}");
    }
}

fn metadata(issuer: &str, base: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "introspection_endpoint": format!("{base}/introspect"),
        "revocation_endpoint": format!("{base}/revoke"),
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "scopes_supported": ["read", "write"],
    })
}

// ---------------------------------------------------------------------------------------------
// The probe catalogue
// ---------------------------------------------------------------------------------------------

#[test]
fn only_the_refresh_changes_state() {
    let probes = oauth::probes();
    let by = |n: &str| probes.iter().find(|p| p.name == n).unwrap();
    assert_eq!(probes.len(), 4);
    for (name, cost) in [
        ("oauth.discovery", 4),
        ("oauth.introspection", 5),
        ("oauth.client", 5),
        ("oauth.refresh", 9),
    ] {
        let p = by(name);
        assert_eq!(p.cost, cost, "{name}");
        assert!(p.calls_api, "{name}");
        assert_eq!(p.mutating, name == "oauth.refresh", "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn discovery_reads_rfc_8414_metadata() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server"))
        .respond_with(ResponseTemplate::new(200).set_body_json(metadata(&base, &base)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;

    let v = run("oauth.discovery", ctx(conn(&base))).await.unwrap();
    assert_eq!(v["found"], true, "{v}");
    assert_eq!(v["source"], "rfc8414");
    assert_eq!(v["issuer"], base.as_str());
    assert_eq!(v["issuer_matches"], true);
    assert_eq!(v["token_endpoint"], format!("{base}/token"));
    assert_eq!(v["token_endpoint_matches"], true);
    assert_eq!(v["introspection_endpoint"], format!("{base}/introspect"));
    assert_eq!(v["revocation_endpoint"], format!("{base}/revoke"));
    assert_eq!(v["authorization_endpoint"], format!("{base}/authorize"));
    assert_eq!(v["userinfo_endpoint"], Value::Null);
    assert_eq!(
        v["grant_types_supported"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(
        v["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic"])
    );
    assert_eq!(v["scopes_supported"], json!(["read", "write"]));
    assert_eq!(v["error"], Value::Null);
    // Discovery sends no credentials at all.
    for r in server.received_requests().await.unwrap() {
        assert!(!r.headers.contains_key("authorization"));
    }
    assert_no_secrets(&v);
}

#[tokio::test]
async fn discovery_inserts_the_issuer_path_per_rfc_8414() {
    let server = MockServer::start().await;
    let base = server.uri();
    let issuer = format!("{base}/tenant/v2");
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server/tenant/v2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(metadata(&issuer, &base)))
        .expect(1)
        .mount(&server)
        .await;
    let mut c = conn(&base);
    c.oauth.issuer = Some(url(&issuer));
    // A connection saved with another token URL than the server's own.
    c.oauth.token_url = Some(url(&format!("{base}/oauth/token")));
    let v = run("oauth.discovery", ctx(c)).await.unwrap();
    assert_eq!(v["source"], "rfc8414", "{v}");
    assert_eq!(v["issuer_matches"], true);
    assert_eq!(v["token_endpoint_matches"], false);
}

#[tokio::test]
async fn discovery_falls_back_to_openid_configuration() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    // A document for another issuer: a proxy or the wrong tenant.
    let mut doc = metadata("https://login.other.example", &base);
    doc["userinfo_endpoint"] = json!(format!("{base}/userinfo"));
    doc.as_object_mut().unwrap().remove("scopes_supported");
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(doc))
        .expect(1)
        .mount(&server)
        .await;

    let v = run("oauth.discovery", ctx(conn(&base))).await.unwrap();
    assert_eq!(v["found"], true, "{v}");
    assert_eq!(v["source"], "openid-configuration");
    assert_eq!(v["issuer"], "https://login.other.example");
    assert_eq!(v["issuer_matches"], false);
    assert_eq!(v["userinfo_endpoint"], format!("{base}/userinfo"));
    // Not declared stays null, not an empty list.
    assert_eq!(v["scopes_supported"], Value::Null);
}

#[tokio::test]
async fn discovery_reports_malformed_metadata_as_a_fact() {
    let server = MockServer::start().await;
    let base = server.uri();
    // A single-page app answering every path with its HTML shell.
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("<html>app</html>", "text/html"))
        .expect(2)
        .mount(&server)
        .await;
    let v = run("oauth.discovery", ctx(conn(&base))).await.unwrap();
    assert_eq!(v["found"], false, "{v}");
    assert_eq!(v["source"], Value::Null);
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("rfc8414") && err.contains("openid-configuration"),
        "{err}"
    );
    assert!(
        err.contains("not valid JSON") && err.contains("text/html"),
        "{err}"
    );
    assert!(!err.contains('\n'));
}

#[tokio::test]
async fn discovery_reports_two_404s_as_not_found() {
    let server = MockServer::start().await;
    let v = run("oauth.discovery", ctx(conn(&server.uri())))
        .await
        .unwrap();
    assert_eq!(v["found"], false);
    assert!(v["error"].as_str().unwrap().contains("HTTP 404"), "{v}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn discovery_without_a_url_or_past_the_guard_is_an_error() {
    let mut c = conn("http://127.0.0.1:9");
    c.oauth = OAuthConf::default();
    c.base_url = None;
    let e = run("oauth.discovery", ctx(c)).await.unwrap_err();
    assert!(e.reason.contains("no OAuth issuer"), "{}", e.reason);

    let server = MockServer::start().await;
    let e = run(
        "oauth.discovery",
        ctx_with(conn(&server.uri()), Guard::new(Vec::<String>::new())),
    )
    .await
    .unwrap_err();
    assert!(e.reason.contains("refusing"), "{}", e.reason);
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn discovery_reports_an_unreachable_server_as_a_fact() {
    // Nothing listens on a port a dropped listener had.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let v = run(
        "oauth.discovery",
        ctx(conn(&format!("http://127.0.0.1:{port}"))),
    )
    .await
    .unwrap();
    assert_eq!(v["found"], false);
    assert!(v["error"].as_str().unwrap().contains("connect"), "{v}");
}

// ---------------------------------------------------------------------------------------------
// Introspection
// ---------------------------------------------------------------------------------------------

fn with_introspection_url(base: &str) -> Conn {
    let mut c = conn(base);
    c.oauth.introspection_url = Some(url(&format!("{base}/introspect")));
    c
}

#[tokio::test]
async fn introspection_of_an_active_token() {
    let server = MockServer::start().await;
    let base = server.uri();
    let exp = jiff::Timestamp::now().as_second() + 3600;
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .and(header("authorization", BASIC))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains(format!("token={ACCESS}")))
        .and(body_string_contains("token_type_hint=access_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "active": true,
            "exp": exp,
            "scope": "read write",
            "client_id": CLIENT_ID,
            "token_type": "Bearer",
            "sub": "user-42",
        })))
        .expect(1)
        .mount(&server)
        .await;

    let v = run("oauth.introspection", ctx(with_introspection_url(&base)))
        .await
        .unwrap();
    assert_eq!(v["supported"], true, "{v}");
    assert_eq!(v["endpoint_source"], "configured");
    assert_eq!(v["endpoint"], format!("{base}/introspect"));
    assert_eq!(v["active"], true);
    assert_eq!(v["expired"], false);
    let at: jiff::Timestamp = v["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(at.as_second(), exp);
    assert_eq!(v["scopes"], json!(["read", "write"]));
    assert_eq!(v["client_id"], CLIENT_ID);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["sub"], "user-42");
    assert_eq!(v["status"], 200);
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["client_rejected"], false);
    assert_no_secrets(&v);
}

#[tokio::test]
async fn introspection_of_an_inactive_token() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"active": false})))
        .expect(1)
        .mount(&server)
        .await;
    let v = run("oauth.introspection", ctx(with_introspection_url(&base)))
        .await
        .unwrap();
    assert_eq!(v["supported"], true);
    assert_eq!(v["active"], false);
    assert_eq!(v["expired"], Value::Null);
    assert_eq!(v["scopes"], Value::Null);
    assert_eq!(v["client_rejected"], false);
}

#[tokio::test]
async fn introspection_with_a_rejected_client() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client",
            "error_description": format!("client secret {CLIENT_SECRET} is wrong\nsee docs"),
        })))
        .expect(1)
        .mount(&server)
        .await;
    let v = run("oauth.introspection", ctx(with_introspection_url(&base)))
        .await
        .unwrap();
    assert_eq!(v["active"], Value::Null, "{v}");
    assert_eq!(v["status"], 401);
    assert_eq!(v["error"], "invalid_client");
    assert_eq!(v["client_rejected"], true);
    assert_eq!(
        v["error_description"],
        "client secret [redacted] is wrong see docs"
    );
    assert_no_secrets(&v);
}

#[tokio::test]
async fn introspection_sends_the_client_id_in_the_body_without_a_secret() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .and(body_string_contains(format!("client_id={CLIENT_ID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"active": true})))
        .expect(1)
        .mount(&server)
        .await;
    let mut c = with_introspection_url(&base);
    c.secrets.client_secret = None;
    let v = run("oauth.introspection", ctx(c)).await.unwrap();
    assert_eq!(v["active"], true, "{v}");
    let reqs = server.received_requests().await.unwrap();
    assert!(!reqs[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn introspection_uses_a_discovered_endpoint_on_the_connections_origin() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server"))
        .respond_with(ResponseTemplate::new(200).set_body_json(metadata(&base, &base)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .and(header("authorization", BASIC))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"active": true})))
        .expect(1)
        .mount(&server)
        .await;
    let v = run("oauth.introspection", ctx(conn(&base))).await.unwrap();
    assert_eq!(v["endpoint_source"], "discovery", "{v}");
    assert_eq!(v["active"], true);
}

#[tokio::test]
async fn introspection_refuses_a_discovered_endpoint_on_a_foreign_origin() {
    let server = MockServer::start().await;
    let foreign = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server"))
        .respond_with(ResponseTemplate::new(200).set_body_json(metadata(&base, &foreign.uri())))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"active": true})))
        .expect(0)
        .mount(&foreign)
        .await;
    let e = run("oauth.introspection", ctx(conn(&base)))
        .await
        .unwrap_err();
    assert!(
        e.reason
            .contains("not on one of the connection's own origins")
            && e.reason.contains(&foreign.uri()),
        "{}",
        e.reason
    );
    assert_no_secrets(&e.reason);
    assert!(foreign.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn introspection_without_an_endpoint_is_not_supported() {
    // Metadata without an introspection endpoint.
    let server = MockServer::start().await;
    let base = server.uri();
    let mut doc = metadata(&base, &base);
    doc.as_object_mut()
        .unwrap()
        .remove("introspection_endpoint");
    Mock::given(method("GET"))
        .and(path("/.well-known/oauth-authorization-server"))
        .respond_with(ResponseTemplate::new(200).set_body_json(doc))
        .mount(&server)
        .await;
    let v = run("oauth.introspection", ctx(conn(&base))).await.unwrap();
    assert_eq!(v["supported"], false, "{v}");
    assert_eq!(v["active"], Value::Null);
    assert!(
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .all(|r| r.method.as_str() == "GET")
    );

    // No OAuth URL at all: nothing to ask.
    let mut c = conn(&base);
    c.oauth = OAuthConf::default();
    let v = run("oauth.introspection", ctx(c)).await.unwrap();
    assert_eq!(v["supported"], false);
}

// ---------------------------------------------------------------------------------------------
// Client check
// ---------------------------------------------------------------------------------------------

async fn client_check(status: u16, body: Value) -> (Value, MockServer) {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("authorization", BASIC))
        .and(body_string_contains("grant_type=authorization_code"))
        .and(body_string_contains("code=whyfail-probe-invalid-code"))
        .and(body_string_contains(
            "redirect_uri=https%3A%2F%2Fapp.example.com%2Fcallback",
        ))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    let v = run("oauth.client", ctx(conn(&base))).await.unwrap();
    // The check must never spend the connection's tokens.
    for r in server.received_requests().await.unwrap() {
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains(REFRESH) && !body.contains(ACCESS), "{body}");
        assert!(!body.contains("refresh_token"), "{body}");
    }
    assert_no_secrets(&v);
    (v, server)
}

#[tokio::test]
async fn client_check_with_a_wrong_secret() {
    let (v, server) = client_check(
        401,
        json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
    )
    .await;
    assert_eq!(v["client_valid"], false, "{v}");
    assert_eq!(v["status"], 401);
    assert_eq!(v["error"], "invalid_client");
    assert_eq!(v["error_description"], "Client authentication failed");
    assert_eq!(v["token_url"], format!("{}/token", server.uri()));
}

#[tokio::test]
async fn client_check_with_a_valid_client() {
    let (v, _server) = client_check(
        400,
        json!({"error": "invalid_grant", "error_description": "code not found"}),
    )
    .await;
    assert_eq!(v["client_valid"], true, "{v}");
    assert_eq!(v["error"], "invalid_grant");
    assert_eq!(v["client_auth"], "client_secret_basic");
}

#[tokio::test]
async fn client_check_with_an_unclear_answer() {
    let (v, _server) = client_check(500, json!({"message": "oops"})).await;
    assert_eq!(v["client_valid"], Value::Null, "{v}");
    assert_eq!(v["status"], 500);
    // invalid_client in a 400 body (Microsoft, Google) counts like a 401.
    let (v, _server) = client_check(400, json!({"error": "invalid_client"})).await;
    assert_eq!(v["client_valid"], false, "{v}");
}

// ---------------------------------------------------------------------------------------------
// Refresh
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn refresh_returns_the_new_tokens() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("authorization", BASIC))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains(format!("refresh_token={REFRESH}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "new-access",
            "refresh_token": "new-refresh",
            "expires_in": 3600,
            "scope": "read write",
            "token_type": "Bearer",
        })))
        .expect(1)
        .mount(&server)
        .await;
    let before = jiff::Timestamp::now().as_second();
    let v = run("oauth.refresh", ctx(conn(&base))).await.unwrap();
    assert_eq!(v["refreshed"], true, "{v}");
    assert_eq!(v["access_token"], "new-access");
    assert_eq!(v["refresh_token"], "new-refresh");
    assert_eq!(v["expires_in"], 3600);
    let at: jiff::Timestamp = v["expires_at"].as_str().unwrap().parse().unwrap();
    assert!((before + 3600..=before + 3602).contains(&at.as_second()));
    assert_eq!(v["scope"], "read write");
    assert_eq!(v["token_type"], "Bearer");
    // Only the new tokens: never the old ones or the client secret.
    assert_no_secrets(&v);
}

#[tokio::test]
async fn refresh_prefers_the_refresh_url_and_keeps_no_rotation_as_null() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/oauth/refresh"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "new-access",
            "expires_in": "60",
        })))
        .expect(1)
        .mount(&server)
        .await;
    let mut c = conn(&base);
    c.oauth.refresh_url = Some(url(&format!("{base}/oauth/refresh")));
    let v = run("oauth.refresh", ctx(c)).await.unwrap();
    assert_eq!(v["refreshed"], true, "{v}");
    assert_eq!(v["refresh_token"], Value::Null);
    assert_eq!(v["expires_in"], 60);
}

#[tokio::test]
async fn refresh_with_a_dead_refresh_token() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": format!("Token {REFRESH} has been expired or revoked."),
        })))
        .expect(1)
        .mount(&server)
        .await;
    let v = run("oauth.refresh", ctx(conn(&base))).await.unwrap();
    assert_eq!(v["refreshed"], false, "{v}");
    assert_eq!(v["status"], 400);
    assert_eq!(v["error"], "invalid_grant");
    assert_eq!(
        v["error_description"],
        "Token [redacted] has been expired or revoked."
    );
    assert_eq!(v.get("access_token"), None);
    assert_no_secrets(&v);
}

// ---------------------------------------------------------------------------------------------
// A real authorization server: oidc-provider on loopback
// ---------------------------------------------------------------------------------------------

/// The node server, killed when the test ends however it ends.
struct NodeServer {
    child: Child,
    stderr: Arc<std::sync::Mutex<String>>,
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Known to tests/oidc/server.mjs.
const OIDC_CLIENT: &str = "whyfail-test";
const OIDC_SECRET: &str = "whyfail-test-secret-0123456789";
const OIDC_REDIRECT: &str = "http://127.0.0.1/callback";

/// Starts the server. The test that calls this runs only when the server is installed or
/// required (see `build.rs`; otherwise it is reported as ignored), so a server that cannot
/// start is a failure, never a silent pass.
fn start_oidc() -> (NodeServer, String) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "the real OAuth server is required (WHYFAIL_REQUIRE_OIDC=1) but {} has no \
         node_modules: run `npm ci` there",
        dir.display()
    );
    let spawned = Command::new("node")
        .arg("server.mjs")
        .arg("0")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = spawned.unwrap_or_else(|e| panic!("cannot start node: {e}"));
    let stdout = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let stderr = Arc::new(std::sync::Mutex::new(String::new()));
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = err_pipe.read_to_string(&mut buf);
        sink.lock().unwrap().push_str(&buf);
    });
    let server = NodeServer { child, stderr };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let issuer = serde_json::from_str::<Value>(&line)
        .ok()
        .and_then(|v| v["issuer"].as_str().map(str::to_string));
    match issuer {
        Some(i) => (server, i),
        None => {
            std::thread::sleep(Duration::from_millis(200));
            panic!(
                "the oidc server did not start (stdout: {line:?}); stderr:\n{}",
                server.stderr.lock().unwrap()
            );
        }
    }
}

/// A client_credentials token, fetched without any of the crate's code.
async fn client_credentials(issuer: &str, scope: &str) -> String {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("scope", scope)
        .finish();
    let r = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth(OIDC_CLIENT, Some(OIDC_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(status.is_success(), "client_credentials: {status} {v}");
    let token = v["access_token"].as_str().unwrap().to_string();
    assert!(
        oauth::decode_jwt_claims(&token).is_none(),
        "expected an opaque token: {token}"
    );
    token
}

fn oidc_conn(issuer: &str, access_token: &str, secret: &str) -> Conn {
    Conn {
        provider: "generic".into(),
        oauth: OAuthConf {
            client_id: Some(OIDC_CLIENT.into()),
            issuer: Some(url(issuer)),
            token_url: Some(url(&format!("{issuer}/token"))),
            redirect_uri: Some(OIDC_REDIRECT.into()),
            ..Default::default()
        },
        secrets: Secrets {
            access_token: Some(access_token.into()),
            refresh_token: Some("not-a-refresh-token-of-this-server".into()),
            client_secret: Some(secret.into()),
            api_key: None,
        },
        ..Default::default()
    }
}

#[tokio::test]
#[cfg_attr(
    not(oidc_server),
    ignore = "needs the real OAuth server: run `npm ci` in providers/tests/oidc (CI sets WHYFAIL_REQUIRE_OIDC=1)"
)]
async fn against_a_real_authorization_server() {
    let (_server, issuer) = start_oidc();
    let fresh = client_credentials(&issuer, "api").await;
    // Scope `short` lives one second (server.mjs).
    let short = client_credentials(&issuer, "short").await;

    // Discovery: the issuer has a path, oidc-provider serves no RFC 8414 document at the
    // inserted location, so the OpenID configuration is the one found.
    let v = run(
        "oauth.discovery",
        ctx(oidc_conn(&issuer, &fresh, OIDC_SECRET)),
    )
    .await
    .unwrap();
    assert_eq!(v["found"], true, "{v}");
    assert_eq!(v["source"], "openid-configuration");
    assert_eq!(v["issuer"], issuer.as_str());
    assert_eq!(v["issuer_matches"], true);
    assert_eq!(v["token_endpoint_matches"], true);
    assert_eq!(
        v["introspection_endpoint"],
        format!("{issuer}/token/introspection")
    );
    assert!(
        v["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("client_credentials"))
    );

    // Introspection through the discovered endpoint.
    let v = run(
        "oauth.introspection",
        ctx(oidc_conn(&issuer, &fresh, OIDC_SECRET)),
    )
    .await
    .unwrap();
    assert_eq!(v["supported"], true, "{v}");
    assert_eq!(v["endpoint_source"], "discovery");
    assert_eq!(v["active"], true);
    assert_eq!(v["expired"], false);
    assert_eq!(v["client_id"], OIDC_CLIENT);
    assert_eq!(v["scopes"], json!(["api"]));
    assert_eq!(v["client_rejected"], false);
    assert!(!v.to_string().contains(&fresh));

    // The short token, once expired.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let v = run(
        "oauth.introspection",
        ctx(oidc_conn(&issuer, &short, OIDC_SECRET)),
    )
    .await
    .unwrap();
    assert_eq!(v["supported"], true, "{v}");
    assert_eq!(v["active"], false);

    // The introspection endpoint itself rejects a wrong client secret.
    let v = run(
        "oauth.introspection",
        ctx(oidc_conn(&issuer, &fresh, "wrong-secret")),
    )
    .await
    .unwrap();
    assert_eq!(v["client_rejected"], true, "{v}");
    assert_eq!(v["active"], Value::Null);

    // The client check, wrong and right secret.
    let v = run(
        "oauth.client",
        ctx(oidc_conn(&issuer, &fresh, "wrong-secret")),
    )
    .await
    .unwrap();
    assert_eq!(v["client_valid"], false, "{v}");
    assert_eq!(v["error"], "invalid_client");
    let v = run("oauth.client", ctx(oidc_conn(&issuer, &fresh, OIDC_SECRET)))
        .await
        .unwrap();
    assert_eq!(v["client_valid"], true, "{v}");
    assert_eq!(v["error"], "invalid_grant");
    assert!(!v.to_string().contains(OIDC_SECRET));

    // The fresh token is still active: the client check consumed nothing.
    let v = run(
        "oauth.introspection",
        ctx(oidc_conn(&issuer, &fresh, OIDC_SECRET)),
    )
    .await
    .unwrap();
    assert_eq!(v["active"], true, "{v}");

    // A refresh token this server never issued.
    let v = run(
        "oauth.refresh",
        ctx(oidc_conn(&issuer, &fresh, OIDC_SECRET)),
    )
    .await
    .unwrap();
    assert_eq!(v["refreshed"], false, "{v}");
    assert_eq!(v["error"], "invalid_grant");
}
