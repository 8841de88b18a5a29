//! Writes through a follower survive a SIGKILL of the leader, exactly once.
//!
//! Three `raft-host` processes with the counter guest on loopback. Clients
//! send `add 1` through a follower without pause, several at once, so
//! writes are in flight when the leader is killed with SIGKILL. Every write
//! must be answered with success (its command forwarded to the dead leader
//! is settled from the follower's own log: committed by the new leader, or
//! proven never to commit and sent again; never `outcome_unknown` or
//! `node_stopped`), and the final counter must equal the number of
//! acknowledged adds: none lost, none applied twice. The killed node
//! restarts and catches up before the next kill. No timing is asserted
//! (`make bench-failover` measures it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use iroh_raft::node::{ClientError, Consistency, ForwardId, ForwardTag};
use iroh_raft::wasm::GuestLimits;

use crate::common::cluster::Cluster;
use crate::common::{query_ok, start_node, wait_for};

/// Leader kills per run.
const KILLS: usize = 3;
/// Clients writing through the follower at once: with several, some write
/// is always in flight when the leader dies.
const WRITERS: usize = 12;
/// Acknowledged writes after a kill before the round ends (the cluster
/// serves writes again through the new leader).
const WRITES_AFTER_KILL: u64 = 20;

/// What the writers saw of one kill.
#[derive(Default)]
struct Writes {
    acknowledged: AtomicU64,
    /// Writes sent before the kill and answered after it.
    spanning_kill: AtomicU64,
    acknowledged_after_kill: AtomicU64,
}

#[test]
fn t62_writes_through_a_follower_apply_exactly_once_across_leader_sigkills() {
    let mut cluster = Cluster::start(3, "counter", &[]);
    let mut acknowledged_total = 0;
    for kill in 0..KILLS {
        let leader = cluster.leader();
        let follower = cluster.follower_of(leader);

        let writes = Arc::new(Writes::default());
        let stop = Arc::new(AtomicBool::new(false));
        // Set when the kill is sent; writes compare their start with it.
        let killed_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let client = cluster.member(follower).client();
                let (writes, stop, killed_at) = (writes.clone(), stop.clone(), killed_at.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        let sent_at = Instant::now();
                        let answer = client.propose(b"add 1");
                        let after_kill = killed_at.get().copied();
                        if let Err(error) = answer {
                            panic!(
                                "a write through node {follower} failed (leader {leader} {}): {error}",
                                if after_kill.is_some() {
                                    "killed"
                                } else {
                                    "alive"
                                }
                            );
                        }
                        writes.acknowledged.fetch_add(1, Ordering::AcqRel);
                        if let Some(killed_at) = after_kill {
                            writes.acknowledged_after_kill.fetch_add(1, Ordering::AcqRel);
                            if sent_at < killed_at {
                                writes.spanning_kill.fetch_add(1, Ordering::AcqRel);
                            }
                        }
                    }
                })
            })
            .collect();

        wait_for("writes through the follower before the kill", || {
            (writes.acknowledged.load(Ordering::Acquire) >= 10).then_some(())
        });
        // Recorded just before the signal: a write sent earlier and
        // answered later was in flight when the leader died.
        killed_at
            .set(Instant::now())
            .expect("the kill is recorded once");
        cluster.member_mut(leader).kill();
        wait_for("writes through the follower after the kill", || {
            let writer_died = writers.iter().any(|w| w.is_finished());
            (writer_died
                || writes.acknowledged_after_kill.load(Ordering::Acquire) >= WRITES_AFTER_KILL)
                .then_some(())
        });
        stop.store(true, Ordering::Release);
        for writer in writers {
            writer
                .join()
                .expect("every write through the follower succeeds");
        }
        let spanning = writes.spanning_kill.load(Ordering::Acquire);
        assert!(
            spanning > 0,
            "kill {kill}: no write was in flight when leader {leader} died"
        );
        acknowledged_total += writes.acknowledged.load(Ordering::Acquire);
        println!(
            "kill {kill}: leader {leader} killed; {spanning} writes through node {follower} \
             were in flight and succeeded; {acknowledged_total} adds acknowledged so far"
        );

        let count = cluster
            .member(follower)
            .query("get", Consistency::Linearizable)
            .expect("the counter through the follower");
        assert_eq!(
            count,
            acknowledged_total.to_string(),
            "kill {kill}: the counter must equal the acknowledged adds (none lost, none doubled)"
        );
        // Back to three nodes: the killed one restarts and catches up.
        cluster.member_mut(leader).start();
        cluster.wait_all_see("get", &acknowledged_total.to_string());
    }
}

/// The origin of a forwarded command proves that a lost one never commits
/// from the term it was proposed in: the leader must propose it in exactly
/// the term the forward names, and refuse it in any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t62_a_leader_proposes_a_forwarded_command_only_in_the_term_it_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path(), "counter", GuestLimits::default());
    let term = node.status().await.expect("status").term;
    let tag = |term, seq| ForwardTag {
        id: ForwardId {
            origin: 9,
            incarnation: 1,
            seq,
        },
        term,
    };
    for other in [term + 1, term - 1] {
        let answer = node
            .inbox()
            .propose_forwarded(b"add 1".to_vec(), tag(other, other))
            .await;
        assert!(
            matches!(answer, Err(ClientError::NotLeader { .. })),
            "term {other} while leading term {term}: {answer:?}"
        );
    }
    let applied = node
        .inbox()
        .propose_forwarded(b"add 1".to_vec(), tag(term, 0))
        .await
        .expect("proposed in the term it names");
    assert_eq!(applied.term, term);
    assert_eq!(applied.result.as_deref(), Ok(&b"1"[..]));
    assert_eq!(
        query_ok(&node, "get").await,
        "1",
        "applied once, the refused ones never"
    );
    node.shutdown().await;
}

/// Clients writing through a follower at once for
/// [`t62_concurrent_writes_through_a_follower_go_in_batches_and_apply_once`]:
/// many more than the forwards a follower keeps in flight, so the rest queue
/// and leave in batches.
const BATCH_CLIENTS: usize = 48;
const BATCH_WRITES_EACH: usize = 10;

/// One labelled counter of a node's `/metrics`.
fn peer_counter(api_url: &str, name: &str, peer: u64) -> u64 {
    let metrics = crate::common::http_get(&format!("{api_url}/metrics"));
    let series = format!("{name}{{peer=\"{peer}\"}} ");
    metrics
        .body
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("no {series} in\n{}", metrics.body))
        .parse()
        .expect("a counter")
}

/// Many clients writing through a follower at once: their commands go to
/// the leader in batches (fewer forwarding requests than commands, by the
/// follower's own metrics), and each one applies exactly once: the
/// counter's answers are exactly 1..=N, every one once.
#[test]
fn t62_concurrent_writes_through_a_follower_go_in_batches_and_apply_once() {
    let cluster = Cluster::start(3, "counter", &[]);
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    let writers: Vec<_> = (0..BATCH_CLIENTS)
        .map(|_| {
            let client = cluster.member(follower).client();
            thread::spawn(move || {
                (0..BATCH_WRITES_EACH)
                    .map(|_| {
                        let answer = client
                            .propose(b"add 1")
                            .expect("a write through the follower");
                        let text = answer.output.text.expect("a number");
                        text.parse::<u64>().expect("the counter's new value")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut values: Vec<u64> = writers
        .into_iter()
        .flat_map(|writer| writer.join().expect("every writer succeeds"))
        .collect();
    values.sort_unstable();
    let total = (BATCH_CLIENTS * BATCH_WRITES_EACH) as u64;
    assert_eq!(
        values,
        (1..=total).collect::<Vec<_>>(),
        "every add applied once, and answered with its own result"
    );

    let api_url = &cluster.member(follower).process().api_url;
    let proposals = peer_counter(api_url, "iroh_raft_peer_forwarded_proposals_total", leader);
    let batches = peer_counter(api_url, "iroh_raft_peer_forward_batches_total", leader);
    println!("{proposals} commands forwarded in {batches} requests");
    assert_eq!(proposals, total, "every write went through the follower");
    assert!(
        batches < proposals,
        "{proposals} commands in {batches} requests: nothing was batched"
    );
}
