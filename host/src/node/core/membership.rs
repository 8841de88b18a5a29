//! Membership: adding and removing members (learner first, promoted once it
//! caught up, through joint consensus when a voter is replaced), leaving a
//! joint configuration, and leadership transfer.

use crate::limits::{PROMOTION_LAG_ENTRIES, PROMOTION_TIMEOUT};
use std::collections::BTreeMap;
use std::time::Instant;

use raft::StateRole;
use raft::prelude::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2};
use raft_proto::ConfChangeI;

use super::{MembershipChange, NodeCore, Outbound, PendingPromotion, PendingProposal, Started};
use crate::membership::{self, PeerAddr};
use crate::node::applier::ProposalReply;
use crate::node::envelope::Payload;
use crate::node::error::{ClientError, NodeError};
use crate::storage::MetaUpdate;

impl NodeCore {
    /// A leader that is leaving (in the outgoing half of a joint
    /// configuration only) hands leadership to the best incoming voter.
    pub(super) fn hand_over_if_leaving(&mut self) {
        let me = self.raw.raft.id;
        let leaving = !self.storage.conf_state().voters.contains(&me);
        if leaving
            && self.raw.raft.state == StateRole::Leader
            && self.raw.raft.lead_transferee.is_none()
            && let Some(next) = self.best_successor()
        {
            tracing::info!(
                to = next,
                "this leader is leaving the cluster; handing leadership over"
            );
            self.lease_until = None;
            self.raw.transfer_leader(next);
        }
    }

    /// raft-rs leaves a joint configuration automatically only if the leader
    /// that entered it applies it (and never for an explicit one); a leader
    /// in the incoming configuration finishes the job.
    pub(super) fn leave_joint_if_stuck(&mut self) {
        let raft = &self.raw.raft;
        let conf = self.storage.conf_state();
        if raft.state != StateRole::Leader
            || raft.has_pending_conf()
            || conf.voters_outgoing.is_empty()
        {
            return;
        }
        if !conf.voters.contains(&raft.id) {
            self.hand_over_if_leaving();
            return;
        }
        tracing::info!("leaving a joint configuration a previous leader entered");
        if let Err(error) = self
            .raw
            .propose_conf_change(Vec::new(), ConfChangeV2::default())
        {
            tracing::warn!(%error, "proposing to leave the joint configuration");
        }
    }

    /// Propose a membership change; the reply is answered once it applies
    /// (for a new voter: once it has caught up and been promoted).
    pub fn change_membership(
        &mut self,
        change: MembershipChange,
        now: Instant,
        reply: ProposalReply,
    ) {
        match self.start_membership_change(change, now) {
            Ok(Started::Proposed { index, term }) => {
                self.pending.insert(index, PendingProposal { term, reply });
            }
            // A promotion: answered when it applies.
            Ok(Started::Promotion { learner }) => {
                if let Some(promotion) = self.promotions.get_mut(&learner) {
                    promotion.reply = Some(reply);
                }
            }
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    /// Check a change and propose its first step.
    pub(super) fn start_membership_change(
        &mut self,
        change: MembershipChange,
        now: Instant,
    ) -> Result<Started, ClientError> {
        let invalid = |why: String| Err(ClientError::InvalidMembership(why));
        if self.raw.raft.state != StateRole::Leader {
            return Err(ClientError::NotLeader {
                leader_hint: self.leader_id(),
            });
        }
        let conf = self.storage.conf_state();
        if !conf.voters_outgoing.is_empty() || self.raw.raft.has_pending_conf() {
            return invalid("another membership change is still in progress".into());
        }
        if !self.promotions.is_empty() {
            return invalid(format!(
                "node {} is still catching up to be promoted; wait for it (or remove it)",
                self.promotions.keys().next().copied().unwrap_or_default()
            ));
        }
        let is_voter = |id: &u64| conf.voters.contains(id);
        let is_learner = |id: &u64| conf.learners.contains(id);
        match change {
            MembershipChange::AddVoter { id, ref addr }
            | MembershipChange::AddLearner { id, ref addr }
                if id == 0 || addr.endpoint_id().is_none() =>
            {
                invalid("raft ids start at 1 and the address needs a valid node id".into())
            }
            MembershipChange::AddVoter { id, .. } if is_voter(&id) => {
                invalid(format!("node {id} is already a voter"))
            }
            MembershipChange::AddVoter { id, .. } if is_learner(&id) => {
                Ok(self.schedule_promotion(id, None, now))
            }
            MembershipChange::AddVoter { id, addr } => {
                self.propose_changes(&[(ConfChangeType::AddLearnerNode, id)], Some((id, &addr)))?;
                // Answered when the promotion applies, not now.
                Ok(self.schedule_promotion(id, None, now))
            }
            MembershipChange::AddLearner { id, .. } if is_voter(&id) || is_learner(&id) => {
                invalid(format!("node {id} is already a member"))
            }
            MembershipChange::AddLearner { id, addr } => self
                .propose_changes(&[(ConfChangeType::AddLearnerNode, id)], Some((id, &addr)))
                .map(Started::proposed),
            MembershipChange::RemoveNode { id } => {
                if !is_voter(&id) && !is_learner(&id) {
                    return invalid(format!("node {id} is not a member"));
                }
                if is_voter(&id) && conf.voters.len() == 1 {
                    return invalid("refusing to remove the last voter".into());
                }
                if id == self.raw.raft.id {
                    // raft-rs cannot run a leader outside the configuration:
                    // enter a joint configuration without this node (it
                    // still counts in the outgoing half), hand leadership
                    // over, and let the next leader leave the joint state.
                    return self
                        .propose_changes_with(
                            &[(ConfChangeType::RemoveNode, id)],
                            None,
                            Some(ConfChangeTransition::Explicit),
                        )
                        .map(Started::proposed);
                }
                self.propose_changes(&[(ConfChangeType::RemoveNode, id)], None)
                    .map(Started::proposed)
            }
            MembershipChange::Replace { old, id, addr } => {
                if !is_voter(&old) {
                    return invalid(format!("node {old} is not a voter"));
                }
                if is_voter(&id) || is_learner(&id) || id == 0 || old == id {
                    return invalid(format!("node {id} is already a member (or invalid)"));
                }
                self.propose_changes(&[(ConfChangeType::AddLearnerNode, id)], Some((id, &addr)))?;
                Ok(self.schedule_promotion(id, Some(old), now))
            }
        }
    }

    pub(super) fn schedule_promotion(
        &mut self,
        id: u64,
        replaces: Option<u64>,
        now: Instant,
    ) -> Started {
        self.promotions.insert(
            id,
            PendingPromotion {
                replaces,
                started: now,
                reply: None,
                proposed_at: None,
                min_match: self.raw.raft.raft_log.last_index(),
            },
        );
        Started::Promotion { learner: id }
    }

    /// Propose one `ConfChangeV2`. One change is a simple change; several
    /// (promote + remove) go through joint consensus, left automatically.
    pub(super) fn propose_changes(
        &mut self,
        changes: &[(ConfChangeType, u64)],
        address: Option<(u64, &PeerAddr)>,
    ) -> Result<(u64, u64), ClientError> {
        let transition = (changes.len() > 1).then_some(ConfChangeTransition::Implicit);
        self.propose_changes_with(changes, address, transition)
    }

    /// As [`Self::propose_changes`], through a joint configuration when
    /// `transition` is given (`Implicit`: left automatically; `Explicit`:
    /// left by a later empty change).
    pub(super) fn propose_changes_with(
        &mut self,
        changes: &[(ConfChangeType, u64)],
        address: Option<(u64, &PeerAddr)>,
        transition: Option<ConfChangeTransition>,
    ) -> Result<(u64, u64), ClientError> {
        let mut cc = ConfChangeV2::default();
        for (change_type, node_id) in changes {
            let mut single = ConfChangeSingle::default();
            single.set_change_type(*change_type);
            single.node_id = *node_id;
            cc.mut_changes().push(single);
        }
        if let Some(transition) = transition {
            cc.set_transition(transition);
        }
        if let Some((id, addr)) = address {
            // The address rides in the change itself, so every replica's
            // address book follows the log.
            let book: BTreeMap<u64, &PeerAddr> = [(id, addr)].into_iter().collect();
            cc.context = serde_json::to_vec(&book)
                .map_err(|e| ClientError::InvalidMembership(format!("encoding the address: {e}")))?
                .into();
        }
        let before = self.raw.raft.raft_log.last_index();
        self.raw
            .propose_conf_change(Vec::new(), cc)
            .map_err(|e| ClientError::InvalidMembership(e.to_string()))?;
        let index = self.raw.raft.raft_log.last_index();
        if index == before {
            return Err(ClientError::ProposalDropped);
        }
        Ok((index, self.raw.raft.term))
    }

    /// Promote learners that have caught up; give up on those that never do.
    pub(super) fn drive_promotions(&mut self, now: Instant) {
        if self.promotions.is_empty() {
            return;
        }
        if self.raw.raft.state != StateRole::Leader {
            for (id, promotion) in std::mem::take(&mut self.promotions) {
                tracing::info!(
                    learner = id,
                    "leadership lost; the learner's promotion is abandoned"
                );
                if let Some(reply) = promotion.reply {
                    let _ = reply.send(Err(ClientError::NotLeader {
                        leader_hint: self.leader_id(),
                    }));
                }
            }
            return;
        }
        let last_index = self.raw.raft.raft_log.last_index();
        let conf = self.storage.conf_state();
        let ids: Vec<u64> = self.promotions.keys().copied().collect();
        for id in ids {
            let Some(promotion) = self.promotions.get(&id) else {
                continue;
            };
            if promotion.proposed_at.is_some() {
                continue;
            }
            if now.duration_since(promotion.started) > PROMOTION_TIMEOUT {
                if let Some(promotion) = self.promotions.remove(&id)
                    && let Some(reply) = promotion.reply
                {
                    let _ = reply.send(Err(ClientError::InvalidMembership(format!(
                        "node {id} did not catch up within {} s; it stays a learner \
                         (add it again to retry the promotion)",
                        PROMOTION_TIMEOUT.as_secs()
                    ))));
                }
                continue;
            }
            // Wait until the learner is in the applied configuration and
            // close to the leader's log.
            if !conf.learners.contains(&id) || self.raw.raft.has_pending_conf() {
                continue;
            }
            let matched = self.raw.raft.prs().get(id).map_or(0, |p| p.matched);
            if matched < promotion.min_match || matched + PROMOTION_LAG_ENTRIES < last_index {
                continue;
            }
            let mut changes = vec![(ConfChangeType::AddNode, id)];
            if let Some(old) = promotion.replaces {
                changes.push((ConfChangeType::RemoveNode, old));
            }
            match self.propose_changes(&changes, None) {
                Ok((index, term)) => {
                    tracing::info!(
                        learner = id,
                        matched,
                        index,
                        "promoting a caught-up learner"
                    );
                    let promotion = self.promotions.get_mut(&id).expect("present above");
                    promotion.proposed_at = Some(index);
                    if let Some(reply) = promotion.reply.take() {
                        self.pending.insert(index, PendingProposal { term, reply });
                    }
                }
                Err(error) => tracing::debug!(learner = id, %error, "promotion not proposed yet"),
            }
        }
    }

    /// Hand leadership to `target` (or to the most up-to-date other voter).
    pub fn transfer_leader(&mut self, target: Option<u64>) -> Result<u64, ClientError> {
        if self.raw.raft.state != StateRole::Leader {
            return Err(ClientError::NotLeader {
                leader_hint: self.leader_id(),
            });
        }
        let me = self.raw.raft.id;
        let conf = self.storage.conf_state();
        let target = match target {
            Some(target) if target == me => {
                return Err(ClientError::InvalidMembership(format!(
                    "node {me} already leads"
                )));
            }
            Some(target) if !conf.voters.contains(&target) => {
                return Err(ClientError::InvalidMembership(format!(
                    "node {target} is not a voter"
                )));
            }
            Some(target) => target,
            None => self.best_successor().ok_or_else(|| {
                ClientError::InvalidMembership("there is no other voter to lead".into())
            })?,
        };
        tracing::info!(from = me, to = target, "transferring leadership");
        self.lease_until = None;
        self.raw.transfer_leader(target);
        Ok(target)
    }

    /// The other voter with the longest log.
    pub(super) fn best_successor(&self) -> Option<u64> {
        let me = self.raw.raft.id;
        self.storage
            .conf_state()
            .voters
            .into_iter()
            .filter(|id| *id != me)
            .max_by_key(|id| self.raw.raft.prs().get(*id).map_or(0, |p| p.matched))
    }

    /// Apply a committed membership change to Raft and persist the new
    /// configuration with the address book, in one batch; the guest sees
    /// nothing of it. Changes already in the stored configuration (replayed
    /// after a restart) are not applied twice.
    pub(super) fn apply_conf_change<C: protobuf::Message + ConfChangeI>(
        &mut self,
        index: u64,
        data: &[u8],
        out: &mut Outbound,
    ) -> Result<Payload, NodeError> {
        if index <= self.conf_applied_index {
            return Ok(Payload::Noop);
        }
        let corrupt = |reason: String| NodeError::CorruptEntry { index, reason };
        let change = C::parse_from_bytes(data).map_err(|e| corrupt(e.to_string()))?;
        let change = change.as_v2().into_owned();
        let conf_state = self.raw.apply_conf_change(&change)?;
        for single in change.get_changes() {
            match single.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    if let Some(addr) =
                        membership::address_in(index, single.node_id, &change.context)
                    {
                        self.members.insert(single.node_id, addr);
                    }
                }
                ConfChangeType::RemoveNode => {
                    self.members.remove(&single.node_id);
                    self.promotions.remove(&single.node_id);
                }
            }
        }
        self.storage.set_conf_state_with_meta(
            &conf_state,
            MetaUpdate {
                members: Some(&self.members),
                conf_index: Some(index),
                active_component: None,
            },
        )?;
        self.conf_applied_index = index;
        // A finished promotion is no longer pending.
        self.promotions
            .retain(|_, p| p.proposed_at.is_none_or(|at| at > index));
        tracing::info!(index, voters = ?conf_state.voters, learners = ?conf_state.learners,
            outgoing = ?conf_state.voters_outgoing, "membership changed");
        out.members = Some(self.members.clone());
        self.hand_over_if_leaving();
        Ok(Payload::Noop)
    }
}
