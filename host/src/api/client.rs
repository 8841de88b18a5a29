//! The clients of the HTTP API live in the client crate
//! (`iroh_raft_client`); the names the CLI, tests and benchmarks have
//! always used are kept here.

/// Why a call failed (`iroh_raft_client::Error`).
pub use iroh_raft_client::Error as ApiClientError;
/// The blocking client (`iroh_raft_client::blocking::Client`).
pub use iroh_raft_client::blocking::Client as ApiClient;
pub use iroh_raft_client::{ClientOptions, DEFAULT_API_URL};
