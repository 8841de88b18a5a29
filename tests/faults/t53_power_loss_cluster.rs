//! Power loss in a 3-node cluster: every node's data dir on its own
//! `powercut` FUSE disk, the store-backed `kv_store` guest (its state and
//! applied index live in the host's sled store), clients sending `put`s of
//! unique keys to the leader.
//!
//! Each round SIGKILLs and then cuts the power of the leader, a follower,
//! the leader and a follower, or all three at once, restarts them on what
//! survived (each must start and rejoin), and checks: every acknowledged
//! key is there, the key count allows nothing that was never sent, and
//! every replica applies the leader's commit index and holds the same
//! state.
//!
//! `POWER_CUTS=N` is the number of power cuts, over as many rounds as that
//! takes (default [`SHORT_FORM_CUTS`]); `SEED=S` replays a schedule; see
//! `tests/common/power.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use iroh_raft::node::Consistency;

use crate::common::power::{CutTotals, PowerDisk, Rng};
use crate::common::{self, NodeProcess, free_udp_port, leader_of, power, wait_for};

/// Cuts in the short form (`make test`): about six rounds.
const SHORT_FORM_CUTS: u64 = 10;
/// Clients writing at once (each at most one write in flight at a kill).
const WRITERS: u64 = 3;
/// Most acknowledged writes before the kill.
const MAX_ACKS_PER_ROUND: u64 = 60;
/// How long writing clients may go without an acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
const NODE_ARGS: &[&str] = &["--snapshot-every", "40", "--snapshot-keep-entries", "10"];

/// One node: its disk, its fixed address, how to restart it.
struct PowerMember {
    /// First, so it is dropped (killed) before its disk is unmounted.
    process: Option<NodeProcess>,
    id: u64,
    disk: PowerDisk,
    args: Vec<String>,
}

impl PowerMember {
    fn new(id: u64, disk: PowerDisk) -> Self {
        let mut args: Vec<String> = [
            "--id",
            &id.to_string(),
            "--bind-addr",
            &format!("127.0.0.1:{}", free_udp_port()),
            "--guest",
            &common::guest("kv_store").display().to_string(),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(NODE_ARGS.iter().map(|a| a.to_string()));
        PowerMember {
            id,
            disk,
            args,
            process: None,
        }
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self.disk.path().join("node")
    }

    fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }

    fn start(&mut self) {
        assert!(self.process.is_none(), "stop it first");
        self.process = Some(NodeProcess::start(&self.data_dir(), &self.args()));
    }

    fn process(&self) -> &NodeProcess {
        self.process.as_ref().expect("running")
    }

    fn query(&self, request: &str, consistency: Consistency) -> Option<String> {
        let answer = self
            .process()
            .client()
            .query_with(request.as_bytes(), consistency)
            .ok()?;
        answer.output.text
    }
}

fn leader(members: &[PowerMember]) -> usize {
    let id = wait_for("a leader", || {
        leader_of(
            members
                .iter()
                .filter_map(|m| m.process.as_ref()?.client().status().ok()),
        )
        .map(|s| s.id)
    });
    members.iter().position(|m| m.id == id).expect("a member")
}

/// Nodes 1..=3, each on its own disk, grown the way an operator does.
fn start_cluster() -> Option<Vec<PowerMember>> {
    let mut members = Vec::new();
    for id in 1..=3 {
        members.push(PowerMember::new(id, PowerDisk::mount()?));
    }
    members[0].start();
    for i in 1..3 {
        let join = members[leader(&members)].process().ticket.clone();
        members[i].args.extend(["--join".to_string(), join]);
        let starting = NodeProcess::spawn(&members[i].data_dir(), &members[i].args());
        let added = members[leader(&members)]
            .process()
            .cli(&["add-node", &starting.ticket]);
        assert!(
            added.status.success(),
            "add-node: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        members[i].process = Some(starting.wait_ready());
    }
    Some(members)
}

/// Wait until every node applied the leader's commit index, then check they
/// hold the same state; returns the number of keys and their listing.
fn converged(members: &[PowerMember], seed: u64, round: u64) -> (u64, String) {
    let leader = &members[leader(members)];
    let value: u64 = wait_for("a linearizable read of the key count", || {
        leader
            .query("count", Consistency::Linearizable)?
            .parse()
            .ok()
    });
    let commit = leader
        .process()
        .client()
        .status()
        .expect("status")
        .commit_index;
    wait_for("every node to apply the leader's commit index", || {
        members
            .iter()
            .all(|m| {
                m.process()
                    .client()
                    .status()
                    .is_ok_and(|s| s.applied_index >= commit)
            })
            .then_some(())
    });
    let states: Vec<_> = members
        .iter()
        .map(|m| {
            let count = m.query("count", Consistency::Stale).expect("count");
            let list = m.query("list", Consistency::Stale).expect("list");
            format!("{count}:{list}")
        })
        .collect();
    assert!(
        states.windows(2).all(|w| w[0] == w[1]),
        "SEED={seed} round {round}: replicas differ after applying index {commit}: {states:?}"
    );
    let list = members[0].query("list", Consistency::Stale).expect("list");
    (value, list)
}

#[test]
fn t53_power_cuts_in_a_cluster_lose_no_acknowledged_write() {
    let Some(mut members) = start_cluster() else {
        return;
    };
    let cuts = power::cuts(SHORT_FORM_CUTS);
    let seed = power::seed("t53");
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut totals = CutTotals::default();
    let (mut floor, mut ceiling) = (0u64, 0u64);
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0.. {
        let (value, list) = converged(&members, seed, round);
        assert!(
            floor <= value && value <= ceiling,
            "SEED={seed} after round {round}: {value} keys, acknowledged writes put it in \
             {floor}..={ceiling}"
        );
        let lost: Vec<_> = acknowledged
            .iter()
            .filter(|key| !list.contains(key.as_str()))
            .collect();
        assert!(
            lost.is_empty(),
            "SEED={seed} after round {round}: acknowledged keys lost: {lost:?}"
        );
        if totals.cuts >= cuts {
            break;
        }
        (floor, ceiling) = (value, value);

        let leader_at = leader(&members);
        let followers: Vec<usize> = (0..3).filter(|&i| i != leader_at).collect();
        let follower = followers[rng.below(2) as usize];
        // Never both followers alone: the leader would wait out every
        // client's request timeout with no quorum.
        let victims = match rng.below(4) {
            0 => vec![leader_at],
            1 => vec![follower],
            2 => vec![leader_at, follower],
            _ => vec![0, 1, 2],
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (acked_tx, acked_rx) = mpsc::channel();
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let client = members[leader_at].process().client();
                let acked_tx = acked_tx.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    // Slashes around the key: no key is a substring of
                    // another in `list`'s output.
                    for seq in 0.. {
                        let key = format!("/r{round}.w{writer}.{seq}/");
                        if stop.load(Ordering::Relaxed) {
                            return None;
                        }
                        if let Err(e) = client.propose(format!("put {key} x").as_bytes()) {
                            return Some(e.to_string());
                        }
                        if acked_tx.send(key).is_err() {
                            return None;
                        }
                    }
                    None
                })
            })
            .collect();
        let acks_before_kill = rng.below(MAX_ACKS_PER_ROUND + 1);
        let mut acked_keys = Vec::new();
        for _ in 0..acks_before_kill {
            match acked_rx.recv_timeout(ACK_TIMEOUT) {
                Ok(key) => acked_keys.push(key),
                Err(_) => {
                    stop.store(true, Ordering::Relaxed);
                    let errors: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
                    panic!("SEED={seed} round {round}: writes stopped: {errors:?}");
                }
            }
        }
        for &victim in &victims {
            members[victim].process.take().expect("running").kill();
        }
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            writer.join().expect("writer");
        }
        acked_keys.extend(acked_rx.try_iter());
        let acked = acked_keys.len() as u64;
        acknowledged.extend(acked_keys);
        floor += acked;
        ceiling += acked + WRITERS;
        for &victim in &victims {
            totals.add(members[victim].disk.cut(power::cut_mode(&mut rng)));
        }
        for &victim in &victims {
            members[victim].start();
        }
    }
    eprintln!(
        "t53: {} power cuts in {:.0?}, {} acknowledged writes, none lost, replicas converged \
         every round; {}",
        totals.cuts,
        started.elapsed(),
        acknowledged.len(),
        totals.describe(),
    );
    assert!(
        totals.cuts == 0 || totals.cuts_that_lost > 0,
        "SEED={seed}: no cut found anything unsynced"
    );
}
