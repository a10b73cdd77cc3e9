// Fuzz target: the secret scrubber, through a whole diagnosis (the engine has no public
// scrubber entry point). Arbitrary credential-shaped secrets are listed in
// `connection.secrets` and echoed, raw or inside JSON, into the message, the body, a header,
// the error code and the event id; the resolution (JSON, every audience, with the trace) must
// not contain any of them.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use whyfail_engine::{Audience, Event, Options, diagnose, explain};

#[path = "common.rs"]
mod common;

#[derive(Arbitrary, Debug)]
enum Piece {
    Text(String),
    Secret(u8),
    /// The secret as a JSON string inside the text (a body pasted into a message).
    Quoted(u8),
    /// Two secrets back to back, or one inside another's neighbourhood.
    Pair(u8, u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Raw secret material; each becomes `sk_fz_` + its characters mapped to [A-Za-z0-9_-].
    secrets: Vec<Vec<u8>>,
    status: u16,
    provider: u8,
    message: Vec<Piece>,
    body: Vec<Piece>,
    code: Vec<Piece>,
    header: Vec<Piece>,
    event_id: Vec<Piece>,
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const PROVIDERS: &[&str] = &[
    "github",
    "slack",
    "google",
    "microsoft",
    "stripe",
    "openai",
    "generic",
];

fn secret(raw: &[u8]) -> String {
    let mut s = String::from("sk_fz_");
    for b in raw.iter().take(48) {
        s.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
    }
    // Long enough to be scrubbed whatever its random part.
    while s.len() < 12 {
        s.push('x');
    }
    s
}

fn text(pieces: &[Piece], secrets: &[String]) -> String {
    let pick = |i: &u8| secrets[usize::from(*i) % secrets.len()].as_str();
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Secret(i) => out.push_str(pick(i)),
            Piece::Quoted(i) => out.push_str(&json!({"access_token": pick(i)}).to_string()),
            Piece::Pair(a, b) => {
                out.push_str(pick(a));
                out.push_str(pick(b));
            }
        }
    }
    out
}

fuzz_target!(|input: Input| {
    let secrets: Vec<String> = input.secrets.iter().take(4).map(|r| secret(r)).collect();
    if secrets.is_empty() {
        return;
    }
    let named: serde_json::Map<String, serde_json::Value> = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                ["access_token", "refresh_token", "api_key", "client_secret"][i].to_string(),
                json!(s),
            )
        })
        .collect();
    let event = json!({
        "event_id": text(&input.event_id, &secrets),
        "phase": "request",
        "error": {
            "kind": "http",
            "status": input.status % 600,
            "code": text(&input.code, &secrets),
            "message": text(&input.message, &secrets),
            "body": text(&input.body, &secrets),
            "headers": {"www-authenticate": text(&input.header, &secrets)},
        },
        "connection": {
            "provider": PROVIDERS[usize::from(input.provider) % PROVIDERS.len()],
            "auth_type": "oauth2",
            "secrets": named,
        },
    });
    let Ok(event) = Event::parse(&event.to_string()) else {
        return;
    };
    let opts = Options {
        trace: true,
        ..Options::default()
    };
    let res = diagnose(&common::STDLIB, &event, &opts);
    let mut outputs = vec![serde_json::to_string(&res).expect("a resolution serialises")];
    for audience in [Audience::User, Audience::Support, Audience::Developer] {
        outputs.push(explain::render(&res, audience));
    }
    for out in &outputs {
        for s in &secrets {
            assert!(!out.contains(s.as_str()), "secret `{s}` survived: {out}");
        }
    }
});
