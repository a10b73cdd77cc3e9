//! The service's one error shape: every failure answers `{"error": {"code", "message", ...}}`
//! with a stable `code` clients can key on, so no route ever returns a bare text or HTML body.
//!
//! Codes are part of the API (add freely, never rename): `invalid_json`, `invalid_event`,
//! `invalid_body`, `invalid_query`, `act_unavailable`, `unauthorized`, `not_found`,
//! `method_not_allowed`, `payload_too_large`, `overloaded`, `not_ready`, `timeout`, `internal`.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use whyfail_engine::EventError;

/// The error code of a response, left in its extensions for the request log line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorCode(pub &'static str);

/// An error answer: status, stable code, a message for people and optional details
/// (`line`, `column`, `field`) merged into the error object.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Map<String, Value>,
    /// Seconds for a `Retry-After` header (503s).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
        }
    }

    /// Asks the client to wait this many seconds before retrying (`Retry-After`).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds a detail field to the error object (`line`, `column`, `field`, ...).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn not_ready() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "no valid playbook set is loaded yet; see GET /v1/status for the diagnostics",
        )
        .retry_after(5)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The error object alone (`{"code", "message", ...}`), as batch items embed it.
    pub fn object(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("code".into(), self.code.into());
        obj.insert("message".into(), self.message.clone().into());
        for (k, v) in &self.details {
            obj.insert(k.clone(), v.clone());
        }
        Value::Object(obj)
    }

    /// The default error for a bare status produced below the handlers (router, limits,
    /// timeouts), used to give those responses the JSON shape too.
    pub fn for_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no such route; see GET /openapi.json"),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "this route does not accept that method; see GET /openapi.json",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload_too_large",
                "the request body is larger than the server's limit (--max-body)",
            ),
            StatusCode::GATEWAY_TIMEOUT => (
                "timeout",
                "the request took longer than the server's limit (--request-timeout)",
            ),
            StatusCode::UNAUTHORIZED => ("unauthorized", "a valid bearer token is required"),
            StatusCode::SERVICE_UNAVAILABLE => ("overloaded", "the server is busy; retry later"),
            s if s.is_client_error() => ("bad_request", "the request was refused"),
            _ => ("internal", "the server failed to answer this request"),
        };
        let e = Self::new(status, code, message);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            e.retry_after(super::work::RETRY_AFTER_SECS)
        } else {
            e
        }
    }

    /// Body extraction failures: the size limit is 413, anything else is a broken upload.
    pub fn from_body(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::for_status(StatusCode::PAYLOAD_TOO_LARGE)
        } else {
            Self::bad_request(
                "invalid_body",
                format!(
                    "the request body could not be read: {}",
                    rejection.body_text()
                ),
            )
        }
    }

    pub fn from_query(rejection: QueryRejection) -> Self {
        Self::bad_request(
            "invalid_query",
            format!("invalid query string: {}", rejection.body_text()),
        )
    }

    /// A body that is not a usable event. For broken JSON the text is parsed again (only on
    /// this error path) to learn which field the parser was in, so the message can say
    /// "at line 3 column 14, in `connection.oauth`" rather than just the position.
    pub fn from_event(err: &EventError, text: &str) -> Self {
        match err {
            EventError::Json(_) => json_error(text, "invalid_json"),
            EventError::MissingError | EventError::ErrorNotObject => {
                Self::bad_request("invalid_event", err.to_string()).with("field", "error")
            }
            EventError::NotAnObject => Self::bad_request("invalid_event", err.to_string()),
        }
    }
}

/// A precise message for JSON that does not parse: serde_json's description and position,
/// plus the dotted path of the field being read when it broke.
pub fn json_error(text: &str, code: &'static str) -> ApiError {
    let mut de = serde_json::Deserializer::from_str(text);
    let (err, path) = match serde_path_to_error::deserialize::<_, Value>(&mut de) {
        Ok(_) => match de.end() {
            Ok(()) => return ApiError::bad_request(code, "invalid JSON"),
            Err(e) => (e, String::new()),
        },
        Err(e) => {
            let path = e.path().to_string();
            (e.into_inner(), path)
        }
    };
    let mut message = format!("invalid JSON: {err}");
    let mut e = ApiError::bad_request(code, String::new())
        .with("line", err.line())
        .with("column", err.column());
    // serde_path_to_error renders the root as "." and a key it has not read yet as "?": an
    // error between two members is inside the enclosing object, not in a named field.
    let (inside, path) = match path.strip_suffix('?') {
        Some(p) => (true, p.trim_end_matches('.').to_string()),
        None => (false, path),
    };
    if !path.is_empty() && path != "." {
        if inside {
            message.push_str(&format!(", inside `{path}`"));
        } else {
            message.push_str(&format!(", in field `{path}`"));
        }
        e = e.with("field", path);
    }
    e.message = message;
    e
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.object() }).to_string();
        let mut res = (self.status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"whyfail\""),
            );
        }
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res.extensions_mut().insert(ErrorCode(self.code));
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_json_names_position_and_field() {
        let e = json_error("{\"error\": {\"status\": tru}}", "invalid_json");
        assert_eq!(e.details["line"], 1);
        assert_eq!(e.details["column"], 25);
        assert_eq!(e.details["field"], "error.status");
        assert!(
            e.message.contains("in field `error.status`"),
            "{}",
            e.message
        );

        let e = json_error(
            "{\"error\": {\"status\": 401\n  \"code\": 1}}",
            "invalid_json",
        );
        assert_eq!(e.details["line"], 2);
        assert_eq!(e.details["field"], "error");
        assert!(e.message.contains("inside `error`"), "{}", e.message);

        let e = json_error("{\"a\": [1, {\"b\": x}]}", "invalid_json");
        assert_eq!(e.details["field"], "a[1].b", "{}", e.message);
    }

    #[test]
    fn trailing_garbage_is_reported_at_its_position() {
        let e = json_error("{\"error\": {}} x", "invalid_json");
        assert!(e.message.contains("trailing characters"), "{}", e.message);
        assert!(!e.details.contains_key("field"));
    }
}
