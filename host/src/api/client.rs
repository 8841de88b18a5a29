//! A blocking client for the HTTP API, used by the `raft-host` CLI (and by
//! tests and benchmarks).

use crate::limits::MAX_SNAPSHOT_FILE_BYTES;
use crate::limits::{CLIENT_TIMEOUT, LONG_CLIENT_TIMEOUT, MAX_RESPONSE_BYTES};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::UpgradeResponse;
use super::types::{
    AddMemberRequest, ErrorBody, ErrorInfo, HealthResponse, MembershipResponse, ProposeRequest,
    ProposeResponse, QueryRequest, QueryResponse, TransferLeaderRequest, TransferLeaderResponse,
};
use crate::node::AppliedRecord;

use crate::node::upgrade::{ComponentHistory, DryRunReport};
use crate::node::{Consistency, NodeStatus, SnapshotInfo};

/// Default address of a node's API.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:7700";

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    /// The node answered with an error (a stable `code` and a message).
    #[error("{} ({})", .0.message, .0.code)]
    Api(ErrorInfo),
    /// The node could not be reached or answered something unreadable.
    #[error("cannot talk to the node at {url}: {reason}")]
    Transport { url: String, reason: String },
    /// The client's own options are unusable (a CA file that is not PEM).
    #[error("{0}")]
    Config(String),
}

/// A client for one node's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base_url: String,
    agent: ureq::Agent,
    long_agent: ureq::Agent,
    /// `Bearer TOKEN`, sent with every call.
    authorization: Option<String>,
}

/// How a client reaches a node that asks for a token or serves https.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// A bearer token, sent with every call.
    pub token: Option<String>,
    /// PEM certificates to trust for https (a node's self-signed
    /// certificate, or the CA that signed it) instead of the public CAs.
    pub ca_certs_pem: Option<Vec<u8>>,
    /// Give up on a call after this long (default [`CLIENT_TIMEOUT`]).
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("ca_certs_pem", &self.ca_certs_pem.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ApiClient {
    pub fn new(base_url: &str) -> Self {
        Self::with_timeout(base_url, CLIENT_TIMEOUT)
    }

    /// A client that gives up on a call after `timeout` (calls that may
    /// take minutes still get [`LONG_CLIENT_TIMEOUT`]). A call that timed
    /// out may still take effect on the node.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Self {
        Self::build(base_url, timeout, ureq::tls::TlsConfig::default(), None)
    }

    /// A client with a token and the certificates to trust (`https://`
    /// URLs), see [`ClientOptions`]. Fails only on certificates that are
    /// not PEM.
    pub fn with_options(base_url: &str, options: &ClientOptions) -> Result<Self, ApiClientError> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(pem) = &options.ca_certs_pem {
            let certs = ureq::tls::parse_pem(pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiClientError::Config(format!("the CA certificates: {e}")))?;
            if certs.is_empty() {
                return Err(ApiClientError::Config(
                    "the CA certificate file holds no `BEGIN CERTIFICATE` block".into(),
                ));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let authorization = match &options.token {
            Some(token) if token.is_empty() || token.chars().any(char::is_whitespace) => {
                return Err(ApiClientError::Config(
                    "the token is empty or holds white space (a client's token file holds \
                     the token alone, not the node's `ROLE TOKEN` lines)"
                        .into(),
                ));
            }
            Some(token) => Some(format!("Bearer {token}")),
            None => None,
        };
        Ok(Self::build(
            base_url,
            options.timeout.unwrap_or(CLIENT_TIMEOUT),
            tls.build(),
            authorization,
        ))
    }

    fn build(
        base_url: &str,
        timeout: Duration,
        tls: ureq::tls::TlsConfig,
        authorization: Option<String>,
    ) -> Self {
        let agent = |timeout| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(timeout))
                .tls_config(tls.clone())
                .build()
                .into()
        };
        ApiClient {
            base_url: base_url.trim_end_matches('/').to_string(),
            agent: agent(timeout),
            long_agent: agent(LONG_CLIENT_TIMEOUT),
            authorization,
        }
    }

    pub fn propose(&self, command: &[u8]) -> Result<ProposeResponse, ApiClientError> {
        let body = match std::str::from_utf8(command) {
            Ok(text) => ProposeRequest {
                command: Some(text.to_string()),
                ..Default::default()
            },
            Err(_) => ProposeRequest {
                command_base64: Some(super::types::Output::from_bytes(command).base64),
                ..Default::default()
            },
        };
        self.post("/v1/propose", &body)
    }

    /// A linearizable query.
    pub fn query(&self, request: &[u8]) -> Result<QueryResponse, ApiClientError> {
        self.query_with(request, Consistency::Linearizable)
    }

    pub fn query_with(
        &self,
        request: &[u8],
        consistency: Consistency,
    ) -> Result<QueryResponse, ApiClientError> {
        let mut body = match std::str::from_utf8(request) {
            Ok(text) => QueryRequest {
                request: Some(text.to_string()),
                ..Default::default()
            },
            Err(_) => QueryRequest {
                request_base64: Some(super::types::Output::from_bytes(request).base64),
                ..Default::default()
            },
        };
        body.consistency = Some(consistency);
        self.post("/v1/query", &body)
    }

    /// Take a snapshot now.
    pub fn snapshot(&self) -> Result<SnapshotInfo, ApiClientError> {
        self.post_with(&self.long_agent, "/v1/snapshot", &serde_json::json!({}))
    }

    /// Download the latest snapshot file into `out`; returns its size.
    pub fn download_snapshot(&self, out: &mut impl std::io::Write) -> Result<u64, ApiClientError> {
        let mut response = self
            .authorize(self.long_agent.get(self.url("/v1/snapshot/latest")))
            .call()
            .map_err(|e| self.transport_error(e))?;
        if !response.status().is_success() {
            return self.decode::<()>(response).map(|()| 0);
        }
        let mut reader = response
            .body_mut()
            .with_config()
            .limit(MAX_SNAPSHOT_FILE_BYTES)
            .reader();
        std::io::copy(&mut reader, out).map_err(|e| self.transport_error(e))
    }

    /// Hand leadership over (send this to the leader).
    pub fn transfer_leader(
        &self,
        target: Option<u64>,
    ) -> Result<TransferLeaderResponse, ApiClientError> {
        self.post("/v1/leader", &TransferLeaderRequest { target })
    }

    pub fn status(&self) -> Result<NodeStatus, ApiClientError> {
        self.get("/v1/status")
    }

    pub fn health(&self) -> Result<HealthResponse, ApiClientError> {
        self.get("/health")
    }

    /// Add a voter (send this to the leader): it joins as a learner and is
    /// promoted once caught up; answers then.
    pub fn add_member(&self, ticket: &str) -> Result<MembershipResponse, ApiClientError> {
        self.change_members(AddMemberRequest {
            ticket: ticket.to_string(),
            ..Default::default()
        })
    }

    /// Add a node as a learner, or to replace a voter (send this to the
    /// leader).
    pub fn change_members(
        &self,
        request: AddMemberRequest,
    ) -> Result<MembershipResponse, ApiClientError> {
        self.post_with(&self.long_agent, "/v1/members", &request)
    }

    /// Remove a voter or learner (send this to the leader).
    pub fn remove_member(&self, id: u64) -> Result<MembershipResponse, ApiClientError> {
        let response = self
            .authorize(self.agent.delete(self.url(&format!("/v1/members/{id}"))))
            .call()
            .map_err(|e| self.transport_error(e))?;
        self.decode(response)
    }

    /// Upgrade the cluster to `component` (validated and stored by the
    /// node, then activated through the log). `params` are the optional
    /// limits, e.g. `[("apply_fuel", "1000000")]`.
    pub fn upgrade(
        &self,
        component: &[u8],
        params: &[(&str, String)],
    ) -> Result<UpgradeResponse, ApiClientError> {
        self.post_component(component, params)
    }

    /// Run `component` side by side with the active one; changes nothing.
    pub fn dry_run(
        &self,
        component: &[u8],
        params: &[(&str, String)],
    ) -> Result<DryRunReport, ApiClientError> {
        let mut params = params.to_vec();
        params.push(("dry_run", "true".into()));
        self.post_component(component, &params)
    }

    /// Go back to the previous component.
    pub fn rollback(&self) -> Result<UpgradeResponse, ApiClientError> {
        self.post_with(&self.long_agent, "/v1/rollback", &serde_json::json!({}))
    }

    /// The active component and the history of activations.
    pub fn components(&self) -> Result<ComponentHistory, ApiClientError> {
        self.get("/v1/components")
    }

    /// Which component applied each recent entry from `since` on.
    pub fn results(&self, since: u64) -> Result<Vec<AppliedRecord>, ApiClientError> {
        self.get(&format!("/v1/results?since={since}"))
    }

    fn post_component<R: DeserializeOwned>(
        &self,
        component: &[u8],
        params: &[(&str, String)],
    ) -> Result<R, ApiClientError> {
        let mut request = self.authorize(self.long_agent.post(self.url("/v1/upgrade")));
        for (name, value) in params {
            request = request.query(*name, value);
        }
        // A node that refuses the upload (no token, too small a role, two
        // uploads running) answers before the body is sent, instead of
        // closing the connection under a client still sending megabytes.
        let response = request
            .header("content-type", "application/wasm")
            .header("expect", "100-continue")
            .send(component)
            .map_err(|e| self.transport_error(e))?;
        self.decode(response)
    }

    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(value) => request.header("authorization", value),
            None => request,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn transport_error(&self, reason: impl ToString) -> ApiClientError {
        let reason = reason.to_string();
        let hint = scheme_hint(&self.base_url, &reason);
        ApiClientError::Transport {
            url: self.base_url.clone(),
            reason: format!("{reason}{hint}"),
        }
    }

    fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ApiClientError> {
        self.post_with(&self.agent, path, body)
    }

    fn post_with<B: Serialize, R: DeserializeOwned>(
        &self,
        agent: &ureq::Agent,
        path: &str,
        body: &B,
    ) -> Result<R, ApiClientError> {
        let json = serde_json::to_vec(body).map_err(|e| self.transport_error(e))?;
        let response = self
            .authorize(agent.post(self.url(path)))
            .header("content-type", "application/json")
            .send(&json[..])
            .map_err(|e| self.transport_error(e))?;
        self.decode(response)
    }

    fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, ApiClientError> {
        let response = self
            .authorize(self.agent.get(self.url(path)))
            .call()
            .map_err(|e| self.transport_error(e))?;
        self.decode(response)
    }

    fn decode<R: DeserializeOwned>(
        &self,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<R, ApiClientError> {
        let status = response.status();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| self.transport_error(e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| self.transport_error(format!("unreadable answer: {e}")));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ApiClientError::Api(body.error)),
            Err(_) => Err(self.transport_error(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            ))),
        }
    }
}

/// A hint when the answer looks like the other scheme: a TLS alert read
/// as HTTP, or plain HTTP read as TLS.
fn scheme_hint(url: &str, reason: &str) -> &'static str {
    if url.starts_with("http://") && reason.contains("invalid HTTP version") {
        " (does the node serve TLS? use an https:// URL)"
    } else if url.starts_with("https://") && reason.contains("InvalidContentType") {
        " (the node does not seem to serve TLS: use an http:// URL)"
    } else {
        ""
    }
}
