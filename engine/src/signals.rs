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
//! For patterns with prefix literals (every match starts with one of them), the same pass also
//! records where they occur, and those patterns (one alternation per signal) run anchored at
//! those places only: an unanchored search carries every partial match along the whole
//! haystack, which for patterns with bounded repetitions (`[^\n]{0,40}`) builds DFA states
//! faster than the lazy DFA's cache keeps them; anchored at a literal it follows one match
//! attempt and stops. The answer is the same: a match must start where one of its literals
//! does. A signal's other patterns form a second alternation, run over the whole haystack
//! only when one of them is a candidate.
//!
//! Such a pattern usually also has end literals (every match ends with one of them:
//! `token[^\n]{0,30}expired` starts with "token" and ends with "expired"); they go in the same
//! pass, and the pattern is a candidate only from a trigger that some end literal follows.
//! On issue 15's batch, six in seven anchored runs found nothing before that (a word like
//! "token" occurs in most auth errors); about half do now.
//!
//! Patterns match case-insensitively in ASCII (Unicode mode off): error texts are ASCII in
//! practice, and Unicode case folding multiplies automaton sizes. The haystack is the error's
//! message, code, body and `www-authenticate` header.

use std::cell::{Cell, RefCell};
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
    /// Per signal, the two alternations `matches` runs (see [`Parts`]).
    parts: Vec<Parts>,
    /// Signals with a pattern without trigger literals: their free part always runs.
    always: Vec<usize>,
    /// Trigger and end literals of every other signal, searched in one pass.
    triggers: Option<AhoCorasick>,
    /// For each literal, the patterns it is a trigger (or an end) of.
    trigger_owner: Vec<Vec<Owner>>,
    /// Every pattern with trigger literals.
    patterns: Vec<PatternSlot>,
    /// No literal automaton could be built: every signal runs its whole regex.
    unfiltered: bool,
}

/// A signal's patterns split by how they are searched: those every match of which starts with
/// one of their trigger literals run anchored where the literals occur; the others run over
/// the whole haystack. A signal with both kinds (one pattern without literals among twenty
/// with them) no longer runs all twenty unanchored.
#[derive(Debug, Default)]
struct Parts {
    anchored: Option<Part>,
    free: Option<Part>,
}

#[derive(Debug)]
enum Part {
    /// Every pattern of the signal: its whole alternation.
    Whole,
    Own(LazyRegex),
}

/// A literal's role for one pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    pattern: u32,
    /// An end literal (every match ends with one) rather than a trigger.
    end: bool,
}

#[derive(Debug)]
struct PatternSlot {
    signal: usize,
    /// Its triggers start every match (it belongs to the signal's anchored part).
    anchored: bool,
    /// A match also ends with one of the pattern's end literals: it is a candidate only where
    /// one of them ends after a trigger starts.
    needs_end: bool,
}

thread_local! {
    /// Scratch for [`SignalSet::scan`], per pattern: 1 + where its last end literal ends in the
    /// haystack being scanned, 0 for none. Back to zeros after each scan; kept between scans so
    /// a scan needs no sorting and no allocation of its size.
    static LAST_END: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Literals extracted per pattern, at most: a pattern with more has none (it always runs).
const MAX_TRIGGERS: usize = 256;

/// End literals per pattern, at most. Ends only narrow down patterns that have triggers, so a
/// short list suffices: most patterns end in one word or a few; longer lists added load time
/// (extraction and a bigger literal automaton) for little filtering.
const MAX_ENDS: usize = 16;

/// A start search is given up for the plain search beyond this many literal occurrences.
const MAX_STARTS: usize = 16;

/// The literal automaton of a signal set (see [`SignalSet::without_triggers`]).
#[derive(Debug)]
pub struct Triggers(Option<AhoCorasick>);

impl Triggers {
    pub fn build(literals: &[String]) -> Result<Triggers, String> {
        if literals.is_empty() {
            return Ok(Triggers(None));
        }
        // A contiguous NFA builds several times faster than a DFA for thousands of literals
        // and still searches a few hundred bytes in well under a microsecond. The literals are
        // lower case and the scan lower-cases the haystack: an ASCII-case-insensitive
        // automaton carries every letter transition twice (a third more build time, and a
        // bigger automaton to walk on every event).
        AhoCorasickBuilder::new()
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .match_kind(MatchKind::Standard)
            .build(literals)
            .map(|ac| Triggers(Some(ac)))
            .map_err(|e| e.to_string())
    }
}

/// One event's literal pass, and the signals answered so far (see [`SignalSet::scan`]).
#[derive(Debug)]
pub struct Scan {
    /// Per signal: 0 candidate not run yet, 1 no match, 2 match.
    hits: Vec<Cell<u8>>,
    /// Per signal: its free part is a candidate.
    free: Vec<bool>,
    /// `(signal, offset)`, sorted: where a trigger literal of an anchored signal starts a
    /// possible match.
    starts: Vec<(u32, u32)>,
}

/// An alternation, compiled the first time it runs.
#[derive(Debug)]
struct LazyRegex {
    alternation: String,
    re: OnceLock<Option<Regex>>,
}

impl LazyRegex {
    fn new(alternation: String) -> Self {
        LazyRegex {
            alternation,
            re: OnceLock::new(),
        }
    }

    fn get(&self) -> Option<&Regex> {
        self.re.get_or_init(|| compile(&self.alternation)).as_ref()
    }
}

#[derive(Debug)]
struct LazySignal {
    whole: LazyRegex,
    /// The same alternation able to report where it matches (the matcher above, built without
    /// capture states, can only say whether); built only for the rare callers that need spans.
    finder: OnceLock<Option<Regex>>,
}

impl LazySignal {
    fn get(&self) -> Option<&Regex> {
        self.whole.get()
    }

    fn finder(&self) -> Option<&Regex> {
        self.finder
            .get_or_init(|| {
                builder(WhichCaptures::Implicit)
                    .build(&self.whole.alternation)
                    .ok()
            })
            .as_ref()
    }
}

/// The alternation of patterns, or a regex that never matches when there are none.
fn alternation<'p>(pats: impl Iterator<Item = &'p Pattern>) -> String {
    let alts: Vec<String> = pats.map(|p| format!("(?:{})", p.text)).collect();
    if alts.is_empty() {
        "[^\\x00-\\xff]".to_string()
    } else {
        alts.join("|")
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pattern {
    pub text: String,
    /// Literals (lower-cased) every match starts with, or else ends with; `None` when there is
    /// no short, finite set of them.
    pub triggers: Option<Vec<String>>,
    /// The triggers are ASCII literals every match starts with (not ends with).
    pub prefix: bool,
    /// With prefix triggers: ASCII literals (lower-cased) every match also ends with, when
    /// there is a short, finite set of them. A pattern is then a candidate only where both
    /// occur in order ("token[^\n]{0,30}expired" needs "token" and then "expired").
    pub ends: Option<Vec<String>>,
}

/// Patterns analysed ahead of time, found by text: the built-in library's are analysed when
/// they are written, not at each load (`playbooks/signals.analysis.json`, embedded in the
/// binary and checked against [`analyse`] by a test). Parsing and literal extraction of its
/// ~700 patterns were a third of load time. A pattern not found here is analysed at load, so
/// a stale file costs time, never an answer: the test says it is stale.
#[derive(Debug, Default)]
pub struct Prepared {
    by_text: HashMap<String, Pattern>,
}

impl Prepared {
    /// The analyses in `json` (as [`Prepared::to_json`] writes them); none when it does not
    /// parse, in which case every pattern is analysed at load as without it.
    pub fn from_json(json: &str) -> Prepared {
        let patterns: Vec<Pattern> = serde_json::from_str(json).unwrap_or_default();
        Prepared {
            by_text: patterns.into_iter().map(|p| (p.text.clone(), p)).collect(),
        }
    }

    /// `patterns`, sorted by text, one per line.
    pub fn to_json<'p>(patterns: impl IntoIterator<Item = &'p Pattern>) -> String {
        let mut all: Vec<&Pattern> = patterns.into_iter().collect();
        all.sort_by(|a, b| a.text.cmp(&b.text));
        all.dedup_by(|a, b| a.text == b.text);
        let lines: Vec<String> = all
            .iter()
            .filter_map(|p| serde_json::to_string(p).ok())
            .collect();
        format!("[\n{}\n]\n", lines.join(",\n"))
    }

    pub fn get(&self, pattern: &str) -> Option<&Pattern> {
        self.by_text.get(pattern)
    }
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
    let (triggers, prefix) = match trigger_literals(
        &hir,
        &[ExtractKind::Prefix, ExtractKind::Suffix],
        MAX_TRIGGERS,
    ) {
        Some((lits, prefix)) => (Some(lits), prefix),
        None => (None, false),
    };
    let ends = if prefix {
        trigger_literals(&hir, &[ExtractKind::Suffix], MAX_ENDS)
            .filter(|(lits, _)| lits.iter().all(|l| l.is_ascii()))
            .map(|(lits, _)| lits)
    } else {
        None
    };
    Ok(Pattern {
        text: pattern.to_string(),
        triggers,
        prefix,
        ends,
    })
}

/// The trigger literals of the first kind (prefix or suffix) that has a usable set, and
/// whether they are ASCII prefixes of every match.
fn trigger_literals(
    hir: &regex_syntax::hir::Hir,
    kinds: &[ExtractKind],
    limit: usize,
) -> Option<(Vec<String>, bool)> {
    for kind in kinds {
        let prefix = matches!(kind, ExtractKind::Prefix);
        let mut ex = Extractor::new();
        ex.kind(kind.clone()).limit_total(limit).limit_class(16);
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
            .map(|l| whole_chars(l.as_bytes(), prefix).to_ascii_lowercase())
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

/// The literal without the character its eight-byte cut split: a prefix loses its broken last
/// character, a suffix its broken first one. What is left still starts (ends) every match;
/// the bytes as they were would be searched as text they are not, and hide every match.
fn whole_chars(bytes: &[u8], prefix: bool) -> &str {
    if prefix {
        match std::str::from_utf8(bytes) {
            Ok(s) => s,
            // The cut is at the end: everything before the broken character is whole.
            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        }
    } else {
        // Continuation bytes (10xxxxxx) at the start belong to a character cut off.
        let start = bytes
            .iter()
            .position(|b| b & 0xC0 != 0x80)
            .unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[start..]).unwrap_or_default()
    }
}

impl SignalSet {
    /// Builds the set from `(signal name, analysed patterns)`.
    pub fn build(signals: &[(String, Vec<Pattern>)]) -> Result<Self, String> {
        let (mut set, literals) = SignalSet::without_triggers(signals);
        set.set_triggers(Some(Triggers::build(&literals)?));
        Ok(set)
    }

    /// The set without its literal automaton, and the literals to build it from
    /// ([`Triggers::build`], then [`SignalSet::set_triggers`]): names and ids are all a
    /// compile needs, so a load builds the automaton on another core meanwhile.
    pub fn without_triggers(signals: &[(String, Vec<Pattern>)]) -> (Self, Vec<String>) {
        let mut set = SignalSet::default();
        let mut literals: Vec<String> = Vec::new();
        let mut literal_index: HashMap<String, usize> = HashMap::new();
        let mut own = |set: &mut SignalSet, lit: &str, owner: Owner| match literal_index.get(lit) {
            Some(&i) => {
                if !set.trigger_owner[i].contains(&owner) {
                    set.trigger_owner[i].push(owner);
                }
            }
            None => {
                literal_index.insert(lit.to_string(), literals.len());
                literals.push(lit.to_string());
                set.trigger_owner.push(vec![owner]);
            }
        };
        for (name, pats) in signals {
            let id = set.names.len();
            set.index.insert(name.clone(), id);
            set.names.push(name.clone());
            set.regexes.push(LazySignal {
                whole: LazyRegex::new(alternation(pats.iter())),
                finder: OnceLock::new(),
            });
            let anchored = |p: &Pattern| p.prefix && p.triggers.is_some();
            let n = pats.iter().filter(|p| anchored(p)).count();
            let part = |keep: bool| {
                let count = if keep { n } else { pats.len() - n };
                if count == 0 {
                    None
                } else if count == pats.len() {
                    Some(Part::Whole)
                } else {
                    Some(Part::Own(LazyRegex::new(alternation(
                        pats.iter().filter(|p| anchored(p) == keep),
                    ))))
                }
            };
            set.parts.push(Parts {
                anchored: part(true),
                free: part(false),
            });
            if pats.iter().any(|p| p.triggers.is_none()) {
                set.always.push(id);
            }
            for p in pats.iter().filter(|p| p.triggers.is_some()) {
                let pattern = set.patterns.len() as u32;
                let ends = p.ends.as_deref().filter(|_| p.prefix);
                set.patterns.push(PatternSlot {
                    signal: id,
                    anchored: anchored(p),
                    needs_end: ends.is_some(),
                });
                for lit in p.triggers.iter().flatten() {
                    own(
                        &mut set,
                        lit,
                        Owner {
                            pattern,
                            end: false,
                        },
                    );
                }
                for lit in ends.into_iter().flatten() {
                    own(&mut set, lit, Owner { pattern, end: true });
                }
            }
        }
        (set, literals)
    }

    /// Installs the literal automaton built from [`SignalSet::without_triggers`]'s literals;
    /// `None` when it could not be built: every signal then runs its whole regex on every
    /// haystack, slower but with the same answers.
    pub fn set_triggers(&mut self, triggers: Option<Triggers>) {
        match triggers {
            Some(t) => self.triggers = t.0,
            None => self.unfiltered = true,
        }
    }

    /// Which signals could match the haystack: one bit per signal id. Only these are worth
    /// running their regex.
    pub fn candidates(&self, haystack: &str) -> Vec<bool> {
        self.scan(haystack)
            .hits
            .iter()
            .map(|h| h.get() == 0)
            .collect()
    }

    /// One event's literal pass over `haystack`: which signals could match and, for anchored
    /// signals, where. Then [`SignalSet::matches`] answers (and remembers) per signal.
    ///
    /// A pattern is a candidate where one of its triggers occurs and, if it has end literals,
    /// one of those ends after that trigger starts: a match runs from a trigger to an end.
    pub fn scan(&self, haystack: &str) -> Scan {
        let hits = vec![Cell::new(1u8); self.names.len()];
        let mut free = vec![false; self.names.len()];
        let mut starts = Vec::new();
        for &id in &self.always {
            hits[id].set(0);
            free[id] = true;
        }
        if self.unfiltered {
            hits.iter().for_each(|h| h.set(0));
            return Scan { hits, free, starts };
        }
        let Some(ac) = &self.triggers else {
            return Scan { hits, free, starts };
        };
        // Triggers by where they start; per pattern, where its last end literal ends.
        let mut triggers: Vec<(u32, u32)> = Vec::new();
        LAST_END.with(|last| {
            let mut last = last.borrow_mut();
            if last.len() < self.patterns.len() {
                last.resize(self.patterns.len(), 0);
            }
            let mut touched: Vec<u32> = Vec::new();
            // Same offsets: ASCII lower-casing maps each byte to one byte.
            let lower = haystack.as_bytes().to_ascii_lowercase();
            for m in ac.find_overlapping_iter(&lower) {
                for o in &self.trigger_owner[m.pattern().as_usize()] {
                    if o.end {
                        let end = &mut last[o.pattern as usize];
                        if *end == 0 {
                            touched.push(o.pattern);
                        }
                        *end = (*end).max(m.end() as u32 + 1);
                    } else {
                        triggers.push((o.pattern, m.start() as u32));
                    }
                }
            }
            for &(pattern, at) in &triggers {
                let slot = &self.patterns[pattern as usize];
                // A match runs from this trigger to an end literal ending after it starts.
                if slot.needs_end && last[pattern as usize] <= at + 1 {
                    continue;
                }
                hits[slot.signal].set(0);
                if slot.anchored {
                    starts.push((slot.signal as u32, at));
                } else {
                    free[slot.signal] = true;
                }
            }
            for p in touched {
                last[p as usize] = 0;
            }
        });
        starts.sort_unstable();
        starts.dedup();
        Scan { hits, free, starts }
    }

    /// Does signal `id` match `haystack`, the text `scan` was made from? Remembered in `scan`.
    pub fn matches(&self, id: usize, haystack: &str, scan: &Scan) -> bool {
        let Some(known) = scan.hits.get(id) else {
            return false;
        };
        if known.get() != 0 {
            return known.get() == 2;
        }
        let hay = haystack.as_bytes();
        if self.unfiltered {
            let hit = self
                .regexes
                .get(id)
                .and_then(LazySignal::get)
                .is_some_and(|re| re.is_match(hay));
            known.set(if hit { 2 } else { 1 });
            return hit;
        }
        let parts = &self.parts[id];
        let from = scan.starts.partition_point(|&(s, _)| (s as usize) < id);
        let to = scan.starts.partition_point(|&(s, _)| (s as usize) <= id);
        let starts = &scan.starts[from..to];
        let anchored = || {
            let Some(re) = parts.anchored.as_ref().and_then(|p| self.part(id, p)) else {
                return false;
            };
            if starts.len() > MAX_STARTS {
                return re.is_match(hay);
            }
            starts.iter().any(|&(_, at)| {
                re.is_match(Input::new(hay).range(at as usize..).anchored(Anchored::Yes))
            })
        };
        let free = || {
            scan.free[id]
                && parts
                    .free
                    .as_ref()
                    .and_then(|p| self.part(id, p))
                    .is_some_and(|re| re.is_match(hay))
        };
        let hit = (!starts.is_empty() && anchored()) || free();
        known.set(if hit { 2 } else { 1 });
        hit
    }

    fn part<'a>(&'a self, id: usize, part: &'a Part) -> Option<&'a Regex> {
        match part {
            Part::Whole => self.regexes.get(id).and_then(LazySignal::get),
            Part::Own(lazy) => lazy.get(),
        }
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

    /// `(name, patterns)` analysed, as a library load gives them to [`SignalSet::build`].
    fn analysed(signals: &[(&str, &[&str])]) -> Vec<(String, Vec<Pattern>)> {
        signals
            .iter()
            .map(|(n, ps)| {
                (
                    n.to_string(),
                    ps.iter().map(|p| analyse(p).unwrap()).collect(),
                )
            })
            .collect()
    }

    pub(crate) fn build(signals: &[(&str, &[&str])]) -> SignalSet {
        SignalSet::build(&analysed(signals)).unwrap()
    }

    /// A set whose literal automaton could not be built runs every signal's whole regex: the
    /// same answers as the literal pass gives, anchored, free and end-literal parts alike.
    #[test]
    fn without_its_literal_automaton_a_set_answers_the_same() {
        let signals: &[(&str, &[&str])] = &[
            (
                "expired",
                &["certificate (has )?expired", "token[^\\n]{0,30}expired"],
            ),
            ("refused", &["connection refused", "econnrefused"]),
            ("bare", &["\\d{3} forbidden", "x509: .*unknown authority"]),
        ];
        let filtered = build(signals);
        let (mut unfiltered, literals) = SignalSet::without_triggers(&analysed(signals));
        assert!(!literals.is_empty());
        unfiltered.set_triggers(None);
        let texts = [
            "curl: (60) SSL certificate problem: certificate has expired",
            "the access token for this app has expired",
            "token is valid; the session expired",
            "token expired yesterday, long after the 30 characters allowed here",
            "connect ECONNREFUSED 10.0.0.1:443",
            "403 Forbidden",
            "x509: certificate signed by unknown authority",
            "nothing to see",
        ];
        let mut hits = 0;
        for text in texts {
            let (a, b) = (filtered.scan(text), unfiltered.scan(text));
            for (id, (name, _)) in signals.iter().enumerate() {
                let want = filtered.matches(id, text, &a);
                assert_eq!(unfiltered.matches(id, text, &b), want, "{text} / {name}");
                hits += usize::from(want);
            }
        }
        assert!(
            hits >= 5,
            "the texts must exercise matches, not only misses"
        );
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

    /// One signal of each kind: prefix triggers, prefix triggers with end literals, suffix
    /// triggers, no literals, and all three mixed in one signal.
    const KINDS: &[(&str, &[&str])] = &[
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
        (
            "mixed",
            &[
                r"quota[^\n]{0,20}exceeded",
                r"\bno\b[^\n]{0,20}\bkeys? (were|was) sent\b",
                r"(?m)^\s*denied\s*$",
            ],
        ),
    ];

    #[test]
    fn anchored_at_literals_answers_as_the_plain_search() {
        let set = build(KINDS);
        let kinds: Vec<(bool, bool)> = set
            .parts
            .iter()
            .map(|p| (p.anchored.is_some(), p.free.is_some()))
            .collect();
        assert_eq!(
            kinds,
            [
                (true, false),
                (true, false),
                (false, true),
                (false, true),
                (true, true)
            ]
        );
        assert!(matches!(set.parts[4].anchored, Some(Part::Own(_))));
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
            "expired token",
            "expired: token\nno api keys were sent",
            "quota exceeded",
            "exceeded the quota",
            "exceeded the quota\n denied ",
            "no key was sent",
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
    fn a_pattern_is_a_candidate_only_where_an_end_follows_a_trigger() {
        let set = build(&[("window", &[r"token[^\n]{0,30}expired"])]);
        let p = analyse(r"token[^\n]{0,30}expired").unwrap();
        assert_eq!(p.triggers.as_deref(), Some(&["token".to_string()][..]));
        assert_eq!(p.ends.as_deref(), Some(&["expired".to_string()][..]));
        // Both literals, in the wrong order or one missing: the regex is not worth running.
        for text in ["expired token", "token revoked", "it expired"] {
            assert_eq!(set.candidates(text), [false], "{text:?}");
        }
        for text in [
            "token expired",
            "expired token; token expired",
            "TOKEN has EXPIRED",
        ] {
            assert_eq!(set.candidates(text), [true], "{text:?}");
            assert!(set.matches(0, text, &set.scan(text)), "{text:?}");
        }
        // A candidate is not yet a match: the window is 30 bytes.
        let far = format!("token{}expired", " ".repeat(40));
        assert!(!set.matches(0, &far, &set.scan(&far)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..Default::default()
        })]

        /// The literal pass (triggers, ends in order, anchored starts, free parts) never
        /// changes an answer: on texts made of the patterns' own words in any order, case and
        /// spacing, every signal answers as its plain regex does.
        #[test]
        fn the_literal_pass_answers_as_the_plain_search(
            words in proptest::collection::vec(
                proptest::sample::select(vec![
                    "token", "TOKEN", "expired", "Expired", "key", "revoked", "quota",
                    "exceeded", "no", "keys", "were", "was", "sent", "denied", "invalid",
                    "api", "wrong", "bad credentials", "not allowed", "42", "x", "-", ":",
                ]),
                0..24,
            ),
            seps in proptest::collection::vec(
                proptest::sample::select(vec![" ", "", "\n", "  ", ".", "_"]),
                24,
            ),
        ) {
            static SET: std::sync::LazyLock<SignalSet> = std::sync::LazyLock::new(|| {
                let mut signals = KINDS.to_vec();
                signals.push((
                    "many_ends",
                    &[r"(token|key) (was |were )?(expired|revoked|invalid|denied|sent)"],
                ));
                build(&signals)
            });
            let text: String = words
                .iter()
                .zip(seps.iter())
                .flat_map(|(w, s)| [*w, *s])
                .collect();
            let scan = SET.scan(&text);
            for id in 0..SET.len() {
                proptest::prop_assert_eq!(
                    SET.matches(id, &text, &scan),
                    SET.is_match(id, &text),
                    "{} on {:?}",
                    &SET.names[id],
                    &text
                );
            }
        }
    }

    #[test]
    fn literals_cut_inside_a_character_never_hide_a_match() {
        // Eight bytes of "abc日本語" end inside 本: such a literal cannot be searched as text.
        let set = build(&[
            ("cjk", &["abc日本語 error", "xyz日本語"]),
            ("latin", &["échec de connexion"]),
        ]);
        for (id, text) in [
            (0, "ABC日本語 error"),
            (0, "a xyz日本語!"),
            (1, "Échec de connexion"),
        ] {
            let plain = set.is_match(id, text);
            assert_eq!(set.matches(id, text, &set.scan(text)), plain, "{text:?}");
            assert!(plain || id == 1, "{text:?}");
        }
        assert!(set.matches(1, "échec de connexion", &set.scan("échec de connexion")));
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
