//! Real network partitions: three `raft-host` processes, each in its own
//! network namespace, joined by veth pairs to a bridge in a "switch"
//! namespace (`common::netns`). Cutting a node's link on the switch
//! partitions it for real (the processes keep running). The test sets the
//! network up and tears it down itself; it needs root (CI runs as root). Set
//! `IROH_RAFT_SKIP_NETNS=1` to skip it knowingly on a machine without.

use iroh_raft::node::NodeStatus;

use crate::common::netns::{self, TestNet};
use crate::common::{self, NodeProcess, leader_of, wait_for};

fn status(node: &NodeProcess) -> Option<NodeStatus> {
    node.cli_status()
}

fn query(node: &NodeProcess, request: &str) -> Option<String> {
    let output = node.cli(&["query", request]);
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[test]
fn t70_minority_cannot_commit_and_healing_converges() {
    if let Some(reason) = netns::skip_reason() {
        eprintln!("{reason}");
        return;
    }
    let net = TestNet::create("p", 3);
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let kv = common::guest("kv").display().to_string();
    let nodes = net.start_cluster(&kv, &dirs);
    let propose = |node: &NodeProcess, command: &str| node.cli(&["propose", command]);
    assert!(propose(&nodes[1], "put a 1").status.success());
    for node in &nodes {
        wait_for("everyone to see a=1", || {
            (query(node, "get a")? == "1").then_some(())
        });
    }

    // Isolate the leader.
    let old_leader = wait_for("a leader", || {
        leader_of(nodes.iter().filter_map(status)).map(|s| s.id as u8)
    });
    net.cut(old_leader);
    let majority: Vec<&NodeProcess> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as u8 + 1 != old_leader)
        .map(|(_, n)| n)
        .collect();
    let new_leader = wait_for("the majority to elect a new leader", || {
        leader_of(majority.iter().filter_map(|n| status(n)))
            .filter(|s| s.id as u8 != old_leader)
            .map(|s| s.id)
    });
    // The majority commits; the isolated old leader cannot.
    wait_for("a write on the majority side", || {
        propose(majority[0], "put b 2")
            .status
            .success()
            .then_some(())
    });
    let isolated = &nodes[(old_leader - 1) as usize];
    let refused = propose(isolated, "put c 3");
    assert!(
        !refused.status.success(),
        "the minority side committed a write: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
    // Nor can it serve a linearizable read (it cannot confirm it leads); a
    // stale read is served from its own state when asked for.
    assert!(
        query(isolated, "get a").is_none(),
        "the isolated old leader served a linearizable read"
    );
    let stale = isolated.cli(&["query", "--consistency", "stale", "get a"]);
    assert_eq!(String::from_utf8_lossy(&stale.stdout).trim(), "1");

    // Heal: everyone converges on the majority's history.
    net.heal(old_leader);
    for node in &nodes {
        wait_for("everyone to see b=2", || {
            (query(node, "get b")? == "2").then_some(())
        });
        assert!(
            query(node, "get c").is_none(),
            "the minority's write survived"
        );
        assert_eq!(query(node, "get a").as_deref(), Some("1"));
    }
    let last = wait_for("the old leader to rejoin as follower", || {
        let s = status(isolated)?;
        (s.role == "follower" && s.leader_id == Some(new_leader)).then_some(s.commit_index)
    });
    for node in &nodes {
        wait_for("commit indexes to converge", || {
            (status(node)?.applied_index >= last).then_some(())
        });
    }
}
