//! Signals: named families of error texts ("certificate expired" as curl, Node, Java, Go,
//! .NET, Python and rustls word it), each compiled once at load time into one regex (the
//! alternation of its patterns).
//!
//! Each signal's regex is compiled the first time it is needed and kept for the process.
//! Per event, a signal is matched only when a script first asks for it (`signal("name")`) and
//! the answer is remembered for the rest of that diagnosis. One big `RegexSet` over every
//! pattern was tried first: its overlapping search thrashed the lazy DFA's cache and fell back
//! to the PikeVM, about 3 ms per event with 400 patterns. Separate regexes stop at the first
//! match and keep small automata.
//!
//! Most signals are never worth running: before any regex, one Aho-Corasick pass over the
//! haystack looks for the literals a match must start (or end) with, extracted at load time
//! from each pattern by regex-syntax's literal extractor. A signal none of whose literals
//! occur cannot match and costs nothing more; signals whose patterns have no such literals
//! always run their regex.
//!
//! When every pattern of a signal has prefix literals (every match starts with one of them),
//! the same pass also records where they occur, and the signal's regex runs anchored at those
//! places only: an unanchored search carries every partial match along the whole haystack,
//! which for patterns with bounded repetitions (`[^\n]{0,40}`) builds DFA states faster than
//! the lazy DFA's cache keeps them; anchored at a literal it follows one match attempt and
//! stops. The answer is the same: a match must start where one of its literals does.
//!
//! Patterns match case-insensitively in ASCII (Unicode mode off): error texts are ASCII in
//! practice, and Unicode case folding multiplies automaton sizes. The haystack is the error's
//! message, code, body and `www-authenticate` header.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex_automata::meta::Regex;
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::literal::{ExtractKind, Extractor};

/// Every signal of a library, compiled.
#[derive(Debug, Default)]
pub struct SignalSet {
    names: Vec<String>,
    index: HashMap<String, usize>,
    /// Each signal's alternation, compiled the first time an event makes it a candidate
    /// (most signals are never candidates in a given process; building all of them up front
    /// was two thirds of load time).
    regexes: Vec<LazySignal>,
    /// Signals without trigger literals: always candidates.
    always: Vec<usize>,
    /// Trigger literals of every other signal, searched in one pass.
    triggers: Option<AhoCorasick>,
    /// For each trigger literal, the signals it belongs to.
    trigger_owner: Vec<Vec<usize>>,
    /// Per signal: every match starts with one of its trigger literals, so its regex only
    /// needs to run anchored where they occur.
    anchored: Vec<bool>,
}

/// A start search is given up for the plain search beyond this many literal occurrences.
const MAX_STARTS: usize = 16;

/// One event's literal pass, and the signals answered so far (see [`SignalSet::scan`]).
#[derive(Debug)]
pub struct Scan {
    /// Per signal: 0 candidate not run yet, 1 no match, 2 match.
    hits: Vec<Cell<u8>>,
    /// `(signal, offset)`: where a trigger literal of an anchored signal starts.
    starts: Vec<(u32, u32)>,
}

#[derive(Debug)]
struct LazySignal {
    alternation: String,
    re: OnceLock<Option<Regex>>,
    /// The same alternation able to report where it matches (the matcher above, built without
    /// capture states, can only say whether); built only for the rare callers that need spans.
    finder: OnceLock<Option<Regex>>,
}

impl LazySignal {
    fn get(&self) -> Option<&Regex> {
        self.re.get_or_init(|| compile(&self.alternation)).as_ref()
    }

    fn finder(&self) -> Option<&Regex> {
        self.finder
            .get_or_init(|| {
                builder(WhichCaptures::Implicit)
                    .build(&self.alternation)
                    .ok()
            })
            .as_ref()
    }
}

/// Compiles a pattern (or an alternation of them) exactly as signals match: ASCII
/// case-insensitive, no Unicode, bytes. Our trigger pass is the prefilter, so the regex's own
/// (costly to build) prefilter is off, and `is_match` needs no captures.
pub fn compile(pattern: &str) -> Option<Regex> {
    builder(WhichCaptures::None).build(pattern).ok()
}

fn builder(captures: WhichCaptures) -> regex_automata::meta::Builder {
    let mut b = Regex::builder();
    b.syntax(
        syntax::Config::new()
            .case_insensitive(true)
            .unicode(false)
            .utf8(false),
    )
    .configure(
        Regex::config()
            .auto_prefilter(false)
            .which_captures(captures)
            .nfa_size_limit(Some(8 << 20))
            // At 256 KiB the larger alternations' caches were cleared and their states
            // rebuilt every few events (a third more instructions per event); a cache only
            // grows to the states events actually visit (peak RSS +5 MB on issue 15's batch).
            .hybrid_cache_capacity(2 << 20),
    );
    b
}

/// The top-level alternatives of a pattern (`a|b|c` gives three; anything else gives itself),
/// each as written and with its own trigger literals: the unit authors give examples and near
/// misses for.
pub fn alternatives(pattern: &str) -> Vec<Pattern> {
    let Ok(ast) = regex_syntax::ast::parse::Parser::new().parse(pattern) else {
        return Vec::new();
    };
    let texts: Vec<&str> = match &ast {
        regex_syntax::ast::Ast::Alternation(alt) => alt
            .asts
            .iter()
            .map(|a| &pattern[a.span().start.offset..a.span().end.offset])
            .collect(),
        _ => vec![pattern],
    };
    texts.into_iter().filter_map(|t| analyse(t).ok()).collect()
}

/// A validated pattern and its trigger literals.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub text: String,
    /// Literals (lower-cased) every match starts with, or else ends with; `None` when there is
    /// no short, finite set of them.
    pub triggers: Option<Vec<String>>,
    /// The triggers are ASCII literals every match starts with (not ends with).
    pub prefix: bool,
}

/// Parses one pattern the way the signal will use it (one parse: errors are reported per
/// pattern without compiling each one) and extracts its trigger literals.
pub fn analyse(pattern: &str) -> Result<Pattern, String> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| e.to_string())?;
    let (triggers, prefix) = match trigger_literals(&hir) {
        Some((lits, prefix)) => (Some(lits), prefix),
        None => (None, false),
    };
    Ok(Pattern {
        text: pattern.to_string(),
        triggers,
        prefix,
    })
}

/// The trigger literals, and whether they are ASCII prefixes of every match.
fn trigger_literals(hir: &regex_syntax::hir::Hir) -> Option<(Vec<String>, bool)> {
    for prefix in [true, false] {
        let mut ex = Extractor::new();
        ex.kind(if prefix {
            ExtractKind::Prefix
        } else {
            ExtractKind::Suffix
        })
        .limit_total(256)
        .limit_class(16);
        let mut seq = ex.extract(hir);
        // Eight bytes keep nearly all the filtering power while collapsing the expansions of
        // alternatives ("admin consent required|needed|...") into a few short literals.
        if prefix {
            seq.keep_first_bytes(8);
        } else {
            seq.keep_last_bytes(8);
        }
        seq.dedup();
        let Some(lits) = seq.literals() else { continue };
        let ascii = lits.iter().all(|l| l.as_bytes().is_ascii());
        let mut out: Vec<String> = lits
            .iter()
            .map(|l| String::from_utf8_lossy(l.as_bytes()).to_ascii_lowercase())
            .collect();
        out.sort();
        out.dedup();
        // Very short literals would make every signal a candidate; they buy nothing.
        if !out.is_empty() && out.iter().all(|l| l.trim().len() >= 3) {
            return Some((out, prefix && ascii));
        }
    }
    None
}

impl SignalSet {
    /// Builds the set from `(signal name, analysed patterns)`.
    pub fn build(signals: &[(String, Vec<Pattern>)]) -> Result<Self, String> {
        let mut set = SignalSet::default();
        let mut literals: Vec<String> = Vec::new();
        let mut literal_index: HashMap<String, usize> = HashMap::new();
        for (name, pats) in signals {
            let alternation = if pats.is_empty() {
                // A signal with no (valid) pattern never matches.
                "[^\\x00-\\xff]".to_string()
            } else {
                pats.iter()
                    .map(|p| format!("(?:{})", p.text))
                    .collect::<Vec<_>>()
                    .join("|")
            };
            let id = set.names.len();
            set.index.insert(name.clone(), id);
            set.names.push(name.clone());
            set.regexes.push(LazySignal {
                alternation,
                re: OnceLock::new(),
                finder: OnceLock::new(),
            });
            set.anchored
                .push(!pats.is_empty() && pats.iter().all(|p| p.prefix && p.triggers.is_some()));
            let lits: Option<Vec<String>> = if pats.is_empty() {
                Some(Vec::new())
            } else {
                pats.iter()
                    .map(|p| p.triggers.clone())
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.concat())
            };
            match lits {
                Some(lits) => {
                    for l in lits {
                        match literal_index.get(&l) {
                            Some(&i) => {
                                if !set.trigger_owner[i].contains(&id) {
                                    set.trigger_owner[i].push(id);
                                }
                            }
                            None => {
                                literal_index.insert(l.clone(), literals.len());
                                literals.push(l);
                                set.trigger_owner.push(vec![id]);
                            }
                        }
                    }
                }
                None => set.always.push(id),
            }
        }
        if !literals.is_empty() {
            // A contiguous NFA builds several times faster than a DFA for thousands of
            // literals and still searches a few hundred bytes in well under a microsecond.
            let ac = AhoCorasickBuilder::new()
                .kind(Some(AhoCorasickKind::ContiguousNFA))
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(&literals)
                .map_err(|e| e.to_string())?;
            set.triggers = Some(ac);
        }
        Ok(set)
    }

    /// Which signals could match the haystack: one bit per signal id. Only these are worth
    /// running their regex.
    pub fn candidates(&self, haystack: &str) -> Vec<bool> {
        let mut out = vec![false; self.names.len()];
        for &id in &self.always {
            out[id] = true;
        }
        if let Some(ac) = &self.triggers {
            for m in ac.find_overlapping_iter(haystack.as_bytes()) {
                for &id in &self.trigger_owner[m.pattern().as_usize()] {
                    out[id] = true;
                }
            }
        }
        out
    }

    /// One event's literal pass over `haystack`: which signals could match and, for anchored
    /// signals, where. Then [`SignalSet::matches`] answers (and remembers) per signal.
    pub fn scan(&self, haystack: &str) -> Scan {
        let hits = vec![Cell::new(1u8); self.names.len()];
        let mut starts = Vec::new();
        for &id in &self.always {
            hits[id].set(0);
        }
        if let Some(ac) = &self.triggers {
            for m in ac.find_overlapping_iter(haystack.as_bytes()) {
                for &id in &self.trigger_owner[m.pattern().as_usize()] {
                    hits[id].set(0);
                    if self.anchored[id] {
                        starts.push((id as u32, m.start() as u32));
                    }
                }
            }
        }
        Scan { hits, starts }
    }

    /// Does signal `id` match `haystack`, the text `scan` was made from? Remembered in `scan`.
    pub fn matches(&self, id: usize, haystack: &str, scan: &Scan) -> bool {
        let Some(known) = scan.hits.get(id) else {
            return false;
        };
        if known.get() != 0 {
            return known.get() == 2;
        }
        let hit = self
            .regexes
            .get(id)
            .and_then(LazySignal::get)
            .is_some_and(|re| {
                let hay = haystack.as_bytes();
                let starts = || scan.starts.iter().filter(|(s, _)| *s as usize == id);
                if !self.anchored[id] || starts().nth(MAX_STARTS).is_some() {
                    return re.is_match(hay);
                }
                starts().any(|&(_, at)| {
                    re.is_match(Input::new(hay).range(at as usize..).anchored(Anchored::Yes))
                })
            });
        known.set(if hit { 2 } else { 1 });
        hit
    }

    pub fn id(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Blanks (with spaces) every stretch of `text` that signal `id` matches.
    pub fn blank_matches(&self, id: usize, text: &mut [u8]) {
        // Most candidates (a literal occurs) do not match: the forward-only matcher says so
        // without the finder's reverse search (or building the finder at all).
        let Some(lazy) = self.regexes.get(id) else {
            return;
        };
        if !lazy.get().is_some_and(|re| re.is_match(&*text)) {
            return;
        }
        let Some(re) = lazy.finder() else {
            return;
        };
        let spans: Vec<(usize, usize)> =
            re.find_iter(&*text).map(|m| (m.start(), m.end())).collect();
        for (a, b) in spans {
            text[a..b].fill(b' ');
        }
    }

    /// Does signal `id` match the haystack?
    pub fn is_match(&self, id: usize, haystack: &str) -> bool {
        self.regexes
            .get(id)
            .and_then(LazySignal::get)
            .is_some_and(|re| re.is_match(haystack.as_bytes()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn build(signals: &[(&str, &[&str])]) -> SignalSet {
        let list: Vec<(String, Vec<Pattern>)> = signals
            .iter()
            .map(|(n, ps)| {
                (
                    n.to_string(),
                    ps.iter().map(|p| analyse(p).unwrap()).collect(),
                )
            })
            .collect();
        SignalSet::build(&list).unwrap()
    }

    #[test]
    fn matches_case_insensitively_by_family() {
        let set = build(&[
            (
                "tls_expired",
                &["certificate (has )?expired", "CERT_HAS_EXPIRED"],
            ),
            ("refused", &["connection refused", "ECONNREFUSED"]),
        ]);
        let (tls, refused) = (set.id("tls_expired").unwrap(), set.id("refused").unwrap());
        let text = "curl: (60) SSL certificate problem: Certificate has expired";
        assert!(set.is_match(tls, text));
        assert!(!set.is_match(refused, text));
        assert!(set.is_match(refused, "connect econnrefused 10.0.0.1:443"));
        let empty = build(&[("none", &[])]);
        assert!(!empty.is_match(0, "anything at all"));
        assert_eq!(set.candidates(text), vec![true, false]);
    }

    #[test]
    fn candidates_never_hide_a_match() {
        let set = build(&[
            (
                "lits",
                &[r"\bbad credentials\b", "(invalid|wrong) (api )?key"],
            ),
            ("suffix", &[r"[^\n]{0,20}not allowed\b"]),
            ("none", &[r"\d+\s*$"]),
        ]);
        for text in [
            "Bad Credentials",
            "an INVALID API KEY was sent",
            "wrong key",
            "IP 1.2.3.4 is NOT ALLOWED",
            "code 42",
            "nothing here",
        ] {
            let cand = set.candidates(text);
            for (id, candidate) in cand.iter().enumerate() {
                if set.is_match(id, text) {
                    assert!(
                        *candidate,
                        "{} matches {text:?} but is not a candidate",
                        set.names[id]
                    );
                }
            }
        }
        assert!(set.always.contains(&2));
    }

    #[test]
    fn anchored_at_literals_answers_as_the_plain_search() {
        let set = build(&[
            (
                "lits",
                &[r"\bbad credentials\b", "(invalid|wrong) (api )?key"],
            ),
            (
                "window",
                &[r"token[^\n]{0,30}expired", r"\bkey\b.{0,10}revoked"],
            ),
            ("suffix", &[r"[^\n]{0,20}not allowed\b"]),
            ("none", &[r"\d+\s*$"]),
        ]);
        assert!(set.anchored[0] && set.anchored[1] && !set.anchored[2] && !set.anchored[3]);
        for text in [
            "Bad Credentials",
            "xbad credentials",
            "an INVALID API KEY was sent",
            "wrong wrong key",
            "token token was EXPIRED",
            "token\nexpired; the token expired",
            "key: KEY was revoked",
            "the key is fine, key revoked long ago by someone",
            "IP 1.2.3.4 is NOT ALLOWED",
            "code 42",
            "nothing here",
            &"token ".repeat(40),
            &format!("{}token expired", "token ".repeat(20)),
        ] {
            let scan = set.scan(text);
            for id in 0..set.len() {
                let plain = set.is_match(id, text);
                assert_eq!(
                    set.matches(id, text, &scan),
                    plain,
                    "{} on {text:?}",
                    set.names[id]
                );
                // Remembered: the second answer is the same.
                assert_eq!(set.matches(id, text, &scan), plain);
            }
        }
    }

    #[test]
    fn blank_matches_blanks_every_match() {
        let set = build(&[("m", &["(scheduled|planned) maintenance", "exceeded"])]);
        let mut text = b"Jira is undergoing Scheduled Maintenance; quota exceeded".to_vec();
        set.blank_matches(0, &mut text);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "Jira is undergoing                      ; quota         "
        );
    }

    #[test]
    fn alternatives_split_the_top_level_only() {
        let alts = alternatives(r"\bbad credentials\b|(invalid|wrong) (api )?key|x\d+");
        assert_eq!(alts.len(), 3);
        for (alt, yes, no) in [
            (&alts[0], "Bad Credentials", "bad credential"),
            (&alts[1], "an INVALID API KEY", "invalid token"),
            (&alts[2], "x42", "y42"),
        ] {
            let re = compile(&alt.text).unwrap();
            assert!(
                re.is_match(yes.as_bytes()),
                "{} should match {yes}",
                alt.text
            );
            assert!(
                !re.is_match(no.as_bytes()),
                "{} should not match {no}",
                alt.text
            );
        }
        assert!(
            alts[0]
                .triggers
                .as_ref()
                .unwrap()
                .iter()
                .any(|t| t.starts_with("bad cred"))
        );
        assert_eq!(alternatives("(a|b)c").len(), 1);
    }
}
