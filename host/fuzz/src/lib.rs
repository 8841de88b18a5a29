//! Fuzz targets for everything a node decodes from outside: `iroh-raft/0`
//! frames and the raft messages in them, snapshot transfers and files, the
//! client API's bodies, and Raft entry payloads.
//!
//! Each target is a plain function of this crate, so that both libFuzzer (the
//! `fuzz_targets/*.rs` binaries, built by `cargo fuzz`) and the stable smoke
//! test below (`cargo test`, a deterministic corpus from [`corpus`]) run the
//! same body. A target panics on a broken invariant; on hostile input the
//! code under test must return an error, never panic.
//!
//! - [`frame_decoder`]: the input as one payload ([`codec::decode`]) and as a
//!   stream of frames ([`codec::read_frame`]); whatever decodes must survive
//!   encode → decode unchanged.
//! - [`raft_payload`]: the raft-rs messages inside a decoded `RaftMessage`
//!   frame go through protobuf's parser, as the transport does with them,
//!   and through [`parse_raft_message_bounded`], which must agree with it.
//! - [`snapshot_offer`]: a snapshot stream (offer, chunks) served by the real
//!   `SnapshotReceiver` into a real directory.
//! - [`snapshot_file`]: `node::snapshot::parse`, with and without a correct
//!   checksum.
//! - [`api_request`]: every API request body, and the bytes and tickets the
//!   server takes out of them.
//! - [`entry_payload`]: `node::envelope::decode` and raft-rs's configuration
//!   change parsers.
//!
//! The protobuf finding below applies to `snapshot_offer` (the offer's raft
//! message) and `entry_payload` (configuration changes) too: both go
//! through `parse_from_bytes`.
//!
//! ## A finding: protobuf 2 preallocates what a length claims
//!
//! `protobuf::Message::parse_from_bytes` (protobuf 2.28, what raft 0.7
//! uses) trusts the length of a length-delimited field: for an unknown field
//! or a `bytes` field it allocates the claimed length (up to 10 MB,
//! `READ_RAW_BYTES_MAX_ALLOC`) before finding out the input is shorter. A
//! 20-byte raft message can so make the receiver allocate ~10 MB (freed at
//! once when the parse fails). The transport therefore parses peer input
//! with `transport::protobuf_input::parse_bounded` ([`parse_raft_message_bounded`]
//! here), which checks every length against the input first. (A second,
//! milder leniency: `parse_from_bytes` accepts a nested message whose length
//! runs past the end of the input, parsing what is there; the bounded
//! parser refuses it.)

use iroh_raft::limits::MAX_FRAME_BYTES;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use iroh_raft::transport::codec::{self, FRAME_HEADER_BYTES};
use iroh_raft::transport::message::WireMessage;
use protobuf::{Message as _, ProtobufResult};
use raft::prelude::Message as RaftMessage;

mod client_api;
pub mod corpus;
mod entry;
pub mod seeds;
mod snapshot;

pub use client_api::api_request;
pub use entry::entry_payload;
pub use snapshot::{snapshot_file, snapshot_offer};

/// The `max_bytes` limits [`frame_decoder`] reads with: the hard maximum,
/// and a small one so that both sides of the length-prefix check are
/// reachable with small inputs.
const READ_LIMITS_BYTES: [usize; 2] = [MAX_FRAME_BYTES, 64];

/// Fuzz target `frame_decoder`.
pub fn frame_decoder(data: &[u8]) {
    if let Ok(message) = codec::decode(data) {
        check_round_trip(&message);
    }
    for max_bytes in READ_LIMITS_BYTES {
        let mut stream = data;
        // Every frame read consumes at least its header, so this ends.
        while let Ok(Some(message)) = block_on(codec::read_frame(&mut stream, max_bytes)) {
            check_round_trip(&message);
        }
    }
}

/// Fuzz target `raft_payload`.
pub fn raft_payload(data: &[u8]) {
    // The input itself, so protobuf's parser also sees bytes no frame
    // wrapper shapes.
    check_raft_message(data);
    if let Ok(WireMessage::RaftMessage(batch)) = codec::decode(data) {
        for bytes in &batch.messages {
            check_raft_message(bytes);
        }
    }
}

/// Parses a raft-rs message the way the transport parses a peer's: with
/// every length inside checked against the input before anything is
/// allocated for it ([`iroh_raft::transport::protobuf_input::parse_bounded`]).
pub fn parse_raft_message_bounded(bytes: Bytes) -> ProtobufResult<RaftMessage> {
    iroh_raft::transport::protobuf_input::parse_bounded(bytes)
}

/// A decoded message encodes again, to a payload that decodes to itself,
/// and as a frame to that payload behind its length.
fn check_round_trip(message: &WireMessage) {
    let payload = codec::encode(message).expect("a decoded message re-encodes");
    let decoded = codec::decode(&payload).expect("a re-encoded message decodes");
    assert_eq!(&decoded, message, "decode(encode(m)) != m");
    let frame = codec::encode_frame(message).expect("a decoded message re-encodes as a frame");
    assert_eq!(frame[FRAME_HEADER_BYTES..], payload[..]);
    let announced = u32::from_be_bytes(
        frame[..FRAME_HEADER_BYTES]
            .try_into()
            .expect("FRAME_HEADER_BYTES is 4"),
    );
    assert_eq!(announced as usize, payload.len());
}

/// Parsing must not panic. The bounded parser is protobuf's own minus the
/// overruns: what it accepts, `parse_from_bytes` accepts identically, and it
/// accepts every message as written. (The converse does not hold:
/// `parse_from_bytes` accepts a nested message whose length runs past the
/// end of the input, parsing what is there; the bounded parser refuses it.)
/// What parses survives a write/parse cycle.
fn check_raft_message(bytes: &[u8]) {
    let parsed = RaftMessage::parse_from_bytes(bytes);
    let bounded = parse_raft_message_bounded(Bytes::copy_from_slice(bytes));
    if let Ok(bounded) = &bounded {
        match &parsed {
            Ok(parsed) => assert_eq!(parsed, bounded, "the parsers decode differently"),
            Err(err) => panic!("only the bounded parser accepts it ({err})"),
        }
    }
    if let Ok(parsed) = parsed {
        let written = Bytes::from(
            parsed
                .write_to_bytes()
                .expect("a parsed raft message re-encodes"),
        );
        let reparsed =
            RaftMessage::parse_from_bytes(&written).expect("a re-encoded raft message parses");
        assert_same_raft_message(&reparsed, &parsed);
        let reparsed = parse_raft_message_bounded(written)
            .expect("the bounded parser accepts a re-encoded raft message");
        assert_same_raft_message(&reparsed, &parsed);
    }
}

/// Equal up to protobuf 2's representation: its `==` also compares whether
/// an (empty) unknown-field map was ever allocated, which a second occurrence
/// of a singular message field leaves behind. Compared instead: every known
/// field (the text form) and the encoded size (which counts unknown fields).
fn assert_same_raft_message(actual: &RaftMessage, expected: &RaftMessage) {
    assert_eq!(
        format!("{actual:?}"),
        format!("{expected:?}"),
        "parse(write(m)) != m"
    );
    assert_eq!(
        actual.compute_size(),
        expected.compute_size(),
        "parse(write(m)) lost or gained unknown fields"
    );
}

/// Runs a future that never waits: `read_frame` over an in-memory slice is
/// always ready, so a runtime per input would only slow the fuzzer down.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("reading from a slice never waits"),
    }
}

#[cfg(test)]
mod smoke {
    //! The stable stand-in for fuzzing: every target over a deterministic
    //! pseudo-random corpus, with the largest single allocation watched.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use super::corpus::{Corpus, Target};
    use super::*;

    /// Inputs per target.
    const SMOKE_INPUTS: usize = 100_000;

    /// The largest single allocation an input may cause, in bytes: serde
    /// preallocates at most 1 MiB for a sequence whatever length it claims,
    /// `read_frame` at most 64 KiB before bytes arrive, and the decode limit
    /// for inputs this small is 64 KiB. A lying length must not get past
    /// these.
    const MAX_SINGLE_ALLOCATION_BYTES: usize = 1024 * 1024;

    /// What protobuf 2's `parse_from_bytes` preallocates at most for one
    /// length it has not checked (its `READ_RAW_BYTES_MAX_ALLOC`): the bound
    /// for the `raft_payload` target, which runs that parser. See the crate
    /// doc; `the_bounded_raft_parser_allocates_little` holds the bounded
    /// parser to [`MAX_SINGLE_ALLOCATION_BYTES`].
    const PROTOBUF_MAX_PREALLOC_BYTES: usize = 10_000_000;

    /// Records, per thread, the largest allocation (or reallocation)
    /// requested since the last reset. Per thread because the tests run in
    /// parallel.
    struct TrackingAllocator;

    thread_local! {
        // A const-initialized Cell needs no allocation and no destructor, so
        // the allocator can use it without recursing.
        static LARGEST_ALLOCATION_BYTES: Cell<usize> = const { Cell::new(0) };
    }

    fn record(size: usize) {
        // try_with: the slot is gone while the thread is being torn down.
        let _ = LARGEST_ALLOCATION_BYTES.try_with(|largest| largest.set(largest.get().max(size)));
    }

    /// The largest allocation of this thread since the last call.
    fn take_largest_allocation() -> usize {
        LARGEST_ALLOCATION_BYTES.with(|largest| largest.replace(0))
    }

    // SAFETY: forwards every call unchanged to the system allocator; it only
    // records sizes on the side.
    unsafe impl GlobalAlloc for TrackingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            record(layout.size());
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            record(layout.size());
            // SAFETY: same contract as ours.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            record(new_size);
            // SAFETY: same contract as ours.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: TrackingAllocator = TrackingAllocator;

    fn smoke(target: Target, run: fn(&[u8]), seed: u64, max_allocation_bytes: usize) {
        let mut corpus = Corpus::new(target, seed);
        for case in 0..SMOKE_INPUTS {
            let input = corpus.next_input();
            take_largest_allocation();
            let outcome = std::panic::catch_unwind(|| run(&input));
            let largest = take_largest_allocation();
            assert!(
                outcome.is_ok(),
                "{target:?} panicked on case {case} (seed {seed:#x}); input: {input:?}"
            );
            assert!(
                largest <= max_allocation_bytes,
                "case {case} of {target:?} (seed {seed:#x}) allocated {largest} bytes \
                 at once; input: {input:?}"
            );
        }
    }

    #[test]
    fn frame_decoder_survives_the_smoke_corpus() {
        smoke(
            Target::FrameDecoder,
            frame_decoder,
            0x5eed_f4a3_e000_0001,
            MAX_SINGLE_ALLOCATION_BYTES,
        );
    }

    #[test]
    fn raft_payload_survives_the_smoke_corpus() {
        smoke(
            Target::RaftPayload,
            raft_payload,
            0x5eed_4af7_0000_0002,
            PROTOBUF_MAX_PREALLOC_BYTES,
        );
    }

    #[test]
    fn snapshot_offer_survives_the_smoke_corpus() {
        // The offer's raft message goes through protobuf's parser (see the
        // crate doc), hence its bound.
        smoke(
            Target::SnapshotOffer,
            snapshot_offer,
            0x5eed_5a0f_0000_0004,
            PROTOBUF_MAX_PREALLOC_BYTES,
        );
    }

    #[test]
    fn snapshot_file_survives_the_smoke_corpus() {
        smoke(
            Target::SnapshotFile,
            snapshot_file,
            0x5eed_5f11_0000_0005,
            MAX_SINGLE_ALLOCATION_BYTES,
        );
    }

    #[test]
    fn api_request_survives_the_smoke_corpus() {
        smoke(
            Target::ApiRequest,
            api_request,
            0x5eed_a919_0000_0006,
            MAX_SINGLE_ALLOCATION_BYTES,
        );
    }

    #[test]
    fn entry_payload_survives_the_smoke_corpus() {
        // Configuration changes go through protobuf's parser too.
        smoke(
            Target::EntryPayload,
            entry_payload,
            0x5eed_e417_0000_0007,
            PROTOBUF_MAX_PREALLOC_BYTES,
        );
    }

    #[test]
    fn snapshot_seeds_are_delivered_exactly_when_flawless() {
        // Without this the transfer target could pass by never getting a
        // file through.
        let outcomes: Vec<Option<bool>> = crate::seeds::snapshot_transfers()
            .iter()
            .map(|transfer| snapshot::serve_transfer(transfer))
            .collect();
        // The first four are flawless (see `seeds::snapshot_transfers`).
        let flawless = 4;
        assert!(
            outcomes[..flawless].iter().all(|o| *o == Some(true)),
            "{outcomes:?}"
        );
        assert!(
            outcomes[flawless..].iter().all(|o| *o == Some(false)),
            "{outcomes:?}"
        );
    }

    #[test]
    fn the_bounded_raft_parser_allocates_little() {
        fn parse_batch(data: &[u8]) {
            let _ = parse_raft_message_bounded(Bytes::copy_from_slice(data));
            if let Ok(WireMessage::RaftMessage(batch)) = codec::decode(data) {
                for bytes in batch.messages {
                    let _ = parse_raft_message_bounded(Bytes::from(bytes));
                }
            }
        }
        smoke(
            Target::RaftPayload,
            parse_batch,
            0x5eed_b0da_0000_0003,
            MAX_SINGLE_ALLOCATION_BYTES,
        );
    }

    #[test]
    fn protobuf_parse_from_bytes_preallocates_a_claimed_length() {
        // The finding of the crate doc, pinned: an unknown length-delimited
        // field (field 683279) claiming 1,407,349 bytes in a 21-byte message.
        let input = [
            8, 4, 16, 158, 31, 250, 198, 203, 2, 245, 242, 85, 24, 1, 32, 3, 80, 1, 88, 7, 255,
        ];
        take_largest_allocation();
        assert!(RaftMessage::parse_from_bytes(&input).is_err());
        assert!(take_largest_allocation() >= 1_407_349);
        assert!(parse_raft_message_bounded(Bytes::copy_from_slice(&input)).is_err());
        assert!(take_largest_allocation() < 4096);
    }

    /// `cargo test ... -- --ignored write_seed_corpus` writes the seeds to
    /// `corpus/<target>/`, where `cargo fuzz run` starts from.
    #[test]
    #[ignore = "writes files; run on demand before fuzzing"]
    fn write_seed_corpus() {
        for (target, name) in Target::ALL {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("corpus")
                .join(name);
            std::fs::create_dir_all(&dir).expect("corpus dir is writable");
            for (i, input) in Corpus::seed_inputs(target).iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i:02}")), input).expect("seed is writable");
            }
        }
    }

    #[test]
    fn the_corpus_reaches_the_interesting_paths() {
        // A corpus that never decodes anything would make the smoke tests
        // pass vacuously.
        let mut corpus = Corpus::new(Target::FrameDecoder, 1);
        let inputs: Vec<Vec<u8>> = (0..2_000).map(|_| corpus.next_input()).collect();
        let decoded = inputs.iter().filter(|i| codec::decode(i).is_ok()).count();
        let framed = inputs
            .iter()
            .filter(|i| {
                matches!(
                    block_on(codec::read_frame(&mut &i[..], MAX_FRAME_BYTES)),
                    Ok(Some(_))
                )
            })
            .count();
        assert!(decoded > 100, "only {decoded} of 2000 inputs decode");
        assert!(framed > 50, "only {framed} of 2000 inputs read as a frame");

        let mut corpus = Corpus::new(Target::RaftPayload, 2);
        let parsed = (0..2_000)
            .map(|_| corpus.next_input())
            .filter_map(|input| match codec::decode(&input) {
                Ok(WireMessage::RaftMessage(batch)) => Some(batch),
                _ => None,
            })
            .flat_map(|batch| batch.messages)
            .filter(|bytes| RaftMessage::parse_from_bytes(bytes).is_ok())
            .count();
        assert!(parsed > 500, "only {parsed} raft messages parse");

        let reached = |target: Target, reaches: fn(&[u8]) -> bool| {
            let mut corpus = Corpus::new(target, 3);
            (0..2_000).filter(|_| reaches(&corpus.next_input())).count()
        };
        let offers = reached(Target::SnapshotOffer, |input| {
            matches!(
                block_on(codec::read_frame(&mut &input[..], MAX_FRAME_BYTES)),
                Ok(Some(WireMessage::Request(
                    iroh_raft::transport::message::Request::InstallSnapshot(_)
                )))
            )
        });
        assert!(
            offers > 1_000,
            "only {offers} of 2000 inputs start with an offer"
        );
        let files = reached(Target::SnapshotFile, |input| {
            let mut fixed = input.to_vec();
            fixed.extend_from_slice(blake3::hash(input).as_bytes());
            iroh_raft::node::snapshot::parse(fixed).is_ok()
        });
        assert!(
            files > 200,
            "only {files} of 2000 inputs parse as snapshot files"
        );
        let bodies = reached(Target::ApiRequest, |input| {
            serde_json::from_slice::<iroh_raft::api::types::ProposeRequest>(input).is_ok()
                || serde_json::from_slice::<iroh_raft::api::types::QueryRequest>(input).is_ok()
                || serde_json::from_slice::<iroh_raft::api::types::AddMemberRequest>(input).is_ok()
        });
        assert!(
            bodies > 200,
            "only {bodies} of 2000 inputs parse as API bodies"
        );
        let commands = reached(Target::EntryPayload, |input| {
            matches!(
                iroh_raft::node::envelope::decode(input),
                Ok(iroh_raft::node::envelope::Payload::Command { .. })
            )
        });
        assert!(
            commands > 200,
            "only {commands} of 2000 inputs decode as commands"
        );
    }
}
