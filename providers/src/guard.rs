//! The SSRF guard: which network targets a live probe may reach.
//!
//! Event data is attacker-influenced (a base URL is whatever the connection was saved with), so
//! every probe goes through here. Hosts are resolved once, every address is checked, and the
//! probe connects to the checked addresses only (reqwest through [`GuardedResolver`], raw sockets
//! by taking the list from [`Guard::resolve`]), so DNS rebinding cannot swap in a private address
//! between check and connect. `--allow-host` names hosts that may be private (tests, on-prem).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a target was refused. Never contains a secret: it names the host and the address class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The policy: which hosts may resolve to non-public addresses.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allowed: HashSet<String>,
}

impl Guard {
    /// A guard that refuses every non-public address except for the named hosts (or IPs).
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(allow_hosts: I) -> Self {
        Guard {
            allowed: allow_hosts
                .into_iter()
                .map(|h| normalise_host(h.as_ref()))
                .collect(),
        }
    }

    /// Whether `host` was named by `--allow-host`.
    pub fn is_allowed_host(&self, host: &str) -> bool {
        self.allowed.contains(&normalise_host(host))
    }

    /// Checks one address for `host`.
    pub fn check_addr(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        match classify(ip) {
            None => Ok(()),
            Some(_) if self.is_allowed_host(host) => Ok(()),
            Some(class) => Err(Refused(format!(
                "refusing to probe `{host}`: it resolves to {ip}, a {class} address \
                 (pass --allow-host {host} to permit it)"
            ))),
        }
    }

    /// Resolves `host` and checks every address; any non-public address refuses the whole host,
    /// because a client may pick any of them.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let host = normalise_host(host);
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check_addr(&host, ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| Refused(format!("cannot resolve `{host}`: {e}")))?
            .collect();
        self.check_resolved(&host, addrs)
    }

    /// Checks what `host` resolved to: every address, since a client may connect to any of
    /// them; one non-public address refuses them all.
    pub fn check_resolved(
        &self,
        host: &str,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Refused> {
        if addrs.is_empty() {
            return Err(Refused(format!("`{host}` has no addresses")));
        }
        for a in &addrs {
            self.check_addr(host, a.ip())?;
        }
        Ok(addrs)
    }

    /// Checks a URL before a request: scheme, and the host when it is an IP literal (literals
    /// never reach the resolver, so [`GuardedResolver`] cannot see them).
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused(format!(
                "refusing to probe a `{}` URL: only http and https",
                url.scheme()
            )));
        }
        match url.host() {
            None => Err(Refused("the URL has no host".into())),
            Some(url::Host::Ipv4(ip)) => self.check_addr(&ip.to_string(), IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_addr(&ip.to_string(), IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
        }
    }
}

fn normalise_host(h: &str) -> String {
    h.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

pub use whyfail_engine::addr::classify;

/// reqwest's resolver hook: resolution and the check happen together, and reqwest connects to
/// exactly the addresses returned here.
pub struct GuardedResolver {
    pub guard: Arc<Guard>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        Box::pin(async move {
            let addrs = guard.resolve(name.as_str(), 0).await?;
            let it: Addrs = Box::new(addrs.into_iter());
            Ok(it)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> bool {
        classify(ip.parse().unwrap()).is_some()
    }

    #[test]
    fn classifies_non_public_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(refused(ip), "{ip} must be refused");
        }
        for ip in [
            "8.8.8.8",
            "140.82.112.6",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!refused(ip), "{ip} is public");
        }
    }

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| SocketAddr::new(a.parse().unwrap(), 443))
            .collect()
    }

    /// A name that resolves to a MIXED set (public and private) is refused whatever the order:
    /// a client may connect to any of the addresses, so checking the first is not enough.
    #[test]
    fn a_mixed_resolved_set_is_refused_in_any_order() {
        let g = Guard::new(Vec::<String>::new());
        for set in [
            ["140.82.112.6", "10.0.0.5"],
            ["10.0.0.5", "140.82.112.6"],
            ["140.82.112.6", "169.254.169.254"],
            ["2606:4700::1111", "::ffff:127.0.0.1"],
            ["140.82.112.6", "fd00:ec2::254"],
        ] {
            let e = g
                .check_resolved("api.example.com", addrs(&set))
                .expect_err(&format!("{set:?} must be refused"));
            assert!(e.0.contains("api.example.com"), "{e}");
        }
        let mut three = addrs(&["140.82.112.6", "140.82.112.7", "127.0.0.1"]);
        assert!(g.check_resolved("h", three.clone()).is_err());
        three.pop();
        assert_eq!(g.check_resolved("h", three.clone()), Ok(three));
        assert!(g.check_resolved("h", Vec::new()).is_err());
        // --allow-host names the host, so all its addresses are accepted.
        let allowed = Guard::new(["api.example.com"]);
        assert!(
            allowed
                .check_resolved("api.example.com", addrs(&["140.82.112.6", "10.0.0.5"]))
                .is_ok()
        );
    }

    #[tokio::test]
    async fn allow_host_lets_one_private_host_through() {
        let g = Guard::new(["LocalHost."]);
        assert!(g.resolve("localhost", 80).await.is_ok());
        let e = Guard::new(Vec::<String>::new())
            .resolve("localhost", 80)
            .await
            .unwrap_err();
        assert!(e.0.contains("loopback"), "{e}");
        assert!(g.check_url(&"http://127.0.0.1/".parse().unwrap()).is_err());
        assert!(
            g.check_url(&"file:///etc/passwd".parse().unwrap())
                .unwrap_err()
                .0
                .contains("only http")
        );
    }
}
