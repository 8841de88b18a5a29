//! Who is in the cluster and how to reach them: a member's iroh node id and
//! direct addresses ([`PeerAddr`]), the membership map ([`Members`]) with its
//! encodings (in storage, in configuration changes), and the "ticket" text
//! form operators copy between machines.
//!
//! A leaf module: the node, the storage and the transport all speak it, and
//! it depends on none of them.
//!
//! Ticket: `<raft-id>:<node-id>@<ip:port>[,<ip:port>...]`, e.g.
//! `2:5b7a…c1@127.0.0.1:7802`. The node id (an ed25519 public key) is what
//! authenticates the peer; the addresses only say where to dial.

use crate::limits::MAX_PEER_ADDRS;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use iroh::{EndpointAddr, EndpointId};
use serde::{Deserialize, Serialize};

/// A peer's identity and where to dial it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddr {
    /// The iroh node id (ed25519 public key), hex.
    pub node_id: String,
    /// Direct UDP addresses.
    pub addrs: Vec<SocketAddr>,
}

/// Every member's address, by Raft id (a member added without an address,
/// as a single node is, has none).
pub type Members = BTreeMap<u64, PeerAddr>;

/// A stored or transmitted membership that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable membership: {0}")]
pub struct MembersError(String);

/// The bytes a membership is stored as (JSON: operators read it with
/// ordinary tools, and it is small).
pub fn encode_members(members: &Members) -> Vec<u8> {
    serde_json::to_vec(members).expect("a map of plain addresses always serializes")
}

/// The inverse of [`encode_members`].
pub fn decode_members(bytes: &[u8]) -> Result<Members, MembersError> {
    serde_json::from_slice(bytes).map_err(|e| MembersError(e.to_string()))
}

/// The context of a configuration change that adds `addr` (the bootstrap
/// entry's format: one bare address).
pub fn encode_address(addr: &PeerAddr) -> Vec<u8> {
    serde_json::to_vec(addr).expect("a plain address always serializes")
}

/// The address of `node_id` in a configuration change's context: a map of
/// Raft id to address (this version), or one bare address (entries written
/// by the first version, with v1 changes). `index` is for the log line.
pub fn address_in(index: u64, node_id: u64, context: &[u8]) -> Option<PeerAddr> {
    if context.is_empty() {
        return None;
    }
    if let Ok(mut book) = serde_json::from_slice::<Members>(context) {
        return book.remove(&node_id);
    }
    match serde_json::from_slice::<PeerAddr>(context) {
        Ok(addr) => Some(addr),
        Err(error) => {
            tracing::warn!(index, node = node_id, %error,
                "membership entry has an unreadable address");
            None
        }
    }
}

/// A member of the cluster as operators name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTicket {
    pub raft_id: u64,
    pub addr: PeerAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("a ticket looks like `<raft-id>:<node-id>@<ip:port>[,<ip:port>]`; {0}")]
    Format(String),
}

impl PeerAddr {
    pub fn new(node_id: EndpointId, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        PeerAddr {
            node_id: node_id.to_string(),
            addrs: addrs.into_iter().take(MAX_PEER_ADDRS).collect(),
        }
    }

    /// The node id, if the text is a valid key.
    pub fn endpoint_id(&self) -> Option<EndpointId> {
        EndpointId::from_str(&self.node_id).ok()
    }

    /// What iroh dials.
    pub fn endpoint_addr(&self) -> Option<EndpointAddr> {
        let mut addr = EndpointAddr::new(self.endpoint_id()?);
        for ip in &self.addrs {
            addr = addr.with_ip_addr(*ip);
        }
        Some(addr)
    }
}

impl fmt::Display for NodeTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}@", self.raft_id, self.addr.node_id)?;
        for (i, addr) in self.addr.addrs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{addr}")?;
        }
        Ok(())
    }
}

impl FromStr for NodeTicket {
    type Err = TicketError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (raft_id, rest) = text
            .split_once(':')
            .ok_or_else(|| TicketError::Format("missing `<raft-id>:`".into()))?;
        let raft_id: u64 =
            raft_id.parse().ok().filter(|id| *id != 0).ok_or_else(|| {
                TicketError::Format(format!("`{raft_id}` is not a raft id (> 0)"))
            })?;
        let (node_id, addrs) = rest.split_once('@').unwrap_or((rest, ""));
        let node_id = EndpointId::from_str(node_id)
            .map_err(|e| TicketError::Format(format!("bad node id `{node_id}`: {e}")))?;
        let addrs = addrs
            .split(',')
            .filter(|part| !part.is_empty())
            .map(|part| {
                SocketAddr::from_str(part)
                    .map_err(|e| TicketError::Format(format!("bad address `{part}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if addrs.len() > MAX_PEER_ADDRS {
            return Err(TicketError::Format(format!(
                "at most {MAX_PEER_ADDRS} addresses"
            )));
        }
        Ok(NodeTicket {
            raft_id,
            addr: PeerAddr::new(node_id, addrs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_round_trips_and_rejects_garbage() {
        let key = iroh::SecretKey::generate();
        let ticket = NodeTicket {
            raft_id: 3,
            addr: PeerAddr::new(
                key.public(),
                [
                    "127.0.0.1:7000".parse().expect("addr"),
                    "[::1]:7001".parse().expect("addr"),
                ],
            ),
        };
        let text = ticket.to_string();
        assert_eq!(text.parse::<NodeTicket>(), Ok(ticket));
        for bad in [
            "",
            "x",
            "0:abc@1.2.3.4:5",
            "1:nothex@1.2.3.4:5",
            &format!("1:{}@nope", key.public()),
        ] {
            assert!(bad.parse::<NodeTicket>().is_err(), "{bad}");
        }
    }
}
