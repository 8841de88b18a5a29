//! The payload of a normal Raft entry: what the leader stamped around the
//! client's command.
//!
//! Layout (version 1), fixed so that every replica and every future version
//! decodes old logs identically:
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
//! An entry with empty data is the no-op a new leader appends; it is never
//! handed to the guest.

use super::upgrade::Activation;

const VERSION: u8 = 1;
const KIND_COMMAND: u8 = 1;
const KIND_ACTIVATE: u8 = 2;
const KIND_STATE_CHECK: u8 = 3;
const HEADER_BYTES: usize = 10;

/// A decoded entry payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Nothing for the guest (leader no-op, configuration change).
    Noop,
    /// A client command for the guest.
    Command { timestamp_ms: u64, command: Vec<u8> },
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

/// Encode a command stamped with the leader's time.
pub fn encode_command(timestamp_ms: u64, command: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + command.len());
    out.push(VERSION);
    out.push(KIND_COMMAND);
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
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
    if data.len() < HEADER_BYTES || data[0] != VERSION {
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
    if data[0] != VERSION {
        return Err(EnvelopeError::UnknownVersion(data[0]));
    }
    let mut stamp = [0u8; 8];
    stamp.copy_from_slice(&data[2..HEADER_BYTES]);
    let timestamp_ms = u64::from_le_bytes(stamp);
    let body = &data[HEADER_BYTES..];
    match data[1] {
        KIND_COMMAND => Ok(Payload::Command {
            timestamp_ms,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let data = encode_command(1_700_000_000_000, b"add 5");
        assert_eq!(
            decode(&data),
            Ok(Payload::Command {
                timestamp_ms: 1_700_000_000_000,
                command: b"add 5".to_vec()
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
