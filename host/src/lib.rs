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
//! Each arrow is an import: a module only calls the ones below it, and
//! none calls back up (the node reaches the network through its ports,
//! [`node::Transport`] and [`node::Forwarder`], which the transport
//! implements).
//!
//! ```text
//!   client (CLI, HTTP)           host: HostBuilder wires the rest together
//!        │ HTTP/JSON
//!        ▼
//!      api ──NodeHandle──►  node ◄──NodeInbox── transport ◄──iroh-raft/0── peers
//!                            │  driver loop: one round (round.rs) =       ▲
//!                            │  inputs → core (RawNode) → Ready:          │
//!                            │   persist ─────────────► storage (sled,    │
//!                            │   messages ──Transport port────────────────┘
//!                            │   committed entries ──► applier thread ──► wasm (guest)
//!                            ▼
//!              limits, membership (leaf modules every layer uses)
//! ```
//!
//! - [`node`]: the Raft replica. Its front door is a handful of types
//!   ([`node::start`], [`node::NodeHandle`], [`node::NodeConfig`],
//!   [`node::NodeStatus`], [`node::ClientError`]); inside, `core/` (one
//!   file per concern: reads, proposals, membership, Ready handling,
//!   snapshots), `round.rs` (the loop round shared by the driver and the
//!   simulation), `applier/` (the guest's thread), `upgrade/` (everything
//!   about switching components), `metrics.rs`.
//! - [`storage`]: the only module that touches sled, and the owner of the
//!   data dir ([`storage::DataDir`]: every path on disk), the component
//!   files and the typed metadata beside the log.
//! - [`wasm`]: the only module that touches wasmtime; deterministic guests.
//! - [`transport`]: the `iroh-raft/0` protocol between nodes, over iroh.
//! - [`host`]: assembles a networked node (endpoint, router, node, API).
//! - [`api`]: the HTTP/JSON API and its client.
//! - [`limits`]: every size, count, capacity and timeout, with the
//!   compile-time checks between them.
//! - [`membership`]: members, their addresses and tickets.
//! - [`simulation`]: the deterministic cluster simulation (real node core,
//!   virtual time, a simulated network).
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
//!
//! ## Embedding a cluster
//!
//! [`host::HostBuilder`] does what the `raft-host` binary does: it binds an
//! iroh endpoint, serves `iroh-raft/0` on a router, starts the node and,
//! if asked, the HTTP API. A second node binds first (its ticket is what
//! the leader adds), then starts once it is a member:
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> anyhow::Result<()> {
//! use iroh_raft::host::HostBuilder;
//!
//! let (dir1, dir2) = (tempfile::tempdir()?, tempfile::tempdir()?);
//! let first = HostBuilder::new(dir1.path()).start().await?;
//! let joining = HostBuilder::new(dir2.path())
//!     .id(2)
//!     .join(first.ticket().clone())
//!     .bind()
//!     .await?;
//! let ticket = joining.ticket();
//! let (added, second) = tokio::join!(first.add_voter(&ticket), joining.start());
//! let second = second?;
//! added?;
//! // A follower forwards the proposal to the leader.
//! let applied = second.node().propose(b"add 5".to_vec()).await?;
//! assert_eq!(applied.result.as_deref(), Ok(&b"5"[..]));
//! second.shutdown().await;
//! first.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! `examples/embedded_cluster.rs` grows three nodes the same way.

pub mod api;
mod background_thread;
pub mod error;
pub mod host;
pub mod limits;
pub mod linearizability;
pub mod membership;
pub mod node;
pub mod simulation;
pub mod storage;
pub mod transport;
pub mod wasm;
