//! The upgrade endpoints of the API.
//!
//! | method | path              | body                  | answer            |
//! |--------|-------------------|-----------------------|-------------------|
//! | POST   | `/v1/upgrade`     | the component (.wasm) | `UpgradeResponse`, or with `?dry_run=true` a `DryRunReport` |
//! | POST   | `/v1/rollback`    |                       | `UpgradeResponse` |
//! | GET    | `/v1/components`  |                       | `ComponentHistory` |
//! | GET    | `/v1/results`     |                       | `[AppliedRecord]` (`?since=INDEX&limit=N`) |
//!
//! `/v1/upgrade` takes the raw component bytes (up to
//! [`MAX_COMPONENT_BYTES`]) and optional query parameters: `dry_run`,
//! `entries` (how many recent entries a dry run compares), `apply_fuel`,
//! `query_fuel`, `memory_limit_mib` (the new component's limits, replicated
//! with its activation).

use crate::limits::MAX_COMPONENT_BYTES;
use crate::limits::{MAX_RESULTS_PER_CALL, UPGRADE_TIMEOUT};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;

use super::server::{ApiError, body_bytes, within};
use super::types::{UpgradeParams, UpgradeResponse};
use crate::node::AppliedRecord;
use crate::node::upgrade::handle::activated_record;
use crate::node::upgrade::{ComponentHistory, DryRunReport, LimitOverrides, UpgradeOptions};
use crate::node::{Applied, NodeHandle};

/// The upgrade routes, merged into the API router.
pub fn routes() -> Router<NodeHandle> {
    Router::new()
        .route(
            "/v1/upgrade",
            post(upgrade).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES as usize)),
        )
        .route("/v1/rollback", post(rollback))
        .route("/v1/components", get(components))
        .route("/v1/results", get(results))
}

/// What an upgrade's query parameters ask for, checked.
fn upgrade_options(params: &UpgradeParams) -> Result<UpgradeOptions, ApiError> {
    let memory_limit_bytes = match params.memory_limit_mib {
        Some(mib) => Some(mib.checked_mul(1024 * 1024).ok_or_else(|| {
            ApiError::bad_request(format!("memory_limit_mib {mib} is too large"))
        })?),
        None => None,
    };
    Ok(UpgradeOptions {
        limits: LimitOverrides {
            apply_fuel: params.apply_fuel,
            query_fuel: params.query_fuel,
            memory_limit_bytes,
            maintenance_fuel: None,
        },
        dry_run_entries: params.entries,
    })
}

/// `/v1/results` parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsParams {
    #[serde(default)]
    pub since: u64,
    pub limit: Option<usize>,
}

async fn upgrade(
    State(node): State<NodeHandle>,
    params: Result<Query<UpgradeParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let body = body_bytes(body)?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the body must be the component file (.wasm)",
        ));
    }
    let options = upgrade_options(&params)?;
    if params.dry_run {
        let report: DryRunReport =
            within(UPGRADE_TIMEOUT, node.dry_run(body.to_vec(), options)).await?;
        return Ok(axum::Json(report).into_response());
    }
    let applied = within(UPGRADE_TIMEOUT, node.upgrade(body.to_vec(), options)).await?;
    Ok(axum::Json(upgrade_response(applied)?).into_response())
}

async fn rollback(State(node): State<NodeHandle>) -> Result<axum::Json<UpgradeResponse>, ApiError> {
    let applied = within(UPGRADE_TIMEOUT, node.rollback()).await?;
    Ok(axum::Json(upgrade_response(applied)?))
}

fn upgrade_response(applied: Applied) -> Result<UpgradeResponse, ApiError> {
    let record = activated_record(&applied);
    match (applied.result, record) {
        (Ok(_), Some(record)) => Ok(UpgradeResponse {
            index: applied.index,
            record,
        }),
        (Ok(_), None) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the activation applied without a record",
        )),
        (Err(failure), _) => Err(super::server::guest_error(failure, Some(applied.index))),
    }
}

async fn components(State(node): State<NodeHandle>) -> axum::Json<ComponentHistory> {
    axum::Json(node.components())
}

async fn results(
    State(node): State<NodeHandle>,
    params: Result<Query<ResultsParams>, QueryRejection>,
) -> Result<axum::Json<Vec<AppliedRecord>>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = params
        .limit
        .unwrap_or(MAX_RESULTS_PER_CALL)
        .min(MAX_RESULTS_PER_CALL);
    Ok(axum::Json(node.recent_results(params.since, limit)))
}
