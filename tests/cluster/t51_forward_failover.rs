//! A follower forwarding writes follows a new leader when the old one dies.
//!
//! Three `raft-host` processes on loopback; the leader is SIGKILLed and a
//! client writes through a follower right away. The follower's pooled
//! connection to the dead leader still looks alive (QUIC notices only at
//! its idle timeout), so the forward goes there first. The write must
//! commit on the new leader (a later read shows it), or, if it may have
//! reached the dead one, answer `outcome_unknown`; never `node_stopped` or
//! any other definite failure. The test prints how long each write took
//! from the kill (run with `--nocapture`); it does not assert on time.

use std::time::{Duration, Instant};

use iroh_raft::api::ApiClientError;
use iroh_raft::node::Consistency;

use crate::common::cluster::{Cluster, Member};
use crate::common::wait_for;

/// Leader kills per run: each is one measurement.
const TRIES: usize = 3;

/// Wait until `member` names `leader` as its leader and a write through it
/// is forwarded there (so its connection to the leader is pooled, as in a
/// cluster that has been serving for a while).
fn warm_up(member: &Member, leader: u64, key: &str) {
    wait_for(&format!("node {} to follow {leader}", member.id), || {
        (member.client().status().ok()?.leader_id == Some(leader)).then_some(())
    });
    let command = format!("put {key} warm");
    member
        .client()
        .propose(command.as_bytes())
        .expect("a write through a follower before the kill");
}

#[test]
fn t51_a_write_through_a_follower_follows_the_new_leader_after_a_sigkill() {
    let mut cluster = Cluster::start(3, "kv", &[]);
    let mut latencies = Vec::new();
    for try_index in 0..TRIES {
        let leader = cluster.leader();
        let follower = cluster.follower_of(leader);
        warm_up(
            cluster.member(follower),
            leader,
            &format!("warm{try_index}"),
        );

        let key = format!("after_kill{try_index}");
        let command = format!("put {key} v{try_index}");
        let client = cluster.member(follower).client();
        let killed_at = Instant::now();
        cluster.member_mut(leader).kill();
        let answer = client.propose(command.as_bytes());
        let elapsed = killed_at.elapsed();

        match answer {
            Ok(response) => {
                assert_eq!(response.output.text.as_deref(), Some("OK"));
                // Committed: a linearizable read through the follower shows it.
                let read = cluster
                    .member(follower)
                    .query(&format!("get {key}"), Consistency::Linearizable);
                assert_eq!(read.as_deref(), Some(format!("v{try_index}").as_str()));
                println!(
                    "try {try_index}: killed leader {leader}, write through node {follower} \
                     committed {} ms after the kill (index {})",
                    elapsed.as_millis(),
                    response.index
                );
                latencies.push(elapsed);
            }
            Err(ApiClientError::Api(info)) if info.code == "outcome_unknown" => {
                println!(
                    "try {try_index}: killed leader {leader}, write through node {follower} \
                     answered outcome_unknown after {} ms",
                    elapsed.as_millis()
                );
            }
            Err(error) => panic!(
                "try {try_index}: a write through node {follower} after leader {leader} was \
                 killed failed after {} ms: {error}",
                elapsed.as_millis()
            ),
        }

        // Back to three nodes: the killed one restarts and catches up.
        cluster.member_mut(leader).start();
        cluster.wait_all_see(&format!("get warm{try_index}"), "warm");
    }
    let millis: Vec<u128> = latencies.iter().map(Duration::as_millis).collect();
    println!("kill -> write committed (ms) over {TRIES} tries: {millis:?}");
}

/// How soon after a restarted follower is up it must follow the leader
/// again. Far below [`iroh_raft::limits::ANSWER_TIMEOUT`] (3 s), after
/// which even a leader still holding a connection to the follower's dead
/// process would give up on it and dial again.
const RESTARTED_FOLLOWER_REACHED_WITHIN: Duration = Duration::from_millis(1500);

/// A follower killed and started again at once hears from the leader at
/// once. The leader's connection to the follower's old process looks open
/// until it times out; the new process greets every member when it starts,
/// and the leader, seeing it dial in, checks that connection and closes it
/// when it does not answer (`transport::liveness`). Before, the leader's
/// heartbeats went nowhere until the connection timed out, ~3 s after the
/// kill, and a write through a node restarted that recently waited as long
/// (the failover bench's slow kills).
#[test]
fn t51_a_restarted_follower_hears_from_the_leader_at_once() {
    let mut cluster = Cluster::start(3, "kv", &[]);
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    // The leader's lanes to the follower carry appends, not only heartbeats.
    warm_up(cluster.member(follower), leader, "before_restart");
    cluster.wait_all_see("get before_restart", "warm");

    let killed_at = Instant::now();
    cluster.member_mut(follower).kill();
    cluster.member_mut(follower).start();
    let up_at = Instant::now();
    let restarted = cluster.member(follower);
    wait_for(&format!("node {follower} to follow {leader} again"), || {
        (restarted.client().status().ok()?.leader_id == Some(leader)).then_some(())
    });
    let reached_after = up_at.elapsed();
    println!(
        "node {follower} was up {} ms after its kill and followed leader {leader} {} ms later",
        (up_at - killed_at).as_millis(),
        reached_after.as_millis()
    );
    assert!(
        reached_after < RESTARTED_FOLLOWER_REACHED_WITHIN,
        "the restarted node {follower} followed leader {leader} only {} ms after it was up \
         (bound {} ms): the leader kept using its connection to the dead process",
        reached_after.as_millis(),
        RESTARTED_FOLLOWER_REACHED_WITHIN.as_millis()
    );
    // And it takes part again: a write through it commits everywhere.
    warm_up(restarted, leader, "after_restart");
    cluster.wait_all_see("get after_restart", "warm");
}
