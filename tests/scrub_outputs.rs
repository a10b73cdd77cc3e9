//! No credential survives any output: property tests over the built-in library with secrets,
//! listed or recognised by shape, echoed in every form into every field of the event; every
//! output is checked (the resolution as JSON, text and markdown in every audience, the trace,
//! and the `--record` test file). Plus the longest-first (nested secret) rule and a `base_url`
//! carrying userinfo and token parameters.

use std::sync::LazyLock;

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{Value, json};
use whyfail::render::{Format, render};
use whyfail_engine::{Audience, Library, Options, Resolution, diagnose_json};

static LIB: LazyLock<Library> = LazyLock::new(|| {
    let (lib, diags) = whyfail::load_library(&[] as &[&str], true);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:#?}");
    lib
});

const AUDIENCES: [Audience; 3] = [Audience::User, Audience::Support, Audience::Developer];

/// Every output of one event: the resolution in every format and audience (with the trace),
/// and the `--record` file.
fn outputs(event: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut first: Option<Resolution> = None;
    for audience in AUDIENCES {
        let opts = Options {
            audience,
            trace: true,
            ..Options::default()
        };
        let res = diagnose_json(&LIB, &event.to_string(), &opts).expect("valid event");
        for format in [Format::Json, Format::Text, Format::Markdown] {
            out.push(render(&res, format, false));
        }
        first.get_or_insert(res);
    }
    let res = first.expect("a resolution");
    out.push(whyfail::record::test_file(event, &res, &[]));
    out
}

fn url_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn json_escaped(s: &str) -> String {
    let j = serde_json::to_string(s).expect("string");
    j[1..j.len() - 1].to_string()
}

fn basic(user: &str, secret: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
}

/// The listed secret and every form it is echoed in.
fn forms(secret: &str) -> Vec<String> {
    let mut f = vec![
        secret.to_string(),
        url_encoded(secret),
        basic("alice", secret),
    ];
    let j = json_escaped(secret);
    if j != secret {
        f.push(j);
    }
    f
}

/// An event of a family the library knows, chosen by `family`, with the texts given echoed into
/// the message, body, code, a header, the event id and the base URL.
fn event(family: u8, secrets: &[String], echoes: &[String]) -> Value {
    let (status, message, provider, auth) = match family % 5 {
        0 => (401, "Bad credentials", "github", "oauth2"),
        1 => (429, "Too many requests", "generic", "api_key"),
        2 => (
            403,
            "Resource not accessible by integration",
            "github",
            "oauth2",
        ),
        3 => (
            400,
            "invalid_grant: refresh token expired",
            "google",
            "oauth2",
        ),
        _ => (
            0,
            "getaddrinfo ENOTFOUND api.acme.con",
            "generic",
            "api_key",
        ),
    };
    let all = echoes.join(" ");
    let body = json!({"error": {"message": message, "detail": all}}).to_string();
    let mut listed = serde_json::Map::new();
    for (i, s) in secrets.iter().enumerate() {
        let name = ["access_token", "refresh_token", "api_key", "client_secret"][i % 4];
        listed.insert(name.into(), json!(s));
    }
    let mut error = json!({
        "message": format!("{message}: {all}"),
        "code": echoes.first().cloned().unwrap_or_default(),
        "body": body,
        "headers": {"www-authenticate": format!("Bearer error=\"invalid_token\" {all}"), "x-echo": all},
    });
    if status > 0 {
        error["status"] = json!(status);
    } else {
        error["code"] = json!("ENOTFOUND");
    }
    json!({
        "event_id": format!("evt {}", echoes.last().cloned().unwrap_or_default()),
        "phase": "request",
        "error": error,
        "connection": {
            "id": "conn_1",
            "provider": provider,
            "auth_type": auth,
            "base_url": format!("https://api.acme.con/v2?note={}", url_encoded(&all)),
            "secrets": listed,
        }
    })
}

/// A secret: a rare prefix (so it cannot occur in the library's own words), letters and
/// digits, and sometimes a character that URL, JSON and base64 encodings change.
fn secret() -> impl Strategy<Value = String> {
    (
        "[A-Za-z0-9]{6,16}",
        prop::option::of("[/+@: %&=\"\\\\]"),
        "[A-Za-z0-9_-]{4,12}",
    )
        .prop_map(|(a, mid, b)| format!("zq{a}{}{b}", mid.unwrap_or_default()))
}

/// A credential not listed anywhere, in a place or shape that says what it is; returns the
/// text echoed and the credential that must not survive.
fn shaped() -> impl Strategy<Value = (String, String)> {
    ("[A-Za-z0-9]{12,24}", 0..8u8).prop_map(|(raw, how)| {
        let tok = format!("zq9{raw}");
        let text = match how {
            0 => format!("Authorization: Bearer {tok}"),
            1 => format!("https://bob:{tok}@api.example.com/v1"),
            2 => format!("https://api.example.com/cb?code=1&access_token={tok}&page=2"),
            3 => format!(r#"{{"client_secret":"{tok}","token_type":"bearer"}}"#),
            4 => format!("X-Api-Key: {tok}"),
            5 => format!("set-cookie: session={tok}; Path=/"),
            6 => format!("POST /oauth/token grant_type=refresh_token&refresh_token={tok}"),
            _ => {
                let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(format!(r#"{{"sub":"{tok}"}}"#));
                return (
                    format!("jwt eyJhbGciOiJIUzI1NiJ9.{payload}.c2ln{raw}"),
                    payload,
                );
            }
        };
        (text, tok)
    })
}

fn leaks(outputs: &[String], needles: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for n in needles.iter().filter(|n| n.len() >= 6) {
        for (i, o) in outputs.iter().enumerate() {
            if o.contains(n.as_str()) {
                found.push(format!("`{n}` in output {i}: {o}"));
            }
        }
    }
    found
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_listed_secret_survives_any_output(
        secrets in prop::collection::vec(secret(), 1..4),
        family in any::<u8>(),
        pick in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..6),
    ) {
        // Echo some forms of some secrets (raw, URL-encoded, JSON-escaped, Basic base64).
        let echoes: Vec<String> = pick
            .iter()
            .map(|(s, f)| {
                let chosen: &String = s.get(secrets.as_slice());
                let fs = forms(chosen);
                fs[f.index(fs.len())].clone()
            })
            .collect();
        let out = outputs(&event(family, &secrets, &echoes));
        let needles: Vec<String> = secrets.iter().flat_map(|s| forms(s)).collect();
        let found = leaks(&out, &needles);
        prop_assert!(found.is_empty(), "{}", found.join("\n"));
    }

    #[test]
    fn no_credential_recognised_by_shape_survives_any_output(
        creds in prop::collection::vec(shaped(), 1..4),
        family in any::<u8>(),
    ) {
        let echoes: Vec<String> = creds.iter().map(|(t, _)| t.clone()).collect();
        let out = outputs(&event(family, &[], &echoes));
        let needles: Vec<String> = creds.iter().map(|(_, c)| c.clone()).collect();
        let found = leaks(&out, &needles);
        prop_assert!(found.is_empty(), "{}", found.join("\n"));
    }
}

#[test]
fn a_secret_inside_another_is_masked_whole_whatever_the_order() {
    // The inner secret is the outer one's start: masking it first (shortest first) would leave
    // the outer one's tail in the output.
    let outer = "zqOuterSecret0123456789tail";
    let inner = "zqOuterSecret01";
    for listed in [[inner, outer], [outer, inner]] {
        let mut ev = event(0, &[], &[outer.to_string()]);
        ev["connection"]["secrets"] = json!({"access_token": listed[0], "api_key": listed[1]});
        let out = outputs(&ev);
        let found = leaks(&out, &["23456789tail".to_string(), outer.to_string()]);
        assert!(found.is_empty(), "{}", found.join("\n"));
        assert!(out[0].contains("[redacted]"), "{}", out[0]);
    }
}

#[test]
fn base_url_credentials_never_reach_params_path_or_evidence() {
    let base = "https://alice:hunter2pw@api.acme.con/v2?access_token=tok123secret&api_key=k123secret&page=2";
    let ev = json!({
        "event_id": "base_url_creds",
        "phase": "request",
        "error": {"message": format!("getaddrinfo ENOTFOUND api.acme.con ({base})"), "code": "ENOTFOUND"},
        "connection": {"id": "c", "provider": "generic", "auth_type": "api_key", "base_url": base}
    });
    for audience in AUDIENCES {
        let opts = Options {
            audience,
            trace: true,
            ..Options::default()
        };
        let res = diagnose_json(&LIB, &ev.to_string(), &opts).expect("event");
        // Not vacuous: the base URL is an action's parameter, masked where it holds credentials.
        let param = res
            .actions
            .iter()
            .find_map(|a| a.params.get("base_url"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no base_url param: {:#?}", res.actions));
        assert!(
            param.contains("api.acme.con") && param.contains("[redacted]"),
            "{param}"
        );
        assert!(param.contains("page=2"), "{param}");
        let mut texts = vec![
            serde_json::to_string(&res.actions).expect("json"),
            serde_json::to_string(&res.path).expect("json"),
            serde_json::to_string(&res.root_causes).expect("json"),
            serde_json::to_string(&res.trace).expect("json"),
        ];
        for format in [Format::Json, Format::Text, Format::Markdown] {
            texts.push(render(&res, format, false));
        }
        texts.push(whyfail::record::test_file(&ev, &res, &[]));
        let found = leaks(
            &texts,
            &[
                "hunter2pw".into(),
                "tok123secret".into(),
                "k123secret".into(),
            ],
        );
        assert!(found.is_empty(), "{}", found.join("\n"));
    }
}
