//! The payload of a normal Raft entry: what the leader stamped around the
//! client's command.
//!
//! Layout, fixed so that every replica and every future version decodes
//! old logs identically. Version 1:
//!
//! ```text
//! [0]      format version = 1
//! [1]      kind: 1 = guest command, 2 = component activation,
//!          3 = state check (no body; see `super::divergence`)
//! [2..10]  leader timestamp, ms since the Unix epoch, u64 little-endian
//! [10..]   kind 1: the command bytes, as the client sent them
//!          kind 2: the `Activation`, as JSON (see `super::upgrade`)
//! ```
//!
//! Version 2 is a guest command a follower forwarded, with the id its
//! origin waits for (see `super::forwarded`); only kind 1 exists in it.
//! Other entries are still written as version 1.
//!
//! ```text
//! [0]      format version = 2
//! [1]      kind = 1
//! [2..10]  leader timestamp, as in version 1
//! [10..18] origin node (Raft id), u64 little-endian
//! [18..26] origin incarnation, u64 little-endian
//! [26..34] origin sequence number, u64 little-endian
//! [34..]   the command bytes
//! ```
//!
//! An entry with empty data is the no-op a new leader appends; it is never
//! handed to the guest.

use super::forwarded::ForwardId;
use super::upgrade::Activation;

const VERSION: u8 = 1;
const VERSION_FORWARDED: u8 = 2;
const KIND_COMMAND: u8 = 1;
const KIND_ACTIVATE: u8 = 2;
const KIND_STATE_CHECK: u8 = 3;
const HEADER_BYTES: usize = 10;
const FORWARDED_HEADER_BYTES: usize = HEADER_BYTES + 24;

/// A decoded entry payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Nothing for the guest (leader no-op, configuration change).
    Noop,
    /// A client command for the guest; `forward` if a follower forwarded
    /// it (version 2).
    Command {
        timestamp_ms: u64,
        forward: Option<ForwardId>,
        command: Vec<u8>,
    },
    /// Switch the guest to another component.
    Activate {
        timestamp_ms: u64,
        activation: Activation,
    },
    /// Every replica hashes its state here and compares with its peers.
    StateCheck,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("entry payload is {0} bytes, shorter than the {HEADER_BYTES}-byte header")]
    Truncated(usize),
    #[error("entry payload has unknown format version {0}")]
    UnknownVersion(u8),
    #[error("entry payload has unknown kind {0}")]
    UnknownKind(u8),
    #[error("activation entry: {0}")]
    BadActivation(String),
}

/// Encode a command stamped with the leader's time (version 2 if it
/// carries a forward id, else version 1).
pub fn encode_command(timestamp_ms: u64, forward: Option<&ForwardId>, command: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FORWARDED_HEADER_BYTES + command.len());
    out.push(if forward.is_some() {
        VERSION_FORWARDED
    } else {
        VERSION
    });
    out.push(KIND_COMMAND);
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    if let Some(id) = forward {
        out.extend_from_slice(&id.origin.to_le_bytes());
        out.extend_from_slice(&id.incarnation.to_le_bytes());
        out.extend_from_slice(&id.seq.to_le_bytes());
    }
    out.extend_from_slice(command);
    out
}

/// Encode a component activation stamped with the leader's time.
pub fn encode_activation(timestamp_ms: u64, activation: &Activation) -> Vec<u8> {
    let body = serde_json::to_vec(activation).expect("an activation always serializes");
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.push(VERSION);
    out.push(KIND_ACTIVATE);
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Encode a state check entry.
pub fn encode_state_check(timestamp_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES);
    out.push(VERSION);
    out.push(KIND_STATE_CHECK);
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out
}

/// The leader's timestamp in an entry's data, if it carries one (every
/// kind but the no-op does).
pub fn stamp_of(data: &[u8]) -> Option<u64> {
    if data.len() < HEADER_BYTES || (data[0] != VERSION && data[0] != VERSION_FORWARDED) {
        return None;
    }
    let mut stamp = [0u8; 8];
    stamp.copy_from_slice(&data[2..HEADER_BYTES]);
    Some(u64::from_le_bytes(stamp))
}

/// Decode an entry's data.
pub fn decode(data: &[u8]) -> Result<Payload, EnvelopeError> {
    if data.is_empty() {
        return Ok(Payload::Noop);
    }
    if data.len() < HEADER_BYTES {
        return Err(EnvelopeError::Truncated(data.len()));
    }
    let timestamp_ms = u64_at(data, 2);
    match data[0] {
        VERSION => {}
        VERSION_FORWARDED => {
            if data[1] != KIND_COMMAND {
                return Err(EnvelopeError::UnknownKind(data[1]));
            }
            if data.len() < FORWARDED_HEADER_BYTES {
                return Err(EnvelopeError::Truncated(data.len()));
            }
            return Ok(Payload::Command {
                timestamp_ms,
                forward: Some(ForwardId {
                    origin: u64_at(data, HEADER_BYTES),
                    incarnation: u64_at(data, HEADER_BYTES + 8),
                    seq: u64_at(data, HEADER_BYTES + 16),
                }),
                command: data[FORWARDED_HEADER_BYTES..].to_vec(),
            });
        }
        version => return Err(EnvelopeError::UnknownVersion(version)),
    }
    let body = &data[HEADER_BYTES..];
    match data[1] {
        KIND_COMMAND => Ok(Payload::Command {
            timestamp_ms,
            forward: None,
            command: body.to_vec(),
        }),
        KIND_ACTIVATE => {
            let activation: Activation = serde_json::from_slice(body)
                .map_err(|e| EnvelopeError::BadActivation(e.to_string()))?;
            Ok(Payload::Activate {
                timestamp_ms,
                activation,
            })
        }
        KIND_STATE_CHECK => Ok(Payload::StateCheck),
        kind => Err(EnvelopeError::UnknownKind(kind)),
    }
}

/// The little-endian u64 at `at` (the caller checked the length).
fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let data = encode_command(1_700_000_000_000, None, b"add 5");
        assert_eq!(
            data[0], 1,
            "a command that was not forwarded stays version 1"
        );
        assert_eq!(
            decode(&data),
            Ok(Payload::Command {
                timestamp_ms: 1_700_000_000_000,
                forward: None,
                command: b"add 5".to_vec()
            })
        );
    }

    #[test]
    fn forwarded_round_trip() {
        let id = ForwardId {
            origin: 3,
            incarnation: u64::MAX - 1,
            seq: 42,
        };
        let data = encode_command(77, Some(&id), b"add 1");
        assert_eq!(data[0], 2);
        assert_eq!(stamp_of(&data), Some(77));
        assert_eq!(
            decode(&data),
            Ok(Payload::Command {
                timestamp_ms: 77,
                forward: Some(id),
                command: b"add 1".to_vec()
            })
        );
        assert_eq!(
            decode(&data[..FORWARDED_HEADER_BYTES - 1]),
            Err(EnvelopeError::Truncated(FORWARDED_HEADER_BYTES - 1))
        );
        let mut other_kind = data.clone();
        other_kind[1] = KIND_ACTIVATE;
        assert_eq!(
            decode(&other_kind),
            Err(EnvelopeError::UnknownKind(KIND_ACTIVATE))
        );
    }

    #[test]
    fn a_version_1_command_written_before_version_2_still_decodes() {
        // Bytes as version 1 wrote them: version, kind, stamp, command.
        let mut old = vec![1, 1];
        old.extend_from_slice(&5u64.to_le_bytes());
        old.extend_from_slice(b"add 2");
        assert_eq!(
            decode(&old),
            Ok(Payload::Command {
                timestamp_ms: 5,
                forward: None,
                command: b"add 2".to_vec()
            })
        );
    }

    #[test]
    fn activation_round_trip() {
        let activation = Activation {
            hash: "ab".repeat(32),
            size_bytes: 1234,
            kind: super::super::upgrade::ActivationKind::Upgrade,
            limits: Default::default(),
            source: 2,
        };
        let data = encode_activation(99, &activation);
        assert_eq!(
            decode(&data),
            Ok(Payload::Activate {
                timestamp_ms: 99,
                activation
            })
        );
        let mut bad = data[..HEADER_BYTES].to_vec();
        bad.extend_from_slice(b"{not json");
        assert!(matches!(decode(&bad), Err(EnvelopeError::BadActivation(_))));
    }

    #[test]
    fn state_check_round_trip() {
        assert_eq!(decode(&encode_state_check(5)), Ok(Payload::StateCheck));
    }

    #[test]
    fn empty_is_noop_and_garbage_is_an_error() {
        assert_eq!(decode(&[]), Ok(Payload::Noop));
        assert_eq!(decode(&[1, 1, 0]), Err(EnvelopeError::Truncated(3)));
        assert_eq!(decode(&[9; 12]), Err(EnvelopeError::UnknownVersion(9)));
        assert_eq!(
            decode(&[1, 7, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(EnvelopeError::UnknownKind(7))
        );
    }
}
