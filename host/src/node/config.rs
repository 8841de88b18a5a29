//! How to start a node: its configuration and the Raft timing it runs with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::metrics::PeerStatsRegistry;
use super::ports::{Forwarder, PeerView};
use super::snapshot::SnapshotPolicy;
use crate::membership::PeerAddr;
use crate::wasm::GuestLimits;

/// Which guest a node runs when it creates a new cluster.
#[derive(Clone, PartialEq, Eq)]
pub enum GuestSource {
    /// The built-in counter.
    Default,
    /// A component file.
    File(PathBuf),
    /// A component's bytes (e.g. `include_bytes!`, or fetched by the
    /// embedding program).
    Bytes(bytes::Bytes),
}

impl std::fmt::Debug for GuestSource {
    // A component is megabytes: show its size, not its bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestSource::Default => f.write_str("Default"),
            GuestSource::File(path) => f.debug_tuple("File").field(path).finish(),
            GuestSource::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
        }
    }
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
    /// Committed entries between state checks (see the divergence check in the README; 0: off).
    pub state_check_every: u64,
    /// Tests only: break linearizable reads (see
    /// `CoreSetup::unsafe_local_reads`).
    pub unsafe_local_reads: bool,
    /// Applied entries whose changes are kept for watchers to resume from
    /// (store-backed guests; 0: none).
    pub watch_history_entries: u64,
    /// Tests only: this node's wall clock runs this many ms ahead (or,
    /// negative, behind) the system's, as a badly synchronized machine's
    /// would. It stamps the entries this node appends as leader.
    pub clock_skew_ms: i64,
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
            compile_budget: crate::limits::DEFAULT_COMPILE_BUDGET,
            state_check_every: crate::limits::DEFAULT_STATE_CHECK_EVERY,
            unsafe_local_reads: false,
            watch_history_entries: crate::limits::DEFAULT_WATCH_HISTORY_ENTRIES,
            clock_skew_ms: 0,
        }
    }
}
