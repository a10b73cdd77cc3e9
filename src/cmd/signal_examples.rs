//! Signal examples in playbook test files: for each signal, texts it must match and near misses
//! it must not. `whyfail test` runs them as tests; `--coverage` lists every top-level alternative
//! of a tested signal that no example matches, or that has no near miss (a `miss` text holding
//! the literal the alternative keys on, so the regex itself had to reject it).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use whyfail_engine::Library;
use whyfail_engine::signals::{self, Pattern};

/// `signals: {name: {match: [...], miss: [...]}}` in a test file.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Examples {
    /// Texts the signal must match.
    #[serde(rename = "match", default)]
    pub matches: Vec<String>,
    /// Near misses the signal must not match.
    #[serde(default)]
    pub miss: Vec<String>,
}

/// One example that did not behave: the text, and whether it should have matched.
pub struct Wrong {
    pub text: String,
    pub should_match: bool,
}

/// Runs a signal's examples; `None` when the library has no such signal.
pub fn run(lib: &Library, name: &str, ex: &Examples) -> Option<Vec<Wrong>> {
    let mut wrong = Vec::new();
    for (texts, should_match) in [(&ex.matches, true), (&ex.miss, false)] {
        for t in texts {
            if lib.signal_matches(name, t)? != should_match {
                wrong.push(Wrong {
                    text: t.clone(),
                    should_match,
                });
            }
        }
    }
    Some(wrong)
}

/// One top-level alternative of a tested signal and what its examples show of it.
pub struct Alternative {
    pub signal: String,
    pub file: String,
    pub text: String,
    pub matched: bool,
    pub near_missed: bool,
}

/// Every alternative of the signals defined in `files`, against all the examples given for them.
pub fn coverage(
    lib: &Library,
    files: &BTreeSet<String>,
    examples: &BTreeMap<String, Examples>,
) -> Vec<Alternative> {
    let mut out = Vec::new();
    for def in lib.signal_defs().iter().filter(|d| files.contains(&d.file)) {
        let ex = examples.get(&def.name).cloned().unwrap_or_default();
        let misses: Vec<String> = ex.miss.iter().map(|m| m.to_ascii_lowercase()).collect();
        for alt in def
            .patterns
            .iter()
            .flat_map(|p| signals::alternatives(&p.text))
        {
            let matched = signals::compile(&alt.text)
                .is_some_and(|re| ex.matches.iter().any(|t| re.is_match(t.as_bytes())));
            out.push(Alternative {
                signal: def.name.clone(),
                file: def.file.clone(),
                near_missed: near_missed(&alt, &misses),
                text: alt.text,
                matched,
            });
        }
    }
    out
}

/// A miss is near an alternative when it holds one of the literals the alternative keys on;
/// an alternative without such literals is near any miss.
fn near_missed(alt: &Pattern, misses: &[String]) -> bool {
    match &alt.triggers {
        None => !misses.is_empty(),
        Some(lits) => misses
            .iter()
            .any(|m| lits.iter().any(|l| m.contains(l.as_str()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whyfail_engine::Source;

    fn lib() -> Library {
        let src = Source::new(
            "x.yaml",
            "signals:\n  quota:\n    - 'daily (request )?limit (reached|exceeded)|\\bQUOTA_EXCEEDED\\b'\n    - 'too many requests'\n",
        );
        let (lib, diags) = Library::load(&[vec![src]]);
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
        lib
    }

    #[test]
    fn wrong_examples_are_reported_both_ways() {
        let lib = lib();
        let ex = Examples {
            matches: vec!["Daily request limit reached".into(), "all good".into()],
            miss: vec!["daily limit: 1000".into(), "Too Many Requests".into()],
        };
        let wrong = run(&lib, "quota", &ex).expect("known signal");
        let texts: Vec<(&str, bool)> = wrong
            .iter()
            .map(|w| (w.text.as_str(), w.should_match))
            .collect();
        assert_eq!(texts, [("all good", true), ("Too Many Requests", false)]);
        assert!(run(&lib, "quotas", &ex).is_none());
    }

    #[test]
    fn coverage_is_per_top_level_alternative_with_near_misses() {
        let lib = lib();
        let files: BTreeSet<String> = ["x.yaml".to_string()].into();
        let mut examples = BTreeMap::new();
        examples.insert(
            "quota".to_string(),
            Examples {
                matches: vec!["Daily limit exceeded".into()],
                miss: vec!["daily limit: 1000 remaining".into()],
            },
        );
        let alts = coverage(&lib, &files, &examples);
        let seen: Vec<(bool, bool)> = alts.iter().map(|a| (a.matched, a.near_missed)).collect();
        // `daily … limit …` is matched and near-missed; QUOTA_EXCEEDED and `too many requests`
        // have neither an example nor a miss that holds their literals.
        assert_eq!(seen, [(true, true), (false, false), (false, false)]);
        assert!(coverage(&lib, &BTreeSet::new(), &examples).is_empty());
    }
}
