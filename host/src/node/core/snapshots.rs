//! Snapshot bookkeeping: when to take one, installing one from the leader,
//! compacting the log behind it, and reporting transfers to raft-rs.

use crate::limits::{
    COMPACTION_BATCH_CHUNKS, SNAPSHOT_AMORTIZE_ABOVE_BYTES, SNAPSHOT_AMORTIZE_MAX_LOG_BYTES,
};
use raft::prelude::Snapshot;
use tokio::sync::oneshot;

use super::{NodeCore, Outbound, SnapshotInfo};
use crate::node::applier::{ApplyJob, TakenSnapshot};
use crate::node::error::{ClientError, NodeError};
use crate::node::snapshot::{self, SnapshotDescriptor};
use crate::storage::MetaUpdate;
use crate::wasm::ComponentHash;

impl NodeCore {
    /// A snapshot from the leader: make it durable, restore the guest from
    /// its file (which the transport received and verified before handing
    /// the message to Raft), and take its membership.
    pub(super) fn install_snapshot(
        &mut self,
        snap: &Snapshot,
        out: &mut Outbound,
    ) -> Result<(), NodeError> {
        let meta = snap.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let corrupt = |reason: String| NodeError::CorruptEntry { index, reason };
        let descriptor =
            SnapshotDescriptor::decode(&snap.data).map_err(|e| corrupt(e.to_string()))?;
        let path = snapshot::path_for(&self.snapshots.dir, index, term);
        let loaded = snapshot::read(&path)
            .map_err(|e| corrupt(format!("the received snapshot file: {e}")))?;
        let file_len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        self.snapshots.last_file_bytes = file_len;
        if file_len != descriptor.file_len
            || loaded.header.index != index
            || loaded.header.term != term
        {
            return Err(corrupt(format!(
                "snapshot file {} does not match the snapshot Raft installs",
                path.display()
            )));
        }
        let component =
            ComponentHash::from_hex(&loaded.header.component_hash).ok_or_else(|| {
                corrupt(format!(
                    "`{}` is not a component hash",
                    loaded.header.component_hash
                ))
            })?;
        // The snapshot and the metadata that goes with it (its members,
        // conf index and component) in one durable batch.
        self.storage.apply_snapshot_with_meta(
            snap,
            MetaUpdate {
                members: Some(&loaded.header.members),
                conf_index: Some(index),
                active_component: Some(&component),
            },
        )?;
        // Proposals this node made at indexes the snapshot covers: they may
        // have committed under another leader (and be in the snapshot) or
        // been replaced; this node cannot tell which, so it must not say.
        let later = self.pending.split_off(&(index + 1));
        for (_, proposal) in std::mem::replace(&mut self.pending, later) {
            let _ = proposal.reply.send(Err(ClientError::OutcomeUnknown));
        }
        self.members = loaded.header.members.clone();
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
        // A large state is snapshotted only once the log since the last
        // snapshot is as large (up to a bound on the log a restart reads):
        // its cost stays proportional to the writes.
        let amortized = state.last_file_bytes <= SNAPSHOT_AMORTIZE_ABOVE_BYTES
            || state.bytes_since >= state.last_file_bytes.min(SNAPSHOT_AMORTIZE_MAX_LOG_BYTES);
        let due = amortized && state.policy.due(state.entries_since, state.bytes_since);
        if !asked && !due {
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

    pub(super) fn snapshot_info(&self, index: u64, term: u64) -> SnapshotInfo {
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
        self.snapshots.last_file_bytes = taken.file_len;
        let meta = taken.snapshot.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let covered = self.storage.snapshot_position().map_or(0, |(i, _)| i);
        if index > covered {
            self.storage.save_snapshot(&taken.snapshot)?;
            let keep = self.snapshots.policy.keep_entries;
            let compact_to = (index + 1).saturating_sub(keep).min(index + 1);
            self.snapshots.compact_to = Some(compact_to);
            self.compact_step()?;
            snapshot::prune(&self.snapshots.dir, index);
            tracing::info!(
                index,
                term,
                file_bytes = taken.file_len,
                first_log_index = self.storage.first_log_index(),
                compacting_to = compact_to,
                "snapshot recorded; log compaction started"
            );
        }
        let (index, term) = self.storage.snapshot_position().unwrap_or((index, term));
        let info = self.snapshot_info(index, term);
        for waiter in self.snapshots.waiting.drain(..) {
            let _ = waiter.send(Ok(info.clone()));
        }
        Ok(())
    }

    /// Whether log behind a snapshot is still to be removed.
    pub(crate) fn compaction_pending(&self) -> bool {
        self.snapshots.compact_to.is_some()
    }

    /// Compact the log by at most [`COMPACTION_BATCH_CHUNKS`] stored chunks
    /// towards the last snapshot (the loop calls it in idle rounds, and
    /// under load once per `COMPACTION_STEP_INTERVAL_UNDER_LOAD`). In one
    /// go, the 250,000 entries behind a snapshot of a 256 MiB store-backed
    /// state took this loop ~2 s of durable batches: no heartbeats
    /// meanwhile, so followers started elections and proposals were
    /// dropped.
    pub(crate) fn compact_step(&mut self) -> Result<(), NodeError> {
        let Some(target) = self.snapshots.compact_to else {
            return Ok(());
        };
        // A no-op once an installed snapshot moved the log past `target`.
        if !self
            .storage
            .compact_whole_chunks(target, COMPACTION_BATCH_CHUNKS)?
        {
            self.snapshots.compact_to = None;
            tracing::debug!(
                first_log_index = self.storage.first_log_index(),
                "log compacted"
            );
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
}
