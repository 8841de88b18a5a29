//! What the applier publishes for status pages, readable from any thread.

use crate::limits::RECENT_RESULTS_CAPACITY;
use crate::node::forwarded::ForwardWaiters;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::AppliedRecord;
use super::reader::ReadTargets;
use crate::node::divergence::Divergence;
use crate::node::upgrade::ComponentHistory;
use crate::storage::GuestStore;
use crate::wasm::kv::{CommittedState, StoreSize};
use crate::wasm::{ComponentHash, GuestInfo, GuestMachine, GuestWorld, RuntimeStats};

/// The entry the applier has been on, and for how long (a wire type).
pub use iroh_raft_client::ApplierBusy;

/// One applied entry's [`AppliedRecord`] as the applier keeps it: hashes
/// as bytes, so recording one costs no hex strings on every replica's
/// applier for every entry; `/v1/results` formats the few it serves.
#[derive(Debug, Clone, Copy)]
pub(in crate::node) struct ResultRecord {
    pub index: u64,
    pub component: ComponentHash,
    pub ok: bool,
    pub result_hash: blake3::Hash,
    pub state_hash: Option<blake3::Hash>,
}

impl ResultRecord {
    fn to_wire(self) -> AppliedRecord {
        AppliedRecord {
            index: self.index,
            component: self.component.to_hex(),
            ok: self.ok,
            result_hash: self.result_hash.to_hex().to_string(),
            state_hash: self.state_hash.map(|hash| hash.to_hex().to_string()),
        }
    }
}

/// What the applier publishes for status pages, readable from any thread.
#[derive(Debug)]
pub struct ApplierShared {
    pub(super) applied_index: AtomicU64,
    pub(super) guest: Mutex<(GuestInfo, String)>,
    pub(super) world: Mutex<GuestWorld>,
    /// The running guest's command examples (its `iroh-raft:examples`).
    pub(super) examples: Mutex<Arc<[String]>>,
    /// The guest store (read for its size when the guest is store-backed).
    pub(super) store: GuestStore,
    pub(super) stats: Mutex<RuntimeStats>,
    pub(super) history: Mutex<ComponentHistory>,
    pub(super) recent: Mutex<VecDeque<ResultRecord>>,
    /// The divergence verdict and the last verified state check.
    pub(super) divergence: Mutex<(Option<Divergence>, Option<u64>)>,
    /// The components queries run, by the index they apply from.
    pub(super) read_targets: ReadTargets,
    /// The leader's timestamp of the last command applied (the clock a
    /// query on the query thread sees).
    pub(super) last_timestamp_ms: AtomicU64,
    /// The entry being applied now and since when (ms after `epoch`, plus
    /// one; 0: none), so status can show an applier that is stuck.
    pub(super) busy_index: AtomicU64,
    pub(super) busy_since: AtomicU64,
    pub(super) epoch: std::time::Instant,
    /// The forwarded commands of this node's clients, settled by what the
    /// applier applies (see [`crate::node::forwarded`]).
    pub(crate) forwards: ForwardWaiters,
}

impl ApplierShared {
    /// The node stopped on a fatal error: leave the guest store unflushed
    /// (see [`GuestStore::abandon`]).
    pub(crate) fn abandon_store(&self) {
        self.store.abandon();
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index.load(Ordering::Acquire)
    }
    /// The entry the applier is on now and for how long, if it is on one.
    pub fn busy(&self) -> Option<ApplierBusy> {
        let since = self.busy_since.load(Ordering::Acquire);
        let index = self.busy_index.load(Ordering::Acquire);
        (since != 0).then(|| ApplierBusy {
            index,
            for_ms: (self.epoch.elapsed().as_millis() as u64).saturating_sub(since - 1),
        })
    }
    pub(super) fn set_busy(&self, index: Option<u64>) {
        match index {
            Some(index) => {
                self.busy_index.store(index, Ordering::Release);
                let now = self.epoch.elapsed().as_millis() as u64;
                self.busy_since.store(now + 1, Ordering::Release);
            }
            None => self.busy_since.store(0, Ordering::Release),
        }
    }
    /// The running guest's name/version and component hash.
    pub fn guest(&self) -> (GuestInfo, String) {
        self.guest.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// The running guest's command examples (`propose ...`, `query ...`).
    pub fn examples(&self) -> Arc<[String]> {
        self.examples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// Where the running guest keeps its state.
    pub fn world(&self) -> GuestWorld {
        *self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// The guest store, when the guest is store-backed (for watchers).
    pub fn store_if_used(&self) -> Option<&GuestStore> {
        match self.world() {
            GuestWorld::Store => Some(&self.store),
            GuestWorld::Memory => None,
        }
    }
    /// Keys and bytes in the store, when the guest is store-backed.
    pub fn store_size(&self) -> Option<StoreSize> {
        match self.world() {
            GuestWorld::Store => self.store.size().ok(),
            GuestWorld::Memory => None,
        }
    }
    pub fn stats(&self) -> RuntimeStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Set once this node's state disagreed with the majority's.
    pub fn diverged(&self) -> Option<Divergence> {
        self.divergence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }
    /// The latest state check a majority agreed with this node on.
    pub fn last_verified_state_check(&self) -> Option<u64> {
        self.divergence.lock().unwrap_or_else(|p| p.into_inner()).1
    }
    /// The component history (the active component and every activation).
    pub fn history(&self) -> ComponentHistory {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// Results of the applied entries with index ≥ `since` still kept.
    pub fn recent_results(&self, since: u64, limit: usize) -> Vec<AppliedRecord> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let start = recent.partition_point(|r| r.index < since);
        recent
            .iter()
            .skip(start)
            .take(limit)
            .map(|record| record.to_wire())
            .collect()
    }
    pub(in crate::node) fn set_guest(&self, machine: &GuestMachine) {
        *self.guest.lock().unwrap_or_else(|p| p.into_inner()) =
            (machine.info().clone(), machine.component().hash.to_hex());
        *self.world.lock().unwrap_or_else(|p| p.into_inner()) = machine.world();
        *self.examples.lock().unwrap_or_else(|p| p.into_inner()) =
            machine.component().examples.clone();
    }
    /// `machine` answers queries of the store's state from `from_index`
    /// on (call it before committing anything at that index; the store is
    /// at `store_at` now).
    pub(in crate::node) fn publish_read_target(
        &self,
        from_index: u64,
        machine: &GuestMachine,
        store_at: u64,
    ) {
        self.read_targets.publish(from_index, machine, store_at);
    }
    pub(in crate::node) fn set_history(&self, history: &ComponentHistory) {
        *self.history.lock().unwrap_or_else(|p| p.into_inner()) = history.clone();
    }
    pub(in crate::node) fn push_result(&self, record: ResultRecord) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        // A restore moves the applied index back (restart replays): keep the
        // list ordered by index.
        while recent.back().is_some_and(|last| last.index >= record.index) {
            recent.pop_back();
        }
        if recent.len() == RECENT_RESULTS_CAPACITY {
            recent.pop_front();
        }
        recent.push_back(record);
    }
}
