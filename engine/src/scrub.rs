//! The one scrubber every output passes through: resolutions (every format and audience),
//! traces, recorded tests, fact errors and logs. It masks
//!
//! - the secrets the event lists (`connection.secrets`), as written, trimmed, URL-encoded,
//!   JSON-escaped, and inside base64 (`Basic base64(user:secret)`), wherever they occur;
//!   overlapping and nested ones are masked whole;
//! - credentials recognised by place and shape, listed or not: `Authorization`, cookie and
//!   API-key headers, URL userinfo (`https://user:pass@host`), token, key, secret, signature and
//!   password query or form parameters, token-like fields in JSON (`access_token`,
//!   `client_secret`, ...), `Bearer`/`Basic` credentials and JWTs.
//!
//! The common case (no listed secret, no credential shape) costs one pass of a small
//! Aho-Corasick automaton over each string; the regular expressions run only on text with one
//! of their trigger words. Masking either redacts (`[redacted]`) or, for recorded tests that
//! must replay the same, keeps the shape ([`mask_secret`]).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use base64::Engine as _;
use regex::Regex;
use serde_json::Value;

use crate::model::resolution::Resolution;

/// What a masked credential reads as in output.
pub const REDACTED: &str = "[redacted]";

/// Listed secrets shorter than this are not masked: they would match ordinary words.
pub const MIN_SECRET_LEN: usize = 6;

/// How a credential is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mask {
    /// By `[redacted]`.
    Redact,
    /// By a stand-in of the same shape ([`mask_secret`]), so a replay decides the same.
    Shape,
}

/// How a needle of the listed-secret automaton is masked when found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// The secret (or one of its encodings) itself.
    Plain,
    /// A piece of the secret's base64: the whole base64 run around it is masked.
    Base64,
}

/// The scrubber for one event's output (or, with no secrets, for anything).
#[derive(Clone)]
pub struct Scrubber {
    /// Every form of every listed secret.
    needles: Option<Needles>,
    mask: Mask,
    /// Texts known to hold no credential shape.
    plain: Option<Arc<PlainTexts>>,
}

/// Texts known to hold no credential shape, sorted out once per library: its titles and its
/// evidence, explanations and steps without expressions, which make up most of every
/// resolution. The scrubber skips the shape search for them; the event's listed secrets are
/// still searched (a secret may be any text, a title's words included).
#[derive(Debug, Default)]
pub struct PlainTexts(foldhash::HashSet<Box<str>>);

impl PlainTexts {
    /// Keeps those of `texts` in which no credential shape is found.
    pub fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> PlainTexts {
        let mut spans = Vec::new();
        let mut set = foldhash::HashSet::default();
        for t in texts {
            shapes(t, &mut spans);
            if spans.is_empty() {
                set.insert(Box::from(t));
            }
            spans.clear();
        }
        PlainTexts(set)
    }

    pub fn contains(&self, text: &str) -> bool {
        self.0.contains(text)
    }
}

/// Searchers for the listed secrets' forms, which find every occurrence of every form,
/// overlapping ones included.
#[derive(Clone)]
enum Needles {
    /// One substring searcher per form. A scrubber is built per event, usually for one or two
    /// secrets (a dozen forms): these build in a few hundred instructions each, where an
    /// Aho-Corasick automaton over the same forms took ~250,000 to build.
    Few(Vec<(memchr::memmem::Finder<'static>, Form)>),
    /// One overlapping Aho-Corasick search, for events listing many secrets.
    Many(AhoCorasick, Vec<Form>),
}

/// Up to this many forms get a searcher each; past it one automaton searches for them all.
const FEW_NEEDLES: usize = 48;

impl Needles {
    fn build(needles: &[(String, Form)], few: bool) -> Option<Needles> {
        if needles.is_empty() {
            None
        } else if few {
            Some(Needles::Few(
                needles
                    .iter()
                    .map(|(n, f)| (memchr::memmem::Finder::new(n).into_owned(), *f))
                    .collect(),
            ))
        } else {
            // A noncontiguous NFA: it builds in a fraction of a DFA's time.
            AhoCorasickBuilder::new()
                .kind(Some(AhoCorasickKind::NoncontiguousNFA))
                .match_kind(MatchKind::Standard)
                .build(needles.iter().map(|(n, _)| n.as_str()))
                .ok()
                .map(|ac| Needles::Many(ac, needles.iter().map(|(_, f)| *f).collect()))
        }
    }

    fn len(&self) -> usize {
        match self {
            Needles::Few(f) => f.len(),
            Needles::Many(_, forms) => forms.len(),
        }
    }

    /// Adds the span of every occurrence of every form in `text`.
    fn spans(&self, text: &str, spans: &mut Vec<(usize, usize)>) {
        let mut push = |start: usize, end: usize, form: Form| {
            spans.push(match form {
                Form::Plain => (start, end),
                Form::Base64 => base64_run(text, start, end),
            });
        };
        match self {
            Needles::Few(finders) => {
                let hay = text.as_bytes();
                for (finder, form) in finders {
                    let len = finder.needle().len();
                    let mut at = 0;
                    // Overlapping occurrences too: the next search starts one byte on.
                    while let Some(i) = hay.get(at..).and_then(|h| finder.find(h)) {
                        push(at + i, at + i + len, *form);
                        at += i + 1;
                    }
                }
            }
            Needles::Many(ac, forms) => {
                if ac.is_match(text) {
                    for m in ac.find_overlapping_iter(text) {
                        push(m.start(), m.end(), forms[m.pattern().as_usize()]);
                    }
                }
            }
        }
    }
}

/// Never prints the needles: they are the secrets.
impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.needles.as_ref().map_or(0, Needles::len);
        write!(f, "Scrubber({n} needles, {:?})", self.mask)
    }
}

impl Default for Scrubber {
    fn default() -> Self {
        Scrubber::new(std::iter::empty::<&str>())
    }
}

impl Scrubber {
    /// A scrubber for these secret values (and every credential shape), redacting.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Scrubber {
        let mut needles: Vec<(String, Form)> = Vec::new();
        let add = |s: String, form: Form, needles: &mut Vec<(String, Form)>| {
            if !needles.iter().any(|(n, _)| *n == s) {
                needles.push((s, form));
            }
        };
        for v in secrets {
            for piece in [v, v.trim()] {
                if piece.len() < MIN_SECRET_LEN {
                    continue;
                }
                add(piece.to_string(), Form::Plain, &mut needles);
                for encoded in encodings(piece) {
                    add(encoded, Form::Plain, &mut needles);
                }
                for fragment in base64_fragments(piece) {
                    add(fragment, Form::Base64, &mut needles);
                }
            }
        }
        let needles = Needles::build(&needles, needles.len() <= FEW_NEEDLES);
        Scrubber {
            needles,
            mask: Mask::Redact,
            plain: None,
        }
    }

    /// The same scrubber, skipping the shape search for texts in `plain`.
    pub fn knowing(mut self, plain: Arc<PlainTexts>) -> Scrubber {
        self.plain = Some(plain);
        self
    }

    /// The same scrubber, replacing credentials by stand-ins of the same shape.
    pub fn keeping_shape(mut self) -> Scrubber {
        self.mask = Mask::Shape;
        self
    }

    /// Whether it knows secrets of its own (it masks credential shapes either way).
    pub fn has_secrets(&self) -> bool {
        self.needles.is_some()
    }

    /// `text` with every listed secret and recognised credential masked (borrowed when there
    /// is nothing to mask, which is the common case).
    pub fn clean<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        if let Some(needles) = &self.needles {
            needles.spans(text, &mut spans);
        }
        if !self.plain.as_ref().is_some_and(|p| p.contains(text)) {
            shapes(text, &mut spans);
        }
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        Cow::Owned(self.replace(text, spans))
    }

    fn replace(&self, text: &str, mut spans: Vec<(usize, usize)>) -> String {
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut i = 0;
        while i < spans.len() {
            let (start, mut end) = spans[i];
            i += 1;
            // Overlapping and touching spans are masked as one.
            while i < spans.len() && spans[i].0 <= end {
                end = end.max(spans[i].1);
                i += 1;
            }
            let start = start.max(at);
            if start >= end {
                continue;
            }
            out.push_str(&text[at..start]);
            match self.mask {
                Mask::Redact => out.push_str(REDACTED),
                Mask::Shape => out.push_str(&mask_secret(&text[start..end])),
            }
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// Masks a string value in place.
    pub fn clean_string(&self, s: &mut String) {
        if let Cow::Owned(clean) = self.clean(s) {
            *s = clean;
        }
    }

    /// Masks a JSON value in place: every string, and the whole value of every field whose
    /// name says it holds a credential (`access_token`, `client_secret`, `Authorization`,
    /// `X-Api-Key`, `password`, ...).
    pub fn clean_json(&self, v: &mut Value) {
        match v {
            Value::String(s) => self.clean_string(s),
            Value::Array(items) => items.iter_mut().for_each(|x| self.clean_json(x)),
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match x {
                        Value::String(s) if is_credential_name(k) && !s.is_empty() => {
                            *s = self.mask_value(s);
                        }
                        _ => self.clean_json(x),
                    }
                }
            }
            _ => {}
        }
    }

    /// Masks every map of a JSON object (`params`, trace reads and facts) in place.
    pub fn clean_map(&self, m: &mut serde_json::Map<String, Value>) {
        let mut v = Value::Object(std::mem::take(m));
        self.clean_json(&mut v);
        if let Value::Object(clean) = v {
            *m = clean;
        }
    }

    /// The masked form of a whole credential value: an `Authorization` value keeps its scheme.
    fn mask_value(&self, value: &str) -> String {
        let (scheme, rest) = split_scheme(value);
        let masked = match self.mask {
            Mask::Redact => REDACTED.to_string(),
            Mask::Shape => mask_secret(rest),
        };
        format!("{scheme}{masked}")
    }

    /// Masks every text of a resolution in place (the new credentials `--act` returns are
    /// the caller's to show and are left alone).
    pub fn clean_resolution(&self, res: &mut Resolution) {
        if let Some(id) = res.event_id.as_mut() {
            self.clean_string(id);
        }
        if let Some(s) = res.symptom.as_mut() {
            self.clean_string(&mut s.title);
        }
        for c in &mut res.root_causes {
            self.clean_string(&mut c.title);
            c.evidence.iter_mut().for_each(|e| self.clean_string(e));
            if let Some(e) = c.explain.as_mut() {
                self.clean_string(e);
            }
        }
        for c in &mut res.candidates {
            self.clean_string(&mut c.title);
            self.clean_string(&mut c.why_open);
        }
        for a in &mut res.actions {
            self.clean_string(&mut a.title);
            self.clean_map(&mut a.params);
            a.steps.iter_mut().for_each(|s| self.clean_string(s));
        }
        for p in &mut res.path {
            if let Some(d) = p.detail.as_mut() {
                self.clean_string(d);
            }
        }
        self.clean_string(&mut res.explanation);
        for a in &mut res.acted {
            self.clean_string(&mut a.detail);
        }
        for t in &mut res.trace {
            if let Some(d) = t.detail.as_mut() {
                self.clean_string(d);
            }
            self.clean_string(&mut t.script);
            self.clean_map(&mut t.reads);
            self.clean_map(&mut t.facts);
        }
    }
}

/// `Bearer `, `Basic `, `token ` ... at the start of an `Authorization`-like value, kept.
fn split_scheme(value: &str) -> (&str, &str) {
    let trimmed = value.trim_start();
    let lead = value.len() - trimmed.len();
    if let Some(i) = trimmed.find(' ') {
        let word = &trimmed[..i];
        let schemes = [
            "bearer",
            "basic",
            "token",
            "digest",
            "apikey",
            "sso-key",
            "otoken",
            "negotiate",
        ];
        if schemes.iter().any(|s| word.eq_ignore_ascii_case(s)) {
            let end = lead + i + 1;
            return (&value[..end], &value[end..]);
        }
    }
    ("", value)
}

/// The ways a secret is written besides itself: URL-encoded (percent, either hex case, and
/// form encoding with `+`) and JSON-escaped.
fn encodings(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let upper: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
    let percent = upper.replace('+', "%20");
    for e in [
        upper.clone(),
        percent.clone(),
        lower_hex(&upper),
        lower_hex(&percent),
    ] {
        if e != s && !out.contains(&e) {
            out.push(e);
        }
    }
    if let Ok(json) = serde_json::to_string(s) {
        let inner = json[1..json.len() - 1].to_string();
        if inner != s && !out.contains(&inner) {
            out.push(inner);
        }
    }
    out
}

/// `%2F` → `%2f`.
fn lower_hex(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        out.push_str(&code.to_ascii_lowercase());
        rest = &rest[i + code.len()..];
    }
    out.push_str(rest);
    out
}

/// Pieces of base64 that any base64 text containing the secret contains, whatever comes
/// before it (`user:` in `Basic base64(user:secret)`) or after: for each of the three byte
/// alignments, the characters that depend on the secret's bytes only. Both alphabets; pieces
/// under 8 characters are left out (too likely by chance).
fn base64_fragments(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for offset in 0..3usize {
        let mut bytes = vec![0u8; offset];
        bytes.extend_from_slice(s.as_bytes());
        let whole_groups = bytes.len() / 3;
        let skip = if offset > 0 { 1 } else { 0 };
        if whole_groups <= skip {
            continue;
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes[..whole_groups * 3]);
        let piece = &encoded[skip * 4..];
        if piece.len() < 8 {
            continue;
        }
        for p in [piece.to_string(), piece.replace('+', "-").replace('/', "_")] {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_')
}

/// The whole run of base64 characters around `start..end`.
fn base64_run(text: &str, mut start: usize, mut end: usize) -> (usize, usize) {
    let b = text.as_bytes();
    while start > 0 && is_base64_char(b[start - 1]) {
        start -= 1;
    }
    while end < b.len() && is_base64_char(b[end]) {
        end += 1;
    }
    (start, end)
}

/// Whether a field, header or parameter of this name holds a credential: its last word is
/// one of the words credentials are called by (`access_token`, `apiKey`, `client_secret`,
/// `X-Api-Key`, `Authorization`, `Set-Cookie`, `password`, `X-Amz-Signature`, ...), but not
/// `token_url`, `token_type`, `key_id` or `has_refresh_token`'s boolean (only strings are
/// masked).
pub fn is_credential_name(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "token",
        "key",
        "apikey",
        "hapikey",
        "secret",
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "signature",
        "sig",
        "credential",
        "credentials",
        "cookie",
        "authorization",
        "auth",
        "jwt",
        "assertion",
        "sessionid",
    ];
    last_word(name).is_some_and(|w| WORDS.iter().any(|x| w.eq_ignore_ascii_case(x)))
}

/// The last word of a name split at punctuation and camelCase (`clientSecret` → `Secret`).
fn last_word(name: &str) -> Option<&str> {
    let name = name.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    let start = name
        .char_indices()
        .rev()
        .find_map(|(i, c)| {
            if !c.is_ascii_alphanumeric() {
                return Some(i + c.len_utf8());
            }
            // `...tS...`: a capital after a lower-case letter starts a word.
            let prev = name[..i].chars().next_back();
            (c.is_ascii_uppercase() && prev.is_some_and(|p| p.is_ascii_lowercase())).then_some(i)
        })
        .unwrap_or(0);
    (start < name.len()).then(|| &name[start..])
}

/// The shape rules, and the words that must occur for each to run.
#[derive(Clone, Copy)]
enum Rule {
    Userinfo,
    Param,
    JsonField,
    Header,
    Bearer,
    Basic,
    Jwt,
}

const RULES: usize = 7;

const CREDENTIAL_WORDS: &[&str] = &[
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "signature",
    "sig",
    "credential",
    "credentials",
    "cookie",
    "authorization",
    "auth",
    "jwt",
    "assertion",
    "sessionid",
];

const HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
    "private-token",
    "x-amz-security-token",
    "x-goog-api-key",
];

/// Trigger strings, each with the rule it wakes (ASCII case-insensitive).
static TRIGGERS: LazyLock<(AhoCorasick, Vec<Rule>)> = LazyLock::new(|| {
    let mut pats: Vec<(String, Rule)> = vec![
        ("://".into(), Rule::Userinfo),
        ("%3a%2f%2f".into(), Rule::Userinfo),
        ("bearer ".into(), Rule::Bearer),
        ("basic ".into(), Rule::Basic),
        ("eyj".into(), Rule::Jwt),
    ];
    // The same inside a URL-encoded query or form value (`Authorization%3A+Bearer+...`).
    for sep in ["+", "%20"] {
        pats.push((format!("bearer{sep}"), Rule::Bearer));
        pats.push((format!("basic{sep}"), Rule::Basic));
    }
    for w in CREDENTIAL_WORDS {
        pats.push((format!("{w}="), Rule::Param));
        pats.push((format!("{w}%3d"), Rule::Param));
        pats.push((format!("{w}\""), Rule::JsonField));
        pats.push((format!("{w}\\\""), Rule::JsonField));
        pats.push((format!("{w}%22"), Rule::JsonField));
    }
    for h in HEADERS {
        pats.push((format!("{h}:"), Rule::Header));
        pats.push((format!("{h}%3a"), Rule::Header));
    }
    // Built once and run over every string of every resolution: a DFA searches several
    // times faster than the NFA the builder picks by default for this many patterns.
    let ac = AhoCorasickBuilder::new()
        .kind(Some(AhoCorasickKind::DFA))
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .build(pats.iter().map(|(p, _)| p.as_str()))
        .expect("static patterns");
    (ac, pats.into_iter().map(|(_, r)| r).collect())
});

static USERINFO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b[a-z][a-z0-9+.\-]*://([^\s/?#@"'<>\\]+)@"#).expect("static regex")
});

/// URL userinfo inside a URL-encoded value (`https%3A%2F%2Fuser%3Apass%40host`).
static USERINFO_ENCODED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)%3a%2f%2f((?:[^%&\s"'<>#/?@]|%(?:[013-9a-f][0-9a-f]|2[0-9a-e]))+?)%40"#)
        .expect("static regex")
});

static PARAM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?i)([a-z0-9_.\-\[\]]*(?:{}))=([^&\s"'<>#;,)\\]+)"#,
        CREDENTIAL_WORDS.join("|")
    ))
    .expect("static regex")
});

/// A credential parameter inside a URL-encoded value (`next=...%3Faccess_token%3D...%26page`):
/// its value runs to the encoded or plain `&`.
static PARAM_ENCODED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?i)([a-z0-9_.\-]*(?:{}))%3d((?:[^%&\s"'<>#;,)\\]|%(?:[013-9a-f][0-9a-f]|2[0-57-9a-f]))+)"#,
        CREDENTIAL_WORDS.join("|")
    ))
    .expect("static regex")
});

/// A JSON field named like a credential, also inside a JSON-escaped string (`\"token\":\"..\"`).
static JSON_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?i)"([a-z0-9_.\-]*(?:{}))\\?"\s*:\s*\\?"((?:[^"\\]|\\[^"])+)"#,
        CREDENTIAL_WORDS.join("|")
    ))
    .expect("static regex")
});

/// The same inside a URL-encoded value (`%22access_token%22%3A%22...%22`).
static JSON_FIELD_ENCODED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?i)%22([a-z0-9_.\-]*(?:{}))%22(?:\+|%20)*%3a(?:\+|%20)*%22((?:[^%"&\s]|%(?:[013-9a-f][0-9a-f]|2[013-9a-f]))+)%22"#,
        CREDENTIAL_WORDS.join("|")
    ))
    .expect("static regex")
});

static HEADER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?im)(?:^|[^a-z0-9-])(?:{})\s*:\s*(?:(?:bearer|basic|token|digest|apikey|sso-key|otoken|negotiate)\s+)?([^\r\n"]+)"#,
        HEADERS.join("|")
    ))
    .expect("static regex")
});

/// A header written URL-encoded (`Authorization%3A+Bearer+...`): its value runs to the next
/// parameter.
static HEADER_ENCODED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?i)(?:^|[^a-z0-9-])(?:{})%3a(?:\+|%20)*(?:(?:bearer|basic|token|digest|apikey|sso-key|otoken|negotiate)(?:\+|%20)+)?([^\s&"'#;]+)"#,
        HEADERS.join("|")
    ))
    .expect("static regex")
});

static BEARER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bbearer(?:\s+|(?:\+|%20)+)([A-Za-z0-9._~+/\-]{12,}=*)").expect("static regex")
});

static BASIC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bbasic(?:\s+|(?:\+|%20)+)([A-Za-z0-9+/]{6,}(?:=|%3D|%3d)*)")
        .expect("static regex")
});

/// A JWT, or the start of one cut short after its payload began (a quote cut to length).
static JWT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}(?:\.[A-Za-z0-9_\-]*)?")
        .expect("static regex")
});

/// Adds the spans of every recognised credential in `text`.
fn shapes(text: &str, spans: &mut Vec<(usize, usize)>) {
    let (ac, rules) = &*TRIGGERS;
    // Most texts hold no trigger: one plain search says so at a fraction of the cost of the
    // overlapping one, which is needed only to wake every rule of a text that has some.
    if !ac.is_match(text) {
        return;
    }
    let mut woken = [false; RULES];
    for m in ac.find_overlapping_iter(text) {
        woken[rules[m.pattern().as_usize()] as usize] = true;
    }
    if !woken.contains(&true) {
        return;
    }
    let group = |re: &Regex, g: usize, keep: &dyn Fn(&regex::Captures<'_>) -> bool| {
        re.captures_iter(text)
            .filter(|c| keep(c))
            .filter_map(|c| c.get(g).map(|m| (m.start(), m.end())))
            .collect::<Vec<_>>()
    };
    if woken[Rule::Userinfo as usize] {
        if text.contains('@') {
            spans.extend(group(&USERINFO, 1, &|_| true));
        }
        if text.contains('%') {
            spans.extend(group(&USERINFO_ENCODED, 1, &|_| true));
        }
    }
    if woken[Rule::Param as usize] {
        spans.extend(group(&PARAM, 2, &|c| is_credential_name(&c[1])));
        if text.contains('%') {
            spans.extend(group(&PARAM_ENCODED, 2, &|c| is_credential_name(&c[1])));
        }
    }
    if woken[Rule::JsonField as usize] {
        spans.extend(group(&JSON_FIELD, 2, &|c| is_credential_name(&c[1])));
        if text.contains('%') {
            spans.extend(group(&JSON_FIELD_ENCODED, 2, &|c| {
                is_credential_name(&c[1])
            }));
        }
    }
    if woken[Rule::Header as usize] {
        spans.extend(group(&HEADER, 1, &|_| true));
        if text.contains('%') {
            spans.extend(group(&HEADER_ENCODED, 1, &|_| true));
        }
    }
    if woken[Rule::Bearer as usize] {
        // Opaque tokens carry digits; words after "Bearer" in prose do not.
        spans.extend(group(&BEARER, 1, &|c| {
            c[1].bytes().any(|b| b.is_ascii_digit())
        }));
    }
    if woken[Rule::Basic as usize] {
        // `Basic base64(user:password)`, not the word "basic" in prose.
        spans.extend(group(&BASIC, 1, &|c| {
            let b64 = c[1].trim_end_matches("%3D").trim_end_matches("%3d");
            let b64 = b64.trim_end_matches('=');
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(b64)
                .is_ok_and(|raw| raw.contains(&b':'))
        }));
    }
    if woken[Rule::Jwt as usize] {
        spans.extend(group(&JWT, 0, &|_| true));
    }
}

/// A stand-in for a secret with the same shape: the prefix that names its kind (`ghp_`,
/// `sk_live_`, `xoxb-`) kept, letters and digits replaced by `x`/`X`/`0`, everything else
/// (whitespace, punctuation, length) unchanged, so checks of a secret's shape decide the same.
pub fn mask_secret(secret: &str) -> String {
    // The longest prefix of alphabetic words each ending in `_` or `-`, at most 9 characters.
    let mut keep = 0;
    let mut word = 0;
    for (i, c) in secret.char_indices().take(9) {
        if c.is_ascii_alphabetic() {
            word += 1;
        } else if (c == '_' || c == '-') && word > 0 {
            keep = i + 1;
            word = 0;
        } else {
            break;
        }
    }
    secret
        .char_indices()
        .map(|(i, c)| {
            if i < keep {
                c
            } else if c.is_ascii_digit() {
                '0'
            } else if c.is_uppercase() {
                'X'
            } else if c.is_alphabetic() {
                'x'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(secrets: &[&str], text: &str) -> String {
        Scrubber::new(secrets.iter().copied())
            .clean(text)
            .into_owned()
    }

    proptest::proptest! {
        /// The per-form searchers (a few secrets) find exactly the spans the automaton (many
        /// secrets) finds: every occurrence, overlapping and nested ones included, in every
        /// encoding. Secrets and texts come from a small alphabet so that they overlap.
        #[test]
        fn few_and_many_needles_find_the_same_spans(
            units in proptest::collection::vec(("[ab/+ =]{1,3}", 2usize..6), 1..4),
            pieces in proptest::collection::vec((0usize..64, 0usize..12, "[ab ]{0,3}"), 0..8),
        ) {
            // Secrets repeat a short unit, so that their occurrences overlap themselves.
            let secrets: Vec<String> = units.iter().map(|(u, n)| u.repeat(*n)).collect();
            let mut needles: Vec<(String, Form)> = Vec::new();
            for v in &secrets {
                needles.push((v.clone(), Form::Plain));
                needles.extend(encodings(v).into_iter().map(|e| (e, Form::Plain)));
                needles.extend(base64_fragments(v).into_iter().map(|e| (e, Form::Base64)));
            }
            let mut seen = std::collections::HashSet::new();
            needles.retain(|(n, _)| seen.insert(n.clone()));
            // Text: secrets (or their encodings) followed by a cut copy of themselves, so
            // that occurrences overlap, between filler.
            let mut text = String::new();
            for (which, cut, filler) in &pieces {
                let (n, _) = &needles[which % needles.len()];
                let cut = (*cut).min(n.len());
                text.push_str(n);
                if n.is_char_boundary(cut) {
                    text.push_str(&n[..cut]);
                }
                text.push_str(filler);
            }
            let spans = |few: bool| {
                let mut out = Vec::new();
                if let Some(n) = Needles::build(&needles, few) {
                    n.spans(&text, &mut out);
                }
                out.sort_unstable();
                out.dedup();
                out
            };
            proptest::prop_assert_eq!(spans(true), spans(false));
        }
    }

    #[test]
    fn known_plain_texts_skip_only_the_shape_search() {
        let fixed = "Reconnect the account";
        let shaped = "Call https://admin:hunter22@example.com/api";
        let plain = Arc::new(PlainTexts::new([fixed, shaped]));
        // A fixed text with a credential shape is not taken as plain: it is still masked.
        assert!(plain.contains(fixed) && !plain.contains(shaped));
        let s = Scrubber::new(["the account"]).knowing(plain);
        assert_eq!(s.clean(shaped), "Call https://[redacted]@example.com/api");
        // A listed secret is still found in a plain text.
        assert_eq!(s.clean(fixed), "Reconnect [redacted]");
        assert_eq!(s.clean("Reconnect"), "Reconnect");
    }

    #[test]
    fn a_secret_containing_another_is_masked_whole() {
        // Shortest first would mask the inner secret and leave the outer one's tail.
        let outer = "sk_live_0123456789abcdef";
        let inner = "sk_live_0123";
        for order in [[inner, outer], [outer, inner]] {
            let out = clean(&order, &format!("key {outer} rejected"));
            assert_eq!(out, "key [redacted] rejected");
        }
        // Overlapping secrets (neither inside the other) are masked as one span.
        let out = clean(&["abcdef123", "123456xyz"], "x abcdef123456xyz y");
        assert_eq!(out, "x [redacted] y");
    }

    #[test]
    fn listed_secrets_are_masked_in_every_encoding() {
        let secret = "s3cr3t/p@ss word+1";
        let s = Scrubber::new([secret]);
        for text in [
            secret.to_string(),
            format!(
                "q=1&password={}",
                url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>()
            ),
            format!(
                "p={}",
                secret
                    .replace('/', "%2f")
                    .replace('@', "%40")
                    .replace(' ', "%20")
                    .replace('+', "%2b")
            ),
            format!(
                "Authorization: Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("alice:{secret}"))
            ),
            base64::engine::general_purpose::URL_SAFE.encode(format!("bob@example.com:{secret}")),
            base64::engine::general_purpose::STANDARD.encode(format!("x{secret}y")),
        ] {
            let out = s.clean(&text);
            assert!(!out.contains("s3cr3t"), "{text} -> {out}");
            assert!(out.contains(REDACTED), "{text} -> {out}");
            for piece in base64_fragments(secret) {
                assert!(!out.contains(&piece), "{text} -> {out}");
            }
        }
    }

    #[test]
    fn credentials_are_recognised_by_place_and_shape() {
        let s = Scrubber::default();
        for (text, gone) in [
            (
                "GET https://alice:hunter2pass@api.example.com/v1",
                "hunter2pass",
            ),
            (
                "clone https://ghp_abc123def456@github.com/o/r",
                "ghp_abc123def456",
            ),
            (
                "POST /token?grant_type=x&client_secret=cs-98765&code=ok",
                "cs-98765",
            ),
            ("https://x.io/a?access_token=at.9z8y7x&page=2", "at.9z8y7x"),
            ("https://x.io/a?X-Amz-Signature=abcdef0123", "abcdef0123"),
            ("?key=AIzaSyD-abc123", "AIzaSyD-abc123"),
            (
                r#"{"access_token":"ya29.a0AfB_byC","token_type":"Bearer"}"#,
                "ya29.a0AfB_byC",
            ),
            (r#"body: {"refresh_token": "1//0gLq-rt"}"#, "1//0gLq-rt"),
            (r#"{"clientSecret":"GOCSPX-1234"}"#, "GOCSPX-1234"),
            ("Authorization: Bearer abcdefghijkl", "abcdefghijkl"),
            ("X-Api-Key: key_live_1234", "key_live_1234"),
            ("set-cookie: session=9f8e7d6c; Path=/", "9f8e7d6c"),
            ("sent Bearer 0123456789abcdef0 to it", "0123456789abcdef0"),
            ("header Basic YWxpY2U6c2VjcmV0 sent", "YWxpY2U6c2VjcmV0"),
            (
                "?note=Authorization%3A+Bearer+zq900AAA0AA0Aa0&x=1",
                "zq900AAA0AA0Aa0",
            ),
            (
                "q=authorization%3A%20Basic%20YWxpY2U6c2VjcmV0",
                "YWxpY2U6c2VjcmV0",
            ),
            ("?h=X-Api-Key%3Akey_live_1234&y=2", "key_live_1234"),
            (
                "n=%7B%22client_secret%22%3A%22zq90AaAAaaa0AAA%22%2C%22x%22%3A1%7D",
                "zq90AaAAaaa0AAA",
            ),
            (
                r#"body "{\"refresh_token\":\"1//0gLq-rt\",\"x\":1}""#,
                "1//0gLq-rt",
            ),
            (
                "next=%2Fcb%3Fcode%3D1%26access_token%3Dzq900A0AA00AAaa%26page%3D2",
                "zq900A0AA00AAaa",
            ),
            (
                "next=https%3A%2F%2Fbob%3Ahunter2pass%40api.example.com%2Fv1",
                "hunter2pass",
            ),
            (
                "id eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl ok",
                "eyJzdWIiOiIxIn0",
            ),
        ] {
            let out = s.clean(text);
            assert!(!out.contains(gone), "{text} -> {out}");
        }
        // Words, not credentials: left alone.
        for text in [
            "Basic authentication failed for this user",
            "the Bearer token has expired",
            "invalid API key provided",
            "token_type=bearer; expires_in=3600",
            r#"{"token_url":"https://x/oauth/token","key_id":"k1"}"#,
            "see https://status.example.com/incidents",
            "monkey=banana",
        ] {
            assert_eq!(s.clean(text), text, "{text}");
        }
    }

    #[test]
    fn json_fields_named_like_credentials_are_masked_whole() {
        let s = Scrubber::default();
        let mut v = serde_json::json!({
            "headers": {"Authorization": "Bearer abc", "X-Api-Key": "k", "Accept": "json"},
            "access_token": "short",
            "token_url": "https://idp/token?client_secret=zz9zz9",
            "has_refresh_token": true,
            "nested": [{"password": "pw"}]
        });
        s.clean_json(&mut v);
        assert_eq!(v["headers"]["Authorization"], "Bearer [redacted]");
        assert_eq!(v["headers"]["X-Api-Key"], "[redacted]");
        assert_eq!(v["headers"]["Accept"], "json");
        assert_eq!(v["access_token"], "[redacted]");
        assert_eq!(v["token_url"], "https://idp/token?client_secret=[redacted]");
        assert_eq!(v["has_refresh_token"], true);
        assert_eq!(v["nested"][0]["password"], "[redacted]");
    }

    #[test]
    fn names_are_read_by_their_last_word() {
        for n in [
            "access_token",
            "apiKey",
            "X-Api-Key",
            "client_secret",
            "Set-Cookie",
            "password",
            "hapikey",
            "clientSecret",
        ] {
            assert!(is_credential_name(n), "{n}");
        }
        for n in [
            "token_url",
            "token_type",
            "key_id",
            "keyword",
            "monkey",
            "expires_in",
            "tokens_used",
        ] {
            assert!(!is_credential_name(n), "{n}");
        }
    }

    #[test]
    fn shape_masking_keeps_the_shape() {
        let s = Scrubber::new(["ghp_Ab12cd34"]).keeping_shape();
        assert_eq!(s.clean("token ghp_Ab12cd34 bad"), "token ghp_Xx00xx00 bad");
        assert_eq!(mask_secret("sk_live_9zZ"), "sk_live_0xX");
        assert_eq!(mask_secret("xoxb-123-abc\n"), "xoxb-000-xxx\n");
        assert_eq!(mask_secret("Bearer abc"), "Xxxxxx xxx");
    }
}
