//! The live provider: runs probes on a tokio runtime for the synchronous walk, with a TTL cache
//! shared across diagnoses, single-flight per (connection, fact), a per-diagnosis deadline, and
//! a hold on API probes while the provider is rate-limiting the connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use tokio::runtime::{Handle, Runtime};
use whyfail_engine::{FactError, FactProvider, FactRequest};

use crate::conn::Conn;
use crate::guard::Guard;
use crate::probe::{Ctx, Env, Probe, ProbeResult};

/// Settings of a live provider.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Hosts that may resolve to private addresses (`--allow-host`).
    pub allow_hosts: Vec<String>,
    /// Upper bound for one probe.
    pub probe_timeout: Duration,
    /// How long a fact stays cached for a connection.
    pub ttl: Duration,
    /// How long a failed probe is remembered (short: outages end).
    pub error_ttl: Duration,
    /// Extra trust anchors for the TLS probe (DER).
    pub extra_roots: Vec<Vec<u8>>,
    /// Largest number of cached facts.
    pub capacity: u64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            allow_hosts: Vec::new(),
            probe_timeout: Duration::from_millis(2500),
            ttl: Duration::from_secs(60),
            error_ttl: Duration::from_secs(5),
            extra_roots: Vec::new(),
            capacity: 10_000,
        }
    }
}

type Key = (String, &'static str);
type Answer = Arc<ProbeResult>;

struct Ttl {
    ok: Duration,
    err: Duration,
}

impl Expiry<Key, Answer> for Ttl {
    fn expire_after_create(
        &self,
        _k: &Key,
        v: &Answer,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(if v.is_ok() { self.ok } else { self.err })
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Facts asked for by diagnoses.
    pub requests: AtomicU64,
    /// Probes actually started (the rest were answered by the cache or an in-flight probe).
    pub probes: AtomicU64,
    /// Probes held back because the provider is rate-limiting the connection.
    pub held_back: AtomicU64,
}

/// Answers facts by probing the real services.
pub struct LiveProvider {
    _runtime: Option<Runtime>,
    handle: Handle,
    env: Arc<Env>,
    probes: HashMap<&'static str, Probe>,
    cache: Cache<Key, Answer>,
    /// Per API host: no probe before this instant (the provider told us to back off).
    backoff: Arc<Mutex<HashMap<String, Instant>>>,
    pub stats: Arc<Stats>,
}

impl LiveProvider {
    /// A provider with its own small runtime (for the CLI and the library).
    pub fn new(config: LiveConfig) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("whyfail-probe")
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        Ok(Self::build(config, Some(rt), handle))
    }

    /// A provider running its probes on an existing runtime (the HTTP service). `fetch` must then
    /// be called from outside the runtime's async context (e.g. `spawn_blocking`).
    pub fn with_handle(config: LiveConfig, handle: Handle) -> Self {
        Self::build(config, None, handle)
    }

    fn build(config: LiveConfig, runtime: Option<Runtime>, handle: Handle) -> Self {
        let roots = config
            .extra_roots
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect();
        let env = {
            let _enter = handle.enter();
            Arc::new(Env::new(
                Guard::new(&config.allow_hosts),
                config.probe_timeout,
                roots,
            ))
        };
        let probes = crate::net::probes()
            .into_iter()
            .chain(crate::oauth::probes())
            .chain(crate::whoami::probes())
            .chain(crate::status::probes())
            .map(|p| (p.name, p))
            .collect();
        LiveProvider {
            _runtime: runtime,
            handle,
            env,
            probes,
            cache: Cache::builder()
                .max_capacity(config.capacity)
                .expire_after(Ttl {
                    ok: config.ttl,
                    err: config.error_ttl,
                })
                .build(),
            backoff: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// The facts this provider can answer, with their cost and whether they change state.
    pub fn catalogue(&self) -> Vec<(&'static str, u32, bool)> {
        let mut v: Vec<_> = self
            .probes
            .values()
            .map(|p| (p.name, p.cost, p.mutating))
            .collect();
        v.sort();
        v
    }

    /// Runs a probe that changes state (a token refresh) on purpose, outside any diagnosis and
    /// without the cache. Only the caller's explicit opt-in leads here.
    pub fn act(&self, fact: &str, request: &FactRequest<'_>) -> ProbeResult {
        let probe = self
            .probes
            .get(fact)
            .ok_or_else(|| FactError::new(format!("no provider answers `{fact}`")))?;
        let cx = Arc::new(Ctx {
            conn: Conn::from_request(request),
            env: self.env.clone(),
        });
        let fut = (probe.run)(cx);
        let timeout = self.env.probe_timeout;
        self.handle.block_on(async move {
            tokio::time::timeout(timeout, fut)
                .await
                .unwrap_or_else(|_| Err(FactError::new(format!("`{fact}` timed out"))))
        })
    }

    /// Checks the rate-limit hold for this connection's API host; records one from the event.
    fn held(&self, conn: &Conn, request: &FactRequest<'_>) -> Option<FactError> {
        let host = conn.base_url.as_ref()?.host_str()?.to_string();
        let now = Instant::now();
        let mut backoff = self.backoff.lock().ok()?;
        if let Some(secs) = rate_limit_from_event(request) {
            let until = now + Duration::from_secs(secs);
            let e = backoff.entry(host.clone()).or_insert(until);
            if *e < until {
                *e = until;
            }
        }
        let until = *backoff.get(&host)?;
        if until <= now {
            backoff.remove(&host);
            return None;
        }
        Some(FactError::new(format!(
            "not probing {host}: the provider is rate-limiting this connection for another {} s",
            (until - now).as_secs().max(1)
        )))
    }

    /// The future that answers `fact` for `conn`: the cache, joining an in-flight probe, or a
    /// new probe spawned on the runtime (so it finishes and fills the cache even if the
    /// diagnosis that started it has given up waiting).
    fn answer(&self, probe: &Probe, conn: Conn) -> impl Future<Output = Answer> + Send + 'static {
        let key: Key = (conn.key.clone(), probe.name);
        let cache = self.cache.clone();
        let stats = self.stats.clone();
        let backoff = self.backoff.clone();
        let env = self.env.clone();
        let run = probe.run;
        let calls_api = probe.calls_api;
        let name = probe.name;
        let handle = self.handle.clone();
        async move {
            cache
                .get_with(key, async move {
                    stats.probes.fetch_add(1, Ordering::Relaxed);
                    let host = conn
                        .base_url
                        .as_ref()
                        .and_then(|u| u.host_str())
                        .map(str::to_string);
                    let timeout = env.probe_timeout;
                    let cx = Arc::new(Ctx { conn, env });
                    let task = handle.spawn(async move {
                        tokio::time::timeout(timeout, run(cx))
                            .await
                            .unwrap_or_else(|_| {
                                Err(FactError::new(format!(
                                    "`{name}` gave no answer within {} ms",
                                    timeout.as_millis()
                                )))
                            })
                    });
                    let result = task
                        .await
                        .unwrap_or_else(|_| Err(FactError::new(format!("`{name}` crashed"))));
                    if calls_api
                        && let (Ok(v), Some(host)) = (&result, host)
                        && let Some(secs) = v.get("retry_after_seconds").and_then(Value::as_u64)
                        && let Ok(mut b) = backoff.lock()
                    {
                        b.insert(host, Instant::now() + Duration::from_secs(secs));
                    }
                    Arc::new(result)
                })
                .await
        }
    }
}

/// Seconds the event says the provider wants us to wait, when it shows rate limiting.
fn rate_limit_from_event(req: &FactRequest<'_>) -> Option<u64> {
    let status = req.field("error.status");
    let code = req
        .field("connection.provider_error_code")
        .unwrap_or_default();
    let err_code = req.field("error.code").unwrap_or_default();
    let limited = status.as_deref() == Some("429")
        || code == "PROVIDER_RATE_LIMITED"
        || err_code.eq_ignore_ascii_case("PROVIDER_RATE_LIMITED")
        || err_code.eq_ignore_ascii_case("ratelimited")
        || err_code.eq_ignore_ascii_case("rate_limited");
    if !limited {
        return None;
    }
    let now = jiff::Timestamp::now();
    let from_header = req
        .field("error.headers.retry-after")
        .and_then(|v| crate::probe::retry_after_seconds(&v, now));
    let from_reset = req
        .field("error.headers.x-ratelimit-reset")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map(|epoch| (epoch - now.as_second()).max(0) as u64);
    let from_conn = req
        .field("connection.retry_after_seconds")
        .and_then(|v| v.parse::<f64>().ok())
        .map(|s| s.max(0.0) as u64);
    // The wait counts from when the failure happened, not from now.
    let elapsed = req
        .field("occurred_at")
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| now.duration_since(t).as_secs().max(0) as u64)
        .unwrap_or(0);
    let wait = from_header.or(from_reset).or(from_conn).unwrap_or(60);
    Some(wait.saturating_sub(elapsed))
}

impl FactProvider for LiveProvider {
    fn fetch(&self, fact: &str, request: &FactRequest<'_>) -> Result<Value, FactError> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let probe = self
            .probes
            .get(fact)
            .ok_or_else(|| FactError::new(format!("no live provider answers `{fact}`")))?;
        if probe.mutating {
            return Err(FactError::new(format!(
                "`{fact}` changes state at the provider, so a diagnosis never runs it"
            )));
        }
        let conn = Conn::from_request(request);
        if probe.calls_api
            && let Some(e) = self.held(&conn, request)
        {
            self.stats.held_back.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        let fut = self.answer(probe, conn);
        let deadline = request.deadline();
        let answer = self.handle.block_on(async move {
            match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), fut).await.ok(),
                None => Some(fut.await),
            }
        });
        match answer {
            Some(a) => (*a).clone(),
            None => Err(FactError::new(format!(
                "`{fact}` did not answer before the diagnosis deadline"
            ))),
        }
    }

    fn prefetch(&self, facts: &[&str], request: &FactRequest<'_>) {
        let conn = Conn::from_request(request);
        for fact in facts {
            let Some(probe) = self.probes.get(fact) else {
                continue;
            };
            if probe.mutating || (probe.calls_api && self.held(&conn, request).is_some()) {
                continue;
            }
            // Detached: `fetch` joins it through the cache's single-flight.
            self.handle.spawn(self.answer(probe, conn.clone()));
        }
    }

    fn cost(&self, fact: &str) -> u32 {
        self.probes.get(fact).map_or(1, |p| p.cost)
    }
}
