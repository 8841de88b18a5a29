//! [`NodeHandle`]: the cheap, cloneable front door to a running node.

use crate::limits::{FORWARD_SETTLE_TIMEOUT, LEADER_WAIT, MAX_PROPOSE_ROUNDS};
use std::path::PathBuf;
use std::sync::Arc;

use raft::StateRole;
use tokio::sync::{mpsc, oneshot, watch};

use super::applier::{Applied, ApplierShared, QueryAnswer};

use super::core::{Consistency, MembershipChange, SnapshotInfo};
use super::error::{ClientError, ForwardError};
use super::forwarded::Settled;
use super::inbox::{NodeInbox, NodeMsg};
use super::metrics::{self, NodeInstruments, PeerStatsRegistry};
use super::ports::Forwarder;
use super::ports::PeerView;
use super::snapshot;
use super::status::{GuestStatus, MemberStatus, NodeStatus};
use super::upgrade;
use crate::storage::{DataDir, GuestStore, SledStorage};

/// What a client proposes: a guest command or a component activation.
#[derive(Debug, Clone)]
pub(super) enum Proposal {
    Command(Vec<u8>),
    Activation(upgrade::Activation),
}

/// A cheap, cloneable handle to a running node. The node stops when
/// [`NodeHandle::shutdown`] is called or every handle is dropped.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub(super) inner: Arc<HandleInner>,
}

#[derive(Debug)]
pub(super) struct HandleInner {
    pub(super) id: u64,
    pub(super) inbox: mpsc::Sender<NodeMsg>,
    pub(super) upgrades: upgrade::handle::UpgradeEnv,
    pub(super) shutdown: mpsc::Sender<oneshot::Sender<()>>,
    pub(super) forwarder: Option<Arc<dyn Forwarder>>,
    pub(super) directory: Option<Arc<dyn PeerView>>,
    pub(super) ticket: Option<String>,
    pub(super) applier: Arc<ApplierShared>,
    pub(super) metrics: NodeInstruments,
    pub(super) peer_stats: Option<PeerStatsRegistry>,
    /// Read only for its size on disk.
    pub(super) storage: SledStorage,
    pub(super) data_dir: PathBuf,
    /// `None` while running; the reason once stopped (empty if clean).
    pub(super) stopped: watch::Receiver<Option<String>>,
    /// The leader this node currently knows of.
    pub(super) leader: watch::Receiver<Option<u64>>,
    /// This node's current term.
    pub(super) term: watch::Receiver<u64>,
}

impl NodeHandle {
    /// Propose a command; resolves once it is applied (or refused). On a
    /// follower that knows the leader, the proposal is forwarded to it.
    pub async fn propose(&self, command: Vec<u8>) -> Result<Applied, ClientError> {
        let timer = self.inner.metrics.start_proposal();
        let result = match self.inner.forwarder.as_ref() {
            None => self.propose_here(command).await,
            // The leader proposes plain entries: no id to carry, no waiter
            // to register, on the path most writes take.
            Some(forwarder) if *self.inner.leader.borrow() == Some(self.inner.id) => {
                match self.propose_here(command.clone()).await {
                    // Certainly not applied (no longer the leader, or
                    // another leader's entry took its index): on as a
                    // follower.
                    Err(ClientError::NotLeader { .. } | ClientError::ProposalDropped) => {
                        self.propose_tagged(forwarder.as_ref(), command).await
                    }
                    answer => answer,
                }
            }
            Some(forwarder) => self.propose_tagged(forwarder.as_ref(), command).await,
        };
        timer.finish(&result);
        result
    }

    /// Propose a command in a cluster, exactly once, whoever leads and
    /// whenever a leader dies (see [`super::forwarded`]). Each round
    /// proposes under a fresh id to the leader of the current term (this
    /// node or a peer) and waits for whichever comes first: the answer, or
    /// this node's own log settling the id. The round is over without the
    /// command once it certainly was not proposed (the leader refused it or
    /// never received it) or certainly never commits (an entry of a later
    /// term applied here first); the next round goes to the next leader.
    /// An answer that leaves the outcome open (the leader died, or the
    /// connection to it did) is settled by the log alone, within
    /// [`FORWARD_SETTLE_TIMEOUT`]. Bounded by [`MAX_PROPOSE_ROUNDS`] rounds.
    async fn propose_tagged(
        &self,
        forwarder: &dyn Forwarder,
        command: Vec<u8>,
    ) -> Result<Applied, ClientError> {
        // The leader and term of the last round, once it is over: not
        // tried again until the node names another.
        let mut done_with = None;
        let mut last_error = ClientError::NotLeader { leader_hint: None };
        for _ in 0..MAX_PROPOSE_ROUNDS {
            let Some((leader, term)) = self.wait_for_leader_other_than_in(done_with).await else {
                return Err(last_error);
            };
            let mut registration = self.inner.applier.forwards.register(term);
            let tag = registration.tag;
            let attempt = async {
                if leader == self.inner.id {
                    self.propose_forwarded_here(command.clone(), tag)
                        .await
                        .map_err(ForwardError::Client)
                } else {
                    forwarder
                        .forward_propose(leader, command.clone(), tag, self.inner.leader.clone())
                        .await
                }
            };
            let first = tokio::select! {
                answer = attempt => Ok(answer),
                settled = registration.settled() => Err(settled),
            };
            done_with = Some((leader, term));
            let settled = match first {
                Err(settled) => settled,
                Ok(Ok(applied)) => return Ok(applied),
                // Certainly not proposed: the next leader gets it.
                Ok(Err(ForwardError::NotDelivered { leader, reason })) => {
                    tracing::info!(leader, term, %reason,
                        "a forwarded command did not reach the leader; waiting for another");
                    last_error = ClientError::NotLeader {
                        leader_hint: Some(leader),
                    };
                    continue;
                }
                Ok(Err(ForwardError::Client(
                    error @ (ClientError::NotLeader { .. } | ClientError::ProposalDropped),
                ))) => {
                    last_error = error;
                    continue;
                }
                // A peer whose node stopped before it took the command.
                Ok(Err(ForwardError::Client(ClientError::Stopped))) if leader != self.inner.id => {
                    last_error = ClientError::NotLeader {
                        leader_hint: Some(leader),
                    };
                    continue;
                }
                // The leader may have proposed it: this node's log tells.
                Ok(Err(ForwardError::Client(
                    ClientError::OutcomeUnknown | ClientError::Timeout { .. },
                ))) => {
                    tracing::info!(
                        leader,
                        term,
                        "the outcome of a forwarded command is open; waiting for this node's log to settle it"
                    );
                    match tokio::time::timeout(FORWARD_SETTLE_TIMEOUT, registration.settled()).await
                    {
                        Ok(settled) => settled,
                        Err(_) => return Err(ClientError::OutcomeUnknown),
                    }
                }
                Ok(Err(ForwardError::Client(error))) => return Err(error),
            };
            match settled {
                Settled::Applied(applied) => return Ok(applied),
                Settled::NeverCommits { term: later } => {
                    tracing::info!(
                        leader,
                        term,
                        later,
                        "a command forwarded to a former leader never commits; sending it to the new one"
                    );
                    last_error = ClientError::NotLeader {
                        leader_hint: Some(leader),
                    };
                }
                Settled::LostTrack => return Err(ClientError::OutcomeUnknown),
            }
        }
        Err(last_error)
    }

    /// Wait (at most [`LEADER_WAIT`]) until this node knows a leader, in a
    /// term, other than `done_with`; `None` if none came or the node stopped.
    async fn wait_for_leader_other_than_in(
        &self,
        done_with: Option<(u64, u64)>,
    ) -> Option<(u64, u64)> {
        let mut leader = self.inner.leader.clone();
        let mut term = self.inner.term.clone();
        let known = async {
            loop {
                let named = *leader.borrow_and_update();
                let current = *term.borrow_and_update();
                if let Some(named) = named
                    && done_with != Some((named, current))
                {
                    return Some((named, current));
                }
                tokio::select! {
                    changed = leader.changed() => changed.ok()?,
                    changed = term.changed() => changed.ok()?,
                }
            }
        };
        tokio::time::timeout(LEADER_WAIT, known)
            .await
            .ok()
            .flatten()
    }

    /// Propose a tagged command on this node (see [`Self::propose_tagged`]).
    async fn propose_forwarded_here(
        &self,
        command: Vec<u8>,
        tag: super::forwarded::ForwardTag,
    ) -> Result<Applied, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.inner.inbox.try_send(NodeMsg::ProposeForwarded {
            command,
            tag,
            reply,
        })?;
        // Dropped unanswered: the node stopped after it took the command.
        answer.await.map_err(|_| ClientError::OutcomeUnknown)?
    }

    /// Propose a component activation here; on a follower, forward it to
    /// the leader (waiting briefly for one to be known). Commands take
    /// [`Self::propose_tagged`] instead. A forward that certainly did not reach the
    /// leader (it died, or lost its leadership before acknowledging the
    /// request) is sent again once this node's leader watch names another
    /// leader (or this node); one that may have reached it answers
    /// `outcome_unknown`. Bounded by [`MAX_PROPOSE_ROUNDS`] rounds of at
    /// most [`LEADER_WAIT`] or one forward each.
    pub(super) async fn propose_or_forward(
        &self,
        activation: upgrade::Activation,
    ) -> Result<Applied, ClientError> {
        let proposal = Proposal::Activation(activation.clone());
        let Some(forwarder) = self.inner.forwarder.as_ref() else {
            return self.propose_here_as(proposal).await;
        };
        // The leader the last forward could not reach: not tried again
        // until the node names another leader.
        let mut unreachable = None;
        let mut result = self.propose_here_as(proposal.clone()).await;
        for _ in 0..MAX_PROPOSE_ROUNDS {
            let leader = match &result {
                Err(ClientError::NotLeader {
                    leader_hint: Some(leader),
                }) if Some(*leader) != unreachable => *leader,
                // No leader known yet (just started, an election is
                // running) or only the unreachable one: wait for one,
                // briefly, rather than bounce the client.
                Err(ClientError::NotLeader { .. }) => {
                    if !self.wait_for_leader_other_than(unreachable).await {
                        return result;
                    }
                    result = self.propose_here_as(proposal.clone()).await;
                    continue;
                }
                _ => return result,
            };
            let leader_view = self.inner.leader.clone();
            let forwarded = forwarder
                .forward_activation(leader, activation.clone(), leader_view)
                .await;
            match forwarded {
                Ok(applied) => return Ok(applied),
                // A node that no longer leads proposes nothing: as good as
                // not delivered.
                Err(ForwardError::Client(ClientError::NotLeader { .. })) => {
                    tracing::info!(
                        leader,
                        "forwarded to a former leader; waiting for the new one"
                    );
                    unreachable = Some(leader);
                    result = Err(ClientError::NotLeader {
                        leader_hint: Some(leader),
                    });
                }
                Err(ForwardError::Client(error)) => return Err(error),
                Err(ForwardError::NotDelivered { leader, reason }) => {
                    tracing::info!(
                        leader, %reason,
                        "a forwarded proposal did not reach the leader; waiting for another"
                    );
                    unreachable = Some(leader);
                    result = Err(ClientError::NotLeader {
                        leader_hint: Some(leader),
                    });
                }
            }
        }
        result
    }

    /// Wait (at most [`LEADER_WAIT`]) until this node knows a leader other
    /// than `unreachable`; false if none came or the node stopped.
    async fn wait_for_leader_other_than(&self, unreachable: Option<u64>) -> bool {
        let mut leader = self.inner.leader.clone();
        let named = leader.wait_for(|leader| leader.is_some() && *leader != unreachable);
        matches!(tokio::time::timeout(LEADER_WAIT, named).await, Ok(Ok(_)))
    }

    /// Propose a command on this node only (no forwarding).
    pub async fn propose_here(&self, command: Vec<u8>) -> Result<Applied, ClientError> {
        self.propose_here_as(Proposal::Command(command)).await
    }

    async fn propose_here_as(&self, proposal: Proposal) -> Result<Applied, ClientError> {
        let (reply, answer) = oneshot::channel();
        let message = match proposal {
            Proposal::Command(command) => NodeMsg::Propose { command, reply },
            Proposal::Activation(activation) => NodeMsg::ProposeActivation { activation, reply },
        };
        self.inner.inbox.try_send(message)?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    /// Change the membership (on the leader); resolves once the change is
    /// applied (a new voter: once it caught up and was promoted).
    pub async fn change_membership(&self, change: MembershipChange) -> Result<u64, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .inbox
            .try_send(NodeMsg::ChangeMembership { change, reply })?;
        let applied = answer.await.map_err(|_| ClientError::Stopped)??;
        Ok(applied.index)
    }

    /// Hand leadership to `target` (or the most up-to-date other voter);
    /// resolves with the new leader once it leads, or `Timeout`.
    pub async fn transfer_leader(&self, target: Option<u64>) -> Result<u64, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .inbox
            .try_send(NodeMsg::TransferLeader { target, reply })?;
        let target = answer.await.map_err(|_| ClientError::Stopped)??;
        let mut leader = self.inner.leader.clone();
        match tokio::time::timeout(LEADER_WAIT, leader.wait_for(|l| *l == Some(target))).await {
            Ok(Ok(_)) => Ok(target),
            Ok(Err(_)) => Err(ClientError::Stopped),
            Err(_) => Err(ClientError::Timeout {
                timeout_ms: LEADER_WAIT.as_millis() as u64,
            }),
        }
    }

    /// The file of the latest snapshot, if there is one.
    pub fn latest_snapshot_path(&self) -> Option<PathBuf> {
        let (index, term) = self.inner.storage.snapshot_position()?;
        Some(snapshot::path_for(
            &DataDir::new(&self.inner.data_dir).snapshots(),
            index,
            term,
        ))
    }

    /// Take a snapshot now and compact the log behind it.
    pub async fn snapshot(&self) -> Result<SnapshotInfo, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.inner.inbox.try_send(NodeMsg::Snapshot { reply })?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    /// The node as its transport sees it, for the protocol handler (see
    /// [`NodeInbox`]).
    pub fn inbox(&self) -> NodeInbox {
        NodeInbox::new(self.inner.inbox.clone())
    }

    /// Run a read-only query, linearizable (see [`Consistency`]).
    pub async fn query(&self, request: Vec<u8>) -> Result<QueryAnswer, ClientError> {
        self.query_with(request, Consistency::Linearizable).await
    }

    /// Run a read-only query at the given consistency.
    pub async fn query_with(
        &self,
        request: Vec<u8>,
        consistency: Consistency,
    ) -> Result<QueryAnswer, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.inner.inbox.try_send(NodeMsg::Query {
            request,
            consistency,
            reply,
        })?;
        answer.await.map_err(|_| ClientError::Stopped)?
    }

    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.inner.inbox.try_send(NodeMsg::Status { reply })?;
        let view = answer.await.map_err(|_| ClientError::Stopped)?;
        let applier = &self.inner.applier;
        let stats = applier.stats();
        let (guest, hash) = applier.guest();
        let snapshot_index = self
            .inner
            .storage
            .snapshot_position()
            .map(|(index, _)| index);
        let first_log_index = self.inner.storage.first_log_index();
        Ok(NodeStatus {
            id: view.id,
            role: role_name(view.role).to_string(),
            term: view.term,
            leader_id: view.leader_id,
            commit_index: view.commit_index,
            applied_index: applier.applied_index(),
            last_index: view.last_index,
            voters: view.voters,
            pending_proposals: view.pending_proposals,
            members: view
                .members
                .into_iter()
                .map(|m| MemberStatus {
                    id: m.id,
                    node_id: m.addr.as_ref().map(|a| a.node_id.clone()),
                    addrs: m.addr.map(|a| a.addrs).unwrap_or_default(),
                    voter: m.voter,
                    match_index: m.match_index,
                    lazy_appends: m.lazy_appends,
                    last_contact_ms: if m.id == view.id {
                        None
                    } else {
                        self.inner
                            .directory
                            .as_ref()
                            .and_then(|d| d.last_contact_ms(m.id))
                    },
                })
                .collect(),
            guest: GuestStatus {
                name: guest.name,
                version: guest.version,
                hash,
                since_index: applier.history().active.index,
                applied_entries: stats.applied,
                failed_entries: stats.failures,
                instance_rebuilds: stats.rebuilds,
                world: Some(applier.world()),
                store: applier.store_size(),
                checkpoint_failures: stats.checkpoint_failures,
                checkpoint_failing_since: stats.checkpoint_failing_since,
                uncheckpointed_bytes: stats.uncheckpointed_bytes,
                refusing_commands: stats.stalled,
                examples: applier.examples().to_vec(),
            },
            data_dir: self.inner.data_dir.display().to_string(),
            ticket: self.inner.ticket.clone(),
            snapshot_index,
            first_log_index,
            diverged: applier.diverged(),
            last_verified_state_check: applier.last_verified_state_check(),
            applier_busy: applier.busy(),
        })
    }

    /// The node's metrics in the Prometheus text format (see
    /// [`crate::node::metrics`]).
    pub async fn metrics_text(&self) -> Result<String, ClientError> {
        Ok(metrics::encode_text(&self.metrics_registry().await?))
    }

    /// The node's metrics as a `prometheus-client` registry, read now: the
    /// caller may register its own (the API adds its refusals) before
    /// encoding it with [`metrics::encode_text`].
    pub async fn metrics_registry(
        &self,
    ) -> Result<prometheus_client::registry::Registry, ClientError> {
        let status = self.status().await?;
        let storage = self.inner.storage.clone();
        // A stat and a directory listing: kept off the async threads.
        let storage_bytes = match tokio::task::spawn_blocking(move || storage.size_on_disk()).await
        {
            Ok(Ok(bytes)) => Some(bytes),
            Ok(Err(error)) => {
                tracing::debug!(%error, "cannot measure the store for metrics");
                None
            }
            Err(_) => None,
        };
        let peers = self
            .inner
            .peer_stats
            .as_ref()
            .map(PeerStatsRegistry::snapshot)
            .unwrap_or_default();
        let scrape = metrics::Scrape {
            status,
            guest: self.inner.applier.stats(),
            peers,
            storage_bytes,
        };
        Ok(metrics::registry(&self.inner.metrics, scrape))
    }

    /// True while the node loop runs.
    pub fn is_running(&self) -> bool {
        self.inner.stopped.borrow().is_none()
    }

    /// Wait until the node stops; returns the fatal error, if any.
    /// The store a store-backed guest keeps its state in, for watching
    /// its changes ([`GuestStore::subscribe`], [`GuestStore::history_after`]);
    /// `None` when the guest keeps its state in its own memory (WIT 0.1.0),
    /// whose changes the node cannot see.
    pub fn watched_store(&self) -> Option<GuestStore> {
        self.inner.applier.store_if_used().cloned()
    }

    /// The index the guest's state was applied up to.
    pub fn applied_index(&self) -> u64 {
        self.inner.applier.applied_index()
    }

    pub async fn stopped(&self) -> Option<String> {
        let mut stopped = self.inner.stopped.clone();
        let reason = stopped
            .wait_for(Option::is_some)
            .await
            .map(|r| r.clone().unwrap_or_default())
            .unwrap_or_default();
        (!reason.is_empty()).then_some(reason)
    }

    /// Stop the node: pending clients get `Stopped`, queued entries finish
    /// applying, and everything acknowledged is already durable.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.inner.shutdown.send(reply).await.is_ok() {
            let _ = done.await;
        }
        self.stopped().await;
    }
}

fn role_name(role: StateRole) -> &'static str {
    match role {
        StateRole::Leader => "leader",
        StateRole::Follower => "follower",
        StateRole::Candidate => "candidate",
        StateRole::PreCandidate => "pre_candidate",
    }
}
