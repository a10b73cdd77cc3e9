//! Bearer-token authentication for every route but `/healthz` and `/readyz`.
//!
//! The token is kept only as its SHA-256 digest, and a presented token is hashed and compared
//! in constant time: comparing digests of equal length means neither the content nor the
//! length of the real token leaks through timing. The token is never logged. A token read from
//! `--token-file` is read again on SIGHUP (see `reload`), so it can be rotated without a restart.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ServerState;
use super::error::ApiError;

/// The expected token, as a digest.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A token from its text; surrounding whitespace (a file's final newline) is not part of
    /// it. `None` for an empty token, which would let anyone in.
    pub fn new(text: &str) -> Option<Token> {
        let t = text.trim();
        (!t.is_empty()).then(|| Token {
            digest: Sha256::digest(t.as_bytes()).into(),
        })
    }

    /// The token in a file (`--token-file`). The error says which file and why, never the
    /// content.
    pub fn from_file(path: &std::path::Path) -> Result<Token, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --token-file `{}`: {e}", path.display()))?;
        Token::new(&text)
            .ok_or_else(|| format!("the token in --token-file `{}` is empty", path.display()))
    }

    /// Constant-time check of a presented token.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let d: [u8; 32] = Sha256::digest(presented).into();
        d.ct_eq(&self.digest).into()
    }
}

/// The token in an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(req: &Request) -> Option<&[u8]> {
    let value = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// Middleware: lets the request through when no token is configured (loopback only, checked
/// at start-up) or when it carries the right one; otherwise 401.
pub(crate) async fn require_token(
    State(state): State<Arc<ServerState>>,
    req: Request,
    next: Next,
) -> Response {
    // Cloned out so the lock is not held across the request (the token file may be re-read
    // on SIGHUP meanwhile).
    let Some(token) = state.token() else {
        return next.run(req).await;
    };
    match bearer(&req) {
        Some(presented) if token.matches(presented) => next.run(req).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token is not valid",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs `Authorization: Bearer <token>`",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matches_only_itself() {
        let t = Token::new("s3cret\n").expect("token");
        assert!(t.matches(b"s3cret"));
        assert!(!t.matches(b"s3cre"));
        assert!(!t.matches(b"s3cret\n"));
        assert!(!t.matches(b""));
        assert!(Token::new("  \n").is_none());
        assert_eq!(format!("{t:?}"), "Token(..)");
    }
}
