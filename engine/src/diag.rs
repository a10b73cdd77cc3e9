//! Diagnostics for playbook authors: what is wrong, where (file, YAML path, line, column),
//! a stable code tools can key on, and a hint.
//!
//! Messages follow one style: lower case, no final period, names in backticks, never a Rust
//! type name. Every loader and compiler stage appends to one list, so an author sees all
//! problems at once.

use std::fmt;

use serde::Serialize;

/// How bad a diagnostic is. Errors keep the playbook out of the library; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// Stable diagnostic codes. Renaming one is a breaking change for editors and CI scripts.
pub mod code {
    pub const IO: &str = "io_error";
    pub const YAML_SYNTAX: &str = "yaml_syntax";
    pub const UNKNOWN_FIELD: &str = "unknown_field";
    pub const MISSING_FIELD: &str = "missing_field";
    pub const INVALID_VALUE: &str = "invalid_value";
    pub const DUPLICATE_KEY: &str = "duplicate_key";
    pub const DUPLICATE_ID: &str = "duplicate_id";
    pub const INVALID_ID: &str = "invalid_id";
    pub const DANGLING_REFERENCE: &str = "dangling_reference";
    pub const UNKNOWN_ACTION: &str = "unknown_action";
    pub const UNKNOWN_SIGNAL: &str = "unknown_signal";
    pub const SCRIPT_SYNTAX: &str = "script_syntax";
    pub const SCRIPT_CONFLICT: &str = "script_conflict";
    pub const INVALID_REGEX: &str = "invalid_regex";
    pub const TEMPLATE_SYNTAX: &str = "template_syntax";
    pub const SECRET_EXPOSED: &str = "secret_exposed";
    pub const CYCLE: &str = "cycle";
    pub const UNREACHABLE: &str = "unreachable";
    pub const NO_ACTION: &str = "cause_without_action";
    pub const MISSING_MATCHER: &str = "missing_matcher";
    pub const EMPTY_LIBRARY: &str = "empty_library";
    pub const GENERIC_ONLY_CAUSE: &str = "generic_only_cause";
    pub const SCRIPT_BUDGET: &str = "script_budget";
    pub const UNKNOWN_FUNCTION: &str = "unknown_function";
    pub const MODULE_UNAVAILABLE: &str = "module_unavailable";
    pub const DYNAMIC_PATTERN: &str = "dynamic_pattern";
}

/// One problem found in a playbook file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable code, see [`code`].
    pub code: &'static str,
    pub message: String,
    /// File the problem is in, as given to the loader.
    pub file: String,
    /// YAML path of the offending node, e.g. `causes[2].checks[0].expr`; empty for the whole file.
    pub yaml_path: String,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// A one-line suggestion: "did you mean …", the allowed values, the expected type.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            file: file.to_string(),
            yaml_path: String::new(),
            line: None,
            column: None,
            hint: None,
        }
    }

    pub fn warning(code: &'static str, file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Self::error(code, file, message)
        }
    }

    pub fn at_path(mut self, yaml_path: impl Into<String>) -> Self {
        self.yaml_path = yaml_path.into();
        self
    }

    /// Sets the position; a zero line means "unknown" (serde-saphyr's `Location::UNKNOWN`).
    pub fn at(mut self, line: u64, column: u64) -> Self {
        if line > 0 {
            self.line = Some(line);
            self.column = Some(column.max(1));
        }
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: error[code]: message (at path)` then an indented hint line, the shape
    /// editors and terminals turn into clickable locations.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}:{}", self.column.unwrap_or(1))?;
        }
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {sev}[{}]: {}", self.code, self.message)?;
        if !self.yaml_path.is_empty() {
            write!(f, " (at `{}`)", self.yaml_path)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl Diagnostic {
    /// The diagnostic as [`Display`](fmt::Display) prints it, with the offending line of
    /// `source` (the file's text) quoted and the offending token underlined, the way compilers
    /// show it:
    ///
    /// ```text
    /// pb.yaml:9:15: error[unknown_action]: unknown action `reconect` (at `causes[0].actions[0]`)
    ///    |
    ///  9 |     actions: [reconect]
    ///    |               ^^^^^^^^
    ///   hint: did you mean `reconnect`?
    /// ```
    pub fn render_with_source(&self, source: &str) -> String {
        let plain = self.to_string();
        let (Some(line), Some(col)) = (self.line, self.column) else {
            return plain;
        };
        let Some(text) = source.lines().nth(line.saturating_sub(1) as usize) else {
            return plain;
        };
        let (head, hint) = match plain.split_once("\n  hint: ") {
            Some((h, rest)) => (h.to_string(), Some(rest.to_string())),
            None => (plain, None),
        };
        // Columns count characters; tabs are shown as one space so the caret lines up. A long
        // line is quoted as a window of at most `MAX_QUOTED` characters around the column (a
        // 50 MB one-line file must not end up on stderr whole).
        let col = col.saturating_sub(1) as usize;
        let from = col.saturating_sub(MAX_QUOTED / 2);
        let mut chars: Vec<char> = text
            .chars()
            .skip(from)
            .take(MAX_QUOTED + 1)
            .map(|c| if c == '\t' { ' ' } else { c })
            .collect();
        let cut_end = chars.len() > MAX_QUOTED;
        chars.truncate(MAX_QUOTED);
        let start = (col - from).min(chars.len());
        let width = underline_width(&chars[start..]);
        let gutter = line.to_string().len();
        let (lead, pad) = if from > 0 { ("…", 1) } else { ("", 0) };
        let tail = if cut_end { "…" } else { "" };
        let mut out = head;
        out.push_str(&format!("\n{:gutter$} |", ""));
        out.push_str(&format!(
            "\n{line} | {lead}{}{tail}",
            chars.iter().collect::<String>().trim_end()
        ));
        out.push_str(&format!(
            "\n{:gutter$} | {}{}",
            "",
            " ".repeat(start + pad),
            "^".repeat(width)
        ));
        if let Some(h) = hint {
            out.push_str(&format!("\n  hint: {h}"));
        }
        out
    }
}

/// The longest part of a source line a diagnostic quotes, in characters.
pub const MAX_QUOTED: usize = 160;

/// How many characters of the offending token to underline: a quoted scalar to its closing
/// quote, otherwise up to the next separator; at least one.
fn underline_width(rest: &[char]) -> usize {
    let n = match rest.first() {
        None => 0,
        Some(q @ ('"' | '\'')) => rest[1..].iter().position(|c| c == q).map_or(1, |i| i + 2),
        Some(_) => rest
            .iter()
            .position(|c| c.is_whitespace() || matches!(c, ',' | ']' | '}' | '#'))
            .unwrap_or(rest.len()),
    };
    n.clamp(1, 80)
}

/// The closest candidate to `wanted`, if one is close enough to be a plausible typo.
pub fn closest<'a, I>(wanted: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(wanted, c), c))
        .filter(|(d, c)| *d <= 3.max(wanted.len().min(c.len()) / 3) && *d < wanted.len().max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "did you mean `x`?" for the closest candidate, if any.
pub fn did_you_mean<'a, I>(wanted: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    closest(wanted, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let ids = ["scope_missing", "access_revoked", "rate_limited"];
        assert_eq!(closest("scope_mising", ids), Some("scope_missing"));
        assert_eq!(closest("rate_limit", ids), Some("rate_limited"));
        assert_eq!(closest("tls_expired", ids), None);
    }

    #[test]
    fn display_is_clickable() {
        let d = Diagnostic::error(code::UNKNOWN_FIELD, "p.yaml", "unknown field `tittle`")
            .at_path("causes[0]")
            .at(4, 5)
            .hint("did you mean `title`?");
        assert_eq!(
            d.to_string(),
            "p.yaml:4:5: error[unknown_field]: unknown field `tittle` (at `causes[0]`)\n  hint: did you mean `title`?"
        );
    }
}
