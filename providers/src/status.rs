//! The status-page probe: is the provider itself having an incident right now?
//!
//! Reads the Atlassian Statuspage summary (`/api/v2/status.json`), which most SaaS providers
//! publish. The page comes from `connection.status_page_url`, else a built-in list of the
//! providers known to publish one. No credentials are ever sent.

use std::sync::Arc;

use serde_json::{Value, json};
use url::Url;
use whyfail_engine::FactError;

use crate::conn::join;
use crate::probe::{Creds, Ctx, Probe, ProbeResult};

/// The probes of this module.
pub fn probes() -> Vec<Probe> {
    vec![Probe {
        name: "status.page",
        cost: 3,
        mutating: false,
        // A different host from the API, so a rate-limited API does not hold it back.
        calls_api: false,
        run: |cx| Box::pin(status(cx)),
    }]
}

/// Providers that publish a Statuspage summary.
pub fn known_page(provider: &str) -> Option<&'static str> {
    Some(match provider {
        "github" => "https://www.githubstatus.com",
        "jira" | "atlassian" => "https://jira-software.status.atlassian.com",
        "confluence" => "https://confluence.status.atlassian.com",
        "bitbucket" => "https://bitbucket.status.atlassian.com",
        "hubspot" => "https://status.hubspot.com",
        "twilio" => "https://status.twilio.com",
        "notion" => "https://www.notion-status.com",
        "openai" => "https://status.openai.com",
        "dropbox" => "https://status.dropbox.com",
        "discord" => "https://discordstatus.com",
        "zoom" => "https://status.zoom.us",
        "cloudflare" => "https://www.cloudflarestatus.com",
        "digitalocean" => "https://status.digitalocean.com",
        "linear" => "https://linearstatus.com",
        _ => return None,
    })
}

async fn status(cx: Arc<Ctx>) -> ProbeResult {
    let page = match &cx.conn.status_page_url {
        Some(u) => u.clone(),
        None => {
            let known = known_page(&cx.conn.provider).ok_or_else(|| {
                FactError::new(format!(
                    "no status page is known for `{}` (set connection.status_page_url)",
                    cx.conn.provider
                ))
            })?;
            Url::parse(known).map_err(|e| FactError::new(e.to_string()))?
        }
    };
    // Accept either the page itself or its JSON endpoint.
    let url = if page.path().ends_with(".json") {
        page.clone()
    } else {
        join(&page, "api/v2/status.json")
            .ok_or_else(|| FactError::new(format!("cannot build a URL from {page}")))?
    };
    let r = cx
        .send(
            cx.env
                .http
                .get(url.clone())
                .header("accept", "application/json"),
            Creds::None,
        )
        .await?;
    let shown = format!("{}{}", url.origin().ascii_serialization(), url.path());
    if !(200..300).contains(&r.status) {
        // Redirects are not followed (the target was never checked by the guard); say where
        // it points so the URL can be fixed.
        let to = r
            .redirect()
            .map(|l| format!(" (a redirect to {l}, not followed)"))
            .unwrap_or_default();
        return Err(FactError::new(format!(
            "the status page {shown} answered HTTP {}{to}",
            r.status
        )));
    }
    let body = r.json().map_err(|e| {
        FactError::new(format!("{shown} is not a Statuspage summary: {}", e.reason))
    })?;
    let indicator = body
        .pointer("/status/indicator")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            FactError::new(format!(
                "{shown} is not a Statuspage summary (no status.indicator)"
            ))
        })?;
    let description = body
        .pointer("/status/description")
        .and_then(Value::as_str)
        .unwrap_or("");
    Ok(json!({
        "page": shown,
        "indicator": indicator,
        "description": description,
        "outage": matches!(indicator, "major" | "critical"),
        "degraded": indicator == "minor",
        "maintenance": indicator == "maintenance",
    }))
}
