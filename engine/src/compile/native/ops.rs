//! Rhai's value semantics for the operators and methods native programs evaluate.
//!
//! Every function here mirrors what the sandboxed Rhai engine does for the same operands:
//! the built-in fast operators (`rhai::func::builtin`), the string, array and map packages,
//! and the engine's data-size limits. Anything outside the mirrored cases returns `None`,
//! which makes the whole script fall back to the interpreter; so a gap costs speed, never a
//! different answer.

use rhai::{Array, Dynamic, FLOAT, FloatWrapper, INT, ImmutableString, Map};

use crate::sandbox::{MAX_ARRAY_SIZE, MAX_DEPTH, MAX_MAP_SIZE, MAX_STRING_SIZE};

/// A value's type as Rhai's operators see it (through shared values, like `type_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Unit,
    Bool,
    Int,
    Float,
    Str,
    Char,
    Array,
    Map,
    /// Function pointers, timestamps, ranges, custom types: never decided natively.
    Other,
}

pub(super) fn kind(v: &Dynamic) -> Kind {
    use std::any::TypeId;
    let t = v.type_id();
    if t == TypeId::of::<()>() {
        Kind::Unit
    } else if t == TypeId::of::<bool>() {
        Kind::Bool
    } else if t == TypeId::of::<INT>() {
        Kind::Int
    } else if t == TypeId::of::<FLOAT>() {
        Kind::Float
    } else if t == TypeId::of::<ImmutableString>() {
        Kind::Str
    } else if t == TypeId::of::<char>() {
        Kind::Char
    } else if t == TypeId::of::<Array>() {
        Kind::Array
    } else if t == TypeId::of::<Map>() {
        Kind::Map
    } else {
        Kind::Other
    }
}

fn is_numeric(k: Kind) -> bool {
    matches!(k, Kind::Int | Kind::Float)
}

/// `type_of(v)`.
pub(super) fn type_of(v: &Dynamic) -> Option<&'static str> {
    Some(match kind(v) {
        Kind::Unit => "()",
        Kind::Bool => "bool",
        Kind::Int => "i64",
        Kind::Float => "f64",
        Kind::Str => "string",
        Kind::Char => "char",
        Kind::Array => "array",
        Kind::Map => "map",
        Kind::Other => return None,
    })
}

/// A binary operator native programs evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

fn int(v: &Dynamic) -> Option<INT> {
    v.as_int().ok()
}

fn float(v: &Dynamic) -> Option<FLOAT> {
    match kind(v) {
        Kind::Int => int(v).map(|i| i as FLOAT),
        Kind::Float => v.as_float().ok(),
        _ => None,
    }
}

/// Float comparisons as Rhai's checked build makes them: relative to the larger magnitude,
/// within `FLOAT::EPSILON`.
fn float_cmp(op: BinOp, x: FLOAT, y: FLOAT) -> Option<bool> {
    let max = if x * y == 0.0 {
        1.0
    } else {
        x.abs().max(y.abs())
    };
    Some(match op {
        BinOp::Eq => max == 0.0 || (x - y).abs() / max <= FLOAT::EPSILON,
        BinOp::Ne => max != 0.0 && (x - y).abs() / max > FLOAT::EPSILON,
        BinOp::Gt => max != 0.0 && (x - y) / max > FLOAT::EPSILON,
        BinOp::Ge => max == 0.0 || (x - y) / max > -FLOAT::EPSILON,
        BinOp::Lt => max != 0.0 && (y - x) / max > FLOAT::EPSILON,
        BinOp::Le => max == 0.0 || (y - x) / max > -FLOAT::EPSILON,
        _ => return None,
    })
}

fn ord<T: PartialOrd>(op: BinOp, x: T, y: T) -> Option<bool> {
    Some(match op {
        BinOp::Eq => x == y,
        BinOp::Ne => x != y,
        BinOp::Lt => x < y,
        BinOp::Le => x <= y,
        BinOp::Gt => x > y,
        BinOp::Ge => x >= y,
        _ => return None,
    })
}

/// `==`, `!=`, `<`, `<=`, `>`, `>=`.
pub(super) fn compare(op: BinOp, a: &Dynamic, b: &Dynamic) -> Option<bool> {
    let (ka, kb) = (kind(a), kind(b));
    match (ka, kb) {
        (Kind::Int, Kind::Int) => ord(op, int(a)?, int(b)?),
        (Kind::Bool, Kind::Bool) => ord(op, a.as_bool().ok()?, b.as_bool().ok()?),
        (Kind::Str, Kind::Str) => {
            let (x, y) = (
                a.read_lock::<ImmutableString>()?,
                b.read_lock::<ImmutableString>()?,
            );
            ord(op, x.as_str(), y.as_str())
        }
        (Kind::Char, Kind::Char) => ord(op, a.as_char().ok()?, b.as_char().ok()?),
        (Kind::Unit, Kind::Unit) => Some(op == BinOp::Eq),
        (Kind::Float | Kind::Int, Kind::Float | Kind::Int) => float_cmp(op, float(a)?, float(b)?),
        // Strings against chars compare their first characters; rare, so left to Rhai.
        (Kind::Str, Kind::Char) | (Kind::Char, Kind::Str) => None,
        // `()` against a string, and any two different non-numeric types: only `!=` holds.
        (x, y) if x != y && x != Kind::Other && y != Kind::Other => {
            (!is_numeric(x) || !is_numeric(y)).then_some(op == BinOp::Ne)
        }
        _ => None,
    }
}

/// `==` as `in` and `contains` use it on array items. The array package calls `==` through
/// function resolution, where registered numeric overloads come before the built-in float
/// rules, so anything involving a float is left to Rhai.
pub(super) fn item_equal(a: &Dynamic, b: &Dynamic) -> Option<bool> {
    match (kind(a), kind(b)) {
        (Kind::Float, _) | (_, Kind::Float) => None,
        _ => compare(BinOp::Eq, a, b),
    }
}

/// What `to_string` gives for the values string concatenation accepts natively.
fn printed(v: &Dynamic) -> Option<ImmutableString> {
    Some(match kind(v) {
        Kind::Str => v.read_lock::<ImmutableString>()?.clone(),
        Kind::Int => int(v)?.to_string().into(),
        Kind::Bool => v.as_bool().ok()?.to_string().into(),
        Kind::Float => FloatWrapper::new(v.as_float().ok()?).to_string().into(),
        Kind::Unit => ImmutableString::new(),
        _ => return None,
    })
}

fn concat(a: &str, b: &str) -> Option<Dynamic> {
    if a.len() + b.len() > MAX_STRING_SIZE {
        return None;
    }
    let mut s = String::with_capacity(a.len() + b.len());
    s.push_str(a);
    s.push_str(b);
    Some(s.into())
}

/// `+`, `-`, `*`, `/`, `%` and the comparisons, as one entry point.
pub(super) fn binary(op: BinOp, a: &Dynamic, b: &Dynamic) -> Option<Dynamic> {
    match op {
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            compare(op, a, b).map(Dynamic::from)
        }
        _ => arith(op, a, b),
    }
}

fn arith(op: BinOp, a: &Dynamic, b: &Dynamic) -> Option<Dynamic> {
    match (kind(a), kind(b)) {
        (Kind::Int, Kind::Int) => {
            let (x, y) = (int(a)?, int(b)?);
            // Overflow and division by zero are errors in Rhai: let it report them.
            let r = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div if y != 0 => x.checked_div(y),
                BinOp::Rem if y != 0 => x.checked_rem(y),
                _ => None,
            };
            r.map(Dynamic::from)
        }
        (Kind::Float | Kind::Int, Kind::Float | Kind::Int) => {
            let (x, y) = (float(a)?, float(b)?);
            Some(Dynamic::from(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                BinOp::Rem => x % y,
                _ => return None,
            }))
        }
        (Kind::Str, Kind::Str) if op == BinOp::Add => {
            let (x, y) = (
                a.read_lock::<ImmutableString>()?,
                b.read_lock::<ImmutableString>()?,
            );
            concat(&x, &y)
        }
        // `"text" + ()` and `() + "text"` are the text itself.
        (Kind::Str, Kind::Unit) if op == BinOp::Add => Some(a.flatten_clone()),
        (Kind::Unit, Kind::Str) if op == BinOp::Add => Some(b.flatten_clone()),
        // A string and a number or boolean: the other side's `to_string`.
        (Kind::Str, Kind::Int | Kind::Bool | Kind::Float) if op == BinOp::Add => {
            concat(&a.read_lock::<ImmutableString>()?, &printed(b)?)
        }
        (Kind::Int | Kind::Bool | Kind::Float, Kind::Str) if op == BinOp::Add => {
            concat(&printed(a)?, &b.read_lock::<ImmutableString>()?)
        }
        _ => None,
    }
}

/// Unary `-`.
pub(super) fn negate(v: &Dynamic) -> Option<Dynamic> {
    match kind(v) {
        Kind::Int => int(v)?.checked_neg().map(Dynamic::from),
        Kind::Float => Some((-v.as_float().ok()?).into()),
        _ => None,
    }
}

/// Methods (and the same functions called as `f(x, ...)`) that read their target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Len,
    IsEmpty,
    Contains,
    StartsWith,
    EndsWith,
    IndexOf,
    SubString,
    Split,
    ToUpper,
    ToLower,
    Abs,
    Keys,
}

impl Method {
    pub(super) fn by_name(name: &str) -> Option<Method> {
        Some(match name {
            "len" => Method::Len,
            "is_empty" => Method::IsEmpty,
            "contains" => Method::Contains,
            "starts_with" => Method::StartsWith,
            "ends_with" => Method::EndsWith,
            "index_of" => Method::IndexOf,
            "sub_string" => Method::SubString,
            "split" => Method::Split,
            "to_upper" => Method::ToUpper,
            "to_lower" => Method::ToLower,
            "abs" => Method::Abs,
            "keys" => Method::Keys,
            _ => return None,
        })
    }
}

/// Methods that change the variable they are called on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mutator {
    Trim,
    Push,
}

impl Mutator {
    pub(super) fn by_name(name: &str, arity: usize) -> Option<Mutator> {
        match (name, arity) {
            ("trim", 0) => Some(Mutator::Trim),
            ("push", 1) => Some(Mutator::Push),
            _ => None,
        }
    }
}

/// Applies a mutator to a variable's value; `None` when Rhai would not (or might not) do the
/// same thing.
pub(super) fn mutate(m: Mutator, target: &mut Dynamic, args: Vec<Dynamic>) -> Option<()> {
    match m {
        Mutator::Trim => {
            let trimmed: Option<ImmutableString> = {
                let s = target.read_lock::<ImmutableString>()?;
                let t = s.trim();
                (t != s.as_str()).then(|| t.into())
            };
            if let Some(t) = trimmed {
                *target = t.into();
            }
            Some(())
        }
        Mutator::Push => {
            let item = args.into_iter().next()?;
            let mut arr = target.write_lock::<Array>()?;
            arr.push(item);
            Some(())
        }
    }
}

/// `lower(v)` (the sandbox helper), without copying text that has no upper-case letter: the
/// same string is exactly what a fresh lower-cased copy would hold.
pub(super) fn lower(v: &Dynamic) -> Dynamic {
    if let Some(s) = v.read_lock::<ImmutableString>() {
        if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
            return s.clone().into();
        }
        return s.to_lowercase().into();
    }
    let v = if v.is_shared() {
        v.flatten_clone()
    } else {
        v.clone()
    };
    crate::sandbox::text_of(&v)
        .map(|s| Dynamic::from(s.to_lowercase()))
        .unwrap_or(Dynamic::UNIT)
}

/// `has(v)` (the sandbox helper), reading strings in place.
pub(super) fn has(v: &Dynamic) -> bool {
    match v.read_lock::<ImmutableString>() {
        Some(s) => !s.trim().is_empty(),
        None => crate::sandbox::has_value(v),
    }
}

fn text(v: &Dynamic) -> Option<rhai::DynamicReadLock<'_, ImmutableString>> {
    v.read_lock::<ImmutableString>()
}

/// Calls a reading method on `target`. Mirrors the string, array, map and arithmetic packages.
pub(super) fn method(m: Method, target: &Dynamic, args: &[Dynamic]) -> Option<Dynamic> {
    let k = kind(target);
    match (m, k, args) {
        (Method::Len, Kind::Str, []) => {
            let s = text(target)?;
            Some((s.chars().count() as INT).into())
        }
        (Method::Len, Kind::Array, []) => Some((target.read_lock::<Array>()?.len() as INT).into()),
        (Method::Len, Kind::Map, []) => Some((target.read_lock::<Map>()?.len() as INT).into()),
        // Rhai's `keys`: the property names as strings, in the map's (sorted) order.
        (Method::Keys, Kind::Map, []) => Some(Dynamic::from_array(
            target
                .read_lock::<Map>()?
                .keys()
                .map(|k| k.as_str().into())
                .collect(),
        )),
        (Method::IsEmpty, Kind::Str, []) => Some(text(target)?.is_empty().into()),
        (Method::IsEmpty, Kind::Array, []) => Some(target.read_lock::<Array>()?.is_empty().into()),
        (Method::IsEmpty, Kind::Map, []) => Some(target.read_lock::<Map>()?.is_empty().into()),
        (Method::Contains, Kind::Str, [x]) if kind(x) == Kind::Str => {
            Some(text(target)?.contains(text(x)?.as_str()).into())
        }
        (Method::Contains, Kind::Map, [x]) if kind(x) == Kind::Str => Some(
            target
                .read_lock::<Map>()?
                .contains_key(text(x)?.as_str())
                .into(),
        ),
        (Method::Contains, Kind::Array, [x]) => {
            for item in target.read_lock::<Array>()?.iter() {
                if item_equal(item, x)? {
                    return Some(true.into());
                }
            }
            Some(false.into())
        }
        (Method::StartsWith, Kind::Str, [x]) if kind(x) == Kind::Str => {
            Some(text(target)?.starts_with(text(x)?.as_str()).into())
        }
        (Method::EndsWith, Kind::Str, [x]) if kind(x) == Kind::Str => {
            Some(text(target)?.ends_with(text(x)?.as_str()).into())
        }
        (Method::IndexOf, Kind::Str, [x]) if kind(x) == Kind::Str => {
            Some(index_of(&text(target)?, &text(x)?).into())
        }
        (Method::IndexOf, Kind::Str, [x, start]) if kind(x) == Kind::Str => {
            Some(index_of_from(&text(target)?, &text(x)?, int_arg(start)?).into())
        }
        (Method::SubString, Kind::Str, [start, len]) => {
            Some(sub_string(&text(target)?, int_arg(start)?, int_arg(len)?).into())
        }
        (Method::SubString, Kind::Str, [start]) => {
            let s = text(target)?;
            if s.is_empty() {
                return Some(ImmutableString::new().into());
            }
            let len = INT::try_from(s.len()).unwrap_or(INT::MAX);
            Some(sub_string(&s, int_arg(start)?, len).into())
        }
        (Method::Split, Kind::Str, []) => {
            let s = text(target)?;
            let parts: Array = if s.is_empty() {
                vec![s.clone().into()]
            } else {
                s.split_whitespace().map(Into::<Dynamic>::into).collect()
            };
            Some(parts.into())
        }
        (Method::Split, Kind::Str, [d]) if kind(d) == Kind::Str => {
            let (s, d) = (text(target)?, text(d)?);
            let parts: Array = if s.is_empty() || (!d.is_empty() && !s.contains(d.as_str())) {
                vec![s.clone().into()]
            } else {
                s.split(d.as_str()).map(Into::<Dynamic>::into).collect()
            };
            Some(parts.into())
        }
        (Method::ToUpper, Kind::Str, []) => {
            let s = text(target)?;
            Some(if s.chars().all(char::is_uppercase) {
                s.clone().into()
            } else {
                s.to_uppercase().into()
            })
        }
        (Method::ToLower, Kind::Str, []) => {
            let s = text(target)?;
            Some(if s.is_empty() || s.chars().all(char::is_lowercase) {
                s.clone().into()
            } else {
                s.to_lowercase().into()
            })
        }
        (Method::Abs, Kind::Int, []) => int(target)?.checked_abs().map(Dynamic::from),
        (Method::Abs, Kind::Float, []) => Some(target.as_float().ok()?.abs().into()),
        _ => None,
    }
}

/// Properties Rhai answers with a getter on a non-map value (`s.len`).
pub(super) fn getter(target: &Dynamic, prop: &str) -> Option<Dynamic> {
    match (kind(target), prop) {
        (Kind::Str | Kind::Array, "len") => method(Method::Len, target, &[]),
        (Kind::Str | Kind::Array, "is_empty") => method(Method::IsEmpty, target, &[]),
        _ => None,
    }
}

fn int_arg(v: &Dynamic) -> Option<INT> {
    (kind(v) == Kind::Int).then(|| int(v)).flatten()
}

/// `index_of(string, find)`: the character index, or -1.
fn index_of(s: &str, find: &str) -> INT {
    if s.is_empty() {
        return -1;
    }
    s.find(find)
        .map_or(-1, |i| INT::try_from(s[..i].chars().count()).unwrap_or(-1))
}

/// `index_of(string, find, start)`, with Rhai's handling of negative and large starts.
fn index_of_from(s: &str, find: &str, start: INT) -> INT {
    if s.is_empty() {
        return -1;
    }
    let start = if start < 0 {
        let Ok(abs) = usize::try_from(start.unsigned_abs()) else {
            return -1;
        };
        let n = s.chars().count();
        if abs > n {
            0
        } else {
            s.chars().take(n - abs).map(char::len_utf8).sum()
        }
    } else if start == 0 {
        0
    } else if let Ok(start) = usize::try_from(start) {
        if start >= s.chars().count() {
            return -1;
        }
        s.chars().take(start).map(char::len_utf8).sum()
    } else {
        return -1;
    };
    s[start..]
        .find(find)
        .and_then(|i| INT::try_from(s[..start + i].chars().count()).ok())
        .unwrap_or(-1)
}

/// `sub_string(string, start, len)` in characters, with Rhai's clamping.
fn sub_string(s: &str, start: INT, len: INT) -> ImmutableString {
    if s.is_empty() || len <= 0 {
        return ImmutableString::new();
    }
    let chars: Vec<char> = s.chars().collect();
    let offset = if start < 0 {
        let Ok(abs) = usize::try_from(start.unsigned_abs()) else {
            return ImmutableString::new();
        };
        chars.len().saturating_sub(abs)
    } else if let Ok(start) = usize::try_from(start) {
        if start >= chars.len() {
            return ImmutableString::new();
        }
        start
    } else {
        return ImmutableString::new();
    };
    let len = usize::try_from(len).map_or(chars.len() - offset, |len| {
        if len.checked_add(offset).is_none_or(|x| x > chars.len()) {
            chars.len() - offset
        } else {
            len
        }
    });
    chars[offset..offset + len]
        .iter()
        .collect::<String>()
        .into()
}

/// Whether a value Rhai checks (function results, built arrays and maps, concatenations)
/// stays within the engine's size limits, and within [`MAX_DEPTH`] levels of nesting (the
/// interpreter stops a script when it next reads a value nested deeper). `None` when unsure (a
/// shared value inside data, which Rhai's own check does not expect) or too deep: the
/// interpreter then decides.
pub(super) fn within_limits(v: &Dynamic) -> Option<()> {
    let (arrays, maps, strings) = sizes(v, true, MAX_DEPTH)?;
    (strings <= MAX_STRING_SIZE && arrays <= MAX_ARRAY_SIZE && maps <= MAX_MAP_SIZE).then_some(())
}

/// Sizes as Rhai counts them; `levels` is how many more levels of nesting are allowed.
fn sizes(v: &Dynamic, top: bool, levels: usize) -> Option<(usize, usize, usize)> {
    if v.is_shared() {
        if !top {
            return None;
        }
        return sizes(&v.flatten_clone(), false, levels);
    }
    Some(match kind(v) {
        Kind::Str => (0, 0, text(v)?.len()),
        Kind::Array => {
            let levels = levels.checked_sub(1)?;
            let (mut a, mut m, mut s) = (0, 0, 0);
            for item in v.read_lock::<Array>()?.iter() {
                a += 1;
                let (x, y, z) = nested(item, levels)?;
                a += x;
                m += y;
                s += z;
            }
            (a, m, s)
        }
        Kind::Map => {
            let levels = levels.checked_sub(1)?;
            let (mut a, mut m, mut s) = (0, 0, 0);
            for item in v.read_lock::<Map>()?.values() {
                m += 1;
                let (x, y, z) = nested(item, levels)?;
                a += x;
                m += y;
                s += z;
            }
            (a, m, s)
        }
        Kind::Other => return None,
        _ => (0, 0, 0),
    })
}

fn nested(v: &Dynamic, levels: usize) -> Option<(usize, usize, usize)> {
    if v.is_shared() {
        return None;
    }
    match kind(v) {
        Kind::Str | Kind::Array | Kind::Map => sizes(v, false, levels),
        Kind::Other => None,
        _ => Some((0, 0, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_helpers_match_rhai() {
        let e = crate::sandbox::engine();
        for (src, s, a, b) in [
            ("index_of", "héllo wörld", "wö", None),
            ("index_of", "abcabc", "c", Some(3)),
            ("index_of", "abcabc", "c", Some(-2)),
            ("index_of", "abcabc", "c", Some(-20)),
            ("index_of", "abcabc", "c", Some(6)),
            ("index_of", "", "", None),
            ("sub_string", "héllo wörld", "", Some(2)),
            ("sub_string", "héllo", "", Some(-2)),
            ("sub_string", "héllo", "", Some(-20)),
            ("sub_string", "héllo", "", Some(9)),
        ] {
            let target = Dynamic::from(s);
            let (script, native) = match (src, a, b) {
                ("index_of", find, None) => (
                    format!("{s:?}.index_of({find:?})"),
                    method(Method::IndexOf, &target, &[find.into()]),
                ),
                ("index_of", find, Some(n)) => (
                    format!("{s:?}.index_of({find:?}, {n})"),
                    method(Method::IndexOf, &target, &[find.into(), n.into()]),
                ),
                (_, _, Some(n)) => (
                    format!("{s:?}.sub_string({n})"),
                    method(Method::SubString, &target, &[n.into()]),
                ),
                _ => unreachable!(),
            };
            let want: Dynamic = e.eval(&script).unwrap();
            assert_eq!(native.unwrap().to_string(), want.to_string(), "{script}");
            for len in [-1, 0, 1, 3, 100] {
                for start in [-7, -1, 0, 1, 4, 50] {
                    let script = format!("{s:?}.sub_string({start}, {len})");
                    let want: Dynamic = e.eval(&script).unwrap();
                    let got =
                        method(Method::SubString, &target, &[start.into(), len.into()]).unwrap();
                    assert_eq!(got.to_string(), want.to_string(), "{script}");
                }
            }
        }
    }

    #[test]
    fn operators_match_rhai() {
        let e = crate::sandbox::engine();
        let values = [
            "()", "true", "false", "0", "1", "-3", "2.5", "0.0", "1.0", "\"\"", "\"a\"", "\"b\"",
            "\"10\"", "[1]", "#{a: 1}", "'c'",
        ];
        let ops = [
            ("==", BinOp::Eq),
            ("!=", BinOp::Ne),
            ("<", BinOp::Lt),
            ("<=", BinOp::Le),
            (">", BinOp::Gt),
            (">=", BinOp::Ge),
            ("+", BinOp::Add),
            ("-", BinOp::Sub),
            ("*", BinOp::Mul),
            ("/", BinOp::Div),
            ("%", BinOp::Rem),
        ];
        let mut decided = 0;
        for a in values {
            for b in values {
                for (sym, op) in ops {
                    let script = format!("{a} {sym} {b}");
                    let (x, y): (Dynamic, Dynamic) = (e.eval(a).unwrap(), e.eval(b).unwrap());
                    let Some(native) = binary(op, &x, &y) else {
                        continue;
                    };
                    decided += 1;
                    let want: Dynamic = e
                        .eval(&script)
                        .unwrap_or_else(|err| panic!("{script}: native {native}, rhai {err}"));
                    assert_eq!(
                        (native.to_string(), native.type_name()),
                        (want.to_string(), want.type_name()),
                        "{script}"
                    );
                }
            }
        }
        assert!(decided > 1000, "{decided}");
    }
}
