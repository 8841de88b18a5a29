//! A watcher on a follower that a real partition cuts off (network
//! namespaces, `common::netns`): it sees nothing the follower has not
//! applied while cut off, and once the partition heals it catches up with
//! every change the majority committed meanwhile, in order, exactly once,
//! on the same connection.

use iroh_raft::api::{ApiClient, WatchOp};
use iroh_raft::node::NodeStatus;

use crate::common::netns::{self, TestNet, in_netns};
use crate::common::watch::{Seen, Watch};
use crate::common::{self, NodeProcess, leader_of, wait_for};

fn status(node: &NodeProcess) -> Option<NodeStatus> {
    node.cli_status()
}

/// Put through `node` (from inside its namespace); the entry's index once
/// it committed, `None` if it did not.
fn put(net: &TestNet, i: u8, node: &NodeProcess, key: &str) -> Option<u64> {
    in_netns(&net.ns(i), || {
        let answer = ApiClient::new(&node.api_url)
            .propose(format!("put {key} {key}").as_bytes())
            .ok()?;
        (answer.output.text.as_deref() == Some("OK")).then_some(answer.index)
    })
}

#[test]
fn t94_a_watcher_on_a_partitioned_follower_catches_up_after_healing() {
    if let Some(reason) = netns::skip_reason() {
        eprintln!("{reason}");
        return;
    }
    let net = TestNet::create("w", 3);
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let kv_store = common::guest("kv_store").display().to_string();
    let nodes = net.start_cluster(&kv_store, &dirs);
    let leader = wait_for("a leader", || {
        leader_of(nodes.iter().filter_map(status)).map(|s| s.id as u8)
    });
    let follower = if leader == 3 { 2 } else { 3 };
    let node = |i: u8| &nodes[(i - 1) as usize];
    let mut watch = in_netns(&net.ns(follower), || {
        Watch::open(&node(follower).api_url, "prefix=p/")
    })
    .expect("watch the follower");

    let mut expected: Vec<Seen> = Vec::new();
    let mut write = |key: String| {
        let index = wait_for("a write through the leader", || {
            put(&net, leader, node(leader), &key)
        });
        expected.push((index, WatchOp::Put, key.clone(), Some(key)));
        index
    };
    let mut last = 0;
    for i in 0..5 {
        last = write(format!("p/before{i}"));
    }
    let before = watch.changes_through(last);

    net.cut(follower);
    for i in 0..20 {
        last = write(format!("p/during{i}"));
    }
    // Cut off, the follower applies nothing new: its watcher is told
    // nothing new either (at most a progress line at where it was).
    let quiet = watch.next(std::time::Duration::from_secs(2));
    assert!(
        !matches!(quiet, Some(iroh_raft::api::WatchLine::Changes { .. })),
        "a change reached a partitioned follower's watcher: {quiet:?}"
    );

    net.heal(follower);
    let mut seen = before;
    seen.extend(watch.changes_through(last));
    assert_eq!(seen, expected, "the watcher caught up, in order, once each");
}
