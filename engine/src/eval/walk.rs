//! The walk: one playbook's graph against one event, from the symptom through steps and
//! causes, recording every node's outcome in visit order.
//!
//! Steps route by outcome; causes evaluate their checks in order, and the first failing
//! `require` check rules the cause out (the remaining checks are `skipped`). A check that hits
//! missing data is `unknown`; a script that breaks or exceeds its limits is `error`; neither
//! stops the walk.

use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, Map, Scope};

use crate::compile::native::{NativeCtx, Stop};
use crate::compile::{Cause, Check, Library, Node, Playbook, Script, Segment, Template};
use crate::eval::worlds::{World, Worlds};
use crate::facts::{FactProvider, FactRequest};
use crate::model::playbook::{Basis, Role};
use crate::model::resolution::{Confidence, NodeKind, Outcome, PathStep, TraceStep};
use crate::sandbox::{self, HelperCtx, Overrun, SCOPE_VARS};
use crate::scrub::Scrubber;

/// A cause's verdict.
#[derive(Debug, Clone)]
pub(crate) struct CauseVerdict {
    pub node: usize,
    pub confidence: Option<Confidence>,
    pub evidence: Vec<String>,
    /// What its defining evidence rests on (required checks and the step that routed to it;
    /// support checks only for a cause that has neither): `None` when it has none.
    pub basis: Option<Basis>,
    /// The most specific basis among all its evidence, corroborating support checks included.
    pub grounds: Option<Basis>,
    pub order: usize,
}

pub(crate) struct Walker<'a> {
    pub lib: &'a Library,
    /// Script variables in `SCOPE_VARS` order, for natively specialised scripts.
    pub vars: &'a [Dynamic],
    pub helper: &'a HelperCtx,
    pub scope: &'a mut Scope<'static>,
    pub facts: &'a Dynamic,
    pub event: &'a Dynamic,
    pub secrets: &'a [(String, String)],
    pub provider: Option<&'a dyn FactProvider>,
    pub scrub: &'a Scrubber,
    /// Facts already fetched (or failed) in this diagnosis: name → error reason if failed.
    pub fetched: &'a mut Vec<(String, Option<String>)>,
    /// When live facts must have arrived; a probe still running then makes its checks unknown.
    pub deadline: Option<std::time::Instant>,
    /// The caller's stop flag (`Options::cancel`), checked before every script and fact.
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
    /// Every script evaluated, when tracing.
    pub trace: Option<Vec<TraceStep>>,
    /// The playbook being walked (for the trace).
    pub playbook: &'a str,
    /// Reduced copies of the event for measuring what a check rests on, built when first needed.
    pub worlds: std::cell::OnceCell<Worlds>,
    /// The causes the check being evaluated bears on (its cause, or a step's targets).
    pub settles: Vec<String>,
    /// Whether the last check's outcome was decided with a live fact's answer in hand.
    pub live_used: bool,
    /// Offline: live facts a check asked for, with the causes it bears on (`settled_by`).
    pub offline_wants: Vec<(String, Vec<String>)>,
}

/// The details the walk writes whatever the event (listed in `eval::FIXED_TEXTS`).
pub(crate) const NOT_ENOUGH_INFORMATION: &str = "not enough information in the event";
pub(crate) const LIKELY_ON_GENERIC: &str = "likely: the evidence is generic (an HTTP status or a protocol code); specific evidence would confirm it";
pub(crate) const LIKELY_ON_SOME: &str = "likely: some evidence, not all checks could decide";
pub(crate) const POSSIBLE: &str = "possible: nothing rules it out, nothing confirms it";

/// Why a script or fact was not evaluated after `Options::cancel` was set.
const CANCELLED: &str = "the diagnosis was cancelled";

/// Outcome of evaluating one script.
pub(crate) enum Value {
    Ok(Dynamic),
    Missing(String),
    Failed(String),
}

impl Walker<'_> {
    /// Evaluates a compiled script in the event's scope.
    pub fn run(&mut self, script: &Script) -> Value {
        if self.cancelled() {
            return Value::Failed(CANCELLED.to_string());
        }
        if let Err(o) = sandbox::begin_script() {
            return Value::Failed(o.message());
        }
        if let Some(native) = &script.native {
            match native.eval(&NativeCtx {
                vars: self.vars,
                helper: self.helper,
            }) {
                Ok(v) => return Value::Ok(v),
                Err(Stop::Missing(why)) => return Value::Missing(why),
                Err(Stop::Overrun(o)) => return Value::Failed(o.message()),
                Err(Stop::Fallback) => {}
            }
        }
        let base = self.scope.len();
        let r = self
            .lib
            .engine
            .eval_ast_with_scope::<Dynamic>(self.scope, &script.ast);
        self.scope.rewind(base);
        match r {
            Ok(v) => Value::Ok(v),
            Err(e) if is_missing_data(&e) => {
                Value::Missing(self.scrub.clean(&first_line(&e.to_string())).into_owned())
            }
            Err(e) => match Overrun::of(&e) {
                Some(o) => Value::Failed(o.message()),
                None => Value::Failed(self.scrub.clean(&first_line(&e.to_string())).into_owned()),
            },
        }
    }

    /// Whether the caller asked the diagnosis to stop.
    fn cancelled(&self) -> bool {
        self.cancel
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Evaluates a script in a reduced copy of the event (see `eval::worlds`).
    fn run_in(&self, script: &Script, world: &World) -> Value {
        // Helpers read the installed context, natively run or not.
        let _guard = sandbox::install(world.helper.clone());
        if sandbox::begin_script().is_err() {
            return Value::Failed(String::new());
        }
        if let Some(native) = &script.native {
            match native.eval(&NativeCtx {
                vars: &world.vars,
                helper: &world.helper,
            }) {
                Ok(v) => return Value::Ok(v),
                Err(Stop::Missing(why)) => return Value::Missing(why),
                Err(Stop::Overrun(_)) => return Value::Failed(String::new()),
                Err(Stop::Fallback) => {}
            }
        }
        let mut scope = Scope::new();
        for (var, value) in SCOPE_VARS.iter().zip(&world.vars) {
            scope.push_constant_dynamic(*var, value.clone());
        }
        match self
            .lib
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &script.ast)
        {
            Ok(v) => Value::Ok(v),
            Err(e) if is_missing_data(&e) => Value::Missing(String::new()),
            Err(_) => Value::Failed(String::new()),
        }
    }

    /// What a check that decided `outcome` rests on: declared, or measured by asking it again
    /// with only the status, then only the status and the connection's state, visible.
    fn measure(&self, c: &Check, outcome: Outcome) -> Basis {
        if c.basis_declared || c.basis == Basis::Status || c.basis == Basis::Live {
            return c.basis;
        }
        // It asked the provider (`fact("...")`) and had the answer: the answer is the evidence.
        if self.live_used {
            return Basis::Live;
        }
        let worlds = self.worlds.get_or_init(|| {
            Worlds::new(
                self.vars,
                self.helper.now,
                self.helper.signals.clone(),
                self.helper.patterns.clone(),
                self.helper.secrets.clone(),
            )
        });
        if outcome_of(&self.run_in(&c.script, &worlds.status)) == outcome {
            return Basis::Status;
        }
        if c.basis == Basis::State || outcome_of(&self.run_in(&c.script, &worlds.state)) == outcome
        {
            return Basis::State;
        }
        Basis::Provider
    }

    /// `true` only for a boolean true; missing data and errors count as false.
    pub fn truthy(&mut self, script: &Script) -> bool {
        matches!(self.run(script), Value::Ok(v) if v.as_bool().unwrap_or(false))
    }

    pub fn render(&mut self, t: &Template) -> String {
        let mut out = String::new();
        for seg in t.segments.iter() {
            match seg {
                Segment::Text(s) => out.push_str(s),
                Segment::Expr(e) => match self.run(e) {
                    Value::Ok(v) => push_value(&mut out, &v),
                    _ => out.push_str("(unknown)"),
                },
            }
        }
        // Scrubbed with the rest of the resolution (`eval::finish`).
        out
    }

    fn request(&self) -> FactRequest<'_> {
        FactRequest {
            event: self.event,
            secrets: self.secrets,
            deadline: self.deadline,
        }
    }

    /// Orders a cause's checks for evaluation: checks that read only the event first (they may
    /// rule the cause out before any probe runs), then by the cost of the facts they need.
    fn check_order<'c>(&self, checks: &'c [Check]) -> Vec<&'c Check> {
        let mut order: Vec<&Check> = checks.iter().collect();
        order.sort_by_key(|k| {
            if k.needs.is_empty() {
                0
            } else {
                1 + k
                    .needs
                    .iter()
                    .map(|n| self.provider.map_or(1, |p| p.cost(n)))
                    .max()
                    .unwrap_or(0)
            }
        });
        order
    }

    /// Starts every fact the remaining checks will need, so they are fetched concurrently.
    fn prefetch(&mut self, checks: &[&Check]) {
        let Some(p) = self.provider else { return };
        let mut want: Vec<&str> = Vec::new();
        for k in checks {
            for n in &k.needs {
                if !want.contains(&n.as_str()) && !self.fetched.iter().any(|(f, _)| f == n) {
                    want.push(n);
                }
            }
        }
        if want.len() > 1 {
            p.prefetch(&want, &self.request());
        }
    }

    fn ensure_facts(&mut self, needs: &[String]) -> Result<(), String> {
        if needs.len() > 1
            && let Some(p) = self.provider
        {
            let want: Vec<&str> = needs
                .iter()
                .filter(|n| !self.fetched.iter().any(|(f, _)| f == *n))
                .map(String::as_str)
                .collect();
            if want.len() > 1 {
                p.prefetch(&want, &self.request());
            }
        }
        for need in needs {
            if self.cancelled() {
                return Err(CANCELLED.to_string());
            }
            if let Some((_, failed)) = self.fetched.iter().find(|(n, _)| n == need) {
                if let Some(reason) = failed {
                    return Err(format!("live fact `{need}` unavailable: {reason}"));
                }
                continue;
            }
            let result = match self.provider {
                None => Err("live checks are off".to_string()),
                Some(p) => {
                    let req = self.request();
                    // Waiting for the network does not count against the scripts' budget.
                    let t0 = std::time::Instant::now();
                    let r = p
                        .fetch(need, &req)
                        .map_err(|e| self.scrub.clean(&e.reason).into_owned());
                    sandbox::extend_diagnosis(t0.elapsed());
                    r
                }
            };
            match result {
                Ok(v) => {
                    let d = rhai::serde::to_dynamic(&v).unwrap_or(Dynamic::UNIT);
                    // A shared value: writing through a clone updates what the scope sees.
                    let mut shared = self.facts.clone();
                    if let Some(mut m) = shared.write_lock::<Map>() {
                        m.insert(need.as_str().into(), d);
                    }
                    self.fetched.push((need.clone(), None));
                }
                Err(reason) => {
                    self.fetched.push((need.clone(), Some(reason.clone())));
                    return Err(format!("live fact `{need}` unavailable: {reason}"));
                }
            }
        }
        Ok(())
    }

    /// Whether a playbook's `applies_when` holds (recorded when tracing).
    pub fn applies(&mut self, matcher: &Script) -> bool {
        if self.trace.is_none() {
            return self.truthy(matcher);
        }
        let t0 = std::time::Instant::now();
        let v = self.run(matcher);
        let micros = t0.elapsed().as_micros() as u64;
        let (ok, detail) = match &v {
            Value::Ok(d) => (d.as_bool().unwrap_or(false), None),
            Value::Missing(why) => (false, Some(format!("missing data: {why}"))),
            Value::Failed(why) => (false, Some(why.clone())),
        };
        let step = self.trace_step(
            self.playbook,
            "applies_when",
            if ok { "matched" } else { "not_matched" },
            detail,
            matcher,
            &[],
            micros,
        );
        if let Some(t) = self.trace.as_mut() {
            t.push(step);
        }
        ok
    }

    /// Evaluates a check: its outcome and the detail to show (recorded when tracing).
    pub fn check(&mut self, c: &Check, kind: &str) -> (Outcome, Option<String>) {
        if self.trace.is_none() {
            return self.check_untraced(c);
        }
        let t0 = std::time::Instant::now();
        let (outcome, detail) = self.check_untraced(c);
        let micros = t0.elapsed().as_micros() as u64;
        let word = serde_json::to_value(outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        // Declared needs and facts asked for with `fact("name")` alike.
        let names: Vec<String> = c
            .facts
            .iter()
            .filter_map(|f| f.strip_prefix("facts."))
            .map(str::to_string)
            .collect();
        let step = self.trace_step(
            &c.id,
            kind,
            &word,
            detail.clone(),
            &c.script,
            &names,
            micros,
        );
        if let Some(t) = self.trace.as_mut() {
            t.push(step);
        }
        (outcome, detail)
    }

    /// One trace entry: the script, the event values it reads and the facts it saw (scrubbed
    /// with the rest of the resolution, in `eval::finish`).
    #[allow(clippy::too_many_arguments)]
    fn trace_step(
        &self,
        node: &str,
        kind: &str,
        outcome: &str,
        detail: Option<String>,
        script: &Script,
        needs: &[String],
        micros: u64,
    ) -> TraceStep {
        let mut reads = serde_json::Map::new();
        for path in script.reads.iter() {
            let v = if path.contains("secret") {
                serde_json::Value::String("[secret]".into())
            } else {
                to_json(&lookup(self.event, path))
            };
            reads.insert(path.clone(), v);
        }
        let mut facts = serde_json::Map::new();
        if let Some(m) = self.facts.read_lock::<Map>() {
            for n in needs {
                let v = m.get(n.as_str()).cloned().unwrap_or(Dynamic::UNIT);
                facts.insert(n.clone(), to_json(&v));
            }
        }
        TraceStep {
            playbook: self.playbook.to_string(),
            node: node.to_string(),
            kind: kind.to_string(),
            outcome: outcome.to_string(),
            detail,
            script: script.source.trim().to_string(),
            reads,
            facts,
            native: script.native.is_some(),
            micros,
        }
    }

    /// Offline: notes that these facts would have been asked for, and what they bear on.
    fn note_offline(&mut self, facts: &[String]) {
        if self.provider.is_some() {
            return;
        }
        for f in facts {
            self.offline_wants.push((f.clone(), self.settles.clone()));
        }
    }

    /// Runs a check's script; when it asks for live facts with `fact("name")` that this
    /// diagnosis does not have yet, fetches them (online) and runs it again with the answers.
    /// Scripts are pure, so the second run differs only in what the facts say.
    fn run_live(&mut self, script: &Script) -> Value {
        self.helper.live_reset();
        let mut rounds = 0;
        loop {
            let v = self.run(script);
            let wanted = self.helper.live_wanted();
            let new: Vec<String> = wanted
                .into_iter()
                .filter(|n| !self.fetched.iter().any(|(f, _)| f == n))
                .collect();
            if new.is_empty() || rounds >= 3 {
                return v;
            }
            if self.provider.is_none() {
                self.note_offline(&new);
                return v;
            }
            rounds += 1;
            // Facts asked for together are probed together (a discovery and a client check).
            if let (Some(p), true) = (self.provider, new.len() > 1) {
                let want: Vec<&str> = new.iter().map(String::as_str).collect();
                p.prefetch(&want, &self.request());
            }
            for n in new {
                // A fact that cannot be had is remembered in `fetched`, and reads as `()`.
                let _ = self.ensure_facts(std::slice::from_ref(&n));
            }
        }
    }

    fn check_untraced(&mut self, c: &Check) -> (Outcome, Option<String>) {
        self.live_used = false;
        if let Err(reason) = self.ensure_facts(&c.needs) {
            self.note_offline(&c.needs);
            return (Outcome::Unknown, Some(reason));
        }
        let value = self.run_live(&c.script);
        self.live_used = !c.needs.is_empty() || self.helper.live_used();
        match value {
            Value::Ok(v) => {
                let outcome = if let Ok(b) = v.as_bool() {
                    if b { Outcome::Pass } else { Outcome::Fail }
                } else if v.is_unit() {
                    Outcome::Unknown
                } else if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
                    match s.as_str() {
                        "pass" => Outcome::Pass,
                        "fail" => Outcome::Fail,
                        "unknown" => Outcome::Unknown,
                        other => {
                            return (
                                Outcome::Error,
                                Some(format!(
                                    "the check returned `{other}`, expected true, false or ()"
                                )),
                            );
                        }
                    }
                } else {
                    return (
                        Outcome::Error,
                        Some(format!(
                            "the check returned a {}, expected true, false or ()",
                            v.type_name()
                        )),
                    );
                };
                let detail = match outcome {
                    Outcome::Pass => c.evidence.as_ref().map(|t| self.render(t)),
                    Outcome::Fail => c.evidence_fail.as_ref().map(|t| self.render(t)),
                    _ => Some(NOT_ENOUGH_INFORMATION.to_string()),
                };
                (outcome, detail)
            }
            Value::Missing(why) => (Outcome::Unknown, Some(format!("missing data: {why}"))),
            Value::Failed(why) => (Outcome::Error, Some(why)),
        }
    }
}

/// A script's value as a check outcome (ignoring why it is unknown or an error).
fn outcome_of(v: &Value) -> Outcome {
    match v {
        Value::Ok(d) => match d.as_bool() {
            Ok(true) => Outcome::Pass,
            Ok(false) => Outcome::Fail,
            Err(_) => match d
                .read_lock::<rhai::ImmutableString>()
                .as_deref()
                .map(|s| s.as_str())
            {
                Some("pass") => Outcome::Pass,
                Some("fail") => Outcome::Fail,
                _ => Outcome::Unknown,
            },
        },
        Value::Missing(_) => Outcome::Unknown,
        Value::Failed(_) => Outcome::Error,
    }
}

/// The value at a dotted path of the event (`()` when absent).
fn lookup(root: &Dynamic, path: &str) -> Dynamic {
    let mut cur = root.clone();
    for seg in path.split('.') {
        let next = cur
            .read_lock::<Map>()
            .and_then(|m| m.get(seg).cloned())
            .unwrap_or(Dynamic::UNIT);
        cur = next;
    }
    cur
}

/// A script value as JSON; event sections are shared values, which serde cannot see through.
fn to_json(v: &Dynamic) -> serde_json::Value {
    use serde_json::Value as J;
    let v = v.flatten_clone();
    if v.is_unit() {
        J::Null
    } else if let Ok(b) = v.as_bool() {
        J::Bool(b)
    } else if let Ok(i) = v.as_int() {
        J::from(i)
    } else if let Ok(f) = v.as_float() {
        serde_json::Number::from_f64(f).map_or(J::Null, J::Number)
    } else if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
        J::String(s.to_string())
    } else if let Some(a) = v.read_lock::<rhai::Array>() {
        J::Array(a.iter().map(to_json).collect())
    } else if let Some(m) = v.read_lock::<Map>() {
        J::Object(m.iter().map(|(k, x)| (k.to_string(), to_json(x))).collect())
    } else {
        J::String(v.to_string())
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// Errors that come from reading something the event does not have (`().x`, `() > 3`):
/// events are partial, so these make a check unknown, never an error.
pub(crate) fn is_missing_data(e: &EvalAltResult) -> bool {
    match e {
        EvalAltResult::ErrorDotExpr(..) | EvalAltResult::ErrorPropertyNotFound(..) => true,
        EvalAltResult::ErrorIndexingType(t, _) => t.contains("()"),
        EvalAltResult::ErrorFunctionNotFound(sig, _) => sig.contains("()"),
        EvalAltResult::ErrorMismatchDataType(a, b, _) => a.contains("()") || b.contains("()"),
        EvalAltResult::ErrorMismatchOutputType(a, b, _) => a.contains("()") || b.contains("()"),
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => is_missing_data(inner),
        _ => false,
    }
}

/// Text of a value for evidence: strings bare, lists comma-separated, `()` as "unknown".
pub(crate) fn push_value(out: &mut String, v: &Dynamic) {
    if v.is_unit() {
        out.push_str("(unknown)");
    } else if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
        out.push_str(&s);
    } else if let Some(a) = v.read_lock::<rhai::Array>() {
        for (i, x) in a.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            push_value(out, x);
        }
    } else {
        out.push_str(&v.to_string());
    }
}

/// The result of walking one playbook.
pub(crate) struct WalkResult {
    pub path: Vec<PathStep>,
    pub verdicts: Vec<CauseVerdict>,
}

fn step_entry(
    node: &str,
    kind: NodeKind,
    outcome: Outcome,
    detail: Option<String>,
    facts: &Arc<[String]>,
) -> PathStep {
    PathStep {
        node: node.to_string(),
        kind,
        outcome,
        detail,
        facts: facts.clone(),
        live: false,
    }
}

impl Walker<'_> {
    pub fn walk(&mut self, pb: &Playbook) -> WalkResult {
        let mut state = WalkState {
            visited: vec![false; pb.nodes.len()],
            path: Vec::new(),
            verdicts: Vec::new(),
        };
        for &s in &pb.start {
            self.visit(pb, s, None, &mut state);
        }
        for (i, n) in pb.nodes.iter().enumerate() {
            if state.visited[i] {
                continue;
            }
            match n {
                Node::Step(s) => state.path.push(step_entry(
                    &s.check.id,
                    NodeKind::Check,
                    Outcome::Skipped,
                    None,
                    &s.check.facts,
                )),
                Node::Cause(c) => state.path.push(PathStep {
                    node: c.id.clone(),
                    kind: NodeKind::Cause,
                    outcome: Outcome::Skipped,
                    detail: None,
                    facts: Default::default(),
                    live: false,
                }),
            }
        }
        WalkResult {
            path: state.path,
            verdicts: state.verdicts,
        }
    }

    fn visit(&mut self, pb: &Playbook, i: usize, via: Option<(String, Basis)>, st: &mut WalkState) {
        if st.visited[i] {
            return;
        }
        st.visited[i] = true;
        match &pb.nodes[i] {
            Node::Step(s) => {
                self.settles = s
                    .on_pass
                    .iter()
                    .chain(&s.on_fail)
                    .filter_map(|&t| match &pb.nodes[t] {
                        Node::Cause(c) => Some(c.id.clone()),
                        Node::Step(_) => None,
                    })
                    .collect();
                let (outcome, detail) = self.check(&s.check, "step");
                let mut entry = step_entry(
                    &s.check.id,
                    NodeKind::Check,
                    outcome,
                    detail.clone(),
                    &s.check.facts,
                );
                entry.live = self.live_used && matches!(outcome, Outcome::Pass | Outcome::Fail);
                st.path.push(entry);
                let next = match outcome {
                    Outcome::Pass => &s.on_pass,
                    Outcome::Fail => &s.on_fail,
                    _ => &s.on_unknown,
                };
                let evidence = if matches!(outcome, Outcome::Pass | Outcome::Fail) {
                    detail.map(|d| (d, self.measure(&s.check, outcome)))
                } else {
                    None
                };
                for &t in next {
                    self.visit(pb, t, evidence.clone(), st);
                }
            }
            Node::Cause(c) => self.cause(i, c, via, st),
        }
    }

    fn cause(&mut self, i: usize, c: &Cause, via: Option<(String, Basis)>, st: &mut WalkState) {
        let at = st.path.len();
        st.path.push(PathStep {
            node: c.id.clone(),
            kind: NodeKind::Cause,
            outcome: Outcome::Inconclusive,
            detail: None,
            facts: Default::default(),
            live: false,
        });
        let routed = via.is_some();
        let mut basis: Option<Basis> = via.as_ref().map(|(_, b)| *b);
        // Support checks corroborate; they decide what a cause rests on only when it has no
        // required check and was not routed to (then they are all its evidence).
        let mut support_basis: Option<Basis> = None;
        let mut evidence: Vec<String> = via.into_iter().map(|(d, _)| d).collect();
        let (mut required, mut passed, mut undecided, mut supported) = (0, 0, 0, 0);
        let mut ruled_out: Option<Option<String>> = None;
        let live = c.checks.iter().any(|k| !k.needs.is_empty());
        let ordered: Vec<&Check> = if live {
            self.check_order(&c.checks)
        } else {
            c.checks.iter().collect()
        };
        let mut prefetched = false;
        for (n, check) in ordered.iter().copied().enumerate() {
            if ruled_out.is_none() && !prefetched && !check.needs.is_empty() {
                prefetched = true;
                self.prefetch(&ordered[n..]);
            }
            if ruled_out.is_some() {
                st.path.push(step_entry(
                    &check.id,
                    NodeKind::Check,
                    Outcome::Skipped,
                    None,
                    &check.facts,
                ));
                continue;
            }
            self.settles = vec![c.id.clone()];
            let (outcome, detail) = self.check(check, "check");
            let mut entry = step_entry(
                &check.id,
                NodeKind::Check,
                outcome,
                detail.clone(),
                &check.facts,
            );
            entry.live = self.live_used && matches!(outcome, Outcome::Pass | Outcome::Fail);
            st.path.push(entry);
            match (check.role, outcome) {
                (Role::Require, Outcome::Pass) => {
                    required += 1;
                    passed += 1;
                    basis = basis.max(Some(self.measure(check, Outcome::Pass)));
                    evidence.extend(detail);
                }
                (Role::Require, Outcome::Fail) => ruled_out = Some(detail),
                (Role::Require, _) => {
                    required += 1;
                    undecided += 1;
                }
                (Role::Support, Outcome::Pass) => {
                    supported += 1;
                    support_basis = support_basis.max(Some(self.measure(check, Outcome::Pass)));
                    evidence.extend(detail);
                }
                (Role::Support, _) => {}
            }
        }
        let grounds = basis.max(support_basis);
        if required == 0 && !routed {
            basis = support_basis;
        }
        let confidence = if let Some(why) = ruled_out {
            st.path[at].outcome = Outcome::RuledOut;
            st.path[at].detail = why;
            None
        } else if undecided == 0 && (required > 0 || routed) {
            // Generic evidence (a status, a protocol code) never confirms: it may be the
            // diagnosis only as `likely`, and specific evidence elsewhere outranks it.
            if c.fallback || !basis.is_some_and(Basis::is_specific) {
                st.path[at].detail = Some(LIKELY_ON_GENERIC.into());
                Some(Confidence::Likely)
            } else {
                st.path[at].outcome = Outcome::Confirmed;
                Some(Confidence::Confirmed)
            }
        } else if passed + supported > 0 || routed {
            st.path[at].detail = Some(LIKELY_ON_SOME.into());
            Some(Confidence::Likely)
        } else {
            st.path[at].detail = Some(POSSIBLE.into());
            Some(Confidence::Possible)
        };
        let order = st.verdicts.len();
        st.verdicts.push(CauseVerdict {
            node: i,
            confidence,
            evidence,
            basis,
            grounds,
            order,
        });
    }
}

struct WalkState {
    visited: Vec<bool>,
    path: Vec<PathStep>,
    verdicts: Vec<CauseVerdict>,
}
