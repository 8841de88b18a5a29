//! What a node reports about itself (`GET /v1/status`), and the small
//! types of other answers (`SnapshotInfo`, `AppliedRecord`) and requests
//! (`Consistency`).

use serde::{Deserialize, Serialize};

/// How fresh a query's answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Includes every write acknowledged before the query started (ReadIndex:
    /// the leader confirms it still leads with a heartbeat round).
    #[default]
    Linearizable,
    /// Served by the leader from its lease without a round trip (the node's
    /// `LEASE_DURATION` documents the clock assumption); falls back to
    /// `linearizable` when the lease is not fresh or on a follower.
    Lease,
    /// This node's current state, whatever it is: fastest, may lag.
    Stale,
}

impl std::str::FromStr for Consistency {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "linearizable" => Ok(Consistency::Linearizable),
            "lease" => Ok(Consistency::Lease),
            "stale" => Ok(Consistency::Stale),
            other => Err(format!(
                "unknown consistency {other:?}: use linearizable, lease or stale"
            )),
        }
    }
}

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
    /// check: it stopped applying.
    #[serde(default)]
    pub diverged: Option<Divergence>,
    /// The latest state check at which a majority agreed with this node.
    #[serde(default)]
    pub last_verified_state_check: Option<u64>,
    /// The entry the applier is on now, and for how long (`None` between
    /// entries): a guest looping through a large fuel budget shows here,
    /// and `/health` fails once it lasts the node's `APPLIER_STALLED_AFTER`.
    #[serde(default)]
    pub applier_busy: Option<ApplierBusy>,
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
    pub world: Option<GuestWorld>,
    /// Keys and bytes in the host's store (store-backed guests).
    #[serde(default)]
    pub store: Option<StoreSize>,
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
    /// Commands the guest suggests trying (`propose put a 1`, `query get
    /// a`), from its `iroh-raft:examples` section; empty when it has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
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
    /// Whether the leader sends its appends in batches, because no commit
    /// waits for it (reported by the leader only; see `LAZY_APPEND_DELAY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy_appends: Option<bool>,
    /// Milliseconds since the last frame exchanged with it.
    pub last_contact_ms: Option<u64>,
}

/// What a replica found when it disagreed with the majority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    /// The state check's log index.
    pub index: u64,
    /// BLAKE3 (hex) of this replica's state there.
    pub own_hash: String,
    /// The hash a majority of voters reported.
    pub majority_hash: String,
    /// The voters that reported the majority hash.
    pub majority: Vec<u64>,
}

/// The entry the applier has been on, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplierBusy {
    pub index: u64,
    pub for_ms: u64,
}

/// Which version of the contract a guest implements, which decides where
/// its state lives.
///
/// Also part of the node's persisted state: change it only compatibly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestWorld {
    /// `iroh-raft:state-machine@0.1.0`, world `guest`: the guest keeps its
    /// state in its linear memory (`snapshot`/`restore` move it).
    Memory,
    /// `iroh-raft:state-machine@0.2.0`, world `store-guest`: the guest keeps
    /// its state in the host's key-value store.
    Store,
}

impl GuestWorld {
    /// The exported interface that identifies the world.
    pub fn export_name(self) -> &'static str {
        match self {
            GuestWorld::Memory => "iroh-raft:state-machine/state-machine@0.1.0",
            GuestWorld::Store => "iroh-raft:state-machine/state-machine@0.2.0",
        }
    }
}

impl std::fmt::Display for GuestWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GuestWorld::Memory => "0.1.0 guest (state in guest memory)",
            GuestWorld::Store => "0.2.0 store-guest (state in the host's store)",
        })
    }
}

/// Number of keys and bytes (keys plus values) in a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreSize {
    pub keys: u64,
    pub bytes: u64,
}

/// A snapshot, as reported to an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub index: u64,
    pub term: u64,
    pub file_bytes: u64,
    pub path: String,
}

/// Which component applied an entry, and what came out (for comparing
/// replicas: every replica must show the same records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRecord {
    pub index: u64,
    /// BLAKE3 (hex) of the component that applied it.
    pub component: String,
    pub ok: bool,
    /// BLAKE3 (hex) of the result bytes, or of the failure's JSON.
    pub result_hash: String,
    /// BLAKE3 (hex) of the guest's `snapshot()` right after this entry;
    /// only recorded when the node hashes states (a simulation's check that
    /// replicas agree at every index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_hash: Option<String>,
}
