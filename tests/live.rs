//! Live checks end to end: the standard library, the live providers and local fake services
//! (wiremock). Each test names the behaviour the live-state issue asks for.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::runtime::Runtime;
use whyfail_engine::{Event, FactProvider, Library, Options, Resolution, diagnose};
use whyfail_providers::{LiveConfig, LiveProvider};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "gho_live_TEST_secret_0123456789";

fn library() -> Library {
    let (lib, diags) = whyfail::load_library(&[] as &[PathBuf], true);
    assert!(diags.is_empty(), "{diags:?}");
    lib
}

fn live(allow: &[&str], probe_timeout: Duration) -> LiveProvider {
    LiveProvider::new(LiveConfig {
        allow_hosts: allow.iter().map(|s| s.to_string()).collect(),
        probe_timeout,
        ..LiveConfig::default()
    })
    .expect("live provider")
}

/// A 403 from GitHub whose connection record has no `granted_scopes`.
fn scope_event(base: &str) -> Value {
    json!({
        "event_id": "live-scope",
        "occurred_at": "2026-11-23T10:00:00Z",
        "phase": "request",
        "error": {"kind": "http", "status": 403, "message": "Resource not accessible by integration"},
        "connection": {
            "id": "conn_live", "provider": "github", "auth_type": "oauth2", "base_url": base,
            "required_scopes": ["repo", "read:org"],
            "secrets": {"access_token": TOKEN}
        }
    })
}

fn run(lib: &Library, provider: Option<&dyn FactProvider>, event: &Value) -> Resolution {
    let e = Event::parse(&event.to_string()).expect("event");
    diagnose(
        lib,
        &e,
        &Options {
            provider,
            deadline: Some(Duration::from_secs(3)),
            ..Options::default()
        },
    )
}

fn fake_github(rt: &Runtime, scopes: &str, delay: Duration) -> MockServer {
    rt.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/user"))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .respond_with(
                ResponseTemplate::new(200)
                    .insert_header("x-oauth-scopes", scopes)
                    .set_body_json(json!({"login": "octocat"}))
                    .set_delay(delay),
            )
            .mount(&server)
            .await;
        server
    })
}

fn requests(rt: &Runtime, server: &MockServer) -> usize {
    rt.block_on(server.received_requests())
        .map_or(0, |r| r.len())
}

#[test]
fn whoami_names_the_missing_scopes_when_the_record_has_none() {
    let rt = Runtime::new().unwrap();
    let gh = fake_github(&rt, "read:org, gist", Duration::ZERO);
    let lib = library();
    let p = live(&["127.0.0.1"], Duration::from_secs(2));
    let res = run(&lib, Some(&p), &scope_event(&gh.uri()));

    assert_eq!(res.root_causes[0].id, "scope_missing", "{res:#?}");
    let evidence = res.root_causes[0].evidence.join(" ");
    assert!(evidence.contains("“repo”"), "{evidence}");
    assert!(evidence.contains("read:org, gist"), "{evidence}");
    assert_eq!(res.actions[0].id, "reauthorize_with_scopes");
    assert_eq!(res.actions[0].params["missing_scopes"], json!(["repo"]));
    let step = res
        .path
        .iter()
        .find(|s| s.node == "scope_live_whoami")
        .unwrap();
    assert!(step.facts.iter().any(|f| f == "facts.whoami"));
    assert_eq!(requests(&rt, &gh), 1);
    assert!(!serde_json::to_string(&res).unwrap().contains(TOKEN));
}

#[test]
fn offline_runs_no_probe_and_decides_from_the_event() {
    let rt = Runtime::new().unwrap();
    let gh = fake_github(&rt, "read:org", Duration::ZERO);
    let lib = library();
    let res = run(&lib, None, &scope_event(&gh.uri()));
    assert_ne!(
        res.root_causes.first().map(|c| c.id.as_str()),
        Some("scope_missing")
    );
    let step = res
        .path
        .iter()
        .find(|s| s.node == "scope_live_whoami")
        .unwrap();
    assert_eq!(
        step.outcome,
        whyfail_engine::model::resolution::Outcome::Unknown
    );
    assert!(
        step.detail
            .as_deref()
            .unwrap()
            .contains("live checks are off")
    );
    assert_eq!(requests(&rt, &gh), 0);
}

#[test]
fn a_burst_on_one_connection_makes_one_request_per_fact() {
    let rt = Runtime::new().unwrap();
    let gh = fake_github(&rt, "read:org", Duration::from_millis(200));
    let lib = Arc::new(library());
    let p = Arc::new(live(&["127.0.0.1"], Duration::from_secs(2)));
    let event = Arc::new(scope_event(&gh.uri()).to_string());
    let n = 1000;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (lib, p, event, barrier) = (lib.clone(), p.clone(), event.clone(), barrier.clone());
            std::thread::Builder::new()
                .stack_size(512 * 1024)
                .spawn(move || {
                    let e = Event::parse(&event).unwrap();
                    barrier.wait();
                    let res = diagnose(
                        &lib,
                        &e,
                        &Options {
                            provider: Some(p.as_ref()),
                            deadline: Some(Duration::from_secs(20)),
                            ..Options::default()
                        },
                    );
                    res.root_causes[0].id.clone()
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), "scope_missing");
    }
    assert_eq!(requests(&rt, &gh), 1, "one probe for 1,000 diagnoses");
    assert_eq!(p.stats.probes.load(Ordering::Relaxed), 1);
    assert_eq!(p.stats.requests.load(Ordering::Relaxed), n as u64);
}

#[test]
fn a_hanging_probe_is_cut_off_at_the_deadline() {
    let rt = Runtime::new().unwrap();
    let gh = fake_github(&rt, "read:org", Duration::from_secs(30));
    let lib = library();
    let p = live(&["127.0.0.1"], Duration::from_secs(30));
    let e = Event::parse(&scope_event(&gh.uri()).to_string()).unwrap();
    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let res = diagnose(
        &lib,
        &e,
        &Options {
            provider: Some(&p),
            deadline: Some(deadline),
            ..Options::default()
        },
    );
    let took = started.elapsed();
    // A generous bound: this checks the deadline is honoured at all, not how fast; the
    // precise overshoot is measured by `scripts/bench-deadline.sh`.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let step = res
        .path
        .iter()
        .find(|s| s.node == "scope_live_whoami")
        .unwrap();
    assert_eq!(
        step.outcome,
        whyfail_engine::model::resolution::Outcome::Unknown
    );
    assert!(
        step.detail.as_deref().unwrap().contains("deadline"),
        "{:?}",
        step.detail
    );
    assert_eq!(
        res.status,
        whyfail_engine::model::resolution::Status::Diagnosed
    );
}

#[test]
fn private_and_metadata_targets_are_refused() {
    let rt = Runtime::new().unwrap();
    let gh = fake_github(&rt, "read:org", Duration::ZERO);
    let lib = library();
    // No --allow-host: the loopback fake must not be contacted, by IP or by a name that
    // resolves to loopback.
    let p = live(&[], Duration::from_secs(2));
    let port = gh.address().port();
    for base in [
        gh.uri(),
        format!("http://localhost:{port}"),
        "http://169.254.169.254/latest".to_string(),
        "http://[::ffff:127.0.0.1]:1/".to_string(),
        "http://10.0.0.1/".to_string(),
    ] {
        let res = run(&lib, Some(&p), &scope_event(&base));
        let step = res
            .path
            .iter()
            .find(|s| s.node == "scope_live_whoami")
            .unwrap();
        let detail = step.detail.as_deref().unwrap();
        assert!(detail.contains("refusing to probe"), "{base}: {detail}");
    }
    assert_eq!(requests(&rt, &gh), 0);
}

#[test]
fn redirects_are_reported_not_followed() {
    let rt = Runtime::new().unwrap();
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(path("/user"))
            .respond_with(
                ResponseTemplate::new(302)
                    .insert_header("location", "http://169.254.169.254/latest/meta-data/"),
            )
            .expect(1)
            .mount(&s)
            .await;
        s
    });
    let p = live(&["127.0.0.1"], Duration::from_secs(2));
    let e = Event::parse(&scope_event(&server.uri()).to_string()).unwrap();
    let w = p.fetch("whoami", &e.fact_request(None)).unwrap();
    assert_eq!(w["status"], 302);
    assert_eq!(w["authenticated"], false);
    rt.block_on(server.verify());
}

#[test]
fn credentials_go_only_to_the_connections_own_origin() {
    let rt = Runtime::new().unwrap();
    let own = fake_github(&rt, "repo", Duration::ZERO);
    let foreign = fake_github(&rt, "repo", Duration::ZERO);
    let p = live(&["127.0.0.1"], Duration::from_secs(2));
    let mut ev = scope_event(&own.uri());
    ev["connection"]["provider"] = json!("acme");
    ev["connection"]["whoami_url"] = json!(format!("{}/user", foreign.uri()));
    let e = Event::parse(&ev.to_string()).unwrap();
    let err = p.fetch("whoami", &e.fact_request(None)).unwrap_err();
    assert!(err.reason.contains("refusing to send"), "{err}");
    assert_eq!(requests(&rt, &foreign), 0);
}

#[test]
fn a_rate_limited_provider_is_not_probed_until_its_retry_time() {
    let rt = Runtime::new().unwrap();
    let gh = fake_github(&rt, "repo", Duration::ZERO);
    let p = live(&["127.0.0.1"], Duration::from_secs(2));
    let mut ev = scope_event(&gh.uri());
    ev["error"] = json!({"status": 429, "headers": {"retry-after": "120"}, "message": "API rate limit exceeded"});
    ev.as_object_mut().unwrap().remove("occurred_at");
    let e = Event::parse(&ev.to_string()).unwrap();
    let err = p.fetch("whoami", &e.fact_request(None)).unwrap_err();
    assert!(err.reason.contains("rate-limiting"), "{err}");
    // A later event on the same host without the 429 is held back too.
    let calm = Event::parse(&scope_event(&gh.uri()).to_string()).unwrap();
    assert!(p.fetch("whoami", &calm.fact_request(None)).is_err());
    assert_eq!(requests(&rt, &gh), 0);
    assert_eq!(p.stats.held_back.load(Ordering::Relaxed), 2);
}

#[test]
fn secrets_echoed_by_a_provider_never_reach_the_output() {
    let rt = Runtime::new().unwrap();
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(path("/user"))
            .respond_with(
                ResponseTemplate::new(401)
                    .set_body_json(json!({"message": format!("Bad credentials: {TOKEN}")})),
            )
            .mount(&s)
            .await;
        s
    });
    let p = live(&["127.0.0.1"], Duration::from_secs(2));
    let e = Event::parse(&scope_event(&server.uri()).to_string()).unwrap();
    let w = p.fetch("whoami", &e.fact_request(None)).unwrap();
    let text = w.to_string();
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
    let lib = library();
    let res = run(&lib, Some(&p), &scope_event(&server.uri()));
    assert!(!serde_json::to_string(&res).unwrap().contains(TOKEN));
}

#[test]
fn act_refresh_token_refreshes_verifies_and_returns_the_tokens_apart() {
    use wiremock::matchers::body_string_contains;
    const OLD_REFRESH: &str = "rt_OLD_refresh_secret_42";
    const NEW_ACCESS: &str = "gho_NEW_access_secret_43";
    let rt = Runtime::new().unwrap();
    let server = rt.block_on(async {
        let s = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/login/oauth/access_token"))
            .and(body_string_contains("grant_type=refresh_token"))
            .and(body_string_contains(OLD_REFRESH))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "access_token": NEW_ACCESS, "refresh_token": "rt_NEW_refresh_secret_44",
                "expires_in": 28800, "token_type": "bearer"
            })))
            .expect(1)
            .mount(&s)
            .await;
        Mock::given(method("GET"))
            .and(path("/user"))
            .and(header(
                "authorization",
                format!("Bearer {NEW_ACCESS}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"login": "octocat"})))
            .expect(1)
            .mount(&s)
            .await;
        s
    });
    let event = json!({
        "event_id": "act-1",
        "occurred_at": "2026-11-23T10:00:00Z",
        "phase": "request",
        "error": {"kind": "http", "status": 401, "message": "Bad credentials",
                  "headers": {"www-authenticate": "Bearer error=\"invalid_token\", error_description=\"The access token expired\""}},
        "connection": {
            "id": "conn_act", "provider": "github", "auth_type": "oauth2", "base_url": server.uri(),
            "oauth": {"client_id": "cid", "client_secret_set": true, "has_refresh_token": true,
                      "token_url": format!("{}/login/oauth/access_token", server.uri()),
                      "access_token_expires_at": "2026-11-23T09:00:00Z"},
            "secrets": {"access_token": TOKEN, "refresh_token": OLD_REFRESH, "client_secret": "cs_secret_45"}
        }
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_whyfail"))
        .args([
            "diagnose",
            "--act",
            "refresh_token",
            "--allow-host",
            "127.0.0.1",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(event.to_string().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let res: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        res["root_causes"][0]["id"], "access_token_expired",
        "{stdout}"
    );
    assert_eq!(res["acted"][0]["action"], "refresh_token");
    assert_eq!(res["acted"][0]["status"], "done", "{stdout}");
    assert_eq!(res["acted"][0]["verified"], true);
    assert_eq!(res["disposition"]["kind"], "retry");
    assert_eq!(res["new_credentials"]["access_token"], NEW_ACCESS);
    // The new and old secrets appear nowhere but in `new_credentials`.
    let mut rest = res.clone();
    rest.as_object_mut().unwrap().remove("new_credentials");
    let rest = rest.to_string();
    for s in [
        NEW_ACCESS,
        OLD_REFRESH,
        TOKEN,
        "cs_secret_45",
        "rt_NEW_refresh_secret_44",
    ] {
        assert!(!rest.contains(s), "{s} leaked: {rest}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains(s));
    }
    rt.block_on(server.verify());
}
