//! The messages of the `iroh-raft/0` protocol.
//!
//! Every frame on a stream is one [`WireMessage`]. The side that opened the
//! stream sends requests (`Request`, `RaftMessage`, `Heartbeat`); the other
//! side answers **each one, in order**, with exactly one `Response`,
//! `Heartbeat`, `Error` or `Refused` frame (a batch of forwarded proposals
//! gets one answer per proposal, see `Request::ProposeForwardedBatch`). An
//! answer is the delivery confirmation.
//!
//! `RaftMessage` frames are answered **cumulatively**: one
//! `Response::Delivered { count }` says that the `count` oldest unanswered
//! `RaftMessage` frames of the stream reached the peer's Raft inbox, and a
//! refused frame gets its own `Error` frame in its place. So a sender need
//! not wait for each frame's answer: it keeps up to
//! `DELIVERY_WINDOW_FRAMES` unanswered, and the receiver answers when
//! `DELIVERY_ANSWER_EVERY_FRAMES` are owed, after `DELIVERY_ANSWER_DELAY`
//! of quiet, or before answering anything else (`limits.rs`). Every frame
//! is still answered, in order.
//!
//! raft-rs messages travel as their protobuf encoding (`eraftpb::Message`)
//! inside `RaftMessage`, several per frame (the messages of one `Ready` for
//! one peer are batched).
//!
//! ## Errors
//!
//! Two kinds, kept apart:
//!
//! - **Protocol errors** ([`ErrorFrame`] with an [`ErrorCode`]): the frame
//!   was bad (malformed, too large, wrong sender, unexpected) or a
//!   node-to-node request (snapshot, component) could not be served. They
//!   never reach a client.
//! - **Client errors** ([`WireMessage::Refused`]): a request made on a
//!   client's behalf (a forwarded proposal) was refused, and the answer is
//!   the node's own [`ClientError`], encoded with the rest of the frame. The
//!   forwarding node hands it to its client unchanged: `not_leader` stays
//!   `not_leader`, `outcome_unknown` stays `outcome_unknown`, and nothing is
//!   folded into a catch-all. Likewise a guest's failure travels as a
//!   [`WireGuestFailure`] and an activation as a [`WireActivation`], never
//!   as JSON inside the frame.
//!
//! ## Versioning
//!
//! Adding `Refused` (and typing the guest failure of `Applied`) changed the
//! frames incompatibly with earlier builds, yet the ALPN stays
//! `iroh-raft/0`: it names the interface, and **the nodes of one cluster
//! run the same build** (a rolling restart onto a new build is not
//! supported across a frame change). Variant indexes are the wire format:
//! add new variants (here and in [`ClientError`]) at the end. The
//! cumulative answers to `RaftMessage` frames are such a change too: a
//! `Delivered` used to count the messages of one frame, it now counts
//! frames.

use serde::{Deserialize, Serialize};

use crate::membership::PeerAddr;
use crate::node::upgrade::{Activation, ActivationKind, LimitOverrides};
use crate::node::{ClientError, ForwardTag};
use crate::wasm::GuestFailure;

/// One frame of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireMessage {
    /// A peer asks something of this node (answered by `Response`,
    /// `Error` or `Refused`).
    Request(Request),
    /// The answer to a `Request` or a `RaftMessage`.
    Response(Response),
    /// A batch of raft-rs messages, protobuf-encoded, in order.
    RaftMessage(RaftBatch),
    /// A liveness check; answered with a `Heartbeat` carrying the same
    /// sequence number.
    Heartbeat(Heartbeat),
    /// The frame was bad, or a node-to-node request could not be served
    /// (a protocol error; see the module doc).
    Error(ErrorFrame),
    /// A request made on a client's behalf (a forwarded proposal) was
    /// refused with this client error, as is.
    Refused(ClientError),
}

/// What one node asks of another, besides Raft traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A follower forwards a client's proposal to the leader.
    Propose {
        #[serde(with = "serde_bytes")]
        command: Vec<u8>,
    },
    /// A joining node asks a member for the cluster's membership.
    Members,
    /// The leader offers a snapshot file (answered with `SnapshotResume` or,
    /// if the peer already has it, `Delivered`). See [`super::snapshot`].
    InstallSnapshot(super::snapshot::SnapshotOffer),
    /// A piece of the offered snapshot file, at `offset`.
    SnapshotChunk {
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A follower forwards a component activation to the leader; answered
    /// like `Propose`.
    ProposeActivation { activation: WireActivation },
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
    /// A follower forwards a client's command under an id, for the leader
    /// of exactly `tag.term` (see `node::forwarded`); answered like
    /// `Propose`, or `Refused(NotLeader)` by any other node. Last, so the
    /// older variants keep their numbers on the wire.
    ProposeForwarded {
        #[serde(with = "serde_bytes")]
        command: Vec<u8>,
        tag: ForwardTag,
    },
    /// Several forwarded commands at once (at most
    /// `MAX_FORWARD_BATCH_PROPOSALS`), each as `ProposeForwarded`. The one
    /// request answered with more than one frame: one answer per proposal,
    /// in the batch's order, each as `ProposeForwarded` is answered
    /// (`Applied` or `Refused`); or a single `Error` frame when the batch
    /// itself is refused, before any of it is proposed.
    ProposeForwardedBatch { proposals: Vec<ForwardedProposal> },
}

/// One command of a `ProposeForwardedBatch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedProposal {
    #[serde(with = "serde_bytes")]
    pub command: Vec<u8>,
    pub tag: ForwardTag,
}

/// Answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The `count` oldest unanswered `RaftMessage` frames of the stream
    /// were handed to Raft, every message of each (see the module's doc);
    /// as the answer to any other request, `count` is 1.
    Delivered { count: u32 },
    /// A forwarded proposal was applied.
    Applied {
        index: u64,
        term: u64,
        /// The guest's result: bytes, or its deterministic failure.
        result: Result<Vec<u8>, WireGuestFailure>,
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
    ComponentChunk {
        total_len: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The component is stored and compiled (`compile_ms` 0 if it came
    /// from the compile cache).
    ComponentPrepared { compile_ms: u64 },
}

/// Raft messages for one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftBatch {
    /// Each element is one `eraftpb::Message` in protobuf encoding.
    #[serde(with = "byte_strings")]
    pub messages: Vec<Vec<u8>>,
}

/// A list of byte strings as serde bytes. On bincode's wire this is the
/// same as the derived form (a length, then the bytes; a `u8` is one byte
/// either way), but it is written with one copy and read with one
/// allocation instead of a call per byte, which was ~4% of the CPU of a
/// replicated write.
mod byte_strings {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub fn serialize<S: Serializer>(strings: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(strings.iter().map(|bytes| Bytes::new(bytes)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        let strings = Vec::<ByteBuf>::deserialize(deserializer)?;
        Ok(strings.into_iter().map(ByteBuf::into_vec).collect())
    }
}

/// A component activation as it travels. [`Activation`] itself leaves
/// empty fields out of its JSON forms (log entries, the HTTP API), which a
/// format that does not describe itself, as bincode, cannot read back; this
/// mirror carries every field. The conversions destructure both sides, so
/// a field added to one does not compile until the other has it too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireActivation {
    pub hash: String,
    pub size_bytes: u64,
    pub kind: ActivationKind,
    pub apply_fuel: Option<u64>,
    pub query_fuel: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub source: u64,
}

impl From<Activation> for WireActivation {
    fn from(activation: Activation) -> Self {
        let Activation {
            hash,
            size_bytes,
            kind,
            limits:
                LimitOverrides {
                    apply_fuel,
                    query_fuel,
                    memory_limit_bytes,
                    // Not part of a request: the applier fills it in.
                    maintenance_fuel: _,
                },
            source,
        } = activation;
        WireActivation {
            hash,
            size_bytes,
            kind,
            apply_fuel,
            query_fuel,
            memory_limit_bytes,
            source,
        }
    }
}

impl From<WireActivation> for Activation {
    fn from(wire: WireActivation) -> Self {
        let WireActivation {
            hash,
            size_bytes,
            kind,
            apply_fuel,
            query_fuel,
            memory_limit_bytes,
            source,
        } = wire;
        Activation {
            hash,
            size_bytes,
            kind,
            limits: LimitOverrides {
                apply_fuel,
                query_fuel,
                memory_limit_bytes,
                maintenance_fuel: None,
            },
            source,
        }
    }
}

/// A liveness probe and its echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub sequence: u64,
}

/// A protocol error: why a frame or a node-to-node request was refused.
/// Client errors travel as [`WireMessage::Refused`] instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub code: ErrorCode,
    pub message: String,
}

/// Machine-readable codes of protocol errors.
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
    /// A node-to-node request (snapshot, component fetch or preparation)
    /// could not be served; the message says why.
    Rejected,
}

/// A guest's deterministic failure on the wire: the variants of
/// [`GuestFailure`], without its JSON shape (an internally tagged enum,
/// which the frame codec cannot decode). The conversions both ways match
/// exhaustively, so a new `GuestFailure` variant must be added here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireGuestFailure {
    Rejected { message: String },
    Trapped { message: String },
    OutOfFuel { budget: u64 },
    MemoryLimit { limit_bytes: u64 },
    UpgradeFailed { reason: String },
    ResultTooLarge { size_bytes: u64, limit_bytes: u64 },
}

impl From<GuestFailure> for WireGuestFailure {
    fn from(failure: GuestFailure) -> Self {
        match failure {
            GuestFailure::Rejected { message } => WireGuestFailure::Rejected { message },
            GuestFailure::Trapped { message } => WireGuestFailure::Trapped { message },
            GuestFailure::OutOfFuel { budget } => WireGuestFailure::OutOfFuel { budget },
            GuestFailure::MemoryLimit { limit_bytes } => {
                WireGuestFailure::MemoryLimit { limit_bytes }
            }
            GuestFailure::UpgradeFailed { reason } => WireGuestFailure::UpgradeFailed { reason },
            GuestFailure::ResultTooLarge {
                size_bytes,
                limit_bytes,
            } => WireGuestFailure::ResultTooLarge {
                size_bytes,
                limit_bytes,
            },
        }
    }
}

impl From<WireGuestFailure> for GuestFailure {
    fn from(failure: WireGuestFailure) -> Self {
        match failure {
            WireGuestFailure::Rejected { message } => GuestFailure::Rejected { message },
            WireGuestFailure::Trapped { message } => GuestFailure::Trapped { message },
            WireGuestFailure::OutOfFuel { budget } => GuestFailure::OutOfFuel { budget },
            WireGuestFailure::MemoryLimit { limit_bytes } => {
                GuestFailure::MemoryLimit { limit_bytes }
            }
            WireGuestFailure::UpgradeFailed { reason } => GuestFailure::UpgradeFailed { reason },
            WireGuestFailure::ResultTooLarge {
                size_bytes,
                limit_bytes,
            } => GuestFailure::ResultTooLarge {
                size_bytes,
                limit_bytes,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    /// The frames as they were derived before their byte fields went
    /// through `serde_bytes`: a build with either reads the other's frames.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum DerivedMessage {
        Request(DerivedRequest),
        Response(()),
        RaftMessage { messages: Vec<Vec<u8>> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum DerivedRequest {
        Propose { command: Vec<u8> },
    }

    #[test]
    fn byte_fields_keep_the_derived_wire_format() {
        let config = bincode::config::standard();
        let messages = vec![vec![], vec![0, 1, 255], vec![7; 300]];
        let ours = bincode::serde::encode_to_vec(
            WireMessage::RaftMessage(RaftBatch {
                messages: messages.clone(),
            }),
            config,
        )
        .expect("encode");
        let derived = bincode::serde::encode_to_vec(
            DerivedMessage::RaftMessage {
                messages: messages.clone(),
            },
            config,
        )
        .expect("encode");
        assert_eq!(ours, derived);
        let (back, _): (WireMessage, usize) =
            bincode::serde::decode_from_slice(&derived, config).expect("decode");
        assert_eq!(back, WireMessage::RaftMessage(RaftBatch { messages }));

        let command = b"put key value".to_vec();
        let ours = bincode::serde::encode_to_vec(
            WireMessage::Request(Request::Propose {
                command: command.clone(),
            }),
            config,
        )
        .expect("encode");
        let derived = bincode::serde::encode_to_vec(
            DerivedMessage::Request(DerivedRequest::Propose { command }),
            config,
        )
        .expect("encode");
        assert_eq!(ours, derived);
    }
}
