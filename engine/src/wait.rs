//! When may the call be made again? Everything a provider says about it, read once per event:
//! `retry_hint()` is the wait the response states (headers, body fields, sentences), and
//! `reset_hint()` the wait until a reset it names ("resets at midnight Pacific Time").
//! `midnight_in(zone)` gives the wait until a documented reset the response does not state.
//!
//! Headers first, then the body's fields, then its sentences: a header is the provider's
//! machine-readable statement; a sentence may be about something else. Every wait is counted
//! from the event's `occurred_at` and is never negative.

use std::sync::LazyLock;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use regex::Regex;
use rhai::{Dynamic, ImmutableString, Map};

use crate::time;

/// Epoch values are far above any delay a provider would state in seconds.
const EPOCH_FLOOR: i64 = 1_000_000_000;

/// The wait the response states, in seconds.
pub fn retry_hint(error: &Map, haystack: &str, now: i64) -> Option<i64> {
    let headers = error.get("headers");
    let h = |name: &str| headers.and_then(|hs| crate::sandbox::header_of(hs, name));
    if let Some(v) = h("retry-after") {
        let v = v.trim();
        // Some providers put an epoch in Retry-After (Heroku): RFC 9110 allows only a delay
        // or an HTTP date, but the intent is plain.
        if let Ok(n) = v.parse::<i64>()
            && n >= EPOCH_FLOOR
        {
            return Some((n - now).max(0));
        }
        if let Some(s) = time::retry_after(v, now) {
            return Some(s);
        }
    }
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = h(name).and_then(|v| v.trim().parse::<f64>().ok()) {
            return Some((ms / 1000.0).ceil().max(0.0) as i64);
        }
    }
    if let Some(v) = h("ratelimit").and_then(|v| {
        v.split([';', ','])
            .find_map(|p| {
                p.trim()
                    .strip_prefix("t=")
                    .or_else(|| p.trim().strip_prefix("reset="))
            })
            .and_then(|n| n.trim().parse::<i64>().ok())
    }) {
        return Some(v.max(0));
    }
    if let Some(s) = h("x-ratelimit-reset-after").and_then(|v| seconds(&v)) {
        return Some(s);
    }
    for name in ["x-ratelimit-reset", "ratelimit-reset", "x-rate-limit-reset"] {
        if let Some(v) = h(name) {
            let v = v.trim();
            if let Ok(n) = v.parse::<i64>()
                && n < EPOCH_FLOOR
            {
                return Some(n.max(0));
            }
            if let Some(s) = time::reset_in(v, now) {
                return Some(s);
            }
        }
    }
    // OpenAI-style budgets: "1m30s", "6m0s", "20ms", or a timestamp.
    for name in [
        "x-ratelimit-requests-reset",
        "x-ratelimit-reset-requests",
        "x-ratelimit-complexity-reset",
        "x-ratelimit-tokens-reset",
        "x-ratelimit-reset-tokens",
    ] {
        if let Some(v) = h(name) {
            if let Some(s) = go_duration(v.trim()) {
                return Some(s);
            }
            if let Some(s) = time::reset_in(&v, now) {
                return Some(s);
            }
        }
    }
    if let Some(body) = error.get("body")
        && let Some(s) = body_wait(&json_of(body))
    {
        return Some(s);
    }
    sentence_wait(haystack, now)
}

/// The wait until a reset the text names: a UTC midnight or a US time zone's ("resets at
/// midnight Pacific Time", "12:00 AM CST").
pub fn reset_hint(haystack: &str, now: i64) -> Option<i64> {
    static UTC: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)midnight \(?(utc|gmt)\b|\b(00:00(:00)?|12:00 ?am) \(?(utc|gmt)\b|\b(utc|gmt) 00:00\b")
            .expect("static regex")
    });
    static ZONE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)(?:midnight|12:00 ?am|12 ?am)[^.\n]{0,12}?\b(pacific|pt|pst|pdt|mountain|mt|mst|mdt|central|ct|cst|cdt|eastern|et|est|edt)\b")
            .expect("static regex")
    });
    if UTC.is_match(haystack) {
        return midnight_in("UTC", now);
    }
    let zone = ZONE.captures(haystack)?;
    let tz = match zone[1].to_ascii_lowercase().chars().next()? {
        'p' => "America/Los_Angeles",
        'm' => "America/Denver",
        'c' => "America/Chicago",
        _ => "America/New_York",
    };
    midnight_in(tz, now)
}

/// Seconds from `now` to the next midnight in an IANA time zone (daylight saving included).
pub fn midnight_in(zone: &str, now: i64) -> Option<i64> {
    let tz = TimeZone::get(zone).ok()?;
    let here = Timestamp::from_second(now).ok()?.to_zoned_datetime(tz);
    let next = here
        .date()
        .tomorrow()
        .ok()?
        .to_zoned_datetime(here.time_zone().clone())
        .ok()?;
    Some(next.timestamp().as_second() - now)
}

/// Seconds from a number or a Go/OpenAI duration ("30", "1.5", "30s", "1m30s", "20ms").
fn seconds(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Ok(f) = v.parse::<f64>() {
        return (f.is_finite() && f >= 0.0).then(|| f.ceil() as i64);
    }
    go_duration(v)
}

fn go_duration(v: &str) -> Option<i64> {
    static PART: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(\d+(?:\.\d+)?)(ms|h|m|s)").expect("static regex"));
    if v.is_empty()
        || !v
            .bytes()
            .all(|b| b.is_ascii_digit() || b"hms.".contains(&b))
    {
        return None;
    }
    let mut total = 0.0;
    let mut any = false;
    for c in PART.captures_iter(v) {
        let n: f64 = c[1].parse().ok()?;
        total += n * match &c[2] {
            "h" => 3600.0,
            "m" => 60.0,
            "ms" => 0.001,
            _ => 1.0,
        };
        any = true;
    }
    any.then(|| total.ceil() as i64)
}

/// A script value as JSON, a JSON document inside a string parsed.
fn json_of(v: &Dynamic) -> serde_json::Value {
    if let Some(s) = v.read_lock::<ImmutableString>() {
        return serde_json::from_str(s.trim()).unwrap_or(serde_json::Value::Null);
    }
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// A wait in the body's fields: `retry_after` and its spellings (seconds, or milliseconds when
/// the name says so), Google's `retryDelay` ("30s" or `{seconds}`), Shopify's GraphQL cost
/// bucket ((requested - available) / restoreRate).
fn body_wait(body: &serde_json::Value) -> Option<i64> {
    use serde_json::Value as J;
    let mut found: Option<i64> = None;
    let mut cost: (Option<f64>, Option<f64>, Option<f64>) = (None, None, None);
    fn walk(
        v: &J,
        depth: usize,
        found: &mut Option<i64>,
        cost: &mut (Option<f64>, Option<f64>, Option<f64>),
    ) {
        if depth > 8 || found.is_some() {
            return;
        }
        match v {
            J::Object(m) => {
                for (k, x) in m {
                    let key: String = k
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric())
                        .collect::<String>()
                        .to_ascii_lowercase();
                    let num = x
                        .as_f64()
                        .or_else(|| x.as_str().and_then(|s| s.trim().parse().ok()));
                    match key.as_str() {
                        "retryafter" | "retryinseconds" | "retryafterseconds"
                        | "retryaftersecs" | "waitseconds" => {
                            if let Some(n) = num.filter(|n| *n >= 0.0) {
                                *found = Some(n.ceil() as i64);
                                return;
                            }
                        }
                        "retryafterms" | "retryafterms_" | "retryinms" => {
                            if let Some(n) = num.filter(|n| *n >= 0.0) {
                                *found = Some((n / 1000.0).ceil() as i64);
                                return;
                            }
                        }
                        "retrydelay" => {
                            let s = x.as_str().and_then(seconds).or_else(|| {
                                x.get("seconds")
                                    .and_then(J::as_f64)
                                    .map(|n| n.ceil() as i64)
                            });
                            if s.is_some() {
                                *found = s;
                                return;
                            }
                        }
                        "requestedquerycost" => cost.0 = num,
                        "currentlyavailable" => cost.1 = num,
                        "restorerate" => cost.2 = num,
                        _ => {}
                    }
                    walk(x, depth + 1, found, cost);
                }
            }
            J::Array(a) => a.iter().for_each(|x| walk(x, depth + 1, found, cost)),
            _ => {}
        }
    }
    walk(body, 0, &mut found, &mut cost);
    if found.is_some() {
        return found;
    }
    match cost {
        (Some(req), Some(avail), Some(rate)) if rate > 0.0 => {
            Some(((req - avail) / rate).ceil().max(1.0) as i64)
        }
        _ => None,
    }
}

/// A wait stated in words: "try again in 6s", "reset in 30 seconds", "try again after '17'
/// seconds", "retry after 2026-11-23T10:05:00Z", "You will regain access on 2026-12-01 at 00:00
/// UTC", "Quota will be replenished in 22.14:18:12".
fn sentence_wait(text: &str, now: i64) -> Option<i64> {
    static DELAY: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r#"(?i)\b(?:reset|resets|retry|retrying|try again|wait|waiting|available again|allowed again)\b[^.\n]{0,24}?\b(?:in|after|for)\s+['"]?(\d+(?:\.\d+)?)['"]?\s*(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?)\b"#,
        )
        .expect("static regex")
    });
    static MOMENT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)\b(?:retry after|try again (?:after|at|on)|resets? (?:at|on)|available (?:again )?(?:at|on|after)|regain access (?:at|on)|until)\s+(\d{4}-\d\d-\d\d(?:[t ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:z|[+-]\d\d:?\d\d)?)?)(?:\s+at\s+(\d\d:\d\d(?::\d\d)?)(?:\s*(?:utc|gmt|z))?)?",
        )
        .expect("static regex")
    });
    // A client that prints the response's headers or body fields into its message
    // ("Retry-After: 17", `"retry_after" = 13;`).
    static HEADER_LINE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"(?i)\b(?:retry[-_]?after|retry_in_seconds|retryafterseconds)["']?\s*[:=]\s*["']?(\d{1,6}(?:\.\d+)?)\b"#)
            .expect("static regex")
    });
    static SPAN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\b(?:replenished|reset|resets|available|retry|renewed)\b[^.\n]{0,20}?\bin\s+(?:(\d+)\.)?(\d{1,2}):(\d\d):(\d\d)\b")
            .expect("static regex")
    });
    if let Some(c) = HEADER_LINE.captures(text) {
        return c[1].parse::<f64>().ok().map(|n| n.ceil() as i64);
    }
    if let Some(c) = DELAY.captures(text) {
        let n: f64 = c[1].parse().ok()?;
        let unit = c[2].to_ascii_lowercase();
        let factor = match unit.as_str() {
            "ms" | "millisecond" | "milliseconds" => 0.001,
            u if u.starts_with('m') => 60.0,
            u if u.starts_with('h') => 3600.0,
            u if u.starts_with('d') => 86400.0,
            _ => 1.0,
        };
        return Some((n * factor).ceil() as i64);
    }
    if let Some(c) = MOMENT.captures(text) {
        let when = match c.get(2) {
            Some(t) => format!("{}T{}Z", &c[1][..10], t.as_str()),
            None => c[1].to_string(),
        };
        if let Some(t) = time::parse(&when) {
            return Some((t - now).max(0));
        }
    }
    if let Some(c) = SPAN.captures(text) {
        let days: i64 = c.get(1).map_or(Some(0), |d| d.as_str().parse().ok())?;
        let (h, m, s): (i64, i64, i64) =
            (c[2].parse().ok()?, c[3].parse().ok()?, c[4].parse().ok()?);
        return Some(days * 86400 + h * 3600 + m * 60 + s);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_428_000; // 2026-11-23T10:00:00Z

    fn error(json: &str) -> Map {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        rhai::serde::to_dynamic(v).unwrap().cast::<Map>()
    }

    fn hint(json: &str, text: &str) -> Option<i64> {
        retry_hint(&error(json), text, NOW)
    }

    #[test]
    fn headers_in_every_form() {
        assert_eq!(
            hint(r#"{"headers": {"Retry-After": "120"}}"#, ""),
            Some(120)
        );
        assert_eq!(
            hint(
                r#"{"headers": {"retry-after": "Mon, 23 Nov 2026 10:02:00 GMT"}}"#,
                ""
            ),
            Some(120)
        );
        assert_eq!(
            hint(r#"{"headers": {"retry-after": "1795428011"}}"#, ""),
            Some(11)
        );
        assert_eq!(
            hint(r#"{"headers": {"retry-after-ms": "1500"}}"#, ""),
            Some(2)
        );
        assert_eq!(
            hint(r#"{"headers": {"ratelimit": "\"default\";r=0;t=30"}}"#, ""),
            Some(30)
        );
        assert_eq!(
            hint(r#"{"headers": {"x-ratelimit-reset": "1795428090"}}"#, ""),
            Some(90)
        );
        assert_eq!(
            hint(
                r#"{"headers": {"x-ratelimit-reset": "2026-11-23T10:05Z"}}"#,
                ""
            ),
            Some(300)
        );
        assert_eq!(
            hint(r#"{"headers": {"x-ratelimit-reset": "45"}}"#, ""),
            Some(45)
        );
        assert_eq!(
            hint(
                r#"{"headers": {"x-ratelimit-reset-requests": "1m30s"}}"#,
                ""
            ),
            Some(90)
        );
        assert_eq!(
            hint(r#"{"headers": {"x-ratelimit-reset-tokens": "20ms"}}"#, ""),
            Some(1)
        );
        assert_eq!(
            hint(r#"{"headers": {"x-ratelimit-reset-after": "2.5"}}"#, ""),
            Some(3)
        );
    }

    #[test]
    fn body_fields_and_sentences() {
        assert_eq!(hint(r#"{"body": {"retry_after": 7}}"#, ""), Some(7));
        assert_eq!(
            hint(
                r#"{"body": "{\"error\":{\"details\":[{\"retryDelay\":\"58s\"}]}}"}"#,
                ""
            ),
            Some(58)
        );
        assert_eq!(
            hint(
                r#"{"body": {"extensions": {"cost": {"requestedQueryCost": 502, "throttleStatus": {"currentlyAvailable": 2, "restoreRate": 50}}}}}"#,
                ""
            ),
            Some(10)
        );
        assert_eq!(
            hint(
                "{}",
                "Please try again after '17' seconds after additional tokens"
            ),
            Some(17)
        );
        assert_eq!(
            hint("{}", "Complexity budget exhausted, reset in 30 seconds"),
            Some(30)
        );
        assert_eq!(hint("{}", "Please retry in 58.9s."), Some(59));
        assert_eq!(hint("{}", "Retry after 2026-11-23T10:05:00Z."), Some(300));
        assert_eq!(
            hint("{}", "You will regain access on 2026-11-24 at 00:00 UTC."),
            Some(14 * 3600)
        );
        assert_eq!(
            hint(
                "{}",
                "Out of call volume quota. Quota will be replenished in 1.02:00:30."
            ),
            Some(86400 + 7230)
        );
        assert_eq!(
            hint(
                "{}",
                "HTTP 429 Too Many Requests\nRetry-After: 17\nContent-Type: x"
            ),
            Some(17)
        );
        assert_eq!(
            hint("{}", "additional: {errors = (); \"retry_after\" = 13;}"),
            Some(13)
        );
        assert_eq!(hint("{}", "rate limit exceeded"), None);
        assert_eq!(hint("{}", "retry count 3 of 5"), None);
    }

    #[test]
    fn stated_and_documented_midnights() {
        assert_eq!(
            reset_hint("quota resets at midnight UTC", NOW),
            Some(14 * 3600)
        );
        // 10:00 UTC on 23 Nov is 02:00 in Los Angeles (PST, UTC-8): 22 hours to midnight.
        assert_eq!(
            reset_hint("Quota resets at midnight Pacific Time", NOW),
            Some(22 * 3600)
        );
        assert_eq!(reset_hint("resets at 12:00AM CST", NOW), Some(20 * 3600));
        assert_eq!(midnight_in("America/Los_Angeles", NOW), Some(22 * 3600));
        assert_eq!(reset_hint("daily limit reached", NOW), None);
    }
}
