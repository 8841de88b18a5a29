//! # iroh-raft: a WebAssembly-pluggable replicated state machine host
//!
//! A node runs Raft consensus (tikv's `raft` crate), keeps its log durably in
//! sled, and applies every committed entry by calling a sandboxed WebAssembly
//! component (wasmtime, component model) that exports the WIT
//! `state-machine` interface from `wit/`. Replicated logic ships as a
//! `.wasm` file; the node never needs recompiling.
//!
//! ## How data flows
//!
//! ```text
//!  client ──HTTP──► api ──NodeHandle──► node (RawNode, one task) ──► storage (sled, fsync)
//!                                          │
//!                                          └─ committed entries ──► wasm (guest component)
//! ```
//!
//! - [`node`]: owns the Raft state machine and the order of persistence,
//!   replication and application.
//! - [`storage`]: the only module that touches sled; durable `raft::Storage`.
//! - [`wasm`]: the only module that touches wasmtime; deterministic guests.
//! - [`api`]: the HTTP/JSON API and its client.
//! - [`metrics`]: Prometheus metrics, served by the API at `GET /metrics`.
//! - [`linearizability`]: checks recorded client histories (tests, simulator).
//!
//! ## Running a single node from code
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! use iroh_raft::node::{self, NodeConfig, NoPeers};
//!
//! let data_dir = tempfile::tempdir()?;
//! let handle = node::start(NodeConfig::new(data_dir.path()), NoPeers)?;
//! let applied = handle.propose(b"add 5".to_vec()).await?;
//! assert_eq!(applied.result.as_deref(), Ok(&b"5"[..]));
//! handle.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod error;
pub mod limits;
pub mod linearizability;
pub mod membership;
pub mod node;
pub mod simulation;
pub mod storage;
pub mod transport;
pub mod wasm;
