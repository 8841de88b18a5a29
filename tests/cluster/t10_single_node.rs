//! A single library node: proposals commit through Raft, apply through the
//! guest, and survive a restart without being applied twice.

use iroh_raft::limits::MAX_COMMAND_BYTES;
use iroh_raft::node::ClientError;
use iroh_raft::wasm::{GuestFailure, GuestLimits};

use crate::common::{propose_ok, query_ok, start_node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_propose_then_query_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path(), "counter", GuestLimits::default());
    assert_eq!(propose_ok(&node, "add 5").await, "5");
    assert_eq!(propose_ok(&node, "add 2").await, "7");
    assert_eq!(query_ok(&node, "get").await, "7");
    let status = node.status().await.expect("status");
    assert_eq!(status.role, "leader");
    assert_eq!(status.guest.name, "counter");
    assert_eq!(status.commit_index, status.applied_index);
    // The bootstrap entry (this node joins the configuration), the
    // leader's no-op, and two commands.
    assert_eq!(status.applied_index, 4);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_results_carry_index_and_guest_errors_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path(), "counter", GuestLimits::default());
    let first = node.propose(b"add 1".to_vec()).await.expect("applied");
    let rejected = node.propose(b"frobnicate".to_vec()).await.expect("applied");
    assert_eq!(rejected.index, first.index + 1);
    assert!(matches!(
        rejected.result,
        Err(GuestFailure::Rejected { .. })
    ));
    assert_eq!(query_ok(&node, "get").await, "1");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_empty_and_oversized_commands_are_refused_before_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path(), "counter", GuestLimits::default());
    let before = node.status().await.expect("status").last_index;
    assert_eq!(
        node.propose(Vec::new()).await,
        Err(ClientError::EmptyCommand)
    );
    let huge = vec![b'x'; MAX_COMMAND_BYTES + 1];
    assert_eq!(
        node.propose(huge).await,
        Err(ClientError::CommandTooLarge {
            size_bytes: MAX_COMMAND_BYTES + 1,
            limit_bytes: MAX_COMMAND_BYTES
        })
    );
    assert_eq!(node.status().await.expect("status").last_index, before);
    // A command of exactly the limit is accepted (and rejected by the guest).
    let max = node
        .propose(vec![b'x'; MAX_COMMAND_BYTES])
        .await
        .expect("committed");
    assert!(matches!(max.result, Err(GuestFailure::Rejected { .. })));
    assert_eq!(propose_ok(&node, "add 3").await, "3");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t13_restart_reapplies_each_entry_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path(), "counter", GuestLimits::default());
    for _ in 0..50 {
        propose_ok(&node, "add 1").await;
    }
    node.shutdown().await;
    drop(node);

    let node = start_node(dir.path(), "counter", GuestLimits::default());
    assert_eq!(propose_ok(&node, "add 0").await, "50");
    assert_eq!(query_ok(&node, "get").await, "50");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t14_concurrent_clients_all_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path(), "kv", GuestLimits::default());
    let mut tasks = Vec::new();
    for client in 0..16 {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let command = format!("put k{client}-{i} v{i}");
                let applied = node.propose(command.into_bytes()).await.expect("applied");
                assert_eq!(applied.result.as_deref(), Ok(&b"OK"[..]));
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    assert_eq!(query_ok(&node, "count").await, "320");
    assert_eq!(query_ok(&node, "get k7-19").await, "v19");
    node.shutdown().await;
}
