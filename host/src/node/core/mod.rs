//! The synchronous heart of a node: the raft-rs `RawNode` and the Ready
//! handling, with no I/O of its own besides storage.
//!
//! Inputs are method calls (`tick`, `step`, `propose`); outputs are returned
//! as [`Outbound`] (messages for peers, committed entries for the applier).
//! The async driver in [`super::driver`] feeds it from channels and a tokio
//! interval; a simulation can feed it from a virtual clock and a simulated
//! network instead.
//!
//! The core is one type split by concern, as openraft splits its engine
//! into handlers: [`reads`], [`proposals`], [`membership`], [`ready`]
//! (persistence order) and [`snapshots`] each add methods to [`NodeCore`];
//! the state they share is defined here.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::Instant;

use raft::prelude::Message;
use raft::{RawNode, StateRole};

use super::admission::Admission;
use super::applier::{ApplyJob, ProposalReply, QueryReply};
use super::error::{ClientError, NodeError};
use super::metrics::NodeInstruments;
use super::persist::PersistJob;
use super::snapshot::SnapshotPolicy;
use tokio::sync::{oneshot, watch};

use crate::limits::CANDIDATE_TICKS_PER_TICK;
use crate::membership::PeerAddr;
use crate::storage::{GuestTimer, SledStorage};

mod clock;
mod commit_notice;
mod membership;
mod pace;
mod proposals;
mod reads;
mod ready;
mod snapshots;
mod timers;

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
    /// Staged Readies to make durable (`node::persist`), in order.
    pub(crate) persist: Vec<PersistJob>,
}

/// Which Readies went to the persistence thread and which it finished.
#[derive(Debug, Default)]
struct PersistProgress {
    /// The number of the last Ready handed over as a [`PersistJob`].
    submitted: u64,
    /// Every Ready up to this number is durable.
    acknowledged: u64,
}

impl PersistProgress {
    fn in_flight(&self) -> bool {
        self.submitted > self.acknowledged
    }
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

/// How fresh a query's answer must be (a wire type, defined in the client
/// crate; [`crate::limits::LEASE_DURATION`] is the lease's clock assumption).
pub use iroh_raft_client::Consistency;

/// A client waiting for its proposal to apply.
#[derive(Debug)]
struct PendingProposal {
    term: u64,
    reply: ProposalReply,
}

/// An entry accepted in this round, not yet handed to Raft.
#[derive(Debug)]
struct StagedProposal {
    data: Vec<u8>,
    /// The term this node led when it accepted the entry: the entry goes
    /// to Raft only if it still leads that term (a forwarded command's
    /// proof rests on it, and the entry's stamp came from that term).
    term: u64,
    /// A follower forwarded it (or this node's handle tagged it): its
    /// origin applies it before it answers (see [`commit_notice`]).
    forwarded: bool,
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
    /// Size of the last snapshot file taken or installed (see
    /// [`crate::limits::SNAPSHOT_AMORTIZE_ABOVE_BYTES`]).
    last_file_bytes: u64,
    in_flight: bool,
    /// Where the log is being compacted to, one batch per round (see
    /// [`NodeCore::compact_step`]); `None` once it is there.
    compact_to: Option<u64>,
    /// Operators waiting for a snapshot they asked for.
    waiting: Vec<oneshot::Sender<Result<SnapshotInfo, ClientError>>>,
}

/// A snapshot, as reported to an operator (a wire type).
pub use iroh_raft_client::SnapshotInfo;

/// The node's consensus state machine.
pub struct NodeCore {
    raw: RawNode<SledStorage>,
    storage: SledStorage,
    /// Proposals made on this node, by log index, until that index commits.
    pending: BTreeMap<u64, PendingProposal>,
    /// Entries accepted in this round, proposed together at the end of it
    /// (see [`Self::flush_proposals`]), or later if held (see
    /// [`Self::end_round_proposals`]).
    staged: Vec<StagedProposal>,
    /// Bytes of `staged`.
    staged_bytes: usize,
    /// The last index of each batch of proposals that is not committed
    /// yet, oldest first.
    batches_in_flight: VecDeque<u64>,
    /// What the followers still have to hear about the commit index.
    commit_notice: commit_notice::CommitNotice,
    last_role: StateRole,
    last_leader: u64,
    /// Set by a tick that started a campaign (see
    /// [`Self::take_campaign_started`]).
    campaign_started: bool,
    last_term: u64,
    /// Address of every member, from the applied configuration changes.
    members: BTreeMap<u64, PeerAddr>,
    /// Start an election after the first Ready if this is the sole voter.
    campaign_on_start: bool,
    /// Publishes the known leader (followers wait on it to forward).
    leader_tx: watch::Sender<Option<u64>>,
    instruments: NodeInstruments,
    /// Publishes the current term (a follower tags what it forwards with
    /// it: see [`crate::node::forwarded`]).
    term_tx: watch::Sender<u64>,
    /// Index of the last conf change already in the stored conf state.
    conf_applied_index: u64,
    /// By id: retried in id order, so a simulation replays identically.
    reads: BTreeMap<u64, PendingRead>,
    next_read_id: u64,
    /// The leader may serve lease reads until then (in `lease_term`).
    lease_until: Option<(Instant, u64)>,
    /// What a stale read waits for: the entries committed before this
    /// start (so a restart never answers from the state before replay).
    stale_read_floor: u64,
    /// Keeps the stamps this node writes as leader from going back.
    clock: clock::StampClock,
    promotions: BTreeMap<u64, PendingPromotion>,
    snapshots: SnapshotState,
    checks: StateChecks,
    /// Test only: serve every read from local state (see
    /// [`CoreSetup::unsafe_local_reads`]).
    unsafe_local_reads: bool,
    admission: Admission,
    persist: PersistProgress,
    timers: timers::TimerCalls,
    pace: pace::Pace,
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
    /// Whether its appends may wait (leader only; see [`pace`]).
    pub lazy_appends: Option<bool>,
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
    /// Whether new commands are let in (the applier decides).
    pub admission: Admission,
    /// When a store-backed guest wants to be called (the store keeps it).
    pub guest_timer: GuestTimer,
    /// Counts leader changes for `/metrics`.
    pub instruments: NodeInstruments,
}

impl NodeCore {
    /// The current term, as of the last round (0 before the first).
    pub fn term_watch(&self) -> watch::Receiver<u64> {
        self.term_tx.subscribe()
    }

    pub fn new(raw: RawNode<SledStorage>, setup: CoreSetup) -> Self {
        let last_role = raw.raft.state;
        let stale_read_floor = raw.raft.raft_log.committed;
        NodeCore {
            leader_tx: setup.leader_tx,
            instruments: setup.instruments,
            term_tx: watch::channel(0).0,
            members: setup.members,
            campaign_on_start: true,
            raw,
            storage: setup.storage,
            pending: BTreeMap::new(),
            staged: Vec::new(),
            staged_bytes: 0,
            batches_in_flight: VecDeque::new(),
            commit_notice: commit_notice::CommitNotice::default(),
            last_role,
            last_leader: raft::INVALID_ID,
            campaign_started: false,
            last_term: 0,
            conf_applied_index: setup.conf_applied_index,
            reads: BTreeMap::new(),
            next_read_id: 1,
            lease_until: None,
            stale_read_floor,
            clock: clock::StampClock::default(),
            promotions: BTreeMap::new(),
            snapshots: SnapshotState {
                policy: setup.snapshot_policy,
                dir: setup.snapshot_dir,
                handed_index: setup.applied_index,
                entries_since: 0,
                bytes_since: 0,
                last_file_bytes: 0,
                in_flight: false,
                compact_to: None,
                waiting: Vec::new(),
            },
            checks: StateChecks {
                every: setup.state_check_every,
                entries_since: 0,
                proposed_at: None,
            },
            unsafe_local_reads: setup.unsafe_local_reads,
            admission: setup.admission,
            persist: PersistProgress::default(),
            timers: timers::TimerCalls::new(setup.guest_timer),
            pace: pace::Pace::default(),
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
        self.flush_proposals();
        self.send_commit_notice();
        self.tick_raft();
        self.hurry_a_split_election();
        self.retry_reads(now);
        self.drive_promotions(now);
        self.leave_joint_if_stuck();
        self.propose_state_check_if_due(now_ms);
        self.call_guest_timer_if_due(now, now_ms);
    }

    /// The election clock of a node that campaigned in its term and knows
    /// no leader (a candidate, or one that lost: its vote went to itself)
    /// runs [`CANDIDATE_TICKS_PER_TICK`] times as fast. Its timeout only
    /// has to outlast one vote round, not a leader's silence: no leader by
    /// then means the vote split (survivors campaigned at once), and a
    /// second full election timeout would make failover take twice as long.
    fn hurry_a_split_election(&mut self) {
        for _ in 1..CANDIDATE_TICKS_PER_TICK {
            let raft = &self.raw.raft;
            if raft.vote != raft.id || raft.leader_id != raft::INVALID_ID {
                break;
            }
            self.tick_raft();
        }
    }

    /// One tick of Raft's clock, noting whether it started a campaign
    /// (raft-rs restarts the election clock of a node that campaigns).
    fn tick_raft(&mut self) {
        self.raw.tick();
        let raft = &self.raw.raft;
        if raft.election_elapsed == 0
            && matches!(raft.state, StateRole::PreCandidate | StateRole::Candidate)
        {
            self.campaign_started = true;
        }
    }

    /// Whether a tick started a campaign since the last call. The driver
    /// then moves its ticks by a random part of a tick: two nodes whose
    /// ticks fall within a round trip of each other and that draw the same
    /// election timeout (one of 14-20 ticks) would otherwise split every
    /// vote they retry.
    pub fn take_campaign_started(&mut self) -> bool {
        std::mem::take(&mut self.campaign_started)
    }

    /// Campaign now, as if the election timeout had passed: the simulation
    /// starts two elections at the same instant with it, to split a vote.
    pub(crate) fn campaign_now(&mut self) -> Result<(), NodeError> {
        Ok(self.raw.campaign()?)
    }

    /// Whether a Ready handed to the persistence thread is not yet durable.
    pub fn persistence_in_flight(&self) -> bool {
        self.persist.in_flight()
    }

    /// Whether this node leads (and so keeps its syncs off its loop).
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// Whether Raft has work for [`Self::handle_ready`].
    pub fn has_ready(&mut self) -> bool {
        self.end_round_proposals();
        self.raw.has_ready()
    }

    /// Feed a message from a peer.
    pub fn step(&mut self, message: Message) -> Result<(), raft::Error> {
        self.raw.step(message)
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
                lazy_appends: (is_leader && id != self.raw.raft.id)
                    .then(|| self.lazy_followers().contains(&id)),
            })
            .collect()
    }

    /// Fail every waiting client (the node is stopping).
    pub fn abandon_pending(&mut self) {
        // Never proposed: certainly not applied.
        for proposal in self.staged.drain(..) {
            let _ = proposal.reply.send(Err(ClientError::Stopped));
        }
        self.pending.clear();
        self.reads.clear();
        self.promotions.clear();
        self.snapshots.waiting.clear();
    }
}
