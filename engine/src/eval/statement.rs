//! Does the provider say something specific? Asked only when the best cause rests on generic
//! evidence (an HTTP status, a generic protocol code): if the error text makes a statement
//! beyond the status line and the wording every client and gateway wraps around it, no check
//! recognised that statement, and giving the generic reading as the diagnosis would overrule
//! the provider's own words. The answer is then `inconclusive`, with the causes listed.
//!
//! The text is the provider's code, the string leaves of the body (keys dropped), and the
//! client's message with URLs and file paths removed. What is left after dropping generic
//! words (status phrases, client and exception names, "please try again later", ...) and
//! anything shorter than three letters is the statement; two such words make it specific.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use rhai::{Dynamic, ImmutableString, Map};

use crate::eval::Event;
use crate::sandbox::HelperCtx;

/// Words that say nothing beyond "this HTTP call failed": reason phrases of every status,
/// generic auth wording, client, library and exception names, and filler.
const GENERIC: &[&str] = &[
    // filler
    "the",
    "and",
    "for",
    "with",
    "from",
    "this",
    "that",
    "these",
    "those",
    "was",
    "were",
    "has",
    "have",
    "had",
    "not",
    "you",
    "your",
    "are",
    "been",
    "being",
    "can",
    "could",
    "cannot",
    "cant",
    "should",
    "would",
    "will",
    "please",
    "try",
    "again",
    "later",
    "retry",
    "contact",
    "support",
    "see",
    "more",
    "information",
    "info",
    "details",
    "detail",
    "description",
    "reason",
    "title",
    "type",
    "docs",
    "documentation",
    "link",
    "href",
    "what",
    "which",
    "when",
    "there",
    "here",
    "into",
    "onto",
    "its",
    "our",
    "their",
    "any",
    "all",
    "some",
    "one",
    "does",
    "did",
    "yet",
    "also",
    "but",
    "such",
    "via",
    "use",
    "used",
    "using",
    "check",
    "make",
    "sure",
    "occurred",
    "while",
    "during",
    "processing",
    "process",
    "unable",
    "able",
    "got",
    "received",
    "returned",
    "return",
    "returns",
    "result",
    "resulted",
    "results",
    "sent",
    "send",
    "sending",
    "when",
    "then",
    "than",
    "only",
    "out",
    "now",
    "yes",
    "true",
    "false",
    "null",
    "none",
    "nil",
    "undefined",
    "value",
    "values",
    "field",
    "fields",
    "data",
    "body",
    "text",
    "html",
    "json",
    "xml",
    "content",
    "utf",
    "charset",
    "application",
    "head",
    "center",
    "doctype",
    "meta",
    // the request and its failure
    "http",
    "https",
    "client",
    "server",
    "request",
    "requests",
    "response",
    "responses",
    "status",
    "statuscode",
    "code",
    "codes",
    "error",
    "errors",
    "err",
    "message",
    "messages",
    "msg",
    "failed",
    "failure",
    "fails",
    "fail",
    "failing",
    "exception",
    "exceptions",
    "raise",
    "raised",
    "thrown",
    "throw",
    "unexpected",
    "unknown",
    "internal",
    "issue",
    "problem",
    "api",
    "apis",
    "call",
    "calls",
    "endpoint",
    "endpoints",
    "resource",
    "resources",
    "object",
    "objects",
    "url",
    "uri",
    "method",
    "get",
    "post",
    "put",
    "patch",
    "delete",
    "options",
    "operation",
    "action",
    "id",
    "uuid",
    "trace",
    "traceid",
    "correlation",
    "correlationid",
    "timestamp",
    "time",
    "date",
    "instance",
    "path",
    "line",
    "file",
    "version",
    "host",
    // reason phrases
    "ok",
    "bad",
    "forbidden",
    "unauthorized",
    "unauthorised",
    "found",
    "gateway",
    "timeout",
    "service",
    "unavailable",
    "conflict",
    "gone",
    "payment",
    "acceptable",
    "entity",
    "unprocessable",
    "precondition",
    "large",
    "too",
    "many",
    "implemented",
    "teapot",
    "moved",
    "permanently",
    "redirect",
    "continue",
    "created",
    "accepted",
    "content",
    "length",
    "range",
    "satisfiable",
    "expectation",
    "upgrade",
    "locked",
    "dependency",
    "temporarily",
    "temporary",
    "network",
    "connection",
    "proxy",
    // generic auth wording (agrees with any 401/403 reading)
    "unauthenticated",
    "authentication",
    "authenticate",
    "authenticated",
    "authorization",
    "authorize",
    "authorized",
    "authorised",
    "authorisation",
    "auth",
    "access",
    "denied",
    "deny",
    "permission",
    "permissions",
    "permitted",
    "allowed",
    "allow",
    "invalid",
    "valid",
    "wrong",
    "incorrect",
    "credential",
    "credentials",
    "token",
    "tokens",
    "bearer",
    "basic",
    "header",
    "headers",
    "required",
    "require",
    "requires",
    "missing",
    "provided",
    "provide",
    "supplied",
    "user",
    "account",
    "login",
    "logged",
    "sign",
    "signed",
    "rights",
    "privileges",
    "privilege",
    "insufficient",
    "refused",
    "rejected",
    "reject",
    // clients, libraries, exceptions (camelCase names arrive split into words)
    "axios",
    "undici",
    "fetch",
    "httpx",
    "aiohttp",
    "urllib",
    "faraday",
    "guzzle",
    "okhttp",
    "reqwest",
    "hyper",
    "curl",
    "java",
    "javax",
    "net",
    "sun",
    "org",
    "apache",
    "spring",
    "springframework",
    "web",
    "reactive",
    "function",
    "lang",
    "system",
    "python",
    "node",
    "ruby",
    "php",
    "rust",
    "dotnet",
    "traceback",
    "soap",
    "env",
    "xml",
    "fault",
    "invoke",
    "most",
    "recent",
    "last",
    "caused",
    "cause",
    "stack",
    "frame",
    "module",
    "lib",
    "site",
    "packages",
    "models",
    "typeerror",
    "runtime",
    "unhandled",
    "promise",
    "rejection",
    "async",
    "await",
    "task",
    "thread",
    "main",
    "pool",
    "port",
    "socket",
    "read",
    "write",
    "connect",
    "connected",
    "connecting",
    "timed",
    "stream",
    "channel",
    "exceptions",
    "errno",
    "syscall",
    "address",
    "remote",
    "local",
    "indicate",
    "indicates",
    "success",
    "successful",
    "successfully",
    "how",
    "handle",
    "them",
    "they",
    "about",
    "like",
    "just",
    "current",
    "currently",
    "protected",
    "area",
    "page",
    "site",
    "website",
    "server's",
    "request's",
    "grant",
    "grants",
    "refresh",
    "refreshing",
    "refreshed",
    "oauth",
    "exchange",
    "exchanging",
    "expected",
    "given",
    "following",
    "specified",
    "requested",
    "attempt",
    "attempted",
    "key",
    "keys",
    "perform",
    "performing",
    "aadsts",
    "apikey",
    "other",
    "reasons",
    "various",
    "realm",
    "scheme",
    "challenge",
];

fn generic() -> &'static HashSet<&'static str> {
    static SET: LazyLock<HashSet<&'static str>> =
        LazyLock::new(|| GENERIC.iter().copied().collect());
    &SET
}

/// The provider's specific statement in the error, if it makes one that no signal of the
/// library recognises:
/// the first words that survive, for the explanation. `None` when the text only says "this
/// call failed" (or everything specific in it was recognised).
pub(crate) fn specific_statement(event: &Event, helper: &HelperCtx) -> Option<String> {
    let error = event.section("error");
    let map = error.read_lock::<Map>()?;
    let mut pieces: Vec<String> = Vec::new();
    for key in ["code", "body", "message"] {
        if let Some(v) = map.get(key) {
            leaves(v, key == "message", &mut pieces);
        }
    }
    if let Some(h) = map.get("headers") {
        let www = crate::sandbox::header_of(h, "www-authenticate");
        pieces.extend(www);
    }
    drop(map);
    let names = own_names(event);
    let mut words: Vec<String> = Vec::new();
    for piece in pieces {
        // Wording any signal of the library recognises is known, whether or not a check
        // happened to ask for that signal on this event. Noise goes first, so a blanked match
        // cannot cut a URL in two.
        let mut bytes = noise().replace_all(&piece, " ").into_owned().into_bytes();
        let candidates = helper.signals.candidates(&String::from_utf8_lossy(&bytes));
        for (id, _) in candidates.iter().enumerate().filter(|(_, c)| **c) {
            helper.signals.blank_matches(id, &mut bytes);
        }
        words_of(&String::from_utf8_lossy(&bytes), &mut words);
    }
    // The service naming itself ("Jira is …", "HaloPSA …") says nothing about the failure.
    words.retain(|w| !names.iter().any(|n| n.contains(w.as_str())));
    (words.len() >= 2).then(|| words.into_iter().take(8).collect::<Vec<_>>().join(" "))
}

/// The words of HTTP reason phrases and of the wrappers HTTP clients put around a status
/// ("Request failed with status code 403", "403 Client Error: Forbidden for url: …",
/// "Response status code does not indicate success: 503 (Service Unavailable).").
const STATUS_WORDS: &[&str] = &[
    "http",
    "https",
    "error",
    "errors",
    "failed",
    "failure",
    "request",
    "response",
    "status",
    "code",
    "client",
    "server",
    "exception",
    "the",
    "with",
    "for",
    "url",
    "uri",
    "of",
    "to",
    "in",
    "an",
    "is",
    "was",
    "by",
    "at",
    "on",
    "does",
    "not",
    "indicate",
    "success",
    "remote",
    "returned",
    "resulted",
    "raise",
    "axios",
    "axioserror",
    "httperror",
    "requests",
    "exceptions",
    "ok",
    "bad",
    "unauthorized",
    "unauthorised",
    "forbidden",
    "found",
    "method",
    "allowed",
    "acceptable",
    "proxy",
    "authentication",
    "required",
    "timeout",
    "time",
    "out",
    "conflict",
    "gone",
    "length",
    "precondition",
    "payload",
    "too",
    "large",
    "long",
    "unsupported",
    "media",
    "type",
    "range",
    "satisfiable",
    "expectation",
    "teapot",
    "misdirected",
    "unprocessable",
    "content",
    "entity",
    "locked",
    "dependency",
    "early",
    "upgrade",
    "many",
    "header",
    "fields",
    "unavailable",
    "legal",
    "reasons",
    "internal",
    "implemented",
    "gateway",
    "service",
    "version",
    "supported",
    "insufficient",
    "storage",
    "loop",
    "detected",
    "network",
    "temporarily",
    "moved",
    "permanently",
    "redirect",
    "payment",
    "bearer",
    "basic",
];

/// Whether a value (a message, a code, a body, a challenge) is the status in words: every
/// word of it (URLs, numbers, `realm="…"` and JSON keys aside) belongs to a reason phrase or a
/// client's wrapper, or it is an HTML page. Checks that pass on such text pass on the status.
pub(crate) fn is_status_text(v: &Dynamic) -> bool {
    static REALM: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"(?i)\b(realm|charset)="[^"]*""#).expect("static regex"));
    static WORDS: LazyLock<HashSet<&'static str>> =
        LazyLock::new(|| STATUS_WORDS.iter().copied().collect());
    let mut pieces = Vec::new();
    leaves(v, false, &mut pieces);
    // Every piece that says anything says it in status words only (a URL alone, say one
    // carrying `?error=…`, is not the status).
    pieces.iter().filter(|p| !p.trim().is_empty()).all(|p| {
        let p = REALM.replace_all(p, " ");
        let p = noise().replace_all(&p, " ");
        let mut words = p
            .split(|c: char| !c.is_ascii_alphabetic())
            .flat_map(camel_parts)
            .filter(|w| w.len() >= 2)
            .peekable();
        words.peek().is_some() && words.all(|w| WORDS.contains(w.to_ascii_lowercase().as_str()))
    })
}

/// The provider's name and the labels of the base URL's host, lower-cased.
fn own_names(event: &Event) -> Vec<String> {
    let conn = event.section("connection");
    let Some(c) = conn.read_lock::<Map>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(p) = c.get("provider").and_then(|v| {
        v.read_lock::<ImmutableString>()
            .map(|s| s.to_ascii_lowercase())
    }) {
        out.push(p);
    }
    if let Some(u) = c
        .get("base_url")
        .and_then(|v| v.read_lock::<ImmutableString>().map(|s| s.to_string()))
        && let Some(host) = u
            .split("://")
            .nth(1)
            .and_then(|r| r.split(['/', ':', '?']).next())
    {
        out.extend(host.split('.').map(str::to_ascii_lowercase));
    }
    out.retain(|n| n.len() >= 3);
    out
}

/// The text pieces of a value: string leaves (object keys are field names, not statements), a
/// JSON document inside a string read as its leaves, and HTML pages left out: an HTML body on
/// an API call is a gateway's or proxy's page, not the provider's words about this call.
fn leaves(v: &Dynamic, is_message: bool, out: &mut Vec<String>) {
    if let Some(s) = v.read_lock::<ImmutableString>() {
        text_leaves(&s, is_message, out);
    } else if let Some(m) = v.read_lock::<Map>() {
        for x in m.values() {
            leaves(x, false, out);
        }
    } else if let Some(a) = v.read_lock::<rhai::Array>() {
        for x in a.iter() {
            leaves(x, false, out);
        }
    }
}

fn text_leaves(text: &str, is_message: bool, out: &mut Vec<String>) {
    let trimmed = text.trim_start();
    if is_html(trimmed) {
        return;
    }
    if !is_message
        && (trimmed.starts_with('{') || trimmed.starts_with('['))
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(trimmed)
    {
        json_leaves(&v, out);
        return;
    }
    out.push(text.to_string());
}

pub(crate) fn is_html(text: &str) -> bool {
    static HTML: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)<(!doctype|html|head|body|title|center|h1|div|p)\b").expect("static regex")
    });
    HTML.is_match(text)
}

fn json_leaves(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => text_leaves(s, false, out),
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_leaves(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| json_leaves(x, out)),
        _ => {}
    }
}

/// URLs, file paths, e-mail addresses, host names, `key=value` and `"key":` pairs' keys, which
/// messages that embed a request or a body carry, and stack frames (JVM/Node `at f(file:12)`,
/// `... 12 more`, Python `File "x.py", line 3, in f`), which name code, not the failure, and
/// XML/SOAP tags (`<SOAP-ENV:Fault>`), whose names are markup, not words.
fn noise() -> &'static Regex {
    static NOISE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r#"(?mi)^[ \t]*(at [^\n]*|\.\.\. \d+ more|File "[^"\n]*", line \d+[^\n]*)$|</?[A-Za-z][^<>\n]{0,200}>|[a-zA-Z][a-zA-Z0-9+.-]*://\S*|\S*[/\\]\S*|\S+@\S+|\b[\w-]+(\.[\w-]+)+\b|\b\w+=|"[^"\n]{0,64}"\s*:"#,
        )
        .expect("static regex")
    });
    &NOISE
}

/// Splits on anything that is not a letter and at camelCase humps, lower-cases, and keeps
/// words of three letters or more that are not generic.
fn words_of(text: &str, out: &mut Vec<String>) {
    let set = generic();
    for token in text.split(|c: char| !c.is_ascii_alphabetic()) {
        for part in camel_parts(token) {
            if part.len() < 3 {
                continue;
            }
            let w = part.to_ascii_lowercase();
            if !set.contains(w.as_str()) && !out.contains(&w) {
                out.push(w);
            }
        }
    }
}

/// `MerchantNotApproved` → Merchant, Not, Approved; `HTTPError` → HTTP, Error; `ERROR` stays.
fn camel_parts(token: &str) -> Vec<&str> {
    let b = token.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    for i in 1..b.len() {
        let lower_to_upper = b[i - 1].is_ascii_lowercase() && b[i].is_ascii_uppercase();
        let acronym_end = i + 1 < b.len()
            && b[i - 1].is_ascii_uppercase()
            && b[i].is_ascii_uppercase()
            && b[i + 1].is_ascii_lowercase();
        if lower_to_upper || acronym_end {
            parts.push(&token[start..i]);
            start = i;
        }
    }
    if start < token.len() {
        parts.push(&token[start..]);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(error: &str) -> Option<String> {
        let event = Event::parse(&format!(
            r#"{{"error": {error}, "connection": {{"provider": "halopsa", "base_url": "https://acme.atlassian.net/rest"}}}}"#
        ))
        .unwrap();
        let helper = HelperCtx::new(
            0,
            event.section("error"),
            Vec::new().into(),
            Default::default(),
            Default::default(),
        );
        specific_statement(&event, &helper)
    }

    #[test]
    fn generic_wording_is_no_statement() {
        for e in [
            r#"{"status": 403, "message": "Request failed with status code 403"}"#,
            r#"{"status": 403, "message": "403 Client Error: Forbidden for url: https://api.example.com/v1/items?x=1"}"#,
            r#"{"status": 401, "message": "HTTPError: HTTP Error 401: Unauthorized", "body": {"error": "unauthorized", "error_description": "Invalid token"}}"#,
            r#"{"status": 403, "body": "{\"errors\":[{\"code\":\"FORBIDDEN\",\"message\":\"Access denied\"}]}"}"#,
            r#"{"status": 429, "message": "AxiosError: Request failed with status code 429", "body": "Too Many Requests"}"#,
            r#"{"status": 503, "message": "Response status code does not indicate success: 503 (Service Unavailable)."}"#,
            r#"{"code": "invalid_grant"}"#,
            r#"{"status": 401, "body": {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}}"#,
            r#"{"status": 522, "body": "<!DOCTYPE html><html><head><title>api.example.com | 522: Connection timed out</title></head><body>Cloudflare Ray ID: 8f1e</body></html>"}"#,
            r#"{"kind": "timeout", "message": "requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='api.example.com', port=443): (read timeout=10)"}"#,
            r#"{"status": 401, "message": "HaloPSA: Atlassian says unauthorized"}"#,
            r#"{"status": 401, "message": "Unauthorized\n\tat com.acme.sync.Worker$Killer.invokeSuspend(Worker.kt:165)\n\t... 12 more"}"#,
            r#"{"status": 401, "body": "<?xml version=\"1.0\"?><SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>Unauthorized</faultstring></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>"}"#,
            r#"{"status": 401, "message": "Traceback:\n  File \"/srv/flows/sync_contacts.py\", line 88, in push_batch\nHTTPError: 401 Unauthorized"}"#,
        ] {
            assert_eq!(statement(e), None, "{e}");
        }
    }

    #[test]
    fn a_specific_statement_is_found_however_it_is_wrapped() {
        for e in [
            r#"{"status": 403, "body": {"errors": [{"code": "MERCHANT_NOT_APPROVED", "message": "x"}]}}"#,
            r#"{"status": 403, "body": "{\"message\":\"Your merchant account is pending review\"}"}"#,
            r#"{"status": 403, "message": "Client error: `GET https://a.example/v1` resulted in a `403 Forbidden` response: {\"detail\":\"Merchant approval pending\"}"}"#,
            r#"{"code": "MerchantNotApproved"}"#,
        ] {
            let s = statement(e);
            assert!(
                s.as_deref().is_some_and(|s| s.contains("merchant")),
                "{e}: {s:?}"
            );
        }
    }

    #[test]
    fn status_text_is_reason_phrases_and_client_wrappers_only() {
        let d = |j: &str| {
            rhai::serde::to_dynamic(serde_json::from_str::<serde_json::Value>(j).unwrap()).unwrap()
        };
        for yes in [
            r#""Service Unavailable""#,
            r#""Request failed with status code 403""#,
            r#""403 Client Error: Forbidden for url: https://api.example.com/v1?x=1""#,
            r#""Response status code does not indicate success: 503 (Service Unavailable).""#,
            r#""FORBIDDEN""#,
            r#"{"error": {"code": 404, "message": "Not Found"}}"#,
            r#""Bearer realm=\"GitHub\"""#,
            r#""""#,
            r#""<html><body><h1>504 Gateway Time-out</h1></body></html>""#,
        ] {
            assert!(is_status_text(&d(yes)), "{yes}");
        }
        for no in [
            r#""The OAuth client was not found.""#,
            r#""not_in_channel""#,
            r#""invalid_grant""#,
            r#""Body exceeded 4mb limit""#,
            r#""Bearer error=\"invalid_token\"""#,
            r#"{"message": "Rate limit exceeded"}"#,
            r#""https://app.example.com/cb?error=application_suspended&state=xyz""#,
        ] {
            assert!(!is_status_text(&d(no)), "{no}");
        }
    }

    #[test]
    fn camel_case_and_acronyms_split() {
        assert_eq!(
            camel_parts("MerchantNotApproved"),
            ["Merchant", "Not", "Approved"]
        );
        assert_eq!(camel_parts("HTTPError"), ["HTTP", "Error"]);
        assert_eq!(camel_parts("ERROR"), ["ERROR"]);
        assert_eq!(camel_parts("invalid"), ["invalid"]);
    }
}
