//! Generates `docs/coverage.md`, the map from every seed symptom and every standard cause and
//! action id to the playbook and the test cases that cover it, and fails when the committed
//! file is stale or a standard id is not covered.
//!
//! Regenerate with `WHYFAIL_BLESS=1 cargo test --test coverage`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

mod common;

use common::case_files;
use serde_json::Value;
use whyfail_engine::compile::Node;
use whyfail_engine::model::standard;

/// Every symptom of the five seed pages, and the cause ids that diagnose it.
const SEED_SYMPTOMS: &[(&str, &str, &[&str])] = &[
    (
        "000",
        "OAuth connection fails: expired authorization",
        &["access_token_expired", "refresh_token_expired"],
    ),
    (
        "000",
        "OAuth connection fails: revoked access",
        &["access_revoked"],
    ),
    (
        "000",
        "OAuth connection fails: incorrect scopes",
        &["scope_missing"],
    ),
    (
        "000",
        "OAuth connection fails: provider outage",
        &["provider_outage"],
    ),
    (
        "000",
        "API key returns 401: key expired",
        &["api_key_expired"],
    ),
    (
        "000",
        "API key returns 401: key rotated or revoked",
        &["api_key_revoked"],
    ),
    (
        "000",
        "API key returns 401: wrong key (format, account, environment)",
        &["api_key_malformed", "api_key_wrong_environment"],
    ),
    (
        "000",
        "API key returns 401: key permissions too low",
        &["key_insufficient_permissions"],
    ),
    (
        "000",
        "Works in test, fails in production: environment credentials",
        &["environment_credentials_mismatch"],
    ),
    (
        "000",
        "Works in test, fails in production: IP restrictions",
        &["ip_not_allowlisted"],
    ),
    (
        "000",
        "Works in test, fails in production: rate limiting",
        &["rate_limited"],
    ),
    ("000", "Cannot delete a connection", &["connection_in_use"]),
    (
        "001",
        "Authorization failed",
        &[
            "redirect_uri_mismatch",
            "consent_denied",
            "popup_blocked",
            "invalid_client_credentials",
        ],
    ),
    (
        "001",
        "Token expired",
        &["access_token_expired", "refresh_token_expired"],
    ),
    (
        "001",
        "Insufficient permissions",
        &[
            "scope_missing",
            "user_lacks_access",
            "admin_consent_required",
        ],
    ),
    ("001", "Redirect URI mismatch", &["redirect_uri_mismatch"]),
    (
        "001",
        "Invalid API key",
        &["api_key_malformed", "api_key_revoked"],
    ),
    (
        "001",
        "Unauthorized (missing Bearer prefix, wrong header)",
        &["auth_header_misconfigured"],
    ),
    ("001", "Rate limited", &["rate_limited", "quota_exhausted"]),
    ("001", "Connection refused", &["connection_refused"]),
    ("001", "Timeout", &["upstream_slow", "network_blocked"]),
    (
        "001",
        "SSL certificate error",
        &[
            "tls_certificate_expired",
            "tls_untrusted_certificate",
            "tls_hostname_mismatch",
        ],
    ),
    (
        "001",
        "Slack missing_scope / admin approval",
        &["scope_missing", "admin_consent_required"],
    ),
    (
        "001",
        "GitHub Bad credentials",
        &["access_revoked", "access_token_expired"],
    ),
    (
        "002",
        "Connection fails after X time, consistently",
        &["refresh_token_missing"],
    ),
    (
        "002",
        "401 with OAuth: token not sent as Bearer",
        &["auth_header_misconfigured", "access_token_expired"],
    ),
    (
        "002",
        "Only the authorization code flow is supported",
        &["unsupported_auth_flow"],
    ),
    (
        "002",
        "Refresh URL differs from the token URL",
        &["oauth_config_mismatch"],
    ),
    (
        "003",
        "Authorization failed: provider configuration (client id, secret, redirect URI)",
        &["oauth_config_mismatch", "redirect_uri_mismatch"],
    ),
    (
        "003",
        "Authorization failed: user blocked by MFA or IP policy",
        &["mfa_required", "ip_not_allowlisted"],
    ),
    (
        "003",
        "Authorization failed: provider not reachable",
        &["provider_outage", "network_blocked"],
    ),
    (
        "003",
        "Authorization failed: popup blocked",
        &["popup_blocked"],
    ),
    (
        "003",
        "Token expired, refresh failed",
        &["refresh_token_expired", "access_revoked"],
    ),
    (
        "003",
        "Scope mismatch / needs admin consent",
        &["scope_missing", "admin_consent_required"],
    ),
    (
        "003",
        "Redirect URI mismatch (path, http in production, other domain)",
        &["redirect_uri_mismatch"],
    ),
    (
        "003",
        "Connection lost (network, firewall, TLS)",
        &[
            "network_blocked",
            "dns_failure",
            "tls_untrusted_certificate",
        ],
    ),
    (
        "003",
        "Invalid client: wrong, prefixed, whitespace or expired secret",
        &["invalid_client_credentials", "client_secret_expired"],
    ),
    (
        "003",
        "AADSTS65001 consent / 7000112 app disabled / 65004 denied",
        &["admin_consent_required", "app_disabled", "consent_denied"],
    ),
    ("003", "Microsoft 365 licence missing", &["license_missing"]),
    (
        "003",
        "HaloPSA: IP allowlist, revoked token, strict rate limits",
        &["ip_not_allowlisted", "access_revoked", "rate_limited"],
    ),
    (
        "004",
        "PROVIDER_BASE_URL_UNREACHABLE / PROVIDER_BASE_URL_BLOCKED",
        &["base_url_wrong", "base_url_blocked"],
    ),
    (
        "004",
        "PROVIDER_AUTH_FAILED / PROVIDER_TOKEN_REVOKED",
        &["access_revoked"],
    ),
    (
        "004",
        "PROVIDER_PERMISSION_MISSING / PROVIDER_SCOPE_MISSING",
        &["scope_missing", "user_lacks_access"],
    ),
    ("004", "PROVIDER_RATE_LIMITED", &["rate_limited"]),
    (
        "004",
        "PROVIDER_SELF_HOSTED_CONNECTIVITY_BLOCKED",
        &["self_hosted_connectivity"],
    ),
];

/// Providers and HTTP-client families issue 11 names: each needs at least three cases (a
/// confirming one, a differently worded one, a near miss). Atlassian counts Jira, Confluence and
/// Bitbucket; GraphQL APIs count Linear's and the generic `graphql` folder.
const PROVIDERS: &[&[&str]] = &[
    &["salesforce"],
    &["hubspot"],
    &["shopify"],
    &["notion"],
    &["zendesk"],
    &["atlassian", "jira"],
    &["confluence"],
    &["bitbucket"],
    &["dropbox"],
    &["box"],
    &["stripe"],
    &["twilio"],
    &["airtable"],
    &["mailchimp"],
    &["sendgrid"],
    &["aws"],
    &["microsoft_identity"],
    &["okta"],
    &["auth0"],
    &["keycloak"],
    &["gitlab"],
    &["linear"],
    &["graphql", "linear"],
    &["asana"],
    &["monday"],
    &["intercom"],
    &["zoom"],
    &["quickbooks"],
    &["xero"],
    &["docusign"],
    &["pagerduty"],
];
const CLIENTS: &[&[&str]] = &[
    &["curl"],
    &["python_requests"],
    &["python_httpx"],
    &["python_aiohttp"],
    &["node_fetch"],
    &["node_axios"],
    &["java_httpclient"],
    &["java_okhttp"],
    &["java_apache"],
    &["go_nethttp"],
    &["dotnet_httpclient"],
    &["php_guzzle"],
    &["ruby_nethttp", "ruby_faraday"],
    &["rust_reqwest"],
];

/// Cases per provider (the folder under `providers/`, else the event's `connection.provider`)
/// and per client family (the folder under `clients/`).
fn families(files: &[PathBuf], root: &Path) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let (mut providers, mut clients) = (BTreeMap::new(), BTreeMap::new());
    for f in files {
        let rel = f.strip_prefix(root).unwrap_or(f);
        let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
        match parts.as_slice() {
            ["providers", p, ..] => *providers.entry(p.to_string()).or_default() += 1,
            ["clients", c, ..] => *clients.entry(c.to_string()).or_default() += 1,
            _ => {
                let case: Value =
                    serde_json::from_str(&std::fs::read_to_string(f).expect("read")).expect("json");
                if let Some(p) = case["event"]["connection"]["provider"].as_str()
                    && p != "generic"
                {
                    *providers.entry(p.to_string()).or_default() += 1;
                }
            }
        }
    }
    (providers, clients)
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    v["expect"][key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn generate() -> (String, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (lib, _) = whyfail::load_library(&[] as &[PathBuf], true);
    // cause id → playbook ids; action id → playbook ids that recommend it
    let mut cause_pb: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut action_pb: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for pb in lib.playbooks() {
        for n in &pb.nodes {
            if let Node::Cause(c) = n {
                cause_pb
                    .entry(c.id.clone())
                    .or_default()
                    .insert(pb.id.clone());
                for a in &c.actions {
                    action_pb
                        .entry(a.id.clone())
                        .or_default()
                        .insert(pb.id.clone());
                }
            }
        }
        for a in &pb.inconclusive.actions {
            action_pb
                .entry(a.id.clone())
                .or_default()
                .insert(pb.id.clone());
        }
    }
    let catalogue: BTreeSet<String> = lib.actions().map(|a| a.id.clone()).collect();
    let mut confirm: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut near: BTreeMap<String, usize> = BTreeMap::new();
    let files = case_files(&root.join("tests/cases"));
    for f in &files {
        let case: Value =
            serde_json::from_str(&std::fs::read_to_string(f).expect("read")).expect("json");
        let rel = f
            .strip_prefix(root.join("tests/cases"))
            .unwrap_or(f)
            .display()
            .to_string();
        for c in ids(&case, "root_cause") {
            confirm.entry(c).or_default().push(rel.clone());
        }
        for c in ids(&case, "not_root_cause") {
            *near.entry(c).or_default() += 1;
        }
    }

    let mut problems = Vec::new();
    let mut md = String::new();
    let _ = writeln!(md, "# Coverage\n");
    let _ = writeln!(
        md,
        "Generated by `WHYFAIL_BLESS=1 cargo test --test coverage` from the built-in library and"
    );
    let _ = writeln!(
        md,
        "`tests/cases/`; CI fails when it is stale or a standard id is not covered."
    );
    let _ = writeln!(
        md,
        "{} playbooks, {} cases.\n",
        lib.playbooks().len(),
        files.len()
    );
    let _ = writeln!(
        md,
        "## Seed symptoms\n\n| seed | symptom | causes | playbooks | confirming cases |\n|---|---|---|---|---|"
    );
    for (seed, symptom, causes) in SEED_SYMPTOMS {
        let pbs: BTreeSet<&String> = causes
            .iter()
            .flat_map(|c| cause_pb.get(*c).into_iter().flatten())
            .collect();
        let n: usize = causes
            .iter()
            .map(|c| confirm.get(*c).map_or(0, Vec::len))
            .sum();
        if pbs.is_empty() || n == 0 {
            problems.push(format!("seed {seed} symptom `{symptom}` is not covered"));
        }
        let pbs: Vec<String> = pbs.iter().map(|p| format!("`{p}`")).collect();
        let cs: Vec<String> = causes.iter().map(|c| format!("`{c}`")).collect();
        let _ = writeln!(
            md,
            "| {seed} | {symptom} | {} | {} | {n} |",
            cs.join(", "),
            pbs.join(", ")
        );
    }
    let _ = writeln!(
        md,
        "\n## Standard causes\n\n| cause | playbooks | confirming cases | near misses | example |\n|---|---|---|---|---|"
    );
    for c in standard::CAUSES {
        let pbs: Vec<String> = cause_pb
            .get(*c)
            .map(|s| s.iter().map(|p| format!("`{p}`")).collect())
            .unwrap_or_default();
        let cases = confirm.get(*c).cloned().unwrap_or_default();
        if pbs.is_empty() || cases.is_empty() {
            problems.push(format!(
                "standard cause `{c}` has no playbook or no confirming case"
            ));
        }
        let example = cases
            .first()
            .map(|e| format!("`{e}`"))
            .unwrap_or_else(|| "none".into());
        let _ = writeln!(
            md,
            "| `{c}` | {} | {} | {} | {example} |",
            pbs.join(", "),
            cases.len(),
            near.get(*c).copied().unwrap_or(0)
        );
    }
    let extra: Vec<&String> = cause_pb
        .keys()
        .filter(|c| !standard::CAUSES.contains(&c.as_str()))
        .collect();
    if !extra.is_empty() {
        let list: Vec<String> = extra.iter().map(|c| format!("`{c}`")).collect();
        let _ = writeln!(
            md,
            "\nCauses beyond the standard list: {}.",
            list.join(", ")
        );
    }
    let (providers, clients) = families(&files, &root.join("tests/cases"));
    for (what, named, counted) in [
        ("provider", PROVIDERS, &providers),
        ("client family", CLIENTS, &clients),
    ] {
        for group in named {
            let n: usize = group
                .iter()
                .map(|g| counted.get(*g).copied().unwrap_or(0))
                .sum();
            if n < 3 {
                problems.push(format!(
                    "{what} `{}` has {n} cases; it needs at least 3",
                    group.join("/")
                ));
            }
        }
    }
    let _ = writeln!(
        md,
        "\n## Providers\n\nCases per provider: the folder under `tests/cases/providers/`, else the event's\n`connection.provider`. Each case names the source of its wording.\n\n| provider | cases |\n|---|---|"
    );
    for (p, n) in &providers {
        let _ = writeln!(md, "| `{p}` | {n} |");
    }
    let _ = writeln!(
        md,
        "\n## HTTP-client families\n\nNetwork and TLS failures as each client prints them (`tests/cases/clients/`).\n\n| client | cases |\n|---|---|"
    );
    for (c, n) in &clients {
        let _ = writeln!(md, "| `{c}` | {n} |");
    }
    let _ = writeln!(
        md,
        "\n## Standard actions\n\n| action | in the catalogue | recommended by |\n|---|---|---|"
    );
    for a in standard::ACTIONS {
        let in_cat = catalogue.contains(*a);
        let by: Vec<String> = action_pb
            .get(*a)
            .map(|s| s.iter().map(|p| format!("`{p}`")).collect())
            .unwrap_or_default();
        if !in_cat || by.is_empty() {
            problems.push(format!(
                "standard action `{a}` is not in the catalogue or no playbook recommends it"
            ));
        }
        let _ = writeln!(
            md,
            "| `{a}` | {} | {} |",
            if in_cat { "yes" } else { "**no**" },
            by.join(", ")
        );
    }
    (md, problems)
}

#[test]
fn coverage_document_is_current_and_complete() {
    let (md, problems) = generate();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/coverage.md");
    if std::env::var_os("WHYFAIL_BLESS").is_some() {
        std::fs::write(&path, &md).expect("write docs/coverage.md");
    }
    assert!(
        problems.is_empty(),
        "coverage gaps:\n{}",
        problems.join("\n")
    );
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == md,
        "docs/coverage.md is stale: run `WHYFAIL_BLESS=1 cargo test --test coverage`"
    );
}
