//! `diagnose --record FILE`: a real failure, with the live facts its diagnosis fetched, saved as
//! a playbook test (`whyfail test` format) so it becomes a regression test in one step.
//!
//! Secrets never reach the file: the engine's one scrubber, keeping shapes, goes over the event,
//! the facts and the failure reasons. Every listed secret (in any encoding), wherever it appears
//! (the `connection.secrets` map, or pasted into an error message), and every credential
//! recognised by place or shape (headers, URL userinfo, token parameters, token fields, JWTs)
//! is replaced by a stand-in with the same shape, so checks that look at a secret's shape
//! decide the same.

use serde_json::{Map, Value, json};
use whyfail_engine::Resolution;
use whyfail_engine::scrub::Scrubber;

/// The test file's text (YAML; written in JSON's flow style, which YAML reads as is).
pub fn test_file(
    event: &Value,
    res: &Resolution,
    facts: &[(String, Result<Value, String>)],
) -> String {
    let listed: Vec<&str> = event
        .pointer("/connection/secrets")
        .and_then(Value::as_object)
        .map(|m| m.values().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let scrub = Scrubber::new(listed).keeping_shape();
    let mut event = event.clone();
    scrub.clean_json(&mut event);

    let mut mocked = Map::new();
    let mut failed = Vec::new();
    for (name, result) in facts {
        match result {
            Ok(v) => {
                let mut v = v.clone();
                scrub.clean_json(&mut v);
                mocked.insert(name.clone(), v);
            }
            Err(reason) => failed.push(format!("#   {name}: {}", one_line(reason, &scrub))),
        }
    }
    let id = res.event_id.clone().unwrap_or_else(|| "event".to_string());
    let name: String = format!("recorded_{id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut expect = Map::new();
    expect.insert("status".into(), json!(res.status));
    if let Some(s) = &res.symptom {
        expect.insert("symptom".into(), json!(s.id));
    }
    expect.insert(
        "root_cause".into(),
        res.root_causes.first().map_or(Value::Null, |c| json!(c.id)),
    );
    if let Some(c) = res.root_causes.first() {
        expect.insert("confidence".into(), json!(c.confidence));
    }
    if let Some(a) = res.actions.first() {
        expect.insert("first_action".into(), json!(a.id));
    }
    expect.insert("disposition".into(), json!(res.disposition.kind));

    let mut test = Map::new();
    test.insert("name".into(), json!(name));
    test.insert(
        "about".into(),
        json!(format!(
            "Recorded by `whyfail diagnose --record` at {} (engine {}, playbook set {})",
            jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or_default(),
            res.engine_version,
            res.playbook_set
        )),
    );
    test.insert("event".into(), event);
    if !mocked.is_empty() {
        test.insert("facts".into(), Value::Object(mocked));
    }
    test.insert("expect".into(), Value::Object(expect));

    let mut out = String::from(
        "# A failure recorded by `whyfail diagnose --record`, replayable with `whyfail test`.\n\
         # Secrets are replaced by stand-ins of the same shape. Review the expectations: they\n\
         # say what whyfail answered, which is what a regression test pins, right or wrong.\n",
    );
    if !failed.is_empty() {
        out.push_str("# Live facts that could not be had (replayed as unavailable):\n");
        for f in failed {
            out.push_str(&f);
            out.push('\n');
        }
    }
    let body = json!({ "tests": [Value::Object(test)] });
    out.push_str(&serde_json::to_string_pretty(&body).unwrap_or_default());
    out.push('\n');
    out
}

fn one_line(s: &str, scrub: &Scrubber) -> String {
    scrub.clean(&s.replace(['\n', '\r'], " ")).into_owned()
}
