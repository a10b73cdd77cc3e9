// Fuzz target: arbitrary text as a playbook file, loaded and compiled; what compiles then
// diagnoses a fixed event that carries a secret. Nothing may panic, every problem renders as a
// diagnostic, and no playbook, however written, gets the secret into the resolution.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whyfail_engine::{Library, Options, Source, diagnose_json};

const SECRET: &str = "gho_fuzz_secret_value_0123";

const EVENT: &str = r#"{"event_id": "fz", "phase": "request",
  "error": {"kind": "http", "status": 401, "code": "invalid_token",
            "message": "The access token expired", "headers": {"retry-after": "30"}},
  "connection": {"provider": "github", "auth_type": "oauth2", "base_url": "https://api.github.com",
                 "secrets": {"access_token": "gho_fuzz_secret_value_0123"}}}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (lib, diags) = Library::load(&[vec![Source::new("fuzz.yaml", text)]]);
    for d in &diags {
        let _ = d.to_string();
    }
    let opts = Options {
        trace: true,
        ..Options::default()
    };
    let res = diagnose_json(&lib, EVENT, &opts).expect("the event is valid");
    let out = serde_json::to_string(&res).expect("a resolution serialises");
    assert!(
        !out.contains(SECRET),
        "the secret reached the resolution: {out}"
    );
});
