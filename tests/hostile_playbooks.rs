//! Hostile playbooks and events through the binary: memory stays bounded whatever a playbook
//! builds from event data.

use std::io::Write;
use std::time::Duration;

use serde_json::json;

mod common;

/// Peak resident memory of a running process so far, in KiB (Linux `VmHWM`).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn distinct_hostile_patterns_from_events_keep_memory_flat() {
    // 4,000 events, each with its own key prefix shaped to compile into a large automaton if
    // it were ever compiled as a regular expression (the playbook builds a pattern from it).
    let mut input = String::new();
    for i in 0..4000 {
        let prefix = format!("(?:[a-z0-9_]{{0,30}}){{0,25}}k{i:04}");
        let event = json!({
            "error": {"status": 401, "message": "Unauthorized"},
            "connection": {"auth_type": "api_key", "api_key": {"prefix": prefix}}
        });
        input.push_str(&event.to_string());
        input.push('\n');
    }
    let mut child = common::spawn_whyfail(&[
        "diagnose",
        "--batch",
        "--offline",
        "--playbooks",
        "tests/playbooks/hostile",
        "-",
    ]);
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    // The high-water mark only grows: the last reading before the process exits is its peak
    // (what `/usr/bin/time -f %M` reports), give or take its final moments.
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
            std::thread::sleep(Duration::from_millis(5));
        }
        peak
    });
    // Read the output while the writer writes (else both pipes fill and neither side moves).
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer").expect("write events");
    let peak = sampler.join().expect("sampler");
    assert_eq!(out.status.code(), Some(0));
    let lines = String::from_utf8_lossy(&out.stdout);
    assert_eq!(lines.lines().count(), 4000);
    assert!(
        lines.lines().all(|l| l.contains("\"symptom\"")),
        "every event diagnosed"
    );
    assert!(peak > 0, "no memory reading");
    assert!(peak < 200 * 1024, "peak RSS {} MiB", peak / 1024);
}

#[test]
fn no_builtin_playbook_builds_a_pattern_from_event_data() {
    let (_, diags) = whyfail::load_library(&[] as &[&str], true);
    let dynamic: Vec<String> = diags
        .iter()
        .filter(|d| d.code == "dynamic_pattern")
        .map(|d| d.to_string())
        .collect();
    assert!(dynamic.is_empty(), "{dynamic:#?}");
}

#[test]
fn distinct_hostile_prefixes_compile_no_pattern_of_their_own() {
    // The same 4,000 hostile prefixes, in process: count the regular expressions compiled.
    // Before the fix each distinct prefix compiled (and cached) its own pattern.
    let (lib, diags) = whyfail::load_library(&["tests/playbooks/hostile"], true);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:#?}");
    let before = whyfail_engine::sandbox::patterns_compiled();
    for i in 0..4000 {
        let prefix = format!("(?:[a-z0-9_]{{0,30}}){{0,25}}k{i:04}");
        let event = json!({
            "error": {"status": 401, "message": format!("Unauthorized {prefix}")},
            "connection": {"auth_type": "api_key", "api_key": {"prefix": prefix}}
        });
        let res = whyfail_engine::diagnose_json(
            &lib,
            &event.to_string(),
            &whyfail_engine::Options::default(),
        )
        .expect("event");
        assert!(res.symptom.is_some(), "{res:#?}");
    }
    let compiled = whyfail_engine::sandbox::patterns_compiled() - before;
    // At most each of the library's own literal patterns once, whatever the events.
    assert!(
        compiled <= lib.pattern_count(),
        "{compiled} patterns compiled for a library of {}",
        lib.pattern_count()
    );
    assert!(lib.pattern_count() < 4000);
}

/// A fresh directory under the system's temporary one, for this test's files.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("whyfail-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn run(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = common::spawn_whyfail(args);
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("wait")
}

const RUNAWAY: &str = r#"id: runaway
title: Runaway scripts
priority: 999
applies_when: "true"
steps:
  - id: nested_map
    script: |
      let a = #{}; for i in 0..100000 { a = #{x: a}; } true
    on_pass: [nested_array]
    on_fail: [nested_array]
    on_unknown: [nested_array]
  - id: nested_array
    script: |
      let a = []; for i in 0..100000 { a = [a]; } true
    on_pass: [endless]
    on_fail: [endless]
    on_unknown: [endless]
  - id: endless
    script: |
      let s = "x"; while s.len() < 60000 { s += "abcdefghij"; } let n = 0; while true { n += s.split("a").len(); if n < 0 { break; } } true
    on_pass: [done]
    on_fail: [done]
    on_unknown: [done]
causes:
  - id: done
    title: Done
    fallback: true
    checks:
      - id: shown
        expr: "true"
        evidence: 'built {let a = #{}; for i in 0..100000 { a = #{x: a}; } "x"}'
    actions: [retry_later]
"#;

#[test]
fn runaway_playbooks_are_stopped_and_the_binary_survives() {
    // HIGH 1: a nested map (a stack overflow when dropped), a nested array, an endless loop and
    // the same loop in a template: each is stopped, the diagnosis completes, nothing crashes.
    let dir = scratch("runaway");
    std::fs::write(dir.join("runaway.yaml"), RUNAWAY).expect("write playbook");
    let dir_s = dir.to_string_lossy().to_string();
    let event = json!({"error": {"status": 500, "message": "boom"}}).to_string();
    let out = run(
        &["diagnose", "--offline", "--playbooks", &dir_s, "-"],
        Some(&event),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res: serde_json::Value = serde_json::from_slice(&out.stdout).expect("resolution");
    let path = res["path"].as_array().expect("path");
    let detail = |node: &str| {
        path.iter()
            .find(|p| p["node"] == node)
            .unwrap_or_else(|| panic!("{node} not on the path: {res:#}"))
            .clone()
    };
    // The nested values are stopped by the value bounds, the loop by the script's budget.
    for node in ["nested_map", "nested_array"] {
        let p = detail(node);
        assert_eq!(p["outcome"], "error", "{p}");
        assert!(
            p["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("Value built by the script")),
            "{p}"
        );
    }
    let p = detail("endless");
    assert_eq!(p["outcome"], "error", "{p}");
    assert_eq!(
        p["detail"],
        whyfail_engine::sandbox::Overrun::Script.message()
    );
    assert_eq!(detail("shown")["detail"], "built (unknown)");
    // `check` names the script that runs away on every event.
    let out = run(&["check", &dir_s], None);
    let text = String::from_utf8_lossy(&out.stdout).to_string()
        + String::from_utf8_lossy(&out.stderr).as_ref();
    assert!(
        text.contains("script_budget") && text.contains("steps[2].script"),
        "{text}"
    );
    // ... and does not wait out the budget on each of the status probe's 400 events.
    assert!(text.contains("bare-status probe was not run"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn diagnostics_quote_a_window_of_a_huge_line_not_the_line() {
    // LOW 7: a one-line playbook of 8 MB with an error at its end and one at its start.
    let dir = scratch("bigline");
    let filler = "x".repeat(8 << 20);
    let file = dir.join("big.yaml");
    std::fs::write(
        &file,
        format!("{{id: big, title: \"{filler}\", oops: 1, applies_when: \"true\"}}\n"),
    )
    .expect("write playbook");
    let out = run(&["check", &file.to_string_lossy()], None);
    assert_eq!(out.status.code(), Some(1));
    let all = out.stdout.len() + out.stderr.len();
    let text = String::from_utf8_lossy(&out.stdout).to_string()
        + String::from_utf8_lossy(&out.stderr).as_ref();
    assert!(
        text.contains("unknown field `oops`"),
        "{}",
        &text[..text.len().min(2000)]
    );
    assert!(text.contains('^'), "the column is still marked");
    assert!(all < 8 * 1024, "{all} bytes of diagnostics");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_flags_import_and_undefined_functions() {
    // LOW 7: `check` used to pass scripts that call undefined functions or `import`.
    let out = run(&["check", "tests/playbooks/broken/script_calls.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout).to_string()
        + String::from_utf8_lossy(&out.stderr).as_ref();
    for want in [
        "error[module_unavailable]",
        "warning[unknown_function]: unknown function `lowr`",
        "did you mean `lower`?",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
}

#[test]
fn an_error_text_of_64_kib_and_more_is_read_capped() {
    // LOW 7: a 64 KiB error text made every check that read it fail ("string too large").
    let long = format!(
        "API rate limit exceeded for user ID 1234. {}",
        "word ".repeat(30_000)
    );
    let event = json!({
        "error": {"status": 403, "message": long, "body": long},
        "connection": {"provider": "github", "auth_type": "oauth2"}
    })
    .to_string();
    let out = run(&["diagnose", "--offline", "--trace", "-"], Some(&event));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("too large"),
        "a script failed on the long text"
    );
    let res: serde_json::Value = serde_json::from_str(&text).expect("resolution");
    assert_eq!(res["root_causes"][0]["id"], "rate_limited", "{res:#}");
}
