//! Queries of a store-backed guest (WIT 0.2.0) on an instance of their
//! own, so they run beside the applier instead of between its entries.
//!
//! A query is read-only: it runs in a read-only [`Transaction`] over the
//! committed state. The caller keeps that state from changing during the
//! call (the node pins its store, see `storage::GuestStore::pin`), so all
//! the reads of one query see the state at one applied index.

use std::sync::Arc;

use super::engine::LoadedComponent;
use super::error::{GuestFailure, WasmError};
use super::instance::{CallCost, GuestInstance};
use super::kv::{Access, CommittedState, Transaction};
use super::limits::GuestLimits;
use super::wasi::EntryContext;

/// A store-backed component instantiated for queries only.
#[derive(Debug)]
pub struct StoreReader {
    component: LoadedComponent,
    name: String,
    limits: GuestLimits,
    instance: GuestInstance,
    state: Arc<dyn CommittedState>,
}

impl StoreReader {
    /// Instantiate `component` (whose `info()` name is `name`) to answer
    /// queries over `state`.
    pub fn new(
        component: LoadedComponent,
        name: &str,
        limits: GuestLimits,
        state: Arc<dyn CommittedState>,
    ) -> Result<Self, WasmError> {
        let instance = GuestInstance::new(&component, name, limits)?;
        Ok(StoreReader {
            component,
            name: name.to_owned(),
            limits,
            instance,
            state,
        })
    }

    /// The component this reader runs.
    pub fn component(&self) -> &LoadedComponent {
        &self.component
    }

    pub fn limits(&self) -> GuestLimits {
        self.limits
    }

    /// Run a query; `entry` is the last entry the state includes (the
    /// clock the guest sees). An `Err` is the store's local I/O failure.
    pub fn query(
        &mut self,
        entry: EntryContext,
        request: &[u8],
    ) -> Result<(Result<Vec<u8>, GuestFailure>, u64), WasmError> {
        let (component, name, limits) = (&self.component, &self.name, self.limits);
        let ran = query_over(
            &mut self.instance,
            self.state.clone(),
            entry,
            request,
            || GuestInstance::new(component, name, limits),
        )?;
        Ok((ran.result, ran.fuel_used))
    }
}

/// What one query did.
pub(super) struct QueryRun {
    pub result: Result<Vec<u8>, GuestFailure>,
    pub fuel_used: u64,
    /// The call poisoned the instance, which was replaced.
    pub rebuilt: bool,
}

/// Run one query on `instance` in a read-only transaction over `state`,
/// replacing the instance (with `rebuild`) if the call poisoned it.
pub(super) fn query_over(
    instance: &mut GuestInstance,
    state: Arc<dyn CommittedState>,
    entry: EntryContext,
    request: &[u8],
    rebuild: impl FnOnce() -> Result<GuestInstance, WasmError>,
) -> Result<QueryRun, WasmError> {
    instance.begin(Transaction::new(state, Access::ReadOnly));
    let (result, CallCost { fuel_used }) = instance.query(entry, request);
    let io_error = instance.finish().and_then(|tx| tx.io_error().cloned());
    if let Some(error) = io_error {
        return Err(error.into());
    }
    let rebuilt = instance.is_poisoned();
    if rebuilt {
        *instance = rebuild()?;
    }
    Ok(QueryRun {
        result,
        fuel_used,
        rebuilt,
    })
}
