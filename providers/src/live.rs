//! The live provider: runs probes on a tokio runtime for the synchronous walk, with a TTL cache
//! shared across diagnoses, single-flight per (connection, fact), a per-diagnosis deadline, and
//! a hold on API probes while the provider is rate-limiting the connection.
//!
//! With a [`SharedState`] that other replicas see (`serve --shared-state`), the cache, the hold
//! map and single-flight become the first layer: a miss asks the shared store, takes a lock
//! with an expiry there before probing (others wait and read the stored result), and holds are
//! copied both ways. Any shared call that fails or is slow falls back to this process's state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;
use moka::future::Cache;
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use tokio::runtime::{Handle, Runtime};
use whyfail_engine::{FactError, FactProvider, FactRequest};

use crate::conn::Conn;
use crate::guard::Guard;
use crate::probe::{Ctx, Env, Probe, ProbeFuture, ProbeResult};
use crate::shared::{self, InProcess, SharedState};

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
type Answer = Arc<Cached>;

/// A cached answer; one read from the shared store keeps only the time it had left there.
struct Cached {
    result: ProbeResult,
    ttl: Option<Duration>,
}

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
        Some(
            v.ttl
                .unwrap_or(if v.result.is_ok() { self.ok } else { self.err }),
        )
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
    /// Facts answered from the shared store (another replica's probe).
    pub shared_answers: AtomicU64,
}

/// How often a replica waiting on another's probe or token refresh looks again.
const POLL: Duration = Duration::from_millis(20);
/// How long a record of a token refresh stops a second refresh of the same credentials.
const REFRESHED_TTL: Duration = Duration::from_secs(600);

/// Answers facts by probing the real services.
pub struct LiveProvider {
    _runtime: Option<Runtime>,
    handle: Handle,
    env: Arc<Env>,
    probes: HashMap<&'static str, Probe>,
    cache: Cache<Key, Answer>,
    /// Per API host: no probe before this instant (the provider told us to back off).
    backoff: Arc<Mutex<HashMap<String, Instant>>>,
    shared: Arc<dyn SharedState>,
    ttl: Duration,
    error_ttl: Duration,
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
            shared: Arc::new(InProcess::default()),
            ttl: config.ttl,
            error_ttl: config.error_ttl,
            stats: Arc::default(),
        }
    }

    /// Keeps facts, single-flight, holds and the token-refresh lock in `store` as well (the
    /// default is [`InProcess`]).
    pub fn with_shared(mut self, store: Arc<dyn SharedState>) -> Self {
        self.shared = store;
        self
    }

    /// The store behind this provider.
    pub fn shared(&self) -> &Arc<dyn SharedState> {
        &self.shared
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
    /// With a shared store, a hold recorded here is shared, and one another replica recorded
    /// holds this one too.
    fn held(&self, conn: &Conn, request: &FactRequest<'_>) -> Option<FactError> {
        let host = conn.base_url.as_ref()?.host_str()?.to_string();
        let from_event = rate_limit_from_event(request);
        let shared_key = self
            .shared
            .is_shared()
            .then(|| shared::key("hold", &[&host]));
        if let (Some(secs), Some(k)) = (from_event, &shared_key) {
            let until = shared::epoch_ms(SystemTime::now() + Duration::from_secs(secs));
            let ttl = Duration::from_secs(secs.max(1));
            let _ = self.handle.block_on(self.shared.raise(k, until, ttl));
        }
        let now = Instant::now();
        let local = {
            let mut backoff = self.backoff.lock().ok()?;
            if let Some(secs) = from_event {
                let until = now + Duration::from_secs(secs);
                let e = backoff.entry(host.clone()).or_insert(until);
                if *e < until {
                    *e = until;
                }
            }
            match backoff.get(&host) {
                Some(until) if *until > now => Some(*until),
                Some(_) => {
                    backoff.remove(&host);
                    None
                }
                None => None,
            }
        };
        let until = match (local, &shared_key) {
            (Some(u), _) => u,
            (None, Some(k)) => {
                let (text, _) = self.handle.block_on(self.shared.get(k)).ok()??;
                let wall = SystemTime::now();
                let left = Duration::from_millis(
                    text.parse::<u64>()
                        .ok()?
                        .checked_sub(shared::epoch_ms(wall))?,
                );
                let until = now + left;
                if let Ok(mut b) = self.backoff.lock() {
                    b.insert(host.clone(), until);
                }
                until
            }
            (None, None) => return None,
        };
        Some(FactError::new(format!(
            "not probing {host}: the provider is rate-limiting this connection for another {} s",
            (until - now).as_secs().max(1)
        )))
    }

    /// The future that answers `fact` for `conn`: the cache, joining an in-flight probe, or a
    /// new [`Job`] spawned on the runtime (so it finishes, fills the caches and releases any
    /// shared lock even if the diagnosis that started it has given up waiting).
    fn answer(&self, probe: &Probe, conn: Conn) -> impl Future<Output = Answer> + Send + 'static {
        let key: Key = (conn.key.clone(), probe.name);
        let cache = self.cache.clone();
        let handle = self.handle.clone();
        let name = probe.name;
        let job = Job {
            run: probe.run,
            name,
            calls_api: probe.calls_api,
            conn,
            env: self.env.clone(),
            stats: self.stats.clone(),
            backoff: self.backoff.clone(),
            shared: self.shared.clone(),
            ttl: self.ttl,
            error_ttl: self.error_ttl,
        };
        async move {
            cache
                .get_with(key, async move {
                    let cached = handle
                        .spawn(job.resolve())
                        .await
                        .unwrap_or_else(|_| Cached {
                            result: Err(FactError::new(format!("`{name}` crashed"))),
                            ttl: None,
                        });
                    Arc::new(cached)
                })
                .await
        }
    }

    /// Whose turn it is to refresh this connection's token. One request at a time per
    /// connection id (across replicas with a shared store) holds the refresh lock; a request
    /// carrying credentials that another request refreshed moments ago gets what that refresh
    /// recorded instead of refreshing them a second time (with a rotating refresh token, the
    /// second refresh would fail, or revoke the first one's tokens). Waits at most `wait`.
    pub fn refresh_turn(&self, request: &FactRequest<'_>, wait: Duration) -> RefreshTurn {
        let conn = Conn::from_request(request);
        let id = request
            .field("connection.id")
            .unwrap_or_else(|| conn.key.clone());
        let lock = shared::key("refresh-lock", &[&id]);
        let marker = shared::key("refreshed", &[&conn.key]);
        // The lock outlives the refresh and its verification, even if its holder vanishes.
        let lock_ttl = self.env.probe_timeout * 2 + wait + Duration::from_secs(1);
        let give_up = Instant::now() + wait;
        let store = self.shared.clone();
        let lease = |token| RefreshLease {
            shared: self.shared.clone(),
            handle: self.handle.clone(),
            lock: lock.clone(),
            marker: marker.clone(),
            token,
        };
        let done =
            |text: String| RefreshTurn::Done(serde_json::from_str(&text).unwrap_or_default());
        self.handle.block_on(async {
            loop {
                match store.get(&marker).await {
                    Ok(Some((text, _))) => return done(text),
                    Ok(None) => {}
                    Err(_) => return RefreshTurn::Mine(lease(None)),
                }
                match store.lock(&lock, lock_ttl).await {
                    Ok(Some(token)) => {
                        // A refresh may have finished between the two calls.
                        if let Ok(Some((text, _))) = store.get(&marker).await {
                            let _ = store.unlock(&lock, &token).await;
                            return done(text);
                        }
                        return RefreshTurn::Mine(lease(Some(token)));
                    }
                    Ok(None) if Instant::now() + POLL < give_up => tokio::time::sleep(POLL).await,
                    Ok(None) => return RefreshTurn::Busy,
                    Err(_) => return RefreshTurn::Mine(lease(None)),
                }
            }
        })
    }
}

/// See [`LiveProvider::refresh_turn`].
pub enum RefreshTurn {
    /// This request refreshes; [`RefreshLease::finish`] records the outcome and lets others go.
    Mine(RefreshLease),
    /// Another request refreshed these same credentials moments ago: what it recorded.
    Done(Value),
    /// Another request is still refreshing this connection's token.
    Busy,
}

/// The right to refresh one connection's token, until [`finish`](RefreshLease::finish) (or
/// the lock's expiry). Without a token the shared store was unreachable and this request goes
/// ahead on its own.
pub struct RefreshLease {
    shared: Arc<dyn SharedState>,
    handle: Handle,
    lock: String,
    marker: String,
    token: Option<String>,
}

impl RefreshLease {
    /// Records `outcome` (non-secret: when, whether the new token was verified) for requests
    /// that still carry the old credentials, when the refresh worked, and releases the lock.
    pub fn finish(self, outcome: Option<Value>) {
        self.handle.block_on(async {
            if let Some(v) = outcome {
                let _ = self
                    .shared
                    .put(&self.marker, v.to_string(), REFRESHED_TTL)
                    .await;
            }
            if let Some(t) = &self.token {
                let _ = self.shared.unlock(&self.lock, t).await;
            }
        });
    }
}

/// One fact to answer for one connection, run as its own task.
struct Job {
    run: fn(Arc<Ctx>) -> ProbeFuture,
    name: &'static str,
    calls_api: bool,
    conn: Conn,
    env: Arc<Env>,
    stats: Arc<Stats>,
    backoff: Arc<Mutex<HashMap<String, Instant>>>,
    shared: Arc<dyn SharedState>,
    ttl: Duration,
    error_ttl: Duration,
}

impl Job {
    /// The shared store's answer, else a probe under the shared lock (storing its result),
    /// else, when another replica holds the lock, that replica's result once stored. A store
    /// that fails, or a lock holder that goes quiet, leaves the answer to this process.
    async fn resolve(self) -> Cached {
        if !self.shared.is_shared() {
            return self.local().await;
        }
        let key = shared::key("fact", &[&self.conn.key, self.name]);
        let lock = format!("{key}:lock");
        // The lock outlives the probe it guards; waiting for it ends a little after that.
        let lock_ttl = self.env.probe_timeout + Duration::from_secs(1);
        let give_up = Instant::now() + lock_ttl;
        loop {
            match self.stored(&key).await {
                Ok(Some(c)) => return c,
                Ok(None) => {}
                Err(_) => break,
            }
            match self.shared.lock(&lock, lock_ttl).await {
                Ok(Some(token)) => {
                    // The holder before us may have stored its result just before unlocking.
                    if let Ok(Some(c)) = self.stored(&key).await {
                        let _ = self.shared.unlock(&lock, &token).await;
                        return c;
                    }
                    let result = self.probe().await;
                    let ttl = if result.is_ok() {
                        self.ttl
                    } else {
                        self.error_ttl
                    };
                    let text = shared::encode_fact(&result, &self.conn.secrets);
                    let _ = self.shared.put(&key, text, ttl).await;
                    let _ = self.shared.unlock(&lock, &token).await;
                    return Cached { result, ttl: None };
                }
                Ok(None) if Instant::now() < give_up => tokio::time::sleep(POLL).await,
                _ => break,
            }
        }
        self.local().await
    }

    async fn local(&self) -> Cached {
        Cached {
            result: self.probe().await,
            ttl: None,
        }
    }

    /// A result another replica stored, with the time it has left.
    async fn stored(&self, key: &str) -> Result<Option<Cached>, shared::Unavailable> {
        let Some((text, left)) = self.shared.get(key).await? else {
            return Ok(None);
        };
        Ok(shared::decode_fact(&text).map(|result| {
            self.stats.shared_answers.fetch_add(1, Ordering::Relaxed);
            Cached {
                result,
                ttl: Some(left),
            }
        }))
    }

    /// Runs the probe; a provider's `retry_after_seconds` starts a cool-down for its host.
    async fn probe(&self) -> ProbeResult {
        self.stats.probes.fetch_add(1, Ordering::Relaxed);
        let name = self.name;
        let timeout = self.env.probe_timeout;
        let cx = Arc::new(Ctx {
            conn: self.conn.clone(),
            env: self.env.clone(),
        });
        let result = tokio::time::timeout(timeout, (self.run)(cx))
            .await
            .unwrap_or_else(|_| {
                Err(FactError::new(format!(
                    "`{name}` gave no answer within {} ms",
                    timeout.as_millis()
                )))
            });
        let host = self
            .conn
            .base_url
            .as_ref()
            .and_then(|u| u.host_str())
            .map(str::to_string);
        if self.calls_api
            && let (Ok(v), Some(host)) = (&result, host)
            && let Some(secs) = v.get("retry_after_seconds").and_then(Value::as_u64)
        {
            let wait = Duration::from_secs(secs);
            if let Ok(mut b) = self.backoff.lock() {
                b.insert(host.clone(), Instant::now() + wait);
            }
            if self.shared.is_shared() {
                let until = shared::epoch_ms(SystemTime::now() + wait);
                let k = shared::key("hold", &[&host]);
                let _ = self
                    .shared
                    .raise(&k, until, wait.max(Duration::from_secs(1)))
                    .await;
            }
        }
        result
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
            Some(a) => a.result.clone(),
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
