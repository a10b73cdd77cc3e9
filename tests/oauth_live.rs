//! Live OAuth checks end to end: the `whyfail` binary against a real authorization server
//! (oidc-provider on loopback, `providers/tests/oidc`), which counts what it is asked. A vague
//! refresh failure is settled by the client check (wrong secret: invalid_client_credentials;
//! right secret: the client is ruled out and the walk goes on to the refresh token); a revoked
//! access token is found inactive by introspection; a burst on one connection makes one client
//! check; and no diagnosis ever runs a refresh_token grant.
//!
//! Runs when the server is installed (`npm ci` in providers/tests/oidc) or required
//! (`WHYFAIL_REQUIRE_OIDC=1`, as in CI); otherwise the tests are reported as ignored.

// `allow-unwrap-in-tests` covers `#[test]` functions only, not this file's helpers.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// Known to providers/tests/oidc/server.mjs.
const CLIENT_ID: &str = "whyfail-test";
const SECRET: &str = "whyfail-test-secret-0123456789";
const WRONG_SECRET: &str = "wrong-secret-Zq81xVb3";
const REFRESH: &str = "rt-of-another-server-Hk29Pw";

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `cmd` with piped stdio and waits for its first stdout line (a JSON object).
fn spawn_with_line(mut cmd: Command, what: &str) -> (Killed, Value) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = err_pipe.read_to_string(&mut buf);
        sink.lock().unwrap().push_str(&buf);
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let child = Killed(child);
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    match serde_json::from_str::<Value>(&line) {
        Ok(v) => (child, v),
        Err(_) => {
            std::thread::sleep(Duration::from_millis(200));
            panic!(
                "{what} did not start (stdout: {line:?}); stderr:\n{}",
                stderr.lock().unwrap()
            )
        }
    }
}

/// The authorization server and its issuer URL. A server that cannot start is a failure,
/// never a silent pass: these tests only run when it is installed or required.
fn start_oidc() -> (Killed, String) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("providers/tests/oidc");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "the real OAuth server is required (WHYFAIL_REQUIRE_OIDC=1) but {} has no \
         node_modules: run `npm ci` there",
        dir.display()
    );
    let mut cmd = Command::new("node");
    cmd.arg("server.mjs").arg("0").current_dir(&dir);
    let (child, v) = spawn_with_line(cmd, "the oidc server");
    (child, v["issuer"].as_str().unwrap().to_string())
}

/// What the server saw: `requests` per "METHOD /path", `grants` per grant_type.
fn stats(issuer: &str) -> Value {
    let origin = issuer.trim_end_matches("/oidc");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = reqwest::get(format!("{origin}/_stats")).await.unwrap();
        serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).unwrap()
    })
}

fn count(v: &Value, section: &str, key: &str) -> u64 {
    v[section][key].as_u64().unwrap_or(0)
}

/// A token from the server by client credentials, without any of whyfail's code.
fn client_credentials(issuer: &str) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{issuer}/token"))
            .basic_auth(CLIENT_ID, Some(SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=api")
            .send()
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        v["access_token"].as_str().unwrap().to_string()
    })
}

/// Revokes a token at the server's revocation endpoint (RFC 7009).
fn revoke(issuer: &str, token: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{issuer}/token/revocation"))
            .basic_auth(CLIENT_ID, Some(SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}&token_type_hint=access_token"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "revocation: {}", r.status());
    });
}

/// The refresh: "Token request failed", HTTP 400, no body, against this server.
fn vague_refresh(issuer: &str, secret: &str) -> Value {
    json!({
        "event_id": "oauth-live-refresh",
        "phase": "token_refresh",
        "error": {"kind": "http", "status": 400, "message": "Token request failed"},
        "connection": {
            "id": "conn_oidc", "provider": "generic", "auth_type": "oauth2",
            "oauth": {"client_id": CLIENT_ID, "issuer": issuer, "token_url": format!("{issuer}/token"),
                      "has_refresh_token": true, "client_secret_set": true},
            "secrets": {"refresh_token": REFRESH, "client_secret": secret}
        }
    })
}

fn diagnose(args: &[&str], event: &Value) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_whyfail"))
        .arg("diagnose")
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(event.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    for s in [SECRET, WRONG_SECRET, REFRESH] {
        assert!(!stdout.contains(s), "a secret in the output: {stdout}");
    }
    serde_json::from_str(&stdout).unwrap_or_else(|_| {
        panic!(
            "not a resolution: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Live checks on, loopback allowed; a generous deadline, as CI runs these unoptimised.
const LIVE: &[&str] = &["--allow-host", "127.0.0.1", "--deadline", "10000"];

fn step<'a>(res: &'a Value, node: &str) -> &'a Value {
    res["path"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"] == node)
        .unwrap_or_else(|| panic!("no `{node}` on the path: {res}"))
}

#[test]
#[cfg_attr(
    not(oidc_server),
    ignore = "needs the real OAuth server: run `npm ci` in providers/tests/oidc (CI sets WHYFAIL_REQUIRE_OIDC=1)"
)]
fn a_wrong_client_secret_is_confirmed_by_the_client_check() {
    let (_server, issuer) = start_oidc();
    let res = diagnose(LIVE, &vague_refresh(&issuer, WRONG_SECRET));
    assert_eq!(res["status"], "diagnosed", "{res:#}");
    assert_eq!(res["root_causes"][0]["id"], "invalid_client_credentials");
    assert_eq!(res["root_causes"][0]["confidence"], "confirmed");
    let evidence = res["root_causes"][0]["evidence"].to_string();
    assert!(
        evidence.contains("Checked at the provider just now")
            && evidence.contains("invalid_client"),
        "{evidence}"
    );
    let check = step(&res, "client_rejected");
    assert_eq!(check["outcome"], "pass");
    assert_eq!(check["live"], true);
    assert!(res.get("settled_by").is_none(), "online: {res:#}");

    let seen = stats(&issuer);
    // One client check (an authorization_code grant with a code that cannot exist), after one
    // discovery; never a refresh.
    assert_eq!(count(&seen, "grants", "authorization_code"), 1, "{seen}");
    assert_eq!(count(&seen, "grants", "refresh_token"), 0, "{seen}");
    assert_eq!(
        count(&seen, "requests", "GET /.well-known/openid-configuration"),
        1,
        "{seen}"
    );
}

#[test]
#[cfg_attr(
    not(oidc_server),
    ignore = "needs the real OAuth server: run `npm ci` in providers/tests/oidc (CI sets WHYFAIL_REQUIRE_OIDC=1)"
)]
fn a_right_client_secret_rules_the_client_out_and_the_walk_goes_on() {
    let (_server, issuer) = start_oidc();
    let res = diagnose(LIVE, &vague_refresh(&issuer, SECRET));
    let ruled_out = step(&res, "invalid_client_credentials");
    assert_eq!(ruled_out["outcome"], "ruled_out", "{res:#}");
    assert!(
        ruled_out["detail"]
            .as_str()
            .unwrap()
            .contains("accepts the client ID and secret"),
        "{ruled_out}"
    );
    assert_eq!(step(&res, "client_rejected")["live"], true);
    // The walk went on: the refusal is about the refresh token.
    assert_eq!(res["status"], "diagnosed", "{res:#}");
    assert_eq!(res["root_causes"][0]["id"], "refresh_token_expired");
    assert_eq!(res["root_causes"][0]["confidence"], "likely");
    assert_eq!(res["actions"][0]["id"], "reconnect");
    let ids: Vec<&str> = res["root_causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(!ids.contains(&"invalid_client_credentials"), "{ids:?}");

    let seen = stats(&issuer);
    assert_eq!(count(&seen, "grants", "authorization_code"), 1, "{seen}");
    assert_eq!(count(&seen, "grants", "refresh_token"), 0, "{seen}");
}

#[test]
#[cfg_attr(
    not(oidc_server),
    ignore = "needs the real OAuth server: run `npm ci` in providers/tests/oidc (CI sets WHYFAIL_REQUIRE_OIDC=1)"
)]
fn a_revoked_access_token_is_found_inactive_by_introspection() {
    let (_server, issuer) = start_oidc();
    let token = client_credentials(&issuer);
    revoke(&issuer, &token);
    let valid_until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(600);
    let event = json!({
        "event_id": "oauth-live-revoked",
        "phase": "request",
        "error": {"kind": "http", "status": 401, "message": "Unauthorized"},
        "connection": {
            "id": "conn_oidc_api", "provider": "generic", "auth_type": "oauth2",
            "base_url": "http://127.0.0.1:9/api",
            "oauth": {"client_id": CLIENT_ID, "issuer": issuer, "token_url": format!("{issuer}/token"),
                      "has_refresh_token": true, "access_token_expires_at": valid_until.to_string()},
            "secrets": {"access_token": token, "refresh_token": REFRESH, "client_secret": SECRET}
        }
    });
    let offline = diagnose(&["--offline"], &event);
    assert_ne!(offline["root_causes"][0]["id"], "access_revoked");
    assert!(
        offline["settled_by"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["fact"] == "oauth.introspection"
                && s["would_settle"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("access_revoked"))),
        "{offline:#}"
    );
    assert_eq!(
        count(&stats(&issuer), "requests", "POST /token/introspection"),
        0
    );

    let res = diagnose(LIVE, &event);
    assert!(!res.to_string().contains(&token), "the token in the output");
    assert_eq!(res["root_causes"][0]["id"], "access_revoked", "{res:#}");
    assert_eq!(res["root_causes"][0]["confidence"], "confirmed");
    assert!(
        res["root_causes"][0]["evidence"]
            .to_string()
            .contains("no longer active"),
        "{res:#}"
    );
    assert_eq!(step(&res, "token_expired")["outcome"], "fail");
    let seen = stats(&issuer);
    assert_eq!(
        count(&seen, "requests", "POST /token/introspection"),
        1,
        "{seen}"
    );
    assert_eq!(count(&seen, "grants", "refresh_token"), 0, "{seen}");
}

#[test]
#[cfg_attr(
    not(oidc_server),
    ignore = "needs the real OAuth server: run `npm ci` in providers/tests/oidc (CI sets WHYFAIL_REQUIRE_OIDC=1)"
)]
fn a_burst_on_one_connection_makes_one_client_check() {
    let (_server, issuer) = start_oidc();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_whyfail"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--allow-host",
        "127.0.0.1",
        "--no-watch",
        "--concurrency",
        "128",
        "--deadline",
        "10000",
        "--request-timeout",
        "60000",
    ])
    .env_remove("WHYFAIL_TOKEN");
    let (_serve, line) = spawn_with_line(cmd, "whyfail serve");
    let base = format!("http://{}", line["listening"].as_str().unwrap());
    let event = vague_refresh(&issuer, WRONG_SECRET).to_string();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let answers: Vec<Value> = rt.block_on(async {
        let client = reqwest::Client::new();
        let calls = (0..100).map(|_| {
            let (client, base, event) = (client.clone(), base.clone(), event.clone());
            tokio::spawn(async move {
                let r = client
                    .post(format!("{base}/v1/diagnose"))
                    .header("content-type", "application/json")
                    .body(event)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).unwrap()
            })
        });
        let mut out = Vec::new();
        for c in calls.collect::<Vec<_>>() {
            out.push(c.await.unwrap());
        }
        out
    });
    for a in &answers {
        assert_eq!(
            a["root_causes"][0]["id"], "invalid_client_credentials",
            "{a:#}"
        );
    }
    let seen = stats(&issuer);
    assert_eq!(
        count(&seen, "grants", "authorization_code"),
        1,
        "one client check for 100 diagnoses: {seen}"
    );
    assert_eq!(
        count(&seen, "requests", "GET /.well-known/openid-configuration"),
        1,
        "{seen}"
    );
    assert_eq!(count(&seen, "grants", "refresh_token"), 0, "{seen}");
}
