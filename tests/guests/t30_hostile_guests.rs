//! Hostile guests: each failure is the documented error, the state is
//! exactly as before the failing entry, limits are enforced, and the node
//! keeps serving.

use iroh_raft::node::NodeHandle;
use iroh_raft::wasm::{GuestFailure, GuestLimits};

use crate::common::{propose_ok, query_ok, start_node};

/// Small budgets keep the runaway guests' tests fast; the defaults are far
/// larger.
fn tight_limits() -> GuestLimits {
    GuestLimits {
        apply_fuel: 50_000_000,
        query_fuel: 50_000_000,
        memory_limit_bytes: 32 * 1024 * 1024,
        ..GuestLimits::default()
    }
}

async fn failing_apply(node: &NodeHandle, command: &str) -> (u64, GuestFailure) {
    let applied = node
        .propose(command.as_bytes().to_vec())
        .await
        .expect("the entry commits even though the guest fails");
    let failure = applied.result.expect_err("the guest must fail");
    (applied.index, failure)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_infinite_loop_runs_out_of_fuel_and_rolls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = tight_limits();
    let node = start_node(dir.path(), "hostile_loop", limits);
    assert_eq!(propose_ok(&node, "add 5").await, "5");
    let (_, failure) = failing_apply(&node, "loop").await;
    assert_eq!(
        failure,
        GuestFailure::OutOfFuel {
            budget: limits.apply_fuel
        }
    );
    // The guest added 1000 before looping: the rollback must undo it.
    assert_eq!(query_ok(&node, "get").await, "5");
    assert_eq!(propose_ok(&node, "add 1").await, "6");
    // A query that loops fails the same way and changes nothing.
    let answer = node.query(b"loop".to_vec()).await.expect("answered");
    assert_eq!(
        answer.result,
        Err(GuestFailure::OutOfFuel {
            budget: limits.query_fuel
        })
    );
    assert_eq!(query_ok(&node, "get").await, "6");
    let status = node.status().await.expect("status");
    assert_eq!(status.guest.instance_rebuilds, 2);
    assert_eq!(status.guest.failed_entries, 1, "queries are not entries");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t31_memory_bomb_hits_the_cap_and_rolls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = tight_limits();
    let node = start_node(dir.path(), "hostile_memory", limits);
    assert_eq!(propose_ok(&node, "add 7").await, "7");
    let (_, failure) = failing_apply(&node, "grow").await;
    assert_eq!(
        failure,
        GuestFailure::MemoryLimit {
            limit_bytes: limits.memory_limit_bytes
        }
    );
    assert_eq!(query_ok(&node, "get").await, "7");
    assert_eq!(propose_ok(&node, "add 1").await, "8");
    let answer = node.query(b"grow".to_vec()).await.expect("answered");
    assert!(matches!(
        answer.result,
        Err(GuestFailure::MemoryLimit { .. })
    ));
    assert_eq!(query_ok(&node, "get").await, "8");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t32_trap_halfway_through_an_apply_rolls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path(), "hostile_trap", GuestLimits::default());
    assert_eq!(propose_ok(&node, "add 3").await, "3");
    let (index, failure) = failing_apply(&node, "trap").await;
    assert!(
        matches!(&failure, GuestFailure::Trapped { message } if message.contains("unreachable")),
        "unexpected failure at {index}: {failure:?}"
    );
    assert_eq!(query_ok(&node, "get").await, "3");
    // Many entries after the trap, then another trap: the rebuild replays
    // them all and loses none.
    for _ in 0..100 {
        propose_ok(&node, "add 1").await;
    }
    failing_apply(&node, "trap").await;
    assert_eq!(query_ok(&node, "get").await, "103");
    let answer = node.query(b"trap".to_vec()).await.expect("answered");
    assert!(matches!(answer.result, Err(GuestFailure::Trapped { .. })));
    assert_eq!(query_ok(&node, "get").await, "103");
    assert_eq!(propose_ok(&node, "print hello").await, "printed");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t33_failures_are_deterministic_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path(), "hostile_trap", GuestLimits::default());
    propose_ok(&node, "add 2").await;
    let (_, first) = failing_apply(&node, "trap").await;
    propose_ok(&node, "add 2").await;
    node.shutdown().await;
    drop(node);

    // The replay after a restart meets the same trap at the same entry and
    // reaches the same state.
    let node = start_node(dir.path(), "hostile_trap", GuestLimits::default());
    assert_eq!(query_ok(&node, "get").await, "4");
    let (_, again) = failing_apply(&node, "trap").await;
    assert_eq!(again, first);
    let status = node.status().await.expect("status");
    assert_eq!(
        status.guest.failed_entries, 2,
        "the replayed trap and the new one"
    );
    node.shutdown().await;
}
