//! The key layout of the single sled tree.
//!
//! One tree, so that one `sled::Batch` is atomic over entries and Raft state.
//! The prefixes sort `e` < `m` < `u`, so a scan from the start visits the log
//! first, in index order (big-endian keys sort numerically).
//!
//! | key                     | value                                   |
//! |-------------------------|-----------------------------------------|
//! | `e` + index (u64 BE)    | a chunk of entries from that index on (`chunks.rs`) |
//! | `m/format`              | [`FORMAT_MARKER`]                       |
//! | `m/hard_state`          | protobuf `HardState`                    |
//! | `m/conf_state`          | protobuf `ConfState`                    |
//! | `m/snapshot_meta`       | protobuf `SnapshotMetadata`             |
//! | `m/snapshot_data`       | the snapshot's data bytes               |
//! | `u/` + name             | host metadata (`get_meta` / `put_meta`) |

/// Written once when a store is created; a store without it that is not empty
/// was not written by this module (or sled lost its contents).
pub(crate) const FORMAT_MARKER: &[u8] = b"iroh-raft-log/2";
/// The format before chunks: one protobuf `Entry` per `e` key. Such a store
/// is rewritten as chunks of one entry when it is opened (`recovery.rs`).
pub(crate) const FORMAT_MARKER_V1: &[u8] = b"iroh-raft-log/1";

pub(crate) const FORMAT: &[u8] = b"m/format";
pub(crate) const HARD_STATE: &[u8] = b"m/hard_state";
pub(crate) const CONF_STATE: &[u8] = b"m/conf_state";
pub(crate) const SNAPSHOT_META: &[u8] = b"m/snapshot_meta";
pub(crate) const SNAPSHOT_DATA: &[u8] = b"m/snapshot_data";

const ENTRY_PREFIX: u8 = b'e';
const USER_PREFIX: &[u8] = b"u/";
const ENTRY_KEY_LEN: usize = 9;

/// The key of the log chunk whose first entry is `index`.
pub(crate) fn chunk_key(index: u64) -> [u8; ENTRY_KEY_LEN] {
    let mut key = [0u8; ENTRY_KEY_LEN];
    key[0] = ENTRY_PREFIX;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The key of the host metadata value `name`.
pub(crate) fn user_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(USER_PREFIX.len() + name.len());
    key.extend_from_slice(USER_PREFIX);
    key.extend_from_slice(name.as_bytes());
    key
}

/// The first index of the chunk stored under `key`, if it is a chunk key.
pub(crate) fn chunk_index(key: &[u8]) -> Option<u64> {
    match parse(key) {
        Some(Key::Chunk(index)) => Some(index),
        _ => None,
    }
}

/// How errors name the chunk starting at `index`.
pub(crate) fn describe_chunk(index: u64) -> String {
    format!("log entries from {index}")
}

/// What a raw key found in the tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    /// A chunk of the log, by its first index.
    Chunk(u64),
    Format,
    HardState,
    ConfState,
    SnapshotMeta,
    SnapshotData,
    User,
}

/// Classifies a raw key; `None` for keys this module never writes.
pub(crate) fn parse(key: &[u8]) -> Option<Key> {
    match key {
        [ENTRY_PREFIX, index @ ..] => {
            let index: [u8; 8] = index.try_into().ok()?;
            Some(Key::Chunk(u64::from_be_bytes(index)))
        }
        FORMAT => Some(Key::Format),
        HARD_STATE => Some(Key::HardState),
        CONF_STATE => Some(Key::ConfState),
        SNAPSHOT_META => Some(Key::SnapshotMeta),
        SNAPSHOT_DATA => Some(Key::SnapshotData),
        _ if key.starts_with(USER_PREFIX) => Some(Key::User),
        _ => None,
    }
}

/// A printable form of a raw key for error messages.
pub(crate) fn describe(key: &[u8]) -> String {
    match parse(key) {
        Some(Key::Chunk(index)) => describe_chunk(index),
        _ => format!("key {}", key.escape_ascii()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_round_trip() {
        for index in [0, 1, 255, 256, 1 << 32, u64::MAX] {
            assert_eq!(parse(&chunk_key(index)), Some(Key::Chunk(index)));
            assert_eq!(chunk_index(&chunk_key(index)), Some(index));
        }
    }

    #[test]
    fn chunk_keys_sort_by_index() {
        let indexes = [0u64, 1, 2, 255, 256, 65_535, 65_536, 1 << 40, u64::MAX];
        let keys: Vec<_> = indexes.iter().map(|&i| chunk_key(i)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn entries_sort_before_metadata_and_user_keys() {
        let last_entry = chunk_key(u64::MAX);
        for key in [FORMAT, HARD_STATE, CONF_STATE, SNAPSHOT_META, SNAPSHOT_DATA] {
            assert!(&last_entry[..] < key);
            assert!(key < &user_key("")[..]);
        }
    }

    #[test]
    fn fixed_keys_are_recognised() {
        assert_eq!(parse(FORMAT), Some(Key::Format));
        assert_eq!(parse(HARD_STATE), Some(Key::HardState));
        assert_eq!(parse(CONF_STATE), Some(Key::ConfState));
        assert_eq!(parse(SNAPSHOT_META), Some(Key::SnapshotMeta));
        assert_eq!(parse(SNAPSHOT_DATA), Some(Key::SnapshotData));
        assert_eq!(parse(&user_key("node_id")), Some(Key::User));
        assert_eq!(user_key("node_id"), b"u/node_id");
    }

    #[test]
    fn foreign_keys_are_rejected() {
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"e"), None);
        assert_eq!(parse(b"e1234567"), None, "entry key one byte short");
        assert_eq!(parse(b"e123456789"), None, "entry key one byte long");
        assert_eq!(parse(b"m/other"), None);
        assert_eq!(parse(b"x"), None);
    }

    #[test]
    fn describe_names_chunks_by_first_index() {
        assert_eq!(describe(&chunk_key(42)), "log entries from 42");
        assert_eq!(describe(HARD_STATE), "key m/hard_state");
        assert_eq!(describe(b"\x00z"), "key \\x00z");
    }
}
