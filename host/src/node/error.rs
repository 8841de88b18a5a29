//! Node errors: those a client can act on, and fatal ones.
//!
//! A [`ClientError`] crosses the network as is (a follower forwards a
//! client's proposal and hands the leader's error back unchanged), so it
//! derives serde and the transport encodes it with its frame codec. Every
//! mapping of it (its [`ClientError::code`], the HTTP status, the wire)
//! matches it exhaustively: a new variant does not compile until each one
//! decides what it means.

use serde::{Deserialize, Serialize};

use crate::storage::StorageError;
use crate::wasm::WasmError;

/// Why a client request was not carried out. The client can act on each:
/// retry elsewhere, retry later, or fix the request.
///
/// Part of the `iroh-raft/0` wire format (see
/// [`crate::transport::message`]): variants are encoded by their index in
/// declaration order, so add new ones at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ClientError {
    #[error("this node is not the leader (leader hint: {leader_hint:?})")]
    NotLeader { leader_hint: Option<u64> },
    #[error("the proposal was dropped before it committed (leadership changed); it did not apply")]
    ProposalDropped,
    #[error("the command is empty")]
    EmptyCommand,
    #[error("the command is {size_bytes} bytes; the limit is {limit_bytes} bytes")]
    CommandTooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("the node is overloaded (request queue full); retry later")]
    Overloaded,
    #[error("no answer within {timeout_ms} ms; the request may or may not have taken effect")]
    Timeout { timeout_ms: u64 },
    #[error("the node is stopped")]
    Stopped,
    #[error("membership change refused: {0}")]
    InvalidMembership(String),
    #[error("taking a snapshot failed: {0}")]
    SnapshotFailed(String),
    #[error("not a usable component: {0}")]
    InvalidComponent(String),
    #[error("upgrade refused: {0}")]
    UpgradeRefused(String),
    #[error(
        "this node's state diverged from the cluster's at index {index}; it no longer applies or answers (wipe it and add it again)"
    )]
    Diverged { index: u64 },
    /// Whoever was to answer lost track of the request after it may have
    /// taken effect: the leader caught up from a snapshot, or a forwarded
    /// request may have reached a leader that failed before it answered.
    /// Retry only a command that is safe to apply twice.
    #[error(
        "the proposal may or may not have applied: it was lost track of (a leader that caught up from a snapshot, or failed before it answered a forwarded proposal)"
    )]
    OutcomeUnknown,
    /// The leader could not read a forwarded request (a protocol error,
    /// e.g. nodes of different builds in one cluster); it did not apply.
    #[error("the leader refused the forwarded request: {reason}")]
    ForwardRefused { reason: String },
    /// The guest can no longer make progress (its state no longer
    /// checkpoints: see [`crate::wasm::StateMachine::stalled`]), so the node
    /// that received the command refused it; it did not apply. Not
    /// transient: an operator must act.
    #[error(
        "the guest can no longer make progress: {reason}. This node takes no new commands \
         (committed ones still apply) until its state checkpoints again: raise the guest's \
         memory limit (a snapshot needs room for the state twice) with `raft-host upgrade \
         --guest <the active .wasm> --memory-limit-mib <larger>`, or move the state to a \
         store-backed guest"
    )]
    GuestStalled { reason: String },
}

/// How forwarding a proposal to the leader failed (see
/// [`crate::node::Forwarder`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The request certainly did not reach the leader's node: no connection
    /// or stream, or its frame could not be written whole. Sending it to
    /// another leader cannot apply it twice.
    #[error("the request did not reach node {leader}: {reason}")]
    NotDelivered { leader: u64, reason: String },
    /// The leader answered with an error, or the request may have reached
    /// it and no answer came ([`ClientError::OutcomeUnknown`]).
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl ClientError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::NotLeader { .. } => "not_leader",
            ClientError::ProposalDropped => "proposal_dropped",
            ClientError::EmptyCommand => "empty_command",
            ClientError::CommandTooLarge { .. } => "command_too_large",
            ClientError::Overloaded => "overloaded",
            ClientError::Timeout { .. } => "timeout",
            ClientError::Stopped => "node_stopped",
            ClientError::InvalidMembership(_) => "invalid_membership",
            ClientError::SnapshotFailed(_) => "snapshot_failed",
            ClientError::InvalidComponent(_) => "invalid_component",
            ClientError::UpgradeRefused(_) => "upgrade_refused",
            ClientError::Diverged { .. } => "diverged",
            ClientError::OutcomeUnknown => "outcome_unknown",
            ClientError::ForwardRefused { .. } => "forward_refused",
            ClientError::GuestStalled { .. } => "guest_stalled",
        }
    }
}

/// Errors that stop a node (or keep it from starting). Storage errors are
/// always fatal: raft-rs's rule is that the instance is inoperable after one.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("guest: {0}")]
    Wasm(#[from] WasmError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("data dir {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "this data dir runs guest {stored}, but --guest gave {given}; a cluster changes \
         its guest only through the log (start without --guest to keep the stored one)"
    )]
    GuestMismatch { stored: String, given: String },
    #[error("the active component {hash} is missing or damaged at {path}: {reason}")]
    ComponentStore {
        hash: String,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("entry {index} has an undecodable payload: {reason}")]
    CorruptEntry { index: u64, reason: String },
    #[error("the state machine failed: {0}")]
    StateMachine(String),
    #[error("the node task failed: {0}")]
    TaskFailed(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}
