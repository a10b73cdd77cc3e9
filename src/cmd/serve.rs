//! `whyfail serve`: runs the HTTP API (`whyfail::serve`) until SIGINT or SIGTERM.
//!
//! Start-up prints one JSON line on standard output, `{"listening": "127.0.0.1:8080", ...}`, so
//! a supervisor or a test that asked for port 0 learns the real port. Logs are JSON lines on
//! standard error (filter with `RUST_LOG`, default `info`).
//!
//! The bearer token comes from `--token-file` (preferred: it does not show in the process
//! list or the environment of children) or the `WHYFAIL_TOKEN` variable; it is never printed.

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use whyfail::serve::{Config, Server, StartError, Token, defaults};

use super::{FOUND_ERRORS, OK, USAGE};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on; a non-loopback address needs a token.
    #[arg(long, value_name = "ADDR", default_value = defaults::LISTEN)]
    listen: String,
    /// Directory (or file) of playbooks over the built-in library; repeatable; watched for changes.
    #[arg(long = "playbooks", value_name = "DIR")]
    playbooks: Vec<PathBuf>,
    /// File holding the bearer token (else the WHYFAIL_TOKEN environment variable); read again
    /// on SIGHUP.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// No live checks: decide from the event alone.
    #[arg(long)]
    offline: bool,
    /// Let live checks reach HOST even if it is private (tests, on-prem); repeatable.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_host: Vec<String>,
    /// Time budget for live facts per diagnosis, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = defaults::DEADLINE.as_millis() as u64)]
    deadline: u64,
    /// Largest request body, in bytes (413 beyond).
    #[arg(long, value_name = "BYTES", default_value_t = defaults::MAX_BODY)]
    max_body: usize,
    /// Diagnosis requests served at once; more get 503 `overloaded` at once.
    #[arg(long, value_name = "N", default_value_t = defaults::CONCURRENCY)]
    concurrency: usize,
    /// Upper bound for answering one request, in milliseconds (504 beyond).
    #[arg(long, value_name = "MS", default_value_t = defaults::REQUEST_TIMEOUT.as_millis() as u64)]
    request_timeout: u64,
    /// Time a connection has to send a complete request head, in milliseconds: from when it is
    /// accepted, and from the first byte of each later request (closed beyond).
    #[arg(long, value_name = "MS", default_value_t = defaults::HEADER_TIMEOUT.as_millis() as u64)]
    header_timeout: u64,
    /// Time a kept-alive connection may stay without a request, in milliseconds (closed beyond).
    #[arg(long, value_name = "MS", default_value_t = defaults::IDLE_TIMEOUT.as_millis() as u64)]
    idle_timeout: u64,
    /// Most client connections open at once; at the cap a new one closes the oldest idle one.
    /// Default: the open-files limit less a tenth (at least 128) kept for everything else.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Do not watch the playbook directories (reload on SIGHUP only).
    #[arg(long)]
    no_watch: bool,
}

fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .map_err(|e| format!("invalid --listen `{s}`: {e}"))?
        .next()
        .ok_or_else(|| format!("invalid --listen `{s}`: it resolves to no address"))
}

fn token(args: &Args) -> Result<Option<Token>, String> {
    if let Some(path) = &args.token_file {
        return Token::from_file(path).map(Some);
    }
    match std::env::var("WHYFAIL_TOKEN") {
        Ok(t) => Token::new(&t)
            .map(Some)
            .ok_or_else(|| "the token in WHYFAIL_TOKEN is empty".to_string()),
        Err(_) => Ok(None),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called (not when
/// first polled), so a signal right after the start-up line is not missed.
#[cfg(unix)]
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let int = signal(SignalKind::interrupt()).ok();
    let term = signal(SignalKind::terminate()).ok();
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(int) => {},
            () = wait(term) => {},
        }
        tracing::info!(target: "whyfail::serve", "shutting down: finishing in-flight requests");
    }
}

#[cfg(not(unix))]
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!(target: "whyfail::serve", "shutting down: finishing in-flight requests");
    }
}

pub fn run(args: Args) -> u8 {
    let listen = match listen_addr(&args.listen) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("whyfail: {e}");
            return USAGE;
        }
    };
    let token = match token(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("whyfail: {e}");
            return USAGE;
        }
    };
    let mut config = Config::new(listen);
    config.playbooks = args.playbooks.clone();
    config.token = token;
    config.token_file = args.token_file.clone();
    config.offline = args.offline;
    config.allow_hosts = args.allow_host.clone();
    config.deadline = Duration::from_millis(args.deadline);
    config.max_body = args.max_body;
    config.concurrency = args.concurrency;
    config.request_timeout = Duration::from_millis(args.request_timeout);
    config.connections.header_timeout = Duration::from_millis(args.header_timeout);
    config.connections.idle_timeout = Duration::from_millis(args.idle_timeout);
    if let Some(n) = args.max_connections {
        config.connections.max_connections = n;
    }
    config.watch = !args.no_watch;
    config.sighup = true;

    init_logging();
    // Diagnoses run on the blocking pool. Offline they only use the CPU, and more threads than
    // cores just interleave them (measured: 64 connections went from ~9,000 to ~17,000
    // diagnoses/s on 2 cores with this cap); live diagnoses wait on probes, so they keep
    // tokio's default of 512 threads. Either way `--concurrency` bounds what can wait.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("whyfail-serve")
        .max_blocking_threads(if args.offline { cores } else { 512 })
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("whyfail: cannot start the runtime: {e}");
            return FOUND_ERRORS;
        }
    };
    runtime.block_on(async move {
        let no_token = config.token.is_none();
        let server = match Server::bind(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("whyfail: {e}");
                return match e {
                    StartError::Bind(..) | StartError::NoToken(_) | StartError::Config(_) => USAGE,
                    StartError::Watch(_) => FOUND_ERRORS,
                };
            }
        };
        let shutdown = shutdown_signal();
        let addr = match server.local_addr() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("whyfail: cannot read the bound address: {e}");
                return FOUND_ERRORS;
            }
        };
        if no_token {
            tracing::warn!(target: "whyfail::serve", %addr, "no token configured: any local process can call the API");
        }
        super::emit(
            &json!({
                "listening": addr.to_string(),
                "ready": server.ready(),
                "playbook_set": server.playbook_set(),
            })
            .to_string(),
        );
        tracing::info!(target: "whyfail::serve", %addr, ready = server.ready(), "listening");
        match server.run(shutdown).await {
            Ok(()) => OK,
            Err(e) => {
                eprintln!("whyfail: the server stopped: {e}");
                FOUND_ERRORS
            }
        }
    })
}
