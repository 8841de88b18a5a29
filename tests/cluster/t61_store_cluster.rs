//! Store-backed guests (WIT 0.2.0) on real 3-node clusters of `raft-host`
//! processes: snapshots streamed from the store to lagging and new nodes
//! while writes go on, kill -9 and restart without losing or repeating an
//! entry, and upgrades with and without a `migrate` hook.

use iroh_raft::api::ApiClient;
use iroh_raft::node::Consistency;
use iroh_raft::node::upgrade::ActivationOutcome;
use iroh_raft::wasm::{ComponentHash, GuestWorld};

use crate::common::cluster::{Cluster, Member};
use crate::common::{self, wait_for};

/// Small snapshot intervals, so tests cross several snapshots quickly.
const SNAPSHOT_ARGS: &[&str] = &["--snapshot-every", "25", "--snapshot-keep-entries", "5"];

fn propose(client: &ApiClient, command: &str) -> String {
    let answer = client.propose(command.as_bytes()).expect(command);
    answer.output.text.expect("a text result")
}

/// The whole state as `list` and `count` return it (for comparing
/// replicas), plus the node's own store size and digest-free key count.
fn state_of(member: &Member) -> Option<String> {
    let list = member.query("list", Consistency::Stale)?;
    let count = member.query("count", Consistency::Stale)?;
    Some(format!("{count}:{list}"))
}

fn upgrade(member: &Member, guest: &str) -> (bool, String, String) {
    let path = common::guest(guest).display().to_string();
    let out = member.process().cli(&["upgrade", "--guest", &path]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn hash_of(guest: &str) -> String {
    ComponentHash::of(&std::fs::read(common::guest(guest)).expect("read guest")).to_hex()
}

/// Wait until every running node applied the leader's commit index; then
/// all of them must hold the same state and store size.
fn assert_replicas_agree(cluster: &Cluster) {
    let commit = cluster.member(cluster.leader()).status().commit_index;
    wait_for("every node to apply the leader's commit index", || {
        cluster
            .running()
            .all(|m| m.client().status().is_ok_and(|s| s.applied_index >= commit))
            .then_some(())
    });
    let states: Vec<_> = cluster
        .running()
        .map(|m| state_of(m).expect("state"))
        .collect();
    assert!(
        states.windows(2).all(|w| w[0] == w[1]),
        "replicas agree on the whole state"
    );
    let sizes: Vec<_> = cluster
        .running()
        .map(|m| m.status().guest.store.expect("store size"))
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] == w[1]), "{sizes:?}");
}

#[test]
fn t61_snapshots_stream_from_the_store_and_kill9_loses_and_repeats_nothing() {
    let mut cluster = Cluster::start(3, "hostile_store", SNAPSHOT_ARGS);
    let leader = cluster.leader();
    assert_eq!(
        cluster.member(leader).status().guest.world,
        Some(GuestWorld::Store)
    );
    let down = if leader == 3 { 2 } else { 3 };
    cluster.member_mut(down).kill();
    let client = cluster.member(leader).client();
    for i in 1..=100 {
        assert_eq!(propose(&client, "incr n"), i.to_string());
        propose(&client, &format!("put k{i:03} {}", "v".repeat(i)));
    }
    assert!(
        cluster.member(leader).status().first_log_index > 60,
        "the leader compacted past what node {down} has"
    );

    // The node that was down can only catch up through a snapshot, which
    // streams the store's pairs; a new node too, while writes go on.
    cluster.member_mut(down).start();
    cluster.wait_all_see("get n", "100");
    assert!(
        cluster
            .member(down)
            .status()
            .snapshot_index
            .is_some_and(|i| i >= 60),
        "node {down} installed a snapshot"
    );
    let writer = {
        let url = cluster.member(leader).process().api_url.clone();
        std::thread::spawn(move || {
            let client = ApiClient::new(&url);
            for i in 101..=160 {
                assert_eq!(propose(&client, "incr n"), i.to_string());
            }
        })
    };
    let new = cluster.add_node(&[]);
    writer.join().expect("writer");
    cluster.wait_all_see("get n", "160");
    assert!(cluster.members[new].status().snapshot_index.is_some());
    assert_replicas_agree(&cluster);

    // kill -9 the leader and a follower in turn: every acknowledged incr is
    // there once, never twice.
    for victim in [cluster.leader(), down] {
        cluster.member_mut(victim).kill();
        let leader = wait_for("a leader among the survivors", || {
            common::leader_of(cluster.running().filter_map(|m| m.client().status().ok()))
        });
        let client = cluster.member(leader.id).client();
        let before: u64 = propose(&client, "incr n").parse().expect("a number");
        cluster.member_mut(victim).start();
        let after: u64 = propose(&client, "incr n").parse().expect("a number");
        assert_eq!(after, before + 1);
        cluster.wait_all_see("get n", &after.to_string());
    }
    assert_replicas_agree(&cluster);
}

#[test]
fn t61_upgrades_with_and_without_migrate_and_a_failing_one() {
    let mut cluster = Cluster::start(3, "kv_store", SNAPSHOT_ARGS);
    let leader = cluster.leader();
    let client = cluster.member(leader).client();
    propose(&client, "put a 1");
    propose(&client, "put _block_migration yes");

    // v2's migrate refuses while `_block_migration` exists, after having
    // written `_migrated`: the upgrade fails everywhere, the write is gone.
    let (ok, out, err) = upgrade(cluster.member(leader), "kv_store_v2");
    assert!(!ok, "the migration must fail: {out}");
    assert!(err.contains("migration blocked"), "{err}");
    let history = client.components().expect("components");
    assert_eq!(history.active.hash, hash_of("kv_store"));
    assert!(matches!(
        &history.records.last().expect("a record").outcome,
        ActivationOutcome::Failed { reason } if reason.contains("migrate")
    ));
    for member in cluster.running() {
        assert_eq!(member.query("get _migrated", Consistency::Stale), None);
    }
    // The dry run says so too, without touching the store.
    let v2 = std::fs::read(common::guest("kv_store_v2")).expect("read");
    let report = client.dry_run(&v2, &[]).expect("dry run");
    assert!(
        format!("{:?}", report.restore).contains("migrate"),
        "{report:?}"
    );

    propose(&client, "delete _block_migration");
    let report = client.dry_run(&v2, &[]).expect("dry run");
    assert!(format!("{:?}", report.restore).contains("Ok"), "{report:?}");
    assert_eq!(report.differing_entries, 0, "{report:?}");
    assert!(report.entries_compared >= 3, "{report:?}");
    for member in cluster.running() {
        assert_eq!(member.query("get _migrated", Consistency::Stale), None);
    }

    // With the blocker gone the migration runs, once, on every replica.
    let (ok, out, err) = upgrade(cluster.member(leader), "kv_store_v2");
    assert!(ok, "{out}{err}");
    let migrated = cluster
        .member(leader)
        .query("get _migrated", Consistency::Linearizable)
        .expect("migrated");
    assert!(
        migrated.starts_with("from kv-store 1.0.0 at ") && migrated.ends_with(": 1 keys"),
        "{migrated}"
    );
    cluster.wait_all_see("get _migrated", &migrated);
    cluster.wait_all_see("get a", "1");

    // Back to v1, whose migrate is the SDK's default (no change).
    let (ok, out, err) = upgrade(cluster.member(leader), "kv_store");
    assert!(ok, "{out}{err}");
    cluster.wait_all_see("get _migrated", &migrated);

    // Across worlds: refused, the store-backed guest stays.
    let (ok, _, err) = upgrade(cluster.member(leader), "kv");
    assert!(!ok);
    assert!(err.contains("cannot move state"), "{err}");

    // A restarted replica resumes on the active component from its store.
    let follower = cluster
        .running()
        .map(|m| m.id)
        .find(|id| *id != leader)
        .expect("a follower");
    cluster.member_mut(follower).kill();
    cluster.member_mut(follower).start();
    propose(&client, "put b 2");
    cluster.wait_all_see("get b", "2");
    let status = cluster.member(follower).status();
    assert_eq!(status.guest.hash, hash_of("kv_store"));
    assert_replicas_agree(&cluster);

    // A backup streams the store out; `--restore-from` streams it into a
    // new single-node cluster.
    let backup_dir = tempfile::tempdir().expect("tempdir");
    let backup = backup_dir.path().join("store.snap");
    let out = cluster
        .member(follower)
        .process()
        .cli(&["backup", backup.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut restored = Member::new(1, "kv_store", &[]);
    restored.args.truncate(4);
    restored
        .args
        .extend(["--restore-from".to_string(), backup.display().to_string()]);
    restored.start();
    let expected = state_of(cluster.member(leader)).expect("state");
    assert_eq!(state_of(&restored).as_deref(), Some(expected.as_str()));
    assert_eq!(
        restored.query("get _migrated", Consistency::Linearizable),
        Some(migrated)
    );
    let status = restored.status();
    assert_eq!(status.guest.world, Some(GuestWorld::Store));
    assert_eq!(status.guest.hash, hash_of("kv_store"));
    propose(&restored.client(), "put c 3");
    assert_eq!(
        restored
            .query("count", Consistency::Linearizable)
            .as_deref(),
        Some("4")
    );
}
