//! Every module's error type, in one place.
//!
//! Errors a client can act on ([`ClientError`], [`GuestFailure`]) are kept
//! apart from fatal ones ([`NodeError`], [`StorageError`]): after a fatal
//! error the node stops rather than carrying on with possibly lost state.

pub use crate::api::ApiClientError;
pub use crate::node::{ClientError, NodeError};
pub use crate::storage::StorageError;
pub use crate::wasm::{GuestFailure, WasmError};
