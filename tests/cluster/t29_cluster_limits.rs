//! Guest limits are the cluster's, not the node's: recorded when the
//! cluster is created and changed only through the log, so a node started
//! with other flags replays and applies exactly what the others did.
//! (Before, a restart with another `--apply-fuel` replayed the log with it:
//! an `add 1` the client had been told ran out of fuel now succeeded.)

use std::time::Duration;

use iroh_raft::api::ApiClientError;

use crate::common::{self, NodeProcess};

fn expect_out_of_fuel(node: &NodeProcess) {
    match node.client().propose(b"add 1") {
        Err(ApiClientError::Api(info)) => assert_eq!(info.code, "guest_out_of_fuel"),
        other => panic!("expected guest_out_of_fuel, got {other:?}"),
    }
}

/// `add 1`, which must succeed; the counter it returns.
fn add_one(node: &NodeProcess) -> String {
    let answer = node.client().propose(b"add 1").expect("add 1");
    answer.output.text.unwrap_or_default()
}

fn counter(node: &NodeProcess) -> String {
    node.client()
        .query(b"get")
        .expect("get")
        .output
        .text
        .unwrap_or_default()
}

#[test]
fn t29_guest_limits_are_the_clusters_not_the_nodes_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("node");
    // `add` needs about 1,800 fuel.
    let node = NodeProcess::start(&data_dir, &["--apply-fuel", "1000"]);
    expect_out_of_fuel(&node);
    node.kill();

    // Restarted with the default (a million times more): the cluster's
    // limit still applies, to the replayed entry and to new ones.
    let node = NodeProcess::start(&data_dir, &[]);
    assert!(
        node.wait_for_log(&["differ from the cluster's"], Duration::from_secs(10))
            .is_some(),
        "the node says its flags are not the cluster's"
    );
    assert_eq!(
        counter(&node),
        "0",
        "the failed entry stays failed on replay"
    );
    expect_out_of_fuel(&node);

    // The cluster's limits change through the log: an upgrade to the same
    // component with new limits.
    let counter_wasm = common::guest("counter").display().to_string();
    let out = node.cli(&[
        "upgrade",
        "--guest",
        &counter_wasm,
        "--apply-fuel",
        "100000",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(add_one(&node), "1");
    node.kill();

    // And a restart with the old flag keeps them too.
    let node = NodeProcess::start(&data_dir, &["--apply-fuel", "1000"]);
    assert_eq!(counter(&node), "1");
    assert_eq!(add_one(&node), "2");
}
