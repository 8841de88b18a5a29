//! Fuzz target for Raft entry payloads: what a follower decodes out of every
//! entry the leader replicates to it.

use iroh_raft::node::envelope::{self, Payload};
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeV2};

/// Fuzz target `entry_payload`: the input as a normal entry's data
/// (`envelope::decode`) and as a configuration change entry's (raft-rs's
/// `ConfChange` and `ConfChangeV2`, protobuf).
///
/// Asserts: no panic; a decoded command re-encodes to the input byte for
/// byte (the format has one encoding per payload); a decoded configuration
/// change survives write → parse.
pub fn entry_payload(data: &[u8]) {
    // The no-op, other kinds the node may know, and errors: not panicking
    // is the property.
    if let Ok(Payload::Command {
        timestamp_ms,
        forward,
        command,
    }) = envelope::decode(data)
    {
        assert_eq!(
            envelope::encode_command(timestamp_ms, forward.as_ref(), &command),
            data,
            "decode then encode changed the payload"
        );
    }
    if let Ok(change) = ConfChange::parse_from_bytes(data) {
        let written = change.write_to_bytes().expect("a parsed change re-encodes");
        let again = ConfChange::parse_from_bytes(&written).expect("a re-encoded change parses");
        assert_eq!(format!("{again:?}"), format!("{change:?}"));
    }
    if let Ok(change) = ConfChangeV2::parse_from_bytes(data) {
        let written = change.write_to_bytes().expect("a parsed change re-encodes");
        let again = ConfChangeV2::parse_from_bytes(&written).expect("a re-encoded change parses");
        assert_eq!(format!("{again:?}"), format!("{change:?}"));
    }
}
