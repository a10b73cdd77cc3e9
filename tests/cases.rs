//! Runs every diagnosis case under `tests/cases/` through the built-in library.
//! The case format is documented in `tests/cases/README.md`.

use std::path::{Path, PathBuf};

mod common;

use common::case_files;
use serde_json::Value;
use whyfail_engine::{Options, diagnose_json};
use whyfail_providers::FixtureProvider;

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v.and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    })
}

/// Is `want` a subset of `got` (objects by key, everything else by equality)?
fn subset(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| subset(v, gv))),
        _ => want == got,
    }
}

fn check(case: &Value, res: &Value, raw: &str) -> Vec<String> {
    let exp = &case["expect"];
    let mut why = Vec::new();
    let first = |key: &str| {
        res[key]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|c| c["id"].as_str())
            .map(str::to_string)
    };
    let cause = first("root_causes");
    let action = first("actions");
    let status = res["status"].as_str().unwrap_or("");
    if let Some(s) = exp["status"].as_str()
        && s != status
    {
        why.push(format!("status {status} != {s}"));
    }
    if let Some(ok) = strings(exp.get("symptom")) {
        let got = res["symptom"]["id"].as_str().unwrap_or("none");
        if !ok.iter().any(|o| o == got) {
            why.push(format!("symptom {got} not in {ok:?}"));
        }
    }
    if let Some(ok) = strings(exp.get("root_cause")) {
        if ok.is_empty() {
            if status == "diagnosed" {
                why.push(format!("expected no diagnosis, got {cause:?}"));
            }
        } else if !cause.as_ref().is_some_and(|c| ok.contains(c)) || status != "diagnosed" {
            why.push(format!("root cause {cause:?} ({status}) not in {ok:?}"));
        }
    }
    if let Some(bad) = strings(exp.get("not_root_cause"))
        && status == "diagnosed"
        && cause.as_ref().is_some_and(|c| bad.contains(c))
    {
        why.push(format!("root cause {cause:?} is one it must not be"));
    }
    if let Some(ok) = strings(exp.get("action"))
        && !action.as_ref().is_some_and(|a| ok.contains(a))
    {
        why.push(format!("first action {action:?} not in {ok:?}"));
    }
    if let Some(list) = strings(exp.get("actions_include")) {
        let ids: Vec<&str> = res["actions"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["id"].as_str()).collect())
            .unwrap_or_default();
        for a in list {
            if !ids.contains(&a.as_str()) {
                why.push(format!("action {a} missing from {ids:?}"));
            }
        }
    }
    if let Some(ok) = strings(exp.get("disposition")) {
        let kind = res["disposition"]["kind"].as_str().unwrap_or("");
        if !ok.iter().any(|o| o == kind) {
            why.push(format!("disposition {kind} not in {ok:?}"));
        }
    }
    if let Some(n) = exp.get("retry_after")
        && &res["disposition"]["retry_after_seconds"] != n
    {
        why.push(format!(
            "retry_after_seconds {} != {n}",
            res["disposition"]["retry_after_seconds"]
        ));
    }
    if let Some(params) = exp.get("params").and_then(Value::as_object) {
        for (action_id, want) in params {
            let got = res["actions"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["id"] == action_id.as_str()))
                .map(|a| a["params"].clone());
            match got {
                Some(g) if subset(want, &g) => {}
                other => why.push(format!(
                    "params of {action_id}: {other:?} do not include {want}"
                )),
            }
        }
    }
    let secrets = case["event"]["connection"]["secrets"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for v in secrets.values().filter_map(Value::as_str) {
        for piece in [v, v.trim()] {
            if piece.len() >= 6 && raw.contains(piece) {
                why.push("a secret from connection.secrets appears in the output".into());
            }
        }
    }
    why
}

#[test]
fn every_case_diagnoses_as_expected() {
    let (lib, diags) = whyfail::load_library(&[] as &[PathBuf], true);
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "the built-in library has errors:\n{}",
        errors.join("\n")
    );

    let files = case_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases"));
    assert!(!files.is_empty(), "no cases found");
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let case: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let fixture = case.get("facts").map(|v| {
            FixtureProvider::from_json(v).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        });
        let opts = Options {
            provider: fixture.as_ref().map(|p| p as _),
            ..Options::default()
        };
        let res = diagnose_json(&lib, &case["event"].to_string(), &opts)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let raw = serde_json::to_string(&res).expect("serialise");
        let res: Value = serde_json::from_str(&raw).expect("reparse");
        let why = check(&case, &res, &raw);
        if !why.is_empty() {
            failures.push(format!(
                "{}: {}",
                f.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                    .unwrap_or(f)
                    .display(),
                why.join("; ")
            ));
        }
    }
    println!(
        "{} passed, {} failed",
        files.len() - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
