//! The node's inbox: every input the node loop handles, as one message
//! type on one bounded channel.

use raft::prelude::Message;
use tokio::sync::{mpsc, oneshot};

use super::applier::{Candidate, ProposalReply, QueryReply};
use super::core::{Consistency, MembershipChange, RaftView, SnapshotInfo};
use super::error::ClientError;
use super::upgrade::{Activation, DryRunReport};

/// Messages the node's inbox holds before senders see `Overloaded`.
pub const NODE_INBOX_CAPACITY: usize = 4096;

/// Input for the node.
#[derive(Debug)]
pub enum NodeMsg {
    Propose {
        command: Vec<u8>,
        reply: ProposalReply,
    },
    /// Switch the guest to another component (leader only).
    ProposeActivation {
        activation: Activation,
        reply: ProposalReply,
    },
    Query {
        request: Vec<u8>,
        consistency: Consistency,
        reply: QueryReply,
    },
    /// A peer's state hash at a state check.
    StateHash {
        from: u64,
        index: u64,
        hash: [u8; 32],
    },
    /// Fetch (if needed), store and compile a component an upgrade is about
    /// to activate; answers the compile time.
    PrepareComponent {
        activation: Activation,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// Run a candidate component side by side with the active one (a dry
    /// run of an upgrade); handed to the applier.
    DryRun {
        candidate: Box<Candidate>,
        reply: oneshot::Sender<Result<DryRunReport, String>>,
    },
    /// A Raft message from a peer.
    Raft(Box<Message>),
    Status {
        reply: oneshot::Sender<RaftView>,
    },
    /// Change the membership through a configuration change.
    ChangeMembership {
        change: MembershipChange,
        reply: ProposalReply,
    },
    /// Hand leadership to a voter (the most up-to-date one if `None`);
    /// answers with the target once the transfer started.
    TransferLeader {
        target: Option<u64>,
        reply: oneshot::Sender<Result<u64, ClientError>>,
    },
    /// Take a snapshot now.
    Snapshot {
        reply: oneshot::Sender<Result<SnapshotInfo, ClientError>>,
    },
    /// The transport finished (or gave up) streaming a snapshot to `to`.
    SnapshotReport {
        to: u64,
        delivered: bool,
    },
}

impl From<mpsc::error::TrySendError<NodeMsg>> for ClientError {
    fn from(error: mpsc::error::TrySendError<NodeMsg>) -> Self {
        match error {
            mpsc::error::TrySendError::Full(_) => ClientError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => ClientError::Stopped,
        }
    }
}
