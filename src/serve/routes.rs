//! The routes: one table that both the router and the OpenAPI document are built from, and
//! the handlers. Handlers only parse, call the engine and render; every decision about a
//! failure is the engine's.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use whyfail_engine::{Audience, ENGINE_VERSION, Event, FactProvider, Library, Options, Resolution};
use whyfail_providers::LiveProvider;

use super::error::{ApiError, json_error};
use super::graph::{self, GraphFormat};
use super::observe::{self, LogFields};
use super::openapi;
use super::work::{self, Ctl, Slot};
use super::{Config, ServerState};
use crate::render::{self, Format};

pub(crate) type AppState = Arc<ServerState>;

/// One route: what the router serves and what the OpenAPI document says about it.
pub struct RouteDef {
    pub method: Method,
    /// The path in the router's (and OpenAPI's) template syntax: `/v1/playbooks/{id}/graph`.
    pub path: &'static str,
    /// Needs the bearer token.
    pub auth: bool,
    /// Counts against `--concurrency` (and is shed with 503 beyond it).
    pub limited: bool,
    /// The OpenAPI operation object.
    pub doc: fn() -> Value,
}

/// Every route the service has, in the order the OpenAPI document lists them.
pub fn definitions() -> Vec<RouteDef> {
    let d = |method, path, auth, limited, doc| RouteDef {
        method,
        path,
        auth,
        limited,
        doc,
    };
    vec![
        d(
            Method::POST,
            "/v1/diagnose",
            true,
            true,
            openapi::op_diagnose as fn() -> Value,
        ),
        d(
            Method::POST,
            "/v1/diagnose/batch",
            true,
            true,
            openapi::op_batch,
        ),
        d(
            Method::GET,
            "/v1/playbooks",
            true,
            false,
            openapi::op_playbooks,
        ),
        d(
            Method::GET,
            "/v1/playbooks/{id}/graph",
            true,
            false,
            openapi::op_graph,
        ),
        d(Method::GET, "/v1/status", true, false, openapi::op_status),
        d(Method::GET, "/metrics", true, false, openapi::op_metrics),
        d(
            Method::GET,
            "/openapi.json",
            true,
            false,
            openapi::op_openapi,
        ),
        d(Method::GET, "/healthz", false, false, openapi::op_healthz),
        d(Method::GET, "/readyz", false, false, openapi::op_readyz),
        d(Method::GET, "/panel/", false, false, openapi::op_panel),
        d(
            Method::GET,
            "/panel/whyfail-panel.js",
            false,
            false,
            openapi::op_panel_script,
        ),
        d(
            Method::GET,
            "/panel/examples/{file}",
            false,
            true,
            openapi::op_panel_example,
        ),
    ]
}

/// The handler of a route. Kept apart from the table so the table stays plain data that
/// `openapi.rs` can read; a definition without a handler is not served, which the OpenAPI
/// agreement test reports.
fn handler(method: &Method, path: &str) -> Option<MethodRouter<AppState>> {
    Some(match (method.as_str(), path) {
        ("POST", "/v1/diagnose") => post(diagnose),
        ("POST", "/v1/diagnose/batch") => post(batch),
        ("GET", "/v1/playbooks") => get(playbooks),
        ("GET", "/v1/playbooks/{id}/graph") => get(playbook_graph),
        ("GET", "/v1/status") => get(status),
        ("GET", "/metrics") => get(metrics),
        ("GET", "/openapi.json") => get(openapi_json),
        ("GET", "/healthz") => get(healthz),
        ("GET", "/readyz") => get(readyz),
        ("GET", "/panel/") => get(super::panel::index),
        ("GET", "/panel/whyfail-panel.js") => get(super::panel::script),
        ("GET", "/panel/examples/{file}") => get(super::panel::example),
        _ => return None,
    })
}

/// The method and path of every route the router serves (for tests that compare them with
/// the OpenAPI document).
pub fn served_routes() -> Vec<(Method, &'static str)> {
    definitions()
        .into_iter()
        .filter(|d| handler(&d.method, d.path).is_some())
        .map(|d| (d.method, d.path))
        .collect()
}

/// The router, with its layers. Outermost first: request id, the request log and metrics
/// (so they see every status, 401/413/503 included), panics to 500, the timeout, the body
/// limit; then per route the token check and, for diagnoses, a concurrency slot
/// ([`work::admit`]: 503 at once when none is free, instead of queueing).
pub(crate) fn router(state: AppState, config: &Config) -> Router {
    let mut public = Router::new();
    let mut protected = Router::new();
    for def in definitions() {
        let Some(mut mr) = handler(&def.method, def.path) else {
            continue;
        };
        if def.limited {
            mr = mr.layer(from_fn_with_state(state.clone(), work::admit));
        }
        if def.auth {
            protected = protected.route(def.path, mr);
        } else {
            public = public.route(def.path, mr);
        }
    }
    let protected = protected.route_layer(from_fn_with_state(
        state.clone(),
        super::auth::require_token,
    ));
    public
        .merge(protected)
        .fallback(not_found)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(from_fn_with_state(state.clone(), observe::observe))
                .layer(CatchPanicLayer::custom(observe::panic_response))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    config.request_timeout,
                ))
                // One limit for every route: tower-http's rejects by Content-Length before
                // reading, and caps chunked bodies while they are read.
                .layer(DefaultBodyLimit::disable())
                .layer(RequestBodyLimitLayer::new(config.max_body)),
        )
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::for_status(StatusCode::NOT_FOUND)
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

// ---------------------------------------------------------------------------------------------
// Diagnosis

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DiagnoseQuery {
    audience: Option<String>,
    act: Option<String>,
}

/// What the query string asks for.
struct Ask {
    audience: Audience,
    acts: Vec<String>,
}

fn ask(
    state: &ServerState,
    q: Result<Query<DiagnoseQuery>, QueryRejection>,
) -> Result<Ask, ApiError> {
    let Query(q) = q.map_err(ApiError::from_query)?;
    let audience = match q.audience.as_deref() {
        None | Some("") => Audience::User,
        Some(a) => a.parse().map_err(|m: String| {
            ApiError::bad_request("invalid_query", m).with("field", "audience")
        })?,
    };
    let acts: Vec<String> = q
        .act
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = acts
        .iter()
        .find(|a| !crate::act::ACTIONS.contains(&a.as_str()))
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "whyfail cannot carry out `{bad}`; `act` accepts: {}",
                crate::act::ACTIONS.join(", ")
            ),
        )
        .with("field", "act"));
    }
    if !acts.is_empty() && state.live.is_none() {
        return Err(ApiError::bad_request(
            "act_unavailable",
            "`act` needs live providers, and this server runs with --offline",
        )
        .with("field", "act"));
    }
    Ok(Ask { audience, acts })
}

/// One event's diagnosis: what `whyfail diagnose` does for one input (blocking). It stops
/// early when `ctl` is cancelled, and waits for live facts no longer than the request may run.
fn diagnose_one(
    lib: &Library,
    text: &str,
    ask: &Ask,
    live: Option<&LiveProvider>,
    ctl: &Ctl,
) -> Result<Resolution, ApiError> {
    let event = Event::parse(text).map_err(|e| ApiError::from_event(&e, text))?;
    let deadline = ctl.facts_deadline();
    let opts = Options {
        audience: ask.audience,
        provider: live.map(|l| l as &dyn FactProvider),
        deadline: Some(deadline),
        trace: false,
        cancel: Some(ctl.flag()),
    };
    let acts: &[String] = if ctl.cancelled() { &[] } else { &ask.acts };
    Ok(crate::act::diagnose_and_act(
        lib, &event, &opts, live, acts, deadline,
    ))
}

fn utf8(bytes: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

async fn diagnose(
    State(state): State<AppState>,
    slot: Option<Extension<Slot>>,
    query: Result<Query<DiagnoseQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ask = ask(&state, query)?;
    let body = body.map_err(ApiError::from_body)?;
    let loaded = state.current().ok_or_else(ApiError::not_ready)?;
    let st = state.clone();
    let res = work::run(&state, slot.map(|s| s.0), move |ctl| {
        let text = utf8(&body)?;
        let res = diagnose_one(&loaded.lib, text, &ask, st.live.as_deref(), ctl)?;
        st.metrics.diagnosis(&res);
        Ok::<_, ApiError>(res)
    })
    .await??;
    let mut out = json_response(StatusCode::OK, render::render(&res, Format::Json, true));
    out.extensions_mut().insert(LogFields {
        event_id: res.event_id.clone(),
        items: None,
    });
    Ok(out)
}

fn is_json_lines(headers: &HeaderMap) -> bool {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        ct.as_str(),
        "application/x-ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines"
    )
}

/// One batch item's answer: the resolution, or `{"index": i, "error": {...}}` in its place
/// (JSON Lines items also carry their 1-based `line`).
fn item(
    st: &ServerState,
    lib: &Library,
    text: Result<&str, ApiError>,
    (ask, ctl): (&Ask, &Ctl),
    index: usize,
    line: Option<usize>,
) -> String {
    match text.and_then(|t| diagnose_one(lib, t, ask, st.live.as_deref(), ctl)) {
        Ok(res) => {
            st.metrics.diagnosis(&res);
            render::render(&res, Format::Json, true)
        }
        Err(e) => {
            let mut v = json!({"index": index, "error": e.object()});
            if let (Some(n), Some(obj)) = (line, v.as_object_mut()) {
                obj.insert("line".into(), n.into());
            }
            v.to_string()
        }
    }
}

async fn batch(
    State(state): State<AppState>,
    slot: Option<Extension<Slot>>,
    headers: HeaderMap,
    query: Result<Query<DiagnoseQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ask = ask(&state, query)?;
    let body = body.map_err(ApiError::from_body)?;
    let loaded = state.current().ok_or_else(ApiError::not_ready)?;
    let lines = is_json_lines(&headers);
    let st = state.clone();
    let (out, n) = work::run(&state, slot.map(|s| s.0), move |ctl| {
        let lib = &loaded.lib;
        if lines {
            // Each line stands alone: a line that is not UTF-8 or not JSON is that item's error.
            let mut out = String::new();
            let mut n = 0;
            for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
                if ctl.cancelled() {
                    break; // nobody is waiting for the rest
                }
                let text = utf8(raw);
                if text.as_ref().is_ok_and(|t| t.trim().is_empty()) {
                    continue;
                }
                out.push_str(&item(&st, lib, text, (&ask, ctl), n, Some(i + 1)));
                out.push('\n');
                n += 1;
            }
            return Ok::<_, ApiError>((out, n));
        }
        let text = utf8(&body)?;
        if !text.trim_start().starts_with('[') {
            return Err(ApiError::bad_request(
                "invalid_json",
                "a batch is a JSON array of events (or JSON Lines with Content-Type: application/x-ndjson)",
            ));
        }
        let items: Vec<&serde_json::value::RawValue> =
            serde_json::from_str(text).map_err(|_| json_error(text, "invalid_json"))?;
        let mut out = String::from("[");
        for (i, raw) in items.iter().enumerate() {
            if ctl.cancelled() {
                break; // nobody is waiting for the rest
            }
            if i > 0 {
                out.push(',');
            }
            out.push_str(&item(&st, lib, Ok(raw.get()), (&ask, ctl), i, None));
        }
        out.push(']');
        Ok((out, items.len()))
    })
    .await??;
    let mut res = json_response(StatusCode::OK, out);
    if lines {
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
    }
    res.extensions_mut().insert(LogFields {
        event_id: None,
        items: Some(n),
    });
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// Playbooks

async fn playbooks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let loaded = state.current().ok_or_else(ApiError::not_ready)?;
    let body = json!({
        "playbook_set": loaded.lib.hash(),
        "loaded_at": loaded.loaded_at.to_string(),
        "playbooks": loaded.playbooks,
    });
    Ok(json_response(StatusCode::OK, body.to_string()))
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct GraphQuery {
    format: Option<String>,
}

async fn playbook_graph(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<GraphQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(ApiError::from_query)?;
    let format: GraphFormat = q
        .format
        .as_deref()
        .unwrap_or("mermaid")
        .parse()
        .map_err(|m: String| ApiError::bad_request("invalid_query", m).with("field", "format"))?;
    let loaded = state.current().ok_or_else(ApiError::not_ready)?;
    let pb = loaded.lib.playbook(&id).ok_or_else(|| {
        ApiError::not_found(format!(
            "no playbook `{id}` in the serving set; see GET /v1/playbooks"
        ))
    })?;
    let mut res = graph::render(pb, format).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// Operations

async fn healthz() -> Response {
    json_response(StatusCode::OK, json!({"status": "ok"}).to_string())
}

async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    let loaded = state.current().ok_or_else(ApiError::not_ready)?;
    Ok(json_response(
        StatusCode::OK,
        json!({"status": "ready", "playbook_set": loaded.lib.hash()}).to_string(),
    ))
}

async fn status(State(state): State<AppState>) -> Response {
    let loaded = state.current();
    let log = state.lock_log();
    let body = json!({
        "ready": loaded.is_some(),
        "engine_version": ENGINE_VERSION,
        "started_at": state.started_at.to_string(),
        "live": state.live.is_some(),
        "playbook_set": loaded.as_ref().map(|l| l.lib.hash()),
        "playbooks": loaded.as_ref().map_or(0, |l| l.playbooks.len()),
        "loaded_at": loaded.as_ref().map(|l| l.loaded_at.to_string()),
        "warnings": loaded.as_ref().map(|l| l.warnings.clone()).unwrap_or_default(),
        "reloads": {"ok": log.ok, "failed": log.failed},
        "last_reload": log.last,
        "last_failed_reload": log.last_failed,
    });
    json_response(StatusCode::OK, body.to_string())
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .encode()
        .map_err(|_| ApiError::internal("the metrics could not be encoded"))?;
    let mut res = text.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(res)
}

async fn openapi_json(State(state): State<AppState>) -> Response {
    json_response(StatusCode::OK, state.openapi.clone())
}
