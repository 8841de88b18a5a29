//! Bearer tokens: who is calling, and whether their role may call the
//! route (the roles per route are in [`super::policy`]).
//!
//! Tokens come from a file (`raft-host --api-tokens FILE`), one per line:
//!
//! ```text
//! # ROLE   TOKEN
//! admin    3f0c9a1e6b2d4c8f9e7a5b3d1c0f2e4a
//! write    feeder-8d1e0b7c2a9f4e6d3b5c7a9e
//! read     grafana-1b3d5f7a9c2e4b6d8f0a1c3e
//! ```
//!
//! Blank lines and lines starting with `#` are skipped. A token is at least
//! [`MIN_API_TOKEN_CHARS`] characters of `A-Z a-z 0-9 - . _ ~ + / =` (what
//! RFC 6750 allows in a bearer token); `openssl rand -hex 32` makes one.
//! The file must be private to its owner (see [`super::secret`]).
//!
//! A client sends `Authorization: Bearer TOKEN`. Without a valid token a
//! route that needs one answers `401 unauthenticated` with
//! `WWW-Authenticate: Bearer`; a valid token whose role is too small gets
//! `403 insufficient_role`. Only BLAKE3 hashes of the tokens are kept, and
//! a presented token is compared with every one of them in constant time
//! (no early exit, no length leak), so timing does not tell how much of a
//! guess was right.

use std::path::Path;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::policy::{Need, Role};
use super::secret::{CredentialError, read_private};
use super::server::ApiError;
use super::stats::{ApiStats, Refused};
use crate::limits::MIN_API_TOKEN_CHARS;

/// The tokens the API accepts, each with its role.
#[derive(Clone, Default)]
pub struct ApiTokens {
    /// BLAKE3 of each token (its comparison is constant-time) and its role.
    entries: Vec<(blake3::Hash, Role)>,
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes: they are as good as the tokens to an offline
        // guesser of short ones.
        let count = |role| self.entries.iter().filter(|(_, r)| *r == role).count();
        f.debug_struct("ApiTokens")
            .field("read", &count(Role::Read))
            .field("write", &count(Role::Write))
            .field("admin", &count(Role::Admin))
            .finish()
    }
}

impl ApiTokens {
    /// Load a token file (see the module doc); refused when others may
    /// read it, when a line is not `ROLE TOKEN`, or when it holds no token.
    pub fn from_file(path: &Path) -> Result<Self, CredentialError> {
        let bytes = read_private(path)?;
        let text = String::from_utf8(bytes).map_err(|_| CredentialError::TokenLine {
            path: path.to_path_buf(),
            line: 0,
            reason: "the file is not UTF-8 text".into(),
        })?;
        let tokens = Self::parse(&text).map_err(|(line, reason)| CredentialError::TokenLine {
            path: path.to_path_buf(),
            line,
            reason,
        })?;
        if tokens.entries.is_empty() {
            return Err(CredentialError::NoTokens {
                path: path.to_path_buf(),
            });
        }
        Ok(tokens)
    }

    /// Parse a token file's text; an error names the line (from 1).
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut tokens = ApiTokens::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(role), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err((
                    number + 1,
                    "expected `ROLE TOKEN` (ROLE one of read, write, admin)".into(),
                ));
            };
            let role: Role = role.parse().map_err(|e| (number + 1, e))?;
            tokens.add(role, token).map_err(|e| (number + 1, e))?;
        }
        Ok(tokens)
    }

    /// Accept `token` with `role`.
    pub fn add(&mut self, role: Role, token: &str) -> Result<(), String> {
        if token.chars().count() < MIN_API_TOKEN_CHARS {
            return Err(format!(
                "a token must have at least {MIN_API_TOKEN_CHARS} characters \
                 (make one with `openssl rand -hex 32`)"
            ));
        }
        if !token.bytes().all(is_token_byte) {
            return Err(
                "a token may hold only A-Z a-z 0-9 - . _ ~ + / = (RFC 6750 bearer tokens)".into(),
            );
        }
        if self.role_of(token).is_some() {
            return Err("this token is listed twice".into());
        }
        self.entries.push((blake3::hash(token.as_bytes()), role));
        Ok(())
    }

    /// The role of `token`, if it is one of ours. Every entry is compared,
    /// each in constant time.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        let presented = blake3::hash(token.as_bytes());
        let mut found = None;
        for (hash, role) in &self.entries {
            // `blake3::Hash`'s `==` is constant-time.
            if *hash == presented {
                found = Some(*role);
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~+/=".contains(&byte)
}

/// A route that needs a role gets it from a valid token, or this is the
/// answer that refuses the request (module doc); the second check of
/// [`super::gate`]. Without tokens configured the API is open and this
/// lets everything through.
pub(super) fn refusal(state: &AuthState, request: &Request, need: Need) -> Option<Response> {
    let tokens = state.tokens.as_ref()?;
    let Need::Role(needed) = need else {
        return None;
    };
    let refusal = check(tokens, needed, request.headers()).err()?;
    state.stats.refused(match refusal {
        Refusal::Role { .. } => Refused::InsufficientRole,
        Refusal::Missing | Refusal::Invalid => Refused::Unauthenticated,
    });
    Some(refusal.into_response(request.method(), request.uri().path()))
}

/// What authentication needs.
#[derive(Debug)]
pub struct AuthState {
    /// `None`: no authentication.
    pub tokens: Option<ApiTokens>,
    pub stats: Arc<ApiStats>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token we do not know (or another scheme).
    Invalid,
    /// A valid token of too small a role.
    Role { has: Role, needed: Role },
}

fn check(tokens: &ApiTokens, needed: Role, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Refusal::Missing);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let has = token
        .and_then(|token| tokens.role_of(token))
        .ok_or(Refusal::Invalid)?;
    if has < needed {
        return Err(Refusal::Role { has, needed });
    }
    Ok(())
}

impl Refusal {
    fn into_response(self, method: &axum::http::Method, path: &str) -> Response {
        let (error, challenge) = match self {
            Refusal::Missing => (
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    format!(
                        "{method} {path} needs a bearer token: send `Authorization: Bearer \
                         TOKEN` (the CLI: --token-file FILE or RAFT_HOST_TOKEN)"
                    ),
                ),
                "Bearer realm=\"raft-host\"",
            ),
            Refusal::Invalid => (
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "the bearer token is not one this node accepts (see its --api-tokens file)",
                ),
                "Bearer realm=\"raft-host\", error=\"invalid_token\"",
            ),
            Refusal::Role { has, needed } => {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "insufficient_role",
                    format!(
                        "{method} {path} needs the {needed} role; this token has {has} \
                         (roles: read < write < admin)"
                    ),
                )
                .into_response();
            }
        };
        let mut response = error.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "admin-0123456789abcdef";
    const WRITER: &str = "write-0123456789abcdef";
    const READER: &str = "read-0123456789abcdef";

    fn tokens() -> ApiTokens {
        ApiTokens::parse(&format!(
            "# comment\n\nadmin {ADMIN}\nwrite\t{WRITER}\n  read {READER}  \n"
        ))
        .expect("parses")
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("value"),
        );
        headers
    }

    #[test]
    fn roles_reach_as_far_as_they_go() {
        let tokens = tokens();
        assert_eq!(check(&tokens, Role::Admin, &bearer(ADMIN)), Ok(()));
        assert_eq!(check(&tokens, Role::Write, &bearer(WRITER)), Ok(()));
        assert_eq!(check(&tokens, Role::Read, &bearer(WRITER)), Ok(()));
        assert_eq!(
            check(&tokens, Role::Admin, &bearer(WRITER)),
            Err(Refusal::Role {
                has: Role::Write,
                needed: Role::Admin
            })
        );
        assert_eq!(
            check(&tokens, Role::Write, &bearer(READER)),
            Err(Refusal::Role {
                has: Role::Read,
                needed: Role::Write
            })
        );
        assert_eq!(
            check(&tokens, Role::Read, &HeaderMap::new()),
            Err(Refusal::Missing)
        );
        assert_eq!(
            check(&tokens, Role::Read, &bearer("read-0123456789abcdeX")),
            Err(Refusal::Invalid)
        );
        let mut basic = HeaderMap::new();
        basic.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YTpi"),
        );
        assert_eq!(check(&tokens, Role::Read, &basic), Err(Refusal::Invalid));
        let mut lower = HeaderMap::new();
        lower.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("bearer {READER}")).expect("value"),
        );
        assert_eq!(check(&tokens, Role::Read, &lower), Ok(()));
    }

    #[test]
    fn bad_token_files_name_the_line() {
        for (text, line, needle) in [
            ("root 0123456789abcdef0123", 1, "unknown role"),
            ("\nadmin short", 2, "at least 16"),
            ("admin 0123456789abcdef0123 extra", 1, "ROLE TOKEN"),
            ("admin", 1, "ROLE TOKEN"),
            ("admin 0123456789abcdef01\"3", 1, "may hold only"),
            (
                "admin 0123456789abcdef0123\nread 0123456789abcdef0123",
                2,
                "twice",
            ),
        ] {
            let (got_line, reason) = ApiTokens::parse(text).expect_err(text);
            assert_eq!(got_line, line, "{text}: {reason}");
            assert!(reason.contains(needle), "{text}: {reason}");
        }
    }

    #[test]
    fn debug_shows_counts_only() {
        let shown = format!("{:?}", tokens());
        assert_eq!(shown, "ApiTokens { read: 1, write: 1, admin: 1 }");
    }
}
