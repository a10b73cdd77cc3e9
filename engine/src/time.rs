//! Time helpers: parsing the timestamp shapes providers use (RFC 3339, ISO 8601 without
//! seconds, HTTP dates, epoch seconds or milliseconds) and wording durations for people.

use jiff::Timestamp;
use rhai::{Dynamic, INT, ImmutableString};

/// Seconds since the Unix epoch, now, from the system clock (only when an event has no
/// `occurred_at`).
pub fn wall_clock() -> i64 {
    Timestamp::now().as_second()
}

/// Parses a timestamp in any supported shape into epoch seconds, in any letter case
/// (`2026-11-23t10:00:00z`, `SUN, 06 DEC 2026 00:00:00 GMT`).
pub fn parse(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    parse_exact(s).or_else(|| {
        let fixed = canonical_case(s);
        (fixed != s).then(|| parse_exact(&fixed)).flatten()
    })
}

/// Upper-cases the ISO letters and zone names and title-cases English month and day names,
/// the case the parsers below expect.
fn canonical_case(s: &str) -> String {
    const NAMES: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", "mon",
        "tue", "wed", "thu", "fri", "sat", "sun",
    ];
    let upper = s.to_ascii_uppercase();
    let mut out = String::with_capacity(upper.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let lower = word.to_ascii_lowercase();
        if lower.len() >= 3 && NAMES.contains(&&lower[..3]) {
            out.push_str(&word[..1]);
            out.push_str(&lower[1..]);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for ch in upper.chars() {
        if ch.is_ascii_alphabetic() {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            out.push(ch);
        }
    }
    flush(&mut word, &mut out);
    // ISO separators stay upper-case: "2026-11-23T10:00:00Z".
    out
}

fn parse_exact(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(epoch(n));
    }
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t.as_second());
    }
    // "2026-11-23 10:00:00 UTC" (GitHub's token expiration header) and "...T10:05Z".
    let normalised = s.replace(" UTC", "Z").replacen(' ', "T", 1);
    if let Ok(t) = normalised.parse::<Timestamp>() {
        return Some(t.as_second());
    }
    if let Ok(z) = jiff::fmt::rfc2822::parse(s) {
        return Some(z.timestamp().as_second());
    }
    // A bare date or civil time is taken as UTC.
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return jiff::tz::TimeZone::UTC
            .to_timestamp(dt)
            .ok()
            .map(|t| t.as_second());
    }
    None
}

/// Epoch numbers above ~year 5138 in seconds are milliseconds.
fn epoch(n: i64) -> i64 {
    if n > 100_000_000_000 { n / 1000 } else { n }
}

pub fn parse_dynamic(v: &Dynamic) -> Option<i64> {
    if let Some(s) = v.read_lock::<ImmutableString>() {
        return parse(&s);
    }
    if let Ok(n) = v.as_int() {
        return Some(epoch(n));
    }
    if let Ok(f) = v.as_float() {
        return Some(epoch(f as i64));
    }
    None
}

/// `Retry-After`: delay-seconds or an HTTP date, as seconds from `now` (never negative).
pub fn retry_after(value: &str, now: i64) -> Option<INT> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| secs.ceil() as INT);
    }
    parse(v).map(|t| (t - now).max(0))
}

/// A rate-limit reset given as epoch seconds or an ISO timestamp, as seconds from `now`.
pub fn reset_in(value: &str, now: i64) -> Option<INT> {
    parse(value).map(|t| (t - now).max(0))
}

/// "3 hours", "2 days", "45 seconds".
pub fn human_duration(secs: u64) -> String {
    let (n, unit) = match secs {
        0..=89 => (secs, "second"),
        90..=5399 => ((secs + 30) / 60, "minute"),
        5400..=129_599 => ((secs + 1800) / 3600, "hour"),
        _ => ((secs + 43_200) / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// "3 hours ago" for negative offsets, "in 3 hours" for positive ones.
pub fn relative(delta: i64) -> String {
    if delta <= 0 {
        format!("{} ago", human_duration(delta.unsigned_abs()))
    } else {
        format!("in {}", human_duration(delta as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_428_000; // 2026-11-23T10:00:00Z

    #[test]
    fn parses_provider_shapes() {
        assert_eq!(parse("2026-11-23T10:00:00Z"), Some(NOW));
        assert_eq!(parse("2026-11-23T10:00Z"), Some(NOW));
        assert_eq!(parse("2026-11-23 10:00:00 UTC"), Some(NOW));
        assert_eq!(parse("Mon, 23 Nov 2026 10:00:00 GMT"), Some(NOW));
        assert_eq!(parse("1795428000"), Some(NOW));
        assert_eq!(parse("1795428000000"), Some(NOW));
        assert_eq!(parse("soon"), None);
    }

    #[test]
    fn letter_case_does_not_matter() {
        for (a, b) in [
            ("2026-11-23t10:00:00z", "2026-11-23T10:00:00Z"),
            (
                "SUN, 06 DEC 2026 00:00:00 GMT",
                "Sun, 06 Dec 2026 00:00:00 GMT",
            ),
            ("06 dec 2026 00:00:00 +0000", "06 Dec 2026 00:00:00 +0000"),
        ] {
            assert_eq!(parse(a), parse(b), "{a}");
            assert!(parse(a).is_some(), "{a}");
        }
    }

    #[test]
    fn retry_after_both_forms() {
        assert_eq!(retry_after("120", NOW), Some(120));
        assert_eq!(retry_after("Mon, 23 Nov 2026 10:02:00 GMT", NOW), Some(120));
        assert_eq!(retry_after("Mon, 23 Nov 2026 09:00:00 GMT", NOW), Some(0));
        assert_eq!(reset_in("1795428300", NOW), Some(300));
    }

    #[test]
    fn words() {
        assert_eq!(relative(-3 * 3600), "3 hours ago");
        assert_eq!(relative(60), "in 60 seconds");
        assert_eq!(human_duration(86_400 * 3), "3 days");
    }
}
