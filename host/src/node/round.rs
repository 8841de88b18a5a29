//! One round of the node loop, written once: the driver runs it on a tokio
//! task, the deterministic simulation steps it by hand, so the simulation
//! tests the code production runs.
//!
//! A round is: handle inputs ([`dispatch`]), then handle Ready ([`ready`]),
//! whose output the caller delivers in order: jobs to the applier, the new
//! membership and the dependent messages to the transport.

use std::collections::BTreeMap;
use std::time::Instant;

use raft::prelude::Message;
use tokio::sync::oneshot;

use super::applier::{ApplyJob, TakenSnapshot};
use super::core::NodeCore;
use super::error::NodeError;
use super::inbox::NodeMsg;
use super::persist::PersistJob;
use super::upgrade::Activation;
use crate::membership::PeerAddr;

/// Where a taken snapshot is reported back to the loop.
pub(crate) type SnapshotAnswer = oneshot::Receiver<Result<TakenSnapshot, String>>;

/// What one Ready round produced, to be delivered in this order.
#[derive(Debug, Default)]
pub(crate) struct RoundOutput {
    /// Work for the applier, in log order (a snapshot job last).
    pub jobs: Vec<ApplyJob>,
    /// The membership, if a configuration change applied.
    pub members: Option<BTreeMap<u64, PeerAddr>>,
    /// Raft messages whose entries and hard state are now durable.
    pub messages: Vec<Message>,
    /// A snapshot job was handed out: its answer arrives here.
    pub snapshot_answer: Option<SnapshotAnswer>,
    /// Staged Readies for the persistence thread, in order; their
    /// messages leave when it reports them durable.
    pub persist: Vec<PersistJob>,
}

/// Handle Ready, compact the log by one batch if `compact` and a
/// compaction is under way, and, when no snapshot is in flight, start one
/// that is due. `send_early` gets the messages that may leave before the
/// fsync.
pub(crate) fn ready(
    core: &mut NodeCore,
    snapshot_in_flight: bool,
    compact: bool,
    send_early: &mut dyn FnMut(Vec<Message>),
) -> Result<RoundOutput, NodeError> {
    let out = core.handle_ready(send_early)?;
    if compact {
        core.compact_step()?;
    }
    let mut round = RoundOutput {
        jobs: out.jobs,
        members: out.members,
        messages: out.messages,
        snapshot_answer: None,
        persist: out.persist,
    };
    if !snapshot_in_flight && let Some((job, answer)) = core.snapshot_job() {
        round.jobs.push(job);
        round.snapshot_answer = Some(answer);
    }
    Ok(round)
}

/// Work an input asks for that the core cannot do itself: fetching and
/// compiling a component is blocking I/O the caller runs elsewhere.
#[derive(Debug)]
pub(crate) enum Deferred {
    PrepareComponent {
        activation: Activation,
        reply: oneshot::Sender<Result<u64, String>>,
    },
}

/// Hand one input to the core at `now` (`now_ms`: the wall clock the
/// leader stamps entries with); applier work is appended to `jobs`.
pub(crate) fn dispatch(
    core: &mut NodeCore,
    message: NodeMsg,
    now: Instant,
    now_ms: u64,
    jobs: &mut Vec<ApplyJob>,
) -> Option<Deferred> {
    // Proposals of a round go to Raft together, at its end; a peer's
    // message is stepped before them (see `NodeCore::flush_proposals`),
    // anything else after the ones staged before it.
    if !matches!(
        message,
        NodeMsg::Propose { .. }
            | NodeMsg::ProposeForwarded { .. }
            | NodeMsg::ProposeActivation { .. }
            | NodeMsg::Raft(_)
    ) {
        core.flush_proposals();
    }
    match message {
        NodeMsg::Propose { command, reply } => core.propose(command, now_ms, reply),
        NodeMsg::ProposeForwarded {
            command,
            tag,
            reply,
        } => {
            core.note_client_peer(tag.id.origin, now);
            core.propose_forwarded(command, tag, now_ms, reply)
        }
        NodeMsg::ProposeActivation { activation, reply } => {
            core.propose_activation(&activation, now_ms, reply)
        }
        NodeMsg::StateHash { from, index, hash } => {
            let voters = core.view().voters;
            jobs.push(ApplyJob::PeerStateHash {
                from,
                index,
                hash,
                voters,
            });
        }
        NodeMsg::PrepareComponent { activation, reply } => {
            return Some(Deferred::PrepareComponent { activation, reply });
        }
        NodeMsg::DryRun { candidate, reply } => jobs.push(ApplyJob::DryRun { candidate, reply }),
        NodeMsg::Query {
            request,
            consistency,
            reply,
        } => core.read(request, consistency, now, reply, jobs),
        NodeMsg::Raft(message) => {
            if message.get_msg_type() == raft::prelude::MessageType::MsgReadIndex {
                core.note_client_peer(message.from, now);
            }
            if let Err(error) = core.step(*message) {
                tracing::debug!(%error, "ignoring a raft message");
            }
        }
        NodeMsg::Status { reply } => {
            let _ = reply.send(core.view());
        }
        NodeMsg::ChangeMembership { change, reply } => core.change_membership(change, now, reply),
        NodeMsg::TransferLeader { target, reply } => {
            let _ = reply.send(core.transfer_leader(target));
        }
        NodeMsg::Snapshot { reply } => core.request_snapshot(reply),
        NodeMsg::SnapshotReport { to, delivered } => core.report_snapshot(to, delivered),
    }
    None
}
