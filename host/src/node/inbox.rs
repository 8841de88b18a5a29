//! The node's inbox: every input the node loop handles, as one message
//! type on one bounded channel.

use raft::prelude::Message;
use tokio::sync::{mpsc, oneshot};

use super::applier::{Applied, Candidate, ProposalReply, QueryReply};
use super::core::{Consistency, MembershipChange, RaftView, SnapshotInfo};
use super::error::ClientError;
use super::forwarded::ForwardTag;
use super::upgrade::{Activation, DryRunReport};

/// Input for the node.
#[derive(Debug)]
pub enum NodeMsg {
    Propose {
        command: Vec<u8>,
        reply: ProposalReply,
    },
    /// A command forwarded under an id, for the leader of exactly
    /// `tag.term` (see [`crate::node::forwarded`]).
    ProposeForwarded {
        command: Vec<u8>,
        tag: ForwardTag,
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

impl NodeMsg {
    /// A client's write or read through this node's API (a forwarded write
    /// is the origin's client, not this node's).
    pub fn from_client(&self) -> bool {
        matches!(
            self,
            NodeMsg::Propose { .. } | NodeMsg::ProposeActivation { .. } | NodeMsg::Query { .. }
        )
    }
}

impl From<mpsc::error::TrySendError<NodeMsg>> for ClientError {
    fn from(error: mpsc::error::TrySendError<NodeMsg>) -> Self {
        match error {
            mpsc::error::TrySendError::Full(_) => ClientError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => ClientError::Stopped,
        }
    }
}

/// The node as its transport sees it: methods, not messages. The transport
/// hands over what peers sent and asks for what peers request; it never
/// builds the node's messages itself. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeInbox {
    tx: mpsc::Sender<NodeMsg>,
}

impl NodeInbox {
    pub(crate) fn new(tx: mpsc::Sender<NodeMsg>) -> Self {
        NodeInbox { tx }
    }

    /// An inbox whose messages go to `tx` instead of a running node: for a
    /// program that stands in for the node (the protocol example, tests).
    pub fn from_sender(tx: mpsc::Sender<NodeMsg>) -> Self {
        NodeInbox { tx }
    }

    /// A Raft message from a peer. A full inbox refuses it (`Overloaded`):
    /// Raft retransmits, so dropping is safe and keeps the node responsive.
    pub fn deliver_raft(&self, message: Message) -> Result<(), ClientError> {
        Ok(self.tx.try_send(NodeMsg::Raft(Box::new(message)))?)
    }

    /// The transport finished (or gave up) streaming a snapshot to `to`;
    /// waits for room, since Raft does not retry a lost report.
    pub async fn report_snapshot(&self, to: u64, delivered: bool) -> Result<(), ClientError> {
        self.tx
            .send(NodeMsg::SnapshotReport { to, delivered })
            .await
            .map_err(|_| ClientError::Stopped)
    }

    /// A peer's state hash at a state check.
    pub fn report_state_hash(
        &self,
        from: u64,
        index: u64,
        hash: [u8; 32],
    ) -> Result<(), ClientError> {
        Ok(self.tx.try_send(NodeMsg::StateHash { from, index, hash })?)
    }

    /// Propose a command on this node (a follower forwarded it here). A
    /// node that stops after it took the proposal answers
    /// `OutcomeUnknown`: the entry may already be in the log.
    pub async fn propose(&self, command: Vec<u8>) -> Result<Applied, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.tx.try_send(NodeMsg::Propose { command, reply })?;
        answer.await.map_err(|_| ClientError::OutcomeUnknown)?
    }

    /// Propose a command a follower forwarded under `tag` (see
    /// [`crate::node::forwarded`]); answered as [`Self::propose`], and
    /// `NotLeader` unless this node leads `tag.term`.
    pub async fn propose_forwarded(
        &self,
        command: Vec<u8>,
        tag: ForwardTag,
    ) -> Result<Applied, ClientError> {
        self.submit_forwarded(command, tag)?.await
    }

    /// Hand a forwarded command to the node now and wait for its answer
    /// later: a batch of forwards is submitted whole (so its entries can
    /// share one append) before any answer is awaited. The outer error is
    /// a refusal before the node took the command.
    pub fn submit_forwarded(
        &self,
        command: Vec<u8>,
        tag: ForwardTag,
    ) -> Result<impl Future<Output = Result<Applied, ClientError>> + Send + use<>, ClientError>
    {
        let (reply, answer) = oneshot::channel();
        self.tx.try_send(NodeMsg::ProposeForwarded {
            command,
            tag,
            reply,
        })?;
        Ok(async move { answer.await.map_err(|_| ClientError::OutcomeUnknown)? })
    }

    /// Propose a component activation on this node (forwarded here); as
    /// [`Self::propose`].
    pub async fn propose_activation(&self, activation: Activation) -> Result<Applied, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(NodeMsg::ProposeActivation { activation, reply })?;
        answer.await.map_err(|_| ClientError::OutcomeUnknown)?
    }

    /// Fetch (if needed), store and compile the component an upgrade is
    /// about to activate. The outer error is the node's refusal; the inner
    /// result is the compile time in milliseconds or why preparing failed.
    pub async fn prepare_component(
        &self,
        activation: Activation,
    ) -> Result<Result<u64, String>, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(NodeMsg::PrepareComponent { activation, reply })?;
        answer.await.map_err(|_| ClientError::Stopped)
    }
}
