//! Runs every diagnosis case under `tests/cases/` through the built-in library.
//! The case format is documented in `tests/cases/README.md`.

use std::path::{Path, PathBuf};

mod common;

use common::case_files;
use serde::Deserialize;
use serde_json::Value;
use whyfail_engine::{Options, diagnose_json};
use whyfail_providers::FixtureProvider;

/// A case file, parsed strictly: an unknown or mistyped key is an error naming the file and
/// the key (see `tests/cases/README.md`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[allow(dead_code)]
    name: String,
    #[allow(dead_code)]
    about: String,
    #[allow(dead_code)]
    source: Option<Value>,
    event: Value,
    facts: Option<Value>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    status: Option<Status>,
    symptom: Option<Vec<String>>,
    root_cause: Option<Vec<String>>,
    not_root_cause: Option<Vec<String>>,
    action: Option<Vec<String>>,
    actions_include: Option<Vec<String>>,
    disposition: Option<Vec<String>>,
    retry_after: Option<u64>,
    params: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
enum Status {
    Diagnosed,
    Inconclusive,
    NoMatch,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Diagnosed => "diagnosed",
            Status::Inconclusive => "inconclusive",
            Status::NoMatch => "no_match",
        }
    }
}

/// Parses a case file strictly; `Err` names the file and the key at fault.
fn parse_case(path: &Path, text: &str) -> Result<Case, String> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let case: Case = serde_path_to_error::deserialize(de)
        .map_err(|e| format!("{}: at `{}`: {}", path.display(), e.path(), e.inner()))?;
    let e = &case.expect;
    // A positive expectation: what the answer must be, not only what it must not be.
    let positive = e.root_cause.as_ref().is_some_and(|r| !r.is_empty())
        || e.status.is_some()
        || e.action.is_some();
    if !positive {
        return Err(format!(
            "{}: `expect` has no positive expectation (`root_cause` with ids, `status` or `action`)",
            path.display()
        ));
    }
    Ok(case)
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

fn check(case: &Case, res: &Value, raw: &str) -> Vec<String> {
    let exp = &case.expect;
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
    if let Some(s) = exp.status
        && s.as_str() != status
    {
        why.push(format!("status {status} != {}", s.as_str()));
    }
    if let Some(ok) = &exp.symptom {
        let got = res["symptom"]["id"].as_str().unwrap_or("none");
        if !ok.iter().any(|o| o == got) {
            why.push(format!("symptom {got} not in {ok:?}"));
        }
    }
    if let Some(ok) = &exp.root_cause {
        if ok.is_empty() {
            if status == "diagnosed" {
                why.push(format!("expected no diagnosis, got {cause:?}"));
            }
        } else if !cause.as_ref().is_some_and(|c| ok.contains(c)) || status != "diagnosed" {
            why.push(format!("root cause {cause:?} ({status}) not in {ok:?}"));
        }
    }
    // Whatever the status: a cause named first is a claim even when not confirmed.
    if let Some(bad) = &exp.not_root_cause
        && cause.as_ref().is_some_and(|c| bad.contains(c))
    {
        why.push(format!(
            "root cause {cause:?} ({status}) is one it must not be"
        ));
    }
    if let Some(ok) = &exp.action
        && !action.as_ref().is_some_and(|a| ok.contains(a))
    {
        why.push(format!("first action {action:?} not in {ok:?}"));
    }
    if let Some(list) = &exp.actions_include {
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
    if let Some(ok) = &exp.disposition {
        let kind = res["disposition"]["kind"].as_str().unwrap_or("");
        if !ok.iter().any(|o| o == kind) {
            why.push(format!("disposition {kind} not in {ok:?}"));
        }
    }
    if let Some(n) = exp.retry_after
        && res["disposition"]["retry_after_seconds"].as_u64() != Some(n)
    {
        why.push(format!(
            "retry_after_seconds {} != {n}",
            res["disposition"]["retry_after_seconds"]
        ));
    }
    if let Some(params) = &exp.params {
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
    let secrets = case.event["connection"]["secrets"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for v in secrets.values().filter_map(Value::as_str) {
        for piece in [v, v.trim()] {
            if piece.len() < 6 {
                continue;
            }
            let url: String = url::form_urlencoded::byte_serialize(piece.as_bytes()).collect();
            if raw.contains(piece) || raw.contains(&url) {
                why.push("a secret from connection.secrets appears in the output".into());
            }
            for run in base64_runs_holding(&case.event.to_string(), piece) {
                if raw.contains(&run) {
                    why.push(
                        "a secret from connection.secrets appears in the output (base64)".into(),
                    );
                }
            }
        }
    }
    why
}

/// The base64 runs in `text` that decode to something containing `secret` (a
/// `Basic base64(user:secret)` echoed into the event).
fn base64_runs_holding(text: &str, secret: &str) -> Vec<String> {
    use base64::Engine as _;
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='))
        .filter(|run| run.len() >= 12)
        .filter(|run| {
            base64::engine::general_purpose::STANDARD
                .decode(run)
                .is_ok_and(|raw| String::from_utf8_lossy(&raw).contains(secret))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn case_files_are_parsed_strictly() {
    let p = Path::new("x.json");
    let base =
        r#"{"name": "n", "about": "a", "source": "s", "event": {"error": {}}, "expect": EXPECT}"#;
    let parse = |expect: &str| parse_case(p, &base.replace("EXPECT", expect));
    assert!(parse(r#"{"root_cause": ["rate_limited"]}"#).is_ok());
    assert!(parse(r#"{"status": "no_match"}"#).is_ok());
    assert!(parse(r#"{"action": ["reconnect"], "not_root_cause": ["x"]}"#).is_ok());
    for (expect, names) in [
        (r#"{"root_cause": ["a"], "rootcause": ["b"]}"#, "rootcause"),
        (r#"{"root_cause": "rate_limited"}"#, "expect.root_cause"),
        (
            r#"{"status": "diagnosed", "retry_after": "30"}"#,
            "expect.retry_after",
        ),
        (r#"{"status": "done"}"#, "expect.status"),
        (
            r#"{"root_cause": [], "not_root_cause": ["x"]}"#,
            "no positive expectation",
        ),
        (r#"{"not_root_cause": ["x"]}"#, "no positive expectation"),
    ] {
        let err = parse(expect)
            .err()
            .unwrap_or_else(|| panic!("{expect} accepted"));
        assert!(err.starts_with("x.json: "), "{err}");
        assert!(err.contains(names), "{expect}: {err}");
    }
    let err = parse_case(
        p,
        &base
            .replace("EXPECT", r#"{"status": "no_match"}"#)
            .replace("\"about\"", "\"abuot\""),
    )
    .err()
    .expect("unknown top-level key");
    assert!(err.contains("abuot"), "{err}");
}

#[test]
fn not_root_cause_is_checked_whatever_the_status() {
    let case = parse_case(
        Path::new("x.json"),
        r#"{"name": "n", "about": "a", "event": {"error": {}}, "expect": {"status": "inconclusive", "not_root_cause": ["user_lacks_access"]}}"#,
    )
    .expect("case");
    let res = serde_json::json!({"status": "inconclusive", "root_causes": [{"id": "user_lacks_access"}], "actions": []});
    let why = check(&case, &res, "{}");
    assert!(why.iter().any(|w| w.contains("must not be")), "{why:?}");
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
        let case = match parse_case(f, &text) {
            Ok(c) => c,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let fixture = case.facts.as_ref().map(|v| {
            FixtureProvider::from_json(v).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        });
        let opts = Options {
            provider: fixture.as_ref().map(|p| p as _),
            ..Options::default()
        };
        let res = diagnose_json(&lib, &case.event.to_string(), &opts)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let raw = serde_json::to_string(&res).expect("serialise");
        // What users get is written by `render::write_json` (sonic-rs): the same bytes.
        let mut written = Vec::new();
        whyfail::render::write_json(&mut written, &res);
        assert_eq!(
            String::from_utf8_lossy(&written),
            raw,
            "{}: the JSON writer differs from serde_json",
            f.display()
        );
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
