//! A failure event, parsed once into script values.
//!
//! The JSON is deserialised straight into Rhai values (no intermediate tree), top-level
//! sections are made shared so every script's scope gets them by reference, and
//! `connection.secrets` is taken out so no script, template or output can ever see a secret
//! value: scripts only get its shape through `secret("name")`.

use std::sync::Arc;

use rhai::{Dynamic, Map};

use crate::sandbox::{MAX_STRING_SIZE, SCOPE_VARS};
use crate::time;

/// Why an input is not a usable failure event. Never contains event values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("the event must be a JSON object")]
    NotAnObject,
    #[error("missing field `error` (required; use {{}} when only a code is known)")]
    MissingError,
    #[error("field `error` must be an object")]
    ErrorNotObject,
}

/// One parsed failure event.
#[derive(Debug, Clone)]
pub struct Event {
    /// The whole event (without secrets), shared.
    pub(crate) root: Dynamic,
    /// The event's sections as script variables, in `SCOPE_VARS` order (`oauth` is
    /// `connection.oauth`); the `event`, `facts` and `now` slots are filled per diagnosis.
    sections: Vec<Dynamic>,
    pub(crate) secrets: Arc<[(String, String)]>,
    pub event_id: Option<String>,
    /// `occurred_at` in epoch seconds, when present and parseable.
    pub occurred_at: Option<i64>,
}

impl Event {
    /// Parses one event from JSON text.
    pub fn parse(json: &str) -> Result<Event, EventError> {
        let root: Dynamic = serde_json::from_str(json).map_err(|e| {
            EventError::Json(
                crate::scrub::Scrubber::default()
                    .clean(&e.to_string())
                    .into_owned(),
            )
        })?;
        let map = root.try_cast::<Map>().ok_or(EventError::NotAnObject)?;
        Event::from_map(map)
    }

    fn from_map(mut map: Map) -> Result<Event, EventError> {
        match map.get("error") {
            None => return Err(EventError::MissingError),
            Some(e) if !e.is_map() => return Err(EventError::ErrorNotObject),
            Some(_) => {}
        }
        for v in map.values_mut() {
            cap_strings(v);
        }
        let mut secrets = Vec::new();
        let mut oauth = Dynamic::UNIT;
        if let Some(conn) = map.get_mut("connection")
            && let Some(mut c) = conn.write_lock::<Map>()
        {
            if let Some(s) = c.remove("secrets")
                && let Some(s) = s.read_lock::<Map>()
            {
                for (k, v) in s.iter() {
                    if let Some(text) = v.read_lock::<rhai::ImmutableString>() {
                        secrets.push((k.to_string(), text.to_string()));
                    }
                }
            }
            if let Some(o) = c.get_mut("oauth") {
                let shared = std::mem::take(o).into_shared();
                *o = shared.clone();
                oauth = shared;
            }
        }
        let event_id = map
            .get("event_id")
            .filter(|v| !v.is_unit())
            .map(|v| v.to_string());
        let occurred_at = map
            .get("occurred_at")
            .and_then(|v| {
                v.read_lock::<rhai::ImmutableString>()
                    .map(|s| s.to_string())
            })
            .and_then(|s| time::parse(&s));
        let mut sections = vec![Dynamic::UNIT; SCOPE_VARS.len()];
        for (slot, name) in sections.iter_mut().zip(SCOPE_VARS) {
            match *name {
                "oauth" => *slot = oauth.clone(),
                "event" | "facts" | "now" => {}
                _ => {
                    if let Some(v) = map.get_mut(*name) {
                        let shared = std::mem::take(v).into_shared();
                        *v = shared.clone();
                        *slot = shared;
                    }
                }
            }
        }
        Ok(Event {
            root: Dynamic::from_map(map).into_shared(),
            sections,
            secrets: secrets.into(),
            event_id,
            occurred_at,
        })
    }

    /// A section by name (`error`, `connection`, `oauth`, ...), `()` when absent.
    pub(crate) fn section(&self, name: &str) -> Dynamic {
        SCOPE_VARS
            .iter()
            .position(|s| *s == name)
            .map(|i| self.sections[i].clone())
            .unwrap_or(Dynamic::UNIT)
    }

    /// Values of the script variables, in `SCOPE_VARS` order.
    pub(crate) fn scope_values(&self, facts: Dynamic, now: i64) -> Vec<Dynamic> {
        SCOPE_VARS
            .iter()
            .zip(&self.sections)
            .map(|(var, section)| match *var {
                "event" => self.root.clone(),
                "facts" => facts.clone(),
                "now" => Dynamic::from(now),
                _ => section.clone(),
            })
            .collect()
    }

    /// What a live provider may read about this event (fields, and secrets for live calls).
    pub fn fact_request(&self, deadline: Option<std::time::Instant>) -> crate::FactRequest<'_> {
        crate::FactRequest {
            event: &self.root,
            secrets: &self.secrets,
            deadline,
        }
    }

    /// The same event with one secret replaced or added (after whyfail refreshed a token, to
    /// re-run the failed check with the new one).
    pub fn with_secret(&self, name: &str, value: &str) -> Event {
        let mut secrets: Vec<(String, String)> = self
            .secrets
            .iter()
            .filter(|(k, _)| k != name)
            .cloned()
            .collect();
        secrets.push((name.to_string(), value.to_string()));
        Event {
            secrets: secrets.into(),
            ..self.clone()
        }
    }
}

/// What a string cut to the scripts' size limit ends with.
pub const TRUNCATED: &str = " …[truncated]";

/// Cuts every string longer than scripts may hold ([`MAX_STRING_SIZE`]) to fit, at a word
/// boundary when there is one near the end (so a token is not cut in half), with a marker:
/// a huge error text is read, capped, rather than failing every check that touches it.
fn cap_strings(v: &mut Dynamic) {
    if let Some(mut m) = v.write_lock::<Map>() {
        m.values_mut().for_each(cap_strings);
        return;
    }
    if let Some(mut a) = v.write_lock::<rhai::Array>() {
        a.iter_mut().for_each(cap_strings);
        return;
    }
    let long = v
        .read_lock::<rhai::ImmutableString>()
        .filter(|s| s.len() > MAX_STRING_SIZE)
        .map(|s| cap(&s));
    if let Some(short) = long {
        *v = short.into();
    }
}

/// `text` cut to at most [`MAX_STRING_SIZE`] bytes, marker included.
pub(crate) fn cap(text: &str) -> String {
    if text.len() <= MAX_STRING_SIZE {
        return text.to_string();
    }
    let mut end = MAX_STRING_SIZE - TRUNCATED.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    let cut = head
        .rfind(char::is_whitespace)
        .filter(|i| end - i < 1024)
        .unwrap_or(end);
    format!("{}{TRUNCATED}", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_secrets_out() {
        let e = Event::parse(r#"{"error":{},"connection":{"secrets":{"api_key":"sk_live_abc"},"oauth":{"has_refresh_token":true}}}"#).unwrap();
        let values: Vec<&str> = e.secrets.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, vec!["sk_live_abc"]);
        assert!(!e.root.to_string().contains("sk_live_abc"));
        assert!(e.section("oauth").to_string().contains("has_refresh_token"));
    }

    #[test]
    fn strings_over_the_script_limit_are_capped_with_a_marker() {
        let long = format!("{} the end", "word ".repeat(20_000));
        let e = Event::parse(
            &serde_json::json!({"error": {"message": long, "body": {"items": [long]}}}).to_string(),
        )
        .unwrap();
        let error = e.section("error");
        let message = crate::sandbox::dig(&error, "message").to_string();
        assert!(message.len() <= MAX_STRING_SIZE, "{}", message.len());
        assert!(message.ends_with(TRUNCATED) && message.starts_with("word word"));
        assert!(!message.contains("the end"));
        let item = crate::sandbox::dig(&error, "body.items.0").to_string();
        assert_eq!(item, message);
        assert_eq!(cap("short"), "short");
    }

    #[test]
    fn rejects_what_is_not_an_event() {
        assert_eq!(Event::parse("[1]").unwrap_err(), EventError::NotAnObject);
        assert_eq!(Event::parse("{}").unwrap_err(), EventError::MissingError);
        assert_eq!(
            Event::parse(r#"{"error":"boom"}"#).unwrap_err(),
            EventError::ErrorNotObject
        );
        assert!(matches!(
            Event::parse("{").unwrap_err(),
            EventError::Json(_)
        ));
    }
}
