//! [`Host`]: a running networked node, its router and its API.

use std::net::SocketAddr;

use iroh::Endpoint;
use iroh::protocol::Router;

use crate::api::ServeHandle;
use crate::node::{ClientError, MembershipChange, NodeHandle};
use crate::transport::{NodeTicket, PeerAddr, RaftProtocolHandler};

/// A running node with its endpoint, router and (optional) API. Dropping
/// it aborts the router; [`Self::shutdown`] stops everything in order.
#[derive(Debug)]
pub struct Host {
    pub(super) node: NodeHandle,
    pub(super) ticket: NodeTicket,
    pub(super) endpoint: Endpoint,
    pub(super) handler: RaftProtocolHandler,
    pub(super) router: Option<Router>,
    pub(super) api: Option<ServeHandle>,
}

impl Host {
    /// Propose, query, change the membership, take snapshots, upgrade.
    pub fn node(&self) -> &NodeHandle {
        &self.node
    }

    /// This node's Raft id.
    pub fn id(&self) -> u64 {
        self.ticket.raft_id
    }

    /// What other nodes dial, and what a leader needs to add this node.
    pub fn ticket(&self) -> &NodeTicket {
        &self.ticket
    }

    /// This node's iroh id and the addresses in its ticket.
    pub fn addr(&self) -> &PeerAddr {
        &self.ticket.addr
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Where the HTTP API listens, if it was asked for.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(|server| server.local_addr)
    }

    /// The API's URL (`https://` when it serves TLS), if it serves one.
    pub fn api_url(&self) -> Option<String> {
        self.api.as_ref().map(ServeHandle::url)
    }

    /// The `iroh-raft/0` handler, for a router of your own
    /// ([`HostBuilder::external_router`](super::HostBuilder::external_router)).
    pub fn protocol_handler(&self) -> RaftProtocolHandler {
        self.handler.clone()
    }

    /// The router the host spawned (none with an external router).
    pub fn router(&self) -> Option<&Router> {
        self.router.as_ref()
    }

    /// Add the node in `ticket` as a voter (ask the leader): it joins as a
    /// learner, catches up and is promoted; resolves once it votes.
    pub async fn add_voter(&self, ticket: &NodeTicket) -> Result<u64, ClientError> {
        let change = MembershipChange::AddVoter {
            id: ticket.raft_id,
            addr: ticket.addr.clone(),
        };
        self.node.change_membership(change).await
    }

    /// Wait until the node stops; returns the fatal error, if any.
    pub async fn stopped(&self) -> Option<String> {
        self.node.stopped().await
    }

    /// Stop the node (everything acknowledged is durable), then the API
    /// (it stops with the node) and the router, which closes the endpoint.
    pub async fn shutdown(self) {
        self.node.shutdown().await;
        if let Some(api) = self.api {
            let _ = api.task.await;
        }
        if let Some(router) = &self.router
            && let Err(error) = router.shutdown().await
        {
            tracing::warn!(%error, "the router did not shut down cleanly");
        }
    }
}
