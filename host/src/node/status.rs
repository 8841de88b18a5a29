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
    pub guest: GuestStatus,
    pub data_dir: String,
}

/// The active guest component and its runtime counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestStatus {
    pub name: String,
    pub version: String,
    /// BLAKE3 hash of the component bytes, hex.
    pub hash: String,
    /// Entries applied by this process (replays after a restart included).
    pub applied_entries: u64,
    /// Entries whose result was an error (rejected, trapped, out of fuel or
    /// memory).
    pub failed_entries: u64,
    /// Times the instance was rebuilt after a trap.
    pub instance_rebuilds: u64,
}
