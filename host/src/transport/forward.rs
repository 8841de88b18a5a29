//! Proposals a follower forwards to the leader: how a forward's delivery
//! is judged ([`exchange_tracked`]), and the queues that send them in
//! batches under load ([`ForwardQueues`]).
//!
//! ```text
//!  client tasks ──forward──► queue of leader L ──► its task: at most
//!                                                  MAX_FORWARD_BATCHES_IN_FLIGHT
//!                                                  batches out, each on a stream of its own
//!        ProposeForwardedBatch { p1 .. pn } ──────────────────► L submits p1 .. pn to its node,
//!        ◄──────────── Applied / Refused for p1, ..., pn, in order ┘ answers each as it applies
//! ```
//!
//! A forward that finds a free slot leaves at once, alone, as a plain
//! `ProposeForwarded`: one client waits no longer than it did when every
//! forward had a stream of its own. Under load every slot is taken, and the
//! forwards that queue meanwhile leave together when a batch is answered:
//! one stream, one request frame and a few writes of answers for up to
//! [`MAX_FORWARD_BATCH_PROPOSALS`] writes.
//!
//! Batching changes nothing of exactly-once (see `node::forwarded`): each
//! proposal keeps its own id, term and waiter on this node, and the leader
//! checks each one's term as it proposes it. Delivery is judged per batch,
//! as it was per forward: not delivered only if no stream could be opened
//! or the request frame could not be written whole; after that, a failure
//! leaves every proposal not yet answered `outcome_unknown`.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use iroh::endpoint::VarInt;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use super::codec;
use super::message::{ForwardedProposal, Request, Response, WireMessage};
use super::net::ConnectionPool;
use super::sender::PeerConnection;
use crate::limits::{
    DEFAULT_REQUEST_TIMEOUT, FORWARD_ACK_PATIENCE, FORWARD_QUEUE_IDLE, MAX_FORWARD_BATCH_BYTES,
    MAX_FORWARD_BATCH_PROPOSALS, MAX_FORWARD_BATCHES_IN_FLIGHT, MAX_FRAME_BYTES,
};
use crate::node::{Applied, ClientError, ForwardError, ForwardTag};
use crate::wasm::GuestFailure;

/// The stream reset code of a forward given up as not delivered.
const FORWARD_ABANDONED: VarInt = VarInt::from_u32(1);

/// Send `request` to `leader` on a stream of its own and hand each of up
/// to `answers` answer frames to `on_answer`, in order, as it arrives
/// (`on_answer` may stop reading early).
///
/// Whether the request reached the leader decides what a failure means.
/// It certainly did not ([`ForwardError::NotDelivered`], safe to send
/// elsewhere) only when no stream could be opened or the frame could not be
/// written whole. Once written, it may have reached the leader even if its
/// QUIC acknowledgement never came back (a lost ack, a one-way partition, a
/// peer that died before acking): a failure is then `outcome_unknown`,
/// whether the connection died, the answers stopped, or this node no longer
/// names that node its leader after [`FORWARD_ACK_PATIENCE`] with the bytes
/// unacknowledged (the stream is then reset). The Jepsen test caught the
/// earlier rule (retrying such a request elsewhere) applying a delete
/// twice.
pub(super) async fn exchange_tracked(
    connection: &PeerConnection,
    leader: u64,
    request: Request,
    answers: usize,
    mut leader_view: watch::Receiver<Option<u64>>,
    mut on_answer: impl FnMut(WireMessage) -> ControlFlow<()>,
) -> Result<(), ForwardError> {
    let not_delivered = |reason: String| ForwardError::NotDelivered { leader, reason };
    let (_, mut send, mut recv) = connection.open_stream().await.map_err(not_delivered)?;
    // A frame cut short does not decode, so a failed write never reaches
    // the leader's handler.
    codec::write_frame(&mut send, &WireMessage::Request(request))
        .await
        .map_err(|error| not_delivered(error.to_string()))?;
    let sent_at = tokio::time::Instant::now();
    // Finished, the stream's `stopped` resolves once the peer has
    // acknowledged every byte of it.
    let _ = send.finish();
    let acknowledged = send.stopped();
    let deadline = sent_at + DEFAULT_REQUEST_TIMEOUT;
    let reading = async {
        for _ in 0..answers {
            let failure = match tokio::time::timeout_at(
                deadline,
                codec::read_frame(&mut recv, MAX_FRAME_BYTES),
            )
            .await
            {
                Ok(Ok(Some(answer))) => match on_answer(answer) {
                    ControlFlow::Continue(()) => continue,
                    ControlFlow::Break(()) => return Ok(()),
                },
                Ok(Ok(None)) => "the leader closed the stream without answering".to_string(),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!(
                    "no answer within {} ms",
                    DEFAULT_REQUEST_TIMEOUT.as_millis()
                ),
            };
            return Err(failure);
        }
        Ok(())
    };
    let leader_gone = async {
        // A closed watch means the node stopped: give up as well.
        let _ = leader_view.wait_for(|named| *named != Some(leader)).await;
        tokio::time::sleep_until(sent_at + FORWARD_ACK_PATIENCE).await;
    };
    tokio::pin!(acknowledged, reading, leader_gone);
    let mut delivered = false;
    let read = loop {
        tokio::select! {
            // The answers settle everything; then a lost connection (seen
            // by `acknowledged`) before the leader change.
            biased;
            read = &mut reading => break read,
            acked = &mut acknowledged, if !delivered => match acked {
                // Acknowledged, or stopped by a peer that read it.
                Ok(_) => delivered = true,
                // The bytes may have been read even though no
                // acknowledgement came back (a lost ack, a one-way
                // partition): retrying elsewhere could apply it twice.
                Err(error) => {
                    tracing::info!(leader, %error,
                        "the connection to the leader was lost before the forwarded request was acknowledged");
                    return Err(ClientError::OutcomeUnknown.into());
                }
            },
            () = &mut leader_gone, if !delivered => {
                let _ = send.reset(FORWARD_ABANDONED);
                tracing::info!(leader, patience_ms = FORWARD_ACK_PATIENCE.as_millis() as u64,
                    "no longer the leader, and the forwarded request unacknowledged");
                return Err(ClientError::OutcomeUnknown.into());
            }
        }
    };
    read.map_err(|failure| {
        tracing::warn!(leader, %failure,
            "a forwarded request may have reached the leader; its outcome is unknown");
        ClientError::OutcomeUnknown.into()
    })
}

/// What one answer to a forwarded proposal says.
pub(super) fn applied_from_answer(answer: WireMessage) -> Result<Applied, ForwardError> {
    match answer {
        WireMessage::Response(Response::Applied {
            index,
            term,
            result,
            fuel_used,
        }) => Ok(Applied {
            index,
            term,
            result: result.map_err(GuestFailure::from),
            fuel_used,
        }),
        WireMessage::Refused(error) => Err(error.into()),
        // The handler refuses a frame it cannot use before proposing
        // anything: a build mismatch, not a lost outcome.
        WireMessage::Error(frame) => Err(ClientError::ForwardRefused {
            reason: format!("{:?}: {}", frame.code, frame.message),
        }
        .into()),
        // Never sent in answer to a proposal; no decision can be read from
        // it.
        other @ (WireMessage::Request(_)
        | WireMessage::Response(_)
        | WireMessage::RaftMessage(_)
        | WireMessage::Heartbeat(_)) => {
            tracing::warn!(answer = ?other,
                "unexpected answer to a forwarded proposal; its outcome is unknown");
            Err(ClientError::OutcomeUnknown.into())
        }
    }
}

/// Forward one request whose answer is one `Applied` (or a refusal).
pub(super) async fn forward_one(
    connection: &PeerConnection,
    leader: u64,
    request: Request,
    leader_view: watch::Receiver<Option<u64>>,
) -> Result<Applied, ForwardError> {
    let mut answer = None;
    exchange_tracked(connection, leader, request, 1, leader_view, |frame| {
        answer = Some(frame);
        ControlFlow::Break(())
    })
    .await?;
    match answer {
        Some(answer) => applied_from_answer(answer),
        None => Err(ClientError::OutcomeUnknown.into()),
    }
}

/// One forwarded command waiting in its leader's queue.
#[derive(Debug)]
struct Pending {
    proposal: ForwardedProposal,
    leader_view: watch::Receiver<Option<u64>>,
    reply: oneshot::Sender<Result<Applied, ForwardError>>,
}

/// A queue's sending end, with a number to tell queues of the same leader
/// apart.
#[derive(Debug)]
struct Queue {
    generation: u64,
    tx: mpsc::UnboundedSender<Pending>,
}

/// The forwarding queues of this node, one per leader it forwards to, each
/// drained by a task of its own.
#[derive(Debug)]
pub(super) struct ForwardQueues {
    pool: ConnectionPool,
    queues: Arc<Mutex<QueueMap>>,
}

#[derive(Debug, Default)]
struct QueueMap {
    next_generation: u64,
    by_leader: HashMap<u64, Queue>,
}

impl ForwardQueues {
    pub(super) fn new(pool: ConnectionPool) -> Self {
        ForwardQueues {
            pool,
            queues: Arc::default(),
        }
    }

    /// Forward a command under `tag` to `leader`, in the next batch that
    /// leaves for it; resolves with its answer.
    pub(super) async fn forward(
        &self,
        leader: u64,
        command: Vec<u8>,
        tag: ForwardTag,
        leader_view: watch::Receiver<Option<u64>>,
    ) -> Result<Applied, ForwardError> {
        let (reply, answer) = oneshot::channel();
        let mut pending = Pending {
            proposal: ForwardedProposal { command, tag },
            leader_view,
            reply,
        };
        // A queue that just stopped for idleness refuses the command; the
        // next one takes it.
        loop {
            match self.queue_of(leader).send(pending) {
                Ok(()) => break,
                Err(mpsc::error::SendError(back)) => pending = back,
            }
        }
        // Dropped unanswered: the task stopped with the command in an
        // unknown state.
        answer
            .await
            .unwrap_or(Err(ClientError::OutcomeUnknown.into()))
    }

    /// The open queue to `leader`, started if there is none.
    fn queue_of(&self, leader: u64) -> mpsc::UnboundedSender<Pending> {
        let mut map = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = map.by_leader.get(&leader)
            && !queue.tx.is_closed()
        {
            return queue.tx.clone();
        }
        let generation = map.next_generation;
        map.next_generation += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        map.by_leader.insert(
            leader,
            Queue {
                generation,
                tx: tx.clone(),
            },
        );
        let drain = QueueTask {
            leader,
            generation,
            pool: self.pool.clone(),
            queues: Arc::downgrade(&self.queues),
        };
        tokio::spawn(drain.run(rx));
        tx
    }
}

/// Drains one leader's queue into batches.
struct QueueTask {
    leader: u64,
    generation: u64,
    pool: ConnectionPool,
    queues: std::sync::Weak<Mutex<QueueMap>>,
}

impl QueueTask {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Pending>) {
        let slots = Arc::new(Semaphore::new(MAX_FORWARD_BATCHES_IN_FLIGHT));
        // A command that did not fit in the last batch leads the next.
        let mut carried: Option<Pending> = None;
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let first = match carried.take() {
                Some(pending) => pending,
                None => match tokio::time::timeout(FORWARD_QUEUE_IDLE, rx.recv()).await {
                    Ok(Some(pending)) => pending,
                    Ok(None) => return,
                    Err(_) => {
                        // Idle: no new sender finds this queue once it is
                        // out of the map; what raced in is still sent.
                        self.unregister();
                        rx.close();
                        continue;
                    }
                },
            };
            let mut bytes = first.proposal.command.len();
            let mut batch = vec![first];
            while batch.len() < MAX_FORWARD_BATCH_PROPOSALS {
                let Ok(pending) = rx.try_recv() else { break };
                bytes += pending.proposal.command.len();
                if bytes > MAX_FORWARD_BATCH_BYTES {
                    carried = Some(pending);
                    break;
                }
                batch.push(pending);
            }
            let (connection, stats) = self.pool.get(self.leader);
            stats.forward_batches.fetch_add(1, Ordering::Relaxed);
            stats
                .forwarded_proposals
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let leader = self.leader;
            tokio::spawn(async move {
                send_batch(&connection, leader, batch).await;
                drop(slot);
            });
        }
    }

    fn unregister(&self) {
        let Some(queues) = self.queues.upgrade() else {
            return;
        };
        let mut map = queues.lock().unwrap_or_else(PoisonError::into_inner);
        if map
            .by_leader
            .get(&self.leader)
            .is_some_and(|queue| queue.generation == self.generation)
        {
            map.by_leader.remove(&self.leader);
        }
    }
}

/// Send a batch and hand every command its answer: a batch of one as a
/// plain `ProposeForwarded`, more as one `ProposeForwardedBatch`.
async fn send_batch(connection: &PeerConnection, leader: u64, mut batch: Vec<Pending>) {
    let leader_view = batch[0].leader_view.clone();
    if batch.len() == 1 {
        let Pending {
            proposal, reply, ..
        } = batch.remove(0);
        let request = Request::ProposeForwarded {
            command: proposal.command,
            tag: proposal.tag,
        };
        let _ = reply.send(forward_one(connection, leader, request, leader_view).await);
        return;
    }
    let count = batch.len();
    let mut replies = Vec::with_capacity(count);
    let mut proposals = Vec::with_capacity(count);
    for pending in batch {
        proposals.push(pending.proposal);
        replies.push(pending.reply);
    }
    let mut replies = replies.into_iter();
    let mut answered = 0;
    let request = Request::ProposeForwardedBatch { proposals };
    let outcome = exchange_tracked(connection, leader, request, count, leader_view, |answer| {
        answered += 1;
        // An error frame first is the whole batch refused before any of
        // it was proposed.
        if answered == 1
            && let WireMessage::Error(_) = answer
        {
            let refused = applied_from_answer(answer);
            for reply in replies.by_ref() {
                let _ = reply.send(refused.clone());
            }
            return ControlFlow::Break(());
        }
        if let Some(reply) = replies.next() {
            let _ = reply.send(applied_from_answer(answer));
        }
        ControlFlow::Continue(())
    })
    .await;
    // The commands not answered share the batch's fate.
    let unanswered = outcome
        .err()
        .unwrap_or_else(|| ClientError::OutcomeUnknown.into());
    for reply in replies {
        let _ = reply.send(Err(unanswered.clone()));
    }
}
