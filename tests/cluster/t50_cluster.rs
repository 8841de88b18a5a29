//! Real three-node clusters: `raft-host` processes talking iroh-raft/0 over
//! iroh on loopback (relay and discovery off), real sled, real guests.

use std::path::Path;

use crate::common::cluster::{Cluster, Member, leader};
use crate::common::wait_for;

fn text(output: Option<String>) -> String {
    output.expect("a text result")
}

/// Start node 1 as a new cluster, then add nodes 2..=n the way an operator
/// does (see `common::cluster`).
fn start_cluster(n: u64) -> Vec<Member> {
    Cluster::start(n, "kv", &[]).members
}

fn wait_for_value(member: &Member, key: &str, expected: &str) {
    let request = format!("get {key}");
    wait_for(
        &format!("node {} to see {key}={expected}", member.id),
        || {
            let answer = member.client().query(request.as_bytes()).ok()?;
            (answer.output.text.as_deref() == Some(expected)).then_some(())
        },
    );
}

fn member_dir(member: &Member) -> &Path {
    member.dir.path()
}

#[test]
fn t50_three_nodes_elect_one_leader_and_replicate_in_order() {
    let members = start_cluster(3);
    let leader_id = leader(&members);
    let status = members[0].client().status().expect("status");
    assert_eq!(status.voters, vec![1, 2, 3]);
    let leaders = members
        .iter()
        .filter(|m| m.client().status().expect("status").role == "leader")
        .count();
    assert_eq!(leaders, 1, "exactly one leader");

    // Writes through every node (followers forward to the leader), all
    // applied in one order with the same results.
    let mut indexes = Vec::new();
    for round in 0..5 {
        for member in &members {
            let command = format!("put k{round}-{} v{round}", member.id);
            let response = member
                .client()
                .propose(command.as_bytes())
                .expect("propose");
            assert_eq!(text(response.output.text), "OK");
            indexes.push(response.index);
        }
    }
    let mut sorted = indexes.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), indexes.len(), "every write has its own index");

    for member in &members {
        wait_for_value(member, "k4-3", "v4");
        let count = member.client().query(b"count").expect("count");
        assert_eq!(text(count.output.text), "15", "node {}", member.id);
    }
    // Same applied index, same state on every node.
    let last = *indexes.iter().max().expect("writes");
    for member in &members {
        wait_for("applied index to converge", || {
            (member.client().status().ok()?.applied_index >= last).then_some(())
        });
        let keys = member.client().query(b"list").expect("list");
        let leader_keys = members[(leader_id - 1) as usize]
            .client()
            .query(b"list")
            .expect("list");
        assert_eq!(keys.output, leader_keys.output, "node {}", member.id);
    }
}

#[test]
fn t51_leader_killed_new_leader_elected_and_old_one_catches_up() {
    let mut members = start_cluster(3);
    let first_leader = leader(&members);
    let any = members
        .iter()
        .find(|m| m.id != first_leader)
        .expect("a follower")
        .id;
    for i in 0..10 {
        let command = format!("put before{i} x");
        members[(any - 1) as usize]
            .client()
            .propose(command.as_bytes())
            .expect("acknowledged write");
    }
    members[(first_leader - 1) as usize].kill();

    let new_leader = leader(&members);
    assert_ne!(new_leader, first_leader);
    // Writes continue through any surviving node.
    for member in members.iter().filter(|m| m.process.is_some()) {
        let command = format!("put after{} y", member.id);
        let response = wait_for("a write after failover", || {
            member.client().propose(command.as_bytes()).ok()
        });
        assert_eq!(text(response.output.text), "OK");
    }
    // Everything acknowledged before the kill is still there.
    for member in members.iter().filter(|m| m.process.is_some()) {
        wait_for_value(member, "before9", "x");
    }

    // The killed node restarts from its data dir and catches up.
    let dir_before = member_dir(&members[(first_leader - 1) as usize]).to_path_buf();
    members[(first_leader - 1) as usize].start();
    assert_eq!(
        member_dir(&members[(first_leader - 1) as usize]),
        dir_before
    );
    let restarted = &members[(first_leader - 1) as usize];
    for member in members.iter().filter(|m| m.id != first_leader) {
        wait_for_value(restarted, &format!("after{}", member.id), "y");
    }
    let count = restarted.client().query(b"count").expect("count");
    assert_eq!(text(count.output.text), "12");
}

#[test]
fn t52_a_follower_that_was_down_catches_up() {
    let mut members = start_cluster(3);
    let leader_id = leader(&members);
    let follower = members
        .iter()
        .find(|m| m.id != leader_id)
        .expect("a follower")
        .id;
    members[(follower - 1) as usize].kill();
    let leader_client = members[(leader_id - 1) as usize].client();
    for i in 0..50 {
        let command = format!("put missed{i} {i}");
        leader_client
            .propose(command.as_bytes())
            .expect("majority commits");
    }
    members[(follower - 1) as usize].start();
    wait_for_value(&members[(follower - 1) as usize], "missed49", "49");
    let count = members[(follower - 1) as usize]
        .client()
        .query(b"count")
        .expect("count");
    assert_eq!(text(count.output.text), "50");
}

#[test]
fn t53_removed_node_is_cut_off_and_unsafe_changes_are_refused() {
    let mut members = start_cluster(3);
    let leader_id = leader(&members);
    let removed = members
        .iter()
        .find(|m| m.id != leader_id)
        .expect("a follower")
        .id;
    let leader_process = members[(leader_id - 1) as usize].process();

    // Adding a node that is already a voter is refused.
    let again = leader_process.cli(&[
        "add-node",
        &members[(removed - 1) as usize].process().ticket,
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("invalid_membership"));

    let output = leader_process.cli(&["remove-node", &removed.to_string()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let remaining: Vec<u64> = (1..=3).filter(|id| *id != removed).collect();
    for member in members.iter().filter(|m| m.id != removed) {
        wait_for("the removal to apply", || {
            (member.client().status().ok()?.voters == remaining).then_some(())
        });
    }

    // The two remaining voters keep committing.
    let leader_client = members[(leader_id - 1) as usize].client();
    leader_client
        .propose(b"put after-removal yes")
        .expect("commit with 2 of 2");
    for member in members.iter().filter(|m| m.id != removed) {
        wait_for_value(member, "after-removal", "yes");
    }
    // The removed node gets nothing any more: its peers refuse it and stop
    // sending to it.
    let cut_off = &members[(removed - 1) as usize];
    // (A stale read: a removed node can no longer confirm anything with a
    // leader, so it serves only its own state.)
    match cut_off
        .client()
        .query_with(b"get after-removal", iroh_raft::node::Consistency::Stale)
    {
        Ok(answer) => assert_ne!(answer.output.text.as_deref(), Some("yes")),
        Err(iroh_raft::api::ApiClientError::Api(info)) => assert_eq!(info.code, "guest_rejected"),
        Err(other) => panic!("the removed node should still answer queries: {other}"),
    }
    let status = leader_client.status().expect("status");
    assert!(status.members.iter().all(|m| m.id != removed));

    // Removing down to one voter is fine; removing the last one is not.
    let other = remaining
        .iter()
        .find(|id| **id != leader_id)
        .expect("another voter");
    let output = members[(leader_id - 1) as usize]
        .process()
        .cli(&["remove-node", &other.to_string()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    wait_for("a single voter", || {
        (leader_client.status().ok()?.voters == vec![leader_id]).then_some(())
    });
    let last = members[(leader_id - 1) as usize]
        .process()
        .cli(&["remove-node", &leader_id.to_string()]);
    assert_eq!(last.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&last.stderr).contains("last voter"));
    leader_client
        .propose(b"put still-serving yes")
        .expect("the survivor serves");
    members[(removed - 1) as usize].kill();
}

/// The followers the leader batches appends to (`lazy_appends` in its
/// status, `node::core::pace`).
fn lazy_followers(status: &iroh_raft_client::NodeStatus) -> Vec<u64> {
    status
        .members
        .iter()
        .filter(|member| member.lazy_appends == Some(true))
        .map(|member| member.id)
        .collect()
}

/// A 3-node leader's commits wait for one follower, so it batches its
/// appends to the other. A follower whose clients write through it gets
/// its appends at once, and so does the other one then (the commit must
/// not wait for a follower busy with clients), until its clients have been
/// gone for `CLIENT_PEER_WINDOW`. Every write still reaches all three.
#[test]
fn t50_the_leader_batches_appends_only_to_a_follower_no_commit_waits_for() {
    let cluster = Cluster::start(3, "kv", &[]);
    let leader_id = cluster.leader();
    let leader = cluster.member(leader_id);
    let one_lazy = || match lazy_followers(&leader.status())[..] {
        [id] => Some(id),
        _ => None,
    };
    let lazy = wait_for("the leader to choose one lazy follower", one_lazy);
    assert_ne!(lazy, leader_id);
    for member in &cluster.members {
        if member.id != leader_id {
            assert!(
                member
                    .status()
                    .members
                    .iter()
                    .all(|m| m.lazy_appends.is_none()),
                "only the leader reports lazy followers"
            );
        }
    }
    let mut writes = 0;
    wait_for("no lazy follower while one serves clients", || {
        writes += 1;
        let command = format!("put through-{lazy}-{writes} v");
        let answer = cluster.member(lazy).client().propose(command.as_bytes());
        assert_eq!(text(answer.expect("propose").output.text), "OK");
        lazy_followers(&leader.status()).is_empty().then_some(())
    });
    wait_for("one lazy follower again after the clients left", one_lazy);
    let last = format!("through-{lazy}-{writes}");
    for member in &cluster.members {
        wait_for_value(member, &last, "v");
    }
}
