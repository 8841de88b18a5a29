//! The messages of the `iroh-raft/0` protocol.
//!
//! Every frame on a stream is one [`WireMessage`]. The side that opened the
//! stream sends requests (`Request`, `RaftMessage`, `Heartbeat`); the other
//! side answers **each one, in order**, with exactly one `Response`,
//! `Heartbeat` or `Error` frame. An answer is the delivery confirmation: a
//! `RaftMessage` frame answered with `Response::Delivered` reached the peer's
//! Raft inbox.
//!
//! raft-rs messages travel as their protobuf encoding (`eraftpb::Message`)
//! inside `RaftMessage`, several per frame (the messages of one `Ready` for
//! one peer are batched).

use serde::{Deserialize, Serialize};

use crate::membership::PeerAddr;

/// One frame of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireMessage {
    /// A peer asks something of this node (answered by `Response` or
    /// `Error`).
    Request(Request),
    /// The answer to a `Request` or a `RaftMessage`.
    Response(Response),
    /// A batch of raft-rs messages, protobuf-encoded, in order.
    RaftMessage(RaftBatch),
    /// A liveness check; answered with a `Heartbeat` carrying the same
    /// sequence number.
    Heartbeat(Heartbeat),
    /// The request could not be served.
    Error(ErrorFrame),
}

/// What one node asks of another, besides Raft traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A follower forwards a client's proposal to the leader.
    Propose { command: Vec<u8> },
    /// A joining node asks a member for the cluster's membership.
    Members,
    /// The leader offers a snapshot file (answered with `SnapshotResume` or,
    /// if the peer already has it, `Delivered`). See [`super::snapshot`].
    InstallSnapshot(super::snapshot::SnapshotOffer),
    /// A piece of the offered snapshot file, at `offset`.
    SnapshotChunk { offset: u64, data: Vec<u8> },
    /// A follower forwards a component activation (JSON of
    /// `node::upgrade::Activation`) to the leader; answered like `Propose`.
    ProposeActivation { activation: Vec<u8> },
    /// Send a piece of the component with this hash (BLAKE3, hex), from
    /// `offset`: answered with `ComponentChunk`.
    FetchComponent { hash: String, offset: u64 },
    /// Before an upgrade is proposed: fetch this component from `source`
    /// (unless held), store and compile it, so the activation applies
    /// without delay. Answered with `ComponentPrepared` once done.
    PrepareComponent {
        hash: String,
        size_bytes: u64,
        source: u64,
    },
    /// The sender's state hash at the state check entry `index` (see
    /// `node::divergence`); answered with `Delivered`.
    StateHash { index: u64, hash: [u8; 32] },
}

/// Answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Every message of a `RaftMessage` frame was handed to Raft.
    Delivered { count: u32 },
    /// A forwarded proposal was applied.
    Applied {
        index: u64,
        term: u64,
        /// The guest's result: bytes, or its deterministic failure (JSON of
        /// `GuestFailure`, so the wire format does not depend on that
        /// enum's layout).
        result: Result<Vec<u8>, String>,
        fuel_used: u64,
    },
    /// The membership as the answering node knows it: Raft id and address
    /// of every member.
    Members { members: Vec<(u64, PeerAddr)> },
    /// Send the snapshot file from this offset (what the peer already holds).
    SnapshotResume { offset: u64 },
    /// Chunks received so far (bytes).
    SnapshotChunkAck { received: u64 },
    /// A piece of a component: `data` starts at the requested offset; the
    /// whole file is `total_len` bytes.
    ComponentChunk { total_len: u64, data: Vec<u8> },
    /// The component is stored and compiled (`compile_ms` 0 if it came
    /// from the compile cache).
    ComponentPrepared { compile_ms: u64 },
}

/// Raft messages for one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftBatch {
    /// Each element is one `eraftpb::Message` in protobuf encoding.
    pub messages: Vec<Vec<u8>>,
}

/// A liveness probe and its echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub sequence: u64,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub code: ErrorCode,
    pub message: String,
}

/// Machine-readable error codes of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The frame could not be decoded.
    Malformed,
    /// The frame was larger than the limit.
    TooLarge,
    /// A Raft message claimed to come from a Raft id that is not the
    /// connection's node.
    WrongSender,
    /// The frame type is not a request (e.g. a `Response` sent first).
    UnexpectedFrame,
    /// The node's inbox is full; Raft will retry.
    Overloaded,
    /// This node is not the leader (a forwarded proposal).
    NotLeader,
    /// The proposal was dropped (leadership changed).
    ProposalDropped,
    /// The node is stopping.
    Stopped,
    /// Any other client error, with its code in the message.
    Rejected,
    /// The proposal may or may not have applied (the leader caught up from
    /// a snapshot and lost track of it).
    OutcomeUnknown,
}

impl ErrorFrame {
    /// The client-facing meaning of an error answer to a forwarded request
    /// sent to `peer`.
    pub fn into_client_error(self, peer: u64) -> crate::node::ClientError {
        use crate::node::ClientError;
        match self.code {
            ErrorCode::NotLeader => ClientError::NotLeader { leader_hint: None },
            ErrorCode::ProposalDropped => ClientError::ProposalDropped,
            ErrorCode::Overloaded => ClientError::Overloaded,
            ErrorCode::Stopped => ClientError::Stopped,
            ErrorCode::OutcomeUnknown => ClientError::OutcomeUnknown,
            _ => {
                tracing::warn!(peer, code = ?self.code, message = %self.message,
                    "a peer refused a forwarded request");
                ClientError::Stopped
            }
        }
    }
}
