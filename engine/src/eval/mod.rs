//! Evaluate stage: one event against the library, giving a [`Resolution`].
//!
//! Playbooks are tried from the highest priority down. The first whose walk confirms a cause
//! (or finds one likely) answers; if none does, the highest-priority playbook that applied
//! answers `inconclusive`; if none applied, the answer is `no_match`.

pub mod event;
mod scrub;
pub(crate) mod walk;

use std::rc::Rc;
use std::sync::Arc;

use rhai::{Dynamic, Map, Scope};

use crate::compile::{ActionDef, DispositionDef, Library, Node, Playbook};
use crate::explain::{self, Audience};
use crate::facts::FactProvider;
use crate::model::playbook::DispositionKind;
use crate::model::resolution::{
    Action, Confidence, Disposition, NodeKind, Outcome, PathStep, Resolution, RootCause, Status,
    Symptom,
};
use crate::sandbox::{self, HelperCtx, SCOPE_VARS};
use crate::time;
pub use event::{Event, EventError};
use scrub::Scrubber;
use walk::{CauseVerdict, Value, WalkResult, Walker};

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
    let now = event.occurred_at.unwrap_or_else(time::wall_clock);
    let helper = Rc::new(HelperCtx::new(
        now,
        event.section("error"),
        event.secrets.clone(),
        lib.signals.clone(),
    ));
    let _guard = sandbox::install(helper.clone());

    let facts = Dynamic::from_map(Map::new()).into_shared();
    let vars = event.scope_values(facts.clone(), now);
    let mut scope = Scope::new();
    for (var, value) in SCOPE_VARS.iter().zip(&vars) {
        scope.push_constant_dynamic(*var, value.clone());
    }
    let scrub = Scrubber::new(event);
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
        scrub: &scrub,
        fetched: &mut fetched,
        deadline: opts.deadline.map(|d| std::time::Instant::now() + d),
        trace: opts.trace.then(Vec::new),
        playbook: "",
    };

    let mut fallback: Option<(&Arc<Playbook>, WalkResult)> = None;
    for pb in &lib.playbooks {
        w.playbook = &pb.id;
        if !w.applies(&pb.matcher) {
            continue;
        }
        let result = w.walk(pb);
        let diagnosed = result.verdicts.iter().any(|v| {
            matches!(
                v.confidence,
                Some(Confidence::Confirmed | Confidence::Likely)
            )
        });
        if diagnosed {
            return finish(&mut w, event, lib, Some((pb, result)), opts.audience);
        }
        if fallback.is_none() {
            fallback = Some((pb, result));
        }
    }
    finish(&mut w, event, lib, fallback, opts.audience)
}

fn finish(
    w: &mut Walker<'_>,
    event: &Event,
    lib: &Library,
    walked: Option<(&Arc<Playbook>, WalkResult)>,
    audience: Audience,
) -> Resolution {
    let mut res = Resolution {
        event_id: event.event_id.as_deref().map(|id| w.scrub.clean(id)),
        engine_version: ENGINE_VERSION.to_string(),
        playbook_set: lib.hash().to_string(),
        status: Status::NoMatch,
        symptom: None,
        root_causes: Vec::new(),
        actions: Vec::new(),
        disposition: Disposition {
            kind: DispositionKind::NeedsUser,
            retry_after_seconds: None,
        },
        path: Vec::new(),
        explanation: String::new(),
        acted: Vec::new(),
        new_credentials: None,
        trace: Vec::new(),
    };
    if let Some((pb, result)) = walked {
        build(w, pb, result, &mut res);
    }
    res.explanation = w.scrub.clean(&explain::render(&res, audience));
    res.trace = w.trace.take().unwrap_or_default();
    res
}

fn cause_of<'p>(pb: &'p Playbook, v: &CauseVerdict) -> Option<&'p crate::compile::Cause> {
    match &pb.nodes[v.node] {
        Node::Cause(c) => Some(c),
        Node::Step(_) => None,
    }
}

fn build(w: &mut Walker<'_>, pb: &Playbook, result: WalkResult, res: &mut Resolution) {
    res.symptom = Some(Symptom {
        id: pb.id.clone(),
        title: pb.title.clone(),
        playbook: file_name(&pb.file),
    });
    res.path.push(PathStep {
        node: pb.id.clone(),
        kind: NodeKind::Symptom,
        outcome: Outcome::Matched,
        detail: None,
        facts: Default::default(),
    });
    res.path.extend(result.path);

    let mut ranked: Vec<&CauseVerdict> = result
        .verdicts
        .iter()
        .filter(|v| v.confidence.is_some())
        .collect();
    ranked.sort_by_key(|v| {
        (
            v.confidence,
            -cause_of(pb, v).map_or(0, |c| c.weight),
            v.order,
        )
    });
    let diagnosed = ranked
        .first()
        .is_some_and(|v| v.confidence <= Some(Confidence::Likely));
    res.status = if diagnosed {
        Status::Diagnosed
    } else {
        Status::Inconclusive
    };

    for v in &ranked {
        let (Some(cause), Some(confidence)) = (cause_of(pb, v), v.confidence) else {
            continue;
        };
        let explain = cause.explain.as_ref().map(|t| w.render(t));
        res.root_causes.push(RootCause {
            id: cause.id.clone(),
            title: cause.title.clone(),
            confidence,
            evidence: v.evidence.clone(),
            explain,
        });
    }

    let mut chosen: Vec<Arc<ActionDef>> = Vec::new();
    let mut disposition_def: Option<&DispositionDef> = None;
    if diagnosed {
        for (i, v) in ranked
            .iter()
            .filter(|v| v.confidence <= Some(Confidence::Likely))
            .enumerate()
        {
            let Some(cause) = cause_of(pb, v) else {
                continue;
            };
            if i == 0 {
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
        disposition_def = pb.inconclusive.disposition.as_ref();
        for a in &pb.inconclusive.actions {
            if !chosen.iter().any(|c| c.id == a.id) && a.when.as_ref().is_none_or(|s| w.truthy(s)) {
                chosen.push(a.clone());
            }
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
        });
    }
    res.disposition = disposition(w, disposition_def, chosen.first(), res.actions.first());
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
            params.insert(name.clone(), scrub_json(w, json));
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

fn scrub_json(w: &Walker<'_>, v: serde_json::Value) -> serde_json::Value {
    if !w.scrub.is_active() {
        return v;
    }
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(w.scrub.clean(&s)),
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(|x| scrub_json(w, x)).collect())
        }
        serde_json::Value::Object(o) => {
            serde_json::Value::Object(o.into_iter().map(|(k, x)| (k, scrub_json(w, x))).collect())
        }
        other => other,
    }
}

fn disposition(
    w: &mut Walker<'_>,
    def: Option<&DispositionDef>,
    first: Option<&Arc<ActionDef>>,
    first_out: Option<&Action>,
) -> Disposition {
    let kind = def
        .map(|d| d.kind)
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
