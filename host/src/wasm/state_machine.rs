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
//!
//! **When checkpoints fail.** A guest serializes its state into its own
//! memory, so a state that no longer fits there twice cannot be
//! checkpointed: `snapshot()` hits the memory cap (or runs out of fuel),
//! which poisons the live instance. It is rebuilt once, and from then on
//! checkpoints are *failing*: the next attempt waits until the tail has
//! doubled, so attempts and their rebuilds cost O(1) amortized per entry.
//! (Retrying after every entry, as this module once did, rebuilt the
//! instance and replayed the whole tail per entry: hundreds of milliseconds
//! per put, and a restart that replayed every entry that way.) Entries keep
//! applying to the live instance meanwhile, and a trap still rolls back
//! exactly, from the old checkpoint and the whole tail. The warning is
//! logged once per streak; [`RuntimeStats`] counts the failures.
//!
//! The tail then only grows, and so does what a trap replays; the node's
//! on-disk snapshot is the same `snapshot()`, so the log is not compacted
//! either. Once the tail reaches [`MAX_UNCHECKPOINTED_TAIL_BYTES`] (or the
//! memory cap, if smaller) or [`MAX_UNCHECKPOINTED_TAIL_ENTRIES`], or an
//! entry hits the memory cap (the state has no room left), the guest is
//! [`Stalled`]: the node refuses new commands and still applies committed
//! ones. An upgrade that raises the memory cap moves the state on (see
//! [`StateMachine::snapshot_for_upgrade`]).

use super::bindings::GuestInfo;
use super::engine::LoadedComponent;
use super::error::{GuestFailure, WasmError};
use super::instance::{CallCost, GuestInstance};
use super::limits::GuestLimits;
use super::wasi::EntryContext;
use crate::limits::{
    CHECKPOINT_MAX_TAIL_ENTRIES, CHECKPOINT_MIN_TAIL_BYTES, CHECKPOINT_STATE_BYTES_PER_TAIL_ENTRY,
    MAX_UNCHECKPOINTED_TAIL_BYTES, MAX_UNCHECKPOINTED_TAIL_ENTRIES,
};

/// The outcome of applying one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub result: Result<Vec<u8>, GuestFailure>,
    pub fuel_used: u64,
}

/// Counters and gauges for metrics and status.
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
    /// Checkpoint attempts that failed: `snapshot()` trapped, ran out of
    /// fuel or memory, or returned an error.
    pub checkpoint_failures: u64,
    /// While checkpoints fail: the applied index when the first attempt of
    /// this streak failed.
    pub checkpoint_failing_since: Option<u64>,
    /// Bytes of commands applied since the last checkpoint: what rolling
    /// back a trap replays.
    pub uncheckpointed_bytes: u64,
    /// The guest can no longer make progress (see [`StateMachine::stalled`]).
    pub stalled: bool,
}

/// Why a guest should be given no new commands (see
/// [`StateMachine::stalled`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checkpoints of the guest's state fail since index {since_index} ({failure}), and {cause}")]
pub struct Stalled {
    /// The applied index when checkpoints started failing.
    pub since_index: u64,
    /// Why the last checkpoint failed.
    pub failure: GuestFailure,
    pub cause: StallCause,
}

/// What made failing checkpoints a stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StallCause {
    #[error(
        "the {entries} entries ({bytes} bytes) applied since the last checkpoint reached what \
         a rollback may replay ({limit_bytes} bytes or {limit_entries} entries)"
    )]
    TailLimit {
        entries: usize,
        bytes: usize,
        limit_bytes: usize,
        limit_entries: usize,
    },
    #[error("an entry hit the memory limit: the state has no room left")]
    MemoryFull,
}

/// Checkpoints that fail, and when to try again.
#[derive(Debug, Clone)]
struct FailingCheckpoints {
    since_index: u64,
    /// Why the last attempt failed.
    failure: GuestFailure,
    /// Try again once the tail holds this many bytes or entries.
    retry_at_bytes: usize,
    retry_at_entries: usize,
    /// An entry hit the memory cap since checkpoints started failing.
    memory_full: bool,
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
    /// Set while checkpoints fail.
    failing: Option<FailingCheckpoints>,
    /// Counters only; [`Self::stats`] adds the gauges.
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
            failing: None,
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
        RuntimeStats {
            checkpoint_failing_since: self.failing.as_ref().map(|f| f.since_index),
            uncheckpointed_bytes: self.tail_bytes as u64,
            stalled: self.stalled().is_some(),
            ..self.stats
        }
    }

    /// The applied index since which checkpoints fail, if they do. The
    /// node's own snapshot is the same `snapshot()`, so it waits too.
    pub fn checkpoint_failing_since(&self) -> Option<u64> {
        self.failing.as_ref().map(|f| f.since_index)
    }

    /// Whether this guest can no longer make progress: its checkpoints fail,
    /// and either the tail a rollback replays has reached its limit (the
    /// smaller of [`MAX_UNCHECKPOINTED_TAIL_BYTES`] and the memory cap, or
    /// [`MAX_UNCHECKPOINTED_TAIL_ENTRIES`]), or an entry hit the memory cap.
    /// Past that point every trap and every restart replays more than the
    /// guest could ever hold, and the log is never compacted, so the node
    /// refuses new commands (committed ones still apply).
    pub fn stalled(&self) -> Option<Stalled> {
        let failing = self.failing.as_ref()?;
        let limit_bytes = usize::try_from(self.limits.memory_limit_bytes)
            .unwrap_or(usize::MAX)
            .min(MAX_UNCHECKPOINTED_TAIL_BYTES);
        let cause = if failing.memory_full {
            StallCause::MemoryFull
        } else if self.tail_bytes >= limit_bytes
            || self.tail.len() >= MAX_UNCHECKPOINTED_TAIL_ENTRIES
        {
            StallCause::TailLimit {
                entries: self.tail.len(),
                bytes: self.tail_bytes,
                limit_bytes,
                limit_entries: MAX_UNCHECKPOINTED_TAIL_ENTRIES,
            }
        } else {
            return None;
        };
        Some(Stalled {
            since_index: failing.since_index,
            failure: failing.failure.clone(),
            cause,
        })
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
        self.instance.check_host_fault()?;
        self.last_entry = entry;
        self.stats.applied += 1;
        self.stats.apply_fuel += fuel_used;
        match &result {
            Err(failure) if failure.poisons_instance() => {
                self.stats.failures += 1;
                tracing::warn!(index = entry.index, guest = %self.info.name, %failure,
                    "entry failed in the guest; rolling the state back");
                self.rebuild()?;
                if let GuestFailure::MemoryLimit { .. } = failure {
                    self.memory_limit_hit()?;
                }
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

    /// Serialize the current state. A failure counts as a failed
    /// checkpoint: a checkpoint is the same call on the same instance.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, WasmError> {
        match self.instance.snapshot(self.last_entry) {
            Ok(bytes) => Ok(bytes),
            Err(failure) => {
                self.instance.check_host_fault()?;
                self.checkpoint_failed(failure.clone())?;
                Err(WasmError::SnapshotFailed { failure })
            }
        }
    }

    /// Serialize the current state for a component that will run with
    /// `memory_limit_bytes` (an upgrade's). Raising the memory cap is how an
    /// operator moves on a guest whose state no longer fits twice under its
    /// own cap, so when the new cap is larger and the state does not
    /// serialize under the old one, it is serialized in a scratch instance
    /// with the new cap: the last checkpoint restored and the tail replayed,
    /// the live instance left alone. Which instance serializes the state
    /// makes no difference to the bytes, only to whether they fit.
    pub fn snapshot_for_upgrade(&mut self, memory_limit_bytes: u64) -> Result<Vec<u8>, WasmError> {
        let larger = memory_limit_bytes > self.limits.memory_limit_bytes;
        // With checkpoints failing, the live instance would fail again.
        if !larger || self.failing.is_none() {
            match self.snapshot() {
                Ok(bytes) => return Ok(bytes),
                Err(error) if !larger || error.is_local() => return Err(error),
                Err(_) => {}
            }
        }
        let limits = GuestLimits {
            memory_limit_bytes,
            ..self.limits
        };
        let mut scratch = self.replayed_instance(limits)?;
        match scratch.snapshot(self.last_entry) {
            Ok(bytes) => Ok(bytes),
            Err(failure) => {
                scratch.check_host_fault()?;
                Err(WasmError::SnapshotFailed { failure })
            }
        }
    }

    /// Replace the state with `snapshot` (taken at `entry`). On failure the
    /// previous state is kept.
    pub fn restore(&mut self, entry: EntryContext, snapshot: &[u8]) -> Result<(), WasmError> {
        let mut fresh = GuestInstance::new(&self.component, &self.info.name, self.limits)?;
        if let Err(failure) = fresh.restore(entry, snapshot) {
            fresh.check_host_fault()?;
            return Err(WasmError::RestoreRejected {
                reason: failure.to_string(),
            });
        }
        self.instance = fresh;
        self.checkpoint = Some(snapshot.to_vec());
        self.checkpoint_entry = entry;
        self.tail.clear();
        self.tail_bytes = 0;
        self.previous = None;
        self.last_entry = entry;
        self.failing = None;
        Ok(())
    }

    fn maybe_checkpoint(&mut self) -> Result<(), WasmError> {
        if self.checkpoint_due() {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// An entry hit the memory cap. The state may have outgrown half the
    /// cap since the last checkpoint, and then every entry that needs more
    /// memory would be rolled back over the whole tail until the next
    /// checkpoint is due: so unless checkpoints already fail, try one now.
    /// If they fail, the state has no room left and the guest is stalled.
    fn memory_limit_hit(&mut self) -> Result<(), WasmError> {
        if self.failing.is_none() {
            self.checkpoint()?;
        }
        if let Some(failing) = &mut self.failing {
            failing.memory_full = true;
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<(), WasmError> {
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
                if let Some(failing) = self.failing.take() {
                    tracing::info!(guest = %self.info.name, index = self.last_entry.index,
                        failing_since = failing.since_index, "in-memory checkpoints succeed again");
                }
            }
            Err(failure) => {
                self.instance.check_host_fault()?;
                self.checkpoint_failed(failure)?;
            }
        }
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        let (due_bytes, due_entries) = match &self.failing {
            Some(failing) => (failing.retry_at_bytes, failing.retry_at_entries),
            None => {
                let checkpoint_len = self.checkpoint.as_ref().map_or(0, Vec::len);
                (
                    CHECKPOINT_MIN_TAIL_BYTES.max(checkpoint_len),
                    (checkpoint_len / CHECKPOINT_STATE_BYTES_PER_TAIL_ENTRY).clamp(
                        CHECKPOINT_MAX_TAIL_ENTRIES,
                        MAX_UNCHECKPOINTED_TAIL_ENTRIES / 2,
                    ),
                )
            }
        };
        self.tail_bytes >= due_bytes || self.tail.len() >= due_entries
    }

    /// A `snapshot()` of the live instance failed. Rebuild the instance if
    /// the failure poisoned it, and back off: the next attempt waits until
    /// the tail has doubled (and is due by the usual rule), because an
    /// attempt and its rebuild cost about one pass over the state and the
    /// tail, which the entries until the next attempt then pay for.
    fn checkpoint_failed(&mut self, failure: GuestFailure) -> Result<(), WasmError> {
        self.stats.checkpoint_failures += 1;
        let last_size = self.checkpoint.as_ref().map_or(0, Vec::len);
        let retry_at_bytes = (2 * self.tail_bytes).max(CHECKPOINT_MIN_TAIL_BYTES.max(last_size));
        let retry_at_entries = (2 * self.tail.len()).max(CHECKPOINT_MAX_TAIL_ENTRIES);
        match &mut self.failing {
            Some(failing) => {
                tracing::debug!(guest = %self.info.name, %failure, retry_at_bytes,
                    "an in-memory checkpoint failed again");
                failing.failure = failure;
                failing.retry_at_bytes = retry_at_bytes;
                failing.retry_at_entries = retry_at_entries;
            }
            None => {
                tracing::warn!(guest = %self.info.name, index = self.last_entry.index, %failure,
                    checkpoint_index = self.checkpoint_entry.index,
                    memory_limit_bytes = self.limits.memory_limit_bytes,
                    "cannot checkpoint the guest's state any more (a guest serializes its state \
                     in its own memory, so it needs room for it twice). Entries keep applying, but a trap \
                     now replays every entry since the last checkpoint, no snapshot is written \
                     (the log is not compacted), and new commands are refused once that tail \
                     reaches its limit. Raise the memory limit with `raft-host upgrade \
                     --memory-limit-mib`, or move to a store-backed guest");
                self.failing = Some(FailingCheckpoints {
                    since_index: self.last_entry.index,
                    failure,
                    retry_at_bytes,
                    retry_at_entries,
                    memory_full: false,
                });
            }
        }
        if self.instance.is_poisoned() {
            self.rebuild()?;
        }
        Ok(())
    }

    /// Build a new instance holding the state as of the last good entry.
    fn rebuild(&mut self) -> Result<(), WasmError> {
        let started = std::time::Instant::now();
        self.instance = self.replayed_instance(self.limits)?;
        self.stats.rebuilds += 1;
        tracing::info!(guest = %self.info.name, replayed = self.tail.len(),
            elapsed_ms = started.elapsed().as_millis() as u64, "rebuilt guest instance");
        Ok(())
    }

    /// A new instance with `limits`, holding the state as of the last good
    /// entry: the checkpoint restored, the tail replayed.
    fn replayed_instance(&self, limits: GuestLimits) -> Result<GuestInstance, WasmError> {
        let mut instance = GuestInstance::new(&self.component, &self.info.name, limits)?;
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
        Ok(instance)
    }
}

#[cfg(test)]
mod tests;
