//! The fixture provider: canned facts, for tests and for recorded cases replayed offline.

use std::collections::BTreeMap;

use whyfail_engine::{FactError, FactProvider, FactRequest};

/// Serves facts from a fixed map; a fact not in the map is an error ("not in the fixture").
#[derive(Debug, Default, Clone)]
pub struct FixtureProvider {
    facts: BTreeMap<String, serde_json::Value>,
}

impl FixtureProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a provider from a JSON object `{ "fact.name": value, ... }`.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        let obj = value
            .as_object()
            .ok_or("fixture facts must be a JSON object of fact name to value")?;
        Ok(FixtureProvider {
            facts: obj.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
    }

    pub fn with(mut self, fact: &str, value: serde_json::Value) -> Self {
        self.facts.insert(fact.to_string(), value);
        self
    }
}

impl FactProvider for FixtureProvider {
    fn fetch(
        &self,
        fact: &str,
        _request: &FactRequest<'_>,
    ) -> Result<serde_json::Value, FactError> {
        self.facts
            .get(fact)
            .cloned()
            .ok_or_else(|| FactError::new(format!("`{fact}` is not in the fixture")))
    }
}
