//! [`BoundHost`]: a node whose endpoint is bound (its ticket known) but
//! that does not run yet. A joining node waits here until a leader adds it.

use crate::limits::JOIN_POLL_INTERVAL;
use std::collections::BTreeMap;

use iroh::Endpoint;
use iroh::protocol::Router;

use super::builder::{Entry, HostBuilder, Routing};
use super::error::HostError;
use super::running::Host;
use crate::api;
use crate::node::{self, ClusterMode};
use crate::transport::{IrohTransport, NodeTicket, PeerAddr, RAFT_ALPN};

/// A node between [`HostBuilder::bind`] and [`Self::start`].
#[derive(Debug)]
pub struct BoundHost {
    builder: HostBuilder,
    transport: IrohTransport,
    /// The data dir held no cluster when bound.
    fresh: bool,
    /// The membership a joining node was added to.
    joined: Option<BTreeMap<u64, PeerAddr>>,
}

impl BoundHost {
    pub(super) fn new(builder: HostBuilder, transport: IrohTransport, fresh: bool) -> Self {
        BoundHost {
            builder,
            transport,
            fresh,
            joined: None,
        }
    }

    /// What other nodes dial, and what a leader needs to add this node.
    pub fn ticket(&self) -> NodeTicket {
        self.transport.ticket()
    }

    pub fn endpoint(&self) -> &Endpoint {
        self.transport.endpoint()
    }

    /// Give up before starting: close the endpoint (a dropped one is
    /// logged by iroh as an error).
    pub async fn close(self) {
        self.transport.endpoint().close().await;
    }

    /// The data dir holds no cluster yet (joining and restoring need this).
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Ask the member in the join ticket for the membership until it
    /// includes this node (a leader adds it meanwhile), calling `waiting`
    /// with the attempt number after every try that was not yet it. Does
    /// nothing unless the node joins a cluster; [`Self::start`] calls it.
    pub async fn wait_until_added(&mut self, mut waiting: impl FnMut(u64)) {
        let Entry::Join(ticket) = &self.builder.entry else {
            return;
        };
        if !self.fresh || self.joined.is_some() {
            return;
        }
        let id = self.builder.node.id;
        let mut attempt = 0u64;
        loop {
            match self.transport.fetch_members(ticket).await {
                Ok(members) if members.contains_key(&id) => {
                    self.joined = Some(members);
                    return;
                }
                Ok(_) => tracing::debug!(id, "not a member yet"),
                Err(error) => tracing::debug!(id, %error, "cannot ask for the membership yet"),
            }
            waiting(attempt);
            attempt += 1;
            tokio::time::sleep(JOIN_POLL_INTERVAL).await;
        }
    }

    /// Start the node, its router and its API. A joining node first waits
    /// until it is added (see [`Self::wait_until_added`]).
    pub async fn start(mut self) -> Result<Host, HostError> {
        self.wait_until_added(|_| {}).await;
        let BoundHost {
            builder,
            transport,
            fresh,
            joined,
        } = self;
        let HostBuilder {
            node: mut config,
            entry,
            directory,
            api_addr,
            api_config,
            routing,
            ..
        } = builder;
        let local_addr = transport.local_addr();
        let endpoint = transport.endpoint().clone();
        config.cluster = match (entry, joined) {
            (_, Some(members)) => ClusterMode::Join { members },
            (Entry::Restore(backup), _) if fresh => ClusterMode::Restore {
                backup,
                addr: Some(local_addr),
            },
            (Entry::Restore(_), _) => {
                endpoint.close().await;
                return Err(HostError::NotEmpty(config.data_dir));
            }
            _ => ClusterMode::NewClusterAt(local_addr),
        };
        let ticket = transport.ticket();
        config.forwarder = Some(transport.forwarder());
        config.directory = Some(std::sync::Arc::new(directory));
        config.peer_stats = Some(transport.peer_stats_registry());
        config.ticket = Some(ticket.to_string());
        let acceptor = transport.acceptor();
        let node = match node::start(config, transport) {
            Ok(node) => node,
            Err(error) => {
                // Closed, not dropped: iroh logs a dropped endpoint as an
                // ERROR, which would come before (and look like) the cause.
                endpoint.close().await;
                return Err(HostError::Node(error));
            }
        };
        let handler = acceptor.handler(node.inbox());
        let router = match routing {
            Routing::Own(protocols) => {
                let mut router =
                    Router::builder(endpoint.clone()).accept(RAFT_ALPN, handler.clone());
                for (alpn, protocol) in protocols {
                    router = router.accept(alpn, protocol);
                }
                Some(router.spawn())
            }
            Routing::Caller => None,
        };
        let api = match api_addr {
            None => None,
            Some(addr) => match api::serve_with(node.clone(), addr, api_config).await {
                Ok(server) => Some(server),
                Err(source) => {
                    node.shutdown().await;
                    if let Some(router) = &router {
                        let _ = router.shutdown().await;
                    }
                    endpoint.close().await;
                    return Err(HostError::Api { addr, source });
                }
            },
        };
        Ok(Host {
            node,
            ticket,
            endpoint,
            handler,
            router,
            api,
        })
    }
}
