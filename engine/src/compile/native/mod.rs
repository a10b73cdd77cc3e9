//! Load-time specialisation of scripts into native code.
//!
//! Most matchers and checks are a handful of field comparisons, signal tests and `&&`/`||`:
//! `error.status == 429 || signal("rate_limit")`. Interpreting these costs far more than the
//! comparisons themselves (function resolution, argument vectors), and they run for every
//! event. At compile time we walk Rhai's own AST (no second parser) and build a native tree:
//!
//! - single expressions of the shapes below get the small expression tree in this file;
//! - every other script (statements, locals, `if`/`else`, loops, method calls, arithmetic,
//!   string building) is compiled by [`program`] into a statement tree with local slots,
//!   evaluated by `exec` with the value semantics in `ops`.
//!
//! Exactness rule: a native tree either decides exactly as Rhai would, or gives up
//! (`Stop::Fallback`) and the interpreter runs the original AST. Anything outside the mirrored
//! semantics (an unusual operand type, an error, a value over the engine's size limits) falls
//! back. The tests in `tests.rs` run every script of the standard library both ways on every
//! test event and require the same answer.

use std::sync::{Arc, Mutex};

use rhai::{AST, ASTFlags, Array, Dynamic, Expr, INT, ImmutableString, Map, Stmt};

use crate::sandbox::{self, HelperCtx, LazyRegex, PatternSet, SCOPE_VARS};
use crate::signals::SignalSet;

mod exec;
mod ops;
pub mod program;
#[cfg(test)]
mod tests;

pub use program::Program;

/// A natively evaluable expression.
#[derive(Debug, Clone)]
pub enum Native {
    Lit(Dynamic),
    /// A scope variable followed by properties; the flag marks `?.` before that property.
    /// `id` numbers the path in the library's [`PathSet`] (none for paths not kept).
    Path {
        var: usize,
        props: Box<[(ImmutableString, bool)]>,
        id: Option<u32>,
    },
    Eq {
        lhs: Box<Native>,
        rhs: Box<Native>,
        negate: bool,
    },
    And(Box<[Native]>),
    Or(Box<[Native]>),
    Not(Box<Native>),
    Coalesce(Box<[Native]>),
    /// `<`, `<=`, `>`, `>=` between integers.
    Cmp {
        lhs: Box<Native>,
        rhs: Box<Native>,
        op: CmpOp,
    },
    /// `x in [literals]`.
    In {
        needle: Box<Native>,
        items: Box<[Dynamic]>,
    },
    Signal(usize),
    Has(Box<Native>),
    Header(ImmutableString),
    /// `matches(x, "literal")`; the regex is compiled on first use and kept.
    Matches(Box<Native>, Arc<LazyRegex>),
    /// `text()`, without copying the haystack when it feeds `matches`.
    Text,
    Lower(Box<Native>),
    /// Any other helper with a native twin (`dig`, `past`, `url`, `secret`, ...); the flag says
    /// whether its arguments must be unwrapped first (see `prints_args`).
    Helper(sandbox::NativeHelper, Box<[Native]>, bool),
    /// A whole script: statements, locals and control flow (see [`program`]).
    Program(Box<Program>),
}

/// What specialisation looks names up in: the library's signals, its literal `matches()`
/// patterns (each pattern shared by every script that uses it) and its property paths.
pub struct Known<'a> {
    pub signals: &'a SignalSet,
    pub patterns: &'a Mutex<PatternSet>,
    pub paths: &'a Mutex<PathSet>,
}

impl Known<'_> {
    fn id(&self, signal: &str) -> Option<usize> {
        self.signals.id(signal)
    }

    fn pattern(&self, pattern: &str) -> Arc<LazyRegex> {
        super::par::lock(self.patterns).intern(pattern)
    }

    /// The number of a property path whose value an event keeps once read: any path of
    /// properties from a scope variable except `facts`, which grows while a diagnosis runs.
    fn path(
        &self,
        var: usize,
        props: impl Iterator<Item = (ImmutableString, bool)>,
    ) -> Option<u32> {
        let props: Vec<(ImmutableString, bool)> = props.collect();
        if props.is_empty() || SCOPE_VARS[var] == "facts" {
            return None;
        }
        super::par::lock(self.paths).intern(var, props)
    }
}

/// The library's property paths (`error?.status`, `connection.oauth?.scopes`), numbered. The
/// same path is read by dozens of scripts for every event; each event reads it once and keeps
/// the value (`HelperCtx::field`). Both native evaluators share the numbers: each either gives
/// Rhai's exact value or falls back, so a value either of them read is the one the other would.
#[derive(Debug, Default)]
pub struct PathSet {
    ids: std::collections::HashMap<(usize, Vec<(ImmutableString, bool)>), u32>,
}

impl PathSet {
    fn intern(&mut self, var: usize, props: Vec<(ImmutableString, bool)>) -> Option<u32> {
        let next = u32::try_from(self.ids.len()).ok()?;
        Some(*self.ids.entry((var, props)).or_insert(next))
    }
}

#[derive(Debug, Clone, Copy)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
}

/// Why native evaluation stopped.
#[derive(Debug)]
pub enum Stop {
    /// Reading a field of `()` without `?.`: the same "missing data" Rhai would report.
    Missing(String),
    /// Not decidable natively; run the interpreter.
    Fallback,
    /// Past the script's or the diagnosis's wall-clock budget: stop, do not fall back.
    Overrun(sandbox::Overrun),
}

/// Builds a native tree for a whole script (`source` is its text), if every part of it has a
/// native shape.
pub fn specialise(ast: &AST, signals: &Known<'_>, source: &str) -> Option<Native> {
    expression(ast, signals).or_else(|| {
        program::compile(ast, signals, source)
            .ok()
            .map(|p| Native::Program(Box::new(p)))
    })
}

/// The expression specialiser alone: single expressions of the shapes in [`Native`]. It comes
/// first because its missing-data reasons are part of existing output.
fn expression(ast: &AST, signals: &Known<'_>) -> Option<Native> {
    if ast.iter_fn_def().next().is_some() {
        return None;
    }
    match ast.statements() {
        [Stmt::Expr(e)] => from_expr(e, signals),
        [Stmt::FnCall(f, _)] => from_call(&f.name, &f.args, f.op_token.is_some(), signals),
        _ => None,
    }
}

fn from_expr(e: &Expr, signals: &Known<'_>) -> Option<Native> {
    Some(match e {
        Expr::BoolConstant(b, _) => Native::Lit((*b).into()),
        Expr::IntegerConstant(i, _) => Native::Lit((*i).into()),
        Expr::StringConstant(s, _) => Native::Lit(s.clone().into()),
        Expr::Unit(_) => Native::Lit(Dynamic::UNIT),
        Expr::Variable(v, _, _) => Native::Path {
            var: var_index(&v.1)?,
            props: Box::new([]),
            id: None,
        },
        Expr::Dot(bin, flags, _) => {
            let Expr::Variable(v, _, _) = &bin.lhs else {
                return None;
            };
            let mut props = Vec::new();
            flatten(&bin.rhs, flags.contains(ASTFlags::NEGATED), &mut props)?;
            let var = var_index(&v.1)?;
            Native::Path {
                var,
                id: signals.path(var, props.iter().cloned()),
                props: props.into(),
            }
        }
        Expr::And(list, _) => Native::And(
            list.iter()
                .map(|x| from_expr(x, signals))
                .collect::<Option<_>>()?,
        ),
        Expr::Or(list, _) => Native::Or(
            list.iter()
                .map(|x| from_expr(x, signals))
                .collect::<Option<_>>()?,
        ),
        Expr::Coalesce(list, _) => Native::Coalesce(
            list.iter()
                .map(|x| from_expr(x, signals))
                .collect::<Option<_>>()?,
        ),
        Expr::FnCall(f, _) => from_call(&f.name, &f.args, f.op_token.is_some(), signals)?,
        _ => return None,
    })
}

fn from_call(name: &str, args: &[Expr], operator: bool, signals: &Known<'_>) -> Option<Native> {
    match (name, args) {
        ("==" | "!=", [a, b]) if operator => Some(Native::Eq {
            lhs: Box::new(from_expr(a, signals)?),
            rhs: Box::new(from_expr(b, signals)?),
            negate: name == "!=",
        }),
        ("!", [a]) => Some(Native::Not(Box::new(from_expr(a, signals)?))),
        ("<" | "<=" | ">" | ">=", [a, b]) if operator => Some(Native::Cmp {
            lhs: Box::new(from_expr(a, signals)?),
            rhs: Box::new(from_expr(b, signals)?),
            op: match name {
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                _ => CmpOp::Ge,
            },
        }),
        // `x in [a, b]` is parsed as `contains([a, b], x)`.
        ("contains", [list, needle]) => Some(Native::In {
            needle: Box::new(from_expr(needle, signals)?),
            items: literal_list(list)?,
        }),
        ("matches", [a, Expr::StringConstant(pat, _)]) => Some(Native::Matches(
            Box::new(from_expr(a, signals)?),
            signals.pattern(pat),
        )),
        ("text", []) => Some(Native::Text),
        ("lower", [a]) => Some(Native::Lower(Box::new(from_expr(a, signals)?))),
        ("signal", [Expr::StringConstant(s, _)]) => signals.id(s).map(Native::Signal),
        ("has", [a]) => Some(Native::Has(Box::new(from_expr(a, signals)?))),
        ("header", [Expr::StringConstant(s, _)]) => Some(Native::Header(s.clone())),
        (_, args) if !operator => {
            let f = sandbox::native_helper(name, args.len())?;
            let args = args
                .iter()
                .map(|a| from_expr(a, signals))
                .collect::<Option<_>>()?;
            Some(Native::Helper(f, args, prints_args(name)))
        }
        _ => None,
    }
}

/// An array of literals, as written or as the optimizer folded it.
fn literal_list(e: &Expr) -> Option<Box<[Dynamic]>> {
    let items: Vec<Dynamic> = match e {
        Expr::Array(items, _) => items
            .iter()
            .map(|x| match x {
                Expr::StringConstant(s, _) => Some(s.clone().into()),
                Expr::IntegerConstant(i, _) => Some((*i).into()),
                Expr::BoolConstant(b, _) => Some((*b).into()),
                Expr::Unit(_) => Some(Dynamic::UNIT),
                _ => None,
            })
            .collect::<Option<_>>()?,
        Expr::DynamicConstant(d, _) => d.read_lock::<Array>()?.iter().cloned().collect(),
        _ => return None,
    };
    items
        .iter()
        .all(|i| plain(i).is_some())
        .then(|| items.into())
}

fn flatten(e: &Expr, elvis: bool, out: &mut Vec<(ImmutableString, bool)>) -> Option<()> {
    match e {
        Expr::Property(p, _) => {
            out.push((p.2.clone(), elvis));
            Some(())
        }
        Expr::Dot(bin, flags, _) => {
            flatten(&bin.lhs, elvis, out)?;
            flatten(&bin.rhs, flags.contains(ASTFlags::NEGATED), out)
        }
        _ => None,
    }
}

fn var_index(name: &str) -> Option<usize> {
    SCOPE_VARS.iter().position(|v| *v == name)
}

/// What native evaluation reads: the scope variables (in `SCOPE_VARS` order) and helpers.
pub(crate) struct NativeCtx<'a> {
    pub vars: &'a [Dynamic],
    pub helper: &'a HelperCtx,
}

impl Native {
    /// The script's value. Like Rhai's expression statement, a shared value (a bare event
    /// section such as `connection?.oauth`) comes out unwrapped.
    pub(crate) fn eval(&self, cx: &NativeCtx<'_>) -> Result<Dynamic, Stop> {
        match self {
            Native::Program(p) => p.eval(cx),
            other => other
                .value(cx)
                .map(|v| if v.is_shared() { v.flatten() } else { v }),
        }
    }

    fn value(&self, cx: &NativeCtx<'_>) -> Result<Dynamic, Stop> {
        match self {
            Native::Lit(v) => Ok(v.clone()),
            Native::Path { var, props, id } => {
                let read = || walk(&cx.vars[*var], props, SCOPE_VARS[*var]);
                match id {
                    Some(id) => cx.helper.field(*id, read),
                    None => read(),
                }
            }
            Native::Eq { lhs, rhs, negate } => {
                let (a, b) = (lhs.value(cx)?, rhs.value(cx)?);
                equal(&a, &b)
                    .map(|eq| Dynamic::from(eq != *negate))
                    .ok_or(Stop::Fallback)
            }
            Native::And(list) => {
                for x in list.iter() {
                    if !boolean(&x.value(cx)?)? {
                        return Ok(false.into());
                    }
                }
                Ok(true.into())
            }
            Native::Or(list) => {
                for x in list.iter() {
                    if boolean(&x.value(cx)?)? {
                        return Ok(true.into());
                    }
                }
                Ok(false.into())
            }
            Native::Not(x) => Ok((!boolean(&x.value(cx)?)?).into()),
            Native::Coalesce(list) => {
                let mut last = Dynamic::UNIT;
                for x in list.iter() {
                    last = x.value(cx)?;
                    if !last.is_unit() {
                        break;
                    }
                }
                Ok(last)
            }
            Native::Cmp { lhs, rhs, op } => {
                let (a, b) = (lhs.value(cx)?, rhs.value(cx)?);
                let (Ok(x), Ok(y)) = (a.as_int(), b.as_int()) else {
                    return Err(Stop::Fallback);
                };
                Ok(match op {
                    CmpOp::Lt => x < y,
                    CmpOp::Le => x <= y,
                    CmpOp::Gt => x > y,
                    CmpOp::Ge => x >= y,
                }
                .into())
            }
            Native::In { needle, items } => {
                let v = needle.value(cx)?;
                for item in items.iter() {
                    if equal(&v, item).ok_or(Stop::Fallback)? {
                        return Ok(true.into());
                    }
                }
                Ok(false.into())
            }
            Native::Matches(x, re) => {
                // An invalid pattern is the interpreter's business (it reports it the same way).
                let Some(re) = re.get() else {
                    return Err(Stop::Fallback);
                };
                Ok(match x.as_ref() {
                    Native::Text => re.is_match(haystack(cx)?.as_bytes()),
                    other => sandbox::text_of(&unshare(other.value(cx)?))
                        .is_some_and(|t| re.is_match(t.as_bytes())),
                }
                .into())
            }
            Native::Text => Ok(haystack(cx)?.clone().into()),
            Native::Lower(x) => checked(ops::lower(&x.value(cx)?)),
            Native::Signal(id) => Ok(cx.helper.signal_id(*id).into()),
            Native::Helper(f, args, unwrap) => {
                let values = args
                    .iter()
                    .map(|a| a.value(cx).map(|v| if *unwrap { unshare(v) } else { v }))
                    .collect::<Result<Vec<_>, _>>()?;
                checked(f(&values).ok_or(Stop::Fallback)?)
            }
            Native::Has(x) => Ok(ops::has(&x.value(cx)?).into()),
            Native::Header(name) => Ok(cx.helper.header(name)),
            Native::Program(p) => p.eval(cx),
        }
    }
}

/// `text()`. Like every helper result, Rhai checks it against the size limits, so an oversized
/// error body makes the script fail there rather than match.
fn haystack<'a>(cx: &NativeCtx<'a>) -> Result<&'a ImmutableString, Stop> {
    let text = cx.helper.haystack_shared();
    if text.len() > sandbox::MAX_STRING_SIZE {
        return Err(Stop::Fallback);
    }
    Ok(text)
}

/// A helper's result, if it is within the limits Rhai checks every function result against.
fn checked(v: Dynamic) -> Result<Dynamic, Stop> {
    ops::within_limits(&v).ok_or(Stop::Fallback)?;
    Ok(v)
}

/// Rhai hands functions unwrapped values; it matters to helpers that print their argument
/// (`text_of` shows a shared map with a "(shared)" suffix).
fn unshare(v: Dynamic) -> Dynamic {
    if v.is_shared() { v.flatten() } else { v }
}

/// Whether a helper may print an argument (so a shared section must be unwrapped first). The
/// others only read through locks, and skipping the copy keeps `dig(error, ...)` cheap.
fn prints_args(name: &str) -> bool {
    !matches!(
        name,
        "dig" | "past" | "future" | "ts" | "seconds_since" | "seconds_until" | "ago" | "now"
    )
}

fn boolean(v: &Dynamic) -> Result<bool, Stop> {
    v.as_bool().map_err(|_| Stop::Fallback)
}

/// Follows `props` from `root`, holding read locks instead of cloning intermediate maps.
fn walk(cur: &Dynamic, props: &[(ImmutableString, bool)], name: &str) -> Result<Dynamic, Stop> {
    let Some(((prop, elvis), rest)) = props.split_first() else {
        return Ok(cur.clone());
    };
    if cur.is_unit() {
        // `?.` on () ends the whole chain with (); a plain `.` is an error Rhai reports the same way.
        return if *elvis {
            Ok(Dynamic::UNIT)
        } else {
            Err(Stop::Missing(format!("`{name}` has no `{prop}`: it is ()")))
        };
    }
    let Some(map) = cur.read_lock::<Map>() else {
        return Err(Stop::Fallback);
    };
    match map.get(prop.as_str()) {
        Some(v) => walk(v, rest, prop),
        None if rest.is_empty() => Ok(Dynamic::UNIT),
        None => {
            // A missing key reads as (); what follows decides, as in Rhai.
            walk(&Dynamic::UNIT, rest, prop)
        }
    }
}

/// `==` as Rhai decides it for the value types we handle; `None` for anything else.
fn equal(a: &Dynamic, b: &Dynamic) -> Option<bool> {
    if a.is_unit() || b.is_unit() {
        return if a.is_unit() && b.is_unit() {
            Some(true)
        } else {
            plain(a).and(plain(b)).map(|_| false)
        };
    }
    if let (Ok(x), Ok(y)) = (a.as_bool(), b.as_bool()) {
        return Some(x == y);
    }
    if let (Ok(x), Ok(y)) = (a.as_int(), b.as_int()) {
        return Some(x == y);
    }
    if let (Some(x), Some(y)) = (
        a.read_lock::<ImmutableString>(),
        b.read_lock::<ImmutableString>(),
    ) {
        return Some(x.as_str() == y.as_str());
    }
    // Different simple types compare unequal; floats, chars, maps and arrays go to Rhai.
    let (ta, tb) = (plain(a)?, plain(b)?);
    (ta != tb).then_some(false)
}

/// The simple types `equal` understands, by name; `None` for everything else.
fn plain(v: &Dynamic) -> Option<&'static str> {
    if v.is_unit() {
        Some("()")
    } else if v.is_bool() {
        Some("bool")
    } else if v.is::<INT>() {
        Some("int")
    } else if v.is_string() {
        Some("string")
    } else {
        None
    }
}
