//! Snapshot transfer over `iroh-raft/0`: the file beside a Raft
//! `MsgSnapshot`, streamed in chunks on its own stream.
//!
//! ```text
//! leader (sender)                               follower (receiver)
//!   Request::InstallSnapshot(offer)  ─────────►  checks the offer; keeps a partial
//!                                    ◄─────────  Response::SnapshotResume { offset }
//!   Request::SnapshotChunk{offset,..} ────────►  appends to <dir>/incoming-*.part
//!                                    ◄─────────  Response::SnapshotChunkAck { received }
//!   ... last chunk                   ─────────►  fsync, verify BLAKE3, rename, hand the
//!                                    ◄─────────  MsgSnapshot to Raft: Response::Delivered
//! ```
//!
//! Neither side holds more than one chunk in memory. An interrupted transfer
//! leaves the partial file; the next offer of the same snapshot resumes
//! from its length. The leader reports the outcome to Raft
//! (`report_snapshot`), which retries a failed transfer later.

use crate::limits::MAX_FRAME_BYTES;
use crate::limits::MAX_SNAPSHOT_FILE_BYTES;
use crate::limits::{SNAPSHOT_CHUNK_BYTES, SNAPSHOT_CHUNK_TIMEOUT};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use super::codec::{self, CodecError};
use super::message::{ErrorCode, ErrorFrame, Request, Response, WireMessage};
use super::sender::{PeerConnection, exchange};
use crate::node::NodeInbox;
use crate::node::snapshot::{self as snapshot_file, SnapshotDescriptor};

/// A leader's offer to send a snapshot file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotOffer {
    /// The raft-rs `MsgSnapshot`, protobuf-encoded (its data is the file's
    /// descriptor).
    pub message: Vec<u8>,
    pub file_len: u64,
    /// BLAKE3 (hex) of the whole file.
    pub file_hash: String,
}

/// Stream the snapshot file a `MsgSnapshot` refers to, then hand the
/// message over. `Ok` once the peer's Raft has the message.
pub async fn send_snapshot(
    connection: &Arc<PeerConnection>,
    message: &Message,
    snapshot_dir: &Path,
) -> Result<(), String> {
    let meta = message.get_snapshot().get_metadata();
    let descriptor =
        SnapshotDescriptor::decode(&message.get_snapshot().data).map_err(|e| e.to_string())?;
    let path = snapshot_file::path_for(snapshot_dir, meta.index, meta.term);
    let mut file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len != descriptor.file_len {
        return Err(format!(
            "{} is {len} bytes, its descriptor says {}",
            path.display(),
            descriptor.file_len
        ));
    }
    let offer = SnapshotOffer {
        message: message.write_to_bytes().map_err(|e| e.to_string())?,
        file_len: descriptor.file_len,
        file_hash: descriptor.file_hash.clone(),
    };
    let (_, mut send, mut recv) = connection.open_stream().await?;
    let mut ask = async |request: Request| {
        exchange(
            &mut send,
            &mut recv,
            WireMessage::Request(request),
            SNAPSHOT_CHUNK_TIMEOUT,
        )
        .await
    };
    let mut offset = match ask(Request::InstallSnapshot(offer)).await? {
        WireMessage::Response(Response::Delivered { .. }) => return Ok(()),
        WireMessage::Response(Response::SnapshotResume { offset }) if offset <= len => offset,
        other => return Err(format!("the peer refused the snapshot: {other:?}")),
    };
    if offset > 0 {
        tracing::info!(to = message.to, offset, len, "resuming a snapshot transfer");
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
    loop {
        let want = (len - offset).min(SNAPSHOT_CHUNK_BYTES as u64) as usize;
        file.read_exact(&mut buf[..want])
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let chunk = Request::SnapshotChunk {
            offset,
            data: buf[..want].to_vec(),
        };
        offset += want as u64;
        match ask(chunk).await? {
            WireMessage::Response(Response::SnapshotChunkAck { received })
                if received == offset => {}
            WireMessage::Response(Response::Delivered { .. }) if offset == len => return Ok(()),
            other => return Err(format!("the peer refused a chunk at {offset}: {other:?}")),
        }
        if offset == len {
            return Err("the peer did not confirm the complete snapshot".into());
        }
    }
}

/// The receiving side of one snapshot transfer, on the stream the offer
/// came in on.
#[derive(Debug)]
pub struct SnapshotReceiver<'a> {
    pub raft_id: u64,
    pub peer_raft_id: u64,
    pub dir: &'a Path,
    pub inbox: &'a NodeInbox,
}

impl SnapshotReceiver<'_> {
    /// Serve one transfer: answer the offer, take chunks until the file is
    /// complete, verify it, and deliver the message. Protocol errors are
    /// answered with an Error frame; only stream failures are `Err`.
    ///
    /// Generic over the streams (an iroh stream pair in the node) so the
    /// fuzz targets in `host/fuzz` can feed it bytes from memory.
    pub async fn serve<S, R>(
        &self,
        send: &mut S,
        recv: &mut R,
        offer: SnapshotOffer,
    ) -> Result<(), CodecError>
    where
        S: AsyncWrite + Unpin,
        R: AsyncRead + Unpin,
    {
        let accepted = match self.check_offer(&offer) {
            Ok(accepted) => accepted,
            Err(frame) => return codec::write_frame(send, &WireMessage::Error(frame)).await,
        };
        let (message, final_path, partial) = accepted;
        if final_path.exists() && file_matches(&final_path, &offer).await {
            let answer = self.deliver(message);
            return codec::write_frame(send, &answer).await;
        }
        let mut offset = std::fs::metadata(&partial).map_or(0, |m| m.len());
        if offset > offer.file_len {
            offset = 0;
        }
        if offset == offer.file_len {
            let answer = self.finish(&partial, &final_path, &offer, message).await;
            return codec::write_frame(send, &answer).await;
        }
        let mut options = OpenOptions::new();
        options.create(true).write(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::storage::DATA_FILE_MODE);
        let file = options
            .open(&partial)
            .and_then(|file| file.set_len(offset).map(|()| file));
        let mut file = match file {
            Ok(file) => file,
            Err(e) => {
                let frame = refuse(
                    ErrorCode::Rejected,
                    format!("cannot store the snapshot: {e}"),
                );
                return codec::write_frame(send, &frame).await;
            }
        };
        if let Err(e) = file.seek(SeekFrom::Start(offset)) {
            let frame = refuse(
                ErrorCode::Rejected,
                format!("cannot store the snapshot: {e}"),
            );
            return codec::write_frame(send, &frame).await;
        }
        codec::write_frame(
            send,
            &WireMessage::Response(Response::SnapshotResume { offset }),
        )
        .await?;
        loop {
            let frame = tokio::time::timeout(
                SNAPSHOT_CHUNK_TIMEOUT,
                codec::read_frame(recv, MAX_FRAME_BYTES),
            )
            .await
            .map_err(|_| CodecError::Io(std::io::ErrorKind::TimedOut.into()))??;
            let Some(WireMessage::Request(Request::SnapshotChunk { offset: at, data })) = frame
            else {
                // Anything else ends the transfer; the partial file stays
                // for a resume.
                let frame = refuse(
                    ErrorCode::UnexpectedFrame,
                    "expected a snapshot chunk".into(),
                );
                return codec::write_frame(send, &frame).await;
            };
            if at != offset
                || data.len() > SNAPSHOT_CHUNK_BYTES
                || offset + data.len() as u64 > offer.file_len
            {
                let frame = refuse(
                    ErrorCode::Malformed,
                    format!(
                        "chunk of {} bytes at {at}; expected at most {SNAPSHOT_CHUNK_BYTES} at {offset} of {}",
                        data.len(),
                        offer.file_len
                    ),
                );
                return codec::write_frame(send, &frame).await;
            }
            if let Err(e) = file.write_all(&data) {
                let frame = refuse(
                    ErrorCode::Rejected,
                    format!("cannot store the snapshot: {e}"),
                );
                return codec::write_frame(send, &frame).await;
            }
            offset += data.len() as u64;
            if offset == offer.file_len {
                let synced = file.sync_all();
                drop(file);
                let answer = match synced {
                    Ok(()) => self.finish(&partial, &final_path, &offer, message).await,
                    Err(e) => refuse(
                        ErrorCode::Rejected,
                        format!("cannot sync the snapshot: {e}"),
                    ),
                };
                return codec::write_frame(send, &answer).await;
            }
            codec::write_frame(
                send,
                &WireMessage::Response(Response::SnapshotChunkAck { received: offset }),
            )
            .await?;
        }
    }

    /// Validate an offer before storing a byte of it.
    #[allow(clippy::result_large_err)]
    fn check_offer(
        &self,
        offer: &SnapshotOffer,
    ) -> Result<(Message, PathBuf, PathBuf), ErrorFrame> {
        let message = super::protobuf_input::parse_bounded::<Message>(offer.message.clone().into())
            .map_err(|e| ErrorFrame {
                code: ErrorCode::Malformed,
                message: format!("snapshot message: {e}"),
            })?;
        if message.get_msg_type() != MessageType::MsgSnapshot {
            return Err(ErrorFrame {
                code: ErrorCode::Malformed,
                message: "the offer does not carry a MsgSnapshot".into(),
            });
        }
        if message.from != self.peer_raft_id || message.to != self.raft_id {
            return Err(ErrorFrame {
                code: ErrorCode::WrongSender,
                message: format!(
                    "snapshot from {} to {} on the connection of node {} to {}",
                    message.from, message.to, self.peer_raft_id, self.raft_id
                ),
            });
        }
        let descriptor =
            SnapshotDescriptor::decode(&message.get_snapshot().data).map_err(|e| ErrorFrame {
                code: ErrorCode::Malformed,
                message: e.to_string(),
            })?;
        let meta = message.get_snapshot().get_metadata();
        let hash_ok =
            offer.file_hash.len() == 64 && offer.file_hash.bytes().all(|b| b.is_ascii_hexdigit());
        if descriptor.file_len != offer.file_len
            || descriptor.file_hash != offer.file_hash
            || !hash_ok
            || meta.index == 0
        {
            return Err(ErrorFrame {
                code: ErrorCode::Malformed,
                message: "the offer does not match its snapshot message".into(),
            });
        }
        if offer.file_len > MAX_SNAPSHOT_FILE_BYTES {
            return Err(ErrorFrame {
                code: ErrorCode::TooLarge,
                message: format!(
                    "a snapshot of {} bytes; the limit is {MAX_SNAPSHOT_FILE_BYTES}",
                    offer.file_len
                ),
            });
        }
        if let Err(e) = std::fs::create_dir_all(self.dir) {
            return Err(ErrorFrame {
                code: ErrorCode::Rejected,
                message: format!("cannot store snapshots: {e}"),
            });
        }
        let final_path = snapshot_file::path_for(self.dir, meta.index, meta.term);
        let partial =
            snapshot_file::partial_path_for(self.dir, meta.index, meta.term, &offer.file_hash);
        Ok((message, final_path, partial))
    }

    /// Verify the complete partial file, move it into place and deliver.
    async fn finish(
        &self,
        partial: &Path,
        final_path: &Path,
        offer: &SnapshotOffer,
        message: Message,
    ) -> WireMessage {
        if !file_matches(partial, offer).await {
            let _ = std::fs::remove_file(partial);
            return refuse(
                ErrorCode::Malformed,
                "the received snapshot does not match its checksum; discarded".into(),
            );
        }
        let moved = std::fs::rename(partial, final_path)
            .and_then(|()| File::open(self.dir).and_then(|d| d.sync_all()));
        if let Err(e) = moved {
            return refuse(
                ErrorCode::Rejected,
                format!("cannot store the snapshot: {e}"),
            );
        }
        tracing::info!(
            from = self.peer_raft_id,
            bytes = offer.file_len,
            index = message.get_snapshot().get_metadata().index,
            "received a snapshot"
        );
        self.deliver(message)
    }

    fn deliver(&self, message: Message) -> WireMessage {
        match self.inbox.deliver_raft(message) {
            Ok(()) => WireMessage::Response(Response::Delivered { count: 1 }),
            Err(_) => refuse(ErrorCode::Overloaded, "the node's inbox is full".into()),
        }
    }
}

/// Does the file have the offered length and hash? (Hashed off the async
/// threads: snapshots can be large.)
async fn file_matches(path: &Path, offer: &SnapshotOffer) -> bool {
    let path = path.to_path_buf();
    let expected_len = offer.file_len;
    let expected_hash = offer.file_hash.clone();
    tokio::task::spawn_blocking(move || {
        std::fs::metadata(&path).is_ok_and(|m| m.len() == expected_len)
            && snapshot_file::hash_file(&path).is_ok_and(|hash| hash == expected_hash)
    })
    .await
    .unwrap_or(false)
}

fn refuse(code: ErrorCode, message: String) -> WireMessage {
    WireMessage::Error(ErrorFrame { code, message })
}
