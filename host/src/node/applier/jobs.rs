//! The work the node hands the applier, and what comes back to clients.

use std::collections::BTreeMap;

use raft::prelude::{ConfState, Snapshot};
use tokio::sync::oneshot;

use crate::membership::PeerAddr;
use crate::node::envelope::Payload;
use crate::node::error::ClientError;
use crate::node::snapshot::LoadedSnapshot;
use crate::node::upgrade::{DryRunReport, LimitOverrides};
use crate::wasm::{GuestFailure, GuestInfo, LoadedComponent};

/// The result of one applied client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    pub result: Result<Vec<u8>, GuestFailure>,
    pub fuel_used: u64,
}

/// Where the result of a proposal goes: the applied result, or why it was
/// dropped. A sender dropped without an answer means the node stopped and
/// the outcome is unknown.
pub type ProposalReply = oneshot::Sender<Result<Applied, ClientError>>;

/// One committed entry, in log order.
#[derive(Debug)]
pub struct ApplyItem {
    pub index: u64,
    pub term: u64,
    pub payload: Payload,
    /// The client waiting for this entry, if it was proposed on this node.
    pub reply: Option<ProposalReply>,
}

/// The result of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryAnswer {
    /// The applied index the query ran at.
    pub applied_index: u64,
    pub result: Result<Vec<u8>, GuestFailure>,
    pub fuel_used: u64,
}

/// Where a query's answer goes.
pub type QueryReply = oneshot::Sender<Result<QueryAnswer, ClientError>>;

/// Work for the applier.
#[derive(Debug)]
pub enum ApplyJob {
    Apply(Vec<ApplyItem>),
    /// Run a query once the applied index reaches `min_applied` (a
    /// linearizable read waits for its read index; a stale read passes 0).
    Query {
        request: Vec<u8>,
        min_applied: u64,
        reply: QueryReply,
    },
    /// Write a snapshot file of the state as of every entry handed over so
    /// far (`index`, `term`), with the configuration at that point.
    Snapshot {
        index: u64,
        term: u64,
        conf: ConfState,
        members: BTreeMap<u64, PeerAddr>,
        reply: oneshot::Sender<Result<TakenSnapshot, String>>,
    },
    /// Replace the state with a snapshot received from the leader.
    Restore(Box<LoadedSnapshot>),
    /// Compare a candidate component with the active one (an upgrade's dry
    /// run). The applier copies what the comparison needs and runs it on
    /// another thread, so applying goes on meanwhile.
    DryRun {
        candidate: Box<Candidate>,
        reply: oneshot::Sender<Result<DryRunReport, String>>,
    },
    /// Answered once every job before it is done (a simulation steps the
    /// applier in lock step with the node this way).
    Barrier(oneshot::Sender<()>),
    /// A peer's state hash at a state check; `voters` is the configuration
    /// now.
    PeerStateHash {
        from: u64,
        index: u64,
        hash: [u8; 32],
        voters: Vec<u64>,
    },
}

/// A validated candidate component for a dry run.
#[derive(Debug)]
pub struct Candidate {
    pub component: LoadedComponent,
    pub info: GuestInfo,
    pub limits: LimitOverrides,
    pub compile_ms: u64,
    /// How many recent entries to compare.
    pub entries: usize,
}

/// Which component applied an entry, and what came out (a wire type).
pub use iroh_raft_client::AppliedRecord;

/// A snapshot the applier wrote: the Raft view of it (metadata plus the
/// file's descriptor as data) and its size.
#[derive(Debug, Clone)]
pub struct TakenSnapshot {
    pub snapshot: Snapshot,
    pub file_len: u64,
}
