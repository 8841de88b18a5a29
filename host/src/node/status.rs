//! The status report of a node, as served by the API and printed by the CLI.

use serde::{Deserialize, Serialize};

/// Everything an operator wants to know about one node at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Raft id of this node.
    pub id: u64,
    /// `leader`, `follower`, `candidate` or `pre_candidate`.
    pub role: String,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub voters: Vec<u64>,
    pub pending_proposals: usize,
    /// Every member of the configuration.
    #[serde(default)]
    pub members: Vec<MemberStatus>,
    pub guest: GuestStatus,
    pub data_dir: String,
    /// This node's ticket (`<raft-id>:<node-id>@<addrs>`), if it has a
    /// network endpoint.
    #[serde(default)]
    pub ticket: Option<String>,
    /// Index of the latest snapshot (the log before it may be compacted).
    #[serde(default)]
    pub snapshot_index: Option<u64>,
    /// First index still in the log.
    #[serde(default)]
    pub first_log_index: u64,
    /// Set when this node's state disagreed with the majority's at a state
    /// check: it stopped applying (see `node::divergence`).
    #[serde(default)]
    pub diverged: Option<super::divergence::Divergence>,
    /// The latest state check at which a majority agreed with this node.
    #[serde(default)]
    pub last_verified_state_check: Option<u64>,
    /// The entry the applier is on now, and for how long (`None` between
    /// entries): a guest looping through a large fuel budget shows here,
    /// and `/health` fails once it lasts [`crate::limits::APPLIER_STALLED_AFTER`].
    #[serde(default)]
    pub applier_busy: Option<super::applier::ApplierBusy>,
}

/// The active guest component and its runtime counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestStatus {
    pub name: String,
    pub version: String,
    /// BLAKE3 hash of the component bytes, hex.
    pub hash: String,
    /// Log index of the activation that made it active (0: the cluster's
    /// first component).
    #[serde(default)]
    pub since_index: u64,
    /// Entries applied by this process (replays after a restart included).
    pub applied_entries: u64,
    /// Entries whose result was an error (rejected, trapped, out of fuel or
    /// memory).
    pub failed_entries: u64,
    /// Times the instance was rebuilt after a trap.
    pub instance_rebuilds: u64,
    /// Where the guest keeps its state (absent from older nodes).
    #[serde(default)]
    pub world: Option<crate::wasm::GuestWorld>,
    /// Keys and bytes in the host's store (store-backed guests).
    #[serde(default)]
    pub store: Option<crate::wasm::kv::StoreSize>,
    /// In-memory checkpoints of the guest's state that failed (its state no
    /// longer fits twice in its memory, or `snapshot()` ran out of fuel).
    #[serde(default)]
    pub checkpoint_failures: u64,
    /// Set while checkpoints fail: the applied index when they started to.
    /// No snapshot is written meanwhile, so the log is not compacted.
    #[serde(default)]
    pub checkpoint_failing_since: Option<u64>,
    /// Bytes of commands applied since the last checkpoint: what rolling
    /// back a trap replays.
    #[serde(default)]
    pub uncheckpointed_bytes: u64,
    /// The guest can no longer make progress and this node refuses new
    /// commands (`guest_stalled`); committed entries still apply.
    #[serde(default)]
    pub refusing_commands: bool,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: u64,
    /// iroh node id (hex), if known.
    pub node_id: Option<String>,
    pub addrs: Vec<std::net::SocketAddr>,
    pub voter: bool,
    /// Highest index replicated on it (reported by the leader only).
    pub match_index: Option<u64>,
    /// Milliseconds since the last frame exchanged with it.
    pub last_contact_ms: Option<u64>,
}
