//! Recording: a provider wrapper that remembers every live fact a diagnosis fetched, so a real
//! failure can be replayed offline as a playbook test (`whyfail diagnose --record FILE`).

use std::sync::Mutex;

use serde_json::Value;
use whyfail_engine::{FactError, FactProvider, FactRequest};

/// Passes every call to the inner provider and keeps what came back.
pub struct RecordingProvider<'a> {
    inner: Option<&'a dyn FactProvider>,
    log: Mutex<Vec<(String, Result<Value, String>)>>,
}

impl<'a> RecordingProvider<'a> {
    /// Wraps `inner`; `None` records an offline diagnosis (every fact unavailable).
    pub fn new(inner: Option<&'a dyn FactProvider>) -> Self {
        RecordingProvider {
            inner,
            log: Mutex::new(Vec::new()),
        }
    }

    /// The facts fetched, in order: value, or why it could not be had.
    pub fn recorded(&self) -> Vec<(String, Result<Value, String>)> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl FactProvider for RecordingProvider<'_> {
    fn fetch(&self, fact: &str, request: &FactRequest<'_>) -> Result<Value, FactError> {
        let r = match self.inner {
            Some(p) => p.fetch(fact, request),
            None => Err(FactError::new("live checks are off")),
        };
        if let Ok(mut log) = self.log.lock() {
            log.push((fact.to_string(), r.clone().map_err(|e| e.reason)));
        }
        r
    }

    fn prefetch(&self, facts: &[&str], request: &FactRequest<'_>) {
        if let Some(p) = self.inner {
            p.prefetch(facts, request);
        }
    }

    fn cost(&self, fact: &str) -> u32 {
        self.inner.map_or(1, |p| p.cost(fact))
    }
}

/// A stand-in for a secret with the same shape (the engine's scrubber makes them).
pub use whyfail_engine::scrub::mask_secret;

#[cfg(test)]
mod tests {
    use super::mask_secret;

    #[test]
    fn masks_keep_the_shape_not_the_value() {
        assert_eq!(mask_secret("ghp_Ab12cd"), "ghp_Xx00xx");
        assert_eq!(mask_secret("sk_live_9zZ"), "sk_live_0xX");
        assert_eq!(mask_secret("xoxb-123-abc\n"), "xoxb-000-xxx\n");
        assert_eq!(mask_secret("Bearer abc"), "Xxxxxx xxx");
        assert_eq!(mask_secret("12_34"), "00_00");
    }
}
