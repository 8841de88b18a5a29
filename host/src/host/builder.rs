//! [`HostBuilder`]: what a networked node is made of, set before anything
//! binds.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use iroh::protocol::DynProtocolHandler;
use iroh::{Endpoint, EndpointId};

use super::bound::BoundHost;
use super::error::HostError;
use super::running::Host;
use crate::api::{ApiConfig, ApiLimits, ApiTls, ApiTokens};
use crate::node::{GuestSource, NodeConfig, SnapshotPolicy};
use crate::storage::DataDir;
use crate::transport::{
    IrohTransport, NodeTicket, PeerDirectory, RelayChoice, TransportConfig, TransportError,
    identity, net,
};
use crate::wasm::GuestLimits;

/// How a node with an empty data dir enters a cluster (ignored once the
/// data dir holds one).
#[derive(Debug, Clone, Default)]
pub(super) enum Entry {
    /// A new cluster, this node its only voter.
    #[default]
    New,
    /// Join the cluster of the member in the ticket, once a leader added
    /// this node.
    Join(NodeTicket),
    /// A new single-node cluster from a backup snapshot file.
    Restore(PathBuf),
}

/// Where the node's iroh endpoint comes from.
#[derive(Debug)]
pub(super) enum Network {
    /// Bind one, as configured.
    Bind(TransportConfig),
    /// The caller's (shared with their protocols), and the addresses for
    /// the ticket instead of its bound sockets.
    Given {
        endpoint: Endpoint,
        advertise: Vec<SocketAddr>,
    },
}

/// Who serves incoming connections on the endpoint.
#[derive(Debug)]
pub(super) enum Routing {
    /// The host: a `Router` with the Raft protocol and these others.
    Own(Vec<(Vec<u8>, Box<dyn DynProtocolHandler>)>),
    /// The caller, with [`Host::protocol_handler`] on a router of theirs.
    Caller,
}

/// Assembles a networked node: its iroh endpoint, the `iroh-raft/0`
/// protocol on a router, the node, and optionally the HTTP API.
///
/// Defaults: node id 1, a new cluster, the built-in counter guest, an
/// endpoint on a free loopback port with relays off, no API. A fixed
/// port ([`Self::bind_addr`]) keeps the node's ticket valid across
/// restarts.
#[derive(Debug)]
pub struct HostBuilder {
    pub(super) node: NodeConfig,
    pub(super) entry: Entry,
    pub(super) network: Network,
    pub(super) directory: PeerDirectory,
    pub(super) api_addr: Option<SocketAddr>,
    pub(super) api_config: ApiConfig,
    pub(super) routing: Routing,
}

impl HostBuilder {
    /// A node keeping its log, snapshots, components and secret key in
    /// `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        HostBuilder {
            node: NodeConfig::new(data_dir),
            entry: Entry::New,
            network: Network::Bind(TransportConfig {
                bind_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                advertise_addrs: Vec::new(),
                relay: RelayChoice::Disabled,
            }),
            directory: PeerDirectory::new(),
            api_addr: None,
            api_config: ApiConfig::default(),
            routing: Routing::Own(Vec::new()),
        }
    }

    /// Raft id of this node (non-zero, unique in the cluster).
    pub fn id(mut self, id: u64) -> Self {
        self.node.id = id;
        self
    }

    /// The guest a new cluster starts with (an existing data dir keeps its
    /// own; given here, it must be one the cluster has run).
    pub fn guest(mut self, guest: GuestSource) -> Self {
        self.node.guest = guest;
        self
    }

    pub fn limits(mut self, limits: GuestLimits) -> Self {
        self.node.limits = limits;
        self
    }

    pub fn snapshot_policy(mut self, policy: SnapshotPolicy) -> Self {
        self.node.snapshot = policy;
        self
    }

    /// How long validating an upgrade's component may take on this node.
    pub fn compile_budget(mut self, budget: Duration) -> Self {
        self.node.compile_budget = budget;
        self
    }

    /// Committed entries between state hash comparisons (0: never).
    pub fn state_check_every(mut self, entries: u64) -> Self {
        self.node.state_check_every = entries;
        self
    }

    /// Keep the changes of this many applied entries for watchers to resume
    /// from (store-backed guests; 0: none).
    pub fn watch_history(mut self, entries: u64) -> Self {
        self.node.watch_history_entries = entries;
        self
    }

    /// Tests only: run this node's wall clock `ms` ahead (negative: behind).
    pub fn clock_skew_ms(mut self, ms: i64) -> Self {
        self.node.clock_skew_ms = ms;
        self
    }

    /// Tests only: serve reads from local state, breaking linearizability.
    pub fn unsafe_local_reads(mut self, unsafe_local_reads: bool) -> Self {
        self.node.unsafe_local_reads = unsafe_local_reads;
        self
    }

    /// Join the cluster of the member in `ticket`: the node waits until a
    /// leader adds it (e.g. [`Host::add_voter`] with this node's ticket).
    pub fn join(mut self, ticket: NodeTicket) -> Self {
        self.entry = Entry::Join(ticket);
        self
    }

    /// Start a new single-node cluster from a backup snapshot file; the
    /// data dir must be empty.
    pub fn restore_from(mut self, backup: impl AsRef<Path>) -> Self {
        self.entry = Entry::Restore(backup.as_ref().to_path_buf());
        self
    }

    /// Bind the endpoint this way (ignored with [`Self::endpoint`]).
    pub fn transport(mut self, config: TransportConfig) -> Self {
        self.network = Network::Bind(config);
        self
    }

    /// Bind the endpoint to this UDP address.
    pub fn bind_addr(mut self, addr: SocketAddr) -> Self {
        if let Network::Bind(config) = &mut self.network {
            config.bind_addr = addr;
        }
        self
    }

    /// Use this endpoint instead of binding one; its key is the node's
    /// identity (keep it across restarts). Build it with
    /// [`net::endpoint_builder`] for the node's QUIC timeouts. `advertise`
    /// replaces its bound sockets in the ticket when not empty. The Raft
    /// handler refuses non-members itself; an [`AllowlistHook`] on
    /// [`Self::directory`] refuses them earlier, for every protocol.
    ///
    /// [`AllowlistHook`]: crate::transport::AllowlistHook
    pub fn endpoint(mut self, endpoint: Endpoint, advertise: Vec<SocketAddr>) -> Self {
        self.network = Network::Given {
            endpoint,
            advertise,
        };
        self
    }

    /// Share this peer directory (the allowlist) with the node.
    pub fn directory(mut self, directory: PeerDirectory) -> Self {
        self.directory = directory;
        self
    }

    /// Also let this iroh node connect (besides the members).
    pub fn allow(self, node_id: EndpointId) -> Self {
        self.directory.allow_extra(node_id);
        self
    }

    /// Serve the HTTP/JSON API here (port 0 picks one). Without tokens
    /// ([`Self::api_tokens`]) an address beyond loopback is refused unless
    /// [`Self::api_insecure`].
    pub fn api(mut self, addr: SocketAddr) -> Self {
        self.api_addr = Some(addr);
        self
    }

    /// Host names the API also answers to, besides IP addresses and
    /// `localhost` (requests naming another host are refused: see
    /// [`crate::api::guard`]).
    pub fn api_allowed_hosts(mut self, names: impl IntoIterator<Item = String>) -> Self {
        self.api_config.access.allowed_hosts.extend(names);
        self
    }

    /// Require a bearer token on the API (see [`crate::api::auth`]).
    pub fn api_tokens(mut self, tokens: ApiTokens) -> Self {
        self.api_config.tokens = Some(tokens);
        self
    }

    /// Serve the API over TLS.
    pub fn api_tls(mut self, tls: ApiTls) -> Self {
        self.api_config.tls = Some(tls);
        self
    }

    /// The API's limits on connections and slow clients.
    pub fn api_limits(mut self, limits: ApiLimits) -> Self {
        self.api_config.limits = limits;
        self
    }

    /// Serve the API without tokens beyond loopback (something in front of
    /// it authenticates clients).
    pub fn api_insecure(mut self, insecure: bool) -> Self {
        self.api_config.insecure = insecure;
        self
    }

    /// All of the API's configuration at once.
    pub fn api_config(mut self, config: ApiConfig) -> Self {
        self.api_config = config;
        self
    }

    /// Serve another protocol on the node's router, next to Raft. The
    /// node's own endpoint then has no [`AllowlistHook`] (it would refuse
    /// strangers on every protocol); the Raft handler still refuses them.
    ///
    /// [`AllowlistHook`]: crate::transport::AllowlistHook
    pub fn accept(
        mut self,
        alpn: impl AsRef<[u8]>,
        handler: impl Into<Box<dyn DynProtocolHandler>>,
    ) -> Self {
        match &mut self.routing {
            Routing::Own(protocols) => protocols.push((alpn.as_ref().to_vec(), handler.into())),
            Routing::Caller => {
                self.routing = Routing::Own(vec![(alpn.as_ref().to_vec(), handler.into())])
            }
        }
        self
    }

    /// Spawn no router: register [`Host::protocol_handler`] under
    /// [`RAFT_ALPN`] on a router of your own, and shut that router down.
    ///
    /// [`RAFT_ALPN`]: crate::transport::RAFT_ALPN
    pub fn external_router(mut self) -> Self {
        self.routing = Routing::Caller;
        self
    }

    /// Create the data dir and bind the endpoint: the node's ticket is
    /// known from here on, nothing runs yet.
    pub async fn bind(self) -> Result<BoundHost, HostError> {
        // Before anything is created: an API that would be open to the
        // network is a configuration error, not a node to clean up.
        if let Some(addr) = self.api_addr {
            self.api_config.check_exposure(addr)?;
        }
        let data_dir = self.node.data_dir.clone();
        if let Entry::Restore(backup) = &self.entry
            && DataDir::new(&data_dir).is_fresh()
        {
            // Verified before anything is created: a damaged backup must
            // not leave a data dir that then refuses a good one.
            crate::node::snapshot::read(backup).map_err(|e| HostError::BadBackup {
                path: backup.clone(),
                reason: e.to_string(),
            })?;
        }
        DataDir::new(&data_dir)
            .create()
            .map_err(|source| HostError::DataDir {
                path: data_dir.clone(),
                source,
            })?;
        // Before the node creates its log: a data dir without one is new.
        let fresh = DataDir::new(&data_dir).is_fresh();
        let transport = match &self.network {
            Network::Bind(config) => {
                let secret_key =
                    identity::load_or_create(&data_dir).map_err(HostError::Identity)?;
                let only_raft = matches!(&self.routing, Routing::Own(p) if p.is_empty());
                if only_raft {
                    IrohTransport::bind(self.node.id, secret_key, config, self.directory.clone())
                        .await
                        .map_err(HostError::Endpoint)?
                } else {
                    let endpoint = net::endpoint_builder(secret_key, config)
                        .map_err(HostError::Endpoint)?
                        .bind()
                        .await
                        .map_err(|e| {
                            HostError::Endpoint(TransportError::Bind {
                                addr: config.bind_addr,
                                reason: e.to_string(),
                            })
                        })?;
                    IrohTransport::with_endpoint(
                        self.node.id,
                        endpoint,
                        self.directory.clone(),
                        config.advertise_addrs.clone(),
                    )
                }
            }
            Network::Given {
                endpoint,
                advertise,
            } => IrohTransport::with_endpoint(
                self.node.id,
                endpoint.clone(),
                self.directory.clone(),
                advertise.clone(),
            ),
        };
        Ok(BoundHost::new(self, transport, fresh))
    }

    /// [`Self::bind`], then [`BoundHost::start`]: a joining node returns
    /// once a leader added it and it runs.
    pub async fn start(self) -> Result<Host, HostError> {
        self.bind().await?.start().await
    }
}
