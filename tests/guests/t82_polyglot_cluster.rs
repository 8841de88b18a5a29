//! The Python and JavaScript kv guests in real three-node clusters:
//! `raft-host` processes over iroh on loopback, writes through the leader
//! and through a follower, a guest error replicated as a result, snapshots
//! taken by the guests, and a follower killed while the others compact
//! their logs, which can then only catch up by restoring a snapshot into
//! its guest.

use crate::common::NodeProcess;
use crate::common::cluster::{Member, leader};
use crate::common::wait_for;
use crate::polyglot;

/// Small snapshot intervals, so the guests' `snapshot` and `restore` run
/// inside the nodes within a few dozen entries.
const SNAPSHOT_ARGS: &[&str] = &["--snapshot-every", "10", "--snapshot-keep-entries", "2"];
/// Entries written while a follower is down: several snapshot intervals.
const WRITES_WHILE_DOWN: usize = 40;

/// Node 1 creates the cluster; 2 and 3 join it the way an operator adds
/// nodes (`--join`, then `add-node` on the leader).
fn start_cluster(guest: &str) -> Vec<Member> {
    let mut members: Vec<Member> = (1..=3)
        .map(|id| {
            let member = Member::new(id, guest, SNAPSHOT_ARGS);
            // The compiled guest is put in the node's cache, as if it had
            // run before: three nodes compiling an 18 MB component at once
            // would take minutes on a small machine, and the cache is the
            // node's own mechanism for exactly this.
            polyglot::seed_node_cache(guest, member.dir.path());
            member
        })
        .collect();
    let (first, rest) = members.split_first_mut().expect("three members");
    first.start();
    let ticket = first.process().ticket.clone();
    for member in rest {
        let mut args: Vec<&str> = member.args.iter().map(String::as_str).collect();
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

fn get(member: &Member, key: &str) -> Option<String> {
    let answer = member
        .client()
        .query(format!("get {key}").as_bytes())
        .ok()?;
    answer.output.text
}

fn wait_all_see(members: &[Member], key: &str, expected: &str) {
    for member in members.iter().filter(|m| m.is_running()) {
        wait_for(
            &format!("node {} to see {key}={expected:?}", member.id),
            || (get(member, key)? == expected).then_some(()),
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
    members[down].kill();
    for i in 0..WRITES_WHILE_DOWN {
        assert_eq!(
            propose(leader_member(&members), &format!("put n{i} {i}")),
            Ok("OK".into())
        );
    }
    let leader_snapshot = leader_member(&members)
        .client()
        .status()
        .expect("status")
        .snapshot_index
        .expect("the leader's guest took a snapshot");
    members[down].start();
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

fn leader_member(members: &[Member]) -> &Member {
    let id = leader(members);
    members.iter().find(|m| m.id == id).expect("leader member")
}

#[test]
fn t82_python_guest_in_a_three_node_cluster() {
    exercise("kv_python", "kv-python");
}

#[test]
fn t82_javascript_guest_in_a_three_node_cluster() {
    exercise("kv_js", "kv-js");
}
