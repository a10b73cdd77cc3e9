//! The authoring workflow end to end, through the built binary: the worked example of
//! `docs/authoring.md` from an empty folder to a diagnosis (its files are read from the guide
//! itself, so the guide cannot drift from what works), the test runner's failure report, its
//! JSON, JUnit and coverage outputs, `graph`, and the guide's field table against the schema.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn whyfail(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_whyfail"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run whyfail")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn last_line(o: &Output) -> String {
    out(o).lines().last().unwrap_or("").to_string()
}

/// A fresh, empty folder under the system's temp dir (no extra crates: pid + time + tag).
fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "whyfail-authoring-{tag}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn guide() -> String {
    std::fs::read_to_string(Path::new(REPO).join("docs/authoring.md")).expect("read the guide")
}

/// The fenced block of the guide whose info string names `file` (```yaml my-playbooks/x.yaml).
fn guide_file(file: &str) -> String {
    let doc = guide();
    let mut lines = doc.lines();
    while let Some(l) = lines.next() {
        if l.starts_with("```") && l.split_whitespace().nth(1) == Some(file) {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            return body.join("\n") + "\n";
        }
    }
    panic!("docs/authoring.md has no block for {file}");
}

/// Sets up the finished worked example in a fresh folder.
fn trello_folder(tag: &str) -> PathBuf {
    let dir = temp_dir(tag);
    let pb = dir.join("my-playbooks");
    std::fs::create_dir_all(&pb).expect("mkdir");
    for f in [
        "my-playbooks/trello_token_invalid.yaml",
        "my-playbooks/trello_token_invalid.test.yaml",
        "event.json",
    ] {
        std::fs::write(dir.join(f), guide_file(f)).expect("write");
    }
    dir
}

#[test]
fn worked_example_from_an_empty_folder() {
    let dir = temp_dir("worked");
    let pb = dir.join("my-playbooks");

    // 1. Scaffold: both files, and they pass check and test before any edit.
    let o = whyfail(
        &dir,
        &["new", "trello_token_invalid", "--dir", "my-playbooks"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(pb.join("trello_token_invalid.yaml").is_file());
    assert!(pb.join("trello_token_invalid.test.yaml").is_file());
    let o = whyfail(&dir, &["check", "my-playbooks"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let o = whyfail(&dir, &["test", "my-playbooks"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(last_line(&o).ends_with(" passed, 0 failed"), "{}", out(&o));

    // 2. The author's edit, with a mistake: check points at the file, line and column, with a hint.
    let playbook = guide_file("my-playbooks/trello_token_invalid.yaml");
    let broken = playbook.replacen("actions: [reconnect]", "actions: [reconect]", 1);
    assert_ne!(broken, playbook, "the guide's playbook changed shape");
    let line = broken
        .lines()
        .position(|l| l.contains("[reconect]"))
        .map(|i| i + 1)
        .expect("the mistake");
    let col = broken
        .lines()
        .nth(line - 1)
        .and_then(|l| l.find("reconect"))
        .map(|c| c + 1)
        .expect("column");
    std::fs::write(pb.join("trello_token_invalid.yaml"), &broken).expect("write");
    let o = whyfail(&dir, &["check", "my-playbooks"]);
    assert_eq!(o.status.code(), Some(1));
    let want = format!(
        "my-playbooks/trello_token_invalid.yaml:{line}:{col}: error[unknown_action]: unknown action `reconect`"
    );
    assert!(err(&o).contains(&want), "want {want} in\n{}", err(&o));
    assert!(
        err(&o).contains("hint: did you mean `reconnect`?"),
        "{}",
        err(&o)
    );

    // 3. Fixed: check is clean.
    std::fs::write(pb.join("trello_token_invalid.yaml"), &playbook).expect("write");
    let o = whyfail(&dir, &["check", "my-playbooks"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));

    // 4. The guide's tests pass.
    std::fs::write(
        pb.join("trello_token_invalid.test.yaml"),
        guide_file("my-playbooks/trello_token_invalid.test.yaml"),
    )
    .expect("write");
    let o = whyfail(&dir, &["test", "my-playbooks"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(last_line(&o), "4 passed, 0 failed", "{}", out(&o));

    // 5. diagnose uses the new playbook for a Trello 401 "invalid token".
    std::fs::write(dir.join("event.json"), guide_file("event.json")).expect("write");
    let o = whyfail(
        &dir,
        &[
            "diagnose",
            "--offline",
            "--playbooks",
            "my-playbooks",
            "event.json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let res: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(res["symptom"]["id"], "trello_token_invalid");
    assert_eq!(res["root_causes"][0]["id"], "api_key_revoked");
    assert_eq!(res["root_causes"][0]["confidence"], "confirmed");
    assert_eq!(res["actions"][0]["id"], "reconnect");
    let event: Value = serde_json::from_str(&guide_file("event.json")).expect("event");
    for secret in event["connection"]["secrets"]
        .as_object()
        .expect("the example has secrets")
        .values()
    {
        assert!(!out(&o).contains(secret.as_str().expect("text")));
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn new_refuses_to_overwrite_and_checks_the_name() {
    let dir = temp_dir("new");
    let o = whyfail(&dir, &["new", "acme_key_rejected", "--dir", "pb"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let before = std::fs::read_to_string(dir.join("pb/acme_key_rejected.yaml")).expect("read");
    let o = whyfail(&dir, &["new", "acme_key_rejected", "--dir", "pb"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("already exists"), "{}", err(&o));
    let after = std::fs::read_to_string(dir.join("pb/acme_key_rejected.yaml")).expect("read");
    assert_eq!(before, after);
    for bad in ["Acme", "acme-key", "1acme", ""] {
        let o = whyfail(&dir, &["new", bad, "--dir", "pb"]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(err(&o).contains("snake_case"), "{}", err(&o));
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_failing_test_names_the_deciding_check_and_hides_secrets() {
    let dir = trello_folder("failing");
    let tests = dir.join("my-playbooks/trello_token_invalid.test.yaml");
    let text = std::fs::read_to_string(&tests).expect("read");
    let wrong = text.replacen(
        "      root_cause: api_key_revoked\n",
        "      root_cause: api_key_expired\n",
        1,
    );
    assert_ne!(wrong, text);
    // A token pasted into the error message must not come back in the report.
    let secret = "ATTAsecret0123456789abcdef";
    let wrong = wrong.replacen(
        "        body: invalid token\n",
        &format!(
            "        body: invalid token\n        message: \"401 Unauthorized for token {secret}\"\n"
        ),
        1,
    );
    let wrong = wrong.replacen(
        "        last_success_at: \"2026-11-20T08:00:00Z\"\n",
        &format!(
            "        last_success_at: \"2026-11-20T08:00:00Z\"\n        secrets: {{access_token: {secret}}}\n"
        ),
        1,
    );
    std::fs::write(&tests, wrong).expect("write");
    let o = whyfail(&dir, &["test", "my-playbooks"]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("FAILED my-playbooks/trello_token_invalid.test.yaml::invalid_token"),
        "{text}"
    );
    assert!(
        text.contains("expected root_cause: api_key_expired, got api_key_revoked"),
        "{text}"
    );
    assert!(
        text.contains(
            "check `trello_says_expired` (require): fail — Trello did not say the token expired"
        ),
        "{text}"
    );
    assert!(
        text.contains("read error.body = \"invalid token\""),
        "{text}"
    );
    assert!(text.contains("[redacted]"), "{text}");
    assert!(!text.contains(secret), "{text}");
    assert_eq!(last_line(&o), "3 passed, 1 failed");

    // The same run as JSON and JUnit XML.
    let o = whyfail(
        &dir,
        &[
            "test",
            "my-playbooks",
            "--format",
            "json",
            "--junit",
            "junit.xml",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(report["passed"], 3);
    assert_eq!(report["failed"], 1);
    let failed: Vec<&Value> = report["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .filter(|t| t["ok"] == false)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["name"], "invalid_token");
    assert_eq!(failed[0]["failures"][0]["expect"], "root_cause");
    assert_eq!(failed[0]["failures"][0]["got"], "api_key_revoked");
    assert!(
        failed[0]["decisions"]
            .as_array()
            .expect("decisions")
            .iter()
            .any(|d| d["node"] == "trello_says_expired" && d["outcome"] == "fail")
    );
    assert!(!out(&o).contains(secret));
    let xml = std::fs::read_to_string(dir.join("junit.xml")).expect("junit written");
    assert_well_formed(&xml);
    assert!(xml.contains("<testsuites name=\"whyfail\" tests=\"4\" failures=\"1\""));
    assert_eq!(xml.matches("<testcase ").count(), 4);
    assert_eq!(xml.matches("<failure ").count(), 1);
    assert!(!xml.contains(secret));
    std::fs::remove_dir_all(&dir).ok();
}

/// A small XML well-formedness check (balanced tags, quoted attributes, known entities), enough
/// to know a CI system's parser will accept the file; no XML crate needed.
fn assert_well_formed(xml: &str) {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .expect("XML declaration");
    let mut stack: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find(['<', '&']) {
        let text = &rest[..i];
        assert!(!text.contains('>'), "stray `>` in text: {text}");
        rest = &rest[i..];
        if rest.starts_with('&') {
            let end = rest.find(';').expect("entity end");
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&&rest[..=end]),
                "unknown entity {}",
                &rest[..=end]
            );
            rest = &rest[end + 1..];
            continue;
        }
        let end = rest.find('>').expect("tag end");
        let tag = &rest[1..end];
        assert!(
            tag.matches('"').count().is_multiple_of(2) && !tag.contains('<'),
            "bad tag {tag}"
        );
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "unbalanced </{name}>");
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap_or("");
            stack.push(name.to_string());
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

#[test]
fn coverage_lists_what_no_test_reaches() {
    let dir = trello_folder("coverage");
    let tests = dir.join("my-playbooks/trello_token_invalid.test.yaml");
    let text = std::fs::read_to_string(&tests).expect("read");
    // Keep only the first test: the expired cause's check is never evaluated, and its
    // confirming test is gone, but the cause itself is still visited (ruled out).
    let first_only = text
        .split("\n  - name: expired_token")
        .next()
        .expect("split")
        .to_string();
    std::fs::write(&tests, first_only).expect("write");
    let o = whyfail(&dir, &["test", "my-playbooks", "--coverage"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(last_line(&o), "1 passed, 0 failed");
    assert!(out(&o).contains("coverage of 1 playbooks"), "{}", out(&o));

    // A playbook with no test at all: every cause, check and action is unreached.
    std::fs::remove_file(&tests).expect("rm");
    let o = whyfail(&dir, &["test", "my-playbooks", "--coverage"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        out(&o).contains(
            "not reached: my-playbooks/trello_token_invalid.yaml: cause `api_key_expired`"
        ),
        "{}",
        out(&o)
    );
    assert!(
        out(&o).contains("check `trello_says_expired` (cause `api_key_expired`)"),
        "{}",
        out(&o)
    );
    assert!(
        out(&o).contains("action `check_authorized_apps`"),
        "{}",
        out(&o)
    );
    assert_eq!(last_line(&o), "0 passed, 0 failed");
    let o = whyfail(
        &dir,
        &["test", "my-playbooks", "--coverage", "--deny-unreached"],
    );
    assert_eq!(o.status.code(), Some(1));
    let o = whyfail(
        &dir,
        &["test", "my-playbooks", "--coverage", "--format", "json"],
    );
    let report: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(report["coverage"]["causes"]["reached"], 0);
    assert_eq!(report["coverage"]["causes"]["total"], 2);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_broken_test_file_is_reported_with_its_position() {
    let dir = trello_folder("broken");
    std::fs::write(
        dir.join("my-playbooks/typo.test.yaml"),
        "tests:\n  - name: one\n    event: {error: {status: 401}}\n    expect:\n      root_casue: api_key_revoked\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("my-playbooks/ids.test.yaml"),
        "tests:\n  - name: one\n    event: {error: {status: 401}}\n    expect:\n      not_on_path: [api_key_revokd]\n",
    )
    .expect("write");
    let o = whyfail(&dir, &["test", "my-playbooks"]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "my-playbooks/typo.test.yaml:5:7: error[unknown_field]: unknown field `root_casue`"
        ),
        "{text}"
    );
    assert!(text.contains("did you mean `root_cause`?"), "{text}");
    assert!(
        text.contains("my-playbooks/ids.test.yaml:5:21: error[dangling_reference]"),
        "{text}"
    );
    assert!(text.contains("did you mean `api_key_revoked`?"), "{text}");
    assert_eq!(last_line(&o), "4 passed, 2 failed");
    let o = whyfail(&dir, &["test", "no/such/dir"]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn graph_draws_the_playbook_and_the_path_of_an_event() {
    let dir = trello_folder("graph");
    let pb = "my-playbooks/trello_token_invalid.yaml";
    let o = whyfail(&dir, &["graph", pb]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let m = out(&o);
    assert!(m.starts_with("flowchart TD\n"), "{m}");
    assert!(m.contains("symptom_trello_token_invalid([\""), "{m}");
    assert!(m.contains("cause_api_key_revoked[\""), "{m}");
    assert!(m.contains("check_trello_says_expired{{\""), "{m}");
    assert!(m.contains("action_reconnect(\""), "{m}");
    assert!(
        m.contains("cause_api_key_revoked -.->|support| check_token_worked_before"),
        "{m}"
    );
    assert!(!m.contains("classDef"), "no highlight without an event");

    let o = whyfail(&dir, &["graph", pb, "--event", "event.json"]);
    let m = out(&o);
    assert!(m.contains("class cause_api_key_revoked confirmed"), "{m}");
    assert!(m.contains("class cause_api_key_expired ruled_out"), "{m}");
    assert!(m.contains("linkStyle "), "{m}");

    let o = whyfail(
        &dir,
        &["graph", pb, "--format", "dot", "--event", "event.json"],
    );
    let d = out(&o);
    assert!(d.starts_with("digraph \"trello_token_invalid\" {"), "{d}");
    assert!(d.contains("cause_api_key_revoked [shape=box"), "{d}");
    assert!(d.contains("fillcolor=\"#c8e6c9\""), "{d}");
    assert!(d.trim_end().ends_with('}'));

    // SVG needs Graphviz: either it renders, or the error says what is missing.
    let o = whyfail(&dir, &["graph", pb, "--format", "svg"]);
    match o.status.code() {
        Some(0) => assert!(out(&o).contains("<svg"), "{}", out(&o)),
        _ => assert!(err(&o).contains("Graphviz"), "{}", err(&o)),
    }
    // A built-in playbook by id.
    let o = whyfail(&dir, &["graph", "rate_limited"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(out(&o).contains("cause_quota_exhausted"));
    let o = whyfail(&dir, &["graph", "no_such_playbook"]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_standard_library_tests_pass_and_reach_every_cause() {
    let repo = Path::new(REPO);
    let o = whyfail(
        repo,
        &["test", "playbooks", "--coverage", "--deny-unreached"],
    );
    let text = out(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        text.lines()
            .filter(|l| !l.starts_with("ok "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(last_line(&o).ends_with(" passed, 0 failed"), "{text}");
    assert!(!text.contains("not reached"), "{text}");
    // Every shipped playbook has its test file.
    for f in std::fs::read_dir(repo.join("playbooks")).expect("ls") {
        let p = f.expect("entry").path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".yaml") && !name.ends_with(".test.yaml") && name != "actions.yaml" {
            assert!(
                p.with_extension("test.yaml").is_file(),
                "{name} has no test file"
            );
        }
    }
    // Test files are neither embedded in the binary nor loaded from a folder as playbooks.
    let o = whyfail(repo, &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = whyfail(repo, &["check", "playbooks", "--deny-warnings"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}

/// Every property path of `schemas/playbook.schema.json` (`causes[].checks[].role`, ...).
fn schema_paths(schema: &Value, node: &Value, prefix: &str, out: &mut Vec<String>) {
    let resolve = |v: &Value| -> Option<Value> {
        let r = v["$ref"].as_str()?;
        let name = r.rsplit('/').next()?;
        Some(schema["definitions"][name].clone())
    };
    let Some(props) = node["properties"].as_object() else {
        return;
    };
    for (name, p) in props {
        let path = format!("{prefix}{name}");
        out.push(path.clone());
        // A property is an object (via $ref, maybe inside anyOf for nullable) or a list of them.
        let mut candidates = vec![p.clone()];
        candidates.extend(p["anyOf"].as_array().cloned().unwrap_or_default());
        candidates.extend(p["allOf"].as_array().cloned().unwrap_or_default());
        for c in candidates {
            if let Some(def) = resolve(&c) {
                schema_paths(schema, &def, &format!("{path}."), out);
            }
            if let Some(def) = resolve(&c["items"]) {
                schema_paths(schema, &def, &format!("{path}[]."), out);
            }
        }
    }
}

#[test]
fn the_guide_lists_every_playbook_field() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(REPO).join("schemas/playbook.schema.json"))
            .expect("read schema"),
    )
    .expect("schema json");
    let mut paths = Vec::new();
    schema_paths(&schema, &schema, "", &mut paths);
    assert!(
        paths.contains(&"causes[].checks[].role".to_string()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"inconclusive.disposition.kind".to_string()),
        "{paths:?}"
    );
    let doc = guide();
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !doc.contains(&format!("| `{p}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/authoring.md's field table lacks: {missing:?}"
    );
}

#[test]
fn the_guides_picture_is_what_graph_draws() {
    let repo = Path::new(REPO);
    let o = whyfail(
        repo,
        &[
            "graph",
            "rate_limited",
            "--event",
            "examples/events/rate_limited.json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let doc = guide();
    let block = doc
        .split("```mermaid\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a mermaid block in docs/authoring.md");
    assert_eq!(
        block,
        out(&o),
        "docs/authoring.md's picture is stale: replace its ```mermaid block with the output of `whyfail graph rate_limited --event examples/events/rate_limited.json`"
    );
}
