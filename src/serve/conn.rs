//! Connections: the accept loop under [`super::Server::run`], with the limits a public HTTP
//! service needs against clients that hold connections without using them.
//!
//! - **Header timeout** (`--header-timeout`): a connection must deliver a complete request head
//!   this long after it was accepted, and a later request's head this long after its first
//!   byte. A half-open connection that sends nothing, or a slow-header one that trickles bytes,
//!   is closed then.
//! - **Idle timeout** (`--idle-timeout`): a kept-alive connection with no request for this long
//!   is closed.
//! - **Connection cap** (`--max-connections`, by default below the process's descriptor limit):
//!   at the cap, a new connection closes the oldest connection that has no request in flight
//!   (an idle or half-open one), so a flood of idle connections cannot lock real clients (or
//!   `/healthz`) out; if every connection is busy, the new one is closed at once. The accept
//!   loop never stops on a full descriptor table: it closes an idle connection and retries.
//!
//! A connection is "busy" from the moment hyper hands a request to the router until the answer
//! is ready; requests themselves are bounded by `--request-timeout`. Counts are exported as
//! `whyfail_connections_open` and `whyfail_connections_closed_total{reason}`.
//!
//! Shutdown is graceful: the listener closes, each connection finishes its request in flight
//! and closes, and `run` returns when the last one has.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// The connection limits (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Why connections were closed by the server, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Closed {
    pub header_timeout: AtomicU64,
    pub idle_timeout: AtomicU64,
    /// Closed to make room at the cap.
    pub evicted: AtomicU64,
    /// Refused at the cap because every open connection was busy.
    pub refused: AtomicU64,
}

/// The open connections, oldest first, and the counters.
#[derive(Debug)]
pub(crate) struct Registry {
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    pub(crate) closed: Closed,
    epoch: Instant,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            closed: Closed::default(),
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections open now (not counting those already told to close).
    pub(crate) fn open(&self) -> usize {
        self.lock().len()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Tells the oldest connection with no request in flight to close; `false` if all are busy.
    fn evict_one(&self) -> bool {
        let mut open = self.lock();
        let victim = open
            .iter()
            .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .map(|(id, _)| *id);
        match victim.and_then(|id| open.remove(&id)) {
            Some(c) => {
                c.evicted.store(true, Ordering::Release);
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// One connection's state, shared by its task, its I/O wrapper and its request counter.
#[derive(Debug)]
struct Conn {
    id: u64,
    /// Requests being answered now.
    busy: AtomicUsize,
    /// Whether a request was ever answered (then idle time is judged by the idle timeout).
    served: AtomicBool,
    /// When (ms since the registry's epoch) the connection was accepted or last became idle.
    idle_since: AtomicU64,
    /// When the first byte of the next request head arrived while idle; `u64::MAX` if none.
    head_since: AtomicU64,
    evicted: AtomicBool,
    close: Notify,
}

impl Conn {
    /// When this connection is to be closed if nothing changes; `None` while busy.
    fn deadline(&self, limits: &Limits) -> Option<u64> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let header = limits.header_timeout.as_millis() as u64;
        let idle_since = self.idle_since.load(Ordering::Acquire);
        let head = self.head_since.load(Ordering::Acquire);
        Some(if !self.served.load(Ordering::Acquire) {
            idle_since.saturating_add(header)
        } else if head != u64::MAX {
            head.saturating_add(header)
        } else {
            idle_since.saturating_add(limits.idle_timeout.as_millis() as u64)
        })
    }
}

/// The TCP stream, noting when bytes of a new request head start to arrive.
struct Tracked {
    inner: TcpStream,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let c = &self.conn;
            if c.busy.load(Ordering::Acquire) == 0
                && c.head_since.load(Ordering::Acquire) == u64::MAX
            {
                c.head_since
                    .store(self.registry.now_ms(), Ordering::Release);
            }
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Marks a request in flight on its connection for as long as it lives.
struct Busy {
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl Busy {
    fn start(conn: &Arc<Conn>, registry: &Arc<Registry>) -> Busy {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        conn.served.store(true, Ordering::Release);
        conn.head_since.store(u64::MAX, Ordering::Release);
        Busy {
            conn: conn.clone(),
            registry: registry.clone(),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conn
            .idle_since
            .store(self.registry.now_ms(), Ordering::Release);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves when the connection has been idle or reading a head for too long.
async fn expired(conn: &Conn, registry: &Registry, limits: &Limits) -> &'static str {
    loop {
        let now = registry.now_ms();
        match conn.deadline(limits) {
            Some(at) if at <= now => {
                return if conn.served.load(Ordering::Acquire)
                    && conn.head_since.load(Ordering::Acquire) == u64::MAX
                {
                    "idle"
                } else {
                    "header"
                };
            }
            Some(at) => tokio::time::sleep(Duration::from_millis(at - now)).await,
            // Busy: look again later; the request itself is bounded by --request-timeout.
            None => tokio::time::sleep(limits.header_timeout.min(limits.idle_timeout)).await,
        }
    }
}

/// The default `--max-connections`: the descriptor limit less a reserve for everything else
/// the service opens (playbook files, the watcher, live probes, logs).
pub fn default_max_connections() -> usize {
    let limit = descriptor_limit().unwrap_or(1024);
    let reserve = (limit / 10).max(128);
    limit.saturating_sub(reserve).max(16)
}

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None` elsewhere.
fn descriptor_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

/// Accepts and serves connections until `shutdown` resolves, then waits for open ones to end.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors (or another per-connection error): make room and go on;
                // the pause keeps a persistent error from spinning the loop.
                tracing::warn!(target: "whyfail::serve", error = %e, "accept failed");
                if registry.evict_one() {
                    registry.closed.evicted.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if registry.open() >= limits.max_connections {
            if registry.evict_one() {
                registry.closed.evicted.fetch_add(1, Ordering::Relaxed);
            } else {
                registry.closed.refused.fetch_add(1, Ordering::Relaxed);
                drop(stream);
                continue;
            }
        }
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn {
            id: registry.next_id.fetch_add(1, Ordering::Relaxed),
            busy: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(registry.now_ms()),
            head_since: AtomicU64::new(u64::MAX),
            evicted: AtomicBool::new(false),
            close: Notify::new(),
        });
        registry.lock().insert(conn.id, conn.clone());
        tokio::spawn(connection(
            stream,
            conn,
            registry.clone(),
            app.clone(),
            limits,
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    // Every connection task holds a receiver; this resolves when the last one has ended.
    stop_tx.closed().await;
    Ok(())
}

async fn connection(
    stream: TcpStream,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Tracked {
        inner: stream,
        conn: conn.clone(),
        registry: registry.clone(),
    });
    let (c, r) = (conn.clone(), registry.clone());
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = Busy::start(&c, &r);
        let answer = app.clone().oneshot(req.map(Body::new));
        async move {
            let res = answer.await;
            drop(busy);
            res.map_err(|e: Infallible| match e {})
        }
    });
    let builder = Builder::new(TokioExecutor::new());
    let served = builder.serve_connection_with_upgrades(io, service);
    let mut served = std::pin::pin!(served);
    let mut stopping = *stop.borrow();
    if stopping {
        served.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = served.as_mut() => break,
            () = conn.close.notified() => break,
            why = expired(&conn, &registry, &limits) => {
                let counter = if why == "idle" {
                    &registry.closed.idle_timeout
                } else {
                    &registry.closed.header_timeout
                };
                counter.fetch_add(1, Ordering::Relaxed);
                break;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
    if !conn.evicted.load(Ordering::Acquire) {
        registry.lock().remove(&conn.id);
    }
}
