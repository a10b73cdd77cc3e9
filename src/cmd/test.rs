//! `whyfail test [DIR|FILE]...`: runs playbook tests and reports which expectations failed and
//! which checks decided differently.
//!
//! Tests live beside the playbook they test, as `NAME.test.yaml` next to `NAME.yaml` (format in
//! docs/authoring.md). A test is an event (merged onto the file's `base`), optional mocked live
//! facts and expectations about the resolution. Tests run against the built-in library with the
//! given directories layered on top, exactly as `diagnose --playbooks DIR` would use them: a new
//! playbook is tested together with the standard playbooks it competes with.
//!
//! Every failure unit (a test, a broken test file, a playbook that does not load) is one line,
//! `ok   file::name` or `FAILED file::name`; the last line is `N passed, M failed`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};
use whyfail_engine::compile::{Node, Playbook};
use whyfail_engine::diag::{Diagnostic, Severity, closest, code};
use whyfail_engine::load::{self, Source, Spanned};
use whyfail_engine::model::playbook::{DispositionKind, Role};
use whyfail_engine::model::resolution::{Confidence, NodeKind, Outcome, Resolution, Status};
use whyfail_engine::sandbox::{SCRIPT_BUDGET, STOPPED};
use whyfail_engine::{Event, Library, Options, diagnose};
use whyfail_providers::FixtureProvider;

use super::signal_examples::{self, Examples};
use super::{FOUND_ERRORS, OK, USAGE};

#[derive(clap::Args)]
pub struct Args {
    /// Playbook directories or files; a directory's `*.test.yaml` files are run, a playbook
    /// file runs its `NAME.test.yaml` (default: `playbooks`).
    paths: Vec<PathBuf>,
    /// Output format (`json`: one document with every test's result).
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Also write the results as JUnit XML to FILE, for CI systems.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// List the causes, checks and actions of the tested playbooks that no test reaches.
    #[arg(long)]
    coverage: bool,
    /// With --coverage: exit 1 when anything is unreached.
    #[arg(long, requires = "coverage")]
    deny_unreached: bool,
    /// Test against the given playbooks alone, without the built-in library.
    #[arg(long)]
    no_builtin: bool,
    /// Run only the tests whose `file::name` contains TEXT.
    #[arg(long, value_name = "TEXT")]
    filter: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

// ---------------------------------------------------------------------------------------------
// The test file format. Unknown keys are errors (with a "did you mean"), as in playbooks.

/// One `NAME.test.yaml` file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// What these tests are about: for people, the runner only accepts it.
    #[serde(default, rename = "about")]
    _about: Option<String>,
    /// Event fields every test starts from.
    #[serde(default)]
    base: Option<Value>,
    /// Live facts mocked for every test (a test's own `facts` win by name).
    #[serde(default)]
    facts: Map<String, Value>,
    #[serde(default)]
    tests: Vec<Spanned<TestCase>>,
    /// Per signal: texts it must match and near misses it must not.
    #[serde(default)]
    signals: BTreeMap<String, Examples>,
}

/// One test.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    #[serde(default)]
    about: Option<String>,
    /// Deep-merged onto `base`; `null` deletes a key.
    #[serde(default)]
    event: Option<Value>,
    /// Mocked live facts `{"fact.name": value}`; a fact not listed is unavailable (unknown).
    #[serde(default)]
    facts: Map<String, Value>,
    /// The event's `occurred_at` (what scripts call "now").
    #[serde(default)]
    now: Option<String>,
    expect: Expect,
}

/// What the resolution must say. Every field is optional; a test needs at least one.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    status: Option<Status>,
    /// Id of the playbook (symptom) that must answer.
    symptom: Option<String>,
    /// The best root cause; diagnosed (confirmed or likely) unless `confidence` says otherwise.
    /// `null`: no diagnosis at all.
    #[serde(default, deserialize_with = "nullable")]
    root_cause: Option<Option<String>>,
    /// Causes the best root cause must not be (a near miss); passes when nothing is diagnosed.
    #[serde(default)]
    not_root_cause: Vec<String>,
    /// Confidence of the best root cause.
    confidence: Option<Confidence>,
    /// The first recommended action; `null`: none.
    #[serde(default, deserialize_with = "nullable")]
    first_action: Option<Option<String>>,
    #[serde(default)]
    actions_include: Vec<String>,
    disposition: Option<DispositionKind>,
    /// `disposition.retry_after_seconds`.
    retry_after: Option<i64>,
    /// Nodes visited with an outcome other than `skipped`.
    #[serde(default)]
    on_path: Vec<Spanned<String>>,
    /// Nodes not visited (absent, or `skipped`).
    #[serde(default)]
    not_on_path: Vec<Spanned<String>>,
    /// Exact outcomes: `node_id: confirmed | ruled_out | pass | fail | ...`.
    #[serde(default)]
    outcomes: BTreeMap<String, Outcome>,
    /// Texts the best root cause's evidence must contain (case-insensitive).
    #[serde(default)]
    evidence_contains: Vec<String>,
}

impl Expect {
    fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.symptom.is_none()
            && self.root_cause.is_none()
            && self.not_root_cause.is_empty()
            && self.confidence.is_none()
            && self.first_action.is_none()
            && self.actions_include.is_empty()
            && self.disposition.is_none()
            && self.retry_after.is_none()
            && self.on_path.is_empty()
            && self.not_on_path.is_empty()
            && self.outcomes.is_empty()
            && self.evidence_contains.is_empty()
    }
}

/// `key: null` is `Some(None)`; an absent key is `None` (with `#[serde(default)]`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A hashable name for a path entry's kind (the engine's enum is not `Hash`).
fn kind_key(k: NodeKind) -> &'static str {
    match k {
        NodeKind::Symptom => "symptom",
        NodeKind::Cause => "cause",
        NodeKind::Check => "check",
        NodeKind::Action => "action",
    }
}

fn role_word(r: Role) -> &'static str {
    match r {
        Role::Require => "require",
        Role::Support => "support",
    }
}

/// Is this a playbook test file (`*.test.yaml` / `*.test.yml`)?
pub fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".test.yaml") || name.ends_with(".test.yml")
}

// ---------------------------------------------------------------------------------------------
// Results.

/// One expectation that did not hold.
#[derive(Debug, Clone)]
struct Mismatch {
    expect: String,
    want: Value,
    got: Value,
}

/// A node of the walk that explains a mismatch: its outcome, detail and the values it read.
#[derive(Debug, Clone)]
struct Decision {
    /// `step`, `check`, `cause`, `action` or `note`.
    kind: &'static str,
    node: String,
    outcome: Option<Outcome>,
    role: Option<Role>,
    /// For a cause's check: the cause; for a step: where the outcome routed.
    context: Option<String>,
    detail: Option<String>,
    /// Nesting for display (a cause's checks under the cause).
    depth: usize,
    reads: Vec<(String, String)>,
}

/// The outcome of one failure unit: a test, or a file or playbook that could not be used.
struct Unit {
    file: String,
    name: Option<String>,
    about: Option<String>,
    line: Option<u64>,
    millis: f64,
    mismatches: Vec<Mismatch>,
    decisions: Vec<Decision>,
    errors: Vec<Diagnostic>,
    result: Option<Value>,
}

impl Unit {
    fn ok(&self) -> bool {
        self.mismatches.is_empty() && self.errors.is_empty()
    }

    fn id(&self) -> String {
        match &self.name {
            Some(n) => format!("{}::{n}", self.file),
            None => self.file.clone(),
        }
    }

    fn broken(file: &str, errors: Vec<Diagnostic>) -> Unit {
        Unit {
            file: file.to_string(),
            name: None,
            about: None,
            line: None,
            millis: 0.0,
            mismatches: Vec::new(),
            decisions: Vec::new(),
            errors,
            result: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What to test: the playbook layers and the test files.

struct Target {
    /// The folder (or file) layered over the built-in library.
    layer: PathBuf,
    /// The playbook file under test; `None`: every playbook of the layer.
    tested: Option<PathBuf>,
    tests: Vec<PathBuf>,
}

fn sibling_playbook(test: &Path) -> Option<PathBuf> {
    let name = test.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".test.yaml")
        .or_else(|| name.strip_suffix(".test.yml"))?;
    ["yaml", "yml"]
        .iter()
        .map(|ext| test.with_file_name(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
}

fn sibling_test(playbook: &Path) -> Option<PathBuf> {
    let stem = playbook.file_stem()?.to_str()?;
    ["yaml", "yml"]
        .iter()
        .map(|ext| playbook.with_file_name(format!("{stem}.test.{ext}")))
        .find(|p| p.is_file())
}

fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What one path argument means. A single file still layers its whole folder (a recorded test
/// or a playbook may rely on the folder's other playbooks and shared actions), but only its own
/// tests run and only its playbook counts for coverage.
fn resolve(path: &Path) -> Result<Target, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    if meta.is_dir() {
        let mut tests: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("cannot list `{}`: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_test_file(p))
            .collect();
        tests.sort();
        Ok(Target {
            layer: path.to_path_buf(),
            tested: None,
            tests,
        })
    } else if is_test_file(path) {
        Ok(Target {
            layer: folder_of(path),
            tested: sibling_playbook(path),
            tests: vec![path.to_path_buf()],
        })
    } else if load::is_playbook_file(path) {
        Ok(Target {
            layer: folder_of(path),
            tested: Some(path.to_path_buf()),
            tests: sibling_test(path).into_iter().collect(),
        })
    } else {
        Err(format!(
            "`{}` is neither a directory, a playbook (`*.yaml`) nor a test file (`*.test.yaml`)",
            path.display()
        ))
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------------

pub fn run(args: Args) -> u8 {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("playbooks")]
    } else {
        args.paths.clone()
    };
    let mut diags = Vec::new();
    let mut layers = Vec::new();
    if !args.no_builtin {
        layers.push(whyfail::stdlib_sources());
    }
    let mut test_files: Vec<PathBuf> = Vec::new();
    let mut tested_sources: BTreeSet<String> = BTreeSet::new();
    let mut layered: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for p in &paths {
        let t = match resolve(p) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("whyfail: {e}");
                return USAGE;
            }
        };
        // Each folder is layered once, however many of its files are named.
        let names = match layered.iter().find(|(l, _)| same_file(l, &t.layer)) {
            Some((_, names)) => names.clone(),
            None => {
                let sources = load::read_sources(&t.layer, &mut diags);
                let names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
                layers.push(sources);
                layered.push((t.layer.clone(), names.clone()));
                names
            }
        };
        match &t.tested {
            None => tested_sources.extend(names),
            Some(f) => {
                tested_sources.extend(names.into_iter().filter(|n| same_file(Path::new(n), f)))
            }
        }
        for f in t.tests {
            if !test_files.iter().any(|x| same_file(x, &f)) {
                test_files.push(f);
            }
        }
    }
    let (lib, more) = Library::load(&layers);
    diags.extend(more);

    // Problems in the playbooks under test are failures (a playbook left out of the library
    // would otherwise be tested in its built-in version, and pass); other problems are noise
    // for this run and go to standard error.
    let mut units: Vec<Unit> = Vec::new();
    let mut broken: BTreeMap<String, Vec<Diagnostic>> = BTreeMap::new();
    for d in diags {
        if d.severity == Severity::Error && tested_sources.contains(&d.file) {
            broken.entry(d.file.clone()).or_default().push(d);
        } else {
            eprintln!("{d}");
        }
    }
    let text = args.format == Format::Text;
    for (file, errors) in broken {
        let u = Unit::broken(&file, errors);
        if text {
            print_unit(&u);
        }
        units.push(u);
    }

    let known = Known::new(&lib);
    let mut reached: HashSet<(String, &'static str, String)> = HashSet::new();
    let mut examples: BTreeMap<String, Examples> = BTreeMap::new();
    for f in &test_files {
        let ctx = FileCtx {
            lib: &lib,
            known: &known,
            filter: args.filter.as_deref(),
        };
        for u in run_file(&ctx, f, &mut reached, &mut examples) {
            if text {
                print_unit(&u);
            }
            units.push(u);
        }
    }

    let under_test: Vec<&Playbook> = lib
        .playbooks()
        .iter()
        .filter(|p| tested_sources.contains(&p.file))
        .map(|p| p.as_ref())
        .collect();
    let coverage = args.coverage.then(|| {
        let mut c = Coverage::of(&under_test, &reached);
        c.add_signals(&lib, &tested_sources, &examples);
        c
    });

    let failed = units.iter().filter(|u| !u.ok()).count();
    let passed = units.len() - failed;
    match args.format {
        Format::Text => {
            if let Some(c) = &coverage {
                super::emit(c.text().trim_end());
            }
            super::emit(&format!("{passed} passed, {failed} failed"));
        }
        Format::Json => {
            let mut out = json!({
                "passed": passed,
                "failed": failed,
                "tests": units.iter().map(unit_json).collect::<Vec<_>>(),
            });
            if let Some(c) = &coverage {
                out["coverage"] = c.json();
            }
            super::emit(&serde_json::to_string_pretty(&out).unwrap_or_default());
        }
    }
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, junit(&units))
    {
        eprintln!("whyfail: cannot write `{}`: {e}", path.display());
        return USAGE;
    }
    let unreached = coverage.as_ref().is_some_and(|c| c.unreached() > 0);
    if failed > 0 || (args.deny_unreached && unreached) {
        FOUND_ERRORS
    } else {
        OK
    }
}

// ---------------------------------------------------------------------------------------------
// Running one file.

/// Ids a test may name, to catch typos that would make an expectation vacuous.
struct Known {
    nodes: BTreeSet<String>,
    causes: BTreeSet<String>,
    actions: BTreeSet<String>,
    playbooks: BTreeSet<String>,
}

impl Known {
    fn new(lib: &Library) -> Known {
        let mut k = Known {
            nodes: BTreeSet::new(),
            causes: BTreeSet::new(),
            actions: lib.actions().map(|a| a.id.clone()).collect(),
            playbooks: BTreeSet::new(),
        };
        for pb in lib.playbooks() {
            k.playbooks.insert(pb.id.clone());
            k.nodes.insert(pb.id.clone());
            for n in &pb.nodes {
                k.nodes.insert(n.id().to_string());
                if let Node::Cause(c) = n {
                    k.causes.insert(c.id.clone());
                    k.nodes.extend(c.checks.iter().map(|x| x.id.clone()));
                }
            }
        }
        k.nodes.extend(k.actions.iter().cloned());
        k
    }
}

fn unknown_id(
    file: &str,
    pos: (u64, u64),
    what: &str,
    id: &str,
    among: &BTreeSet<String>,
) -> Option<Diagnostic> {
    if among.contains(id) {
        return None;
    }
    let mut d = Diagnostic::error(
        code::DANGLING_REFERENCE,
        file,
        format!("`{id}` is not {what} of the loaded playbooks"),
    )
    .at(pos.0, pos.1);
    d = match closest(id, among.iter().map(String::as_str)) {
        Some(c) => d.hint(format!("did you mean `{c}`?")),
        None => d.hint("a misspelt id would make this expectation pass for the wrong reason"),
    };
    Some(d)
}

/// Checks a test's ids and shape; every problem is an error at the test (or the list item).
fn validate(file: &str, t: &Spanned<TestCase>, known: &Known) -> Vec<Diagnostic> {
    let pos = (t.referenced.line(), t.referenced.column());
    let tc = &t.value;
    let e = &tc.expect;
    let mut out = Vec::new();
    if tc.name.trim().is_empty() || tc.name.contains('\n') {
        out.push(
            Diagnostic::error(code::INVALID_VALUE, file, "a test needs a one-line `name`")
                .at(pos.0, pos.1),
        );
    }
    if tc.event.as_ref().is_some_and(|v| !v.is_object()) {
        out.push(
            Diagnostic::error(
                code::INVALID_VALUE,
                file,
                "`event` must be a mapping of event fields",
            )
            .at(pos.0, pos.1),
        );
    }
    if let Some(now) = &tc.now
        && whyfail_engine::time::parse(now).is_none()
    {
        out.push(
            Diagnostic::error(
                code::INVALID_VALUE,
                file,
                format!("`now: {now}` is not a time"),
            )
            .at(pos.0, pos.1)
            .hint("use RFC 3339, e.g. `2026-11-23T10:00:00Z`"),
        );
    }
    if e.is_empty() {
        out.push(
            Diagnostic::error(
                code::MISSING_FIELD,
                file,
                format!("test `{}` expects nothing", tc.name),
            )
            .at(pos.0, pos.1)
            .hint("add `root_cause`, `status`, `on_path`, `outcomes`, ... under `expect`"),
        );
    }
    let mut check = |what: &str, id: &str, among: &BTreeSet<String>, at: (u64, u64)| {
        out.extend(unknown_id(file, at, what, id, among));
    };
    if let Some(s) = &e.symptom {
        check("a playbook id", s, &known.playbooks, pos);
    }
    if let Some(Some(c)) = &e.root_cause {
        check("a cause", c, &known.causes, pos);
    }
    for c in &e.not_root_cause {
        check("a cause", c, &known.causes, pos);
    }
    if let Some(Some(a)) = &e.first_action {
        check("an action", a, &known.actions, pos);
    }
    for a in &e.actions_include {
        check("an action", a, &known.actions, pos);
    }
    for n in e.on_path.iter().chain(&e.not_on_path) {
        check(
            "a node",
            &n.value,
            &known.nodes,
            (n.referenced.line(), n.referenced.column()),
        );
    }
    for n in e.outcomes.keys() {
        check("a node", n, &known.nodes, pos);
    }
    out
}

/// What every test file is run against.
struct FileCtx<'a> {
    lib: &'a Library,
    known: &'a Known,
    filter: Option<&'a str>,
}

fn run_file(
    cx: &FileCtx<'_>,
    path: &Path,
    reached: &mut HashSet<(String, &'static str, String)>,
    examples: &mut BTreeMap<String, Examples>,
) -> Vec<Unit> {
    let (lib, known, filter) = (cx.lib, cx.known, cx.filter);
    let display = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return vec![Unit::broken(
                &display,
                vec![Diagnostic::error(
                    code::IO,
                    &display,
                    format!("cannot read: {e}"),
                )],
            )];
        }
    };
    let file: TestFile = match load::parse_yaml(&Source::new(display.clone(), text)) {
        Ok(f) => f,
        Err(d) => return vec![Unit::broken(&display, vec![*d])],
    };
    let base = file.base.clone().unwrap_or_else(|| json!({}));
    if !base.is_object() {
        return vec![Unit::broken(
            &display,
            vec![
                Diagnostic::error(
                    code::INVALID_VALUE,
                    &display,
                    "`base` must be a mapping of event fields",
                )
                .at_path("base"),
            ],
        )];
    }
    let mut units = Vec::new();
    let mut names: HashSet<&str> = HashSet::new();
    for t in &file.tests {
        let tc = &t.value;
        let mut unit = Unit {
            file: display.clone(),
            name: Some(tc.name.clone()),
            about: tc.about.clone(),
            line: Some(t.referenced.line()),
            millis: 0.0,
            mismatches: Vec::new(),
            decisions: Vec::new(),
            errors: validate(&display, t, known),
            result: None,
        };
        if !names.insert(tc.name.as_str()) {
            unit.errors.push(
                Diagnostic::error(
                    code::DUPLICATE_ID,
                    &display,
                    format!("test `{}` is defined twice in this file", tc.name),
                )
                .at(t.referenced.line(), t.referenced.column())
                .hint("test names must be unique within a file"),
            );
        }
        if filter.is_some_and(|f| !unit.id().contains(f)) {
            continue;
        }
        if unit.errors.is_empty() {
            let started = Instant::now();
            run_test(lib, &base, &file.facts, tc, &mut unit, reached);
            unit.millis = started.elapsed().as_secs_f64() * 1000.0;
        }
        units.push(unit);
    }
    for (name, ex) in &file.signals {
        let mut unit = Unit::broken(&display, Vec::new());
        unit.name = Some(format!("signals.{name}"));
        if filter.is_some_and(|f| !unit.id().contains(f)) {
            continue;
        }
        match signal_examples::run(lib, name, ex) {
            None => {
                let hint = closest(name, lib.signal_names()).map_or(
                    "signals are defined under `signals:` in a playbook".to_string(),
                    |c| format!("did you mean `{c}`?"),
                );
                unit.errors.push(
                    Diagnostic::error(
                        code::UNKNOWN_SIGNAL,
                        &display,
                        format!("unknown signal `{name}`"),
                    )
                    .at_path(format!("signals.{name}"))
                    .hint(hint),
                );
            }
            Some(wrong) => {
                for w in wrong {
                    unit.mismatches.push(Mismatch {
                        expect: if w.should_match { "match" } else { "miss" }.to_string(),
                        want: Value::String(w.text),
                        got: Value::String(
                            if w.should_match {
                                "no match"
                            } else {
                                "matched"
                            }
                            .to_string(),
                        ),
                    });
                }
            }
        }
        let all = examples.entry(name.clone()).or_default();
        all.matches.extend(ex.matches.iter().cloned());
        all.miss.extend(ex.miss.iter().cloned());
        units.push(unit);
    }
    units
}

/// Deep-merges `patch` into `base`: mappings merge key by key, `null` deletes a key, anything
/// else replaces.
fn merge(base: &mut Value, patch: &Value) {
    let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) else {
        *base = patch.clone();
        return;
    };
    for (k, v) in p {
        if v.is_null() {
            b.remove(k);
        } else if v.is_object() {
            let slot = b.entry(k.clone()).or_insert_with(|| json!({}));
            if !slot.is_object() {
                *slot = json!({});
            }
            merge(slot, v);
        } else {
            b.insert(k.clone(), v.clone());
        }
    }
}

fn run_test(
    lib: &Library,
    base: &Value,
    file_facts: &Map<String, Value>,
    tc: &TestCase,
    unit: &mut Unit,
    reached: &mut HashSet<(String, &'static str, String)>,
) {
    let mut event = base.clone();
    if let Some(e) = &tc.event {
        merge(&mut event, e);
    }
    if let Some(now) = &tc.now {
        event["occurred_at"] = Value::String(now.clone());
    }
    let mut facts = file_facts.clone();
    facts.extend(tc.facts.iter().map(|(k, v)| (k.clone(), v.clone())));
    let fixture = match FixtureProvider::from_json(&Value::Object(facts.clone())) {
        Ok(f) => f,
        Err(e) => {
            unit.errors.push(
                Diagnostic::error(code::INVALID_VALUE, &unit.file, e).at(unit.line.unwrap_or(0), 1),
            );
            return;
        }
    };
    let parsed = match Event::parse(&event.to_string()) {
        Ok(ev) => ev,
        Err(e) => {
            unit.errors.push(
                Diagnostic::error(
                    code::INVALID_VALUE,
                    &unit.file,
                    format!("the merged event is not a failure event: {e}"),
                )
                .at(unit.line.unwrap_or(0), 1),
            );
            return;
        }
    };
    let opts = Options {
        provider: Some(&fixture),
        ..Options::default()
    };
    let res = diagnose(lib, &parsed, &opts);
    if let Some(sym) = &res.symptom {
        for s in &res.path {
            if s.outcome != Outcome::Skipped {
                reached.insert((sym.id.clone(), kind_key(s.kind), s.node.clone()));
            }
        }
    }
    unit.result = Some(summary(&res));
    let (mut mismatches, mut interest) = compare(&tc.expect, &res);
    // A script stopped by its time budget is a playbook bug whatever the expectations say.
    for step in &res.path {
        if let Some(d) = step.detail.as_deref().filter(|d| d.starts_with(STOPPED)) {
            mismatches.push(Mismatch {
                expect: "every script to finish within its time budget".to_string(),
                want: json!(format!(
                    "`{}` done within {} ms",
                    step.node,
                    SCRIPT_BUDGET.as_millis()
                )),
                got: json!(format!("`{}` {d}", step.node)),
            });
            interest.push(step.node.clone());
        }
    }
    if !mismatches.is_empty() {
        let ctx = ReadCtx::new(&event, &facts);
        unit.decisions = decisions(lib, &res, &interest, &ctx);
    }
    unit.mismatches = mismatches;
}

fn word<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The resolution in the terms expectations use.
fn summary(res: &Resolution) -> Value {
    json!({
        "status": word(&res.status),
        "symptom": res.symptom.as_ref().map(|s| s.id.clone()),
        "root_cause": res.root_causes.first().map(|c| c.id.clone()),
        "confidence": res.root_causes.first().map(|c| word(&c.confidence)),
        "first_action": res.actions.first().map(|a| a.id.clone()),
        "disposition": word(&res.disposition.kind),
        "retry_after_seconds": res.disposition.retry_after_seconds,
    })
}

fn outcomes_of(res: &Resolution, node: &str) -> Vec<Outcome> {
    res.path
        .iter()
        .filter(|s| s.node == node)
        .map(|s| s.outcome)
        .collect()
}

/// Compares expectations with the resolution: the mismatches, and the nodes whose decisions
/// explain them.
fn compare(e: &Expect, res: &Resolution) -> (Vec<Mismatch>, Vec<String>) {
    let mut out = Vec::new();
    let mut interest: Vec<String> = Vec::new();
    let diagnosed = res.status == Status::Diagnosed;
    let best = res.root_causes.first();
    let best_id = best.map(|c| c.id.clone());
    let mut miss = |expect: &str, want: Value, got: Value| {
        out.push(Mismatch {
            expect: expect.to_string(),
            want,
            got,
        });
    };
    let best_interest = |interest: &mut Vec<String>| {
        if let Some(b) = &best_id {
            interest.push(b.clone());
        }
    };
    if let Some(s) = e.status
        && s != res.status
    {
        miss("status", word(&s), word(&res.status));
        best_interest(&mut interest);
    }
    let symptom = res.symptom.as_ref().map(|s| s.id.clone());
    if let Some(s) = &e.symptom
        && symptom.as_deref() != Some(s.as_str())
    {
        miss("symptom", json!(s), json!(symptom));
    }
    match &e.root_cause {
        // Without a `confidence` expectation, the cause must be diagnosed (confirmed or likely);
        // with one (as `diagnose --record` writes), a merely possible best cause may be pinned.
        Some(Some(want))
            if best_id.as_deref() != Some(want.as_str())
                || (e.confidence.is_none() && !diagnosed) =>
        {
            let got = match best {
                Some(b) if diagnosed || e.confidence.is_some() => json!(b.id),
                Some(b) => json!(format!(
                    "none diagnosed ({} is only {})",
                    b.id,
                    word_str(&b.confidence)
                )),
                None => Value::Null,
            };
            miss("root_cause", json!(want), got);
            interest.push(want.clone());
            best_interest(&mut interest);
        }
        Some(None) if diagnosed => {
            miss("root_cause", Value::Null, json!(best_id));
            best_interest(&mut interest);
        }
        _ => {}
    }
    if diagnosed
        && let Some(b) = &best_id
        && e.not_root_cause.contains(b)
    {
        miss("not_root_cause", json!(e.not_root_cause), json!(b));
        interest.push(b.clone());
    }
    if let Some(c) = e.confidence
        && best.map(|b| b.confidence) != Some(c)
    {
        miss(
            "confidence",
            word(&c),
            json!(best.map(|b| word(&b.confidence))),
        );
        best_interest(&mut interest);
    }
    let first = res.actions.first().map(|a| a.id.clone());
    if let Some(want) = &e.first_action
        && want.as_deref() != first.as_deref()
    {
        miss("first_action", json!(want), json!(first));
        best_interest(&mut interest);
    }
    for a in &e.actions_include {
        if !res.actions.iter().any(|x| &x.id == a) {
            let got: Vec<&str> = res.actions.iter().map(|x| x.id.as_str()).collect();
            miss("actions_include", json!(a), json!(got));
            interest.push(a.clone());
        }
    }
    if let Some(d) = e.disposition
        && d != res.disposition.kind
    {
        miss("disposition", word(&d), word(&res.disposition.kind));
        best_interest(&mut interest);
    }
    if let Some(s) = e.retry_after
        && Some(s) != res.disposition.retry_after_seconds
    {
        miss(
            "retry_after",
            json!(s),
            json!(res.disposition.retry_after_seconds),
        );
        best_interest(&mut interest);
    }
    let visited = |n: &str| outcomes_of(res, n).iter().any(|o| *o != Outcome::Skipped);
    for n in &e.on_path {
        if !visited(&n.value) {
            let got: Vec<Value> = outcomes_of(res, &n.value).iter().map(word).collect();
            miss(
                &format!("on_path `{}`", n.value),
                json!("visited"),
                if got.is_empty() {
                    json!("not on the path")
                } else {
                    json!(got)
                },
            );
            interest.push(n.value.clone());
        }
    }
    for n in &e.not_on_path {
        if visited(&n.value) {
            let got: Vec<Value> = outcomes_of(res, &n.value).iter().map(word).collect();
            miss(
                &format!("not_on_path `{}`", n.value),
                json!("not visited"),
                json!(got),
            );
            interest.push(n.value.clone());
        }
    }
    for (n, want) in &e.outcomes {
        let got = outcomes_of(res, n);
        if !got.contains(want) {
            let got: Value = match got.as_slice() {
                [] => json!("not on the path"),
                [one] => word(one),
                many => json!(many.iter().map(word).collect::<Vec<_>>()),
            };
            miss(&format!("outcomes.{n}"), word(want), got);
            interest.push(n.clone());
        }
    }
    if !e.evidence_contains.is_empty() {
        let evidence = best.map(|b| b.evidence.join("\n")).unwrap_or_default();
        let lower = evidence.to_lowercase();
        for t in &e.evidence_contains {
            if !lower.contains(&t.to_lowercase()) {
                miss(
                    "evidence_contains",
                    json!(t),
                    json!(best.map(|b| b.evidence.clone())),
                );
                best_interest(&mut interest);
            }
        }
    }
    let mut seen = HashSet::new();
    interest.retain(|n| seen.insert(n.clone()));
    (out, interest)
}

// ---------------------------------------------------------------------------------------------
// Which checks decided: the nodes behind a mismatch, with the event values they read.

/// Looks up the values a check read, never showing a secret.
struct ReadCtx<'a> {
    /// The merged event without `connection.secrets`.
    event: Value,
    facts: &'a Map<String, Value>,
    /// Secret values, to blank out should one appear elsewhere (a token pasted in a message).
    secrets: Vec<String>,
}

impl<'a> ReadCtx<'a> {
    fn new(event: &Value, facts: &'a Map<String, Value>) -> Self {
        let mut event = event.clone();
        let removed = event
            .get_mut("connection")
            .and_then(Value::as_object_mut)
            .and_then(|c| c.remove("secrets"));
        let secrets = removed
            .as_ref()
            .and_then(Value::as_object)
            .map(|m| {
                m.values()
                    .filter_map(Value::as_str)
                    .map(|s| s.trim().to_string())
                    .filter(|s| s.len() >= 4)
                    .collect()
            })
            .unwrap_or_default();
        ReadCtx {
            event,
            facts,
            secrets,
        }
    }

    fn lookup(&self, path: &str) -> Option<&Value> {
        let mut cur = &self.event;
        for seg in path.split('.') {
            cur = match cur {
                // Header names are matched case-insensitively, as `header()` does.
                Value::Object(m) => m.get(seg).or_else(|| {
                    m.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(seg))
                        .map(|(_, v)| v)
                }),
                Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            }?;
        }
        Some(cur)
    }

    fn value(&self, path: &str) -> String {
        if path.starts_with("connection.secrets") {
            return "(a secret: checks see only its shape, never the value)".to_string();
        }
        if let Some(fact) = path.strip_prefix("facts.") {
            return match self.facts.get(fact) {
                Some(v) => self.show(v),
                None => "(not mocked: the fact is unavailable)".to_string(),
            };
        }
        match self.lookup(path) {
            Some(v) => self.show(v),
            None => "(not in the event)".to_string(),
        }
    }

    fn show(&self, v: &Value) -> String {
        let mut s = v.to_string();
        for secret in &self.secrets {
            s = s.replace(secret.as_str(), "[redacted]");
        }
        if s.chars().count() > 160 {
            s = s.chars().take(157).collect::<String>() + "...";
        }
        s
    }
}

/// Dotted event paths in a script, following `?.` as well as `.` (the engine's list stops at
/// the first `?.`, which would show a whole section where one field was read).
fn script_paths(source: &str) -> Vec<String> {
    let b = source.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !ident(b[i]) || (i > 0 && (ident(b[i - 1]) || b[i - 1] == b'.')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && ident(b[i]) {
            i += 1;
        }
        let root = &source[start..i];
        // Event sections only: `facts` and `now` are not read from the event.
        if !whyfail_engine::sandbox::SCOPE_VARS.contains(&root) || root == "facts" || root == "now"
        {
            continue;
        }
        let mut segs: Vec<&str> = vec![root];
        loop {
            let mut j = i;
            if b.get(j) == Some(&b'?') {
                j += 1;
            }
            if b.get(j) != Some(&b'.') {
                break;
            }
            j += 1;
            let s = j;
            while j < b.len() && ident(b[j]) {
                j += 1;
            }
            if j == s || b.get(j) == Some(&b'(') {
                break; // a method call (`.len()`), not a field
            }
            segs.push(&source[s..j]);
            i = j;
        }
        let path = match segs[0] {
            "event" => segs[1..].join("."),
            "oauth" => format!(
                "connection.oauth{}",
                segs[1..]
                    .iter()
                    .map(|s| format!(".{s}"))
                    .collect::<String>()
            ),
            _ => segs.join("."),
        };
        if !path.is_empty() && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// What a check read, with values: the engine's list, made precise from the script, plus the
/// error text fields when the script matches signals or reads the message.
fn reads(check: &whyfail_engine::compile::Check, ctx: &ReadCtx<'_>) -> Vec<(String, String)> {
    let source = &check.script.source;
    let precise = script_paths(source);
    let mut paths: Vec<String> = Vec::new();
    for f in check.facts.iter() {
        let shorter = precise.iter().any(|p| p.starts_with(&format!("{f}.")));
        if !shorter && !paths.contains(f) {
            paths.push(f.clone());
        }
    }
    for p in precise {
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    let mut out: Vec<(String, String)> = paths.iter().map(|f| (f.clone(), ctx.value(f))).collect();
    if ["signal(", "text()", "message()"]
        .iter()
        .any(|h| source.contains(h))
    {
        for f in [
            "error.message",
            "error.code",
            "error.body",
            "error.headers.www-authenticate",
        ] {
            if !paths.iter().any(|p| p == f) && ctx.lookup(f).is_some() {
                out.push((f.to_string(), ctx.value(f)));
            }
        }
    }
    out
}

fn step_of<'r>(
    res: &'r Resolution,
    node: &str,
    kind: NodeKind,
) -> Option<&'r whyfail_engine::model::resolution::PathStep> {
    res.path.iter().find(|s| s.node == node && s.kind == kind)
}

fn decisions(
    lib: &Library,
    res: &Resolution,
    interest: &[String],
    ctx: &ReadCtx<'_>,
) -> Vec<Decision> {
    let mut out = Vec::new();
    let Some(pb) = res.symptom.as_ref().and_then(|s| lib.playbook(&s.id)) else {
        out.push(note(
            "no playbook applied: every playbook's `applies_when` was false for this event",
        ));
        return out;
    };
    let mut shown: HashSet<String> = HashSet::new();
    for id in interest {
        if !shown.insert(id.clone()) {
            continue;
        }
        if id == &pb.id {
            // The playbook itself answered: show how each of its causes fared.
            out.push(note(&format!(
                "playbook `{}` ({}) answered {}",
                pb.id,
                pb.file,
                word_str(&res.status)
            )));
            for (i, n) in pb.nodes.iter().enumerate() {
                if matches!(n, Node::Cause(_)) && shown.insert(n.id().to_string()) {
                    explain_node(pb, i, res, ctx, 0, &mut out, &mut shown);
                }
            }
        } else if let Some(i) = pb.nodes.iter().position(|n| n.id() == id) {
            explain_node(pb, i, res, ctx, 0, &mut out, &mut shown);
        } else if let Some((ci, _)) = pb
            .nodes
            .iter()
            .enumerate()
            .find(|(_, n)| matches!(n, Node::Cause(c) if c.checks.iter().any(|k| &k.id == id)))
        {
            explain_node(pb, ci, res, ctx, 0, &mut out, &mut shown);
        } else if pb
            .nodes
            .iter()
            .any(|n| matches!(n, Node::Cause(c) if c.actions.iter().any(|a| &a.id == id)))
        {
            for (i, n) in pb.nodes.iter().enumerate() {
                if let Node::Cause(c) = n
                    && c.actions.iter().any(|a| &a.id == id)
                    && shown.insert(c.id.clone())
                {
                    explain_node(pb, i, res, ctx, 0, &mut out, &mut shown);
                }
            }
        } else if let Some(other) = lib.playbooks().iter().find(|p| {
            p.nodes.iter().any(|n| {
                n.id() == id || matches!(n, Node::Cause(c) if c.checks.iter().any(|k| &k.id == id))
            })
        }) {
            out.push(note(&format!(
                "`{id}` belongs to playbook `{}` ({}), but the event was answered by `{}` ({}, priority {} vs {})",
                other.id, other.file, pb.id, pb.file, other.priority, pb.priority
            )));
        }
    }
    out
}

fn note(text: &str) -> Decision {
    Decision {
        kind: "note",
        node: String::new(),
        outcome: None,
        role: None,
        context: None,
        detail: Some(text.to_string()),
        depth: 0,
        reads: Vec::new(),
    }
}

/// A node's decision: a cause with its evaluated checks, a step with where it routed; for a
/// node the walk never reached, the steps that could have routed to it.
fn explain_node(
    pb: &Playbook,
    i: usize,
    res: &Resolution,
    ctx: &ReadCtx<'_>,
    depth: usize,
    out: &mut Vec<Decision>,
    shown: &mut HashSet<String>,
) {
    let node = &pb.nodes[i];
    let (kind, path_kind) = match node {
        Node::Step(_) => ("step", NodeKind::Check),
        Node::Cause(_) => ("cause", NodeKind::Cause),
    };
    let entry = step_of(res, node.id(), path_kind);
    let outcome = entry.map(|e| e.outcome);
    let visited = outcome.is_some_and(|o| o != Outcome::Skipped);
    let mut d = Decision {
        kind,
        node: node.id().to_string(),
        outcome,
        role: None,
        context: None,
        detail: entry.and_then(|e| e.detail.clone()),
        depth,
        reads: Vec::new(),
    };
    if !visited {
        d.detail = Some("not reached by the walk".to_string());
        out.push(d);
        // Who could have sent the walk here, and where did they send it instead?
        for (j, n) in pb.nodes.iter().enumerate() {
            if let Node::Step(s) = n
                && (s.on_pass.contains(&i) || s.on_fail.contains(&i) || s.on_unknown.contains(&i))
                && shown.insert(s.check.id.clone())
            {
                explain_node(pb, j, res, ctx, depth + 1, out, shown);
            }
        }
        return;
    }
    match node {
        Node::Step(s) => {
            let next = match outcome {
                Some(Outcome::Pass) => &s.on_pass,
                Some(Outcome::Fail) => &s.on_fail,
                _ => &s.on_unknown,
            };
            let targets: Vec<&str> = next.iter().map(|t| pb.nodes[*t].id()).collect();
            d.context = Some(if targets.is_empty() {
                "the walk goes no further from here".to_string()
            } else {
                format!("routes to {}", targets.join(", "))
            });
            d.reads = reads(&s.check, ctx);
            out.push(d);
        }
        Node::Cause(c) => {
            out.push(d);
            for k in &c.checks {
                let Some(e) = step_of(res, &k.id, NodeKind::Check) else {
                    continue;
                };
                if e.outcome == Outcome::Skipped {
                    continue;
                }
                out.push(Decision {
                    kind: "check",
                    node: k.id.clone(),
                    outcome: Some(e.outcome),
                    role: Some(k.role),
                    context: Some(c.id.clone()),
                    detail: e.detail.clone(),
                    depth: depth + 1,
                    reads: reads(k, ctx),
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Coverage.

struct Item {
    playbook: String,
    file: String,
    kind: &'static str,
    id: String,
    cause: Option<String>,
    reached: bool,
    /// For a signal alternative: what its examples lack.
    lacks: Option<&'static str>,
}

struct Coverage {
    playbooks: usize,
    items: Vec<Item>,
}

impl Coverage {
    fn of(under_test: &[&Playbook], reached: &HashSet<(String, &'static str, String)>) -> Coverage {
        let mut items = Vec::new();
        for pb in under_test {
            let hit = |kind: NodeKind, id: &str| {
                reached.contains(&(pb.id.clone(), kind_key(kind), id.to_string()))
            };
            let mut push = |kind: &'static str, id: &str, cause: Option<&str>, reached: bool| {
                items.push(Item {
                    playbook: pb.id.clone(),
                    file: pb.file.clone(),
                    kind,
                    id: id.to_string(),
                    cause: cause.map(str::to_string),
                    reached,
                    lacks: None,
                });
            };
            let mut actions: Vec<&str> = Vec::new();
            for n in &pb.nodes {
                match n {
                    Node::Step(s) => push(
                        "check",
                        &s.check.id,
                        None,
                        hit(NodeKind::Check, &s.check.id),
                    ),
                    Node::Cause(c) => {
                        push("cause", &c.id, None, hit(NodeKind::Cause, &c.id));
                        for k in &c.checks {
                            push("check", &k.id, Some(&c.id), hit(NodeKind::Check, &k.id));
                        }
                        for a in &c.actions {
                            if !actions.contains(&a.id.as_str()) {
                                actions.push(&a.id);
                            }
                        }
                    }
                }
            }
            for a in &pb.inconclusive.actions {
                if !actions.contains(&a.id.as_str()) {
                    actions.push(&a.id);
                }
            }
            for a in actions {
                push("action", a, None, hit(NodeKind::Action, a));
            }
        }
        Coverage {
            playbooks: under_test.len(),
            items,
        }
    }

    /// Every top-level alternative of the tested files' signals, as an item that is reached when
    /// an example matches it and a near miss exists for it.
    fn add_signals(
        &mut self,
        lib: &Library,
        files: &BTreeSet<String>,
        examples: &BTreeMap<String, Examples>,
    ) {
        for a in signal_examples::coverage(lib, files, examples) {
            let lacks = match (a.matched, a.near_missed) {
                (true, true) => None,
                (false, true) => Some("no example matches it"),
                (true, false) => Some("no near miss"),
                (false, false) => Some("no example matches it and no near miss"),
            };
            self.items.push(Item {
                playbook: String::new(),
                file: a.file,
                kind: "signal",
                id: format!("{}: {}", a.signal, a.text),
                cause: None,
                reached: lacks.is_none(),
                lacks,
            });
        }
    }

    fn unreached(&self) -> usize {
        self.items.iter().filter(|i| !i.reached).count()
    }

    fn count(&self, kind: &str) -> (usize, usize) {
        let all = self.items.iter().filter(|i| i.kind == kind);
        let total = all.clone().count();
        (all.filter(|i| i.reached).count(), total)
    }

    fn text(&self) -> String {
        let (c, ct) = self.count("cause");
        let (k, kt) = self.count("check");
        let (a, at) = self.count("action");
        let (g, gt) = self.count("signal");
        let mut s = format!(
            "coverage of {} playbooks: {c}/{ct} causes, {k}/{kt} checks, {a}/{at} actions reached; {g}/{gt} signal alternatives with an example and a near miss\n",
            self.playbooks
        );
        for i in self.items.iter().filter(|i| !i.reached) {
            if let Some(lacks) = i.lacks {
                let _ = writeln!(
                    s,
                    "  not exemplified: {}: signal `{}`: {lacks}",
                    i.file, i.id
                );
                continue;
            }
            let _ = write!(s, "  not reached: {}: {} `{}`", i.file, i.kind, i.id);
            if let Some(c) = &i.cause {
                let _ = write!(s, " (cause `{c}`)");
            }
            s.push('\n');
        }
        s
    }

    fn json(&self) -> Value {
        let (c, ct) = self.count("cause");
        let (k, kt) = self.count("check");
        let (a, at) = self.count("action");
        let (g, gt) = self.count("signal");
        json!({
            "playbooks": self.playbooks,
            "causes": {"reached": c, "total": ct},
            "checks": {"reached": k, "total": kt},
            "actions": {"reached": a, "total": at},
            "signal_alternatives": {"exemplified": g, "total": gt},
            "unreached": self.items.iter().filter(|i| !i.reached).map(|i| json!({
                "playbook": i.playbook, "file": i.file, "kind": i.kind, "id": i.id, "cause": i.cause, "lacks": i.lacks,
            })).collect::<Vec<_>>(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Output.

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".to_string(),
        other => other.to_string(),
    }
}

fn word_str<T: serde::Serialize>(v: &T) -> String {
    show(&word(v))
}

/// The failure report of one unit, as indented lines (shared by text and JUnit output).
fn details(u: &Unit) -> String {
    let mut s = String::new();
    for d in &u.errors {
        for line in d.to_string().lines() {
            let _ = writeln!(s, "    {line}");
        }
    }
    for m in &u.mismatches {
        let _ = writeln!(
            s,
            "    expected {}: {}, got {}",
            m.expect,
            show(&m.want),
            show(&m.got)
        );
    }
    if !u.decisions.is_empty() {
        let _ = writeln!(s, "    what decided:");
    }
    for d in &u.decisions {
        let pad = "  ".repeat(d.depth + 3);
        if d.kind == "note" {
            let _ = writeln!(s, "{pad}{}", d.detail.as_deref().unwrap_or(""));
            continue;
        }
        let _ = write!(s, "{pad}{} `{}`", d.kind, d.node);
        if let Some(r) = d.role {
            let _ = write!(s, " ({})", role_word(r));
        }
        if let Some(o) = d.outcome {
            let _ = write!(s, ": {}", word_str(&o));
        }
        if d.kind == "step"
            && let Some(c) = &d.context
        {
            let _ = write!(s, ", {c}");
        }
        if let Some(t) = &d.detail {
            let _ = write!(s, " — {t}");
        }
        s.push('\n');
        for (path, value) in &d.reads {
            let _ = writeln!(s, "{pad}  read {path} = {value}");
        }
    }
    s
}

fn print_unit(u: &Unit) {
    if u.ok() {
        super::emit(&format!("ok   {}", u.id()));
    } else {
        super::emit(&format!("FAILED {}\n{}", u.id(), details(u).trim_end()));
    }
}

fn unit_json(u: &Unit) -> Value {
    json!({
        "id": u.id(),
        "file": u.file,
        "name": u.name,
        "about": u.about,
        "line": u.line,
        "ok": u.ok(),
        "time_ms": (u.millis * 1000.0).round() / 1000.0,
        "errors": u.errors,
        "failures": u.mismatches.iter().map(|m| json!({"expect": m.expect, "want": m.want, "got": m.got})).collect::<Vec<_>>(),
        "decisions": u.decisions.iter().map(|d| json!({
            "kind": d.kind,
            "node": d.node,
            "outcome": d.outcome.map(|o| word(&o)),
            "role": d.role.map(role_word),
            "context": d.context,
            "detail": d.detail,
            "reads": d.reads.iter().map(|(p, v)| json!({"path": p, "value": v})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "result": u.result,
    })
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters, even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one suite per file, one case per unit.
fn junit(units: &[Unit]) -> String {
    let failed = units.iter().filter(|u| !u.ok()).count();
    let total_ms: f64 = units.iter().map(|u| u.millis).sum();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"whyfail\" tests=\"{}\" failures=\"{failed}\" time=\"{:.3}\">",
        units.len(),
        total_ms / 1000.0
    );
    let mut files: Vec<&str> = Vec::new();
    for u in units {
        if !files.contains(&u.file.as_str()) {
            files.push(&u.file);
        }
    }
    for f in files {
        let mine: Vec<&Unit> = units.iter().filter(|u| u.file == f).collect();
        let fails = mine.iter().filter(|u| !u.ok()).count();
        let ms: f64 = mine.iter().map(|u| u.millis).sum();
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{fails}\" time=\"{:.3}\">",
            xml_escape(f),
            mine.len(),
            ms / 1000.0
        );
        for u in mine {
            let name = u.name.as_deref().unwrap_or("(file)");
            let _ = write!(
                s,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml_escape(f),
                xml_escape(name),
                u.millis / 1000.0
            );
            if u.ok() {
                s.push_str("/>\n");
            } else {
                let message = u
                    .mismatches
                    .first()
                    .map(|m| {
                        format!(
                            "expected {}: {}, got {}",
                            m.expect,
                            show(&m.want),
                            show(&m.got)
                        )
                    })
                    .or_else(|| u.errors.first().map(|d| d.message.clone()))
                    .unwrap_or_default();
                let _ = write!(
                    s,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml_escape(&message),
                    xml_escape(&details(u))
                );
            }
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_deep_and_null_deletes() {
        let mut base =
            json!({"error": {"status": 401, "message": "x"}, "phase": "request", "l": [1, 2]});
        merge(
            &mut base,
            &json!({"error": {"message": null, "code": "c"}, "phase": null, "l": [3], "new": {"a": null, "b": 1}}),
        );
        assert_eq!(
            base,
            json!({"error": {"status": 401, "code": "c"}, "l": [3], "new": {"b": 1}})
        );
    }

    #[test]
    fn reads_hide_secrets() {
        let event = json!({"error": {"message": "bad key sk_live_abcdef"}, "connection": {"secrets": {"api_key": "sk_live_abcdef"}}});
        let facts = Map::new();
        let ctx = ReadCtx::new(&event, &facts);
        assert_eq!(ctx.value("error.message"), "\"bad key [redacted]\"");
        assert!(
            !ctx.value("connection.secrets.api_key (shape only)")
                .contains("sk_live")
        );
        assert_eq!(ctx.value("error.status"), "(not in the event)");
        assert!(ctx.value("facts.github.whoami").contains("not mocked"));
    }

    #[test]
    fn script_paths_follow_optional_chaining() {
        assert_eq!(
            script_paths(
                r#"past(connection?.api_key?.expires_at) && oauth.x == 1 && event.error.status != 2 && connection.used_by.len() > 0"#
            ),
            vec![
                "connection.api_key.expires_at",
                "connection.oauth.x",
                "error.status",
                "connection.used_by"
            ]
        );
    }

    #[test]
    fn xml_is_escaped() {
        assert_eq!(
            xml_escape("a<b & \"c\"\u{1}"),
            "a&lt;b &amp; &quot;c&quot;?"
        );
    }
}
