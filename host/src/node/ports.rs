//! The ports of a node: what it needs from the outside world. The
//! [`Transport`] carries its Raft messages to peers; the [`Forwarder`] makes
//! requests to peers on its behalf. The iroh transport implements both; a
//! single node uses [`NoPeers`]; the simulation plugs in its own network.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use raft::prelude::Message;
use tokio::sync::watch;

use super::applier::Applied;
use super::error::ForwardError;
use super::forwarded::ForwardTag;
use super::inbox::NodeInbox;
use super::upgrade::Activation;
use crate::membership::PeerAddr;
use crate::storage::ComponentStore;
use crate::wasm::ComponentHash;

/// What the transport needs from the node it serves: its inbox (for
/// snapshot reports and received snapshots), where snapshot files live and
/// its components (peers fetch them by hash).
#[derive(Debug, Clone)]
pub struct NodeLink {
    pub inbox: NodeInbox,
    pub snapshot_dir: PathBuf,
    pub components: ComponentStore,
}

/// Where the node's outgoing Raft messages go. The seam between consensus
/// and the network: the iroh transport, or a simulated network in tests.
pub trait Transport: Send + 'static {
    /// Send messages to peers (best effort: Raft retransmits).
    fn send(&mut self, messages: Vec<Message>);

    /// The committed membership changed: who may connect, where to dial.
    fn set_members(&mut self, _members: &BTreeMap<u64, PeerAddr>) {}

    /// Called once before the node runs.
    fn attach(&mut self, _link: NodeLink) {}

    /// The peers whose appends may wait to go out in batches (see
    /// `node::core::pace`); every other peer's go out at once.
    fn set_lazy_peers(&mut self, _peers: &BTreeSet<u64>) {}
}

/// What the node reads from its transport's view of the peers: who they
/// are (to ask them for things) and when each was last heard from (for
/// status). The iroh transport's `PeerDirectory` implements it.
pub trait PeerView: Send + Sync + std::fmt::Debug + 'static {
    /// The Raft ids of every member the transport knows (itself included).
    fn member_ids(&self) -> Vec<u64>;
    /// Milliseconds since a frame from or to `raft_id` last went through.
    fn last_contact_ms(&self, raft_id: u64) -> Option<u64>;
}

/// A boxed future, as the [`Forwarder`] methods return.
pub type PeerFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Requests a node makes to its peers on its own behalf: forwarding a
/// client's proposal to the leader (a follower's way of serving writes) and
/// fetching a component it must activate but does not hold.
///
/// A forward tells "certainly not delivered" ([`ForwardError::NotDelivered`],
/// safe to send to another leader) from "may have reached the leader"
/// (`OutcomeUnknown`). `leader_view` is the node's leader watch: once it no
/// longer names `leader`, a forward whose bytes the leader has not
/// acknowledged gives up as not delivered instead of waiting for a dead
/// connection to time out.
pub trait Forwarder: Send + Sync + std::fmt::Debug + 'static {
    /// Forward a command under `tag`: the leader proposes it only while it
    /// leads `tag.term`, and its entry carries `tag.id` (see
    /// [`crate::node::ForwardTag`]).
    fn forward_propose(
        &self,
        leader: u64,
        command: Vec<u8>,
        tag: ForwardTag,
        leader_view: watch::Receiver<Option<u64>>,
    ) -> PeerFuture<'_, Result<Applied, ForwardError>>;

    /// Forward a component activation to the leader.
    fn forward_activation(
        &self,
        leader: u64,
        activation: Activation,
        leader_view: watch::Receiver<Option<u64>>,
    ) -> PeerFuture<'_, Result<Applied, ForwardError>>;

    /// Ask `peer` to get the activation's component ready (fetched from
    /// the activation's source, stored, compiled); answers its compile time.
    fn prepare_component(
        &self,
        peer: u64,
        activation: Activation,
    ) -> PeerFuture<'_, Result<u64, String>>;

    /// Send this node's state hash at the state check `index` to `peer`.
    fn report_state_hash(
        &self,
        peer: u64,
        index: u64,
        hash: [u8; 32],
    ) -> PeerFuture<'_, Result<(), String>>;

    /// Download the component `hash` (`size_bytes` long) from `peer`. The
    /// caller verifies the bytes against the hash.
    fn fetch_component(
        &self,
        peer: u64,
        hash: ComponentHash,
        size_bytes: u64,
    ) -> PeerFuture<'_, Result<Vec<u8>, String>>;
}

/// The transport of a single-node cluster: Raft never addresses a peer.
#[derive(Debug, Default)]
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            tracing::warn!(to = message.to, kind = ?message.get_msg_type(),
                "dropping a message for a peer: this node has no transport");
        }
    }
}
