//! A host from guest bytes, and a host sharing the router with another
//! protocol.

use std::sync::Arc;
use std::time::Duration;

use iroh::endpoint::Connection;
use iroh::protocol::{AcceptError, ProtocolHandler};

use super::{HostBuilder, HostError};
use crate::node::{GuestSource, NodeError};

fn kv_bytes() -> bytes::Bytes {
    std::fs::read(env!("IROH_RAFT_GUEST_KV"))
        .expect("the build script built the kv guest")
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_from_bytes_runs_and_is_kept_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guest = GuestSource::Bytes(kv_bytes());
    let host = HostBuilder::new(dir.path())
        .guest(guest.clone())
        .start()
        .await
        .expect("start");
    let applied = host
        .node()
        .propose(b"put a 1".to_vec())
        .await
        .expect("propose");
    assert!(applied.result.is_ok(), "{:?}", applied.result);
    assert_eq!(host.node().status().await.expect("status").guest.name, "kv");
    host.node().snapshot().await.expect("snapshot");
    host.shutdown().await;

    // The same bytes again: accepted (checked against the snapshot).
    let host = HostBuilder::new(dir.path())
        .guest(guest)
        .start()
        .await
        .expect("restart with the same bytes");
    let answer = host.node().query(b"get a".to_vec()).await.expect("query");
    assert_eq!(answer.result.as_deref(), Ok(&b"1"[..]));
    host.shutdown().await;

    // Other bytes (the counter): refused, the data dir keeps its guest.
    let other = GuestSource::Bytes(bytes::Bytes::from_static(crate::wasm::DEFAULT_GUEST));
    let refused = HostBuilder::new(dir.path()).guest(other).start().await;
    assert!(
        matches!(
            refused,
            Err(HostError::Node(NodeError::GuestMismatch { .. }))
        ),
        "{refused:?}"
    );
}

const ECHO_ALPN: &[u8] = b"test/echo/0";

/// Tells the test that a connection arrived.
#[derive(Debug, Clone, Default)]
struct Seen(Arc<tokio::sync::Notify>);

impl ProtocolHandler for Seen {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        self.0.notify_one();
        connection.closed().await;
        Ok(())
    }
}

/// An iroh endpoint on loopback, relay off: a peer or a stranger.
async fn client_endpoint() -> iroh::Endpoint {
    iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .relay_mode(iroh::RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .expect("addr")
        .clear_relay_transports()
        .bind()
        .await
        .expect("client endpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_protocol_shares_the_router_with_raft() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seen = Seen::default();
    let host = HostBuilder::new(dir.path())
        .accept(ECHO_ALPN, seen.clone())
        .start()
        .await
        .expect("start");
    let client = client_endpoint().await;
    let target = host.addr().endpoint_addr().expect("address");
    // A stranger reaches the other protocol (no allowlist hook) ...
    let connection = client
        .connect(target.clone(), ECHO_ALPN)
        .await
        .expect("connect");
    let (mut send, _recv) = connection.open_bi().await.expect("stream");
    send.write_all(b"hi").await.expect("write");
    // ... while the node keeps serving.
    let applied = host
        .node()
        .propose(b"add 1".to_vec())
        .await
        .expect("propose");
    assert_eq!(applied.result.as_deref(), Ok(&b"1"[..]));
    tokio::time::timeout(Duration::from_secs(10), seen.0.notified())
        .await
        .expect("the other protocol got the connection");
    connection.close(0u32.into(), b"done");
    client.close().await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_runs_on_the_callers_endpoint_and_router() {
    let (dir1, dir2) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let config = crate::transport::TransportConfig {
        bind_addr: "127.0.0.1:0".parse().expect("addr"),
        advertise_addrs: Vec::new(),
        relay: crate::transport::RelayChoice::Disabled,
    };
    let endpoint = crate::transport::net::endpoint_builder(iroh::SecretKey::generate(), &config)
        .expect("builder")
        .bind()
        .await
        .expect("bind");
    let first = HostBuilder::new(dir1.path())
        .endpoint(endpoint.clone(), Vec::new())
        .external_router()
        .start()
        .await
        .expect("start");
    assert!(first.router().is_none());
    let router = iroh::protocol::Router::builder(endpoint)
        .accept(crate::transport::RAFT_ALPN, first.protocol_handler())
        .spawn();
    let joining = HostBuilder::new(dir2.path())
        .id(2)
        .join(first.ticket().clone())
        .bind()
        .await
        .expect("bind");
    let ticket = joining.ticket();
    // Node 2 reaches node 1 only through the caller's router.
    let (added, second) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(first.add_voter(&ticket), joining.start())
    })
    .await
    .expect("node 2 joins in time");
    added.expect("added");
    let second = second.expect("started");
    let applied = second
        .node()
        .propose(b"add 3".to_vec())
        .await
        .expect("forwarded");
    assert_eq!(applied.result.as_deref(), Ok(&b"3"[..]));
    second.shutdown().await;
    first.shutdown().await;
    router.shutdown().await.expect("router");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_past_its_connection_limit_is_refused() {
    use crate::limits::MAX_CONNECTIONS_PER_PEER;
    use crate::transport::handler::CLOSE_TOO_MANY_CONNECTIONS;

    let dir = tempfile::tempdir().expect("tempdir");
    let client = client_endpoint().await;
    let host = HostBuilder::new(dir.path())
        .allow(client.id())
        .start()
        .await
        .expect("start");
    let target = host.addr().endpoint_addr().expect("address");
    let mut open = Vec::new();
    for _ in 0..MAX_CONNECTIONS_PER_PEER {
        let connection = client
            .connect(target.clone(), crate::transport::RAFT_ALPN)
            .await
            .expect("connect");
        open.push(connection);
    }
    open.push(
        client
            .connect(target.clone(), crate::transport::RAFT_ALPN)
            .await
            .expect("the handshake completes"),
    );
    // The host takes a slot when its accept task runs, and those tasks may
    // run in another order than the handshakes finished: one connection of
    // the MAX + 1, not necessarily the last, is refused.
    let (reason, refused, _) = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::select_all(open.iter().map(|c| Box::pin(c.closed()))),
    )
    .await
    .expect("one connection is closed");
    assert!(
        matches!(
            &reason,
            iroh::endpoint::ConnectionError::ApplicationClosed(close)
                if close.error_code == CLOSE_TOO_MANY_CONNECTIONS.into()
        ),
        "{reason:?}"
    );
    open.remove(refused);
    assert!(
        open.iter().all(|c| c.close_reason().is_none()),
        "the other connections stay open"
    );
    // Closing one frees a slot.
    open.pop().expect("one").close(0u32.into(), b"done");
    let again = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let connection = client
                .connect(target.clone(), crate::transport::RAFT_ALPN)
                .await
                .expect("connect");
            let refused = tokio::time::timeout(Duration::from_millis(500), connection.closed())
                .await
                .is_ok();
            if !refused {
                return connection;
            }
        }
    })
    .await
    .expect("a slot frees up once a connection closed");
    again.close(0u32.into(), b"done");
    for connection in open {
        connection.close(0u32.into(), b"done");
    }
    client.close().await;
    host.shutdown().await;
}
