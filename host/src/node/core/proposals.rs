//! Proposals: client commands, component activations and state checks,
//! checked and appended on the leader.

use crate::limits::{
    MAX_COMMAND_BYTES, MAX_HELD_PROPOSALS, MAX_PROPOSAL_BATCHES_IN_FLIGHT, MAX_RAFT_MESSAGE_BYTES,
};
use raft::StateRole;
use raft::prelude::{Entry, Message, MessageType};

use super::{NodeCore, PendingProposal, StagedProposal};
use crate::node::applier::ProposalReply;
use crate::node::envelope;
use crate::node::error::ClientError;
use crate::node::forwarded::ForwardTag;
use crate::node::upgrade::Activation;

impl NodeCore {
    /// On the leader, append a state check every `every` committed entries.
    pub(super) fn propose_state_check_if_due(&mut self, now_ms: u64) {
        let checks = &self.checks;
        if checks.every == 0
            || checks.entries_since < checks.every
            || self.raw.raft.state != StateRole::Leader
        {
            return;
        }
        // A check proposed in an earlier term may never commit.
        if let Some(at) = checks.proposed_at
            && at > self.raw.raft.raft_log.committed
        {
            return;
        }
        let stamp = self.stamp(now_ms);
        if let Ok((index, _)) = self.append_proposal(envelope::encode_state_check(stamp)) {
            self.checks.proposed_at = Some(index);
        }
    }

    /// Propose a client command, stamped with the leader's clock. The reply
    /// is answered once the entry applies, or right away if it is refused
    /// (also when this node's guest can no longer make progress: see
    /// [`crate::node::admission`]).
    pub fn propose(&mut self, command: Vec<u8>, timestamp_ms: u64, reply: ProposalReply) {
        let stamp = self.leader_stamp(timestamp_ms);
        let checked = Self::check_command(&command)
            .and_then(|()| self.admission.check())
            .map(|()| envelope::encode_command(stamp, None, &command));
        self.propose_data(checked, false, reply);
    }

    /// Propose a command a follower forwarded (or this node's own handle
    /// tagged), carrying its id, but only as the leader of exactly
    /// `tag.term`: the origin's proof that a lost forward never commits
    /// rests on knowing the term of its entry (see
    /// [`crate::node::forwarded`]). Checked here, and again when the staged
    /// entry goes to Raft ([`Self::flush_proposals`]), so leadership cannot
    /// change in between.
    pub fn propose_forwarded(
        &mut self,
        command: Vec<u8>,
        tag: ForwardTag,
        timestamp_ms: u64,
        reply: ProposalReply,
    ) {
        if self.raw.raft.state != StateRole::Leader || self.raw.raft.term != tag.term {
            let _ = reply.send(Err(ClientError::NotLeader {
                leader_hint: self.leader_id(),
            }));
            return;
        }
        let stamp = self.leader_stamp(timestamp_ms);
        let checked = Self::check_command(&command)
            .and_then(|()| self.admission.check())
            .map(|()| envelope::encode_command(stamp, Some(&tag.id), &command));
        self.propose_data(checked, true, reply);
    }

    /// Propose switching the guest to another component (see
    /// [`super::upgrade`]). Answered once the activation applies, with its
    /// outcome.
    pub fn propose_activation(
        &mut self,
        activation: &Activation,
        timestamp_ms: u64,
        reply: ProposalReply,
    ) {
        let data = envelope::encode_activation(self.leader_stamp(timestamp_ms), activation);
        self.propose_data(Ok(data), false, reply);
    }

    /// Stage an entry to be proposed with the others of this round (see
    /// [`Self::flush_proposals`]), or refuse it now. `forwarded`: its origin
    /// waits to apply it (see [`super::commit_notice`]).
    pub(super) fn propose_data(
        &mut self,
        data: Result<Vec<u8>, ClientError>,
        forwarded: bool,
        reply: ProposalReply,
    ) {
        let refused = match data {
            Err(error) => error,
            Ok(_) if self.raw.raft.state != StateRole::Leader => ClientError::NotLeader {
                leader_hint: self.leader_id(),
            },
            Ok(data) => {
                let term = self.raw.raft.term;
                self.staged_bytes += data.len();
                self.staged.push(StagedProposal {
                    data,
                    term,
                    forwarded,
                    reply,
                });
                return;
            }
        };
        let _ = reply.send(Err(refused));
    }

    /// The end of a round: propose what was staged, unless the leader holds
    /// it for the next round. It holds while
    /// [`MAX_PROPOSAL_BATCHES_IN_FLIGHT`] earlier batches are uncommitted,
    /// up to [`MAX_HELD_PROPOSALS`] entries or [`MAX_RAFT_MESSAGE_BYTES`]:
    /// under load the commit of a batch clocks out the next one, so each
    /// round carries many writes instead of one or two, and every round
    /// costs the same (a Raft step, a staged write, messages to each
    /// follower, their answers). An idle leader, or a light load, holds
    /// nothing. The driver flushes anything held for
    /// [`crate::limits::MAX_PROPOSAL_HOLD`] (a commit that does not come).
    pub(crate) fn end_round_proposals(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let committed = self.raw.raft.raft_log.committed;
        while self
            .batches_in_flight
            .front()
            .is_some_and(|last| *last <= committed)
        {
            self.batches_in_flight.pop_front();
        }
        let hold = self.raw.raft.state == StateRole::Leader
            && self.batches_in_flight.len() >= MAX_PROPOSAL_BATCHES_IN_FLIGHT
            && self.staged.len() < MAX_HELD_PROPOSALS
            && (self.staged_bytes as u64) < MAX_RAFT_MESSAGE_BYTES;
        if !hold {
            self.flush_proposals();
        }
    }

    /// Whether proposals wait for a later round (see
    /// [`Self::end_round_proposals`]).
    pub fn holds_proposals(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Propose every staged entry at once, as one `MsgPropose` with all of
    /// them. One proposal per entry made the leader send each follower a
    /// `MsgAppend` per entry (and each follower answer each one): two
    /// messages each way per write and per follower, each encoded, framed,
    /// decoded and stepped. Together they go as one append per follower.
    /// raft-rs appends all of them or none (`Raft::append_entry`), at
    /// consecutive indexes.
    ///
    /// Called at the end of a round (through [`Self::end_round_proposals`])
    /// and before any input that must see the
    /// entries in the log first (a tick, a read, a membership change, a
    /// leader transfer, a snapshot request, an entry the node appends
    /// itself). Peers' messages do not flush: stepping their answers first
    /// lets one round's proposals leave in the same append as the commit
    /// index those answers advanced. An entry goes to Raft only if this
    /// node still leads the term it was accepted in; otherwise it is
    /// answered `NotLeader`, like a proposal that arrived after the change.
    pub(crate) fn flush_proposals(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let mut staged = std::mem::take(&mut self.staged);
        self.staged_bytes = 0;
        let leading = self.raw.raft.state == StateRole::Leader;
        let term = self.raw.raft.term;
        if !leading || staged.iter().any(|proposal| proposal.term != term) {
            let leader_hint = self.leader_id();
            let (current, stale): (Vec<_>, Vec<_>) = staged
                .into_iter()
                .partition(|proposal| leading && proposal.term == term);
            for proposal in stale {
                let _ = proposal
                    .reply
                    .send(Err(ClientError::NotLeader { leader_hint }));
            }
            staged = current;
            if staged.is_empty() {
                return;
            }
        }
        let mut replies = Vec::with_capacity(staged.len());
        let mut entries = Vec::with_capacity(staged.len());
        let mut forwarded = Vec::new();
        for (offset, proposal) in staged.into_iter().enumerate() {
            entries.push(Entry {
                data: proposal.data.into(),
                ..Entry::default()
            });
            replies.push(proposal.reply);
            if proposal.forwarded {
                forwarded.push(offset as u64);
            }
        }
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgPropose);
        message.from = self.raw.raft.id;
        message.set_entries(entries.into());
        let before = self.raw.raft.raft_log.last_index();
        match self.raw.raft.step(message) {
            Ok(()) => {
                let term = self.raw.raft.term;
                debug_assert_eq!(
                    self.raw.raft.raft_log.last_index(),
                    before + replies.len() as u64,
                    "a batch of proposals appends one entry each"
                );
                for (index, reply) in (before + 1..).zip(replies) {
                    self.pending.insert(index, PendingProposal { term, reply });
                }
                self.batches_in_flight
                    .push_back(self.raw.raft.raft_log.last_index());
                // raft-rs broadcast the entries, and the commit index with them.
                self.note_broadcast();
                self.note_forwarded(forwarded.into_iter().map(|offset| before + 1 + offset));
            }
            Err(_) => {
                for reply in replies {
                    let _ = reply.send(Err(ClientError::ProposalDropped));
                }
            }
        }
    }

    pub(super) fn check_command(command: &[u8]) -> Result<(), ClientError> {
        if command.is_empty() {
            return Err(ClientError::EmptyCommand);
        }
        if command.len() > MAX_COMMAND_BYTES {
            return Err(ClientError::CommandTooLarge {
                size_bytes: command.len(),
                limit_bytes: MAX_COMMAND_BYTES,
            });
        }
        Ok(())
    }

    /// The stamp for a proposal (see `clock.rs`); a follower refuses the
    /// proposal anyway, so it keeps `now_ms` without reading its log.
    fn leader_stamp(&mut self, now_ms: u64) -> u64 {
        if self.raw.raft.state == StateRole::Leader {
            self.stamp(now_ms)
        } else {
            now_ms
        }
    }

    /// Append one entry now, after the staged ones (a state check or a
    /// timer call, whose index the caller keeps).
    pub(super) fn append_proposal(&mut self, data: Vec<u8>) -> Result<(u64, u64), ClientError> {
        self.flush_proposals();
        if self.raw.raft.state != StateRole::Leader {
            return Err(ClientError::NotLeader {
                leader_hint: self.leader_id(),
            });
        }
        let before = self.raw.raft.raft_log.last_index();
        self.raw
            .propose(Vec::new(), data)
            .map_err(|_| ClientError::ProposalDropped)?;
        self.note_broadcast();
        let index = self.raw.raft.raft_log.last_index();
        debug_assert_eq!(index, before + 1, "one proposal appends one entry");
        Ok((index, self.raw.raft.term))
    }
}
