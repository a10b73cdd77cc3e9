//! `serve --shared-state redis://HOST:PORT[/DB]`: the [`SharedState`] replicas share, in Redis.
//!
//! One reconnecting connection (`redis::aio::ConnectionManager`, created lazily so the service
//! starts while Redis is down). Every call has a short timeout; the first failure marks the
//! store down (one warning, `whyfail_shared_state_up` 0, a detail in `/readyz`), and while it is
//! down calls return [`Unavailable`] at once, so answers come from in-process state without
//! waiting. A background ping every [`RECHECK`] brings it back (one info line).
//!
//! Locks are `SET key token NX PX ttl`, released by a script that deletes the key only while
//! it still holds this token; holds are raised by a script that keeps the later instant.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, RedisError};
use whyfail_providers::shared::{Health, SharedFuture, SharedState, Unavailable};

/// Upper bound for one Redis call unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(150);
/// How often a store that is down is tried again.
pub const RECHECK: Duration = Duration::from_millis(500);

const UNLOCK: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
const RAISE: &str = "local c = tonumber(redis.call('GET', KEYS[1])) \
     if c == nil or c < tonumber(ARGV[1]) then \
       redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end return 0";

/// Shared state in Redis.
pub struct RedisState {
    conn: ConnectionManager,
    /// `host:port/db`, for logs (never the URL, which may carry a password).
    shown: String,
    timeout: Duration,
    up: AtomicBool,
    errors: AtomicU64,
    outages: AtomicU64,
    /// Since when, and why, while down.
    down: Mutex<Option<(jiff::Timestamp, String)>>,
    next_token: AtomicU64,
    /// Distinguishes this process's lock tokens from other replicas'.
    instance: String,
}

impl RedisState {
    /// Parses `url` and starts the connection and the recovery ping. Must be called inside a
    /// tokio runtime. Redis being down is not an error here (the service starts and uses
    /// in-process state until it answers); a malformed URL is.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Arc<RedisState>, String> {
        if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) {
            return Err(format!(
                "--shared-state must be a redis://HOST:PORT[/DB] URL, not `{}`",
                url.split('@').next_back().unwrap_or_default()
            ));
        }
        let client = redis::Client::open(url)
            .map_err(|e| format!("--shared-state: not a usable Redis URL: {e}"))?;
        let info = client.get_connection_info();
        let shown = format!("{}/{}", info.addr(), info.redis_settings().db());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("--shared-state: {e}"))?;
        let instance = format!(
            "{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_nanosecond()
        );
        let state = Arc::new(RedisState {
            conn,
            shown,
            timeout,
            up: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            outages: AtomicU64::new(0),
            down: Mutex::new(Some((
                jiff::Timestamp::now(),
                "not connected yet".to_string(),
            ))),
            next_token: AtomicU64::new(0),
            instance,
        });
        if let Err(why) = state.ping().await {
            state.mark_down(why);
        } else {
            state.mark_up();
        }
        tokio::spawn(recheck(Arc::downgrade(&state)));
        Ok(state)
    }

    async fn ping(&self) -> Result<(), String> {
        let mut c = self.conn.clone();
        match tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async::<String>(&mut c),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::SeqCst) {
            let was = self
                .down
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if self.outages.load(Ordering::Relaxed) > 0 {
                let secs = was.map_or(0, |(t, _)| {
                    jiff::Timestamp::now().duration_since(t).as_secs().max(0)
                });
                tracing::info!(target: "whyfail::serve", redis = %self.shown, down_for_s = secs, "shared state reachable again: sharing probes, locks and holds with other replicas");
            } else {
                tracing::info!(target: "whyfail::serve", redis = %self.shown, "shared state connected");
            }
        }
    }

    fn mark_down(&self, why: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.up.swap(false, Ordering::SeqCst)
            || self.outages.load(Ordering::Relaxed) == 0 && self.errors.load(Ordering::Relaxed) == 1
        {
            self.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "whyfail::serve", redis = %self.shown, error = %why, "shared state unreachable: answering from this replica's own cache, locks and holds until it returns");
            *self.down.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((jiff::Timestamp::now(), why));
        }
    }

    /// Runs `cmd` within the timeout; fails at once while the store is down.
    async fn call<T: FromRedisValue>(&self, cmd: Cmd) -> Result<T, Unavailable> {
        if !self.up.load(Ordering::Relaxed) {
            return Err(Unavailable);
        }
        let mut c = self.conn.clone();
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_unrecoverable_error()
                {
                    self.mark_down(describe(&e));
                } else {
                    // A refused command (say, a read-only replica): this call only.
                    self.errors.fetch_add(1, Ordering::Relaxed);
                }
                Err(Unavailable)
            }
            Err(_) => {
                self.mark_down(format!("no answer within {} ms", self.timeout.as_millis()));
                Err(Unavailable)
            }
        }
    }
}

/// The error in words: its kind and detail, without the URL.
fn describe(e: &RedisError) -> String {
    e.to_string()
}

fn millis(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

/// Pings a store that is down until it answers again; ends with the store.
async fn recheck(state: Weak<RedisState>) {
    loop {
        tokio::time::sleep(RECHECK).await;
        let Some(s) = state.upgrade() else {
            return;
        };
        if s.up.load(Ordering::Relaxed) {
            continue;
        }
        match s.ping().await {
            Ok(()) => s.mark_up(),
            Err(why) => {
                if let Some((_, last)) = s
                    .down
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_mut()
                {
                    *last = why;
                }
            }
        }
    }
}

impl SharedState for RedisState {
    fn is_shared(&self) -> bool {
        true
    }

    fn get(&self, key: &str) -> SharedFuture<'_, Option<(String, Duration)>> {
        let mut pipe = redis::pipe();
        pipe.atomic().get(key).pttl(key);
        Box::pin(async move {
            if !self.up.load(Ordering::Relaxed) {
                return Err(Unavailable);
            }
            let mut c = self.conn.clone();
            let answer = tokio::time::timeout(
                self.timeout,
                pipe.query_async::<(Option<String>, i64)>(&mut c),
            )
            .await;
            match answer {
                Ok(Ok((Some(v), left))) if left > 0 => {
                    Ok(Some((v, Duration::from_millis(left as u64))))
                }
                Ok(Ok(_)) => Ok(None),
                Ok(Err(e)) => {
                    self.mark_down(describe(&e));
                    Err(Unavailable)
                }
                Err(_) => {
                    self.mark_down(format!("no answer within {} ms", self.timeout.as_millis()));
                    Err(Unavailable)
                }
            }
        })
    }

    fn put(&self, key: &str, value: String, ttl: Duration) -> SharedFuture<'_, ()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(millis(ttl));
        Box::pin(async move { self.call::<()>(cmd).await })
    }

    fn lock(&self, key: &str, ttl: Duration) -> SharedFuture<'_, Option<String>> {
        let token = format!(
            "{}-{}",
            self.instance,
            self.next_token.fetch_add(1, Ordering::Relaxed)
        );
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl));
        Box::pin(async move {
            let got: Option<String> = self.call(cmd).await?;
            Ok(got.map(|_| token))
        })
    }

    fn unlock(&self, key: &str, token: &str) -> SharedFuture<'_, ()> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(UNLOCK).arg(1).arg(key).arg(token);
        Box::pin(async move { self.call::<i64>(cmd).await.map(|_| ()) })
    }

    fn raise(&self, key: &str, value: u64, ttl: Duration) -> SharedFuture<'_, ()> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RAISE).arg(1).arg(key).arg(value).arg(millis(ttl));
        Box::pin(async move { self.call::<i64>(cmd).await.map(|_| ()) })
    }

    fn health(&self) -> Health {
        let down = self
            .down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let up = self.up.load(Ordering::Relaxed);
        Health {
            backend: "redis",
            up,
            errors: self.errors.load(Ordering::Relaxed),
            outages: self.outages.load(Ordering::Relaxed),
            down_since: down.as_ref().filter(|_| !up).map(|(t, _)| t.to_string()),
            detail: if up {
                Some(format!("{} answering", self.shown))
            } else {
                Some(format!(
                    "{} unreachable ({}); answering from this replica's own state",
                    self.shown,
                    down.map_or_else(String::new, |(_, why)| why)
                ))
            },
        }
    }
}
