//! The synchronous heart of a node: the raft-rs `RawNode` and the Ready
//! handling, with no I/O of its own besides storage.
//!
//! Inputs are method calls (`tick`, `step`, `propose`); outputs are returned
//! as [`Outbound`] (messages for peers, committed entries for the applier).
//! The async driver in [`super::driver`] feeds it from channels and a tokio
//! interval; a simulation can feed it from a virtual clock and a simulated
//! network instead.

use std::collections::BTreeMap;

use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeType, ConfChangeV2, Entry, EntryType, HardState, Message,
};
use raft::{RawNode, StateRole};
use raft_proto::ConfChangeI;

use super::applier::{ApplyItem, ProposalReply};
use super::envelope::{self, Payload};
use super::error::{ClientError, NodeError};
use tokio::sync::watch;

use crate::storage::SledStorage;
use crate::transport::PeerAddr;

/// Largest command a client may propose. Larger commands are refused before
/// they reach the log; sled keeps every entry inline below this size.
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;

/// What one round of Ready handling produced.
#[derive(Debug, Default)]
pub struct Outbound {
    /// Raft messages for peers; every entry and hard state they depend on is
    /// already durable.
    pub messages: Vec<Message>,
    /// Committed entries, in log order, for the applier.
    pub committed: Vec<ApplyItem>,
    /// The membership after a configuration change applied this round.
    pub members: Option<BTreeMap<u64, PeerAddr>>,
}

/// A change of the voters, proposed through the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a voter; its address travels in the entry so every replica (and
    /// every node that later replays the log) learns where to reach it.
    AddVoter {
        id: u64,
        addr: PeerAddr,
    },
    RemoveVoter {
        id: u64,
    },
}

/// Metadata key of the membership (Raft id → address), kept in step with
/// the applied configuration.
pub const MEMBERS_META_KEY: &str = "members";

/// A client waiting for its proposal to apply.
#[derive(Debug)]
struct PendingProposal {
    term: u64,
    reply: ProposalReply,
}

/// The node's consensus state machine.
pub struct NodeCore {
    raw: RawNode<SledStorage>,
    storage: SledStorage,
    /// Proposals made on this node, by log index, until that index commits.
    pending: BTreeMap<u64, PendingProposal>,
    last_role: StateRole,
    last_leader: u64,
    last_term: u64,
    /// Address of every member, from the applied configuration changes.
    members: BTreeMap<u64, PeerAddr>,
    /// Start an election after the first Ready if this is the sole voter.
    campaign_on_start: bool,
    /// Publishes the known leader (followers wait on it to forward).
    leader_tx: watch::Sender<Option<u64>>,
}

impl std::fmt::Debug for NodeCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCore")
            .field("id", &self.raw.raft.id)
            .field("term", &self.raw.raft.term)
            .field("role", &self.raw.raft.state)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// A point-in-time view of the consensus state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftView {
    pub id: u64,
    pub role: StateRole,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub commit_index: u64,
    pub last_index: u64,
    pub voters: Vec<u64>,
    pub pending_proposals: usize,
    /// Every member with its address and, on the leader, its match index.
    pub members: Vec<MemberView>,
}

/// One member as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub id: u64,
    pub addr: Option<PeerAddr>,
    pub voter: bool,
    /// Highest log index known to be replicated on it (leader only).
    pub match_index: Option<u64>,
}

impl NodeCore {
    pub fn new(
        raw: RawNode<SledStorage>,
        storage: SledStorage,
        members: BTreeMap<u64, PeerAddr>,
        leader_tx: watch::Sender<Option<u64>>,
    ) -> Self {
        let last_role = raw.raft.state;
        NodeCore {
            leader_tx,
            members,
            campaign_on_start: true,
            raw,
            storage,
            pending: BTreeMap::new(),
            last_role,
            last_leader: raft::INVALID_ID,
            last_term: 0,
        }
    }

    /// Start an election right away when this node is the only voter, so a
    /// single-node cluster serves without waiting for an election timeout.
    fn campaign_if_sole_voter(&mut self) -> Result<(), NodeError> {
        let voters = self.storage.conf_state().voters;
        if voters == [self.raw.raft.id] && self.raw.raft.state != StateRole::Leader {
            self.raw.campaign()?;
        }
        Ok(())
    }

    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Feed a message from a peer.
    pub fn step(&mut self, message: Message) -> Result<(), raft::Error> {
        self.raw.step(message)
    }

    /// Propose a client command, stamped with the leader's clock. The reply
    /// is answered once the entry applies, or right away if it is refused.
    pub fn propose(&mut self, command: Vec<u8>, timestamp_ms: u64, reply: ProposalReply) {
        match self.append_proposal(command, timestamp_ms) {
            Ok((index, term)) => {
                self.pending.insert(index, PendingProposal { term, reply });
            }
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    fn append_proposal(
        &mut self,
        command: Vec<u8>,
        timestamp_ms: u64,
    ) -> Result<(u64, u64), ClientError> {
        if command.is_empty() {
            return Err(ClientError::EmptyCommand);
        }
        if command.len() > MAX_COMMAND_BYTES {
            return Err(ClientError::CommandTooLarge {
                size_bytes: command.len(),
                limit_bytes: MAX_COMMAND_BYTES,
            });
        }
        if self.raw.raft.state != StateRole::Leader {
            return Err(ClientError::NotLeader {
                leader_hint: self.leader_id(),
            });
        }
        let data = envelope::encode_command(timestamp_ms, &command);
        let before = self.raw.raft.raft_log.last_index();
        self.raw
            .propose(Vec::new(), data)
            .map_err(|_| ClientError::ProposalDropped)?;
        let index = self.raw.raft.raft_log.last_index();
        debug_assert_eq!(index, before + 1, "one proposal appends one entry");
        Ok((index, self.raw.raft.term))
    }

    fn leader_id(&self) -> Option<u64> {
        let leader = self.raw.raft.leader_id;
        (leader != raft::INVALID_ID).then_some(leader)
    }

    pub fn view(&self) -> RaftView {
        let raft = &self.raw.raft;
        RaftView {
            id: raft.id,
            role: raft.state,
            term: raft.term,
            leader_id: self.leader_id(),
            commit_index: raft.raft_log.committed,
            last_index: raft.raft_log.last_index(),
            voters: self.storage.conf_state().voters,
            pending_proposals: self.pending.len(),
            members: self.member_views(),
        }
    }

    fn member_views(&self) -> Vec<MemberView> {
        let conf = self.storage.conf_state();
        let is_leader = self.raw.raft.state == StateRole::Leader;
        let mut ids: Vec<u64> = conf.voters.iter().chain(&conf.learners).copied().collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .map(|id| MemberView {
                id,
                addr: self.members.get(&id).cloned(),
                voter: conf.voters.contains(&id),
                match_index: is_leader
                    .then(|| self.raw.raft.prs().get(id).map(|p| p.matched))
                    .flatten(),
            })
            .collect()
    }

    /// Propose a membership change; the reply is answered once it applies.
    pub fn change_membership(&mut self, change: MembershipChange, reply: ProposalReply) {
        match self.append_membership_change(change) {
            Ok((index, term)) => {
                self.pending.insert(index, PendingProposal { term, reply });
            }
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    fn append_membership_change(
        &mut self,
        change: MembershipChange,
    ) -> Result<(u64, u64), ClientError> {
        if self.raw.raft.state != StateRole::Leader {
            return Err(ClientError::NotLeader {
                leader_hint: self.leader_id(),
            });
        }
        let voters = self.storage.conf_state().voters;
        let (conf_change, context) = match &change {
            MembershipChange::AddVoter { id, addr } => {
                if *id == 0 {
                    return Err(ClientError::InvalidMembership("raft ids start at 1".into()));
                }
                if voters.contains(id) {
                    return Err(ClientError::InvalidMembership(format!(
                        "node {id} is already a voter"
                    )));
                }
                let mut cc = ConfChange::default();
                cc.set_change_type(ConfChangeType::AddNode);
                cc.node_id = *id;
                // The address rides in the change itself (raft-rs puts the
                // proposal's context elsewhere in the entry).
                cc.context = serde_json::to_vec(addr)
                    .map_err(|e| {
                        ClientError::InvalidMembership(format!("encoding the address: {e}"))
                    })?
                    .into();
                (cc, Vec::new())
            }
            MembershipChange::RemoveVoter { id } => {
                if !voters.contains(id) {
                    return Err(ClientError::InvalidMembership(format!(
                        "node {id} is not a voter"
                    )));
                }
                if voters.len() == 1 {
                    return Err(ClientError::InvalidMembership(
                        "refusing to remove the last voter".into(),
                    ));
                }
                let mut cc = ConfChange::default();
                cc.set_change_type(ConfChangeType::RemoveNode);
                cc.node_id = *id;
                (cc, Vec::new())
            }
        };
        if self.raw.raft.has_pending_conf() {
            return Err(ClientError::InvalidMembership(
                "another membership change is still in progress".into(),
            ));
        }
        let before = self.raw.raft.raft_log.last_index();
        self.raw
            .propose_conf_change(context, conf_change)
            .map_err(|e| ClientError::InvalidMembership(e.to_string()))?;
        let index = self.raw.raft.raft_log.last_index();
        if index == before {
            return Err(ClientError::ProposalDropped);
        }
        Ok((index, self.raw.raft.term))
    }

    /// Handle every pending `Ready`, in the order raft-rs documents:
    /// messages that need nothing durable go out at once (`send_early`: a
    /// leader's appends, so followers persist while the leader does);
    /// committed entries out; new entries and hard state persisted (one
    /// batch, fsynced); then the messages that depend on them (returned in
    /// [`Outbound::messages`]), `advance` and the light ready.
    pub fn handle_ready(
        &mut self,
        send_early: &mut dyn FnMut(Vec<Message>),
    ) -> Result<Outbound, NodeError> {
        let mut out = Outbound::default();
        self.drain_ready(&mut out, send_early)?;
        if self.campaign_on_start {
            // raft-rs refuses to campaign while committed configuration
            // changes are unapplied, so the first election of a sole voter
            // waits until the replayed log went out once.
            self.campaign_on_start = false;
            self.campaign_if_sole_voter()?;
            self.drain_ready(&mut out, send_early)?;
        }
        self.log_role_changes();
        Ok(out)
    }

    fn drain_ready(
        &mut self,
        out: &mut Outbound,
        send_early: &mut dyn FnMut(Vec<Message>),
    ) -> Result<(), NodeError> {
        while self.raw.has_ready() {
            let mut ready = self.raw.ready();
            // raft-rs: `messages` may be sent before this Ready is persisted
            // (only `persisted_messages` depend on it).
            let early = ready.take_messages();
            if !early.is_empty() {
                send_early(early);
            }
            if !ready.snapshot().is_empty() {
                self.storage.apply_snapshot(ready.snapshot())?;
            }
            self.collect_committed(ready.take_committed_entries(), out)?;
            self.persist(ready.entries(), ready.hs())?;
            out.messages.extend(ready.take_persisted_messages());
            let mut light = self.raw.advance(ready);
            if let Some(commit) = light.commit_index() {
                self.storage.set_commit(commit)?;
            }
            out.messages.extend(light.take_messages());
            self.collect_committed(light.take_committed_entries(), out)?;
            // "Applied" to raft-rs means handed to the applier, which applies
            // strictly in this order.
            self.raw.advance_apply();
        }
        let log = &self.raw.raft.raft_log;
        assert!(
            log.applied <= log.committed && log.committed <= log.last_index(),
            "raft log invariant: applied {} <= committed {} <= last {}",
            log.applied,
            log.committed,
            log.last_index()
        );
        Ok(())
    }

    fn collect_committed(
        &mut self,
        entries: Vec<Entry>,
        out: &mut Outbound,
    ) -> Result<(), NodeError> {
        for entry in entries {
            let index = entry.index;
            let term = entry.term;
            let payload = match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    envelope::decode(&entry.data).map_err(|e| NodeError::CorruptEntry {
                        index,
                        reason: e.to_string(),
                    })?
                }
                EntryType::EntryConfChange => {
                    let payload = self.apply_conf_change::<ConfChange>(index, &entry.data)?;
                    self.record_member_change(index, &entry.data, out)?;
                    payload
                }
                EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change::<ConfChangeV2>(index, &entry.data)?
                }
            };
            let reply = match self.pending.remove(&index) {
                Some(p) if p.term == term => Some(p.reply),
                // Another leader's entry took this index: ours never commits.
                Some(p) => {
                    let _ = p.reply.send(Err(ClientError::ProposalDropped));
                    None
                }
                None => None,
            };
            // Proposals at lower indexes can never commit any more.
            while let Some(entry) = self.pending.first_entry() {
                if *entry.key() >= index {
                    break;
                }
                let _ = entry.remove().reply.send(Err(ClientError::ProposalDropped));
            }
            out.committed.push(ApplyItem {
                index,
                term,
                payload,
                reply,
            });
        }
        Ok(())
    }

    /// Make new entries and hard state durable. As etcd's `MustSync`: a
    /// hard state whose term and vote are unchanged (only the commit index
    /// moved) with no new entries needs no fsync; the commit index can be
    /// recomputed after a crash and rides along with the next durable write.
    fn persist(&self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<(), NodeError> {
        let persisted = self.storage.hard_state();
        let must_sync = !entries.is_empty()
            || hard_state.is_some_and(|hs| hs.term != persisted.term || hs.vote != persisted.vote);
        if must_sync {
            self.storage.append_and_persist(entries, hard_state)?;
        } else if let Some(hard_state) = hard_state {
            self.storage.set_commit(hard_state.commit)?;
        }
        Ok(())
    }

    /// Apply a committed membership change to Raft and persist the new
    /// configuration; the guest sees nothing of it.
    fn apply_conf_change<C: protobuf::Message + ConfChangeI>(
        &mut self,
        index: u64,
        data: &[u8],
    ) -> Result<Payload, NodeError> {
        let change = C::parse_from_bytes(data).map_err(|e| NodeError::CorruptEntry {
            index,
            reason: e.to_string(),
        })?;
        let conf_state = self.raw.apply_conf_change(&change)?;
        self.storage.set_conf_state(&conf_state)?;
        Ok(Payload::Noop)
    }

    /// Keep the address book in step with an applied (v1) configuration
    /// change: its context carries the added node's address.
    fn record_member_change(
        &mut self,
        index: u64,
        data: &[u8],
        out: &mut Outbound,
    ) -> Result<(), NodeError> {
        let change = ConfChange::parse_from_bytes(data).map_err(|e| NodeError::CorruptEntry {
            index,
            reason: e.to_string(),
        })?;
        match change.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                if change.context.is_empty() {
                    return Ok(());
                }
                match serde_json::from_slice::<PeerAddr>(&change.context) {
                    Ok(addr) => {
                        self.members.insert(change.node_id, addr);
                    }
                    Err(e) => {
                        tracing::warn!(index, node = change.node_id, error = %e,
                            "membership entry has an unreadable address");
                        return Ok(());
                    }
                }
            }
            ConfChangeType::RemoveNode => {
                self.members.remove(&change.node_id);
            }
        }
        let encoded = serde_json::to_vec(&self.members).map_err(|e| NodeError::CorruptEntry {
            index,
            reason: e.to_string(),
        })?;
        self.storage.put_meta(MEMBERS_META_KEY, &encoded)?;
        tracing::info!(index, members = ?self.members.keys().collect::<Vec<_>>(), "membership changed");
        out.members = Some(self.members.clone());
        Ok(())
    }

    fn log_role_changes(&mut self) {
        let raft = &self.raw.raft;
        assert!(
            raft.term >= self.last_term,
            "terms never go back: {} after {}",
            raft.term,
            self.last_term
        );
        if raft.term != self.last_term {
            tracing::Span::current().record("term", raft.term);
        }
        self.last_term = raft.term;
        if raft.state != self.last_role || raft.leader_id != self.last_leader {
            tracing::info!(id = raft.id, term = raft.term, role = ?raft.state,
                leader = raft.leader_id, "raft role changed");
            self.last_role = raft.state;
            self.last_leader = raft.leader_id;
            let leader = (raft.leader_id != raft::INVALID_ID).then_some(raft.leader_id);
            self.leader_tx.send_replace(leader);
        }
    }

    /// Fail every waiting client (the node is stopping).
    pub fn abandon_pending(&mut self) {
        self.pending.clear();
    }
}
