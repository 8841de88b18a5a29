//! A memory-state guest filled past its memory cap: checkpoints fail once
//! the state no longer fits twice, the node says so (status, metrics),
//! keeps applying without rebuilding the guest after every entry (also when
//! a restart replays the log), refuses new commands with `guest_stalled`
//! once the guest cannot make progress, and takes them again after an
//! upgrade that raises the cap.

use iroh_raft::node::upgrade::{LimitOverrides, UpgradeOptions};
use iroh_raft::node::{ClientError, NodeHandle};
use iroh_raft::wasm::{GuestFailure, GuestLimits};

use crate::common::{guest, propose_ok, query_ok, start_node};

/// Small enough that 64 KiB values fill it in a few hundred puts.
const CAP_BYTES: u64 = 16 * 1024 * 1024;
const VALUE_BYTES: usize = 64 * 1024;
/// More puts than the cap can hold: the fill ends long before, or fails.
const MAX_PUTS: u64 = 1_000;
/// Rebuilds allowed per life of the node: the failed checkpoints, their
/// retries and the one entry that hit the cap. Before the back-off it was
/// one per entry once checkpoints failed (about a hundred here).
const FEW_REBUILDS: u64 = 6;

fn put_command(i: u64) -> Vec<u8> {
    let value = format!("{i:08}").repeat(VALUE_BYTES / 8);
    format!("put k{i} {value}").into_bytes()
}

/// Put `k1`, `k2`, ... until the node refuses; the puts that applied.
async fn fill_until_refused(node: &NodeHandle) -> u64 {
    let mut stored = 0;
    for i in 1..=MAX_PUTS {
        match node.propose(put_command(i)).await {
            Ok(applied) => match applied.result {
                Ok(_) => stored += 1,
                // The put that found no room left: rolled back.
                Err(GuestFailure::MemoryLimit { limit_bytes }) => {
                    assert_eq!(limit_bytes, CAP_BYTES)
                }
                Err(other) => panic!("put {i} failed in the guest: {other}"),
            },
            Err(ClientError::GuestStalled { .. }) => return stored,
            Err(other) => panic!("put {i}: {other}"),
        }
    }
    panic!("the node never refused a command");
}

async fn refused_put(node: &NodeHandle) -> ClientError {
    node.propose(put_command(MAX_PUTS + 1))
        .await
        .expect_err("the node refuses new commands")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t35_kv_past_its_memory_cap_refuses_commands_until_an_upgrade_raises_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = GuestLimits {
        memory_limit_bytes: CAP_BYTES,
        ..GuestLimits::default()
    };
    let node = start_node(dir.path(), "kv", limits);
    let stored = fill_until_refused(&node).await;

    let status = node.status().await.expect("status").guest;
    assert!(status.refusing_commands, "{status:?}");
    let since = status.checkpoint_failing_since.expect("checkpoints fail");
    assert!(since < stored, "{status:?}");
    assert!(status.checkpoint_failures >= 1, "{status:?}");
    assert!(status.uncheckpointed_bytes > 0, "{status:?}");
    assert!(status.instance_rebuilds <= FEW_REBUILDS, "{status:?}");
    let refusal = refused_put(&node).await;
    let message = refusal.to_string();
    assert_eq!(refusal.code(), "guest_stalled");
    let since_text = format!("since index {since}");
    for needle in [since_text.as_str(), "--memory-limit-mib", "store-backed"] {
        assert!(message.contains(needle), "{needle:?} missing in {message}");
    }
    let metrics = node.metrics_text().await.expect("metrics");
    for line in [
        "iroh_raft_guest_checkpoints_failing 1\n",
        "iroh_raft_guest_stalled 1\n",
        "iroh_raft_proposals_total{outcome=\"guest_stalled\"} 2\n",
    ] {
        assert!(metrics.contains(line), "{line:?} missing in\n{metrics}");
    }
    // Reads go on; no snapshot can be taken.
    assert_eq!(query_ok(&node, "count").await, stored.to_string());
    assert!(query_ok(&node, "get k1").await.starts_with("00000001"));
    let snapshot = node
        .snapshot()
        .await
        .expect_err("the state does not serialize");
    assert!(
        matches!(snapshot, ClientError::SnapshotFailed(_)),
        "{snapshot}"
    );

    // A restart replays the whole log (no snapshot was written) without a
    // rebuild per entry, and comes back to the same verdict.
    node.shutdown().await;
    drop(node);
    let node = start_node(dir.path(), "kv", limits);
    assert_eq!(query_ok(&node, "count").await, stored.to_string());
    let status = node.status().await.expect("status").guest;
    assert!(status.instance_rebuilds <= FEW_REBUILDS, "{status:?}");
    assert!(status.refusing_commands, "{status:?}");
    assert!(matches!(
        refused_put(&node).await,
        ClientError::GuestStalled { .. }
    ));

    // The way out: the same guest with four times the memory.
    let kv = std::fs::read(guest("kv")).expect("kv component");
    let options = UpgradeOptions {
        limits: LimitOverrides {
            memory_limit_bytes: Some(4 * CAP_BYTES),
            ..LimitOverrides::default()
        },
        ..UpgradeOptions::default()
    };
    let upgraded = node.upgrade(kv, options).await.expect("upgrade proposed");
    assert!(upgraded.result.is_ok(), "{:?}", upgraded.result);
    assert_eq!(propose_ok(&node, "put after upgrade").await, "OK");
    assert_eq!(query_ok(&node, "count").await, (stored + 1).to_string());
    let status = node.status().await.expect("status").guest;
    assert_eq!(status.checkpoint_failing_since, None, "{status:?}");
    assert!(!status.refusing_commands, "{status:?}");
    node.snapshot().await.expect("the state serializes again");
    node.shutdown().await;
}
