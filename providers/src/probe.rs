//! What every probe shares: the environment (guarded HTTP client, timeouts, trust roots), the
//! per-connection context, and the one way to make an HTTP request with credentials.
//!
//! Requests never follow redirects (a redirect is reported as a fact, and its target is not
//! contacted), bodies are capped, and credentials go only to the connection's own origins.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use whyfail_engine::FactError;

use crate::conn::Conn;
use crate::guard::{Guard, GuardedResolver};

/// Largest response body a probe reads; providers' whoami and metadata documents are a few KB.
pub const MAX_BODY: usize = 1 << 20;

/// A probe's result: a JSON fact, or why it could not be had.
pub type ProbeResult = Result<Value, FactError>;
pub type ProbeFuture = Pin<Box<dyn Future<Output = ProbeResult> + Send>>;

/// One kind of live fact.
pub struct Probe {
    /// The fact name checks declare in `needs:`.
    pub name: &'static str,
    /// Relative cost, used to order checks: DNS is cheap, an authenticated API call is not.
    pub cost: u32,
    /// Changes state at the provider (a token refresh). Never run during a diagnosis.
    pub mutating: bool,
    /// Calls the provider's API, so it is held back while the provider rate-limits us.
    pub calls_api: bool,
    pub run: fn(Arc<Ctx>) -> ProbeFuture,
}

/// Shared by all probes of one provider instance.
pub struct Env {
    pub guard: Arc<Guard>,
    /// Guarded client: resolver checks every address, no proxy, no redirects.
    pub http: reqwest::Client,
    /// Upper bound for one probe.
    pub probe_timeout: Duration,
    /// Extra trust anchors for the TLS probe (tests, private CAs), on top of the web PKI roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Env {
    pub fn new(
        guard: Guard,
        probe_timeout: Duration,
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> Env {
        let guard = Arc::new(guard);
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                guard: guard.clone(),
            }))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(probe_timeout)
            .connect_timeout(probe_timeout)
            .user_agent(concat!("whyfail/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Env {
            guard,
            http,
            probe_timeout,
            extra_roots,
        }
    }
}

/// What one probe run gets.
pub struct Ctx {
    pub conn: Conn,
    pub env: Arc<Env>,
}

/// An HTTP response as probes use it.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Fetched {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON; a body that is not JSON is a probe failure naming the content type.
    pub fn json(&self) -> Result<Value, FactError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            FactError::new(format!(
                "the response (HTTP {}, {}) is not valid JSON: {e}",
                self.status,
                self.header("content-type").unwrap_or("no content type")
            ))
        })
    }

    /// `Location` of a redirect, if this is one.
    pub fn redirect(&self) -> Option<&str> {
        (300..400)
            .contains(&self.status)
            .then(|| self.header("location"))
            .flatten()
    }
}

/// Whether to attach the connection's credentials to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creds {
    None,
    /// The request carries credentials the caller attached; the origin check still applies.
    Attached,
    /// Credentials for a provider's documented public API (`https://api.github.com`), used only
    /// when the connection names no base URL of its own.
    Official,
}

impl Ctx {
    /// Removes any secret of the connection, and any credential shape, from provider-supplied
    /// text (the engine's one scrubber).
    pub fn scrub(&self, text: &str) -> String {
        self.scrubber().clean(text).into_owned()
    }

    /// The connection's scrubber: the one built from all of `connection.secrets`, or, for a
    /// connection made by hand (no request behind it), one of its four known secrets.
    pub fn scrubber(&self) -> std::borrow::Cow<'_, whyfail_engine::scrub::Scrubber> {
        if self.conn.scrubber.has_secrets() {
            std::borrow::Cow::Borrowed(&self.conn.scrubber)
        } else {
            std::borrow::Cow::Owned(whyfail_engine::scrub::Scrubber::new(
                self.conn.secrets.values(),
            ))
        }
    }

    /// Sends a request through the guard. With credentials, the URL must be on one of the
    /// connection's own origins.
    pub async fn send(
        &self,
        req: reqwest::RequestBuilder,
        creds: Creds,
    ) -> Result<Fetched, FactError> {
        let req = req.build().map_err(|e| {
            FactError::new(format!("cannot build the request: {}", e.without_url()))
        })?;
        let url = req.url().clone();
        self.env
            .guard
            .check_url(&url)
            .map_err(|e| FactError::new(e.0))?;
        if creds == Creds::Attached && !self.conn.credential_origins().contains(&url.origin()) {
            return Err(FactError::new(format!(
                "refusing to send the connection's credentials to {}: it is not the \
                 connection's own base, issuer or token URL",
                url.origin().ascii_serialization()
            )));
        }
        let shown = format!("{}{}", url.origin().ascii_serialization(), url.path());
        let mut resp = self
            .env
            .http
            .execute(req)
            .await
            .map_err(|e| FactError::new(describe_error(&shown, &e)))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_BODY - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if body.len() >= MAX_BODY {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(FactError::new(describe_error(&shown, &e))),
            }
        }
        Ok(Fetched {
            status,
            headers,
            body,
        })
    }
}

/// A reqwest error in words, without the URL's query (which could carry a token) and with the
/// underlying cause (the guard's refusal, a TLS error, a timeout).
pub fn describe_error(shown_url: &str, e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "failed reading the response"
    } else {
        "failed"
    };
    let mut causes = Vec::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        let text = s.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        src = s.source();
    }
    if causes.is_empty() {
        format!("request to {shown_url} {kind}")
    } else {
        format!("request to {shown_url} {kind}: {}", causes.join(": "))
    }
}

/// Seconds to wait from a `Retry-After` value (delta seconds or an HTTP date).
pub fn retry_after_seconds(value: &str, now: jiff::Timestamp) -> Option<u64> {
    let v = value.trim();
    if let Ok(n) = v.parse::<u64>() {
        return Some(n);
    }
    let t = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    Some(t.duration_since(now).as_secs().max(0) as u64)
}
