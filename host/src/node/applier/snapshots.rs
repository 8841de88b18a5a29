//! Snapshots on the applier side: writing the guest's state to a snapshot
//! file, restoring one, and converting between files and raft-rs snapshots.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use raft::prelude::{ConfState, Snapshot};

use super::{Applier, ApplierEnv, TakenSnapshot};
use crate::membership::PeerAddr;
use crate::node::snapshot::{self, LoadedSnapshot, SnapshotDescriptor, SnapshotHeader};
use crate::wasm::{EntryContext, StateMachine, WasmError};

impl Applier {
    /// Serialize the guest and write the snapshot file. The state is the
    /// one after every entry handed over so far, which the node guarantees
    /// is `index`.
    pub(super) fn take_snapshot(
        &mut self,
        index: u64,
        term: u64,
        conf: &ConfState,
        members: BTreeMap<u64, PeerAddr>,
    ) -> Result<TakenSnapshot, String> {
        let applied = self.shared.applied_index();
        if applied != index {
            return Err(format!("asked for index {index}, applied {applied}"));
        }
        // The same `snapshot()` as a checkpoint: it waits for the next
        // checkpoint to succeed rather than fail again (and rebuild).
        if let Some(since) = self.machine.checkpoint_failing_since() {
            return Err(format!(
                "the guest's state cannot be serialized: in-memory checkpoints fail since \
                 index {since} (see the node's status)"
            ));
        }
        let state = self.machine.snapshot().map_err(|e| e.to_string())?;
        let hash = self.machine.component().hash;
        let component = self
            .env
            .components
            .get(&hash)
            .map_err(|e| format!("reading the active component {hash}: {e}"))?;
        let header = SnapshotHeader {
            index,
            term,
            conf: conf.into(),
            members,
            component_hash: hash.to_hex(),
            component_len: component.len() as u64,
            state_len: state.len() as u64,
            last_entry_timestamp_ms: self.machine.last_entry().timestamp_ms,
            taken_by: self.env.node_id,
            taken_at_ms: self.env.wall_clock.now_ms(),
            history: Some(self.history.clone()),
        };
        let descriptor = snapshot::write(&self.env.snapshot_dir, &header, &component, &state)
            .map_err(|e| e.to_string())?;
        tracing::info!(
            index,
            term,
            state_bytes = state.len(),
            file_bytes = descriptor.file_len,
            "took a snapshot"
        );
        Ok(TakenSnapshot {
            snapshot: raft_snapshot(&header, &descriptor),
            file_len: descriptor.file_len,
        })
    }

    /// Replace the guest's state (and, if the snapshot says so, the guest
    /// itself) with a snapshot's. A snapshot the guest cannot restore stops
    /// the node: every replica must hold the leader's state.
    pub(super) fn restore(&mut self, loaded: &LoadedSnapshot) -> Result<(), WasmError> {
        let header = &loaded.header;
        let limits = header.limit_overrides().resolve(self.env.limits);
        if header.component_hash != self.machine.component().hash.to_hex()
            || limits != self.machine.limits()
        {
            self.machine = build_machine(&self.env, loaded)?;
        }
        self.machine
            .restore(snapshot_entry(header), loaded.state())?;
        self.history = header.component_history(self.machine.info());
        self.shared.set_history(&self.history);
        self.shared.set_guest(&self.machine);
        self.publish_guest_state();
        self.shared
            .applied_index
            .store(header.index, Ordering::Release);
        tracing::info!(index = header.index, term = header.term,
            guest = %self.machine.info().name, "restored a snapshot");
        Ok(())
    }
}

/// The entry context a snapshot's state corresponds to (what `restore`
/// sees as its clock and random seed).
pub fn snapshot_entry(header: &SnapshotHeader) -> EntryContext {
    EntryContext {
        index: header.index,
        term: header.term,
        timestamp_ms: header.last_entry_timestamp_ms,
    }
}

/// Load the component a snapshot names (filing it in the component store)
/// and instantiate it in its initial state.
pub fn build_machine(env: &ApplierEnv, loaded: &LoadedSnapshot) -> Result<StateMachine, WasmError> {
    let hash = env
        .components
        .put(loaded.component())
        .map_err(|e| WasmError::Instantiate {
            reason: format!("storing the snapshot's component: {e}"),
        })?;
    if hash.to_hex() != loaded.header.component_hash {
        return Err(WasmError::Instantiate {
            reason: format!(
                "the snapshot's component hashes to {hash}, its header says {}",
                loaded.header.component_hash
            ),
        });
    }
    let component = env.engine.load(loaded.component())?;
    StateMachine::new(
        component,
        loaded.header.limit_overrides().resolve(env.limits),
    )
}

/// Raft's view of a snapshot file: metadata plus the descriptor as data.
pub fn raft_snapshot(header: &SnapshotHeader, descriptor: &SnapshotDescriptor) -> Snapshot {
    let mut snapshot = Snapshot::default();
    let metadata = snapshot.mut_metadata();
    metadata.index = header.index;
    metadata.term = header.term;
    metadata.set_conf_state((&header.conf).into());
    snapshot.data = descriptor.encode().into();
    snapshot
}
