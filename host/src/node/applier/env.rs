//! What the applier needs from its surroundings: the engine, the stores,
//! the network (to fetch components, to report state hashes) and a clock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::node::admission::Admission;
use crate::node::metrics::NodeInstruments;
use crate::node::upgrade::fetch::PeerFetch;
use crate::storage::{ComponentStore, GuestStore};
use crate::wasm::{
    GuestLimits, GuestMachine, GuestWorld, LoadedComponent, StateMachine, StoreMachine, WasmEngine,
    WasmError,
};

/// What the applier needs besides the state machine: how to build another
/// one (when a snapshot brings a different component) and where snapshot
/// files and components live.
#[derive(Debug, Clone)]
pub struct ApplierEnv {
    pub node_id: u64,
    pub engine: WasmEngine,
    pub limits: GuestLimits,
    pub components: ComponentStore,
    /// The state of store-backed guests (beside the Raft log).
    pub guest_store: GuestStore,
    pub snapshot_dir: PathBuf,
    /// Downloads components from peers; `None` for a node without a
    /// network.
    pub fetch: Option<PeerFetch>,
    /// Where this node's state hashes go (to its peers); `None` for a node
    /// without a network.
    pub state_hashes: Option<mpsc::UnboundedSender<(u64, [u8; 32])>>,
    /// The clock snapshot headers are stamped with.
    pub wall_clock: WallClock,
    /// Hash the whole state after every applied entry (see
    /// [`AppliedRecord::state_hash`]). Costs a `snapshot()` per entry: for
    /// simulations, off in production.
    pub hash_states: bool,
    /// Where the applier says whether the guest takes new commands.
    pub admission: Admission,
    /// Run a store-backed guest's queries on the applier, between entries
    /// in log order, instead of on a thread beside it: for simulations,
    /// whose answers must not depend on thread timing.
    pub queries_in_log_order: bool,
    /// Apply and snapshot durations for `/metrics`.
    pub instruments: NodeInstruments,
}

impl ApplierEnv {
    /// Instantiate `component` as a state machine of its world: a
    /// store-backed guest runs over this node's guest store.
    pub fn new_machine(
        &self,
        component: LoadedComponent,
        limits: GuestLimits,
    ) -> Result<GuestMachine, WasmError> {
        Ok(match component.world() {
            GuestWorld::Memory => StateMachine::new(component, limits)?.into(),
            GuestWorld::Store => {
                StoreMachine::new(component, limits, Arc::new(self.guest_store.clone()))?.into()
            }
        })
    }
}

/// Where the applier reads the wall clock: the system's, or a
/// simulation's virtual one (so a seeded run writes the same bytes twice).
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl WallClock {
    /// Milliseconds since the Unix epoch, from the system clock.
    pub fn system() -> Self {
        WallClock(Arc::new(unix_now_ms))
    }

    /// A clock that reads `now_ms`.
    pub fn new(now_ms: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        WallClock(Arc::new(now_ms))
    }

    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

/// Milliseconds since the Unix epoch, from the system clock (0 before it).
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WallClock")
    }
}
