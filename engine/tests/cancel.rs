//! `Options::cancel`: a caller (the HTTP service, when a request times out) can stop a diagnosis
//! between scripts; no live fact is fetched after that.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use whyfail_engine::model::resolution::Status;
use whyfail_engine::{
    FactError, FactProvider, FactRequest, Library, Options, Source, diagnose_json,
};

const PLAYBOOK: &str = r#"
id: teapot
title: The server is a teapot
applies_when: error.status == 418
causes:
  - id: brewing
    title: It is brewing
    checks:
      - id: says_brewing
        expr: error.message.contains("brewing")
        evidence: The server says it is brewing
      - id: pot_is_hot
        expr: facts["pot.temperature"] > 90
        needs: [pot.temperature]
        evidence: The pot is hot
    actions: [wait]
actions:
  - id: wait
    title: Wait
    actor: user
"#;

const EVENT: &str = r#"{"error": {"status": 418, "message": "still brewing"}}"#;

/// Answers `pot.temperature`, and raises the cancel flag once asked (as a timeout firing
/// while a probe runs would), recording what was asked.
struct Pot<'a> {
    cancel_on_fetch: Option<&'a AtomicBool>,
    asked: Mutex<Vec<String>>,
}

impl FactProvider for Pot<'_> {
    fn fetch(&self, fact: &str, _r: &FactRequest<'_>) -> Result<serde_json::Value, FactError> {
        self.asked.lock().expect("lock").push(fact.to_string());
        if let Some(c) = self.cancel_on_fetch {
            c.store(true, Ordering::Relaxed);
        }
        Ok(serde_json::json!(95))
    }
}

fn library() -> Library {
    let (lib, diags) = Library::load(&[vec![Source::new("teapot.yaml", PLAYBOOK)]]);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:#?}");
    lib
}

#[test]
fn a_cancelled_diagnosis_evaluates_nothing_more() {
    let lib = library();
    let pot = Pot {
        cancel_on_fetch: None,
        asked: Mutex::default(),
    };
    let flag = AtomicBool::new(false);
    let opts = Options {
        provider: Some(&pot),
        cancel: Some(&flag),
        ..Options::default()
    };
    let res = diagnose_json(&lib, EVENT, &opts).expect("event");
    assert_eq!(res.status, Status::Diagnosed, "{res:#?}");
    assert_eq!(*pot.asked.lock().expect("lock"), ["pot.temperature"]);

    // Raised before the start: not even `applies_when` runs, and no fact is fetched.
    flag.store(true, Ordering::Relaxed);
    pot.asked.lock().expect("lock").clear();
    let res = diagnose_json(&lib, EVENT, &opts).expect("event");
    assert_eq!(res.status, Status::NoMatch, "{res:#?}");
    assert!(pot.asked.lock().expect("lock").is_empty());
}

#[test]
fn a_flag_raised_mid_walk_stops_the_scripts_after_it() {
    let lib = library();
    let flag = AtomicBool::new(false);
    let pot = Pot {
        cancel_on_fetch: Some(&flag),
        asked: Mutex::default(),
    };
    let opts = Options {
        provider: Some(&pot),
        cancel: Some(&flag),
        ..Options::default()
    };
    let res = diagnose_json(&lib, EVENT, &opts).expect("event");
    // The fact came in, but the check reading it never ran: the walk stopped there.
    assert_eq!(*pot.asked.lock().expect("lock"), ["pot.temperature"]);
    let hot = res
        .path
        .iter()
        .find(|p| p.node == "pot_is_hot")
        .expect("on the path");
    assert_eq!(
        serde_json::to_value(hot.outcome).expect("outcome"),
        "error",
        "{res:#?}"
    );
    assert!(
        hot.detail
            .as_deref()
            .is_some_and(|d| d.contains("cancelled")),
        "{hot:?}"
    );
}
