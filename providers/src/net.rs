//! Network probes of the connection's base URL, layer by layer: does the host resolve
//! (`net.dns`), accept a TCP connection (`net.tcp`), present a certificate a client would accept
//! (`net.tls`), and answer HTTP (`net.http`).
//!
//! A broken target is the answer, not a probe failure: NXDOMAIN, a refused connection, a failed
//! handshake or a bad certificate come back as a fact describing it, so checks can tell "the
//! server's certificate expired" from "we could not look". `Err` is kept for "could not probe":
//! no base URL, the SSRF guard refused the target, an internal error.
//!
//! None of these probes sends credentials, and every text they return is one plain line.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use url::Url;
use whyfail_engine::FactError;
use x509_parser::extensions::GeneralName;

use crate::conn::Conn;
use crate::guard::classify;
use crate::probe::{Creds, Ctx, Probe, ProbeResult};

/// The probes of this module.
pub fn probes() -> Vec<Probe> {
    vec![
        Probe {
            name: "net.dns",
            cost: 1,
            mutating: false,
            calls_api: false,
            run: |cx| Box::pin(dns(cx)),
        },
        Probe {
            name: "net.tcp",
            cost: 2,
            mutating: false,
            calls_api: false,
            run: |cx| Box::pin(tcp(cx)),
        },
        Probe {
            name: "net.tls",
            cost: 3,
            mutating: false,
            calls_api: false,
            run: |cx| Box::pin(tls(cx)),
        },
        Probe {
            name: "net.http",
            cost: 4,
            mutating: false,
            calls_api: false,
            run: |cx| Box::pin(http(cx)),
        },
    ]
}

/// Where the probes go, taken from the base URL.
struct Target {
    url: Url,
    /// Without IPv6 brackets, as resolvers and certificate names spell it.
    host: String,
    /// Set when the URL names an address rather than a host name.
    ip: Option<IpAddr>,
    port: u16,
}

fn target(conn: &Conn) -> Result<Target, FactError> {
    let url = conn
        .base_url
        .clone()
        .ok_or_else(|| FactError::new("the connection has no base_url to probe"))?;
    let (host, ip) = match url.host() {
        Some(url::Host::Domain(d)) => (d.trim_end_matches('.').to_ascii_lowercase(), None),
        Some(url::Host::Ipv4(v4)) => (v4.to_string(), Some(IpAddr::V4(v4))),
        Some(url::Host::Ipv6(v6)) => (v6.to_string(), Some(IpAddr::V6(v6))),
        None => return Err(FactError::new("the connection's base_url has no host")),
    };
    let port = url.port_or_known_default().ok_or_else(|| {
        FactError::new(format!(
            "cannot tell which port to probe: the base_url's scheme `{}` has no default port",
            url.scheme()
        ))
    })?;
    Ok(Target {
        url,
        host,
        ip,
        port,
    })
}

/// When a probe stops waiting on the target. A little under the caller's own timeout, so a
/// silent server is reported as a fact ("timed out") instead of the caller cutting us off and
/// the answer being lost.
fn deadline(cx: &Ctx) -> Instant {
    Instant::now() + cx.env.probe_timeout.mul_f64(0.9)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Text that came from the network (error messages, certificate names) can hold anything; a
/// fact is one plain line.
fn one_line(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------
// net.dns

async fn dns(cx: Arc<Ctx>) -> ProbeResult {
    let t = target(&cx.conn)?;
    let (addresses, error) = match t.ip {
        Some(ip) => (vec![ip], None),
        None => {
            // Resolving is harmless, so unlike the other probes this one does not ask the guard:
            // "resolves to a private address" is itself a useful fact.
            match tokio::time::timeout_at(
                deadline(&cx),
                tokio::net::lookup_host((t.host.as_str(), 0)),
            )
            .await
            {
                Ok(Ok(addrs)) => {
                    let mut ips: Vec<IpAddr> = Vec::new();
                    // getaddrinfo repeats an address once per socket type.
                    for a in addrs {
                        if !ips.contains(&a.ip()) {
                            ips.push(a.ip());
                        }
                    }
                    let error = ips
                        .is_empty()
                        .then(|| "the name has no addresses".to_string());
                    (ips, error)
                }
                Ok(Err(e)) => (Vec::new(), Some(one_line(&e.to_string()))),
                Err(_) => (
                    Vec::new(),
                    Some(format!(
                        "resolving timed out after {} ms",
                        ms(cx.env.probe_timeout.mul_f64(0.9))
                    )),
                ),
            }
        }
    };
    let public = !addresses.is_empty() && addresses.iter().all(|ip| classify(*ip).is_none());
    Ok(json!({
        "host": t.host,
        "resolved": !addresses.is_empty(),
        "addresses": addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>(),
        "public": public,
        "error": error,
    }))
}

// ---------------------------------------------------------------------------------------------
// Guarded resolution and connecting, shared by net.tcp and net.tls

/// The guard's addresses for the target. The outer `Err` is the guard refusing (we may not
/// probe this target); the inner one is the target's own failure to resolve.
async fn guarded_addrs(
    cx: &Ctx,
    t: &Target,
    until: Instant,
) -> Result<Result<Vec<SocketAddr>, String>, FactError> {
    match tokio::time::timeout_at(until, cx.env.guard.resolve(&t.host, t.port)).await {
        Ok(Ok(addrs)) => Ok(Ok(addrs)),
        // `Refused` covers both a policy refusal and a failed lookup; only its wording tells
        // them apart, and only the refusal means we may not look.
        Ok(Err(r)) if r.0.starts_with("refusing to probe") => Err(FactError::new(one_line(&r.0))),
        Ok(Err(r)) => Ok(Err(one_line(&r.0))),
        Err(_) => Ok(Err(format!("resolving `{}` timed out", t.host))),
    }
}

/// One failed connection attempt.
#[derive(Debug)]
struct Attempt {
    addr: SocketAddr,
    /// Stable machine word: refused, timeout, unreachable, other.
    failure: &'static str,
    error: String,
}

fn io_failure(e: &std::io::Error) -> (&'static str, String) {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => ("refused", "connection refused".into()),
        K::TimedOut => ("timeout", "timed out".into()),
        K::HostUnreachable => ("unreachable", "host unreachable".into()),
        K::NetworkUnreachable => ("unreachable", "network unreachable".into()),
        // What connecting to an address family the machine has no route for looks like.
        K::AddrNotAvailable => ("unreachable", "address not available".into()),
        _ => ("other", one_line(&e.to_string())),
    }
}

/// Connects to the checked addresses in order. Each attempt gets an equal share of the time
/// left, so one address that swallows packets (an unrouted IPv6 address listed first) cannot
/// use up the whole budget before the working one is tried.
async fn connect(
    addrs: &[SocketAddr],
    until: Instant,
) -> Result<(TcpStream, SocketAddr), Vec<Attempt>> {
    let mut failed = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let left = until.saturating_duration_since(Instant::now());
        let share = left / u32::try_from(addrs.len() - i).unwrap_or(u32::MAX);
        match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Ok((s, *addr)),
            Ok(Err(e)) => {
                let (failure, error) = io_failure(&e);
                failed.push(Attempt {
                    addr: *addr,
                    failure,
                    error,
                });
            }
            Err(_) => failed.push(Attempt {
                addr: *addr,
                failure: "timeout",
                error: format!("timed out after {} ms", ms(share)),
            }),
        }
    }
    Err(failed)
}

/// The failure word and text for a list of failed attempts. The word is the last attempt's:
/// mixed failures are rare, and the text lists every address when they differ.
fn summarise(failed: &[Attempt]) -> (&'static str, String) {
    let Some(last) = failed.last() else {
        return ("other", "no address to connect to".into());
    };
    if failed.iter().all(|a| a.error == last.error) {
        let text = if failed.len() > 1 {
            format!("{} ({} addresses tried)", last.error, failed.len())
        } else {
            last.error.clone()
        };
        return (last.failure, text);
    }
    let text = failed
        .iter()
        .map(|a| format!("{}: {}", a.addr, a.error))
        .collect::<Vec<_>>()
        .join("; ");
    (last.failure, text)
}

// ---------------------------------------------------------------------------------------------
// net.tcp

async fn tcp(cx: Arc<Ctx>) -> ProbeResult {
    let t = target(&cx.conn)?;
    let until = deadline(&cx);
    let start = Instant::now();
    let fact =
        |connected: bool, address: Option<String>, failure: Option<&str>, error: Option<String>| {
            json!({
                "host": t.host,
                "port": t.port,
                "connected": connected,
                "address": address,
                "error": error,
                "failure": failure,
                "elapsed_ms": ms(start.elapsed()),
            })
        };
    let addrs = match guarded_addrs(&cx, &t, until).await? {
        Ok(a) => a,
        Err(e) => return Ok(fact(false, None, Some("dns"), Some(e))),
    };
    Ok(match connect(&addrs, until).await {
        Ok((_stream, addr)) => fact(true, Some(addr.to_string()), None, None),
        Err(failed) => {
            let (failure, error) = summarise(&failed);
            fact(false, None, Some(failure), Some(error))
        }
    })
}

// ---------------------------------------------------------------------------------------------
// net.tls

/// Accepts any certificate and keeps the chain the server presented, so the probe can report on
/// a bad certificate instead of only "handshake failed". The handshake's own signatures are
/// still checked: the server must hold the key of the certificate we report on.
#[derive(Debug)]
struct Recorder {
    provider: Arc<CryptoProvider>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl Recorder {
    fn chain(&self) -> Vec<CertificateDer<'static>> {
        match self.chain.lock() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        match self.chain.lock() {
            Ok(mut c) => *c = chain,
            Err(poisoned) => *poisoned.into_inner() = chain,
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> FactError {
    FactError::new(one_line(&format!("{what}: {e}")))
}

async fn tls(cx: Arc<Ctx>) -> ProbeResult {
    let t = target(&cx.conn)?;
    if matches!(t.url.scheme(), "http" | "ws") {
        return Err(FactError::new(format!(
            "the base_url is plain `{}`: there is no TLS to probe",
            t.url.scheme()
        )));
    }
    let until = deadline(&cx);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_name = ServerName::try_from(t.host.clone())
        .map_err(|e| internal(&format!("`{}` is not a usable TLS server name", t.host), e))?;

    let failed = |verdict: &str, error: String| {
        let mut v = cert_fields(None);
        v["host"] = json!(t.host);
        v["port"] = json!(t.port);
        v["handshake"] = json!("failed");
        v["verdict"] = json!(verdict);
        v["error"] = json!(error);
        v
    };

    let addrs = match guarded_addrs(&cx, &t, until).await? {
        Ok(a) => a,
        Err(e) => return Ok(failed("unreachable", e)),
    };
    let (stream, _addr) = match connect(&addrs, until).await {
        Ok(s) => s,
        Err(attempts) => {
            let (_, error) = summarise(&attempts);
            return Ok(failed("unreachable", format!("cannot connect: {error}")));
        }
    };

    let recorder = Arc::new(Recorder {
        provider: provider.clone(),
        chain: Mutex::new(Vec::new()),
    });
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| internal("cannot set up TLS", e))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let handshake =
        tokio::time::timeout_at(until, connector.connect(server_name.clone(), stream)).await;
    let (protocol, handshake_error) = match handshake {
        Ok(Ok(s)) => {
            let protocol = s.get_ref().1.protocol_version().map(|v| match v {
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
                other => format!("{other:?}"),
            });
            (protocol, None)
        }
        Ok(Err(e)) => (
            None,
            Some(format!(
                "TLS handshake failed: {}",
                one_line(&e.to_string())
            )),
        ),
        Err(_) => (
            None,
            Some(format!(
                "the server accepted the connection but did not complete a TLS handshake \
                 within {} ms",
                ms(cx.env.probe_timeout.mul_f64(0.9))
            )),
        ),
    };

    // A handshake can fail after the certificate arrived (the server wants a client
    // certificate, say); what we learnt about the certificate is still worth reporting.
    let chain = recorder.chain();
    let mut v = if chain.is_empty() {
        cert_fields(None)
    } else {
        let roots = root_store(&cx.env.extra_roots);
        let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| internal("cannot set up certificate verification", e))?;
        cert_fields(Some(inspect(
            &chain,
            &t,
            &server_name,
            &verifier,
            &roots,
            &provider,
        )))
    };
    v["host"] = json!(t.host);
    v["port"] = json!(t.port);
    v["protocol"] = json!(protocol);
    match handshake_error {
        Some(e) => {
            v["handshake"] = json!("failed");
            v["verdict"] = json!("handshake_failed");
            v["error"] = json!(e);
        }
        None => {
            v["handshake"] = json!("ok");
            if chain.is_empty() {
                // Not reachable with a certificate-based handshake; kept so the shape holds.
                v["verdict"] = json!("untrusted");
                v["error"] = json!("the server presented no certificate");
            }
        }
    }
    Ok(v)
}

/// The roots a normal client would trust: the web PKI plus the configured extra roots.
fn root_store(extra_roots: &[CertificateDer<'static>]) -> Arc<RootCertStore> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // An unparsable extra root is a configuration slip; the other roots still count.
    roots.add_parsable_certificates(extra_roots.iter().cloned());
    Arc::new(roots)
}

/// What the presented chain tells.
struct CertFacts {
    verdict: &'static str,
    error: Option<String>,
    not_before: Option<String>,
    not_after: Option<String>,
    expired: Option<bool>,
    days_left: Option<i64>,
    issuer: Option<String>,
    subject: Option<String>,
    names: Vec<String>,
    covers_host: bool,
    self_signed: Option<bool>,
    trusted: bool,
}

fn cert_fields(f: Option<CertFacts>) -> Value {
    match f {
        None => json!({
            "host": null, "port": null, "handshake": null, "verdict": null, "protocol": null,
            "not_before": null, "not_after": null, "expired": null, "days_left": null,
            "issuer": null, "subject": null, "names": null, "covers_host": null,
            "self_signed": null, "trusted": null, "error": null,
        }),
        Some(f) => json!({
            "host": null, "port": null, "handshake": null, "protocol": null,
            "verdict": f.verdict,
            "not_before": f.not_before,
            "not_after": f.not_after,
            "expired": f.expired,
            "days_left": f.days_left,
            "issuer": f.issuer,
            "subject": f.subject,
            "names": f.names,
            "covers_host": f.covers_host,
            "self_signed": f.self_signed,
            "trusted": f.trusted,
            "error": f.error,
        }),
    }
}

/// The verdict word for a verifier error.
fn verdict_of(e: &rustls::Error) -> &'static str {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "not_yet_valid",
            C::NotValidForName | C::NotValidForNameContext { .. } => "hostname_mismatch",
            C::Revoked => "revoked",
            // Unknown issuer, bad signature, wrong purpose, bad encoding and the rest: no client
            // will accept the chain whatever the time or name.
            _ => "untrusted",
        },
        _ => "untrusted",
    }
}

fn inspect(
    chain: &[CertificateDer<'static>],
    t: &Target,
    server_name: &ServerName<'static>,
    verifier: &WebPkiServerVerifier,
    roots: &RootCertStore,
    provider: &CryptoProvider,
) -> CertFacts {
    let now = jiff::Timestamp::now().as_second();
    let full =
        verifier.verify_server_cert(&chain[0], &chain[1..], server_name, &[], UnixTime::now());
    let webpki_verdict = full.as_ref().map_or_else(verdict_of, |_| "valid");
    let webpki_error = full.as_ref().err().map(|e| one_line(&e.to_string()));

    let leaf = match x509_parser::parse_x509_certificate(&chain[0]) {
        Ok((_, leaf)) => leaf,
        Err(e) => {
            return CertFacts {
                verdict: "untrusted",
                error: Some(one_line(&format!(
                    "the server's certificate cannot be parsed: {e}"
                ))),
                not_before: None,
                not_after: None,
                expired: None,
                days_left: None,
                issuer: None,
                subject: None,
                names: Vec::new(),
                covers_host: false,
                self_signed: None,
                trusted: false,
            };
        }
    };
    let nb = leaf.validity().not_before.timestamp();
    let na = leaf.validity().not_after.timestamp();
    let rfc3339 = |s: i64| jiff::Timestamp::from_second(s).ok().map(|t| t.to_string());
    let expired = now > na;
    let not_yet_valid = now < nb;

    let mut dns_names = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns_names.push(one_line(d)),
                GeneralName::IPAddress(b) => {
                    if let Some(ip) = ip_from_bytes(b) {
                        ips.push(ip);
                    }
                }
                _ => {}
            }
        }
    }
    let covers_host = match t.ip {
        Some(ip) => ips.contains(&ip),
        None => dns_names.iter().any(|n| name_covers(n, &t.host)),
    };
    let names = dns_names
        .into_iter()
        .chain(ips.iter().map(IpAddr::to_string))
        .collect();

    let trusted = chain_trusted(chain, &leaf, now, roots, provider);

    // The verdict names one problem, most fundamental first: a chain nobody trusts is the story
    // even if it has also expired; the flags report every problem individually. When the flags
    // are clean but the verifier still objects (an expired intermediate, say), its word stands.
    let verdict = if !trusted {
        "untrusted"
    } else if expired {
        "expired"
    } else if not_yet_valid {
        "not_yet_valid"
    } else if !covers_host {
        "hostname_mismatch"
    } else {
        webpki_verdict
    };
    let ours = match verdict {
        "untrusted" => Some("the certificate chain does not lead to a trusted root".to_string()),
        "expired" => Some(format!(
            "the certificate expired at {}",
            rfc3339(na).unwrap_or_default()
        )),
        "not_yet_valid" => Some(format!(
            "the certificate is not valid before {}",
            rfc3339(nb).unwrap_or_default()
        )),
        "hostname_mismatch" => Some(format!("the certificate does not name `{}`", t.host)),
        _ => None,
    };
    // The verifier's own words when they tell the same story; when it stopped at a different
    // problem (webpki looks at dates before issuers), ours first and then what a client sees.
    let error = match (webpki_error, ours) {
        (Some(e), Some(o)) if verdict != webpki_verdict => {
            Some(format!("{o}; a client would report: {e}"))
        }
        (Some(e), _) => Some(format!("a client would reject the certificate: {e}")),
        (None, o) => o,
    };
    CertFacts {
        verdict,
        error,
        not_before: rfc3339(nb),
        not_after: rfc3339(na),
        expired: Some(expired),
        days_left: Some((na - now).div_euclid(86_400)),
        issuer: Some(one_line(&leaf.issuer().to_string())),
        subject: Some(one_line(&leaf.subject().to_string())),
        names,
        covers_host,
        self_signed: Some(leaf.issuer().as_raw() == leaf.subject().as_raw()),
        trusted,
    }
}

/// Whether the chain verifies to a root when time and name are set aside.
///
/// webpki checks each certificate's validity period before it looks for the issuer, so at the
/// real time an expired leaf reports "expired" and hides whether anyone trusts it. We therefore
/// ask the chain-only check (no name involved) at a few moments: now, the middle of the leaf's
/// validity, and the middle of the window every presented certificate shares. The chain is
/// trusted if it verifies at any of them. This never calls a chain trusted that does not verify
/// at some moment; it can miss only chains whose certificates never overlap in time, which no
/// client would accept either.
fn chain_trusted(
    chain: &[CertificateDer<'static>],
    leaf: &x509_parser::certificate::X509Certificate<'_>,
    now: i64,
    roots: &RootCertStore,
    provider: &CryptoProvider,
) -> bool {
    let Ok(parsed) = ParsedCertificate::try_from(&chain[0]) else {
        return false;
    };
    let mid = |a: i64, b: i64| a + (b - a) / 2;
    let mut moments = vec![
        now,
        mid(
            leaf.validity().not_before.timestamp(),
            leaf.validity().not_after.timestamp(),
        ),
    ];
    let windows: Vec<(i64, i64)> = chain
        .iter()
        .filter_map(|c| x509_parser::parse_x509_certificate(c).ok())
        .map(|(_, c)| {
            (
                c.validity().not_before.timestamp(),
                c.validity().not_after.timestamp(),
            )
        })
        .collect();
    let start = windows.iter().map(|w| w.0).max();
    let end = windows.iter().map(|w| w.1).min();
    if let (Some(s), Some(e)) = (start, end)
        && s <= e
    {
        moments.push(mid(s, e));
    }
    moments.dedup();
    moments.into_iter().any(|m| {
        let at = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(m).unwrap_or(0)));
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            roots,
            &chain[1..],
            at,
            provider.signature_verification_algorithms.all,
        )
        .is_ok()
    })
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b)
            .ok()
            .map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        16 => <[u8; 16]>::try_from(b)
            .ok()
            .map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        _ => None,
    }
}

/// Whether a certificate DNS name covers `host`, the way clients match: case-insensitive, and a
/// wildcard stands for exactly one whole left-most label (`*.example.com` covers
/// `a.example.com`, not `example.com` nor `a.b.example.com`).
fn name_covers(name: &str, host: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if name == host {
        return true;
    }
    match name.strip_prefix("*.") {
        Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// net.http

/// A stable word for why a request failed, read from the error text (`Ctx::send` hands back
/// words, not the reqwest error).
fn http_failure(text: &str) -> &'static str {
    let t = text.to_ascii_lowercase();
    if t.contains("dns error")
        || t.contains("cannot resolve")
        || t.contains("failed to lookup address")
        || t.contains("has no addresses")
    {
        "dns"
    } else if t.contains("timed out") {
        "timeout"
    } else if t.contains("connection refused") {
        "refused"
    } else if t.contains("certificate")
        || t.contains("tls")
        || t.contains("handshake")
        || t.contains("unknownissuer")
        || t.contains("ssl")
    {
        "tls"
    } else {
        "other"
    }
}

async fn http(cx: Arc<Ctx>) -> ProbeResult {
    let t = target(&cx.conn)?;
    let mut url = t.url.clone();
    // Credentials must not ride along in the URL either: user info becomes Basic auth, and a
    // query may carry an API key. Reachability is about the origin and path.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    let shown = format!("{}{}", url.origin().ascii_serialization(), url.path());
    let start = Instant::now();
    let until = deadline(&cx);
    let sent = tokio::time::timeout_at(until, cx.send(cx.env.http.get(url), Creds::None)).await;
    let elapsed = ms(start.elapsed());
    let (status, redirect, error) = match sent {
        Ok(Ok(f)) => (
            Some(f.status),
            f.redirect().map(|l| one_line(&cx.scrub(l))),
            None,
        ),
        Ok(Err(e)) => {
            // `Ctx::send` words every failure of the request itself as "request to ..."; anything
            // else (the guard refusing the URL, a request we could not build) means we could not
            // probe. The guard's refusal can also arrive wrapped in a connect error.
            if !e.reason.starts_with("request to ") || e.reason.contains("refusing to probe") {
                return Err(FactError::new(one_line(&cx.scrub(&e.reason))));
            }
            (None, None, Some(one_line(&cx.scrub(&e.reason))))
        }
        Err(_) => (
            None,
            None,
            Some(format!("request to {shown} timed out after {elapsed} ms")),
        ),
    };
    let failure = error.as_deref().map(http_failure);
    Ok(json!({
        "url": shown,
        "reachable": status.is_some(),
        "status": status,
        "redirect": redirect,
        "elapsed_ms": elapsed,
        "error": error,
        "failure": failure,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_covers("*.Example.com", "api.example.COM"));
        assert!(name_covers("example.com.", "example.com"));
        assert!(!name_covers("*.example.com", "example.com"));
        assert!(!name_covers("*.example.com", "a.b.example.com"));
        assert!(!name_covers("*.com", "example.org"));
        assert!(!name_covers("*", "localhost"));
        assert!(!name_covers("a*.example.com", "ab.example.com"));
    }

    #[test]
    fn failures_get_stable_words() {
        assert_eq!(
            http_failure("request to http://x/ could not connect: dns error: cannot resolve `x`"),
            "dns"
        );
        assert_eq!(
            http_failure(
                "request to http://x/ could not connect: Connection refused (os error 111)"
            ),
            "refused"
        );
        assert_eq!(
            http_failure(
                "request to https://x/ could not connect: invalid peer certificate: UnknownIssuer"
            ),
            "tls"
        );
        assert_eq!(http_failure("request to http://x/ timed out"), "timeout");
        assert_eq!(http_failure("request to http://x/ failed"), "other");
    }

    #[tokio::test]
    async fn connect_moves_on_to_the_next_address() {
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        let until = Instant::now() + Duration::from_secs(2);
        let (_s, addr) = connect(&[dead_addr, live_addr], until).await.unwrap();
        assert_eq!(addr, live_addr);

        let failed = connect(&[dead_addr, dead_addr], until).await.err().unwrap();
        assert_eq!(
            summarise(&failed),
            (
                "refused",
                "connection refused (2 addresses tried)".to_string()
            )
        );
    }

    #[test]
    fn text_is_one_line() {
        assert_eq!(one_line("a\nb\r\n  c\t"), "a b c");
    }
}
