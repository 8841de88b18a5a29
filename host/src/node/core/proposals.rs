//! Proposals: client commands, component activations and state checks,
//! checked and appended on the leader.

use crate::limits::MAX_COMMAND_BYTES;
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
        self.propose_data(checked, reply);
    }

    /// Propose a command a follower forwarded (or this node's own handle
    /// tagged), carrying its id, but only as the leader of exactly
    /// `tag.term`: the origin's proof that a lost forward never commits
    /// rests on knowing the term of its entry (see
    /// [`crate::node::forwarded`]). Checked here, in the same step as the
    /// proposal, so leadership cannot change in between.
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
        self.propose_data(checked, reply);
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
        self.propose_data(Ok(data), reply);
    }

    /// Stage an entry to be proposed with the others of this round (see
    /// [`Self::flush_proposals`]), or refuse it now.
    pub(super) fn propose_data(
        &mut self,
        data: Result<Vec<u8>, ClientError>,
        reply: ProposalReply,
    ) {
        let refused = match data {
            Err(error) => error,
            Ok(_) if self.raw.raft.state != StateRole::Leader => ClientError::NotLeader {
                leader_hint: self.leader_id(),
            },
            Ok(data) => {
                self.staged.push(StagedProposal { data, reply });
                return;
            }
        };
        let _ = reply.send(Err(refused));
    }

    /// Propose every staged entry at once, as one `MsgPropose` with all of
    /// them. One proposal per entry made the leader send each follower a
    /// `MsgAppend` per entry (and each follower answer each one): two
    /// messages each way per write and per follower, each encoded, framed,
    /// decoded and stepped. Together they go as one append per follower.
    /// raft-rs appends all of them or none (`Raft::append_entry`), at
    /// consecutive indexes.
    ///
    /// Called before anything else reaches Raft (a peer's message, a tick,
    /// a read, a membership change, a Ready), so the staged entries keep
    /// their place among the node's inputs, and leadership cannot change
    /// between a proposal's checks (its term, for a forwarded command) and
    /// its append.
    pub(crate) fn flush_proposals(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let staged = std::mem::take(&mut self.staged);
        if self.raw.raft.state != StateRole::Leader {
            let leader_hint = self.leader_id();
            for proposal in staged {
                let _ = proposal
                    .reply
                    .send(Err(ClientError::NotLeader { leader_hint }));
            }
            return;
        }
        let mut replies = Vec::with_capacity(staged.len());
        let mut entries = Vec::with_capacity(staged.len());
        for proposal in staged {
            entries.push(Entry {
                data: proposal.data.into(),
                ..Entry::default()
            });
            replies.push(proposal.reply);
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
        let index = self.raw.raft.raft_log.last_index();
        debug_assert_eq!(index, before + 1, "one proposal appends one entry");
        Ok((index, self.raw.raft.term))
    }
}
