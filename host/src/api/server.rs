//! The HTTP/JSON API of a node, bound to 127.0.0.1 by default.
//!
//! | method | path          | body             | answer            |
//! |--------|---------------|------------------|-------------------|
//! | POST   | `/v1/propose` | `ProposeRequest` | `ProposeResponse` |
//! | POST   | `/v1/query`   | `QueryRequest`   | `QueryResponse`   |
//! | GET    | `/v1/status`  |                  | `NodeStatus`      |
//! | POST   | `/v1/members` | `AddMemberRequest` | `MembershipResponse` (leader only) |
//! | DELETE | `/v1/members/{id}` |             | `MembershipResponse` (leader only) |
//! | POST   | `/v1/leader`  | `TransferLeaderRequest` | `TransferLeaderResponse` (leader only) |
//! | POST   | `/v1/snapshot` |                 | `SnapshotInfo` (takes one now)   |
//! | GET    | `/v1/snapshot/latest` |          | the latest snapshot file (a backup) |
//! | POST   | `/v1/upgrade`, `/v1/rollback`; GET `/v1/components`, `/v1/results` | see [`super::upgrades`] | |
//! | GET    | `/v1/watch?prefix=&since=` |     | a stream of `WatchLine`s, see [`super::watch`] |
//! | GET    | `/ui`         |                  | the dashboard, see [`super::ui`] |
//! | GET    | `/health`     |                  | `HealthResponse`  |
//! | GET    | `/ready`      |                  | `ReadyResponse`, or `503` saying why not (`no_leader`, `catching_up`, ...) |
//! | GET    | `/metrics`    |                  | Prometheus text (format 0.0.4), see [`crate::node::metrics`] |
//!
//! Every error is `ErrorBody` JSON with a stable code; bad input never
//! reaches the node. POST bodies are `Content-Type: application/json`
//! (`/v1/upgrade`: `application/wasm`); requests a web page could forge
//! are refused first (see [`super::guard`]), then requests without the
//! role a route needs (see [`super::policy`] and [`super::auth`]), then
//! bodies too large or too slow (see [`super::admission`]). Connections are
//! capped and TLS is served by [`super::listener`].

use crate::limits::SNAPSHOT_TIMEOUT;
use crate::limits::{APPLIER_STALLED_AFTER, DEFAULT_REQUEST_TIMEOUT, MAX_COMMAND_BYTES};
use crate::limits::{MAX_API_BODY_BYTES, MEMBERSHIP_TIMEOUT, READY_MAX_APPLY_LAG_ENTRIES};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::de::DeserializeOwned;

use super::admission::Admission;
use super::auth::AuthState;
use super::config::{ApiConfig, ExposureError};
use super::gate::Gate;
#[cfg(doc)]
use super::guard::ApiAccess;
use super::service::{ApiService, DirectPropose};
use super::stats::ApiStats;
use super::types::{
    AddMemberRequest, ErrorBody, ErrorInfo, HealthResponse, MembershipResponse, Output,
    ProposeRequest, ProposeResponse, QueryRequest, QueryResponse, ReadyResponse,
    TransferLeaderRequest, TransferLeaderResponse, bytes_from,
};

use crate::node::{ClientError, MembershipChange, NodeHandle, SnapshotInfo};
use crate::transport::NodeTicket;
use crate::wasm::GuestFailure;

/// An API error, rendered as `ErrorBody` JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    pub(super) info: ErrorInfo,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            info: ErrorInfo::new(code, message),
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> Self {
        let status = match &error {
            ClientError::NotLeader { .. } | ClientError::Overloaded | ClientError::Stopped => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ClientError::ProposalDropped => StatusCode::CONFLICT,
            ClientError::EmptyCommand => StatusCode::BAD_REQUEST,
            ClientError::CommandTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ClientError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ClientError::InvalidMembership(_) => StatusCode::CONFLICT,
            ClientError::SnapshotFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ClientError::InvalidComponent(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ClientError::UpgradeRefused(_) => StatusCode::CONFLICT,
            ClientError::Diverged { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ClientError::OutcomeUnknown => StatusCode::GATEWAY_TIMEOUT,
            ClientError::ForwardRefused { .. } => StatusCode::BAD_GATEWAY,
            ClientError::GuestStalled { .. } => StatusCode::INSUFFICIENT_STORAGE,
        };
        let mut api = ApiError::new(status, error.code(), error.to_string());
        if let ClientError::NotLeader { leader_hint } = error {
            api.info.leader_hint = leader_hint;
        }
        api
    }
}

pub(super) fn guest_error(failure: GuestFailure, index: Option<u64>) -> ApiError {
    let mut api = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        failure.code(),
        failure.to_string(),
    );
    api.info.index = index;
    api
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(ErrorBody { error: self.info })).into_response()
    }
}

/// Build the API router for `node`, answering to addresses and
/// `localhost` only, with no authentication (see [`router_with`]).
pub fn router(node: NodeHandle) -> Router {
    router_with(node, ApiConfig::default())
}

/// Build the API router for `node`: `config` names the host names it also
/// answers to (see [`super::guard`]), its tokens (see [`super::auth`]) and
/// the limits on request bodies (see [`super::admission`]); an
/// [`ApiAccess`] alone is a config without tokens.
///
/// Each request passes, in order: the cross-site guard, authentication,
/// the body's admission, then its handler.
pub fn router_with(node: NodeHandle, config: impl Into<ApiConfig>) -> Router {
    router_and_gate(node, config.into(), Arc::new(ApiStats::default())).0
}

/// [`router_with`], counting refusals in `stats` (shared with the
/// listener, shown on `/metrics`), and the gate its layer runs (for
/// [`super::service`]'s direct path).
fn router_and_gate(
    node: NodeHandle,
    config: ApiConfig,
    stats: Arc<ApiStats>,
) -> (Router, Arc<Gate>) {
    let max_watchers = config.limits.max_watchers;
    let gate = gate_for(config, stats.clone());
    (router_gated(node, gate.clone(), max_watchers, stats), gate)
}

/// The checks every request passes (see [`super::gate`]), as `config`
/// says.
fn gate_for(config: ApiConfig, stats: Arc<ApiStats>) -> Arc<Gate> {
    Arc::new(Gate {
        access: config.access,
        auth: AuthState {
            tokens: config.tokens,
            stats: stats.clone(),
        },
        admission: Admission::new(config.limits, stats),
    })
}

/// The router, every request passing `gate` first.
fn router_gated(
    node: NodeHandle,
    gate: Arc<Gate>,
    max_watchers: usize,
    stats: Arc<ApiStats>,
) -> Router {
    Router::new()
        .route("/v1/propose", post(propose))
        .route("/v1/query", post(query))
        .route("/v1/status", get(status))
        .route("/v1/members", post(add_member))
        .route("/v1/members/{id}", delete(remove_member))
        .route("/v1/leader", post(transfer_leader))
        .route("/v1/snapshot", post(take_snapshot))
        .route("/v1/snapshot/latest", get(latest_snapshot))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(super::upgrades::routes())
        .merge(super::watch::routes(max_watchers))
        .merge(super::ui::routes())
        .fallback(not_found)
        // After every route: it applies to the routes registered before it.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_API_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            gate,
            super::gate::pass,
        ))
        .layer(axum::Extension(stats))
        .with_state(node)
}

/// Why the API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Exposure(#[from] ExposureError),
    #[error("binding the API to {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Bind `addr` and serve the API until the node stops (plain HTTP, no
/// tokens: `addr` must be a loopback address).
pub async fn serve(node: NodeHandle, addr: SocketAddr) -> Result<ServeHandle, ServeError> {
    serve_with(node, addr, ApiConfig::default()).await
}

/// [`serve`] as `config` says: its host names, tokens, TLS and limits.
/// Without tokens, an address beyond loopback is refused unless
/// [`ApiConfig::insecure`] is set (see [`ApiConfig::check_exposure`]).
pub async fn serve_with(
    node: NodeHandle,
    addr: SocketAddr,
    config: impl Into<ApiConfig>,
) -> Result<ServeHandle, ServeError> {
    let config = config.into();
    config.check_exposure(addr)?;
    let bind_error = |source| ServeError::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    let tls = config
        .tls
        .as_ref()
        .map(|tls| tokio_rustls::TlsAcceptor::from(tls.config.clone()));
    let limits = config.limits;
    let serves_tls = tls.is_some();
    let stopping = node.clone();
    let stats = Arc::new(ApiStats::default());
    let task = tokio::spawn(async move {
        let (router, gate) = router_and_gate(node.clone(), config, stats.clone());
        let app = ApiService::new(router, DirectPropose::new(gate, node));
        let shutdown = async move {
            stopping.stopped().await;
        };
        super::listener::serve(listener, app, tls, limits, stats, shutdown).await;
    });
    Ok(ServeHandle {
        local_addr,
        tls: serves_tls,
        task,
    })
}

/// A running API server.
#[derive(Debug)]
pub struct ServeHandle {
    pub local_addr: SocketAddr,
    /// It serves https.
    pub tls: bool,
    pub task: tokio::task::JoinHandle<()>,
}

impl ServeHandle {
    /// The URL clients use: `https://` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }
}

/// The request body, or why it could not be read (too large, ...).
pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(status, code, rejection.body_text())
    })
}

fn parse_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body_bytes(body)?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("the body is not valid JSON for this call: {e}"))
    })
}

async fn within_timeout<T>(
    call: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ApiError> {
    within(DEFAULT_REQUEST_TIMEOUT, call).await
}

pub(super) async fn within<T>(
    timeout: std::time::Duration,
    call: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ClientError::Timeout {
            timeout_ms: timeout.as_millis() as u64,
        }
        .into()),
    }
}

async fn propose(
    State(node): State<NodeHandle>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<ProposeResponse>, ApiError> {
    propose_body(&node, body).await
}

/// `POST /v1/propose` once its body is read: the router's handler and
/// [`super::service`]'s direct path.
pub(super) async fn propose_body(
    node: &NodeHandle,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<ProposeResponse>, ApiError> {
    let request: ProposeRequest = parse_json(body)?;
    let command = bytes_from(request.command, request.command_base64, "command")
        .map_err(ApiError::bad_request)?;
    let applied = within_timeout(node.propose(command)).await?;
    match applied.result {
        Ok(bytes) => Ok(axum::Json(ProposeResponse {
            index: applied.index,
            term: applied.term,
            output: Output::from_bytes(&bytes),
            fuel_used: applied.fuel_used,
        })),
        Err(failure) => Err(guest_error(failure, Some(applied.index))),
    }
}

async fn query(
    State(node): State<NodeHandle>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<QueryResponse>, ApiError> {
    let request: QueryRequest = parse_json(body)?;
    let consistency = request.consistency;
    let request = bytes_from(request.request, request.request_base64, "request")
        .map_err(ApiError::bad_request)?;
    if request.len() > MAX_COMMAND_BYTES {
        return Err(ClientError::CommandTooLarge {
            size_bytes: request.len(),
            limit_bytes: MAX_COMMAND_BYTES,
        }
        .into());
    }
    let answer = within_timeout(node.query_with(request, consistency.unwrap_or_default())).await?;
    match answer.result {
        Ok(bytes) => Ok(axum::Json(QueryResponse {
            applied_index: answer.applied_index,
            output: Output::from_bytes(&bytes),
            fuel_used: answer.fuel_used,
        })),
        Err(failure) => Err(guest_error(failure, None)),
    }
}

async fn status(
    State(node): State<NodeHandle>,
) -> Result<axum::Json<crate::node::NodeStatus>, ApiError> {
    Ok(axum::Json(within_timeout(node.status()).await?))
}

async fn health(State(node): State<NodeHandle>) -> Result<axum::Json<HealthResponse>, ApiError> {
    // Healthy means the node loop answers, not merely that HTTP is up,
    // and the applier moves.
    let status = within_timeout(node.status()).await?;
    if let Some(stalled) = applier_stalled(&status) {
        return Err(stalled);
    }
    Ok(axum::Json(HealthResponse {
        status: "ok".into(),
    }))
}

/// `503 applier_stalled` when the applier has been on one entry for
/// [`APPLIER_STALLED_AFTER`].
fn applier_stalled(status: &crate::node::NodeStatus) -> Option<ApiError> {
    let busy = status.applier_busy.as_ref()?;
    (busy.for_ms >= APPLIER_STALLED_AFTER.as_millis() as u64).then(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "applier_stalled",
            format!(
                "the applier has been on entry {} for {} s (a guest looping through a \
                 large fuel budget?); nothing after it applies meanwhile",
                busy.index,
                busy.for_ms / 1000
            ),
        )
    })
}

/// `GET /ready`: whether a load balancer should send this node clients
/// now. `/health` says the node works; ready says more: it is healthy, it
/// knows a leader (so writes can be forwarded and linearizable reads
/// answered), it has not diverged, its guest takes commands, and its
/// applied index is within [`READY_MAX_APPLY_LAG_ENTRIES`] of the commit
/// index it knows.
///
/// A follower knows the commit index the leader sends it, which raft caps
/// at what the follower already holds: a follower far behind in its *log*
/// looks caught up here while entries are still streaming in. The lag
/// counted is the applier's, the one that makes reads stale.
async fn ready(State(node): State<NodeHandle>) -> Result<axum::Json<ReadyResponse>, ApiError> {
    let status = within_timeout(node.status()).await?;
    readiness(&status).map(axum::Json)
}

/// [`ready`]'s verdict on a status; the first reason found wins, the
/// gravest first.
fn readiness(status: &crate::node::NodeStatus) -> Result<ReadyResponse, ApiError> {
    let not_ready =
        |code: &str, message: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
    if let Some(stalled) = applier_stalled(status) {
        return Err(stalled);
    }
    if let Some(divergence) = &status.diverged {
        return Err(not_ready(
            "diverged",
            format!(
                "node {} diverged from the majority at index {} and stopped applying",
                status.id, divergence.index
            ),
        ));
    }
    let Some(leader_id) = status.leader_id else {
        return Err(not_ready(
            "no_leader",
            format!(
                "node {} knows no leader in term {} (an election, or it cannot reach a \
                 majority)",
                status.id, status.term
            ),
        ));
    };
    let lag = status.commit_index.saturating_sub(status.applied_index);
    if lag > READY_MAX_APPLY_LAG_ENTRIES {
        return Err(not_ready(
            "catching_up",
            format!(
                "node {} has applied {} of {} committed entries ({lag} behind, more than \
                 {READY_MAX_APPLY_LAG_ENTRIES})",
                status.id, status.applied_index, status.commit_index
            ),
        ));
    }
    if status.guest.refusing_commands {
        return Err(not_ready(
            "guest_stalled",
            format!(
                "node {}'s guest cannot checkpoint its state and refuses new commands",
                status.id
            ),
        ));
    }
    Ok(ReadyResponse {
        status: "ready".into(),
        leader_id,
        term: status.term,
        commit_index: status.commit_index,
        applied_index: status.applied_index,
    })
}

async fn metrics(
    State(node): State<NodeHandle>,
    axum::Extension(stats): axum::Extension<Arc<ApiStats>>,
) -> Result<Response, ApiError> {
    let mut registry = within_timeout(node.metrics_registry()).await?;
    registry.register_collector(Box::new(stats));
    Ok((
        [(header::CONTENT_TYPE, crate::node::metrics::CONTENT_TYPE)],
        crate::node::metrics::encode_text(&registry),
    )
        .into_response())
}

async fn add_member(
    State(node): State<NodeHandle>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<MembershipResponse>, ApiError> {
    let request: AddMemberRequest = parse_json(body)?;
    let ticket: NodeTicket = request
        .ticket
        .parse()
        .map_err(|e: crate::membership::TicketError| ApiError::bad_request(e.to_string()))?;
    let (id, addr) = (ticket.raft_id, ticket.addr);
    let change = match (request.learner, request.replaces) {
        (true, Some(_)) => {
            return Err(ApiError::bad_request(
                "a replacement becomes a voter; `learner` and `replaces` exclude each other",
            ));
        }
        (true, None) => MembershipChange::AddLearner { id, addr },
        (false, Some(old)) => MembershipChange::Replace { old, id, addr },
        (false, None) => MembershipChange::AddVoter { id, addr },
    };
    let index = within(MEMBERSHIP_TIMEOUT, node.change_membership(change)).await?;
    Ok(axum::Json(MembershipResponse { index }))
}

async fn transfer_leader(
    State(node): State<NodeHandle>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<TransferLeaderResponse>, ApiError> {
    let request: TransferLeaderRequest = parse_json(body)?;
    let leader_id = within_timeout(node.transfer_leader(request.target)).await?;
    Ok(axum::Json(TransferLeaderResponse { leader_id }))
}

async fn take_snapshot(
    State(node): State<NodeHandle>,
) -> Result<axum::Json<SnapshotInfo>, ApiError> {
    Ok(axum::Json(within(SNAPSHOT_TIMEOUT, node.snapshot()).await?))
}

/// The latest snapshot file, streamed (a consistent backup of the state).
async fn latest_snapshot(State(node): State<NodeHandle>) -> Result<Response, ApiError> {
    let status = within_timeout(node.status()).await?;
    let Some(path) = node.latest_snapshot_path() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_snapshot",
            format!(
                "node {} has no snapshot yet; POST /v1/snapshot takes one",
                status.id
            ),
        ));
    };
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "snapshot_unreadable",
            format!("{}: {e}", path.display()),
        )
    })?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

async fn remove_member(
    State(node): State<NodeHandle>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<axum::Json<MembershipResponse>, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let index = within_timeout(node.change_membership(MembershipChange::RemoveNode { id })).await?;
    Ok(axum::Json(MembershipResponse { index }))
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /v1/propose, /v1/query, /v1/status, /v1/watch, /health, \
         /ready, /metrics",
    )
}

/// A route that exists, called with a method it does not take (axum keeps
/// the `Allow` header listing the ones it does).
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not take {method}; the Allow header lists the methods it does",
            uri.path()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeStatus;
    use iroh_raft_client::status::{ApplierBusy, Divergence, GuestStatus};

    fn healthy() -> NodeStatus {
        NodeStatus {
            id: 2,
            role: "follower".into(),
            term: 3,
            leader_id: Some(1),
            commit_index: 5_000,
            applied_index: 5_000 - READY_MAX_APPLY_LAG_ENTRIES,
            last_index: 5_000,
            voters: vec![1, 2, 3],
            pending_proposals: 0,
            members: Vec::new(),
            guest: GuestStatus {
                name: "kv".into(),
                version: "0.1.0".into(),
                hash: "ab".into(),
                since_index: 0,
                applied_entries: 0,
                failed_entries: 0,
                instance_rebuilds: 0,
                world: None,
                store: None,
                checkpoint_failures: 0,
                checkpoint_failing_since: None,
                uncheckpointed_bytes: 0,
                refusing_commands: false,
                examples: Vec::new(),
            },
            data_dir: "/tmp/x".into(),
            ticket: None,
            snapshot_index: None,
            first_log_index: 1,
            applier_busy: None,
            diverged: None,
            last_verified_state_check: None,
        }
    }

    fn code(status: &NodeStatus) -> String {
        match readiness(status) {
            Ok(ready) => ready.status,
            Err(error) => {
                assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
                error.info.code
            }
        }
    }

    #[test]
    fn readiness_names_the_first_reason_not_to_serve() {
        // At the bound: still ready.
        let ready = readiness(&healthy()).expect("ready");
        assert_eq!((ready.status.as_str(), ready.leader_id), ("ready", 1));

        let mut status = healthy();
        status.applied_index -= 1;
        assert_eq!(code(&status), "catching_up");

        let mut status = healthy();
        status.leader_id = None;
        assert_eq!(code(&status), "no_leader");

        let mut status = healthy();
        status.guest.refusing_commands = true;
        assert_eq!(code(&status), "guest_stalled");

        let mut status = healthy();
        status.leader_id = None;
        status.diverged = Some(Divergence {
            index: 40,
            own_hash: "aa".into(),
            majority_hash: "bb".into(),
            majority: vec![1, 3],
        });
        assert_eq!(code(&status), "diverged");

        status.applier_busy = Some(ApplierBusy {
            index: 41,
            for_ms: APPLIER_STALLED_AFTER.as_millis() as u64,
        });
        assert_eq!(code(&status), "applier_stalled");
    }
}
