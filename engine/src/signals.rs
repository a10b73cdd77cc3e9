//! Signals: named families of error texts ("certificate expired" as curl, Node, Java, Go,
//! .NET, Python and rustls word it), compiled once at load time into a single `RegexSet`.
//!
//! Per event the set runs once, lazily, over one haystack (message, code, body, and the
//! `www-authenticate` header); scripts then ask `signal("tls_expired")`, a bit test.

use std::collections::HashMap;

use regex::RegexSet;

/// Every signal of a library, compiled.
#[derive(Debug)]
pub struct SignalSet {
    names: Vec<String>,
    index: HashMap<String, usize>,
    /// For each pattern of `set`, the signal it belongs to.
    owner: Vec<usize>,
    set: RegexSet,
}

impl Default for SignalSet {
    fn default() -> Self {
        SignalSet { names: Vec::new(), index: HashMap::new(), owner: Vec::new(), set: RegexSet::empty() }
    }
}

/// Compiles one pattern the way the set will, so errors can be reported per pattern.
pub fn check_pattern(pattern: &str) -> Result<(), regex::Error> {
    regex::RegexBuilder::new(&prefixed(pattern)).size_limit(1 << 20).build().map(|_| ())
}

fn prefixed(pattern: &str) -> String {
    format!("(?i){pattern}")
}

impl SignalSet {
    /// Builds the set from `(signal name, patterns)`; patterns must already be valid.
    pub fn build(signals: &[(String, Vec<String>)]) -> Result<Self, regex::Error> {
        let mut names = Vec::new();
        let mut index = HashMap::new();
        let mut owner = Vec::new();
        let mut patterns = Vec::new();
        for (name, pats) in signals {
            let id = *index.entry(name.clone()).or_insert_with(|| {
                names.push(name.clone());
                names.len() - 1
            });
            for p in pats {
                owner.push(id);
                patterns.push(prefixed(p));
            }
        }
        let set = regex::RegexSetBuilder::new(&patterns).size_limit(16 << 20).dfa_size_limit(8 << 20).build()?;
        Ok(SignalSet { names, index, owner, set })
    }

    pub fn id(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Which signals the haystack shows, as a bit per signal id.
    pub fn hits(&self, haystack: &str) -> Vec<bool> {
        let mut hits = vec![false; self.names.len()];
        if haystack.is_empty() {
            return hits;
        }
        for pattern in self.set.matches(haystack).iter() {
            hits[self.owner[pattern]] = true;
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_case_insensitively_by_family() {
        let set = SignalSet::build(&[
            ("tls_expired".into(), vec!["certificate (has )?expired".into(), "CERT_HAS_EXPIRED".into()]),
            ("refused".into(), vec!["connection refused".into(), "ECONNREFUSED".into()]),
        ])
        .unwrap();
        let hits = set.hits("curl: (60) SSL certificate problem: Certificate has expired");
        assert!(hits[set.id("tls_expired").unwrap()]);
        assert!(!hits[set.id("refused").unwrap()]);
        assert!(set.hits("connect econnrefused 10.0.0.1:443")[set.id("refused").unwrap()]);
    }
}
