//! Live facts: what checks may ask the outside world (token introspection, whoami, TLS probes).
//!
//! The engine only knows this trait. Implementations live in the `whyfail-providers` crate: a
//! fixture provider for tests and recorded cases, and live network providers. A check declares
//! the facts it needs (`needs: [github.whoami]`); the walk fetches each one at most once per
//! diagnosis, only when it reaches a check that needs it.

use std::fmt;
use std::time::Instant;

use rhai::{Dynamic, Map};

/// Why a fact could not be had. The message must never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactError {
    pub reason: String,
}

impl FactError {
    pub fn new(reason: impl Into<String>) -> Self {
        FactError {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// What a provider may read about the failing connection.
pub struct FactRequest<'a> {
    pub(crate) event: &'a Dynamic,
    pub(crate) secrets: &'a [(String, String)],
    pub(crate) deadline: Option<Instant>,
}

impl FactRequest<'_> {
    /// A field of the event by dotted path (`connection.base_url`), as text.
    pub fn field(&self, path: &str) -> Option<String> {
        let mut cur = self.event.clone();
        for seg in path.split('.') {
            let next = cur.read_lock::<Map>().and_then(|m| m.get(seg).cloned())?;
            cur = next;
        }
        (!cur.is_unit()).then(|| cur.to_string())
    }

    /// A secret of the connection, for providers that call the real service with it.
    pub fn secret(&self, name: &str) -> Option<&str> {
        self.secrets
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every secret value of the connection, for a [`crate::scrub::Scrubber`] of the provider's
    /// text.
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        self.secrets.iter().map(|(_, v)| v.as_str())
    }

    /// When the whole diagnosis must be done; a provider answers by then or gives up.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// A source of live facts.
pub trait FactProvider: Send + Sync {
    /// Fetches one fact (`github.whoami`, `net.tls`, ...) for the event's connection.
    fn fetch(&self, fact: &str, request: &FactRequest<'_>) -> Result<serde_json::Value, FactError>;

    /// Starts fetching facts the walk is about to need, so independent probes run at the same
    /// time; the later `fetch` calls collect the answers. Providers without concurrency ignore it.
    fn prefetch(&self, _facts: &[&str], _request: &FactRequest<'_>) {}

    /// Relative cost of a fact (0 for free), so cheaper checks run first.
    fn cost(&self, _fact: &str) -> u32 {
        1
    }
}
