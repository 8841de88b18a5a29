//! A store-backed guest (WIT 0.2.0) as a replicated state machine.
//!
//! The guest keeps no state of its own: each `apply` runs in a
//! [`Transaction`] over the host's committed state, and only an `ok`
//! commits its writes, together with the entry's index, in one atomic
//! batch. So the rollback rule of [`super::state_machine`] costs nothing
//! here: a trap, an `err`, fuel or memory exhaustion drop the write set,
//! and a trapped instance is replaced by a fresh one (instantiation only,
//! no checkpoint to restore, no replay).
//!
//! Entries applied one after another commit into an in-memory [`Overlay`]
//! (each sees the ones before it); [`StoreMachine::flush`] writes them to
//! the store in one atomic batch with the last entry's index. The applier
//! flushes after every batch of entries it is handed and before anything
//! reads the store directly (queries, state checks, snapshots, upgrades),
//! so a sled batch is paid per batch of entries, not per entry. A crash
//! loses at most unflushed entries, which the log replays.

use crate::limits::{STORE_RECENT_COMMAND_BYTES, STORE_RECENT_COMMANDS};
use std::collections::VecDeque;
use std::sync::Arc;

use super::bindings::GuestInfo;
use super::engine::LoadedComponent;
use super::error::{GuestFailure, WasmError};
use super::instance::{CallCost, GuestInstance};
use super::kv::{
    Access, CommitMark, CommittedState, EntryChanges, Overlay, Transaction, WriteSet, only_changes,
};
use super::limits::GuestLimits;
use super::state_machine::{ApplyOutcome, RuntimeStats};
use super::store_reader::query_over;
use super::wasi::EntryContext;

/// A store-backed guest component running as a state machine.
#[derive(Debug)]
pub struct StoreMachine {
    component: LoadedComponent,
    info: GuestInfo,
    limits: GuestLimits,
    instance: GuestInstance,
    state: Arc<dyn CommittedState>,
    /// Entries applied but not yet flushed to `state`, and the last of them.
    pending: Arc<Overlay>,
    pending_mark: Option<(u64, u64)>,
    /// What each entry in `pending` changed, for the store's history.
    pending_changes: Vec<EntryChanges>,
    last_entry: EntryContext,
    stats: RuntimeStats,
    /// The last commands applied (for an upgrade's dry run), bounded by
    /// [`STORE_RECENT_COMMANDS`] and [`STORE_RECENT_COMMAND_BYTES`].
    recent: VecDeque<(EntryContext, Vec<u8>)>,
    recent_bytes: usize,
}

impl StoreMachine {
    /// Instantiate a store-backed component over `state` (the state
    /// already committed stays as it is).
    pub fn new(
        component: LoadedComponent,
        limits: GuestLimits,
        state: Arc<dyn CommittedState>,
    ) -> Result<Self, WasmError> {
        let short_hash = component.hash.to_hex()[..12].to_string();
        let mut instance = GuestInstance::new(&component, &short_hash, limits)?;
        let info = instance.info().map_err(|failure| WasmError::Instantiate {
            reason: format!("calling info(): {failure}"),
        })?;
        let instance = GuestInstance::new(&component, &info.name, limits)?;
        Ok(StoreMachine {
            component,
            info,
            limits,
            instance,
            pending: Arc::new(Overlay::new(state.clone())),
            pending_mark: None,
            pending_changes: Vec::new(),
            state,
            last_entry: EntryContext::default(),
            stats: RuntimeStats::default(),
            recent: VecDeque::new(),
            recent_bytes: 0,
        })
    }

    pub fn info(&self) -> &GuestInfo {
        &self.info
    }

    pub fn component(&self) -> &LoadedComponent {
        &self.component
    }

    pub fn limits(&self) -> GuestLimits {
        self.limits
    }

    pub fn stats(&self) -> RuntimeStats {
        self.stats
    }

    pub fn continue_stats(&mut self, stats: RuntimeStats) {
        self.stats = stats;
    }

    pub fn last_entry(&self) -> EntryContext {
        self.last_entry
    }

    /// Set the entry the committed state corresponds to (after a restart
    /// or a snapshot install), for the clock queries see.
    pub fn set_last_entry(&mut self, entry: EntryContext) {
        self.last_entry = entry;
    }

    pub fn memory_bytes(&self) -> u64 {
        self.instance.memory_bytes()
    }

    /// The committed state this machine runs over (call [`Self::flush`]
    /// first for it to include every applied entry).
    pub fn state(&self) -> &Arc<dyn CommittedState> {
        &self.state
    }

    /// Record that the entry (`index`, `term`) applied without guest
    /// writes; the next flush marks the store with it.
    pub fn mark_applied(&mut self, index: u64, term: u64) {
        self.pending_mark = Some((index, term));
    }

    /// Write the entries applied since the last flush to the store, in one
    /// atomic batch with the last one's index.
    pub fn flush(&mut self) -> Result<(), WasmError> {
        let Some((index, term)) = self.pending_mark.take() else {
            return Ok(());
        };
        let writes = self.pending.take_changes();
        let changes = std::mem::take(&mut self.pending_changes);
        self.state.commit(
            &writes,
            CommitMark {
                index,
                term,
                node_meta: None,
                changes: &changes,
            },
        )?;
        Ok(())
    }

    /// Apply one committed command: run it in a transaction, and keep its
    /// writes (for the next flush) if it returned `ok`; the entry's index
    /// is recorded either way. An `Err` is a local failure (the store's
    /// I/O, or an instance that cannot be rebuilt) that must stop the node.
    pub fn apply(
        &mut self,
        entry: EntryContext,
        command: &[u8],
    ) -> Result<ApplyOutcome, WasmError> {
        let pending: Arc<dyn CommittedState> = self.pending.clone();
        self.instance
            .begin(Transaction::new(pending, Access::ReadWrite));
        let (result, CallCost { fuel_used }) = self.instance.apply(entry, command);
        self.instance.check_host_fault()?;
        let writes = self.end_transaction(result.is_ok())?;
        self.pending_changes
            .extend(EntryChanges::of(entry.index, &writes));
        let writes = only_changes(writes);
        self.pending.commit(
            &writes,
            CommitMark {
                index: entry.index,
                term: entry.term,
                node_meta: None,
                changes: &[],
            },
        )?;
        self.pending_mark = Some((entry.index, entry.term));
        self.last_entry = entry;
        self.stats.applied += 1;
        self.stats.apply_fuel += fuel_used;
        self.remember(entry, command);
        if let Err(failure) = &result {
            self.stats.failures += 1;
            if failure.poisons_instance() {
                tracing::warn!(index = entry.index, guest = %self.info.name, %failure,
                    "entry failed in the guest; its writes are discarded");
                self.replace_instance()?;
            }
        }
        Ok(ApplyOutcome { result, fuel_used })
    }

    /// Run a read-only query against the committed state (everything
    /// applied so far: it flushes first).
    pub fn query(
        &mut self,
        request: &[u8],
    ) -> Result<(Result<Vec<u8>, GuestFailure>, u64), WasmError> {
        self.flush()?;
        let (component, name, limits) = (&self.component, &self.info.name, self.limits);
        let ran = query_over(
            &mut self.instance,
            self.state.clone(),
            self.last_entry,
            request,
            || GuestInstance::new(component, name, limits),
        )?;
        if ran.rebuilt {
            self.stats.rebuilds += 1;
        }
        Ok((ran.result, ran.fuel_used))
    }

    /// Run the `migrate` hook of this (new) component at the upgrade
    /// `entry`; on success its writes are returned, to be committed with
    /// the activation. On failure nothing was written.
    pub fn migrate(
        &mut self,
        entry: EntryContext,
        previous: &GuestInfo,
    ) -> Result<Result<WriteSet, GuestFailure>, WasmError> {
        self.flush()?;
        self.instance
            .begin(Transaction::new(self.state.clone(), Access::ReadWrite));
        let (result, _) = self.instance.migrate(entry, previous);
        self.instance.check_host_fault()?;
        let writes = only_changes(self.end_transaction(result.is_ok())?);
        if self.instance.is_poisoned() {
            self.replace_instance()?;
        }
        Ok(result.map(|()| writes))
    }

    /// The commands applied most recently, oldest first.
    pub fn recent_commands(&self) -> Vec<(EntryContext, Vec<u8>)> {
        self.recent.iter().cloned().collect()
    }

    fn remember(&mut self, entry: EntryContext, command: &[u8]) {
        self.recent.push_back((entry, command.to_vec()));
        self.recent_bytes += command.len();
        while self.recent.len() > STORE_RECENT_COMMANDS
            || self.recent_bytes > STORE_RECENT_COMMAND_BYTES
        {
            match self.recent.pop_front() {
                Some((_, old)) => self.recent_bytes -= old.len(),
                None => break,
            }
        }
    }

    /// Take the transaction back; all its writes if `keep` (see
    /// [`Transaction::into_all_writes`]). A store I/O error
    /// during the call is returned instead, whatever the call's result.
    fn end_transaction(&mut self, keep: bool) -> Result<WriteSet, WasmError> {
        let Some(tx) = self.instance.finish() else {
            return Ok(WriteSet::new());
        };
        if let Some(error) = tx.io_error() {
            return Err(error.clone().into());
        }
        Ok(if keep {
            tx.into_all_writes()
        } else {
            WriteSet::new()
        })
    }

    /// A fresh instance after a trap: the state is in the store, so nothing
    /// is restored or replayed.
    fn replace_instance(&mut self) -> Result<(), WasmError> {
        let started = std::time::Instant::now();
        self.instance = GuestInstance::new(&self.component, &self.info.name, self.limits)?;
        self.stats.rebuilds += 1;
        tracing::debug!(guest = %self.info.name, elapsed_us = started.elapsed().as_micros() as u64,
            "replaced the guest instance");
        Ok(())
    }
}
