//! Fuzz targets for snapshots: the receiving side of a transfer (an offer
//! and its chunks, from a peer) and snapshot files (from a peer, a backup or
//! the disk).

use iroh_raft::limits::MAX_FRAME_BYTES;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

use iroh_raft::node::snapshot::{self, SNAPSHOT_MAGIC};
use iroh_raft::node::{NodeInbox, NodeMsg};
use iroh_raft::transport::codec::{self};
use iroh_raft::transport::message::{Request, WireMessage};
use iroh_raft::transport::snapshot::SnapshotReceiver;
use raft::prelude::ConfState;
use tokio::sync::mpsc;

use super::block_on;

/// The Raft ids of the transfer the receiver expects: from the leader
/// (`SENDER_ID`) to itself (`RECEIVER_ID`). The corpus uses them too.
pub const SENDER_ID: u64 = 1;
pub const RECEIVER_ID: u64 = 2;

/// Bytes of the fixed start of a snapshot file: magic and header length.
const FIXED_PREFIX_BYTES: usize = SNAPSHOT_MAGIC.len() + 4;
/// Bytes of the BLAKE3 checksum that ends a snapshot file.
const CHECKSUM_BYTES: usize = 32;

thread_local! {
    /// One runtime per thread (the smoke tests run targets in parallel):
    /// the receiver needs tokio's timer and blocking pool.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds");
    /// The receiver's snapshot directory, emptied before every input so
    /// that inputs do not see each other's partial files.
    static SNAPSHOT_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// A per-thread directory, on tmpfs when there is one: the receiver fsyncs
/// every complete file, which on a disk would dominate the run.
fn fresh_snapshot_dir() -> PathBuf {
    SNAPSHOT_DIR.with(|slot| {
        let mut slot = slot.borrow_mut();
        let dir = slot.get_or_insert_with(|| {
            let base = Path::new("/dev/shm");
            let base = if base.is_dir() {
                base.to_path_buf()
            } else {
                std::env::temp_dir()
            };
            let thread = format!("{:?}", std::thread::current().id())
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>();
            base.join(format!("iroh-raft-fuzz-{}-{thread}", std::process::id()))
        });
        let _ = std::fs::remove_dir_all(&*dir);
        dir.clone()
    })
}

/// Fuzz target `snapshot_offer`: the input is what a peer sends on a
/// snapshot stream, a stream of frames whose first is the
/// `InstallSnapshot` offer (as the protocol handler reads it) and the rest
/// chunks. The receiver serves it with a real directory.
///
/// Asserts: no panic; everything the receiver answers is a sequence of
/// well-formed frames; a snapshot handed to Raft, and any snapshot file
/// left in place, has exactly the offered length and BLAKE3 hash.
pub fn snapshot_offer(data: &[u8]) {
    serve_transfer(data);
}

/// The body of [`snapshot_offer`]: `None` if the input does not start with
/// an offer, else whether the receiver handed a snapshot to Raft.
pub(crate) fn serve_transfer(data: &[u8]) -> Option<bool> {
    let mut stream = data;
    let Ok(Some(WireMessage::Request(Request::InstallSnapshot(offer)))) =
        block_on(codec::read_frame(&mut stream, MAX_FRAME_BYTES))
    else {
        return None;
    };
    let dir = fresh_snapshot_dir();
    let (raft_tx, mut raft_rx) = mpsc::channel(1);
    let inbox = NodeInbox::from_sender(raft_tx);
    let receiver = SnapshotReceiver {
        raft_id: RECEIVER_ID,
        peer_raft_id: SENDER_ID,
        dir: &dir,
        inbox: &inbox,
    };
    let mut answers: Vec<u8> = Vec::new();
    // Reading from memory ends at the input's end, so this returns.
    let _ = RUNTIME
        .with(|runtime| runtime.block_on(receiver.serve(&mut answers, &mut stream, offer.clone())));

    let mut written = &answers[..];
    loop {
        match block_on(codec::read_frame(&mut written, MAX_FRAME_BYTES)) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(error) => panic!("the receiver wrote a malformed frame: {error}"),
        }
    }
    let delivered = match raft_rx.try_recv() {
        Ok(NodeMsg::Raft(message)) => {
            let meta = message.get_snapshot().get_metadata();
            let path = snapshot::path_for(&dir, meta.index, meta.term);
            assert!(path.exists(), "a snapshot was delivered without its file");
            true
        }
        Ok(_) => panic!("the receiver sent Raft something else"),
        Err(_) => false,
    };
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "snap") {
                let len = std::fs::metadata(&path).map_or(u64::MAX, |m| m.len());
                assert_eq!(
                    len,
                    offer.file_len,
                    "{} has the wrong length",
                    path.display()
                );
                let hash = snapshot::hash_file(&path).expect("a stored snapshot is readable");
                assert_eq!(
                    hash,
                    offer.file_hash,
                    "{} does not match the offer",
                    path.display()
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Some(delivered)
}

/// Fuzz target `snapshot_file`: the input as a whole snapshot file, and
/// with a correct checksum appended (so the header and section checks are
/// reached, which a fuzzer could not otherwise get past the BLAKE3 check).
///
/// Asserts: no panic; an accepted file's sections have the lengths its
/// header claims and add up to the file; what the node does next with the
/// header (the configuration, the members' addresses) does not panic.
pub fn snapshot_file(data: &[u8]) {
    check_snapshot_file(data.to_vec());
    let mut fixed = data.to_vec();
    fixed.extend_from_slice(blake3::hash(data).as_bytes());
    check_snapshot_file(fixed);
}

fn check_snapshot_file(bytes: Vec<u8>) {
    let len = bytes.len();
    let Ok(loaded) = snapshot::parse(bytes) else {
        return;
    };
    let header = &loaded.header;
    assert_eq!(loaded.component().len() as u64, header.component_len);
    assert_eq!(
        loaded.state().expect("in memory").len() as u64,
        header.state_len
    );
    let header_json = serde_json::to_vec(header).expect("a parsed header re-encodes");
    assert!(
        FIXED_PREFIX_BYTES
            + header.component_len as usize
            + header.state_len as usize
            + CHECKSUM_BYTES
            <= len,
        "sections run past the file"
    );
    // The header decodes to the same value from its own encoding.
    let again: snapshot::SnapshotHeader =
        serde_json::from_slice(&header_json).expect("a re-encoded header parses");
    assert_eq!(&again, header);
    let conf = ConfState::from(&header.conf);
    assert_eq!(conf.voters, header.conf.voters);
    for addr in header.members.values() {
        let _ = addr.endpoint_addr();
    }
}
