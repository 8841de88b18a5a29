//! Accepting API connections: TLS, a cap on connections, and a timeout on
//! each request's headers.
//!
//! ```text
//!  accept ──► permit of ApiLimits::max_connections? ──yes──► [TLS handshake] ─► HTTP/1.1, the API router
//!                  │ no                                       (header_timeout)   (header_timeout per request,
//!                  ▼                                                              body timeouts: admission)
//!            permit of max_refusing_connections? ──yes──► [TLS] ─► `503 too_many_connections`, closed
//!                  │ no
//!                  ▼
//!               closed at once
//! ```
//!
//! A connection over the cap is answered, not left waiting: a client sees
//! `503 too_many_connections` (JSON, `Retry-After`) at once, and a flood
//! costs the node at most `max_connections + max_refusing_connections`
//! file descriptors. hyper's header timeout also runs while a keep-alive
//! connection is idle, so an idle connection is closed after it too.
//!
//! This replaces `axum::serve`, which has neither TLS nor limits.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::config::ApiLimits;
use super::server::ApiError;
use crate::limits::API_SHUTDOWN_GRACE;

/// Pause after an accept error that is not the client's (out of file
/// descriptors): retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serve `app` on `listener` until `shutdown` resolves, then let requests
/// in flight finish for up to [`API_SHUTDOWN_GRACE`].
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ApiLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let served = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(limits.max_refusing_connections));
    let refuse_app = Router::new().fallback(move || async move { too_many_connections(limits) });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Finished connections are reaped here, so the set stays as small
        // as the connections open.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            // Shutdown first: a stopping node takes no new clients.
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if !is_connection_error(&error) {
                        tracing::warn!(%error, "the API cannot accept connections");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
        };
        let (app, permit, keep_alive) = match served.clone().try_acquire_owned() {
            Ok(permit) => (app.clone(), permit, true),
            Err(_) => match refusing.clone().try_acquire_owned() {
                Ok(permit) => {
                    tracing::debug!(%peer, "API connection over the cap: answered 503");
                    (refuse_app.clone(), permit, false)
                }
                Err(_) => {
                    tracing::debug!(%peer, "API connection over the cap: closed");
                    continue;
                }
            },
        };
        let tls = tls.clone();
        let stop = stop_rx.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            connection(stream, tls, app, limits, keep_alive, stop).await;
        });
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(API_SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            open = connections.len(),
            "API connections still open at shutdown: dropped"
        );
    }
}

/// One connection: the TLS handshake if any, then HTTP/1.1.
async fn connection(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    limits: ApiLimits,
    keep_alive: bool,
    stop: watch::Receiver<bool>,
) {
    match tls {
        None => http(stream, app, limits, keep_alive, stop).await,
        Some(acceptor) => {
            match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => http(stream, app, limits, keep_alive, stop).await,
                Ok(Err(error)) => tracing::debug!(%error, "API TLS handshake failed"),
                Err(_) => tracing::debug!("API TLS handshake took too long"),
            }
        }
    }
}

async fn http<I>(
    io: I,
    app: Router,
    limits: ApiLimits,
    keep_alive: bool,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(keep_alive);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "API connection ended");
            }
        }
        () = async { drop(stop.wait_for(|stop| *stop).await) } => {
            // Idle connections close now, a request in flight is answered.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn too_many_connections(limits: ApiLimits) -> Response {
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
        format!(
            "this node serves {} API connections at once and all are taken; try again \
             (the cap is --api-max-connections)",
            limits.max_connections
        ),
    )
    .into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Errors of one connection (the client went away), not of the listener.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
