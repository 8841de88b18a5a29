//! Ready handling, in the order raft-rs documents: persist before sending
//! what depends on it, hand committed entries to the applier in order.

use raft::prelude::{ConfChange, ConfChangeV2, Entry, EntryType, HardState, Message};

use super::{NodeCore, Outbound};
use crate::node::applier::{ApplyItem, ApplyJob};
use crate::node::envelope::{self, Payload};
use crate::node::error::{ClientError, NodeError};
use crate::node::persist::PersistJob;

impl NodeCore {
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
        self.end_round_proposals();
        self.notice_forwarded_commits();
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

    pub(super) fn drain_ready(
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
                self.handle_snapshot_ready(ready, out)?;
                continue;
            }
            self.collect_committed(ready.take_committed_entries(), out)?;
            let read_states = ready.take_read_states();
            self.collect_read_states(&read_states, out);
            // Staged: readable by raft-rs at once, durable once the
            // persistence thread synced it (`node::persist`).
            self.storage.stage_append(ready.entries(), ready.hs())?;
            let number = ready.number();
            let messages = ready.take_persisted_messages();
            let in_flight = self.persist.in_flight();
            if ready.must_sync() || (in_flight && !messages.is_empty()) {
                // Messages wait for this Ready, and for every earlier one:
                // a follower's answer may acknowledge entries staged before.
                out.persist.push(PersistJob {
                    number,
                    sync: ready.must_sync(),
                    entries: ready.entries().len(),
                    messages,
                });
                self.persist.submitted = number;
                self.raw.advance_append_async(ready);
            } else {
                // Nothing new to make durable, nothing durable pending.
                out.messages.extend(messages);
                self.raw.advance_append_async(ready);
                if !in_flight {
                    self.raw.on_persist_ready(number);
                }
            }
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

    /// A Ready with a snapshot from the leader is handled synchronously:
    /// everything staged before it is made durable first, so that
    /// `advance` may count every earlier Ready as persisted.
    fn handle_snapshot_ready(
        &mut self,
        mut ready: raft::Ready,
        out: &mut Outbound,
    ) -> Result<(), NodeError> {
        self.storage.sync_staged()?;
        self.install_snapshot(ready.snapshot(), out)?;
        self.collect_committed(ready.take_committed_entries(), out)?;
        let read_states = ready.take_read_states();
        self.collect_read_states(&read_states, out);
        self.persist_now(ready.entries(), ready.hs())?;
        out.messages.extend(ready.take_persisted_messages());
        self.persist.submitted = ready.number();
        self.persist.acknowledged = ready.number();
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.storage.set_commit(commit)?;
        }
        out.messages.extend(light.take_messages());
        self.collect_committed(light.take_committed_entries(), out)?;
        self.raw.advance_apply();
        Ok(())
    }

    /// The persistence thread made every Ready up to `number` durable
    /// (the caller sent the messages that waited for them).
    pub fn on_persisted(&mut self, number: u64) {
        if number > self.persist.acknowledged {
            self.persist.acknowledged = number;
            self.raw.on_persist_ready(number);
        }
    }

    pub(super) fn collect_committed(
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
    fn persist_now(
        &self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), NodeError> {
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

    pub(super) fn log_role_changes(&mut self) {
        let raft = &self.raw.raft;
        assert!(
            raft.term >= self.last_term,
            "terms never go back: {} after {}",
            raft.term,
            self.last_term
        );
        if raft.term != self.last_term {
            tracing::Span::current().record("term", raft.term);
            self.term_tx.send_replace(raft.term);
        }
        self.last_term = raft.term;
        if raft.state != self.last_role || raft.leader_id != self.last_leader {
            tracing::info!(id = raft.id, term = raft.term, role = ?raft.state,
                leader = raft.leader_id, "raft role changed");
            self.last_role = raft.state;
            self.last_leader = raft.leader_id;
            // Batches proposed in an earlier term may never commit.
            self.batches_in_flight.clear();
            let leader = (raft.leader_id != raft::INVALID_ID).then_some(raft.leader_id);
            let previous = self.leader_tx.send_replace(leader);
            // As etcd counts: a leader known after none or another one.
            if leader.is_some() && leader != previous {
                self.instruments.leader_changed();
            }
        }
    }
}
