//! How to start a node: its configuration and the Raft timing it runs with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::divergence;
use super::metrics::PeerStatsRegistry;
use super::ports::{Forwarder, PeerView};
use super::snapshot::SnapshotPolicy;
use super::upgrade;
use crate::membership::PeerAddr;
use crate::wasm::GuestLimits;

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
    pub directory: Option<Arc<dyn PeerView>>,
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

/// How long a follower that knows no leader waits for one before it
/// answers `not_leader` (about two election timeouts).
pub const LEADER_WAIT: Duration = Duration::from_secs(3);

/// How long API calls wait for the node by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
