//! The network probes against loopback servers: TLS servers with certificates made here (a
//! private CA passed as an extra root), closed ports, a server that never speaks TLS, and
//! wiremock for HTTP. Nothing leaves the machine.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use whyfail_engine::FactError;
use whyfail_providers::conn::Conn;
use whyfail_providers::guard::Guard;
use whyfail_providers::net;
use whyfail_providers::probe::{Ctx, Env};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn ctx(
    base: &str,
    guard: Guard,
    timeout: Duration,
    roots: Vec<CertificateDer<'static>>,
) -> Arc<Ctx> {
    Arc::new(Ctx {
        conn: Conn {
            base_url: Some(base.parse().expect("a valid base URL")),
            ..Default::default()
        },
        env: Arc::new(Env::new(guard, timeout, roots)),
    })
}

fn local() -> Guard {
    Guard::new(["127.0.0.1", "localhost"])
}

async fn run(name: &str, cx: Arc<Ctx>) -> Result<Value, FactError> {
    let probe = net::probes()
        .into_iter()
        .find(|p| p.name == name)
        .expect("no such probe");
    // A hang is a failure of the test, not a blocked test run.
    tokio::time::timeout(Duration::from_secs(10), (probe.run)(cx))
        .await
        .expect("the probe hung")
}

/// A private CA and the leaves the TLS tests serve.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "whyfail test CA");
        Pki {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
                .expect("CA certificate"),
        }
    }

    fn root(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    fn leaf_params(names: &[&str], cn: &str) -> CertificateParams {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
    }

    /// A leaf signed by the CA; the chain sent is leaf + CA, as many servers do.
    fn leaf(
        &self,
        params: CertificateParams,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf certificate");
        (
            vec![cert.der().clone(), self.root()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

fn self_signed(names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate().expect("leaf key");
    let cert = Pki::leaf_params(names, "self-signed leaf")
        .self_signed(&key)
        .expect("self-signed certificate");
    (
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

/// A TLS server on 127.0.0.1 that completes handshakes and hangs up; returns its port.
async fn tls_server((chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)) -> u16 {
    let config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server certificate");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(sock).await;
            });
        }
    });
    port
}

async fn tls_probe(port: u16, roots: Vec<CertificateDer<'static>>) -> Value {
    let cx = ctx(
        &format!("https://localhost:{port}/api"),
        local(),
        Duration::from_secs(2),
        roots,
    );
    run("net.tls", cx).await.expect("net.tls answers")
}

#[tokio::test]
async fn tls_valid_certificate() {
    let pki = Pki::new();
    let port =
        tls_server(pki.leaf(Pki::leaf_params(&["localhost", "127.0.0.1"], "localhost"))).await;
    let v = tls_probe(port, vec![pki.root()]).await;
    assert_eq!(v["handshake"], "ok", "{v}");
    assert_eq!(v["verdict"], "valid", "{v}");
    assert_eq!(v["host"], "localhost");
    assert_eq!(v["port"], port);
    assert_eq!(v["protocol"], "TLSv1.3");
    assert_eq!(v["expired"], false);
    assert!(v["days_left"].as_i64().unwrap() > 365, "{v}");
    assert_eq!(v["covers_host"], true);
    assert_eq!(v["trusted"], true);
    assert_eq!(v["self_signed"], false);
    assert_eq!(v["names"], serde_json::json!(["localhost", "127.0.0.1"]));
    assert!(
        v["issuer"].as_str().unwrap().contains("whyfail test CA"),
        "{v}"
    );
    assert!(v["subject"].as_str().unwrap().contains("localhost"), "{v}");
    assert!(
        v["not_before"].as_str().unwrap().starts_with("1975-01-01T"),
        "{v}"
    );
    assert!(v["error"].is_null(), "{v}");

    // The same server by address: the name to check is then an IP, matched against IP SANs.
    let cx = ctx(
        &format!("https://127.0.0.1:{port}"),
        local(),
        Duration::from_secs(2),
        vec![pki.root()],
    );
    let v = run("net.tls", cx).await.unwrap();
    assert_eq!(v["verdict"], "valid", "{v}");
    assert_eq!(v["covers_host"], true);
}

#[tokio::test]
async fn tls_expired_certificate() {
    let pki = Pki::new();
    let mut params = Pki::leaf_params(&["localhost"], "localhost");
    params.not_before = date_time_ymd(2019, 1, 1);
    params.not_after = date_time_ymd(2020, 1, 1);
    let port = tls_server(pki.leaf(params)).await;
    let v = tls_probe(port, vec![pki.root()]).await;
    assert_eq!(v["handshake"], "ok", "{v}");
    assert_eq!(v["verdict"], "expired", "{v}");
    assert_eq!(v["expired"], true);
    assert!(v["days_left"].as_i64().unwrap() < 0, "{v}");
    assert_eq!(v["not_after"], "2020-01-01T00:00:00Z");
    // Expiry does not hide who issued it: the chain still verifies to the test CA.
    assert_eq!(v["trusted"], true, "{v}");
    assert_eq!(v["covers_host"], true);
    assert!(v["error"].as_str().unwrap().contains("expired"), "{v}");
}

#[tokio::test]
async fn tls_hostname_mismatch() {
    let pki = Pki::new();
    let port = tls_server(pki.leaf(Pki::leaf_params(&["other.example"], "other.example"))).await;
    let v = tls_probe(port, vec![pki.root()]).await;
    assert_eq!(v["verdict"], "hostname_mismatch", "{v}");
    assert_eq!(v["covers_host"], false);
    assert_eq!(v["trusted"], true);
    assert_eq!(v["expired"], false);
    assert_eq!(v["names"], serde_json::json!(["other.example"]));
    assert!(v["error"].as_str().is_some(), "{v}");
}

#[tokio::test]
async fn tls_untrusted_self_signed() {
    let pki = Pki::new();
    let port = tls_server(self_signed(&["localhost"])).await;
    let v = tls_probe(port, vec![pki.root()]).await;
    assert_eq!(v["handshake"], "ok", "{v}");
    assert_eq!(v["verdict"], "untrusted", "{v}");
    assert_eq!(v["trusted"], false);
    assert_eq!(v["self_signed"], true);
    assert_eq!(v["covers_host"], true);
    assert_eq!(v["expired"], false);
    assert!(
        v["issuer"].as_str().unwrap().contains("self-signed leaf"),
        "{v}"
    );
}

#[tokio::test]
async fn tls_untrusted_wins_over_expired() {
    let mut params = Pki::leaf_params(&["localhost"], "old self-signed");
    params.not_before = date_time_ymd(2019, 1, 1);
    params.not_after = date_time_ymd(2020, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let port = tls_server((
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    ))
    .await;
    let v = tls_probe(port, Vec::new()).await;
    assert_eq!(v["verdict"], "untrusted", "{v}");
    assert_eq!(v["expired"], true);
    assert_eq!(v["trusted"], false);
    // The text explains the verdict even though webpki stops at the date.
    let e = v["error"].as_str().unwrap();
    assert!(
        e.starts_with("the certificate chain does not lead to a trusted root"),
        "{e}"
    );
    assert!(e.contains("expired"), "{e}");
}

#[tokio::test]
async fn tls_on_a_plain_http_url_is_an_error() {
    let cx = ctx(
        "http://localhost:1/",
        local(),
        Duration::from_secs(2),
        Vec::new(),
    );
    let e = run("net.tls", cx).await.unwrap_err();
    assert!(e.reason.contains("no TLS to probe"), "{e}");
}

#[tokio::test]
async fn tls_silent_server_times_out_within_the_probe_timeout() {
    // Accepts TCP, reads, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    let cx = ctx(
        &format!("https://localhost:{port}"),
        local(),
        Duration::from_millis(500),
        Vec::new(),
    );
    let probe = net::probes()
        .into_iter()
        .find(|p| p.name == "net.tls")
        .unwrap();
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(3), (probe.run)(cx))
        .await
        .expect("net.tls hung past the probe timeout");
    // The probe stops waiting a little before its 500 ms budget; the slack is for a busy machine.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let v = r.unwrap();
    assert_eq!(v["handshake"], "failed", "{v}");
    assert_eq!(v["verdict"], "handshake_failed", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("did not complete a TLS handshake within"),
        "{v}"
    );
    assert!(v["trusted"].is_null());
}

#[tokio::test]
async fn tls_against_plain_http_fails_the_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await;
            let _ = sock
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let v = tls_probe(port, Vec::new()).await;
    assert_eq!(v["handshake"], "failed", "{v}");
    assert_eq!(v["verdict"], "handshake_failed", "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.starts_with("TLS handshake failed"), "{e}");
    assert!(!e.contains('\n'));
}

#[tokio::test]
async fn tls_to_a_closed_port_is_unreachable() {
    let port = closed_port().await;
    let v = tls_probe(port, Vec::new()).await;
    assert_eq!(v["handshake"], "failed", "{v}");
    assert_eq!(v["verdict"], "unreachable", "{v}");
    assert!(v["error"].as_str().unwrap().contains("refused"), "{v}");
}

async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    port
}

#[tokio::test]
async fn tcp_connects_to_a_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cx = ctx(
        &format!("http://127.0.0.1:{port}"),
        local(),
        Duration::from_secs(2),
        Vec::new(),
    );
    let v = run("net.tcp", cx).await.unwrap();
    assert_eq!(v["connected"], true, "{v}");
    assert_eq!(v["address"], format!("127.0.0.1:{port}"));
    assert!(v["failure"].is_null());
    assert!(v["error"].is_null());
    assert!(v["elapsed_ms"].is_u64());
}

#[tokio::test]
async fn tcp_to_a_closed_port_is_refused() {
    let port = closed_port().await;
    let cx = ctx(
        &format!("http://localhost:{port}"),
        local(),
        Duration::from_secs(2),
        Vec::new(),
    );
    let v = run("net.tcp", cx).await.unwrap();
    assert_eq!(v["connected"], false, "{v}");
    assert_eq!(v["failure"], "refused", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("connection refused"),
        "{v}"
    );
    assert!(v["address"].is_null());
    assert_eq!(v["port"], port);
}

#[tokio::test]
async fn tcp_refuses_private_targets_without_allow_host() {
    let port = closed_port().await;
    let cx = ctx(
        &format!("http://127.0.0.1:{port}"),
        Guard::new(Vec::<String>::new()),
        Duration::from_secs(2),
        Vec::new(),
    );
    let e = run("net.tcp", cx).await.unwrap_err();
    assert!(e.reason.contains("loopback"), "{e}");
    let cx = ctx(
        &format!("https://localhost:{port}"),
        Guard::new(Vec::<String>::new()),
        Duration::from_secs(2),
        Vec::new(),
    );
    let e = run("net.tls", cx).await.unwrap_err();
    assert!(e.reason.contains("loopback"), "{e}");
}

#[tokio::test]
async fn no_base_url_is_an_error() {
    let cx = Arc::new(Ctx {
        conn: Conn::default(),
        env: Arc::new(Env::new(local(), Duration::from_secs(1), Vec::new())),
    });
    for p in net::probes() {
        assert!(!p.mutating && !p.calls_api, "{}", p.name);
        let e = (p.run)(cx.clone()).await.unwrap_err();
        assert!(e.reason.contains("no base_url"), "{}: {e}", p.name);
    }
}

#[tokio::test]
async fn dns_reports_localhost_as_not_public() {
    let cx = ctx(
        "https://localhost:1/",
        local(),
        Duration::from_secs(2),
        Vec::new(),
    );
    let v = run("net.dns", cx).await.unwrap();
    assert_eq!(v["host"], "localhost");
    assert_eq!(v["resolved"], true, "{v}");
    assert_eq!(v["public"], false);
    let addrs: Vec<&str> = v["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        addrs.contains(&"127.0.0.1") || addrs.contains(&"::1"),
        "{v}"
    );
    assert!(v["error"].is_null());

    // Resolving is harmless, so a guard without allow-hosts does not stop it.
    let cx = ctx(
        "https://localhost/",
        Guard::new(Vec::<String>::new()),
        Duration::from_secs(2),
        Vec::new(),
    );
    assert_eq!(run("net.dns", cx).await.unwrap()["resolved"], true);
}

#[tokio::test]
async fn dns_reports_a_name_that_does_not_resolve() {
    let cx = ctx(
        "https://nonexistent.invalid/",
        local(),
        Duration::from_secs(2),
        Vec::new(),
    );
    let v = run("net.dns", cx).await.unwrap();
    assert_eq!(v["resolved"], false, "{v}");
    assert_eq!(v["public"], false);
    assert_eq!(v["addresses"], serde_json::json!([]));
    assert!(v["error"].as_str().is_some(), "{v}");
}

#[tokio::test]
async fn http_reports_the_status() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let cx = ctx(
        &format!("{}/api/v3?token=abc", server.uri()),
        local(),
        Duration::from_secs(2),
        Vec::new(),
    );
    let v = run("net.http", cx).await.unwrap();
    assert_eq!(v["reachable"], true, "{v}");
    assert_eq!(v["status"], 503);
    assert_eq!(v["url"], format!("{}/api/v3", server.uri()));
    assert!(v["redirect"].is_null());
    assert!(v["failure"].is_null());
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    // The query is not sent (it could carry a key), nor any credential.
    assert!(received[0].url.query().is_none());
    assert!(!received[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn http_reports_a_redirect_without_following_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "http://169.254.169.254/"),
        )
        .mount(&server)
        .await;
    let cx = ctx(&server.uri(), local(), Duration::from_secs(2), Vec::new());
    let v = run("net.http", cx).await.unwrap();
    assert_eq!(v["reachable"], true, "{v}");
    assert_eq!(v["status"], 302);
    assert_eq!(v["redirect"], "http://169.254.169.254/");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn http_classifies_target_failures() {
    let port = closed_port().await;
    let cx = ctx(
        &format!("http://127.0.0.1:{port}/"),
        local(),
        Duration::from_secs(2),
        Vec::new(),
    );
    let v = run("net.http", cx).await.unwrap();
    assert_eq!(v["reachable"], false, "{v}");
    assert_eq!(v["failure"], "refused", "{v}");
    assert!(v["status"].is_null());

    // The shared client uses the platform's roots, so a private CA's server fails TLS.
    let pki = Pki::new();
    let tls = tls_server(pki.leaf(Pki::leaf_params(&["localhost"], "localhost"))).await;
    let cx = ctx(
        &format!("https://localhost:{tls}/"),
        local(),
        Duration::from_secs(2),
        vec![pki.root()],
    );
    let v = run("net.http", cx).await.unwrap();
    assert_eq!(v["reachable"], false, "{v}");
    assert_eq!(v["failure"], "tls", "{v}");
}

#[tokio::test]
async fn http_to_a_guarded_target_is_an_error() {
    let server = MockServer::start().await;
    let cx = ctx(
        &server.uri(),
        Guard::new(Vec::<String>::new()),
        Duration::from_secs(2),
        Vec::new(),
    );
    let e = run("net.http", cx).await.unwrap_err();
    assert!(e.reason.contains("refusing to probe"), "{e}");
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

/// The whole path the live-state issue asks for: a TLS error that does not say what is wrong,
/// diagnosed with the standard playbooks, is settled by the live TLS probe against local
/// servers with an expired, an untrusted and a wrong-name certificate.
#[test]
fn the_tls_probe_settles_a_vague_tls_error_end_to_end() {
    use whyfail_engine::{Event, Library, Options, diagnose, load};
    use whyfail_providers::{LiveConfig, LiveProvider};

    let mut diags = Vec::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks");
    let (lib, more) = Library::load(&[load::read_sources(&dir, &mut diags)]);
    assert!(diags.is_empty() && more.is_empty(), "{diags:?} {more:?}");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let pki = Pki::new();
    let expired = {
        let mut p = Pki::leaf_params(&["localhost"], "expired leaf");
        p.not_before = rcgen::date_time_ymd(2019, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 1, 1);
        rt.block_on(tls_server(pki.leaf(p)))
    };
    let wrong_name = rt.block_on(tls_server(
        pki.leaf(Pki::leaf_params(&["other.example"], "other leaf")),
    ));
    let untrusted = rt.block_on(tls_server(self_signed(&["localhost"])));

    let live = LiveProvider::new(LiveConfig {
        allow_hosts: vec!["localhost".into(), "127.0.0.1".into()],
        extra_roots: vec![pki.root().to_vec()],
        ..LiveConfig::default()
    })
    .expect("live provider");
    for (port, cause) in [
        (expired, "tls_certificate_expired"),
        (wrong_name, "tls_hostname_mismatch"),
        (untrusted, "tls_untrusted_certificate"),
    ] {
        let event = serde_json::json!({
            "error": {"kind": "tls", "message": "requests.exceptions.SSLError: HTTPSConnectionPool(host='localhost', port=443): Max retries exceeded (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed (_ssl.c:1006)')))"},
            "connection": {"id": format!("tls-{port}"), "provider": "generic", "base_url": format!("https://localhost:{port}/api")}
        });
        let e = Event::parse(&event.to_string()).expect("event");
        let opts = Options {
            provider: Some(&live),
            deadline: Some(Duration::from_secs(3)),
            ..Options::default()
        };
        let res = diagnose(&lib, &e, &opts);
        assert_eq!(
            res.root_causes.first().map(|c| c.id.as_str()),
            Some(cause),
            "{res:#?}"
        );
        assert_eq!(
            res.root_causes[0].confidence,
            whyfail_engine::model::resolution::Confidence::Confirmed
        );
        // Offline, the same event cannot tell which.
        let offline = diagnose(&lib, &e, &Options::default());
        assert_ne!(
            offline.root_causes.first().map(|c| c.confidence),
            Some(whyfail_engine::model::resolution::Confidence::Confirmed),
            "{cause}"
        );
    }
}
