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
//! connection is idle, so an idle connection is closed after it too. A
//! client that stops reading its answer is closed once writing to it has
//! made no progress for [`API_WRITE_STALL_TIMEOUT`].
//!
//! This replaces `axum::serve`, which has neither TLS nor limits.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::config::ApiLimits;
use super::server::ApiError;
use super::service::ApiService;
use super::stats::{ApiStats, Refused};
use crate::limits::{API_SHUTDOWN_GRACE, API_WRITE_STALL_TIMEOUT};

/// Pause after an accept error that is not the client's (out of file
/// descriptors): retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serve `app` on `listener` until `shutdown` resolves, then let requests
/// in flight finish for up to [`API_SHUTDOWN_GRACE`].
pub(super) async fn serve(
    listener: TcpListener,
    app: ApiService,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ApiLimits,
    stats: Arc<ApiStats>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let served = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(limits.max_refusing_connections));
    let refuse_app = ApiService::router_only(
        Router::new().fallback(move || async move { too_many_connections(limits) }),
    );
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
        let (app, permit, counted) = match served.clone().try_acquire_owned() {
            Ok(permit) => (app.clone(), permit, Some(stats.connection())),
            Err(_) => match refusing.clone().try_acquire_owned() {
                Ok(permit) => {
                    tracing::debug!(%peer, "API connection over the cap: answered 503");
                    stats.refused(Refused::TooManyConnections);
                    (refuse_app.clone(), permit, None)
                }
                Err(_) => {
                    tracing::debug!(%peer, "API connection over the cap: closed");
                    stats.refused(Refused::ClosedOverCap);
                    continue;
                }
            },
        };
        let keep_alive = counted.is_some();
        let tls = tls.clone();
        let stop = stop_rx.clone();
        connections.spawn(async move {
            let _permit = (permit, counted);
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
    app: ApiService,
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
    app: ApiService,
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
    let io = WriteStall::new(io, API_WRITE_STALL_TIMEOUT);
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

/// An IO whose writes fail with `TimedOut` once one has been pending (no
/// byte accepted) for `limit`: hyper has no write timeout, and a client
/// that never reads would hold its connection forever.
#[derive(Debug)]
struct WriteStall<I> {
    io: I,
    limit: Duration,
    /// Runs while a write is pending; reset by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> WriteStall<I> {
    fn new(io: I, limit: Duration) -> Self {
        WriteStall {
            io,
            limit,
            stalled: None,
        }
    }

    /// `poll` is the IO's answer: progress clears the timer, pending starts
    /// it (or fails once it ran out).
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client has not read its answer for too long",
            )));
        }
        Poll::Pending
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteStall<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteStall<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off() {
        // A pipe holding 64 bytes whose reader never reads.
        let (near, _far) = tokio::io::duplex(64);
        let mut io = WriteStall::new(near, Duration::from_millis(100));
        let error = io
            .write_all(&[0u8; 4096])
            .await
            .expect_err("the write stalls");
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_moving_client_is_not() {
        let (near, mut far) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut far, &mut sink)
                .await
                .map(|_| sink.len())
        });
        let mut io = WriteStall::new(near, Duration::from_secs(5));
        io.write_all(&[0u8; 64 * 1024]).await.expect("write");
        io.shutdown().await.expect("shutdown");
        drop(io);
        assert_eq!(reader.await.expect("join").expect("read"), 64 * 1024);
    }
}
