//! Every request's way in, as one middleware: the cross-site guard
//! ([`super::guard`]), then authentication ([`super::auth`]), then the
//! body's admission ([`super::admission`]). One layer instead of three:
//! each axum `from_fn` layer clones the service behind it and boxes a
//! future per request, and the route's policy is looked up once here
//! instead of once per check.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::admission::{self, Admission};
use super::auth::{self, AuthState};
use super::guard::{self, ApiAccess};
use super::policy::policy;

/// What the three checks need.
#[derive(Debug)]
pub struct Gate {
    pub access: ApiAccess,
    pub auth: AuthState,
    pub admission: Admission,
}

/// The middleware: refuse or pass on, in the order of the module doc.
pub async fn pass(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    if let Some(refused) = guard::refusal(&gate.access, &request) {
        return refused;
    }
    let route = policy(request.method(), request.uri().path());
    if let Some(refused) = auth::refusal(&gate.auth, &request, route.need) {
        return refused;
    }
    match admission::read_body(&gate.admission, request, route.body).await {
        Ok(request) => next.run(request).await,
        Err(refused) => refused,
    }
}
