//! The WebAssembly runtime: guests as deterministic state machines.
//!
//! ```text
//!  component bytes ──► WasmEngine::load ──► LoadedComponent (validated, compiled, cached)
//!                                              │
//!                                              ▼
//!                       StateMachine::new ──► GuestInstance (Store + instance, fuel, memory cap,
//!                                              │               deterministic WASI)
//!  committed entries ──► StateMachine::apply ──┘  on trap: rebuild = checkpoint + replay
//! ```
//!
//! This module owns wasmtime: the [`WasmEngine`], compiled components and the
//! one long-lived `Store` per state machine. It knows nothing about Raft; the
//! node hands it entries in log order. See [`state_machine`] for the rollback
//! rule and [`wasi`] for what "deterministic WASI" means here;
//! [`conformance`] checks a component against the contract from outside
//! (`raft-host guest check`); [`examples`] reads the commands a guest
//! suggests (its `iroh-raft:examples` custom section).

mod bindings;
pub mod conformance;
pub mod engine;
pub mod error;
pub mod examples;
pub mod instance;
pub mod kv;
pub mod limits;
pub mod machine;
pub mod state_machine;
mod store_bindings;
pub mod store_machine;
pub mod store_reader;
pub mod wasi;

pub use bindings::{EntryMeta, GuestInfo};
pub use engine::{CompiledComponent, ComponentHash, GuestWorld, LoadedComponent, WasmEngine};
pub use error::{GuestFailure, WasmError};
pub use limits::GuestLimits;
pub use machine::GuestMachine;
pub use state_machine::{
    ApplyOutcome, ReplayWindow, RuntimeStats, StallCause, Stalled, StateMachine,
};
pub use store_machine::StoreMachine;
pub use store_reader::StoreReader;
pub use wasi::EntryContext;

/// The built-in default guest (the counter), compiled from `guests/counter`
/// by the build script and embedded in the binary.
pub static DEFAULT_GUEST: &[u8] = include_bytes!(env!("IROH_RAFT_GUEST_COUNTER"));
