//! A deterministic pseudo-random input generator for the stable smoke test:
//! valid encodings of every message kind, then mutated (bytes overwritten,
//! cut, inserted, lengths replaced by hostile varints, frames glued
//! together), plus pure noise. Reproducible from its seed.

use iroh_raft::transport::codec;

use crate::seeds;
use iroh_raft::membership::PeerAddr;
use iroh_raft::node::ClientError;
use iroh_raft::transport::message::{
    ErrorCode, ErrorFrame, Heartbeat, RaftBatch, Request, Response, WireGuestFailure, WireMessage,
};
use protobuf::{Message as _, RepeatedField};
use raft::prelude::{
    ConfState, Entry, EntryType, Message as RaftMessage, MessageType, Snapshot, SnapshotMetadata,
};

/// Which target the inputs are shaped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Payloads and streams of frames.
    FrameDecoder,
    /// `RaftMessage` payloads whose inner protobuf bytes are mutated.
    RaftPayload,
    /// Snapshot transfers: an offer frame and chunk frames.
    SnapshotOffer,
    /// Snapshot files without their checksum.
    SnapshotFile,
    /// JSON bodies of the client API.
    ApiRequest,
    /// Raft entry payloads.
    EntryPayload,
}

impl Target {
    /// Every target, with its name (the `cargo fuzz` binary and the corpus
    /// directory).
    pub const ALL: [(Target, &'static str); 6] = [
        (Target::FrameDecoder, "frame_decoder"),
        (Target::RaftPayload, "raft_payload"),
        (Target::SnapshotOffer, "snapshot_offer"),
        (Target::SnapshotFile, "snapshot_file"),
        (Target::ApiRequest, "api_request"),
        (Target::EntryPayload, "entry_payload"),
    ];
}

/// Varints bincode would read as lengths or integers, chosen to hit the
/// edges: the one-byte maximum, each marker, sizes around the limits, and
/// lies (2^40, u64::MAX).
const HOSTILE_VARINTS: &[&[u8]] = &[
    &[250],
    &[251, 0xff, 0xff],
    &[252, 0x00, 0x00, 0x00, 0x01],
    &[252, 0x01, 0x00, 0x00, 0x01],
    &[252, 0xff, 0xff, 0xff, 0xff],
    &[253, 0, 0, 0, 0, 0, 1, 0, 0],
    &[253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[254, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    &[255],
];

/// The generator.
#[derive(Debug)]
pub struct Corpus {
    target: Target,
    rng: XorShift,
    /// Valid payloads (FrameDecoder) or valid raft messages (RaftPayload).
    seeds: Vec<Vec<u8>>,
}

impl Corpus {
    pub fn new(target: Target, seed: u64) -> Self {
        let seeds = match target {
            Target::FrameDecoder => wire_seeds()
                .iter()
                .map(|message| codec::encode(message).expect("seed messages encode"))
                .collect(),
            Target::RaftPayload => raft_seeds()
                .iter()
                .map(|message| message.write_to_bytes().expect("seed raft messages encode"))
                .collect(),
            Target::SnapshotOffer => seeds::snapshot_transfers(),
            Target::SnapshotFile => seeds::snapshot_file_bodies(),
            Target::ApiRequest => seeds::api_requests(),
            Target::EntryPayload => seeds::entry_payloads(),
        };
        Corpus {
            target,
            // xorshift is stuck at zero.
            rng: XorShift(seed | 1),
            seeds,
        }
    }

    /// Unmutated inputs for the target: a starting corpus for libFuzzer.
    pub fn seed_inputs(target: Target) -> Vec<Vec<u8>> {
        match target {
            Target::FrameDecoder => {
                let payloads = Corpus::new(target, 1).seeds;
                let frames = payloads.iter().map(|payload| {
                    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
                    frame.extend_from_slice(payload);
                    frame
                });
                payloads.iter().cloned().chain(frames).collect()
            }
            Target::RaftPayload => Corpus::new(target, 1)
                .seeds
                .into_iter()
                .map(|message| {
                    let batch = WireMessage::RaftMessage(RaftBatch {
                        messages: vec![message],
                    });
                    codec::encode(&batch).expect("small batches encode")
                })
                .collect(),
            _ => Corpus::new(target, 1).seeds,
        }
    }

    /// The next input.
    pub fn next_input(&mut self) -> Vec<u8> {
        match self.target {
            Target::FrameDecoder => match self.rng.below(4) {
                0 => self.mutated_seed(),
                1 => self.frames(),
                2 => {
                    let mut payload = self.mutated_seed();
                    self.splice_hostile_varint(&mut payload);
                    payload
                }
                _ => self.noise(),
            },
            Target::RaftPayload => {
                let count = self.rng.below(4);
                let messages = (0..count).map(|_| self.mutated_seed()).collect();
                let batch = WireMessage::RaftMessage(RaftBatch { messages });
                let mut payload = codec::encode(&batch).expect("small batches encode");
                // Sometimes break the wrapper too.
                if self.rng.below(8) == 0 {
                    self.mutate(&mut payload);
                }
                payload
            }
            // Mostly valid inputs, a few mutations deep; sometimes noise.
            _ => match self.rng.below(8) {
                0 => self.noise(),
                _ => self.mutated_seed(),
            },
        }
    }

    fn noise(&mut self) -> Vec<u8> {
        let len = self.rng.below(96);
        self.rng.bytes(len)
    }

    /// A seed, usually with a few mutations.
    fn mutated_seed(&mut self) -> Vec<u8> {
        let mut input = self.seeds[self.rng.below(self.seeds.len())].clone();
        for _ in 0..self.rng.below(4) {
            self.mutate(&mut input);
        }
        input
    }

    fn mutate(&mut self, input: &mut Vec<u8>) {
        match self.rng.below(5) {
            0 if !input.is_empty() => {
                let at = self.rng.below(input.len());
                input[at] = self.rng.next() as u8;
            }
            1 if !input.is_empty() => {
                let at = self.rng.below(input.len());
                input[at] ^= 1 << self.rng.below(8);
            }
            2 => {
                let len = self.rng.below(input.len() + 1);
                input.truncate(len);
            }
            3 => {
                let at = self.rng.below(input.len() + 1);
                let extra = self.rng.below(6);
                let bytes = self.rng.bytes(extra);
                input.splice(at..at, bytes);
            }
            _ => self.splice_hostile_varint(input),
        }
    }

    fn splice_hostile_varint(&mut self, input: &mut Vec<u8>) {
        let varint = HOSTILE_VARINTS[self.rng.below(HOSTILE_VARINTS.len())];
        let at = self.rng.below(input.len() + 1);
        // Replace one byte (where a length or index likely sits) or insert.
        let end = if at < input.len() && self.rng.below(2) == 0 {
            at + 1
        } else {
            at
        };
        input.splice(at..end, varint.iter().copied());
    }

    /// A stream of up to 3 frames; the length prefix is usually right, and
    /// sometimes off by a little or a lot.
    fn frames(&mut self) -> Vec<u8> {
        let mut stream = Vec::new();
        for _ in 0..=self.rng.below(3) {
            let payload = self.mutated_seed();
            let mut announced = payload.len() as u32;
            match self.rng.below(8) {
                0 => announced = announced.wrapping_add(1),
                1 => announced = announced.saturating_sub(1),
                2 => announced = self.rng.next() as u32,
                _ => {}
            }
            stream.extend_from_slice(&announced.to_be_bytes());
            stream.extend_from_slice(&payload);
        }
        if self.rng.below(4) == 0 {
            let len = self.rng.below(stream.len() + 1);
            stream.truncate(len);
        }
        stream
    }
}

/// One message of every kind.
fn wire_seeds() -> Vec<WireMessage> {
    let raft_messages = raft_seeds()
        .iter()
        .map(|message| message.write_to_bytes().expect("seed raft messages encode"))
        .collect();
    vec![
        WireMessage::Request(Request::Propose {
            command: b"add 5".to_vec(),
        }),
        WireMessage::Request(Request::Members),
        WireMessage::Response(Response::Delivered { count: 3 }),
        WireMessage::Response(Response::Applied {
            index: 300,
            term: 2,
            result: Ok(b"5".to_vec()),
            fuel_used: 70_000,
        }),
        WireMessage::Response(Response::Applied {
            index: 1,
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
                            "[::1]:7802".parse().expect("valid address"),
                        ],
                    },
                ),
                (
                    2,
                    PeerAddr {
                        node_id: "cd".repeat(32),
                        addrs: Vec::new(),
                    },
                ),
            ],
        }),
        WireMessage::RaftMessage(RaftBatch {
            messages: raft_messages,
        }),
        WireMessage::Heartbeat(Heartbeat { sequence: 77 }),
        WireMessage::Error(ErrorFrame {
            code: ErrorCode::Rejected,
            message: "this node does not accept snapshots yet".to_string(),
        }),
        WireMessage::Refused(ClientError::NotLeader {
            leader_hint: Some(2),
        }),
        WireMessage::Refused(ClientError::CommandTooLarge {
            size_bytes: 1 << 30,
            limit_bytes: 1 << 20,
        }),
    ]
}

/// Raft messages of the kinds a cluster sends.
fn raft_seeds() -> Vec<RaftMessage> {
    let message = |msg_type: MessageType| {
        let mut message = RaftMessage::default();
        message.set_msg_type(msg_type);
        message.set_from(1);
        message.set_to(2);
        message.set_term(3);
        message
    };
    let mut append = message(MessageType::MsgAppend);
    append.set_index(10);
    append.set_log_term(3);
    append.set_commit(9);
    let entries = (11..14)
        .map(|index| {
            let mut entry = Entry::default();
            entry.set_entry_type(EntryType::EntryNormal);
            entry.set_term(3);
            entry.set_index(index);
            entry.set_data(format!("add {index}").into_bytes().into());
            entry
        })
        .collect();
    append.set_entries(RepeatedField::from_vec(entries));

    let mut vote = message(MessageType::MsgRequestVote);
    vote.set_index(10);
    vote.set_log_term(2);

    let mut rejected = message(MessageType::MsgAppendResponse);
    rejected.set_reject(true);
    rejected.set_reject_hint(7);

    let mut snapshot = message(MessageType::MsgSnapshot);
    let mut conf_state = ConfState::default();
    conf_state.set_voters(vec![1, 2, 3]);
    let mut metadata = SnapshotMetadata::default();
    metadata.set_index(100);
    metadata.set_term(3);
    metadata.set_conf_state(conf_state);
    let mut body = Snapshot::default();
    body.set_data(b"snapshot bytes".to_vec().into());
    body.set_metadata(metadata);
    snapshot.set_snapshot(body);

    vec![
        append,
        vote,
        rejected,
        snapshot,
        message(MessageType::MsgHeartbeat),
    ]
}

/// xorshift64*: small, fast, reproducible.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough below `n` (> 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
