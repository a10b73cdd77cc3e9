//! Whole scripts (statements, locals, control flow) compiled from Rhai's AST into a native
//! tree, for the scripts the expression specialiser in `mod.rs` does not cover.
//!
//! The compiler accepts a script only when every statement and expression in it has a native
//! form; otherwise the script stays with the interpreter as a whole (a script is never split
//! between the two). Local variables are resolved at load time to numbered slots, following
//! Rhai's own block scoping, so evaluation never looks a name up.
//!
//! Exactness: evaluation (`exec.rs`) either produces exactly the value Rhai would, or stops
//! with `Stop::Fallback` and the interpreter runs the script from the start. That includes
//! every error: Rhai's message (and whether it counts as missing data) is then Rhai's own.
//! Re-running is safe because scripts have no side effects beyond the per-event signal cache.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use regex::Regex;
use rhai::{
    AST, ASTFlags, ASTNode, Dynamic, Expr, FnCallExpr, FnPtr, ImmutableString, Map, ScriptFuncDef,
    Shared, Stmt, SwitchCasesCollection, Token,
};

use super::Known;
use super::ops::{BinOp, Method, Mutator};
use crate::sandbox::{self, MAX_OPERATIONS, SCOPE_VARS};

/// Node visits a native evaluation may make. Rhai counts at most a few operations per AST
/// node it visits, so staying under a fifth of its operation limit means Rhai would not have
/// hit the limit either; a script that needs more (a long loop) falls back, and Rhai decides
/// (normally with its "too many operations" error).
pub(super) const BUDGET: u32 = (MAX_OPERATIONS / 5) as u32;

/// Locals a program may use: the engine allows 256 variables, 12 of them the event's.
const MAX_SLOTS: usize = 200;

/// A compiled script.
#[derive(Debug, Clone)]
pub struct Program {
    pub(super) body: Box<[S]>,
    pub(super) slots: usize,
    /// Node visits of one pass through the script, loop bodies once.
    pub(super) cost: u32,
}

/// A statement. Its value is the value of the block's last statement, as in Rhai.
#[derive(Debug, Clone)]
pub(super) enum S {
    /// An expression statement; its value is flattened (shared values unwrapped).
    Expr(E),
    /// A function call statement; its value is kept as is.
    Call(E),
    Let(u16, E),
    Assign(u16, E),
    /// `x op= value`: the value is evaluated first, then combined with the variable.
    OpAssign(u16, BinOp, E),
    If(Box<(E, Block, Block)>),
    /// `while cond { }` and `loop { }` (no condition).
    While(Box<Loop>),
    For(Box<For>),
    Break(Option<E>),
    Continue,
    Return(Option<E>),
    Block(Block),
    /// `x.trim()`, `x.push(v)` on a local variable.
    Mutate(u16, Mutator, Box<[E]>),
    Switch(Box<Switch>),
}

/// `switch value { "a" => x, 2 if cond => y, _ => z }` with string and integer cases.
#[derive(Debug, Clone)]
pub(super) struct Switch {
    pub value: E,
    /// Case value, then its blocks in order: an optional condition and the result.
    pub arms: Box<[Arm]>,
    pub default: Option<E>,
}

/// One `switch` case value and its blocks: an optional condition and the result each.
pub(super) type Arm = (Dynamic, Box<[(Option<E>, E)]>);

/// A map literal's fields: key and value expression.
pub(super) type Fields = Box<[(ImmutableString, E)]>;

/// A closure (`|x| x != ""`) applied by an array method; captured variables come first.
#[derive(Debug, Clone)]
pub(super) struct Closure {
    pub body: Block,
    /// Parameters, captured variables included; they occupy the first slots.
    pub params: usize,
    pub slots: usize,
    pub cost: u32,
    pub captured: Box<[E]>,
}

/// Array methods that call a closure per item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Apply {
    Filter,
    Some,
    All,
    Map,
    Reduce,
}

impl Apply {
    fn by_name(name: &str) -> Option<Apply> {
        Some(match name {
            "filter" => Apply::Filter,
            "some" => Apply::Some,
            "all" => Apply::All,
            "map" => Apply::Map,
            "reduce" => Apply::Reduce,
            _ => return None,
        })
    }

    /// Arguments Rhai passes besides the captured ones: the item (or accumulator and item), and
    /// optionally the index, chosen by the closure's arity.
    fn arities(self) -> [usize; 2] {
        match self {
            Apply::Reduce => [2, 3],
            _ => [1, 2],
        }
    }
}

pub(super) type Block = Box<[S]>;

#[derive(Debug, Clone)]
pub(super) struct Loop {
    pub cond: Option<E>,
    pub body: Block,
    /// Node visits of one iteration, charged against the budget.
    pub cost: u32,
}

#[derive(Debug, Clone)]
pub(super) struct For {
    pub var: u16,
    pub counter: Option<u16>,
    pub iter: E,
    pub body: Block,
    pub cost: u32,
}

/// An expression.
#[derive(Debug, Clone)]
pub(super) enum E {
    Lit(Dynamic),
    /// One of the event's variables, by index in `SCOPE_VARS`.
    Var(usize),
    Local(u16),
    Chain(Box<Chain>),
    /// A chain of properties from a scope variable, numbered in the library's `PathSet`: read
    /// once per event.
    Path(u32, Box<Chain>),
    And(Box<[E]>),
    Or(Box<[E]>),
    Coalesce(Box<[E]>),
    Not(Box<E>),
    Neg(Box<E>),
    Bin(BinOp, Box<(E, E)>),
    Call(Func, Box<[E]>),
    Array(Box<[E]>),
    /// A map literal: the literal's own template (keys in place) and the values to fill in.
    Map(Box<(Map, Fields)>),
    /// `{ ... }` and `if`/`switch` used as values.
    Block(Block),
}

/// `root.a?.b[i].m(x)`: Rhai evaluates the index and argument expressions first, then walks.
#[derive(Debug, Clone)]
pub(super) struct Chain {
    pub root: E,
    pub steps: Box<[Step]>,
    /// Index and method-argument expressions, in evaluation order.
    pub args: Box<[E]>,
    /// Whether a step runs a closure (the walk then needs the evaluator).
    pub applies: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Step {
    /// `?.` / `?[`: a `()` target ends the whole chain with `()`.
    pub elvis: bool,
    pub kind: StepKind,
}

#[derive(Debug, Clone)]
pub(super) enum StepKind {
    Prop(ImmutableString),
    /// Takes the next argument as the index.
    Index,
    /// Takes the next `n` arguments.
    Method(Method, usize),
    /// A helper called as a method (`list.join(", ")`); takes the next `n` arguments.
    Helper(sandbox::NativeHelper, usize),
    Apply(Apply, Box<Closure>),
}

/// A function call (or an operator Rhai implements as one).
#[derive(Debug, Clone)]
pub(super) enum Func {
    /// `signal("name")` with a known signal.
    Signal(usize),
    Signal1,
    Text,
    Header,
    /// `matches(x, "literal")`.
    Matches(Arc<sandbox::LazyRegex>),
    Matches2,
    Has,
    Lower,
    TypeOf,
    Dig,
    /// `url(x)`: a pure function of the text, so results are remembered (see `exec`).
    Url(sandbox::NativeHelper),
    /// A method called as a function: `len(x)`, `contains(list, x)` (what `x in list` is).
    Method(Method),
    /// Any other helper with a native twin.
    Helper(sandbox::NativeHelper),
}

/// Compiles a whole script, or says why not (for tests and tuning). The source text is used
/// only to recover `switch` case values (the AST keeps their hashes).
pub(super) fn compile(ast: &AST, signals: &Known<'_>, source: &str) -> Result<Program, String> {
    let fns: Vec<Shared<ScriptFuncDef>> = ast.iter_fn_def().cloned().collect();
    // Named functions could shadow helpers; only closures are compiled.
    if fns.iter().any(|f| !f.name.starts_with("anon$")) {
        return Err("defines functions".into());
    }
    let mut c = Compiler {
        signals,
        names: Vec::new(),
        slots: 0,
        cost: 0,
        fns,
        source,
        literals: None,
        in_closure: false,
    };
    let body = c.block(ast.statements())?;
    if c.slots > MAX_SLOTS {
        return Err("too many variables".into());
    }
    if c.cost > BUDGET {
        return Err("too long".into());
    }
    Ok(Program {
        body,
        slots: c.slots,
        cost: c.cost,
    })
}

struct Compiler<'a> {
    signals: &'a Known<'a>,
    /// Locals in scope, innermost last: name, slot, constant.
    names: Vec<(ImmutableString, u16, bool)>,
    slots: usize,
    cost: u32,
    /// The script's closures.
    fns: Vec<Shared<ScriptFuncDef>>,
    source: &'a str,
    /// `switch` case values by hash, recovered from the source on first need.
    literals: Option<HashMap<u64, Dynamic>>,
    /// Closure bodies see only their parameters.
    in_closure: bool,
}

type R<T> = Result<T, String>;

fn no<T>(why: impl std::fmt::Display) -> R<T> {
    Err(why.to_string())
}

impl Compiler<'_> {
    /// A block with its own scope: its `let`s end with it.
    fn block(&mut self, stmts: &[Stmt]) -> R<Block> {
        let depth = self.names.len();
        let out = stmts.iter().map(|s| self.stmt(s)).collect::<R<Vec<_>>>()?;
        self.names.truncate(depth);
        Ok(out.into())
    }

    fn new_slot(&mut self, name: &ImmutableString, constant: bool) -> R<u16> {
        let slot = u16::try_from(self.slots).or_else(|_| no("too many variables"))?;
        self.slots += 1;
        self.names.push((name.clone(), slot, constant));
        Ok(slot)
    }

    fn local(&self, name: &str) -> Option<(u16, bool)> {
        self.names
            .iter()
            .rev()
            .find(|(n, ..)| n.as_str() == name)
            .map(|&(_, slot, constant)| (slot, constant))
    }

    fn stmt(&mut self, s: &Stmt) -> R<S> {
        self.cost += 1;
        Ok(match s {
            Stmt::Noop(_) => S::Block(Box::new([])),
            Stmt::Expr(e) => match self.mutation(e)? {
                Some(m) => m,
                None => S::Expr(self.expr(e)?),
            },
            Stmt::FnCall(f, _) => S::Call(self.call(f)?),
            Stmt::Var(x, flags, _) => {
                if flags.contains(ASTFlags::EXPORTED) {
                    return no("export");
                }
                let (ident, value, _) = &**x;
                // The value is compiled before the name exists: `let x = x + 1` reads the outer x.
                let value = self.expr(value)?;
                let slot = self.new_slot(&ident.name, flags.contains(ASTFlags::CONSTANT))?;
                S::Let(slot, value)
            }
            Stmt::Assignment(x) => {
                let (op, bin) = &**x;
                let Expr::Variable(v, ..) = &bin.lhs else {
                    return no("assignment to a property or index");
                };
                let Some((slot, false)) = self.local(&v.1) else {
                    return no("assignment to a constant");
                };
                let value = self.expr(&bin.rhs)?;
                match op.get_op_assignment_info() {
                    None => S::Assign(slot, value),
                    Some((.., base, _)) => S::OpAssign(slot, bin_op(base)?, value),
                }
            }
            Stmt::If(x, _) => {
                let cond = self.expr(&x.expr)?;
                let then = self.block(x.body.statements())?;
                let other = self.block(x.branch.statements())?;
                S::If(Box::new((cond, then, other)))
            }
            Stmt::While(x, _) => {
                let before = self.cost;
                let cond = match &x.expr {
                    Expr::Unit(_) | Expr::BoolConstant(true, _) => None,
                    e => Some(self.expr(e)?),
                };
                let body = self.block(x.body.statements())?;
                S::While(Box::new(Loop {
                    cond,
                    body,
                    cost: self.cost - before + 1,
                }))
            }
            Stmt::For(x, _) => {
                let (var, counter, flow) = &**x;
                let iter = self.expr(&flow.expr)?;
                let before = self.cost;
                let depth = self.names.len();
                let counter = counter
                    .as_ref()
                    .map(|c| self.new_slot(&c.name, false))
                    .transpose()?;
                let var = self.new_slot(&var.name, false)?;
                let body = self.block(flow.body.statements())?;
                self.names.truncate(depth);
                S::For(Box::new(For {
                    var,
                    counter,
                    iter,
                    body,
                    cost: self.cost - before + 1,
                }))
            }
            Stmt::BreakLoop(value, flags, _) => {
                if flags.contains(ASTFlags::BREAK) {
                    S::Break(value.as_deref().map(|e| self.expr(e)).transpose()?)
                } else {
                    S::Continue
                }
            }
            Stmt::Return(value, flags, _) => {
                if flags.contains(ASTFlags::BREAK) {
                    return no("throw");
                }
                S::Return(value.as_deref().map(|e| self.expr(e)).transpose()?)
            }
            Stmt::Block(b) => S::Block(self.block(b.statements())?),
            Stmt::Switch(x, _) => S::Switch(Box::new(self.switch(&x.0, &x.1)?)),
            Stmt::Do(..) => return no("do loop"),
            Stmt::TryCatch(..) => return no("try"),
            _ => return no("statement"),
        })
    }

    /// `x.trim();` and `x.push(v);` on a local variable.
    fn mutation(&mut self, e: &Expr) -> R<Option<S>> {
        let Expr::Dot(bin, flags, _) = e else {
            return Ok(None);
        };
        let (Expr::Variable(v, ..), Expr::MethodCall(f, _)) = (&bin.lhs, &bin.rhs) else {
            return Ok(None);
        };
        let Some(m) = Mutator::by_name(&f.name, f.args.len()) else {
            return Ok(None);
        };
        if flags.contains(ASTFlags::NEGATED) {
            return no("?. mutation");
        }
        let Some((slot, false)) = self.local(&v.1) else {
            return no("mutating a constant");
        };
        self.cost += 2;
        let args = f.args.iter().map(|a| self.expr(a)).collect::<R<Vec<_>>>()?;
        Ok(Some(S::Mutate(slot, m, args.into())))
    }

    fn exprs(&mut self, list: &[Expr]) -> R<Box<[E]>> {
        list.iter()
            .map(|x| self.expr(x))
            .collect::<R<Vec<_>>>()
            .map(Into::into)
    }

    fn expr(&mut self, e: &Expr) -> R<E> {
        self.cost += 1;
        Ok(match e {
            Expr::DynamicConstant(d, _) => E::Lit((**d).clone()),
            Expr::BoolConstant(b, _) => E::Lit((*b).into()),
            Expr::IntegerConstant(i, _) => E::Lit((*i).into()),
            Expr::FloatConstant(f, _) => E::Lit((*f).into()),
            Expr::CharConstant(c, _) => E::Lit((*c).into()),
            Expr::StringConstant(s, _) => E::Lit(s.clone().into()),
            Expr::Unit(_) => E::Lit(Dynamic::UNIT),
            Expr::Variable(v, ..) => {
                if !v.2.is_empty() {
                    return no("module variable");
                }
                self.var(&v.1)?
            }
            Expr::Array(items, _) => E::Array(self.exprs(items)?),
            Expr::Map(x, _) => {
                let (fields, template) = &**x;
                let template: Map = template.clone();
                let fields = fields
                    .iter()
                    .map(|(k, v)| Ok((k.name.clone(), self.expr(v)?)))
                    .collect::<R<Vec<_>>>()?;
                E::Map(Box::new((template, fields.into())))
            }
            Expr::And(list, _) => E::And(self.exprs(list)?),
            Expr::Or(list, _) => E::Or(self.exprs(list)?),
            Expr::Coalesce(list, _) => E::Coalesce(self.exprs(list)?),
            Expr::Stmt(b) => E::Block(self.block(b.statements())?),
            Expr::FnCall(f, _) => self.call(f)?,
            Expr::Dot(..) | Expr::Index(..) => self.chain(e)?,
            Expr::InterpolatedString(..) => return no("interpolated string"),
            _ => return no("expression"),
        })
    }

    fn var(&self, name: &str) -> R<E> {
        if let Some((slot, _)) = self.local(name) {
            return Ok(E::Local(slot));
        }
        if self.in_closure {
            return no(format!("variable {name} in a closure"));
        }
        match SCOPE_VARS.iter().position(|v| *v == name) {
            Some(i) => Ok(E::Var(i)),
            None => no(format!("variable {name}")),
        }
    }

    fn call(&mut self, f: &FnCallExpr) -> R<E> {
        if !f.namespace.is_empty() || f.capture_parent_scope {
            return no("qualified or capturing call");
        }
        let args = &f.args[..];
        if let Some(op) = &f.op_token {
            return match (op, args) {
                (Token::Bang, [a]) => Ok(E::Not(Box::new(self.expr(a)?))),
                (Token::Minus | Token::UnaryMinus, [a]) => Ok(E::Neg(Box::new(self.expr(a)?))),
                (op, [a, b]) => {
                    let op = bin_op(op)?;
                    Ok(E::Bin(op, Box::new((self.expr(a)?, self.expr(b)?))))
                }
                _ => no(format!("operator {}", f.name)),
            };
        }
        let func = match (f.name.as_str(), args) {
            ("signal", [Expr::StringConstant(s, _)]) => match self.signals.id(s) {
                Some(id) => {
                    self.cost += 1;
                    return Ok(E::Call(Func::Signal(id), Box::new([])));
                }
                None => Func::Signal1,
            },
            ("signal", [_]) => Func::Signal1,
            ("text", []) => Func::Text,
            ("header", [_]) => Func::Header,
            ("matches", [_, Expr::StringConstant(p, _)]) => Func::Matches(self.signals.pattern(p)),
            ("matches", [_, _]) => Func::Matches2,
            ("has", [_]) => Func::Has,
            ("lower", [_]) => Func::Lower,
            ("type_of", [_]) => Func::TypeOf,
            ("dig", [_, _]) => Func::Dig,
            ("url", [_]) => match sandbox::native_helper("url", 1) {
                Some(h) => Func::Url(h),
                None => return no("url"),
            },
            (name, args) => match Method::by_name(name) {
                Some(m) if !args.is_empty() => Func::Method(m),
                _ => match sandbox::native_helper(name, args.len()) {
                    Some(h) => Func::Helper(h),
                    None => return no(format!("function {name}/{}", args.len())),
                },
            },
        };
        // `matches` with a literal pattern keeps only the text argument.
        let args = match func {
            Func::Matches(_) => self.exprs(&args[..1])?,
            _ => self.exprs(args)?,
        };
        Ok(E::Call(func, args))
    }

    /// Flattens Rhai's right-nested `Dot`/`Index` tree into a root and a list of steps.
    fn chain(&mut self, e: &Expr) -> R<E> {
        let mut steps = Vec::new();
        let mut args = Vec::new();
        let root = match e {
            Expr::Dot(b, ..) | Expr::Index(b, ..) => &b.lhs,
            _ => return no("chain"),
        };
        let root = self.expr(root)?;
        let mut node = e;
        loop {
            self.cost += 2;
            let (bin, flags, dot) = match node {
                Expr::Dot(b, f, _) => (b, *f, true),
                Expr::Index(b, f, _) => (b, *f, false),
                _ => return no("chain"),
            };
            let elvis = flags.contains(ASTFlags::NEGATED);
            // The accessor of this level is the rhs itself, or the lhs of a nested level.
            let (access, next) = match &bin.rhs {
                Expr::Dot(inner, ..) | Expr::Index(inner, ..)
                    if !flags.contains(ASTFlags::BREAK) =>
                {
                    (&inner.lhs, Some(&bin.rhs))
                }
                other => (other, None),
            };
            let kind = if dot {
                match access {
                    Expr::Property(p, _) => StepKind::Prop(p.2.clone()),
                    Expr::MethodCall(f, _) => {
                        if let (Some(apply), [closure]) = (Apply::by_name(&f.name), &f.args[..]) {
                            StepKind::Apply(apply, Box::new(self.closure(apply, closure)?))
                        } else {
                            for a in f.args.iter() {
                                args.push(self.expr(a)?);
                            }
                            let n = f.args.len();
                            match Method::by_name(&f.name) {
                                Some(m) => StepKind::Method(m, n),
                                None => match sandbox::native_helper(&f.name, n + 1) {
                                    Some(h) => StepKind::Helper(h, n),
                                    None => return no(format!("method {}", f.name)),
                                },
                            }
                        }
                    }
                    _ => return no("dot"),
                }
            } else {
                args.push(self.expr(access)?);
                StepKind::Index
            };
            steps.push(Step { elvis, kind });
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        let applies = steps.iter().any(|s| matches!(s.kind, StepKind::Apply(..)));
        let path = match root {
            E::Var(var) if args.is_empty() => steps
                .iter()
                .map(|s| match &s.kind {
                    StepKind::Prop(p) => Some((p.clone(), s.elvis)),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .and_then(|props| self.signals.path(var, props.into_iter())),
            _ => None,
        };
        let chain = Box::new(Chain {
            root,
            steps: steps.into(),
            args: args.into(),
            applies,
        });
        Ok(match path {
            Some(id) => E::Path(id, chain),
            None => E::Chain(chain),
        })
    }
}

impl Compiler<'_> {
    /// A closure argument: `|x| ...` (a function pointer constant) or, when it captures
    /// variables, the block Rhai generates (`Share` the variables, then `curry` them).
    fn closure(&mut self, apply: Apply, e: &Expr) -> R<Closure> {
        let (ptr, captured) = match e {
            Expr::DynamicConstant(..) => (e, &[][..]),
            Expr::Stmt(b) => match b.statements() {
                [Stmt::Share(_), Stmt::FnCall(f, _)] if f.name == "curry" && !f.args.is_empty() => {
                    (&f.args[0], &f.args[1..])
                }
                _ => return no("closure block"),
            },
            _ => return no("closure argument"),
        };
        let Expr::DynamicConstant(d, _) = ptr else {
            return no("closure pointer");
        };
        let Some(name) = d.read_lock::<FnPtr>().map(|p| p.fn_name().to_string()) else {
            return no("closure pointer");
        };
        let Some(def) = self.fns.iter().find(|f| f.name == name).cloned() else {
            return no("closure definition");
        };
        // Captured values are plain variables of the enclosing scope.
        let captured = captured
            .iter()
            .map(|c| match c {
                Expr::Variable(..) => self.expr(c),
                _ => no("captured expression"),
            })
            .collect::<R<Vec<_>>>()?;
        let params = def.params.len();
        if !apply
            .arities()
            .contains(&params.saturating_sub(captured.len()))
            || params < captured.len()
        {
            return no("closure arity");
        }
        // Compile the body in a fresh scope holding only the parameters. Captured ones are
        // shared with the enclosing scope in Rhai, so they must not be assigned to.
        let saved = (
            std::mem::take(&mut self.names),
            self.slots,
            self.cost,
            self.in_closure,
        );
        self.slots = 0;
        self.cost = 0;
        self.in_closure = true;
        let compiled = (|| {
            for (i, p) in def.params.iter().enumerate() {
                self.new_slot(p, i < captured.len())?;
            }
            self.body_of(&def)
        })();
        let (slots, cost) = (self.slots, self.cost);
        (self.names, self.slots, self.cost, self.in_closure) = saved;
        self.cost += cost;
        Ok(Closure {
            body: compiled?,
            params,
            slots,
            cost: cost + 1,
            captured: captured.into(),
        })
    }

    /// A closure's body. Rhai does not export the type holding it, so the body is reached
    /// through `AST::walk` over an AST made of this one function: its top-level statements are
    /// the nodes whose path has length one, visited in order.
    fn body_of(&mut self, def: &Shared<ScriptFuncDef>) -> R<Block> {
        let mut module = rhai::Module::new();
        module.set_script_fn(def.clone());
        let one = AST::new_from_module(module);
        let mut out = Vec::new();
        let mut failed = None;
        one.walk(&mut |path: &[ASTNode]| {
            if let [ASTNode::Stmt(s)] = path {
                match self.stmt(s) {
                    Ok(x) => out.push(x),
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                }
            }
            true
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(out.into()),
        }
    }

    fn switch(&mut self, value: &Expr, cases: &SwitchCasesCollection) -> R<Switch> {
        if !cases.ranges.is_empty() {
            return no("switch ranges");
        }
        let literals = match self.literals.take() {
            Some(l) => l,
            None => literals(self.source),
        };
        let mut arms = Vec::new();
        let mut found = true;
        for (hash, list) in cases.cases.iter() {
            let Some(text) = literals.get(hash) else {
                found = false;
                break;
            };
            let blocks = list
                .blocks
                .iter()
                .map(|&i| {
                    let b = cases.expressions.get(i).ok_or("switch case")?;
                    let cond = match &b.lhs {
                        Expr::BoolConstant(true, _) => None,
                        c => Some(self.expr(c)?),
                    };
                    Ok((cond, self.expr(&b.rhs)?))
                })
                .collect::<R<Vec<_>>>()?;
            arms.push((text.clone(), blocks.into()));
        }
        self.literals = Some(literals);
        if !found {
            return no("switch case that is not a string or integer literal");
        }
        let default = cases
            .def_case
            .map(|i| {
                let b = cases.expressions.get(i).ok_or("switch default")?;
                self.expr(&b.rhs)
            })
            .transpose()?;
        Ok(Switch {
            value: self.expr(value)?,
            arms: arms.into(),
            default,
        })
    }
}

/// The string and integer literals of a script, by the hash Rhai gives them as `switch` cases.
/// Rhai itself parses them (in a probe `switch` of all the script's literal tokens) and computes
/// the hashes, so escapes and hashing are exactly Rhai's; a token the scan gets wrong only adds
/// a useless entry (or makes the probe fail, and the switch stays with Rhai).
fn literals(source: &str) -> HashMap<u64, Dynamic> {
    static TOKEN: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#""(?:[^"\\\n]|\\.)*"|\b[0-9]+\b"#).expect("static regex"));
    let mut tokens: Vec<&str> = TOKEN.find_iter(source).map(|m| m.as_str()).collect();
    tokens.sort_unstable();
    tokens.dedup();
    if tokens.is_empty() {
        return HashMap::new();
    }
    let probe = format!(
        "switch () {{ {} }}",
        tokens
            .iter()
            .map(|t| format!("{t} => {t}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let Ok(ast) = rhai::Engine::new_raw().compile(&probe) else {
        return HashMap::new();
    };
    let [Stmt::Switch(x, _)] = ast.statements() else {
        return HashMap::new();
    };
    let cases = &x.1;
    cases
        .cases
        .iter()
        .filter_map(|(hash, list)| {
            let first = *list.blocks.first()?;
            match &cases.expressions.get(first)?.rhs {
                Expr::StringConstant(s, _) => Some((*hash, s.clone().into())),
                Expr::IntegerConstant(i, _) => Some((*hash, (*i).into())),
                _ => None,
            }
        })
        .collect()
}

fn bin_op(t: &Token) -> R<BinOp> {
    Ok(match t {
        Token::EqualsTo => BinOp::Eq,
        Token::NotEqualsTo => BinOp::Ne,
        Token::LessThan => BinOp::Lt,
        Token::LessThanEqualsTo => BinOp::Le,
        Token::GreaterThan => BinOp::Gt,
        Token::GreaterThanEqualsTo => BinOp::Ge,
        Token::Plus => BinOp::Add,
        Token::Minus => BinOp::Sub,
        Token::Multiply => BinOp::Mul,
        Token::Divide => BinOp::Div,
        Token::Modulo => BinOp::Rem,
        other => return no(format!("operator {other:?}")),
    })
}
