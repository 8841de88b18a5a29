//! Regression test for a bug t92 (the Jepsen-style suite) found: a leader
//! that stops hearing its followers keeps a client's proposal waiting; a
//! new leader commits that entry and compacts past it; the old leader
//! catches up by installing a snapshot. It used to answer the client
//! `proposal_dropped` ("it did not apply") although the write had applied.
//! It must say `outcome_unknown` (or the result), never a definite failure.

use std::time::Duration;

use iroh_raft::api::{ApiClient, ApiClientError};
use iroh_raft::node::Consistency;

use crate::common::jepsen::db::Db;
use crate::common::netns::{self, in_netns};
use crate::common::wait_for;

#[test]
fn t93_a_proposal_covered_by_a_snapshot_is_not_reported_dropped() {
    if let Some(reason) = netns::skip_reason() {
        eprintln!("{reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::start(3, dir.path());
    let leader = db.leader(Duration::from_secs(30)).expect("leader");
    let other: u8 = db.ids().into_iter().find(|&i| i != leader).expect("other");
    // The leader hears nobody: its appends reach the followers, their
    // answers do not reach it.
    for id in db.ids().into_iter().filter(|&i| i != leader) {
        db.net.block(id, leader);
    }
    let (leader_ns, leader_url) = db.endpoints.get(leader as usize - 1).expect("up");
    let leader_ns = leader_ns.to_owned();
    let put = std::thread::spawn(move || {
        in_netns(&leader_ns, || {
            ApiClient::with_timeout(&leader_url, Duration::from_secs(120))
                .propose(b"put x from-old-leader")
        })
    });
    let (other_ns, other_url) = db.endpoints.get(other as usize - 1).expect("up");
    let api = ApiClient::with_timeout(&other_url, Duration::from_secs(10));
    let read_x = || {
        in_netns(other_ns, || {
            api.query_with(b"get x", Consistency::Linearizable)
        })
        .ok()
        .and_then(|a| a.output.text)
    };
    // The rest of the cluster elects a new leader and commits x.
    let seen = wait_for("x on the majority", read_x);
    assert_eq!(seen, "from-old-leader");
    // Enough writes for a snapshot and compaction past the old leader's log.
    for i in 0..700 {
        let _ = in_netns(other_ns, || api.propose(format!("put y {i}").as_bytes()));
    }
    db.net.clear_faults();
    let answer = put.join().expect("join");
    match &answer {
        Ok(_) => {}
        Err(ApiClientError::Api(info)) => {
            assert_eq!(info.code, "outcome_unknown", "x applied, yet: {info:?}")
        }
        Err(other) => panic!("unexpected answer {other:?}"),
    }
}
