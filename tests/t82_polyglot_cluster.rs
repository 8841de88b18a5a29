//! The Python and JavaScript kv guests in real three-node clusters:
//! `raft-host` processes over iroh on loopback, writes through the leader
//! and through a follower, a guest error replicated as a result, snapshots
//! taken by the guests, and a follower killed while the others compact
//! their logs, which can then only catch up by restoring a snapshot into
//! its guest.

mod common;
mod polyglot;

use std::time::Duration;

use common::{NodeProcess, free_udp_port};
use iroh_raft::api::ApiClient;

/// How long a cluster may take to agree on something (elections take 1-2 s).
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a waiting test re-checks the cluster.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Small snapshot intervals, so the guests' `snapshot` and `restore` run
/// inside the nodes within a few dozen entries.
const SNAPSHOT_ARGS: &[&str] = &["--snapshot-every", "10", "--snapshot-keep-entries", "2"];
/// Entries written while a follower is down: several snapshot intervals.
const WRITES_WHILE_DOWN: usize = 40;

fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    common::wait_for(what, CONVERGENCE_TIMEOUT, POLL_INTERVAL, check)
}

/// One node: its data dir, fixed port, and process while it runs.
struct Member {
    id: u64,
    args: Vec<String>,
    dir: tempfile::TempDir,
    process: Option<NodeProcess>,
}

impl Member {
    fn new(id: u64, guest: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // The compiled guest is put in the node's cache, as if it had run
        // before: three nodes compiling an 18 MB component at once would
        // take minutes on a small machine, and the cache is the node's own
        // mechanism for exactly this.
        polyglot::seed_node_cache(guest, dir.path());
        let args = vec![
            "--id".to_string(),
            id.to_string(),
            "--bind-addr".into(),
            format!("127.0.0.1:{}", free_udp_port()),
            "--guest".into(),
            polyglot::guest_path(guest).display().to_string(),
        ];
        let mut args = args;
        args.extend(SNAPSHOT_ARGS.iter().map(|a| a.to_string()));
        Member {
            id,
            args,
            dir,
            process: None,
        }
    }

    fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }

    fn process(&self) -> &NodeProcess {
        self.process.as_ref().expect("running")
    }

    fn client(&self) -> ApiClient {
        self.process().client()
    }

    fn get(&self, key: &str) -> Option<String> {
        let answer = self.client().query(format!("get {key}").as_bytes()).ok()?;
        answer.output.text
    }
}

/// Node 1 creates the cluster; 2 and 3 join it the way an operator adds
/// nodes (`--join`, then `add-node` on the leader).
fn start_cluster(guest: &str) -> Vec<Member> {
    let mut members: Vec<Member> = (1..=3).map(|id| Member::new(id, guest)).collect();
    let (first, rest) = members.split_first_mut().expect("three members");
    first.process = Some(NodeProcess::start(first.dir.path(), &first.args()));
    let ticket = first.process().ticket.clone();
    for member in rest {
        let mut args = member.args();
        args.extend(["--join", ticket.as_str()]);
        let starting = NodeProcess::spawn(member.dir.path(), &args);
        let added = first.process().cli(&["add-node", &starting.ticket]);
        assert!(
            added.status.success(),
            "add-node: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        member.process = Some(starting.wait_ready());
    }
    members
}

fn leader(members: &[Member]) -> u64 {
    wait_for("a leader", || {
        members
            .iter()
            .filter(|m| m.process.is_some())
            .filter_map(|m| m.client().status().ok())
            .find(|s| s.role == "leader")
            .map(|s| s.id)
    })
}

fn wait_all_see(members: &[Member], key: &str, expected: &str) {
    for member in members.iter().filter(|m| m.process.is_some()) {
        wait_for(
            &format!("node {} to see {key}={expected:?}", member.id),
            || (member.get(key)? == expected).then_some(()),
        );
    }
}

fn propose(member: &Member, command: &str) -> Result<String, String> {
    match member.client().propose(command.as_bytes()) {
        Ok(applied) => Ok(applied.output.text.unwrap_or_default()),
        Err(error) => Err(error.to_string()),
    }
}

fn exercise(guest: &str, expected_name: &str) {
    let mut members = start_cluster(guest);
    let leader_id = leader(&members);
    let leader = &members[(leader_id - 1) as usize];
    let follower = members
        .iter()
        .find(|m| m.id != leader_id)
        .expect("a follower");

    assert_eq!(
        propose(leader, "put greeting hello, cluster"),
        Ok("OK".into())
    );
    // A follower forwards to the leader and returns the guest's answer.
    assert_eq!(propose(follower, "put ключ значение"), Ok("OK".into()));
    assert_eq!(propose(follower, "delete ключ"), Ok("1".into()));
    assert_eq!(propose(leader, "put user/1 alice"), Ok("OK".into()));
    // A guest error is the entry's replicated result.
    let error = propose(leader, "get missing").expect_err("a guest error");
    assert!(error.contains("key not found: missing"), "{error}");
    wait_all_see(&members, "greeting", "hello, cluster");
    wait_all_see(&members, "user/1", "alice");

    for member in &members {
        let status = member.client().status().expect("status");
        assert_eq!(status.guest.name, expected_name);
    }

    // A follower goes down and misses several snapshot intervals while the
    // others compact their logs: it can only catch up by installing a
    // snapshot, which its node hands to the guest's `restore`.
    let down = members
        .iter()
        .position(|m| m.id != leader_id)
        .expect("a follower");
    members[down].process.take().expect("running").kill();
    for i in 0..WRITES_WHILE_DOWN {
        assert_eq!(
            propose(leader_of(&members), &format!("put n{i} {i}")),
            Ok("OK".into())
        );
    }
    let leader_snapshot = leader_of(&members)
        .client()
        .status()
        .expect("status")
        .snapshot_index
        .expect("the leader's guest took a snapshot");
    let args = members[down].args.clone();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    members[down].process = Some(NodeProcess::start(members[down].dir.path(), &args));
    let last = format!("n{}", WRITES_WHILE_DOWN - 1);
    wait_all_see(&members, &last, &(WRITES_WHILE_DOWN - 1).to_string());
    wait_all_see(&members, "greeting", "hello, cluster");
    let restored = members[down].client().status().expect("status");
    assert!(
        restored
            .snapshot_index
            .is_some_and(|index| index >= leader_snapshot),
        "node {} caught up through a snapshot at or after {leader_snapshot}: {:?}",
        restored.id,
        restored.snapshot_index
    );
    let counts: Vec<String> = members
        .iter()
        .map(|m| {
            m.client()
                .query(b"count")
                .expect("count")
                .output
                .text
                .expect("text")
        })
        .collect();
    let expected = (WRITES_WHILE_DOWN + 2).to_string();
    assert!(counts.iter().all(|c| *c == expected), "{counts:?}");
}

fn leader_of(members: &[Member]) -> &Member {
    let id = leader(members);
    members.iter().find(|m| m.id == id).expect("leader member")
}

#[test]
fn python_guest_in_a_three_node_cluster() {
    exercise("kv_python", "kv-python");
}

#[test]
fn javascript_guest_in_a_three_node_cluster() {
    exercise("kv_js", "kv-js");
}
