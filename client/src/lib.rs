//! Clients for the HTTP API of [iroh-raft] nodes: an async [`Client`]
//! (tokio, reqwest) and a [`blocking::Client`] (ureq), with the same calls.
//!
//! This crate is what a program that *talks to* a cluster depends on. It
//! does not pull in the node (wasmtime, sled, iroh): only an HTTP stack,
//! rustls (ring) and serde. The node's crate (`iroh-raft`) uses the wire
//! types defined here ([`types`], [`status`], [`upgrade`], [`watch`]), so
//! they exist once.
//!
//! # Calls
//!
//! Propose a command and query the state (text or bytes), with the read
//! consistency of your choice:
//!
//! ```no_run
//! use iroh_raft_client::{Client, Consistency};
//!
//! # async fn run() -> Result<(), iroh_raft_client::Error> {
//! let client = Client::new("127.0.0.1:7700")?;
//! let applied = client.propose("put greeting hello").await?;
//! println!("applied at index {}: {}", applied.index, applied.output.display());
//! let read = client.query_with("get greeting", Consistency::Stale).await?;
//! println!("{}", read.output.display());
//! # Ok(())
//! # }
//! ```
//!
//! Besides: [`status`](Client::status), [`health`](Client::health),
//! [`metrics`](Client::metrics), membership
//! ([`add_member`](Client::add_member),
//! [`change_members`](Client::change_members),
//! [`remove_member`](Client::remove_member)),
//! [`transfer_leader`](Client::transfer_leader),
//! [`snapshot`](Client::snapshot) and
//! [`download_snapshot`](Client::download_snapshot) (a backup), upgrades
//! ([`upgrade`](Client::upgrade) (blocking, with the bytes sent so far:
//! [`upgrade_with_progress`](blocking::Client::upgrade_with_progress)),
//! [`dry_run`](Client::dry_run),
//! [`rollback`](Client::rollback), [`components`](Client::components),
//! [`results`](Client::results)) and [`watch`](Client::watch).
//!
//! # Endpoints and failover
//!
//! A client takes one endpoint or several (`http://host:port`,
//! `https://...`, or a bare `host:port` meaning `http://host:port`; a list,
//! or one string with commas). With several:
//!
//! - a call starts at the endpoint that answered last;
//! - when a node cannot be reached, the call goes to the next endpoint;
//! - when a node answers `not_leader` with a `leader_hint` (a Raft id), the
//!   call goes to the endpoint whose node has that id (the client learns
//!   each endpoint's id from its `/v1/status`, when needed);
//! - retries are bounded ([`RetryPolicy`]: by default four attempts per
//!   endpoint, pausing between rounds through the list), and a call that
//!   found no node able to serve it fails with [`Error::Unavailable`], which
//!   lists what each attempt met.
//!
//! **Writes are never sent twice blindly.** A proposal (or any call that
//! changes something) goes to another node only when the first attempt
//! provably did not reach a node (the connection could not be opened) or a
//! node refused it before doing anything (`not_leader`, `overloaded`,
//! `too_many_connections`). After a timeout, or a connection lost while
//! waiting for the answer, the node may have applied it: the error
//! ([`Error::Transport`] with `connect: false`, or the API's
//! `outcome_unknown`) goes back to the caller, who knows whether the
//! command is safe to repeat. Reads are retried on any transport error.
//! With a single endpoint a client never retries.
//!
//! ```no_run
//! use iroh_raft_client::{Client, ClientOptions};
//!
//! # async fn run() -> Result<(), iroh_raft_client::Error> {
//! let options = ClientOptions {
//!     token: Some(std::fs::read_to_string("write.token").expect("token").trim().into()),
//!     ca_certs_pem: Some(std::fs::read("api.crt").expect("certificate")),
//!     ..Default::default()
//! };
//! let client = Client::with_options(
//!     ["https://10.0.0.1:7700", "https://10.0.0.2:7700", "https://10.0.0.3:7700"],
//!     &options,
//! )?;
//! client.propose("incr visits").await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Watch
//!
//! [`Client::watch`] streams the changes of the keys under a prefix, one
//! item per log entry ([`Changes`]), for guests that keep their state in
//! the node's store. It resumes by itself across dropped connections and
//! node failures (on the next endpoint, from the last index it delivered),
//! so each change arrives once; when the node no longer holds the changes
//! it must resume from, it ends with [`Error::Compacted`]: read the state
//! again, then watch from a fresh `since`.
//!
//! ```no_run
//! use futures_core::Stream;
//! use iroh_raft_client::{Client, Error, WatchOp};
//!
//! # async fn run() -> Result<(), Error> {
//! let client = Client::new(["127.0.0.1:7701", "127.0.0.1:7702"])?;
//! let mut watch = client.watch("config/", None);
//! while let Some(changes) = watch.next().await {
//!     let changes = changes?;
//!     for event in &changes.events {
//!         match (event.op, &event.value) {
//!             (WatchOp::Put, Some(value)) => {
//!                 println!("{} put {} {}", changes.index, event.key.display(), value.display())
//!             }
//!             _ => println!("{} delete {}", changes.index, event.key.display()),
//!         }
//!     }
//! }
//! # Ok(())
//! # }
//! # fn is_stream(_: impl Stream) {}
//! ```
//!
//! # Blocking
//!
//! [`blocking::Client`] has the same calls without `async`, and its
//! [`watch`](blocking::Client::watch) is an [`Iterator`]:
//!
//! ```no_run
//! use iroh_raft_client::blocking::Client;
//!
//! # fn run() -> Result<(), iroh_raft_client::Error> {
//! let client = Client::with_options("127.0.0.1:7701,127.0.0.1:7702", &Default::default())?;
//! println!("{}", client.propose("add 5")?.output.display());
//! for changes in client.watch("", Some(100))? {
//!     println!("{}", changes?.to_json_line());
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! `async` (the [`Client`]) and `blocking` (the [`blocking::Client`], which
//! needs `async` for its watch), both on by default. Without either, the
//! crate is the wire types alone.
//!
//! [iroh-raft]: https://github.com/iroh-raft/iroh-raft

// Without a client, the request plumbing has no user.
#![cfg_attr(not(feature = "async"), allow(dead_code))]

#[cfg(feature = "blocking")]
pub mod blocking;
#[cfg(feature = "async")]
mod client;
mod config;
mod endpoint;
pub mod error;
pub mod failover;
pub mod limits;
pub mod status;
#[cfg(feature = "async")]
mod tls;
pub mod types;
pub mod upgrade;
pub mod watch;
#[cfg(feature = "async")]
mod watch_stream;

#[cfg(feature = "async")]
pub use client::Client;
pub use config::ClientOptions;
pub use endpoint::{IntoEndpoints, parse_endpoint, parse_endpoints};
pub use error::{Attempt, Error};
pub use failover::RetryPolicy;
pub use status::{
    AppliedRecord, ApplierBusy, Consistency, Divergence, GuestStatus, GuestWorld, MemberStatus,
    NodeStatus, SnapshotInfo, StoreSize,
};
pub use types::{
    AddMemberRequest, ErrorBody, ErrorInfo, HealthResponse, MembershipResponse, Output,
    ProposeRequest, ProposeResponse, QueryRequest, QueryResponse, ReadyResponse,
    TransferLeaderRequest, TransferLeaderResponse, UpgradeParams, UpgradeResponse,
};
#[cfg(feature = "async")]
pub use watch::Watch;
pub use watch::{Changes, WatchEvent, WatchLine, WatchOp};

/// The default address of a node's API.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:7700";
