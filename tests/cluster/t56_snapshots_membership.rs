//! Snapshots, log compaction, membership changes and read consistency on
//! real `raft-host` clusters over iroh on loopback.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iroh_raft::api::ApiClient;
use iroh_raft::node::Consistency;

use crate::common::cluster::{Cluster, Member};
use crate::common::{self, wait_for};

/// Small snapshot intervals, so tests cross several snapshots quickly.
const SNAPSHOT_ARGS: &[&str] = &["--snapshot-every", "25", "--snapshot-keep-entries", "5"];

fn put(client: &ApiClient, key: &str, value: &str) {
    let answer = client
        .propose(format!("put {key} {value}").as_bytes())
        .expect("put");
    assert_eq!(answer.output.text.as_deref(), Some("OK"));
}

/// Every key the kv guest holds, as `list` returns them, plus the count:
/// a cheap "state hash" to compare replicas.
fn state_of(member: &Member) -> Option<String> {
    let list = member.query("list", Consistency::Stale)?;
    let count = member.query("count", Consistency::Stale)?;
    Some(format!("{count}:{list}"))
}

#[test]
fn t56_restart_after_compaction_recovers_from_snapshot_and_tail() {
    let mut node = Member::new(1, "kv", SNAPSHOT_ARGS);
    node.start();
    let client = node.client();
    for i in 0..110 {
        put(&client, &format!("k{i}"), &format!("v{i}"));
    }
    let status = node.status();
    let snapshot_index = status.snapshot_index.expect("a snapshot was taken");
    assert!(snapshot_index >= 75, "snapshot at {snapshot_index}");
    assert!(
        status.first_log_index > 50,
        "the log was compacted: first index {}",
        status.first_log_index
    );
    // Disk use stays bounded: one snapshot file, and a log no longer than
    // the snapshot interval plus the entries kept behind it.
    let files: Vec<_> = std::fs::read_dir(node.dir.path().join("snapshots"))
        .expect("snapshot dir")
        .collect();
    assert_eq!(files.len(), 1, "older snapshot files are deleted");
    assert!(status.last_index - status.first_log_index < 25 + 5 + 1);
    // A write after the last snapshot lives only in the log tail.
    put(&client, "tail", "yes");

    node.kill();
    node.start();
    let status = node.status();
    assert_eq!(status.snapshot_index, Some(snapshot_index));
    assert!(
        status.guest.applied_entries < 110,
        "recovered from the snapshot, not a full replay ({} entries applied)",
        status.guest.applied_entries
    );
    assert_eq!(
        node.query("count", Consistency::Linearizable).as_deref(),
        Some("111")
    );
    assert_eq!(
        node.query("get k0", Consistency::Linearizable).as_deref(),
        Some("v0")
    );
    assert_eq!(
        node.query("get k109", Consistency::Linearizable).as_deref(),
        Some("v109")
    );
    assert_eq!(
        node.query("get tail", Consistency::Linearizable).as_deref(),
        Some("yes")
    );

    // `raft-host snapshot` takes one on demand; the log shrinks behind it.
    let out = node.process().cli(&["snapshot"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = node.status();
    assert_eq!(status.snapshot_index, Some(status.applied_index));
}

#[test]
fn t56_lagging_and_new_nodes_catch_up_through_snapshots() {
    let mut cluster = Cluster::start(3, "kv", SNAPSHOT_ARGS);
    let leader = cluster.leader();
    let down = if leader == 3 { 2 } else { 3 };
    cluster.member_mut(down).kill();
    let client = cluster.member(leader).client();
    for i in 0..120 {
        put(&client, &format!("k{i:03}"), &format!("v{i}"));
    }
    let status = cluster.member(leader).status();
    assert!(
        status.first_log_index > 60,
        "the leader compacted past what node {down} has (first index {})",
        status.first_log_index
    );

    // The long-down node can only catch up through a snapshot.
    cluster.member_mut(down).start();
    cluster.wait_all_see("count", "120");
    let status = cluster.member(down).status();
    assert!(
        status.snapshot_index.is_some_and(|i| i >= 60),
        "node {down} installed a snapshot: {:?}",
        status.snapshot_index
    );

    // A brand-new node too.
    let new = cluster.add_node(&[]);
    cluster.wait_all_see("count", "120");
    assert!(cluster.members[new].status().snapshot_index.is_some());
    put(&client, "after", "all");
    cluster.wait_all_see("get after", "all");

    let states: Vec<String> = cluster
        .running()
        .map(|m| state_of(m).expect("state"))
        .collect();
    assert!(
        states.windows(2).all(|w| w[0] == w[1]),
        "replicas agree on the whole state"
    );
}

/// Writes from a background client, each retried on errors until
/// acknowledged; returns the acknowledged keys.
struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(urls: Arc<Mutex<Vec<String>>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = stop.clone();
            let acknowledged = acknowledged.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut attempt = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let candidates = urls.lock().expect("urls").clone();
                    let url = &candidates[attempt % candidates.len()];
                    let key = format!("w{n}");
                    match ApiClient::new(url).propose(format!("put {key} {n}").as_bytes()) {
                        Ok(answer) if answer.output.text.as_deref() == Some("OK") => {
                            acknowledged.lock().expect("acks").push(key);
                            n += 1;
                        }
                        _ => {
                            // Unknown outcome: the next write uses a new key,
                            // so an unacknowledged one never counts.
                            n += 1;
                            attempt += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
            })
        };
        Writer {
            stop,
            acknowledged,
            thread,
        }
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("writer");
        Arc::try_unwrap(self.acknowledged)
            .expect("writer done")
            .into_inner()
            .expect("acks")
    }
}

fn urls_of(cluster: &Cluster) -> Vec<String> {
    cluster
        .running()
        .map(|m| m.process().api_url.clone())
        .collect()
}

fn voters(cluster: &Cluster) -> Vec<u64> {
    let leader = cluster.leader();
    cluster.member(leader).status().voters
}

#[test]
fn t56_grow_shrink_replace_and_remove_the_leader_while_writing() {
    let mut cluster = Cluster::start(1, "kv", &[]);
    let urls = Arc::new(Mutex::new(urls_of(&cluster)));
    let writer = Writer::start(urls.clone());

    // 1 -> 3 -> 5: each joins as a learner and is promoted once caught up.
    for _ in 0..4 {
        cluster.add_node(&[]);
        *urls.lock().expect("urls") = urls_of(&cluster);
    }
    assert_eq!(voters(&cluster), vec![1, 2, 3, 4, 5]);

    // Unsafe changes are refused with a clear error.
    let leader = cluster.leader();
    let refused = cluster
        .member(leader)
        .process()
        .cli(&["add-node", &cluster.member(2).process().ticket]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("already a voter"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // 5 -> 3.
    for id in [5, 4] {
        cluster.cli_on_leader(&["remove-node", &id.to_string()]);
        cluster.member_mut(id).kill();
        *urls.lock().expect("urls") = urls_of(&cluster);
    }
    assert_eq!(voters(&cluster), vec![1, 2, 3]);

    // Replace node 3 by a new node 6 (joint consensus).
    let six = cluster.add_node(&["--replaces", "3"]);
    assert_eq!(cluster.members[six].id, 6);
    assert_eq!(voters(&cluster), vec![1, 2, 6]);
    cluster.member_mut(3).kill();
    *urls.lock().expect("urls") = urls_of(&cluster);

    // Remove the leader itself: it hands over, the others go on.
    let old_leader = cluster.leader();
    cluster.cli_on_leader(&["remove-node", &old_leader.to_string()]);
    cluster.member_mut(old_leader).kill();
    *urls.lock().expect("urls") = urls_of(&cluster);
    let new_leader = cluster.leader();
    assert_ne!(new_leader, old_leader);
    // Until the new leader has left the joint configuration the removal
    // entered, its status lists the outgoing voters too.
    wait_for("the two remaining voters", || {
        (voters(&cluster).len() == 2).then_some(())
    });

    // The last voter cannot be removed.
    // (The new leader first leaves the joint configuration the removal of
    // the old leader entered; until then a change is still in progress.)
    let remaining = voters(&cluster);
    let other = remaining
        .iter()
        .find(|id| **id != new_leader)
        .expect("another voter")
        .to_string();
    wait_for("the joint configuration to be left", || {
        let out = cluster
            .member(new_leader)
            .process()
            .cli(&["remove-node", &other]);
        out.status.success().then_some(())
    });
    let refused = cluster
        .member(new_leader)
        .process()
        .cli(&["remove-node", &new_leader.to_string()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("last voter"));

    // A few more writes after all of it, then: nothing acknowledged is lost.
    std::thread::sleep(Duration::from_millis(300));
    let acknowledged = writer.finish();
    assert!(
        acknowledged.len() > 20,
        "writes went on: {}",
        acknowledged.len()
    );
    let survivor = cluster.member(new_leader);
    for key in &acknowledged {
        assert!(
            survivor
                .query(&format!("get {key}"), Consistency::Linearizable)
                .is_some_and(|v| !v.is_empty()),
            "acknowledged write {key} is lost"
        );
    }
}

#[test]
fn t56_transfer_leader_and_linearizable_reads_through_followers() {
    let cluster = Cluster::start(3, "kv", &[]);
    let leader = cluster.leader();
    let target = (1..=3).find(|id| *id != leader).expect("a follower");
    let out = cluster.cli_on_leader(&["transfer-leader", &target.to_string()]);
    assert!(out.contains(&format!("node {target} leads")), "{out}");
    assert_eq!(cluster.leader(), target);

    // A write acknowledged through one follower is seen by a linearizable
    // read that starts afterwards on another node, every time.
    let followers: Vec<u64> = (1..=3).filter(|id| *id != target).collect();
    let writer = cluster.member(followers[0]).client();
    let reader = cluster.member(followers[1]);
    for i in 0..40 {
        put(&writer, "x", &i.to_string());
        assert_eq!(
            reader.query("get x", Consistency::Linearizable).as_deref(),
            Some(i.to_string().as_str()),
            "read {i} after its write"
        );
    }
    // Lease reads on the leader see it too; stale reads answer from local
    // state (they may lag, so only eventually).
    assert_eq!(
        cluster
            .member(target)
            .query("get x", Consistency::Lease)
            .as_deref(),
        Some("39")
    );
    cluster.wait_all_see("get x", "39");
}

#[test]
fn t56_an_isolated_leader_serves_no_linearizable_read() {
    let mut cluster = Cluster::start(3, "kv", &[]);
    let leader = cluster.leader();
    put(&cluster.member(leader).client(), "k", "1");
    cluster.wait_all_see("get k", "1");
    // Freeze both followers: the leader can no longer confirm it leads.
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for id in &followers {
        signal(cluster.member(*id), "STOP");
    }
    let isolated = cluster.member(leader);
    let started = std::time::Instant::now();
    let refused = isolated
        .client()
        .query_with(b"get k", Consistency::Linearizable);
    assert!(
        refused.is_err(),
        "a linearizable read needs a quorum: {refused:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    // Once the lease ran out, lease reads are refused too; stale reads are
    // served from local state when asked for.
    let lease = isolated.client().query_with(b"get k", Consistency::Lease);
    assert!(lease.is_err(), "an expired lease serves nothing: {lease:?}");
    assert_eq!(
        isolated.query("get k", Consistency::Stale).as_deref(),
        Some("1")
    );
    for id in &followers {
        signal(cluster.member(*id), "CONT");
    }
    wait_for("linearizable reads to work again", || {
        let member = cluster.member(cluster.leader());
        (member.query("get k", Consistency::Linearizable)? == "1").then_some(())
    });
    cluster.member_mut(leader).kill();
}

fn signal(member: &Member, name: &str) {
    let pid = member.process().child.id().to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn t56_backup_and_restore_into_a_new_cluster() {
    let cluster = Cluster::start(3, "kv", &[]);
    let leader = cluster.leader();
    let client = cluster.member(leader).client();
    for i in 0..30 {
        put(&client, &format!("b{i}"), &format!("{i}"));
    }
    let backup_dir = tempfile::tempdir().expect("tempdir");
    let backup = backup_dir.path().join("cluster.snap");
    // Any node can be backed up; a follower here.
    let follower = cluster
        .running()
        .find(|m| m.id != leader)
        .expect("a follower");
    cluster.wait_all_see("count", "30");
    let out = follower
        .process()
        .cli(&["backup", backup.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut restored = Member::new(1, "kv", &[]);
    // The backup carries the guest: no --guest.
    restored.args.truncate(4);
    restored
        .args
        .extend(["--restore-from".to_string(), backup.display().to_string()]);
    restored.start();
    assert_eq!(
        restored
            .query("count", Consistency::Linearizable)
            .as_deref(),
        Some("30")
    );
    assert_eq!(
        restored
            .query("get b29", Consistency::Linearizable)
            .as_deref(),
        Some("29")
    );
    put(&restored.client(), "new", "cluster");
    assert_eq!(restored.status().voters, vec![1]);
    assert_eq!(
        state_of(&restored).expect("state").split(':').next(),
        Some("31")
    );

    // A damaged backup is refused and changes nothing.
    let mut bytes = std::fs::read(&backup).expect("read backup");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let damaged = backup_dir.path().join("damaged.snap");
    std::fs::write(&damaged, bytes).expect("write");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = common::raft_host()
        .args(["--data-dir", dir.path().to_str().expect("utf-8")])
        .args(["--api-addr", "127.0.0.1:0", "--bind-addr", "127.0.0.1:0"])
        .args(["--restore-from", damaged.to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ... and left the data dir unused: the good backup restores into it.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert!(
        leftovers.is_empty(),
        "the refused restore left {leftovers:?}"
    );
    let again = common::NodeProcess::start(
        dir.path(),
        &["--restore-from", backup.to_str().expect("utf-8")],
    );
    let count = again.client().query(b"count").expect("query");
    assert_eq!(count.output.text.as_deref(), Some("30"));
}
