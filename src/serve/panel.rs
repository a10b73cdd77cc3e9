//! The "why did this fail" panel, served by the service: the `<whyfail-panel>` web component
//! (`panel/whyfail-panel.js`, one dependency-free file), its demo page, and the demo's data, the
//! built-in example events diagnosed offline by the set being served. No token is needed: the
//! files are public and the examples carry no secrets.

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use whyfail_engine::{Event, Options};

use super::error::ApiError;
use crate::render::{self, Format};

use super::routes::AppState;
use super::work::{self, Slot};

const INDEX: &str = include_str!("../../panel/index.html");
const SCRIPT: &str = include_str!("../../panel/whyfail-panel.js");

/// The demo's events: name → event JSON.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "refresh_token_expired",
        include_str!("../../examples/events/refresh_token_expired.json"),
    ),
    (
        "rate_limited",
        include_str!("../../examples/events/rate_limited.json"),
    ),
    (
        "slack_missing_scope",
        include_str!("../../examples/events/slack_missing_scope.json"),
    ),
];

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

pub(crate) async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

pub(crate) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /panel/examples/{name}.json`: an example event diagnosed now, offline.
pub(crate) async fn example(
    State(state): State<AppState>,
    slot: Option<Extension<Slot>>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let name = file.strip_suffix(".json").unwrap_or(&file).to_string();
    let Some((_, text)) = EXAMPLES.iter().find(|(n, _)| *n == name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no example `{name}`; the examples are {}",
                EXAMPLES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let loaded = state.current().ok_or_else(ApiError::not_ready)?;
    let res = work::run(&state, slot.map(|s| s.0), move |ctl| {
        let opts = Options {
            cancel: Some(ctl.flag()),
            ..Options::default()
        };
        Event::parse(text).map(|e| whyfail_engine::diagnose(&loaded.lib, &e, &opts))
    })
    .await?
    .map_err(|e| ApiError::internal(format!("the example `{name}` is not an event: {e}")))?;
    Ok(asset_owned(render::render(&res, Format::Json, false)))
}

fn asset_owned(body: String) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
