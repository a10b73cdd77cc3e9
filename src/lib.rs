//! The `whyfail` command's library half: the embedded standard playbooks, library loading for
//! the CLI's layering (built-in, then `--playbooks` directories), and the output renderers.
//! Everything that decides anything lives in `whyfail-engine`; this crate parses, calls, renders.

pub mod act;
pub mod graph;
pub mod record;
pub mod render;
pub mod serve;

use std::path::Path;
use std::sync::LazyLock;

use whyfail_engine::{Diagnostic, Library, Source, load, signals};

include!(concat!(env!("OUT_DIR"), "/stdlib.rs"));

/// The built-in playbook sources.
pub fn stdlib_sources() -> Vec<Source> {
    STDLIB
        .iter()
        .map(|(name, text)| Source::new(*name, *text))
        .collect()
}

/// The built-in library's signal patterns, analysed when they were written
/// (`playbooks/signals.analysis.json`; `tests/signals_analysis.rs` keeps it current).
pub fn stdlib_signals() -> &'static signals::Prepared {
    static PREPARED: LazyLock<signals::Prepared> = LazyLock::new(|| {
        signals::Prepared::from_json(include_str!("../playbooks/signals.analysis.json"))
    });
    &PREPARED
}

/// Loads the built-in library, then each directory or file in `extra` on top of it.
/// Problems in any layer are returned; what compiled is still usable.
pub fn load_library(extra: &[impl AsRef<Path>], builtin: bool) -> (Library, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut layers = Vec::new();
    if builtin {
        layers.push(stdlib_sources());
    }
    for p in extra {
        layers.push(load::read_sources(p.as_ref(), &mut diags));
    }
    let (lib, more) = Library::load_prepared(&layers, stdlib_signals());
    diags.extend(more);
    (lib, diags)
}
