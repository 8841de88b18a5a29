//! The frame codec of the `iroh-raft/0` protocol: how one [`WireMessage`]
//! becomes bytes on a stream and back.
//!
//! ## Wire format
//!
//! ```text
//!  ┌──────────────────────────┬──────────────────────────────────────────┐
//!  │ length: u32, big-endian  │ payload: `length` bytes                  │
//!  │ (FRAME_HEADER_BYTES = 4) │ one WireMessage, bincode (see below)     │
//!  └──────────────────────────┴──────────────────────────────────────────┘
//!   length ≤ MAX_FRAME_BYTES (16 MiB), checked before any allocation
//! ```
//!
//! The payload is bincode 2 through serde, with the configuration of
//! `config()`: `standard()` spelled out, i.e. **little-endian, variable-length
//! integers** (an integer below 251 is one byte; larger ones are a marker
//! byte 251/252/253/254 followed by a u16/u32/u64/u128), enum variants as
//! their varint index in declaration order, sequences and strings as a varint
//! length followed by their elements. The configuration is part of the wire
//! format: changing it (or reordering the variants of [`super::message`])
//! breaks compatibility with other builds (see the versioning note there). The payload must be exactly one message: bytes left over
//! after it are an error ([`CodecError::TrailingBytes`]).
//!
//! ## Bounds
//!
//! - A frame's payload is at most [`MAX_FRAME_BYTES`]; [`read_frame`] takes a
//!   smaller per-caller limit and checks the length prefix against it before
//!   it allocates anything, and then grows its buffer as bytes arrive, so a
//!   peer that announces a large frame and stalls holds little memory.
//! - Inside a payload, every length is a claim by the peer. bincode counts
//!   what a decode claims (in in-memory bytes) against a limit and refuses
//!   a claim over it before allocating. The limit is chosen per payload as
//!   the smallest tier that a valid payload of that size can need (8 × its
//!   size, see `DECODE_CLAIM_PER_PAYLOAD_BYTE`), so a lying length costs at
//!   most a small multiple of the payload's size: 4 KiB for small frames,
//!   128 MiB (allocated zeroed and freed at once, as the bytes are missing)
//!   for the very largest. serde's own
//!   sequence visitor caps its preallocation at 1 MiB and then grows as
//!   elements actually decode.
//! - [`encode`] stops buffering as soon as a message exceeds the limit; it
//!   only counts the remaining bytes to report the size.
//!
//! ## Why all of bincode lives here
//!
//! bincode is unmaintained (RUSTSEC-2025-0141). This module is the only
//! place in the crate that names it: the rest of the transport calls
//! [`encode`]/[`decode`]/[`read_frame`]/[`write_frame`], so replacing bincode
//! (e.g. with postcard, or a hand-written format) means rewriting this file
//! and bumping the ALPN, nothing else.

use crate::limits::MAX_FRAME_BYTES;
use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::enc::write::Writer;
use bincode::error::EncodeError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::message::WireMessage;

/// Size of the length prefix: the payload length as a big-endian `u32`.
pub const FRAME_HEADER_BYTES: usize = 4;

/// How much of an announced payload [`read_frame`] allocates before any of
/// it has arrived; the buffer then doubles with the bytes received, up to
/// the announced length. Bounds what a peer that announces a large frame and
/// then stalls can make us hold.
const READ_INITIAL_BUFFER_BYTES: usize = 64 * 1024;

/// Why a frame could not be encoded, read or decoded.
///
/// `TooLarge`, `Malformed` and `TrailingBytes` are the peer's fault (answer
/// with an `ErrorFrame` or drop the stream); `Truncated` and `Io` mean the
/// stream itself is gone.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The payload is larger than the limit (for [`read_frame`]: the length
    /// prefix announced more than the caller's `max_bytes`).
    #[error("frame payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Payload size in bytes (announced or encoded).
        size: usize,
        /// The limit it exceeded, in bytes.
        limit: usize,
    },
    /// The payload is not a valid `WireMessage` (bincode's decode error).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A valid message was followed by more bytes inside the same payload.
    #[error("frame has trailing bytes: the message ended after {consumed} of {total} bytes")]
    TrailingBytes {
        /// Bytes the message took.
        consumed: usize,
        /// Bytes in the payload.
        total: usize,
    },
    /// The stream ended inside a frame (in its header or its payload).
    #[error("stream ended inside a frame")]
    Truncated,
    /// Reading or writing the stream failed.
    #[error("frame i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// bincode refused to encode the message. Does not happen for the types
    /// of [`super::message`]; kept so that no encoder error is swallowed.
    #[error("message could not be encoded: {0}")]
    Encode(String),
}

/// The bincode configuration of the wire format (see the module doc):
/// little-endian, varint integers. `DECODE_LIMIT` is bincode's budget for
/// what decoding may claim (see [`DECODE_LIMIT_TIERS`]); it does not change
/// the bytes, and encoding ignores it.
fn config<const DECODE_LIMIT: usize>() -> Configuration<LittleEndian, Varint, Limit<DECODE_LIMIT>> {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<DECODE_LIMIT>()
}

/// Most bytes bincode's decode limit counts per payload byte of a valid
/// message. The limit counts in-memory sizes, not encoded ones: a varint
/// `u64` or a length takes one byte on the wire but counts 8, a variant
/// index counts 4, a string's bytes count 1 each. So a valid payload of `n`
/// bytes claims at most `8 * n`. (A `u128` in the message types would make
/// this 16.)
const DECODE_CLAIM_PER_PAYLOAD_BYTE: usize = 8;

/// The decode limit for the largest frame: what a valid
/// [`MAX_FRAME_BYTES`] payload can claim.
const DECODE_LIMIT_BYTES: usize = DECODE_CLAIM_PER_PAYLOAD_BYTE * MAX_FRAME_BYTES;

/// The decode limits [`decode`] chooses from, in bytes, smallest first.
/// bincode's limit is a const generic, so `decode` takes the smallest one
/// that a valid payload of its size could need. bincode allocates a string
/// in full before reading its bytes, so the limit is what bounds the
/// allocation a lying length can cause: tiers keep that proportional to the
/// payload (under 16 × 8 × its size, and 4 KiB for the small frames that
/// are most of the traffic) instead of 128 MiB for every frame.
const DECODE_LIMIT_TIERS: [usize; 5] = [
    4 * 1024,
    64 * 1024,
    1024 * 1024,
    16 * 1024 * 1024,
    DECODE_LIMIT_BYTES,
];

/// Encodes `message` as a frame payload (no length prefix).
///
/// Fails with [`CodecError::TooLarge`] if the payload would exceed
/// [`MAX_FRAME_BYTES`]; the buffer never grows past that.
pub fn encode(message: &WireMessage) -> Result<Vec<u8>, CodecError> {
    encode_after_header(message, 0)
}

/// Encodes `message` as a whole frame: length prefix and payload.
pub fn encode_frame(message: &WireMessage) -> Result<Vec<u8>, CodecError> {
    let mut frame = encode_after_header(message, FRAME_HEADER_BYTES)?;
    let payload_bytes = frame.len() - FRAME_HEADER_BYTES;
    let length = u32::try_from(payload_bytes)
        .expect("encode_after_header keeps the payload within MAX_FRAME_BYTES, which fits a u32");
    frame[..FRAME_HEADER_BYTES].copy_from_slice(&length.to_be_bytes());
    Ok(frame)
}

/// Encodes into one buffer that starts with `header_bytes` zero bytes for
/// the caller to fill, so a frame is built without copying its payload.
fn encode_after_header(message: &WireMessage, header_bytes: usize) -> Result<Vec<u8>, CodecError> {
    let mut writer = BoundedWriter {
        buf: vec![0; header_bytes],
        max_len: header_bytes + MAX_FRAME_BYTES,
        payload_bytes: 0,
    };
    bincode::serde::encode_into_writer(message, &mut writer, config::<DECODE_LIMIT_BYTES>())
        .map_err(|err| CodecError::Encode(err.to_string()))?;
    if writer.payload_bytes > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge {
            size: writer.payload_bytes,
            limit: MAX_FRAME_BYTES,
        });
    }
    debug_assert_eq!(writer.buf.len(), header_bytes + writer.payload_bytes);
    Ok(writer.buf)
}

/// A bincode writer that buffers at most `max_len` bytes. Past that it drops
/// its buffer and only counts, so an oversized message costs no memory and
/// the error can still report its exact size.
struct BoundedWriter {
    buf: Vec<u8>,
    max_len: usize,
    payload_bytes: usize,
}

impl Writer for BoundedWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.payload_bytes = self.payload_bytes.saturating_add(bytes.len());
        let needed = self.buf.len() + bytes.len();
        if self.payload_bytes > MAX_FRAME_BYTES {
            // Over the limit: the encoding will be refused, free it now.
            self.buf = Vec::new();
            return Ok(());
        }
        if needed > self.buf.capacity() {
            // Amortized doubling like Vec's own, but capped at the largest
            // frame so the buffer never overshoots it.
            let target = needed.max(self.buf.capacity() * 2).min(self.max_len);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

/// Decodes one frame payload (no length prefix) into a message.
///
/// The payload must hold exactly one message. Lengths inside the payload
/// are checked against a decode limit proportional to the payload's size
/// (see the module doc) before anything is allocated for them.
pub fn decode(payload: &[u8]) -> Result<WireMessage, CodecError> {
    if payload.len() > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge {
            size: payload.len(),
            limit: MAX_FRAME_BYTES,
        });
    }
    let budget = payload.len() * DECODE_CLAIM_PER_PAYLOAD_BYTE;
    let decoded = if budget <= DECODE_LIMIT_TIERS[0] {
        decode_within::<{ DECODE_LIMIT_TIERS[0] }>(payload)
    } else if budget <= DECODE_LIMIT_TIERS[1] {
        decode_within::<{ DECODE_LIMIT_TIERS[1] }>(payload)
    } else if budget <= DECODE_LIMIT_TIERS[2] {
        decode_within::<{ DECODE_LIMIT_TIERS[2] }>(payload)
    } else if budget <= DECODE_LIMIT_TIERS[3] {
        decode_within::<{ DECODE_LIMIT_TIERS[3] }>(payload)
    } else {
        decode_within::<{ DECODE_LIMIT_TIERS[4] }>(payload)
    };
    let (message, consumed) = decoded.map_err(|err| CodecError::Malformed(err.to_string()))?;
    if consumed != payload.len() {
        return Err(CodecError::TrailingBytes {
            consumed,
            total: payload.len(),
        });
    }
    Ok(message)
}

/// Decodes with bincode's decode limit set to `DECODE_LIMIT` bytes.
fn decode_within<const DECODE_LIMIT: usize>(
    payload: &[u8],
) -> Result<(WireMessage, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(payload, config::<DECODE_LIMIT>())
}

/// Reads one frame from `reader` and decodes it.
///
/// Returns `Ok(None)` when the stream ends cleanly before the first byte of
/// a frame, and [`CodecError::Truncated`] when it ends inside one. The
/// length prefix is checked against `max_bytes` (clamped to
/// [`MAX_FRAME_BYTES`]) before anything is allocated; the payload buffer then
/// grows with the bytes that actually arrive and never exceeds the announced
/// length.
///
/// Not cancel-safe: if the future is dropped mid-frame, the bytes already
/// read are lost and the stream is out of sync; drop the stream too. To
/// wait for a frame alongside something else, use [`wait_for_frame`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
) -> Result<Option<WireMessage>, CodecError> {
    read_started_frame(reader, FrameStart::default(), max_bytes).await
}

/// The first bytes of a frame's header, or the end of the stream, as
/// [`wait_for_frame`] found them.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameStart {
    header: [u8; FRAME_HEADER_BYTES],
    filled: usize,
    ended: bool,
}

/// Waits until the next frame starts to arrive (or the stream ends).
///
/// Cancel-safe, unlike [`read_frame`]: it is a single `read`, so if the
/// future is dropped before it completes nothing was consumed. That lets a
/// task wait for a peer's next frame in a `select!` with a timer or a queue,
/// then finish the frame with [`read_started_frame`].
pub async fn wait_for_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<FrameStart, CodecError> {
    let mut start = FrameStart::default();
    let n = reader.read(&mut start.header).await?;
    start.filled = n;
    start.ended = n == 0;
    Ok(start)
}

/// Reads the rest of a frame that [`wait_for_frame`] saw start, as
/// [`read_frame`] does (`Ok(None)` if the stream had ended). Not
/// cancel-safe.
pub async fn read_started_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    start: FrameStart,
    max_bytes: usize,
) -> Result<Option<WireMessage>, CodecError> {
    if start.ended {
        return Ok(None);
    }
    let limit = max_bytes.min(MAX_FRAME_BYTES);
    let FrameStart {
        mut header,
        mut filled,
        ..
    } = start;
    while filled < FRAME_HEADER_BYTES {
        let n = reader.read(&mut header[filled..]).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(CodecError::Truncated)
            };
        }
        filled += n;
    }
    // A u32 always fits a usize on the platforms we build for (≥ 32 bit);
    // saturating keeps a 16-bit target on the refusing side.
    let size = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
    if size > limit {
        return Err(CodecError::TooLarge { size, limit });
    }
    let payload = read_payload(reader, size).await?;
    decode(&payload).map(Some)
}

/// Reads exactly `size` bytes (already checked against the limit), growing
/// the buffer by doubling what has arrived instead of allocating `size` up
/// front.
async fn read_payload<R: AsyncRead + Unpin>(
    reader: &mut R,
    size: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut payload = Vec::new();
    while payload.len() < size {
        let start = payload.len();
        let end = size.min(start.saturating_mul(2).max(READ_INITIAL_BUFFER_BYTES));
        payload.reserve_exact(end - start);
        payload.resize(end, 0);
        let mut at = start;
        while at < end {
            let n = reader.read(&mut payload[at..end]).await?;
            if n == 0 {
                return Err(CodecError::Truncated);
            }
            at += n;
        }
    }
    Ok(payload)
}

/// Encodes `message` as one frame, writes it and flushes `writer` (the peer
/// answers every request, so a frame must not sit in a buffer).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &WireMessage,
) -> Result<(), CodecError> {
    let frame = encode_frame(message)?;
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::PeerAddr;
    use crate::node::ClientError;
    use crate::transport::message::{
        ErrorCode, ErrorFrame, ForwardedProposal, Heartbeat, RaftBatch, Request, Response,
        WireActivation, WireGuestFailure,
    };
    use crate::wasm::GuestFailure;
    use std::time::Duration;

    /// One value of every [`ClientError`] variant. The match below has no
    /// wildcard: a new variant does not compile until it is given a
    /// position here, and the test fails until a value of it is listed.
    fn every_client_error() -> Vec<ClientError> {
        let all = vec![
            ClientError::NotLeader { leader_hint: None },
            ClientError::NotLeader {
                leader_hint: Some(u64::MAX),
            },
            ClientError::ProposalDropped,
            ClientError::EmptyCommand,
            ClientError::CommandTooLarge {
                size_bytes: 1 << 40,
                limit_bytes: 1024,
            },
            ClientError::Overloaded,
            ClientError::Timeout { timeout_ms: 10_000 },
            ClientError::Stopped,
            ClientError::InvalidMembership("node 4 is not a member".into()),
            ClientError::SnapshotFailed("disk full".into()),
            ClientError::InvalidComponent("no exports ✓".into()),
            ClientError::UpgradeRefused(String::new()),
            ClientError::Diverged { index: 77 },
            ClientError::OutcomeUnknown,
            ClientError::ForwardRefused {
                reason: "Malformed: activation".into(),
            },
            ClientError::GuestStalled {
                reason: "checkpoints fail since index 9".into(),
            },
        ];
        let position = |error: &ClientError| match error {
            ClientError::NotLeader { .. } => 0,
            ClientError::ProposalDropped => 1,
            ClientError::EmptyCommand => 2,
            ClientError::CommandTooLarge { .. } => 3,
            ClientError::Overloaded => 4,
            ClientError::Timeout { .. } => 5,
            ClientError::Stopped => 6,
            ClientError::InvalidMembership(_) => 7,
            ClientError::SnapshotFailed(_) => 8,
            ClientError::InvalidComponent(_) => 9,
            ClientError::UpgradeRefused(_) => 10,
            ClientError::Diverged { .. } => 11,
            ClientError::OutcomeUnknown => 12,
            ClientError::ForwardRefused { .. } => 13,
            ClientError::GuestStalled { .. } => 14,
        };
        let listed: std::collections::BTreeSet<usize> = all.iter().map(position).collect();
        assert_eq!(
            listed,
            (0..=14).collect(),
            "every ClientError variant has a value"
        );
        all
    }

    /// One value of every [`GuestFailure`] variant (the conversion to
    /// [`WireGuestFailure`] matches exhaustively, so a new one is noticed
    /// there).
    fn every_guest_failure() -> Vec<GuestFailure> {
        vec![
            GuestFailure::Rejected {
                message: "no such key".into(),
            },
            GuestFailure::Trapped {
                message: "unreachable".into(),
            },
            GuestFailure::OutOfFuel { budget: u64::MAX },
            GuestFailure::MemoryLimit {
                limit_bytes: 1 << 20,
            },
            GuestFailure::UpgradeFailed {
                reason: "migrate trapped".into(),
            },
            GuestFailure::ResultTooLarge {
                size_bytes: 5,
                limit_bytes: 4,
            },
        ]
    }

    /// One message of every variant (and every nested variant).
    fn every_variant() -> Vec<WireMessage> {
        let error_codes = [
            ErrorCode::Malformed,
            ErrorCode::TooLarge,
            ErrorCode::WrongSender,
            ErrorCode::UnexpectedFrame,
            ErrorCode::Overloaded,
            ErrorCode::Rejected,
        ];
        let errors = error_codes.into_iter().map(|code| {
            WireMessage::Error(ErrorFrame {
                code,
                message: format!("{code:?}"),
            })
        });
        let mut messages = vec![
            WireMessage::Request(Request::Propose {
                command: b"add 5".to_vec(),
            }),
            WireMessage::Request(Request::Propose {
                command: Vec::new(),
            }),
            WireMessage::Request(Request::Members),
            WireMessage::Request(Request::ProposeForwarded {
                command: b"add 1".to_vec(),
                tag: crate::node::ForwardTag {
                    id: crate::node::ForwardId {
                        origin: 2,
                        incarnation: u64::MAX,
                        seq: 7,
                    },
                    term: 3,
                },
            }),
            WireMessage::Request(Request::ProposeForwardedBatch {
                proposals: vec![
                    ForwardedProposal {
                        command: b"put k v".to_vec(),
                        tag: crate::node::ForwardTag {
                            id: crate::node::ForwardId {
                                origin: 3,
                                incarnation: 9,
                                seq: u64::MAX,
                            },
                            term: 4,
                        },
                    },
                    ForwardedProposal {
                        command: Vec::new(),
                        tag: crate::node::ForwardTag {
                            id: crate::node::ForwardId {
                                origin: 3,
                                incarnation: 9,
                                seq: 0,
                            },
                            term: 5,
                        },
                    },
                ],
            }),
            WireMessage::Request(Request::ProposeForwardedBatch {
                proposals: Vec::new(),
            }),
            WireMessage::Request(Request::ProposeActivation {
                activation: WireActivation {
                    hash: "ab".repeat(32),
                    size_bytes: 1,
                    kind: crate::node::upgrade::ActivationKind::Rollback,
                    apply_fuel: Some(u64::MAX),
                    query_fuel: None,
                    memory_limit_bytes: Some(0),
                    source: 3,
                },
            }),
            WireMessage::Request(Request::FetchComponent {
                hash: "cd".repeat(32),
                offset: u64::MAX,
            }),
            WireMessage::Response(Response::ComponentChunk {
                total_len: 3,
                data: vec![0, 1, 2],
            }),
            WireMessage::Request(Request::PrepareComponent {
                hash: "ef".repeat(32),
                size_bytes: 17,
                source: 2,
            }),
            WireMessage::Response(Response::ComponentPrepared { compile_ms: 12 }),
            WireMessage::Request(Request::StateHash {
                index: 77,
                hash: [7; 32],
            }),
            WireMessage::Response(Response::Delivered { count: 3 }),
            WireMessage::Response(Response::Applied {
                index: 42,
                term: u64::MAX,
                result: Ok(b"5".to_vec()),
                fuel_used: 1_000_000,
            }),
            WireMessage::Response(Response::Applied {
                index: 0,
                term: 1,
                result: Err(WireGuestFailure::Trapped {
                    message: "unreachable".to_string(),
                }),
                fuel_used: 0,
            }),
            WireMessage::Response(Response::Members {
                members: vec![
                    (
                        1,
                        PeerAddr {
                            node_id: "ab".repeat(32),
                            addrs: vec![
                                "127.0.0.1:7801".parse().expect("valid address"),
                                "[::1]:7801".parse().expect("valid address"),
                            ],
                        },
                    ),
                    (
                        u64::MAX,
                        PeerAddr {
                            node_id: String::new(),
                            addrs: Vec::new(),
                        },
                    ),
                ],
            }),
            WireMessage::Response(Response::Members {
                members: Vec::new(),
            }),
            WireMessage::RaftMessage(RaftBatch {
                messages: vec![vec![8, 1, 16, 2], Vec::new(), vec![0xff; 300]],
            }),
            WireMessage::RaftMessage(RaftBatch {
                messages: Vec::new(),
            }),
            WireMessage::Heartbeat(Heartbeat { sequence: 0 }),
            WireMessage::Heartbeat(Heartbeat { sequence: u64::MAX }),
            WireMessage::Error(ErrorFrame {
                code: ErrorCode::Rejected,
                message: "ünïcödé ✓".to_string(),
            }),
        ];
        messages.extend(errors);
        messages.extend(every_client_error().into_iter().map(WireMessage::Refused));
        messages.extend(every_guest_failure().into_iter().map(|failure| {
            WireMessage::Response(Response::Applied {
                index: 1,
                term: 1,
                result: Err(failure.into()),
                fuel_used: 1,
            })
        }));
        messages
    }

    fn raft_batch(message_bytes: usize) -> WireMessage {
        WireMessage::RaftMessage(RaftBatch {
            messages: vec![vec![0xab; message_bytes]],
        })
    }

    /// A message whose payload is exactly `payload_bytes` long (for sizes
    /// whose inner length takes the 5-byte varint, 2^16..2^32).
    fn message_of_payload_size(payload_bytes: usize) -> WireMessage {
        let probe_bytes = 70_000;
        let overhead = encode(&raft_batch(probe_bytes))
            .expect("a small batch encodes")
            .len()
            - probe_bytes;
        raft_batch(payload_bytes - overhead)
    }

    /// A membership answer of exactly `payload_bytes` whose entries are
    /// the worst case for bincode's decode limit: every entry is 3 bytes on
    /// the wire (one-byte id, empty node id, no addresses) and counts 24.
    fn members_of_payload_size(payload_bytes: usize) -> WireMessage {
        let varint_bytes = |n: usize| match n {
            0..251 => 1,
            251..65_536 => 3,
            _ => 5,
        };
        // Two variant bytes, the entry count, 3 bytes per entry.
        let size = |entries: usize| 2 + varint_bytes(entries) + 3 * entries;
        let mut entries = (payload_bytes - 2) / 3;
        while size(entries) > payload_bytes {
            entries -= 1;
        }
        let mut members = vec![
            (
                7,
                PeerAddr {
                    node_id: String::new(),
                    addrs: Vec::new(),
                },
            );
            entries
        ];
        // Fill the last few bytes with node id text (1 byte each).
        members[0].1.node_id = "x".repeat(payload_bytes - size(entries));
        let message = WireMessage::Response(Response::Members { members });
        assert_eq!(
            encode(&message).expect("encodes").len(),
            payload_bytes,
            "test helper miscounted"
        );
        message
    }

    /// xorshift64*: reproducible pseudo-random bytes without a dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    fn frame_with_header(announced: u32, payload: &[u8]) -> Vec<u8> {
        let mut frame = announced.to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        frame
    }

    async fn read_all(mut bytes: &[u8], max_bytes: usize) -> Result<Vec<WireMessage>, CodecError> {
        let mut messages = Vec::new();
        while let Some(message) = read_frame(&mut bytes, max_bytes).await? {
            messages.push(message);
        }
        Ok(messages)
    }

    // ── t10: round trips ────────────────────────────────────────────────

    #[test]
    fn t10_every_variant_round_trips_through_encode_and_decode() {
        for message in every_variant() {
            let payload = encode(&message).expect("encodes");
            assert_eq!(decode(&payload).expect("decodes"), message);
        }
    }

    #[test]
    fn t16_every_client_error_round_trips_unchanged() {
        for error in every_client_error() {
            let message = WireMessage::Refused(error.clone());
            let decoded = decode(&encode(&message).expect("encodes")).expect("decodes");
            assert_eq!(decoded, WireMessage::Refused(error.clone()), "{error:?}");
            let WireMessage::Refused(back) = decoded else {
                unreachable!("compared above");
            };
            // What the forwarding node's client sees: the same code and text.
            assert_eq!(back.code(), error.code());
            assert_eq!(back.to_string(), error.to_string());
        }
    }

    #[test]
    fn t17_every_guest_failure_round_trips_unchanged() {
        for failure in every_guest_failure() {
            let message = WireMessage::Response(Response::Applied {
                index: 3,
                term: 2,
                result: Err(WireGuestFailure::from(failure.clone())),
                fuel_used: 9,
            });
            let decoded = decode(&encode(&message).expect("encodes")).expect("decodes");
            let WireMessage::Response(Response::Applied {
                result: Err(wire), ..
            }) = decoded
            else {
                panic!("not an applied failure: {decoded:?}");
            };
            assert_eq!(GuestFailure::from(wire), failure);
        }
    }

    #[test]
    fn t11_encode_frame_is_big_endian_length_then_payload() {
        for message in every_variant() {
            let frame = encode_frame(&message).expect("encodes");
            let payload = encode(&message).expect("encodes");
            let announced = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
            assert_eq!(announced as usize, payload.len());
            assert_eq!(&frame[FRAME_HEADER_BYTES..], &payload[..]);
        }
    }

    #[test]
    fn t12_wire_format_is_varint_little_endian() {
        // Pins the wire format: a change here breaks compatibility with
        // deployed peers and needs a new ALPN.
        let heartbeat = WireMessage::Heartbeat(Heartbeat { sequence: 1 });
        assert_eq!(encode(&heartbeat).expect("encodes"), [3, 1]);
        let heartbeat = WireMessage::Heartbeat(Heartbeat { sequence: 0x1234 });
        assert_eq!(encode(&heartbeat).expect("encodes"), [3, 251, 0x34, 0x12]);
        let batch = WireMessage::RaftMessage(RaftBatch {
            messages: vec![vec![7, 8]],
        });
        assert_eq!(encode(&batch).expect("encodes"), [2, 1, 2, 7, 8]);
        assert_eq!(
            encode_frame(&batch).expect("encodes"),
            [0, 0, 0, 5, 2, 1, 2, 7, 8]
        );
    }

    #[tokio::test]
    async fn t13_several_frames_back_to_back_on_one_stream() {
        let messages = every_variant();
        let mut stream = Vec::new();
        for message in &messages {
            write_frame(&mut stream, message).await.expect("writes");
        }
        assert_eq!(
            read_all(&stream, MAX_FRAME_BYTES).await.expect("reads"),
            messages
        );
    }

    #[tokio::test]
    async fn t14_frames_survive_a_stream_that_delivers_one_byte_at_a_time() {
        // A duplex buffer of one byte forces every read to be partial.
        let (mut client, mut server) = tokio::io::duplex(1);
        let messages = every_variant();
        let sent = messages.clone();
        let writer = tokio::spawn(async move {
            for message in &sent {
                write_frame(&mut client, message).await?;
            }
            Ok::<_, CodecError>(())
        });
        let mut received = Vec::new();
        while let Some(message) = read_frame(&mut server, 1024).await.expect("reads") {
            received.push(message);
        }
        writer.await.expect("writer task").expect("writes");
        assert_eq!(received, messages);
    }

    #[tokio::test]
    async fn t15_empty_stream_is_a_clean_end() {
        let mut empty: &[u8] = &[];
        assert!(
            read_frame(&mut empty, MAX_FRAME_BYTES)
                .await
                .expect("clean end")
                .is_none()
        );
    }

    #[tokio::test]
    async fn t16_a_frame_waited_for_then_read_arrives_whole_after_a_wait_given_up() {
        // A duplex buffer of one byte: the frame arrives a byte at a time.
        let (mut client, mut server) = tokio::io::duplex(1);
        let quiet = tokio::time::timeout(Duration::from_millis(10), wait_for_frame(&mut server));
        assert!(quiet.await.is_err(), "nothing was sent yet");
        let message = every_variant().remove(0);
        let sent = message.clone();
        let writer = tokio::spawn(async move { write_frame(&mut client, &sent).await });
        let start = wait_for_frame(&mut server).await.expect("starts");
        let received = read_started_frame(&mut server, start, 1024).await;
        writer.await.expect("writer task").expect("writes");
        assert_eq!(received.expect("reads"), Some(message));
        let ended = wait_for_frame(&mut server).await.expect("a clean end");
        assert!(
            read_started_frame(&mut server, ended, 1024)
                .await
                .expect("a clean end")
                .is_none()
        );
    }

    // ── t20: size limits ────────────────────────────────────────────────

    #[test]
    fn t20_encode_accepts_exactly_max_frame_bytes_and_refuses_one_more() {
        let at_limit = message_of_payload_size(MAX_FRAME_BYTES);
        let payload = encode(&at_limit).expect("a frame at the limit encodes");
        assert_eq!(payload.len(), MAX_FRAME_BYTES);
        assert_eq!(decode(&payload).expect("and decodes"), at_limit);
        let frame = encode_frame(&at_limit).expect("as a frame too");
        assert_eq!(frame.len(), FRAME_HEADER_BYTES + MAX_FRAME_BYTES);
        drop((payload, frame, at_limit));

        let over = message_of_payload_size(MAX_FRAME_BYTES + 1);
        for result in [encode(&over), encode_frame(&over)] {
            assert!(
                matches!(
                    result,
                    Err(CodecError::TooLarge { size, limit })
                        if size == MAX_FRAME_BYTES + 1 && limit == MAX_FRAME_BYTES
                ),
                "{result:?}"
            );
        }
    }

    #[test]
    fn t21_decode_refuses_a_payload_over_the_limit() {
        let payload = vec![0u8; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            decode(&payload),
            Err(CodecError::TooLarge { size, limit })
                if size == MAX_FRAME_BYTES + 1 && limit == MAX_FRAME_BYTES
        ));
    }

    #[test]
    fn t22_worst_case_payloads_decode_at_every_limit_tier() {
        // Around each tier boundary (payload = tier / 8): a payload that
        // claims 8 bytes per byte still decodes. The largest tier's
        // boundary is MAX_FRAME_BYTES itself: t26.
        let mut sizes = vec![6, 100];
        for tier in &DECODE_LIMIT_TIERS[..DECODE_LIMIT_TIERS.len() - 1] {
            let at_boundary = tier / DECODE_CLAIM_PER_PAYLOAD_BYTE;
            sizes.extend([at_boundary - 1, at_boundary, at_boundary + 1]);
        }
        for size in sizes {
            let message = members_of_payload_size(size);
            let payload = encode(&message).expect("encodes");
            assert_eq!(decode(&payload).expect("decodes"), message, "{size} bytes");
        }
    }

    #[test]
    fn t26_worst_case_payload_of_max_frame_bytes_decodes() {
        let message = members_of_payload_size(MAX_FRAME_BYTES);
        let payload = encode(&message).expect("encodes");
        assert_eq!(decode(&payload).expect("decodes"), message);
    }

    #[tokio::test]
    async fn t23_read_frame_accepts_exactly_max_bytes_and_refuses_one_more() {
        let max_bytes = 100;
        let message = WireMessage::Request(Request::Propose {
            // Two variant bytes and a one-byte length.
            command: vec![1; max_bytes - 3],
        });
        let frame = encode_frame(&message).expect("encodes");
        assert_eq!(frame.len(), FRAME_HEADER_BYTES + max_bytes);
        assert_eq!(
            read_all(&frame, max_bytes).await.expect("at the limit"),
            [message]
        );

        let message = WireMessage::Request(Request::Propose {
            command: vec![1; max_bytes - 2],
        });
        let frame = encode_frame(&message).expect("encodes");
        assert!(matches!(
            read_all(&frame, max_bytes).await,
            Err(CodecError::TooLarge {
                size: 101,
                limit: 100
            })
        ));
    }

    #[tokio::test]
    async fn t24_huge_announced_length_is_refused_before_reading_the_payload() {
        // The stream holds only the header: had read_frame tried to read or
        // allocate the payload, it would report Truncated, not TooLarge.
        for (announced, max_bytes) in [
            (u32::MAX, MAX_FRAME_BYTES),
            (u32::MAX, usize::MAX),
            (MAX_FRAME_BYTES as u32 + 1, usize::MAX),
        ] {
            let header = announced.to_be_bytes();
            let result = read_frame(&mut &header[..], max_bytes).await;
            assert!(
                matches!(
                    result,
                    Err(CodecError::TooLarge { size, limit })
                        if size == announced as usize && limit == MAX_FRAME_BYTES
                ),
                "{announced} with max {max_bytes}: {result:?}"
            );
        }
    }

    #[tokio::test]
    async fn t25_announced_max_frame_with_few_bytes_is_truncated() {
        let frame = frame_with_header(MAX_FRAME_BYTES as u32, &[2, 1, 2]);
        assert!(matches!(
            read_frame(&mut &frame[..], MAX_FRAME_BYTES).await,
            Err(CodecError::Truncated)
        ));
    }

    // ── t30: truncation and malformed input ─────────────────────────────

    #[tokio::test]
    async fn t30_truncated_header() {
        for len in 1..FRAME_HEADER_BYTES {
            let header = [0u8, 0, 0, 5];
            assert!(matches!(
                read_frame(&mut &header[..len], 1024).await,
                Err(CodecError::Truncated)
            ));
        }
    }

    #[tokio::test]
    async fn t31_truncated_payload() {
        let message = WireMessage::Response(Response::Applied {
            index: 300,
            term: 2,
            result: Ok(vec![1, 2, 3]),
            fuel_used: 70_000,
        });
        let frame = encode_frame(&message).expect("encodes");
        for len in FRAME_HEADER_BYTES..frame.len() {
            assert!(matches!(
                read_frame(&mut &frame[..len], 1024).await,
                Err(CodecError::Truncated)
            ));
        }
        // A good frame followed by a truncated one: the first still reads.
        let mut stream = encode_frame(&every_variant()[0]).expect("encodes");
        stream.extend_from_slice(&frame[..frame.len() - 1]);
        let mut reader = &stream[..];
        assert!(
            read_frame(&mut reader, 1024)
                .await
                .expect("first")
                .is_some()
        );
        assert!(matches!(
            read_frame(&mut reader, 1024).await,
            Err(CodecError::Truncated)
        ));
    }

    #[tokio::test]
    async fn t32_garbage_payload_is_malformed() {
        // 0xff.. as a variant index is out of range; an empty payload has
        // no variant at all.
        for garbage in [&[0xffu8, 0xff, 0xff, 0xff][..], &[], &[3], &[2, 5, 1]] {
            assert!(
                matches!(decode(garbage), Err(CodecError::Malformed(_))),
                "{garbage:?}"
            );
            let frame = frame_with_header(garbage.len() as u32, garbage);
            assert!(matches!(
                read_frame(&mut &frame[..], 1024).await,
                Err(CodecError::Malformed(_))
            ));
        }
    }

    #[tokio::test]
    async fn t33_trailing_bytes_are_refused() {
        let mut payload =
            encode(&WireMessage::Heartbeat(Heartbeat { sequence: 9 })).expect("encodes");
        payload.push(0);
        assert!(matches!(
            decode(&payload),
            Err(CodecError::TrailingBytes {
                consumed: 2,
                total: 3
            })
        ));
        let frame = frame_with_header(payload.len() as u32, &payload);
        assert!(matches!(
            read_frame(&mut &frame[..], 1024).await,
            Err(CodecError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn t34_unknown_variant_indexes_are_malformed() {
        // WireMessage has 6 variants, Request 8, Response 7, ErrorCode 6,
        // ClientError 14.
        for payload in [
            &[6u8][..],
            &[0, 8, 0],
            &[1, 7, 0],
            &[4, 6, 0],
            &[5, 14],
            // A Result (in Response::Applied) has variants 0 and 1 only.
            &[1, 1, 0, 0, 2, 0, 0],
        ] {
            assert!(
                matches!(decode(payload), Err(CodecError::Malformed(_))),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn t35_lying_lengths_fail_without_a_huge_allocation() {
        // 253 = a u64 follows: claim 2^40 elements/bytes, then end the input.
        let huge = {
            let mut varint = vec![253u8];
            varint.extend_from_slice(&(1u64 << 40).to_le_bytes());
            varint
        };
        // RaftBatch with 2^40 messages; one message with 2^40 bytes; a
        // proposal with 2^40 bytes: serde preallocates at most 1 MiB.
        let outer = [&[2u8][..], &huge].concat();
        let inner = [&[2u8, 1][..], &huge].concat();
        let command = [&[0u8, 0][..], &huge].concat();
        for payload in [&outer, &inner, &command] {
            assert!(
                matches!(decode(payload), Err(CodecError::Malformed(_))),
                "{payload:?}"
            );
        }
        // A string of 2^40 bytes: bincode would allocate it in one go; the
        // decode limit refuses it before that.
        let string = [&[4u8, 0][..], &huge].concat();
        match decode(&string) {
            Err(CodecError::Malformed(text)) => {
                assert!(text.contains("LimitExceeded"), "{text}")
            }
            other => panic!("expected the decode limit to refuse it: {other:?}"),
        }
        // The limit follows the payload's size: a 7-byte payload may claim
        // at most the smallest tier (4 KiB), a 16 MiB frame no more than
        // the largest; anything above is refused before it is allocated.
        for (claim, payload_bytes) in [
            (DECODE_LIMIT_TIERS[0] as u32, 0),
            (DECODE_LIMIT_TIERS[1] as u32, DECODE_LIMIT_TIERS[0] / 8),
            (DECODE_LIMIT_BYTES as u32, MAX_FRAME_BYTES - 7),
        ] {
            let mut string = vec![4u8, 0, 252];
            string.extend_from_slice(&claim.to_le_bytes());
            string.resize(string.len() + payload_bytes, b'x');
            match decode(&string) {
                Err(CodecError::Malformed(text)) => {
                    assert!(text.contains("LimitExceeded"), "{claim}: {text}")
                }
                other => panic!("expected the decode limit to refuse {claim}: {other:?}"),
            }
        }
    }

    // ── t40: random input never panics ──────────────────────────────────

    #[tokio::test]
    async fn t40_random_bytes_never_panic() {
        let seed = 0x1234_5678_9abc_def1;
        let mut rng = XorShift(seed);
        let valid: Vec<Vec<u8>> = every_variant()
            .iter()
            .map(|message| encode(message).expect("encodes"))
            .collect();
        for case in 0..5_000 {
            let payload = match case % 3 {
                // Pure noise.
                0 => {
                    let len = rng.below(64);
                    rng.bytes(len)
                }
                // A valid payload with a few bytes flipped.
                1 => {
                    let mut payload = valid[rng.below(valid.len())].clone();
                    for _ in 0..=rng.below(3) {
                        let at = rng.below(payload.len());
                        payload[at] = rng.next() as u8;
                    }
                    payload
                }
                // A valid payload cut short or extended with noise.
                _ => {
                    let mut payload = valid[rng.below(valid.len())].clone();
                    payload.truncate(rng.below(payload.len() + 1));
                    let extra = rng.below(8);
                    payload.extend(rng.bytes(extra));
                    payload
                }
            };
            if let Ok(message) = decode(&payload) {
                let again = encode(&message).expect("a decoded message re-encodes");
                assert_eq!(
                    decode(&again).expect("re-decodes"),
                    message,
                    "seed {seed:#x}, case {case}"
                );
            }
            // As a raw stream (random headers) and framed with its length.
            let _ = read_all(&payload, 1024).await;
            let frame = frame_with_header(payload.len() as u32, &payload);
            let _ = read_all(&frame, 1024).await;
        }
    }
}
