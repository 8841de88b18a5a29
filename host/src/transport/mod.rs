//! The `iroh-raft/0` protocol: Raft between nodes over iroh.
//!
//! ```text
//!  node ──Transport::send(Vec<Message>)──► IrohTransport ──► PeerSender (one per peer)
//!                                                           │  control lane: votes, heartbeats, ...
//!                                                           │  bulk lane: appends, snapshots
//!                                                           ▼  one QUIC stream per lane, frames batched
//!                                  peer's RaftProtocolHandler ──► its node's inbox (NodeInbox::deliver_raft)
//! ```
//!
//! A `MsgSnapshot` does not go through the lanes: its file is streamed in
//! chunks on a stream of its own ([`snapshot`]), then the message is handed
//! to the peer's Raft.
//!
//! - Peers are iroh endpoints: a node id is an ed25519 public key, verified
//!   in the TLS handshake. Only node ids in the cluster's membership (plus
//!   ones an operator added) may speak the protocol; everyone else is refused
//!   right after the handshake ([`directory::AllowlistHook`]), and a Raft
//!   message must carry the Raft id that belongs to the connection's node id.
//!   An empty allowlist allows nobody.
//! - Frames are length-prefixed bincode ([`codec`]), with a hard size limit
//!   checked before any allocation; every request frame is answered in order
//!   (delivery confirmation); see [`message`].
//! - The transport never touches `RawNode`: it forwards decoded messages to
//!   the node's inbox and sends what the node hands it.
//! - A peer that dials in may have restarted: the connection held to it
//!   then leads to its dead process, so it must answer a heartbeat at once
//!   or it is closed, and a starting node greets every member so they check
//!   theirs (`liveness`).
//! - Offline by default: no relay, no discovery, no port mapping; peers are
//!   dialed at the direct addresses in their tickets.

pub mod codec;
pub mod directory;
mod forward;
pub mod handler;
pub mod identity;
mod liveness;
pub mod message;
pub mod net;
pub mod protobuf_input;
pub mod sender;
pub mod snapshot;

pub use crate::membership::{NodeTicket, PeerAddr, TicketError};
pub use directory::{AllowlistHook, PeerDirectory};
pub use handler::RaftProtocolHandler;
pub use net::{Acceptor, IrohTransport, RelayChoice, TransportConfig, TransportError};

/// The ALPN of the protocol: a named interface, kept across frame changes
/// because the nodes of one cluster run the same build (see [`message`]).
pub const RAFT_ALPN: &[u8] = b"iroh-raft/0";
