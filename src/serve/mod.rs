//! `whyfail serve`: the HTTP service automation platforms call from their error handlers.
//!
//! A thin layer over the engine: each route parses the request, runs the same diagnosis the
//! CLI runs (on `spawn_blocking`, because the engine and the live provider's `fetch` are
//! synchronous) and renders the answer. What the service adds is operational:
//!
//! - [`auth`]: bearer token on every route but `/healthz` and `/readyz`; a non-loopback
//!   listener without a token is refused at start-up;
//! - limits: request body size (413), per-request timeout (504), and a concurrency limit on
//!   the diagnosis routes that sheds load with a 503 instead of queueing without bound;
//! - [`reload`]: the playbook set is reloaded on file changes and SIGHUP, validated in full,
//!   and swapped atomically; a broken edit keeps the last good set serving;
//! - observability: one structured log line per request, Prometheus metrics, `/v1/status`;
//! - every error is JSON `{"error": {"code", "message"}}` ([`error`]).
//!
//! [`Server::bind`] builds everything and binds the listener; [`Server::run`] serves until the
//! shutdown future resolves. Tests run it in-process on `127.0.0.1:0`.

pub mod auth;
pub mod conn;
pub mod error;
pub mod graph;
mod metrics;
mod observe;
pub mod openapi;
mod panel;
pub mod reload;
pub mod routes;
mod work;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use whyfail_providers::{LiveConfig, LiveProvider};

pub use auth::Token;
use metrics::Metrics;
pub use reload::{Loaded, Trigger};

/// Defaults shared by the command line and tests.
pub mod defaults {
    use std::time::Duration;

    pub const LISTEN: &str = "127.0.0.1:8080";
    pub const MAX_BODY: usize = 1 << 20;
    pub const CONCURRENCY: usize = 64;
    pub const DEADLINE: Duration = Duration::from_millis(3000);
    pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(10_000);
    pub const DEBOUNCE: Duration = Duration::from_millis(200);
    pub const HEADER_TIMEOUT: Duration = Duration::from_millis(10_000);
    pub const IDLE_TIMEOUT: Duration = Duration::from_millis(30_000);
}

/// How to run the service.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Directories (or files) layered over the built-in library, watched for changes.
    pub playbooks: Vec<PathBuf>,
    /// Required unless `listen` is a loopback address.
    pub token: Option<Token>,
    /// Where `token` came from, read again on SIGHUP (a bad or empty file keeps the old token).
    pub token_file: Option<PathBuf>,
    /// No live checks: decide from the event alone.
    pub offline: bool,
    /// Hosts live checks may reach even if private (`--allow-host`).
    pub allow_hosts: Vec<String>,
    /// Time budget for live facts per diagnosis.
    pub deadline: Duration,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Diagnosis requests served at once; more are refused with 503.
    pub concurrency: usize,
    /// Upper bound for answering one request (504 after that).
    pub request_timeout: Duration,
    /// Header timeout, idle timeout and connection cap (see [`conn`]).
    pub connections: conn::Limits,
    /// Reload when a `--playbooks` path changes.
    pub watch: bool,
    /// Reload on SIGHUP (the binary; in-process tests leave it off).
    pub sighup: bool,
    /// Quiet time after the last file change before reloading.
    pub debounce: Duration,
}

impl Config {
    pub fn new(listen: SocketAddr) -> Self {
        Config {
            listen,
            playbooks: Vec::new(),
            token: None,
            token_file: None,
            offline: false,
            allow_hosts: Vec::new(),
            deadline: defaults::DEADLINE,
            max_body: defaults::MAX_BODY,
            concurrency: defaults::CONCURRENCY,
            request_timeout: defaults::REQUEST_TIMEOUT,
            connections: conn::Limits {
                header_timeout: defaults::HEADER_TIMEOUT,
                idle_timeout: defaults::IDLE_TIMEOUT,
                max_connections: conn::default_max_connections(),
            },
            watch: true,
            sighup: false,
            debounce: defaults::DEBOUNCE,
        }
    }
}

/// Why the service did not start.
#[derive(Debug)]
pub enum StartError {
    /// A non-loopback address without a token would expose the API to anyone who can reach it.
    NoToken(SocketAddr),
    /// A setting is unusable.
    Config(String),
    Bind(SocketAddr, std::io::Error),
    Watch(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::NoToken(a) => write!(
                f,
                "refusing to listen on {a} without a token: anyone who can reach it could use the API; \
                 set WHYFAIL_TOKEN or --token-file, or listen on a loopback address (127.0.0.1)"
            ),
            StartError::Config(m) => f.write_str(m),
            StartError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            StartError::Watch(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StartError {}

/// State shared by every request.
pub(crate) struct ServerState {
    library: RwLock<Option<Arc<Loaded>>>,
    log: Mutex<reload::Log>,
    reload_lock: tokio::sync::Mutex<()>,
    pub(crate) metrics: Metrics,
    pub(crate) slots: Arc<work::Slots>,
    pub(crate) connections: Arc<conn::Registry>,
    pub(crate) live: Option<Arc<LiveProvider>>,
    token: RwLock<Option<Token>>,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) deadline: Duration,
    pub(crate) playbook_dirs: Vec<PathBuf>,
    pub(crate) started_at: jiff::Timestamp,
    pub(crate) openapi: String,
}

impl ServerState {
    /// The serving set. Each request takes its own `Arc`, so a reload that swaps the set
    /// mid-request does not change what that request sees.
    pub(crate) fn current(&self) -> Option<Arc<Loaded>> {
        self.library
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn swap(&self, loaded: Arc<Loaded>) {
        *self.library.write().unwrap_or_else(PoisonError::into_inner) = Some(loaded);
    }

    /// The token requests must present, if any.
    pub(crate) fn token(&self) -> Option<Token> {
        self.token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads `--token-file` again (on SIGHUP). A file that cannot be read or is empty keeps
    /// the token in use: a half-written rotation must not lock every client out, nor let
    /// everyone in.
    pub(crate) fn reread_token(&self) {
        let Some(path) = &self.token_file else {
            return;
        };
        match Token::from_file(path) {
            Ok(t) => {
                *self.token.write().unwrap_or_else(PoisonError::into_inner) = Some(t);
                tracing::info!(target: "whyfail::serve", file = %path.display(), "token file read again");
            }
            Err(e) => {
                tracing::warn!(target: "whyfail::serve", error = %e, "token file not usable; the previous token stays in force");
            }
        }
    }

    pub(crate) fn lock_log(&self) -> MutexGuard<'_, reload::Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A bound, ready-to-run service.
pub struct Server {
    listener: TcpListener,
    app: Router,
    limits: conn::Limits,
    state: Arc<ServerState>,
    reload_rx: mpsc::Receiver<()>,
    // Kept so the reload channel stays open (and SIGHUP works) even without a watcher.
    _reload_tx: mpsc::Sender<()>,
    watcher: Option<reload::Watcher>,
    hup: Option<reload::Hangup>,
}

impl Server {
    /// Checks the configuration, loads the playbook set, starts the watcher and binds the
    /// listener. Must be called inside a tokio runtime (the live provider runs its probes on
    /// it). A playbook set with errors does not stop the start: the service answers
    /// `/readyz` with 503 and reports the diagnostics at `/v1/status` until a fix is saved.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        if config.token.is_none() && !config.listen.ip().is_loopback() {
            return Err(StartError::NoToken(config.listen));
        }
        let limits = &config.connections;
        if limits.max_connections == 0
            || limits.header_timeout.is_zero()
            || limits.idle_timeout.is_zero()
        {
            return Err(StartError::Config(
                "--max-connections, --header-timeout and --idle-timeout must be at least 1".into(),
            ));
        }
        if config.concurrency == 0 {
            return Err(StartError::Config(
                "--concurrency must be at least 1".into(),
            ));
        }
        if let Some(p) = config.playbooks.iter().find(|p| !p.exists()) {
            return Err(StartError::Config(format!(
                "cannot read `{}`: no such file or directory",
                p.display()
            )));
        }
        let live = (!config.offline).then(|| {
            Arc::new(LiveProvider::with_handle(
                LiveConfig {
                    allow_hosts: config.allow_hosts.clone(),
                    ..LiveConfig::default()
                },
                tokio::runtime::Handle::current(),
            ))
        });
        let slots = Arc::new(work::Slots::new(config.concurrency, config.request_timeout));
        let connections = Arc::new(conn::Registry::new());
        let metrics = Metrics::new(
            live.as_ref().map(|l| l.stats.clone()),
            slots.clone(),
            connections.clone(),
        );
        let state = Arc::new(ServerState {
            library: RwLock::new(None),
            log: Mutex::default(),
            reload_lock: tokio::sync::Mutex::new(()),
            metrics,
            slots,
            connections,
            live,
            token: RwLock::new(config.token.clone()),
            token_file: config.token_file.clone(),
            deadline: config.deadline,
            playbook_dirs: config.playbooks.clone(),
            started_at: jiff::Timestamp::now(),
            openapi: openapi::document(&routes::definitions()).to_string(),
        });
        reload::reload(&state, Trigger::Startup).await;

        let (tx, rx) = mpsc::channel(1);
        let watcher = if config.watch && !config.playbooks.is_empty() {
            Some(
                reload::watch(&config.playbooks, config.debounce, tx.clone())
                    .map_err(StartError::Watch)?,
            )
        } else {
            None
        };
        let app = routes::router(state.clone(), &config);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError::Bind(config.listen, e))?;
        Ok(Server {
            listener,
            app,
            limits: config.connections,
            state,
            reload_rx: rx,
            _reload_tx: tx,
            watcher,
            hup: if config.sighup {
                reload::hangup()
            } else {
                None
            },
        })
    }

    /// The address actually bound (the port is chosen by the system for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether a valid playbook set is loaded.
    pub fn ready(&self) -> bool {
        self.state.current().is_some()
    }

    /// Hash of the serving playbook set.
    pub fn playbook_set(&self) -> Option<String> {
        self.state.current().map(|l| l.lib.hash().to_string())
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let reloader = tokio::spawn(reload::reloader(
            self.state.clone(),
            self.reload_rx,
            self.hup,
        ));
        let result = conn::serve(
            self.listener,
            self.app,
            self.limits,
            self.state.connections.clone(),
            shutdown,
        )
        .await;
        reloader.abort();
        drop(self.watcher);
        result
    }
}
