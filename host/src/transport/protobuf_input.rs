//! Parsing raft-rs's protobuf messages from peers with every length the
//! peer claims checked against the bytes that actually arrived.
//!
//! protobuf 2's `Message::parse_from_bytes` (what raft 0.7 uses) trusts the
//! length of a length-delimited field: for an unknown field or a `bytes`
//! field it reserves the claimed length (up to 10 MB) before it finds the
//! input shorter, so a 21-byte raft message could make the receiver
//! allocate megabytes (found by `host/fuzz`, pinned there by
//! `protobuf_parse_from_bytes_preallocates_a_claimed_length`). Here the
//! input is a `Bytes` (so `bytes` fields are bounds-checked slices of it)
//! and the whole input is pushed as the stream's limit (so every other
//! claimed length is checked before anything is reserved for it). It also
//! refuses a nested message whose length runs past the end of the input,
//! which `parse_from_bytes` parses as far as it goes.

use bytes::Bytes;
use protobuf::{CodedInputStream, Message, ProtobufResult};

/// Parse one `M` that fills `bytes` exactly, allocating nothing a length in
/// it claims beyond what `bytes` holds. Takes `Bytes` (a `Vec<u8>` converts
/// without a copy): its `bytes` fields become slices of it.
pub fn parse_bounded<M: Message>(bytes: Bytes) -> ProtobufResult<M> {
    let mut input = CodedInputStream::from_carllerche_bytes(&bytes);
    input.push_limit(bytes.len() as u64)?;
    let message = M::parse_from(&mut input)?;
    input.check_eof()?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::Message as RaftMessage;

    #[test]
    fn a_claimed_length_past_the_input_is_refused() {
        // An unknown length-delimited field (field 683279) claiming
        // 1,407,349 bytes in a 21-byte message (the fuzz finding).
        let input = [
            8, 4, 16, 158, 31, 250, 198, 203, 2, 245, 242, 85, 24, 1, 32, 3, 80, 1, 88, 7, 255,
        ];
        assert!(parse_bounded::<RaftMessage>(Bytes::copy_from_slice(&input)).is_err());
    }

    #[test]
    fn every_message_as_written_parses_identically() {
        let message = RaftMessage {
            from: 1,
            to: 2,
            term: 7,
            entries: vec![raft::prelude::Entry {
                index: 5,
                term: 7,
                data: b"add 1".to_vec().into(),
                ..Default::default()
            }]
            .into(),
            ..Default::default()
        };
        let bytes = message.write_to_bytes().expect("encode");
        assert_eq!(
            parse_bounded::<RaftMessage>(bytes.clone().into()).expect("parse"),
            message
        );
        // One byte short: refused, not half-parsed.
        assert!(
            parse_bounded::<RaftMessage>(Bytes::copy_from_slice(&bytes[..bytes.len() - 1]))
                .is_err()
        );
    }
}
