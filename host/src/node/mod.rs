//! The node: one Raft replica driving one guest state machine.
//!
//! The public surface fits on one screen: [`start`] a node from a
//! [`NodeConfig`] and a [`Transport`], then talk to it through its
//! [`NodeHandle`] (propose, query, status, membership, snapshots,
//! upgrades). Errors a client can act on are [`ClientError`]; errors that
//! stop a node are [`NodeError`]. Everything else is internal.
//!
//! ```text
//!  NodeHandle (clone) ──NodeMsg──►  driver loop (tokio task)  ◄── tick interval
//!     propose / query / status       │  owns NodeCore = RawNode + Ready handling
//!                                    │   1. step / tick / propose
//!                                    │   2. Ready: persist entries + hard state
//!                                    │      (one sled batch, fsync)   ──► storage
//!                                    │   3. messages that depend on it ──► Transport
//!                                    │   4. committed entries ──ApplyJob──► applier thread
//!                                    ▼                                     │ StateMachine (wasm)
//!                              oneshot replies ◄──────── applied results ──┘
//! ```
//!
//! Logic and I/O are split as in raft-rs's own examples: `core::NodeCore`
//! is synchronous and does no I/O but storage (one file per concern: reads,
//! proposals, membership, Ready handling, snapshots); `round` is one turn of
//! the loop, written once and run both by `driver` (the thin async loop on
//! a tokio task) and by the deterministic simulation; `applier` runs the
//! guest on its own thread; [`upgrade`] holds everything about switching
//! components. The types that cross module boundaries live in small leaf
//! modules: `inbox` (the loop's input messages), `ports` (what the node
//! needs from outside: [`Transport`], [`Forwarder`]) and `admission`
//! (whether the applier lets the core take new commands). `forwarded`
//! is how a command a follower forwarded outlives its leader, applied
//! exactly once. A client is
//! answered only after its entry is durable (fsynced), committed and applied.
//!
//! **Restart.** The guest's state lives in memory. On start the node
//! restores the latest snapshot file into a fresh instance (see
//! [`snapshot`]) and tells raft-rs that nothing beyond the snapshot is
//! applied, so raft-rs hands every later committed entry to the applier
//! again, in order: each entry is applied exactly once to the state being
//! rebuilt.
//!
//! **Snapshots.** Every [`SnapshotPolicy`] entries or bytes the applier writes
//! a snapshot file; the node records it in storage and compacts the log
//! behind it. A follower too far behind receives the file from the leader,
//! streamed in chunks by the transport.

mod admission;
mod answers;
pub(crate) mod applier;
mod apply_hold;
mod assemble;
mod config;
pub(crate) mod core;
pub(crate) mod divergence;
pub(crate) mod driver;
pub mod envelope;
mod error;
pub mod forwarded;
mod handle;
pub(crate) mod inbox;
mod logger;
pub mod metrics;
pub(crate) mod persist;
mod ports;
mod randomness;
pub(crate) mod round;
pub mod snapshot;
mod start;
mod status;
pub mod upgrade;

pub use self::applier::{Applied, AppliedRecord, QueryAnswer};
pub use self::config::{ClusterMode, GuestSource, NodeConfig};
pub use self::core::{Consistency, MembershipChange, SnapshotInfo};

pub use self::error::{ClientError, ForwardError, NodeError};
pub use self::forwarded::{ForwardId, ForwardTag};
pub use self::handle::NodeHandle;
pub use self::inbox::{NodeInbox, NodeMsg};
pub use self::ports::{Forwarder, NoPeers, NodeLink, PeerFuture, PeerView, Transport};
pub use self::snapshot::SnapshotPolicy;
pub use self::start::start;
pub use self::status::{GuestStatus, MemberStatus, NodeStatus};

pub(crate) use self::assemble::{NodeParts, PartsOverrides, assemble};
