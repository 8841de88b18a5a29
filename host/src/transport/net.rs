//! [`IrohTransport`]: the iroh endpoint of a node and its peer senders, as
//! the node's [`Transport`].

use crate::limits::MAX_COMPONENT_BYTES;
use crate::limits::{
    COMPONENT_FETCH_CHUNK_TIMEOUT, COMPONENT_PREPARE_TIMEOUT, MAX_PEER_STREAMS,
    PEER_RECEIVE_WINDOW_BYTES, QUIC_ACK_ELICITING_THRESHOLD, QUIC_IDLE_TIMEOUT, QUIC_KEEP_ALIVE,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use iroh::endpoint::{AckFrequencyConfig, QuicTransportConfig, VarInt, presets};
use iroh::protocol::Router;
use iroh::{Endpoint, RelayMap, RelayMode, RelayUrl, SecretKey};
use raft::prelude::{Message, MessageType};
use tokio::sync::watch;

use super::RAFT_ALPN;
use super::directory::{AllowlistHook, PeerDirectory};
use super::forward::{self, ForwardQueues};
use super::handler::RaftProtocolHandler;
use super::liveness;
use super::message::{Request, Response, WireMessage};
use super::sender::{self, PeerConnection, PeerSender};
use crate::membership::{NodeTicket, PeerAddr};
use crate::node::PeerFuture;
use crate::node::metrics::{PeerStats, PeerStatsRegistry};
use crate::node::upgrade::Activation;
use crate::node::{Applied, ForwardError, ForwardTag, Forwarder, NodeInbox, NodeLink, Transport};
use crate::wasm::ComponentHash;

/// Whether and how the endpoint uses relays (for clusters behind NATs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RelayChoice {
    /// Direct addresses only (the default: offline, loopback and LAN).
    #[default]
    Disabled,
    /// n0's public relays.
    Default,
    /// A relay server of your own.
    Custom(RelayUrl),
}

/// How to set up the node's endpoint.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// UDP address to bind (port 0 picks a free one; clusters want a fixed
    /// port so tickets stay valid across restarts).
    pub bind_addr: SocketAddr,
    /// Addresses to put in this node's ticket instead of the bound socket
    /// (needed when binding 0.0.0.0 or behind port forwarding).
    pub advertise_addrs: Vec<SocketAddr>,
    pub relay: RelayChoice,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("binding the iroh endpoint on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("asking {peer} for the membership: {reason}")]
    Join { peer: String, reason: String },
}

/// A peer's pooled connection and its counters.
type PooledPeer = (Arc<PeerConnection>, Arc<PeerStats>);

/// Connections to peers, shared by the Raft senders and the forwarder.
#[derive(Debug, Clone)]
pub(super) struct ConnectionPool {
    endpoint: Endpoint,
    directory: PeerDirectory,
    connections: Arc<Mutex<HashMap<u64, PooledPeer>>>,
    /// The same stats, for metrics; kept in step with `connections`.
    stats: PeerStatsRegistry,
}

impl ConnectionPool {
    pub(super) fn get(&self, raft_id: u64) -> PooledPeer {
        let mut map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(raft_id)
            .or_insert_with(|| {
                let stats = Arc::new(PeerStats::default());
                self.stats.insert(raft_id, stats.clone());
                let connection = Arc::new(PeerConnection::new(
                    raft_id,
                    self.endpoint.clone(),
                    self.directory.clone(),
                    stats.clone(),
                ));
                (connection, stats)
            })
            .clone()
    }

    /// The peer's entry, if this node ever needed one (never creates it).
    pub(super) fn existing(&self, raft_id: u64) -> Option<Arc<PeerConnection>> {
        let map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&raft_id).map(|(connection, _)| connection.clone())
    }

    fn forget(&self, raft_id: u64) {
        let mut map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&raft_id);
        // Under the same lock as `get`, so the two maps never disagree.
        self.stats.remove(raft_id);
    }
}

/// The node's side of the network.
#[derive(Debug)]
pub struct IrohTransport {
    raft_id: u64,
    endpoint: Endpoint,
    directory: PeerDirectory,
    pool: ConnectionPool,
    senders: HashMap<u64, PeerSender>,
    advertise: Vec<SocketAddr>,
    /// Set when the node attaches: its inbox and snapshot directory.
    link: Option<NodeLink>,
    /// Shared with the protocol handler, which stores received snapshots in
    /// its snapshot dir and serves components from its components dir.
    shared_link: Arc<OnceLock<NodeLink>>,
    /// The snapshot transfer running to each peer (one at a time).
    snapshot_tasks: HashMap<u64, tokio::task::JoinHandle<()>>,
    /// The peers whose appends may wait (`Transport::set_lazy_peers`).
    lazy_peers: BTreeSet<u64>,
}

/// An endpoint builder set up as a node's: its key, the QUIC timeouts that
/// notice a dead peer quickly, `config`'s socket and relays. No ALPNs and no
/// allowlist: add your protocols (an iroh `Router` sets the ALPNs it
/// serves) and, if the endpoint serves only Raft, an [`AllowlistHook`].
pub fn endpoint_builder(
    secret_key: SecretKey,
    config: &TransportConfig,
) -> Result<iroh::endpoint::Builder, TransportError> {
    let bind_err = |reason: String| TransportError::Bind {
        addr: config.bind_addr,
        reason,
    };
    let relay_mode = match &config.relay {
        RelayChoice::Disabled => RelayMode::Disabled,
        RelayChoice::Default => RelayMode::Default,
        RelayChoice::Custom(url) => RelayMode::Custom(RelayMap::from(url.clone())),
    };
    let idle_timeout = QUIC_IDLE_TIMEOUT
        .try_into()
        .map_err(|e| bind_err(format!("idle timeout: {e}")))?;
    let quic = QuicTransportConfig::builder()
        .keep_alive_interval(QUIC_KEEP_ALIVE)
        .max_idle_timeout(Some(idle_timeout))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_PEER_STREAMS))
        // The protocol uses no unidirectional streams.
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .receive_window(VarInt::from_u32(PEER_RECEIVE_WINDOW_BYTES))
        .ack_frequency_config(Some(ack_frequency()))
        .build();
    let mut builder = Endpoint::builder(presets::Minimal)
        .transport_config(quic)
        .secret_key(secret_key)
        .relay_mode(relay_mode)
        .clear_ip_transports()
        .bind_addr(config.bind_addr)
        .map_err(|e| bind_err(e.to_string()))?;
    if config.relay == RelayChoice::Disabled {
        builder = builder.clear_relay_transports();
    }
    Ok(builder)
}

/// How often peers acknowledge this node's packets (see
/// [`QUIC_ACK_ELICITING_THRESHOLD`]).
fn ack_frequency() -> AckFrequencyConfig {
    let mut config = AckFrequencyConfig::default();
    config.ack_eliciting_threshold(VarInt::from_u32(QUIC_ACK_ELICITING_THRESHOLD));
    config
}

impl Drop for IrohTransport {
    fn drop(&mut self) {
        for task in self.snapshot_tasks.values() {
            task.abort();
        }
    }
}

impl IrohTransport {
    /// Bind the endpoint. Relay and discovery are off unless `config.relay`
    /// says otherwise; port mapping is not compiled in. The endpoint speaks
    /// only `iroh-raft/0` and refuses non-members right after the handshake.
    pub async fn bind(
        raft_id: u64,
        secret_key: SecretKey,
        config: &TransportConfig,
        directory: PeerDirectory,
    ) -> Result<Self, TransportError> {
        let endpoint = endpoint_builder(secret_key, config)?
            .alpns(vec![RAFT_ALPN.to_vec()])
            .hooks(AllowlistHook::new(directory.clone()))
            .bind()
            .await
            .map_err(|e| TransportError::Bind {
                addr: config.bind_addr,
                reason: e.to_string(),
            })?;
        Ok(Self::with_endpoint(
            raft_id,
            endpoint,
            directory,
            config.advertise_addrs.clone(),
        ))
    }

    /// A transport on an endpoint bound elsewhere (shared with other
    /// protocols). `advertise` replaces the bound sockets in the ticket
    /// when not empty.
    pub fn with_endpoint(
        raft_id: u64,
        endpoint: Endpoint,
        directory: PeerDirectory,
        advertise: Vec<SocketAddr>,
    ) -> Self {
        let pool = ConnectionPool {
            endpoint: endpoint.clone(),
            directory: directory.clone(),
            connections: Arc::default(),
            stats: PeerStatsRegistry::default(),
        };
        IrohTransport {
            raft_id,
            endpoint,
            directory,
            pool,
            senders: HashMap::new(),
            advertise,
            link: None,
            shared_link: Arc::default(),
            snapshot_tasks: HashMap::new(),
            lazy_peers: BTreeSet::new(),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn directory(&self) -> &PeerDirectory {
        &self.directory
    }

    /// This node's address: its node id and the addresses peers should
    /// dial (the advertised ones, else the sockets it is bound to).
    pub fn local_addr(&self) -> PeerAddr {
        if self.advertise.is_empty() {
            PeerAddr::new(self.endpoint.id(), self.endpoint.bound_sockets())
        } else {
            PeerAddr::new(self.endpoint.id(), self.advertise.clone())
        }
    }

    pub fn ticket(&self) -> NodeTicket {
        NodeTicket {
            raft_id: self.raft_id,
            addr: self.local_addr(),
        }
    }

    /// A forwarder for the node handle (sends proposals to the leader).
    pub fn forwarder(&self) -> Arc<dyn Forwarder> {
        Arc::new(ProposalForwarder {
            pool: self.pool.clone(),
            queues: ForwardQueues::new(self.pool.clone()),
        })
    }

    /// What [`Acceptor::serve`] needs, taken before the transport moves into
    /// the node.
    pub fn acceptor(&self) -> Acceptor {
        Acceptor {
            raft_id: self.raft_id,
            endpoint: self.endpoint.clone(),
            directory: self.directory.clone(),
            link: self.shared_link.clone(),
            pool: self.pool.clone(),
        }
    }

    /// Ask the member in `ticket` for the cluster's membership (a joining
    /// node does this before it starts Raft).
    pub async fn fetch_members(
        &self,
        ticket: &NodeTicket,
    ) -> Result<BTreeMap<u64, PeerAddr>, TransportError> {
        let join_err = |reason: String| TransportError::Join {
            peer: ticket.to_string(),
            reason,
        };
        let endpoint_id = ticket
            .addr
            .endpoint_id()
            .ok_or_else(|| join_err("bad node id".into()))?;
        self.directory.allow_extra(endpoint_id);
        let mut seed = self.directory.members();
        seed.insert(ticket.raft_id, ticket.addr.clone());
        self.directory.set_members(&seed);
        let (connection, _) = self.pool.get(ticket.raft_id);
        let (_, mut send, mut recv) = connection.open_stream().await.map_err(join_err)?;
        let answer = sender::exchange(
            &mut send,
            &mut recv,
            WireMessage::Request(Request::Members),
            crate::limits::ANSWER_TIMEOUT,
        )
        .await
        .map_err(join_err)?;
        let _ = send.finish();
        match answer {
            WireMessage::Response(Response::Members { members }) => {
                Ok(members.into_iter().collect())
            }
            other => Err(join_err(format!("unexpected answer {other:?}"))),
        }
    }

    /// Every peer's counters, readable after the transport moved into the
    /// node (for [`NodeConfig::peer_stats`](crate::node::NodeConfig)).
    pub fn peer_stats_registry(&self) -> PeerStatsRegistry {
        self.pool.stats.clone()
    }

    fn sender_for(&mut self, raft_id: u64) -> Option<&PeerSender> {
        if !self.senders.contains_key(&raft_id) {
            self.directory.addr_of(raft_id)?;
            let (connection, stats) = self.pool.get(raft_id);
            let sender = PeerSender::spawn(raft_id, connection, stats, self.directory.clone());
            sender.set_lazy(self.lazy_peers.contains(&raft_id));
            self.senders.insert(raft_id, sender);
        }
        self.senders.get(&raft_id)
    }

    /// Stream a snapshot to its peer in the background and report the
    /// outcome to Raft. raft-rs sends no other snapshot to that peer until
    /// the report, so one transfer per peer runs at a time.
    fn send_snapshot(&mut self, message: Message) {
        let to = message.to;
        let Some(link) = self.link.clone() else {
            tracing::warn!(to, "no node attached; cannot send a snapshot");
            return;
        };
        // raft-rs sends nothing more to this peer until it hears how the
        // transfer ended, so a snapshot that does not leave is reported as
        // failed: Raft then probes the peer again and retries.
        if self
            .snapshot_tasks
            .get(&to)
            .is_some_and(|task| !task.is_finished())
        {
            tracing::debug!(to, "a snapshot transfer to this peer is still running");
            report_snapshot_failed(link, to);
            return;
        }
        if self.directory.addr_of(to).is_none() {
            tracing::debug!(to, "no address for this peer; snapshot not sent");
            report_snapshot_failed(link, to);
            return;
        }
        let (connection, stats) = self.pool.get(to);
        let index = message.get_snapshot().get_metadata().index;
        tracing::info!(to, index, "sending a snapshot");
        let task = tokio::spawn(async move {
            let result =
                super::snapshot::send_snapshot(&connection, &message, &link.snapshot_dir).await;
            let delivered = match result {
                Ok(()) => {
                    tracing::info!(to, index, "snapshot delivered");
                    true
                }
                Err(error) => {
                    tracing::warn!(to, index, %error, "snapshot transfer failed; Raft retries");
                    stats
                        .send_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    false
                }
            };
            let _ = link.inbox.report_snapshot(to, delivered).await;
        });
        self.snapshot_tasks.insert(to, task);
    }
}

/// Tell the node, from a task of its own, that a snapshot to `to` did not
/// leave (the transport's `send` cannot wait for the node's inbox).
fn report_snapshot_failed(link: NodeLink, to: u64) {
    tokio::spawn(async move {
        let _ = link.inbox.report_snapshot(to, false).await;
    });
}

impl Transport for IrohTransport {
    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                self.send_snapshot(message);
                continue;
            }
            let to = message.to;
            match self.sender_for(to) {
                Some(sender) => sender.send(message),
                None => tracing::debug!(to, "no address for this peer; message dropped"),
            }
        }
    }

    fn set_lazy_peers(&mut self, peers: &BTreeSet<u64>) {
        for (id, sender) in &self.senders {
            sender.set_lazy(peers.contains(id));
        }
        self.lazy_peers = peers.clone();
    }

    fn set_members(&mut self, members: &BTreeMap<u64, PeerAddr>) {
        // This node stays in the directory: a joining node asks any member
        // for the whole membership, the answering node included.
        self.directory.set_members(members);
        // Senders of removed members stop; their connections are dropped.
        let removed: Vec<u64> = self
            .senders
            .keys()
            .filter(|id| !members.contains_key(id))
            .copied()
            .collect();
        for id in removed {
            self.senders.remove(&id);
            if let Some(task) = self.snapshot_tasks.remove(&id) {
                task.abort();
            }
            self.pool.forget(id);
        }
    }

    fn attach(&mut self, link: NodeLink) {
        let _ = self.shared_link.set(link.clone());
        self.link = Some(link);
        liveness::greet_members(&self.pool, &self.directory, self.raft_id);
    }
}

/// The accepting side of a node's endpoint, before the node exists.
#[derive(Debug, Clone)]
pub struct Acceptor {
    raft_id: u64,
    endpoint: Endpoint,
    directory: PeerDirectory,
    link: Arc<OnceLock<NodeLink>>,
    /// This node's outgoing connections, checked when a peer dials in
    /// (`liveness`).
    pool: ConnectionPool,
}

impl Acceptor {
    /// The protocol handler of the node whose inbox is `raft_tx`, for a
    /// router of your own: `Router::builder(endpoint).accept(RAFT_ALPN,
    /// handler)`, next to your other protocols.
    pub fn handler(self, inbox: NodeInbox) -> RaftProtocolHandler {
        RaftProtocolHandler::for_transport(
            self.raft_id,
            inbox,
            self.directory,
            self.link,
            self.pool,
        )
    }

    /// Serve incoming `iroh-raft/0` connections into the node whose inbox
    /// is `raft_tx`, on a router of their own.
    pub fn serve(self, inbox: NodeInbox) -> Router {
        let endpoint = self.endpoint.clone();
        Router::builder(endpoint)
            .accept(RAFT_ALPN, self.handler(inbox))
            .spawn()
    }
}

/// Sends a client's proposal to the leader and brings back its result.
#[derive(Debug)]
struct ProposalForwarder {
    pool: ConnectionPool,
    /// Forwarded commands, batched per leader under load.
    queues: ForwardQueues,
}

impl Forwarder for ProposalForwarder {
    fn forward_propose(
        &self,
        leader: u64,
        command: Vec<u8>,
        tag: ForwardTag,
        leader_view: watch::Receiver<Option<u64>>,
    ) -> PeerFuture<'_, Result<Applied, ForwardError>> {
        Box::pin(self.queues.forward(leader, command, tag, leader_view))
    }

    fn forward_activation(
        &self,
        leader: u64,
        activation: Activation,
        leader_view: watch::Receiver<Option<u64>>,
    ) -> PeerFuture<'_, Result<Applied, ForwardError>> {
        Box::pin(async move {
            let (connection, _) = self.pool.get(leader);
            let request = Request::ProposeActivation {
                activation: activation.into(),
            };
            forward::forward_one(&connection, leader, request, leader_view).await
        })
    }

    fn report_state_hash(
        &self,
        peer: u64,
        index: u64,
        hash: [u8; 32],
    ) -> PeerFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let request = Request::StateHash { index, hash };
            match self
                .ask(peer, request, crate::limits::ANSWER_TIMEOUT)
                .await?
            {
                Response::Delivered { .. } => Ok(()),
                other => Err(format!("unexpected answer {other:?}")),
            }
        })
    }

    fn prepare_component(
        &self,
        peer: u64,
        activation: Activation,
    ) -> PeerFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            let request = Request::PrepareComponent {
                hash: activation.hash,
                size_bytes: activation.size_bytes,
                source: activation.source,
            };
            match self.ask(peer, request, COMPONENT_PREPARE_TIMEOUT).await? {
                Response::ComponentPrepared { compile_ms } => Ok(compile_ms),
                other => Err(format!("unexpected answer {other:?}")),
            }
        })
    }

    fn fetch_component(
        &self,
        peer: u64,
        hash: ComponentHash,
        size_bytes: u64,
    ) -> PeerFuture<'_, Result<Vec<u8>, String>> {
        Box::pin(async move {
            if size_bytes > MAX_COMPONENT_BYTES {
                return Err(format!(
                    "{size_bytes} bytes is over the component limit of {MAX_COMPONENT_BYTES}"
                ));
            }
            let (connection, _) = self.pool.get(peer);
            let (_, mut send, mut recv) = connection.open_stream().await?;
            let mut bytes = Vec::new();
            while (bytes.len() as u64) < size_bytes {
                let request = Request::FetchComponent {
                    hash: hash.to_hex(),
                    offset: bytes.len() as u64,
                };
                let answer = sender::exchange(
                    &mut send,
                    &mut recv,
                    WireMessage::Request(request),
                    COMPONENT_FETCH_CHUNK_TIMEOUT,
                )
                .await?;
                match answer {
                    WireMessage::Response(Response::ComponentChunk { total_len, data }) => {
                        if total_len != size_bytes {
                            return Err(format!(
                                "peer {peer} holds {total_len} bytes, the activation says {size_bytes}"
                            ));
                        }
                        if data.is_empty() {
                            return Err(format!("peer {peer} sent an empty chunk"));
                        }
                        let room = (size_bytes - bytes.len() as u64) as usize;
                        bytes.extend_from_slice(&data[..data.len().min(room)]);
                    }
                    WireMessage::Error(frame) => return Err(frame.message),
                    WireMessage::Refused(error) => return Err(error.to_string()),
                    other => return Err(format!("unexpected answer {other:?}")),
                }
            }
            let _ = send.finish();
            Ok(bytes)
        })
    }
}

impl ProposalForwarder {
    /// One request to `peer` on a stream of its own; an error frame is its
    /// message.
    async fn ask(
        &self,
        peer: u64,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, String> {
        let (connection, _) = self.pool.get(peer);
        let (_, mut send, mut recv) = connection.open_stream().await?;
        let answer =
            sender::exchange(&mut send, &mut recv, WireMessage::Request(request), timeout).await?;
        let _ = send.finish();
        match answer {
            WireMessage::Response(response) => Ok(response),
            WireMessage::Error(frame) => Err(frame.message),
            WireMessage::Refused(error) => Err(error.to_string()),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use raft::prelude::{Message, MessageType};
    use tokio::sync::mpsc;

    use super::*;
    use crate::node::inbox::NodeMsg;
    use crate::storage::ComponentStore;

    /// Peers acknowledge a run of single-packet messages in a few ACKs,
    /// not one for every other packet (QUIC's default): see
    /// `QUIC_ACK_ELICITING_THRESHOLD`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_acknowledges_a_run_of_packets_in_a_few_acks() {
        const ALPN: &[u8] = b"ack-frequency-test";
        const MESSAGES: usize = 64;
        let config = TransportConfig {
            bind_addr: "127.0.0.1:0".parse().expect("addr"),
            advertise_addrs: Vec::new(),
            relay: RelayChoice::Disabled,
        };
        let bind = || async {
            endpoint_builder(SecretKey::generate(), &config)
                .expect("builder")
                .alpns(vec![ALPN.to_vec()])
                .bind()
                .await
                .expect("bind")
        };
        let (sender, receiver) = (bind().await, bind().await);
        let (read_tx, mut read_rx) = mpsc::unbounded_channel();
        let receiving = tokio::spawn({
            let receiver = receiver.clone();
            async move {
                let connection = receiver
                    .accept()
                    .await
                    .expect("incoming")
                    .await
                    .expect("handshake");
                let (_send, mut recv) = connection.accept_bi().await.expect("stream");
                let mut message = [0u8; 100];
                for _ in 0..MESSAGES {
                    recv.read_exact(&mut message).await.expect("message");
                    read_tx.send(()).expect("test runs");
                }
                connection.stats()
            }
        });
        let connection = tokio::time::timeout(
            Duration::from_secs(10),
            sender.connect(receiver.addr(), ALPN),
        )
        .await
        .expect("connected within 10 s")
        .expect("connect");
        let (mut send, _recv) = connection.open_bi().await.expect("stream");
        let started = std::time::Instant::now();
        for _ in 0..MESSAGES {
            // One packet each: the next is written once this one was read.
            send.write_all(&[7u8; 100]).await.expect("write");
            tokio::time::timeout(Duration::from_secs(10), read_rx.recv())
                .await
                .expect("read within 10 s")
                .expect("receiver runs");
        }
        let stats = tokio::time::timeout(Duration::from_secs(10), receiving)
            .await
            .expect("done within 10 s")
            .expect("receiver task");
        let acks = stats.frame_tx.acks + stats.frame_tx.path_acks;
        // One ACK per threshold's worth of packets, one per `max_ack_delay`
        // (25 ms) the run took, and up to 8 for the handshake and the
        // packets before the peer learns the frequency (9-10 in all here).
        // The default acknowledges every other packet: 35 here.
        let timer_acks = started.elapsed().as_millis() as u64 / 25 + 1;
        let threshold_acks = MESSAGES as u64 / (u64::from(QUIC_ACK_ELICITING_THRESHOLD) + 1);
        let bound = threshold_acks + timer_acks + 8;
        assert!(bound < MESSAGES as u64 / 2, "the run took too long to tell");
        assert!(acks <= bound, "{acks} ACK frames for {MESSAGES} packets");
        sender.close().await;
        receiver.close().await;
    }

    /// raft-rs pauses a follower's replication until it hears how a
    /// snapshot transfer ended; a snapshot the transport cannot even start
    /// must be reported as failed, or that follower is never caught up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_to_a_peer_without_an_address_is_reported_failed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = TransportConfig {
            bind_addr: "127.0.0.1:0".parse().expect("addr"),
            advertise_addrs: Vec::new(),
            relay: RelayChoice::Disabled,
        };
        let mut transport =
            IrohTransport::bind(1, SecretKey::generate(), &config, PeerDirectory::new())
                .await
                .expect("bind");
        let (tx, mut rx) = mpsc::channel(8);
        transport.attach(NodeLink {
            inbox: NodeInbox::from_sender(tx),
            snapshot_dir: dir.path().join("snapshots"),
            components: ComponentStore::open(dir.path().join("components")).expect("store"),
        });
        let mut snapshot = Message::default();
        snapshot.set_msg_type(MessageType::MsgSnapshot);
        snapshot.to = 7;
        transport.send(vec![snapshot]);
        let report = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a report within 10 s")
            .expect("inbox open");
        assert!(
            matches!(
                report,
                NodeMsg::SnapshotReport {
                    to: 7,
                    delivered: false
                }
            ),
            "{report:?}"
        );
        transport.endpoint().close().await;
    }
}
