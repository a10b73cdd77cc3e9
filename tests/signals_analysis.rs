//! The built-in library's signal patterns are analysed ahead of time
//! (`playbooks/signals.analysis.json`, embedded in the binary, so a load does not parse ~700
//! regexes and extract their literals again). This keeps the file exactly what the engine's
//! analysis gives today. After changing a pattern or the analysis:
//! `WHYFAIL_BLESS=1 cargo test --test signals_analysis`.

use std::path::Path;

use whyfail_engine::Library;
use whyfail_engine::signals::Prepared;

#[test]
fn the_committed_signal_analysis_is_current() {
    // Analysed now, with nothing prepared.
    let (lib, diags) = Library::load(&[whyfail::stdlib_sources()]);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:#?}");
    let fresh = Prepared::to_json(lib.signal_defs().iter().flat_map(|d| &d.patterns));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/signals.analysis.json");
    if std::env::var_os("WHYFAIL_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write the analysis");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "{} is stale: run `WHYFAIL_BLESS=1 cargo test --test signals_analysis`",
        path.display()
    );
}

#[test]
fn a_load_with_the_analysis_builds_the_same_signals_as_one_without() {
    let layers = [whyfail::stdlib_sources()];
    let (plain, _) = Library::load(&layers);
    let (prepared, _) = Library::load_prepared(&layers, whyfail::stdlib_signals());
    let names = |lib: &Library| -> Vec<(String, usize)> {
        lib.signal_defs()
            .iter()
            .map(|d| (d.name.clone(), d.patterns.len()))
            .collect()
    };
    assert_eq!(names(&prepared), names(&plain));
    for (a, b) in prepared.signal_defs().iter().zip(plain.signal_defs()) {
        assert_eq!(a.patterns, b.patterns, "signal `{}`", a.name);
    }
    // Every built-in pattern was found in the file (none was analysed again).
    let missing: Vec<&str> = plain
        .signal_defs()
        .iter()
        .flat_map(|d| &d.patterns)
        .filter(|p| whyfail::stdlib_signals().get(&p.text).is_none())
        .map(|p| p.text.as_str())
        .collect();
    assert!(missing.is_empty(), "not in the analysis file: {missing:#?}");
}
