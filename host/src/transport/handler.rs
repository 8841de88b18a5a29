//! The accepting side of `iroh-raft/0`: [`RaftProtocolHandler`].
//!
//! Registered on an iroh `Router` under [`super::RAFT_ALPN`]. For each
//! connection from an allowed peer it serves every bidirectional stream the
//! peer opens: read a request frame, answer it, repeat. Raft messages go to
//! the node's inbox; nothing here touches `RawNode`.

use crate::limits::MAX_FRAME_BYTES;
use crate::limits::{
    COMPONENT_CHUNK_BYTES, DELIVERY_ANSWER_DELAY, DELIVERY_ANSWER_EVERY_FRAMES, MAX_BATCH_MESSAGES,
    MAX_CONNECTIONS_PER_PEER, MAX_FORWARD_BATCH_PROPOSALS,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use iroh::EndpointId;

use iroh::endpoint::{Connection, RecvStream, SendStream, VarInt};
use iroh::protocol::{AcceptError, ProtocolHandler};
use raft::prelude::Message;

use super::codec::{self, CodecError};
use super::directory::{CLOSE_NOT_ALLOWED, PeerDirectory};
use super::liveness;
use super::net::ConnectionPool;

/// QUIC close code for a connection past [`MAX_CONNECTIONS_PER_PEER`].
pub const CLOSE_TOO_MANY_CONNECTIONS: u32 = 429;
use super::message::{
    ErrorCode, ErrorFrame, ForwardedProposal, RaftBatch, Request, Response, WireGuestFailure,
    WireMessage,
};
use super::snapshot::SnapshotReceiver;
use crate::node::upgrade::{Activation, ActivationKind};
use crate::node::{ClientError, NodeInbox, NodeLink};
use crate::wasm::ComponentHash;

/// `RaftMessage` frames delivered on a stream and not yet answered.
#[derive(Debug, Default)]
struct DeliveredFrames {
    count: u32,
}

impl DeliveredFrames {
    /// Answer the frames owed, if any, with one `Delivered`.
    async fn answer(&mut self, send: &mut SendStream) -> Result<(), CodecError> {
        if self.count == 0 {
            return Ok(());
        }
        let answer = WireMessage::Response(Response::Delivered { count: self.count });
        self.count = 0;
        codec::write_frame(send, &answer).await
    }
}

/// The next frame of a stream. While frames are owed an answer, a stream
/// quiet for [`DELIVERY_ANSWER_DELAY`] gets that answer first.
async fn next_frame(
    recv: &mut RecvStream,
    send: &mut SendStream,
    owed: &mut DeliveredFrames,
) -> Result<Option<WireMessage>, CodecError> {
    loop {
        let start = if owed.count == 0 {
            codec::wait_for_frame(recv).await?
        } else {
            match tokio::time::timeout(DELIVERY_ANSWER_DELAY, codec::wait_for_frame(recv)).await {
                Ok(start) => start?,
                Err(_quiet) => {
                    owed.answer(send).await?;
                    continue;
                }
            }
        };
        return codec::read_started_frame(recv, start, MAX_FRAME_BYTES).await;
    }
}

/// Handles incoming `iroh-raft/0` connections for one node.
#[derive(Debug, Clone)]
pub struct RaftProtocolHandler {
    inner: Arc<HandlerInner>,
}

#[derive(Debug)]
struct HandlerInner {
    raft_id: u64,
    inbox: NodeInbox,
    directory: PeerDirectory,
    /// The node served, once it runs: where received snapshot files go and
    /// where its components are. Snapshots and component fetches are
    /// refused until it is set.
    link: Arc<OnceLock<NodeLink>>,
    /// Open connections per peer, to enforce [`MAX_CONNECTIONS_PER_PEER`].
    connections: Arc<Mutex<HashMap<EndpointId, usize>>>,
    /// The node's own connections to its peers: one to a peer that dials in
    /// is checked, since that peer may have restarted (`liveness`). `None`
    /// for a handler built without a transport.
    outgoing: Option<ConnectionPool>,
}

/// Counts one accepted connection of a peer while it lives.
struct ConnectionSlot {
    connections: Arc<Mutex<HashMap<EndpointId, usize>>>,
    peer: EndpointId,
}

impl ConnectionSlot {
    /// A slot for `peer`, or `None` when it already holds the maximum.
    fn take(
        connections: &Arc<Mutex<HashMap<EndpointId, usize>>>,
        peer: EndpointId,
    ) -> Option<Self> {
        let mut open = connections.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(peer).or_default();
        if *count >= MAX_CONNECTIONS_PER_PEER {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            connections: Arc::clone(connections),
            peer,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

impl RaftProtocolHandler {
    /// A handler for the node with Raft id `raft_id`, delivering into its
    /// inbox. It starts with an empty allowlist (refusing everyone); give it
    /// the cluster's directory with [`Self::with_directory`].
    pub fn new(raft_id: u64, inbox: NodeInbox) -> Self {
        Self::with_directory(raft_id, inbox, PeerDirectory::new())
    }

    pub fn with_directory(raft_id: u64, inbox: NodeInbox, directory: PeerDirectory) -> Self {
        Self::with_node_link(raft_id, inbox, directory, Arc::default())
    }

    /// As [`Self::with_directory`], receiving snapshot files into and
    /// serving components from the directories of `link` (set once the
    /// node runs).
    pub fn with_node_link(
        raft_id: u64,
        inbox: NodeInbox,
        directory: PeerDirectory,
        link: Arc<OnceLock<NodeLink>>,
    ) -> Self {
        Self::build(raft_id, inbox, directory, link, None)
    }

    /// As [`Self::with_node_link`], for a transport's own node: a peer that
    /// dials in has the transport's connection to it checked, since the
    /// peer may have restarted (`liveness`).
    pub(super) fn for_transport(
        raft_id: u64,
        inbox: NodeInbox,
        directory: PeerDirectory,
        link: Arc<OnceLock<NodeLink>>,
        outgoing: ConnectionPool,
    ) -> Self {
        Self::build(raft_id, inbox, directory, link, Some(outgoing))
    }

    fn build(
        raft_id: u64,
        inbox: NodeInbox,
        directory: PeerDirectory,
        link: Arc<OnceLock<NodeLink>>,
        outgoing: Option<ConnectionPool>,
    ) -> Self {
        RaftProtocolHandler {
            inner: Arc::new(HandlerInner {
                raft_id,
                inbox,
                directory,
                link,
                connections: Arc::default(),
                outgoing,
            }),
        }
    }

    pub fn directory(&self) -> &PeerDirectory {
        &self.inner.directory
    }
}

impl ProtocolHandler for RaftProtocolHandler {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let remote = connection.remote_id();
        // Checked again here (the endpoint hook may not be installed, e.g.
        // in the protocol example): fail closed.
        if !self.inner.directory.is_allowed(&remote) {
            tracing::warn!(node_id = %remote.fmt_short(), "refusing a connection from a non-member");
            connection.close(VarInt::from_u32(CLOSE_NOT_ALLOWED), b"not a member");
            return Ok(());
        }
        let Some(_slot) = ConnectionSlot::take(&self.inner.connections, remote) else {
            tracing::warn!(node_id = %remote.fmt_short(), limit = MAX_CONNECTIONS_PER_PEER,
                "refusing a connection: the peer already holds the maximum");
            connection.close(
                VarInt::from_u32(CLOSE_TOO_MANY_CONNECTIONS),
                b"too many connections",
            );
            return Ok(());
        };
        if let Some(pool) = &self.inner.outgoing
            && let Some(peer) = self.inner.directory.raft_id_of(&remote)
        {
            liveness::peer_dialed_in(pool, peer);
        }
        loop {
            let (send, recv) = match connection.accept_bi().await {
                Ok(streams) => streams,
                // The peer closed the connection or it broke: nothing to do.
                Err(_) => return Ok(()),
            };
            let inner = self.inner.clone();
            let peer_raft_id = inner.directory.raft_id_of(&remote);
            tokio::spawn(async move {
                if let Err(error) = inner.serve_stream(send, recv, peer_raft_id).await {
                    tracing::debug!(%error, "closed an iroh-raft stream");
                }
            });
        }
    }
}

impl HandlerInner {
    /// Answer every request frame on one stream, in order.
    ///
    /// `RaftMessage` frames are answered cumulatively: one
    /// `Delivered { count }` answers the `count` frames delivered since the
    /// previous answer. It is written once [`DELIVERY_ANSWER_EVERY_FRAMES`]
    /// are owed, once the stream has been quiet for
    /// [`DELIVERY_ANSWER_DELAY`], or before any other answer, so answers
    /// stay in the order of the frames they answer.
    async fn serve_stream(
        &self,
        mut send: SendStream,
        mut recv: RecvStream,
        peer_raft_id: Option<u64>,
    ) -> Result<(), CodecError> {
        let mut owed = DeliveredFrames::default();
        loop {
            let request = match next_frame(&mut recv, &mut send, &mut owed).await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    // The stream cannot be resynchronized after a bad frame:
                    // answer with the reason, then close it.
                    let code = match error {
                        CodecError::TooLarge { .. } => ErrorCode::TooLarge,
                        _ => ErrorCode::Malformed,
                    };
                    let answer = error_frame(code, error.to_string());
                    let _ = owed.answer(&mut send).await;
                    let _ = codec::write_frame(&mut send, &answer).await;
                    let _ = send.finish();
                    return Err(error);
                }
            };
            if let Some(raft_id) = peer_raft_id {
                self.directory.touch(raft_id);
            }
            if let WireMessage::RaftMessage(batch) = request {
                match self.deliver(batch, peer_raft_id) {
                    Ok(()) => {
                        owed.count += 1;
                        if owed.count >= DELIVERY_ANSWER_EVERY_FRAMES {
                            owed.answer(&mut send).await?;
                        }
                    }
                    Err(refusal) => {
                        owed.answer(&mut send).await?;
                        codec::write_frame(&mut send, &refusal).await?;
                    }
                }
                continue;
            }
            // Whatever else comes is answered after the frames before it.
            owed.answer(&mut send).await?;
            if let WireMessage::Request(Request::InstallSnapshot(offer)) = request {
                match (peer_raft_id, self.link.get()) {
                    (Some(peer_raft_id), Some(link)) => {
                        let receiver = SnapshotReceiver {
                            raft_id: self.raft_id,
                            peer_raft_id,
                            dir: &link.snapshot_dir,
                            inbox: &self.inbox,
                        };
                        receiver.serve(&mut send, &mut recv, offer).await?;
                    }
                    (None, _) => {
                        let answer = error_frame(
                            ErrorCode::WrongSender,
                            "only cluster members may send snapshots".into(),
                        );
                        codec::write_frame(&mut send, &answer).await?;
                    }
                    (_, None) => {
                        let answer = error_frame(
                            ErrorCode::Rejected,
                            "this node does not accept snapshots yet".into(),
                        );
                        codec::write_frame(&mut send, &answer).await?;
                    }
                }
                continue;
            }
            if let WireMessage::Request(Request::ProposeForwardedBatch { proposals }) = request {
                self.serve_forwarded_batch(&mut send, proposals).await?;
                continue;
            }
            let answer = self.answer(request, peer_raft_id).await;
            codec::write_frame(&mut send, &answer).await?;
        }
        let _ = owed.answer(&mut send).await;
        let _ = send.finish();
        Ok(())
    }

    async fn answer(&self, request: WireMessage, peer_raft_id: Option<u64>) -> WireMessage {
        match request {
            // `serve_stream` delivers these itself (their answers are
            // cumulative); nothing else calls this with one.
            WireMessage::RaftMessage(_) => error_frame(
                ErrorCode::UnexpectedFrame,
                "a raft message is delivered on its own".into(),
            ),
            WireMessage::Heartbeat(heartbeat) => WireMessage::Heartbeat(heartbeat),
            WireMessage::Request(Request::Propose { command }) => self.propose(command).await,
            WireMessage::Request(Request::ProposeForwarded { command, tag }) => {
                proposal_answer(self.inbox.propose_forwarded(command, tag).await)
            }
            WireMessage::Request(Request::ProposeActivation { activation }) => {
                self.propose_activation(activation.into()).await
            }
            WireMessage::Request(Request::FetchComponent { hash, offset }) => {
                self.component_chunk(&hash, offset, peer_raft_id).await
            }
            WireMessage::Request(Request::StateHash { index, hash }) => {
                self.state_hash(index, hash, peer_raft_id)
            }
            WireMessage::Request(Request::PrepareComponent {
                hash,
                size_bytes,
                source,
            }) => {
                self.prepare_component(hash, size_bytes, source, peer_raft_id)
                    .await
            }
            WireMessage::Request(Request::Members) => WireMessage::Response(Response::Members {
                members: self.directory.members().into_iter().collect(),
            }),
            WireMessage::Request(Request::InstallSnapshot(_)) => error_frame(
                ErrorCode::UnexpectedFrame,
                "a snapshot offer is served on its own".into(),
            ),
            WireMessage::Request(Request::SnapshotChunk { .. }) => error_frame(
                ErrorCode::UnexpectedFrame,
                "a snapshot chunk without an offer".into(),
            ),
            WireMessage::Request(Request::ProposeForwardedBatch { .. }) => error_frame(
                ErrorCode::UnexpectedFrame,
                "a batch of forwarded proposals is served on its own".into(),
            ),
            WireMessage::Response(_) | WireMessage::Error(_) | WireMessage::Refused(_) => {
                error_frame(
                    ErrorCode::UnexpectedFrame,
                    "expected a request, got an answer".into(),
                )
            }
        }
    }

    /// Decode and check the whole batch before delivering any of it; the
    /// refusal to answer with if it is not delivered.
    fn deliver(&self, batch: RaftBatch, peer_raft_id: Option<u64>) -> Result<(), WireMessage> {
        let Some(peer_raft_id) = peer_raft_id else {
            return Err(error_frame(
                ErrorCode::WrongSender,
                "only cluster members may send Raft messages".into(),
            ));
        };
        if batch.messages.len() > MAX_BATCH_MESSAGES {
            return Err(error_frame(
                ErrorCode::TooLarge,
                format!(
                    "{} raft messages in one frame; the limit is {MAX_BATCH_MESSAGES}",
                    batch.messages.len()
                ),
            ));
        }
        // No preallocation from a count the peer chose.
        let mut messages = Vec::new();
        for bytes in batch.messages {
            let message = match super::protobuf_input::parse_bounded::<Message>(bytes.into()) {
                Ok(message) => message,
                Err(e) => {
                    return Err(error_frame(
                        ErrorCode::Malformed,
                        format!("raft message: {e}"),
                    ));
                }
            };
            if message.from != peer_raft_id || message.to != self.raft_id {
                return Err(error_frame(
                    ErrorCode::WrongSender,
                    format!(
                        "message from {} to {} on the connection of node {peer_raft_id} to {}",
                        message.from, message.to, self.raft_id
                    ),
                ));
            }
            messages.push(message);
        }
        for message in messages {
            if self.inbox.deliver_raft(message).is_err() {
                // Raft retries whatever is lost; the sender counts it.
                return Err(error_frame(
                    ErrorCode::Overloaded,
                    "the node's inbox is full".into(),
                ));
            }
        }
        Ok(())
    }

    /// Propose every command of a forwarded batch, then answer each one,
    /// in the batch's order, all in one write once the last has applied.
    /// The whole batch is handed to the node before any answer is awaited,
    /// so its entries share an append, commit together and apply together;
    /// the applier answers them one entry at a time, and writing each
    /// answer as it came sent a packet per answer (twice the datagrams per
    /// write of a client talking to the leader).
    async fn serve_forwarded_batch(
        &self,
        send: &mut SendStream,
        proposals: Vec<ForwardedProposal>,
    ) -> Result<(), CodecError> {
        if proposals.is_empty() || proposals.len() > MAX_FORWARD_BATCH_PROPOSALS {
            let answer = error_frame(
                if proposals.is_empty() {
                    ErrorCode::Malformed
                } else {
                    ErrorCode::TooLarge
                },
                format!(
                    "{} forwarded proposals in one batch; 1 to {MAX_FORWARD_BATCH_PROPOSALS} are accepted",
                    proposals.len()
                ),
            );
            return codec::write_frame(send, &answer).await;
        }
        // Collected: every command is with the node before the first wait.
        let submitted: Vec<_> = proposals
            .into_iter()
            .map(|proposal| self.inbox.submit_forwarded(proposal.command, proposal.tag))
            .collect();
        let mut out = Vec::new();
        for submission in submitted {
            let answer = match submission {
                Ok(applied) => proposal_answer(applied.await),
                Err(refused) => WireMessage::Refused(refused),
            };
            out.extend_from_slice(&codec::encode_frame(&answer)?);
        }
        tokio::io::AsyncWriteExt::write_all(send, &out).await?;
        Ok(())
    }

    async fn propose(&self, command: Vec<u8>) -> WireMessage {
        proposal_answer(self.inbox.propose(command).await)
    }

    async fn propose_activation(&self, activation: Activation) -> WireMessage {
        proposal_answer(self.inbox.propose_activation(activation).await)
    }

    /// A member's state hash at a state check, for the node to compare.
    fn state_hash(&self, index: u64, hash: [u8; 32], peer_raft_id: Option<u64>) -> WireMessage {
        let Some(from) = peer_raft_id else {
            return error_frame(
                ErrorCode::WrongSender,
                "only cluster members may report state hashes".into(),
            );
        };
        match self.inbox.report_state_hash(from, index, hash) {
            Ok(()) => WireMessage::Response(Response::Delivered { count: 1 }),
            Err(error) => WireMessage::Refused(error),
        }
    }

    /// Get a component ready for an upcoming activation (for a member).
    async fn prepare_component(
        &self,
        hash: String,
        size_bytes: u64,
        source: u64,
        peer_raft_id: Option<u64>,
    ) -> WireMessage {
        if peer_raft_id.is_none() {
            return error_frame(
                ErrorCode::WrongSender,
                "only cluster members may prepare components".into(),
            );
        }
        let activation = Activation {
            hash,
            size_bytes,
            kind: ActivationKind::Upgrade,
            limits: Default::default(),
            source,
        };
        match self.inbox.prepare_component(activation).await {
            Ok(Ok(compile_ms)) => WireMessage::Response(Response::ComponentPrepared { compile_ms }),
            Ok(Err(reason)) => error_frame(ErrorCode::Rejected, reason),
            Err(error) => WireMessage::Refused(error),
        }
    }

    /// Serve a piece of a component this node holds, to a member.
    async fn component_chunk(
        &self,
        hash: &str,
        offset: u64,
        peer_raft_id: Option<u64>,
    ) -> WireMessage {
        if peer_raft_id.is_none() {
            return error_frame(
                ErrorCode::WrongSender,
                "only cluster members may fetch components".into(),
            );
        }
        let Some(link) = self.link.get() else {
            return error_frame(ErrorCode::Rejected, "this node is not running yet".into());
        };
        let Some(hash) = ComponentHash::from_hex(hash) else {
            return error_frame(ErrorCode::Malformed, "not a component hash".into());
        };
        let path = link.components.path_of(&hash);
        let read = tokio::task::spawn_blocking(move || read_chunk(&path, offset)).await;
        match read {
            Ok(Ok((total_len, data))) => {
                WireMessage::Response(Response::ComponentChunk { total_len, data })
            }
            Ok(Err(error)) => {
                error_frame(ErrorCode::Rejected, format!("component {hash}: {error}"))
            }
            Err(error) => error_frame(ErrorCode::Rejected, error.to_string()),
        }
    }
}

/// The answer to a forwarded proposal. Every refusal is the node's own
/// client error, as is: the forwarding node hands it to its client
/// unchanged (a node that stopped after taking the proposal answers
/// `outcome_unknown`: it may already be in the log).
fn proposal_answer(result: Result<crate::node::Applied, ClientError>) -> WireMessage {
    match result {
        Ok(applied) => WireMessage::Response(Response::Applied {
            index: applied.index,
            term: applied.term,
            result: applied.result.map_err(WireGuestFailure::from),
            fuel_used: applied.fuel_used,
        }),
        Err(error) => WireMessage::Refused(error),
    }
}

/// Up to [`COMPONENT_CHUNK_BYTES`] of the file at `path` from `offset`, and
/// the file's length.
fn read_chunk(path: &std::path::Path, offset: u64) -> std::io::Result<(u64, Vec<u8>)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let total_len = file.metadata()?.len();
    if offset > total_len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("offset {offset} is beyond the end ({total_len} bytes)"),
        ));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut data = Vec::new();
    file.take(COMPONENT_CHUNK_BYTES as u64)
        .read_to_end(&mut data)?;
    Ok((total_len, data))
}

fn error_frame(code: ErrorCode, message: String) -> WireMessage {
    WireMessage::Error(ErrorFrame { code, message })
}
