//! Upgrading a live cluster's guest through the log (`raft-host upgrade`,
//! `rollback`, `components`, `--dry-run`) on real 3-node clusters of
//! `raft-host` processes over iroh on loopback.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use iroh_raft::api::{ApiClient, ApiClientError};
use iroh_raft::node::AppliedRecord;
use iroh_raft::node::Consistency;
use iroh_raft::node::upgrade::{ActivationKind, ActivationOutcome, CheckOutcome, ComponentHistory};
use iroh_raft::wasm::ComponentHash;

use crate::common::cluster::{Cluster, Member};
use crate::common::{self, CONVERGENCE_TIMEOUT, wait_for};

/// Small snapshot intervals: upgrades cross snapshots and compaction.
const SNAPSHOT_ARGS: &[&str] = &["--snapshot-every", "30", "--snapshot-keep-entries", "5"];
/// No automatic snapshots; a manual one compacts all but 5 entries.
const ON_DEMAND_SNAPSHOTS: &[&str] = &[
    "--snapshot-every",
    "0",
    "--snapshot-every-mib",
    "0",
    "--snapshot-keep-entries",
    "5",
];

fn hash_of(guest: &str) -> String {
    let bytes = std::fs::read(common::guest(guest)).expect("read guest");
    ComponentHash::of(&bytes).to_hex()
}

/// Run a CLI command against `member`; returns (success, stdout, stderr).
fn cli(member: &Member, args: &[&str]) -> (bool, String, String) {
    let out = member.process().cli(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn upgrade(member: &Member, guest: &str) -> (bool, String, String) {
    let path = common::guest(guest).display().to_string();
    cli(member, &["upgrade", "--guest", &path])
}

fn history_of(member: &Member) -> ComponentHistory {
    member.client().components().expect("components")
}

fn counter(member: &Member) -> i64 {
    member
        .query("get", Consistency::Stale)
        .expect("get")
        .parse()
        .expect("a number")
}

/// Wait until every running member has applied everything the leader has
/// committed and holds the same history; returns it.
fn converged_history(cluster: &Cluster) -> ComponentHistory {
    let leader = cluster.member(cluster.leader());
    let commit = leader.status().commit_index;
    wait_for("every node to apply the leader's commit index", || {
        cluster
            .running()
            .all(|m| m.client().status().is_ok_and(|s| s.applied_index >= commit))
            .then_some(())
    });
    let reference = history_of(leader);
    for member in cluster.running() {
        assert_eq!(history_of(member), reference, "node {} history", member.id);
    }
    reference
}

/// Per-entry results of every running node agree where they overlap, and
/// each entry was applied by `before` below `switch` and by `after` above it.
fn assert_switch_at(cluster: &Cluster, switch: u64, before: &str, after: &str) {
    let mut by_index: BTreeMap<u64, (u64, AppliedRecord)> = BTreeMap::new();
    for member in cluster.running() {
        let records = member.client().results(0).expect("results");
        assert!(!records.is_empty(), "node {} reports results", member.id);
        for record in records {
            let expected = if record.index < switch { before } else { after };
            assert_eq!(
                record.component, expected,
                "node {} applied index {} with the wrong component (switch at {switch})",
                member.id, record.index
            );
            match by_index.get(&record.index) {
                Some((other, theirs)) => assert_eq!(
                    &record, theirs,
                    "nodes {} and {other} disagree on index {}",
                    member.id, record.index
                ),
                None => {
                    by_index.insert(record.index, (member.id, record));
                }
            }
        }
    }
}

/// Clients adding 1 through every node until stopped; returns the counts
/// of acknowledged and uncertain (errored, may have applied) additions.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    uncertain: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    fn start(clients: Vec<ApiClient>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let uncertain = Arc::new(AtomicU64::new(0));
        let threads = clients
            .into_iter()
            .map(|client| {
                let (stop, acked, uncertain) = (stop.clone(), acked.clone(), uncertain.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match client.propose(b"add 1") {
                            Ok(_) => acked.fetch_add(1, Ordering::Relaxed),
                            Err(_) => uncertain.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        Writers {
            stop,
            acked,
            uncertain,
            threads,
        }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("writer thread");
        }
        (
            self.acked.load(Ordering::Relaxed),
            self.uncertain.load(Ordering::Relaxed),
        )
    }
}

#[test]
fn t57_upgrade_while_writing_switches_at_one_index_everywhere() {
    let (v1, v2) = (hash_of("counter"), hash_of("counter_v2"));
    // Snapshots only on demand: the node that was down replays the
    // activation entry from the log (and must fetch v2's bytes).
    let mut cluster = Cluster::start(3, "counter", ON_DEMAND_SNAPSHOTS);
    let leader = cluster.leader();
    // Node 3 is down during the upgrade (and never held v2's bytes).
    let down = if leader == 3 { 2 } else { 3 };
    let proposer = (1..=3)
        .find(|id| *id != leader && *id != down)
        .expect("a follower");

    let writers = Writers::start(cluster.running().map(Member::client).collect());
    wait_for("writes before the upgrade", || {
        (counter(cluster.member(leader)) >= 20).then_some(())
    });
    cluster.member_mut(down).kill();

    // Through a follower: validated there, forwarded to the leader.
    let (ok, out, err) = upgrade(cluster.member(proposer), "counter_v2");
    assert!(ok, "upgrade: {out} {err}");
    assert!(out.contains("upgraded to counter 2.0.0"), "{out}");
    let after_upgrade = counter(cluster.member(leader));
    wait_for("writes after the upgrade", || {
        (counter(cluster.member(leader)) >= after_upgrade + 20).then_some(())
    });
    let (acked, uncertain) = writers.stop();

    cluster.member_mut(down).start();
    let fetched = cluster
        .member(down)
        .process()
        .wait_for_log(&["fetched a component", &v2], CONVERGENCE_TIMEOUT);
    assert!(fetched.is_some(), "node {down} fetched v2 from a peer");
    let history = converged_history(&cluster);
    assert_eq!(history.active.hash, v2);
    assert_eq!(history.active.version, "2.0.0");
    assert_eq!(history.active.kind, ActivationKind::Upgrade);
    let switch = history.active.index;
    assert!(switch > 1);
    for member in cluster.running() {
        let status = member.status();
        assert_eq!(status.guest.hash, v2, "node {}", member.id);
        assert_eq!(status.guest.since_index, switch, "node {}", member.id);
    }

    // Every acknowledged write is reflected, on every node; nothing beyond
    // what clients sent.
    let value = counter(cluster.member(leader));
    assert!(
        value >= acked as i64 && value <= (acked + uncertain) as i64,
        "counter {value}, acknowledged {acked}, uncertain {uncertain}"
    );
    cluster.wait_all_see("get", &value.to_string());
    assert_switch_at(&cluster, switch, &v1, &v2);

    // v2's new command works everywhere.
    let answer = cluster
        .member(proposer)
        .client()
        .propose(b"mul 2")
        .expect("mul");
    assert_eq!(answer.output.text, Some((value * 2).to_string()));
    cluster.wait_all_see("get", &(value * 2).to_string());

    // A node added now starts from a snapshot (the log is compacted) and
    // runs v2 from it, history included.
    cluster.cli_on_leader(&["snapshot"]);
    let added = cluster.add_node(&[]);
    let newcomer = &cluster.members[added];
    wait_for("the new node to run v2", || {
        (newcomer.status().guest.hash == v2).then_some(())
    });
    assert!(
        newcomer.status().snapshot_index.is_some(),
        "caught up via a snapshot"
    );
    // One more entry, so the newcomer applies something itself.
    newcomer
        .client()
        .propose(b"add 1")
        .expect("add through the newcomer");
    cluster.wait_all_see("get", &(value * 2 + 1).to_string());
    let newcomer = &cluster.members[added];
    let newcomer_history = history_of(newcomer);
    assert_eq!(newcomer_history.active, history.active);
    assert_eq!(newcomer.status().guest.since_index, switch);
    assert_switch_at(&cluster, switch, &v1, &v2);
}

#[test]
fn t57_failed_upgrades_restart_rollback_and_dry_run() {
    let (v1, v2) = (hash_of("counter"), hash_of("counter_v2"));
    let mut cluster = Cluster::start(3, "counter", SNAPSHOT_ARGS);
    let leader = cluster.leader();
    let client = cluster.member(leader).client();
    client.propose(b"add 7").expect("add");

    // Upgrades that fail on every replica, deterministically: restore
    // rejects the state, restore traps.
    for (guest, reason) in [
        ("counter_v2_reject", "cannot read the previous state"),
        ("counter_v2_trap", "trap"),
    ] {
        let (ok, out, err) = upgrade(cluster.member(leader), guest);
        assert!(!ok, "{guest} must fail: {out}");
        assert!(err.contains("stays on the previous component"), "{err}");
        assert!(err.contains(reason), "{err}");
    }
    // Not a component at all: refused before anything is proposed, by the
    // CLI and by the node's API.
    let junk = cluster.member(leader).dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").expect("write");
    let (ok, _, err) = cli(
        cluster.member(leader),
        &["upgrade", "--guest", &junk.display().to_string()],
    );
    assert!(!ok && err.contains("not a usable guest"), "{err}");
    match client.upgrade(b"definitely not wasm", &[]) {
        Err(ApiClientError::Api(info)) => assert_eq!(info.code, "invalid_component"),
        other => panic!("expected invalid_component, got {other:?}"),
    }

    let history = converged_history(&cluster);
    assert_eq!(history.active.hash, v1, "still on v1");
    let failed: Vec<_> = history
        .records
        .iter()
        .filter(|r| !r.is_activated())
        .collect();
    assert_eq!(failed.len(), 2, "two failed attempts recorded: {history:?}");
    assert!(failed.iter().all(|r| matches!(
        &r.outcome,
        ActivationOutcome::Failed { reason } if reason.contains("restore")
    )));
    cluster.wait_all_see("get", "7");
    assert_eq!(
        client
            .propose(b"add 1")
            .expect("still serving")
            .output
            .text
            .as_deref(),
        Some("8")
    );

    // Dry run: v2 differs from v1 on `mul`, which v1 rejects.
    let mul = client.propose(b"mul 3");
    let mul_index = match mul {
        Err(ApiClientError::Api(info)) => info.index.expect("rejected at an index"),
        other => panic!("v1 must reject mul: {other:?}"),
    };
    let report = client
        .dry_run(
            &std::fs::read(common::guest("counter_v2")).expect("read"),
            &[],
        )
        .expect("dry run");
    assert_eq!(report.restore, CheckOutcome::Ok);
    assert_eq!(report.same_snapshot_bytes, Some(true));
    assert!(report.entries_compared >= 2, "{report:?}");
    assert_eq!(report.differing_entries, 1, "{report:?}");
    assert_eq!(report.differences[0].index, mul_index);
    assert_eq!(report.differences[0].candidate, "ok: 24");
    // The same component as the active one differs nowhere; a candidate
    // whose restore rejects the state says so.
    let same = client
        .dry_run(&std::fs::read(common::guest("counter")).expect("read"), &[])
        .expect("dry run");
    assert_eq!(
        (same.differing_entries, same.restore),
        (0, CheckOutcome::Ok)
    );
    let rejecting = client
        .dry_run(
            &std::fs::read(common::guest("counter_v2_reject")).expect("read"),
            &[],
        )
        .expect("dry run");
    assert!(matches!(rejecting.restore, CheckOutcome::Failed { .. }));
    // The CLI prints the difference and exits 3 (2 is a usage error).
    let path = common::guest("counter_v2").display().to_string();
    let out = cluster
        .member(leader)
        .process()
        .cli(&["upgrade", "--guest", &path, "--dry-run"]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 differ") && text.contains("mul 3"),
        "{text}"
    );
    assert_eq!(
        history_of_leader(&cluster).active.hash,
        v1,
        "a dry run changes nothing"
    );

    // Upgrade, then restart the whole cluster: still v2, same state.
    let (ok, out, err) = upgrade(cluster.member(leader), "counter_v2");
    assert!(ok, "{out} {err}");
    cluster
        .member(leader)
        .client()
        .propose(b"mul 2")
        .expect("mul");
    cluster.wait_all_see("get", "16");
    let before = converged_history(&cluster);
    for id in 1..=3 {
        cluster.member_mut(id).kill();
    }
    for id in 1..=3 {
        cluster.member_mut(id).start();
    }
    cluster.wait_all_see("get", "16");
    let after = converged_history(&cluster);
    assert_eq!(after.active, before.active);
    assert_eq!(after.active.hash, v2);

    // Rollback: back to v1, through the log, on every node.
    let (ok, out, err) = cli(cluster.member(cluster.leader()), &["rollback"]);
    assert!(
        ok && out.contains("rolled back to counter 1.0.0"),
        "{out} {err}"
    );
    let rolled = converged_history(&cluster);
    assert_eq!(rolled.active.hash, v1);
    assert_eq!(rolled.active.kind, ActivationKind::Rollback);
    cluster.wait_all_see("get", "16");
    let leader = cluster.member(cluster.leader());
    assert!(
        leader.client().propose(b"mul 2").is_err(),
        "v1 is active again"
    );
    let (ok, out, _) = cli(leader, &["components"]);
    assert!(
        ok && out.contains("rollback") && out.contains("failed:"),
        "{out}"
    );

    // A component's own limits travel with its activation: with 1,000 fuel
    // per apply, `add` (about 1,800) runs out on every node, and the state
    // stays.
    let path = common::guest("counter_v2").display().to_string();
    let (ok, out, err) = cli(
        leader,
        &["upgrade", "--guest", &path, "--apply-fuel", "1000"],
    );
    assert!(ok, "{out} {err}");
    let limited = converged_history(&cluster);
    assert_eq!(limited.active.limits.apply_fuel, Some(1000));
    match leader.client().propose(b"add 1") {
        Err(ApiClientError::Api(info)) => assert_eq!(info.code, "guest_out_of_fuel"),
        other => panic!("expected guest_out_of_fuel, got {other:?}"),
    }
    cluster.wait_all_see("get", "16");
}

fn history_of_leader(cluster: &Cluster) -> ComponentHistory {
    history_of(cluster.member(cluster.leader()))
}

/// Activations that get past a proposer's validation but cannot load (a
/// file in the store that is not a component, a limit the component
/// cannot start under) fail at apply time like any other failed upgrade:
/// an error result, the previous component and its state kept, the node
/// serving. Driven through the node's inbox, as a forwarded proposal is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t57_activations_that_cannot_load_fail_and_keep_the_state() {
    use iroh_raft::node::upgrade::{Activation, LimitOverrides};
    use iroh_raft::storage::{ComponentStore, DataDir};
    use iroh_raft::wasm::GuestFailure;

    let dir = tempfile::tempdir().expect("tempdir");
    let node = common::start_node(dir.path(), "counter", Default::default());
    assert_eq!(common::propose_ok(&node, "add 4").await, "4");

    // Filed by hash, as a fetched component would be, without validation.
    let store = ComponentStore::open(DataDir::new(dir.path()).components()).expect("store");
    let junk = b"not a component, but stored under its hash".to_vec();
    let junk_hash = ComponentHash::of(&junk);
    std::fs::write(store.path_of(&junk_hash), &junk).expect("store junk");
    let v2 = std::fs::read(common::guest("counter_v2")).expect("read");
    let v2_hash = ComponentHash::of(&v2);
    std::fs::write(store.path_of(&v2_hash), &v2).expect("store v2");

    let attempts = [
        (
            junk_hash,
            junk.len(),
            LimitOverrides::default(),
            "does not load",
        ),
        (
            v2_hash,
            v2.len(),
            // Too little memory to even instantiate.
            LimitOverrides {
                memory_limit_bytes: Some(1),
                ..Default::default()
            },
            "does not load",
        ),
    ];
    for (hash, len, limits, reason) in attempts {
        let applied = node
            .inbox()
            .propose_activation(Activation {
                hash: hash.to_hex(),
                size_bytes: len as u64,
                kind: ActivationKind::Upgrade,
                limits,
                source: 1,
            })
            .await
            .expect("applied");
        match applied.result {
            Err(GuestFailure::UpgradeFailed { reason: why }) => {
                assert!(why.contains(reason), "{why}")
            }
            other => panic!("expected a failed upgrade, got {other:?}"),
        }
    }
    assert_eq!(common::query_ok(&node, "get").await, "4");
    assert_eq!(common::propose_ok(&node, "add 1").await, "5");
    let history = node.components();
    assert_eq!(history.active.hash, hash_of("counter"));
    assert_eq!(history.records.len(), 3, "{history:?}");
    node.shutdown().await;
}
