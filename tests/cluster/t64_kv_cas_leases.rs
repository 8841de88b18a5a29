//! The `kv-store` guest's compare-and-swap and leases on real 3-node
//! clusters of `raft-host` processes: two clients racing a `cas` on the
//! same revision (exactly one wins, every round), and keys with a TTL that
//! expire at one log index on every replica, also across a leader kill
//! and a restart of the node that proposed them, on an idle cluster (the
//! leader's timer proposes the expiry) and across leader changes between
//! nodes whose clocks differ by seconds; watchers see the expiry as a
//! `delete` of that index and never the guest's hidden bookkeeping.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use iroh_raft::api::{ApiClient, ApiClientError, WatchLine, WatchOp};
use iroh_raft::node::Consistency;

use crate::common::cluster::Cluster;
use crate::common::watch::Watch;
use crate::common::{self, CONVERGENCE_TIMEOUT, wait_for};

/// Rounds of the cas race.
const CAS_ROUNDS: u64 = 50;

/// A proposal's index and the guest's answer (its text, or its error).
fn propose(client: &ApiClient, command: &str) -> (u64, Result<String, String>) {
    match client.propose(command.as_bytes()) {
        Ok(answer) => (answer.index, Ok(answer.output.text.unwrap_or_default())),
        Err(ApiClientError::Api(info)) if info.code == "guest_rejected" => (
            info.index.expect("a guest's answer carries its index"),
            Err(info
                .message
                .strip_prefix("guest returned an error: ")
                .unwrap_or(&info.message)
                .to_owned()),
        ),
        Err(other) => panic!("{command:?}: {other}"),
    }
}

fn propose_ok(client: &ApiClient, command: &str) -> (u64, String) {
    let (index, answer) = propose(client, command);
    (
        index,
        answer.unwrap_or_else(|e| panic!("{command:?} at {index}: {e}")),
    )
}

/// `get KEY meta` as JSON, from this node's state.
fn meta(client: &ApiClient, key: &str, consistency: Consistency) -> Option<serde_json::Value> {
    let answer = client
        .query_with(format!("get {key} meta").as_bytes(), consistency)
        .ok()?;
    serde_json::from_str(&answer.output.text?).ok()
}

/// Wait until every running member applied the leader's commit index.
fn wait_applied_everywhere(cluster: &Cluster) -> u64 {
    let commit = cluster.member(cluster.leader()).status().commit_index;
    wait_for("every node to apply the leader's commit index", || {
        cluster
            .running()
            .all(|m| m.client().status().is_ok_and(|s| s.applied_index >= commit))
            .then_some(commit)
    })
}

#[test]
fn t64_two_clients_racing_a_cas_one_wins_each_round() {
    let cluster = Cluster::start(3, "kv_store", &[]);
    let leader = cluster.leader();
    let follower = cluster.follower_of(leader);
    let (to_leader, to_follower) = (
        cluster.member(leader).client(),
        cluster.member(follower).client(),
    );
    propose_ok(&to_leader, "put k start");
    let barrier = Barrier::new(2);
    let mut wins = [0u64; 2];
    for round in 0..CAS_ROUNDS {
        let revision = meta(&to_leader, "k", Consistency::Linearizable).expect("k")["mod_revision"]
            .as_u64()
            .expect("a revision");
        // Swap which client goes through the follower (forwarded).
        let clients = if round % 2 == 0 {
            [&to_leader, &to_follower]
        } else {
            [&to_follower, &to_leader]
        };
        let answers: Vec<(u64, Result<String, String>)> = std::thread::scope(|s| {
            let racers: Vec<_> = clients
                .iter()
                .enumerate()
                .map(|(who, client)| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        propose(client, &format!("cas k {revision} r{round}-c{who}"))
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|r| r.join().expect("a racer"))
                .collect()
        });
        let winners: Vec<usize> = (0..2).filter(|&i| answers[i].1.is_ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one cas on revision {revision} wins: {answers:?}"
        );
        let (winner, loser) = (winners[0], 1 - winners[0]);
        wins[winner] += 1;
        assert_eq!(answers[winner].1, Ok("OK".to_owned()));
        let (win_index, lose_index) = (answers[winner].0, answers[loser].0);
        if lose_index > win_index {
            assert_eq!(
                answers[loser].1,
                Err(format!("cas failed: k is at revision {win_index}")),
                "round {round}: the loser sees the winner's write"
            );
        } else {
            // The loser's entry came first, yet failed: impossible, unless
            // the revision moved before either (it did not: we read it).
            panic!(
                "round {round}: the failed cas at {lose_index} precedes the winner at {win_index}: {answers:?}"
            );
        }
        let now = meta(&to_follower, "k", Consistency::Linearizable).expect("k");
        assert_eq!(now["mod_revision"], win_index);
        assert_eq!(now["value"], format!("r{round}-c{winner}"));
        assert_eq!(now["version"], round + 2);
    }
    eprintln!("cas race: {CAS_ROUNDS} rounds, wins by client {wins:?}");

    wait_applied_everywhere(&cluster);
    let finals: Vec<serde_json::Value> = cluster
        .running()
        .map(|m| meta(&m.client(), "k", Consistency::Stale).expect("k"))
        .collect();
    assert!(
        finals.windows(2).all(|w| w[0] == w[1]),
        "replicas agree on k's value and revision: {finals:?}"
    );
    assert_eq!(finals[0]["version"], CAS_ROUNDS + 1);
}

/// Propose `list KEY` until the key is gone; returns the index of the
/// first entry that no longer saw it (the expiry entry).
fn probe_until_expired(client: &ApiClient, key: &str) -> u64 {
    wait_for(&format!("{key} to expire"), || {
        let (index, listed) = propose_ok(client, &format!("list {key}"));
        (listed.is_empty()).then_some(index)
    })
}

/// An entry's index, whether it succeeded and the hash of its result.
type Record = (u64, bool, String);

/// Every running node recorded the same result at every index of
/// `from..=to` that it applied since it started (all of them, for a node
/// that ran throughout), and every one recorded `to` itself.
fn assert_same_results(cluster: &Cluster, from: u64, to: u64) {
    let mut reference: Option<(u64, Vec<Record>)> = None;
    for member in cluster.running() {
        let records: Vec<Record> = member
            .client()
            .results(from)
            .expect("results")
            .into_iter()
            .filter(|r| r.index <= to)
            .map(|r| (r.index, r.ok, r.result_hash))
            .collect();
        assert!(
            records.last().is_some_and(|r| r.0 == to),
            "node {} recorded the expiry entry {to}",
            member.id
        );
        match &reference {
            None => reference = Some((member.id, records)),
            Some((id, first)) => {
                let common: Vec<_> = first
                    .iter()
                    .filter(|r| records.iter().any(|o| o.0 == r.0))
                    .collect();
                let mine: Vec<_> = records
                    .iter()
                    .filter(|r| first.iter().any(|o| o.0 == r.0))
                    .collect();
                assert_eq!(
                    mine, common,
                    "node {} and node {id} recorded different results in {from}..={to}",
                    member.id
                );
                assert!(common.len() >= 2, "the expiry and the probe before it");
            }
        }
    }
}

#[test]
fn t64_a_ttl_key_expires_at_one_index_on_every_replica() {
    let mut cluster = Cluster::start(3, "kv_store", &[]);
    let leader = cluster.leader();
    let client = cluster.member(leader).client();

    // Quiet cluster, one leader.
    let (put, _) = propose_ok(&client, "put k v ttl=1");
    let lease = meta(&client, "k", Consistency::Linearizable).expect("k")["lease"]
        .as_u64()
        .expect("a lease id");
    assert_eq!(lease, put, "the ttl's lease is the put's entry");
    let gone = probe_until_expired(&client, "k");
    eprintln!("k (ttl=1, put at {put}) expired at index {gone}");
    wait_applied_everywhere(&cluster);
    assert_same_results(&cluster, put, gone);
    for member in cluster.running() {
        let c = member.client();
        assert_eq!(meta(&c, "k", Consistency::Stale), None);
        let ttl = c.query_with(format!("lease ttl {lease}").as_bytes(), Consistency::Stale);
        assert!(
            matches!(&ttl, Err(ApiClientError::Api(e)) if e.message.contains("not found")),
            "node {}: {ttl:?}",
            member.id
        );
        assert_eq!(
            member.query("lease list", Consistency::Stale).as_deref(),
            Some("")
        );
    }

    // The leader that granted the lease dies right after; another one
    // expires it, and the old one, restarted, applies the expiry at the
    // same index.
    let (put, _) = propose_ok(&client, "put k2 v ttl=2");
    cluster.member_mut(leader).kill();
    let next = wait_for("a new leader", || {
        common::leader_of(cluster.running().filter_map(|m| m.client().status().ok()))
    });
    assert_ne!(next.id, leader);
    let client = cluster.member(next.id).client();
    let gone = probe_until_expired(&client, "k2");
    assert!(gone > put);
    eprintln!(
        "k2 (ttl=2, put at {put} by node {leader}, killed) expired at index {gone} under node {}",
        next.id
    );
    cluster.member_mut(leader).start();
    wait_applied_everywhere(&cluster);
    assert_same_results(&cluster, put, gone);
    for member in cluster.running() {
        assert_eq!(meta(&member.client(), "k2", Consistency::Stale), None);
        assert_eq!(
            member.query("count", Consistency::Stale).as_deref(),
            Some("0")
        );
    }
}

/// Node 2's clock runs 1.5 s ahead of the others, node 3's 1.5 s behind.
fn skewed_clocks(id: u64) -> Vec<String> {
    let skew_ms = match id {
        2 => "1500",
        3 => "-1500",
        _ => return Vec::new(),
    };
    vec!["--clock-skew-ms".to_owned(), skew_ms.to_owned()]
}

/// Read `watch` until it shows the delete of `key`; that entry's index.
/// The put of `key` may come first; any other key (a hidden one, say)
/// fails the test.
fn deleted_at(watch: &mut Watch, key: &str) -> u64 {
    let deadline = Instant::now() + CONVERGENCE_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match watch.next(left) {
            Some(WatchLine::Changes { index, events }) => {
                for event in events {
                    let name = event.key.text.clone().unwrap_or_default();
                    assert_eq!(name, key, "only {key} changes: {event:?}");
                    if event.op == WatchOp::Delete {
                        return index;
                    }
                }
            }
            Some(WatchLine::Progress { .. }) => {}
            other => panic!("waiting for the delete of {key}, got {other:?}"),
        }
    }
}

#[test]
fn t64_ttl_keys_expire_on_an_idle_cluster_at_one_index_whatever_the_clocks() {
    let cluster = Cluster::start_each(3, "kv_store", &[], skewed_clocks);
    let mut watches: Vec<(u64, Watch)> = cluster
        .running()
        .map(|m| {
            let watch = Watch::open(&m.process().api_url, "prefix=t").expect("a watch");
            (m.id, watch)
        })
        .collect();
    let mut expire = |key: &str, put: u64| -> u64 {
        let at: Vec<(u64, u64)> = watches
            .iter_mut()
            .map(|(id, watch)| (*id, deleted_at(watch, key)))
            .collect();
        assert!(
            at.iter().all(|&(_, index)| index == at[0].1 && index > put),
            "{key} (put at {put}) expired at one index on every node: {at:?}"
        );
        at[0].1
    };

    // Idle: one put and nothing else; the leader's timer call expires it.
    let leader = cluster.leader();
    let started = Instant::now();
    let (put, _) = propose_ok(&cluster.member(leader).client(), "put t0 v ttl=1");
    let gone = expire("t0", put);
    let took = started.elapsed();
    eprintln!(
        "idle: t0 (ttl=1, put at {put} under node {leader}) expired at index {gone} after {took:?}"
    );
    assert!(
        took < Duration::from_secs(10),
        "a ttl=1 key on an idle cluster is gone within seconds, not {took:?}"
    );

    // Granted under one clock, expired under another: leadership moves to
    // each node in turn (1.5 s ahead, 1.5 s behind, on time) right after
    // the put.
    let mut leader = leader;
    for (round, next) in [2u64, 3, 1].into_iter().enumerate() {
        let key = format!("t{}", round + 1);
        let (put, _) = propose_ok(
            &cluster.member(leader).client(),
            &format!("put {key} v ttl=2"),
        );
        if next != leader {
            cluster
                .member(leader)
                .client()
                .transfer_leader(Some(next))
                .expect("transfer leadership");
            wait_for(&format!("node {next} to lead"), || {
                (cluster.leader() == next).then_some(())
            });
        }
        let gone = expire(&key, put);
        eprintln!(
            "{key} (ttl=2, put at {put} under node {leader}) expired at index {gone} under node {next}"
        );
        leader = next;
    }
    for member in cluster.running() {
        assert_eq!(
            member.query("count", Consistency::Stale).as_deref(),
            Some("0")
        );
        assert_eq!(
            member.query("lease list", Consistency::Stale).as_deref(),
            Some("")
        );
    }
}

#[test]
fn t64_the_kv_subcommands_build_the_grammar_for_the_operator() {
    let cluster = Cluster::start(1, "kv_store", &[]);
    let node = cluster.member(1).process();
    // The API by its environment variable: `cli` puts `--api` after the
    // first word, which here names a group of subcommands.
    let run = |args: &[&str]| {
        let out = common::raft_host()
            .args(args)
            .env("RAFT_HOST_API", &node.api_url)
            .output()
            .expect("run raft-host kv");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ok = |args: &[&str]| {
        let (success, stdout, stderr) = run(args);
        assert!(success, "{args:?}: {stderr}");
        stdout
    };
    assert_eq!(ok(&["kv", "put", "a", "one two", "--ttl", "600"]), "OK");
    let meta: serde_json::Value =
        serde_json::from_str(&ok(&["kv", "get", "a", "--meta"])).expect("get --meta: JSON");
    assert_eq!(meta["value"], "one two");
    assert_ne!(meta["lease"], 0, "put --ttl attached a lease");
    let revision = meta["mod_revision"].as_u64().expect("a revision");
    // A value that ends like an option word is stored as given.
    assert_eq!(ok(&["kv", "put", "b", "wait ttl=5"]), "OK");
    assert_eq!(ok(&["kv", "get", "b"]), "wait ttl=5");

    let (won, _, stderr) = run(&["kv", "cas", "a", &(revision + 100).to_string(), "x"]);
    assert!(!won && stderr.contains("cas failed"), "{stderr}");
    assert_eq!(
        ok(&["kv", "cas", "a", &revision.to_string(), "three"]),
        "OK"
    );
    assert_eq!(ok(&["kv", "get", "a"]), "three");

    let txn = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        txn.path(),
        r#"{"compare":[{"key":"a","target":"value","op":"=","value":"three"}],
            "success":[{"op":"put","key":"c","value":"3"}],"failure":[]}"#,
    )
    .expect("write the transaction");
    let answer: serde_json::Value =
        serde_json::from_str(&ok(&["kv", "txn", &txn.path().display().to_string()]))
            .expect("txn: JSON");
    assert_eq!(answer["succeeded"], true);
    assert_eq!(ok(&["kv", "list"]), "a\nb\nc");

    let id = ok(&["kv", "lease", "grant", "60"]);
    assert_eq!(ok(&["kv", "put", "d", "4", "--lease", &id]), "OK");
    let lease: serde_json::Value =
        serde_json::from_str(&ok(&["kv", "lease", "ttl", &id])).expect("lease ttl: JSON");
    assert_eq!(lease["keys"], serde_json::json!(["d"]));
    assert_eq!(ok(&["kv", "lease", "revoke", &id]), "1");
    let (found, _, _) = run(&["kv", "get", "d"]);
    assert!(!found, "a revoked lease's key is gone");
    let (refused, _, stderr) = run(&["kv", "put", "two words", "v"]);
    assert!(!refused && stderr.contains("one word"), "{stderr}");
}
