//! The committed JSON Schemas say what the binary really reads and writes: every event under
//! `tests/cases/` validates against `schemas/event.schema.json`, and every resolution the
//! binary produces for them (plain, and with the trace for developers) against
//! `schemas/resolution.schema.json`.

use std::io::Write;
use std::path::Path;

mod common;

use serde_json::Value;

fn schema(kind: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("schemas/{kind}.schema.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&json).unwrap_or_else(|e| panic!("{kind} schema: {e}"))
}

/// Every case's event, with the file it came from.
fn case_events() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let files = common::case_files(&dir);
    assert!(files.len() > 100, "cases not found");
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("read case");
            let case: Value = serde_json::from_str(&text).expect("case is JSON");
            let name = f.strip_prefix(&dir).unwrap_or(f).display().to_string();
            (name, case["event"].clone())
        })
        .collect()
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at `{}`", e, e.instance_path()))
        .collect()
}

#[test]
fn every_case_event_validates_against_the_event_schema() {
    let v = schema("event");
    let mut bad = Vec::new();
    for (name, event) in case_events() {
        let e = errors(&v, &event);
        if !e.is_empty() {
            bad.push(format!("{name}: {}", e.join("; ")));
        }
    }
    assert!(
        bad.is_empty(),
        "{} events do not validate:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn scopes_as_a_list_or_a_string_both_validate() {
    let v = schema("event");
    for scopes in [
        serde_json::json!(["repo", "read:org"]),
        serde_json::json!("repo, read:org"),
    ] {
        let event = serde_json::json!({"error": {}, "connection": {"granted_scopes": scopes, "required_scopes": scopes}});
        assert!(errors(&v, &event).is_empty(), "{event}");
    }
    let event = serde_json::json!({"error": {}, "connection": {"granted_scopes": 3}});
    assert!(!errors(&v, &event).is_empty(), "a number is not scopes");
}

#[test]
fn every_resolution_the_binary_produces_validates_against_the_resolution_schema() {
    let v = schema("resolution");
    let events = case_events();
    let input: String = events.iter().map(|(_, e)| format!("{e}\n")).collect();
    for extra in [&[][..], &["--trace", "--audience", "developer"][..]] {
        let mut args = vec!["diagnose", "--batch", "--offline"];
        args.extend_from_slice(extra);
        args.push("-");
        let mut child = common::spawn_whyfail(&args);
        let mut stdin = child.stdin.take().expect("stdin");
        let data = input.clone();
        let writer = std::thread::spawn(move || stdin.write_all(data.as_bytes()));
        let out = child.wait_with_output().expect("wait");
        writer.join().expect("writer").expect("write events");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), events.len(), "one resolution per event");
        let mut bad = Vec::new();
        for ((name, _), line) in events.iter().zip(lines) {
            let res: Value = serde_json::from_str(line).expect("resolution is JSON");
            let e = errors(&v, &res);
            if !e.is_empty() {
                bad.push(format!("{name} {extra:?}: {}", e.join("; ")));
            }
        }
        assert!(
            bad.is_empty(),
            "{} resolutions do not validate:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }
}
