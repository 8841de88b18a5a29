//! The synchronous heart of a node: the raft-rs `RawNode` and the Ready
//! handling, with no I/O of its own besides storage.
//!
//! Inputs are method calls (`tick`, `step`, `propose`); outputs are returned
//! as [`Outbound`] (messages for peers, committed entries for the applier).
//! The async driver in [`super::driver`] feeds it from channels and a tokio
//! interval; a simulation can feed it from a virtual clock and a simulated
//! network instead.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use raft::prelude::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, Entry,
    EntryType, HardState, Message, Snapshot,
};
use raft::{RawNode, StateRole};
use raft_proto::ConfChangeI;

use super::applier::{ApplyItem, ApplyJob, ProposalReply, QueryReply, TakenSnapshot};
use super::envelope::{self, Payload};
use super::error::{ClientError, NodeError};
use super::snapshot::{self, SnapshotDescriptor, SnapshotPolicy};
use super::upgrade::Activation;
use tokio::sync::{oneshot, watch};

use crate::storage::SledStorage;
use crate::transport::PeerAddr;

/// Largest command a client may propose. Larger commands are refused before
/// they reach the log; sled keeps every entry inline below this size.
pub const MAX_COMMAND_BYTES: usize = 1024 * 1024;

/// How long a linearizable read may wait for its read index before the
/// client gets `timeout` (no leader, or the leader cannot reach a quorum).
pub const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a leader serves `lease` reads after a quorum confirmed its
/// leadership. Followers refuse to elect anyone for one election timeout
/// (`ELECTION_TICKS` ticks, 1 s) after they last heard from the leader, so a
/// lease shorter than that is safe while clocks run at about the same rate
/// (drift under 20%).
pub const LEASE_DURATION: Duration = Duration::from_millis(800);
/// A learner is promoted once it is within this many entries of the
/// leader's log.
pub const PROMOTION_LAG_ENTRIES: u64 = 100;
/// How long a new learner may take to catch up before its promotion is
/// abandoned (it stays a learner; `add-node` again retries).
pub const PROMOTION_TIMEOUT: Duration = Duration::from_secs(300);

/// What one round of Ready handling produced.
#[derive(Debug, Default)]
pub struct Outbound {
    /// Raft messages for peers; every entry and hard state they depend on is
    /// already durable.
    pub messages: Vec<Message>,
    /// Work for the applier, in order: committed entries, snapshots to
    /// restore, reads whose index is known.
    pub jobs: Vec<ApplyJob>,
    /// The membership after a configuration change applied this round.
    pub members: Option<BTreeMap<u64, PeerAddr>>,
}

/// A membership change, proposed through the log (raft-rs `ConfChangeV2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a voter: it joins as a learner, catches up, and is then promoted;
    /// the change is done once it votes. Its address travels in the entry so
    /// every replica (and every node that later replays the log) learns
    /// where to reach it. Adding an existing learner promotes it.
    AddVoter { id: u64, addr: PeerAddr },
    /// Add a learner (a non-voting replica, e.g. for reads).
    AddLearner { id: u64, addr: PeerAddr },
    /// Remove a voter or learner (the leader included: it hands leadership
    /// over once the change applies).
    RemoveNode { id: u64 },
    /// Replace voter `old` by a new node: the new node joins as a learner and
    /// catches up, then one joint-consensus change promotes it and removes
    /// `old`.
    Replace { old: u64, id: u64, addr: PeerAddr },
}

/// How fresh a query's answer must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Includes every write acknowledged before the query started (ReadIndex:
    /// the leader confirms it still leads with a heartbeat round).
    #[default]
    Linearizable,
    /// Served by the leader from its lease without a round trip (see
    /// [`LEASE_DURATION`] for the clock assumption); falls back to
    /// `linearizable` when the lease is not fresh or on a follower.
    Lease,
    /// This node's current state, whatever it is: fastest, may lag.
    Stale,
}

impl std::str::FromStr for Consistency {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "linearizable" => Ok(Consistency::Linearizable),
            "lease" => Ok(Consistency::Lease),
            "stale" => Ok(Consistency::Stale),
            other => Err(format!(
                "unknown consistency {other:?}: use linearizable, lease or stale"
            )),
        }
    }
}

/// Metadata key of the membership (Raft id → address), kept in step with
/// the applied configuration.
pub const MEMBERS_META_KEY: &str = "members";
/// Metadata key of the index of the last configuration change reflected in
/// the stored conf state (replayed changes up to it are not applied twice).
pub const CONF_INDEX_META_KEY: &str = "conf_index";
/// Metadata key holding the hash of the component the stored log starts
/// from (the cluster's first component, or that of an installed snapshot).
/// Upgrades after it are activation entries in the log, replayed on start.
pub const ACTIVE_COMPONENT_KEY: &str = "active_component";

/// A client waiting for its proposal to apply.
#[derive(Debug)]
struct PendingProposal {
    term: u64,
    reply: ProposalReply,
}

/// A linearizable read waiting for its read index.
#[derive(Debug)]
struct PendingRead {
    request: Vec<u8>,
    reply: QueryReply,
    /// When it was first sent: a confirmation proves leadership as of then.
    issued: Instant,
    term: u64,
}

/// How a membership change started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Started {
    /// Proposed at this index: answered when it applies.
    Proposed { index: u64, term: u64 },
    /// A learner's promotion, proposed once it caught up.
    Promotion { learner: u64 },
}

impl Started {
    fn proposed((index, term): (u64, u64)) -> Self {
        Started::Proposed { index, term }
    }
}

/// A learner to promote once it has caught up.
#[derive(Debug)]
struct PendingPromotion {
    /// A voter that leaves in the same (joint) change.
    replaces: Option<u64>,
    started: Instant,
    reply: Option<ProposalReply>,
    /// The promotion has been proposed (at this index).
    proposed_at: Option<u64>,
    /// The learner must hold the log at least up to here (the entry that
    /// made it a learner) before it can be promoted: proof it is alive and
    /// replicating, not merely close to a short log.
    min_match: u64,
}

/// The snapshot bookkeeping of a node.
#[derive(Debug)]
struct SnapshotState {
    policy: SnapshotPolicy,
    dir: PathBuf,
    /// Last index handed to the applier.
    handed_index: u64,
    /// Entries and payload bytes handed over since the last snapshot.
    entries_since: u64,
    bytes_since: u64,
    in_flight: bool,
    /// Operators waiting for a snapshot they asked for.
    waiting: Vec<oneshot::Sender<Result<SnapshotInfo, ClientError>>>,
}

/// A snapshot, as reported to an operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotInfo {
    pub index: u64,
    pub term: u64,
    pub file_bytes: u64,
    pub path: String,
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
    /// Index of the last conf change already in the stored conf state.
    conf_applied_index: u64,
    /// By id: retried in id order, so a simulation replays identically.
    reads: BTreeMap<u64, PendingRead>,
    next_read_id: u64,
    /// The leader may serve lease reads until then (in `lease_term`).
    lease_until: Option<(Instant, u64)>,
    promotions: BTreeMap<u64, PendingPromotion>,
    snapshots: SnapshotState,
    checks: StateChecks,
    /// Test only: serve every read from local state (see
    /// [`CoreSetup::unsafe_local_reads`]).
    unsafe_local_reads: bool,
}

/// When the leader appends the next state check (see [`super::divergence`]).
#[derive(Debug)]
struct StateChecks {
    /// Committed entries between checks (0: never).
    every: u64,
    /// Committed entries since the last check entry.
    entries_since: u64,
    /// A check this node proposed that has not committed yet.
    proposed_at: Option<u64>,
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

/// What a node core starts from, besides the Raft node itself.
#[derive(Debug)]
pub struct CoreSetup {
    pub storage: SledStorage,
    pub members: BTreeMap<u64, PeerAddr>,
    pub leader_tx: watch::Sender<Option<u64>>,
    pub conf_applied_index: u64,
    /// The index the guest's state starts at (the snapshot's, or 0).
    pub applied_index: u64,
    pub snapshot_policy: SnapshotPolicy,
    pub snapshot_dir: PathBuf,
    /// Committed entries between state checks (0: never).
    pub state_check_every: u64,
    /// **Breaks linearizability, for tests only**: answer every read from
    /// this node's state without ReadIndex, as a stale read. The test
    /// suites switch it on to prove their linearizability checker catches
    /// the stale answers.
    pub unsafe_local_reads: bool,
}

impl NodeCore {
    pub fn new(raw: RawNode<SledStorage>, setup: CoreSetup) -> Self {
        let last_role = raw.raft.state;
        NodeCore {
            leader_tx: setup.leader_tx,
            members: setup.members,
            campaign_on_start: true,
            raw,
            storage: setup.storage,
            pending: BTreeMap::new(),
            last_role,
            last_leader: raft::INVALID_ID,
            last_term: 0,
            conf_applied_index: setup.conf_applied_index,
            reads: BTreeMap::new(),
            next_read_id: 1,
            lease_until: None,
            promotions: BTreeMap::new(),
            snapshots: SnapshotState {
                policy: setup.snapshot_policy,
                dir: setup.snapshot_dir,
                handed_index: setup.applied_index,
                entries_since: 0,
                bytes_since: 0,
                in_flight: false,
                waiting: Vec::new(),
            },
            checks: StateChecks {
                every: setup.state_check_every,
                entries_since: 0,
                proposed_at: None,
            },
            unsafe_local_reads: setup.unsafe_local_reads,
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

    /// One Raft tick at `now` (`now_ms`: the wall clock, for the entries a
    /// tick may append); also retries reads that got no read index yet and
    /// drives learner promotions.
    pub fn tick(&mut self, now: Instant, now_ms: u64) {
        self.raw.tick();
        self.retry_reads(now);
        self.drive_promotions(now);
        self.leave_joint_if_stuck();
        self.propose_state_check_if_due(now_ms);
    }

    /// On the leader, append a state check every `every` committed entries.
    fn propose_state_check_if_due(&mut self, now_ms: u64) {
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
        if let Ok((index, _)) = self.append_proposal(envelope::encode_state_check(now_ms)) {
            self.checks.proposed_at = Some(index);
        }
    }

    /// A leader that is leaving (in the outgoing half of a joint
    /// configuration only) hands leadership to the best incoming voter.
    fn hand_over_if_leaving(&mut self) {
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
    fn leave_joint_if_stuck(&mut self) {
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

    /// Serve a query at the requested consistency. The answer comes from the
    /// applier once its state is recent enough.
    pub fn read(
        &mut self,
        request: Vec<u8>,
        consistency: Consistency,
        now: Instant,
        reply: QueryReply,
        out: &mut Vec<ApplyJob>,
    ) {
        let consistency = if self.unsafe_local_reads {
            Consistency::Stale
        } else {
            consistency
        };
        match consistency {
            Consistency::Stale => out.push(ApplyJob::Query {
                request,
                min_applied: 0,
                reply,
            }),
            Consistency::Lease if self.lease_valid(now) => out.push(ApplyJob::Query {
                request,
                min_applied: self.raw.raft.raft_log.committed,
                reply,
            }),
            Consistency::Lease | Consistency::Linearizable => {
                let id = self.next_read_id;
                self.next_read_id += 1;
                self.reads.insert(
                    id,
                    PendingRead {
                        request,
                        reply,
                        issued: now,
                        term: self.raw.raft.term,
                    },
                );
                self.raw.read_index(id.to_be_bytes().to_vec());
            }
        }
    }

    /// A leader may answer from its own state while a quorum confirmed its
    /// leadership less than [`LEASE_DURATION`] ago, in this term, with no
    /// leadership transfer under way.
    fn lease_valid(&self, now: Instant) -> bool {
        let raft = &self.raw.raft;
        raft.state == StateRole::Leader
            && raft.lead_transferee.is_none()
            && raft.commit_to_current_term()
            && self
                .lease_until
                .is_some_and(|(until, term)| term == raft.term && now < until)
    }

    /// raft-rs drops a read index request silently when there is no leader
    /// or the leader has not committed in its term yet: ask again each tick,
    /// and give up after [`READ_INDEX_TIMEOUT`].
    fn retry_reads(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (id, read) in &self.reads {
            if now.duration_since(read.issued) > READ_INDEX_TIMEOUT {
                expired.push(*id);
            }
        }
        for id in expired {
            if let Some(read) = self.reads.remove(&id) {
                let _ = read.reply.send(Err(ClientError::Timeout {
                    timeout_ms: READ_INDEX_TIMEOUT.as_millis() as u64,
                }));
            }
        }
        let ids: Vec<u64> = self.reads.keys().copied().collect();
        for id in ids {
            self.raw.read_index(id.to_be_bytes().to_vec());
        }
    }

    /// Read indexes that arrived: their queries go to the applier, to run
    /// once the state includes the read index.
    fn collect_read_states(&mut self, states: &[raft::ReadState], out: &mut Outbound) {
        for state in states {
            let Ok(bytes) = <[u8; 8]>::try_from(state.request_ctx.as_slice()) else {
                continue;
            };
            // A retried read can be confirmed twice: the first answer wins.
            let Some(read) = self.reads.remove(&u64::from_be_bytes(bytes)) else {
                continue;
            };
            let raft = &self.raw.raft;
            if raft.state == StateRole::Leader && raft.term == read.term {
                // A quorum acknowledged this leader after `issued`.
                let until = read.issued + LEASE_DURATION;
                if self
                    .lease_until
                    .is_none_or(|(old, term)| term != raft.term || old < until)
                {
                    self.lease_until = Some((until, raft.term));
                }
            }
            out.jobs.push(ApplyJob::Query {
                request: read.request,
                min_applied: state.index,
                reply: read.reply,
            });
        }
    }

    /// Whether Raft has work for [`Self::handle_ready`].
    pub fn has_ready(&mut self) -> bool {
        self.raw.has_ready()
    }

    /// Feed a message from a peer.
    pub fn step(&mut self, message: Message) -> Result<(), raft::Error> {
        self.raw.step(message)
    }

    /// Propose a client command, stamped with the leader's clock. The reply
    /// is answered once the entry applies, or right away if it is refused.
    pub fn propose(&mut self, command: Vec<u8>, timestamp_ms: u64, reply: ProposalReply) {
        let checked = Self::check_command(&command)
            .map(|()| envelope::encode_command(timestamp_ms, &command));
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
        let data = envelope::encode_activation(timestamp_ms, activation);
        self.propose_data(Ok(data), reply);
    }

    fn propose_data(&mut self, data: Result<Vec<u8>, ClientError>, reply: ProposalReply) {
        match data.and_then(|data| self.append_proposal(data)) {
            Ok((index, term)) => {
                self.pending.insert(index, PendingProposal { term, reply });
            }
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        }
    }

    fn check_command(command: &[u8]) -> Result<(), ClientError> {
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

    /// Append an encoded entry payload on the leader.
    fn append_proposal(&mut self, data: Vec<u8>) -> Result<(u64, u64), ClientError> {
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

    fn leader_id(&self) -> Option<u64> {
        let leader = self.raw.raft.leader_id;
        (leader != raft::INVALID_ID).then_some(leader)
    }

    pub fn view(&self) -> RaftView {
        let raft = &self.raw.raft;
        let mut voters = self.storage.conf_state().voters;
        voters.sort_unstable();
        RaftView {
            id: raft.id,
            role: raft.state,
            term: raft.term,
            leader_id: self.leader_id(),
            commit_index: raft.raft_log.committed,
            last_index: raft.raft_log.last_index(),
            voters,
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
    fn start_membership_change(
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

    fn schedule_promotion(&mut self, id: u64, replaces: Option<u64>, now: Instant) -> Started {
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
    fn propose_changes(
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
    fn propose_changes_with(
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
    fn drive_promotions(&mut self, now: Instant) {
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
    fn best_successor(&self) -> Option<u64> {
        let me = self.raw.raft.id;
        self.storage
            .conf_state()
            .voters
            .into_iter()
            .filter(|id| *id != me)
            .max_by_key(|id| self.raw.raft.prs().get(*id).map_or(0, |p| p.matched))
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
                self.install_snapshot(ready.snapshot(), out)?;
            }
            self.collect_committed(ready.take_committed_entries(), out)?;
            let read_states = ready.take_read_states();
            self.collect_read_states(&read_states, out);
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

    /// A snapshot from the leader: make it durable, restore the guest from
    /// its file (which the transport received and verified before handing
    /// the message to Raft), and take its membership.
    fn install_snapshot(&mut self, snap: &Snapshot, out: &mut Outbound) -> Result<(), NodeError> {
        let meta = snap.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let corrupt = |reason: String| NodeError::CorruptEntry { index, reason };
        let descriptor =
            SnapshotDescriptor::decode(&snap.data).map_err(|e| corrupt(e.to_string()))?;
        let path = snapshot::path_for(&self.snapshots.dir, index, term);
        let loaded = snapshot::read(&path)
            .map_err(|e| corrupt(format!("the received snapshot file: {e}")))?;
        let file_len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if file_len != descriptor.file_len
            || loaded.header.index != index
            || loaded.header.term != term
        {
            return Err(corrupt(format!(
                "snapshot file {} does not match the snapshot Raft installs",
                path.display()
            )));
        }
        self.storage.apply_snapshot(snap)?;
        // Proposals this node made at indexes the snapshot covers: they may
        // have committed under another leader (and be in the snapshot) or
        // been replaced; this node cannot tell which, so it must not say.
        let later = self.pending.split_off(&(index + 1));
        for (_, proposal) in std::mem::replace(&mut self.pending, later) {
            let _ = proposal.reply.send(Err(ClientError::OutcomeUnknown));
        }
        self.members = loaded.header.members.clone();
        let members = serde_json::to_vec(&self.members).map_err(|e| corrupt(e.to_string()))?;
        self.storage.set_conf_state_with_meta(
            meta.get_conf_state(),
            &[
                (MEMBERS_META_KEY, &members),
                (CONF_INDEX_META_KEY, index.to_string().as_bytes()),
                (
                    ACTIVE_COMPONENT_KEY,
                    loaded.header.component_hash.as_bytes(),
                ),
            ],
        )?;
        self.conf_applied_index = index;
        self.snapshots.handed_index = index;
        self.snapshots.entries_since = 0;
        self.snapshots.bytes_since = 0;
        snapshot::prune(&self.snapshots.dir, index);
        tracing::info!(
            index,
            term,
            file_bytes = file_len,
            "installing a snapshot from the leader"
        );
        out.members = Some(self.members.clone());
        out.jobs.push(ApplyJob::Restore(Box::new(loaded)));
        Ok(())
    }

    fn collect_committed(
        &mut self,
        entries: Vec<Entry>,
        out: &mut Outbound,
    ) -> Result<(), NodeError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut batch = Vec::with_capacity(entries.len());
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
                    self.apply_conf_change::<ConfChange>(index, &entry.data, out)?
                }
                EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change::<ConfChangeV2>(index, &entry.data, out)?
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
            // A proposal at a lower index that is still waiting was not
            // handed over entry by entry (nothing does that but a snapshot,
            // which answers them itself): its fate is unknown here.
            while let Some(entry) = self.pending.first_entry() {
                if *entry.key() >= index {
                    break;
                }
                let _ = entry.remove().reply.send(Err(ClientError::OutcomeUnknown));
            }
            if matches!(payload, Payload::StateCheck) {
                self.checks.entries_since = 0;
                self.checks.proposed_at = None;
            } else {
                self.checks.entries_since += 1;
            }
            self.snapshots.handed_index = index;
            self.snapshots.entries_since += 1;
            self.snapshots.bytes_since += entry.data.len() as u64;
            batch.push(ApplyItem {
                index,
                term,
                payload,
                reply,
            });
        }
        out.jobs.push(ApplyJob::Apply(batch));
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
    /// configuration with the address book, in one batch; the guest sees
    /// nothing of it. Changes already in the stored configuration (replayed
    /// after a restart) are not applied twice.
    fn apply_conf_change<C: protobuf::Message + ConfChangeI>(
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
                    if let Some(addr) = address_in(index, single.node_id, &change.context) {
                        self.members.insert(single.node_id, addr);
                    }
                }
                ConfChangeType::RemoveNode => {
                    self.members.remove(&single.node_id);
                    self.promotions.remove(&single.node_id);
                }
            }
        }
        let members = serde_json::to_vec(&self.members).map_err(|e| corrupt(e.to_string()))?;
        self.storage.set_conf_state_with_meta(
            &conf_state,
            &[
                (MEMBERS_META_KEY, &members),
                (CONF_INDEX_META_KEY, index.to_string().as_bytes()),
            ],
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

    /// Ask for a snapshot now (an operator's request); answered when it is
    /// written.
    pub fn request_snapshot(&mut self, reply: oneshot::Sender<Result<SnapshotInfo, ClientError>>) {
        self.snapshots.waiting.push(reply);
    }

    /// The snapshot job to hand the applier, if one is due: after the
    /// policy's count of entries or bytes, or when an operator asked. The
    /// applier answers on the returned receiver; pass the answer to
    /// [`Self::snapshot_done`].
    pub fn snapshot_job(
        &mut self,
    ) -> Option<(ApplyJob, oneshot::Receiver<Result<TakenSnapshot, String>>)> {
        let state = &mut self.snapshots;
        if state.in_flight {
            return None;
        }
        let asked = !state.waiting.is_empty() || self.storage.take_snapshot_wanted();
        if !asked && !state.policy.due(state.entries_since, state.bytes_since) {
            return None;
        }
        let index = state.handed_index;
        let covered = self.storage.snapshot_position().map_or(0, |(i, _)| i);
        if index == 0 || index <= covered {
            // Nothing new since the last snapshot: it is the answer.
            if let Some((index, term)) = self.storage.snapshot_position() {
                let info = self.snapshot_info(index, term);
                for waiter in self.snapshots.waiting.drain(..) {
                    let _ = waiter.send(Ok(info.clone()));
                }
            }
            self.snapshots.entries_since = 0;
            self.snapshots.bytes_since = 0;
            return None;
        }
        let term = self.raw.raft.raft_log.term(index).ok()?;
        let (reply, answer) = oneshot::channel();
        let state = &mut self.snapshots;
        state.in_flight = true;
        state.entries_since = 0;
        state.bytes_since = 0;
        let job = ApplyJob::Snapshot {
            index,
            term,
            conf: self.storage.conf_state(),
            members: self.members.clone(),
            reply,
        };
        Some((job, answer))
    }

    fn snapshot_info(&self, index: u64, term: u64) -> SnapshotInfo {
        let path = snapshot::path_for(&self.snapshots.dir, index, term);
        SnapshotInfo {
            index,
            term,
            file_bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
            path: path.display().to_string(),
        }
    }

    /// The applier wrote a snapshot: record it (so Raft can send it to
    /// followers), compact the log behind it and delete older files.
    pub fn snapshot_done(
        &mut self,
        result: Result<TakenSnapshot, String>,
    ) -> Result<(), NodeError> {
        self.snapshots.in_flight = false;
        let taken = match result {
            Ok(taken) => taken,
            Err(error) => {
                for waiter in self.snapshots.waiting.drain(..) {
                    let _ = waiter.send(Err(ClientError::SnapshotFailed(error.clone())));
                }
                return Ok(());
            }
        };
        let meta = taken.snapshot.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let covered = self.storage.snapshot_position().map_or(0, |(i, _)| i);
        if index > covered {
            self.storage.save_snapshot(&taken.snapshot)?;
            let keep = self.snapshots.policy.keep_entries;
            let compact_to = (index + 1).saturating_sub(keep).min(index + 1);
            self.storage.compact(compact_to)?;
            snapshot::prune(&self.snapshots.dir, index);
            tracing::info!(
                index,
                term,
                file_bytes = taken.file_len,
                first_log_index = self.storage.first_log_index(),
                "snapshot recorded; log compacted"
            );
        }
        let (index, term) = self.storage.snapshot_position().unwrap_or((index, term));
        let info = self.snapshot_info(index, term);
        for waiter in self.snapshots.waiting.drain(..) {
            let _ = waiter.send(Ok(info.clone()));
        }
        Ok(())
    }

    /// A snapshot transfer to `to` ended (the transport reports it).
    pub fn report_snapshot(&mut self, to: u64, delivered: bool) {
        let status = if delivered {
            raft::SnapshotStatus::Finish
        } else {
            raft::SnapshotStatus::Failure
        };
        self.raw.report_snapshot(to, status);
    }

    /// A peer could not be reached: Raft probes it again instead of
    /// streaming appends into the void.
    pub fn report_unreachable(&mut self, to: u64) {
        self.raw.report_unreachable(to);
    }

    /// Fail every waiting client (the node is stopping).
    pub fn abandon_pending(&mut self) {
        self.pending.clear();
        self.reads.clear();
        self.promotions.clear();
        self.snapshots.waiting.clear();
    }
}

/// The address of `node_id` in a configuration change's context: a map of
/// Raft id to address (this version), or one bare address (entries written
/// by the first version, with v1 changes).
fn address_in(index: u64, node_id: u64, context: &[u8]) -> Option<PeerAddr> {
    if context.is_empty() {
        return None;
    }
    if let Ok(mut book) = serde_json::from_slice::<BTreeMap<u64, PeerAddr>>(context) {
        return book.remove(&node_id);
    }
    match serde_json::from_slice::<PeerAddr>(context) {
        Ok(addr) => Some(addr),
        Err(error) => {
            tracing::warn!(index, node = node_id, %error,
                "membership entry has an unreadable address");
            None
        }
    }
}
