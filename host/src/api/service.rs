//! The API as the listener serves it: `POST /v1/propose` straight to its
//! handler, every other request through the axum router.
//!
//! Nearly every request a loaded node serves is a `propose`. Through the
//! router each one is matched against the route table, gets the stats
//! extension inserted, and passes the middleware layer, which clones the
//! service behind it and boxes a future of its own: about 4% of the
//! leader's CPU at 64 clients (BENCHMARKS.md, "Issue 16", step 24). The
//! direct path runs the same checks in the same order ([`super::gate`]:
//! the cross-site guard, the token, the body's admission) and the same
//! handler (`server::propose_body`), so a client cannot tell the
//! two apart: the bad-input, cross-site and token tests of a real node
//! (`tests/faults` t44, `host::api_tests`) go through it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use tower_service::Service;

use super::admission;
use super::auth;
use super::gate::Gate;
use super::guard;
use super::policy::policy;
use super::server::propose_body;
use crate::node::NodeHandle;

/// The path the direct path serves (with `POST`).
const PROPOSE_PATH: &str = "/v1/propose";

/// The listener's service: the router, and the direct path if any.
#[derive(Debug, Clone)]
pub struct ApiService {
    router: Router,
    propose: Option<Arc<DirectPropose>>,
}

impl ApiService {
    /// Serve `POST /v1/propose` by `propose`, the rest by `router`.
    pub fn new(router: Router, propose: DirectPropose) -> Self {
        ApiService {
            router,
            propose: Some(Arc::new(propose)),
        }
    }

    /// Everything by `router` (the answers to connections over the cap).
    pub fn router_only(router: Router) -> Self {
        ApiService {
            router,
            propose: None,
        }
    }
}

impl<B> Service<axum::http::Request<B>> for ApiService
where
    B: HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The router is always ready, and so is the direct path.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let request = request.map(Body::new);
        match &self.propose {
            Some(propose)
                if request.method() == Method::POST && request.uri().path() == PROPOSE_PATH =>
            {
                let propose = propose.clone();
                Box::pin(async move { Ok(propose.serve(request).await) })
            }
            _ => Box::pin(self.router.call(request)),
        }
    }
}

/// `POST /v1/propose` without the router: the gate the router's layer
/// runs, then the router's handler.
#[derive(Debug)]
pub struct DirectPropose {
    gate: Arc<Gate>,
    node: NodeHandle,
}

impl DirectPropose {
    pub fn new(gate: Arc<Gate>, node: NodeHandle) -> Self {
        DirectPropose { gate, node }
    }

    async fn serve(&self, request: Request) -> Response {
        if let Some(refused) = guard::refusal(&self.gate.access, &request) {
            return refused;
        }
        let route = policy(&Method::POST, PROPOSE_PATH);
        if let Some(refused) = auth::refusal(&self.gate.auth, &request, route.need) {
            return refused;
        }
        match admission::read_bytes(&self.gate.admission, request, route.body).await {
            Ok((_parts, body)) => propose_body(&self.node, Ok(body)).await.into_response(),
            Err(refused) => refused,
        }
    }
}
