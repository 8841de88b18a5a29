//! Snapshots on the applier side: writing the guest's state to a snapshot
//! file, restoring one, and converting between files and raft-rs snapshots.
//!
//! A 0.1.0 guest's state is its `snapshot()` bytes; a store-backed guest's
//! is streamed out of the store into the file, and out of the file into
//! the store, pair by pair (see [`crate::storage::GuestStore`]).

use crate::node::upgrade::LimitOverridesExt as _;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use raft::prelude::{ConfState, Snapshot};
use tokio::sync::oneshot;

use super::{Applier, ApplierEnv, TakenSnapshot};
use crate::membership::PeerAddr;
use crate::node::metrics::{NodeInstruments, SnapshotPhase};
use crate::node::snapshot::{
    self, LoadedSnapshot, SnapshotDescriptor, SnapshotHeader, StateFormat,
};
use crate::node::upgrade::ComponentHistory;
use crate::wasm::kv::{CommitMark, StoreIoError};
use crate::wasm::{EntryContext, GuestMachine, WasmError};

impl Applier {
    /// Write the snapshot file of the state after every entry handed over
    /// so far, which the node guarantees is `index`, and answer `reply`.
    /// A 0.1.0 guest's state is serialized here; a store's is captured here
    /// (as of `index`) and streamed to the file by a thread of its own while
    /// the applier goes on applying.
    pub(super) fn take_snapshot(
        &mut self,
        index: u64,
        term: u64,
        conf: &ConfState,
        members: BTreeMap<u64, PeerAddr>,
        reply: oneshot::Sender<Result<TakenSnapshot, String>>,
    ) {
        self.finish_export();
        if let Err(error) = self.machine.flush() {
            // The node stops at the next apply (a store I/O error is fatal).
            let _ = reply.send(Err(error.to_string()));
            return;
        }
        // A 0.1.0 guest's snapshot is the same `snapshot()` as a
        // checkpoint: it waits for the next checkpoint to succeed rather
        // than fail again (and rebuild). Failing checkpoints were reported
        // once already.
        if let Some(since) = self.machine.checkpoint_failing_since() {
            tracing::debug!(index, since, "no snapshot while checkpoints fail");
            let _ = reply.send(Err(format!(
                "the guest's state cannot be serialized: in-memory checkpoints fail since \
                 index {since} (see the node's status)"
            )));
            return;
        }
        let answer = move |taken: Result<TakenSnapshot, String>| {
            if let Err(error) = &taken {
                tracing::warn!(index, %error, "taking a snapshot failed; will retry later");
            }
            let _ = reply.send(taken);
        };
        let applied = self.shared.applied_index();
        if applied != index {
            return answer(Err(format!("asked for index {index}, applied {applied}")));
        }
        let started = std::time::Instant::now();
        let hash = self.machine.component().hash;
        let component = match self.env.components.get(&hash) {
            Ok(component) => component,
            Err(e) => return answer(Err(format!("reading the active component {hash}: {e}"))),
        };
        let mut header = SnapshotHeader {
            index,
            term,
            conf: conf.into(),
            members,
            component_hash: hash.to_hex(),
            component_len: component.len() as u64,
            state_len: 0,
            last_entry_timestamp_ms: self.machine.last_entry().timestamp_ms,
            taken_by: self.env.node_id,
            taken_at_ms: self.env.wall_clock.now_ms(),
            history: Some(self.history.clone()),
            state_format: StateFormat::GuestBytes,
        };
        let dir = self.env.snapshot_dir.clone();
        let instruments = self.env.instruments.clone();
        match &mut self.machine {
            GuestMachine::Memory(machine) => {
                let written = machine
                    .snapshot()
                    .map_err(|e| e.to_string())
                    .and_then(|state| {
                        header.state_len = state.len() as u64;
                        snapshot::write(&dir, &header, &component, &state)
                            .map_err(|e| e.to_string())
                    });
                answer(
                    written.map(|descriptor| {
                        taken(&header, &descriptor, started, &self.env.instruments)
                    }),
                );
            }
            GuestMachine::Store(_) => {
                let export = match self.env.guest_store.begin_export() {
                    Ok(export) => export,
                    Err(e) => return answer(Err(e.to_string())),
                };
                header.state_len = export.len();
                header.state_format = StateFormat::StorePairs;
                let paused_ms = started.elapsed().as_secs_f64() * 1000.0;
                let spawned =
                    std::thread::Builder::new()
                        .name("snapshot".into())
                        .spawn(move || {
                            let written =
                                snapshot::write_streamed(&dir, &header, &component, &mut |out| {
                                    export.write_to(out).map_err(std::io::Error::other)
                                });
                            drop(export);
                            tracing::debug!(
                                index,
                                paused_ms,
                                "applies paused to capture the store"
                            );
                            answer(
                                written
                                    .map(|descriptor| {
                                        taken(&header, &descriptor, started, &instruments)
                                    })
                                    .map_err(|e| e.to_string()),
                            );
                        });
                match spawned {
                    Ok(thread) => self.export = Some(thread),
                    Err(error) => tracing::warn!(%error, "cannot start a snapshot thread"),
                }
            }
        }
    }

    /// Wait for the snapshot thread, if one runs.
    pub(super) fn finish_export(&mut self) {
        if let Some(thread) = self.export.take() {
            let _ = thread.join();
        }
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
        self.shared.publish_read_target(
            header.index,
            &self.machine,
            self.env.guest_store.committed().index,
        );
        self.history = install_state(&self.env, &mut self.machine, loaded)?;
        self.shared.set_history(&self.history);
        self.shared.set_guest(&self.machine);
        self.publish_guest_state();
        self.shared
            .applied_index
            .store(header.index, Ordering::Release);
        // The entries the snapshot covers were never seen here.
        self.shared.forwards.lost_track();
        tracing::info!(index = header.index, term = header.term,
            guest = %self.machine.info().name, "restored a snapshot");
        Ok(())
    }
}

/// Put a snapshot's state into `machine` (built for the snapshot's
/// component): `restore()` for a 0.1.0 guest, a streamed load into the
/// store for a store-backed one. Returns the history at the snapshot.
pub fn install_state(
    env: &ApplierEnv,
    machine: &mut GuestMachine,
    loaded: &LoadedSnapshot,
) -> Result<ComponentHistory, WasmError> {
    let header = &loaded.header;
    let started = std::time::Instant::now();
    let entry = snapshot_entry(header);
    let history = header.component_history(machine.info());
    match (machine, header.state_format) {
        (GuestMachine::Memory(machine), StateFormat::GuestBytes) => {
            let state = loaded.state().map_err(|e| WasmError::RestoreRejected {
                reason: e.to_string(),
            })?;
            machine.restore(entry, &state)?;
        }
        (GuestMachine::Store(machine), StateFormat::StorePairs) => {
            let mark = store_mark(header.index, header.term, &history);
            env.guest_store
                .import(&mut loaded.state_reader(), header.state_len, (&mark).into())?;
            machine.set_last_entry(entry);
        }
        (machine, format) => {
            return Err(WasmError::RestoreRejected {
                reason: format!(
                    "the snapshot's state is {format:?} but its component is a {}",
                    machine.world()
                ),
            });
        }
    }
    env.instruments
        .observe_snapshot(SnapshotPhase::Install, started.elapsed(), header.state_len);
    Ok(history)
}

/// The mark a store-backed guest's state is committed with at `index`:
/// the component history rides along, so a restart knows which component
/// applied up to there.
pub fn store_mark(index: u64, term: u64, history: &ComponentHistory) -> StoreMark {
    StoreMark {
        index,
        term,
        history: serde_json::to_vec(history).unwrap_or_default(),
    }
}

/// An owned [`CommitMark`] carrying the component history.
#[derive(Debug, Clone)]
pub struct StoreMark {
    pub index: u64,
    pub term: u64,
    pub history: Vec<u8>,
}

impl<'a> From<&'a StoreMark> for CommitMark<'a> {
    fn from(mark: &'a StoreMark) -> Self {
        CommitMark {
            index: mark.index,
            term: mark.term,
            node_meta: Some(&mark.history),
            changes: &[],
        }
    }
}

/// The component history a store-backed guest's store was committed with,
/// if any.
pub fn stored_history(env: &ApplierEnv) -> Result<Option<ComponentHistory>, StoreIoError> {
    let Some(bytes) = env.guest_store.node_meta()? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreIoError(format!("the guest store's component history: {e}")))
}

/// Log a written snapshot and give Raft's view of it.
fn taken(
    header: &SnapshotHeader,
    descriptor: &SnapshotDescriptor,
    started: std::time::Instant,
    instruments: &NodeInstruments,
) -> TakenSnapshot {
    tracing::info!(
        index = header.index,
        term = header.term,
        state_bytes = header.state_len,
        file_bytes = descriptor.file_len,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "took a snapshot"
    );
    instruments.observe_snapshot(SnapshotPhase::Create, started.elapsed(), header.state_len);
    TakenSnapshot {
        snapshot: raft_snapshot(header, descriptor),
        file_len: descriptor.file_len,
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
pub fn build_machine(env: &ApplierEnv, loaded: &LoadedSnapshot) -> Result<GuestMachine, WasmError> {
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
    env.new_machine(
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
