//! The status-page probe against a wiremock fake of the Atlassian Statuspage API
//! (`GET /api/v2/status.json` → `{"page": {...}, "status": {"indicator", "description"}}`).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use url::Url;
use whyfail_engine::FactError;
use whyfail_providers::Guard;
use whyfail_providers::conn::{Conn, Secrets};
use whyfail_providers::probe::{Ctx, Env};
use whyfail_providers::status;
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "gho_sekritTOKEN0123456789abcdef";

fn conn(provider: &str, page: Option<&str>) -> Conn {
    Conn {
        provider: provider.into(),
        auth_type: "oauth2".into(),
        status_page_url: page.map(|p| Url::parse(p).unwrap()),
        secrets: Secrets {
            access_token: Some(TOKEN.into()),
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

async fn run(cx: Arc<Ctx>) -> Result<Value, FactError> {
    let p = status::probes()
        .into_iter()
        .find(|p| p.name == "status.page")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), (p.run)(cx))
        .await
        .expect("the probe hung")
}

/// A Statuspage `status.json` as the API returns it.
fn summary(indicator: &str, description: &str) -> Value {
    json!({
        "page": {
            "id": "kctbh9vrtdwd",
            "name": "GitHub",
            "url": "https://www.githubstatus.com",
            "time_zone": "Etc/UTC",
            "updated_at": "2026-03-01T12:00:00.000Z"
        },
        "status": {"indicator": indicator, "description": description}
    })
}

async fn page_server(at: &str, body: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(at))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    server
}

#[test]
fn the_probe_is_cheap_and_not_held_back_by_api_rate_limits() {
    let probes = status::probes();
    assert_eq!(probes.len(), 1);
    let p = &probes[0];
    assert_eq!(
        (p.name, p.cost, p.mutating, p.calls_api),
        ("status.page", 3, false, false)
    );
    assert_eq!(
        status::known_page("github"),
        Some("https://www.githubstatus.com")
    );
    assert_eq!(status::known_page("acme"), None);
}

#[tokio::test]
async fn indicators_map_to_outage_degraded_and_maintenance() {
    for (indicator, description, outage, degraded, maintenance) in [
        ("none", "All Systems Operational", false, false, false),
        ("minor", "Partially Degraded Service", false, true, false),
        ("major", "Partial System Outage", true, false, false),
        ("critical", "Major System Outage", true, false, false),
        (
            "maintenance",
            "Service Under Maintenance",
            false,
            false,
            true,
        ),
    ] {
        let server = page_server("/api/v2/status.json", summary(indicator, description)).await;
        let v = run(ctx(conn("github", Some(&server.uri())))).await.unwrap();
        assert_eq!(
            v,
            json!({
                "page": format!("{}/api/v2/status.json", server.uri()),
                "indicator": indicator,
                "description": description,
                "outage": outage,
                "degraded": degraded,
                "maintenance": maintenance,
            }),
            "{indicator}"
        );
    }
}

#[tokio::test]
async fn the_page_url_may_be_the_root_or_the_json_endpoint() {
    // The page root, with and without a trailing slash, and under a path.
    for (given, at) in [
        ("", "/api/v2/status.json"),
        ("/", "/api/v2/status.json"),
        ("/acme", "/acme/api/v2/status.json"),
        ("/api/v2/status.json", "/api/v2/status.json"),
        // The summary document has the same `status` member.
        ("/api/v2/summary.json", "/api/v2/summary.json"),
    ] {
        let server = page_server(at, summary("minor", "Degraded")).await;
        let page = format!("{}{given}", server.uri());
        let v = run(ctx(conn("acme", Some(&page)))).await.unwrap();
        assert_eq!(v["degraded"], true, "{given}: {v}");
        assert_eq!(v["page"], format!("{}{at}", server.uri()), "{given}");
    }
}

#[tokio::test]
async fn no_credentials_go_to_the_status_page() {
    let server = page_server("/api/v2/status.json", summary("none", "OK")).await;
    // Even when the status page shares the connection's API origin.
    let mut c = conn("github", Some(&server.uri()));
    c.base_url = Some(Url::parse(&server.uri()).unwrap());
    c.secrets.api_key = Some("ak_sekritKEY".into());
    let v = run(ctx(c)).await.unwrap();
    assert_eq!(v["indicator"], "none");
    let got = server.received_requests().await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(!got[0].headers.contains_key("authorization"));
    assert!(got[0].url.query().is_none());
    let all = format!(
        "{:?} {:?}",
        got[0].headers,
        String::from_utf8_lossy(&got[0].body)
    );
    assert!(!all.contains("sekrit"), "{all}");
}

#[tokio::test]
async fn json_that_is_not_a_statuspage_summary_is_an_error() {
    for body in [
        json!({"status": "ok"}),
        json!({"status": {"description": "fine"}}),
        json!({"components": []}),
        json!([1, 2, 3]),
    ] {
        let server = page_server("/api/v2/status.json", body.clone()).await;
        let e = run(ctx(conn("acme", Some(&server.uri()))))
            .await
            .unwrap_err();
        assert!(
            e.reason
                .contains("is not a Statuspage summary (no status.indicator)"),
            "{body}: {e}"
        );
        assert!(e.reason.contains(&server.uri()), "{e}");
    }

    // An HTML status page (not Statuspage's API) says so too.
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            "<!doctype html><title>Status</title>",
            "text/html; charset=utf-8",
        ))
        .mount(&server)
        .await;
    let e = run(ctx(conn("acme", Some(&server.uri()))))
        .await
        .unwrap_err();
    assert!(e.reason.contains("is not a Statuspage summary"), "{e}");
    assert!(e.reason.contains("text/html"), "{e}");
}

#[tokio::test]
async fn a_server_error_is_an_error() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500).set_body_string("oops"))
        .mount(&server)
        .await;
    let e = run(ctx(conn("acme", Some(&server.uri()))))
        .await
        .unwrap_err();
    assert!(
        e.reason.contains(&format!(
            "the status page {}/api/v2/status.json answered HTTP 500",
            server.uri()
        )),
        "{e}"
    );
}

#[tokio::test]
async fn a_redirect_is_named_and_not_followed() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(301).insert_header("location", "http://169.254.169.254/latest/"),
        )
        .mount(&server)
        .await;
    let e = run(ctx(conn("acme", Some(&server.uri()))))
        .await
        .unwrap_err();
    assert!(e.reason.contains("answered HTTP 301"), "{e}");
    assert!(e.reason.contains("http://169.254.169.254/latest/"), "{e}");
    assert!(e.reason.contains("not followed"), "{e}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_status_page_on_a_private_address_is_refused() {
    let e = run(ctx(conn("acme", Some("http://169.254.169.254/"))))
        .await
        .unwrap_err();
    assert!(e.reason.contains("refusing to probe"), "{e}");
}

#[tokio::test]
async fn a_slow_status_page_times_out() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(summary("none", "OK"))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let started = Instant::now();
    let e = run(ctx_t(
        conn("acme", Some(&server.uri())),
        Duration::from_millis(300),
    ))
    .await
    .unwrap_err();
    assert!(e.reason.contains("timed out"), "{e}");
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn an_unknown_provider_needs_the_status_page_url() {
    let e = run(ctx(conn("acme", None))).await.unwrap_err();
    assert!(e.reason.contains("connection.status_page_url"), "{e}");
    assert!(e.reason.contains("`acme`"), "{e}");
}

#[tokio::test]
async fn a_known_provider_uses_its_public_page() {
    // Offline, the call fails on the host (which the error names); online, it is the real page.
    let r = run(ctx(conn("github", None))).await;
    let want = "https://www.githubstatus.com/api/v2/status.json";
    match r {
        Ok(v) => assert_eq!(v["page"], want, "{v}"),
        Err(e) => assert!(e.reason.contains(want), "{e}"),
    }
}
