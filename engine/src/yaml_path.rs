//! Maps a line of a block-style YAML file to the YAML path of the node on it
//! (`causes[2].checks[0].expr`), so parse errors that only carry a position still tell the
//! author which node is wrong.
//!
//! A small indentation scanner is enough because playbooks are block-style YAML; for flow
//! collections it degrades to the enclosing block node, never to a wrong sibling.

enum Seg {
    Key(String),
    Index(usize),
}

struct Frame {
    indent: usize,
    seg: Seg,
    /// The key's value is a block scalar: deeper lines are text, not structure.
    block_scalar: bool,
}

/// YAML path of the deepest node that starts on or before `line` (1-based).
pub fn path_at(text: &str, line: u64, _column: u64) -> String {
    let mut stack: Vec<Frame> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if i as u64 + 1 > line {
            break;
        }
        let indent = raw.len() - raw.trim_start_matches(' ').len();
        let rest = raw.trim();
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if let Some(top) = stack.last()
            && top.block_scalar
            && indent > top.indent
        {
            continue;
        }
        let mut col = indent;
        let mut rest = rest;
        while let Some(after) = rest
            .strip_prefix("- ")
            .or_else(|| (rest == "-").then_some(""))
        {
            let mut next = 0;
            while let Some(top) = stack.last() {
                if top.indent > col {
                    stack.pop();
                } else if top.indent == col && matches!(top.seg, Seg::Index(_)) {
                    if let Some(Frame {
                        seg: Seg::Index(n), ..
                    }) = stack.pop()
                    {
                        next = n + 1;
                    }
                    break;
                } else {
                    break;
                }
            }
            stack.push(Frame {
                indent: col,
                seg: Seg::Index(next),
                block_scalar: false,
            });
            let trimmed = after.trim_start();
            col += 2 + (after.len() - trimmed.len());
            rest = trimmed;
        }
        if let Some((key, value)) = split_key(rest) {
            while stack.last().is_some_and(|t| t.indent >= col) {
                stack.pop();
            }
            let v = value.trim();
            let block_scalar = v.starts_with('|') || v.starts_with('>');
            stack.push(Frame {
                indent: col,
                seg: Seg::Key(key),
                block_scalar,
            });
        }
    }
    let mut out = String::new();
    for f in &stack {
        match &f.seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(n) => out.push_str(&format!("[{n}]")),
        }
    }
    out
}

/// `key: value` → (key, value); quoted keys are unquoted. Not a key line → `None`.
fn split_key(s: &str) -> Option<(String, &str)> {
    if s.starts_with('{') || s.starts_with('[') || s.starts_with('"') && !s.contains("\":") {
        return None;
    }
    let idx = s
        .find(": ")
        .or_else(|| s.ends_with(':').then(|| s.len() - 1))?;
    let key = s[..idx].trim().trim_matches('"').trim_matches('\'');
    if key.is_empty() || key.contains(' ') && !s.starts_with('"') {
        return None;
    }
    Some((key.to_string(), &s[idx + 1..]))
}

#[cfg(test)]
mod tests {
    use super::path_at;

    const DOC: &str = "id: x\ncauses:\n  - id: a\n    checks:\n      - id: c1\n        expr: |\n          a: b\n      - id: c2\n        expr: x\n  - id: b\n    actions: [reconnect]\n";

    #[test]
    fn finds_nested_paths() {
        assert_eq!(path_at(DOC, 1, 1), "id");
        assert_eq!(path_at(DOC, 5, 9), "causes[0].checks[0].id");
        assert_eq!(path_at(DOC, 7, 11), "causes[0].checks[0].expr");
        assert_eq!(path_at(DOC, 9, 9), "causes[0].checks[1].expr");
        assert_eq!(path_at(DOC, 11, 5), "causes[1].actions");
    }

    #[test]
    fn compact_sequences_under_keys() {
        let doc = "causes:\n- id: a\n- id: b\n  title: t\n";
        assert_eq!(path_at(doc, 4, 3), "causes[1].title");
    }
}
