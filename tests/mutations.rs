//! Signals recognise families of wording, not strings: every diagnosis case in `tests/cases/`
//! is diagnosed again after rewording its error the ways real clients and platforms do, and the
//! answer (status and first root cause) must not change. A signal keyed to one exact string
//! fails here as soon as the text around it moves.
//!
//! Mutations, applied to the error's message and body (codes are machine values and stay):
//! upper and lower case; surrounding text from a platform's wrapper; a Java-style `Caused by:`
//! chain; a JSON body sent as a string; the body repeated inside the message; punctuation
//! (quotes swapped, trailing full stops dropped).

use std::path::Path;

mod common;

use common::case_files;
use serde_json::Value;
use whyfail_engine::{Library, Options, diagnose_json};
use whyfail_providers::FixtureProvider;

type Mutation = fn(&mut serde_json::Map<String, Value>) -> bool;

/// Applies `f` to every string in a JSON value.
fn strings(v: &mut Value, f: &dyn Fn(&str) -> String) {
    match v {
        Value::String(s) => *s = f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| strings(x, f)),
        Value::Object(m) => m.values_mut().for_each(|x| strings(x, f)),
        _ => {}
    }
}

/// Rewrites the message and the body's strings (not the code, not object keys).
fn texts(e: &mut serde_json::Map<String, Value>, f: &dyn Fn(&str) -> String) -> bool {
    let mut any = false;
    for key in ["message", "body"] {
        if let Some(v) = e.get_mut(key) {
            strings(v, f);
            any = true;
        }
    }
    any
}

fn message(e: &mut serde_json::Map<String, Value>, f: &dyn Fn(&str) -> String) -> bool {
    match e.get_mut("message") {
        Some(Value::String(m)) => {
            *m = f(m);
            true
        }
        _ => false,
    }
}

const MUTATIONS: &[(&str, Mutation)] = &[
    ("upper case", |e| texts(e, &|s| s.to_uppercase())),
    ("lower case", |e| texts(e, &|s| s.to_lowercase())),
    ("platform wrapper", |e| {
        message(e, &|m| {
            format!("Node 'HTTP Request' failed: {m} (attempt 1 of 3, will not retry)")
        })
    }),
    ("caused by chain", |e| {
        message(e, &|m| {
            format!(
                "org.springframework.web.client.ResourceAccessException: request to the provider failed\n\tat com.acme.sync.Client.call(Client.java:42)\nCaused by: {m}\n\t... 23 more"
            )
        })
    }),
    ("JSON body as a string", |e| match e.get("body") {
        Some(b @ (Value::Object(_) | Value::Array(_))) => {
            let s = b.to_string();
            e.insert("body".into(), Value::String(s));
            true
        }
        _ => false,
    }),
    ("body inside the message", |e| {
        let Some(body) = e.get("body").cloned() else {
            return false;
        };
        let body = match body {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
        let joined = format!("{msg} Response body: {body}");
        e.insert("message".into(), Value::String(joined.trim().to_string()));
        true
    }),
    ("punctuation", |e| {
        texts(e, &|s| {
            s.replace('"', "'")
                .trim_end()
                .trim_end_matches('.')
                .to_string()
        })
    }),
];

fn answer(lib: &Library, case: &Value, event: &Value) -> String {
    let fixture = case
        .get("facts")
        .map(|v| FixtureProvider::from_json(v).expect("facts"));
    let opts = Options {
        provider: fixture.as_ref().map(|p| p as _),
        ..Options::default()
    };
    let res = diagnose_json(lib, &event.to_string(), &opts).expect("event parses");
    let cause = res.root_causes.first().map_or("-", |c| c.id.as_str());
    format!("{:?} {cause}", res.status)
}

#[test]
fn diagnoses_survive_rewording() {
    let (lib, _) = whyfail::load_library(&[] as &[std::path::PathBuf], true);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut tried = 0;
    let mut broken: Vec<String> = Vec::new();
    for f in case_files(&root.join("tests/cases")) {
        let case: Value =
            serde_json::from_str(&std::fs::read_to_string(&f).expect("read")).expect("json");
        let original = answer(&lib, &case, &case["event"]);
        for (name, mutate) in MUTATIONS {
            let mut event = case["event"].clone();
            let Some(error) = event.get_mut("error").and_then(Value::as_object_mut) else {
                continue;
            };
            if !mutate(error) {
                continue;
            }
            tried += 1;
            let got = answer(&lib, &case, &event);
            if got != original {
                broken.push(format!(
                    "{} ({name}): {original} became {got}",
                    f.strip_prefix(root).unwrap_or(&f).display()
                ));
            }
        }
    }
    println!("{tried} reworded events, {} changed answer", broken.len());
    assert!(tried > 3000, "only {tried} mutations were tried");
    assert!(
        broken.is_empty(),
        "{} of {tried} reworded events changed their answer:\n{}",
        broken.len(),
        broken.join("\n")
    );
}
