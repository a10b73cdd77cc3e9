//! Compiled Rhai scripts and evidence templates, with positions mapped back into the YAML.
//!
//! Everything here runs at load time: each script is parsed once into an AST that evaluation
//! reuses for every event, and each template is split once into literal text and placeholders.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use regex::Regex;
use rhai::{AST, ASTNode, Engine, Expr, FnCallExpr, Position, Scope, Stmt};
use serde_saphyr::Spanned;

use super::native::{Known, Native, PathSet, specialise};
use crate::diag::{Diagnostic, code, did_you_mean};
use crate::sandbox::{PatternSet, SCOPE_VARS};
use crate::signals::SignalSet;

/// A compiled expression or script.
#[derive(Debug, Clone)]
pub struct Script {
    pub source: Arc<str>,
    pub ast: Arc<AST>,
    /// Event fields (and secret shapes) the script reads, as dotted paths, for the path's `facts`.
    pub reads: Arc<[String]>,
    /// The same script specialised to native code, when its shape allows (see `native`).
    pub native: Option<Arc<Native>>,
    /// Where it is written, for diagnostics found after loading (`whyfail check`'s run).
    pub origin: Arc<Origin>,
}

/// Where a script is written: file, YAML path, line and column of its first character.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub file: String,
    pub yaml_path: String,
    pub line: u64,
    pub column: u64,
}

/// Where a script or template sits in its YAML file.
#[derive(Clone, Copy)]
pub struct Site<'a> {
    pub file: &'a str,
    pub yaml_path: &'a str,
}

/// Shared load-time context for compiling scripts.
pub struct Compiler<'a> {
    pub engine: &'a Engine,
    pub signals: &'a SignalSet,
    /// File name → text and the offset where each of its lines starts, to tell quoted scalars
    /// (whose location is the opening quote) apart without scanning the file for each one.
    sources: HashMap<&'a str, (&'a str, Vec<usize>)>,
    scope: Scope<'static>,
    /// Literal `matches()` / `secret_matches()` patterns of every script compiled so far.
    patterns: Mutex<PatternSet>,
    /// Property paths of every script compiled so far.
    paths: Mutex<PathSet>,
}

impl<'a> Compiler<'a> {
    pub fn new(
        engine: &'a Engine,
        signals: &'a SignalSet,
        sources: HashMap<&'a str, &'a str>,
    ) -> Self {
        let mut scope = Scope::new();
        // Plain variables, not constants: the optimizer folds calls on constant arguments, and
        // `dig(connection, "x")` must not be folded into `dig((), "x")` at load time.
        for var in SCOPE_VARS {
            scope.push_dynamic(*var, rhai::Dynamic::UNIT);
        }
        let sources = sources
            .into_iter()
            .map(|(file, text)| {
                let starts = std::iter::once(0)
                    .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                    .collect();
                (file, (text, starts))
            })
            .collect();
        Compiler {
            engine,
            signals,
            sources,
            scope,
            patterns: Mutex::new(PatternSet::default()),
            paths: Mutex::new(PathSet::default()),
        }
    }

    /// The literal patterns of every script compiled, for the library to keep.
    pub fn take_patterns(&self) -> PatternSet {
        std::mem::take(&mut *super::par::lock(&self.patterns))
    }

    /// Compiles an expression (`expr`, `applies_when`, params) or a script (`script`).
    pub fn compile(
        &self,
        src: &Spanned<String>,
        is_script: bool,
        site: Site<'_>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Script> {
        self.compile_at(
            &src.value,
            self.content_start(site.file, src),
            is_script,
            site,
            diags,
        )
    }

    /// Where a scalar's text starts: one column after the opening quote of a quoted scalar, and
    /// the first content line of a block scalar (`|`, `>`), whose location is its indicator.
    pub fn content_start(&self, file: &str, src: &Spanned<String>) -> (u64, u64) {
        let (line, col) = (src.referenced.line(), src.referenced.column());
        let Some((text, starts)) = self.sources.get(file) else {
            return (line, col);
        };
        // The text from the start of line `n` (0-based) on, as `lines()` would reach it.
        let from_line = |n: usize| starts.get(n).map(|&i| &text[i..]);
        let at = from_line(line.saturating_sub(1) as usize)
            .and_then(|rest| rest.lines().next())
            .and_then(|l| l.chars().nth(col.saturating_sub(1) as usize));
        match at {
            Some('"' | '\'') => (line, col + 1),
            Some('|' | '>') => from_line(line as usize)
                .and_then(|rest| {
                    rest.lines()
                        .enumerate()
                        .find(|(_, l)| !l.trim().is_empty())
                        .map(|(i, l)| {
                            (
                                line + i as u64 + 1,
                                (l.len() - l.trim_start().len()) as u64 + 1,
                            )
                        })
                })
                .unwrap_or((line, col)),
            _ => (line, col),
        }
    }

    /// As [`Compiler::compile`], for text that starts at `(line, column)` of the file.
    pub fn compile_at(
        &self,
        text: &str,
        (line, col): (u64, u64),
        is_script: bool,
        site: Site<'_>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Script> {
        if text.trim().is_empty() {
            diags.push(
                Diagnostic::error(code::SCRIPT_SYNTAX, site.file, "the script is empty")
                    .at_path(site.yaml_path)
                    .at(line, col)
                    .hint("write a Rhai expression that returns true, false or ()"),
            );
            return None;
        }
        let compiled = if is_script {
            self.engine.compile_with_scope(&self.scope, text)
        } else {
            self.engine.compile_expression_with_scope(&self.scope, text)
        };
        let before = diags.len();
        self.check_signals(text, line, col, site, diags);
        if let Ok(ast) = &compiled {
            self.check_calls(ast, text, (line, col), site, diags);
        }
        let known = Known {
            signals: self.signals,
            patterns: &self.patterns,
            paths: &self.paths,
        };
        match compiled {
            Ok(ast) if diags[before..].iter().any(Diagnostic::is_error) => {
                let _ = ast;
                None
            }
            Ok(ast) => Some(Script {
                source: Arc::from(text),
                native: specialise(&ast, &known, text).map(Arc::new),
                ast: Arc::new(ast),
                reads: reads_of(text).into(),
                origin: Arc::new(Origin {
                    file: site.file.to_string(),
                    yaml_path: site.yaml_path.to_string(),
                    line,
                    column: col,
                }),
            }),
            Err(e) => {
                // "Incomplete" errors carry no position: point just past the end of the script.
                let eof = matches!(*e.0, rhai::ParseErrorType::UnexpectedEOF);
                let (rl, rc) = match (e.1.line(), e.1.position()) {
                    (Some(l), c) if !eof => (Some(l), c),
                    _ => {
                        let body = text.trim_end();
                        let lines = body.lines().count().max(1);
                        (
                            Some(lines),
                            Some(body.lines().last().map_or(0, |l| l.chars().count()) + 1),
                        )
                    }
                };
                let (l, c) = map_position(text, line, col, rl, rc);
                let msg = e.0.to_string();
                let hint = script_hint(&msg, is_script);
                let mut d = Diagnostic::error(
                    code::SCRIPT_SYNTAX,
                    site.file,
                    format!("rhai: {}", lowercase_first(&msg)),
                )
                .at_path(site.yaml_path)
                .at(l, c);
                if let Some(h) = hint {
                    d = d.hint(h);
                }
                diags.push(d);
                None
            }
        }
    }

    /// Calls a script makes: every function must exist with that many arguments (a typo only
    /// shows up at run time as an `error`), `import` is refused (the sandbox has no modules),
    /// and `matches()` patterns must be literals, which are checked here and compiled once for
    /// the library; a pattern computed at run time is matched as plain text.
    fn check_calls(
        &self,
        ast: &AST,
        text: &str,
        (line, col): (u64, u64),
        site: Site<'_>,
        diags: &mut Vec<Diagnostic>,
    ) {
        let at = |pos: Position| map_position(text, line, col, pos.line(), pos.position());
        let own: HashSet<(&str, usize)> = ast
            .iter_fn_def()
            .map(|f| (f.name.as_str(), f.params.len()))
            .collect();
        let mut visit = |f: &FnCallExpr, method: bool, pos: Position| {
            if f.op_token.is_some() || f.is_operator_call() {
                return;
            }
            let name = f.name.as_str();
            let arity = f.args.len() + usize::from(method);
            if !f.namespace.is_empty() {
                let (l, c) = at(pos);
                diags.push(
                    Diagnostic::error(
                        code::MODULE_UNAVAILABLE,
                        site.file,
                        format!("`{}::{name}`: scripts have no modules", f.namespace),
                    )
                    .at_path(site.yaml_path)
                    .at(l, c)
                    .hint("call the helpers and Rhai's built-in functions directly"),
                );
                return;
            }
            // The pattern argument of `matches(text, p)` / `text.matches(p)`, and of
            // `secret_matches(name, p)`.
            if matches!(name, "matches" | "secret_matches")
                && arity == 2
                && let Some(p) = f.args.last()
            {
                self.check_pattern(p, at(p.position()), site, diags);
            }
            if own.contains(&(name, arity)) || is_known_function(name, arity) {
                return;
            }
            let (l, c) = at(pos);
            let arities = known_arities(name);
            let (message, hint) = if arities.is_empty() {
                (
                    format!("unknown function `{name}`"),
                    did_you_mean(name, known_names()).unwrap_or_else(|| {
                        "scripts may call the helpers listed in docs/authoring.md and Rhai's built-in functions"
                            .to_string()
                    }),
                )
            } else {
                (
                    format!(
                        "function `{name}` does not take {arity} argument{}",
                        if arity == 1 { "" } else { "s" }
                    ),
                    format!(
                        "it takes {}{}",
                        arities
                            .iter()
                            .map(usize::to_string)
                            .collect::<Vec<_>>()
                            .join(" or "),
                        if method {
                            " (a method call counts the value before the dot)"
                        } else {
                            ""
                        }
                    ),
                )
            };
            diags.push(
                Diagnostic::warning(code::UNKNOWN_FUNCTION, site.file, message)
                    .at_path(site.yaml_path)
                    .at(l, c)
                    .hint(hint),
            );
        };
        let mut imports = Vec::new();
        ast.walk(&mut |path: &[ASTNode]| {
            match path.last() {
                Some(ASTNode::Expr(Expr::FnCall(f, pos))) => visit(f, false, *pos),
                Some(ASTNode::Expr(Expr::MethodCall(f, pos))) => visit(f, true, *pos),
                Some(ASTNode::Stmt(Stmt::FnCall(f, pos))) => visit(f, false, *pos),
                Some(ASTNode::Stmt(Stmt::Import(_, pos))) => imports.push(*pos),
                _ => {}
            }
            true
        });
        for pos in imports {
            let (l, c) = at(pos);
            diags.push(
                Diagnostic::error(
                    code::MODULE_UNAVAILABLE,
                    site.file,
                    "`import`: scripts have no modules",
                )
                .at_path(site.yaml_path)
                .at(l, c)
                .hint("call the helpers and Rhai's built-in functions directly"),
            );
        }
    }

    /// A `matches()` pattern: a literal must be a valid regular expression (it joins the
    /// library's patterns); anything else is matched as plain text, which the author is told.
    fn check_pattern(
        &self,
        p: &Expr,
        (l, c): (u64, u64),
        site: Site<'_>,
        diags: &mut Vec<Diagnostic>,
    ) {
        let Expr::StringConstant(pattern, _) = p else {
            diags.push(
                Diagnostic::warning(
                    code::DYNAMIC_PATTERN,
                    site.file,
                    "this pattern is computed when the script runs, so it is matched as plain text (case-insensitively), not as a regular expression",
                )
                .at_path(site.yaml_path)
                .at(l, c)
                .hint("write the pattern as a string literal; to compare with an event value, use `contains_ci(text, value)` or `==`"),
            );
            return;
        };
        // Only patterns that parsed are interned: one already there needs no second parse (the
        // library repeats many: 343 call sites, 149 patterns; parsing was a tenth of load time).
        if super::par::lock(&self.patterns).get(pattern).is_some() {
            return;
        }
        let parsed = regex_syntax::ParserBuilder::new()
            .case_insensitive(true)
            .unicode(false)
            .utf8(false)
            .build()
            .parse(pattern);
        match parsed {
            Ok(_) => {
                super::par::lock(&self.patterns).intern(pattern);
            }
            Err(e) => diags.push(
                Diagnostic::error(
                    code::INVALID_REGEX,
                    site.file,
                    format!(
                        "invalid regular expression: {}",
                        e.to_string().lines().last().unwrap_or("").trim()
                    ),
                )
                .at_path(site.yaml_path)
                .at(l, c)
                .hint("patterns use Rust regex syntax and match ASCII case-insensitively"),
            ),
        }
    }

    /// `signal("name")` with a literal name must name a known signal.
    fn check_signals(
        &self,
        text: &str,
        line: u64,
        col: u64,
        site: Site<'_>,
        diags: &mut Vec<Diagnostic>,
    ) {
        static SIGNAL_CALL: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r#"\bsignal\(\s*"([^"]*)"\s*\)"#).expect("static regex"));
        for cap in SIGNAL_CALL.captures_iter(text) {
            let name = &cap[1];
            if self.signals.id(name).is_none() {
                let offset = cap.get(1).map_or(0, |m| m.start());
                let (l, c) = offset_position(text, line, col, offset);
                let mut d = Diagnostic::error(
                    code::UNKNOWN_SIGNAL,
                    site.file,
                    format!("unknown signal `{name}`"),
                )
                .at_path(site.yaml_path)
                .at(l, c);
                d = d.hint(did_you_mean(name, self.signals.names()).unwrap_or_else(|| {
                    "declare it under `signals:` in this or another playbook file".to_string()
                }));
                diags.push(d);
            }
        }
    }
}

/// Functions scripts can call, by name and number of arguments: the sandbox's packages and
/// helpers (from a sandbox engine, once), and Rhai's keyword functions.
static KNOWN_FUNCTIONS: LazyLock<HashMap<String, Vec<usize>>> = LazyLock::new(|| {
    let engine = crate::sandbox::engine();
    let mut known: HashMap<String, Vec<usize>> = HashMap::new();
    let fns = engine.collect_fn_metadata(
        None,
        |info| Some((info.metadata.name.to_string(), info.metadata.num_params)),
        true,
    );
    for (name, n) in fns {
        let arities = known.entry(name).or_default();
        if !arities.contains(&n) {
            arities.push(n);
        }
    }
    for a in known.values_mut() {
        a.sort_unstable();
    }
    known
});

/// Rhai's keyword functions, which take any number of arguments as far as this check goes.
const KEYWORD_FUNCTIONS: &[&str] = &[
    "Fn",
    "call",
    "curry",
    "type_of",
    "print",
    "debug",
    "is_shared",
    "is_def_var",
    "is_def_fn",
];

fn is_known_function(name: &str, arity: usize) -> bool {
    KEYWORD_FUNCTIONS.contains(&name)
        || KNOWN_FUNCTIONS
            .get(name)
            .is_some_and(|a| a.contains(&arity))
}

fn known_arities(name: &str) -> Vec<usize> {
    KNOWN_FUNCTIONS.get(name).cloned().unwrap_or_default()
}

fn known_names() -> impl Iterator<Item = &'static str> {
    KNOWN_FUNCTIONS
        .keys()
        .map(String::as_str)
        .filter(|n| n.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && !n.contains('$'))
        .chain(KEYWORD_FUNCTIONS.iter().copied())
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn script_hint(msg: &str, is_script: bool) -> Option<String> {
    if msg.contains("Variable not found") || msg.contains("Unknown variable") {
        return Some(format!(
            "scripts see these variables: {}",
            SCOPE_VARS.join(", ")
        ));
    }
    if !is_script && (msg.contains("let") || msg.contains("statement") || msg.contains("';'")) {
        return Some("`expr` takes one expression; use `script` for statements".to_string());
    }
    None
}

/// Maps a (1-based) position inside a script to the YAML file. A block scalar's location is
/// its first content line, so later lines keep the block's indentation.
pub fn map_position(
    text: &str,
    line: u64,
    col: u64,
    rl: Option<usize>,
    rc: Option<usize>,
) -> (u64, u64) {
    let _ = text;
    match (rl, rc) {
        (Some(rl), rc) if rl > 1 => (line + rl as u64 - 1, col + rc.unwrap_or(1) as u64 - 1),
        (_, Some(rc)) => (line, col + rc as u64 - 1),
        _ => (line, col),
    }
}

fn offset_position(text: &str, line: u64, col: u64, offset: usize) -> (u64, u64) {
    let before = &text[..offset.min(text.len())];
    let nl = before.matches('\n').count();
    let c = before.rsplit('\n').next().map_or(0, |l| l.chars().count());
    map_position(text, line, col, Some(nl + 1), Some(c + 1))
}

/// Dotted event paths a script mentions, normalised to full paths from the event root.
pub fn reads_of(text: &str) -> Vec<String> {
    static PATH: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"\b(event|error|connection|oauth|platform|history|execution|workflow|node|phase)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)|\bheader\(\s*"([^"]+)"\s*\)|\bsecret(?:_matches)?\(\s*"([^"]+)""#)
            .expect("static regex")
    });
    let mut out: Vec<String> = Vec::new();
    for cap in PATH.captures_iter(text) {
        let path = if let Some(h) = cap.get(3) {
            format!("error.headers.{}", h.as_str().to_ascii_lowercase())
        } else if let Some(s) = cap.get(4) {
            format!("connection.secrets.{} (shape only)", s.as_str())
        } else {
            let root = &cap[1];
            let rest = cap.get(2).map_or("", |m| m.as_str());
            match root {
                "event" => rest.trim_start_matches('.').to_string(),
                "oauth" => format!("connection.oauth{rest}"),
                _ => format!("{root}{rest}"),
            }
        };
        if !path.is_empty() && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// Live facts a script asks for by name with `fact("name")`, as `facts.name` (for the path).
pub fn live_facts_of(text: &str) -> Vec<String> {
    static FACT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"\bfact\(\s*"([a-z0-9_.]+)"\s*\)"#).expect("static regex"));
    let mut out: Vec<String> = Vec::new();
    for cap in FACT.captures_iter(text) {
        let f = format!("facts.{}", &cap[1]);
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// Offset of the `}` that closes a placeholder, skipping nested braces (`if … { … }`, `#{ … }`)
/// and braces inside string literals.
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, ch) in s.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == q {
                quote = None;
            }
            continue;
        }
        match ch {
            '"' | '`' | '\'' => quote = Some(ch),
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// One piece of an evidence or step template.
#[derive(Debug, Clone)]
pub enum Segment {
    Text(String),
    Expr(Script),
}

/// A compiled `{expression}` template.
#[derive(Debug, Clone)]
pub struct Template {
    pub segments: Arc<[Segment]>,
}

impl Template {
    /// What the template renders to whatever the event, when it has no expression.
    pub fn fixed(&self) -> Option<&str> {
        match &*self.segments {
            [] => Some(""),
            [Segment::Text(s)] => Some(s),
            _ => None,
        }
    }

    pub fn compile(
        compiler: &Compiler<'_>,
        src: &Spanned<String>,
        site: Site<'_>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Template> {
        let text = src.value.as_str();
        let (line, col) = compiler.content_start(site.file, src);
        let mut segments = Vec::new();
        let mut lit = String::new();
        let mut ok = true;
        let mut rest = text;
        let mut consumed = 0usize;
        while let Some(i) = rest.find(['{', '}']) {
            lit.push_str(&rest[..i]);
            let ch = rest.as_bytes()[i];
            if rest[i + 1..].starts_with(ch as char) {
                lit.push(ch as char);
                consumed += i + 2;
                rest = &rest[i + 2..];
                continue;
            }
            if ch == b'}' {
                let (l, c) = offset_position(text, line, col, consumed + i);
                diags.push(
                    Diagnostic::error(
                        code::TEMPLATE_SYNTAX,
                        site.file,
                        "unmatched `}` in template",
                    )
                    .at_path(site.yaml_path)
                    .at(l, c)
                    .hint("write `}}` for a literal brace"),
                );
                return None;
            }
            let Some(end) = matching_brace(&rest[i + 1..]) else {
                let (l, c) = offset_position(text, line, col, consumed + i);
                diags.push(
                    Diagnostic::error(code::TEMPLATE_SYNTAX, site.file, "unclosed `{` in template")
                        .at_path(site.yaml_path)
                        .at(l, c)
                        .hint("placeholders look like `{connection.oauth.token_url}`; write `{{` for a literal brace"),
                );
                return None;
            };
            let expr = &rest[i + 1..i + 1 + end];
            if !lit.is_empty() {
                segments.push(Segment::Text(std::mem::take(&mut lit)));
            }
            let (l, c) = offset_position(text, line, col, consumed + i + 1);
            if expr.contains("secrets") {
                diags.push(
                    Diagnostic::error(code::SECRET_EXPOSED, site.file, "a template must not show a secret")
                        .at_path(site.yaml_path)
                        .at(l, c)
                        .hint("describe the secret instead, e.g. with `secret(\"api_key\").trailing_whitespace`"),
                );
                ok = false;
            } else {
                match compiler.compile_at(expr, (l, c), true, site, diags) {
                    Some(s) => segments.push(Segment::Expr(s)),
                    None => ok = false,
                }
            }
            consumed += i + 2 + end;
            rest = &rest[i + 2 + end..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            segments.push(Segment::Text(lit));
        }
        ok.then(|| Template {
            segments: segments.into(),
        })
    }

    /// A template of literal text only.
    pub fn literal(text: &str) -> Template {
        Template {
            segments: vec![Segment::Text(text.to_string())].into(),
        }
    }

    /// Every event path the template's placeholders read.
    pub fn reads(&self) -> impl Iterator<Item = &String> {
        self.segments.iter().flat_map(|s| match s {
            Segment::Expr(e) => e.reads.iter(),
            Segment::Text(_) => [].iter(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_may_nest_braces() {
        assert_eq!(
            matching_brace(r#"if a { "x}" } else { #{b: 1} }} tail"#),
            Some(30)
        );
        assert_eq!(matching_brace("unclosed { x"), None);
    }

    #[test]
    fn reads_are_normalised() {
        let r = reads_of(
            r#"oauth.has_refresh_token && event.error.status == 401 && header("Retry-After") != () && secret("api_key").present"#,
        );
        assert_eq!(
            r,
            vec![
                "connection.oauth.has_refresh_token",
                "error.status",
                "error.headers.retry-after",
                "connection.secrets.api_key (shape only)"
            ]
        );
    }
}
