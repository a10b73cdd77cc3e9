//! `diagnose --record FILE`: a real failure, with the live facts its diagnosis fetched, saved as
//! a playbook test (`whyfail test` format) so it becomes a regression test in one step.
//!
//! Secrets never reach the file: every secret value, wherever it appears in the event (the
//! `connection.secrets` map, or pasted into an error message), is replaced by a stand-in with the
//! same shape ([`mask_secret`]), so checks that look at a secret's shape decide the same.

use serde_json::{Map, Value, json};
use whyfail_engine::Resolution;
use whyfail_providers::record::mask_secret;

/// The test file's text (YAML; written in JSON's flow style, which YAML reads as is).
pub fn test_file(
    event: &Value,
    res: &Resolution,
    facts: &[(String, Result<Value, String>)],
) -> String {
    let secrets: Vec<(String, String)> = event
        .pointer("/connection/secrets")
        .and_then(Value::as_object)
        .map(|m| {
            m.values()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| (s.to_string(), mask_secret(s)))
                .collect()
        })
        .unwrap_or_default();
    let mut event = event.clone();
    mask_strings(&mut event, &secrets);

    let mut mocked = Map::new();
    let mut failed = Vec::new();
    for (name, result) in facts {
        match result {
            Ok(v) => {
                let mut v = v.clone();
                mask_strings(&mut v, &secrets);
                mocked.insert(name.clone(), v);
            }
            Err(reason) => failed.push(format!("#   {name}: {}", one_line(reason, &secrets))),
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

fn one_line(s: &str, secrets: &[(String, String)]) -> String {
    let mut s = s.replace(['\n', '\r'], " ");
    for (secret, mask) in secrets {
        s = s.replace(secret.as_str(), mask);
    }
    s
}

fn mask_strings(v: &mut Value, secrets: &[(String, String)]) {
    match v {
        Value::String(s) => {
            for (secret, mask) in secrets {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), mask);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| mask_strings(x, secrets)),
        Value::Object(m) => m.values_mut().for_each(|x| mask_strings(x, secrets)),
        _ => {}
    }
}
