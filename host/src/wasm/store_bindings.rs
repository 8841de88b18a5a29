//! Host-side bindings generated from `wit/v0.2.0` (the `store-guest`
//! world), kept alone like [`super::bindings`].
//!
//! Only the exports are used from here: the `store` import is linked by
//! hand in [`super::kv::link`], because its functions need the wasmtime
//! store itself (to charge fuel), which generated host traits do not get.

wasmtime::component::bindgen!({
    path: "wit/v0.2.0",
    world: "store-guest",
});

pub use self::iroh_raft::state_machine::store::{KvPair, StoreError, StoreLimits, StoreSize};
pub use self::iroh_raft::state_machine::types::{EntryMeta, GuestInfo};
