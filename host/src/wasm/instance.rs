//! One live guest instance: a wasmtime `Store` plus the instantiated
//! component, and single metered calls into it.
//!
//! A `Store` is long-lived (creating one per call is ~100x slower). After a
//! trap wasmtime refuses to enter the instance again, so a failed call
//! poisons the instance; [`super::StateMachine`] then builds a new one.

use crate::limits::{MAX_ERROR_MESSAGE_BYTES, MAX_RESULT_BYTES};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{EntryMeta, Guest, GuestInfo};
use super::engine::{GuestPreKind, LoadedComponent};
use super::error::{GuestFailure, WasmError};
use super::kv::{StoreIoError, Transaction};
use super::limits::{GuestLimits, MemoryLimitExceeded, MemoryLimiter};
use super::store_bindings::{self, StoreGuest};
use super::wasi::{DeterministicInputs, EntryContext, deterministic_wasi};

/// Everything a guest's `Store` holds.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    /// The running call's view of the guest store (store-backed guests,
    /// during `apply`, `query` and `migrate`).
    kv: Option<Transaction>,
}

impl StoreState {
    /// The running call's store transaction.
    pub(super) fn transaction(&mut self) -> Option<&mut Transaction> {
        self.kv.as_mut()
    }
}

/// The instantiated exports, of either world.
enum Bindings {
    /// A 0.1.0 guest: state in its memory.
    Memory(Guest),
    /// A 0.2.0 guest: state in the host's store.
    Store(StoreGuest),
}

fn store_meta(entry: EntryContext) -> store_bindings::EntryMeta {
    store_bindings::EntryMeta {
        index: entry.index,
        term: entry.term,
        timestamp_ms: entry.timestamp_ms,
    }
}

/// The answer of a 0.1.0-only call made on a store-backed guest.
fn not_in_store_world<R>(call: &str) -> wasmtime::Result<Result<R, String>> {
    Ok(Err(format!(
        "`{call}` is not part of a store-backed guest (its state lives in the host)"
    )))
}

impl std::fmt::Debug for StoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreState")
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// What a successful or failed call cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCost {
    pub fuel_used: u64,
}

/// A live instance of a guest component.
pub struct GuestInstance {
    store: Store<StoreState>,
    bindings: Bindings,
    inputs: DeterministicInputs,
    limits: GuestLimits,
    poisoned: bool,
    /// Fuel the component's start-up code (its core start functions and
    /// initializers) used.
    startup_fuel_used: u64,
}

impl std::fmt::Debug for GuestInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestInstance")
            .field("limits", &self.limits)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl GuestInstance {
    /// Instantiate `component` in a fresh store. The guest's start-up code
    /// runs under the maintenance fuel budget and the memory cap.
    pub fn new(
        component: &LoadedComponent,
        guest_name: &str,
        limits: GuestLimits,
    ) -> Result<Self, WasmError> {
        let inputs = DeterministicInputs::default();
        let state = StoreState {
            wasi: deterministic_wasi(guest_name, &inputs),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory_limit_bytes),
            kv: None,
        };
        let mut store = Store::new(component.pre.engine(), state);
        store.limiter(|state| &mut state.limiter);
        // wasmtime copies at most its "hostcall fuel" (128 MiB by default)
        // out of a guest in one call, results included, so a larger
        // snapshot failed whatever the memory cap. A guest cannot hand out
        // more than its memory holds: the cap bounds the copy instead.
        store.set_hostcall_fuel(usize::try_from(limits.memory_limit_bytes).unwrap_or(usize::MAX));
        store
            .set_fuel(limits.maintenance_fuel)
            .map_err(|e| WasmError::Engine {
                reason: format!("{e:#}"),
            })?;
        let instantiated = match &component.pre {
            GuestPreKind::Memory(pre) => pre.instantiate(&mut store).map(Bindings::Memory),
            GuestPreKind::Store(pre) => pre.instantiate(&mut store).map(Bindings::Store),
        };
        let bindings = match instantiated {
            Ok(bindings) => bindings,
            Err(e) => {
                if let Some(reason) = store.data_mut().limiter.take_host_fault() {
                    return Err(WasmError::HostResources { reason });
                }
                return Err(WasmError::Instantiate {
                    reason: classify(e, limits.maintenance_fuel).to_string(),
                });
            }
        };
        let startup_fuel_used = limits
            .maintenance_fuel
            .saturating_sub(store.get_fuel().unwrap_or(0));
        Ok(GuestInstance {
            store,
            bindings,
            inputs,
            limits,
            poisoned: false,
            startup_fuel_used,
        })
    }

    /// Fuel the instantiation used (out of the maintenance budget).
    pub fn startup_fuel_used(&self) -> u64 {
        self.startup_fuel_used
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// `Err` when the last calls failed because this machine could not
    /// provide memory within the cap ([`super::limits::HostMemoryFault`]):
    /// their failure is local and must not be recorded as a result.
    pub fn check_host_fault(&mut self) -> Result<(), WasmError> {
        match self.store.data_mut().limiter.take_host_fault() {
            Some(reason) => Err(WasmError::HostResources { reason }),
            None => Ok(()),
        }
    }

    /// Linear memory the instance currently holds.
    pub fn memory_bytes(&self) -> u64 {
        self.store.data().limiter.used_bytes()
    }

    pub fn info(&mut self) -> Result<GuestInfo, GuestFailure> {
        let budget = self.limits.maintenance_fuel;
        self.call(
            EntryContext::default(),
            budget,
            |bindings, store| match bindings {
                Bindings::Memory(guest) => guest
                    .iroh_raft_state_machine_state_machine()
                    .call_info(store)
                    .map(Ok),
                Bindings::Store(guest) => guest
                    .iroh_raft_state_machine_state_machine()
                    .call_info(store)
                    .map(|info| {
                        Ok(GuestInfo {
                            name: info.name,
                            version: info.version,
                        })
                    }),
            },
        )
        .map(|(info, _)| info)
    }

    pub fn apply(
        &mut self,
        entry: EntryContext,
        command: &[u8],
    ) -> (Result<Vec<u8>, GuestFailure>, CallCost) {
        let meta = EntryMeta {
            index: entry.index,
            term: entry.term,
            timestamp_ms: entry.timestamp_ms,
        };
        let budget = self.limits.apply_fuel;
        let (result, cost) = self.call_with_cost(entry, budget, |bindings, store| match bindings {
            Bindings::Memory(guest) => guest
                .iroh_raft_state_machine_state_machine()
                .call_apply(store, meta, command),
            Bindings::Store(guest) => guest.iroh_raft_state_machine_state_machine().call_apply(
                store,
                store_meta(entry),
                command,
            ),
        });
        (self.bound_result(result), cost)
    }

    /// Run a read-only query. `entry` is the last applied entry, so that a
    /// guest reading the clock during a query sees a stable time.
    pub fn query(
        &mut self,
        entry: EntryContext,
        request: &[u8],
    ) -> (Result<Vec<u8>, GuestFailure>, CallCost) {
        let budget = self.limits.query_fuel;
        let (result, cost) = self.call_with_cost(entry, budget, |bindings, store| match bindings {
            Bindings::Memory(guest) => guest
                .iroh_raft_state_machine_state_machine()
                .call_query(store, request),
            Bindings::Store(guest) => guest
                .iroh_raft_state_machine_state_machine()
                .call_query(store, request),
        });
        (self.bound_result(result), cost)
    }

    /// Enforce [`MAX_RESULT_BYTES`] on a result and
    /// [`MAX_ERROR_MESSAGE_BYTES`] on an error message. The guest may have
    /// changed its state before returning, so an oversized one poisons the
    /// instance and is rolled back like a trap. (The bytes were already
    /// copied out; the memory cap bounds that copy.)
    fn bound_result(
        &mut self,
        result: Result<Vec<u8>, GuestFailure>,
    ) -> Result<Vec<u8>, GuestFailure> {
        let (size_bytes, limit_bytes) = match &result {
            Ok(bytes) => (bytes.len(), MAX_RESULT_BYTES),
            Err(GuestFailure::Rejected { message }) => (message.len(), MAX_ERROR_MESSAGE_BYTES),
            Err(_) => return result,
        };
        if size_bytes <= limit_bytes {
            return result;
        }
        self.poisoned = true;
        Err(GuestFailure::ResultTooLarge {
            size_bytes: size_bytes as u64,
            limit_bytes: limit_bytes as u64,
        })
    }

    pub fn snapshot(&mut self, entry: EntryContext) -> Result<Vec<u8>, GuestFailure> {
        let budget = self.limits.maintenance_fuel;
        self.call(entry, budget, |bindings, store| match bindings {
            Bindings::Memory(guest) => guest
                .iroh_raft_state_machine_state_machine()
                .call_snapshot(store),
            Bindings::Store(_) => not_in_store_world("snapshot"),
        })
        .map(|(bytes, _)| bytes)
    }

    pub fn restore(&mut self, entry: EntryContext, snapshot: &[u8]) -> Result<(), GuestFailure> {
        let budget = self.limits.maintenance_fuel;
        self.call(entry, budget, |bindings, store| match bindings {
            Bindings::Memory(guest) => guest
                .iroh_raft_state_machine_state_machine()
                .call_restore(store, snapshot),
            Bindings::Store(_) => not_in_store_world("restore"),
        })
        .map(|_| ())
    }

    /// Run a store-backed guest's `migrate` hook at the upgrade `entry`
    /// that made it replace `previous` (under the maintenance budget).
    pub fn migrate(
        &mut self,
        entry: EntryContext,
        previous: &GuestInfo,
    ) -> (Result<(), GuestFailure>, CallCost) {
        let budget = self.limits.maintenance_fuel;
        let previous = store_bindings::GuestInfo {
            name: previous.name.clone(),
            version: previous.version.clone(),
        };
        self.call_with_cost(entry, budget, |bindings, store| match bindings {
            Bindings::Memory(_) => Ok(Err(
                "`migrate` is only part of store-backed guests".to_string()
            )),
            Bindings::Store(guest) => guest.iroh_raft_state_machine_state_machine().call_migrate(
                store,
                store_meta(entry),
                &previous,
            ),
        })
    }

    /// Give the next calls `tx` as their view of the store.
    pub fn begin(&mut self, tx: Transaction) {
        self.store.data_mut().kv = Some(tx);
    }

    /// Take back the transaction given to [`Self::begin`].
    pub fn finish(&mut self) -> Option<Transaction> {
        self.store.data_mut().kv.take()
    }

    fn call_with_cost<R>(
        &mut self,
        entry: EntryContext,
        budget: u64,
        f: impl FnOnce(&Bindings, &mut Store<StoreState>) -> wasmtime::Result<Result<R, String>>,
    ) -> (Result<R, GuestFailure>, CallCost) {
        match self.call(entry, budget, f) {
            Ok((value, cost)) => (Ok(value), cost),
            Err(failure) => {
                let fuel_used = budget.saturating_sub(self.store.get_fuel().unwrap_or(0));
                (Err(failure), CallCost { fuel_used })
            }
        }
    }

    /// One metered call. Any failure other than the guest's own `err` poisons
    /// the instance.
    fn call<R>(
        &mut self,
        entry: EntryContext,
        budget: u64,
        f: impl FnOnce(&Bindings, &mut Store<StoreState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<(R, CallCost), GuestFailure> {
        if self.poisoned {
            return Err(GuestFailure::Trapped {
                message: "instance was poisoned by an earlier trap".into(),
            });
        }
        self.inputs.set_entry(entry);
        if let Err(e) = self.store.set_fuel(budget) {
            // Only fails when fuel is not enabled, which the engine always is.
            self.poisoned = true;
            return Err(GuestFailure::Trapped {
                message: format!("{e:#}"),
            });
        }
        let outcome = f(&self.bindings, &mut self.store);
        let fuel_used = budget.saturating_sub(self.store.get_fuel().unwrap_or(0));
        let cost = CallCost { fuel_used };
        match outcome {
            Ok(Ok(value)) => Ok((value, cost)),
            Ok(Err(message)) => Err(GuestFailure::Rejected { message }),
            Err(e) => {
                self.poisoned = true;
                Err(classify(e, budget))
            }
        }
    }
}

/// Turn a wasmtime error from a call into the deterministic failure we
/// record. The message is the trap code or the root cause only, never a
/// backtrace with addresses, so it is identical on every replica.
fn classify(error: wasmtime::Error, budget: u64) -> GuestFailure {
    if let Some(io) = error.downcast_ref::<StoreIoError>() {
        // Never recorded: the state machine sees the transaction's error
        // and stops the node instead.
        return GuestFailure::Trapped {
            message: io.to_string(),
        };
    }
    if let Some(limit) = error.downcast_ref::<MemoryLimitExceeded>() {
        return GuestFailure::MemoryLimit {
            limit_bytes: limit.limit_bytes,
        };
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        if *trap == Trap::OutOfFuel {
            return GuestFailure::OutOfFuel { budget };
        }
        return GuestFailure::Trapped {
            message: trap.to_string(),
        };
    }
    GuestFailure::Trapped {
        message: error.root_cause().to_string(),
    }
}
