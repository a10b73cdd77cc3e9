//! State that several replicas of the service can share: live-fact results, single-flight locks,
//! rate-limit holds and the per-connection token-refresh lock, behind the [`SharedState`] trait.
//!
//! [`InProcess`] is the default: locks and markers live in this process only, and facts and
//! holds are not stored twice (the live provider's own cache and hold map are this process's
//! memory). The service plugs a Redis store in with `--shared-state` (`src/serve/shared.rs`).
//!
//! Every call may fail with [`Unavailable`] (the store is down or slow): callers then go on
//! from in-process state. Keys are digests (connection, fact, credential fingerprint), never a
//! secret; values are scrubbed facts ([`encode_fact`]) or plain numbers and markers.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use whyfail_engine::FactError;

use crate::conn::Secrets;
use crate::probe::ProbeResult;

/// The shared store could not answer (down, slow, or refused the command): go on without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// What a shared-state call returns.
pub type SharedFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Unavailable>> + Send + 'a>>;

/// How the store is doing, for `/readyz`, `/v1/status` and the metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `in-process` or `redis`.
    pub backend: &'static str,
    /// Answering now.
    pub up: bool,
    /// Calls that failed or timed out (answers then came from in-process state).
    pub errors: u64,
    /// Times the store went from up to down.
    pub outages: u64,
    /// When the current outage began.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_since: Option<String>,
    /// Why, in words (no URL password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A key-value store with expiry that replicas share.
pub trait SharedState: Send + Sync + 'static {
    /// Whether other processes see what is stored here. When false, the live provider keeps
    /// facts and holds only in its own cache and hold map, and uses this store for locks.
    fn is_shared(&self) -> bool;
    /// The value at `key` and how long it has left.
    fn get(&self, key: &str) -> SharedFuture<'_, Option<(String, Duration)>>;
    /// Stores `value` at `key` for `ttl`.
    fn put(&self, key: &str, value: String, ttl: Duration) -> SharedFuture<'_, ()>;
    /// Takes the lock `key` for `ttl` if nobody holds it: the token that releases it, or `None`.
    fn lock(&self, key: &str, ttl: Duration) -> SharedFuture<'_, Option<String>>;
    /// Releases `key` if `token` still holds it (an expired lock taken over by another is kept).
    fn unlock(&self, key: &str, token: &str) -> SharedFuture<'_, ()>;
    /// Stores the number `value` at `key` for `ttl` unless a larger one is there already.
    fn raise(&self, key: &str, value: u64, ttl: Duration) -> SharedFuture<'_, ()>;
    fn health(&self) -> Health;
}

/// The default store: one process's memory.
#[derive(Default)]
pub struct InProcess {
    map: Mutex<HashMap<String, (String, Instant)>>,
    next_token: AtomicU64,
}

/// Entries kept before expired ones are swept out.
const SWEEP_AT: usize = 4096;

impl InProcess {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (String, Instant)>, Instant) -> T) -> T {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if map.len() >= SWEEP_AT {
            map.retain(|_, (_, until)| *until > now);
        }
        f(&mut map, now)
    }

    fn live<'m>(
        map: &'m HashMap<String, (String, Instant)>,
        key: &str,
        now: Instant,
    ) -> Option<&'m (String, Instant)> {
        map.get(key).filter(|(_, until)| *until > now)
    }
}

impl SharedState for InProcess {
    fn is_shared(&self) -> bool {
        false
    }

    fn get(&self, key: &str) -> SharedFuture<'_, Option<(String, Duration)>> {
        let v = self.with(|m, now| Self::live(m, key, now).map(|(v, u)| (v.clone(), *u - now)));
        Box::pin(async move { Ok(v) })
    }

    fn put(&self, key: &str, value: String, ttl: Duration) -> SharedFuture<'_, ()> {
        self.with(|m, now| m.insert(key.to_string(), (value, now + ttl)));
        Box::pin(async { Ok(()) })
    }

    fn lock(&self, key: &str, ttl: Duration) -> SharedFuture<'_, Option<String>> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed).to_string();
        let got = self.with(|m, now| {
            if Self::live(m, key, now).is_some() {
                return None;
            }
            m.insert(key.to_string(), (token.clone(), now + ttl));
            Some(token)
        });
        Box::pin(async move { Ok(got) })
    }

    fn unlock(&self, key: &str, token: &str) -> SharedFuture<'_, ()> {
        self.with(|m, _| {
            if m.get(key).is_some_and(|(v, _)| v == token) {
                m.remove(key);
            }
        });
        Box::pin(async { Ok(()) })
    }

    fn raise(&self, key: &str, value: u64, ttl: Duration) -> SharedFuture<'_, ()> {
        self.with(|m, now| {
            let current = Self::live(m, key, now).and_then(|(v, _)| v.parse::<u64>().ok());
            if current.is_none_or(|c| c < value) {
                m.insert(key.to_string(), (value.to_string(), now + ttl));
            }
        });
        Box::pin(async { Ok(()) })
    }

    fn health(&self) -> Health {
        Health {
            backend: "in-process",
            up: true,
            errors: 0,
            outages: 0,
            down_since: None,
            detail: None,
        }
    }
}

/// A key under whyfail's namespace: `whyfail:v1:KIND:` + a digest of the parts. The parts are
/// connection keys (id + credential fingerprint), fact names and hosts, never a secret; the
/// digest keeps even those out of the store's key space.
pub fn key(kind: &str, parts: &[&str]) -> String {
    let mut d = Sha256::new();
    for p in parts {
        d.update(p.as_bytes());
        d.update([0]);
    }
    let hash = d.finalize();
    let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("whyfail:v1:{kind}:{hex}")
}

/// Milliseconds since the Unix epoch (holds are shared as wall-clock instants).
pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A probe result as stored: `{"ok": fact}` or `{"error": reason}`, with every secret of the
/// connection replaced by `[redacted]` wherever a provider echoed one back.
pub fn encode_fact(result: &ProbeResult, secrets: &Secrets) -> String {
    let mut v = match result {
        Ok(fact) => json!({ "ok": fact }),
        Err(e) => json!({ "error": e.reason }),
    };
    scrub(&mut v, secrets);
    v.to_string()
}

/// The probe result a stored value holds, if it is one.
pub fn decode_fact(text: &str) -> Option<ProbeResult> {
    let mut v: Value = serde_json::from_str(text).ok()?;
    if let Some(fact) = v.get_mut("ok") {
        return Some(Ok(fact.take()));
    }
    v.get("error")
        .and_then(Value::as_str)
        .map(|e| Err(FactError::new(e)))
}

fn scrub(v: &mut Value, secrets: &Secrets) {
    match v {
        Value::String(s) => {
            for secret in secrets.values() {
                if s.contains(secret) {
                    *s = s.replace(secret, "[redacted]");
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| scrub(x, secrets)),
        Value::Object(o) => o.values_mut().for_each(|x| scrub(x, secrets)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<T>(f: SharedFuture<'_, T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
            .unwrap()
    }

    #[test]
    fn in_process_lock_is_exclusive_until_released_or_expired() {
        let s = InProcess::default();
        let t = block(s.lock("k", Duration::from_secs(5))).expect("first takes it");
        assert_eq!(block(s.lock("k", Duration::from_secs(5))), None);
        block(s.unlock("k", "not-the-token"));
        assert_eq!(block(s.lock("k", Duration::from_secs(5))), None);
        block(s.unlock("k", &t));
        assert!(block(s.lock("k", Duration::from_millis(1))).is_some());
        std::thread::sleep(Duration::from_millis(5));
        assert!(block(s.lock("k", Duration::from_secs(5))).is_some());
    }

    #[test]
    fn raise_keeps_the_larger_value() {
        let s = InProcess::default();
        block(s.raise("h", 10, Duration::from_secs(5)));
        block(s.raise("h", 7, Duration::from_secs(5)));
        assert_eq!(block(s.get("h")).unwrap().0, "10");
        block(s.raise("h", 12, Duration::from_secs(5)));
        assert_eq!(block(s.get("h")).unwrap().0, "12");
    }

    #[test]
    fn stored_facts_are_scrubbed_and_round_trip() {
        let secrets = Secrets {
            access_token: Some("gho_SECRET_value_1".into()),
            ..Secrets::default()
        };
        let r: ProbeResult = Ok(json!({"echo": ["Bearer gho_SECRET_value_1"], "n": 3}));
        let text = encode_fact(&r, &secrets);
        assert!(!text.contains("gho_SECRET_value_1"), "{text}");
        let back = decode_fact(&text).unwrap().unwrap();
        assert_eq!(back["echo"][0], "Bearer [redacted]");
        assert_eq!(back["n"], 3);
        let e: ProbeResult = Err(FactError::new("token gho_SECRET_value_1 refused"));
        let text = encode_fact(&e, &secrets);
        assert!(!text.contains("gho_SECRET_value_1"));
        assert_eq!(
            decode_fact(&text).unwrap().unwrap_err().reason,
            "token [redacted] refused"
        );
        assert!(decode_fact("{\"other\":1}").is_none());
    }

    #[test]
    fn keys_hide_their_parts() {
        let k = key("fact", &["conn_1#abcd", "whoami"]);
        assert!(k.starts_with("whyfail:v1:fact:"));
        assert!(!k.contains("conn_1"));
        assert_ne!(k, key("fact", &["conn_1#abcd", "status.page"]));
    }
}
