//! Actions whyfail carries out itself when the caller opts in (`--act refresh_token`).
//!
//! A diagnosis never changes anything at the provider. Only here, after the diagnosis and only
//! for the actions the caller named, does whyfail refresh a token; it then re-runs the failed
//! check (the whoami call, else token introspection) with the new token to confirm the fix. The
//! new tokens go to `new_credentials`, never into the explanation or the path.
//!
//! One refresh per connection at a time: the refresh runs under the live provider's
//! per-connection lock (across replicas with `serve --shared-state`). A request that waited
//! for another's refresh of the same credentials does not refresh again (with a rotating
//! refresh token that second refresh fails or revokes the first one's tokens): its `acted`
//! says `already_done` (or `in_progress` if the other is still at it when the deadline comes).

use std::time::{Duration, Instant};

use serde_json::Value;
use whyfail_engine::model::playbook::DispositionKind;
use whyfail_engine::model::resolution::Acted;
use whyfail_engine::{Event, FactProvider, Library, Options, Resolution, diagnose};
use whyfail_providers::{LiveProvider, RefreshTurn};

/// Actions the caller may ask whyfail to carry out.
pub const ACTIONS: &[&str] = &["refresh_token"];

/// Diagnoses `event`, then carries out each of `actions` the resolution recommends: the one
/// path the CLI and the service share.
pub fn diagnose_and_act(
    lib: &Library,
    event: &Event,
    opts: &Options<'_>,
    live: Option<&LiveProvider>,
    actions: &[String],
    deadline: Duration,
) -> Resolution {
    let mut res = diagnose(lib, event, opts);
    if let Some(live) = live {
        for a in actions {
            act(a, live, event, &mut res, deadline);
        }
    }
    res
}

/// Carries out `action` if the resolution recommends it, recording what happened.
pub fn act(
    action: &str,
    live: &LiveProvider,
    event: &Event,
    res: &mut Resolution,
    deadline: Duration,
) {
    match action {
        "refresh_token" => refresh(live, event, res, deadline),
        other => res.acted.push(Acted {
            action: other.to_string(),
            status: "not_applicable".into(),
            verified: None,
            detail: format!("whyfail cannot carry out `{other}` itself"),
        }),
    }
}

fn refresh(live: &LiveProvider, event: &Event, res: &mut Resolution, deadline: Duration) {
    let recommended = res.actions.iter().any(|a| a.id == "refresh_token")
        || res.disposition.kind == DispositionKind::RefreshThenRetry;
    let mut report = Acted {
        action: "refresh_token".into(),
        status: "not_applicable".into(),
        verified: None,
        detail: String::new(),
    };
    if !recommended {
        report.detail = "the diagnosis does not recommend refreshing the token".into();
        res.acted.push(report);
        return;
    }
    match live.refresh_turn(&event.fact_request(None), deadline) {
        RefreshTurn::Mine(lease) => {
            refresh_now(live, event, res, deadline, report);
            // Requests still carrying these credentials learn of this refresh instead of
            // making their own. Only when it worked: after a failure, the next may try.
            let outcome = res.acted.last().filter(|a| a.status == "done").map(|a| {
                serde_json::json!({
                    "refreshed_at": jiff::Timestamp::now().to_string(),
                    "verified": a.verified,
                })
            });
            lease.finish(outcome);
        }
        RefreshTurn::Done(record) => {
            let verified = record.get("verified").and_then(Value::as_bool);
            let when = record
                .get("refreshed_at")
                .and_then(Value::as_str)
                .unwrap_or("moments ago");
            report.status = "already_done".into();
            report.verified = verified;
            report.detail = format!(
                "another request refreshed this connection's token ({when}) and got the new \
                 credentials; not refreshing the same credentials again: use the connection's \
                 stored credentials and retry"
            );
            if verified == Some(true) {
                res.disposition.kind = DispositionKind::Retry;
                res.disposition.retry_after_seconds = None;
            }
            res.acted.push(report);
        }
        RefreshTurn::Busy => {
            report.status = "in_progress".into();
            report.detail = "another request is refreshing this connection's token right now; \
                             not refreshing twice: use the connection's stored credentials \
                             once it is done"
                .into();
            res.acted.push(report);
        }
    }
}

/// Refreshes the token now and confirms it with the failed call; pushes `report`.
fn refresh_now(
    live: &LiveProvider,
    event: &Event,
    res: &mut Resolution,
    deadline: Duration,
    mut report: Acted,
) {
    let outcome = live.act("oauth.refresh", &event.fact_request(None));
    let fact = match outcome {
        Ok(v) if v.get("refreshed") == Some(&Value::Bool(true)) => v,
        Ok(v) => {
            report.status = "failed".into();
            report.detail = format!(
                "the token endpoint refused the refresh (HTTP {}): {}",
                v.get("status").map_or("?".into(), Value::to_string),
                [v.get("error"), v.get("error_description")]
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(": ")
            );
            res.acted.push(report);
            return;
        }
        Err(e) => {
            report.status = "failed".into();
            report.detail = format!("the refresh could not be attempted: {e}");
            res.acted.push(report);
            return;
        }
    };
    let Some(access) = fact.get("access_token").and_then(Value::as_str) else {
        report.status = "failed".into();
        report.detail = "the token endpoint answered without an access token".into();
        res.acted.push(report);
        return;
    };
    report.status = "done".into();
    let mut creds = serde_json::Map::new();
    for k in [
        "access_token",
        "refresh_token",
        "expires_at",
        "expires_in",
        "token_type",
        "scope",
    ] {
        if let Some(v) = fact.get(k).filter(|v| !v.is_null()) {
            creds.insert(k.into(), v.clone());
        }
    }
    res.new_credentials = Some(creds);

    // Re-run the failed call with the new token.
    let mut fresh = event.with_secret("access_token", access);
    if let Some(r) = fact.get("refresh_token").and_then(Value::as_str) {
        fresh = fresh.with_secret("refresh_token", r);
    }
    let req = fresh.fact_request(Some(Instant::now() + deadline));
    let (verified, how) = match live.fetch("whoami", &req) {
        // A rate limit or a server error says nothing about the new token.
        Ok(w)
            if w.get("rate_limited") == Some(&Value::Bool(true))
                || w.get("status")
                    .and_then(Value::as_u64)
                    .is_some_and(|s| s >= 500) =>
        {
            (
                None,
                format!(
                    "the whoami call with the new token could not tell (HTTP {})",
                    w.get("status").map_or("?".into(), Value::to_string)
                ),
            )
        }
        Ok(w) => (
            w.get("authenticated").and_then(Value::as_bool),
            format!(
                "the whoami call with the new token answered HTTP {}",
                w.get("status").map_or("?".into(), Value::to_string)
            ),
        ),
        Err(_) => match live.fetch("oauth.introspection", &req) {
            Ok(i) if i.get("supported") == Some(&Value::Bool(true)) => (
                i.get("active").and_then(Value::as_bool),
                "token introspection of the new token".to_string(),
            ),
            _ => (
                None,
                "no whoami or introspection endpoint to confirm with".into(),
            ),
        },
    };
    report.verified = verified;
    report.detail = match verified {
        Some(true) => format!("the token was refreshed and {how}: the connection works again"),
        Some(false) => format!("the token was refreshed, but {how}: the failure remains"),
        None => format!("the token was refreshed; {how}"),
    };
    if verified == Some(true) {
        res.disposition.kind = DispositionKind::Retry;
        res.disposition.retry_after_seconds = None;
    }
    res.acted.push(report);
}
