//! Compiles one raw playbook: resolves every reference, compiles every script and template,
//! builds its graph and runs the structural rules. Returns `None` when anything is wrong, with
//! every problem appended to the diagnostics.

use std::collections::HashMap;
use std::sync::Arc;

use petgraph::graph::NodeIndex;
use serde_saphyr::Spanned;

use super::graph::{self, GEdge, GKind, GNode, Graph};
use super::script::{Compiler, Site};
use super::{
    ActionDef, Actions, Cause, Check, DispositionDef, Fallback, Node, Playbook, Step, Template,
    check_id, spanned_pos,
};
use crate::diag::{Diagnostic, code, did_you_mean};
use crate::model::playbook::{Basis, RawCheck, RawDisposition, RawPlaybook, RawStep, Role};

/// A file is a playbook if it has anything beyond shared actions and signals.
pub(super) fn is_playbook(raw: &RawPlaybook) -> bool {
    raw.id.is_some()
        || raw.applies_when.is_some()
        || !raw.causes.is_empty()
        || !raw.steps.is_empty()
}

struct Ctx<'a, 'c> {
    compiler: &'a Compiler<'c>,
    file: &'a str,
    actions: &'a Actions,
    broken_actions: &'a [String],
    diags: &'a mut Vec<Diagnostic>,
}

impl Ctx<'_, '_> {
    fn site<'p>(&self, yaml_path: &'p str) -> Site<'p>
    where
        Self: 'p,
    {
        Site {
            file: self.file,
            yaml_path,
        }
    }

    fn err(
        &mut self,
        code: &'static str,
        path: &str,
        pos: (u64, u64),
        msg: String,
    ) -> &mut Diagnostic {
        self.diags.push(
            Diagnostic::error(code, self.file, msg)
                .at_path(path)
                .at(pos.0, pos.1),
        );
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    fn action(&mut self, r: &Spanned<String>, path: &str) -> Option<Arc<ActionDef>> {
        if let Some(a) = self.actions.get(&r.value) {
            return Some(a.clone());
        }
        if self.broken_actions.contains(&r.value) {
            return None; // already reported where it is defined
        }
        let hint =
            did_you_mean(&r.value, self.actions.keys().map(String::as_str)).unwrap_or_else(|| {
                "define it under `actions:` in this file or a catalogue file".to_string()
            });
        let d = self.err(
            code::UNKNOWN_ACTION,
            path,
            spanned_pos(r),
            format!("unknown action `{}`", r.value),
        );
        d.hint = Some(hint);
        None
    }

    fn template(&mut self, t: &Option<Spanned<String>>, path: &str) -> (Option<Template>, bool) {
        match t {
            None => (None, true),
            Some(s) => {
                let site = Site {
                    file: self.file,
                    yaml_path: path,
                };
                let r = Template::compile(self.compiler, s, site, self.diags);
                let ok = r.is_some();
                (r, ok)
            }
        }
    }

    fn disposition(
        &mut self,
        d: &Option<RawDisposition>,
        path: &str,
    ) -> (Option<DispositionDef>, bool) {
        let Some(d) = d else { return (None, true) };
        let retry_after = match &d.retry_after {
            Some(s) => {
                let p = format!("{path}.retry_after");
                match self.compiler.compile(
                    s,
                    false,
                    Site {
                        file: self.file,
                        yaml_path: &p,
                    },
                    self.diags,
                ) {
                    Some(s) => Some(s),
                    None => return (None, false),
                }
            }
            None => None,
        };
        let instead = match &d.instead {
            Some(i) => {
                let p = format!("{path}.instead.when");
                match self.compiler.compile(
                    &i.when,
                    false,
                    Site {
                        file: self.file,
                        yaml_path: &p,
                    },
                    self.diags,
                ) {
                    Some(s) => Some((i.kind, s)),
                    None => return (None, false),
                }
            }
            None => None,
        };
        (
            Some(DispositionDef {
                kind: d.kind,
                retry_after,
                instead,
            }),
            true,
        )
    }
}

/// The fields a check and a step share.
struct CheckSrc<'a> {
    id: &'a Spanned<String>,
    title: &'a Option<String>,
    role: Role,
    expr: &'a Option<Spanned<String>>,
    script: &'a Option<Spanned<String>>,
    needs: &'a [Spanned<String>],
    basis: Option<Basis>,
    evidence: &'a Option<Spanned<String>>,
    evidence_fail: &'a Option<Spanned<String>>,
}

impl<'a> From<&'a RawCheck> for CheckSrc<'a> {
    fn from(c: &'a RawCheck) -> Self {
        CheckSrc {
            id: &c.id,
            title: &c.title,
            role: c.role,
            expr: &c.expr,
            script: &c.script,
            needs: &c.needs,
            basis: c.basis,
            evidence: &c.evidence,
            evidence_fail: &c.evidence_fail,
        }
    }
}

impl<'a> From<&'a RawStep> for CheckSrc<'a> {
    fn from(c: &'a RawStep) -> Self {
        CheckSrc {
            id: &c.id,
            title: &c.title,
            role: Role::Require,
            expr: &c.expr,
            script: &c.script,
            needs: &c.needs,
            basis: c.basis,
            evidence: &c.evidence,
            evidence_fail: &c.evidence_fail,
        }
    }
}

fn compile_check(cx: &mut Ctx<'_, '_>, c: CheckSrc<'_>, path: &str) -> Option<Check> {
    let mut ok = true;
    let script = match (c.expr, c.script) {
        (Some(_), Some(s)) => {
            let d = cx.err(
                code::SCRIPT_CONFLICT,
                &format!("{path}.script"),
                spanned_pos(s),
                "a check has both `expr` and `script`".into(),
            );
            d.hint = Some("keep one: `expr` for one expression, `script` for statements".into());
            None
        }
        (None, None) => {
            let d = cx.err(
                code::MISSING_FIELD,
                path,
                spanned_pos(c.id),
                format!("check `{}` has neither `expr` nor `script`", c.id.value),
            );
            d.hint = Some("add `expr:` with a Rhai expression returning true, false or ()".into());
            None
        }
        (Some(e), None) => cx.compiler.compile(
            e,
            false,
            Site {
                file: cx.file,
                yaml_path: &format!("{path}.expr"),
            },
            cx.diags,
        ),
        (None, Some(s)) => cx.compiler.compile(
            s,
            true,
            Site {
                file: cx.file,
                yaml_path: &format!("{path}.script"),
            },
            cx.diags,
        ),
    };
    ok &= script.is_some();
    let mut needs = Vec::new();
    for (i, n) in c.needs.iter().enumerate() {
        let valid = !n.value.is_empty()
            && n.value
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '.');
        if !valid {
            let d = cx.err(
                code::INVALID_ID,
                &format!("{path}.needs[{i}]"),
                spanned_pos(n),
                format!("fact name `{}` is not valid", n.value),
            );
            d.hint = Some("fact names look like `github.whoami` or `net.tls`".into());
            ok = false;
        }
        needs.push(n.value.clone());
    }
    let (evidence, ok1) = cx.template(c.evidence, &format!("{path}.evidence"));
    let (evidence_fail, ok2) = cx.template(c.evidence_fail, &format!("{path}.evidence_fail"));
    let script = script?;
    if !(ok && ok1 && ok2) {
        return None;
    }
    let mut facts: Vec<String> = script.reads.to_vec();
    for n in &needs {
        facts.push(format!("facts.{n}"));
    }
    for f in super::script::live_facts_of(&script.source) {
        if !facts.contains(&f) {
            facts.push(f);
        }
    }
    let basis = c
        .basis
        .unwrap_or_else(|| super::basis::infer(&script.source, &needs));
    Some(Check {
        id: c.id.value.clone(),
        title: c.title.clone(),
        role: c.role,
        basis,
        basis_declared: c.basis.is_some(),
        script,
        needs,
        evidence,
        evidence_fail,
        facts: facts.into(),
    })
}

pub(super) fn compile(
    compiler: &Compiler<'_>,
    file: &str,
    raw: &RawPlaybook,
    actions: &Actions,
    broken_actions: &[String],
    diags: &mut Vec<Diagnostic>,
) -> Option<Playbook> {
    let before = diags.len();
    let mut cx = Ctx {
        compiler,
        file,
        actions,
        broken_actions,
        diags,
    };

    let id = match &raw.id {
        Some(id) => {
            check_id(id, file, "id", cx.diags);
            id.value.clone()
        }
        None => {
            let d = cx.err(code::MISSING_FIELD, "", (1, 1), "missing field `id`".into());
            d.hint = Some("a playbook needs `id`, `title`, `applies_when` and `causes`".into());
            String::new()
        }
    };
    if raw.title.is_none() {
        let pos = raw.id.as_ref().map_or((1, 1), spanned_pos);
        let d = cx.err(code::MISSING_FIELD, "", pos, "missing field `title`".into());
        d.hint = Some("give the symptom a short title users will see".into());
    }
    let matcher = match &raw.applies_when {
        Some(m) => cx
            .compiler
            .compile(m, false, cx.site("applies_when"), cx.diags),
        None => {
            let pos = raw.id.as_ref().map_or((1, 1), spanned_pos);
            let d = cx.err(
                code::MISSING_MATCHER,
                "",
                pos,
                "missing field `applies_when`".into(),
            );
            d.hint = Some(
                "say when the playbook applies, e.g. `applies_when: error.status == 429`".into(),
            );
            None
        }
    };
    if raw.causes.is_empty() {
        let pos = raw.id.as_ref().map_or((1, 1), spanned_pos);
        let d = cx.err(
            code::MISSING_FIELD,
            "",
            pos,
            "a playbook needs at least one cause".into(),
        );
        d.hint = Some("add `causes:` with the hypotheses this symptom can have".into());
    }

    // Node ids: steps first, then causes; cause checks share the namespace but are not routable.
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut check_ids: HashMap<String, (u64, u64)> = HashMap::new();
    for (i, s) in raw.steps.iter().enumerate() {
        declare(
            &mut cx,
            &s.id,
            format!("steps[{i}]"),
            Some(i),
            &mut check_ids,
            &mut index,
        );
    }
    for (i, c) in raw.causes.iter().enumerate() {
        declare(
            &mut cx,
            &c.id,
            format!("causes[{i}]"),
            Some(raw.steps.len() + i),
            &mut check_ids,
            &mut index,
        );
        for (j, k) in c.checks.iter().enumerate() {
            declare(
                &mut cx,
                &k.id,
                format!("causes[{i}].checks[{j}]"),
                None,
                &mut check_ids,
                &mut index,
            );
        }
    }

    let routable: Vec<&str> = raw
        .steps
        .iter()
        .map(|s| s.id.value.as_str())
        .chain(raw.causes.iter().map(|c| c.id.value.as_str()))
        .collect();
    let resolve = |cx: &mut Ctx<'_, '_>, r: &Spanned<String>, path: String| -> Option<usize> {
        if let Some(i) = index.get(r.value.as_str()) {
            return Some(*i);
        }
        let (msg, hint) = if check_ids.contains_key(r.value.as_str()) {
            (
                format!(
                    "`{}` is a cause's check; the walk can only be routed to steps and causes",
                    r.value
                ),
                "route to the cause that owns the check".to_string(),
            )
        } else {
            (
                format!("`{}` is not a step or cause of this playbook", r.value),
                did_you_mean(&r.value, routable.iter().copied())
                    .unwrap_or_else(|| format!("known steps and causes: {}", routable.join(", "))),
            )
        };
        let d = cx.err(code::DANGLING_REFERENCE, &path, spanned_pos(r), msg);
        d.hint = Some(hint);
        None
    };

    let mut nodes: Vec<Node> = Vec::new();
    let mut ok = true;
    for (i, s) in raw.steps.iter().enumerate() {
        let path = format!("steps[{i}]");
        let route = |cx: &mut Ctx<'_, '_>, list: &[Spanned<String>], name: &str| -> Vec<usize> {
            list.iter()
                .enumerate()
                .filter_map(|(j, r)| resolve(cx, r, format!("{path}.{name}[{j}]")))
                .collect()
        };
        let on_pass = route(&mut cx, &s.on_pass, "on_pass");
        let on_fail = route(&mut cx, &s.on_fail, "on_fail");
        let on_unknown = route(&mut cx, &s.on_unknown, "on_unknown");
        match compile_check(&mut cx, s.into(), &path) {
            Some(check) => nodes.push(Node::Step(Step {
                check,
                on_pass,
                on_fail,
                on_unknown,
            })),
            None => ok = false,
        }
    }
    for (i, c) in raw.causes.iter().enumerate() {
        let path = format!("causes[{i}]");
        let checks: Vec<Option<Check>> = c
            .checks
            .iter()
            .enumerate()
            .map(|(j, k)| compile_check(&mut cx, k.into(), &format!("{path}.checks[{j}]")))
            .collect();
        let acts: Vec<Option<Arc<ActionDef>>> = c
            .actions
            .iter()
            .enumerate()
            .map(|(j, a)| cx.action(a, &format!("{path}.actions[{j}]")))
            .collect();
        let (explain, ok1) = cx.template(&c.explain, &format!("{path}.explain"));
        let (disposition, ok2) = cx.disposition(&c.disposition, &format!("{path}.disposition"));
        if checks.iter().any(Option::is_none) || acts.iter().any(Option::is_none) || !ok1 || !ok2 {
            ok = false;
            continue;
        }
        nodes.push(Node::Cause(Cause {
            id: c.id.value.clone(),
            title: c.title.clone(),
            explain,
            weight: c.weight,
            fallback: c.fallback,
            checks: checks.into_iter().flatten().collect(),
            actions: acts.into_iter().flatten().collect(),
            disposition,
        }));
    }

    let start: Vec<usize> = if raw.start.is_empty() {
        let routed: Vec<usize> = raw
            .steps
            .iter()
            .flat_map(|s| s.on_pass.iter().chain(&s.on_fail).chain(&s.on_unknown))
            .filter_map(|r| index.get(r.value.as_str()).copied())
            .collect();
        (0..raw.steps.len() + raw.causes.len())
            .filter(|i| !routed.contains(i))
            .collect()
    } else {
        raw.start
            .iter()
            .enumerate()
            .filter_map(|(j, r)| resolve(&mut cx, r, format!("start[{j}]")))
            .collect()
    };

    let mut fallback = Fallback::default();
    if let Some(inc) = &raw.inconclusive {
        for (j, a) in inc.actions.iter().enumerate() {
            match cx.action(a, &format!("inconclusive.actions[{j}]")) {
                Some(a) => fallback.actions.push(a),
                None => ok = false,
            }
        }
        let (d, ok3) = cx.disposition(&inc.disposition, "inconclusive.disposition");
        fallback.disposition = d;
        ok &= ok3;
    }

    // Warnings (a computed pattern, say) do not leave a playbook out; errors do.
    if cx.diags[before..].iter().any(Diagnostic::is_error) || !ok {
        return None;
    }
    let graph = build_graph(raw, &nodes, &start);
    let problems = graph::validate(file, &graph, NodeIndex::new(0));
    if !problems.is_empty() {
        diags.extend(problems);
        return None;
    }
    warn_generic_only(file, raw, &nodes, diags);
    Some(Playbook {
        id,
        title: raw.title.clone().unwrap_or_default(),
        description: raw.description.clone(),
        file: file.to_string(),
        priority: raw.priority,
        matcher: matcher?,
        nodes,
        start,
        inconclusive: fallback,
        graph,
    })
}

/// Warns about causes that can be given as the diagnosis on generic evidence alone: every
/// required check (or, without any, every step that routes to the cause or every support check)
/// rests on an HTTP status or a protocol code. Such a cause is never more than `likely` and
/// yields to specific evidence; saying `fallback: true` acknowledges that it is meant so.
fn warn_generic_only(file: &str, raw: &RawPlaybook, nodes: &[Node], diags: &mut Vec<Diagnostic>) {
    let generic = |c: &Check| !c.basis.is_specific();
    for (i, rc) in raw.causes.iter().enumerate() {
        let Some(Node::Cause(c)) = nodes.get(raw.steps.len() + i) else {
            continue;
        };
        if c.fallback {
            continue;
        }
        let me = raw.steps.len() + i;
        let required: Vec<&Check> = c
            .checks
            .iter()
            .filter(|k| k.role == Role::Require)
            .collect();
        let support: Vec<&Check> = c
            .checks
            .iter()
            .filter(|k| k.role == Role::Support)
            .collect();
        let routes: Vec<&Check> = nodes
            .iter()
            .filter_map(|n| match n {
                Node::Step(s) if s.on_pass.contains(&me) || s.on_fail.contains(&me) => {
                    Some(&s.check)
                }
                _ => None,
            })
            .collect();
        let weak = if required.is_empty() {
            routes.iter().any(|k| generic(k)) || support.iter().any(|k| generic(k))
        } else {
            required.iter().all(|k| generic(k))
        };
        if weak {
            diags.push(
                Diagnostic::warning(
                    code::GENERIC_ONLY_CAUSE,
                    file,
                    format!(
                        "cause `{}` can be given as the diagnosis on generic evidence alone (an HTTP status or a protocol code)",
                        c.id
                    ),
                )
                .at_path(format!("causes[{i}].id"))
                .at(rc.id.referenced.line(), rc.id.referenced.column())
                .hint("add a check on the provider's own words or the connection's state; if it is meant as the generic reading of a status, say `fallback: true` (it is then never more than likely and yields to specific evidence)"),
            );
        }
    }
}

/// Declares a node id: routable nodes (steps, causes) get an index, cause checks do not.
fn declare(
    cx: &mut Ctx<'_, '_>,
    sid: &Spanned<String>,
    path: String,
    idx: Option<usize>,
    check_ids: &mut HashMap<String, (u64, u64)>,
    index: &mut HashMap<String, usize>,
) {
    let name = sid.value.as_str();
    check_id(sid, cx.file, &format!("{path}.id"), cx.diags);
    if index.contains_key(name) || check_ids.contains_key(name) {
        let d = cx.err(
            code::DUPLICATE_ID,
            &format!("{path}.id"),
            spanned_pos(sid),
            format!("id `{name}` is used twice in this playbook"),
        );
        d.hint = Some("step, cause and check ids must be unique within a playbook".into());
        return;
    }
    match idx {
        Some(i) => {
            index.insert(name.to_string(), i);
        }
        None => {
            check_ids.insert(name.to_string(), spanned_pos(sid));
        }
    }
}

/// Graph node 0 is the symptom; nodes 1.. are the playbook's nodes in index order, then the
/// cause checks and the actions.
fn build_graph(raw: &RawPlaybook, nodes: &[Node], start: &[usize]) -> Graph {
    let mut g = Graph::new();
    let id_pos = raw.id.as_ref().map_or((1, 1), spanned_pos);
    let root = g.add_node(GNode {
        kind: GKind::Symptom,
        id: raw.id.as_ref().map(|i| i.value.clone()).unwrap_or_default(),
        yaml_path: "id".into(),
        line: id_pos.0,
        column: id_pos.1,
    });
    let mut idx = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let (kind, path, sid) = if i < raw.steps.len() {
            (GKind::Step, format!("steps[{i}]"), &raw.steps[i].id)
        } else {
            let ci = i - raw.steps.len();
            (GKind::Cause, format!("causes[{ci}]"), &raw.causes[ci].id)
        };
        let (line, column) = spanned_pos(sid);
        idx.push(g.add_node(GNode {
            kind,
            id: n.id().to_string(),
            yaml_path: path,
            line,
            column,
        }));
    }
    for s in start {
        g.add_edge(root, idx[*s], GEdge::Start);
    }
    let mut action_nodes: HashMap<String, NodeIndex> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        match n {
            Node::Step(s) => {
                for (list, e) in [
                    (&s.on_pass, GEdge::Pass),
                    (&s.on_fail, GEdge::Fail),
                    (&s.on_unknown, GEdge::Unknown),
                ] {
                    for t in list {
                        g.add_edge(idx[i], idx[*t], e);
                    }
                }
            }
            Node::Cause(c) => {
                for (j, k) in c.checks.iter().enumerate() {
                    let ci = i - raw.steps.len();
                    let (line, column) = spanned_pos(&raw.causes[ci].checks[j].id);
                    let kn = g.add_node(GNode {
                        kind: GKind::Check,
                        id: k.id.clone(),
                        yaml_path: format!("causes[{ci}].checks[{j}]"),
                        line,
                        column,
                    });
                    g.add_edge(idx[i], kn, GEdge::Checks);
                }
                for a in &c.actions {
                    let an = *action_nodes.entry(a.id.clone()).or_insert_with(|| {
                        g.add_node(GNode {
                            kind: GKind::Action,
                            id: a.id.clone(),
                            yaml_path: String::new(),
                            line: 0,
                            column: 0,
                        })
                    });
                    g.add_edge(idx[i], an, GEdge::Fixes);
                }
            }
        }
    }
    g
}
