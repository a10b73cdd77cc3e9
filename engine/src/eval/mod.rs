//! Evaluate stage: one event against the library, giving a [`Resolution`].
//!
//! Every playbook whose `applies_when` holds is walked (highest priority first) and its causes
//! join one ranking (`rank`): specific evidence outranks generic evidence whichever playbook it
//! comes from. The best cause answers when it is confirmed or likely, unless it rests on
//! generic evidence while the provider's text makes a specific statement no check recognised
//! (`statement`): then, as when nothing is confirmed or likely, the answer is `inconclusive`
//! with the open causes as `candidates`. If no playbook applied, the answer is `no_match`.

pub mod event;
mod rank;
mod statement;
pub(crate) mod walk;
mod worlds;

use std::rc::Rc;
use std::sync::Arc;

use rhai::{Dynamic, Map, Scope};

use crate::compile::{ActionDef, DispositionDef, Library};
use crate::explain::{self, Audience};
use crate::facts::FactProvider;
use crate::model::playbook::DispositionKind;
use crate::model::resolution::{
    Action, Candidate, Confidence, Disposition, NodeKind, Outcome, PathStep, Resolution, RootCause,
    SettledBy, Status, Symptom, TraceStep,
};
use crate::sandbox::{self, HelperCtx, SCOPE_VARS};
use crate::time;
pub use event::{Event, EventError};
use rank::{Ranked, Walked};
use walk::{Value, Walker};

/// The engine's version, stamped on every resolution.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How to diagnose.
#[derive(Clone, Copy, Default)]
pub struct Options<'a> {
    /// Voice of the explanation.
    pub audience: Audience,
    /// Where live facts come from; `None` means offline (checks needing facts are unknown).
    pub provider: Option<&'a dyn FactProvider>,
    /// How long live facts may take in all; checks whose facts are not in by then are unknown.
    pub deadline: Option<std::time::Duration>,
    /// Record every script evaluated in `Resolution::trace` (slower; for playbook authors).
    pub trace: bool,
    /// Set by the caller to stop the diagnosis early (the service's request timed out or its
    /// client went away): every script not yet started then ends as an error, and no further
    /// live fact is fetched, so the walk finishes at once with what it has.
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
}

/// Diagnoses one JSON event.
pub fn diagnose_json(
    lib: &Library,
    json: &str,
    opts: &Options<'_>,
) -> Result<Resolution, EventError> {
    Event::parse(json).map(|e| diagnose(lib, &e, opts))
}

/// Diagnoses one parsed event.
pub fn diagnose(lib: &Library, event: &Event, opts: &Options<'_>) -> Resolution {
    // However the playbooks behave, their scripts stop within this budget (see `sandbox`).
    with_walker(lib, event, opts, sandbox::DIAGNOSIS_BUDGET, |w| {
        // The library as the walker holds it: what it walks lives as long as the walker.
        let lib = w.lib;
        let mut walked: Vec<Walked<'_>> = Vec::new();
        for pb in &lib.playbooks {
            w.playbook = &pb.id;
            if w.applies(&pb.matcher) {
                let result = w.walk(pb);
                walked.push(Walked { pb, result });
            }
        }
        finish(w, event, lib, walked, opts.audience)
    })
}

/// Sets up one event's evaluation (the sandbox's helper context and budget, the scripts'
/// variables, the scrubber) and hands `f` a walker over it.
fn with_walker<R>(
    lib: &Library,
    event: &Event,
    opts: &Options<'_>,
    budget: std::time::Duration,
    f: impl FnOnce(&mut Walker<'_>) -> R,
) -> R {
    let now = event.occurred_at.unwrap_or_else(time::wall_clock);
    let helper = Rc::new(HelperCtx::new(
        now,
        event.section("error"),
        event.secrets.clone(),
        lib.signals.clone(),
        lib.patterns.clone(),
    ));
    let _guard = sandbox::install(helper.clone());
    let _budget = sandbox::budget(budget);

    let facts = Dynamic::from_map(Map::new()).into_shared();
    helper.set_facts(facts.clone());
    let vars = event.scope_values(facts.clone(), now);
    let mut scope = Scope::new();
    for (var, value) in SCOPE_VARS.iter().zip(&vars) {
        scope.push_constant_dynamic(*var, value.clone());
    }
    // The sandbox's quotes and the resolution share one scrubber (its searchers are per event).
    let scrub = helper.scrubber_knowing(lib.plain());
    let mut fetched = Vec::new();
    let mut w = Walker {
        lib,
        vars: &vars,
        helper: &helper,
        scope: &mut scope,
        facts: &facts,
        event: &event.root,
        secrets: &event.secrets,
        provider: opts.provider,
        scrub,
        fetched: &mut fetched,
        deadline: opts.deadline.map(|d| std::time::Instant::now() + d),
        cancel: opts.cancel,
        trace: opts.trace.then(Vec::new),
        playbook: "",
        worlds: std::cell::OnceCell::new(),
        settles: Vec::new(),
        live_used: false,
        offline_wants: Vec::new(),
    };
    f(&mut w)
}

/// Runs every script of the library once, under the usual budgets, on an event with nothing
/// in it (`{"error": {}}`), and reports each one that ran past its budget: a script that loops
/// without reading the event runs past it on every event. `whyfail check` calls this. The
/// whole run stops after `total`, with one warning saying which scripts were not run.
pub fn lint_budgets(lib: &Library, total: std::time::Duration) -> Vec<crate::Diagnostic> {
    use crate::diag::{Diagnostic, code};
    let Ok(event) = Event::parse(r#"{"error":{}}"#) else {
        return Vec::new();
    };
    with_walker(lib, &event, &Options::default(), total, |w| {
        let mut diags = Vec::new();
        let scripts = lib.scripts();
        for (n, script) in scripts.iter().enumerate() {
            let Value::Failed(why) = w.run(script) else {
                continue;
            };
            let at = &script.origin;
            if why == sandbox::Overrun::Script.message() {
                let message = format!(
                    "the script ran past its {} ms budget on an event with nothing in it; \
                     it would be stopped (an `error` outcome) on every event",
                    sandbox::SCRIPT_BUDGET.as_millis()
                );
                diags.push(
                    Diagnostic::warning(code::SCRIPT_BUDGET, &at.file, message)
                        .at_path(&at.yaml_path)
                        .at(at.line, at.column)
                        .hint("bound its loops by the event's data, not by a large constant"),
                );
            } else if why == sandbox::Overrun::Diagnosis.message() {
                let message = format!(
                    "running each script once took more than {} ms in all; \
                     {} of {} scripts were not run",
                    total.as_millis(),
                    scripts.len() - n,
                    scripts.len()
                );
                diags.push(Diagnostic::warning(code::SCRIPT_BUDGET, &at.file, message));
                break;
            }
        }
        diags
    })
}

fn finish(
    w: &mut Walker<'_>,
    event: &Event,
    lib: &Library,
    walked: Vec<Walked<'_>>,
    audience: Audience,
) -> Resolution {
    let mut res = Resolution {
        event_id: event.event_id.clone(),
        engine_version: ENGINE_VERSION.to_string(),
        playbook_set: lib.hash().to_string(),
        status: Status::NoMatch,
        symptom: None,
        root_causes: Vec::new(),
        candidates: Vec::new(),
        actions: Vec::new(),
        disposition: Disposition {
            kind: DispositionKind::NeedsUser,
            retry_after_seconds: None,
        },
        path: Vec::new(),
        explanation: String::new(),
        settled_by: Vec::new(),
        acted: Vec::new(),
        new_credentials: None,
        trace: Vec::new(),
    };
    if !walked.is_empty() {
        build(w, event, walked, &mut res);
    }
    res.trace = w.trace.take().unwrap_or_default();
    // Every text of the resolution, trace included, through the one scrubber; the explanation
    // is told from the scrubbed resolution and scrubbed again (it quotes the event too).
    w.scrub.clean_resolution(&mut res);
    res.explanation = explain::render(&res, audience);
    w.scrub.clean_string(&mut res.explanation);
    res
}

/// Why an open cause is listed, when nothing overrules it.
const NOTHING_DECIDES: &str = "nothing in the event confirms it or rules it out";

/// Output texts the evaluation writes whatever the event: which of them hold no credential
/// shape is sorted out once per library (`compile::Library::plain`).
pub(crate) const FIXED_TEXTS: [&str; 5] = [
    walk::NOT_ENOUGH_INFORMATION,
    walk::LIKELY_ON_GENERIC,
    walk::LIKELY_ON_SOME,
    walk::POSSIBLE,
    NOTHING_DECIDES,
];

/// How many open causes an inconclusive answer lists.
const MAX_CANDIDATES: usize = 6;

fn build(w: &mut Walker<'_>, event: &Event, walked: Vec<Walked<'_>>, res: &mut Resolution) {
    let ranked = rank::rank(&walked);
    // The best cause rests on generic evidence while the provider says something no check
    // recognised: the generic reading would overrule the provider's own words.
    let overruled = ranked
        .first()
        .filter(|r| r.diagnosed() && !r.grounded)
        .and_then(|_| statement::specific_statement(event, w.helper));
    let diagnosed = ranked.first().is_some_and(Ranked::diagnosed) && overruled.is_none();
    let winner = ranked.first().map_or(0, |r| r.walk);
    let pb = walked[winner].pb;
    res.symptom = Some(Symptom {
        id: pb.id.clone(),
        title: pb.title.clone(),
        playbook: file_name(&pb.file),
    });
    res.status = if diagnosed {
        Status::Diagnosed
    } else {
        Status::Inconclusive
    };
    if w.trace.is_some() {
        let steps = rank_trace(&walked, &ranked, overruled.as_deref(), diagnosed);
        if let Some(t) = w.trace.as_mut() {
            t.extend(steps);
        }
    }

    let mut chosen: Vec<Arc<ActionDef>> = Vec::new();
    let mut disposition_def: Option<&DispositionDef> = None;
    if diagnosed {
        for r in ranked
            .iter()
            .filter(|r| r.diagnosed() || (r.walk == winner))
        {
            let walk = &walked[r.walk];
            let v = &walk.result.verdicts[r.verdict];
            let Some(cause) = rank::cause_of(walk.pb, v) else {
                continue;
            };
            let explain = cause.explain.as_ref().map(|t| w.render(t));
            res.root_causes.push(RootCause {
                id: cause.id.clone(),
                title: cause.title.clone(),
                confidence: r.confidence,
                evidence: v.evidence.clone(),
                explain,
            });
            if !r.diagnosed() {
                continue;
            }
            if disposition_def.is_none() && chosen.is_empty() {
                disposition_def = cause.disposition.as_ref();
            }
            for a in &cause.actions {
                if !chosen.iter().any(|c| c.id == a.id)
                    && a.when.as_ref().is_none_or(|s| w.truthy(s))
                {
                    chosen.push(a.clone());
                }
            }
        }
    } else {
        for r in ranked.iter().take(MAX_CANDIDATES) {
            let walk = &walked[r.walk];
            let v = &walk.result.verdicts[r.verdict];
            let Some(cause) = rank::cause_of(walk.pb, v) else {
                continue;
            };
            let why_open = match (&overruled, r.diagnosed()) {
                (Some(said), true) => format!(
                    "it rests on {} alone, while the provider says something more specific (“{said}”) that no check recognised",
                    rank::basis_words(v.grounds)
                ),
                _ => NOTHING_DECIDES.to_string(),
            };
            res.candidates.push(Candidate {
                id: cause.id.clone(),
                title: cause.title.clone(),
                why_open,
                confidence: r.confidence,
                symptom: walk.pb.id.clone(),
            });
        }
        disposition_def = pb.inconclusive.disposition.as_ref();
        for a in &pb.inconclusive.actions {
            if !chosen.iter().any(|c| c.id == a.id) && a.when.as_ref().is_none_or(|s| w.truthy(s)) {
                chosen.push(a.clone());
            }
        }
    }

    // The path: every playbook that applied, in the order they were walked; the one that
    // answers shows every node (unvisited ones as skipped), the others what they visited.
    for (i, walk) in walked.into_iter().enumerate() {
        res.path.push(PathStep {
            node: walk.pb.id.clone(),
            kind: NodeKind::Symptom,
            outcome: Outcome::Matched,
            detail: None,
            facts: Default::default(),
            live: false,
        });
        if i == winner {
            res.path.extend(walk.result.path);
        } else {
            res.path.extend(
                walk.result
                    .path
                    .into_iter()
                    .filter(|p| p.outcome != Outcome::Skipped),
            );
        }
    }
    for a in &chosen {
        res.actions.push(render_action(w, a));
        res.path.push(PathStep {
            node: a.id.clone(),
            kind: NodeKind::Action,
            outcome: Outcome::Recommended,
            detail: None,
            facts: Default::default(),
            live: false,
        });
    }
    res.disposition = disposition(w, disposition_def, chosen.first(), res.actions.first());
    let settled = res
        .root_causes
        .first()
        .is_some_and(|c| c.confidence == Confidence::Confirmed);
    if w.provider.is_none() && !settled {
        res.settled_by = settled_by(&w.offline_wants);
    }
}

/// The offline wants grouped by fact, in the order they were first asked for.
fn settled_by(wants: &[(String, Vec<String>)]) -> Vec<SettledBy> {
    let mut out: Vec<SettledBy> = Vec::new();
    for (fact, causes) in wants {
        let i = match out.iter().position(|s| &s.fact == fact) {
            Some(i) => i,
            None => {
                out.push(SettledBy {
                    fact: fact.clone(),
                    would_settle: Vec::new(),
                });
                out.len() - 1
            }
        };
        for c in causes {
            if !out[i].would_settle.contains(c) {
                out[i].would_settle.push(c.clone());
            }
        }
    }
    out.retain(|s| !s.would_settle.is_empty());
    out
}

/// Trace entries that say why the causes came in this order (`diagnose --trace`).
fn rank_trace(
    walked: &[Walked<'_>],
    ranked: &[Ranked],
    overruled: Option<&str>,
    diagnosed: bool,
) -> Vec<TraceStep> {
    let describe = |r: &Ranked| {
        let walk = &walked[r.walk];
        let v = &walk.result.verdicts[r.verdict];
        let id = rank::cause_of(walk.pb, v).map_or("", |c| c.id.as_str());
        let fallback = rank::cause_of(walk.pb, v).is_some_and(|c| c.fallback);
        let conf = match r.confidence {
            Confidence::Confirmed => "confirmed",
            Confidence::Likely => "likely",
            Confidence::Possible => "possible",
        };
        let on = if fallback {
            format!("{} (a fallback reading)", rank::basis_words(v.basis))
        } else {
            rank::basis_words(v.basis).to_string()
        };
        (
            walk.pb.id.clone(),
            id.to_string(),
            format!("{conf}, on {on}, priority {}", walk.pb.priority),
        )
    };
    let mut out = Vec::new();
    for (n, r) in ranked.iter().enumerate() {
        let (playbook, node, what) = describe(r);
        let detail = if n == 0 {
            match overruled {
                Some(said) => format!(
                    "{what}; not given as the diagnosis: it rests on generic evidence while the provider says “{said}”, which no check recognised"
                ),
                None if diagnosed => format!("{what}; ranked first"),
                None => format!("{what}; nothing is confirmed or likely"),
            }
        } else {
            let (_, first, _) = describe(&ranked[0]);
            let why = if ranked[0].diagnosed() != r.diagnosed() {
                "it is diagnosed, this one is not"
            } else if ranked[0].specific != r.specific {
                "its evidence is specific, this one's is generic"
            } else if ranked[0].confidence != r.confidence {
                "its confidence is higher"
            } else {
                "same confidence and specificity: playbook priority, then weight, then order"
            };
            format!("{what}; below `{first}`: {why}")
        };
        out.push(TraceStep {
            playbook,
            node,
            kind: "rank".to_string(),
            outcome: format!("#{}", n + 1),
            detail: Some(detail),
            script: String::new(),
            reads: Default::default(),
            facts: Default::default(),
            native: true,
            micros: 0,
        });
    }
    out
}

fn file_name(path: &str) -> String {
    path.rsplit(['/', '\\']).next().unwrap_or(path).to_string()
}

fn render_action(w: &mut Walker<'_>, a: &ActionDef) -> Action {
    let mut params = serde_json::Map::new();
    for (name, script) in &a.params {
        if let Value::Ok(v) = w.run(script) {
            if v.is_unit() {
                continue;
            }
            let json: serde_json::Value =
                rhai::serde::from_dynamic(&v).unwrap_or(serde_json::Value::Null);
            params.insert(name.clone(), json);
        }
    }
    let steps = a.steps.iter().map(|t| w.render(t)).collect();
    Action {
        id: a.id.clone(),
        title: a.title.clone(),
        actor: a.actor,
        automatic: a.automatic,
        params,
        steps,
    }
}

fn disposition(
    w: &mut Walker<'_>,
    def: Option<&DispositionDef>,
    first: Option<&Arc<ActionDef>>,
    first_out: Option<&Action>,
) -> Disposition {
    let instead = def.and_then(|d| d.instead.as_ref()).and_then(|(k, s)| {
        matches!(w.run(s), Value::Ok(v) if v.as_bool() == Ok(true)).then_some(*k)
    });
    let kind = instead
        .or(def.map(|d| d.kind))
        .or(first.map(|a| a.disposition))
        .unwrap_or(DispositionKind::NeedsUser);
    let from_def = def
        .and_then(|d| d.retry_after.as_ref())
        .and_then(|s| match w.run(s) {
            Value::Ok(v) => seconds(&v),
            _ => None,
        });
    let from_param = first_out
        .and_then(|a| a.params.get("retry_after_seconds"))
        .and_then(|v| v.as_f64())
        .map(|f| f.ceil() as i64);
    let secs = from_def.or(from_param).map(|s| s.max(0));
    match (kind, secs) {
        (DispositionKind::RetryAfter, None) => Disposition {
            kind: DispositionKind::Retry,
            retry_after_seconds: None,
        },
        (DispositionKind::RetryAfter, s) => Disposition {
            kind,
            retry_after_seconds: s,
        },
        (k, _) => Disposition {
            kind: k,
            retry_after_seconds: None,
        },
    }
}

fn seconds(v: &Dynamic) -> Option<i64> {
    v.as_int()
        .ok()
        .or_else(|| v.as_float().ok().map(|f| f.ceil() as i64))
}
