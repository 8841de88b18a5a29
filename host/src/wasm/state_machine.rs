//! A guest as a replicated state machine: apply, query, snapshot, restore,
//! with the rollback rule.
//!
//! **The rollback rule.** A trap, fuel exhaustion or memory-cap hit in any
//! call makes that call's result an error and leaves the state exactly as it
//! was before the call, on every replica. wasmtime cannot re-enter an instance
//! after a trap, and the trap may have happened halfway through a mutation, so
//! the instance is thrown away and rebuilt: instantiate, `restore` the latest
//! checkpoint, replay the entries applied since. Replaying is deterministic,
//! so the rebuilt state equals the state before the failing call.
//!
//! Checkpoints are `snapshot()` bytes kept in memory. A new one is taken when
//! the replay tail outgrows [`CHECKPOINT_MIN_TAIL_BYTES`] and the size of the
//! last checkpoint (so their cost is amortized over the entries they cover),
//! or holds [`CHECKPOINT_MAX_TAIL_ENTRIES`] entries (so a rebuild stays fast).

use super::bindings::GuestInfo;
use super::engine::LoadedComponent;
use super::error::{GuestFailure, WasmError};
use super::instance::{CallCost, GuestInstance};
use super::limits::GuestLimits;
use super::wasi::EntryContext;
use crate::limits::{CHECKPOINT_MAX_TAIL_ENTRIES, CHECKPOINT_MIN_TAIL_BYTES};

/// The outcome of applying one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub result: Result<Vec<u8>, GuestFailure>,
    pub fuel_used: u64,
}

/// Counters for metrics and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Entries applied.
    pub applied: u64,
    /// Entries whose result was an error (queries are not counted).
    pub failures: u64,
    /// Instance rebuilds after a trap in any call.
    pub rebuilds: u64,
    /// In-memory checkpoints taken (they bound the replay after a trap).
    pub checkpoints: u64,
    /// Fuel consumed by `apply` calls (replays after a trap not included).
    pub apply_fuel: u64,
}

#[derive(Debug, Clone)]
struct TailEntry {
    entry: EntryContext,
    command: Vec<u8>,
}

/// A checkpoint and the entries applied after it.
#[derive(Debug)]
struct Generation {
    checkpoint: Option<Vec<u8>>,
    checkpoint_entry: EntryContext,
    tail: Vec<TailEntry>,
}

/// The recent history of a state machine: a state and the entries applied
/// after it, in order. Replaying `entries` on `base` gives the current state.
/// What an upgrade's dry run replays side by side.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    /// `snapshot()` bytes of the base state; `None` is a fresh instance.
    pub base: Option<Vec<u8>>,
    pub base_entry: EntryContext,
    pub entries: Vec<(EntryContext, Vec<u8>)>,
}

/// A guest component running as a state machine.
#[derive(Debug)]
pub struct StateMachine {
    component: LoadedComponent,
    info: GuestInfo,
    limits: GuestLimits,
    instance: GuestInstance,
    /// Guest state at `checkpoint_entry`; `None` means the fresh initial
    /// state of a new instance.
    checkpoint: Option<Vec<u8>>,
    checkpoint_entry: EntryContext,
    /// Entries applied since the checkpoint, for replay after a rebuild.
    tail: Vec<TailEntry>,
    tail_bytes: usize,
    /// The checkpoint before the current one and its tail, so the replay
    /// window never starts empty right after a checkpoint.
    previous: Option<Generation>,
    /// The last entry applied (clock and random context for queries).
    last_entry: EntryContext,
    stats: RuntimeStats,
}

impl StateMachine {
    /// Instantiate a component in its initial state.
    pub fn new(component: LoadedComponent, limits: GuestLimits) -> Result<Self, WasmError> {
        let short_hash = component.hash.to_hex()[..12].to_string();
        let mut instance = GuestInstance::new(&component, &short_hash, limits)?;
        let info = instance.info().map_err(|failure| WasmError::Instantiate {
            reason: format!("calling info(): {failure}"),
        })?;
        // Re-create the instance with its real name for log lines.
        let instance = GuestInstance::new(&component, &info.name, limits)?;
        Ok(StateMachine {
            component,
            info,
            limits,
            instance,
            checkpoint: None,
            checkpoint_entry: EntryContext::default(),
            tail: Vec::new(),
            tail_bytes: 0,
            previous: None,
            last_entry: EntryContext::default(),
            stats: RuntimeStats::default(),
        })
    }

    pub fn info(&self) -> &GuestInfo {
        &self.info
    }

    pub fn component(&self) -> &LoadedComponent {
        &self.component
    }

    pub fn stats(&self) -> RuntimeStats {
        self.stats
    }

    /// Continue counting where `previous` (the component this one replaces)
    /// left off, so status counters span upgrades.
    pub fn continue_stats(&mut self, previous: &StateMachine) {
        self.stats = previous.stats;
    }

    /// Continue counting from `stats` (those of the guest this one
    /// replaces).
    pub fn set_stats(&mut self, stats: RuntimeStats) {
        self.stats = stats;
    }

    pub fn limits(&self) -> GuestLimits {
        self.limits
    }

    /// The entries applied since the previous checkpoint, with the state
    /// before them (entries that trapped are not included: they had no
    /// effect).
    pub fn replay_window(&self) -> ReplayWindow {
        let (base, base_entry, older) = match &self.previous {
            Some(previous) => (
                previous.checkpoint.clone(),
                previous.checkpoint_entry,
                previous.tail.as_slice(),
            ),
            None => (self.checkpoint.clone(), self.checkpoint_entry, &[][..]),
        };
        ReplayWindow {
            base,
            base_entry,
            entries: older
                .iter()
                .chain(&self.tail)
                .map(|t| (t.entry, t.command.clone()))
                .collect(),
        }
    }

    pub fn last_entry(&self) -> EntryContext {
        self.last_entry
    }

    pub fn memory_bytes(&self) -> u64 {
        self.instance.memory_bytes()
    }

    /// Apply one committed command. Guest failures are part of the outcome;
    /// an `Err` means the runtime itself failed (a nondeterministic guest or
    /// an instance that can no longer be built), which the node treats as
    /// fatal.
    pub fn apply(
        &mut self,
        entry: EntryContext,
        command: &[u8],
    ) -> Result<ApplyOutcome, WasmError> {
        let (result, CallCost { fuel_used }) = self.instance.apply(entry, command);
        self.last_entry = entry;
        self.stats.applied += 1;
        self.stats.apply_fuel += fuel_used;
        match &result {
            Err(failure) if failure.poisons_instance() => {
                self.stats.failures += 1;
                tracing::warn!(index = entry.index, guest = %self.info.name, %failure,
                    "entry failed in the guest; rolling the state back");
                self.rebuild()?;
            }
            other => {
                if other.is_err() {
                    self.stats.failures += 1;
                }
                self.tail_bytes += command.len();
                self.tail.push(TailEntry {
                    entry,
                    command: command.to_vec(),
                });
                self.maybe_checkpoint()?;
            }
        }
        Ok(ApplyOutcome { result, fuel_used })
    }

    /// Run a read-only query against the current state.
    pub fn query(
        &mut self,
        request: &[u8],
    ) -> Result<(Result<Vec<u8>, GuestFailure>, u64), WasmError> {
        let (result, CallCost { fuel_used }) = self.instance.query(self.last_entry, request);
        if self.instance.is_poisoned() {
            self.rebuild()?;
        }
        Ok((result, fuel_used))
    }

    /// Serialize the current state.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, WasmError> {
        let result = self.instance.snapshot(self.last_entry);
        if self.instance.is_poisoned() {
            self.rebuild()?;
        }
        result.map_err(|failure| WasmError::SnapshotFailed { failure })
    }

    /// Replace the state with `snapshot` (taken at `entry`). On failure the
    /// previous state is kept.
    pub fn restore(&mut self, entry: EntryContext, snapshot: &[u8]) -> Result<(), WasmError> {
        let mut fresh = GuestInstance::new(&self.component, &self.info.name, self.limits)?;
        fresh
            .restore(entry, snapshot)
            .map_err(|failure| WasmError::RestoreRejected {
                reason: failure.to_string(),
            })?;
        self.instance = fresh;
        self.checkpoint = Some(snapshot.to_vec());
        self.checkpoint_entry = entry;
        self.tail.clear();
        self.tail_bytes = 0;
        self.previous = None;
        self.last_entry = entry;
        Ok(())
    }

    fn maybe_checkpoint(&mut self) -> Result<(), WasmError> {
        let last_size = self.checkpoint.as_ref().map_or(0, Vec::len);
        let big_enough = self.tail_bytes >= CHECKPOINT_MIN_TAIL_BYTES.max(last_size);
        if !big_enough && self.tail.len() < CHECKPOINT_MAX_TAIL_ENTRIES {
            return Ok(());
        }
        match self.instance.snapshot(self.last_entry) {
            Ok(bytes) => {
                self.previous = Some(Generation {
                    checkpoint: self.checkpoint.replace(bytes),
                    checkpoint_entry: self.checkpoint_entry,
                    tail: std::mem::take(&mut self.tail),
                });
                self.checkpoint_entry = self.last_entry;
                self.tail_bytes = 0;
                self.stats.checkpoints += 1;
            }
            Err(failure) => {
                // Keep the tail; the next entry tries again.
                tracing::warn!(guest = %self.info.name, %failure,
                    "taking an in-memory checkpoint failed");
                if self.instance.is_poisoned() {
                    self.rebuild()?;
                }
            }
        }
        Ok(())
    }

    /// Build a new instance holding the state as of the last good entry.
    fn rebuild(&mut self) -> Result<(), WasmError> {
        let started = std::time::Instant::now();
        let mut instance = GuestInstance::new(&self.component, &self.info.name, self.limits)?;
        if let Some(snapshot) = &self.checkpoint {
            instance
                .restore(self.checkpoint_entry, snapshot)
                .map_err(|failure| WasmError::ReplayDiverged {
                    index: self.checkpoint_entry.index,
                    reason: format!("restoring the checkpoint failed: {failure}"),
                })?;
        }
        for tail in &self.tail {
            let (result, _) = instance.apply(tail.entry, &tail.command);
            if let Err(failure) = result
                && failure.poisons_instance()
            {
                return Err(WasmError::ReplayDiverged {
                    index: tail.entry.index,
                    reason: failure.to_string(),
                });
            }
        }
        self.instance = instance;
        self.stats.rebuilds += 1;
        tracing::info!(guest = %self.info.name, replayed = self.tail.len(),
            elapsed_ms = started.elapsed().as_millis() as u64, "rebuilt guest instance");
        Ok(())
    }
}
