//! The Rhai sandbox every playbook script runs in, and the helpers scripts may call.
//!
//! Built once per library from `Engine::new_raw()` (no file, module or network access, no
//! `eval`, no wall clock), with limits on operations, call depth and value sizes so a looping
//! or runaway script fails its own check with `error` instead of hanging a diagnosis. On top of
//! the operation limit, every evaluation has a wall-clock budget, and so has a whole diagnosis
//! ([`SCRIPT_BUDGET`], [`DIAGNOSIS_BUDGET`]): Rhai's progress callback (and the native
//! evaluator, every few loop iterations) looks at the clock, so a script whose operations are
//! slow (big values, long strings) stops in time too. Values scripts hold are at most
//! [`MAX_DEPTH`] arrays, maps and function pointers deep: dropping, cloning, comparing or
//! printing a deeper one recurses once per level and could overflow a thread's stack.
//!
//! Helpers that need the current event (`signal`, `header`, `secret`, time helpers relative to
//! the event's `occurred_at`) read a per-thread context that `eval` installs for the duration
//! of one diagnosis; evaluation is synchronous on the calling thread, so this is sound.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use regex::bytes::Regex;

use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicIteratorPackage, BasicMapPackage, BasicMathPackage,
    BasicStringPackage, LanguageCorePackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{Array, Dynamic, Engine, FuncRegistration, INT, ImmutableString, Map};

use crate::signals::{Scan, SignalSet};
use crate::time;

/// Variables every script sees. Natively specialised scripts address them by their index in
/// this list, and `diagnose` pushes them into the scope in this order.
pub const SCOPE_VARS: &[&str] = &[
    "event",
    "error",
    "connection",
    "oauth",
    "platform",
    "history",
    "execution",
    "workflow",
    "node",
    "phase",
    "facts",
    "now",
];

/// Operation budget per script evaluation: about 20 ms of work, far above any real check.
pub const MAX_OPERATIONS: u64 = 100_000;

/// Size limits on values scripts build (natively specialised scripts check the same limits).
pub const MAX_STRING_SIZE: usize = 64 * 1024;
pub const MAX_ARRAY_SIZE: usize = 10_000;
pub const MAX_MAP_SIZE: usize = 10_000;

/// Wall-clock budget of one script evaluation (native and interpreted runs together).
pub const SCRIPT_BUDGET: Duration = Duration::from_millis(200);

/// Wall-clock budget of the scripts of one diagnosis (time spent waiting for live facts is not
/// counted); once it is spent, every further script stops at once.
pub const DIAGNOSIS_BUDGET: Duration = Duration::from_millis(1500);

/// How deep a value a script holds may nest arrays, maps and function pointers. Events parse
/// to at most 128 levels (serde_json's limit) and stay exempt as they are read-only; scripts'
/// own values stop here, far below what overflows a 2 MiB thread stack (a few thousand
/// levels), in debug builds too.
pub const MAX_DEPTH: usize = 64;

/// Rhai operations (or native loop iterations, see `native::exec`) between looks at the clock.
pub(crate) const CLOCK_EVERY: u64 = 64;

/// Why a script was stopped before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overrun {
    /// The script ran past [`SCRIPT_BUDGET`].
    Script,
    /// The diagnosis ran past its budget ([`DIAGNOSIS_BUDGET`] by default).
    Diagnosis,
}

/// Marks what a stopped script reports (tests and `whyfail test` look for it).
pub const STOPPED: &str = "stopped: ";

impl Overrun {
    /// The check's detail: "stopped: the script ran past its 200 ms budget".
    pub fn message(self) -> String {
        match self {
            Overrun::Script => format!(
                "{STOPPED}the script ran past its {} ms budget",
                SCRIPT_BUDGET.as_millis()
            ),
            Overrun::Diagnosis => format!(
                "{STOPPED}the diagnosis ran past its time budget ({} ms by default); its remaining scripts were not run",
                DIAGNOSIS_BUDGET.as_millis()
            ),
        }
    }

    fn token(self) -> &'static str {
        match self {
            Overrun::Script => "whyfail:script-budget",
            Overrun::Diagnosis => "whyfail:diagnosis-budget",
        }
    }

    /// The overrun behind an interpreter error, if that is what stopped it.
    pub(crate) fn of(e: &rhai::EvalAltResult) -> Option<Overrun> {
        use rhai::EvalAltResult as E;
        match e {
            E::ErrorTerminated(token, _) => {
                let t = token.read_lock::<ImmutableString>()?;
                [Overrun::Script, Overrun::Diagnosis]
                    .into_iter()
                    .find(|o| o.token() == t.as_str())
            }
            E::ErrorInFunctionCall(_, _, inner, _) => Overrun::of(inner),
            _ => None,
        }
    }
}

/// The clock state of the current thread's diagnosis and script.
struct Clock {
    /// When the running script first looked at the clock (its first check, a few operations
    /// in): a short script never reads the clock at all.
    script_start: Cell<Option<Instant>>,
    /// The native evaluator started the clock of the running script and gave up on it: the
    /// interpreter, which runs the script next, keeps counting from that start.
    handed_over: Cell<bool>,
    diagnosis_end: Cell<Option<Instant>>,
    /// The diagnosis budget is spent: scripts stop before they start.
    expired: Cell<bool>,
    /// Scripts started in this diagnosis (every `CLOCK_EVERY`th one looks at the clock, so a
    /// playbook of many short scripts is bounded too).
    runs: Cell<u64>,
}

thread_local! {
    static CLOCK: Clock = const {
        Clock {
            script_start: Cell::new(None),
            handed_over: Cell::new(false),
            diagnosis_end: Cell::new(None),
            expired: Cell::new(false),
            runs: Cell::new(0),
        }
    };
}

/// Starts one script evaluation; `Err` when the diagnosis's budget is already spent.
pub(crate) fn begin_script() -> Result<(), Overrun> {
    CLOCK.with(|c| {
        if c.expired.get() {
            return Err(Overrun::Diagnosis);
        }
        c.handed_over.set(false);
        let n = c.runs.get().wrapping_add(1);
        c.runs.set(n);
        if n.is_multiple_of(CLOCK_EVERY)
            && c.diagnosis_end
                .get()
                .is_some_and(|end| Instant::now() >= end)
        {
            c.expired.set(true);
            return Err(Overrun::Diagnosis);
        }
        Ok(())
    })
}

/// Who looks at the clock.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Looker {
    /// The native evaluator's first look (starts the script's clock).
    NativeFirst,
    /// The interpreter's first look (starts the clock unless the native evaluator handed over).
    RhaiFirst,
    /// Any later look.
    Again,
}

/// Whether the running script or the diagnosis is past its budget (reads the clock; called
/// every [`CLOCK_EVERY`] operations, not on every one). A script's clock starts at its first
/// look, so a script that stays short never reads the clock.
pub(crate) fn look_at_clock(who: Looker) -> Option<Overrun> {
    CLOCK.with(|c| {
        let now = Instant::now();
        if c.expired.get() || c.diagnosis_end.get().is_some_and(|end| now >= end) {
            c.expired.set(true);
            return Some(Overrun::Diagnosis);
        }
        let fresh = match who {
            Looker::NativeFirst => true,
            Looker::RhaiFirst => !c.handed_over.replace(false),
            Looker::Again => c.script_start.get().is_none(),
        };
        if fresh {
            c.script_start.set(Some(now));
            c.handed_over.set(who == Looker::NativeFirst);
            return None;
        }
        c.script_start
            .get()
            .filter(|start| now.duration_since(*start) >= SCRIPT_BUDGET)
            .map(|_| Overrun::Script)
    })
}

/// The native evaluator finished the script itself: nothing is handed over.
pub(crate) fn native_done() {
    CLOCK.with(|c| c.handed_over.set(false));
}

/// Gives the diagnosis more time (what waiting for live facts took).
pub(crate) fn extend_diagnosis(by: Duration) {
    CLOCK.with(|c| {
        if let Some(end) = c.diagnosis_end.get() {
            c.diagnosis_end.set(Some(end + by));
        }
    });
}

/// A diagnosis's budget on the current thread, until the guard drops (the previous state,
/// say an enclosing diagnosis's, comes back then).
pub(crate) struct BudgetGuard {
    end: Option<Instant>,
    expired: bool,
    runs: u64,
}

pub(crate) fn budget(total: Duration) -> BudgetGuard {
    CLOCK.with(|c| BudgetGuard {
        end: c.diagnosis_end.replace(Instant::now().checked_add(total)),
        expired: c.expired.replace(false),
        runs: c.runs.replace(0),
    })
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        CLOCK.with(|c| {
            c.diagnosis_end.set(self.end);
            c.expired.set(self.expired);
            c.runs.set(self.runs);
        });
    }
}

/// Containers (arrays, maps, function pointers) a value a script holds may be made of: as many
/// as Rhai's size limits allow arrays and maps together. Function pointers' curried arguments
/// escape Rhai's size check (`f = f.curry(f)` doubles `f` each time), so they count here.
const MAX_NODES: usize = MAX_ARRAY_SIZE + MAX_MAP_SIZE;

/// Whether `v` nests arrays, maps and function pointers (curried arguments) more than `levels`
/// deep, or is made of more than [`MAX_NODES`] of them. Stops as soon as either is exceeded, so
/// it is safe and bounded on any value, cycles through shared values included.
pub(crate) fn too_deep(v: &Dynamic, levels: usize) -> bool {
    let mut nodes = MAX_NODES;
    exceeds(v, levels, &mut nodes)
}

fn exceeds(v: &Dynamic, levels: usize, nodes: &mut usize) -> bool {
    if v.is_shared() {
        // A value being written right now cannot be read; it is checked when it is next read.
        return v
            .read_lock::<Dynamic>()
            .is_some_and(|inner| !inner.is_shared() && exceeds(&inner, levels, nodes));
    }
    if !(v.is_array() || v.is_map() || v.is_fnptr()) {
        return false;
    }
    let (Some(levels), Some(left)) = (levels.checked_sub(1), nodes.checked_sub(1)) else {
        return true;
    };
    *nodes = left;
    if let Some(a) = v.read_lock::<Array>() {
        return a.iter().any(|x| exceeds(x, levels, nodes));
    }
    if let Some(m) = v.read_lock::<Map>() {
        return m.values().any(|x| exceeds(x, levels, nodes));
    }
    if let Some(f) = v.read_lock::<rhai::FnPtr>() {
        return f.curry().iter().any(|x| exceeds(x, levels, nodes));
    }
    false
}

/// What helpers may know about the event being diagnosed.
pub(crate) struct HelperCtx {
    pub now: i64,
    pub error: Dynamic,
    pub secrets: Arc<[(String, String)]>,
    pub signals: Arc<SignalSet>,
    /// The error's text and what signals found in it; shared by contexts of the same error.
    text: Rc<ErrorText>,
    /// The library's `matches()` patterns (see [`PatternSet`]).
    pub patterns: Arc<PatternSet>,
    /// The event's scrubber, for text quoted cut short (`head`, `tail`), built when first needed.
    scrubber: OnceCell<crate::scrub::Scrubber>,
    retry_hint: OnceCell<Option<INT>>,
    /// What `fact("name")` reads and records (see [`LiveCalls`]).
    live: RefCell<LiveCalls>,
    /// `secret(name)` answers so far (see [`HelperCtx::secret_shape`]).
    secret_shapes: RefCell<Vec<(String, Dynamic)>>,
    /// The values of the library's property paths read so far, by number (see
    /// `compile::native::PathSet`).
    fields: RefCell<Vec<Option<Dynamic>>>,
}

/// What helpers derive from the error alone, built when first asked for: the haystack signals
/// search, and the literal pass over it with the signals answered so far. Contexts made for
/// the same error (the two counterfactual worlds) share it.
#[derive(Default)]
pub(crate) struct ErrorText {
    haystack: OnceCell<ImmutableString>,
    scan: OnceCell<Scan>,
}

/// The live facts a script asks for with `fact("name")`: the diagnosis' fact map (shared with
/// the `facts` variable), the names asked for that are not in it yet (the walk fetches them and
/// runs the script again, or, offline, notes that a live check would settle the check), and
/// whether an answer from a live fact was handed to the script.
#[derive(Default)]
pub(crate) struct LiveCalls {
    facts: Option<Dynamic>,
    wanted: Vec<String>,
    used: bool,
}

impl HelperCtx {
    pub fn new(
        now: i64,
        error: Dynamic,
        secrets: Arc<[(String, String)]>,
        signals: Arc<SignalSet>,
        patterns: Arc<PatternSet>,
    ) -> Self {
        Self::sharing_text(now, error, secrets, signals, patterns, Rc::default())
    }

    /// A context whose error is the one `text` was (or will be) made from.
    pub fn sharing_text(
        now: i64,
        error: Dynamic,
        secrets: Arc<[(String, String)]>,
        signals: Arc<SignalSet>,
        patterns: Arc<PatternSet>,
        text: Rc<ErrorText>,
    ) -> Self {
        HelperCtx {
            now,
            error,
            secrets,
            signals,
            text,
            patterns,
            scrubber: OnceCell::new(),
            retry_hint: OnceCell::new(),
            live: RefCell::new(LiveCalls::default()),
            secret_shapes: RefCell::default(),
            fields: RefCell::default(),
        }
    }

    /// The value of property path `id` in this context's variables: read once with `read`,
    /// then kept (the variables never change during a diagnosis, `facts` aside, whose paths
    /// are not numbered). A read that stops (missing data, fallback) is not kept.
    pub(crate) fn field<E>(
        &self,
        id: u32,
        read: impl FnOnce() -> Result<Dynamic, E>,
    ) -> Result<Dynamic, E> {
        let i = id as usize;
        if let Some(Some(v)) = self.fields.borrow().get(i) {
            return Ok(v.clone());
        }
        let v = read()?;
        let mut fields = self.fields.borrow_mut();
        if fields.len() <= i {
            fields.resize(i + 1, None);
        }
        fields[i] = Some(v.clone());
        Ok(v)
    }

    /// Forgets the property values read so far (tests compare evaluators script by script).
    #[cfg(test)]
    pub(crate) fn forget_fields(&self) {
        self.fields.borrow_mut().clear();
    }

    /// Gives `fact("name")` the diagnosis' fact map.
    pub fn set_facts(&self, facts: Dynamic) {
        self.live.borrow_mut().facts = Some(facts);
    }

    /// Forgets what the previous check asked for, before a check runs.
    pub fn live_reset(&self) {
        let mut l = self.live.borrow_mut();
        l.wanted.clear();
        l.used = false;
    }

    /// The facts asked for since the last reset that were not there.
    pub fn live_wanted(&self) -> Vec<String> {
        std::mem::take(&mut self.live.borrow_mut().wanted)
    }

    /// Whether a script was handed a live answer since the last reset.
    pub fn live_used(&self) -> bool {
        self.live.borrow().used
    }

    /// `fact("name")`: the live fact if this diagnosis has it, else `()` (and the name is noted,
    /// so the walk can fetch it and ask again).
    pub fn fact(&self, name: &str) -> Dynamic {
        let mut l = self.live.borrow_mut();
        let v = l
            .facts
            .as_ref()
            .and_then(|f| f.read_lock::<Map>().and_then(|m| m.get(name).cloned()))
            .unwrap_or(Dynamic::UNIT);
        if v.is_unit() {
            if !l.wanted.iter().any(|w| w == name) {
                l.wanted.push(name.to_string());
            }
        } else {
            l.used = true;
        }
        v
    }

    /// The scrubber of this event's secrets (and every credential shape).
    pub(crate) fn scrubber(&self) -> &crate::scrub::Scrubber {
        self.scrubber.get_or_init(|| self.new_scrubber())
    }

    /// The same, told which of the library's fixed texts need no shape search; called before
    /// any script runs, so the sandbox's quotes use it too.
    pub(crate) fn scrubber_knowing(
        &self,
        plain: &Arc<crate::scrub::PlainTexts>,
    ) -> &crate::scrub::Scrubber {
        self.scrubber
            .get_or_init(|| self.new_scrubber().knowing(plain.clone()))
    }

    fn new_scrubber(&self) -> crate::scrub::Scrubber {
        crate::scrub::Scrubber::new(self.secrets.iter().map(|(_, v)| v.as_str()))
    }

    /// Message, code, body and `www-authenticate`, one per line: the text signals look at.
    pub fn haystack(&self) -> &str {
        self.haystack_shared().as_str()
    }

    /// The haystack as a shared string (for `text()`, without copying it).
    pub fn haystack_shared(&self) -> &ImmutableString {
        self.text.haystack.get_or_init(|| {
            let mut s = String::with_capacity(256);
            if let Some(map) = self.error.read_lock::<Map>() {
                for key in ["message", "code", "body"] {
                    if let Some(v) = map.get(key) {
                        push_text(&mut s, v);
                        s.push('\n');
                    }
                }
                if let Some(h) = map
                    .get("headers")
                    .and_then(|h| header_in(h, "www-authenticate"))
                {
                    s.push_str(&h);
                }
            }
            // Each part is capped already (see `event`), their sum may not be.
            if s.len() > MAX_STRING_SIZE {
                s = crate::eval::event::cap(&s);
            }
            s.into()
        })
    }

    pub fn signal(&self, name: &str) -> bool {
        self.signals.id(name).is_some_and(|id| self.signal_id(id))
    }

    pub fn signal_id(&self, id: usize) -> bool {
        // First question this event: one literal pass marks the signals that could match.
        let scan = self
            .text
            .scan
            .get_or_init(|| self.signals.scan(self.haystack()));
        self.signals.matches(id, self.haystack(), scan)
    }

    /// A response header, case-insensitively, or `()`.
    pub fn header(&self, name: &str) -> Dynamic {
        self.error
            .read_lock::<Map>()
            .and_then(|m| m.get("headers").and_then(|h| header_in(h, name)))
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT)
    }
}

/// Appends a value as text: strings as they are, everything else as compact JSON.
fn push_text(out: &mut String, v: &Dynamic) {
    if v.is_unit() {
        return;
    }
    if let Some(s) = v.read_lock::<ImmutableString>() {
        out.push_str(&s);
        return;
    }
    match serde_json::to_string(v) {
        Ok(j) => out.push_str(&j),
        Err(_) => out.push_str(&v.to_string()),
    }
}

thread_local! {
    static CTX: RefCell<Option<Rc<HelperCtx>>> = const { RefCell::new(None) };
}

/// Installs `ctx` for the current thread until the guard drops.
pub(crate) struct CtxGuard(Option<Rc<HelperCtx>>);

pub(crate) fn install(ctx: Rc<HelperCtx>) -> CtxGuard {
    CtxGuard(CTX.with(|c| c.borrow_mut().replace(ctx)))
}

impl Drop for CtxGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        CTX.with(|c| *c.borrow_mut() = prev);
    }
}

fn with_ctx<R>(f: impl FnOnce(&HelperCtx) -> R) -> Option<R> {
    CTX.with(|c| c.borrow().as_ref().map(|ctx| f(ctx)))
}

fn now() -> i64 {
    with_ctx(|c| c.now).unwrap_or_else(time::wall_clock)
}

/// Case-insensitive lookup in a headers map.
pub(crate) fn header_of(headers: &Dynamic, name: &str) -> Option<String> {
    header_in(headers, name)
}

fn header_in(headers: &Dynamic, name: &str) -> Option<String> {
    let map = headers.read_lock::<Map>()?;
    if let Some(v) = map.get(name) {
        return Some(v.to_string());
    }
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.to_string())
}

fn opt(v: Option<impl Into<Dynamic>>) -> Dynamic {
    v.map(Into::into).unwrap_or(Dynamic::UNIT)
}

/// Text of a value for helpers that accept "anything stringy"; `()` stays `None`.
pub(crate) fn text_of(v: &Dynamic) -> Option<String> {
    if v.is_unit() {
        None
    } else if let Some(s) = v.read_lock::<ImmutableString>() {
        Some(s.to_string())
    } else {
        Some(v.to_string())
    }
}

/// A `matches()` or `secret_matches()` pattern written as a string literal in a playbook:
/// checked when the library loads, compiled the first time an event needs it, and kept with
/// the library (so the memory it takes is bounded by the playbooks, never by events).
#[derive(Debug)]
pub struct LazyRegex {
    pattern: String,
    re: OnceLock<Option<Regex>>,
}

impl LazyRegex {
    pub fn new(pattern: &str) -> Self {
        LazyRegex {
            pattern: pattern.to_string(),
            re: OnceLock::new(),
        }
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The compiled pattern (`None` if it does not compile; the loader reports that).
    pub fn get(&self) -> Option<&Regex> {
        self.re.get_or_init(|| compile_ci(&self.pattern)).as_ref()
    }
}

/// The library's literal `matches()` patterns, by text. A pattern given at run time (built
/// from event data, say) is matched as one of these when it is one, and as plain text
/// otherwise: no regular expression is ever compiled from an event.
#[derive(Debug, Default)]
pub struct PatternSet {
    by_text: HashMap<String, Arc<LazyRegex>>,
}

impl PatternSet {
    pub fn get(&self, pattern: &str) -> Option<&LazyRegex> {
        self.by_text.get(pattern).map(|p| &**p)
    }

    /// The shared entry for a literal pattern, added if new.
    pub(crate) fn intern(&mut self, pattern: &str) -> Arc<LazyRegex> {
        self.by_text
            .entry(pattern.to_string())
            .or_insert_with(|| Arc::new(LazyRegex::new(pattern)))
            .clone()
    }

    pub fn len(&self) -> usize {
        self.by_text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_text.is_empty()
    }
}

/// How many `matches()` patterns this process has compiled (each library literal at most once
/// per library; never one per event): what the hostile-input tests count.
static COMPILED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// See [`COMPILED`].
pub fn patterns_compiled() -> usize {
    COMPILED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Patterns match ASCII case-insensitively, like signals: Unicode case folding made each
/// compiled pattern several times larger for error texts that are ASCII anyway.
pub fn compile_ci(pattern: &str) -> Option<Regex> {
    COMPILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    regex::bytes::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .unicode(false)
        .size_limit(1 << 20)
        .build()
        .ok()
}

/// `matches(text, pattern)` and `secret_matches`: the library's compiled pattern when
/// `pattern` is one of its literals, else `pattern` as plain text (ASCII case-insensitively).
pub(crate) fn match_pattern(text: &str, pattern: &str) -> bool {
    let known = with_ctx(|c| {
        c.patterns
            .get(pattern)
            .map(|p| p.get().is_some_and(|re| re.is_match(text.as_bytes())))
    })
    .flatten();
    known.unwrap_or_else(|| contains_ascii_ci(text, pattern))
}

/// Whether `needle` occurs in `haystack`, ASCII case-insensitively.
pub(crate) fn contains_ascii_ci(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// `has(x)`: neither `()` nor blank text.
pub fn has_value(v: &Dynamic) -> bool {
    !(v.is_unit() || text_of(v).is_some_and(|s| s.trim().is_empty()))
}

/// Splits scopes given as an array or a space/comma separated string.
fn scope_list(v: &Dynamic) -> Vec<String> {
    if let Some(arr) = v.read_lock::<Array>() {
        return arr
            .iter()
            .filter_map(text_of)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    text_of(v)
        .map(|s| {
            s.split([' ', ','])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `dig(value, path)` for natively specialised scripts.
pub(crate) fn dig(root: &Dynamic, path: &str) -> Dynamic {
    get_path(root, path)
}

/// Safe path access: `dig(value, "a.b.0.c")` yields `()` for anything missing.
/// (Not `get`: the map package's `get(map, key)` would shadow it.) Walks under read locks so
/// only the value found is cloned, never the maps on the way.
fn get_path(root: &Dynamic, path: &str) -> Dynamic {
    fn walk<'p>(cur: &Dynamic, mut segs: impl Iterator<Item = &'p str>) -> Dynamic {
        let Some(seg) = segs.next() else {
            return cur.clone();
        };
        if let Some(map) = cur.read_lock::<Map>() {
            return map.get(seg).map_or(Dynamic::UNIT, |v| walk(v, segs));
        }
        if let Some(arr) = cur.read_lock::<Array>() {
            return seg
                .parse::<usize>()
                .ok()
                .and_then(|i| arr.get(i))
                .map_or(Dynamic::UNIT, |v| walk(v, segs));
        }
        Dynamic::UNIT
    }
    walk(root, path.split('.').filter(|s| !s.is_empty()))
}

/// Seconds to wait, from whatever the response says (see `wait`), worked out once per event.
fn retry_hint(c: &HelperCtx) -> Option<INT> {
    *c.retry_hint.get_or_init(|| {
        let err = c.error.read_lock::<Map>()?;
        crate::wait::retry_hint(&err, c.haystack(), c.now)
    })
}

/// The most readable message the service gave: the first non-blank of the usual body fields
/// (`error.message`, `error_description`, `message`, `errorMessages[0]`, `errors[0].message`,
/// ...), then `error.message`, a string body, `body.error`, `error.code`, else "HTTP <status>".
/// Long text is cut at a word boundary, so a token in it is never cut in half.
fn best_message(c: &HelperCtx) -> String {
    const PATHS: &[&str] = &[
        "body.error.message",
        "body.error_description",
        "body.message",
        "body.errorMessages.0",
        "body.0.message",
        "body.errors.0.message",
        "body.errors.0.detail",
        "body.detail",
        "message",
        "body",
        "body.error",
        "code",
    ];
    for path in PATHS {
        let v = get_path(&c.error, path);
        if let Some(s) = v.read_lock::<ImmutableString>()
            && !s.trim().is_empty()
        {
            return head(s.trim(), 220);
        }
    }
    match get_path(&c.error, "status") {
        v if v.is_unit() => "error".to_string(),
        v => format!("HTTP {v}"),
    }
}

/// `text` scrubbed before a quote cuts it: a credential cut in half (its name, scheme or
/// start left out) could no longer be recognised in the output.
fn scrubbed_for_quote(text: &str) -> String {
    with_ctx(|c| c.scrubber().clean(text).into_owned())
        .unwrap_or_else(|| crate::scrub::Scrubber::default().clean(text).into_owned())
}

/// `text` cut after about `max` characters at a word boundary, with "…".
fn head(text: &str, max: usize) -> String {
    let flat = scrubbed_for_quote(text).replace(['\n', '\r'], " ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut out = String::new();
    for word in flat.split(' ') {
        if out.chars().count() + word.chars().count() > max.saturating_sub(10) {
            break;
        }
        out.push_str(word);
        out.push(' ');
    }
    out.push('…');
    out
}

/// The last `max` characters of `text` with a leading "…": client error chains put the cause
/// at the end.
fn tail(text: &str, max: usize) -> String {
    let flat = scrubbed_for_quote(text).replace(['\n', '\r'], " ");
    let n = flat.chars().count();
    if n <= max {
        return flat;
    }
    let keep = max.saturating_sub(20).max(1);
    format!("…{}", flat.chars().skip(n - keep).collect::<String>())
}

/// What a script may learn about a secret: its shape, never its value.
fn describe_secret(name: &str) -> Dynamic {
    with_ctx(|c| c.secret_shape(name)).unwrap_or(Dynamic::UNIT)
}

/// How many `secret(name)` answers one event keeps (names come from the library, so a
/// handful; a script building names from event data must not grow the list without bound).
const MAX_SECRET_SHAPES: usize = 16;

impl HelperCtx {
    /// `secret(name)`, built once per event and name: checks ask for the same secret's shape
    /// again and again, and each answer is a map of ten fields.
    fn secret_shape(&self, name: &str) -> Dynamic {
        if let Some((_, d)) = self.secret_shapes.borrow().iter().find(|(k, _)| k == name) {
            return d.clone();
        }
        let d = Dynamic::from_map(shape_of_secret(&self.secrets, name));
        let mut memo = self.secret_shapes.borrow_mut();
        if memo.len() < MAX_SECRET_SHAPES {
            memo.push((name.to_string(), d.clone()));
        }
        d
    }
}

fn shape_of_secret(secrets: &[(String, String)], name: &str) -> Map {
    let mut m = Map::new();
    let value = secrets
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    m.insert(
        "present".into(),
        value.is_some_and(|v| !v.is_empty()).into(),
    );
    if let Some(v) = value {
        let trimmed = v.trim();
        m.insert("length".into(), (v.chars().count() as INT).into());
        m.insert(
            "leading_whitespace".into(),
            (v.len() != v.trim_start().len()).into(),
        );
        m.insert(
            "trailing_whitespace".into(),
            (v.len() != v.trim_end().len()).into(),
        );
        m.insert(
            "has_newline".into(),
            (v.contains('\n') || v.contains('\r')).into(),
        );
        m.insert(
            "inner_whitespace".into(),
            trimmed.contains(char::is_whitespace).into(),
        );
        let lower = trimmed.to_ascii_lowercase();
        let scheme = ["bearer ", "basic ", "token ", "apikey ", "api-key "]
            .iter()
            .find(|p| lower.starts_with(*p))
            .map(|p| p.trim().to_string())
            .unwrap_or_default();
        m.insert("scheme_prefix".into(), scheme.into());
        let label = lower.contains(':')
            && lower.split(':').next().is_some_and(|l| {
                [
                    "client id",
                    "client_id",
                    "client secret",
                    "client_secret",
                    "secret",
                    "key",
                    "api key",
                    "token",
                    "value",
                ]
                .contains(&l.trim())
            });
        m.insert("label_prefix".into(), label.into());
        m.insert(
            "quoted".into(),
            (trimmed.len() > 1 && (trimmed.starts_with('"') || trimmed.starts_with('\''))).into(),
        );
        m.insert(
            "looks_like_jwt".into(),
            (trimmed.split('.').count() == 3 && trimmed.starts_with("eyJ")).into(),
        );
    }
    m
}

fn secret_matches(name: &str, pattern: &str) -> Dynamic {
    with_ctx(|c| {
        c.secrets
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| match_pattern(v, pattern))
    })
    .flatten()
    .map(Dynamic::from)
    .unwrap_or(Dynamic::UNIT)
}

/// Parses a URL into `scheme`, `host`, `port`, `path`, `query` (or `()` when it is not one).
fn parse_url(v: &Dynamic) -> Dynamic {
    let Some(s) = text_of(v) else {
        return Dynamic::UNIT;
    };
    let Ok(u) = url::Url::parse(s.trim()) else {
        return Dynamic::UNIT;
    };
    let mut m = Map::new();
    m.insert("scheme".into(), u.scheme().into());
    m.insert(
        "host".into(),
        opt(u.host_str().map(str::to_ascii_lowercase)),
    );
    m.insert("port".into(), opt(u.port_or_known_default().map(INT::from)));
    let path = u.path().trim_end_matches('/');
    m.insert("path".into(), path.into());
    m.insert("query".into(), opt(u.query().map(str::to_string)));
    m.insert(
        "private".into(),
        is_private_host(u.host_str().unwrap_or("")).into(),
    );
    m.into()
}

/// Loopback, private, link-local, CGNAT, unique-local, documentation and metadata targets.
pub fn is_private_host(host: &str) -> bool {
    use std::net::IpAddr;
    let h = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if h == "localhost"
        || h.ends_with(".localhost")
        || h.ends_with(".internal")
        || h.ends_with(".local")
    {
        return true;
    }
    let ip = match h.parse::<IpAddr>() {
        // An IPv4-mapped IPv6 address is as private as the IPv4 address it carries.
        Ok(IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        Ok(ip) => ip,
        Err(_) => return false,
    };
    // Inside someone's own network: not documentation, benchmarking or multicast ranges.
    matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
        || matches!(
            crate::addr::classify(ip),
            Some(
                "loopback"
                    | "unspecified"
                    | "cloud metadata"
                    | "link-local"
                    | "private"
                    | "carrier-grade NAT"
                    | "unique-local"
            )
        )
}

/// The sandboxed engine with every helper registered.
pub fn engine() -> Engine {
    let mut e = Engine::new_raw();
    // One flattened module instead of nine: an uncached function call probes every global
    // module in turn, and each script evaluation starts with a cold resolution cache.
    let mut packages = rhai::Module::new();
    for m in [
        LanguageCorePackage::new().as_shared_module(),
        ArithmeticPackage::new().as_shared_module(),
        LogicPackage::new().as_shared_module(),
        BasicStringPackage::new().as_shared_module(),
        MoreStringPackage::new().as_shared_module(),
        BasicArrayPackage::new().as_shared_module(),
        BasicMapPackage::new().as_shared_module(),
        BasicMathPackage::new().as_shared_module(),
        BasicIteratorPackage::new().as_shared_module(),
    ] {
        packages.combine_flatten((*m).clone());
    }
    packages.build_index();
    e.register_global_module(packages.into());

    e.set_max_operations(MAX_OPERATIONS);
    e.set_max_call_levels(16);
    e.set_max_expr_depths(64, 32);
    e.set_max_string_size(MAX_STRING_SIZE);
    e.set_max_array_size(MAX_ARRAY_SIZE);
    e.set_max_map_size(MAX_MAP_SIZE);
    e.set_max_variables(256);
    e.set_max_functions(64);
    e.set_max_modules(0);
    e.set_strict_variables(true);
    e.disable_symbol("eval");
    // The wall clock, every CLOCK_EVERY operations (see `look_at_clock`).
    e.on_progress(|ops| {
        if !ops.is_multiple_of(CLOCK_EVERY) {
            return None;
        }
        let who = if ops == CLOCK_EVERY {
            Looker::RhaiFirst
        } else {
            Looker::Again
        };
        look_at_clock(who).map(|o| Dynamic::from(o.token()))
    });
    // Depth and size: a value only grows by being read from a variable and wrapped again, so a
    // variable whose value is too deep (or, through function pointers, too big) stops the
    // script before it grows further. Literal nesting is bounded by the expression depth
    // limits. Constants are exempt: they cannot grow, and the event's sections, pushed as
    // constants, are too big to walk on every read.
    #[allow(deprecated)] // "volatile", not deprecated
    e.on_var(|name, index, ctx| {
        let scope = ctx.scope();
        // `index` counts from the end of the scope (1 = the last variable), as `iter_raw` does.
        let value = match index.checked_sub(1).and_then(|i| scope.iter_raw().nth(i)) {
            Some((n, _, v)) if n == name => Some(v),
            _ => scope.get(name),
        };
        match value {
            Some(v) if !v.is_read_only() && too_deep(v, MAX_DEPTH) => {
                Err(rhai::EvalAltResult::ErrorDataTooLarge(
                    format!(
                        "Value built by the script (over {MAX_DEPTH} levels of arrays and maps, or over {MAX_NODES} of them)"
                    ),
                    rhai::Position::NONE,
                )
                .into())
            }
            _ => Ok(None),
        }
    });
    register_helpers(&mut e);
    e
}

/// A helper as natively specialised scripts call it: the same function the Rhai registration
/// wraps; `None` when the arguments are not of the types the registration takes (Rhai then
/// decides, exactly as it would have).
pub(crate) type NativeHelper = fn(&[Dynamic]) -> Option<Dynamic>;

fn str_arg(v: &Dynamic) -> Option<ImmutableString> {
    v.read_lock::<ImmutableString>().map(|s| s.clone())
}

fn int_arg(v: &Dynamic) -> Option<INT> {
    v.is_int().then(|| v.as_int().ok()).flatten()
}

/// Native versions of the helpers, by name and arity. Every one mirrors its registration in
/// [`register_helpers`] line for line.
pub(crate) fn native_helper(name: &str, arity: usize) -> Option<NativeHelper> {
    let f: NativeHelper = match (name, arity) {
        ("dig", 2) => |a| Some(get_path(&a[0], &str_arg(&a[1])?)),
        ("contains_ci", 2) => |a| {
            let needle = str_arg(&a[1])?;
            Some(
                text_of(&a[0])
                    .is_some_and(|t| t.to_lowercase().contains(&needle.to_lowercase()))
                    .into(),
            )
        },
        ("ts", 1) => |a| Some(opt(time::parse_dynamic(&a[0]))),
        ("past", 1) => |a| Some(opt(time::parse_dynamic(&a[0]).map(|t| t <= now()))),
        ("future", 1) => |a| Some(opt(time::parse_dynamic(&a[0]).map(|t| t > now()))),
        ("seconds_since", 1) => |a| Some(opt(time::parse_dynamic(&a[0]).map(|t| now() - t))),
        ("seconds_until", 1) => |a| Some(opt(time::parse_dynamic(&a[0]).map(|t| t - now()))),
        ("now", 0) => |_| Some(now().into()),
        ("retry_hint", 0) => |_| Some(opt(with_ctx(retry_hint).flatten())),
        ("fact", 1) => |a| {
            let name = str_arg(&a[0])?;
            Some(with_ctx(|c| c.fact(&name)).unwrap_or(Dynamic::UNIT))
        },
        // Rhai's own `parse_int`; text that is not a number is Rhai's error to raise.
        ("parse_int", 1) => |a| {
            str_arg(&a[0])?
                .trim()
                .parse::<INT>()
                .ok()
                .map(Dynamic::from)
        },
        ("reset_hint", 0) => |_| {
            Some(opt(with_ctx(|c| {
                crate::wait::reset_hint(c.haystack(), c.now)
            })
            .flatten()))
        },
        ("midnight_in", 1) => |a| Some(opt(crate::wait::midnight_in(&str_arg(&a[0])?, now()))),
        ("message", 0) => |_| Some(with_ctx(best_message).unwrap_or_default().into()),
        ("url", 1) => |a| Some(parse_url(&a[0])),
        ("is_private_host", 1) => |a| Some(is_private_host(&str_arg(&a[0])?).into()),
        ("secret", 1) => |a| Some(describe_secret(&str_arg(&a[0])?)),
        ("secret_matches", 2) => |a| Some(secret_matches(&str_arg(&a[0])?, &str_arg(&a[1])?)),
        ("missing", 2) => |a| Some(missing_scopes(&a[0], &a[1])),
        ("scopes", 1) => |a| {
            Some(Dynamic::from_array(
                scope_list(&a[0]).into_iter().map(Dynamic::from).collect(),
            ))
        },
        ("is_unit", 1) => |a| Some(a[0].is_unit().into()),
        ("tail", 2) => |a| {
            let max = int_arg(&a[1])?;
            Some(
                text_of(&a[0])
                    .map(|t| tail(&t, max.max(1) as usize))
                    .unwrap_or_default()
                    .into(),
            )
        },
        ("head", 2) => |a| {
            let max = int_arg(&a[1])?;
            Some(
                text_of(&a[0])
                    .map(|t| head(&t, max.max(1) as usize))
                    .unwrap_or_default()
                    .into(),
            )
        },
        ("ago", 1) => |a| {
            Some(opt(
                time::parse_dynamic(&a[0]).map(|t| time::relative(t - now()))
            ))
        },
        ("duration", 1) => |a| {
            if a[0].is_int() {
                Some(time::human_duration(a[0].as_int().ok()?.unsigned_abs()).into())
            } else if a[0].is_float() {
                Some(time::human_duration(a[0].as_float().ok()?.abs() as u64).into())
            } else {
                None
            }
        },
        ("retry_after_seconds", 1) => |a| {
            Some(opt(
                text_of(&a[0]).and_then(|s| time::retry_after(&s, now()))
            ))
        },
        ("reset_seconds", 1) => {
            |a| Some(opt(text_of(&a[0]).and_then(|s| time::reset_in(&s, now()))))
        }
        ("backoff", 1) => |a| {
            let n = a[0].as_int().unwrap_or(1).clamp(1, 7) as u32;
            Some((60 * 2_i64.pow(n - 1)).min(3600).into())
        },
        ("join", 2) => |a| {
            let sep = str_arg(&a[1])?;
            let arr = a[0].read_lock::<Array>()?;
            Some(
                arr.iter()
                    .filter_map(text_of)
                    .collect::<Vec<_>>()
                    .join(&sep)
                    .into(),
            )
        },
        _ => return None,
    };
    Some(f)
}

fn missing_scopes(required: &Dynamic, granted: &Dynamic) -> Dynamic {
    if required.is_unit() || granted.is_unit() {
        return Dynamic::UNIT;
    }
    let granted: Vec<String> = scope_list(granted)
        .into_iter()
        .map(|s| s.to_lowercase())
        .collect();
    let missing: Array = scope_list(required)
        .into_iter()
        .filter(|r| !granted.contains(&r.to_lowercase()))
        .map(Dynamic::from)
        .collect();
    missing.into()
}

/// Helpers that read the current event (or its time) are registered as *volatile*: an
/// optimizer allowed to fold pure calls on constant arguments at load time (level `Full`)
/// must never bake in `signal("x")` or `now()` for no event. (`Full` was measured: no gain in
/// instructions per event over the default level, so the default stays.)
fn register_helpers(e: &mut Engine) {
    // Event text and signals.
    FuncRegistration::new("signal")
        .with_volatility(true)
        .register_into_engine(e, |name: &str| {
            with_ctx(|c| c.signal(name)).unwrap_or(false)
        });
    // A live fact, fetched only when a script reaches this call (see `LiveCalls`).
    FuncRegistration::new("fact")
        .with_volatility(true)
        .register_into_engine(e, |name: &str| -> Dynamic {
            with_ctx(|c| c.fact(name)).unwrap_or(Dynamic::UNIT)
        });
    FuncRegistration::new("text")
        .with_volatility(true)
        .register_into_engine(e, || -> ImmutableString {
            with_ctx(|c| c.haystack_shared().clone()).unwrap_or_default()
        });
    FuncRegistration::new("header")
        .with_volatility(true)
        .register_into_engine(e, |name: &str| -> Dynamic {
            with_ctx(|c| c.header(name)).unwrap_or(Dynamic::UNIT)
        });
    e.register_fn("matches", |text: Dynamic, pattern: &str| {
        text_of(&text).is_some_and(|t| match_pattern(&t, pattern))
    });
    e.register_fn("contains_ci", |text: Dynamic, needle: &str| {
        text_of(&text).is_some_and(|t| t.to_lowercase().contains(&needle.to_lowercase()))
    });
    e.register_fn("lower", |v: Dynamic| -> Dynamic {
        opt(text_of(&v).map(|s| s.to_lowercase()))
    });
    e.register_fn("has", |v: Dynamic| has_value(&v));
    e.register_fn("dig", |v: Dynamic, path: &str| get_path(&v, path));
    e.register_fn("is_unit", |v: Dynamic| v.is_unit());

    FuncRegistration::new("message")
        .with_volatility(true)
        .register_into_engine(e, || -> String {
            with_ctx(best_message).unwrap_or_default()
        });
    e.register_fn("tail", |v: Dynamic, max: INT| -> String {
        text_of(&v)
            .map(|t| tail(&t, max.max(1) as usize))
            .unwrap_or_default()
    });
    e.register_fn("head", |v: Dynamic, max: INT| -> String {
        text_of(&v)
            .map(|t| head(&t, max.max(1) as usize))
            .unwrap_or_default()
    });

    // Time, relative to the event's occurred_at.
    FuncRegistration::new("now")
        .with_volatility(true)
        .register_into_engine(e, now);
    e.register_fn("ts", |v: Dynamic| -> Dynamic {
        opt(time::parse_dynamic(&v))
    });
    FuncRegistration::new("past")
        .with_volatility(true)
        .register_into_engine(e, |v: Dynamic| -> Dynamic {
            opt(time::parse_dynamic(&v).map(|t| t <= now()))
        });
    FuncRegistration::new("future")
        .with_volatility(true)
        .register_into_engine(e, |v: Dynamic| -> Dynamic {
            opt(time::parse_dynamic(&v).map(|t| t > now()))
        });
    FuncRegistration::new("seconds_since")
        .with_volatility(true)
        .register_into_engine(e, |v: Dynamic| -> Dynamic {
            opt(time::parse_dynamic(&v).map(|t| now() - t))
        });
    FuncRegistration::new("seconds_until")
        .with_volatility(true)
        .register_into_engine(e, |v: Dynamic| -> Dynamic {
            opt(time::parse_dynamic(&v).map(|t| t - now()))
        });
    FuncRegistration::new("ago")
        .with_volatility(true)
        .register_into_engine(e, |v: Dynamic| -> Dynamic {
            opt(time::parse_dynamic(&v).map(|t| time::relative(t - now())))
        });
    e.register_fn("duration", |secs: INT| {
        time::human_duration(secs.unsigned_abs())
    });
    e.register_fn("duration", |secs: f64| {
        time::human_duration(secs.abs() as u64)
    });
    FuncRegistration::new("retry_after_seconds")
        .with_volatility(true)
        .register_into_engine(e, |v: Dynamic| -> Dynamic {
            opt(text_of(&v).and_then(|s| time::retry_after(&s, now())))
        });
    FuncRegistration::new("reset_seconds")
        .with_volatility(true)
        .register_into_engine(e, |v: Dynamic| -> Dynamic {
            opt(text_of(&v).and_then(|s| time::reset_in(&s, now())))
        });
    FuncRegistration::new("retry_hint")
        .with_volatility(true)
        .register_into_engine(e, || -> Dynamic { opt(with_ctx(retry_hint).flatten()) });
    FuncRegistration::new("reset_hint")
        .with_volatility(true)
        .register_into_engine(e, || -> Dynamic {
            opt(with_ctx(|c| crate::wait::reset_hint(c.haystack(), c.now)).flatten())
        });
    FuncRegistration::new("midnight_in")
        .with_volatility(true)
        .register_into_engine(e, |zone: &str| -> Dynamic {
            opt(crate::wait::midnight_in(zone, now()))
        });
    e.register_fn("backoff", |failures: Dynamic| -> INT {
        // 60 s, doubling with each consecutive failure, capped at an hour.
        let n = failures.as_int().unwrap_or(1).clamp(1, 7) as u32;
        (60 * 2_i64.pow(n - 1)).min(3600)
    });

    // Scopes.
    e.register_fn("scopes", |v: Dynamic| -> Array {
        scope_list(&v).into_iter().map(Dynamic::from).collect()
    });
    e.register_fn("missing", |required: Dynamic, granted: Dynamic| {
        missing_scopes(&required, &granted)
    });
    e.register_fn("join", |a: Array, sep: &str| {
        a.iter().filter_map(text_of).collect::<Vec<_>>().join(sep)
    });

    // URLs and hosts.
    e.register_fn("url", |v: Dynamic| parse_url(&v));
    e.register_fn("is_private_host", |h: &str| is_private_host(h));

    // Secrets: shape only.
    FuncRegistration::new("secret")
        .with_volatility(true)
        .register_into_engine(e, describe_secret);
    FuncRegistration::new("secret_matches")
        .with_volatility(true)
        .register_into_engine(e, secret_matches);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_hosts() {
        for h in [
            "10.0.4.12",
            "127.0.0.1",
            "169.254.169.254",
            "100.100.100.200",
            "[::1]",
            "::ffff:10.0.0.1",
            "fd00:ec2::254",
            "localhost",
            "metadata.google.internal",
        ] {
            assert!(is_private_host(h), "{h}");
        }
        for h in ["8.8.8.8", "api.github.com", "2606:4700::1"] {
            assert!(!is_private_host(h), "{h}");
        }
    }

    #[test]
    fn helpers_work_without_event() {
        let e = engine();
        let r: Dynamic = e
            .eval_expression(r#"missing(["repo", "read:user"], "read:user user")"#)
            .unwrap();
        assert_eq!(r.to_string(), r#"["repo"]"#);
        let r: Dynamic = e
            .eval_expression(r#"url("https://App.example.com:443/api/oauth/callback/").path"#)
            .unwrap();
        assert_eq!(r.to_string(), "/api/oauth/callback");
        let r: bool = e
            .eval_expression(
                r#"matches("SSL: CERTIFICATE_VERIFY_FAILED", "certificate_verify_failed")"#,
            )
            .unwrap();
        assert!(r);
    }

    #[test]
    fn trims_long_text_for_panels() {
        let long = "word ".repeat(100);
        let h = head(&long, 50);
        assert!(h.chars().count() <= 50 && h.ends_with('…'), "{h}");
        let t = tail(&format!("{long}the cause"), 40);
        assert!(
            t.starts_with('…') && t.ends_with("the cause") && t.chars().count() <= 40,
            "{t}"
        );
        assert_eq!(head("short\nline", 50), "short line");
    }

    #[test]
    fn loops_hit_the_operation_limit() {
        let e = engine();
        let err = e
            .eval::<Dynamic>("let x = 0; loop { x += 1; }")
            .unwrap_err();
        assert!(
            matches!(*err, rhai::EvalAltResult::ErrorTooManyOperations(_)),
            "{err}"
        );
    }
}
