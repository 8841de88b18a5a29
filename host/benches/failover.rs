//! Leader failover of a three-node cluster of real `raft-host` processes:
//! the leader is killed with SIGKILL while clients write through a
//! follower, `BENCH_KILLS` times (default 20).
//!
//! Run: `make bench-failover` (or `cargo bench --bench failover`). Each
//! kill measures, from the moment SIGKILL was sent:
//! (a) until the first write sent through the surviving follower after
//!     the kill is answered committed;
//! (b) until every write that was in flight through the follower at the
//!     kill is answered committed (their commands were forwarded to the
//!     dead leader; see `iroh_raft::node::NodeHandle::propose`).
//!
//! [`DEFAULT_WRITERS`] clients (`BENCH_WRITERS`) send `add 1` to the
//! counter guest through the follower without pause. After each kill the killed node restarts and
//! catches up before the next. At the end the counter must equal the number
//! of acknowledged adds (none lost, none applied twice), and no write may
//! fail; the bench exits non-zero otherwise. It also counts elections: the
//! term must rise by one per kill and not at all in between (while the
//! clients write and the killed node restarts and catches up); more is a
//! split vote or a spurious election. Prints p50/p90/max of (a) and
//! (b) in ms (see BENCHMARKS.md, "Failover (issue 16)"), and the surviving
//! nodes' logs around any kill slower than [`SLOW_KILL`].

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use iroh_raft::node::Consistency;

use common::cluster::Cluster;
use common::wait_for;

/// Leader kills by default (`BENCH_KILLS` overrides).
const DEFAULT_KILLS: usize = 20;
/// Clients writing through the follower at once by default
/// (`BENCH_WRITERS` overrides), so writes are in flight whenever the leader
/// dies.
const DEFAULT_WRITERS: usize = 4;
/// Acknowledged writes after a kill before the round ends.
const WRITES_AFTER_KILL: u64 = 20;
/// A kill whose writes took longer than this (issue 16's bound for a write
/// in flight through a follower) prints what the surviving nodes logged
/// before and after it, to show where the time went.
const SLOW_KILL: Duration = Duration::from_millis(1500);

/// One writer's view of one kill: when each write was sent and answered.
#[derive(Default)]
struct Round {
    killed_at: Mutex<Option<Instant>>,
    /// (sent, answered) of every write answered after the kill.
    after_kill: Mutex<Vec<(Instant, Instant)>>,
    acknowledged: AtomicU64,
    failures: Mutex<Vec<String>>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: n={} p50={:.0} ms p90={:.0} ms max={:.0} ms",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.9)),
        ms(samples.last().copied().unwrap_or_default()),
    );
}

fn main() {
    let kills: usize = std::env::var("BENCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_KILLS);
    let writer_count: usize = std::env::var("BENCH_WRITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_WRITERS);
    let mut cluster = Cluster::start(3, "counter", &[]);
    let mut first_commit = Vec::new();
    let mut in_flight_commit = Vec::new();
    let mut acknowledged_total = 0u64;
    let mut failures = Vec::new();
    // Term rises: in the round of a kill (1 is the election it forces) and
    // between rounds (should be 0).
    let mut kill_elections = Vec::new();
    let mut spurious_elections = 0;
    let mut last_term = None;
    for kill in 0..kills {
        let leader = cluster.leader();
        let follower = cluster.follower_of(leader);
        let term_before = cluster.member(follower).status().term;
        if let Some(last) = last_term {
            spurious_elections += term_before - last;
        }
        let round = Arc::new(Round::default());
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..writer_count)
            .map(|_| {
                let client = cluster.member(follower).client();
                let (round, stop) = (round.clone(), stop.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        let sent = Instant::now();
                        let answer = client.propose(b"add 1");
                        let answered = Instant::now();
                        let killed = round
                            .killed_at
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .is_some();
                        match answer {
                            Ok(_) => {
                                round.acknowledged.fetch_add(1, Ordering::AcqRel);
                                if killed {
                                    round
                                        .after_kill
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .push((sent, answered));
                                }
                            }
                            Err(error) => {
                                round
                                    .failures
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(error.to_string());
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        wait_for("writes before the kill", || {
            (round.acknowledged.load(Ordering::Acquire) >= 10).then_some(())
        });
        // What each node logged since the last kill (the killed one's log
        // ends with its process).
        let logged_before: Vec<(u64, Vec<String>)> = cluster
            .running()
            .map(|member| (member.id, member.process().take_log()))
            .collect();
        let killed_at = {
            let mut slot = round.killed_at.lock().unwrap_or_else(|p| p.into_inner());
            let at = Instant::now();
            cluster.member_mut(leader).kill();
            *slot = Some(at);
            at
        };
        wait_for("writes after the kill", || {
            let done = round
                .after_kill
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len() as u64
                >= WRITES_AFTER_KILL;
            (done || writers.iter().all(|w| w.is_finished())).then_some(())
        });
        stop.store(true, Ordering::Release);
        for writer in writers {
            writer.join().expect("a writer thread");
        }
        acknowledged_total += round.acknowledged.load(Ordering::Acquire);
        let term_after = cluster.member(follower).status().term;
        kill_elections.push(term_after - term_before);
        last_term = Some(term_after);
        let answers = round
            .after_kill
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let first = answers
            .iter()
            .filter(|(sent, _)| *sent >= killed_at)
            .map(|(_, answered)| *answered)
            .min();
        let in_flight = answers
            .iter()
            .filter(|(sent, _)| *sent < killed_at)
            .map(|(_, answered)| *answered)
            .max();
        let failed = round
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let ms =
            |at: Option<Instant>| at.map(|at| at.saturating_duration_since(killed_at).as_millis());
        println!(
            "kill {kill}: leader {leader}, writes through node {follower}: first committed after \
             {:?} ms, all in flight at the kill after {:?} ms, failures {failed:?}",
            ms(first),
            ms(in_flight)
        );
        let slow = |at: Option<Instant>| {
            at.is_some_and(|at| at.saturating_duration_since(killed_at) > SLOW_KILL)
        };
        if slow(first) || slow(in_flight) {
            for (id, before) in logged_before.iter().filter(|(id, _)| *id != leader) {
                println!("--- node {id}, before the kill ---");
                before.iter().for_each(|line| println!("{line}"));
                println!("--- node {id}, after the kill ---");
                let after = cluster.member(*id).process().take_log();
                after.iter().for_each(|line| println!("{line}"));
            }
        }
        first_commit.extend(first.map(|at| at.saturating_duration_since(killed_at)));
        in_flight_commit.extend(in_flight.map(|at| at.saturating_duration_since(killed_at)));
        failures.extend(failed);

        cluster.member_mut(leader).start();
        let expected = acknowledged_total.to_string();
        let counted = cluster
            .member(follower)
            .query("get", Consistency::Linearizable)
            .unwrap_or_default();
        if counted != expected {
            failures.push(format!(
                "kill {kill}: the counter is {counted}, {expected} adds were acknowledged"
            ));
            break;
        }
        cluster.wait_all_see("get", &expected);
    }
    println!(
        "three raft-host processes, counter guest, {writer_count} clients writing through a \
         follower, {kills} leader SIGKILLs"
    );
    println!(
        "term rises per kill: {kill_elections:?}; between kills (spurious elections): \
         {spurious_elections}"
    );
    summary(
        "(a) kill -> first write sent after the kill committed",
        first_commit,
    );
    summary(
        "(b) kill -> every write in flight at the kill committed",
        in_flight_commit,
    );
    println!("acknowledged adds: {acknowledged_total}; failed writes and mismatches: {failures:?}");
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
