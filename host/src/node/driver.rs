//! The async loop that drives [`NodeCore`]: it owns the node's inbox, the
//! tick interval and the hand-off to the applier and the transport.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use raft::prelude::Message;
use tokio::sync::{mpsc, oneshot, watch};

use super::applier::{
    Applied, ApplierEnv, ApplyJob, Candidate, ProposalReply, QueryReply, TakenSnapshot, unix_now_ms,
};
use super::component_fetch;
use super::core::{Consistency, MembershipChange, NodeCore, RaftView, SnapshotInfo};
use super::error::{ClientError, ForwardError, NodeError};
use super::upgrade::{Activation, DryRunReport};
use crate::transport::PeerAddr;
use crate::wasm::ComponentHash;

/// Messages the node's inbox holds before senders see `Overloaded`.
pub const NODE_INBOX_CAPACITY: usize = 4096;
/// Most inbox messages handled before one round of Ready handling: this is
/// what batches many proposals into one fsync.
pub const MAX_MESSAGES_PER_ROUND: usize = 1024;
/// One Raft tick.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);

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

/// What the transport needs from the node it serves: its inbox (for
/// snapshot reports and received snapshots), where snapshot files live and
/// where its components live (peers fetch them by hash).
#[derive(Debug, Clone)]
pub struct NodeLink {
    pub inbox: mpsc::Sender<NodeMsg>,
    pub snapshot_dir: PathBuf,
    pub components_dir: PathBuf,
}

/// Where the node's outgoing Raft messages go. The seam between consensus
/// and the network: the iroh transport, or a simulated network in tests.
pub trait Transport: Send + 'static {
    /// Send messages to peers (best effort: Raft retransmits).
    fn send(&mut self, messages: Vec<Message>);

    /// The committed membership changed: who may connect, where to dial.
    fn set_members(&mut self, _members: &BTreeMap<u64, PeerAddr>) {}

    /// Called once before the node runs.
    fn attach(&mut self, _link: NodeLink) {}
}

/// A boxed future, as the [`Forwarder`] methods return.
pub type PeerFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Requests a node makes to its peers on its own behalf: forwarding a
/// client's proposal to the leader (a follower's way of serving writes) and
/// fetching a component it must activate but does not hold.
///
/// A forward tells "certainly not delivered" ([`ForwardError::NotDelivered`],
/// safe to send to another leader) from "may have reached the leader"
/// (`OutcomeUnknown`). `leader_view` is the node's leader watch: once it no
/// longer names `leader`, a forward whose bytes the leader has not
/// acknowledged gives up as not delivered instead of waiting for a dead
/// connection to time out.
pub trait Forwarder: Send + Sync + std::fmt::Debug + 'static {
    fn forward_propose(
        &self,
        leader: u64,
        command: Vec<u8>,
        leader_view: watch::Receiver<Option<u64>>,
    ) -> PeerFuture<'_, Result<Applied, ForwardError>>;

    /// Forward a component activation to the leader.
    fn forward_activation(
        &self,
        leader: u64,
        activation: Activation,
        leader_view: watch::Receiver<Option<u64>>,
    ) -> PeerFuture<'_, Result<Applied, ForwardError>>;

    /// Ask `peer` to get the activation's component ready (fetched from
    /// the activation's source, stored, compiled); answers its compile time.
    fn prepare_component(
        &self,
        peer: u64,
        activation: Activation,
    ) -> PeerFuture<'_, Result<u64, String>>;

    /// Send this node's state hash at the state check `index` to `peer`.
    fn report_state_hash(
        &self,
        peer: u64,
        index: u64,
        hash: [u8; 32],
    ) -> PeerFuture<'_, Result<(), String>>;

    /// Download the component `hash` (`size_bytes` long) from `peer`. The
    /// caller verifies the bytes against the hash.
    fn fetch_component(
        &self,
        peer: u64,
        hash: ComponentHash,
        size_bytes: u64,
    ) -> PeerFuture<'_, Result<Vec<u8>, String>>;
}

/// The transport of a single-node cluster: Raft never addresses a peer.
#[derive(Debug, Default)]
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            tracing::warn!(to = message.to, kind = ?message.get_msg_type(),
                "dropping a message for a peer: this node has no transport");
        }
    }
}

/// Channels the loop listens on besides the inbox.
#[derive(Debug)]
pub struct Controls {
    pub shutdown: mpsc::Receiver<oneshot::Sender<()>>,
    pub fatal: watch::Receiver<Option<String>>,
}

/// Run the node until shutdown, until every handle is dropped, or until a
/// fatal error.
pub async fn run(
    mut core: NodeCore,
    mut inbox: mpsc::Receiver<NodeMsg>,
    mut controls: Controls,
    applier: mpsc::Sender<ApplyJob>,
    prepare_env: ApplierEnv,
    mut transport: impl Transport,
) -> Result<Option<oneshot::Sender<()>>, NodeError> {
    let mut ticker = tokio::time::interval(TICK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snapshot_answer: Option<oneshot::Receiver<Result<TakenSnapshot, String>>> = None;
    let result = loop {
        // Ready first: at start-up this hands the committed entries to be
        // replayed to the applier before any query can overtake them.
        let out = match core.handle_ready(&mut |messages| transport.send(messages)) {
            Ok(out) => out,
            Err(error) => break Err(error),
        };
        if let Err(error) = hand_over(&applier, out.jobs).await {
            break Err(error);
        }
        if let Some(members) = &out.members {
            transport.set_members(members);
        }
        if !out.messages.is_empty() {
            transport.send(out.messages);
        }
        if snapshot_answer.is_none()
            && let Some((job, answer)) = core.snapshot_job()
        {
            if let Err(error) = hand_over(&applier, vec![job]).await {
                break Err(error);
            }
            snapshot_answer = Some(answer);
        }
        tokio::select! {
            // Shutdown and fatal errors are checked first, so a busy inbox
            // can never delay them.
            biased;
            reply = controls.shutdown.recv() => break Ok(reply),
            _ = controls.fatal.changed() => {
                let reason = controls.fatal.borrow().clone().unwrap_or_default();
                break Err(NodeError::StateMachine(reason));
            }
            taken = async { snapshot_answer.as_mut().expect("guarded").await }, if snapshot_answer.is_some() => {
                snapshot_answer = None;
                let taken = taken.unwrap_or_else(|_| Err("the applier stopped".into()));
                if let Err(error) = core.snapshot_done(taken) {
                    break Err(error);
                }
            }
            message = inbox.recv() => {
                let Some(message) = message else { break Ok(None) };
                handle(&mut core, message, &applier, &prepare_env).await?;
                for _ in 1..MAX_MESSAGES_PER_ROUND {
                    match inbox.try_recv() {
                        Ok(message) => handle(&mut core, message, &applier, &prepare_env).await?,
                        Err(_) => break,
                    }
                }
            }
            _ = ticker.tick() => core.tick(Instant::now(), unix_now_ms()),
        }
    };
    core.abandon_pending();
    result
}

async fn hand_over(applier: &mpsc::Sender<ApplyJob>, jobs: Vec<ApplyJob>) -> Result<(), NodeError> {
    for job in jobs {
        if applier.send(job).await.is_err() {
            return Err(NodeError::StateMachine("the applier stopped".into()));
        }
    }
    Ok(())
}

async fn handle(
    core: &mut NodeCore,
    message: NodeMsg,
    applier: &mpsc::Sender<ApplyJob>,
    prepare_env: &ApplierEnv,
) -> Result<(), NodeError> {
    match message {
        NodeMsg::Propose { command, reply } => core.propose(command, unix_now_ms(), reply),
        NodeMsg::ProposeActivation { activation, reply } => {
            core.propose_activation(&activation, unix_now_ms(), reply)
        }
        NodeMsg::StateHash { from, index, hash } => {
            let voters = core.view().voters;
            let job = ApplyJob::PeerStateHash {
                from,
                index,
                hash,
                voters,
            };
            hand_over(applier, vec![job]).await?;
        }
        NodeMsg::PrepareComponent { activation, reply } => {
            let env = prepare_env.clone();
            tokio::task::spawn_blocking(move || {
                let _ = reply.send(component_fetch::prepare(&env, &activation));
            });
        }
        NodeMsg::DryRun { candidate, reply } => {
            hand_over(applier, vec![ApplyJob::DryRun { candidate, reply }]).await?;
        }
        NodeMsg::Query {
            request,
            consistency,
            reply,
        } => {
            let mut jobs = Vec::new();
            core.read(request, consistency, Instant::now(), reply, &mut jobs);
            hand_over(applier, jobs).await?;
        }
        NodeMsg::Raft(message) => {
            if let Err(error) = core.step(*message) {
                tracing::debug!(%error, "ignoring a raft message");
            }
        }
        NodeMsg::Status { reply } => {
            let _ = reply.send(core.view());
        }
        NodeMsg::ChangeMembership { change, reply } => {
            core.change_membership(change, Instant::now(), reply)
        }
        NodeMsg::TransferLeader { target, reply } => {
            let _ = reply.send(core.transfer_leader(target));
        }
        NodeMsg::Snapshot { reply } => core.request_snapshot(reply),
        NodeMsg::SnapshotReport { to, delivered } => core.report_snapshot(to, delivered),
    }
    Ok(())
}

impl From<mpsc::error::TrySendError<NodeMsg>> for ClientError {
    fn from(error: mpsc::error::TrySendError<NodeMsg>) -> Self {
        match error {
            mpsc::error::TrySendError::Full(_) => ClientError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => ClientError::Stopped,
        }
    }
}
