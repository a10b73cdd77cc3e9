//! `serve --shared-state`: two `whyfail serve` processes sharing one real `redis-server` (started
//! here on a random loopback port, no persistence), against fake providers on loopback
//! (wiremock, which counts requests). Issue 16: a burst split across replicas makes one probe
//! per fact; killing Redis mid-burst fails no request; concurrent `refresh_token` actions make
//! one token request; nothing secret is ever stored in Redis.
//!
//! Without `redis-server` on PATH these tests say so and pass, unless WHYFAIL_REQUIRE_REDIS is
//! set (CI sets it), when they fail.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "shared-state-api-token-31337";
const ACCESS: &str = "gho_shared_OLD_access_secret_1";
const OLD_REFRESH: &str = "rt_shared_OLD_refresh_secret_2";
const CLIENT_SECRET: &str = "cs_shared_client_secret_3";
const NEW_ACCESS: &str = "gho_shared_NEW_access_secret_4";
const NEW_REFRESH: &str = "rt_shared_NEW_refresh_secret_5";
const ALL_SECRETS: &[&str] = &[
    TOKEN,
    ACCESS,
    OLD_REFRESH,
    CLIENT_SECRET,
    NEW_ACCESS,
    NEW_REFRESH,
];

// -------------------------------------------------------------------------------------------
// redis-server

struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Whether redis-server can be run; fails the test when WHYFAIL_REQUIRE_REDIS is set.
fn redis_available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var_os("WHYFAIL_REQUIRE_REDIS").is_some() {
            panic!(
                "redis-server is not installed, and WHYFAIL_REQUIRE_REDIS is set: \
                 install it (Debian: apt-get install redis-server)"
            );
        }
        eprintln!(
            "SKIPPED: redis-server is not installed (apt-get install redis-server); \
             set WHYFAIL_REQUIRE_REDIS=1 to make this a failure"
        );
    }
    found
}

impl Redis {
    fn start() -> Redis {
        let mut r = Redis {
            child: None,
            port: free_port(),
        };
        r.restart();
        r
    }

    /// Starts (again) on the same port, empty.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while self.conn().is_err() {
            assert!(Instant::now() < until, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn conn(&self) -> redis::RedisResult<redis::Connection> {
        let mut c = redis::Client::open(self.url())?.get_connection()?;
        redis::cmd("PING").query::<String>(&mut c)?;
        Ok(c)
    }

    /// Every key with its value (GET) and its serialised form (DUMP), as text.
    fn dump(&self) -> Vec<(String, String)> {
        let mut c = self.conn().expect("redis");
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).expect("KEYS");
        keys.into_iter()
            .map(|k| {
                let v: Option<String> = redis::cmd("GET").arg(&k).query(&mut c).unwrap_or(None);
                let d: Option<Vec<u8>> = redis::cmd("DUMP").arg(&k).query(&mut c).unwrap_or(None);
                let text = format!(
                    "{} {}",
                    v.unwrap_or_default(),
                    String::from_utf8_lossy(&d.unwrap_or_default())
                );
                (k, text)
            })
            .collect()
    }

    /// Asserts no secret is in any key or value.
    fn assert_no_secret(&self) -> usize {
        let dump = self.dump();
        for (k, v) in &dump {
            for s in ALL_SECRETS {
                assert!(
                    !k.contains(s) && !v.contains(s),
                    "`{s}` stored in Redis: {k} = {v}"
                );
            }
            assert!(k.starts_with("whyfail:v1:"), "{k}");
            assert!(!k.contains("conn_"), "a connection id in a key: {k}");
        }
        dump.len()
    }
}

// -------------------------------------------------------------------------------------------
// whyfail serve replicas

struct Replica {
    child: Child,
    base: String,
    logs: Arc<Mutex<String>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    fn start(shared: Option<&str>) -> Replica {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_whyfail"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--allow-host",
            "127.0.0.1",
        ])
        .args(["--no-watch", "--deadline", "4000"])
        .env("WHYFAIL_TOKEN", TOKEN)
        .env_remove("WHYFAIL_SHARED_STATE")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if let Some(url) = shared {
            cmd.args(["--shared-state", url]);
        }
        let mut child = cmd.spawn().expect("spawn whyfail serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("start-up line");
        let v: Value = serde_json::from_str(&line).expect("start-up line is JSON");
        let base = format!("http://{}", v["listening"].as_str().expect("listening"));
        // Drain the logs so a long run never blocks on a full pipe.
        let logs = Arc::new(Mutex::new(String::new()));
        let sink = logs.clone();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = sink.lock().expect("log buffer");
                s.push_str(&line);
                s.push('\n');
            }
        });
        Replica { child, base, logs }
    }

    fn logs(&self) -> String {
        self.logs.lock().expect("log buffer").clone()
    }

    async fn metric(&self, name: &str) -> u64 {
        let text = client()
            .get(format!("{}/metrics", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    }

    async fn readyz(&self) -> (u16, Value) {
        let r = client()
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .expect("readyz");
        let status = r.status().as_u16();
        let text = r.text().await.expect("readyz body");
        (status, serde_json::from_str(&text).expect("readyz json"))
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn diagnose(base: &str, query: &str, event: &Value) -> (u16, Value) {
    let r = client()
        .post(format!("{base}/v1/diagnose{query}"))
        .bearer_auth(TOKEN)
        .body(event.to_string())
        .send()
        .await
        .expect("diagnose");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text})),
    )
}

/// GitHub's `/user` answering slowly with the scopes header.
async fn fake_github(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .and(header("authorization", format!("Bearer {ACCESS}").as_str()))
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

async fn whoami_calls(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/user")
        .count()
}

/// A 403 from GitHub whose record has no granted scopes: the diagnosis asks `whoami`.
fn scope_event(base: &str, conn: &str) -> Value {
    json!({
        "event_id": format!("shared-{conn}"),
        "occurred_at": "2026-11-23T10:00:00Z",
        "phase": "request",
        "error": {"kind": "http", "status": 403, "message": "Resource not accessible by integration"},
        "connection": {
            "id": conn, "provider": "github", "auth_type": "oauth2", "base_url": base,
            "required_scopes": ["repo", "read:org"],
            "secrets": {"access_token": ACCESS}
        }
    })
}

/// Sends `n` diagnoses, alternating between the replicas, `parallel` at a time, and calls
/// `mid` once half of them have been answered.
async fn burst(
    replicas: &[&Replica],
    n: usize,
    parallel: usize,
    event: impl Fn(usize) -> Value,
    mid: impl FnOnce() + Send + 'static,
) -> Vec<(u16, Value)> {
    let sem = Arc::new(Semaphore::new(parallel));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mid = Arc::new(Mutex::new(Some(mid)));
    let mut tasks = Vec::new();
    for i in 0..n {
        let base = replicas[i % replicas.len()].base.clone();
        let ev = event(i);
        let permit = sem.clone().acquire_owned().await.expect("permit");
        let done = done.clone();
        let mid = mid.clone();
        tasks.push(tokio::spawn(async move {
            let answer = diagnose(&base, "", &ev).await;
            drop(permit);
            if done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == n / 2 {
                let step = mid.lock().expect("mid-burst step").take();
                if let Some(f) = step {
                    tokio::task::spawn_blocking(f)
                        .await
                        .expect("mid-burst step");
                }
            }
            answer
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    out
}

// -------------------------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_split_across_two_replicas_makes_one_probe_per_fact() {
    if !redis_available() {
        return;
    }
    let redis = Redis::start();
    let gh = fake_github(Duration::from_millis(300)).await;
    let a = Replica::start(Some(&redis.url()));
    let b = Replica::start(Some(&redis.url()));
    for r in [&a, &b] {
        let (status, ready) = r.readyz().await;
        assert_eq!(status, 200);
        assert_eq!(ready["shared_state"]["status"], "up", "{ready}");
        assert_eq!(ready["shared_state"]["backend"], "redis");
    }

    let answers = burst(
        &[&a, &b],
        200,
        40,
        |_| scope_event(&gh.uri(), "conn_burst"),
        || {},
    )
    .await;
    for (status, res) in &answers {
        assert_eq!(*status, 200, "{res}");
        assert_eq!(res["root_causes"][0]["id"], "scope_missing", "{res}");
    }
    assert_eq!(
        whoami_calls(&gh).await,
        1,
        "one whoami request for 200 diagnoses"
    );

    // Each replica answered every fact once (a probe or the other's stored result); between
    // them, every fact was probed once.
    let (pa, pb) = (
        a.metric("whyfail_probe_calls_total").await,
        b.metric("whyfail_probe_calls_total").await,
    );
    let (sa, sb) = (
        a.metric("whyfail_probe_shared_answers_total").await,
        b.metric("whyfail_probe_shared_answers_total").await,
    );
    let facts = pa + sa;
    assert!(facts >= 1);
    assert_eq!(pb + sb, facts, "both replicas needed the same facts");
    assert_eq!(pa + pb, facts, "probes {pa} + {pb} for {facts} facts");
    assert!(
        sa + sb >= facts,
        "the replica that did not probe read the other's"
    );
    assert_eq!(a.metric("whyfail_shared_state_errors_total").await, 0);

    assert!(redis.assert_no_secret() > 0, "facts were stored");
    for r in [&a, &b] {
        for s in ALL_SECRETS {
            assert!(!r.logs().contains(s), "`{s}` in the logs");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_redis_mid_burst_fails_no_request_and_sharing_recovers() {
    if !redis_available() {
        return;
    }
    let mut redis = Redis::start();
    let gh = fake_github(Duration::from_millis(50)).await;
    let a = Replica::start(Some(&redis.url()));
    let b = Replica::start(Some(&redis.url()));

    // Many connections, so probes, locks and stored results are in flight when Redis dies.
    let port = redis.port;
    let killer = Arc::new(Mutex::new(Some(std::mem::replace(
        &mut redis,
        Redis { child: None, port },
    ))));
    let k = killer.clone();
    let answers = burst(
        &[&a, &b],
        300,
        30,
        |i| scope_event(&gh.uri(), &format!("conn_kill_{}", i % 40)),
        move || {
            if let Some(mut r) = k.lock().unwrap().take() {
                r.kill();
            }
        },
    )
    .await;
    assert!(
        killer.lock().unwrap().is_none(),
        "Redis was killed mid-burst"
    );
    for (status, res) in &answers {
        assert_eq!(*status, 200, "{res}");
        assert_eq!(res["root_causes"][0]["id"], "scope_missing", "{res}");
    }

    // Still ready, saying the store is down; counted; warned about once.
    for r in [&a, &b] {
        let (status, ready) = r.readyz().await;
        assert_eq!(status, 200, "{ready}");
        assert_eq!(ready["shared_state"]["status"], "down", "{ready}");
        assert!(ready["shared_state"]["down_since"].is_string(), "{ready}");
        assert_eq!(r.metric("whyfail_shared_state_up").await, 0);
        assert_eq!(r.metric("whyfail_shared_state_outages_total").await, 1);
        assert!(r.metric("whyfail_shared_state_errors_total").await >= 1);
    }
    // Answers go on while it is down.
    let (status, res) = diagnose(&a.base, "", &scope_event(&gh.uri(), "conn_after")).await;
    assert_eq!(status, 200);
    assert_eq!(res["root_causes"][0]["id"], "scope_missing", "{res}");

    // Redis returns: both replicas share again.
    redis.restart();
    let until = Instant::now() + Duration::from_secs(10);
    for r in [&a, &b] {
        while r.readyz().await.1["shared_state"]["status"] != "up" {
            assert!(
                Instant::now() < until,
                "no recovery: {}",
                r.readyz().await.1
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let before = whoami_calls(&gh).await;
    let answers = burst(
        &[&a, &b],
        20,
        20,
        |_| scope_event(&gh.uri(), "conn_back"),
        || {},
    )
    .await;
    assert!(answers.iter().all(|(s, _)| *s == 200));
    assert_eq!(
        whoami_calls(&gh).await - before,
        1,
        "one probe again once Redis is back"
    );
    for r in [&a, &b] {
        let logs = r.logs();
        let warnings = logs
            .lines()
            .filter(|l| l.contains("shared state unreachable"))
            .count();
        assert_eq!(warnings, 1, "one warning per outage:\n{logs}");
        assert!(logs.contains("shared state reachable again"), "{logs}");
    }
    redis.assert_no_secret();
}

/// A 401 for an expired access token, with a refresh token: the diagnosis recommends
/// refreshing, and `?act=refresh_token` asks whyfail to do it.
fn expired_event(base: &str) -> Value {
    json!({
        "event_id": "shared-refresh",
        "occurred_at": "2026-11-23T10:00:00Z",
        "phase": "request",
        "error": {"kind": "http", "status": 401, "message": "Bad credentials",
                  "headers": {"www-authenticate": "Bearer error=\"invalid_token\", error_description=\"The access token expired\""}},
        "connection": {
            "id": "conn_refresh", "provider": "github", "auth_type": "oauth2", "base_url": base,
            "oauth": {"client_id": "cid", "client_secret_set": true, "has_refresh_token": true,
                      "token_url": format!("{base}/login/oauth/access_token"),
                      "access_token_expires_at": "2026-11-23T09:00:00Z"},
            "secrets": {"access_token": ACCESS, "refresh_token": OLD_REFRESH, "client_secret": CLIENT_SECRET}
        }
    })
}

async fn fake_token_endpoint() -> MockServer {
    let s = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/login/oauth/access_token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains(OLD_REFRESH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({
                    "access_token": NEW_ACCESS, "refresh_token": NEW_REFRESH,
                    "expires_in": 28800, "token_type": "bearer"
                }))
                .set_delay(Duration::from_millis(400)),
        )
        .mount(&s)
        .await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .and(header(
            "authorization",
            format!("Bearer {NEW_ACCESS}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"login": "octocat"})))
        .mount(&s)
        .await;
    s
}

async fn token_requests(s: &MockServer) -> usize {
    s.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/login/oauth/access_token")
        .count()
}

/// Sends the same refresh request to every replica in `bases` at once (`per` each) and checks
/// one refreshed and the rest learned of it.
async fn concurrent_refresh(bases: &[String], per: usize, server: &MockServer) {
    let event = expired_event(&server.uri());
    let mut tasks = Vec::new();
    for base in bases {
        for _ in 0..per {
            let (base, event) = (base.clone(), event.clone());
            tasks.push(tokio::spawn(async move {
                diagnose(&base, "?act=refresh_token", &event).await
            }));
        }
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let (status, res) = t.await.expect("task");
        assert_eq!(status, 200, "{res}");
        assert_eq!(res["root_causes"][0]["id"], "access_token_expired", "{res}");
        let acted = &res["acted"][0];
        assert_eq!(acted["action"], "refresh_token");
        match acted["status"].as_str() {
            Some("done") => {
                assert_eq!(res["new_credentials"]["access_token"], NEW_ACCESS);
                assert_eq!(acted["verified"], true, "{res}");
            }
            Some("already_done") => {
                assert!(
                    res.get("new_credentials").is_none_or(Value::is_null),
                    "{res}"
                );
                assert_eq!(acted["verified"], true, "{res}");
                assert_eq!(res["disposition"]["kind"], "retry", "{res}");
            }
            other => panic!("unexpected acted status {other:?}: {res}"),
        }
        let mut rest = res.clone();
        rest.as_object_mut()
            .expect("object")
            .remove("new_credentials");
        for s in ALL_SECRETS {
            assert!(
                !rest.to_string().contains(s),
                "`{s}` outside new_credentials"
            );
        }
        statuses.push(acted["status"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(
        statuses.iter().filter(|s| *s == "done").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(token_requests(server).await, 1, "one token request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refresh_token_on_two_replicas_makes_one_token_request() {
    if !redis_available() {
        return;
    }
    let redis = Redis::start();
    let server = fake_token_endpoint().await;
    let a = Replica::start(Some(&redis.url()));
    let b = Replica::start(Some(&redis.url()));
    concurrent_refresh(&[a.base.clone(), b.base.clone()], 2, &server).await;
    redis.assert_no_secret();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_shared_state_one_replica_still_refreshes_once() {
    let server = fake_token_endpoint().await;
    let a = Replica::start(None);
    let (status, ready) = a.readyz().await;
    assert_eq!(status, 200);
    assert!(ready.get("shared_state").is_none(), "{ready}");
    concurrent_refresh(std::slice::from_ref(&a.base), 3, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_started_while_redis_is_down_serves_and_joins_when_it_comes_up() {
    if !redis_available() {
        return;
    }
    let gh = fake_github(Duration::from_millis(50)).await;
    let mut redis = Redis {
        child: None,
        port: free_port(),
    };
    let a = Replica::start(Some(&redis.url()));
    let (status, ready) = a.readyz().await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["shared_state"]["status"], "down", "{ready}");
    let (status, res) = diagnose(&a.base, "", &scope_event(&gh.uri(), "conn_early")).await;
    assert_eq!(status, 200);
    assert_eq!(res["root_causes"][0]["id"], "scope_missing", "{res}");

    redis.restart();
    let until = Instant::now() + Duration::from_secs(10);
    while a.readyz().await.1["shared_state"]["status"] != "up" {
        assert!(Instant::now() < until, "never joined");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = Replica::start(Some(&redis.url()));
    let answers = burst(
        &[&a, &b],
        20,
        20,
        |_| scope_event(&gh.uri(), "conn_joined"),
        || {},
    )
    .await;
    assert!(answers.iter().all(|(s, _)| *s == 200));
    let joined = gh
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/user")
        .count();
    assert_eq!(joined, 2, "one probe for conn_early, one for conn_joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_that_accepts_but_never_answers_costs_one_call_timeout() {
    // Not a real Redis: a socket that takes connections and says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = silent.accept().await {
            keep.lock().expect("sockets").push(sock);
        }
    });
    let gh = fake_github(Duration::ZERO).await;
    let a = Replica::start(Some(&format!("redis://127.0.0.1:{port}/0")));
    let started = Instant::now();
    let (status, res) = diagnose(&a.base, "", &scope_event(&gh.uri(), "conn_silent")).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["root_causes"][0]["id"], "scope_missing", "{res}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    let (status, ready) = a.readyz().await;
    assert_eq!(status, 200);
    assert_eq!(ready["shared_state"]["status"], "down", "{ready}");
    let logs = a.logs();
    assert_eq!(
        logs.lines()
            .filter(|l| l.contains("shared state unreachable"))
            .count(),
        1,
        "{logs}"
    );
}
