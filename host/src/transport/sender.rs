//! The sending side: one [`PeerSender`] per peer, with a pooled connection,
//! batching and two priorities.
//!
//! Raft's control traffic (votes, heartbeats and their answers, append
//! answers) and its bulk traffic (appends, snapshots) go through separate
//! bounded queues, each drained by its own task onto its own long-lived QUIC
//! stream, so a vote is never stuck behind a large append. Each task takes
//! everything queued (up to [`MAX_BATCH_BYTES`]) into one frame and sends it
//! at once while fewer than [`DELIVERY_WINDOW_FRAMES`] frames are
//! unanswered; the peer answers them cumulatively (delivery confirmation),
//! and a frame unanswered for [`ANSWER_TIMEOUT`] breaks the stream. When a
//! queue is full the message is dropped and counted; Raft retransmits.
//! Both tasks share one connection per peer, dialed on demand and redialed
//! with exponential backoff when it breaks.

use crate::limits::MAX_FRAME_BYTES;
use crate::limits::{
    ANSWER_TIMEOUT, CONNECT_TIMEOUT, DELIVERY_WINDOW_FRAMES, LAZY_APPEND_DELAY, MAX_BATCH_BYTES,
    MAX_BATCH_COUNT, PEER_QUEUE_CAPACITY, RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN,
};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use iroh::Endpoint;
use iroh::endpoint::{Connection, RecvStream, SendStream};
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::{Mutex, mpsc};

use super::RAFT_ALPN;
use super::codec::{self, CodecError, FrameStart};
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
    /// Set while `liveness` checks the held connection (one check at a time).
    pub(super) probing: AtomicBool,
}

/// The connection in a peer's slot, unless there is none or it closed.
fn open(slot: &Option<Connection>) -> Option<Connection> {
    slot.as_ref()
        .filter(|connection| connection.close_reason().is_none())
        .cloned()
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
            probing: AtomicBool::new(false),
        }
    }

    pub fn raft_id(&self) -> u64 {
        self.raft_id
    }

    /// The connection held now, if it is open; never dials.
    pub async fn held(&self) -> Option<Connection> {
        open(&*self.connection.lock().await)
    }

    /// The live connection, dialing if there is none.
    pub async fn get(&self) -> Result<Connection, String> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = open(&slot) {
            return Ok(connection);
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
    /// Set while the node's commits do not wait for this peer: its bulk
    /// lane then gathers appends for [`LAZY_APPEND_DELAY`] before a frame.
    lazy: Arc<AtomicBool>,
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
        let lazy = Arc::new(AtomicBool::new(false));
        let tasks = [
            (control_rx, "control", None),
            (bulk_rx, "bulk", Some(lazy.clone())),
        ]
        .into_iter()
        .map(|(rx, lane, lazy)| {
            let lane = Lane {
                raft_id,
                name: lane,
                connection: connection.clone(),
                directory: directory.clone(),
                stats: stats.clone(),
                lazy,
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
            lazy,
        }
    }

    /// Whether this peer's appends may wait (see `node::core::pace`).
    pub fn set_lazy(&self, lazy: bool) {
        self.lazy.store(lazy, Ordering::Relaxed);
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
    /// The bulk lane's: whether to gather before sending (see
    /// [`PeerSender::set_lazy`]).
    lazy: Option<Arc<AtomicBool>>,
}

/// A lane's open stream and the frames sent on it that the peer has not
/// answered yet, oldest first.
struct LaneStream {
    connection: Connection,
    send: SendStream,
    recv: RecvStream,
    unanswered: VecDeque<SentFrame>,
}

/// A frame on its way: when it left and what it carried (for the stats,
/// counted once it is answered).
struct SentFrame {
    sent_at: Instant,
    messages: u64,
    bytes: u64,
}

impl LaneStream {
    /// When the oldest unanswered frame's answer is overdue.
    fn answer_deadline(&self) -> Option<Instant> {
        self.unanswered
            .front()
            .map(|frame| frame.sent_at + ANSWER_TIMEOUT)
    }
}

/// What a lane does next.
enum LaneEvent {
    /// A message to send (`None`: the node dropped the queue).
    Send(Option<Message>),
    /// The peer's next answer started to arrive.
    Answer(Result<FrameStart, CodecError>),
    /// The oldest frame went unanswered for [`ANSWER_TIMEOUT`].
    AnswerOverdue,
}

impl Lane {
    /// Sends frames without waiting for each one's answer: up to
    /// [`DELIVERY_WINDOW_FRAMES`] may be unanswered, and the peer answers
    /// them cumulatively (see `handler`). The answers are read as they come,
    /// in between sends.
    async fn run(self, mut queue: mpsc::Receiver<Message>) {
        let mut stream: Option<LaneStream> = None;
        let mut backoff = RECONNECT_BACKOFF_MIN;
        loop {
            let event = match stream.as_mut() {
                Some(open) if !open.unanswered.is_empty() => {
                    let window_open = open.unanswered.len() < DELIVERY_WINDOW_FRAMES;
                    let deadline = open.answer_deadline().unwrap_or_else(Instant::now);
                    tokio::select! {
                        biased;
                        start = codec::wait_for_frame(&mut open.recv) => LaneEvent::Answer(start),
                        message = queue.recv(), if window_open => LaneEvent::Send(message),
                        () = tokio::time::sleep_until(deadline.into()) => LaneEvent::AnswerOverdue,
                    }
                }
                _ => LaneEvent::Send(queue.recv().await),
            };
            match event {
                LaneEvent::Send(None) => return,
                LaneEvent::Send(Some(first)) => {
                    if self
                        .lazy
                        .as_ref()
                        .is_some_and(|lazy| lazy.load(Ordering::Relaxed))
                    {
                        tokio::time::sleep(LAZY_APPEND_DELAY).await;
                    }
                    let batch = take_batch(first, &mut queue);
                    self.send_batch(&mut stream, batch, &mut backoff).await;
                }
                LaneEvent::Answer(start) => {
                    self.read_answer(&mut stream, start, &mut backoff).await
                }
                LaneEvent::AnswerOverdue => self.broken(&mut stream, "no answer in time").await,
            }
        }
    }

    /// Send one frame, opening the stream first if there is none. When the
    /// peer cannot be reached the batch is dropped (Raft retries) after a
    /// back-off.
    async fn send_batch(
        &self,
        stream: &mut Option<LaneStream>,
        batch: RaftBatch,
        backoff: &mut Duration,
    ) {
        if stream.is_none() {
            match self.connection.open_stream().await {
                Ok((connection, send, recv)) => {
                    *stream = Some(LaneStream {
                        connection,
                        send,
                        recv,
                        unanswered: VecDeque::new(),
                    });
                }
                Err(error) => {
                    tracing::debug!(peer = self.raft_id, lane = self.name, %error,
                        "peer unreachable; dropping a batch (Raft retries)");
                    self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(*backoff).await;
                    *backoff = (*backoff * 2).min(RECONNECT_BACKOFF_MAX);
                    return;
                }
            }
        }
        let Some(open) = stream.as_mut() else {
            return;
        };
        let frame = SentFrame {
            sent_at: Instant::now(),
            messages: batch.messages.len() as u64,
            bytes: batch.messages.iter().map(|m| m.len() as u64).sum(),
        };
        match codec::write_frame(&mut open.send, &WireMessage::RaftMessage(batch)).await {
            Ok(()) => open.unanswered.push_back(frame),
            Err(error) => self.broken(stream, &error.to_string()).await,
        }
    }

    /// Read the rest of an answer that started to arrive, by the oldest
    /// unanswered frame's deadline, and account for it.
    async fn read_answer(
        &self,
        stream: &mut Option<LaneStream>,
        start: Result<FrameStart, CodecError>,
        backoff: &mut Duration,
    ) {
        let Some(open) = stream.as_mut() else {
            return;
        };
        let deadline = open.answer_deadline().unwrap_or_else(Instant::now);
        let answer = match start {
            Ok(start) => tokio::time::timeout_at(
                deadline.into(),
                codec::read_started_frame(&mut open.recv, start, MAX_FRAME_BYTES),
            )
            .await
            .map_err(|_| "no answer in time".to_string())
            .and_then(|read| read.map_err(|e| e.to_string())),
            Err(error) => Err(error.to_string()),
        };
        let outcome = match answer {
            Ok(Some(answer)) => self.take_answer(open, answer),
            Ok(None) => Err("the peer closed the stream".to_string()),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => *backoff = RECONNECT_BACKOFF_MIN,
            Err(error) => self.broken(stream, &error).await,
        }
    }

    /// Account for one answer: `Delivered` answers that many of the oldest
    /// frames; any other answer refuses the oldest one (the stream is still
    /// in sync; Raft retries). An answer for a frame never sent breaks the
    /// stream.
    fn take_answer(&self, open: &mut LaneStream, answer: WireMessage) -> Result<(), String> {
        self.directory.touch(self.raft_id);
        if let WireMessage::Response(Response::Delivered { count }) = answer {
            let count = count as usize;
            if count == 0 || count > open.unanswered.len() {
                return Err(format!(
                    "the peer answered {count} frames; {} were unanswered",
                    open.unanswered.len()
                ));
            }
            for frame in open.unanswered.drain(..count) {
                self.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .messages_sent
                    .fetch_add(frame.messages, Ordering::Relaxed);
                self.stats
                    .bytes_sent
                    .fetch_add(frame.bytes, Ordering::Relaxed);
            }
            return Ok(());
        }
        if open.unanswered.pop_front().is_none() {
            return Err(format!("an answer for no frame: {answer:?}"));
        }
        tracing::debug!(
            peer = self.raft_id,
            lane = self.name,
            ?answer,
            "peer refused a batch"
        );
        self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Drop a broken stream (its unanswered frames are lost; Raft retries)
    /// and forget its connection if that broke too.
    async fn broken(&self, stream: &mut Option<LaneStream>, error: &str) {
        tracing::debug!(peer = self.raft_id, lane = self.name, %error, "stream to peer broke");
        self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
        if let Some(open) = stream.take() {
            self.connection.invalidate(&open.connection).await;
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
