//! protobuf encoding of the values we store (raft-proto's own wire format).

use protobuf::Message;

use super::error::StorageError;

pub(crate) fn encode<M: Message>(what: &'static str, message: &M) -> Result<Vec<u8>, StorageError> {
    message
        .write_to_bytes()
        .map_err(|source| StorageError::Codec { what, source })
}

/// Decodes a stored value; `key` names it in the error (see `keys::describe`).
pub(crate) fn decode<M: Message>(key: &[u8], bytes: &[u8]) -> Result<M, StorageError> {
    M::parse_from_bytes(bytes).map_err(|e| {
        StorageError::corrupt(
            super::keys::describe(key),
            format!("cannot decode {}: {e}", std::any::type_name::<M>()),
        )
    })
}
