//! What a decided check rests on, measured instead of guessed: the check is run again in two
//! reduced copies of the event. In the *status world* only the HTTP status, the error kind, the
//! phase, the run's context and which kind of connection this is remain; in the *state world*
//! the stored connection record comes back. A check that decides the same in the status world
//! rests on the status alone; one that needs the state world rests on the connection's state;
//! one that needs the provider's code, message, body or headers rests on the provider's words.
//!
//! Scripts mix alternatives freely (`error.status == 429 || signal("rate_limit")`), so what a
//! script reads says little about why it passed; asking it again does. Only decided checks
//! whose basis is not declared are measured, and the worlds are built once per diagnosis, the
//! first time one is needed.

use std::rc::Rc;
use std::sync::Arc;

use rhai::{Dynamic, Map};

use crate::eval::statement;
use crate::sandbox::{self, ErrorText, HelperCtx, PatternSet, SCOPE_VARS};
use crate::signals::SignalSet;

/// Connection fields that say which kind of connection this is (context, not evidence): they
/// stay visible in the status world.
const CONTEXT: &[&str] = &["id", "provider", "auth_type", "deployment_mode"];

/// One reduced copy of the event: script variables and the helper context scripts see.
pub(crate) struct World {
    pub vars: Vec<Dynamic>,
    pub helper: Rc<HelperCtx>,
}

pub(crate) struct Worlds {
    pub status: World,
    pub state: World,
}

fn var(vars: &[Dynamic], name: &str) -> Dynamic {
    SCOPE_VARS
        .iter()
        .position(|v| *v == name)
        .and_then(|i| vars.get(i).cloned())
        .unwrap_or(Dynamic::UNIT)
}

/// The error with only its status and kind, and whatever of its text says nothing more than the
/// status does: a reason phrase or a client's wrapper as the message, code or body, an HTML
/// gateway page, a bare `www-authenticate` challenge, the `content-type`. Checks that pass on these pass on the
/// status in words, not on a statement of the provider's.
fn bare_error(error: &Dynamic) -> Dynamic {
    let mut m = Map::new();
    if let Some(e) = error.read_lock::<Map>() {
        for key in ["status", "kind"] {
            if let Some(v) = e.get(key) {
                m.insert(key.into(), v.flatten_clone());
            }
        }
        for key in ["message", "code", "body"] {
            if let Some(v) = e.get(key)
                && statement::is_status_text(v)
            {
                m.insert(key.into(), v.flatten_clone());
            }
        }
        if let Some(h) = e.get("headers") {
            let mut kept = Map::new();
            for name in ["content-type", "www-authenticate"] {
                if let Some(v) = sandbox::header_of(h, name)
                    && (name == "content-type"
                        || statement::is_status_text(&Dynamic::from(v.clone())))
                {
                    kept.insert(name.into(), v.into());
                }
            }
            if !kept.is_empty() {
                m.insert("headers".into(), Dynamic::from_map(kept));
            }
        }
    }
    Dynamic::from_map(m).into_shared()
}

fn context_only(connection: &Dynamic) -> Dynamic {
    let Some(c) = connection.read_lock::<Map>() else {
        return Dynamic::UNIT;
    };
    let m: Map = c
        .iter()
        .filter(|(k, _)| CONTEXT.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.flatten_clone()))
        .collect();
    Dynamic::from_map(m).into_shared()
}

impl Worlds {
    pub fn new(
        vars: &[Dynamic],
        now: i64,
        signals: Arc<SignalSet>,
        patterns: Arc<PatternSet>,
        secrets: Arc<[(String, String)]>,
    ) -> Worlds {
        let error = bare_error(&var(vars, "error"));
        // Both worlds see the same error: one haystack, one literal pass, one answer per signal.
        let text: Rc<ErrorText> = Rc::default();
        let world = |keep_state: bool| {
            let mut root = Map::new();
            let mut out = Vec::with_capacity(SCOPE_VARS.len());
            for (i, name) in SCOPE_VARS.iter().enumerate() {
                let v = match *name {
                    "error" => error.clone(),
                    "connection" if !keep_state => context_only(&vars[i]),
                    "oauth" | "platform" | "history" if !keep_state => Dynamic::UNIT,
                    _ => vars[i].clone(),
                };
                if !matches!(*name, "event" | "facts" | "now" | "oauth") && !v.is_unit() {
                    root.insert((*name).into(), v.clone());
                }
                out.push(v);
            }
            if let Some(slot) = SCOPE_VARS.iter().position(|v| *v == "event") {
                out[slot] = Dynamic::from_map(root).into_shared();
            }
            let secrets = if keep_state {
                secrets.clone()
            } else {
                Arc::from(Vec::new())
            };
            World {
                vars: out,
                helper: Rc::new(HelperCtx::sharing_text(
                    now,
                    error.clone(),
                    secrets,
                    signals.clone(),
                    patterns.clone(),
                    text.clone(),
                )),
            }
        };
        Worlds {
            status: world(false),
            state: world(true),
        }
    }
}
