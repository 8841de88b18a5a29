//! How the API is served: who may call it (host names, tokens), TLS, and
//! its limits. The default is today's loopback API: no tokens, no TLS,
//! the limits of [`crate::limits`].

use std::net::SocketAddr;
use std::time::Duration;

use super::auth::ApiTokens;
use super::guard::ApiAccess;
use super::tls::ApiTls;
use crate::limits::{
    API_BODY_TIMEOUT, API_COMPONENT_BODY_TIMEOUT, API_HEADER_TIMEOUT, API_MAX_COMPONENT_UPLOADS,
    API_MAX_CONNECTIONS, API_MAX_REFUSING_CONNECTIONS, DEFAULT_MAX_WATCHERS,
};

/// Everything about serving the API besides its address.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// Host names it answers to besides addresses (see [`super::guard`]).
    pub access: ApiAccess,
    /// Bearer tokens and their roles; `None`: no authentication (only
    /// allowed on loopback, or with [`Self::insecure`]).
    pub tokens: Option<ApiTokens>,
    /// Serve https with this certificate.
    pub tls: Option<ApiTls>,
    pub limits: ApiLimits,
    /// Serve without tokens on an address other machines reach: anyone who
    /// reaches it may replace the guest and read the whole state. For a
    /// network where something in front authenticates clients.
    pub insecure: bool,
}

impl From<ApiAccess> for ApiConfig {
    fn from(access: ApiAccess) -> Self {
        ApiConfig {
            access,
            ..ApiConfig::default()
        }
    }
}

/// The API's limits on connections and slow clients (defaults in
/// [`crate::limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Connections served at once ([`API_MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// Connections over the cap being told `503` ([`API_MAX_REFUSING_CONNECTIONS`]).
    pub max_refusing_connections: usize,
    /// TLS handshake, each request's headers, keep-alive idle
    /// ([`API_HEADER_TIMEOUT`]).
    pub header_timeout: Duration,
    /// A JSON body ([`API_BODY_TIMEOUT`]).
    pub body_timeout: Duration,
    /// A component upload ([`API_COMPONENT_BODY_TIMEOUT`]).
    pub component_body_timeout: Duration,
    /// Component uploads at once ([`API_MAX_COMPONENT_UPLOADS`]).
    pub max_component_uploads: usize,
    /// Watches at once ([`DEFAULT_MAX_WATCHERS`]; 0: watching is off).
    pub max_watchers: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_connections: API_MAX_CONNECTIONS,
            max_refusing_connections: API_MAX_REFUSING_CONNECTIONS,
            header_timeout: API_HEADER_TIMEOUT,
            body_timeout: API_BODY_TIMEOUT,
            component_body_timeout: API_COMPONENT_BODY_TIMEOUT,
            max_component_uploads: API_MAX_COMPONENT_UPLOADS,
            max_watchers: DEFAULT_MAX_WATCHERS,
        }
    }
}

/// Why the API will not be served as configured.
#[derive(Debug, thiserror::Error)]
pub enum ExposureError {
    #[error(
        "refusing to serve the client API on {addr} without authentication: anyone who \
         reaches it could replace the guest and read the whole state. Give the node a token \
         file (--api-tokens FILE, lines `ROLE TOKEN`, mode 600) and a certificate \
         (--api-tls-cert, --api-tls-key), or bind the API to loopback (--api-addr \
         127.0.0.1:7700), or, if something in front of it authenticates clients, pass \
         --api-insecure"
    )]
    Unauthenticated { addr: SocketAddr },
    #[error("the API's limits must be at least 1 connection and 1 upload, and non-zero timeouts")]
    ZeroLimit,
}

impl ApiConfig {
    /// Refuse an API that anyone on the network could use (see
    /// [`ExposureError`]); warn about tokens sent in the clear.
    pub fn check_exposure(&self, addr: SocketAddr) -> Result<(), ExposureError> {
        let limits = &self.limits;
        if limits.max_connections == 0
            || limits.max_component_uploads == 0
            || limits.header_timeout.is_zero()
            || limits.body_timeout.is_zero()
            || limits.component_body_timeout.is_zero()
        {
            return Err(ExposureError::ZeroLimit);
        }
        if addr.ip().is_loopback() {
            return Ok(());
        }
        if self.tokens.is_none() && !self.insecure {
            return Err(ExposureError::Unauthenticated { addr });
        }
        if self.tokens.is_some() && self.tls.is_none() {
            tracing::warn!(%addr, "the client API takes bearer tokens without TLS: they cross \
                the network in the clear (configure --api-tls-cert and --api-tls-key)");
        }
        if self.tokens.is_none() {
            tracing::warn!(%addr, "--api-insecure: the client API has no authentication and \
                is bound beyond loopback");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_loopback_needs_tokens_or_the_insecure_flag() {
        let open = ApiConfig::default();
        let lan: SocketAddr = "0.0.0.0:7700".parse().expect("addr");
        let loopback: SocketAddr = "127.0.0.1:7700".parse().expect("addr");
        let v6: SocketAddr = "[::1]:7700".parse().expect("addr");
        assert!(open.check_exposure(loopback).is_ok());
        assert!(open.check_exposure(v6).is_ok());
        let error = open.check_exposure(lan).expect_err("refused");
        assert!(error.to_string().contains("--api-tokens"), "{error}");
        let insecure = ApiConfig {
            insecure: true,
            ..ApiConfig::default()
        };
        assert!(insecure.check_exposure(lan).is_ok());
        let mut tokens = ApiTokens::default();
        tokens
            .add(super::super::policy::Role::Admin, "0123456789abcdef0123")
            .expect("token");
        let authenticated = ApiConfig {
            tokens: Some(tokens),
            ..ApiConfig::default()
        };
        assert!(authenticated.check_exposure(lan).is_ok());
    }
}
