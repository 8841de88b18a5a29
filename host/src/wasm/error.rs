//! Errors of the wasm runtime.
//!
//! Two kinds, kept apart on purpose:
//! - [`WasmError`]: the runtime itself could not do its job (a file that is not
//!   a component, a missing export, an unsatisfiable import, a replay that
//!   diverged). These happen at load time or signal a bug/nondeterminism.
//! - [`GuestFailure`]: a *deterministic result* of one call into a guest. It
//!   is identical on every replica and is recorded as that entry's result.

use serde::{Deserialize, Serialize};

/// The runtime could not load or run a guest.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("cannot read guest file {path}: {source}")]
    ReadFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("guest is {size_bytes} bytes, more than the limit of {limit_bytes} bytes")]
    TooLarge { size_bytes: u64, limit_bytes: u64 },
    #[error(
        "not a WebAssembly component: {reason} (guests must be components, e.g. built for wasm32-wasip2)"
    )]
    NotAComponent { reason: String },
    #[error("the component does not export the iroh-raft state-machine interface: {reason}")]
    InterfaceMismatch { reason: String },
    #[error("the component imports something the host cannot provide deterministically: {reason}")]
    UnsupportedImport { reason: String },
    #[error("instantiating the guest failed: {reason}")]
    Instantiate { reason: String },
    #[error("the guest's restore rejected the snapshot: {reason}")]
    RestoreRejected { reason: String },
    #[error("the guest failed while taking a snapshot: {failure}")]
    SnapshotFailed { failure: GuestFailure },
    #[error(
        "replaying entry {index} after an instance rebuild gave a different outcome ({reason}); \
         the guest is not deterministic"
    )]
    ReplayDiverged { index: u64, reason: String },
    #[error("component cache I/O on {path}: {source}")]
    Cache {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("wasmtime engine configuration: {reason}")]
    Engine { reason: String },
    /// The guest store on this node could not be read or written. Local,
    /// never a replicated result: the node stops applying.
    #[error(transparent)]
    StoreIo(#[from] super::kv::StoreIoError),
    /// This machine failed to provide a resource the guest was entitled to
    /// (memory within its cap). Local, never a replicated result: the node
    /// stops applying.
    #[error("the host could not provide a guest resource: {reason}")]
    HostResources { reason: String },
    /// A call that only one world has was made on a guest of the other.
    #[error("{call} is not supported by a {world}")]
    WrongWorld {
        call: &'static str,
        world: super::GuestWorld,
    },
}

impl WasmError {
    /// An error of this machine (its disk, its memory, its configuration),
    /// not of the component: it must stop this node, never become an
    /// entry's result, which every replica has to agree on.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            WasmError::ReadFile { .. }
                | WasmError::Cache { .. }
                | WasmError::Engine { .. }
                | WasmError::StoreIo(_)
                | WasmError::HostResources { .. }
        )
    }
}

/// Why one call into a guest produced no value. Deterministic: every replica
/// that makes the same call from the same state gets the same failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GuestFailure {
    /// The guest returned `err(message)`; its state is unchanged.
    #[error("guest returned an error: {message}")]
    Rejected { message: String },
    /// The guest trapped (panic, `unreachable`, stack overflow, ...). The host
    /// rolled its state back to before the call.
    #[error("guest trapped: {message}")]
    Trapped { message: String },
    /// The call used its whole fuel budget. Rolled back like a trap.
    #[error("guest ran out of fuel (budget {budget} units)")]
    OutOfFuel { budget: u64 },
    /// The guest tried to grow its memory beyond the cap. Rolled back like a
    /// trap.
    #[error("guest exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: u64 },
    /// A component activation (upgrade or rollback) failed; the previous
    /// component and its state stay active.
    #[error("upgrade failed: {reason}")]
    UpgradeFailed { reason: String },
    /// The guest's result is larger than [`crate::limits::MAX_RESULT_BYTES`],
    /// or its error message than [`crate::limits::MAX_ERROR_MESSAGE_BYTES`].
    /// Rolled back like a trap, so the state is the same whether or not the
    /// oversized result was wanted.
    #[error("guest result of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    ResultTooLarge { size_bytes: u64, limit_bytes: u64 },
}

impl GuestFailure {
    /// A stable, machine-readable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            GuestFailure::Rejected { .. } => "guest_rejected",
            GuestFailure::Trapped { .. } => "guest_trapped",
            GuestFailure::OutOfFuel { .. } => "guest_out_of_fuel",
            GuestFailure::MemoryLimit { .. } => "guest_memory_limit",
            GuestFailure::UpgradeFailed { .. } => "upgrade_failed",
            GuestFailure::ResultTooLarge { .. } => "guest_result_too_large",
        }
    }

    /// True when the call did not complete and the instance had to be
    /// discarded (everything but a plain `err` result).
    pub fn poisons_instance(&self) -> bool {
        !matches!(
            self,
            GuestFailure::Rejected { .. } | GuestFailure::UpgradeFailed { .. }
        )
    }
}
