//! The `whyfail` binary end to end: diagnose (single, stdin, batch), check, schema, exit codes.

use std::io::Write;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

mod common;

fn whyfail(args: &[&str], stdin: Option<&str>) -> Output {
    whyfail_bytes(args, stdin.map(str::as_bytes))
}

fn whyfail_bytes(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = common::spawn_whyfail(args);
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(input) = stdin {
        pipe.write_all(input).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("wait")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn diagnoses_the_readme_example() {
    let o = whyfail(
        &["diagnose", "examples/events/refresh_token_expired.json"],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let res: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(res["event_id"], "evt_example_1");
    assert_eq!(res["status"], "diagnosed");
    assert!(
        res["playbook_set"]
            .as_str()
            .is_some_and(|h| h.starts_with("sha256:"))
    );
    assert!(!stdout(&o).contains("demo-refresh-token-value"));
}

#[test]
fn reads_stdin_and_renders_text_and_markdown() {
    let event = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/events/rate_limited.json"),
    )
    .expect("read");
    let text = whyfail(&["diagnose", "--format", "text", "-"], Some(&event));
    assert_eq!(text.status.code(), Some(0));
    assert!(
        stdout(&text).contains("root cause: rate_limited (confirmed)"),
        "{}",
        stdout(&text)
    );
    assert!(stdout(&text).contains("disposition: retry_after (120 s)"));
    let md = whyfail(
        &[
            "diagnose",
            "--format",
            "markdown",
            "--audience",
            "developer",
        ],
        Some(&event),
    );
    assert!(stdout(&md).contains("**Path**"), "{}", stdout(&md));
    let user = whyfail(
        &["diagnose", "--format", "markdown", "--audience", "user"],
        Some(&event),
    );
    assert!(!stdout(&user).contains("**Path**"));
}

#[test]
fn an_inconclusive_explanation_lists_the_candidates() {
    // A 401 on an API key whose text says nothing about why: expired or revoked, the event
    // cannot tell, and the panel must say so and name both.
    let event = r#"{"phase": "request", "error": {"status": 401, "message": "401 Unauthorized"},
        "connection": {"provider": "acme", "auth_type": "api_key", "base_url": "https://api.acme.io"}}"#;
    let json = whyfail(&["diagnose", "--offline", "-"], Some(event));
    let res: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(res["status"], "inconclusive", "{res}");
    let ids: Vec<&str> = res["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(ids.len() >= 2, "{res}");
    for audience in ["user", "support"] {
        let md = whyfail(
            &[
                "diagnose",
                "--offline",
                "--format",
                "markdown",
                "--audience",
                audience,
                "-",
            ],
            Some(event),
        );
        let out = stdout(&md);
        assert!(out.contains("**It may be one of these**"), "{out}");
        let shown = res["candidates"]
            .as_array()
            .expect("candidates")
            .iter()
            .filter(|c| {
                let t = c["title"].as_str().unwrap_or_default();
                out.contains(t.trim_end_matches('.'))
            })
            .count();
        assert_eq!(shown, ids.len(), "{audience}: {out}");
        assert_eq!(
            out.contains(ids[0]),
            audience == "support",
            "{audience}: {out}"
        );
    }
}

#[test]
fn batch_keeps_order_and_survives_bad_lines() {
    let o = whyfail(
        &["diagnose", "--batch", "examples/events/batch.jsonl"],
        None,
    );
    assert_eq!(o.status.code(), Some(0));
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["event_id"], "b1");
    assert_eq!(lines[0]["disposition"]["retry_after_seconds"], 30);
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[1]["error"]["code"], "invalid_event");
    assert!(
        lines[1]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("invalid JSON"))
    );
    assert_eq!(lines[2]["status"], "no_match");
    assert_eq!(lines[3]["root_causes"][0]["id"], "connection_in_use");
}

#[test]
fn batch_on_several_workers_writes_what_one_thread_writes_in_input_order() {
    // Many lines (more than the read-ahead window of 3 workers), mixing events that go through
    // different playbooks with bad, blank and non-UTF-8 lines.
    let mut input = Vec::new();
    for i in 0..500 {
        match i % 7 {
            0 => input.extend_from_slice(b"not json\n"),
            1 => input.extend_from_slice(b"   \n"),
            2 => input.extend_from_slice(b"{\"error\":{\"message\":\"\xff\"}}\n"),
            3 => input.extend_from_slice(
                format!("{{\"event_id\":\"e{i}\",\"error\":{{\"status\":429,\"headers\":{{\"retry-after\":\"{i}\"}}}}}}\n").as_bytes(),
            ),
            4 => input.extend_from_slice(
                format!("{{\"event_id\":\"e{i}\",\"error\":{{\"message\":\"getaddrinfo ENOTFOUND h{i}.example\"}}}}\n").as_bytes(),
            ),
            _ => input.extend_from_slice(
                format!("{{\"event_id\":\"e{i}\",\"error\":{{\"status\":401,\"message\":\"Bad credentials\"}}}}\n").as_bytes(),
            ),
        }
    }
    let one = whyfail_bytes(
        &["diagnose", "--batch", "--offline", "--jobs", "1", "-"],
        Some(&input),
    );
    let three = whyfail_bytes(
        &["diagnose", "--batch", "--offline", "--jobs", "3", "-"],
        Some(&input),
    );
    assert_eq!(one.status.code(), Some(0));
    assert_eq!(three.status.code(), Some(0));
    assert!(
        three.stderr.is_empty(),
        "no progress line when stderr is not a terminal"
    );
    assert_eq!(stdout(&one), stdout(&three));
    let lines: Vec<Value> = stdout(&three)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    // Blank lines give nothing; every other line one answer, in order.
    assert_eq!(lines.len(), 500 - 500 / 7 - 1);
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[1]["line"], 3);
    assert_eq!(lines[2]["event_id"], "e3");
    assert_eq!(lines[2]["disposition"]["retry_after_seconds"], 3);
    // Line 500 (499 % 7 == 2) is the non-UTF-8 one; e496 the last event.
    assert_eq!(lines[lines.len() - 1]["line"], 500);
    let last = lines.iter().rev().find_map(|l| l["event_id"].as_str());
    assert_eq!(last, Some("e496"));
}

#[test]
fn batch_answers_each_line_as_it_comes_when_fed_one_at_a_time() {
    // A platform keeping one `--batch -` process open and writing failures as they happen
    // must get each answer before it writes the next line (and before closing stdin).
    for jobs in ["1", "2"] {
        let mut child =
            common::spawn_whyfail(&["diagnose", "--batch", "--offline", "--jobs", jobs, "-"]);
        let mut input = child.stdin.take().expect("stdin");
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                if tx.send(line.expect("read stdout")).is_err() {
                    return;
                }
            }
        });
        for i in 0..3 {
            writeln!(
                input,
                r#"{{"event_id":"s{i}","error":{{"status":429,"headers":{{"retry-after":"{i}"}}}}}}"#
            )
            .expect("write stdin");
            input.flush().expect("flush stdin");
            let got = rx.recv_timeout(std::time::Duration::from_secs(60));
            let Ok(line) = got else {
                let _ = child.kill();
                panic!(
                    "--jobs {jobs}: no answer to line {} while stdin stays open",
                    i + 1
                );
            };
            let v: Value = serde_json::from_str(&line).expect("json");
            assert_eq!(v["event_id"], format!("s{i}"), "--jobs {jobs}");
        }
        drop(input);
        assert!(child.wait().expect("wait").success());
    }
}

#[test]
fn batch_survives_a_line_that_is_not_utf8() {
    let mut input = b"{\"error\":{\"status\":429}}\n".to_vec();
    input.extend_from_slice(b"{\"error\":{\"message\":\"\xff\xfe\"}}\n");
    input.extend_from_slice(b"{\"event_id\":\"last\",\"error\":{}}\n");
    let o = whyfail_bytes(&["diagnose", "--batch", "-"], Some(&input));
    assert_eq!(o.status.code(), Some(0));
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["line"], 2);
    assert!(
        lines[1]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("UTF-8"))
    );
    assert_eq!(lines[2]["event_id"], "last");
}

#[test]
fn a_bad_single_event_exits_1_with_a_message() {
    let o = whyfail(&["diagnose", "-"], Some(r#"{"event_id": "x"}"#));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing field `error`"));
    assert!(o.stdout.is_empty());
    let o = whyfail(&["diagnose", "does/not/exist.json"], None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn check_notes_causes_that_win_on_a_bare_status() {
    // A playbook whose only check reads the status: a bare 409 makes its cause the answer.
    // The same cause marked `fallback: true` is a declared generic reading and is not noted.
    let dir = std::env::temp_dir().join(format!("whyfail-status-only-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let playbook = |fallback: &str| {
        format!(
            "id: conflict_only\ntitle: The service answered conflict\npriority: 100\napplies_when: error?.status == 409\ncauses:\n  - id: provider_outage\n    title: The service is busy\n{fallback}    checks:\n      - id: is_conflict\n        expr: error.status == 409\n    actions: [retry_later]\n"
        )
    };
    std::fs::write(dir.join("conflict_only.yaml"), playbook("")).expect("write");
    let probe = |dir: &Path| {
        let o = whyfail(
            &["check", dir.to_str().expect("utf-8"), "--format", "json"],
            None,
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let report: Value = serde_json::from_slice(&o.stdout).expect("json");
        report["status_only"]
            .as_array()
            .expect("status_only")
            .clone()
    };
    let noted = probe(&dir);
    assert_eq!(noted.len(), 1, "{noted:?}");
    assert_eq!(noted[0]["cause"], "provider_outage");
    assert!(
        noted[0]["probes"]
            .as_array()
            .expect("probes")
            .iter()
            .all(|p| p.as_str().is_some_and(|p| p.starts_with("409/"))),
        "{noted:?}"
    );
    std::fs::write(
        dir.join("conflict_only.yaml"),
        playbook("    fallback: true\n"),
    )
    .expect("write");
    assert!(probe(&dir).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_passes_on_the_library_and_fails_on_broken_playbooks() {
    let ok = whyfail(&["check", "playbooks"], None);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = whyfail(
        &["check", "tests/playbooks/broken", "--format", "json"],
        None,
    );
    assert_eq!(bad.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&bad.stdout).expect("json");
    assert_eq!(report["ok"], false);
    let diags = report["diagnostics"].as_array().expect("array");
    assert!(diags.len() >= 14, "{}", diags.len());
    assert!(
        diags
            .iter()
            .all(|d| d["file"].as_str().is_some_and(|f| f.contains("broken"))
                && d["code"].is_string())
    );
}

#[test]
fn user_playbooks_override_and_extend_the_builtin_library() {
    let dir = std::env::temp_dir().join(format!("whyfail-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("conflict_only.yaml"),
        "id: teapot\ntitle: The server is a teapot\npriority: 500\napplies_when: error.status == 418\ncauses:\n  - id: teapot\n    title: Teapot\n    checks: [{id: is_418, expr: error.status == 418, evidence: 'It said 418'}]\n    actions: [retry_later]\n",
    )
    .expect("write");
    let o = whyfail(
        &["diagnose", "--playbooks", dir.to_str().expect("utf8"), "-"],
        Some(r#"{"error":{"status":418}}"#),
    );
    let res: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(res["symptom"]["id"], "teapot");
    assert_eq!(res["actions"][0]["id"], "retry_later");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn committed_schemas_are_current() {
    for kind in ["playbook", "event", "resolution"] {
        let o = whyfail(&["schema", kind], None);
        assert_eq!(o.status.code(), Some(0));
        let committed = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("schemas/{kind}.schema.json")),
        )
        .expect("read");
        assert!(
            stdout(&o) == committed,
            "schemas/{kind}.schema.json is stale: run `whyfail schema {kind} > schemas/{kind}.schema.json`"
        );
    }
}

#[test]
fn record_saves_a_replayable_test_without_secrets() {
    let dir = std::env::temp_dir().join(format!("whyfail-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let secret = "ghp_RecordedSecret0123456789";
    let event = serde_json::json!({
        "event_id": "rec-1",
        "occurred_at": "2026-11-23T10:00:00Z",
        "error": {"status": 403, "message": format!("Resource not accessible by integration (token {secret})")},
        "connection": {"id": "c1", "provider": "github", "auth_type": "oauth2",
                       "base_url": "https://api.github.com", "required_scopes": ["repo"],
                       "secrets": {"access_token": secret}}
    });
    let facts = dir.join("facts.json");
    std::fs::write(
        &facts,
        r#"{"whoami": {"endpoint": "https://api.github.com/user", "scopes": ["gist"], "authenticated": true}}"#,
    )
    .unwrap();
    let dest = dir.join("recorded.test.yaml");
    let args = [
        "diagnose",
        "--facts",
        facts.to_str().unwrap(),
        "--record",
        dest.to_str().unwrap(),
        "-",
    ];
    let out = whyfail(&args, Some(&event.to_string()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(res["root_causes"][0]["id"], "scope_missing");

    let text = std::fs::read_to_string(&dest).unwrap();
    assert!(!text.contains("RecordedSecret"), "{text}");
    assert!(
        text.contains("ghp_XxxxxxxxXxxxxx0000000000"),
        "shape kept: {text}"
    );
    assert!(text.contains("\"gist\""), "the fact is in the test: {text}");
    // Replayed offline by `whyfail test`, it gives the same answer.
    let replay = whyfail(&["test", dest.to_str().unwrap()], None);
    assert!(
        stdout(&replay).ends_with("1 passed, 0 failed\n"),
        "{}{}",
        stdout(&replay),
        String::from_utf8_lossy(&replay.stderr)
    );
    // Never overwrites.
    let again = whyfail(&args, Some(&event.to_string()));
    assert_eq!(again.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trace_shows_every_script_with_what_it_read_and_no_secret() {
    let secret = "sk_live_TraceSecret123456";
    let event = serde_json::json!({
        "error": {"status": 429, "message": format!("rate limited for key {secret}"), "headers": {"retry-after": "30"}},
        "connection": {"provider": "stripe", "auth_type": "api_key", "secrets": {"api_key": secret}}
    });
    let out = whyfail(
        &["diagnose", "--offline", "--trace", "-"],
        Some(&event.to_string()),
    );
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(!text.contains("TraceSecret"), "{text}");
    let res: Value = serde_json::from_str(&text).unwrap();
    let trace = res["trace"].as_array().unwrap();
    // Every playbook has its applies_when recorded (all of them are asked: every one that
    // applies has its say), and the one that answers is among those that matched.
    let tried: Vec<(&str, &str)> = trace
        .iter()
        .filter(|t| t["kind"] == "applies_when")
        .map(|t| {
            (
                t["playbook"].as_str().unwrap(),
                t["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(tried.len() >= 2, "{tried:?}");
    assert!(tried.contains(&("rate_limited", "matched")), "{tried:?}");
    // And the ranking says why the answer is first.
    assert!(
        trace
            .iter()
            .any(|t| t["kind"] == "rank" && t["node"] == "rate_limited" && t["outcome"] == "#1"),
        "{trace:?}"
    );
    let check = trace
        .iter()
        .find(|t| t["node"] == "limit_signalled")
        .expect("the rate-limit check is traced");
    assert_eq!(check["outcome"], "pass");
    assert_eq!(check["reads"]["error.status"], 429);
    assert!(
        check["script"]
            .as_str()
            .unwrap()
            .contains("error.status == 429")
    );
    assert!(check["micros"].is_u64());
    // Without --trace there is no trace at all.
    let plain = whyfail(&["diagnose", "--offline", "-"], Some(&event.to_string()));
    let res: Value = serde_json::from_str(&stdout(&plain)).unwrap();
    assert!(res.get("trace").is_none());
    // The text listing.
    let listing = whyfail(
        &["diagnose", "--offline", "--trace", "--format", "text", "-"],
        Some(&event.to_string()),
    );
    let listing = stdout(&listing);
    assert!(
        listing.contains("[pass] rate_limited/limit_signalled (check,"),
        "{listing}"
    );
    assert!(listing.contains("read  error.status = 429"), "{listing}");
    assert!(!listing.contains("TraceSecret"));
}
