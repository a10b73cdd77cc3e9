//! Load stage: playbook sources (files, directories, embedded text) into raw playbooks.
//!
//! A file that fails to parse is reported with its position and left out; the others still
//! load. All YAML access goes through this module so swapping the YAML crate touches one file.
//! We use serde-saphyr: pure Rust, maintained, and it keeps line/column on values (`Spanned`)
//! so later stages can point into the file.

use std::path::{Path, PathBuf};

use serde_saphyr::{DuplicateKeyPolicy, Error as YamlError, Options};

use crate::diag::{Diagnostic, code, did_you_mean};
use crate::model::playbook::RawPlaybook;

/// One playbook source: a display name (the file path) and its text.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// Is this a playbook file? `*.yaml`/`*.yml`, but not `*.test.yaml` test files.
pub fn is_playbook_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    (name.ends_with(".yaml") || name.ends_with(".yml"))
        && !name.ends_with(".test.yaml")
        && !name.ends_with(".test.yml")
}

/// Reads a playbook file, or every playbook file directly inside a directory (sorted by name
/// so the playbook set and its hash do not depend on the file system's order).
pub fn read_sources(path: &Path, diags: &mut Vec<Diagnostic>) -> Vec<Source> {
    let display = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            diags.push(Diagnostic::error(
                code::IO,
                &display,
                format!("cannot read: {e}"),
            ));
            return Vec::new();
        }
    };
    let files: Vec<PathBuf> = if meta.is_dir() {
        match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut v: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && is_playbook_file(p))
                    .collect();
                v.sort();
                v
            }
            Err(e) => {
                diags.push(Diagnostic::error(
                    code::IO,
                    &display,
                    format!("cannot list directory: {e}"),
                ));
                return Vec::new();
            }
        }
    } else {
        vec![path.to_path_buf()]
    };
    files
        .into_iter()
        .filter_map(|f| {
            let name = f.display().to_string();
            match std::fs::read_to_string(&f) {
                Ok(text) => Some(Source::new(name, text)),
                Err(e) => {
                    diags.push(Diagnostic::error(
                        code::IO,
                        &name,
                        format!("cannot read: {e}"),
                    ));
                    None
                }
            }
        })
        .collect()
}

fn yaml_options() -> Options {
    let mut o = Options::default();
    // `yes`/`no`/`on` stay strings: a YAML 1.1 boolean surprise is never what an author meant.
    o.strict_booleans = true;
    o.duplicate_keys = DuplicateKeyPolicy::Error;
    o.with_snippet = false;
    o
}

/// Parses one source into a raw playbook, or the diagnostics saying where and why it is not
/// one: the parser's first error with its exact position, then the shape errors of every other
/// list item (`steps`, `causes`, `actions`), so an author sees all of them in one run.
pub fn parse_all(source: &Source) -> Result<RawPlaybook, Vec<Diagnostic>> {
    let first = match parse(source) {
        Ok(raw) => return Ok(raw),
        Err(d) => *d,
    };
    let mut out = vec![first];
    if let Ok(loose) = serde_saphyr::from_str_with_options::<Loose>(&source.text, yaml_options()) {
        item_errors::<crate::model::playbook::RawStep>(source, "steps", &loose.steps, &mut out);
        item_errors::<crate::model::playbook::RawCause>(source, "causes", &loose.causes, &mut out);
        item_errors::<crate::model::playbook::RawAction>(
            source,
            "actions",
            &loose.actions,
            &mut out,
        );
    }
    Err(out)
}

/// The file's lists, item by item, without their structure checked.
#[derive(serde::Deserialize)]
struct Loose {
    #[serde(default)]
    steps: Vec<serde_saphyr::Spanned<serde_json::Value>>,
    #[serde(default)]
    causes: Vec<serde_saphyr::Spanned<serde_json::Value>>,
    #[serde(default)]
    actions: Vec<serde_saphyr::Spanned<serde_json::Value>>,
}

/// Checks each item on its own; reports those that do not fit, except the one the parser's
/// first error is already about. Positions are the item's start (the field is named).
fn item_errors<T: serde::de::DeserializeOwned>(
    source: &Source,
    list: &str,
    items: &[serde_saphyr::Spanned<serde_json::Value>],
    out: &mut Vec<Diagnostic>,
) {
    for (i, item) in items.iter().enumerate() {
        let path = format!("{list}[{i}]");
        if out
            .iter()
            .any(|d| d.yaml_path == path || d.yaml_path.starts_with(&format!("{path}.")))
        {
            continue;
        }
        if let Err(e) = serde_json::from_value::<T>(item.value.clone()) {
            let msg = e.to_string();
            let code = if msg.starts_with("unknown field") {
                code::UNKNOWN_FIELD
            } else if msg.starts_with("missing field") {
                code::MISSING_FIELD
            } else {
                code::INVALID_VALUE
            };
            let message = msg.split(", expected").next().unwrap_or(&msg).to_string();
            let mut d = Diagnostic::error(code, &source.name, message)
                .at_path(path)
                .at(item.referenced.line(), item.referenced.column());
            if let Some(expected) = msg.split(", expected ").nth(1) {
                d = d.hint(format!("expected {expected}"));
            }
            out.push(d);
        }
    }
}

/// Keeps a parsed value's line and column (`value`, `referenced.line()`), for files other than
/// playbooks that are parsed with [`parse_yaml`] (playbook tests).
pub use serde_saphyr::Spanned;

/// Parses any YAML document (a playbook test file, say) with the same options and the same
/// author-facing diagnostics as playbooks: position, stable code, hint, YAML path. Lives here
/// so that this module stays the only one that knows the YAML crate.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(source: &Source) -> Result<T, Box<Diagnostic>> {
    if source.text.trim().is_empty() {
        return Err(Box::new(Diagnostic::error(
            code::YAML_SYNTAX,
            &source.name,
            "the file is empty",
        )));
    }
    serde_saphyr::from_str_with_options::<T>(&source.text, yaml_options())
        .map_err(|e| Box::new(yaml_diagnostic(&source.name, &source.text, &e)))
}

/// Parses one source into a raw playbook, or a diagnostic saying where and why it is not one.
pub fn parse(source: &Source) -> Result<RawPlaybook, Box<Diagnostic>> {
    if source.text.trim().is_empty() {
        return Err(Box::new(
            Diagnostic::error(code::YAML_SYNTAX, &source.name, "the file is empty")
                .hint("a playbook needs at least `id`, `title`, `applies_when` and `causes`"),
        ));
    }
    serde_saphyr::from_str_with_options::<RawPlaybook>(&source.text, yaml_options())
        .map_err(|e| Box::new(yaml_diagnostic(&source.name, &source.text, &e)))
}

/// Turns a YAML/serde error into an author-facing diagnostic with a stable code.
fn yaml_diagnostic(file: &str, text: &str, err: &YamlError) -> Diagnostic {
    let (code, message, hint) = match err {
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => (
            code::UNKNOWN_FIELD,
            format!("unknown field `{field}`"),
            Some(
                did_you_mean(field, expected.iter().copied()).unwrap_or_else(|| {
                    format!(
                        "allowed fields here: {}",
                        backticked(expected.iter().copied())
                    )
                }),
            ),
        ),
        YamlError::SerdeMissingField { field, .. } => (
            code::MISSING_FIELD,
            format!("missing field `{field}`"),
            None,
        ),
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } => (
            code::INVALID_VALUE,
            format!("unknown value `{variant}`"),
            Some(
                did_you_mean(variant, expected.iter().copied())
                    .map(|d| {
                        format!(
                            "{d} allowed values: {}",
                            backticked(expected.iter().copied())
                        )
                    })
                    .unwrap_or_else(|| {
                        format!("allowed values: {}", backticked(expected.iter().copied()))
                    }),
            ),
        ),
        YamlError::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (
            code::INVALID_VALUE,
            format!("invalid type: {unexpected}, expected {expected}"),
            Some(format!("expected {expected}")),
        ),
        YamlError::DuplicateMappingKey { .. } => (
            code::DUPLICATE_KEY,
            first_line(&err.to_string()),
            Some("each key may appear once in a mapping".to_string()),
        ),
        _ => (code::YAML_SYNTAX, first_line(&err.to_string()), None),
    };
    let mut d = Diagnostic::error(code, file, message);
    if let Some(loc) = err.location() {
        d = d.at(loc.line(), loc.column());
        d.yaml_path = crate::yaml_path::path_at(text, loc.line(), loc.column());
    }
    if let Some(h) = hint {
        d = d.hint(h);
    }
    d
}

fn backticked<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// serde-saphyr appends the position to its messages; we report positions separately.
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    match line.find(" at line ") {
        Some(i) => line[..i].to_string(),
        None => line.to_string(),
    }
}
