//! Store-backed guests (WIT 0.2.0) on one node: the same answers as the
//! memory guest, per-entry transactions (a failed entry leaves none of
//! its writes), fuel for store calls, and a restart that replays only the
//! log after the store's applied index.

use iroh_raft::node::NodeHandle;
use iroh_raft::wasm::{GuestFailure, GuestLimits, GuestWorld};

use crate::common::{propose_ok, query_ok, start_node};

fn tight_limits() -> GuestLimits {
    GuestLimits {
        apply_fuel: 50_000_000,
        query_fuel: 50_000_000,
        memory_limit_bytes: 32 * 1024 * 1024,
        ..GuestLimits::default()
    }
}

/// Every command's result (ok text, or the failure's message).
async fn run_script(node: &NodeHandle, script: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for line in script {
        let (kind, text) = line.split_once(": ").expect("`apply: ...` or `query: ...`");
        let result = match kind {
            "apply" => {
                node.propose(text.as_bytes().to_vec())
                    .await
                    .expect("commits")
                    .result
            }
            _ => {
                node.query(text.as_bytes().to_vec())
                    .await
                    .expect("answers")
                    .result
            }
        };
        out.push(match result {
            Ok(bytes) => format!("ok {}", String::from_utf8_lossy(&bytes)),
            Err(failure) => format!("err {failure}"),
        });
    }
    out
}

const SCRIPT: &[&str] = &[
    "apply: put a 1",
    "apply: put b two words",
    "apply: put user/x 7",
    "apply: put user/y 8",
    "query: get b",
    "query: list",
    "query: list user/",
    "query: count",
    "apply: delete a",
    "apply: delete a",
    "apply: get a",
    "query: get missing",
    "query: put c 3",
    "apply: frobnicate",
    "apply: put",
    "apply: put empty",
    "query: get empty",
    "apply: count",
    "apply: list u",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t31_kv_store_answers_exactly_like_kv() {
    let (kv_dir, store_dir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let kv = start_node(kv_dir.path(), "kv", GuestLimits::default());
    let kv_store = start_node(store_dir.path(), "kv_store", GuestLimits::default());
    let status = kv_store.status().await.expect("status");
    assert_eq!(status.guest.world, Some(GuestWorld::Store));
    assert_eq!(
        kv.status().await.expect("status").guest.world,
        Some(GuestWorld::Memory)
    );
    let expected = run_script(&kv, SCRIPT).await;
    let got = run_script(&kv_store, SCRIPT).await;
    for ((line, want), have) in SCRIPT.iter().zip(&expected).zip(&got) {
        assert_eq!(have, want, "{line}");
    }
    let size = kv_store
        .status()
        .await
        .expect("status")
        .guest
        .store
        .expect("a store-backed guest reports its store");
    assert_eq!(
        size.keys, 9,
        "b, user/x, user/y, empty, their revision records and the count of those (hidden keys)"
    );
    assert_eq!(query_ok(&kv_store, "count").await, "4");
    kv.shutdown().await;
    kv_store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t31_a_failed_entry_leaves_none_of_its_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = tight_limits();
    let node = start_node(dir.path(), "hostile_store", limits);
    assert_eq!(propose_ok(&node, "put keep 1").await, "OK");

    for (command, expected) in [
        ("put-then-trap t 1", "guest_trapped"),
        ("put-then-err e 1", "guest_rejected"),
        ("put-then-loop l 1", "guest_out_of_fuel"),
        ("scan-forever", "guest_out_of_fuel"),
    ] {
        let applied = node
            .propose(command.as_bytes().to_vec())
            .await
            .expect("commits");
        let failure = applied.result.expect_err(command);
        assert_eq!(failure.code(), expected, "{command}: {failure}");
        if let GuestFailure::OutOfFuel { budget } = failure {
            assert_eq!(budget, limits.apply_fuel);
        }
    }
    for key in ["t", "e", "l"] {
        let answer = node
            .query(format!("get {key}").into_bytes())
            .await
            .expect("answers");
        assert_eq!(
            answer.result,
            Err(GuestFailure::Rejected {
                message: format!("key not found: {key}")
            }),
            "the write to {key} was discarded"
        );
    }
    assert_eq!(query_ok(&node, "count").await, "1");
    assert_eq!(query_ok(&node, "get keep").await, "1");
    // The node keeps serving, and traps cost a fresh instance, not a replay.
    assert_eq!(propose_ok(&node, "incr n").await, "1");
    let status = node.status().await.expect("status");
    assert_eq!(status.guest.failed_entries, 4);
    assert_eq!(
        status.guest.instance_rebuilds, 3,
        "trap, loop and scan each replaced the instance; an err did not"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t31_restart_replays_only_the_entries_after_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path(), "hostile_store", GuestLimits::default());
    for expected in 1..=60 {
        assert_eq!(propose_ok(&node, "incr n").await, expected.to_string());
    }
    let before = node.status().await.expect("status");
    assert!(before.guest.applied_entries >= 60);
    node.shutdown().await;
    drop(node);

    let node = start_node(dir.path(), "hostile_store", GuestLimits::default());
    assert_eq!(query_ok(&node, "get n").await, "60");
    assert_eq!(
        propose_ok(&node, "incr n").await,
        "61",
        "nothing applied twice"
    );
    let after = node.status().await.expect("status");
    assert!(
        after.guest.applied_entries <= 2,
        "the restart replayed {} entries into the guest; the store was at the end of the log",
        after.guest.applied_entries
    );
    node.shutdown().await;
}

/// A store-backed guest's queries run beside the applier: while an entry
/// spins through a large fuel budget, a read of the committed state is
/// answered (before that entry is), and sees none of the spinning entry's
/// writes; a linearizable read after it sees its outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t31_queries_are_answered_while_an_entry_applies() {
    use iroh_raft::node::Consistency;
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("tempdir");
    let limits = GuestLimits {
        // About 2 s of spinning here for `put-then-loop` (it ends out of
        // fuel); the query must not wait for it.
        apply_fuel: 100_000_000_000,
        ..GuestLimits::default()
    };
    let node = start_node(dir.path(), "hostile_store", limits);
    propose_ok(&node, "put k before").await;
    let before = node.status().await.expect("status").applied_index;

    let spinner = node.clone();
    let spinning = tokio::spawn(async move {
        spinner
            .propose(b"put-then-loop k during".to_vec())
            .await
            .expect("commits")
    });
    // The applier has the spinning entry once it is committed (one node).
    tokio::time::timeout(crate::common::CONVERGENCE_TIMEOUT, async {
        while node.status().await.expect("status").commit_index <= before {
            tokio::time::sleep(crate::common::POLL_INTERVAL).await;
        }
    })
    .await
    .expect("the spinning entry commits");

    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        node.query_with(b"get k".to_vec(), Consistency::Stale),
    )
    .await
    .expect("the query is answered")
    .expect("answers");
    assert!(
        !spinning.is_finished(),
        "the query waited for the spinning entry"
    );
    // Status shows the applier on it (what /health turns into
    // `applier_stalled` after APPLIER_STALLED_AFTER).
    let busy = node.status().await.expect("status").applier_busy;
    assert_eq!(busy.map(|busy| busy.index), Some(before + 1), "{busy:?}");
    assert_eq!(answer.result.as_deref(), Ok(&b"before"[..]));
    assert_eq!(answer.applied_index, before);

    let spun = spinning.await.expect("joins");
    assert!(
        matches!(spun.result, Err(GuestFailure::OutOfFuel { .. })),
        "{:?}",
        spun.result
    );
    let after = node.query(b"get k".to_vec()).await.expect("answers");
    assert_eq!(after.result.as_deref(), Ok(&b"before"[..]));
    assert!(after.applied_index > before);
}
