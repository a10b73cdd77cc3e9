//! `whyfail check [DIR|FILE]`: validates playbooks and reports every problem at once.
//!
//! The given playbooks are checked on top of the built-in library (so they may use its shared
//! actions and signals); without a path, the built-in library itself is checked.

use std::path::PathBuf;

use serde_json::json;
use whyfail_engine::Severity;

use super::{FOUND_ERRORS, OK, USAGE};

#[derive(clap::Args)]
pub struct Args {
    /// Playbook file or directory (default: the built-in library).
    path: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Treat warnings as errors.
    #[arg(long)]
    deny_warnings: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

pub fn run(args: Args) -> u8 {
    if let Some(p) = &args.path
        && !p.exists()
    {
        eprintln!(
            "whyfail: cannot read `{}`: no such file or directory",
            p.display()
        );
        return USAGE;
    }
    let extra: Vec<PathBuf> = args.path.iter().cloned().collect();
    let (lib, mut diags) = whyfail::load_library(&extra, true);
    // Each script once on an empty event: one that loops regardless of the event is stopped
    // by its time budget on every event.
    diags.extend(whyfail_engine::lint_budgets(
        &lib,
        std::time::Duration::from_secs(5),
    ));
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diags.len() - errors;
    // Only a library that loaded cleanly is worth probing; the checked files' own causes only.
    // A script that runs past its budget on an empty event would do so on each of the 400
    // probe events (minutes of waiting for answers that are budget errors): it is fixed first.
    let runaway = diags
        .iter()
        .any(|d| d.code == whyfail_engine::diag::code::SCRIPT_BUDGET);
    let probed = errors == 0 && !runaway;
    let status_only: Vec<_> = if probed {
        super::status_only::probe(&lib)
            .into_iter()
            .filter(|s| is_under(&s.file, args.path.as_deref()))
            .collect()
    } else {
        Vec::new()
    };
    match args.format {
        Format::Json => {
            let playbooks: Vec<_> = lib.playbooks().iter().map(|p| json!({"id": p.id, "title": p.title, "file": p.file, "priority": p.priority})).collect();
            let mut out = json!({"ok": errors == 0, "errors": errors, "warnings": warnings, "diagnostics": diags, "playbooks": playbooks, "playbook_set": lib.hash()});
            // Probed only when the set loaded cleanly (a broken set has nothing to probe) and
            // no script runs away.
            if probed {
                out["status_only"] = json!(status_only);
            }
            super::emit(&serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        Format::Text => {
            // Quote the offending line from the file when it can be read (built-in playbooks
            // and vanished files are reported without it).
            let mut sources: std::collections::HashMap<String, Option<String>> =
                std::collections::HashMap::new();
            for d in &diags {
                let text = sources
                    .entry(d.file.clone())
                    .or_insert_with(|| std::fs::read_to_string(&d.file).ok());
                match text {
                    Some(t) => eprintln!("{}", d.render_with_source(t)),
                    None => eprintln!("{d}"),
                }
            }
            for s in &status_only {
                eprintln!("{s}");
            }
            if errors == 0 && runaway {
                eprintln!(
                    "note: the bare-status probe was not run: a script runs past its budget (see script_budget above)"
                );
            }
            let n = lib.playbooks().len();
            let verdict = if errors == 0 { "ok" } else { "FAILED" };
            super::emit(&format!(
                "{verdict}: {n} playbooks loaded, {errors} errors, {warnings} warnings"
            ));
        }
    }
    if errors > 0 || (args.deny_warnings && warnings > 0) {
        FOUND_ERRORS
    } else {
        OK
    }
}

/// Whether a playbook's file is the checked path or inside it.
fn is_under(file: &str, path: Option<&std::path::Path>) -> bool {
    path.is_none_or(|p| std::path::Path::new(file).starts_with(p))
}
