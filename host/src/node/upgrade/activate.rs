//! Applying an upgrade: the applier switches components at an activation
//! entry (migrating the state), and runs dry runs beside the active one.

use crate::limits::MAX_COMPONENT_BYTES;
use crate::node::upgrade::ComponentHistoryExt as _;
use crate::node::upgrade::LimitOverridesExt as _;
use tokio::sync::{mpsc, oneshot};

use super::canary::{self, CanaryInput, Side};
use super::canary_store::{self, StoreCanaryInput};
use super::fetch;
use super::{
    Activation, ActivationKind, ActivationOutcome, ComponentHistory, ComponentRecord, DryRunReport,
    LimitOverrides,
};
use crate::node::applier::{Applier, ApplyJob, Candidate, store_mark};
use crate::wasm::kv::{CommitMark, CommittedState, EntryChanges, WriteSet};
use crate::wasm::{EntryContext, GuestFailure, GuestInfo, GuestMachine, WasmError};

/// What a successful migration produced: the next machine, and for a
/// store-backed guest the writes of its `migrate` hook (committed with the
/// activation).
type Migrated = (GuestMachine, WriteSet);

impl Applier {
    /// Apply an activation entry: switch to the named component, migrating
    /// the state (a 0.1.0 guest's through `snapshot()` → `restore()`, a
    /// store-backed guest's through the new component's `migrate` hook, in
    /// one transaction), or stay on the current one if anything fails. The result is the new history record (JSON)
    /// or the reason, identical on every replica. Only the node stopping
    /// while it fetches the component is an `Err` (the entry is then not
    /// applied, and is again after a restart).
    pub(in crate::node) fn activate(
        &mut self,
        entry: EntryContext,
        activation: &Activation,
        rx: &mpsc::Receiver<ApplyJob>,
    ) -> Result<Result<Vec<u8>, GuestFailure>, WasmError> {
        // The cluster's limits are part of the replicated state: what the
        // upgrade does not set stays as the active component has it.
        let limits = activation.limits.resolve(self.machine.limits());
        let mut record = ComponentRecord {
            index: entry.index,
            kind: activation.kind,
            hash: activation.hash.clone(),
            size_bytes: activation.size_bytes,
            name: String::new(),
            version: String::new(),
            timestamp_ms: entry.timestamp_ms,
            limits: LimitOverrides::all(limits),
            outcome: ActivationOutcome::Activated,
        };
        // Everything applied before reaches the store first: the new
        // component's `migrate` reads it, and the activation commits next.
        self.machine.flush()?;
        let mut store_writes = None;
        let result = match self.migrate(entry, activation, rx)? {
            Ok((mut next, writes)) => {
                store_writes = Some(writes);
                next.continue_stats(&self.machine);
                record.name = next.info().name.clone();
                record.version = next.info().version.clone();
                tracing::info!(index = entry.index, kind = ?activation.kind,
                    from = %self.machine.component().hash, to = %activation.hash,
                    name = %record.name, version = %record.version, "activated a component");
                self.machine = next;
                // Queries of the state committed at this index on run the
                // new component.
                self.shared.publish_read_target(
                    entry.index,
                    &self.machine,
                    self.env.guest_store.committed().index,
                );
                self.shared.set_guest(&self.machine);
                Ok(serde_json::to_vec(&record).unwrap_or_default())
            }
            Err((reason, info)) => {
                if let Some(info) = info {
                    record.name = info.name;
                    record.version = info.version;
                }
                tracing::warn!(index = entry.index, hash = %activation.hash, %reason,
                    "component activation failed; the previous component stays active");
                record.outcome = ActivationOutcome::Failed {
                    reason: reason.clone(),
                };
                Err(GuestFailure::UpgradeFailed { reason })
            }
        };
        self.history.record(record);
        self.shared.set_history(&self.history);
        if let GuestMachine::Store(_) = &self.machine {
            // The migration's writes (if it succeeded) and the new history
            // commit with the activation's index, atomically.
            let mark = store_mark(entry.index, entry.term, &self.history);
            let writes = store_writes.unwrap_or_default();
            let changes: Vec<EntryChanges> =
                EntryChanges::of(entry.index, &writes).into_iter().collect();
            let mut mark: CommitMark<'_> = (&mark).into();
            mark.changes = &changes;
            self.env.guest_store.commit(&writes, mark)?;
        }
        Ok(result)
    }

    /// Build the next state machine: the new component holding the current
    /// state. `Ok(Err((reason, info)))` is a deterministic failure (with
    /// the new component's `info()` if it got that far).
    pub(in crate::node) fn migrate(
        &mut self,
        entry: EntryContext,
        activation: &Activation,
        rx: &mpsc::Receiver<ApplyJob>,
    ) -> Result<Result<Migrated, (String, Option<GuestInfo>)>, WasmError> {
        let Some(hash) = activation.component_hash() else {
            return Ok(Err((
                format!("`{}` is not a component hash", activation.hash),
                None,
            )));
        };
        if activation.size_bytes > MAX_COMPONENT_BYTES {
            return Ok(Err((
                format!(
                    "the component is {} bytes, over the limit of {MAX_COMPONENT_BYTES}",
                    activation.size_bytes
                ),
                None,
            )));
        }
        // Checked when proposed; an entry from elsewhere (an older node)
        // fails here, alike on every replica.
        if let Err(reason) = activation.limits.check() {
            return Ok(Err((
                format!("the upgrade's limits are out of range: {reason}"),
                None,
            )));
        }
        let bytes = fetch::obtain(
            &self.env.components,
            self.env.fetch.as_ref(),
            hash,
            activation,
            &|| rx.is_closed(),
        )
        .map_err(|error| WasmError::Instantiate {
            reason: format!(
                "cannot apply the activation at index {}: {error}",
                entry.index
            ),
        })?;
        let limits = activation.limits.resolve(self.machine.limits());
        let next = self
            .env
            .engine
            .load(&bytes)
            .and_then(|component| self.env.new_machine(component, limits));
        let mut next = match next {
            Ok(next) => next,
            // This node's disk or memory failed, not the component: stop
            // applying here rather than record a failure the other replicas
            // do not have.
            Err(error) if error.is_local() => return Err(error),
            Err(error) => {
                return Ok(Err((
                    format!("the new component does not load: {error}"),
                    None,
                )));
            }
        };
        let info = Some(next.info().clone());
        match (&mut self.machine, &mut next) {
            (GuestMachine::Memory(current), GuestMachine::Memory(fresh)) => {
                let state = match current.snapshot_for_upgrade(limits.memory_limit_bytes) {
                    Ok(state) => state,
                    Err(error) if error.is_local() => return Err(error),
                    Err(error) => {
                        return Ok(Err((
                            format!("the active component's snapshot failed: {error}"),
                            info,
                        )));
                    }
                };
                Ok(match fresh.restore(entry, &state) {
                    Ok(()) => Ok((next, WriteSet::new())),
                    Err(error) if error.is_local() => return Err(error),
                    Err(error) => Err((
                        format!("the new component's restore of the current state failed: {error}"),
                        info,
                    )),
                })
            }
            (GuestMachine::Store(current), GuestMachine::Store(fresh)) => {
                Ok(match fresh.migrate(entry, current.info())? {
                    Ok(writes) => Ok((next, writes)),
                    Err(failure) => Err((
                        format!("the new component's migrate failed: {failure}"),
                        info,
                    )),
                })
            }
            (current, _) => Ok(Err((
                format!(
                    "the new component is a {}, the active one a {}: an upgrade cannot move \
                     state between guest memory and the host's store",
                    next.world(),
                    current.world()
                ),
                info,
            ))),
        }
    }

    /// Start a dry run: copy the current state and the replay window, and
    /// compare on a thread of its own.
    pub(in crate::node) fn dry_run(
        &mut self,
        candidate: Candidate,
        reply: oneshot::Sender<Result<DryRunReport, String>>,
    ) {
        let active = Side {
            component: self.machine.component().clone(),
            limits: self.machine.limits(),
            info: self.machine.info().clone(),
        };
        let (candidate_compile_ms, entries) = (candidate.compile_ms, candidate.entries);
        let candidate = Side {
            component: candidate.component,
            limits: candidate.limits.resolve(self.machine.limits()),
            info: candidate.info,
        };
        let applied_index = self.shared.applied_index();
        if let Err(error) = self.machine.flush() {
            let _ = reply.send(Err(error.to_string()));
            return;
        }
        let run: Box<dyn FnOnce() -> DryRunReport + Send> = match &mut self.machine {
            GuestMachine::Memory(machine) => {
                // As the activation would take it (see `migrate`).
                let current_state = machine
                    .snapshot_for_upgrade(candidate.limits.memory_limit_bytes)
                    .map_err(|e| e.to_string());
                let input = CanaryInput {
                    active,
                    candidate,
                    compile_ms: candidate_compile_ms,
                    applied_index,
                    current_state,
                    current_entry: machine.last_entry(),
                    window: machine.replay_window(),
                    entries,
                };
                Box::new(move || canary::run(input))
            }
            GuestMachine::Store(machine) => {
                let input = StoreCanaryInput {
                    active,
                    candidate,
                    compile_ms: candidate_compile_ms,
                    applied_index,
                    live: machine.state().clone(),
                    current_entry: machine.last_entry(),
                    recent: machine.recent_commands(),
                    entries,
                };
                Box::new(move || canary_store::run(input))
            }
        };
        let spawned = std::thread::Builder::new()
            .name("dry-run".into())
            .spawn(move || {
                let _ = reply.send(Ok(run()));
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start a dry run thread");
        }
    }
}

/// The history of a node that starts from scratch: the genesis component,
/// with the limits the cluster was created with (the machine runs them).
pub fn genesis_history(machine: &GuestMachine) -> ComponentHistory {
    ComponentHistory::new(ComponentRecord {
        index: 0,
        kind: ActivationKind::Genesis,
        hash: machine.component().hash.to_hex(),
        size_bytes: machine.component().size_bytes,
        name: machine.info().name.clone(),
        version: machine.info().version.clone(),
        timestamp_ms: 0,
        limits: LimitOverrides::all(machine.limits()),
        outcome: ActivationOutcome::Activated,
    })
}
