//! Compile stage: raw playbooks into an immutable, shareable [`Library`].
//!
//! Loading collects every problem from every file before deciding what to keep: a broken
//! playbook is reported and left out, and the rest of the library still loads. Sources come in
//! layers (the built-in library, then `--playbooks DIR`); a later layer overrides playbooks,
//! actions and signals of the same id, while a duplicate inside one layer is an error.

mod basis;
pub mod graph;
pub mod native;
mod par;
mod playbook;
pub mod script;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rhai::Engine;
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

use crate::diag::{Diagnostic, code};
use crate::load::{self, Source};
use crate::model::playbook::{Actor, Basis, DispositionKind, RawAction, RawPlaybook, Role};
use crate::scrub::PlainTexts;
use crate::signals::{self, SignalSet};
pub use graph::{GEdge, GKind, GNode, Graph};
use script::{Compiler, Site};
pub use script::{Script, Segment, Template};

/// A check, compiled.
#[derive(Debug, Clone)]
pub struct Check {
    pub id: String,
    pub title: Option<String>,
    pub role: Role,
    /// What the evidence rests on: declared, or the most it can be given what the script reads
    /// (a decided check is then measured, see `eval::worlds`).
    pub basis: Basis,
    pub basis_declared: bool,
    pub script: Script,
    /// Live facts to fetch before evaluating.
    pub needs: Vec<String>,
    pub evidence: Option<Template>,
    pub evidence_fail: Option<Template>,
    /// What the path reports as read: event paths and live facts.
    pub facts: Arc<[String]>,
}

/// A sequential step: a check plus where each outcome leads (node indices).
#[derive(Debug, Clone)]
pub struct Step {
    pub check: Check,
    pub on_pass: Vec<usize>,
    pub on_fail: Vec<usize>,
    pub on_unknown: Vec<usize>,
}

/// A cause, compiled, with its actions resolved.
#[derive(Debug, Clone)]
pub struct Cause {
    pub id: String,
    pub title: String,
    pub explain: Option<Template>,
    pub weight: i64,
    /// The generic reading of a status or protocol code: never more than `likely`.
    pub fallback: bool,
    pub checks: Vec<Check>,
    pub actions: Vec<Arc<ActionDef>>,
    pub disposition: Option<DispositionDef>,
}

/// A node the walk can be routed to.
#[derive(Debug, Clone)]
pub enum Node {
    Step(Step),
    Cause(Cause),
}

impl Node {
    pub fn id(&self) -> &str {
        match self {
            Node::Step(s) => &s.check.id,
            Node::Cause(c) => &c.id,
        }
    }
}

/// An explicit disposition.
#[derive(Debug, Clone)]
pub struct DispositionDef {
    pub kind: DispositionKind,
    pub retry_after: Option<Script>,
    /// `kind` is replaced by this one when the script is true.
    pub instead: Option<(DispositionKind, Script)>,
}

/// An action, compiled.
#[derive(Debug, Clone)]
pub struct ActionDef {
    pub id: String,
    pub title: String,
    pub actor: Actor,
    pub automatic: bool,
    pub steps: Vec<Template>,
    pub params: Vec<(String, Script)>,
    pub disposition: DispositionKind,
    pub when: Option<Script>,
    pub file: String,
}

/// What to say when nothing is confirmed.
#[derive(Debug, Clone, Default)]
pub struct Fallback {
    pub actions: Vec<Arc<ActionDef>>,
    pub disposition: Option<DispositionDef>,
}

/// One playbook, compiled: matcher, nodes, entry points and its graph.
#[derive(Debug)]
pub struct Playbook {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub file: String,
    pub priority: i64,
    pub matcher: Script,
    pub nodes: Vec<Node>,
    pub start: Vec<usize>,
    pub inconclusive: Fallback,
    pub graph: Graph,
}

/// One signal as its file defines it (after layering), for authoring tools: the per-event
/// matching uses the compiled [`SignalSet`].
#[derive(Debug, Clone)]
pub struct SignalDef {
    pub name: String,
    /// The file that defines it.
    pub file: String,
    /// Its valid patterns, in file order.
    pub patterns: Vec<signals::Pattern>,
}

/// One part of the library, as [`Library::parts`] visits them.
enum Part<'a> {
    Title(&'a str),
    Script(&'a Script),
    Template(&'a Template),
}

/// The loaded playbook set: immutable once built and cheap to share behind an `Arc`.
pub struct Library {
    pub(crate) engine: Engine,
    pub(crate) playbooks: Vec<Arc<Playbook>>,
    pub(crate) actions: BTreeMap<String, Arc<ActionDef>>,
    pub(crate) signals: Arc<SignalSet>,
    /// Every literal `matches()` pattern of the library's scripts, compiled on first use.
    pub(crate) patterns: Arc<crate::sandbox::PatternSet>,
    signal_defs: Vec<SignalDef>,
    hash: String,
    /// The library's fixed output texts that hold no credential shape (see [`PlainTexts`]),
    /// sorted out by the first diagnosis rather than on the load path.
    plain: std::sync::OnceLock<Arc<PlainTexts>>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("playbooks", &self.playbooks.len())
            .field("hash", &self.hash)
            .finish()
    }
}

impl Library {
    /// Compiles sources given in layers (later layers override earlier ones by id).
    /// Returns the library of everything that compiled, and every problem found.
    pub fn load(layers: &[Vec<Source>]) -> (Library, Vec<Diagnostic>) {
        Library::load_prepared(layers, &signals::Prepared::default())
    }

    /// As [`Library::load`], taking the analysis of any signal pattern found in `prepared`
    /// instead of analysing it again (the built-in library's, analysed ahead of time).
    pub fn load_prepared(
        layers: &[Vec<Source>],
        prepared: &signals::Prepared,
    ) -> (Library, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let files: Vec<(usize, &Source)> = layers
            .iter()
            .enumerate()
            .flat_map(|(layer, sources)| sources.iter().map(move |src| (layer, src)))
            .collect();
        let mut parsed: Vec<(usize, &Source, RawPlaybook)> = Vec::new();
        for ((layer, src), raw) in files
            .iter()
            .zip(par::map(&files, 1, |(_, src)| load::parse_all(src)))
        {
            match raw {
                Ok(raw) => parsed.push((*layer, src, raw)),
                Err(ds) => diags.extend(ds),
            }
        }

        let (mut signal_set, signal_defs, literals) =
            collect_signals(&parsed, prepared, &mut diags);
        let engine = crate::sandbox::engine();
        let sources = parsed
            .iter()
            .map(|(_, src, _)| (src.name.as_str(), src.text.as_str()))
            .collect();
        let (actions, compiled, patterns, triggers) = std::thread::scope(|s| {
            // Compiling needs the signals' names only; the literal automaton (3-5 ms for the
            // built-in library's ~3,500 literals) is built meanwhile on another thread. A
            // small one (a test's or a fuzzer's library) costs less than starting a thread.
            let triggers =
                (literals.len() > 256).then(|| s.spawn(|| signals::Triggers::build(&literals)));
            let compiler = Compiler::new(&engine, &signal_set, sources);
            let (actions, broken_actions) = collect_actions(&compiler, &parsed, &mut diags);
            // Playbooks compile side by side (their scripts are most of load time); each
            // one's diagnostics are added in file order, as a one-thread load reports them.
            let compiled = par::map(&parsed, 1, |(_, src, raw)| {
                let mut own = Vec::new();
                let pb = playbook::is_playbook(raw)
                    .then(|| {
                        playbook::compile(
                            &compiler,
                            &src.name,
                            raw,
                            &actions,
                            &broken_actions,
                            &mut own,
                        )
                    })
                    .flatten();
                (pb, own)
            });
            let patterns = compiler.take_patterns();
            let triggers = match triggers {
                Some(t) => t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                None => signals::Triggers::build(&literals),
            };
            (actions, compiled, patterns, triggers)
        });
        match triggers {
            Ok(t) => signal_set.set_triggers(Some(t)),
            Err(e) => {
                diags.push(Diagnostic::error(
                    code::INVALID_REGEX,
                    "",
                    format!("the signals' literal automaton does not build: {e}"),
                ));
                signal_set.set_triggers(None);
            }
        }
        let signals = Arc::new(signal_set);
        let mut by_id: BTreeMap<String, (usize, Arc<Playbook>)> = BTreeMap::new();
        for ((layer, src, raw), (pb, own)) in parsed.iter().zip(compiled) {
            diags.extend(own);
            let Some(pb) = pb else {
                continue;
            };
            if let Some((prev_layer, prev)) = by_id.get(&pb.id)
                && prev_layer == layer
            {
                diags.push(
                    Diagnostic::error(
                        code::DUPLICATE_ID,
                        &src.name,
                        format!("playbook `{}` is already defined in {}", pb.id, prev.file),
                    )
                    .at_path("id")
                    .at(
                        raw.id.as_ref().map_or(0, |i| i.referenced.line()),
                        raw.id.as_ref().map_or(0, |i| i.referenced.column()),
                    )
                    .hint("playbook ids must be unique; rename one of them"),
                );
                continue;
            }
            by_id.insert(pb.id.clone(), (*layer, Arc::new(pb)));
        }
        let mut playbooks: Vec<Arc<Playbook>> = by_id.into_values().map(|(_, p)| p).collect();
        playbooks.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));

        if playbooks.is_empty() && diags.iter().all(|d| !d.is_error()) {
            diags.push(Diagnostic::warning(
                code::EMPTY_LIBRARY,
                "",
                "no playbook was loaded",
            ));
        }
        let hash = hash_sources(layers);
        let patterns = Arc::new(patterns);
        (
            Library {
                engine,
                playbooks,
                actions,
                signals,
                patterns,
                signal_defs,
                hash,
                plain: std::sync::OnceLock::new(),
            },
            diags,
        )
    }

    /// Which of the library's fixed output texts hold no credential shape.
    pub(crate) fn plain(&self) -> &Arc<PlainTexts> {
        self.plain
            .get_or_init(|| Arc::new(PlainTexts::new(self.fixed_texts())))
    }

    /// Every output text the library (and the walk) writes whatever the event: titles, and
    /// evidence, explanations and steps without expressions.
    fn fixed_texts(&self) -> Vec<&str> {
        let mut out: Vec<&str> = crate::eval::FIXED_TEXTS.to_vec();
        self.parts(&mut |part| match part {
            Part::Title(t) => out.push(t),
            Part::Template(t) => out.extend(t.fixed()),
            Part::Script(_) => {}
        });
        out
    }

    /// Visits every part of the library in one order: each playbook's title and matcher, its
    /// nodes (titles, checks' scripts and evidence, explanations, dispositions), its
    /// inconclusive disposition, then every action's title, steps, params and `when`.
    fn parts<'a>(&'a self, visit: &mut dyn FnMut(Part<'a>)) {
        let check = |c: &'a Check, visit: &mut dyn FnMut(Part<'a>)| {
            visit(Part::Script(&c.script));
            c.evidence.iter().for_each(|t| visit(Part::Template(t)));
            c.evidence_fail
                .iter()
                .for_each(|t| visit(Part::Template(t)));
        };
        let disposition = |d: &'a Option<DispositionDef>, visit: &mut dyn FnMut(Part<'a>)| {
            d.iter()
                .flat_map(|d| d.retry_after.iter())
                .for_each(|s| visit(Part::Script(s)));
        };
        for pb in &self.playbooks {
            visit(Part::Title(&pb.title));
            visit(Part::Script(&pb.matcher));
            for n in &pb.nodes {
                match n {
                    Node::Step(s) => check(&s.check, visit),
                    Node::Cause(c) => {
                        visit(Part::Title(&c.title));
                        c.explain.iter().for_each(|t| visit(Part::Template(t)));
                        c.checks.iter().for_each(|k| check(k, visit));
                        disposition(&c.disposition, visit);
                    }
                }
            }
            disposition(&pb.inconclusive.disposition, visit);
        }
        for a in self.actions.values() {
            visit(Part::Title(&a.title));
            a.steps.iter().for_each(|t| visit(Part::Template(t)));
            a.params.iter().for_each(|(_, s)| visit(Part::Script(s)));
            a.when.iter().for_each(|s| visit(Part::Script(s)));
        }
    }

    /// Playbooks, highest priority first.
    pub fn playbooks(&self) -> &[Arc<Playbook>] {
        &self.playbooks
    }

    pub fn playbook(&self, id: &str) -> Option<&Arc<Playbook>> {
        self.playbooks.iter().find(|p| p.id == id)
    }

    pub fn actions(&self) -> impl Iterator<Item = &Arc<ActionDef>> {
        self.actions.values()
    }

    /// Every compiled script of the library, template placeholders included, once each: the
    /// playbooks' matchers, steps, checks, evidence and explanations, dispositions and every
    /// action's steps, params and `when`.
    pub fn scripts(&self) -> Vec<&Script> {
        let mut out = Vec::new();
        self.parts(&mut |part| match part {
            Part::Script(s) => out.push(s),
            Part::Template(t) => out.extend(t.segments.iter().filter_map(|seg| match seg {
                Segment::Expr(s) => Some(s),
                Segment::Text(_) => None,
            })),
            Part::Title(_) => {}
        });
        out
    }

    /// `sha256:` and 16 hex digits identifying the exact playbook sources.
    /// How many literal `matches()` patterns the library's scripts hold: the most it will ever
    /// compile, whatever events it diagnoses.
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn signal_names(&self) -> impl Iterator<Item = &str> {
        self.signals.names()
    }

    /// Every signal with the file that defines it and its patterns, by name.
    pub fn signal_defs(&self) -> &[SignalDef] {
        &self.signal_defs
    }

    /// Does signal `name` match `text` (as the whole haystack)? `None` for an unknown signal.
    pub fn signal_matches(&self, name: &str, text: &str) -> Option<bool> {
        let id = self.signals.id(name)?;
        Some(self.signals.is_match(id, text))
    }
}

fn hash_sources(layers: &[Vec<Source>]) -> String {
    let mut all: Vec<&Source> = layers.iter().flatten().collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let mut h = Sha256::new();
    for s in all {
        h.update(s.name.rsplit('/').next().unwrap_or(&s.name).as_bytes());
        h.update([0]);
        h.update(s.text.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn spanned_pos<T>(s: &Spanned<T>) -> (u64, u64) {
    (s.referenced.line(), s.referenced.column())
}

/// Every signal pattern of the library parsed and its literals extracted, on every core, except
/// those `prepared` already holds (the ~700 built-in patterns were a third of load time on one
/// core). Keyed by text.
fn analyse_all<'p>(
    parsed: &'p [(usize, &Source, RawPlaybook)],
    prepared: &signals::Prepared,
) -> HashMap<&'p str, Result<signals::Pattern, String>> {
    let mut done = HashMap::new();
    let mut texts: Vec<&str> = Vec::new();
    for p in parsed
        .iter()
        .flat_map(|(_, _, raw)| raw.signals.values().flatten())
    {
        let text = p.value.as_str();
        match prepared.get(text) {
            Some(pattern) => {
                done.insert(text, Ok(pattern.clone()));
            }
            None => texts.push(text),
        }
    }
    done.extend(par::map(&texts, 64, |t| (*t, signals::analyse(t))));
    done
}

/// Signals from every file; a name defined twice in one layer is an error. The set comes
/// without its literal automaton, with the literals to build it from.
fn collect_signals(
    parsed: &[(usize, &Source, RawPlaybook)],
    prepared: &signals::Prepared,
    diags: &mut Vec<Diagnostic>,
) -> (SignalSet, Vec<SignalDef>, Vec<String>) {
    let mut by_name: BTreeMap<&str, (usize, &str, Vec<signals::Pattern>)> = BTreeMap::new();
    let analysed = analyse_all(parsed, prepared);
    for (layer, src, raw) in parsed {
        for (name, patterns) in &raw.signals {
            let first = patterns.first().map_or((0, 0), spanned_pos);
            if !valid_id(name) {
                diags.push(
                    Diagnostic::error(
                        code::INVALID_ID,
                        &src.name,
                        format!("signal name `{name}` is not snake_case"),
                    )
                    .at_path(format!("signals.{name}"))
                    .at(first.0, first.1.saturating_sub(name.len() as u64 + 2))
                    .hint("use lower-case letters, digits and `_`, starting with a letter"),
                );
                continue;
            }
            // Invalid patterns are reported and dropped; the signal keeps its valid ones so that
            // scripts using it do not cascade into "unknown signal" errors.
            let mut valid = Vec::new();
            for (i, p) in patterns.iter().enumerate() {
                let done = analysed.get(p.value.as_str()).cloned();
                match done.unwrap_or_else(|| signals::analyse(&p.value)) {
                    Ok(pattern) => valid.push(pattern),
                    Err(e) => {
                        let (l, c) = spanned_pos(p);
                        diags.push(
                            Diagnostic::error(
                                code::INVALID_REGEX,
                                &src.name,
                                format!(
                                    "invalid regular expression: {}",
                                    e.lines().last().unwrap_or("").trim()
                                ),
                            )
                            .at_path(format!("signals.{name}[{i}]"))
                            .at(l, c)
                            .hint(
                                "patterns use Rust regex syntax and match ASCII case-insensitively",
                            ),
                        );
                    }
                }
            }
            if let Some((prev_layer, prev_file, _)) = by_name.get(name.as_str())
                && prev_layer == layer
            {
                diags.push(
                    Diagnostic::error(code::DUPLICATE_ID, &src.name, format!("signal `{name}` is already defined in {prev_file}"))
                        .at_path(format!("signals.{name}"))
                        .at(first.0, 1)
                        .hint("signal names are shared by the whole library; add patterns to the existing one"),
                );
                continue;
            }
            by_name.insert(name, (*layer, &src.name, valid));
        }
    }
    let defs: Vec<SignalDef> = by_name
        .into_iter()
        .map(|(n, (_, file, p))| SignalDef {
            name: n.to_string(),
            file: file.to_string(),
            patterns: p,
        })
        .collect();
    let list: Vec<(String, Vec<signals::Pattern>)> = defs
        .iter()
        .map(|d| (d.name.clone(), d.patterns.clone()))
        .collect();
    let (set, literals) = SignalSet::without_triggers(&list);
    (set, defs, literals)
}

type Actions = BTreeMap<String, Arc<ActionDef>>;

/// Actions from every file; returns the compiled ones and the ids that failed to compile.
fn collect_actions(
    compiler: &Compiler<'_>,
    parsed: &[(usize, &Source, RawPlaybook)],
    diags: &mut Vec<Diagnostic>,
) -> (Actions, Vec<String>) {
    let mut out: HashMap<String, (usize, Arc<ActionDef>)> = HashMap::new();
    let mut broken = Vec::new();
    for (layer, src, raw) in parsed {
        for (i, a) in raw.actions.iter().enumerate() {
            let path = format!("actions[{i}]");
            match compile_action(compiler, &src.name, &path, a, diags) {
                Some(def) => {
                    if let Some((prev_layer, prev)) = out.get(&def.id)
                        && prev_layer == layer
                    {
                        let (l, c) = spanned_pos(&a.id);
                        diags.push(
                            Diagnostic::error(code::DUPLICATE_ID, &src.name, format!("action `{}` is already defined in {}", def.id, prev.file))
                                .at_path(format!("{path}.id"))
                                .at(l, c)
                                .hint("action ids are shared by the whole library; reuse the existing action"),
                        );
                        continue;
                    }
                    out.insert(def.id.clone(), (*layer, Arc::new(def)));
                }
                None => broken.push(a.id.value.clone()),
            }
        }
    }
    (out.into_iter().map(|(k, (_, v))| (k, v)).collect(), broken)
}

fn compile_action(
    compiler: &Compiler<'_>,
    file: &str,
    path: &str,
    a: &RawAction,
    diags: &mut Vec<Diagnostic>,
) -> Option<ActionDef> {
    let before = diags.len();
    check_id(&a.id, file, &format!("{path}.id"), diags);
    let steps: Vec<Template> = a
        .steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            Template::compile(
                compiler,
                s,
                Site {
                    file,
                    yaml_path: &format!("{path}.steps[{i}]"),
                },
                diags,
            )
        })
        .collect();
    let params: Vec<(String, Script)> = a
        .params
        .iter()
        .filter_map(|(k, v)| {
            let site_path = format!("{path}.params.{k}");
            compiler
                .compile(
                    v,
                    true,
                    Site {
                        file,
                        yaml_path: &site_path,
                    },
                    diags,
                )
                .map(|s| (k.clone(), s))
        })
        .collect();
    let when = a.when.as_ref().and_then(|w| {
        compiler.compile(
            w,
            false,
            Site {
                file,
                yaml_path: &format!("{path}.when"),
            },
            diags,
        )
    });
    if diags[before..].iter().any(Diagnostic::is_error) {
        return None;
    }
    let disposition = a.disposition.unwrap_or(match a.actor {
        Actor::User => DispositionKind::NeedsUser,
        Actor::Admin => DispositionKind::NeedsAdmin,
        Actor::ProviderSupport => DispositionKind::Stop,
        Actor::Platform => DispositionKind::Retry,
    });
    Some(ActionDef {
        id: a.id.value.clone(),
        title: a.title.clone(),
        actor: a.actor,
        automatic: a.automatic,
        steps,
        params,
        disposition,
        when,
        file: file.to_string(),
    })
}

/// Ids are snake_case so they are stable keys for buttons and automation.
pub(crate) fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

pub(crate) fn check_id(
    id: &Spanned<String>,
    file: &str,
    yaml_path: &str,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    if valid_id(&id.value) {
        return true;
    }
    let (l, c) = spanned_pos(id);
    diags.push(
        Diagnostic::error(
            code::INVALID_ID,
            file,
            format!("id `{}` is not snake_case", id.value),
        )
        .at_path(yaml_path)
        .at(l, c)
        .hint("use lower-case letters, digits and `_`, starting with a letter"),
    );
    false
}
