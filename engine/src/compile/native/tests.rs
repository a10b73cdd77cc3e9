//! The correctness proof of native specialisation: scripts run natively and through Rhai on
//! the same events must agree, value for value (text, type and sharing), or both report
//! missing data; a native `Fallback` is always allowed (Rhai then decides alone).
//!
//! `library_agrees_with_rhai` does this for every script of the standard library (matchers,
//! checks, templates, action parameters) on every event under `tests/cases` and
//! `examples/events`, plus a few events with unusual types.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use rhai::{Dynamic, Map};

use super::*;
use crate::compile::script::{Compiler, Site};
use crate::compile::{Library, Node, Script, Segment, Template};
use crate::eval::event::Event;

const EXPRS: &[&str] = &[
    "error.status == 429",
    "error.status != 429",
    "error.status == \"429\"",
    "error.code == () || error.code == \"invalid_grant\"",
    "phase == \"token_refresh\" && oauth.has_refresh_token",
    "phase == \"token_refresh\" && oauth?.has_refresh_token == true",
    "connection?.provider_error_code == \"PROVIDER_RATE_LIMITED\"",
    "connection.oauth.has_refresh_token == false",
    "event.connection.api_key.location == \"query\"",
    "signal(\"sig_a\") || error.status == 401",
    "!signal(\"sig_b\") && has(error.message)",
    "has(oauth?.client_id)",
    "header(\"Retry-After\") == \"120\"",
    "(error.message ?? error.code) == \"boom\"",
    "error.body.error == \"invalid_grant\"",
    "error.body?.error?.code == 403",
    "oauth.app_status == \"testing\" || oauth.app_status == \"unverified\"",
    "error.status == 401.0",
    "error.status",
    "error.code || true",
    "now == 1795428000",
    "(error?.status ?? 0) < 100 && signal(\"sig_a\")",
    "error.status >= 400 && error.status <= 499",
    "error?.code in [\"invalid_grant\", \"PROVIDER_RATE_LIMITED\", ()]",
    "connection?.provider_error_code in [\"PROVIDER_RATE_LIMITED\"] || error.status in [429, 503]",
    "!(error.code in [\"invalid_grant\"])",
    "matches(error?.message, `^b(o)+m$`) || matches(text(), `sig_[ab]`)",
    "lower(error?.code) == \"invalid_grant\"",
    "matches(error?.kind, \"^(network|tls)$\")",
    "dig(error, \"body.error\") == \"invalid_grant\"",
    "dig(error, 5) == ()",
    "contains_ci(error?.message, \"BOOM\") || contains_ci(error.code, \"grant\")",
    "past(connection?.oauth?.access_token_expires_at) == true",
    "seconds_since(event?.occurred_at) > 3600",
    "url(connection?.base_url)?.host == \"api.example.com\"",
    "retry_hint() == 120",
    "has(dig(error, \"headers.retry-after\"))",
    "missing(connection?.required_scopes, connection?.granted_scopes) == ()",
    "secret(\"api_key\").present",
    "secret_matches(\"api_key\", \"^sk_\") == true",
];

/// Scripts for the statement compiler: every construct it accepts, on awkward values.
const SCRIPTS: &[&str] = &[
    "let s = error?.status ?? 0; if s >= 500 { return \"server\"; } s",
    "let x = error.status; x + 1",
    "let x = error?.status; x * 2 - 3",
    "let x = error?.status; x / 2",
    "let x = error?.status; x % 7",
    "let x = error?.status; -x",
    "let m = error?.message ?? \"\"; m.len()",
    "let m = error?.message; m.len()",
    "error?.message.len",
    "let m = lower(error?.message ?? \"\"); m.contains(\"oo\") && !m.starts_with(\"x\") || m.ends_with(\"m\")",
    "let m = error?.message ?? \"\"; m.index_of(\"o\") + m.index_of(\"o\", 2) + m.index_of(\"zz\")",
    "let m = error?.message ?? \"\"; m.sub_string(1, 2) + \"|\" + m.sub_string(-2) + \"|\" + m.to_upper() + m.to_lower()",
    "let parts = (error?.message ?? \"\").split(\" \"); parts.len() + \" \" + parts[0] + parts[-1]",
    "let parts = (error?.message ?? \"\").split(); parts",
    "let x = error?.body; type_of(x) + type_of(error) + type_of(now) + type_of(1.5) + type_of([]) + type_of(())",
    "let n = 0; for s in connection?.required_scopes ?? [] { n += 1; if n > 5 { break; } } n",
    "let out = []; for (s, i) in [\"a\", \"b\", \"c\"] { if i == 1 { continue; } out.push(s + i); } out",
    "let i = 0; while i < 10 { i += 3; } i",
    "let i = 0; loop { i += 1; if i > 4 { break i * 10; } }",
    "let i = 0; loop { i += 1; }",
    "let t = \"  padded \"; t.trim(); t + \"!\"",
    "let a = #{x: error?.status, y: [1, 2, phase]}; a.y[2] ?? a.x",
    "let a = [error?.code, 2]; a[0] == () || a[5] == 1",
    "facts[\"net.tcp\"]?.failure == \"timeout\"",
    "\"client_id\" in oauth && !has(oauth.client_id)",
    "\"sig\" in (error?.message ?? \"\")",
    "error?.status in [401, 403]",
    "if error?.status == 401 { \"a\" } else if error?.status == 429 { \"b\" } else { () }",
    "let x = if has(error?.code) { error.code } else { \"none\" }; x + \"!\"",
    "\"HTTP \" + error?.status + \" \" + true + \" \" + 1.5",
    "error?.status + \" HTTP\"",
    "let s = error?.status; s > 400 && s < 500",
    "let s = error?.status; s == 429.0 || s != 401",
    "let s = error?.message; s < \"c\" || s >= \"x\"",
    "let x = oauth; x",
    "let x = connection?.oauth; type_of(x)",
    "oauth",
    "connection?.oauth",
    "error ?? 1",
    "let e = error; e.status",
    "dig(error, \"\")",
    "lower(error?.message) + ago(connection?.oauth?.access_token_expires_at) + duration(90)",
    "head(error?.message, 3) + tail(error?.message, 3) + backoff(3)",
    "join([error?.code, \"x\", 1], \", \")",
    "matches(error?.message, \"(^|,)\\\\s*\" + (error?.code ?? \"b\"))",
    "is_unit(error?.nothing) && !is_unit(error)",
    "let x = 5; { let x = 6; } x",
    "let x = 5; let x = x + 1; x",
    "const y = 3; y * y",
    "abs(-4) + (error?.status ?? -3).abs()",
    "signal(\"sig_a\") || signal(\"sig_\" + \"b\")",
    "header(\"retry-after\") ?? \"none\"",
    "let w = error?.body; if type_of(w) == \"string\" && matches(w, \"<html\") { true } else { false }",
    "error.missing.deeper",
    "error?.missing.deeper",
    "error.status.x",
    "error?.headers[\"retry-after\"]",
    "connection.required_scopes[0]",
    "connection?.required_scopes[-1]",
    "connection?.required_scopes?[9]",
    "matches(text(), \"sig_a\") || text().len() > 5",
    "let b = lower(error?.body ?? \"\"); b.len()",
    "let m = error?.body ?? \"\"; (m + m).len()",
    "(connection?.required_scopes ?? []).filter(|s| s != \"a\").len()",
    "(connection?.required_scopes ?? []).filter(|s, i| i > 0 && s != ())",
    "let y = 2; [1, 2, 3].some(|l| (l - y).abs() <= 0)",
    "let y = error?.status; [1, 401, 3].some(|l| l == y) || [].some(|l| true)",
    "[1, 2, 3].all(|l| l > 0) && ![1, -2].all(|l| l > 0) && [].all(|l| false)",
    "(connection?.required_scopes ?? [\"x\"]).map(|s| s + \"!\").join(\", \")",
    "[3, 9, 4].reduce(|a, b| if a == () || b > a { b } else { a })",
    "[1, 2].map(|x| x.len())",
    "[seconds_since(error?.nothing), 5, ()].filter(|x| x != ())",
    "switch lower(error?.code) { \"invalid_grant\" => \"grant\", \"a\" if error?.status == 1 => 1, \"true\" => true, _ => error?.code ?? \"none\" }",
    "switch error?.status { 401 => \"unauthorised\", _ => \"other\" }",
    "let p = switch phase { \"token_refresh\" => 1, \"with \\\"quote\" => 2 }; p",
    "// a comment with a \" quote\nswitch error?.message { \"boom\" => \"b\", \"sig_b\" => \"s\" }",
    "let hs = error?.headers; if type_of(hs) == \"map\" { hs.keys() } else { () }",
    "let n = []; for k in (error?.body ?? #{}).keys() { n.push(k + \"!\"); } n",
    "parse_int(header(\"retry-after\") ?? \"x\") + 1",
    "parse_int(\" 42 \") + parse_int(\"-7\")",
    "fact(\"whoami\")?.authenticated == true || fact(\"net.tcp\") == ()",
];

const EVENTS: &[&str] = &[
    r#"{"occurred_at":"2026-11-23T10:00:00Z","error":{"status":429,"headers":{"retry-after":"120"},"message":"boom"}}"#,
    r#"{"error":{"status":401,"code":"invalid_grant","body":{"error":"invalid_grant"}},"phase":"token_refresh","connection":{"oauth":{"has_refresh_token":true,"client_id":" "}}}"#,
    r#"{"error":{"status":"429","body":{"error":{"code":403}}},"connection":{"provider_error_code":"PROVIDER_RATE_LIMITED","api_key":{"location":"query"},"oauth":{"app_status":"testing"}}}"#,
    r#"{"error":{"status":401.0,"message":"a sig_a b","body":"text body"},"connection":null}"#,
    r#"{"error":{}}"#,
    r#"{"error":{"code":true,"message":""},"connection":{"oauth":7}}"#,
    r#"{"occurred_at":"2026-11-23T12:00:00Z","error":{"status":401,"message":"Boom","headers":{"Retry-After":"120"}},"connection":{"base_url":"https://API.example.com/v1","required_scopes":["repo"],"granted_scopes":"read:user","oauth":{"access_token_expires_at":"2026-11-23T10:00:00Z"},"secrets":{"api_key":"sk_live_x"}}}"#,
    r#"{"error":{"status":9223372036854775807,"message":"héllo wörld, ünïcode","code":["a",1],"body":"<html>oops</html>"},"phase":null,"connection":{"required_scopes":["a","b","c","d","e","f","g"],"oauth":null}}"#,
    r#"{"error":{"status":-9223372036854775808,"message":"  ","kind":"tls","headers":[]},"connection":{"required_scopes":[],"granted_scopes":["x"]},"history":{"failure_after_seconds":3600.5}}"#,
    r#"{"error":{"status":0,"message":"sig_b","body":{"errors":[{"message":"m"}]}},"connection":"flat string","execution":{"mode":"production"}}"#,
];

/// An event whose error body is over the engine's string limit: Rhai refuses `text()` and any
/// helper result built from it, so native evaluation must not decide those either.
fn oversized_event() -> String {
    format!(
        r#"{{"error":{{"status":502,"message":"sig_a","body":"<html>{}</html>"}}}}"#,
        "x".repeat(sandbox::MAX_STRING_SIZE)
    )
}

/// One event, set up as `diagnose` sets it up.
struct Prepared {
    helper: Rc<HelperCtx>,
    vars: Vec<Dynamic>,
    scope: rhai::Scope<'static>,
}

fn prepare(json: &str, signals: &Arc<SignalSet>, patterns: &Arc<PatternSet>) -> Prepared {
    let event = Event::parse(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let helper = Rc::new(HelperCtx::new(
        event.occurred_at.unwrap_or(0),
        event.section("error"),
        event.secrets.clone(),
        signals.clone(),
        patterns.clone(),
    ));
    let vars = event.scope_values(
        Dynamic::from_map(Map::new()).into_shared(),
        event.occurred_at.unwrap_or(0),
    );
    let mut scope = rhai::Scope::new();
    for (name, v) in SCOPE_VARS.iter().zip(&vars) {
        scope.push_constant_dynamic(*name, v.clone());
    }
    Prepared {
        helper,
        vars,
        scope,
    }
}

#[derive(Default)]
struct Tally {
    decided: usize,
    missing: usize,
    fallback: usize,
}

/// Runs one script both ways on one prepared event and checks they agree.
fn check(
    engine: &rhai::Engine,
    native: &Native,
    ast: &rhai::AST,
    ev: &mut Prepared,
    what: &str,
    tally: &mut Tally,
) {
    let _guard = sandbox::install(ev.helper.clone());
    // Each script reads its paths itself: a value another script read must not hide a
    // difference between the evaluators.
    ev.helper.forget_fields();
    let nat = native.eval(&NativeCtx {
        vars: &ev.vars,
        helper: &ev.helper,
    });
    if matches!(nat, Err(Stop::Fallback)) {
        tally.fallback += 1;
        return;
    }
    let base = ev.scope.len();
    let rhai = engine.eval_ast_with_scope::<Dynamic>(&mut ev.scope, ast);
    ev.scope.rewind(base);
    match (&nat, &rhai) {
        (Ok(n), Ok(r)) => {
            tally.decided += 1;
            assert_eq!(
                (n.to_string(), n.type_name(), n.is_shared()),
                (r.to_string(), r.type_name(), r.is_shared()),
                "{what}"
            );
        }
        (Err(Stop::Missing(_)), Err(e)) if crate::eval::walk::is_missing_data(e) => {
            tally.missing += 1
        }
        _ => panic!("{what}: native {nat:?} vs rhai {rhai:?}"),
    }
}

fn compile_src(compiler: &Compiler<'_>, src: &str) -> Script {
    let mut diags = Vec::new();
    compiler
        .compile_at(
            src,
            (1, 1),
            true,
            Site {
                file: "t",
                yaml_path: "",
            },
            &mut diags,
        )
        .unwrap_or_else(|| panic!("{src}: {diags:?}"))
}

#[test]
fn agrees_with_rhai() {
    let signals = Arc::new(crate::signals::tests::build(&[
        ("sig_a", &["sig_a"]),
        ("sig_b", &["sig_b"]),
    ]));
    let engine = sandbox::engine();
    let compiler = Compiler::new(&engine, &signals, Default::default());
    let jsons: Vec<String> = EVENTS
        .iter()
        .map(|e| e.to_string())
        .chain([oversized_event()])
        .collect();
    let compiled: Vec<(&str, Script)> = EXPRS
        .iter()
        .chain(SCRIPTS)
        .map(|src| (*src, compile_src(&compiler, src)))
        .collect();
    // The helpers see the patterns the scripts were compiled with, as in a library.
    let patterns = Arc::new(compiler.take_patterns());
    let mut events: Vec<Prepared> = jsons
        .iter()
        .map(|e| prepare(e, &signals, &patterns))
        .collect();
    let (mut exprs, mut programs) = (0, 0);
    let mut tally = Tally::default();
    for (src, script) in &compiled {
        let Some(native) = &script.native else {
            continue;
        };
        match **native {
            Native::Program(_) => programs += 1,
            _ => exprs += 1,
        }
        for (ev, json) in events.iter_mut().zip(&jsons) {
            check(
                &engine,
                native,
                &script.ast,
                ev,
                &format!("{src} on {}", &json[..json.len().min(300)]),
                &mut tally,
            );
        }
    }
    assert!(exprs >= 22, "only {exprs} expressions specialised");
    let unsupported: Vec<&str> = SCRIPTS
        .iter()
        .copied()
        .filter(|s| compile_src(&compiler, s).native.is_none())
        .collect();
    assert!(unsupported.is_empty(), "not specialised: {unsupported:?}");
    assert!(programs >= 40, "{programs} programs");
    assert!(
        tally.decided >= 500,
        "only {} evaluations decided natively",
        tally.decided
    );
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every event the test suite and the examples use.
fn library_events() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                let ev = v.get("event").unwrap_or(&v);
                if ev.get("error").is_some() {
                    out.push(ev.to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("tests/cases"), &mut out);
    walk(&repo().join("examples/events"), &mut out);
    out.extend(EVENTS.iter().map(|e| e.to_string()));
    out.push(oversized_event());
    out
}

/// Every script in a library, once per distinct source text.
fn library_scripts(lib: &Library) -> BTreeMap<String, Script> {
    fn template(t: &Template, out: &mut Vec<Script>) {
        for s in t.segments.iter() {
            if let Segment::Expr(e) = s {
                out.push(e.clone());
            }
        }
    }
    fn check(c: &crate::compile::Check, out: &mut Vec<Script>) {
        out.push(c.script.clone());
        for t in c.evidence.iter().chain(&c.evidence_fail) {
            template(t, out);
        }
    }
    let mut all = Vec::new();
    for pb in lib.playbooks() {
        all.push(pb.matcher.clone());
        for n in &pb.nodes {
            match n {
                Node::Step(s) => check(&s.check, &mut all),
                Node::Cause(c) => {
                    c.checks.iter().for_each(|k| check(k, &mut all));
                    c.explain.iter().for_each(|t| template(t, &mut all));
                    if let Some(d) = &c.disposition {
                        all.extend(d.retry_after.clone());
                    }
                }
            }
        }
        if let Some(d) = &pb.inconclusive.disposition {
            all.extend(d.retry_after.clone());
        }
    }
    for a in lib.actions() {
        a.steps.iter().for_each(|t| template(t, &mut all));
        all.extend(a.params.iter().map(|(_, s)| s.clone()));
        all.extend(a.when.clone());
    }
    all.into_iter().map(|s| (s.source.to_string(), s)).collect()
}

#[test]
fn library_agrees_with_rhai() {
    let mut diags = Vec::new();
    let sources = crate::load::read_sources(&repo().join("playbooks"), &mut diags);
    let (lib, diags2) = Library::load(&[sources]);
    assert!(
        diags.iter().chain(&diags2).all(|d| !d.is_error()),
        "{diags:?} {diags2:?}"
    );
    let scripts = library_scripts(&lib);
    let events = library_events();
    let mut prepared: Vec<Prepared> = events
        .iter()
        .map(|e| prepare(e, &lib.signals, &lib.patterns))
        .collect();
    let mut tally = Tally::default();
    let mut native = 0;
    let mut why_not: BTreeMap<String, usize> = BTreeMap::new();
    for (src, script) in &scripts {
        let Some(n) = &script.native else {
            let known = Known {
                signals: &lib.signals,
                patterns: &std::sync::Mutex::new(PatternSet::default()),
                paths: &std::sync::Mutex::new(super::PathSet::default()),
            };
            let reason = program::compile(&script.ast, &known, src)
                .err()
                .unwrap_or_default();
            *why_not.entry(reason).or_default() += 1;
            continue;
        };
        native += 1;
        let fb0 = tally.fallback;
        for (ev, json) in prepared.iter_mut().zip(&events) {
            check(
                &lib.engine,
                n,
                &script.ast,
                ev,
                &format!("{src}\non {}", &json[..json.len().min(300)]),
                &mut tally,
            );
        }
        if std::env::var("NATIVE_DEBUG").is_ok() && tally.fallback > fb0 {
            eprintln!(
                "FALLBACK {} {}",
                tally.fallback - fb0,
                src.replace('\n', " ")
            );
        }
    }
    eprintln!(
        "{native} of {} library scripts native; on {} events: {} decided, {} missing data, {} fell back; not native: {why_not:?}",
        scripts.len(),
        events.len(),
        tally.decided,
        tally.missing,
        tally.fallback
    );
    // Every standard-library script runs natively: one falling back to Rhai costs the
    // interpreter on every event it is reached for (the batch rate of issue 15).
    assert_eq!(
        native,
        scripts.len(),
        "scripts left to the interpreter: {why_not:?}"
    );
}
