//! Load-time specialisation of the most common script shapes into native code.
//!
//! Most matchers and checks are a handful of field comparisons, signal tests and `&&`/`||`:
//! `error.status == 429 || signal("rate_limit")`. Interpreting these costs far more than the
//! comparisons themselves (function resolution, argument vectors), and they run for every
//! event. At compile time we walk Rhai's own AST (no second parser) and, when an expression
//! uses only the shapes below, build a small native tree for it.
//!
//! Exactness rule: a native tree either decides exactly as Rhai would, or gives up
//! (`Stop::Fallback`) and the interpreter runs the original AST. Anything unusual (floats,
//! non-boolean operands, properties of non-maps) falls back. `tests::agrees_with_rhai` checks
//! the two agree over many expressions and events.

use std::sync::{Arc, OnceLock};

use rhai::{AST, ASTFlags, Array, Dynamic, Expr, INT, ImmutableString, Map, Stmt};

use crate::sandbox::{self, HelperCtx, SCOPE_VARS};
use crate::signals::SignalSet;

/// A natively evaluable expression.
#[derive(Debug, Clone)]
pub enum Native {
    Lit(Dynamic),
    /// A scope variable followed by properties; the flag marks `?.` before that property.
    Path {
        var: usize,
        props: Box<[(ImmutableString, bool)]>,
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
    /// Any other helper with a native twin (`dig`, `past`, `url`, `secret`, ...).
    Helper(sandbox::NativeHelper, Box<[Native]>),
}

/// A `matches()` pattern, compiled (through the shared cache) the first time an event needs
/// it; most never run.
#[derive(Debug)]
pub struct LazyRegex {
    pattern: String,
    re: OnceLock<Option<Arc<regex::bytes::Regex>>>,
}

impl LazyRegex {
    fn get(&self) -> Option<&regex::bytes::Regex> {
        self.re
            .get_or_init(|| crate::sandbox::compile_ci(&self.pattern))
            .as_deref()
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
}

/// Builds a native tree for a whole script, if every part of it has a native shape.
pub fn specialise(ast: &AST, signals: &SignalSet) -> Option<Native> {
    match ast.statements() {
        [Stmt::Expr(e)] => from_expr(e, signals),
        [Stmt::FnCall(f, _)] => from_call(&f.name, &f.args, f.op_token.is_some(), signals),
        _ => None,
    }
}

fn from_expr(e: &Expr, signals: &SignalSet) -> Option<Native> {
    Some(match e {
        Expr::BoolConstant(b, _) => Native::Lit((*b).into()),
        Expr::IntegerConstant(i, _) => Native::Lit((*i).into()),
        Expr::StringConstant(s, _) => Native::Lit(s.clone().into()),
        Expr::Unit(_) => Native::Lit(Dynamic::UNIT),
        Expr::Variable(v, _, _) => Native::Path {
            var: var_index(&v.1)?,
            props: Box::new([]),
        },
        Expr::Dot(bin, flags, _) => {
            let Expr::Variable(v, _, _) = &bin.lhs else {
                return None;
            };
            let mut props = Vec::new();
            flatten(&bin.rhs, flags.contains(ASTFlags::NEGATED), &mut props)?;
            Native::Path {
                var: var_index(&v.1)?,
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

fn from_call(name: &str, args: &[Expr], operator: bool, signals: &SignalSet) -> Option<Native> {
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
            Arc::new(LazyRegex {
                pattern: pat.to_string(),
                re: OnceLock::new(),
            }),
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
            Some(Native::Helper(f, args))
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
    pub(crate) fn eval(&self, cx: &NativeCtx<'_>) -> Result<Dynamic, Stop> {
        match self {
            Native::Lit(v) => Ok(v.clone()),
            Native::Path { var, props } => walk(&cx.vars[*var], props, SCOPE_VARS[*var]),
            Native::Eq { lhs, rhs, negate } => {
                let (a, b) = (lhs.eval(cx)?, rhs.eval(cx)?);
                equal(&a, &b)
                    .map(|eq| Dynamic::from(eq != *negate))
                    .ok_or(Stop::Fallback)
            }
            Native::And(list) => {
                for x in list.iter() {
                    if !boolean(&x.eval(cx)?)? {
                        return Ok(false.into());
                    }
                }
                Ok(true.into())
            }
            Native::Or(list) => {
                for x in list.iter() {
                    if boolean(&x.eval(cx)?)? {
                        return Ok(true.into());
                    }
                }
                Ok(false.into())
            }
            Native::Not(x) => Ok((!boolean(&x.eval(cx)?)?).into()),
            Native::Coalesce(list) => {
                let mut last = Dynamic::UNIT;
                for x in list.iter() {
                    last = x.eval(cx)?;
                    if !last.is_unit() {
                        break;
                    }
                }
                Ok(last)
            }
            Native::Cmp { lhs, rhs, op } => {
                let (a, b) = (lhs.eval(cx)?, rhs.eval(cx)?);
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
                let v = needle.eval(cx)?;
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
                    Native::Text => re.is_match(cx.helper.haystack().as_bytes()),
                    other => sandbox::text_of(&other.eval(cx)?)
                        .is_some_and(|t| re.is_match(t.as_bytes())),
                }
                .into())
            }
            Native::Text => Ok(cx.helper.haystack_shared().clone().into()),
            Native::Lower(x) => Ok(sandbox::text_of(&x.eval(cx)?)
                .map(|s| Dynamic::from(s.to_lowercase()))
                .unwrap_or(Dynamic::UNIT)),
            Native::Signal(id) => Ok(cx.helper.signal_id(*id).into()),
            Native::Helper(f, args) => {
                let values = args
                    .iter()
                    .map(|a| a.eval(cx))
                    .collect::<Result<Vec<_>, _>>()?;
                f(&values).ok_or(Stop::Fallback)
            }
            Native::Has(x) => Ok(sandbox::has_value(&x.eval(cx)?).into()),
            Native::Header(name) => Ok(cx.helper.header(name)),
        }
    }
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

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::sync::Arc;

    use super::*;
    use crate::compile::script::{Compiler, Site};
    use crate::eval::event::Event;

    const EXPRS: &[&str] = &[
        "error.status == 429",
        "error.status != 429",
        "error.status == \"429\"",
        "error.code == () || error.code == \"invalid_grant\"",
        "phase == \"token_refresh\" && oauth.has_refresh_token",
        "phase == \"token_refresh\" && oauth?.has_refresh_token == true",
        "connection?.provider_error_code == \"PROVIDER_RATE_LIMITED\"",
        "connection.oauth.has_refresh_token == false",
        "event.connection.api_key.location == \"query\"",
        "signal(\"sig_a\") || error.status == 401",
        "!signal(\"sig_b\") && has(error.message)",
        "has(oauth?.client_id)",
        "header(\"Retry-After\") == \"120\"",
        "(error.message ?? error.code) == \"boom\"",
        "error.body.error == \"invalid_grant\"",
        "error.body?.error?.code == 403",
        "oauth.app_status == \"testing\" || oauth.app_status == \"unverified\"",
        "error.status == 401.0",
        "error.status",
        "error.code || true",
        "now == 1795428000",
        "(error?.status ?? 0) < 100 && signal(\"sig_a\")",
        "error.status >= 400 && error.status <= 499",
        "error?.code in [\"invalid_grant\", \"PROVIDER_RATE_LIMITED\", ()]",
        "connection?.provider_error_code in [\"PROVIDER_RATE_LIMITED\"] || error.status in [429, 503]",
        "!(error.code in [\"invalid_grant\"])",
        "matches(error?.message, `^b(o)+m$`) || matches(text(), `sig_[ab]`)",
        "lower(error?.code) == \"invalid_grant\"",
        "matches(error?.kind, \"^(network|tls)$\")",
        "dig(error, \"body.error\") == \"invalid_grant\"",
        "dig(error, 5) == ()",
        "contains_ci(error?.message, \"BOOM\") || contains_ci(error.code, \"grant\")",
        "past(connection?.oauth?.access_token_expires_at) == true",
        "seconds_since(event?.occurred_at) > 3600",
        "url(connection?.base_url)?.host == \"api.example.com\"",
        "retry_hint() == 120",
        "has(dig(error, \"headers.retry-after\"))",
        "missing(connection?.required_scopes, connection?.granted_scopes) == ()",
        "secret(\"api_key\").present",
        "secret_matches(\"api_key\", \"^sk_\") == true",
    ];

    const EVENTS: &[&str] = &[
        r#"{"occurred_at":"2026-11-23T10:00:00Z","error":{"status":429,"headers":{"retry-after":"120"},"message":"boom"}}"#,
        r#"{"error":{"status":401,"code":"invalid_grant","body":{"error":"invalid_grant"}},"phase":"token_refresh","connection":{"oauth":{"has_refresh_token":true,"client_id":" "}}}"#,
        r#"{"error":{"status":"429","body":{"error":{"code":403}}},"connection":{"provider_error_code":"PROVIDER_RATE_LIMITED","api_key":{"location":"query"},"oauth":{"app_status":"testing"}}}"#,
        r#"{"error":{"status":401.0,"message":"a sig_a b","body":"text body"},"connection":null}"#,
        r#"{"error":{}}"#,
        r#"{"error":{"code":true,"message":""},"connection":{"oauth":7}}"#,
        r#"{"occurred_at":"2026-11-23T12:00:00Z","error":{"status":401,"message":"Boom","headers":{"Retry-After":"120"}},"connection":{"base_url":"https://API.example.com/v1","required_scopes":["repo"],"granted_scopes":"read:user","oauth":{"access_token_expires_at":"2026-11-23T10:00:00Z"},"secrets":{"api_key":"sk_live_x"}}}"#,
    ];

    #[test]
    fn agrees_with_rhai() {
        let signals = Arc::new(crate::signals::tests::build(&[
            ("sig_a", &["sig_a"]),
            ("sig_b", &["sig_b"]),
        ]));
        let engine = sandbox::engine();
        let compiler = Compiler::new(&engine, &signals, Default::default());
        let mut specialised = 0;
        let mut decided = 0;
        for src in EXPRS {
            let mut diags = Vec::new();
            let script = compiler
                .compile_at(
                    src,
                    (1, 1),
                    false,
                    Site {
                        file: "t",
                        yaml_path: "",
                    },
                    &mut diags,
                )
                .unwrap_or_else(|| panic!("{src}: {diags:?}"));
            let Some(native) = specialise(&script.ast, &signals) else {
                continue;
            };
            specialised += 1;
            for ev in EVENTS {
                let event = Event::parse(ev).unwrap();
                let helper = Rc::new(HelperCtx::new(
                    event.occurred_at.unwrap_or(0),
                    event.section("error"),
                    event.secrets.clone(),
                    signals.clone(),
                ));
                let _guard = sandbox::install(helper.clone());
                let vars = event.scope_values(
                    Dynamic::from_map(Map::new()).into_shared(),
                    event.occurred_at.unwrap_or(0),
                );
                let mut scope = rhai::Scope::new();
                for (name, v) in SCOPE_VARS.iter().zip(&vars) {
                    scope.push_constant_dynamic(*name, v.clone());
                }
                let rhai = engine.eval_ast_with_scope::<Dynamic>(&mut scope, &script.ast);
                let nat = native.eval(&NativeCtx {
                    vars: &vars,
                    helper: &helper,
                });
                match (&nat, &rhai) {
                    (Ok(n), Ok(r)) => {
                        decided += 1;
                        assert_eq!(n.to_string(), r.to_string(), "{src} on {ev}")
                    }
                    (Err(Stop::Missing(_)), Err(e)) => assert!(
                        matches!(
                            **e,
                            rhai::EvalAltResult::ErrorDotExpr(..)
                                | rhai::EvalAltResult::ErrorPropertyNotFound(..)
                        ),
                        "{src} on {ev}: {e}"
                    ),
                    (Err(Stop::Fallback), _) => {}
                    _ => panic!("{src} on {ev}: native {nat:?} vs rhai {rhai:?}"),
                }
            }
        }
        assert!(
            specialised >= 22,
            "only {specialised} expressions specialised"
        );
        assert!(
            decided >= 100,
            "only {decided} evaluations decided natively"
        );
    }
}
