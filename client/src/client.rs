//! The async client (reqwest on tokio).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{Call, ClientOptions, Config, EMPTY_JSON, Method, Payload, upgrade_path};
use crate::endpoint::IntoEndpoints;
use crate::error::{Error, decode, error_answer};
use crate::failover::{Plan, Step};
use crate::limits::{ID_PROBE_TIMEOUT, MAX_DOWNLOAD_BYTES, MAX_RESPONSE_BYTES};
use crate::status::{AppliedRecord, Consistency, NodeStatus, SnapshotInfo};
use crate::types::{
    AddMemberRequest, HealthResponse, MembershipResponse, ProposeRequest, ProposeResponse,
    QueryRequest, QueryResponse, ReadyResponse, TransferLeaderRequest, TransferLeaderResponse,
    UpgradeResponse,
};
use crate::upgrade::{ComponentHistory, DryRunReport};
use crate::watch::Watch;

/// An async client for the API of one node or of several (failing over
/// between them, see the [crate docs](crate#endpoints-and-failover)).
/// Cheap to clone; clones share their connections and what they learned
/// about the endpoints.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) http: reqwest::Client,
}

impl Client {
    /// A client of `endpoints` (URLs or `host:port`) with default options.
    pub fn new(endpoints: impl IntoEndpoints) -> Result<Self, Error> {
        Self::with_options(endpoints, &ClientOptions::default())
    }

    /// A client of `endpoints` with a token, the certificates to trust,
    /// timeouts and a retry policy (see [`ClientOptions`]).
    pub fn with_options(
        endpoints: impl IntoEndpoints,
        options: &ClientOptions,
    ) -> Result<Self, Error> {
        Self::from_config(Config::new(endpoints, options)?)
    }

    pub(crate) fn from_config(config: Config) -> Result<Self, Error> {
        let tls = crate::tls::client_config(config.options.ca_certs_pem.as_deref())?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .tcp_nodelay(true)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| Error::Config(format!("the HTTP client: {}", chain(&e))))?;
        Ok(Client {
            inner: Arc::new(Inner { config, http }),
        })
    }

    /// The endpoints, as parsed (`host:port` became `http://host:port`).
    pub fn endpoints(&self) -> &[String] {
        self.inner.config.endpoints.urls()
    }

    /// Propose a command; answers once it committed and the guest applied
    /// it. Never sent twice to the cluster unless the first attempt
    /// provably did not reach a node (see [`crate::failover`]).
    pub async fn propose(&self, command: impl AsRef<[u8]>) -> Result<ProposeResponse, Error> {
        let body = json(&ProposeRequest::from_bytes(command.as_ref()))?;
        self.json(Call::post("/v1/propose", &body)).await
    }

    /// A linearizable query.
    pub async fn query(&self, request: impl AsRef<[u8]>) -> Result<QueryResponse, Error> {
        self.query_with(request, Consistency::Linearizable).await
    }

    /// A query at `consistency`.
    pub async fn query_with(
        &self,
        request: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<QueryResponse, Error> {
        let body = json(&QueryRequest::from_bytes(request.as_ref(), consistency))?;
        self.json(Call::post("/v1/query", &body).repeatable()).await
    }

    /// The status of the node that answers (the preferred endpoint, or the
    /// next that can).
    pub async fn status(&self) -> Result<NodeStatus, Error> {
        let (endpoint, status): (_, NodeStatus) = self.json_at(Call::get("/v1/status")).await?;
        self.inner.config.endpoints.learn(endpoint, status.id);
        Ok(status)
    }

    /// `ok` if the node answering works (its loop answers and its applier
    /// moves).
    pub async fn health(&self) -> Result<HealthResponse, Error> {
        self.json(Call::get("/health")).await
    }

    /// `ready` if the node answering can serve now: it knows a leader and
    /// has applied close to the commit index; else an `Api` error whose
    /// code says why (`no_leader`, `catching_up`, ...).
    pub async fn ready(&self) -> Result<ReadyResponse, Error> {
        self.json(Call::get("/ready")).await
    }

    /// The node's metrics in the Prometheus text format.
    pub async fn metrics(&self) -> Result<String, Error> {
        let (endpoint, response) = self.send(&Call::get("/metrics")).await?;
        let body = read_limited(self.url(endpoint), response, MAX_RESPONSE_BYTES).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Add a voter (the leader does it; a follower answers `not_leader`
    /// with a hint the client follows): it joins as a learner and is
    /// promoted once caught up; answers then.
    pub async fn add_member(&self, ticket: &str) -> Result<MembershipResponse, Error> {
        self.change_members(AddMemberRequest {
            ticket: ticket.to_string(),
            ..Default::default()
        })
        .await
    }

    /// Add a node as a learner, or to replace a voter.
    pub async fn change_members(
        &self,
        request: AddMemberRequest,
    ) -> Result<MembershipResponse, Error> {
        let body = json(&request)?;
        self.json(Call::post("/v1/members", &body).long()).await
    }

    /// Remove a voter or learner.
    pub async fn remove_member(&self, id: u64) -> Result<MembershipResponse, Error> {
        self.json(Call::delete(format!("/v1/members/{id}"))).await
    }

    /// Hand leadership over (to `target`, or the most up-to-date voter).
    pub async fn transfer_leader(
        &self,
        target: Option<u64>,
    ) -> Result<TransferLeaderResponse, Error> {
        let body = json(&TransferLeaderRequest { target })?;
        self.json(Call::post("/v1/leader", &body)).await
    }

    /// Take a snapshot now (on the node that answers).
    pub async fn snapshot(&self) -> Result<SnapshotInfo, Error> {
        self.json(Call::post("/v1/snapshot", EMPTY_JSON).long())
            .await
    }

    /// Download the latest snapshot file of the node that answers into
    /// `out`; returns its size. Not retried once bytes were written.
    pub async fn download_snapshot<W>(&self, out: &mut W) -> Result<u64, Error>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::AsyncWriteExt as _;
        let call = Call {
            safety: crate::failover::Safety::Once,
            ..Call::get("/v1/snapshot/latest").long()
        };
        let (endpoint, mut response) = self.send(&call).await?;
        let url = self.url(endpoint);
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Error::transport(url, chain(&e), false))?
        {
            written += chunk.len() as u64;
            if written > MAX_DOWNLOAD_BYTES {
                return Err(Error::transport(
                    url,
                    format!("the snapshot is larger than {MAX_DOWNLOAD_BYTES} bytes"),
                    false,
                ));
            }
            out.write_all(&chunk)
                .await
                .map_err(|e| Error::Config(format!("writing the snapshot: {e}")))?;
        }
        out.flush()
            .await
            .map_err(|e| Error::Config(format!("writing the snapshot: {e}")))?;
        Ok(written)
    }

    /// Upgrade the cluster to `component` (validated and stored by the
    /// node, then activated through the log). `params` are the optional
    /// limits, e.g. `[("apply_fuel", "1000000".into())]`.
    pub async fn upgrade(
        &self,
        component: &[u8],
        params: &[(&str, String)],
    ) -> Result<UpgradeResponse, Error> {
        self.json(component_call(component, params)).await
    }

    /// Run `component` side by side with the active one; changes nothing.
    pub async fn dry_run(
        &self,
        component: &[u8],
        params: &[(&str, String)],
    ) -> Result<DryRunReport, Error> {
        let mut params = params.to_vec();
        params.push(("dry_run", "true".into()));
        self.json(component_call(component, &params)).await
    }

    /// Go back to the previous component.
    pub async fn rollback(&self) -> Result<UpgradeResponse, Error> {
        self.json(Call::post("/v1/rollback", EMPTY_JSON).long())
            .await
    }

    /// The active component and the history of activations.
    pub async fn components(&self) -> Result<ComponentHistory, Error> {
        self.json(Call::get("/v1/components")).await
    }

    /// Which component applied each recent entry from `since` on.
    pub async fn results(&self, since: u64) -> Result<Vec<AppliedRecord>, Error> {
        self.json(Call::get(format!("/v1/results?since={since}")))
            .await
    }

    /// Watch the changes of keys starting with `prefix` (empty: every key)
    /// in entries after `since` (`None`: from the answering node's applied
    /// index), as a [`Stream`](futures_core::Stream); see [`Watch`].
    pub fn watch(&self, prefix: impl AsRef<[u8]>, since: Option<u64>) -> Watch {
        Watch::new(self.clone(), prefix.as_ref().to_vec(), since)
    }

    pub(crate) fn url(&self, endpoint: usize) -> &str {
        self.inner.config.endpoints.url(endpoint)
    }

    async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, Error> {
        Ok(self.json_at(call).await?.1)
    }

    async fn json_at<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<(usize, T), Error> {
        let (endpoint, response) = self.send(&call).await?;
        let url = self.url(endpoint);
        let status = response.status().as_u16();
        let body = read_limited(url, response, MAX_RESPONSE_BYTES).await?;
        Ok((endpoint, decode(url, status, &body)?))
    }

    /// Send `call` where the failover plan says, until an endpoint answers
    /// with a success (whose body is not read yet).
    async fn send(&self, call: &Call<'_>) -> Result<(usize, reqwest::Response), Error> {
        let config = &self.inner.config;
        let endpoints = &config.endpoints;
        let mut plan = Plan::new(endpoints.len(), call.safety, config.retry);
        let mut endpoint = endpoints.preferred();
        let timeout = config.timeout_of(call);
        loop {
            let error = match self.attempt(endpoint, call, Some(timeout)).await {
                Ok(response) => {
                    endpoints.answered(endpoint);
                    return Ok((endpoint, response));
                }
                Err(error) => error,
            };
            let mut step = plan.failed(endpoint, self.url(endpoint), error, |id| {
                endpoints.of_id(id)
            });
            endpoint = loop {
                match step {
                    Step::Try { endpoint, after } => {
                        if let Some(pause) = after {
                            tokio::time::sleep(pause).await;
                        }
                        break endpoint;
                    }
                    Step::Locate { leader } => {
                        self.learn_ids(leader).await;
                        step = plan.located(endpoints.of_id(leader));
                    }
                    Step::Stop(error) => return Err(error),
                }
            };
        }
    }

    /// Ask the endpoints whose Raft id is unknown for it, until one has
    /// `wanted`.
    async fn learn_ids(&self, wanted: u64) {
        let endpoints = &self.inner.config.endpoints;
        for (endpoint, id) in endpoints.ids().into_iter().enumerate() {
            if id.is_some() {
                continue;
            }
            let probe = async {
                let response = self
                    .attempt(endpoint, &Call::get("/v1/status"), Some(ID_PROBE_TIMEOUT))
                    .await?;
                let url = self.url(endpoint);
                let status = response.status().as_u16();
                let body = read_limited(url, response, MAX_RESPONSE_BYTES).await?;
                decode::<IdOnly>(url, status, &body)
            };
            if let Ok(IdOnly { id }) = probe.await {
                endpoints.learn(endpoint, id);
                if id == wanted {
                    return;
                }
            }
        }
    }

    /// One request to one endpoint: the response if it is a success, else
    /// the error it carries.
    pub(crate) async fn attempt(
        &self,
        endpoint: usize,
        call: &Call<'_>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, Error> {
        let config = &self.inner.config;
        let url = self.url(endpoint);
        let full = format!("{url}{}", call.path);
        let http = &self.inner.http;
        let mut request = match call.method {
            Method::Get => http.get(&full),
            Method::Post => http.post(&full),
            Method::Delete => http.delete(&full),
        };
        if let Some(authorization) = &config.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        request = match call.payload {
            Payload::None => request,
            Payload::Json(body) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec()),
            Payload::Wasm(body) => request
                .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                .body(body.to_vec()),
        };
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::transport(url, chain(&e), e.is_connect()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = read_limited(url, response, MAX_RESPONSE_BYTES).await?;
        Err(error_answer(url, status.as_u16(), &body))
    }
}

/// The part of a status a client needs to follow leader hints.
#[derive(serde::Deserialize)]
struct IdOnly {
    id: u64,
}

fn component_call<'a>(component: &'a [u8], params: &[(&str, String)]) -> Call<'a> {
    Call {
        payload: Payload::Wasm(component),
        ..Call::post(upgrade_path(params), EMPTY_JSON).long()
    }
}

fn json(body: &impl Serialize) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(body).map_err(|e| Error::Config(format!("encoding the request: {e}")))
}

/// The whole body, at most `limit` bytes.
pub(crate) async fn read_limited(
    url: &str,
    mut response: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::transport(url, chain(&e), false))?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(Error::transport(
                url,
                format!("the answer is larger than {limit} bytes"),
                false,
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes (reqwest's own message names only the URL).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
