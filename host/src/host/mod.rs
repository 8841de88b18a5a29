//! Assembling a networked node: [`HostBuilder`] → [`BoundHost`] → [`Host`].
//!
//! ```text
//!  HostBuilder ──bind()──► BoundHost ──start()──► Host
//!   data dir, guest,        endpoint bound,        node running, NodeHandle
//!   cluster entry,          ticket known;          Router: RAFT_ALPN ► RaftProtocolHandler
//!   endpoint, API           a joining node         (+ your protocols), HTTP API,
//!                           waits to be added      shutdown()
//! ```
//!
//! This is what the `raft-host` binary does, as a library: bind an iroh
//! endpoint (or take yours), start the node over an
//! [`IrohTransport`](crate::transport::IrohTransport), serve
//! `iroh-raft/0` on a router (the host's, with your protocols next to it,
//! or yours with [`Host::protocol_handler`]), and serve the HTTP API if
//! asked. The split between binding and starting exists because a new
//! member's ticket is needed before it can run: a leader adds it
//! ([`Host::add_voter`]) while it waits in [`BoundHost::start`].

mod bound;
mod builder;
mod error;
mod running;

pub use bound::BoundHost;
pub use builder::HostBuilder;
pub use error::HostError;
pub use running::Host;

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod tests;
