//! Deterministic simulation of a whole cluster in one process.
//!
//! 3 to 5 nodes run the real node logic (`node::core::NodeCore`:
//! raft-rs and the Ready handling), the real storage (sled, on a temp dir;
//! tmpfs when the caller picks one) and the real Wasm runtime with a real
//! guest (the kv component), on the applier's own thread but in lock step.
//! Around them everything is simulated from one seed:
//!
//! - a virtual clock (ticks, timeouts, leases and entry timestamps read it);
//! - the network at the transport seam ([`network`]): latency with jitter
//!   (so messages overtake each other), loss, duplication, symmetric,
//!   one-way and "bridge" partitions; snapshots travel as files;
//! - faults (the nemesis, `cluster/nemesis.rs`): crash and restart (a
//!   crash loses everything in memory, unsent messages and waiting clients
//!   included, and keeps what storage made durable), frozen nodes,
//!   partitions, bad weather, membership changes (add, remove — the leader
//!   too), forced snapshots, leadership transfers, and component upgrades
//!   through the log, all while clients keep writing and reading, and
//!   overlapping each other;
//! - clients ([`workload`]) that record a history of kv requests.
//!
//! After **every** step of any node [`invariants`] checks election safety,
//! log matching, leader completeness, that commits never go back or change,
//! and that every replica applied the same result and reached the same
//! state hash at every index. At the end the network heals, every node
//! restarts, the cluster must serve again within a bound and converge, and
//! the history must be linearizable ([`crate::linearizability`]).
//!
//! A run is a function of its seed: the same seed gives the same trace of
//! events (its BLAKE3 is in the report), which `SEED=…` reruns.

pub mod cluster;
pub mod invariants;
pub mod network;
pub mod node;
pub mod rng;
pub mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::linearizability::{self, KvModel};
use crate::wasm::WasmEngine;

use self::cluster::World;
use self::network::NetworkStats;
use self::rng::SimRng;
use self::workload::AnswerCounts;

/// Virtual time with faults in a default run.
pub const DEFAULT_FAULT_TIME: Duration = Duration::from_secs(20);
/// Virtual time the cluster gets after healing to serve a write again, and
/// then again to converge.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// Clients in a default run.
pub const DEFAULT_CLIENTS: usize = 4;

/// One simulation run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Voters the cluster starts with (3 to 5).
    pub nodes: usize,
    pub clients: usize,
    pub fault_time: Duration,
    /// Inject faults (off: a calm run, for comparison).
    pub faults: bool,
    /// The kv guest's component bytes (the cluster starts with it).
    pub guest: Vec<u8>,
    /// Another kv component to upgrade to (and back) through the log.
    pub upgrade_guest: Option<Vec<u8>>,
    /// Shared between runs: compiled components are cached in it.
    pub engine: WasmEngine,
    /// A fresh directory for the nodes' data (removed afterwards).
    pub work_dir: PathBuf,
    /// **Breaks linearizability**: the test switch that serves reads
    /// without ReadIndex, to prove the checker catches it.
    pub unsafe_local_reads: bool,
    /// **Breaks durability**: a crash also wipes the node's log store,
    /// as a disk that acknowledged writes it never made durable would.
    /// The test suite switches it on to prove the invariant checks catch
    /// what follows.
    pub amnesia: bool,
    /// Write every trace line here.
    pub trace_file: Option<PathBuf>,
}

impl SimConfig {
    /// The defaults for `seed`: 3 voters, or 5 for one seed in four.
    pub fn new(seed: u64, guest: Vec<u8>, engine: WasmEngine, work_dir: PathBuf) -> Self {
        let nodes = if SimRng::new(seed ^ 0x5EED).range(0, 4) == 0 {
            5
        } else {
            3
        };
        SimConfig {
            seed,
            nodes,
            clients: DEFAULT_CLIENTS,
            fault_time: DEFAULT_FAULT_TIME,
            faults: true,
            guest,
            upgrade_guest: None,
            engine,
            work_dir,
            unsafe_local_reads: false,
            amnesia: false,
            trace_file: None,
        }
    }
}

/// What the faults did in a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FaultCounts {
    pub crashes: u64,
    /// Nodes frozen for a while (as by SIGSTOP).
    pub pauses: u64,
    pub partitions: u64,
    pub weather_changes: u64,
    pub members_added: u64,
    pub members_removed: u64,
    pub upgrades: u64,
    pub transfers: u64,
    /// Snapshot files delivered to followers.
    pub snapshots_sent: u64,
    /// Virtual time from healing to the first acknowledged writes.
    pub recovery_ms: u64,
}

/// A run that passed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SimReport {
    pub seed: u64,
    pub nodes: usize,
    /// BLAKE3 of the whole event trace: equal for equal seeds.
    pub trace_hash: String,
    pub trace_lines: u64,
    pub events: u64,
    pub virtual_ms: u64,
    pub network: NetworkStats,
    pub faults: FaultCounts,
    pub answers: AnswerCounts,
    pub operations: usize,
    pub committed_entries: usize,
    pub leaders_elected: usize,
    pub max_term: u64,
    pub invariant_checks: u64,
    /// The final linearizable reads, key by key.
    pub final_state: Vec<(String, String)>,
}

impl std::fmt::Display for SimReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let FaultCounts {
            crashes,
            pauses,
            partitions,
            weather_changes,
            members_added,
            members_removed,
            upgrades,
            transfers,
            snapshots_sent,
            recovery_ms,
        } = self.faults;
        write!(
            f,
            "seed {} ({} nodes): {} ops (ok {}, failed {}, unknown {}), {} committed, \
             {} leaders (max term {}), faults: {crashes} crashes, {pauses} pauses, {partitions} partitions, \
             {weather_changes} weather, +{members_added}/-{members_removed} members, \
             {upgrades} upgrades, {transfers} transfers, {snapshots_sent} snapshots sent; \
             network {} sent, {} dropped, {} duplicated, {} cut; recovery {recovery_ms} ms; \
             {} invariant checks; {} events in {} virtual ms; trace {}",
            self.seed,
            self.nodes,
            self.operations,
            self.answers.ok,
            self.answers.failed,
            self.answers.unknown,
            self.committed_entries,
            self.leaders_elected,
            self.max_term,
            self.network.sent,
            self.network.dropped,
            self.network.duplicated,
            self.network.cut,
            self.invariant_checks,
            self.events,
            self.virtual_ms,
            &self.trace_hash[..16],
        )
    }
}

/// A run that failed: an invariant broke, the history is not
/// linearizable, the cluster did not recover, or a node failed.
#[derive(Debug, Clone)]
pub struct SimFailure {
    pub seed: u64,
    pub at: Duration,
    pub reason: String,
    /// The last events before the failure.
    pub trace_tail: Vec<String>,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "simulation seed {} failed at {} ms of virtual time: {}",
            self.seed,
            self.at.as_millis(),
            self.reason
        )?;
        writeln!(f, "last events:")?;
        for line in &self.trace_tail {
            writeln!(f, "  {line}")?;
        }
        write!(
            f,
            "rerun exactly this run: SEED={} cargo test --release --test simulation -- --nocapture",
            self.seed
        )
    }
}

impl std::error::Error for SimFailure {}

/// Run one simulation. The work dir is removed afterwards either way.
pub fn run(config: &SimConfig) -> Result<SimReport, SimFailure> {
    let result = run_in(config);
    let _ = std::fs::remove_dir_all(&config.work_dir);
    result
}

/// Form a calm cluster from `config` (its faults are not used), propose one
/// write on the leader and return how long, in virtual time, the followers
/// took to learn it committed after the leader did (see
/// [`crate::limits::COMMIT_NOTICE_DELAY`]).
pub fn lone_write_commit_spread(config: &SimConfig) -> Result<Duration, SimFailure> {
    probe(config, |world| world.lone_write_commit_spread())
}

/// Form a calm cluster from `config`, crash its leader and split the next
/// vote (see `cluster::World::split_vote_recovery`).
pub fn split_vote_recovery(config: &SimConfig) -> Result<cluster::SplitVote, SimFailure> {
    probe(config, |world| world.split_vote_recovery())
}

/// Form a calm cluster from `config` and run `measure` on it; the work dir
/// is removed afterwards either way.
fn probe<T>(
    config: &SimConfig,
    measure: impl FnOnce(&mut World) -> cluster::Step<T>,
) -> Result<T, SimFailure> {
    let result = (|| {
        let mut world = new_world(config)?;
        let measured = world
            .form_cluster()
            .and_then(|()| measure(&mut world))
            .map_err(|stop| failure(config, stop.at, stop.reason, stop.trace_tail));
        world.shut_down();
        measured
    })();
    let _ = std::fs::remove_dir_all(&config.work_dir);
    result
}

/// `config`'s run failed at `at` (virtual time).
fn failure(
    config: &SimConfig,
    at: Duration,
    reason: String,
    trace_tail: Vec<String>,
) -> SimFailure {
    SimFailure {
        seed: config.seed,
        at,
        reason,
        trace_tail,
    }
}

/// The guest written to the work dir and a world with no node yet.
fn new_world(config: &SimConfig) -> Result<World<'_>, SimFailure> {
    cluster::write_guest(&config.work_dir, &config.guest).map_err(|e| {
        failure(
            config,
            Duration::ZERO,
            format!("writing the guest: {e}"),
            Vec::new(),
        )
    })?;
    World::new(config).map_err(|e| failure(config, Duration::ZERO, e, Vec::new()))
}

fn run_in(config: &SimConfig) -> Result<SimReport, SimFailure> {
    let failure = |at: Duration, reason: String, trace_tail: Vec<String>| {
        failure(config, at, reason, trace_tail)
    };
    let mut world = new_world(config)?;
    let outcome = world
        .form_cluster()
        .and_then(|()| world.run_faults(config.fault_time))
        .and_then(|()| world.heal_and_converge(RECOVERY_BOUND))
        .and_then(|()| world.final_reads());
    world.shut_down();
    let final_state = outcome.map_err(|stop| failure(stop.at, stop.reason, stop.trace_tail))?;
    let history = world.workload.history();
    let started = Instant::now();
    let report = linearizability::check(&KvModel, &history).map_err(|e| {
        failure(
            Duration::ZERO,
            format!("the history is malformed: {e}"),
            Vec::new(),
        )
    })?;
    if !report.verdict.is_linearizable() {
        return Err(failure(
            Duration::ZERO,
            format!(
                "the history is not linearizable ({} ops, checked in {:?}): {report}",
                history.ops.len(),
                started.elapsed()
            ),
            Vec::new(),
        ));
    }
    Ok(SimReport {
        seed: config.seed,
        nodes: config.nodes,
        trace_hash: world.trace_hash(),
        trace_lines: world.trace_lines(),
        events: world.events,
        virtual_ms: world.now().as_millis() as u64,
        network: world.net.stats,
        faults: world.faults,
        answers: world.workload.answers,
        operations: history.ops.len(),
        committed_entries: world.invariants.committed_entries(),
        leaders_elected: world.invariants.leaders_elected(),
        max_term: world.invariants.max_term(),
        invariant_checks: world.invariants.checks,
        final_state: final_state.into_iter().collect(),
    })
}
