//! The blocking client (ureq): every call does its I/O on the calling
//! thread, so it works in any thread (a test thread inside a network
//! namespace included) and inside async code without a runtime of its own.
//! Its [`watch`](Client::watch) is the exception: it drives the async
//! [`Watch`] on a private current-thread runtime (still on
//! the calling thread), and so must not be called from async code.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{Call, ClientOptions, Config, EMPTY_JSON, Method, Payload, upgrade_path};
use crate::endpoint::IntoEndpoints;
use crate::error::{Error, decode, error_answer};
use crate::failover::{Plan, Safety, Step};
use crate::limits::{ID_PROBE_TIMEOUT, MAX_DOWNLOAD_BYTES, MAX_RESPONSE_BYTES};
use crate::status::{AppliedRecord, Consistency, NodeStatus, SnapshotInfo};
use crate::types::{
    AddMemberRequest, HealthResponse, MembershipResponse, ProposeRequest, ProposeResponse,
    QueryRequest, QueryResponse, ReadyResponse, TransferLeaderRequest, TransferLeaderResponse,
    UpgradeResponse,
};
use crate::upgrade::{ComponentHistory, DryRunReport};
use crate::watch::{Changes, Watch};

/// A blocking client for the API of one node or of several (failing over
/// between them, see the [crate docs](crate#endpoints-and-failover)).
/// Cheap to clone; clones share what they learned about the endpoints.
#[derive(Debug, Clone)]
pub struct Client {
    config: Config,
    agent: ureq::Agent,
    long_agent: ureq::Agent,
}

impl Client {
    /// A client of `endpoints` with default options. Never fails: an
    /// endpoint that does not parse is kept as given and each call to it
    /// fails (use [`Client::with_options`] to be told at once).
    pub fn new(endpoints: impl IntoEndpoints) -> Self {
        Self::with_timeout(endpoints, crate::limits::CLIENT_TIMEOUT)
    }

    /// [`Client::new`] whose calls give up after `timeout` (calls that may
    /// take minutes still get [`LONG_CLIENT_TIMEOUT`]). A call that timed
    /// out may still take effect on the node.
    ///
    /// [`LONG_CLIENT_TIMEOUT`]: crate::limits::LONG_CLIENT_TIMEOUT
    pub fn with_timeout(endpoints: impl IntoEndpoints, timeout: Duration) -> Self {
        let options = ClientOptions {
            timeout: Some(timeout),
            ..Default::default()
        };
        let items = endpoints.into_items();
        let config = Config::new(items.clone(), &options)
            .unwrap_or_else(|_| Config::verbatim(items, &options));
        Self::build(config, ureq::tls::TlsConfig::default())
    }

    /// A client of `endpoints` with a token, the certificates to trust
    /// (`https://` URLs), timeouts and a retry policy (see
    /// [`ClientOptions`]).
    pub fn with_options(
        endpoints: impl IntoEndpoints,
        options: &ClientOptions,
    ) -> Result<Self, Error> {
        let config = Config::new(endpoints, options)?;
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(pem) = &options.ca_certs_pem {
            let certs: Vec<ureq::tls::Certificate<'static>> = crate::config::parse_ca_pem(pem)?
                .iter()
                .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
                .collect();
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        Ok(Self::build(config, tls.build()))
    }

    fn build(config: Config, tls: ureq::tls::TlsConfig) -> Self {
        let agent = |timeout| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(timeout))
                .tls_config(tls.clone())
                .build()
                .into()
        };
        let long = crate::limits::LONG_CLIENT_TIMEOUT.max(config.timeout);
        Client {
            agent: agent(config.timeout),
            long_agent: agent(long),
            config,
        }
    }

    /// The endpoints, as parsed (`host:port` became `http://host:port`).
    pub fn endpoints(&self) -> &[String] {
        self.config.endpoints.urls()
    }

    /// Propose a command; answers once it committed and the guest applied
    /// it. Never sent twice to the cluster unless the first attempt
    /// provably did not reach a node (see [`crate::failover`]).
    pub fn propose(&self, command: impl AsRef<[u8]>) -> Result<ProposeResponse, Error> {
        let body = json(&ProposeRequest::from_bytes(command.as_ref()))?;
        self.json(Call::post("/v1/propose", &body))
    }

    /// A linearizable query.
    pub fn query(&self, request: impl AsRef<[u8]>) -> Result<QueryResponse, Error> {
        self.query_with(request, Consistency::Linearizable)
    }

    /// A query at `consistency`.
    pub fn query_with(
        &self,
        request: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<QueryResponse, Error> {
        let body = json(&QueryRequest::from_bytes(request.as_ref(), consistency))?;
        self.json(Call::post("/v1/query", &body).repeatable())
    }

    /// The status of the node that answers.
    pub fn status(&self) -> Result<NodeStatus, Error> {
        let (endpoint, status): (_, NodeStatus) = self.json_at(Call::get("/v1/status"))?;
        self.config.endpoints.learn(endpoint, status.id);
        Ok(status)
    }

    /// `ok` if the node answering works.
    pub fn health(&self) -> Result<HealthResponse, Error> {
        self.json(Call::get("/health"))
    }

    /// `ready` if the node answering can serve now (see the async
    /// client's `ready`).
    pub fn ready(&self) -> Result<ReadyResponse, Error> {
        self.json(Call::get("/ready"))
    }

    /// The node's metrics in the Prometheus text format.
    pub fn metrics(&self) -> Result<String, Error> {
        let (endpoint, response) = self.send(&Call::get("/metrics"))?;
        let body = read_limited(self.url(endpoint), response, MAX_RESPONSE_BYTES)?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Add a voter: it joins as a learner and is promoted once caught up;
    /// answers then.
    pub fn add_member(&self, ticket: &str) -> Result<MembershipResponse, Error> {
        self.change_members(AddMemberRequest {
            ticket: ticket.to_string(),
            ..Default::default()
        })
    }

    /// Add a node as a learner, or to replace a voter.
    pub fn change_members(&self, request: AddMemberRequest) -> Result<MembershipResponse, Error> {
        let body = json(&request)?;
        self.json(Call::post("/v1/members", &body).long())
    }

    /// Remove a voter or learner.
    pub fn remove_member(&self, id: u64) -> Result<MembershipResponse, Error> {
        self.json(Call::delete(format!("/v1/members/{id}")))
    }

    /// Hand leadership over (to `target`, or the most up-to-date voter).
    pub fn transfer_leader(&self, target: Option<u64>) -> Result<TransferLeaderResponse, Error> {
        let body = json(&TransferLeaderRequest { target })?;
        self.json(Call::post("/v1/leader", &body))
    }

    /// Take a snapshot now (on the node that answers).
    pub fn snapshot(&self) -> Result<SnapshotInfo, Error> {
        self.json(Call::post("/v1/snapshot", EMPTY_JSON).long())
    }

    /// Download the latest snapshot file of the node that answers into
    /// `out`; returns its size. Not retried once bytes were written.
    pub fn download_snapshot(&self, out: &mut impl std::io::Write) -> Result<u64, Error> {
        let call = Call {
            safety: Safety::Once,
            ..Call::get("/v1/snapshot/latest").long()
        };
        let (endpoint, mut response) = self.send(&call)?;
        let url = self.url(endpoint);
        let mut reader = response
            .body_mut()
            .with_config()
            .limit(MAX_DOWNLOAD_BYTES)
            .reader();
        std::io::copy(&mut reader, out).map_err(|e| Error::transport(url, e, false))
    }

    /// Upgrade the cluster to `component` (validated and stored by the
    /// node, then activated through the log). `params` are the optional
    /// limits, e.g. `[("apply_fuel", "1000000".into())]`.
    pub fn upgrade(
        &self,
        component: &[u8],
        params: &[(&str, String)],
    ) -> Result<UpgradeResponse, Error> {
        self.json(component_call(component, params))
    }

    /// [`Self::upgrade`], counting in `sent` the bytes of the component
    /// sent so far (for a progress bar read from another thread).
    pub fn upgrade_with_progress(
        &self,
        component: &[u8],
        params: &[(&str, String)],
        sent: &Arc<AtomicU64>,
    ) -> Result<UpgradeResponse, Error> {
        let call = Call {
            sent: Some(Arc::clone(sent)),
            ..component_call(component, params)
        };
        self.json(call)
    }

    /// Run `component` side by side with the active one; changes nothing.
    pub fn dry_run(
        &self,
        component: &[u8],
        params: &[(&str, String)],
    ) -> Result<DryRunReport, Error> {
        let mut params = params.to_vec();
        params.push(("dry_run", "true".into()));
        self.json(component_call(component, &params))
    }

    /// Go back to the previous component.
    pub fn rollback(&self) -> Result<UpgradeResponse, Error> {
        self.json(Call::post("/v1/rollback", EMPTY_JSON).long())
    }

    /// The active component and the history of activations.
    pub fn components(&self) -> Result<ComponentHistory, Error> {
        self.json(Call::get("/v1/components"))
    }

    /// Which component applied each recent entry from `since` on.
    pub fn results(&self, since: u64) -> Result<Vec<AppliedRecord>, Error> {
        self.json(Call::get(format!("/v1/results?since={since}")))
    }

    /// Watch the changes of keys starting with `prefix` in entries after
    /// `since` (`None`: from the answering node's applied index): an
    /// iterator of [`Changes`], resumed across dropped connections like
    /// the async [`Watch`]. Refused inside an async runtime (use the async
    /// client there).
    pub fn watch(&self, prefix: impl AsRef<[u8]>, since: Option<u64>) -> Result<WatchIter, Error> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::Config(
                "the blocking watch cannot run inside an async runtime: use \
                 iroh_raft_client::Client::watch there"
                    .into(),
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("the watch's runtime: {e}")))?;
        let client = {
            let _entered = runtime.enter();
            crate::Client::from_config(self.config.clone())?
        };
        Ok(WatchIter {
            watch: client.watch(prefix, since),
            runtime,
        })
    }

    fn url(&self, endpoint: usize) -> &str {
        self.config.endpoints.url(endpoint)
    }

    fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, Error> {
        Ok(self.json_at(call)?.1)
    }

    fn json_at<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<(usize, T), Error> {
        let (endpoint, response) = self.send(&call)?;
        let url = self.url(endpoint);
        let status = response.status().as_u16();
        let body = read_limited(url, response, MAX_RESPONSE_BYTES)?;
        Ok((endpoint, decode(url, status, &body)?))
    }

    /// Send `call` where the failover plan says, until an endpoint answers
    /// with a success (whose body is not read yet).
    fn send(&self, call: &Call<'_>) -> Result<(usize, Response), Error> {
        let endpoints = &self.config.endpoints;
        let mut plan = Plan::new(endpoints.len(), call.safety, self.config.retry);
        let mut endpoint = endpoints.preferred();
        let agent = if call.long {
            &self.long_agent
        } else {
            &self.agent
        };
        loop {
            let error = match self.attempt(agent, endpoint, call, None) {
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
                            std::thread::sleep(pause);
                        }
                        break endpoint;
                    }
                    Step::Locate { leader } => {
                        self.learn_ids(leader);
                        step = plan.located(endpoints.of_id(leader));
                    }
                    Step::Stop(error) => return Err(error),
                }
            };
        }
    }

    /// Ask the endpoints whose Raft id is unknown for it, until one has
    /// `wanted`.
    fn learn_ids(&self, wanted: u64) {
        let endpoints = &self.config.endpoints;
        for (endpoint, id) in endpoints.ids().into_iter().enumerate() {
            if id.is_some() {
                continue;
            }
            let probe = self
                .attempt(
                    &self.agent,
                    endpoint,
                    &Call::get("/v1/status"),
                    Some(ID_PROBE_TIMEOUT),
                )
                .and_then(|response| {
                    let url = self.url(endpoint);
                    let status = response.status().as_u16();
                    let body = read_limited(url, response, MAX_RESPONSE_BYTES)?;
                    decode::<IdOnly>(url, status, &body)
                });
            if let Ok(IdOnly { id }) = probe {
                endpoints.learn(endpoint, id);
                if id == wanted {
                    return;
                }
            }
        }
    }

    fn attempt(
        &self,
        agent: &ureq::Agent,
        endpoint: usize,
        call: &Call<'_>,
        timeout: Option<Duration>,
    ) -> Result<Response, Error> {
        let url = self.url(endpoint);
        let full = format!("{url}{}", call.path);
        let authorization = self.config.authorization.as_deref();
        let sent = match call.method {
            Method::Get | Method::Delete => {
                let mut request = if call.method == Method::Get {
                    agent.get(&full)
                } else {
                    agent.delete(&full)
                };
                if let Some(value) = authorization {
                    request = request.header("authorization", value);
                }
                if let Some(timeout) = timeout {
                    request = request.config().timeout_global(Some(timeout)).build();
                }
                request.call()
            }
            Method::Post => {
                let mut request = agent.post(&full);
                if let Some(value) = authorization {
                    request = request.header("authorization", value);
                }
                match call.payload {
                    Payload::Wasm(body) => {
                        let request = request
                            .header("content-type", "application/wasm")
                            // A node that refuses the upload (no token, too
                            // small a role, two uploads running) answers
                            // before the body is sent, instead of closing
                            // the connection under a client still sending
                            // megabytes.
                            .header("expect", "100-continue");
                        match &call.sent {
                            Some(sent) => {
                                sent.store(0, Ordering::Relaxed);
                                let mut reader = Counting { body, sent };
                                // Announced, so the reader is not sent chunked.
                                request
                                    .header("content-length", body.len().to_string())
                                    .send(ureq::SendBody::from_reader(&mut reader))
                            }
                            None => request.send(body),
                        }
                    }
                    Payload::Json(body) => request
                        .header("content-type", "application/json")
                        .send(body),
                    Payload::None => request.send_empty(),
                }
            }
        };
        let mut response = sent.map_err(|e| Error::transport(url, &e, is_connect(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| Error::transport(url, e, false))?;
        Err(error_answer(url, status.as_u16(), &body))
    }
}

type Response = ureq::http::Response<ureq::Body>;

/// The connection could not be opened: the request never left.
fn is_connect(error: &ureq::Error) -> bool {
    use std::io::ErrorKind;
    match error {
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::NetworkDown
                | ErrorKind::AddrNotAvailable
        ),
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(timeout) => {
            matches!(timeout, ureq::Timeout::Connect | ureq::Timeout::Resolve)
        }
        _ => false,
    }
}

fn read_limited(url: &str, mut response: Response, limit: u64) -> Result<Vec<u8>, Error> {
    response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| Error::transport(url, e, false))
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

/// A component's bytes as a reader that counts what was read (sent).
struct Counting<'a> {
    body: &'a [u8],
    sent: &'a AtomicU64,
}

impl std::io::Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = std::io::Read::read(&mut self.body, buf)?;
        self.sent.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

fn json(body: &impl Serialize) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(body).map_err(|e| Error::Config(format!("encoding the request: {e}")))
}

/// A blocking watch: an iterator of [`Changes`] (see [`Client::watch`]).
#[derive(Debug)]
pub struct WatchIter {
    // Declared before the runtime: dropped (with its connection) first.
    watch: Watch,
    runtime: tokio::runtime::Runtime,
}

impl WatchIter {
    /// The index up to which every change was delivered.
    pub fn resume_index(&self) -> Option<u64> {
        self.watch.resume_index()
    }
}

impl Iterator for WatchIter {
    type Item = Result<Changes, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.runtime.block_on(self.watch.next())
    }
}
