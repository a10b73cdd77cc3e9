//! Evaluation of compiled programs (`program.rs`) against one event.
//!
//! Control flow (`return`, `break`, `continue`) travels on the error channel, as it does in
//! Rhai, so `?` carries it out of nested blocks and expressions. Anything that is not a plain
//! success becomes `Stop::Fallback` at the top: the interpreter then runs the script and
//! reports exactly what Rhai reports.

use rhai::{Array, Dynamic, INT, ImmutableString, Map};

use super::ops::{self, BinOp, Kind};
use super::program::{
    Apply, BUDGET, Chain, Closure, E, For, Func, Loop, Program, S, Step, StepKind, Switch,
};
use super::{NativeCtx, Stop};
use crate::sandbox;

/// Why evaluation left the normal path.
enum Ctl {
    /// Not decidable natively (including every error Rhai would raise).
    Fallback,
    Return(Dynamic),
    Break(Dynamic),
    Continue,
    /// Past the wall-clock budget: stops the script, through closures and loops.
    Overrun(sandbox::Overrun),
}

type R<T> = Result<T, Ctl>;

/// `?` on an `Option` of the value semantics in `ops`: `None` means "let Rhai decide".
trait OrFallback<T> {
    fn or_fb(self) -> R<T>;
}

impl<T> OrFallback<T> for Option<T> {
    #[inline]
    fn or_fb(self) -> R<T> {
        self.ok_or(Ctl::Fallback)
    }
}

/// Loop iterations and closure calls between looks at the clock: an iteration is several node
/// visits, so four times as often as Rhai's operations.
const EVERY: u64 = sandbox::CLOCK_EVERY / 4;

struct Run<'a, 'c> {
    cx: &'a NativeCtx<'c>,
    slots: Vec<Dynamic>,
    /// Node visits left before the script counts as too long for native evaluation.
    budget: u32,
    /// Loop iterations and closure calls so far; every `EVERY`th looks at the clock.
    ticks: u64,
}

impl Program {
    pub(crate) fn eval(&self, cx: &NativeCtx<'_>) -> Result<Dynamic, Stop> {
        let mut run = Run {
            cx,
            slots: vec![Dynamic::UNIT; self.slots],
            budget: BUDGET.saturating_sub(self.cost),
            ticks: 0,
        };
        match run.block(&self.body) {
            Ok(v) | Err(Ctl::Return(v)) => {
                if run.ticks >= EVERY {
                    sandbox::native_done();
                }
                Ok(v)
            }
            Err(Ctl::Overrun(o)) => Err(Stop::Overrun(o)),
            // The interpreter takes over (and keeps this run's clock, if it started).
            Err(_) => Err(Stop::Fallback),
        }
    }
}

/// Unwraps a shared value (an event section) the way Rhai does before it copies a value into a
/// variable or hands it to a function that might print it.
fn flat(v: Dynamic) -> Dynamic {
    if v.is_shared() { v.flatten() } else { v }
}

fn boolean(v: &Dynamic) -> R<bool> {
    v.as_bool().map_err(|_| Ctl::Fallback)
}

impl Run<'_, '_> {
    fn charge(&mut self, cost: u32) -> R<()> {
        self.budget = self.budget.checked_sub(cost).ok_or(Ctl::Fallback)?;
        // An iteration is several node visits: look at the clock four times as often as Rhai.
        self.ticks += 1;
        if self.ticks.is_multiple_of(EVERY) {
            let who = if self.ticks == EVERY {
                sandbox::Looker::NativeFirst
            } else {
                sandbox::Looker::Again
            };
            if let Some(o) = sandbox::look_at_clock(who) {
                return Err(Ctl::Overrun(o));
            }
        }
        Ok(())
    }

    fn block(&mut self, stmts: &[S]) -> R<Dynamic> {
        let mut last = Dynamic::UNIT;
        for s in stmts {
            last = self.stmt(s)?;
        }
        Ok(last)
    }

    fn stmt(&mut self, s: &S) -> R<Dynamic> {
        Ok(match s {
            S::Expr(e) => flat(self.expr(e)?),
            S::Call(e) => self.expr(e)?,
            S::Let(slot, e) | S::Assign(slot, e) => {
                let v = flat(self.expr(e)?);
                self.slots[*slot as usize] = v;
                Dynamic::UNIT
            }
            S::OpAssign(slot, op, e) => {
                let rhs = flat(self.expr(e)?);
                let cur = &self.slots[*slot as usize];
                let v = ops::binary(*op, cur, &rhs).or_fb()?;
                ops::within_limits(&v).or_fb()?;
                self.slots[*slot as usize] = v;
                Dynamic::UNIT
            }
            S::If(x) => {
                let (cond, then, other) = &**x;
                if boolean(&self.expr(cond)?)? {
                    self.block(then)?
                } else {
                    self.block(other)?
                }
            }
            S::While(l) => self.while_loop(l)?,
            S::For(f) => self.for_loop(f)?,
            S::Break(e) => {
                let v = match e {
                    Some(e) => self.expr(e)?,
                    None => Dynamic::UNIT,
                };
                return Err(Ctl::Break(v));
            }
            S::Continue => return Err(Ctl::Continue),
            S::Return(e) => {
                let v = match e {
                    Some(e) => flat(self.expr(e)?),
                    None => Dynamic::UNIT,
                };
                return Err(Ctl::Return(v));
            }
            S::Block(b) => self.block(b)?,
            S::Mutate(slot, m, args) => {
                let args = args
                    .iter()
                    .map(|a| self.expr(a).map(flat))
                    .collect::<R<Vec<_>>>()?;
                let target = &mut self.slots[*slot as usize];
                ops::mutate(*m, target, args).or_fb()?;
                ops::within_limits(target).or_fb()?;
                Dynamic::UNIT
            }
            S::Switch(sw) => self.switch(sw)?,
        })
    }

    fn switch(&mut self, sw: &Switch) -> R<Dynamic> {
        let v = self.expr(&sw.value)?;
        // A case matches a value of its own type (Rhai compares hashes, which include the
        // type); any other value takes the default.
        let arm = match ops::kind(&v) {
            Kind::Str => {
                let text = v.read_lock::<ImmutableString>().or_fb()?;
                sw.arms.iter().find(|(case, _)| {
                    case.read_lock::<ImmutableString>()
                        .is_some_and(|c| c.as_str() == text.as_str())
                })
            }
            Kind::Int => {
                let n = v.as_int().map_err(|_| Ctl::Fallback)?;
                sw.arms
                    .iter()
                    .find(|(case, _)| case.as_int().is_ok_and(|c| c == n))
            }
            _ => None,
        };
        let mut chosen = None;
        if let Some((_, blocks)) = arm {
            for (cond, result) in blocks.iter() {
                let take = match cond {
                    None => true,
                    Some(c) => boolean(&self.expr(c)?)?,
                };
                if take {
                    chosen = Some(result);
                    break;
                }
            }
        }
        match chosen.or(sw.default.as_ref()) {
            Some(e) => self.expr(e),
            None => Ok(Dynamic::UNIT),
        }
    }

    /// Runs a closure on one item: captured values, then the item arguments the closure's
    /// arity asks for, then its own locals.
    fn call_closure(
        &mut self,
        c: &Closure,
        captured: &[Dynamic],
        args: impl IntoIterator<Item = Dynamic>,
    ) -> R<Dynamic> {
        self.charge(c.cost)?;
        let mut frame = Vec::with_capacity(c.slots);
        frame.extend(captured.iter().cloned());
        frame.extend(args.into_iter().take(c.params - captured.len()));
        frame.resize(c.slots, Dynamic::UNIT);
        let saved = std::mem::replace(&mut self.slots, frame);
        let r = self.block(&c.body);
        self.slots = saved;
        match r {
            Ok(v) | Err(Ctl::Return(v)) => Ok(v),
            Err(Ctl::Overrun(o)) => Err(Ctl::Overrun(o)),
            Err(_) => Err(Ctl::Fallback),
        }
    }

    /// `filter`, `some`, `all`, `map` and `reduce` on an array, as the array package runs them.
    fn apply(&mut self, a: Apply, c: &Closure, target: &Dynamic) -> R<Dynamic> {
        let captured = c
            .captured
            .iter()
            .map(|e| self.expr(e))
            .collect::<R<Vec<_>>>()?;
        let arr = target.read_lock::<Array>().or_fb()?;
        let index = |i: usize| Dynamic::from(INT::try_from(i).unwrap_or(INT::MAX));
        let truthy = |v: Dynamic| v.as_bool().unwrap_or(false);
        let v = match a {
            Apply::Filter => {
                let mut out = Array::new();
                for (i, item) in arr.iter().enumerate() {
                    if truthy(self.call_closure(c, &captured, [item.clone(), index(i)])?) {
                        out.push(item.clone());
                    }
                }
                Dynamic::from_array(out)
            }
            Apply::Some => {
                let mut hit = false;
                for (i, item) in arr.iter().enumerate() {
                    if truthy(self.call_closure(c, &captured, [item.clone(), index(i)])?) {
                        hit = true;
                        break;
                    }
                }
                hit.into()
            }
            Apply::All => {
                let mut all = true;
                for (i, item) in arr.iter().enumerate() {
                    if !truthy(self.call_closure(c, &captured, [item.clone(), index(i)])?) {
                        all = false;
                        break;
                    }
                }
                all.into()
            }
            Apply::Map => {
                let mut out = Array::with_capacity(arr.len());
                for (i, item) in arr.iter().enumerate() {
                    out.push(self.call_closure(c, &captured, [item.clone(), index(i)])?);
                }
                Dynamic::from_array(out)
            }
            Apply::Reduce => {
                let mut acc = Dynamic::UNIT;
                for (i, item) in arr.iter().enumerate() {
                    acc = self.call_closure(c, &captured, [acc, item.clone(), index(i)])?;
                }
                acc
            }
        };
        ops::within_limits(&v).or_fb()?;
        Ok(v)
    }

    fn while_loop(&mut self, l: &Loop) -> R<Dynamic> {
        loop {
            self.charge(l.cost)?;
            if let Some(cond) = &l.cond
                && !boolean(&self.expr(cond)?)?
            {
                return Ok(Dynamic::UNIT);
            }
            match self.block(&l.body) {
                Ok(_) | Err(Ctl::Continue) => {}
                Err(Ctl::Break(v)) => return Ok(v),
                Err(e) => return Err(e),
            }
        }
    }

    fn for_loop(&mut self, f: &For) -> R<Dynamic> {
        let iter = flat(self.expr(&f.iter)?);
        // Arrays only: ranges, strings (characters) and custom iterators are Rhai's.
        let items: Array = iter.try_cast::<Array>().or_fb()?;
        for (i, item) in items.into_iter().enumerate() {
            self.charge(f.cost)?;
            if let Some(c) = f.counter {
                self.slots[c as usize] = (i as INT).into();
            }
            self.slots[f.var as usize] = flat(item);
            match self.block(&f.body) {
                Ok(_) | Err(Ctl::Continue) => {}
                Err(Ctl::Break(v)) => return Ok(v),
                Err(e) => return Err(e),
            }
        }
        Ok(Dynamic::UNIT)
    }

    fn expr(&mut self, e: &E) -> R<Dynamic> {
        Ok(match e {
            E::Lit(v) => v.clone(),
            E::Var(i) => self.cx.vars[*i].clone(),
            E::Local(s) => self.slots[*s as usize].clone(),
            E::Chain(c) => self.chain(c)?,
            E::Path(id, c) => {
                let helper = self.cx.helper;
                helper.field(*id, || self.chain(c))?
            }
            E::And(list) => {
                for x in list.iter() {
                    if !boolean(&self.expr(x)?)? {
                        return Ok(false.into());
                    }
                }
                true.into()
            }
            E::Or(list) => {
                for x in list.iter() {
                    if boolean(&self.expr(x)?)? {
                        return Ok(true.into());
                    }
                }
                false.into()
            }
            E::Coalesce(list) => {
                let mut last = Dynamic::UNIT;
                for x in list.iter() {
                    last = self.expr(x)?;
                    if !last.is_unit() {
                        break;
                    }
                }
                last
            }
            E::Not(x) => (!boolean(&self.expr(x)?)?).into(),
            E::Neg(x) => ops::negate(&self.expr(x)?).or_fb()?,
            E::Bin(op, x) => {
                let (a, b) = (self.expr(&x.0)?, self.expr(&x.1)?);
                let v = ops::binary(*op, &a, &b).or_fb()?;
                if *op == BinOp::Add {
                    ops::within_limits(&v).or_fb()?;
                }
                v
            }
            E::Call(f, args) => self.call(f, args)?,
            E::Array(items) => {
                let arr = items
                    .iter()
                    .map(|x| self.expr(x).map(flat))
                    .collect::<R<Array>>()?;
                let v = Dynamic::from_array(arr);
                ops::within_limits(&v).or_fb()?;
                v
            }
            E::Map(m) => {
                let (template, fields) = &**m;
                let mut map = template.clone();
                for (k, x) in fields.iter() {
                    let v = flat(self.expr(x)?);
                    map.insert(k.as_str().into(), v);
                }
                let v = Dynamic::from_map(map);
                ops::within_limits(&v).or_fb()?;
                v
            }
            E::Block(b) => self.block(b)?,
        })
    }

    fn chain(&mut self, c: &Chain) -> R<Dynamic> {
        let args = c
            .args
            .iter()
            .map(|a| self.expr(a).map(flat))
            .collect::<R<Vec<_>>>()?;
        let no_closures = &mut |_: Apply, _: &Closure, _: &Dynamic| Err(Ctl::Fallback);
        // Walk variables in place (under read locks) instead of copying whole sections.
        match &c.root {
            E::Var(i) if !c.applies => walk(&self.cx.vars[*i], &c.steps, &args, no_closures),
            E::Local(s) if !c.applies => {
                walk(&self.slots[*s as usize], &c.steps, &args, no_closures)
            }
            root => {
                // Closures need the evaluator, so the root is a copy rather than a borrow.
                let v = flat(self.expr(root)?);
                walk(&v, &c.steps, &args, &mut |a, c, t| self.apply(a, c, t))
            }
        }
    }

    fn call(&mut self, f: &Func, args: &[E]) -> R<Dynamic> {
        let h = self.cx.helper;
        // Single-argument helpers read their argument without copying shared sections.
        let one = |run: &mut Self| -> R<Dynamic> {
            match args {
                [a] => run.expr(a),
                _ => Err(Ctl::Fallback),
            }
        };
        let v = match f {
            Func::Signal(id) => return Ok(h.signal_id(*id).into()),
            Func::Signal1 => {
                let name = one(self)?;
                let name = name.read_lock::<ImmutableString>().or_fb()?;
                return Ok(h.signal(&name).into());
            }
            Func::Text => h.haystack_shared().clone().into(),
            Func::Header => {
                let name = one(self)?;
                let name = name.read_lock::<ImmutableString>().or_fb()?;
                h.header(&name)
            }
            Func::Matches(re) => {
                let hit = match args {
                    // `text()` is read in place; Rhai would refuse one over the size limit.
                    [E::Call(Func::Text, _)] if h.haystack().len() <= sandbox::MAX_STRING_SIZE => {
                        re.get()
                            .is_some_and(|r| r.is_match(h.haystack().as_bytes()))
                    }
                    _ => {
                        let v = flat(one(self)?);
                        matches_text(&v, |t| re.get().is_some_and(|r| r.is_match(t.as_bytes())))
                    }
                };
                return Ok(hit.into());
            }
            Func::Matches2 => {
                let [a, p] = args else {
                    return Err(Ctl::Fallback);
                };
                let (v, p) = (flat(self.expr(a)?), self.expr(p)?);
                let p = p.read_lock::<ImmutableString>().or_fb()?;
                let hit = matches_text(&v, |t| sandbox::match_pattern(t, &p));
                return Ok(hit.into());
            }
            Func::Has => return Ok(ops::has(&one(self)?).into()),
            Func::Lower => ops::lower(&one(self)?),
            Func::TypeOf => return Ok(ops::type_of(&one(self)?).or_fb()?.into()),
            Func::Url(f) => {
                let v = flat(one(self)?);
                url_cached(&v, *f).or_fb()?
            }
            Func::Dig => {
                let [root, path] = args else {
                    return Err(Ctl::Fallback);
                };
                let (root, path) = (self.expr(root)?, self.expr(path)?);
                let path = path.read_lock::<ImmutableString>().or_fb()?;
                let found = sandbox::dig(&root, &path);
                // An empty path returns the root itself, which Rhai would have unwrapped.
                if path.split('.').all(str::is_empty) {
                    flat(found)
                } else {
                    found
                }
            }
            Func::Method(m) => {
                let (target, rest) = args.split_first().or_fb()?;
                let rest = rest
                    .iter()
                    .map(|a| self.expr(a).map(flat))
                    .collect::<R<Vec<_>>>()?;
                let target = self.expr(target)?;
                ops::method(*m, &target, &rest).or_fb()?
            }
            Func::Helper(f) => {
                let values = args
                    .iter()
                    .map(|a| self.expr(a).map(flat))
                    .collect::<R<Vec<_>>>()?;
                f(&values).or_fb()?
            }
        };
        // Rhai checks every registered function's result against the size limits.
        ops::within_limits(&v).or_fb()?;
        Ok(v)
    }
}

/// Parsed URLs by text, per thread. `url()` depends on nothing but the text, and the same few
/// addresses (base URL, redirect and token URLs) are parsed by many scripts for every event.
fn url_cached(v: &Dynamic, parse: sandbox::NativeHelper) -> Option<Dynamic> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static URLS: RefCell<HashMap<String, Dynamic>> = RefCell::new(HashMap::new());
    }
    let Some(text) = sandbox::text_of(v) else {
        return parse(std::slice::from_ref(v));
    };
    if let Some(hit) = URLS.with(|m| m.borrow().get(&text).cloned()) {
        return Some(hit);
    }
    let parsed = parse(std::slice::from_ref(v))?;
    URLS.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= 256 {
            m.clear();
        }
        m.insert(text, parsed.clone());
    });
    Some(parsed)
}

/// `matches(x, pattern)` on the text of `x` (strings as they are, `()` never matches).
fn matches_text(v: &Dynamic, is_match: impl Fn(&str) -> bool) -> bool {
    if let Some(s) = v.read_lock::<ImmutableString>() {
        return is_match(&s);
    }
    sandbox::text_of(v).is_some_and(|t| is_match(&t))
}

type Applier<'a> = dyn FnMut(Apply, &Closure, &Dynamic) -> R<Dynamic> + 'a;

/// Follows the chain's steps from `cur`, holding read locks rather than copying maps.
fn walk(cur: &Dynamic, steps: &[Step], args: &[Dynamic], apply: &mut Applier<'_>) -> R<Dynamic> {
    let Some((step, rest)) = steps.split_first() else {
        return Ok(cur.clone());
    };
    if step.elvis && cur.is_unit() {
        return Ok(Dynamic::UNIT);
    }
    match &step.kind {
        StepKind::Prop(name) => {
            if let Some(map) = cur.read_lock::<Map>() {
                return match map.get(name.as_str()) {
                    Some(v) => walk(v, rest, args, apply),
                    None => walk(&Dynamic::UNIT, rest, args, apply),
                };
            }
            let v = ops::getter(cur, name).or_fb()?;
            walk(&v, rest, args, apply)
        }
        StepKind::Index => {
            let (idx, args) = args.split_first().or_fb()?;
            match ops::kind(cur) {
                Kind::Map => {
                    let key = idx.read_lock::<ImmutableString>().or_fb()?;
                    let map = cur.read_lock::<Map>().or_fb()?;
                    match map.get(key.as_str()) {
                        Some(v) => walk(v, rest, args, apply),
                        None => walk(&Dynamic::UNIT, rest, args, apply),
                    }
                }
                Kind::Array if ops::kind(idx) == Kind::Int => {
                    let arr = cur.read_lock::<Array>().or_fb()?;
                    let i = idx.as_int().map_err(|_| Ctl::Fallback)?;
                    let at = array_index(arr.len(), i).or_fb()?;
                    walk(&arr[at], rest, args, apply)
                }
                _ => Err(Ctl::Fallback),
            }
        }
        StepKind::Method(m, n) => {
            let (margs, args) = args.split_at_checked(*n).or_fb()?;
            let v = ops::method(*m, cur, margs).or_fb()?;
            ops::within_limits(&v).or_fb()?;
            walk(&v, rest, args, apply)
        }
        StepKind::Helper(f, n) => {
            // Rhai hands a method the target itself; a shared one might print differently.
            if cur.is_shared() {
                return Err(Ctl::Fallback);
            }
            let (margs, args) = args.split_at_checked(*n).or_fb()?;
            let mut values = Vec::with_capacity(n + 1);
            values.push(cur.clone());
            values.extend(margs.iter().cloned());
            let v = f(&values).or_fb()?;
            ops::within_limits(&v).or_fb()?;
            walk(&v, rest, args, apply)
        }
        StepKind::Apply(a, c) => {
            let v = apply(*a, c, cur)?;
            walk(&v, rest, args, apply)
        }
    }
}

/// An array index as Rhai resolves it: negative counts from the end; out of range is an error.
fn array_index(len: usize, i: INT) -> Option<usize> {
    if i < 0 {
        let back = usize::try_from(i.unsigned_abs()).ok()?;
        len.checked_sub(back)
    } else {
        usize::try_from(i).ok().filter(|&i| i < len)
    }
}
