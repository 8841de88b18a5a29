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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_protocol_shares_the_router_with_raft() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seen = Seen::default();
    let host = HostBuilder::new(dir.path())
        .accept(ECHO_ALPN, seen.clone())
        .start()
        .await
        .expect("start");
    let client = iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .relay_mode(iroh::RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .expect("addr")
        .clear_relay_transports()
        .bind()
        .await
        .expect("client endpoint");
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
