//! Valid inputs for the snapshot, API and entry targets, which the corpus
//! mutates: a fuzzer rarely builds a BLAKE3-consistent snapshot transfer or
//! a well-formed JSON body on its own.

use iroh_raft::limits::MAX_SNAPSHOT_FILE_BYTES;
use std::collections::BTreeMap;

use iroh_raft::membership::PeerAddr;
use iroh_raft::node::envelope;
use iroh_raft::node::snapshot::{
    ConfStateRecord, SNAPSHOT_MAGIC, SnapshotDescriptor, SnapshotHeader,
};
use iroh_raft::transport::codec;
use iroh_raft::transport::message::{Request, WireMessage};
use iroh_raft::transport::snapshot::SnapshotOffer;
use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Message as RaftMessage,
    MessageType, Snapshot, SnapshotMetadata,
};

use crate::snapshot::{RECEIVER_ID, SENDER_ID};

/// A valid ed25519 public key (RFC 8032, test 1), hex: a node id that
/// parses.
pub const NODE_ID_HEX: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// What to get wrong in a snapshot transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    None,
    /// The last chunk is missing (the stream just ends).
    Incomplete,
    /// A chunk at the wrong offset.
    WrongOffset,
    /// The content does not match the offered hash.
    WrongContent,
    /// The offer comes from a node that is not the connection's.
    WrongSender,
    /// The offer claims a file above the limit.
    TooLarge,
}

/// Snapshot transfers: the offer frame followed by chunk frames.
pub fn snapshot_transfers() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (len, chunk) in [(1, 1), (100, 7), (100, 100), (3000, 1000)] {
        seeds.push(transfer(len, chunk, Flaw::None));
    }
    // An empty file: no snapshot file is (the format has a fixed header
    // and checksum), and the receiver refuses it.
    seeds.push(transfer(0, 1, Flaw::None));
    for flaw in [
        Flaw::Incomplete,
        Flaw::WrongOffset,
        Flaw::WrongContent,
        Flaw::WrongSender,
        Flaw::TooLarge,
    ] {
        seeds.push(transfer(300, 64, flaw));
    }
    seeds
}

fn transfer(len: usize, chunk: usize, flaw: Flaw) -> Vec<u8> {
    let content: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let file_hash = blake3::hash(&content).to_hex().to_string();
    let file_len = if flaw == Flaw::TooLarge {
        MAX_SNAPSHOT_FILE_BYTES + 1
    } else {
        len as u64
    };
    let descriptor = SnapshotDescriptor {
        file_len,
        file_hash: file_hash.clone(),
    };
    let mut message = RaftMessage::default();
    message.set_msg_type(MessageType::MsgSnapshot);
    message.set_from(if flaw == Flaw::WrongSender {
        9
    } else {
        SENDER_ID
    });
    message.set_to(RECEIVER_ID);
    message.set_term(3);
    let mut conf_state = ConfState::default();
    conf_state.set_voters(vec![1, 2, 3]);
    let mut metadata = SnapshotMetadata::default();
    metadata.set_index(100);
    metadata.set_term(3);
    metadata.set_conf_state(conf_state);
    let mut snapshot = Snapshot::default();
    snapshot.set_data(descriptor.encode().into());
    snapshot.set_metadata(metadata);
    message.set_snapshot(snapshot);
    let offer = SnapshotOffer {
        message: message.write_to_bytes().expect("a raft message encodes"),
        file_len,
        file_hash,
    };
    let mut stream = frame(Request::InstallSnapshot(offer));
    let mut sent = content.clone();
    if flaw == Flaw::WrongContent
        && let Some(byte) = sent.last_mut()
    {
        *byte ^= 1;
    }
    let chunks: Vec<&[u8]> = sent.chunks(chunk.max(1)).collect();
    let count = if flaw == Flaw::Incomplete {
        chunks.len().saturating_sub(1)
    } else {
        chunks.len()
    };
    let mut offset = 0u64;
    for (i, data) in chunks.into_iter().take(count).enumerate() {
        let at = if flaw == Flaw::WrongOffset && i == 1 {
            offset + 1
        } else {
            offset
        };
        stream.extend(frame(Request::SnapshotChunk {
            offset: at,
            data: data.to_vec(),
        }));
        offset += data.len() as u64;
    }
    stream
}

fn frame(request: Request) -> Vec<u8> {
    codec::encode_frame(&WireMessage::Request(request)).expect("small frames encode")
}

/// Snapshot files without their trailing checksum (the target tries each
/// input as it is and with the right checksum appended).
pub fn snapshot_file_bodies() -> Vec<Vec<u8>> {
    let member = |port: u16| PeerAddr {
        node_id: NODE_ID_HEX.to_string(),
        addrs: vec![
            format!("127.0.0.1:{port}").parse().expect("an address"),
            "[::1]:7000".parse().expect("an address"),
        ],
    };
    let header =
        |members: BTreeMap<u64, PeerAddr>, component: &[u8], state: &[u8]| SnapshotHeader {
            index: 1000,
            term: 4,
            conf: ConfStateRecord {
                voters: vec![1, 2, 3],
                learners: vec![4],
                ..ConfStateRecord::default()
            },
            members,
            component_hash: blake3::hash(component).to_hex().to_string(),
            component_len: component.len() as u64,
            state_len: state.len() as u64,
            last_entry_timestamp_ms: 1_700_000_000_000,
            taken_by: 1,
            taken_at_ms: 1_700_000_000_500,
            history: None,
            state_format: Default::default(),
        };
    let members: BTreeMap<u64, PeerAddr> = [(1, member(7801)), (2, member(7802))].into();
    [
        (members, b"\0asm component".as_slice(), b"state".as_slice()),
        (BTreeMap::new(), b"".as_slice(), b"".as_slice()),
        (BTreeMap::new(), b"c".as_slice(), &[0xff; 40][..]),
    ]
    .into_iter()
    .map(|(members, component, state)| {
        let header = header(members, component, state);
        let json = serde_json::to_vec(&header).expect("a header encodes");
        let mut body = SNAPSHOT_MAGIC.to_vec();
        body.extend_from_slice(&(json.len() as u32).to_be_bytes());
        body.extend_from_slice(&json);
        body.extend_from_slice(component);
        body.extend_from_slice(state);
        body
    })
    .collect()
}

/// Bodies of every API request type.
pub fn api_requests() -> Vec<Vec<u8>> {
    let ticket = format!("2:{NODE_ID_HEX}@127.0.0.1:7801,[::1]:7802");
    [
        r#"{"command":"add 5"}"#.to_string(),
        r#"{"command_base64":"YWRkIDU="}"#.into(),
        r#"{"command":"a","command_base64":"YQ=="}"#.into(),
        r#"{"request":"get","consistency":"stale"}"#.into(),
        r#"{"request_base64":"Z2V0","consistency":"lease"}"#.into(),
        r#"{"request":"\u00e9\ud83d\ude00","consistency":"linearizable"}"#.into(),
        format!(r#"{{"ticket":"{ticket}"}}"#),
        format!(r#"{{"ticket":"{ticket}","learner":true}}"#),
        format!(r#"{{"ticket":"{ticket}","replaces":3}}"#),
        r#"{"target":2}"#.into(),
        "{}".into(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// Entry payloads: commands, the no-op, configuration changes.
pub fn entry_payloads() -> Vec<Vec<u8>> {
    let mut change = ConfChange::default();
    change.set_change_type(ConfChangeType::AddLearnerNode);
    change.set_node_id(4);
    change.set_context(b"4:ticket".to_vec().into());
    let mut single = ConfChangeSingle::default();
    single.set_change_type(ConfChangeType::AddNode);
    single.set_node_id(5);
    let mut change_v2 = ConfChangeV2::default();
    change_v2.set_changes(vec![single.clone(), single].into());
    change_v2.set_context(b"ctx".to_vec().into());
    vec![
        Vec::new(),
        envelope::encode_command(1_700_000_000_000, None, b"add 5"),
        envelope::encode_command(0, None, b""),
        envelope::encode_command(u64::MAX, None, &[0xff; 20]),
        envelope::encode_command(
            7,
            Some(&iroh_raft::node::ForwardId {
                origin: 2,
                incarnation: u64::MAX,
                seq: 1,
            }),
            b"add 1",
        ),
        change.write_to_bytes().expect("a change encodes"),
        change_v2.write_to_bytes().expect("a change encodes"),
    ]
}
