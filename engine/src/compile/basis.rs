//! What a check's evidence rests on, when its author does not say: inferred once at load time
//! from the script's text, so ranking by specificity costs nothing per event.
//!
//! The inference is deliberately coarse (a script that reads the provider's words at all is
//! `provider`); a script that only matches a generic protocol code says `basis: protocol`.

use std::sync::LazyLock;

use regex::Regex;

use crate::model::playbook::Basis;

/// Connection fields that only say which kind of connection this is: reading them is context,
/// not evidence about the failure.
const CONTEXT_FIELDS: &[&str] = &["id", "provider", "auth_type", "name"];

/// The basis of a script that declares none: `live` when it needs live facts, `provider` when it
/// reads the provider's text, code, body or headers, `state` when it reads the connection record
/// (beyond which kind of connection it is), else `status`.
pub fn infer(source: &str, needs: &[String]) -> Basis {
    static PROVIDER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r#"\b(signal|text|message|header|retry_hint|body_text)\s*\(|\berror\s*\??\.\s*(code|message|body|headers)\b|\bdig\(\s*error\s*,\s*"(body|code|message|headers)"#,
        )
        .expect("static regex")
    });
    static STATE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"\b(connection|oauth)\s*\??\.\s*([A-Za-z_][A-Za-z0-9_]*)|\b(platform|history)\b|\b(secret(?:_matches)?)\s*\(|\bdig\(\s*connection\s*,\s*"([A-Za-z_]+)"#)
            .expect("static regex")
    });
    if !needs.is_empty() {
        return Basis::Live;
    }
    if PROVIDER.is_match(source) {
        return Basis::Provider;
    }
    let state = STATE.captures_iter(source).any(|c| {
        let field = c.get(2).or_else(|| c.get(5)).map(|m| m.as_str());
        match (c.get(1).map(|m| m.as_str()), field) {
            (Some("oauth"), _) => true,
            (Some("connection"), Some(f)) => !CONTEXT_FIELDS.contains(&f),
            (None, _) => {
                c.get(3).is_some()
                    || c.get(4).is_some()
                    || field.is_some_and(|f| !CONTEXT_FIELDS.contains(&f))
            }
            _ => false,
        }
    });
    if state { Basis::State } else { Basis::Status }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inferred_from_what_the_script_reads() {
        let cases = [
            ("error?.status == 403", Basis::Status),
            (
                "error?.status == 401 && phase == \"request\"",
                Basis::Status,
            ),
            (
                "error?.status == 401 && connection?.auth_type == \"api_key\"",
                Basis::Status,
            ),
            (
                "connection?.provider == \"github\" && error?.kind == \"http\"",
                Basis::Status,
            ),
            (
                "ts(connection?.oauth?.access_token_expires_at) < now()",
                Basis::State,
            ),
            ("oauth.has_refresh_token == false", Basis::State),
            ("history?.consecutive_failures > 3", Basis::State),
            ("secret(\"api_key\").trailing_whitespace", Basis::State),
            ("dig(connection, \"api_key.prefix\") == \"\"", Basis::State),
            ("signal(\"rate_limit\")", Basis::Provider),
            (
                "error?.status == 403 && matches(text(), `quota`)",
                Basis::Provider,
            ),
            (
                "lower(error?.code ?? \"\") == \"missing_scope\"",
                Basis::Provider,
            ),
            ("error.body.error == \"x\"", Basis::Provider),
            (
                "header(\"x-ratelimit-remaining\") == \"0\"",
                Basis::Provider,
            ),
            ("dig(error, \"body.needed\") != ()", Basis::Provider),
            (
                "signal(\"x\") && ts(connection?.oauth?.access_token_expires_at) < now()",
                Basis::Provider,
            ),
        ];
        for (src, want) in cases {
            assert_eq!(infer(src, &[]), want, "{src}");
        }
        assert_eq!(
            infer("facts[\"whoami\"].authenticated", &["whoami".into()]),
            Basis::Live
        );
    }

    #[test]
    fn only_state_live_and_provider_are_specific() {
        assert!(!Basis::Status.is_specific());
        assert!(!Basis::Protocol.is_specific());
        assert!(Basis::State.is_specific());
        assert!(Basis::Provider.is_specific());
        assert!(Basis::Live.is_specific());
    }
}
