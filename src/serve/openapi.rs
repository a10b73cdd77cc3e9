//! `GET /openapi.json`: an OpenAPI 3.1 document built from the route table (so it lists exactly
//! the routes the router serves) with the event and resolution JSON Schemas that
//! `whyfail schema` generates from the engine's types embedded under `components.schemas`.
//!
//! The generated schemas are draft 2020-12 documents whose `$ref`s point into their own
//! `$defs`. They are embedded unchanged except for an added `$id`: that makes each one its
//! own schema resource, so `#/$defs/...` resolves inside it, as OpenAPI 3.1 (full JSON Schema
//! 2020-12) specifies, instead of against the OpenAPI document's root.

use serde_json::{Map, Value, json};
use whyfail_engine::ENGINE_VERSION;

use super::routes::RouteDef;

/// The `$id` given to an embedded generated schema.
pub fn schema_id(kind: &str) -> String {
    format!("urn:whyfail:schema:{kind}")
}

fn generated(kind: &str) -> Value {
    let mut v = whyfail_engine::schema::schema_json(kind)
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .unwrap_or_else(|| json!({}));
    if let Some(obj) = v.as_object_mut() {
        obj.insert("$id".into(), schema_id(kind).into());
    }
    v
}

/// The document for these routes.
pub fn document(routes: &[RouteDef]) -> Value {
    let mut paths = Map::new();
    for r in routes {
        let mut op = (r.doc)();
        if let Some(o) = op.as_object_mut() {
            if !r.auth {
                o.insert("security".into(), json!([]));
            } else {
                let responses = o.entry("responses").or_insert_with(|| json!({}));
                if let Some(resp) = responses.as_object_mut() {
                    resp.insert(
                        "401".into(),
                        error_response("Missing or wrong bearer token"),
                    );
                }
            }
            if r.limited
                && let Some(resp) = o.get_mut("responses").and_then(Value::as_object_mut)
            {
                let mut unavailable = error_response(
                    "`overloaded`: every diagnosis slot is busy (--concurrency), refused at once, not queued (`Retry-After: 1`); or `not_ready`: no valid playbook set is loaded (`Retry-After: 5`)",
                );
                if let Some(u) = unavailable.as_object_mut() {
                    u.insert("headers".into(), retry_after_header());
                }
                resp.insert("503".into(), unavailable);
                resp.insert(
                    "413".into(),
                    error_response("The body is larger than --max-body"),
                );
                resp.insert(
                    "504".into(),
                    error_response(
                        "`timeout`: the request took longer than --request-timeout; its diagnosis is stopped, and its slot is free again once it has",
                    ),
                );
            }
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        if let Some(e) = entry.as_object_mut() {
            e.insert(r.method.as_str().to_ascii_lowercase(), op);
        }
    }
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "whyfail",
            "version": ENGINE_VERSION,
            "description": "Why did this workflow step fail, and what to do next. Send a failure event, get a resolution: causes with evidence, ordered actions, a disposition, the path through the playbook and an explanation. Every error is `{\"error\": {\"code\", \"message\"}}`."
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "The token from WHYFAIL_TOKEN or --token-file"}
            },
            "schemas": {
                "Event": generated("event"),
                "Resolution": generated("resolution"),
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string", "description": "Stable: invalid_json, invalid_event, invalid_body, invalid_query, act_unavailable, unauthorized, not_found, method_not_allowed, payload_too_large, overloaded, not_ready, timeout, internal"},
                                "message": {"type": "string"},
                                "line": {"type": "integer", "description": "1-based line of broken JSON"},
                                "column": {"type": "integer", "description": "1-based column of broken JSON"},
                                "field": {"type": "string", "description": "Dotted path of the field at fault"}
                            }
                        }
                    }
                },
                "BatchItemError": {
                    "type": "object",
                    "required": ["index", "error"],
                    "properties": {
                        "index": {"type": "integer", "description": "0-based position of the item in the batch"},
                        "line": {"type": "integer", "description": "1-based line (JSON Lines only)"},
                        "error": {"$ref": "#/components/schemas/Error/properties/error"}
                    }
                },
                "Diagnostic": {
                    "type": "object",
                    "description": "A playbook problem, as `whyfail check --format json` reports it",
                    "properties": {
                        "severity": {"enum": ["error", "warning"]},
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "file": {"type": "string"},
                        "yaml_path": {"type": "string"},
                        "line": {"type": ["integer", "null"]},
                        "column": {"type": ["integer", "null"]},
                        "hint": {"type": ["string", "null"]}
                    }
                }
            }
        }
    })
}

fn retry_after_header() -> Value {
    json!({
        "Retry-After": {
            "description": "Seconds to wait before retrying",
            "schema": {"type": "integer", "minimum": 0}
        }
    })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn diagnose_params() -> Value {
    json!([
        {"name": "audience", "in": "query", "required": false,
         "description": "Voice of the explanation",
         "schema": {"enum": ["user", "support", "developer"], "default": "user"}},
        {"name": "act", "in": "query", "required": false,
         "description": "Comma-separated actions whyfail may carry out when the diagnosis recommends them (only `refresh_token`; needs live providers). New tokens come back in `new_credentials`.",
         "schema": {"type": "string", "enum": ["refresh_token"]}}
    ])
}

pub(crate) fn op_diagnose() -> Value {
    json!({
        "operationId": "diagnose",
        "summary": "Diagnose one failure event",
        "parameters": diagnose_params(),
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Event"}}}},
        "responses": {
            "200": {"description": "The resolution", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Resolution"}}}},
            "400": error_response("`invalid_json` (with line, column and field), `invalid_event`, `invalid_query` or `act_unavailable`")
        }
    })
}

pub(crate) fn op_batch() -> Value {
    json!({
        "operationId": "diagnoseBatch",
        "summary": "Diagnose many events: a JSON array, or JSON Lines with Content-Type application/x-ndjson",
        "description": "One answer per event, in order, in the request's format. An item that is not a valid event gets `{\"index\": i, \"error\": {...}}` in its place; the batch goes on.",
        "parameters": diagnose_params(),
        "requestBody": {"required": true, "content": {
            "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}},
            "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/Event"}}
        }},
        "responses": {
            "200": {"description": "Resolutions and item errors, in order", "content": {
                "application/json": {"schema": {"type": "array", "items": {"oneOf": [
                    {"$ref": "#/components/schemas/Resolution"}, {"$ref": "#/components/schemas/BatchItemError"}]}}},
                "application/x-ndjson": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/Resolution"}, {"$ref": "#/components/schemas/BatchItemError"}]}}
            }},
            "400": error_response("The body is not a JSON array (JSON Lines items fail one by one instead)")
        }
    })
}

pub(crate) fn op_playbooks() -> Value {
    json!({
        "operationId": "listPlaybooks",
        "summary": "The serving playbook set",
        "responses": {
            "200": {"description": "The set's hash and its playbooks, highest priority first", "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {
                    "playbook_set": {"type": "string"},
                    "loaded_at": {"type": "string", "format": "date-time"},
                    "playbooks": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
                        "file": {"type": "string"}, "priority": {"type": "integer"}, "builtin": {"type": "boolean"},
                        "hash": {"type": ["string", "null"], "description": "sha256 of the playbook file's text"}
                    }}}
                }
            }}}},
            "503": error_response("`not_ready`: no valid playbook set is loaded")
        }
    })
}

pub(crate) fn op_graph() -> Value {
    json!({
        "operationId": "playbookGraph",
        "summary": "A playbook's decision graph as Mermaid or Graphviz DOT",
        "parameters": [
            {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": "Playbook (symptom) id"},
            {"name": "format", "in": "query", "required": false, "schema": {"enum": ["mermaid", "dot"], "default": "mermaid"}}
        ],
        "responses": {
            "200": {"description": "The graph", "content": {
                "text/vnd.mermaid": {"schema": {"type": "string"}},
                "text/vnd.graphviz": {"schema": {"type": "string"}}
            }},
            "400": error_response("Unknown format"),
            "404": error_response("No playbook with this id in the serving set")
        }
    })
}

pub(crate) fn op_status() -> Value {
    json!({
        "operationId": "status",
        "summary": "The serving set and the reload history",
        "description": "`last_reload` and `last_failed_reload` hold `whyfail check --format json` of the attempted set (ok, errors, warnings, diagnostics, playbooks, playbook_set) plus `at`, `trigger` and `result` (ok, unchanged, failed).",
        "responses": {
            "200": {"description": "Status", "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {
                    "ready": {"type": "boolean"},
                    "engine_version": {"type": "string"},
                    "started_at": {"type": "string", "format": "date-time"},
                    "live": {"type": "boolean"},
                    "playbook_set": {"type": ["string", "null"]},
                    "playbooks": {"type": "integer"},
                    "loaded_at": {"type": ["string", "null"], "format": "date-time"},
                    "warnings": {"type": "array", "items": {"$ref": "#/components/schemas/Diagnostic"}},
                    "reloads": {"type": "object", "properties": {"ok": {"type": "integer"}, "failed": {"type": "integer"}}},
                    "last_reload": {"type": ["object", "null"]},
                    "last_failed_reload": {"type": ["object", "null"]}
                }
            }}}}
        }
    })
}

pub(crate) fn op_metrics() -> Value {
    json!({
        "operationId": "metrics",
        "summary": "Prometheus metrics (OpenMetrics text)",
        "responses": {"200": {"description": "Metrics", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}}
    })
}

pub(crate) fn op_openapi() -> Value {
    json!({
        "operationId": "openapi",
        "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}
    })
}

pub(crate) fn op_healthz() -> Value {
    json!({
        "operationId": "healthz",
        "summary": "Liveness: the process answers (no token needed)",
        "responses": {"200": {"description": "Alive", "content": {"application/json": {"schema": {"type": "object"}}}}}
    })
}

pub(crate) fn op_panel() -> Value {
    json!({
        "operationId": "panel",
        "summary": "The <whyfail-panel> demo page: the panel on the built-in example diagnoses (no token needed)",
        "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}}
    })
}

pub(crate) fn op_panel_script() -> Value {
    json!({
        "operationId": "panelScript",
        "summary": "The <whyfail-panel> web component: one dependency-free ES module (no token needed)",
        "responses": {"200": {"description": "JavaScript module", "content": {"text/javascript": {"schema": {"type": "string"}}}}}
    })
}

pub(crate) fn op_panel_example() -> Value {
    json!({
        "operationId": "panelExample",
        "summary": "A built-in example event (`refresh_token_expired.json`, `rate_limited.json`, `slack_missing_scope.json`) diagnosed offline by the served set, for the demo (no token needed)",
        "parameters": [{"name": "file", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": {
            "200": {"description": "The resolution", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Resolution"}}}},
            "404": error_response("`not_found`: no such example")
        }
    })
}

pub(crate) fn op_readyz() -> Value {
    json!({
        "operationId": "readyz",
        "summary": "Readiness: a valid playbook set is loaded (no token needed)",
        "responses": {
            "200": {"description": "Ready", "content": {"application/json": {"schema": {"type": "object"}}}},
            "503": error_response("`not_ready`: no valid playbook set is loaded")
        }
    })
}
