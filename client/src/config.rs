//! What both clients are built from: endpoints, a token, the certificates
//! to trust, timeouts and the retry policy.

use std::time::Duration;

use crate::endpoint::{Endpoints, IntoEndpoints, parse_endpoints};
use crate::error::Error;
use crate::failover::{RetryPolicy, Safety};
use crate::limits::{CLIENT_TIMEOUT, LONG_CLIENT_TIMEOUT};

/// How a client reaches nodes that ask for a token or serve https, and how
/// patient it is.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// A bearer token, sent with every call.
    pub token: Option<String>,
    /// PEM certificates to trust for https (a node's self-signed
    /// certificate, or the CA that signed it) instead of the public CAs.
    pub ca_certs_pem: Option<Vec<u8>>,
    /// Give up on a call after this long (default [`CLIENT_TIMEOUT`]; calls
    /// that may take minutes get [`LONG_CLIENT_TIMEOUT`]). A call that
    /// timed out may still take effect on the node.
    pub timeout: Option<Duration>,
    /// How calls fail over between endpoints.
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("ca_certs_pem", &self.ca_certs_pem.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Options checked and endpoints parsed: what a client keeps.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) endpoints: Endpoints,
    /// `Bearer TOKEN`.
    pub(crate) authorization: Option<String>,
    pub(crate) timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) options: ClientOptions,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoints", &self.endpoints.urls())
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub(crate) fn new(
        endpoints: impl IntoEndpoints,
        options: &ClientOptions,
    ) -> Result<Self, Error> {
        let authorization = match &options.token {
            Some(token) if token.is_empty() || token.chars().any(char::is_whitespace) => {
                return Err(Error::Config(
                    "the token is empty or holds white space (a client's token file holds \
                     the token alone, not the node's `ROLE TOKEN` lines)"
                        .into(),
                ));
            }
            Some(token) => Some(format!("Bearer {token}")),
            None => None,
        };
        Ok(Config {
            endpoints: Endpoints::new(parse_endpoints(endpoints.into_items())?),
            authorization,
            timeout: options.timeout.unwrap_or(CLIENT_TIMEOUT),
            retry: options.retry,
            options: options.clone(),
        })
    }

    /// A config whose endpoints are taken as given (for the blocking
    /// client's infallible constructors: each call to an endpoint that is
    /// not a URL fails then).
    #[cfg(feature = "blocking")]
    pub(crate) fn verbatim(items: Vec<String>, options: &ClientOptions) -> Self {
        let mut urls: Vec<String> = items
            .iter()
            .map(|item| item.trim().trim_end_matches('/').to_string())
            .collect();
        if urls.is_empty() {
            urls.push(String::new());
        }
        Config {
            endpoints: Endpoints::new(urls),
            authorization: None,
            timeout: options.timeout.unwrap_or(CLIENT_TIMEOUT),
            retry: options.retry,
            options: options.clone(),
        }
    }

    /// The timeout of `call`.
    pub(crate) fn timeout_of(&self, call: &Call<'_>) -> Duration {
        if call.long {
            LONG_CLIENT_TIMEOUT.max(self.timeout)
        } else {
            self.timeout
        }
    }
}

/// The DER certificates of a PEM file (at least one).
#[cfg(feature = "async")]
pub(crate) fn parse_ca_pem(
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("the CA certificates: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config(
            "the CA certificate file holds no `BEGIN CERTIFICATE` block".into(),
        ));
    }
    Ok(certs)
}

/// An HTTP method the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Delete,
}

/// A request body.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Payload<'a> {
    None,
    Json(&'a [u8]),
    /// A component (`application/wasm`, sent after `100 Continue`).
    Wasm(&'a [u8]),
}

/// One call of the API, before it is sent anywhere.
#[derive(Debug, Clone)]
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    /// Path and query (`/v1/results?since=3`).
    pub(crate) path: String,
    pub(crate) payload: Payload<'a>,
    /// Gets [`LONG_CLIENT_TIMEOUT`].
    pub(crate) long: bool,
    pub(crate) safety: Safety,
    /// Counts the bytes of a component sent so far (the blocking client's
    /// [`upgrade_with_progress`](crate::blocking::Client::upgrade_with_progress)).
    pub(crate) sent: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl<'a> Call<'a> {
    pub(crate) fn get(path: impl Into<String>) -> Self {
        Call {
            method: Method::Get,
            path: path.into(),
            payload: Payload::None,
            long: false,
            safety: Safety::Repeatable,
            sent: None,
        }
    }

    /// A POST that changes something: sent again only when provably not
    /// received.
    pub(crate) fn post(path: impl Into<String>, json: &'a [u8]) -> Self {
        Call {
            method: Method::Post,
            path: path.into(),
            payload: Payload::Json(json),
            long: false,
            safety: Safety::Once,
            sent: None,
        }
    }

    pub(crate) fn delete(path: impl Into<String>) -> Self {
        Call {
            method: Method::Delete,
            path: path.into(),
            payload: Payload::None,
            long: false,
            safety: Safety::Once,
            sent: None,
        }
    }

    pub(crate) fn long(mut self) -> Self {
        self.long = true;
        self
    }

    pub(crate) fn repeatable(mut self) -> Self {
        self.safety = Safety::Repeatable;
        self
    }
}

/// An empty JSON object, the body of POSTs without parameters.
pub(crate) const EMPTY_JSON: &[u8] = b"{}";

/// The query string of an upgrade.
pub(crate) fn upgrade_path(params: &[(&str, String)]) -> String {
    let mut path = "/v1/upgrade".to_string();
    for (i, (name, value)) in params.iter().enumerate() {
        path.push(if i == 0 { '?' } else { '&' });
        path.push_str(&percent_encode(name.as_bytes()));
        path.push('=');
        path.push_str(&percent_encode(value.as_bytes()));
    }
    path
}

/// `bytes` for a URL's query: every byte but the unreserved ones as `%XX`.
pub(crate) fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked() {
        let with = |token: &str| ClientOptions {
            token: Some(token.into()),
            ..Default::default()
        };
        assert!(Config::new(["a:1"], &with("s3cret")).is_ok());
        assert!(Config::new(["a:1"], &with("read s3cret")).is_err());
        assert!(Config::new(["a:1"], &with("")).is_err());
        let shown = format!("{:?}", with("s3cret"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(percent_encode(b"a b/c"), "a%20b%2Fc");
        assert_eq!(
            upgrade_path(&[("dry_run", "true".into()), ("entries", "5".into())]),
            "/v1/upgrade?dry_run=true&entries=5"
        );
    }
}
