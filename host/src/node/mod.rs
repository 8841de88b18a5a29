//! The node: one Raft replica driving one guest state machine.
//!
//! ```text
//!  NodeHandle (clone) ──NodeMsg──►  driver loop (tokio task)  ◄── tick interval
//!     propose / query / status       │  owns NodeCore = RawNode + Ready handling
//!                                    │   1. step / tick / propose
//!                                    │   2. Ready: persist entries + hard state
//!                                    │      (one sled batch, fsync)   ──► storage
//!                                    │   3. messages that depend on it ──► Transport
//!                                    │   4. committed entries ──ApplyJob──► applier thread
//!                                    ▼                                     │ StateMachine (wasm)
//!                              oneshot replies ◄──────── applied results ──┘
//! ```
//!
//! Logic and I/O are split as in raft-rs's own examples: [`core::NodeCore`]
//! is synchronous and does no I/O but storage; [`driver`] is the thin async
//! loop around it; [`applier`] runs the guest on its own thread. A client is
//! answered only after its entry is durable (fsynced), committed and applied.
//!
//! **Restart.** The guest's state lives in memory. On start the node
//! restores the latest snapshot file into a fresh instance (see
//! [`snapshot`]) and tells raft-rs that nothing beyond the snapshot is
//! applied, so raft-rs hands every later committed entry to the applier
//! again, in order: each entry is applied exactly once to the state being
//! rebuilt.
//!
//! **Snapshots.** Every [`SnapshotPolicy`] entries or bytes the applier writes
//! a snapshot file; the node records it in storage and compacts the log
//! behind it. A follower too far behind receives the file from the leader,
//! streamed in chunks by the transport.

pub mod applier;
pub mod canary;
pub mod component_fetch;
pub mod components;
pub mod core;
pub mod divergence;
pub mod driver;
pub mod envelope;
pub mod error;
pub mod logger;
pub mod snapshot;
pub mod status;
pub mod upgrade;
pub mod upgrade_handle;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use raft::prelude::{ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState};
use raft::{RawNode, StateRole};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument as _;

pub use self::applier::{Applied, QueryAnswer};
pub use self::core::MAX_COMMAND_BYTES;
pub use self::core::{Consistency, MemberView, MembershipChange, SnapshotInfo};
pub use self::driver::{Forwarder, NoPeers, NodeLink, NodeMsg, Transport};
pub use self::error::{ClientError, ForwardError, NodeError};
pub use self::snapshot::SnapshotPolicy;
pub use self::status::{GuestStatus, MemberStatus, NodeStatus};

use self::applier::{ApplierEnv, ApplierShared};
use self::components::ComponentStore;
use self::core::{ACTIVE_COMPONENT_KEY, CONF_INDEX_META_KEY, CoreSetup, NodeCore};
use self::snapshot::{LoadedSnapshot, SNAPSHOT_DIR};
use crate::metrics::{self, NodeMetrics};
use crate::storage::SledStorage;
use crate::transport::sender::PeerStatsRegistry;
use crate::transport::{PeerAddr, PeerDirectory};
use crate::wasm::{ComponentHash, GuestLimits, StateMachine, WasmEngine};
use std::collections::BTreeMap;

/// Ticks without a heartbeat before a follower starts an election.
pub const ELECTION_TICKS: usize = 10;
/// Ticks between leader heartbeats.
pub const HEARTBEAT_TICKS: usize = 3;
/// Largest append message raft-rs builds.
pub const MAX_RAFT_MESSAGE_BYTES: u64 = 4 * 1024 * 1024;
/// Append messages in flight per follower.
pub const MAX_INFLIGHT_MESSAGES: usize = 256;
/// Committed entries handed out per Ready, so replay after a restart streams.
pub const MAX_COMMITTED_BYTES_PER_READY: u64 = 16 * 1024 * 1024;

/// Which guest a node runs when it creates a new cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestSource {
    /// The built-in counter.
    Default,
    /// A component file.
    File(PathBuf),
}

/// How a node with an empty data dir enters a cluster. Ignored when the data
/// dir already holds a log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClusterMode {
    /// Create a new cluster with this node as its only voter. With an
    /// address, the address is recorded in the log so that nodes added later
    /// can reach this one.
    #[default]
    NewCluster,
    /// Create a new cluster, recording this node's address.
    NewClusterAt(PeerAddr),
    /// Join an existing cluster whose membership is given (fetched from a
    /// member): start empty and wait for the leader to replicate the log.
    Join { members: BTreeMap<u64, PeerAddr> },
    /// Create a new single-node cluster whose state (and guest) is a backup
    /// snapshot file's, this node (at the optional address) its only voter.
    Restore {
        backup: PathBuf,
        addr: Option<PeerAddr>,
    },
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Raft id of this node (non-zero).
    pub id: u64,
    pub data_dir: PathBuf,
    pub guest: GuestSource,
    pub limits: GuestLimits,
    pub cluster: ClusterMode,
    /// When to snapshot and compact.
    pub snapshot: SnapshotPolicy,
    /// Sends proposals to the leader when this node is a follower.
    pub forwarder: Option<Arc<dyn Forwarder>>,
    /// The transport's peer directory, for last-contact times in status.
    pub directory: Option<PeerDirectory>,
    /// The transport's per-peer counters, for metrics.
    pub peer_stats: Option<PeerStatsRegistry>,
    /// This node's ticket, shown in status.
    pub ticket: Option<String>,
    /// How long validating an upgrade's component may take here.
    pub compile_budget: Duration,
    /// Committed entries between state checks (see [`divergence`]; 0: off).
    pub state_check_every: u64,
    /// Tests only: break linearizable reads (see
    /// [`core::CoreSetup::unsafe_local_reads`]).
    pub unsafe_local_reads: bool,
}

impl NodeConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            id: 1,
            data_dir: data_dir.into(),
            guest: GuestSource::Default,
            limits: GuestLimits::default(),
            cluster: ClusterMode::NewCluster,
            snapshot: SnapshotPolicy::default(),
            forwarder: None,
            directory: None,
            peer_stats: None,
            ticket: None,
            compile_budget: upgrade::DEFAULT_COMPILE_BUDGET,
            state_check_every: divergence::DEFAULT_STATE_CHECK_EVERY,
            unsafe_local_reads: false,
        }
    }
}

/// What a client proposes: a guest command or a component activation.
#[derive(Debug, Clone)]
enum Proposal {
    Command(Vec<u8>),
    Activation(upgrade::Activation),
}

/// A cheap, cloneable handle to a running node. The node stops when
/// [`NodeHandle::shutdown`] is called or every handle is dropped.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    id: u64,
    inbox: mpsc::Sender<NodeMsg>,
    upgrades: upgrade_handle::UpgradeEnv,
    shutdown: mpsc::Sender<oneshot::Sender<()>>,
    forwarder: Option<Arc<dyn Forwarder>>,
    directory: Option<PeerDirectory>,
    ticket: Option<String>,
    applier: Arc<ApplierShared>,
    metrics: NodeMetrics,
    peer_stats: Option<PeerStatsRegistry>,
    /// Read only for its size on disk.
    storage: SledStorage,
    data_dir: PathBuf,
    /// `None` while running; the reason once stopped (empty if clean).
    stopped: watch::Receiver<Option<String>>,
    /// The leader this node currently knows of.
    leader: watch::Receiver<Option<u64>>,
}

impl NodeHandle {
    /// Propose a command; resolves once it is applied (or refused). On a
    /// follower that knows the leader, the proposal is forwarded to it.
    pub async fn propose(&self, command: Vec<u8>) -> Result<Applied, ClientError> {
        let timer = self.inner.metrics.start_proposal();
        let result = self.propose_or_forward(Proposal::Command(command)).await;
        timer.finish(&result);
        result
    }

    /// Propose here; on a follower, forward to the leader (waiting briefly
    /// for one to be known). A forward that certainly did not reach the
    /// leader (it died, or lost its leadership before acknowledging the
    /// request) is sent again once this node's leader watch names another
    /// leader (or this node); one that may have reached it answers
    /// `outcome_unknown`. Bounded by [`MAX_PROPOSE_ROUNDS`] rounds of at
    /// most [`LEADER_WAIT`] or one forward each.
    async fn propose_or_forward(&self, proposal: Proposal) -> Result<Applied, ClientError> {
        let Some(forwarder) = self.inner.forwarder.as_ref() else {
            return self.propose_here_as(proposal).await;
        };
        // The leader the last forward could not reach: not tried again
        // until the node names another leader.
        let mut unreachable = None;
        let mut result = self.propose_here_as(proposal.clone()).await;
        for _ in 0..MAX_PROPOSE_ROUNDS {
            let leader = match &result {
                Err(ClientError::NotLeader {
                    leader_hint: Some(leader),
                }) if Some(*leader) != unreachable => *leader,
                // No leader known yet (just started, an election is
                // running) or only the unreachable one: wait for one,
                // briefly, rather than bounce the client.
                Err(ClientError::NotLeader { .. }) => {
                    if !self.wait_for_leader_other_than(unreachable).await {
                        return result;
                    }
                    result = self.propose_here_as(proposal.clone()).await;
                    continue;
                }
                _ => return result,
            };
            let leader_view = self.inner.leader.clone();
            let forwarded = match proposal.clone() {
                Proposal::Command(command) => {
                    forwarder
                        .forward_propose(leader, command, leader_view)
                        .await
                }
                Proposal::Activation(activation) => {
                    forwarder
                        .forward_activation(leader, activation, leader_view)
                        .await
                }
            };
            match forwarded {
                Ok(applied) => return Ok(applied),
                // A node that no longer leads proposes nothing: as good as
                // not delivered.
                Err(ForwardError::Client(ClientError::NotLeader { .. })) => {
                    tracing::info!(
                        leader,
                        "forwarded to a former leader; waiting for the new one"
                    );
                    unreachable = Some(leader);
                    result = Err(ClientError::NotLeader {
                        leader_hint: Some(leader),
                    });
                }
                Err(ForwardError::Client(error)) => return Err(error),
                Err(ForwardError::NotDelivered { leader, reason }) => {
                    tracing::info!(
                        leader, %reason,
                        "a forwarded proposal did not reach the leader; waiting for another"
                    );
                    unreachable = Some(leader);
                    result = Err(ClientError::NotLeader {
                        leader_hint: Some(leader),
                    });
                }
            }
        }
        result
    }

    /// Wait (at most [`LEADER_WAIT`]) until this node knows a leader other
    /// than `unreachable`; false if none came or the node stopped.
    async fn wait_for_leader_other_than(&self, unreachable: Option<u64>) -> bool {
        let mut leader = self.inner.leader.clone();
        let named = leader.wait_for(|leader| leader.is_some() && *leader != unreachable);
        matches!(tokio::time::timeout(LEADER_WAIT, named).await, Ok(Ok(_)))
    }

    /// Propose a command on this node only (no forwarding).
    pub async fn propose_here(&self, command: Vec<u8>) -> Result<Applied, ClientError> {
        self.propose_here_as(Proposal::Command(command)).await
    }

    async fn propose_here_as(&self, proposal: Proposal) -> Result<Applied, ClientError> {
        let (reply, answer) = oneshot::channel();
        let message = match proposal {
            Proposal::Command(command) => NodeMsg::Propose { command, reply },
            Proposal::Activation(activation) => NodeMsg::ProposeActivation { activation, reply },
        };
        self.inner.inbox.try_send(message)?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    /// Change the membership (on the leader); resolves once the change is
    /// applied (a new voter: once it caught up and was promoted).
    pub async fn change_membership(&self, change: MembershipChange) -> Result<u64, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .inbox
            .try_send(NodeMsg::ChangeMembership { change, reply })?;
        let applied = answer.await.map_err(|_| ClientError::Stopped)??;
        Ok(applied.index)
    }

    /// Hand leadership to `target` (or the most up-to-date other voter);
    /// resolves with the new leader once it leads, or `Timeout`.
    pub async fn transfer_leader(&self, target: Option<u64>) -> Result<u64, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .inbox
            .try_send(NodeMsg::TransferLeader { target, reply })?;
        let target = answer.await.map_err(|_| ClientError::Stopped)??;
        let mut leader = self.inner.leader.clone();
        match tokio::time::timeout(LEADER_WAIT, leader.wait_for(|l| *l == Some(target))).await {
            Ok(Ok(_)) => Ok(target),
            Ok(Err(_)) => Err(ClientError::Stopped),
            Err(_) => Err(ClientError::Timeout {
                timeout_ms: LEADER_WAIT.as_millis() as u64,
            }),
        }
    }

    /// The file of the latest snapshot, if there is one.
    pub fn latest_snapshot_path(&self) -> Option<PathBuf> {
        let (index, term) = self.inner.storage.snapshot_position()?;
        Some(snapshot::path_for(
            &self.inner.data_dir.join(SNAPSHOT_DIR),
            index,
            term,
        ))
    }

    /// Take a snapshot now and compact the log behind it.
    pub async fn snapshot(&self) -> Result<SnapshotInfo, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.inner.inbox.try_send(NodeMsg::Snapshot { reply })?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    /// The node's inbox, for the transport's protocol handler.
    pub fn raft_sender(&self) -> mpsc::Sender<NodeMsg> {
        self.inner.inbox.clone()
    }

    /// Run a read-only query, linearizable (see [`Consistency`]).
    pub async fn query(&self, request: Vec<u8>) -> Result<QueryAnswer, ClientError> {
        self.query_with(request, Consistency::Linearizable).await
    }

    /// Run a read-only query at the given consistency.
    pub async fn query_with(
        &self,
        request: Vec<u8>,
        consistency: Consistency,
    ) -> Result<QueryAnswer, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.inner.inbox.try_send(NodeMsg::Query {
            request,
            consistency,
            reply,
        })?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.inner.inbox.try_send(NodeMsg::Status { reply })?;
        let view = answer.await.map_err(|_| ClientError::Stopped)?;
        let applier = &self.inner.applier;
        let stats = applier.stats();
        let (guest, hash) = applier.guest();
        let snapshot_index = self
            .inner
            .storage
            .snapshot_position()
            .map(|(index, _)| index);
        let first_log_index = self.inner.storage.first_log_index();
        Ok(NodeStatus {
            id: view.id,
            role: role_name(view.role).to_string(),
            term: view.term,
            leader_id: view.leader_id,
            commit_index: view.commit_index,
            applied_index: applier.applied_index(),
            last_index: view.last_index,
            voters: view.voters,
            pending_proposals: view.pending_proposals,
            members: view
                .members
                .into_iter()
                .map(|m| MemberStatus {
                    id: m.id,
                    node_id: m.addr.as_ref().map(|a| a.node_id.clone()),
                    addrs: m.addr.map(|a| a.addrs).unwrap_or_default(),
                    voter: m.voter,
                    match_index: m.match_index,
                    last_contact_ms: if m.id == view.id {
                        None
                    } else {
                        self.inner
                            .directory
                            .as_ref()
                            .and_then(|d| d.last_contact_ms(m.id))
                    },
                })
                .collect(),
            guest: GuestStatus {
                name: guest.name,
                version: guest.version,
                hash,
                since_index: applier.history().active.index,
                applied_entries: stats.applied,
                failed_entries: stats.failures,
                instance_rebuilds: stats.rebuilds,
            },
            data_dir: self.inner.data_dir.display().to_string(),
            ticket: self.inner.ticket.clone(),
            snapshot_index,
            first_log_index,
            diverged: applier.diverged(),
            last_verified_state_check: applier.last_verified_state_check(),
        })
    }

    /// The node's metrics in the Prometheus text format (see
    /// [`crate::metrics`]).
    pub async fn metrics_text(&self) -> Result<String, ClientError> {
        let status = self.status().await?;
        let storage = self.inner.storage.clone();
        // A stat and a directory listing: kept off the async threads.
        let storage_bytes = match tokio::task::spawn_blocking(move || storage.size_on_disk()).await
        {
            Ok(Ok(bytes)) => Some(bytes),
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot measure the store for metrics");
                None
            }
            Err(_) => None,
        };
        let peers = self
            .inner
            .peer_stats
            .as_ref()
            .map(PeerStatsRegistry::snapshot)
            .unwrap_or_default();
        let scrape = metrics::Scrape {
            status: &status,
            guest: self.inner.applier.stats(),
            peers: &peers,
            storage_bytes,
        };
        Ok(metrics::render(&self.inner.metrics, &scrape))
    }

    /// True while the node loop runs.
    pub fn is_running(&self) -> bool {
        self.inner.stopped.borrow().is_none()
    }

    /// Wait until the node stops; returns the fatal error, if any.
    pub async fn stopped(&self) -> Option<String> {
        let mut stopped = self.inner.stopped.clone();
        let reason = stopped
            .wait_for(Option::is_some)
            .await
            .map(|r| r.clone().unwrap_or_default())
            .unwrap_or_default();
        (!reason.is_empty()).then_some(reason)
    }

    /// Stop the node: pending clients get `Stopped`, queued entries finish
    /// applying, and everything acknowledged is already durable.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.inner.shutdown.send(reply).await.is_ok() {
            let _ = done.await;
        }
        self.stopped().await;
    }
}

fn role_name(role: StateRole) -> &'static str {
    match role {
        StateRole::Leader => "leader",
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::PreCandidate => "pre_candidate",
    }
}

/// A node's parts before anything runs: the Raft core over its opened
/// storage, and the guest restored to where the log resumes. [`start`] runs
/// them on a tokio task and the applier thread; the deterministic
/// simulation ([`crate::simulation`]) steps them by hand.
#[derive(Debug)]
pub struct NodeParts {
    pub core: NodeCore,
    pub env: ApplierEnv,
    pub machine: StateMachine,
    pub history: upgrade::ComponentHistory,
    pub applied_index: u64,
    pub members: BTreeMap<u64, PeerAddr>,
    /// Another handle on the core's store (for its size on disk).
    pub storage: SledStorage,
    /// The leader the core currently knows of.
    pub leader: watch::Receiver<Option<u64>>,
}

/// Where a simulated node differs from a production one.
#[derive(Debug, Default)]
pub struct PartsOverrides {
    /// Share one engine (and its compiled components) between nodes.
    pub engine: Option<WasmEngine>,
    /// A fixed election timeout in ticks instead of raft-rs's random one
    /// (which reads the thread's RNG, so no seed could replay it).
    pub election_timeout_ticks: Option<usize>,
    pub wall_clock: Option<applier::WallClock>,
    /// See [`ApplierEnv::hash_states`].
    pub hash_states: bool,
}

/// Open the data dir (bootstrapping it if empty), load the guest from the
/// latest snapshot or the configured file, and build the Raft core.
pub fn assemble(config: &NodeConfig, overrides: PartsOverrides) -> Result<NodeParts, NodeError> {
    if config.id == 0 {
        return Err(NodeError::Config("the node id must be non-zero".into()));
    }
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| NodeError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let storage = SledStorage::open(&data_dir.join("raft"))?;
    let state_hash_tx = broadcast_state_hashes(config);
    let engine = match overrides.engine {
        Some(engine) => engine,
        None => WasmEngine::new(Some(data_dir.join("component-cache")))?,
    };
    let components =
        ComponentStore::open(data_dir.join("components")).map_err(|source| NodeError::DataDir {
            path: data_dir.join("components"),
            source,
        })?;
    let env = ApplierEnv {
        node_id: config.id,
        engine: engine.clone(),
        limits: config.limits,
        components: components.clone(),
        snapshot_dir: data_dir.join(SNAPSHOT_DIR),
        fetch: config
            .forwarder
            .clone()
            .map(|peers| component_fetch::PeerFetch {
                runtime: tokio::runtime::Handle::current(),
                peers,
                directory: config.directory.clone(),
                self_id: config.id,
            }),
        state_hashes: state_hash_tx,
        wall_clock: overrides
            .wall_clock
            .unwrap_or_else(applier::WallClock::system),
        hash_states: overrides.hash_states,
    };
    if let ClusterMode::Restore { backup, addr } = &config.cluster
        && storage.is_fresh()
    {
        bootstrap_from_backup(config, &env, &storage, backup, addr.clone())?;
    }
    let (machine, history, applied_index) = match storage.snapshot_position() {
        Some((index, term)) => {
            let (machine, history) = restore_latest_snapshot(config, &env, &storage, index, term)?;
            (machine, history, index)
        }
        None => {
            let machine = load_active_guest(config, &storage, &engine, &components)?;
            let history = applier::genesis_history(&machine);
            (machine, history, 0)
        }
    };
    tracing::info!(id = config.id, guest = %machine.info().name,
        version = %machine.info().version, hash = %machine.component().hash,
        applied_index, "guest loaded");

    let members = if storage.is_fresh() {
        bootstrap(config, &storage)?
    } else {
        load_members(&storage)?
    };
    let conf_applied_index =
        match storage.get_meta(CONF_INDEX_META_KEY)? {
            None => 0,
            Some(raw) => String::from_utf8_lossy(&raw).parse::<u64>().map_err(|e| {
                NodeError::CorruptEntry {
                    index: 0,
                    reason: format!("stored conf index: {e}"),
                }
            })?,
        };

    let mut raft_config = raft::Config {
        id: config.id,
        election_tick: ELECTION_TICKS,
        heartbeat_tick: HEARTBEAT_TICKS,
        // The guest starts from the snapshot: have raft-rs hand out every
        // committed entry after it again (see the module docs).
        applied: applied_index,
        max_size_per_msg: MAX_RAFT_MESSAGE_BYTES,
        max_inflight_msgs: MAX_INFLIGHT_MESSAGES,
        max_committed_size_per_ready: MAX_COMMITTED_BYTES_PER_READY,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    if let Some(ticks) = overrides.election_timeout_ticks {
        // raft-rs draws from [min, max): a range of one is fixed.
        raft_config.min_election_tick = ticks;
        raft_config.max_election_tick = ticks + 1;
    }
    raft_config.validate()?;
    let raw = RawNode::new(
        &raft_config,
        storage.clone(),
        &logger::raft_logger(config.id),
    )?;
    let (leader_tx, leader_rx) = watch::channel(None);
    let core = NodeCore::new(
        raw,
        CoreSetup {
            storage: storage.clone(),
            members: members.clone(),
            leader_tx,
            conf_applied_index,
            applied_index,
            snapshot_policy: config.snapshot,
            snapshot_dir: env.snapshot_dir.clone(),
            state_check_every: config.state_check_every,
            unsafe_local_reads: config.unsafe_local_reads,
        },
    );
    Ok(NodeParts {
        core,
        env,
        machine,
        history,
        applied_index,
        members,
        storage,
        leader: leader_rx,
    })
}

/// Open the data dir, load the guest, and start the node's tasks. Must be
/// called inside a tokio runtime.
pub fn start(config: NodeConfig, mut transport: impl Transport) -> Result<NodeHandle, NodeError> {
    let NodeParts {
        core,
        env,
        machine,
        history,
        applied_index,
        members,
        storage: size_reader,
        leader: leader_rx,
    } = assemble(&config, PartsOverrides::default())?;
    let data_dir = &config.data_dir;
    transport.set_members(&members);
    let (fatal_tx, fatal_rx) = watch::channel(None);
    let (applier_tx, applier_shared, applier_thread) =
        applier::spawn(env.clone(), machine, applied_index, history, fatal_tx).map_err(
            |source| NodeError::DataDir {
                path: data_dir.clone(),
                source,
            },
        )?;
    let (inbox_tx, inbox_rx) = mpsc::channel(driver::NODE_INBOX_CAPACITY);
    transport.attach(driver::NodeLink {
        inbox: inbox_tx.clone(),
        snapshot_dir: env.snapshot_dir.clone(),
        components_dir: data_dir.join("components"),
    });
    let (shutdown_tx, shutdown_rx) = mpsc::channel(4);
    let (stopped_tx, stopped_rx) = watch::channel(None);
    let controls = driver::Controls {
        shutdown: shutdown_rx,
        fatal: fatal_rx,
    };
    let id = config.id;
    // Carries the node id and, recorded as it changes, the current term.
    let span = tracing::info_span!("node", id, term = tracing::field::Empty);
    let driver = tokio::spawn(
        driver::run(core, inbox_rx, controls, applier_tx, env.clone(), transport).instrument(span),
    );
    tokio::spawn(async move {
        // raft-rs panics when a storage read fails after start-up; a panic
        // must still mark the node stopped, so the driver runs as its own task.
        let outcome = match driver.await {
            Ok(outcome) => outcome,
            Err(join_error) => Err(NodeError::TaskFailed(join_error.to_string())),
        };
        // The applier drains what it was given, then exits (its sender is
        // gone); join it off the async threads.
        let _ = tokio::task::spawn_blocking(move || applier_thread.join()).await;
        let (reason, reply) = match outcome {
            Ok(reply) => {
                tracing::info!(id, "node stopped");
                (String::new(), reply)
            }
            Err(error) => {
                tracing::error!(id, %error, "node stopped by a fatal error");
                (error.to_string(), None)
            }
        };
        let _ = stopped_tx.send(Some(reason));
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
    });
    Ok(NodeHandle {
        inner: Arc::new(HandleInner {
            id,
            inbox: inbox_tx,
            upgrades: upgrade_handle::UpgradeEnv {
                engine: env.engine.clone(),
                components: env.components.clone(),
                limits: env.limits,
                compile_budget: config.compile_budget,
            },
            shutdown: shutdown_tx,
            forwarder: config.forwarder,
            directory: config.directory,
            ticket: config.ticket,
            applier: applier_shared,
            metrics: NodeMetrics::default(),
            peer_stats: config.peer_stats,
            storage: size_reader,
            data_dir: config.data_dir,
            stopped: stopped_rx,
            leader: leader_rx,
        }),
    })
}

/// Send this node's state hashes to every other member (the divergence
/// check); `None` for a node without peers.
fn broadcast_state_hashes(config: &NodeConfig) -> Option<mpsc::UnboundedSender<(u64, [u8; 32])>> {
    let (forwarder, directory) = (config.forwarder.clone()?, config.directory.clone()?);
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, [u8; 32])>();
    let id = config.id;
    tokio::spawn(async move {
        while let Some((index, hash)) = rx.recv().await {
            for peer in directory.members().into_keys().filter(|p| *p != id) {
                let forwarder = forwarder.clone();
                tokio::spawn(async move {
                    if let Err(error) = forwarder.report_state_hash(peer, index, hash).await {
                        tracing::debug!(peer, index, %error, "could not send a state hash");
                    }
                });
            }
        }
    });
    Some(tx)
}

/// Set up an empty data dir, returning the initial membership.
///
/// A new cluster's first entry is the configuration change that adds this
/// node (with its address), written as already committed: nodes that join
/// later replay it like any other entry and so learn the first member.
fn bootstrap(
    config: &NodeConfig,
    storage: &SledStorage,
) -> Result<BTreeMap<u64, PeerAddr>, NodeError> {
    let self_addr = match &config.cluster {
        ClusterMode::Join { members } => {
            tracing::info!(id = config.id, members = ?members.keys().collect::<Vec<_>>(),
                "joining a cluster; waiting for the leader");
            return Ok(members.clone());
        }
        ClusterMode::NewCluster => None,
        ClusterMode::NewClusterAt(addr) => Some(addr.clone()),
        ClusterMode::Restore { .. } => {
            return Err(NodeError::Config(
                "restoring a backup left the data dir empty".into(),
            ));
        }
    };
    let mut change = ConfChange::default();
    change.set_change_type(ConfChangeType::AddNode);
    change.node_id = config.id;
    if let Some(addr) = &self_addr {
        change.context = serde_json::to_vec(addr)
            .map_err(|e| NodeError::Config(format!("encoding this node's address: {e}")))?
            .into();
    }
    let data = protobuf::Message::write_to_bytes(&change)
        .map_err(|e| NodeError::Config(format!("encoding the bootstrap entry: {e}")))?;
    let mut entry = Entry::default();
    entry.set_entry_type(EntryType::EntryConfChange);
    entry.index = 1;
    entry.term = 1;
    entry.data = data.into();
    let hard_state = HardState {
        term: 1,
        vote: 0,
        commit: 1,
        ..Default::default()
    };
    storage.bootstrap(&ConfState {
        voters: vec![config.id],
        ..Default::default()
    })?;
    storage.append_and_persist(&[entry], Some(&hard_state))?;
    let members: BTreeMap<u64, PeerAddr> = self_addr.into_iter().map(|a| (config.id, a)).collect();
    let encoded = serde_json::to_vec(&members)
        .map_err(|e| NodeError::Config(format!("encoding the membership: {e}")))?;
    storage.put_meta(core::MEMBERS_META_KEY, &encoded)?;
    tracing::info!(id = config.id, "bootstrapped a new cluster");
    Ok(members)
}

/// Start a new single-node cluster from a backup snapshot: the backup is
/// read and its guest restored first (a bad file changes nothing), then the
/// snapshot is rewritten with this node as the only member and installed.
fn bootstrap_from_backup(
    config: &NodeConfig,
    env: &ApplierEnv,
    storage: &SledStorage,
    backup: &std::path::Path,
    addr: Option<PeerAddr>,
) -> Result<(), NodeError> {
    let bad = |reason: String| NodeError::Config(format!("backup {}: {reason}", backup.display()));
    let loaded = snapshot::read(backup).map_err(|e| bad(e.to_string()))?;
    let mut machine = applier::build_machine(env, &loaded)?;
    machine.restore(applier::snapshot_entry(&loaded.header), loaded.state())?;
    let mut header = loaded.header.clone();
    header.conf = snapshot::ConfStateRecord {
        voters: vec![config.id],
        ..Default::default()
    };
    header.members = addr.into_iter().map(|a| (config.id, a)).collect();
    let descriptor = snapshot::write(
        &env.snapshot_dir,
        &header,
        loaded.component(),
        loaded.state(),
    )
    .map_err(|e| bad(e.to_string()))?;
    let raft_snapshot = applier::raft_snapshot(&header, &descriptor);
    storage.bootstrap(&ConfState {
        voters: vec![config.id],
        ..Default::default()
    })?;
    storage.apply_snapshot(&raft_snapshot)?;
    let members = serde_json::to_vec(&header.members)
        .map_err(|e| NodeError::Config(format!("encoding the membership: {e}")))?;
    storage.set_conf_state_with_meta(
        &ConfState {
            voters: vec![config.id],
            ..Default::default()
        },
        &[
            (core::MEMBERS_META_KEY, &members),
            (CONF_INDEX_META_KEY, header.index.to_string().as_bytes()),
            (ACTIVE_COMPONENT_KEY, header.component_hash.as_bytes()),
        ],
    )?;
    tracing::info!(id = config.id, index = header.index, guest = %machine.info().name,
        "started a new cluster from a backup");
    Ok(())
}

/// Instantiate the guest from the latest snapshot file (its component and
/// its state). A missing or damaged file stops the node with the reason: the
/// log before it is gone, so only a backup can help.
fn restore_latest_snapshot(
    config: &NodeConfig,
    env: &ApplierEnv,
    storage: &SledStorage,
    index: u64,
    term: u64,
) -> Result<(StateMachine, upgrade::ComponentHistory), NodeError> {
    let path = snapshot::path_for(&env.snapshot_dir, index, term);
    let loaded: LoadedSnapshot = snapshot::read(&path).map_err(|e| NodeError::CorruptEntry {
        index,
        reason: format!("the latest snapshot ({}): {e}", path.display()),
    })?;
    if let GuestSource::File(given) = &config.guest {
        let bytes = std::fs::read(given).map_err(|source| NodeError::DataDir {
            path: given.clone(),
            source,
        })?;
        // The cluster may have upgraded since it was created with this
        // file: any component it has run (or started with) is accepted.
        let given_hash = ComponentHash::of(&bytes);
        let genesis = storage
            .get_meta(ACTIVE_COMPONENT_KEY)?
            .map(|raw| String::from_utf8_lossy(&raw).into_owned());
        let known = given_hash.to_hex() == loaded.header.component_hash
            || genesis.as_deref() == Some(given_hash.to_hex().as_str())
            || loaded
                .header
                .history
                .as_ref()
                .is_some_and(|h| upgrade_handle::in_history(h, &given_hash));
        if !known {
            return Err(NodeError::GuestMismatch {
                stored: loaded.header.component_hash.clone(),
                given: given_hash.to_hex(),
            });
        }
    }
    let mut machine = applier::build_machine(env, &loaded)?;
    machine.restore(applier::snapshot_entry(&loaded.header), loaded.state())?;
    let history = loaded.header.component_history(machine.info());
    Ok((machine, history))
}

fn load_members(storage: &SledStorage) -> Result<BTreeMap<u64, PeerAddr>, NodeError> {
    match storage.get_meta(core::MEMBERS_META_KEY)? {
        None => Ok(BTreeMap::new()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| NodeError::CorruptEntry {
            index: 0,
            reason: format!("stored membership: {e}"),
        }),
    }
}

/// Pick the component this data dir runs: the stored one if the cluster
/// exists, else the configured one (which is then stored).
fn load_active_guest(
    config: &NodeConfig,
    storage: &SledStorage,
    engine: &WasmEngine,
    components: &ComponentStore,
) -> Result<StateMachine, NodeError> {
    let stored = storage
        .get_meta(ACTIVE_COMPONENT_KEY)?
        .map(|raw| String::from_utf8_lossy(&raw).into_owned());
    // Load (and so validate) a given file before anything is written: a bad
    // file changes nothing.
    let given = match &config.guest {
        GuestSource::Default => None,
        GuestSource::File(path) => Some(engine.load_file(path)?),
    };
    match stored {
        Some(hex) if !storage.is_fresh() => {
            let hash = ComponentHash::from_hex(&hex).ok_or_else(|| NodeError::ComponentStore {
                hash: hex.clone(),
                path: config.data_dir.join("raft"),
                reason: "not a valid hash".into(),
            })?;
            let loaded = match given {
                Some((loaded, _)) if loaded.hash == hash => loaded,
                Some((loaded, _)) => {
                    return Err(NodeError::GuestMismatch {
                        stored: hash.to_hex(),
                        given: loaded.hash.to_hex(),
                    });
                }
                None => {
                    let bytes = components
                        .get(&hash)
                        .map_err(|e| NodeError::ComponentStore {
                            hash: hash.to_hex(),
                            path: components.path_of(&hash),
                            reason: e.to_string(),
                        })?;
                    engine.load(&bytes)?
                }
            };
            Ok(StateMachine::new(loaded, config.limits)?)
        }
        _ => {
            let (loaded, bytes) = match given {
                Some(given) => given,
                None => {
                    let bytes = crate::wasm::DEFAULT_GUEST.to_vec();
                    (engine.load(&bytes)?, bytes)
                }
            };
            let machine = StateMachine::new(loaded, config.limits)?;
            let hash = components
                .put(&bytes)
                .map_err(|source| NodeError::DataDir {
                    path: components.path_of(&ComponentHash::of(&bytes)),
                    source,
                })?;
            storage.put_meta(ACTIVE_COMPONENT_KEY, hash.to_hex().as_bytes())?;
            Ok(machine)
        }
    }
}

/// How long a follower that knows no leader waits for one before it
/// answers `not_leader` (about two election timeouts).
pub const LEADER_WAIT: Duration = Duration::from_secs(3);

/// Rounds [`NodeHandle::propose`] makes on a follower: each is one forward
/// to a leader or one wait (up to [`LEADER_WAIT`]) for a leader to be known.
/// Enough to wait for an election, forward, find the leader dead, wait for
/// the next election and forward again, and once more; a cluster whose
/// leaders keep failing that often gets `not_leader` back.
pub const MAX_PROPOSE_ROUNDS: usize = 6;

/// How long API calls wait for the node by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
