//! The sending side: one [`PeerSender`] per peer, with a pooled connection,
//! batching and two priorities.
//!
//! Raft's control traffic (votes, heartbeats and their answers, append
//! answers) and its bulk traffic (appends, snapshots) go through separate
//! bounded queues, each drained by its own task onto its own long-lived QUIC
//! stream, so a vote is never stuck behind a large append. Each task takes
//! everything queued (up to [`MAX_BATCH_BYTES`]) into one frame and waits for
//! the peer's answer (delivery confirmation) before the next frame. When a
//! queue is full the message is dropped and counted; Raft retransmits.
//! Both tasks share one connection per peer, dialed on demand and redialed
//! with exponential backoff when it breaks.

use crate::limits::MAX_FRAME_BYTES;
use crate::limits::{
    ANSWER_TIMEOUT, CONNECT_TIMEOUT, MAX_BATCH_BYTES, MAX_BATCH_COUNT, PEER_QUEUE_CAPACITY,
    RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use iroh::Endpoint;
use iroh::endpoint::{Connection, RecvStream, SendStream};
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::{Mutex, mpsc};

use super::RAFT_ALPN;
use super::codec::{self};
use super::directory::PeerDirectory;
use super::message::{RaftBatch, Response, WireMessage};
use crate::node::metrics::PeerStats;

/// Which queue a Raft message goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Control,
    Bulk,
}

impl Priority {
    pub fn of(message: &Message) -> Self {
        match message.get_msg_type() {
            MessageType::MsgAppend | MessageType::MsgSnapshot => Priority::Bulk,
            _ => Priority::Control,
        }
    }
}

/// The connection to one peer, shared by its sender tasks.
#[derive(Debug)]
pub struct PeerConnection {
    raft_id: u64,
    endpoint: Endpoint,
    directory: PeerDirectory,
    connection: Mutex<Option<Connection>>,
    stats: Arc<PeerStats>,
}

impl PeerConnection {
    pub fn new(
        raft_id: u64,
        endpoint: Endpoint,
        directory: PeerDirectory,
        stats: Arc<PeerStats>,
    ) -> Self {
        PeerConnection {
            raft_id,
            endpoint,
            directory,
            connection: Mutex::new(None),
            stats,
        }
    }

    /// The live connection, dialing if there is none.
    pub async fn get(&self) -> Result<Connection, String> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref()
            && connection.close_reason().is_none()
        {
            return Ok(connection.clone());
        }
        let addr = self
            .directory
            .addr_of(self.raft_id)
            .and_then(|addr| addr.endpoint_addr())
            .ok_or_else(|| format!("no address for node {}", self.raft_id))?;
        let connection =
            tokio::time::timeout(CONNECT_TIMEOUT, self.endpoint.connect(addr, RAFT_ALPN))
                .await
                .map_err(|_| format!("dialing node {} timed out", self.raft_id))?
                .map_err(|e| format!("dialing node {}: {e}", self.raft_id))?;
        self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Forget a broken connection so the next `get` redials.
    pub async fn invalidate(&self, broken: &Connection) {
        let mut slot = self.connection.lock().await;
        if slot
            .as_ref()
            .is_some_and(|c| c.stable_id() == broken.stable_id())
        {
            *slot = None;
        }
    }

    /// Open a stream for one request/answer exchange.
    pub async fn open_stream(&self) -> Result<(Connection, SendStream, RecvStream), String> {
        let connection = self.get().await?;
        match connection.open_bi().await {
            Ok((send, recv)) => Ok((connection, send, recv)),
            Err(e) => {
                self.invalidate(&connection).await;
                Err(format!("opening a stream to node {}: {e}", self.raft_id))
            }
        }
    }
}

/// Queues and tasks sending Raft messages to one peer.
#[derive(Debug)]
pub struct PeerSender {
    control: mpsc::Sender<Message>,
    bulk: mpsc::Sender<Message>,
    pub connection: Arc<PeerConnection>,
    pub stats: Arc<PeerStats>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for PeerSender {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl PeerSender {
    pub fn spawn(
        raft_id: u64,
        connection: Arc<PeerConnection>,
        stats: Arc<PeerStats>,
        directory: PeerDirectory,
    ) -> Self {
        let (control, control_rx) = mpsc::channel(PEER_QUEUE_CAPACITY);
        let (bulk, bulk_rx) = mpsc::channel(PEER_QUEUE_CAPACITY);
        let tasks = [(control_rx, "control"), (bulk_rx, "bulk")]
            .into_iter()
            .map(|(rx, lane)| {
                let lane = Lane {
                    raft_id,
                    name: lane,
                    connection: connection.clone(),
                    directory: directory.clone(),
                    stats: stats.clone(),
                };
                tokio::spawn(lane.run(rx))
            })
            .collect();
        PeerSender {
            control,
            bulk,
            connection,
            stats,
            tasks,
        }
    }

    /// Queue a message; drops (and counts) it if the queue is full.
    pub fn send(&self, message: Message) {
        let queue = match Priority::of(&message) {
            Priority::Control => &self.control,
            Priority::Bulk => &self.bulk,
        };
        if queue.try_send(message).is_err() {
            self.stats.queue_drops.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One priority lane to one peer: a queue, a stream, a task.
struct Lane {
    raft_id: u64,
    name: &'static str,
    connection: Arc<PeerConnection>,
    directory: PeerDirectory,
    stats: Arc<PeerStats>,
}

impl Lane {
    async fn run(self, mut queue: mpsc::Receiver<Message>) {
        let mut stream: Option<(Connection, SendStream, RecvStream)> = None;
        let mut backoff = RECONNECT_BACKOFF_MIN;
        while let Some(first) = queue.recv().await {
            let batch = take_batch(first, &mut queue);
            let count = batch.messages.len() as u64;
            let bytes: usize = batch.messages.iter().map(Vec::len).sum();
            if stream.is_none() {
                match self.connection.open_stream().await {
                    Ok(opened) => stream = Some(opened),
                    Err(error) => {
                        tracing::debug!(peer = self.raft_id, lane = self.name, %error,
                            "peer unreachable; dropping a batch (Raft retries)");
                        self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                        continue;
                    }
                }
            }
            let Some((connection, send, recv)) = stream.as_mut() else {
                continue;
            };
            match exchange(send, recv, WireMessage::RaftMessage(batch), ANSWER_TIMEOUT).await {
                Ok(WireMessage::Response(Response::Delivered { .. })) => {
                    backoff = RECONNECT_BACKOFF_MIN;
                    self.directory.touch(self.raft_id);
                    self.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                    self.stats.messages_sent.fetch_add(count, Ordering::Relaxed);
                    self.stats
                        .bytes_sent
                        .fetch_add(bytes as u64, Ordering::Relaxed);
                }
                Ok(answer) => {
                    // The peer refused (overloaded, wrong sender...): the
                    // stream is still in sync; Raft will retry.
                    self.directory.touch(self.raft_id);
                    tracing::debug!(
                        peer = self.raft_id,
                        lane = self.name,
                        ?answer,
                        "peer refused a batch"
                    );
                    self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::debug!(peer = self.raft_id, lane = self.name, %error,
                        "stream to peer broke");
                    self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    let broken = connection.clone();
                    stream = None;
                    self.connection.invalidate(&broken).await;
                }
            }
        }
    }
}

/// Everything queued, up to the batch size, in order.
fn take_batch(first: Message, queue: &mut mpsc::Receiver<Message>) -> RaftBatch {
    let mut messages = Vec::new();
    let mut bytes = 0;
    let mut next = Some(first);
    while let Some(message) = next.take() {
        match message.write_to_bytes() {
            Ok(encoded) => {
                bytes += encoded.len();
                messages.push(encoded);
            }
            Err(error) => tracing::error!(%error, "cannot encode a raft message; dropped"),
        }
        if bytes >= MAX_BATCH_BYTES || messages.len() >= MAX_BATCH_COUNT {
            break;
        }
        next = queue.try_recv().ok();
    }
    RaftBatch { messages }
}

/// Send one request frame and read its answer.
pub async fn exchange(
    send: &mut SendStream,
    recv: &mut RecvStream,
    request: WireMessage,
    timeout: Duration,
) -> Result<WireMessage, String> {
    codec::write_frame(send, &request)
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, codec::read_frame(recv, MAX_FRAME_BYTES)).await {
        Err(_) => Err("no answer in time".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(None)) => Err("the peer closed the stream".into()),
        Ok(Ok(Some(answer))) => Ok(answer),
    }
}
