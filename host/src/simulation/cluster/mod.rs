//! The event loop of a simulated cluster: a virtual clock, one queue of
//! timed events (ticks, message deliveries, client requests, faults), and
//! the nodes. Events at the same virtual time run in the order they were
//! scheduled, and every random choice comes from the run's one generator,
//! so a seed replays the same run event for event.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use raft::StateRole;
use raft::prelude::Message;
use tokio::sync::oneshot;

mod clients;
mod delivery;
mod lifecycle;
mod nemesis;
mod probes;

pub use self::probes::SplitVote;

use super::invariants::Invariants;
use super::network::{SimNetwork, Weather};
use super::node::{Live, SimNode};
use super::rng::SimRng;
use super::workload::{self, Answer, Waiting, Workload};
use super::{FaultCounts, RECOVERY_BOUND, SimConfig};
use crate::linearizability::OpId;
use crate::membership::PeerAddr;
use crate::node::applier::ApplyJob;
use crate::node::inbox::NodeMsg;
use crate::node::{Applied, ClientError, ClusterMode, SnapshotPolicy};

/// One Raft tick, as in production.
const TICK: Duration = crate::limits::TICK_INTERVAL;
/// How long a failed snapshot transfer takes to be reported to the leader.
const SNAPSHOT_FAILURE_DELAY: Duration = Duration::from_secs(1);
/// How far behind the virtual wall clock a node's own clock may be (drawn
/// at each start): a new leader's clock is often behind its predecessor's.
const MAX_CLOCK_BEHIND_MS: u64 = 3_000;
/// The virtual wall clock starts here (2026-01-01, in Unix milliseconds).
const WALL_CLOCK_START_MS: u64 = 1_767_225_600_000;
/// Trace lines kept for a failure report.
const TRACE_TAIL_LINES: usize = 400;

/// Something that happens at a virtual time.
#[derive(Debug)]
enum Event {
    Tick {
        node: u64,
        life: u64,
    },
    /// The leader's commit index goes out on its own, as the driver's
    /// timer sends it (see `node::core::commit_notice`).
    CommitNotice {
        node: u64,
        life: u64,
    },
    Deliver {
        from: u64,
        to: u64,
        message: Box<Message>,
    },
    SnapshotReport {
        leader: u64,
        life: u64,
        to: u64,
        delivered: bool,
    },
    StateHash {
        from: u64,
        to: u64,
        index: u64,
        hash: [u8; 32],
    },
    ClientNext {
        client: usize,
    },
    ClientDeadline {
        client: usize,
        op: OpId,
    },
    Nemesis,
    Restart {
        node: u64,
    },
    Heal,
    Calm,
}

/// An operator request waiting for its answer.
#[derive(Debug)]
enum AdminKind {
    Add,
    Remove(u64),
    Upgrade,
}

/// A failed run: why, when, and the last events before it.
#[derive(Debug)]
pub struct Stop {
    pub at: Duration,
    pub reason: String,
    pub trace_tail: Vec<String>,
}

/// The running hash of every event, and the last lines of it.
struct Trace {
    hasher: blake3::Hasher,
    tail: VecDeque<String>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    lines: u64,
}

impl Trace {
    fn line(&mut self, now: Duration, text: String) {
        let line = format!("{:>8} {text}", now.as_millis());
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        self.lines += 1;
        if let Some(file) = &mut self.file {
            let _ = writeln!(file, "{line}");
        }
        if self.tail.len() == TRACE_TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }
}

/// One run's whole world: the nodes, the network, the clients, the clock
/// and the queue of what happens next.
pub(super) struct World<'a> {
    cfg: &'a SimConfig,
    rng: SimRng,
    now: Duration,
    base: Instant,
    wall_ms: Arc<AtomicU64>,
    queue: BTreeMap<(Duration, u64), Event>,
    seq: u64,
    pub nodes: BTreeMap<u64, SimNode>,
    next_node_id: u64,
    pub net: SimNetwork,
    pub invariants: Invariants,
    pub workload: Workload,
    trace: Trace,
    pub faults: FaultCounts,
    admin: Vec<(AdminKind, oneshot::Receiver<Result<Applied, ClientError>>)>,
    /// Component bytes the cluster switches between.
    components: Vec<Vec<u8>>,
    /// The one the next upgrade switches to.
    upgrade_to: usize,
    snapshot_policy: SnapshotPolicy,
    state_check_every: u64,
    clients_running: bool,
    faults_until: Duration,
    pub events: u64,
}

pub(super) type Step<T> = Result<T, Stop>;

/// A node's address: a key derived from its id (nothing dials it).
fn addr_of(id: u64) -> PeerAddr {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&id.to_le_bytes());
    PeerAddr::new(iroh::SecretKey::from_bytes(&secret).public(), [])
}

impl<'a> World<'a> {
    pub fn new(cfg: &'a SimConfig) -> Result<Self, String> {
        let mut rng = SimRng::new(cfg.seed);
        let snapshot_policy = SnapshotPolicy {
            every_entries: rng.range(30, 150),
            every_log_bytes: 0,
            keep_entries: rng.range(5, 40),
        };
        let state_check_every = rng.range(20, 60);
        let mut components = vec![cfg.guest.clone()];
        components.extend(cfg.upgrade_guest.clone());
        let file = match &cfg.trace_file {
            Some(path) => Some(std::io::BufWriter::new(
                std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
            )),
            None => None,
        };
        Ok(World {
            cfg,
            rng,
            now: Duration::ZERO,
            base: Instant::now(),
            wall_ms: Arc::new(AtomicU64::new(WALL_CLOCK_START_MS)),
            queue: BTreeMap::new(),
            seq: 0,
            nodes: BTreeMap::new(),
            next_node_id: 1,
            net: SimNetwork::new(),
            invariants: Invariants::new(),
            workload: Workload::new(cfg.clients),
            trace: Trace {
                hasher: blake3::Hasher::new(),
                tail: VecDeque::new(),
                file,
                lines: 0,
            },
            faults: FaultCounts::default(),
            admin: Vec::new(),
            components,
            upgrade_to: 1,
            snapshot_policy,
            state_check_every,
            clients_running: false,
            faults_until: Duration::ZERO,
            events: 0,
        })
    }

    pub fn trace_hash(&self) -> String {
        self.trace.hasher.finalize().to_hex().to_string()
    }

    /// Virtual time since the run started.
    pub fn now(&self) -> Duration {
        self.now
    }

    pub fn trace_lines(&self) -> u64 {
        self.trace.lines
    }

    fn stop(&self, reason: impl Into<String>) -> Stop {
        Stop {
            at: self.now,
            reason: reason.into(),
            trace_tail: self.trace.tail.iter().cloned().collect(),
        }
    }

    fn note(&mut self, text: String) {
        self.trace.line(self.now, text);
    }

    fn schedule(&mut self, after: Duration, event: Event) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), event);
    }

    fn instant(&self) -> Instant {
        self.base + self.now
    }

    fn wall_now(&self) -> u64 {
        WALL_CLOCK_START_MS + self.now.as_millis() as u64
    }

    /// Node `id`'s wall clock (behind the virtual one by its skew).
    fn wall_of(&self, id: u64) -> u64 {
        let behind = self.nodes.get(&id).map_or(0, |node| node.clock_behind_ms);
        self.wall_now().saturating_sub(behind)
    }

    // ---- the cluster's life ----

    /// Node 1 creates the cluster; the others join one by one, as an
    /// operator would add them.
    pub fn form_cluster(&mut self) -> Step<()> {
        let first = self.new_node(ClusterMode::NewClusterAt(addr_of(1)))?;
        self.run_until(Duration::from_secs(10), |w| w.leader() == Some(first))?;
        for _ in 1..self.cfg.nodes {
            self.add_node()?;
            self.run_until(Duration::from_secs(30), |w| w.admin.is_empty())?;
        }
        let voters = self.leader_view().map(|v| v.voters.len()).unwrap_or(0);
        if voters != self.cfg.nodes {
            return Err(self.stop(format!(
                "forming the cluster: {voters} voters, wanted {}",
                self.cfg.nodes
            )));
        }
        self.note(format!("cluster formed with {voters} voters"));
        Ok(())
    }

    /// Clients run and faults strike for `duration`.
    pub fn run_faults(&mut self, duration: Duration) -> Step<()> {
        self.clients_running = true;
        for client in 0..self.workload.clients.len() {
            let think = Duration::from_millis(self.rng.range(0, workload::MAX_THINK_TIME_MS));
            self.schedule(think, Event::ClientNext { client });
        }
        self.faults_until = self.now + duration;
        if self.cfg.faults {
            let first = Duration::from_millis(self.rng.range(200, 1500));
            self.schedule(first, Event::Nemesis);
        }
        self.run_for(duration)
    }

    /// Process every event of the next `duration` of virtual time.
    pub(super) fn run_for(&mut self, duration: Duration) -> Step<()> {
        let end = self.now + duration;
        while self
            .queue
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= end)
        {
            self.next_event()?;
        }
        self.now = end;
        Ok(())
    }

    /// Heal everything, restart every node that is down, and require the
    /// cluster to serve again and its replicas to converge.
    pub fn heal_and_converge(&mut self, within: Duration) -> Step<()> {
        self.faults_until = self.now;
        self.net.heal();
        self.net.weather = Weather::CALM;
        for node in self.nodes.values_mut() {
            node.paused_until = Duration::ZERO;
        }
        let down: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| !n.is_live() && !n.retired)
            .map(|n| n.id)
            .collect();
        for id in down {
            self.restart(id)?;
        }
        self.note("healed; every node up".into());
        // Progress: a write acknowledged after healing.
        let acked_before = self.workload.answers.ok;
        let healed_at = self.now;
        self.run_until(within, |w| w.workload.answers.ok > acked_before + 2)
            .map_err(|mut stop| {
                stop.reason = format!("no progress after healing: {}", stop.reason);
                stop
            })?;
        self.faults.recovery_ms = (self.now - healed_at).as_millis() as u64;
        self.clients_running = false;
        self.run_until(crate::limits::CLIENT_TIMEOUT * 2, |w| {
            w.workload.clients.iter().all(|c| c.outstanding.is_none())
        })?;
        self.run_until(within, |w| w.converged())
            .map_err(|mut stop| {
                stop.reason = format!("replicas did not converge: {}", stop.reason);
                stop
            })
    }

    /// Every member of the final configuration is up and has applied
    /// everything its leader committed.
    fn converged(&self) -> bool {
        let Some(view) = self.leader_view() else {
            return false;
        };
        view.members.iter().all(|member| {
            self.nodes
                .get(&member.id)
                .and_then(|n| n.live.as_ref())
                .is_some_and(|live| live.shared.applied_index() >= view.commit_index)
        })
    }

    /// Read every key through the leader (recorded in the history); then,
    /// once every member applied the same index, read every member's own
    /// state directly: all must agree.
    pub fn final_reads(&mut self) -> Step<BTreeMap<String, String>> {
        let Some(leader) = self.leader() else {
            return Err(self.stop("no leader for the final reads"));
        };
        let keys: Vec<String> = (0..workload::KEYS).map(|k| format!("get k{k}")).collect();
        for text in &keys {
            let request = workload::Request {
                text: text.clone(),
                read: Some(crate::node::Consistency::Linearizable),
            };
            self.send_request(0, leader, &request)?;
            self.run_until(crate::limits::CLIENT_TIMEOUT * 2, |w| {
                w.workload.clients[0].outstanding.is_none()
            })?;
        }
        self.run_until(RECOVERY_BOUND, |w| {
            w.converged()
                && w.applied_indexes()
                    .into_values()
                    .collect::<BTreeSet<_>>()
                    .len()
                    == 1
        })
        .map_err(|mut stop| {
            stop.reason = format!(
                "members did not reach the same applied index: {:?} ({})",
                self.applied_indexes(),
                stop.reason
            );
            stop
        })?;
        let members: Vec<u64> = self.applied_indexes().into_keys().collect();
        let mut answers = BTreeMap::new();
        for text in keys {
            let mut seen = BTreeMap::new();
            for &member in &members {
                let (tx, rx) = oneshot::channel();
                let bytes = text.clone().into_bytes();
                self.input(
                    member,
                    NodeMsg::Query {
                        request: bytes,
                        consistency: crate::node::Consistency::Stale,
                        reply: tx,
                    },
                )?;
                let answer = match workload::poll(&mut Waiting::Read(rx)) {
                    Some((Answer::Reply(reply), _)) => format!("{reply:?}"),
                    other => format!("no answer: {other:?}"),
                };
                seen.insert(member, answer);
            }
            if seen.values().collect::<BTreeSet<_>>().len() != 1 {
                return Err(self.stop(format!(
                    "replicas disagree on `{text}` after converging: {seen:?}"
                )));
            }
            answers.insert(text, seen.into_values().next().unwrap_or_default());
        }
        Ok(answers)
    }

    /// The applied index of every member of the leader's configuration
    /// that is up.
    fn applied_indexes(&self) -> BTreeMap<u64, u64> {
        let Some(view) = self.leader_view() else {
            return BTreeMap::new();
        };
        view.members
            .iter()
            .filter_map(|m| {
                let live = self.nodes.get(&m.id)?.live.as_ref()?;
                Some((m.id, live.shared.applied_index()))
            })
            .collect()
    }

    pub fn shut_down(&mut self) {
        for node in self.nodes.values_mut() {
            node.crash();
        }
    }

    // ---- the event loop ----

    /// Process events until `done` holds (checked after each event); a
    /// failure if `limit` of virtual time passes first.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Self) -> bool) -> Step<()> {
        let deadline = self.now + limit;
        while !done(self) {
            let Some(((at, _), _)) = self.queue.first_key_value() else {
                return Err(self.stop("nothing left to happen"));
            };
            if *at > deadline {
                return Err(self.stop(format!(
                    "not done within {} ms of virtual time",
                    limit.as_millis()
                )));
            }
            self.next_event()?;
        }
        Ok(())
    }

    /// Process the earliest event.
    fn next_event(&mut self) -> Step<()> {
        let Some(((at, _), event)) = self.queue.pop_first() else {
            return Ok(());
        };
        self.now = at;
        self.wall_ms.store(self.wall_now(), Ordering::Relaxed);
        self.events += 1;
        self.handle(event)?;
        self.poll_answers()
    }

    fn handle(&mut self, event: Event) -> Step<()> {
        // A frozen node's input waits for it, in order.
        let addressee = match &event {
            Event::Tick { node, .. } | Event::CommitNotice { node, .. } => Some(*node),
            Event::Deliver { to, .. } | Event::StateHash { to, .. } => Some(*to),
            Event::SnapshotReport { leader, .. } => Some(*leader),
            _ => None,
        };
        if let Some(until) = addressee
            .and_then(|id| self.nodes.get(&id))
            .map(|n| n.paused_until)
            .filter(|until| *until > self.now)
        {
            self.schedule(until - self.now, event);
            return Ok(());
        }
        match event {
            Event::Tick { node, life } => {
                if self
                    .nodes
                    .get(&node)
                    .is_some_and(|n| n.life == life && n.is_live())
                {
                    let (now, now_ms) = (self.instant(), self.wall_of(node));
                    self.drive(node, |live, _| live.core.tick(now, now_ms))?;
                    self.schedule(TICK, Event::Tick { node, life });
                }
            }
            Event::CommitNotice { node, life } => {
                if let Some(sim) = self.nodes.get_mut(&node)
                    && sim.life == life
                {
                    sim.commit_notice_scheduled = false;
                    self.drive(node, |live, _| live.core.send_commit_notice())?;
                }
            }
            Event::Deliver { from, to, message } => self.deliver(from, to, *message)?,
            Event::SnapshotReport {
                leader,
                life,
                to,
                delivered,
            } => {
                if self.nodes.get(&leader).is_some_and(|n| n.life == life) {
                    self.note(format!(
                        "snapshot report {leader}->{to} delivered={delivered}"
                    ));
                    self.input(leader, NodeMsg::SnapshotReport { to, delivered })?;
                }
            }
            Event::StateHash {
                from,
                to,
                index,
                hash,
            } => {
                self.note(format!("state hash {from}->{to} at {index}"));
                self.input(to, NodeMsg::StateHash { from, index, hash })?;
            }
            Event::ClientNext { client } => self.client_next(client)?,
            Event::ClientDeadline { client, op } => {
                let waiting = &self.workload.clients[client].outstanding;
                if let Some(outstanding) = waiting
                    && outstanding.op == op
                {
                    let answer = match outstanding.waiting {
                        Waiting::Write(_) => Answer::Unknown,
                        Waiting::Read(_) => Answer::Failed,
                    };
                    self.finish_client(client, answer, None);
                }
            }
            Event::Nemesis => {
                if self.now < self.faults_until {
                    self.nemesis()?;
                    let next = Duration::from_millis(self.rng.range(300, 2500));
                    self.schedule(next, Event::Nemesis);
                }
            }
            Event::Restart { node } => {
                if self.now < self.faults_until
                    && self
                        .nodes
                        .get(&node)
                        .is_some_and(|n| !n.is_live() && !n.retired)
                {
                    self.restart(node)?;
                }
            }
            Event::Heal => {
                self.note("heal the network".into());
                self.net.heal();
            }
            Event::Calm => {
                self.note("weather calm".into());
                self.net.weather = Weather::CALM;
            }
        }
        Ok(())
    }

    /// Run one input on a live node, settle it, send what it emitted and
    /// check every invariant. Nothing happens if the node is down.
    /// Hand `message` to node `id` as its inbox would, through the same
    /// dispatch the driver uses, at the current virtual time.
    pub(super) fn input(&mut self, id: u64, message: NodeMsg) -> Step<()> {
        let (now, now_ms) = (self.instant(), self.wall_of(id));
        self.drive(id, |live, jobs| live.input(message, now, now_ms, jobs))
    }

    fn drive(&mut self, id: u64, input: impl FnOnce(&mut Live, &mut Vec<ApplyJob>)) -> Step<()> {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let life = node.life;
        let Some(live) = node.live.as_mut() else {
            return Ok(());
        };
        // raft-rs panics when it finds its own invariants broken: that is a
        // failed run with a seed, not a crashed test.
        let settled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut jobs = Vec::new();
            input(live, &mut jobs);
            live.hand_over(jobs).and_then(|()| live.settle())
        }))
        .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(panic.as_ref()))));
        let output = match settled {
            Ok(output) => output,
            Err(reason) => return Err(self.stop(format!("node {id}: {reason}"))),
        };
        let view = live.core.view();
        let set_notice = live.core.owes_commit_notice() && !node.commit_notice_scheduled;
        if set_notice {
            node.commit_notice_scheduled = true;
        }
        let checked = self
            .invariants
            .after_step(id, life, &view, &live.storage, &live.shared);
        if let Err(violation) = checked {
            return Err(self.stop(format!("invariant violated: {violation}")));
        }
        if set_notice {
            self.schedule(
                crate::limits::COMMIT_NOTICE_DELAY,
                Event::CommitNotice { node: id, life },
            );
        }
        for message in output.messages {
            self.send(id, message);
        }
        for (index, hash) in output.state_hashes {
            let peers: Vec<u64> = view
                .members
                .iter()
                .map(|m| m.id)
                .filter(|p| *p != id)
                .collect();
            for peer in peers {
                for delay in self.net.delays(&mut self.rng, id, peer) {
                    self.schedule(
                        delay,
                        Event::StateHash {
                            from: id,
                            to: peer,
                            index,
                            hash,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// The leader of the highest term among running, unfrozen nodes.
    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .values()
            .filter(|n| n.paused_until <= self.now)
            .filter_map(|n| n.view())
            .filter(|v| v.role == StateRole::Leader)
            .max_by_key(|v| v.term)
            .map(|v| v.id)
    }

    fn leader_view(&self) -> Option<crate::node::core::RaftView> {
        self.nodes.get(&self.leader()?)?.view()
    }

    /// Nodes that run and are not frozen.
    fn live_ids(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.is_live() && n.paused_until <= self.now)
            .map(|n| n.id)
            .collect()
    }

    /// Voters of the leader's configuration (or every non-retired node if
    /// there is no leader).
    fn voters(&self) -> Vec<u64> {
        match self.leader_view() {
            Some(view) => view.voters,
            None => self
                .nodes
                .values()
                .filter(|n| !n.retired)
                .map(|n| n.id)
                .collect(),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Write the genesis guest where every node's config points.
pub(super) fn write_guest(work_dir: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(work_dir)?;
    let path = work_dir.join("guest.wasm");
    std::fs::write(&path, bytes)?;
    Ok(path)
}
