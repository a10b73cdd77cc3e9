//! The outer middleware every request passes: it gives bare error responses from lower layers
//! (router 404/405, body limit 413, timeout 504) the JSON error shape, records the HTTP
//! metrics, and writes the one structured log line per request.
//!
//! The log line holds method, route template, status, latency, request id, and the event id
//! or batch size a handler reported. Never a body, a header value or a query string: those
//! may carry tokens and connection secrets. The event id is the client's text, so it is cut to
//! [`MAX_LOGGED_ID`] characters (with a marker saying how much was left out).

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ServerState;
use super::error::{ApiError, ErrorCode};

/// What a handler wants in the request's log line, passed back in the response extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogFields {
    pub event_id: Option<String>,
    pub items: Option<usize>,
}

/// Longest event id written to a log line, in characters.
pub(crate) const MAX_LOGGED_ID: usize = 128;

/// `id` as logged: whole up to [`MAX_LOGGED_ID`] characters, else its start and a marker.
pub(crate) fn capped(id: &str) -> String {
    // The engine scrubbed the listed secrets already; credential shapes are masked again here
    // so nothing logged depends on where the id came from.
    let id = &*whyfail_engine::scrub::Scrubber::default().clean(id);
    match id.char_indices().nth(MAX_LOGGED_ID) {
        None => id.to_string(),
        Some((end, _)) => {
            let rest = id[end..].chars().count();
            format!("{}…[+{rest} chars]", &id[..end])
        }
    }
}

fn is_json(res: &Response) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

pub(crate) async fn observe(
    State(state): State<Arc<ServerState>>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();

    let mut res = next.run(req).await;
    if (res.status().is_client_error() || res.status().is_server_error()) && !is_json(&res) {
        // Keep the original's other headers (`allow` on a 405, the request id) and
        // extensions; only the body and its type change.
        let (mut parts, _) = res.into_parts();
        let (json, body) = ApiError::for_status(parts.status)
            .into_response()
            .into_parts();
        for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH] {
            parts.headers.remove(name);
        }
        for (name, value) in &json.headers {
            parts.headers.insert(name, value.clone());
        }
        parts.extensions.extend(json.extensions);
        res = Response::from_parts(parts, body);
    }

    let latency = start.elapsed();
    let status = res.status().as_u16();
    state
        .metrics
        .request(method.as_str(), &route, status, latency);
    let fields = res
        .extensions()
        .get::<LogFields>()
        .cloned()
        .unwrap_or_default();
    let event_id = fields.event_id.as_deref().map(capped);
    let error_code = res.extensions().get::<ErrorCode>().map(|c| c.0);
    // Microsecond precision is plenty and keeps the lines short.
    let latency_ms = (latency.as_secs_f64() * 1_000_000.0).round() / 1000.0;
    if res.status().is_server_error() {
        tracing::warn!(
            target: "whyfail::http",
            method = %method, route, status, latency_ms, request_id,
            event_id, items = fields.items, error_code,
            "request"
        );
    } else {
        tracing::info!(
            target: "whyfail::http",
            method = %method, route, status, latency_ms, request_id,
            event_id, items = fields.items, error_code,
            "request"
        );
    }
    res
}

/// A panic in a handler becomes a JSON 500; the payload is not echoed (it could quote data).
pub(crate) fn panic_response(_payload: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!(target: "whyfail::http", "a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server failed while answering this request",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_event_ids_are_cut_with_a_marker() {
        assert_eq!(capped("evt_1"), "evt_1");
        let exact = "é".repeat(MAX_LOGGED_ID);
        assert_eq!(capped(&exact), exact);
        let long = format!("{}{}", "é".repeat(MAX_LOGGED_ID), "x".repeat(100_000));
        let c = capped(&long);
        assert!(c.starts_with(&exact), "{c}");
        assert!(c.ends_with("…[+100000 chars]"), "{c}");
        assert_eq!(
            c.chars().count(),
            MAX_LOGGED_ID + "…[+100000 chars]".chars().count()
        );
    }
}
