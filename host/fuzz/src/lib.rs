//! Fuzz targets for the `iroh-raft/0` frame codec
//! (`iroh_raft::transport::codec`).
//!
//! Each target is a plain function here, so that both libFuzzer (the
//! `fuzz_targets/*.rs` binaries, built by `cargo fuzz`) and the stable smoke
//! test below (`cargo test`, a deterministic corpus from [`corpus`]) run the
//! same body. A target panics on a broken invariant; on hostile input the
//! code under test must return an error, never panic.
//!
//! - [`frame_decoder`]: the input as one payload ([`codec::decode`]) and as a
//!   stream of frames ([`codec::read_frame`]); whatever decodes must survive
//!   encode → decode unchanged.
//! - [`raft_payload`]: the raft-rs messages inside a decoded `RaftMessage`
//!   frame go through protobuf's parser, as the transport does with them.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use iroh_raft::transport::codec::{self, FRAME_HEADER_BYTES, MAX_FRAME_BYTES};
use iroh_raft::transport::message::WireMessage;
use protobuf::Message as _;
use raft::prelude::Message as RaftMessage;

pub mod corpus;

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

/// Parsing must not panic; what parses must survive a write/parse cycle.
fn check_raft_message(bytes: &[u8]) {
    if let Ok(message) = RaftMessage::parse_from_bytes(bytes) {
        let written = message
            .write_to_bytes()
            .expect("a parsed raft message re-encodes");
        let reparsed =
            RaftMessage::parse_from_bytes(&written).expect("a re-encoded raft message parses");
        assert_eq!(reparsed, message, "parse(write(m)) != m");
    }
}

/// Runs a future that never waits: `read_frame` over an in-memory slice is
/// always ready, so a runtime per input would only slow the fuzzer down.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("reading from a slice never waits"),
    }
}

#[cfg(test)]
mod smoke {
    //! The stable stand-in for fuzzing: every target over a deterministic
    //! pseudo-random corpus, with the largest single allocation watched.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::corpus::{Corpus, Target};
    use super::*;

    /// Inputs per target.
    const SMOKE_INPUTS: usize = 100_000;

    /// The largest single allocation any input may cause, in bytes: serde
    /// preallocates at most 1 MiB for a sequence whatever length it claims,
    /// `read_frame` at most 64 KiB before bytes arrive, and the decode limit
    /// for inputs this small is 64 KiB. A lying length must not get past
    /// these.
    const MAX_SINGLE_ALLOCATION_BYTES: usize = 1024 * 1024;

    /// Records the largest allocation (or reallocation) ever requested.
    struct TrackingAllocator;

    static LARGEST_ALLOCATION_BYTES: AtomicUsize = AtomicUsize::new(0);

    // SAFETY: forwards every call unchanged to the system allocator; it only
    // records sizes on the side.
    unsafe impl GlobalAlloc for TrackingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            LARGEST_ALLOCATION_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            LARGEST_ALLOCATION_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
            // SAFETY: same contract as ours.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            LARGEST_ALLOCATION_BYTES.fetch_max(new_size, Ordering::Relaxed);
            // SAFETY: same contract as ours.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: TrackingAllocator = TrackingAllocator;

    fn smoke(target: Target, run: fn(&[u8]), seed: u64) {
        let mut corpus = Corpus::new(target, seed);
        for case in 0..SMOKE_INPUTS {
            let input = corpus.next_input();
            let outcome = std::panic::catch_unwind(|| run(&input));
            assert!(
                outcome.is_ok(),
                "{target:?} panicked on case {case} (seed {seed:#x}); input: {input:?}"
            );
            // Never reset: both smoke tests run at once, and the bound holds
            // for both.
            let largest = LARGEST_ALLOCATION_BYTES.load(Ordering::Relaxed);
            assert!(
                largest <= MAX_SINGLE_ALLOCATION_BYTES,
                "an allocation of {largest} bytes by case {case} of {target:?} \
                 (seed {seed:#x}, or the other smoke test); input: {input:?}"
            );
        }
    }

    #[test]
    fn frame_decoder_survives_the_smoke_corpus() {
        smoke(Target::FrameDecoder, frame_decoder, 0x5eed_f4a3_e000_0001);
    }

    #[test]
    fn raft_payload_survives_the_smoke_corpus() {
        smoke(Target::RaftPayload, raft_payload, 0x5eed_4af7_0000_0002);
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
            .filter(|i| matches!(block_on(codec::read_frame(&mut &i[..], MAX_FRAME_BYTES)), Ok(Some(_))))
            .count();
        assert!(decoded > 100, "only {decoded} of 2000 inputs decode");
        assert!(framed > 100, "only {framed} of 2000 inputs read as a frame");

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
    }
}
