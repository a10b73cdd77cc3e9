//! Evaluation behaviour on small inline playbooks: limits, partial events, secrets, sequential
//! flows, live facts, ranking and dispositions.

use serde_json::{Value, json};
use whyfail_engine::model::resolution::{Confidence, NodeKind, Outcome, Status};
use whyfail_engine::{
    FactError, FactProvider, FactRequest, Library, Options, Resolution, Source, diagnose_json,
};

fn lib(yaml: &str) -> Library {
    let (lib, diags) = Library::load(&[vec![Source::new("test.yaml", yaml)]]);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:#?}");
    lib
}

fn run(lib: &Library, event: Value) -> Resolution {
    diagnose_json(lib, &event.to_string(), &Options::default()).expect("valid event")
}

/// Diagnoses with live facts from `provider`.
fn run_live(lib: &Library, event: &Value, provider: &dyn FactProvider) -> Resolution {
    let opts = Options {
        provider: Some(provider),
        ..Options::default()
    };
    diagnose_json(lib, &event.to_string(), &opts).expect("valid event")
}

fn outcome(res: &Resolution, node: &str) -> Outcome {
    res.path
        .iter()
        .find(|p| p.node == node)
        .unwrap_or_else(|| panic!("{node} not on path: {:#?}", res.path))
        .outcome
}

const ACTIONS: &str = r#"
actions:
  - id: fix
    title: Fix it
    actor: user
  - id: wait
    title: Wait
    actor: platform
    disposition: retry_after
    params:
      retry_after_seconds: retry_hint() ?? 60
"#;

#[test]
fn a_looping_check_is_stopped_and_reported_as_error() {
    let l = lib(&format!(
        r#"
id: loops
title: Loops
applies_when: "true"
causes:
  - id: spins
    title: Spins forever
    checks:
      - id: forever
        script: |
          let n = 0;
          loop {{ n += 1; }}
          true
    actions: [fix]
  - id: fine
    title: Decides normally
    checks:
      - id: status_500
        expr: error.status == 500
    actions: [fix]
{ACTIONS}"#
    ));
    let res = run(&l, json!({"error": {"status": 500}}));
    assert_eq!(outcome(&res, "forever"), Outcome::Error);
    let detail = res
        .path
        .iter()
        .find(|p| p.node == "forever")
        .and_then(|p| p.detail.clone())
        .unwrap_or_default();
    assert!(detail.to_lowercase().contains("operations"), "{detail}");
    assert_eq!(res.status, Status::Diagnosed);
    assert_eq!(res.root_causes[0].id, "fine");
}

#[test]
fn an_almost_empty_event_still_gets_a_resolution() {
    let l = lib(&format!(
        r#"
id: partial
title: Partial data
applies_when: "true"
causes:
  - id: expired
    title: Expired
    checks:
      - id: past_expiry
        expr: past(oauth.access_token_expires_at) && connection.oauth.has_refresh_token
      - id: deep
        expr: event.connection.api_key.expires_at > 3 && history.recent_failures > 2
    actions: [fix]
{ACTIONS}"#
    ));
    for event in [
        json!({"error": {}}),
        json!({"error": {}, "connection": null}),
        json!({"error": {"status": "401"}, "connection": {"oauth": 7}}),
    ] {
        let res = run(&l, event.clone());
        assert_eq!(res.status, Status::Inconclusive, "{event}");
        assert_eq!(outcome(&res, "past_expiry"), Outcome::Unknown, "{event}");
        // Inconclusive: no root cause is claimed; the open cause is listed as a candidate.
        assert!(res.root_causes.is_empty(), "{event}");
        assert_eq!(res.candidates[0].id, "expired", "{event}");
        assert_eq!(res.candidates[0].confidence, Confidence::Possible);
    }
}

#[test]
fn events_that_are_not_events_are_errors_not_crashes() {
    let l = lib(&format!(
        "id: x\ntitle: x\napplies_when: \"true\"\ncauses: [{{id: c, title: c, actions: [fix]}}]\n{ACTIONS}"
    ));
    for bad in ["", "nope", "[]", "{}", r#"{"error": 5}"#, "{\"error\": {}"] {
        assert!(
            diagnose_json(&l, bad, &Options::default()).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn secrets_never_reach_the_output() {
    let l = lib(&format!(
        r#"
id: leaky
title: Leaky
applies_when: "true"
causes:
  - id: echoed
    title: Echoes the message
    explain: "The service said: {{error.message}}"
    checks:
      - id: says_it
        expr: error.message != ()
        evidence: "Message: {{error.message}}; key shape: {{secret(\"api_key\").length}} characters, newline {{secret(\"api_key\").has_newline}}"
    actions: [fix]
{ACTIONS}"#
    ));
    let secret = "sk_live_SUPERSECRET123\n";
    let event = json!({
        "event_id": "evt",
        "error": {"status": 401, "message": "invalid key sk_live_SUPERSECRET123 for account"},
        "connection": {"secrets": {"api_key": secret, "client_secret": "cs-999999"}}
    });
    for audience in ["user", "support", "developer"] {
        let opts = Options {
            audience: audience.parse().expect("audience"),
            ..Options::default()
        };
        let res = diagnose_json(&l, &event.to_string(), &opts).expect("valid");
        let out = serde_json::to_string(&res).expect("json");
        assert!(!out.contains("SUPERSECRET"), "{out}");
        assert!(!out.contains("cs-999999"), "{out}");
        assert!(out.contains("[redacted]"), "{out}");
        assert!(out.contains("23 characters, newline true"), "{out}");
    }
}

#[test]
fn a_script_changing_its_copy_of_a_secret_shape_changes_no_other_answer() {
    // `secret(name)` is answered once per event and name; each script still gets its own copy.
    let l = lib(&format!(
        r#"
id: shapes
title: Shapes
applies_when: "true"
causes:
  - id: shaped
    title: Shaped
    checks:
      - id: spoils_its_copy
        script: |
          let s = secret("api_key");
          s.present = false;
          s.length = 0;
          s.present
    actions: [fix]
  - id: shaped_too
    title: Shaped too
    checks:
      - id: sees_the_real_shape
        expr: secret("api_key").present && secret("api_key").length == 23
        evidence: "{{{{secret(\"api_key\").length}}}} characters"
    actions: [fix]
{ACTIONS}"#
    ));
    let event =
        json!({"error": {}, "connection": {"secrets": {"api_key": "sk_live_SUPERSECRET123\n"}}});
    let res = run(&l, event);
    assert_eq!(outcome(&res, "spoils_its_copy"), Outcome::Fail);
    assert_eq!(outcome(&res, "sees_the_real_shape"), Outcome::Pass);
}

#[test]
fn a_sequential_flow_routes_by_outcome() {
    let l = lib(&format!(
        r#"
id: flow
title: Authorization failed
applies_when: "true"
steps:
  - id: client_id_set
    expr: has(oauth?.client_id)
    evidence_fail: No client ID is configured
    on_fail: [config_missing]
    on_pass: [redirect_matches]
  - id: redirect_matches
    expr: url(oauth?.redirect_uri)?.path == url(platform?.oauth_redirect_uri)?.path
    evidence_fail: "The registered redirect URI {{oauth.redirect_uri}} is not the callback {{platform.oauth_redirect_uri}}"
    on_fail: [redirect_mismatch]
    on_pass: [something_else]
causes:
  - id: config_missing
    title: Client ID missing
    actions: [fix]
  - id: redirect_mismatch
    title: Redirect URI mismatch
    actions: [fix]
  - id: something_else
    title: Something else
    checks:
      - id: never_true
        expr: "false"
    actions: [fix]
{ACTIONS}"#
    ));
    let res = run(
        &l,
        json!({"error": {}, "connection": {"oauth": {"client_id": "abc", "redirect_uri": "https://app.example.com"}},
               "platform": {"oauth_redirect_uri": "https://app.example.com/api/oauth/callback"}}),
    );
    assert_eq!(res.root_causes[0].id, "redirect_mismatch");
    assert_eq!(res.root_causes[0].confidence, Confidence::Confirmed);
    assert!(res.root_causes[0].evidence[0].contains("https://app.example.com/api/oauth/callback"));
    assert_eq!(outcome(&res, "client_id_set"), Outcome::Pass);
    assert_eq!(outcome(&res, "config_missing"), Outcome::Skipped);
    assert_eq!(outcome(&res, "something_else"), Outcome::Skipped);
    let order: Vec<&str> = res.path.iter().map(|p| p.node.as_str()).collect();
    assert_eq!(
        order[..4],
        [
            "flow",
            "client_id_set",
            "redirect_matches",
            "redirect_mismatch"
        ]
    );

    let res = run(&l, json!({"error": {}, "connection": {"oauth": {}}}));
    assert_eq!(res.root_causes[0].id, "config_missing");
    assert_eq!(
        res.root_causes[0].evidence,
        vec!["No client ID is configured".to_string()]
    );
}

struct Facts;
impl FactProvider for Facts {
    fn fetch(&self, fact: &str, req: &FactRequest<'_>) -> Result<Value, FactError> {
        match fact {
            "github.whoami" => {
                assert_eq!(req.secret("access_token"), Some("gho_token"));
                Ok(json!({"scopes": ["read:user"]}))
            }
            _ => Err(FactError::new("timed out after 2 s")),
        }
    }
}

struct Whoami;
impl FactProvider for Whoami {
    fn fetch(&self, fact: &str, _: &FactRequest<'_>) -> Result<Value, FactError> {
        match fact {
            "whoami" => Ok(json!({"ok": true})),
            _ => Err(FactError::new("no such fact")),
        }
    }
}

#[test]
fn a_fact_read_before_it_arrives_is_read_again_after() {
    // Event paths are read once per event and kept; `facts` grows during the walk, so a path
    // into it is read anew each time.
    let l = lib(&format!(
        r#"
id: facts
title: Facts
applies_when: "true"
causes:
  - id: before
    title: Read before the fact arrives
    checks:
      - id: not_yet
        expr: facts?.whoami?.ok == ()
    actions: [fix]
  - id: after
    title: Read after it arrived
    checks:
      - id: arrived
        needs: [whoami]
        expr: facts?.whoami?.ok == true
    actions: [fix]
{ACTIONS}"#
    ));
    let res = run_live(&l, &json!({"error": {"status": 403}}), &Whoami);
    assert_eq!(outcome(&res, "not_yet"), Outcome::Pass);
    assert_eq!(outcome(&res, "arrived"), Outcome::Pass);
}

#[test]
fn live_facts_are_fetched_only_when_needed_and_unknown_offline() {
    let l = lib(&format!(
        r#"
id: scopes
title: Scopes
applies_when: "true"
causes:
  - id: scope_missing
    title: A scope is missing
    checks:
      - id: whoami_lacks_scope
        needs: [github.whoami]
        expr: missing(connection.required_scopes, facts["github.whoami"].scopes).len() > 0
        evidence: "The token has {{join(facts[\"github.whoami\"].scopes, \", \")}}, not {{join(missing(connection.required_scopes, facts[\"github.whoami\"].scopes), \", \")}}"
    actions: [fix]
  - id: slow
    title: Needs a fact that times out
    checks:
      - id: tls_probe
        needs: [net.tls]
        expr: facts["net.tls"].expired
    actions: [fix]
{ACTIONS}"#
    ));
    let event = json!({"error": {"status": 403}, "connection": {"required_scopes": ["repo"], "secrets": {"access_token": "gho_token"}}});
    let offline = run(&l, event.clone());
    assert_eq!(outcome(&offline, "whoami_lacks_scope"), Outcome::Unknown);
    assert_eq!(offline.status, Status::Inconclusive);

    let res = run_live(&l, &event, &Facts);
    assert_eq!(res.root_causes[0].id, "scope_missing");
    assert_eq!(
        res.root_causes[0].evidence,
        vec!["The token has read:user, not repo".to_string()]
    );
    let tls = res
        .path
        .iter()
        .find(|p| p.node == "tls_probe")
        .expect("on path");
    assert_eq!(tls.outcome, Outcome::Unknown);
    assert!(tls.detail.as_deref().unwrap_or("").contains("timed out"));
    assert!(
        res.path
            .iter()
            .find(|p| p.node == "whoami_lacks_scope")
            .expect("on path")
            .facts
            .contains(&"facts.github.whoami".to_string())
    );
}

/// Records what the walk asks for, in order.
#[derive(Default)]
struct Recorder {
    log: std::sync::Mutex<Vec<String>>,
}

impl FactProvider for Recorder {
    fn fetch(&self, fact: &str, _req: &FactRequest<'_>) -> Result<Value, FactError> {
        self.log.lock().expect("log").push(format!("fetch {fact}"));
        Ok(json!({"ok": true}))
    }
    fn prefetch(&self, facts: &[&str], _req: &FactRequest<'_>) {
        self.log
            .lock()
            .expect("log")
            .push(format!("prefetch {}", facts.join(",")));
    }
    fn cost(&self, fact: &str) -> u32 {
        if fact == "cheap.fact" { 1 } else { 5 }
    }
}

#[test]
fn event_checks_run_first_and_a_causes_facts_start_together() {
    let l = lib(&format!(
        r#"
id: order
title: Order
applies_when: "true"
causes:
  - id: ruled_out_by_the_event
    title: The event rules this out before any probe
    checks:
      - id: costly_first
        needs: [costly.fact]
        expr: facts["costly.fact"].ok
      - id: event_says_no
        expr: error.status == 500
    actions: [fix]
  - id: probed
    title: Needs two facts
    checks:
      - id: costly
        needs: [costly.fact]
        expr: facts["costly.fact"].ok
      - id: cheap
        needs: [cheap.fact]
        expr: facts["cheap.fact"].ok
      - id: event_says_yes
        expr: error.status == 403
    actions: [fix]
{ACTIONS}"#
    ));
    let rec = Recorder::default();
    let res = run_live(&l, &json!({"error": {"status": 403}}), &rec);
    // No probe for the cause the event rules out; the other cause's facts start together,
    // then are collected cheapest first.
    assert_eq!(
        *rec.log.lock().unwrap(),
        vec![
            "prefetch cheap.fact,costly.fact".to_string(),
            "fetch cheap.fact".to_string(),
            "fetch costly.fact".to_string(),
        ]
    );
    assert_eq!(outcome(&res, "costly_first"), Outcome::Skipped);
    let order: Vec<&str> = res
        .path
        .iter()
        .filter(|p| ["costly", "cheap", "event_says_yes"].contains(&p.node.as_str()))
        .map(|p| p.node.as_str())
        .collect();
    assert_eq!(order, ["event_says_yes", "cheap", "costly"]);
    assert_eq!(res.root_causes[0].id, "probed");
}

#[test]
fn ranking_actions_and_dispositions() {
    let l = lib(&format!(
        r#"
id: rank
title: Rank
applies_when: "true"
causes:
  - id: weak
    title: Only supported
    checks:
      - id: hint
        role: support
        expr: "true"
    actions: [fix]
  - id: strong
    title: Confirmed
    checks:
      - id: provider_code
        expr: error.status == 429 && error.code == "rate_limited"
        evidence: "status {{error.status}}, code {{error.code}}"
    actions: [wait, fix]
{ACTIONS}"#
    ));
    let res = run(
        &l,
        json!({"occurred_at": "2026-11-23T10:00:00Z", "error": {"status": 429, "code": "rate_limited", "headers": {"Retry-After": "Mon, 23 Nov 2026 10:01:30 GMT"}}}),
    );
    let ids: Vec<&str> = res.root_causes.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["strong", "weak"]);
    assert_eq!(res.root_causes[1].confidence, Confidence::Likely);
    let actions: Vec<&str> = res.actions.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(actions, ["wait", "fix"]);
    assert_eq!(
        serde_json::to_value(res.disposition).expect("json"),
        json!({"kind": "retry_after", "retry_after_seconds": 90})
    );
    assert_eq!(
        res.path.last().map(|p| (p.kind, p.outcome)),
        Some((NodeKind::Action, Outcome::Recommended))
    );

    let none = run(&l, json!({"error": {"status": 500}}));
    assert_eq!(none.root_causes[0].id, "weak");
    assert_eq!(
        serde_json::to_value(none.disposition).expect("json")["kind"],
        "needs_user"
    );
}

#[test]
fn no_matching_playbook_is_no_match() {
    let l = lib(&format!(
        "id: x\ntitle: x\napplies_when: error.status == 429\ncauses: [{{id: c, title: c, actions: [fix]}}]\n{ACTIONS}"
    ));
    let res = run(
        &l,
        json!({"event_id": "e1", "error": {"status": 418, "message": "I'm a teapot"}}),
    );
    assert_eq!(res.status, Status::NoMatch);
    assert!(res.root_causes.is_empty() && res.actions.is_empty() && res.symptom.is_none());
    assert_eq!(res.event_id.as_deref(), Some("e1"));
    assert!(res.explanation.contains("could not recognise"));
}

/// Answers `client.check` with whether the client is valid, and logs every fetch.
struct ClientCheck {
    valid: bool,
    log: std::sync::Mutex<Vec<String>>,
}

impl FactProvider for ClientCheck {
    fn fetch(&self, fact: &str, _req: &FactRequest<'_>) -> Result<Value, FactError> {
        self.log.lock().expect("log").push(fact.to_string());
        match fact {
            "client.check" => Ok(json!({"client_valid": self.valid})),
            _ => Err(FactError::new("no such fact")),
        }
    }
}

fn fact_library() -> Library {
    lib(&format!(
        r#"
id: refresh
title: Refresh failed
applies_when: "true"
causes:
  - id: bad_client
    title: The client credentials are wrong
    checks:
      - id: client_rejected
        script: |
          if error?.code == "invalid_client_secret" {{ true }}
          else if error?.status == 400 {{
            let c = fact("client.check")?.client_valid;
            if c == false {{ true }} else if c == true {{ false }} else {{ false }}
          }}
          else {{ false }}
        evidence: "{{if facts[\"client.check\"] != () {{ \"Checked live: rejected\" }} else {{ \"The provider says so\" }}}}"
        evidence_fail: "{{if facts[\"client.check\"]?.client_valid == true {{ \"Checked live: accepted\" }} else {{ \"Nothing says so\" }}}}"
    actions: [fix]
{ACTIONS}"#
    ))
}

#[test]
fn fact_is_fetched_only_on_the_branch_that_asks_and_then_decides() {
    let l = fact_library();
    let vague = json!({"error": {"status": 400, "message": "Token request failed"}});
    let said = json!({"error": {"status": 401, "code": "invalid_client_secret"}});

    // Rejected live: confirmed, on a live basis, marked live in the path.
    let p = ClientCheck {
        valid: false,
        log: Default::default(),
    };
    let res = run_live(&l, &vague, &p);
    assert_eq!(res.root_causes[0].id, "bad_client");
    assert_eq!(res.root_causes[0].confidence, Confidence::Confirmed);
    assert_eq!(res.root_causes[0].evidence, vec!["Checked live: rejected"]);
    let step = res
        .path
        .iter()
        .find(|s| s.node == "client_rejected")
        .expect("step");
    assert!(step.live);
    assert!(step.facts.iter().any(|f| f == "facts.client.check"));
    assert_eq!(*p.log.lock().expect("log"), vec!["client.check"]);
    assert!(res.settled_by.is_empty(), "online: no settled_by");

    // The event's own words decide: no probe.
    let p = ClientCheck {
        valid: false,
        log: Default::default(),
    };
    let res = run_live(&l, &said, &p);
    assert_eq!(res.root_causes[0].id, "bad_client");
    assert!(p.log.lock().expect("log").is_empty());
    assert!(!res.path.iter().any(|s| s.live));

    // Accepted live: ruled out with the live reason.
    let p = ClientCheck {
        valid: true,
        log: Default::default(),
    };
    let res = run_live(&l, &vague, &p);
    assert_eq!(res.status, Status::Inconclusive);
    assert_eq!(outcome(&res, "bad_client"), Outcome::RuledOut);
    let cause = res
        .path
        .iter()
        .find(|s| s.node == "bad_client")
        .expect("cause");
    assert_eq!(cause.detail.as_deref(), Some("Checked live: accepted"));
}

#[test]
fn offline_fact_reads_unit_and_the_resolution_says_which_check_would_settle_it() {
    let l = fact_library();
    let vague = json!({"error": {"status": 400, "message": "Token request failed"}});
    let res = run(&l, vague);
    assert_eq!(res.status, Status::Inconclusive);
    assert_eq!(outcome(&res, "bad_client"), Outcome::RuledOut);
    assert_eq!(res.settled_by.len(), 1, "{:#?}", res.settled_by);
    assert_eq!(res.settled_by[0].fact, "client.check");
    assert_eq!(res.settled_by[0].would_settle, vec!["bad_client"]);
    let json = serde_json::to_value(&res).expect("json");
    assert_eq!(
        json["settled_by"],
        json!([{"fact": "client.check", "would_settle": ["bad_client"]}])
    );
    // Decided from the event: nothing to settle.
    let res = run(
        &l,
        json!({"error": {"status": 401, "code": "invalid_client_secret"}}),
    );
    assert!(res.settled_by.is_empty());
    assert!(
        serde_json::to_value(&res)
            .expect("json")
            .get("settled_by")
            .is_none()
    );
}
