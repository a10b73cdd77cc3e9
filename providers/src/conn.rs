//! What a probe knows about the failing connection: an owned snapshot taken from the event, so
//! probes can run on other tasks after the diagnosis that asked for them has moved on.
//!
//! Secrets live in [`Secrets`], whose `Debug` prints nothing; probes put them only into
//! requests bound for the connection's own origins (see `Ctx::credential_origin_ok`).

use std::fmt;

use sha2::{Digest, Sha256};
use url::Url;
use whyfail_engine::FactRequest;
use whyfail_engine::scrub::Scrubber;

/// The connection's secrets. Never printed, never part of a fact.
#[derive(Clone, Default)]
pub struct Secrets {
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub client_secret: Option<String>,
    pub api_key: Option<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

impl Secrets {
    /// Every secret value, for scrubbing provider responses that echo one back.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        [
            &self.access_token,
            &self.refresh_token,
            &self.client_secret,
            &self.api_key,
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .filter(|s| s.len() >= 4)
    }

    /// The credential to present to the provider's API: the access token, else the API key.
    pub fn bearer(&self) -> Option<&str> {
        self.access_token.as_deref().or(self.api_key.as_deref())
    }
}

/// OAuth settings of the connection.
#[derive(Debug, Clone, Default)]
pub struct OAuthConf {
    pub client_id: Option<String>,
    pub issuer: Option<Url>,
    pub authorize_url: Option<Url>,
    pub token_url: Option<Url>,
    pub refresh_url: Option<Url>,
    pub introspection_url: Option<Url>,
    pub redirect_uri: Option<String>,
}

/// The connection, as probes see it.
#[derive(Debug, Clone, Default)]
pub struct Conn {
    /// Cache key: the connection id plus a digest of its credentials and base URL, so a
    /// reconnected connection (new tokens, same id) never reuses an old answer.
    pub key: String,
    pub provider: String,
    pub auth_type: String,
    pub deployment_mode: String,
    pub base_url: Option<Url>,
    pub status_page_url: Option<Url>,
    /// The generic whoami probe's URL (`connection.whoami_url`); credentials go there only if it
    /// shares an origin with the base URL.
    pub whoami_url: Option<Url>,
    pub oauth: OAuthConf,
    /// How the API key is presented (`connection.api_key.header_name` / `prefix`).
    pub api_key_header: Option<String>,
    pub api_key_prefix: Option<String>,
    pub secrets: Secrets,
    /// Masks every secret of the connection (all of `connection.secrets`, not only the four
    /// above) and every credential shape in the provider's text.
    pub scrubber: Scrubber,
}

fn url_field(req: &FactRequest<'_>, path: &str) -> Option<Url> {
    let text = req.field(path)?;
    Url::parse(text.trim()).ok()
}

impl Conn {
    pub fn from_request(req: &FactRequest<'_>) -> Conn {
        let f = |p: &str| req.field(p).filter(|s| !s.trim().is_empty());
        let secret = |n: &str| req.secret(n).map(str::to_string);
        let secrets = Secrets {
            access_token: secret("access_token"),
            refresh_token: secret("refresh_token"),
            client_secret: secret("client_secret"),
            api_key: secret("api_key"),
        };
        let base_url = url_field(req, "connection.base_url");
        let mut digest = Sha256::new();
        for part in [
            f("connection.id"),
            base_url.as_ref().map(Url::to_string),
            secrets.access_token.clone(),
            secrets.refresh_token.clone(),
            secrets.client_secret.clone(),
            secrets.api_key.clone(),
        ] {
            digest.update(part.unwrap_or_default().as_bytes());
            digest.update([0]);
        }
        let hash = digest.finalize();
        let key = format!(
            "{}#{}",
            f("connection.id").unwrap_or_else(|| "-".into()),
            hash.iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Conn {
            key,
            provider: f("connection.provider")
                .unwrap_or_else(|| "generic".into())
                .to_ascii_lowercase(),
            auth_type: f("connection.auth_type").unwrap_or_default(),
            deployment_mode: f("connection.deployment_mode").unwrap_or_default(),
            base_url,
            status_page_url: url_field(req, "connection.status_page_url"),
            whoami_url: url_field(req, "connection.whoami_url"),
            oauth: OAuthConf {
                client_id: f("connection.oauth.client_id"),
                issuer: url_field(req, "connection.oauth.issuer"),
                authorize_url: url_field(req, "connection.oauth.authorize_url"),
                token_url: url_field(req, "connection.oauth.token_url"),
                refresh_url: url_field(req, "connection.oauth.refresh_url"),
                introspection_url: url_field(req, "connection.oauth.introspection_url"),
                redirect_uri: f("connection.oauth.redirect_uri"),
            },
            api_key_header: f("connection.api_key.header_name"),
            api_key_prefix: f("connection.api_key.prefix"),
            secrets,
            scrubber: Scrubber::new(req.secret_values()),
        }
    }

    /// The origins credentials may be sent to: the connection's own API and OAuth endpoints.
    pub fn credential_origins(&self) -> Vec<url::Origin> {
        [
            self.base_url.as_ref(),
            self.oauth.issuer.as_ref(),
            self.oauth.token_url.as_ref(),
            self.oauth.refresh_url.as_ref(),
            self.oauth.introspection_url.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(Url::origin)
        .collect()
    }

    /// The base URL joined with `path` (keeping any path prefix such as `/api/v3`).
    pub fn api_url(&self, default_base: &str, path: &str) -> Option<Url> {
        let base = match &self.base_url {
            Some(b) => b.clone(),
            None => Url::parse(default_base).ok()?,
        };
        join(&base, path)
    }
}

/// `base` + `path`, treating `base`'s path as a directory (`/api/v3` + `user` = `/api/v3/user`).
pub fn join(base: &Url, path: &str) -> Option<Url> {
    let mut b = base.clone();
    if !b.path().ends_with('/') {
        let p = format!("{}/", b.path());
        b.set_path(&p);
    }
    b.join(path.trim_start_matches('/')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_the_base_path() {
        let b = Url::parse("https://ghe.example.com/api/v3").unwrap();
        assert_eq!(
            join(&b, "/user").unwrap().as_str(),
            "https://ghe.example.com/api/v3/user"
        );
        let b = Url::parse("https://api.github.com").unwrap();
        assert_eq!(
            join(&b, "user").unwrap().as_str(),
            "https://api.github.com/user"
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secrets {
            access_token: Some("gho_supersecret".into()),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("supersecret"));
    }
}
