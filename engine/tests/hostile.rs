//! Hostile playbooks: scripts that run away or build huge values are stopped by their time
//! budget and the value bounds, on any thread, and `lint_budgets` (behind `whyfail check`)
//! names them.

use std::time::Duration;

use serde_json::json;
use whyfail_engine::model::resolution::{Outcome, Resolution};
use whyfail_engine::sandbox::{self, STOPPED};
use whyfail_engine::{Library, Options, Source, diagnose_json, lint_budgets};

fn lib(yaml: &str) -> Library {
    let (lib, diags) = Library::load(&[vec![Source::new("hostile.yaml", yaml)]]);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:#?}");
    lib
}

/// Diagnoses on a fresh thread with the default 2 MiB stack (as a server's worker has): a
/// stack overflow there aborts the whole test binary, which is the failure this guards.
fn diagnose_on_worker(lib: Library) -> Resolution {
    std::thread::spawn(move || {
        let event = json!({"error": {"status": 500, "message": "boom"}}).to_string();
        diagnose_json(&lib, &event, &Options::default()).expect("valid event")
    })
    .join()
    .expect("the diagnosis thread survived")
}

fn detail<'r>(res: &'r Resolution, node: &str) -> (Outcome, &'r str) {
    let step = res
        .path
        .iter()
        .find(|p| p.node == node)
        .unwrap_or_else(|| panic!("{node} not on path: {:#?}", res.path));
    (step.outcome, step.detail.as_deref().unwrap_or(""))
}

/// A step per hostile script, each routing to the next, then one cause whose evidence
/// template runs away too.
fn runaway_playbook(scripts: &[(&str, &str)], template: &str) -> String {
    let mut steps = String::new();
    for (i, (id, script)) in scripts.iter().enumerate() {
        let next = scripts.get(i + 1).map_or("done", |(n, _)| n);
        steps.push_str(&format!(
            "  - id: {id}\n    script: |\n      {script}\n    on_pass: [{next}]\n    on_fail: [{next}]\n    on_unknown: [{next}]\n"
        ));
    }
    format!(
        r#"
id: hostile
title: Hostile scripts
applies_when: "true"
steps:
{steps}causes:
  - id: done
    title: Done
    fallback: true
    checks:
      - id: shown
        expr: "true"
        evidence: '{template}'
    actions: [fix]
actions:
  - id: fix
    title: Fix it
    actor: user
"#
    )
}

const NESTED_MAP: &str = "let a = #{}; for i in 0..100000 { a = #{x: a}; } true";
const NESTED_ARRAY: &str = "let a = []; for i in 0..100000 { a = [a]; } true";
/// Each operation splits a 60,000-character string: far under the operation limit, far over
/// the time budget.
const SLOW_OPS: &str = r#"let s = "x"; while s.len() < 60000 { s += "abcdefghij"; } let n = 0; while true { n += s.split("a").len(); if n < 0 { break; } } true"#;

#[test]
fn runaway_scripts_stop_within_their_budget_on_a_worker_thread() {
    let yaml = runaway_playbook(
        &[
            ("nested_map", NESTED_MAP),
            ("nested_array", NESTED_ARRAY),
            ("slow_ops", SLOW_OPS),
        ],
        "built {let a = #{}; for i in 0..100000 { a = #{x: a}; } \"x\"}",
    );
    // No wall-clock assertion: the outcomes say which bound stopped each script.
    let res = diagnose_on_worker(lib(&yaml));
    for node in ["nested_map", "nested_array"] {
        let (outcome, why) = detail(&res, node);
        assert_eq!(outcome, Outcome::Error, "{node}: {why}");
        assert!(why.contains("Value built by the script"), "{node}: {why}");
    }
    let (outcome, why) = detail(&res, "slow_ops");
    assert_eq!(outcome, Outcome::Error, "{why}");
    assert_eq!(why, sandbox::Overrun::Script.message());
    // The runaway template placeholder shows as unknown; the diagnosis still completes.
    let (_, shown) = detail(&res, "shown");
    assert_eq!(shown, "built (unknown)");
}

#[test]
fn many_runaway_scripts_stop_within_the_diagnosis_budget() {
    let scripts: Vec<(String, &str)> = (0..20).map(|i| (format!("slow_{i}"), SLOW_OPS)).collect();
    let refs: Vec<(&str, &str)> = scripts.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let res = diagnose_on_worker(lib(&runaway_playbook(&refs, "done")));
    let stopped: Vec<&str> = res
        .path
        .iter()
        .filter_map(|p| p.detail.as_deref())
        .filter(|d| d.starts_with(STOPPED))
        .collect();
    // The twenty, and whatever came after them once the diagnosis's budget was spent.
    assert!(stopped.len() >= 20, "{:#?}", res.path);
    assert!(
        stopped.contains(&sandbox::Overrun::Diagnosis.message().as_str()),
        "{stopped:#?}"
    );
}

#[test]
fn values_scripts_build_stay_within_the_depth_and_size_bounds() {
    let engine = sandbox::engine();
    for script in [
        NESTED_MAP,
        NESTED_ARRAY,
        "let a = []; for i in 0..1000 { let b = a; a = [b, 1]; } true",
        "fn wrap(x) { [[x]] } let a = []; for i in 0..1000 { a = wrap(a); } true",
        "let a = []; let g = |x| [x]; for i in 0..1000 { a = g.call(a); } true",
        // A parameter named like an event section gets no exemption.
        "let a = []; let f = |error| { for i in 0..1000 { error = [error]; } error }; f.call(a); true",
        // Function pointers' curried arguments escape Rhai's size check; `f` doubles each time.
        r#"let f = Fn("x"); for i in 0..1000 { f = f.curry(f); } true"#,
    ] {
        let err = engine.eval::<bool>(script).expect_err(script);
        assert!(
            matches!(*err, rhai::EvalAltResult::ErrorDataTooLarge(..)),
            "{script}: {err}"
        );
        // Stopped by the value bounds (`ErrorDataTooLarge`), not by the time budget.
    }
    // Values within the bounds are untouched, constants included.
    for script in [
        "let a = []; for i in 0..60 { a = [a]; } true",
        "const c = [[[[1]]]]; let b = [c, c]; b.len() == 2",
        "let a = []; for i in 0..300 { a.push(#{ id: i, tags: [i] }); } a.len() == 300",
    ] {
        assert!(engine.eval::<bool>(script).expect(script), "{script}");
    }
}

#[test]
fn lint_budgets_names_a_script_that_runs_away_on_an_empty_event() {
    let yaml = runaway_playbook(
        &[("slow_ops", SLOW_OPS), ("fine", "error?.status == 500")],
        "done",
    );
    let l = lib(&yaml);
    let diags = lint_budgets(&l, Duration::from_secs(5));
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert_eq!(d.code, "script_budget");
    assert_eq!(d.yaml_path, "steps[0].script");
    // The script's first line in the YAML text above.
    let line = yaml
        .lines()
        .position(|l| l.contains("let s = "))
        .expect("script line")
        + 1;
    assert_eq!(d.line, Some(line as u64), "{d}");
}

#[test]
fn an_error_text_over_the_string_limit_is_read_capped() {
    let l = lib(r#"
id: long_text
title: Long error text
applies_when: "true"
causes:
  - id: read
    title: Read it
    fallback: true
    checks:
      - id: whole_text
        expr: text().contains("word word") && !text().contains("the end")
      - id: message
        expr: error.message.ends_with("[truncated]") && error.message.len() <= 65536
      - id: signal_text
        expr: matches(text(), "^word")
    actions: [fix]
actions:
  - id: fix
    title: Fix it
    actor: user
"#);
    let long = format!("{} the end", "word ".repeat(20_000));
    let event = json!({"error": {"status": 500, "message": long, "body": long}});
    let res = diagnose_json(&l, &event.to_string(), &Options::default()).expect("event");
    for check in ["whole_text", "message", "signal_text"] {
        let (outcome, why) = detail(&res, check);
        assert_eq!(outcome, Outcome::Pass, "{check}: {why}");
    }
}
