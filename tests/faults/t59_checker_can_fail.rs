//! The linearizability checker can fail: on a real 3-node cluster, a test
//! switch (`--unsafe-local-reads`) makes nodes answer linearizable reads
//! from their local state without ReadIndex. A client that writes through
//! the leader and then reads through a follower sometimes sees the old
//! value; the recorded history must then be judged a violation. The same
//! workload on a correct cluster must be judged linearizable.

use iroh_raft::api::ApiClient;
use iroh_raft::linearizability::{self, ClientId, KvModel, Recorder, Verdict};
use iroh_raft::node::Consistency;

use crate::common::cluster::Cluster;

/// Write-then-read rounds: with stale reads a few hundred rounds expose a
/// stale answer with near certainty (the follower learns the commit index
/// only after the leader answered the writer).
const ROUNDS: u64 = 300;

/// Run the workload; returns the checker's verdict and the number of reads
/// that returned an older value than the write just acknowledged.
fn write_then_read(extra: &[&str]) -> (Verdict, u64) {
    let cluster = Cluster::start(3, "kv", extra);
    let leader = cluster.leader();
    let follower = cluster
        .running()
        .find(|m| m.id != leader)
        .expect("a follower")
        .client();
    let writer: ApiClient = cluster.member(leader).client();
    let recorder = Recorder::new();
    let client = ClientId(1);
    let mut stale = 0;
    for round in 0..ROUNDS {
        let put = format!("put k {round}");
        let op = recorder.invoke(client, &put);
        match writer.propose(put.as_bytes()) {
            Ok(answer) => recorder.complete(op, Ok(answer.output.text.unwrap_or_default())),
            Err(_) => recorder.timeout(op),
        }
        let op = recorder.invoke(client, "get k");
        match follower.query_with(b"get k", Consistency::Linearizable) {
            Ok(answer) => {
                let value = answer.output.text.unwrap_or_default();
                if value != round.to_string() {
                    stale += 1;
                }
                recorder.complete(op, Ok(value));
            }
            Err(_) => recorder.timeout(op),
        }
    }
    let report = linearizability::check(&KvModel, &recorder.history()).expect("well formed");
    (report.verdict, stale)
}

#[test]
fn t59_unsafe_local_reads_are_caught_and_safe_reads_pass() {
    let (verdict, stale) = write_then_read(&["--unsafe-local-reads"]);
    eprintln!("unsafe local reads: {stale} of {ROUNDS} reads were stale");
    assert!(
        stale > 0,
        "the unsafe switch produced no stale read in {ROUNDS} rounds"
    );
    assert!(
        verdict.is_violation(),
        "{stale} stale reads, yet the checker said {verdict:?}"
    );

    let (verdict, stale) = write_then_read(&[]);
    assert_eq!(stale, 0, "ReadIndex reads must never be stale");
    assert!(verdict.is_linearizable(), "{verdict:?}");
}
