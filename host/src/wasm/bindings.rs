//! Host-side bindings generated from `wit/state-machine.wit`.
//!
//! Kept alone in this file (as wasmtime's examples do) so the generated code
//! never mixes with host logic.

wasmtime::component::bindgen!({
    path: "wit",
    world: "guest",
});

pub use exports::iroh_raft::state_machine::state_machine::{EntryMeta, GuestInfo};
