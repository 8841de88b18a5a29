//! Divergence detection on a real 3-node cluster: replicas hash their state
//! at state check entries and compare; a replica outvoted by the majority
//! stops applying and answering, and says so in its status and metrics.
//!
//! The guest (`hostile_query_state`) breaks the contract in a way the
//! sandbox cannot prevent: its queries change its state. Querying one
//! replica makes that replica's state drift from the others.

use iroh_raft::api::ApiClientError;
use iroh_raft::node::Consistency;

use crate::common::cluster::{Cluster, Member};
use crate::common::{http_get, wait_for};

/// A state check every 10 committed entries.
const CHECK_ARGS: &[&str] = &["--state-check-every", "10"];

#[test]
fn t58_a_replica_whose_state_drifts_is_caught_and_stops_serving() {
    let cluster = Cluster::start(3, "hostile_query_state", CHECK_ARGS);
    let leader = cluster.leader();
    let drifting = if leader == 3 { 2 } else { 3 };
    let writer = cluster.member(leader).client();
    let add = |n: usize| {
        for _ in 0..n {
            writer.propose(b"add 1").expect("add");
        }
    };

    // While every replica only applies, all agree at every check.
    add(25);
    for member in cluster.running() {
        wait_for(
            &format!("node {} to verify a state check", member.id),
            || member.status().last_verified_state_check.map(|_| ()),
        );
        assert_eq!(member.status().diverged, None, "node {}", member.id);
    }

    // Queries on one replica change its state (and only its state). The
    // first is always served (nothing drifted yet). The replica may not
    // have applied the state check the leader appended after the adds
    // above: then the queries it serves before that check are in its hash
    // there, it is caught at that check, and refuses the rest (`diverged`).
    // That is the detection this test is about, only one check sooner.
    let victim = cluster.member(drifting);
    assert!(
        victim.query("get", Consistency::Stale).is_some(),
        "the first query is served"
    );
    for _ in 1..5 {
        if victim.query("get", Consistency::Stale).is_none() {
            break;
        }
    }
    add(25);

    let divergence = wait_for("the drifting replica to notice", || {
        victim.status().diverged
    });
    assert_eq!(divergence.majority.len(), 2, "{divergence:?}");
    assert!(!divergence.majority.contains(&drifting));
    assert_ne!(divergence.own_hash, divergence.majority_hash);

    // It answers nothing any more, loudly; its metric says so.
    match victim.client().query_with(b"get", Consistency::Stale) {
        Err(ApiClientError::Api(info)) => assert_eq!(info.code, "diverged"),
        other => panic!("a diverged node must not answer: {other:?}"),
    }
    let text = metrics(victim);
    assert!(text.contains("iroh_raft_diverged 1"), "{text}");
    let out = victim.process().cli(&["status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("DIVERGED"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The majority is unaffected and keeps serving.
    add(5);
    for member in cluster.running().filter(|m| m.id != drifting) {
        assert_eq!(member.status().diverged, None, "node {}", member.id);
        let text = metrics(member);
        assert!(text.contains("iroh_raft_diverged 0"), "{text}");
    }
    assert_eq!(
        cluster
            .member(leader)
            .query("get", Consistency::Linearizable)
            .as_deref(),
        Some("55")
    );
}

/// A node's metrics text; panics unless it serves them.
fn metrics(member: &Member) -> String {
    let answer = http_get(&format!("{}/metrics", member.process().api_url));
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}
