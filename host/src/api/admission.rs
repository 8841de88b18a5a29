//! Request bodies are read here, before any handler, within a size and a
//! time limit: a client announcing megabytes and sending a trickle is
//! answered `408 body_timeout` and its connection closed, instead of
//! holding a connection (and a file descriptor) for as long as it likes.
//!
//! | body (see [`super::policy`]) | at most               | within                       | at once |
//! |------------------------------|-----------------------|------------------------------|---------|
//! | JSON (and none)              | `MAX_API_BODY_BYTES`  | [`ApiLimits::body_timeout`]  | one per connection |
//! | a component (`/v1/upgrade`)  | `MAX_COMPONENT_BYTES` | [`ApiLimits::component_body_timeout`] | [`ApiLimits::max_component_uploads`], else `503 too_many_uploads` |
//!
//! A larger announced body is answered `413 body_too_large`: unread when
//! the client sent `Expect: 100-continue`, else after reading (and
//! dropping) up to the limit of it, so the client is not cut off while
//! still sending. The headers' own timeout is the connection's (see
//! [`super::listener`]).

use std::pin::Pin;
use std::sync::Arc;

use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::config::ApiLimits;
use super::policy::BodyKind;
use super::server::ApiError;
use super::stats::{ApiStats, Refused};
use crate::limits::{MAX_API_BODY_BYTES, MAX_COMPONENT_BYTES};

/// The middleware's state: the limits, and the upload permits.
#[derive(Debug)]
pub struct Admission {
    limits: ApiLimits,
    uploads: Arc<Semaphore>,
    stats: Arc<ApiStats>,
}

impl Admission {
    pub fn new(limits: ApiLimits, stats: Arc<ApiStats>) -> Self {
        Admission {
            uploads: Arc::new(Semaphore::new(limits.max_component_uploads)),
            limits,
            stats,
        }
    }
}

/// Read the request's body within its limits (module doc), the last step
/// of [`super::gate`]: the request comes back with its body whole, or
/// the answer that refuses it.
pub(super) async fn read_body(
    admission: &Admission,
    request: Request,
    body_kind: BodyKind,
) -> Result<Request, Response> {
    let (parts, bytes) = read_bytes(admission, request, body_kind).await?;
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// [`read_body`], giving the body's bytes apart from the request's head
/// (for [`super::service`]'s direct path, which reads them at once).
pub(super) async fn read_bytes(
    admission: &Admission,
    request: Request,
    body_kind: BodyKind,
) -> Result<(axum::http::request::Parts, Bytes), Response> {
    let (limit_bytes, timeout) = match body_kind {
        BodyKind::Component => (
            MAX_COMPONENT_BYTES as usize,
            admission.limits.component_body_timeout,
        ),
        BodyKind::Json | BodyKind::None => (MAX_API_BODY_BYTES, admission.limits.body_timeout),
    };
    // Held until the answer is sent: the handler keeps the bytes that long.
    let _upload = if body_kind == BodyKind::Component {
        match admission.uploads.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                admission.stats.refused(Refused::TooManyUploads);
                let mut response = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_uploads",
                    format!(
                        "{} component uploads are running (each may buffer up to {} MiB); \
                         try again when one has finished",
                        admission.limits.max_component_uploads,
                        MAX_COMPONENT_BYTES / (1024 * 1024)
                    ),
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return Err(closing(response));
            }
        }
    } else {
        None
    };
    // A body announced too large is refused unread when the client waits
    // for our go-ahead (`Expect: 100-continue`). Otherwise it is already
    // sending: up to the limit of it is read and dropped first, so a client
    // slightly over gets its 413 instead of a broken pipe mid-write.
    let keep = match content_length(request.headers()) {
        Some(announced) if announced > limit_bytes as u64 => {
            if request.headers().contains_key(header::EXPECT) {
                admission.stats.refused(Refused::BodyTooLarge);
                return Err(closing(too_large(limit_bytes)));
            }
            false
        }
        _ => true,
    };
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(timeout, collect(body, limit_bytes, keep)).await {
        Ok(Ok(bytes)) if keep => bytes,
        Ok(Ok(_)) | Ok(Err(Collect::TooLarge)) => {
            admission.stats.refused(Refused::BodyTooLarge);
            return Err(closing(too_large(limit_bytes)));
        }
        Ok(Err(Collect::Failed(reason))) => {
            return Err(closing(
                ApiError::bad_request(format!("reading the body: {reason}")).into_response(),
            ));
        }
        Err(_) => {
            admission.stats.refused(Refused::BodyTimeout);
            tracing::debug!(path = %parts.uri.path(), "a request body took too long");
            return Err(closing(
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body did not arrive within {} s; this connection is closed",
                        timeout.as_secs_f64()
                    ),
                )
                .into_response(),
            ));
        }
    };
    Ok((parts, bytes))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn too_large(limit_bytes: usize) -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than this call takes ({limit_bytes} bytes)"),
    )
    .into_response()
}

/// An answer sent before the body was read whole: the connection cannot
/// carry another request.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

enum Collect {
    TooLarge,
    Failed(String),
}

/// The body, up to `limit_bytes`; with `keep` false its bytes are read
/// and dropped (and an empty body returned).
async fn collect(mut body: Body, limit_bytes: usize, keep: bool) -> Result<Bytes, Collect> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| Collect::Failed(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > limit_bytes {
            return Err(Collect::TooLarge);
        }
        if keep {
            chunks.push(data);
        }
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut all = Vec::with_capacity(total);
            for chunk in chunks {
                all.extend_from_slice(&chunk);
            }
            Bytes::from(all)
        }
    })
}
