//! `whyfail serve` end to end: the real server on a random loopback port (in-process through
//! `whyfail::serve::Server`, and the built binary where start-up, logging and signals matter),
//! driven over HTTP by reqwest. Each test names the behaviour issue 5 asks for.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use whyfail::serve::{Config, Server, StartError, Token};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "test-token-0123456789";
const SECRET: &str = "gho_serve_TEST_secret_0123456789";

/// A server running in this process; stops when dropped.
struct TestServer {
    base: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts a server on 127.0.0.1:0 with a token, offline, then whatever `tune` changes.
async fn start(tune: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::new("127.0.0.1:0".parse().expect("addr"));
    config.token = Token::new(TOKEN);
    config.offline = true;
    config.debounce = Duration::from_millis(100);
    tune(&mut config);
    let server = Server::bind(config).await.expect("server starts");
    let addr = server.local_addr().expect("bound");
    let (tx, rx) = oneshot::channel();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    TestServer {
        base: format!("http://{addr}"),
        stop: Some(tx),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    /// The `{"error": {...}}` object, asserting the shape.
    fn error(&self) -> Value {
        let v = self.json();
        let e = v["error"].clone();
        assert!(e["code"].is_string() && e["message"].is_string(), "{v}");
        e
    }
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let res = req.send().await.expect("request sent");
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.expect("body");
    Answer {
        status,
        headers,
        text,
    }
}

async fn get(s: &TestServer, route: &str) -> Answer {
    send(
        client()
            .get(format!("{}{route}", s.base))
            .bearer_auth(TOKEN),
    )
    .await
}

async fn post(s: &TestServer, route: &str, body: impl Into<reqwest::Body>) -> Answer {
    send(
        client()
            .post(format!("{}{route}", s.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

fn example(name: &str) -> String {
    std::fs::read_to_string(Path::new("examples/events").join(name)).expect("example event")
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "whyfail-serve-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    /// Writes a file the way editors save: a temporary name, then a rename over the target.
    fn write(&self, name: &str, text: &str) {
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, self.0.join(name)).expect("rename");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn teapot_playbook(id: &str, status: u16) -> String {
    format!(
        "id: {id}\ntitle: The server refuses to brew ({status})\npriority: 10\napplies_when: error.status == {status}\n\
         causes:\n  - id: {id}_cause\n    title: The server is a teapot\n    checks:\n      - id: status_is_{status}\n        \
         expr: error.status == {status}\n        evidence: The server answered {{error.status}}\n    actions: [retry_later]\n"
    )
}

/// Polls `cond` every 50 ms for up to 15 s.
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

// -------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnoses_every_example_event() {
    let s = start(|_| {}).await;
    let a = post(&s, "/v1/diagnose", example("refresh_token_expired.json")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.headers["content-type"], "application/json");
    let res = a.json();
    assert_eq!(res["event_id"], "evt_example_1");
    assert_eq!(res["status"], "diagnosed");
    assert_eq!(res["symptom"]["id"], "oauth_refresh_failed");
    assert_eq!(res["root_causes"][0]["id"], "refresh_token_expired");
    assert!(
        !a.text.contains("demo-refresh-token-value"),
        "secret leaked"
    );

    // The voice of the explanation follows ?audience=, as the CLI's --audience does.
    let dev = post(
        &s,
        "/v1/diagnose?audience=developer",
        example("refresh_token_expired.json"),
    )
    .await;
    assert_eq!(dev.status, 200);
    assert_ne!(dev.json()["explanation"], res["explanation"]);
    let bad = post(
        &s,
        "/v1/diagnose?audience=robot",
        example("refresh_token_expired.json"),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error()["code"], "invalid_query");
    assert_eq!(bad.error()["field"], "audience");

    for entry in std::fs::read_dir("examples/events").expect("examples") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&p).expect("read");
            let a = post(&s, "/v1/diagnose", text.clone()).await;
            assert_eq!(a.status, 200, "{}: {}", p.display(), a.text);
            let want: Value = serde_json::from_str(&text).expect("json");
            assert_eq!(a.json()["event_id"], want["event_id"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn act_is_opt_in_and_needs_live_providers() {
    let s = start(|_| {}).await;
    let a = post(
        &s,
        "/v1/diagnose?act=refresh_token",
        example("refresh_token_expired.json"),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error()["code"], "act_unavailable");
    let a = post(
        &s,
        "/v1/diagnose?act=delete_everything",
        example("refresh_token_expired.json"),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error()["code"], "invalid_query");
    assert!(
        a.error()["message"]
            .as_str()
            .is_some_and(|m| m.contains("refresh_token"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_array_answers_in_order_and_a_bad_item_does_not_fail_it() {
    let s = start(|_| {}).await;
    let body = format!(
        "[{}, {{\"event_id\": \"no-error\"}}, \"just a string\", {}]",
        example("refresh_token_expired.json"),
        example("rate_limited.json")
    );
    let a = post(&s, "/v1/diagnose/batch", body).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let items = a.json();
    let items = items.as_array().expect("array");
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["event_id"], "evt_example_1");
    assert_eq!(items[1]["index"], 1);
    assert_eq!(items[1]["error"]["code"], "invalid_event");
    assert_eq!(items[1]["error"]["field"], "error");
    assert_eq!(items[2]["index"], 2);
    assert_eq!(items[2]["error"]["code"], "invalid_event");
    assert_eq!(items[3]["status"], "diagnosed");

    let a = post(&s, "/v1/diagnose/batch", "{\"error\": {}}").await;
    assert_eq!(a.status, 400);
    assert!(
        a.error()["message"]
            .as_str()
            .is_some_and(|m| m.contains("JSON array"))
    );
    let a = post(&s, "/v1/diagnose/batch", "[{\"error\": {}}, {\"error\": ]").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error()["code"], "invalid_json");
    assert_eq!(a.error()["line"], 1);
    assert_eq!(a.error()["field"], "[1].error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_json_lines_by_content_type() {
    let s = start(|_| {}).await;
    let body = std::fs::read_to_string("examples/events/batch.jsonl").expect("batch");
    let a = send(
        client()
            .post(format!("{}/v1/diagnose/batch", s.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-ndjson")
            .body(body.clone()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.headers["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = a
        .text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let inputs = body.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(lines.len(), inputs);
    assert_eq!(lines[0]["event_id"], "b1");
    assert_eq!(lines[1]["index"], 1);
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[1]["error"]["code"], "invalid_json");
    assert!(
        lines[1]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("line 1 column"))
    );
    assert_eq!(lines[2]["event_id"], "b3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_but_health_needs_the_token() {
    let s = start(|_| {}).await;
    let served = whyfail::serve::routes::served_routes();
    let defs = whyfail::serve::routes::definitions();
    assert!(served.len() >= 9);
    for (m, route) in &served {
        let url = format!(
            "{}{}",
            s.base,
            route
                .replace("{id}", "oauth_refresh_failed")
                .replace("{file}", "rate_limited.json")
        );
        let auth = defs
            .iter()
            .find(|d| d.path == *route)
            .is_some_and(|d| d.auth);
        for token in [None, Some("wrong-token"), Some(&TOKEN[..TOKEN.len() - 1])] {
            let mut req = client().request(m.clone(), &url).body("{}");
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let a = send(req).await;
            if auth {
                assert_eq!(a.status, 401, "{m} {route} with {token:?}: {}", a.text);
                assert_eq!(a.error()["code"], "unauthorized");
                assert!(
                    a.headers["www-authenticate"]
                        .to_str()
                        .is_ok_and(|h| h.starts_with("Bearer"))
                );
            } else {
                assert_eq!(a.status, 200, "{m} {route} is public: {}", a.text);
            }
        }
    }
    assert!(served.iter().any(|(_, r)| *r == "/healthz"));
    assert!(served.iter().any(|(_, r)| *r == "/readyz"));
    // The scheme is case-insensitive; the token is not.
    let a = send(
        client()
            .get(format!("{}/v1/status", s.base))
            .header("authorization", format!("bearer {TOKEN}")),
    )
    .await;
    assert_eq!(a.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_with_413() {
    let s = start(|c| c.max_body = 4096).await;
    let big = format!("{{\"error\": {{\"message\": \"{}\"}}}}", "x".repeat(8192));
    let a = post(&s, "/v1/diagnose", big.clone()).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.error()["code"], "payload_too_large");
    let a = post(&s, "/v1/diagnose/batch", format!("[{big}]")).await;
    assert_eq!(a.status, 413);

    // Without a Content-Length (chunked), the limit applies while the body is read.
    let addr: SocketAddr = s.base.trim_start_matches("http://").parse().expect("addr");
    let big2 = big.clone();
    let raw = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
        let head = format!(
            "POST /v1/diagnose HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).expect("head");
        for chunk in big2.as_bytes().chunks(1000) {
            if tcp.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).is_err()
                || tcp.write_all(chunk).is_err()
                || tcp.write_all(b"\r\n").is_err()
            {
                break; // the server may answer and close before the upload ends
            }
        }
        let _ = tcp.write_all(b"0\r\n\r\n");
        let mut out = String::new();
        let _ = tcp.read_to_string(&mut out);
        out
    })
    .await
    .expect("raw request");
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("\"payload_too_large\""), "{raw}");

    // A body within the limit is fine.
    let a = post(&s, "/v1/diagnose", example("rate_limited.json")).await;
    assert_eq!(a.status, 200, "{}", a.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_with_line_column_and_field() {
    let s = start(|_| {}).await;
    let body = "{\n  \"event_id\": \"x\",\n  \"error\": {\"status\": 40 1}\n}";
    let a = post(&s, "/v1/diagnose", body).await;
    assert_eq!(a.status, 400);
    let e = a.error();
    assert_eq!(e["code"], "invalid_json");
    assert_eq!(e["line"], 3);
    assert_eq!(e["column"], 26);
    assert_eq!(e["field"], "error");
    let msg = e["message"].as_str().expect("message");
    assert!(
        msg.contains("line 3 column 26") && msg.contains("`error`"),
        "{msg}"
    );

    let a = post(
        &s,
        "/v1/diagnose",
        "{\"connection\": {\"oauth\": {\"has_refresh_token\": tru}}, \"error\": {}}",
    )
    .await;
    assert_eq!(a.error()["field"], "connection.oauth.has_refresh_token");

    let a = post(&s, "/v1/diagnose", "{\"phase\": \"request\"}").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error()["code"], "invalid_event");
    assert_eq!(a.error()["field"], "error");
    assert!(
        a.error()["message"]
            .as_str()
            .is_some_and(|m| m.contains("missing field `error`"))
    );

    let a = post(&s, "/v1/diagnose", vec![b'{', 0xff, b'}']).await;
    assert_eq!(a.status, 400);
    assert!(
        a.error()["message"]
            .as_str()
            .is_some_and(|m| m.contains("UTF-8"))
    );

    // Errors below the handlers are JSON too.
    let a = get(&s, "/v2/nothing").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error()["code"], "not_found");
    let a = send(
        client()
            .delete(format!("{}/v1/diagnose", s.base))
            .bearer_auth(TOKEN),
    )
    .await;
    assert_eq!(a.status, 405);
    assert_eq!(a.error()["code"], "method_not_allowed");
    assert_eq!(a.headers["allow"], "POST");
    assert!(a.headers.contains_key("x-request-id"));
}

/// A GitHub whose `/user` answers slowly: a diagnosis that reaches the live whoami check
/// holds its concurrency slot that long.
async fn slow_github(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-oauth-scopes", "read:org")
                .set_body_json(json!({"login": "octocat"}))
                .set_delay(delay),
        )
        .mount(&server)
        .await;
    server
}

fn scope_event(base: &str) -> String {
    json!({
        "event_id": "live-scope",
        "occurred_at": "2026-11-23T10:00:00Z",
        "phase": "request",
        "error": {"kind": "http", "status": 403, "message": "Resource not accessible by integration"},
        "connection": {
            "id": "conn_live", "provider": "github", "auth_type": "oauth2", "base_url": base,
            "required_scopes": ["repo", "read:org"],
            "secrets": {"access_token": SECRET}
        }
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_sheds_with_503_instead_of_queueing() {
    let gh = slow_github(Duration::from_millis(1500)).await;
    let s = start(|c| {
        c.offline = false;
        c.allow_hosts = vec!["127.0.0.1".into()];
        c.concurrency = 1;
    })
    .await;
    let event = scope_event(&gh.uri());
    let first = {
        let url = format!("{}/v1/diagnose", s.base);
        let event = event.clone();
        tokio::spawn(async move { send(client().post(url).bearer_auth(TOKEN).body(event)).await })
    };
    // The slot is taken once the probe has reached the fake service.
    eventually("the first diagnosis is probing", || async {
        gh.received_requests().await.is_some_and(|r| !r.is_empty())
    })
    .await;
    let second = post(&s, "/v1/diagnose", event.clone()).await;
    assert_eq!(second.status, 503, "{}", second.text);
    assert_eq!(second.error()["code"], "overloaded");
    assert_eq!(second.headers["retry-after"], "1");
    // Shed at once, not queued: the first diagnosis is still waiting for its probe.
    assert!(
        !first.is_finished(),
        "the 503 came only after the slot was free"
    );
    let batch = post(&s, "/v1/diagnose/batch", format!("[{event}]")).await;
    assert_eq!(batch.status, 503);
    // Health, status and metrics are not diagnoses: they still answer.
    assert_eq!(get(&s, "/healthz").await.status, 200);
    let m = get(&s, "/metrics").await.text;
    assert!(m.contains("whyfail_diagnoses_in_flight 1"), "{m}");

    let first = first.await.expect("first request");
    assert_eq!(first.status, 200, "{}", first.text);
    let res = first.json();
    assert_eq!(res["root_causes"][0]["id"], "scope_missing", "{res}");
    assert!(!first.text.contains(SECRET));
    // The slot is free again.
    let again = post(&s, "/v1/diagnose", event).await;
    assert_eq!(again.status, 200);

    let m = get(&s, "/metrics").await.text;
    assert!(m.contains("whyfail_probe_calls_total 1"), "{m}");
    assert!(
        m.contains("whyfail_probe_cache_answers_total 1"),
        "the second diagnosis used the cache: {m}"
    );
    assert!(m.contains("route=\"/v1/diagnose\",status=\"503\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_timeout_is_504() {
    let gh = slow_github(Duration::from_millis(2000)).await;
    let s = start(|c| {
        c.offline = false;
        c.allow_hosts = vec!["127.0.0.1".into()];
        c.request_timeout = Duration::from_millis(300);
    })
    .await;
    let a = post(&s, "/v1/diagnose", scope_event(&gh.uri())).await;
    assert_eq!(a.status, 504, "{}", a.text);
    assert_eq!(a.error()["code"], "timeout");
    // The diagnosis behind it was told to stop; it does not wait for the probe past the
    // request's own deadline, and its slot is free again once it has ended.
    eventually("the timed-out diagnosis has ended", || async {
        get(&s, "/metrics")
            .await
            .text
            .contains("whyfail_diagnoses_running 0")
    })
    .await;
    let m = get(&s, "/metrics").await.text;
    assert!(m.contains("whyfail_diagnoses_cancelled_total 1"), "{m}");
    assert!(m.contains("whyfail_diagnoses_in_flight 0"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_diagnoses_and_reloads() {
    let s = start(|_| {}).await;
    assert_eq!(
        post(&s, "/v1/diagnose", example("refresh_token_expired.json"))
            .await
            .status,
        200
    );
    assert_eq!(
        post(&s, "/v1/diagnose", example("refresh_token_expired.json"))
            .await
            .status,
        200
    );
    assert_eq!(post(&s, "/v1/diagnose", "{").await.status, 400);
    assert_eq!(
        send(client().get(format!("{}/v1/status", s.base)))
            .await
            .status,
        401
    );
    let a = get(&s, "/metrics").await;
    assert_eq!(a.status, 200);
    assert!(
        a.headers["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("application/openmetrics-text"))
    );
    let m = a.text;
    for want in [
        "whyfail_http_requests_total{method=\"POST\",route=\"/v1/diagnose\",status=\"200\"} 2",
        "whyfail_http_requests_total{method=\"POST\",route=\"/v1/diagnose\",status=\"400\"} 1",
        "whyfail_http_requests_total{method=\"GET\",route=\"/v1/status\",status=\"401\"} 1",
        "whyfail_http_request_duration_seconds_count{route=\"/v1/diagnose\"} 3",
        "whyfail_diagnoses_total{status=\"diagnosed\",symptom=\"oauth_refresh_failed\",root_cause=\"refresh_token_expired\"} 2",
        "whyfail_reloads_total{result=\"ok\"} 1",
        "whyfail_diagnoses_in_flight 0",
        "# EOF",
    ] {
        assert!(m.contains(want), "missing `{want}` in:\n{m}");
    }
    // Offline: no live provider, so no probe counters.
    assert!(!m.contains("whyfail_probe_calls"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_exactly_the_served_routes_with_the_generated_schemas() {
    let s = start(|_| {}).await;
    let doc = get(&s, "/openapi.json").await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (p, ops) in doc["paths"].as_object().expect("paths") {
        for m in ops.as_object().expect("operations").keys() {
            documented.insert((m.to_ascii_uppercase(), p.clone()));
        }
    }
    let served: BTreeSet<(String, String)> = whyfail::serve::routes::served_routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, served, "the document and the router disagree");

    // And every documented route is really there: none answers the router's 404/405.
    for (m, p) in &documented {
        let url = format!(
            "{}{}",
            s.base,
            p.replace("{id}", "oauth_refresh_failed")
                .replace("{file}", "rate_limited.json")
        );
        let body = if m == "POST" {
            example("rate_limited.json")
        } else {
            String::new()
        };
        let a = send(
            client()
                .request(m.parse().expect("method"), url)
                .bearer_auth(TOKEN)
                .body(if p.ends_with("batch") {
                    format!("[{body}]")
                } else {
                    body
                }),
        )
        .await;
        assert_eq!(a.status, 200, "{m} {p}: {}", a.text);
    }

    for (name, kind) in [("Event", "event"), ("Resolution", "resolution")] {
        let mut embedded = doc["components"]["schemas"][name].clone();
        let id = embedded.as_object_mut().and_then(|o| o.remove("$id"));
        assert_eq!(id, Some(json!(whyfail::serve::openapi::schema_id(kind))));
        let generated: Value =
            serde_json::from_str(&whyfail_engine::schema::schema_json(kind).expect("schema"))
                .expect("json");
        assert_eq!(embedded, generated, "{name} is not the generated schema");
        // The committed schema file is the same one (CI checks it is current).
        let committed: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("schemas/{kind}.schema.json")).expect("schema file"),
        )
        .expect("json");
        assert_eq!(embedded, committed);
    }
    // Every $ref outside the embedded schemas points at something in the document.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    out.push(r.clone());
                }
                o.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc["paths"], &mut all);
    for r in all {
        let pointer = r.trim_start_matches('#');
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playbooks_list_and_graphs() {
    let s = start(|_| {}).await;
    let list = get(&s, "/v1/playbooks").await.json();
    let set = list["playbook_set"].as_str().expect("set hash").to_string();
    assert!(set.starts_with("sha256:"));
    let pbs = list["playbooks"].as_array().expect("playbooks");
    assert!(pbs.len() >= 10);
    let oauth = pbs
        .iter()
        .find(|p| p["id"] == "oauth_refresh_failed")
        .expect("oauth playbook");
    assert_eq!(oauth["file"], "playbooks/oauth_refresh.yaml");
    assert_eq!(oauth["builtin"], true);
    assert!(
        oauth["hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("sha256:"))
    );
    assert!(oauth["priority"].is_i64() && oauth["title"].is_string());
    // Highest priority first, as the engine tries them.
    let prios: Vec<i64> = pbs
        .iter()
        .map(|p| p["priority"].as_i64().unwrap_or(0))
        .collect();
    assert!(prios.windows(2).all(|w| w[0] >= w[1]), "{prios:?}");
    // Resolutions name the same set.
    let res = post(&s, "/v1/diagnose", example("refresh_token_expired.json"))
        .await
        .json();
    assert_eq!(res["playbook_set"], set.as_str());

    let m = get(&s, "/v1/playbooks/oauth_refresh_failed/graph").await;
    assert_eq!(m.status, 200);
    assert!(
        m.headers["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/vnd.mermaid"))
    );
    assert!(m.text.starts_with("flowchart TD"));
    assert!(m.text.contains("cause_refresh_token_expired"));
    let d = get(&s, "/v1/playbooks/oauth_refresh_failed/graph?format=dot").await;
    assert_eq!(d.status, 200);
    assert!(d.text.starts_with("digraph \"oauth_refresh_failed\""));
    let a = get(&s, "/v1/playbooks/oauth_refresh_failed/graph?format=png").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error()["field"], "format");
    let a = get(&s, "/v1/playbooks/no_such_playbook/graph").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error()["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_set_at_start_is_not_ready_until_fixed() {
    let dir = TempDir::new("notready");
    dir.write(
        "teapot.yaml",
        &teapot_playbook("teapot", 418).replace("retry_later", "no_such_action"),
    );
    let s = start(|c| c.playbooks = vec![dir.0.clone()]).await;
    let a = send(client().get(format!("{}/readyz", s.base))).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.error()["code"], "not_ready");
    let a = post(&s, "/v1/diagnose", example("rate_limited.json")).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.error()["code"], "not_ready");
    let st = get(&s, "/v1/status").await.json();
    assert_eq!(st["ready"], false);
    assert_eq!(st["last_reload"]["result"], "failed");
    assert_eq!(st["last_reload"]["trigger"], "startup");
    assert_eq!(
        st["last_reload"]["diagnostics"][0]["code"],
        "unknown_action"
    );
    // The report is `whyfail check --format json` of the same directory, field for field.
    let out = Command::new(env!("CARGO_BIN_EXE_whyfail"))
        .args(["check", "--format", "json"])
        .arg(&dir.0)
        .output()
        .expect("run whyfail check");
    let check: Value = serde_json::from_slice(&out.stdout).expect("check JSON");
    for (k, v) in check.as_object().expect("object") {
        assert_eq!(&st["last_reload"][k], v, "`{k}` differs from whyfail check");
    }

    dir.write("teapot.yaml", &teapot_playbook("teapot", 418));
    eventually("the fixed set is loaded", || async {
        send(client().get(format!("{}/readyz", s.base)))
            .await
            .status
            == 200
    })
    .await;
    let st = get(&s, "/v1/status").await.json();
    assert_eq!(st["ready"], true);
    assert_eq!(st["last_reload"]["result"], "ok");
    assert_eq!(st["last_reload"]["trigger"], "watch");
    assert_eq!(st["last_failed_reload"]["result"], "failed");
    assert_eq!(st["reloads"], json!({"ok": 1, "failed": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_swaps_good_sets_and_keeps_the_last_good_one() {
    let dir = TempDir::new("reload");
    dir.write("teapot.yaml", &teapot_playbook("teapot", 418));
    let s = Arc::new(start(|c| c.playbooks = vec![dir.0.clone()]).await);
    let status = |a: &Answer| a.json()["status"].as_str().map(str::to_string);

    // Clients that never stop during the reloads; any answer but 200 is a failure.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for i in 0..2 {
        let (s, stop, sent, failed) = (s.clone(), stop.clone(), sent.clone(), failed.clone());
        loops.push(tokio::spawn(async move {
            let events = [
                json!({"event_id": format!("t{i}"), "error": {"status": 418}}).to_string(),
                json!({"event_id": format!("c{i}"), "error": {"status": 499}}).to_string(),
                example("refresh_token_expired.json"),
            ];
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let a = post(&s, "/v1/diagnose", events[n % events.len()].clone()).await;
                n += 1;
                sent.fetch_add(1, Ordering::Relaxed);
                if a.status != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed request: {} {}", a.status, a.text);
                }
            }
        }));
    }
    let diagnose_499 = || async {
        post(
            &s,
            "/v1/diagnose",
            json!({"error": {"status": 499}}).to_string(),
        )
        .await
    };
    let teapot = post(
        &s,
        "/v1/diagnose",
        json!({"error": {"status": 418}}).to_string(),
    )
    .await
    .json();
    assert_eq!(teapot["symptom"]["id"], "teapot");
    let first_set = get(&s, "/v1/playbooks").await.json()["playbook_set"].clone();
    assert_ne!(diagnose_499().await.json()["symptom"]["id"], "coffee_pot");

    // 1. A valid new playbook becomes visible and is used.
    dir.write("coffee_pot.yaml", &teapot_playbook("coffee_pot", 499));
    eventually("coffee_pot is listed", || async {
        get(&s, "/v1/playbooks").await.json()["playbooks"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["id"] == "coffee_pot"))
    })
    .await;
    let res = diagnose_499().await.json();
    assert_eq!(res["symptom"]["id"], "coffee_pot", "{res}");
    assert_eq!(res["root_causes"][0]["id"], "coffee_pot_cause");
    let good_set = get(&s, "/v1/playbooks").await.json()["playbook_set"].clone();
    assert_ne!(good_set, first_set);
    assert_eq!(res["playbook_set"], good_set);
    let listed = get(&s, "/v1/playbooks").await.json();
    let coffee = listed["playbooks"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["id"] == "coffee_pot").cloned())
        .expect("listed");
    assert_eq!(coffee["builtin"], false);
    assert!(
        coffee["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("coffee_pot.yaml"))
    );

    // 2. A broken edit: the last good set keeps serving; the diagnostics are at /v1/status.
    let broken = teapot_playbook("coffee_pot", 499)
        .replace("actions: [retry_later]", "actions: [retry_latr]");
    dir.write("coffee_pot.yaml", &broken);
    eventually("the broken reload is reported", || async {
        get(&s, "/v1/status").await.json()["last_reload"]["result"] == "failed"
    })
    .await;
    let st = get(&s, "/v1/status").await.json();
    assert_eq!(st["ready"], true);
    assert_eq!(st["playbook_set"], good_set, "still the last good set");
    let failed_reload = &st["last_failed_reload"];
    assert_eq!(failed_reload["ok"], false);
    assert!(failed_reload["errors"].as_u64().is_some_and(|n| n >= 1));
    let d = failed_reload["diagnostics"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["severity"] == "error").cloned())
        .expect("an error diagnostic");
    assert!(
        d["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("coffee_pot.yaml")),
        "{d}"
    );
    assert_eq!(d["code"], "unknown_action");
    let actions_line = broken
        .lines()
        .position(|l| l.contains("retry_latr"))
        .expect("line")
        + 1;
    assert_eq!(d["line"], actions_line as u64, "{d}");
    assert!(d["column"].as_u64().is_some(), "{d}");
    assert!(
        d["hint"]
            .as_str()
            .is_some_and(|h| h.contains("retry_later")),
        "{d}"
    );
    assert_eq!(
        get(&s, "/v1/playbooks").await.json()["playbook_set"],
        good_set
    );
    let res = diagnose_499().await.json();
    assert_eq!(
        res["symptom"]["id"], "coffee_pot",
        "the last good coffee_pot still answers"
    );

    // Let the clients run on the kept set a little, then stop them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.expect("client loop");
    }
    let n = sent.load(Ordering::Relaxed);
    assert!(n > 20, "the clients sent only {n} requests");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests out of {n}"
    );
    let m = get(&s, "/metrics").await.text;
    assert!(
        m.contains("whyfail_reloads_total{result=\"failed\"} 1"),
        "{m}"
    );
    assert!(status(&post(&s, "/v1/diagnose", example("rate_limited.json")).await).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_non_loopback_address_without_a_token() {
    let mut config = Config::new("0.0.0.0:0".parse().expect("addr"));
    config.offline = true;
    match Server::bind(config).await {
        Err(e @ StartError::NoToken(_)) => assert!(e.to_string().contains("WHYFAIL_TOKEN")),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("started on 0.0.0.0 without a token"),
    }

    // The binary says why and exits 2.
    let out = Command::new(env!("CARGO_BIN_EXE_whyfail"))
        .args(["serve", "--listen", "0.0.0.0:0", "--offline"])
        .env_remove("WHYFAIL_TOKEN")
        .output()
        .expect("run whyfail");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without a token"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

// -------------------------------------------------------------------------------------------
// The binary

struct Spawned {
    child: Child,
    addr: String,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_binary(args: &[&str], token: &str) -> Spawned {
    let mut child = Command::new(env!("CARGO_BIN_EXE_whyfail"))
        .arg("serve")
        .args(args)
        .env("WHYFAIL_TOKEN", token)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn whyfail serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("start-up line");
    let v: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("start-up line is not JSON ({e}): {line}"));
    assert_eq!(v["ready"], true, "{v}");
    assert!(
        v["playbook_set"]
            .as_str()
            .is_some_and(|h| h.starts_with("sha256:"))
    );
    let addr = v["listening"].as_str().expect("listening").to_string();
    Spawned { child, addr }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_its_address_logs_json_lines_without_secrets_and_reloads_on_sighup() {
    let dir = TempDir::new("binary");
    dir.write("teapot.yaml", &teapot_playbook("teapot", 418));
    let token = "bin-token-do-not-log-9876";
    let dir_arg = dir.0.display().to_string();
    let mut srv = spawn_binary(
        &[
            "--listen",
            "127.0.0.1:0",
            "--offline",
            "--no-watch",
            "--playbooks",
            &dir_arg,
        ],
        token,
    );
    let base = format!("http://{}", srv.addr);
    let c = client();
    let event = example("refresh_token_expired.json");
    let a = send(
        c.post(format!("{base}/v1/diagnose"))
            .bearer_auth(token)
            .body(event),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = send(
        c.get(format!("{base}/v1/status"))
            .bearer_auth("not-the-token"),
    )
    .await;
    assert_eq!(a.status, 401);

    // SIGHUP reloads (the watcher is off here, so only the signal can have done it).
    dir.write("coffee_pot.yaml", &teapot_playbook("coffee_pot", 499));
    signal(&srv.child, "-HUP");
    eventually("the SIGHUP reload is reported", || async {
        let st = send(c.get(format!("{base}/v1/status")).bearer_auth(token))
            .await
            .json();
        st["last_reload"]["trigger"] == "sighup"
    })
    .await;
    let pbs = send(c.get(format!("{base}/v1/playbooks")).bearer_auth(token))
        .await
        .json();
    assert!(
        pbs["playbooks"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["id"] == "coffee_pot"))
    );

    // SIGTERM: a clean stop.
    signal(&srv.child, "-TERM");
    let until = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(st) = srv.child.try_wait().expect("wait") {
            break st.code();
        }
        assert!(Instant::now() < until, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
    let mut logs = String::new();
    srv.child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut logs)
        .expect("logs");
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
        })
        .collect();
    let req = lines
        .iter()
        .find(|l| l["route"] == "/v1/diagnose")
        .expect("a request line for the diagnosis");
    assert_eq!(req["method"], "POST");
    assert_eq!(req["status"], 200);
    assert_eq!(req["event_id"], "evt_example_1");
    assert!(
        req["latency_ms"].is_number() && req["request_id"].is_string(),
        "{req}"
    );
    let denied = lines
        .iter()
        .find(|l| l["status"] == 401)
        .expect("the 401 is logged");
    assert_eq!(denied["error_code"], "unauthorized");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "playbook set loaded" && l["trigger"] == "sighup")
    );
    for secret in [
        token,
        "not-the-token",
        "demo-access-token-value",
        "demo-refresh-token-value",
        "invalid_grant",
    ] {
        assert!(!logs.contains(secret), "`{secret}` is in the logs:\n{logs}");
    }
}
