//! The guest store's change history: what each applied entry changed, kept
//! beside the state (in the same sled tree, written in the same atomic
//! batch) so that a watcher can resume from any index the node still
//! remembers, also after a restart.
//!
//! | key in tree `guest-store` | value                                          |
//! |---------------------------|------------------------------------------------|
//! | `h` + index (u64 BE)      | the entry's changes (layout below)             |
//! | `m/history-floor`         | u64 BE: the history is complete after this index |
//!
//! An entry's record, all integers u32 big-endian:
//!
//! ```text
//! count, then count × (key length, key, kind: 0 = delete / 1 = put,
//!                       [value length, value]   (put only))
//! ```
//!
//! Only entries that changed a visible key have a record (hidden keys,
//! see [`crate::wasm::kv::HIDDEN_KEY_PREFIX`], are left out). The history
//! keeps the last `retention` entries' worth (`--watch-history`); older
//! records are removed a few per commit, oldest first, and the floor moves
//! with them. Loading a snapshot replaces the state wholesale, so the
//! history restarts at the snapshot's index.

use crate::wasm::kv::{Change, EntryChanges};

/// Prefix of the history records.
pub(super) const HISTORY_PREFIX: &[u8] = b"h";
/// The index after which the history is complete.
pub(super) const FLOOR: &[u8] = b"m/history-floor";

/// The key of the record of the entry at `index`.
pub(super) fn record_key(index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[..1].copy_from_slice(HISTORY_PREFIX);
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The index a record key names (`None`: not a record key).
pub(super) fn record_index(key: &[u8]) -> Option<u64> {
    let index = key.strip_prefix(HISTORY_PREFIX)?;
    <[u8; 8]>::try_from(index).ok().map(u64::from_be_bytes)
}

/// Encode one entry's changes (module doc).
pub(super) fn encode(changes: &[Change]) -> Vec<u8> {
    let len: usize = changes
        .iter()
        .map(|c| 9 + c.key.len() + c.value.as_ref().map_or(0, |v| 4 + v.len()))
        .sum();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(changes.len() as u32).to_be_bytes());
    for change in changes {
        out.extend_from_slice(&(change.key.len() as u32).to_be_bytes());
        out.extend_from_slice(&change.key);
        match &change.value {
            Some(value) => {
                out.push(1);
                out.extend_from_slice(&(value.len() as u32).to_be_bytes());
                out.extend_from_slice(value);
            }
            None => out.push(0),
        }
    }
    out
}

/// Decode a record written by [`encode`].
pub(super) fn decode(mut bytes: &[u8]) -> Result<Vec<Change>, String> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if bytes.len() < n {
            return Err("a history record is truncated".into());
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }
    fn len(bytes: &mut &[u8]) -> Result<usize, String> {
        let word = take(bytes, 4)?;
        Ok(u32::from_be_bytes([word[0], word[1], word[2], word[3]]) as usize)
    }
    let count = len(&mut bytes)?;
    // Each change takes at least 5 bytes: a damaged count cannot make
    // this allocate more than the record holds.
    let mut changes = Vec::with_capacity(count.min(bytes.len() / 5));
    for _ in 0..count {
        let key_len = len(&mut bytes)?;
        let key = take(&mut bytes, key_len)?.to_vec();
        let value = match take(&mut bytes, 1)?[0] {
            0 => None,
            1 => {
                let value_len = len(&mut bytes)?;
                Some(take(&mut bytes, value_len)?.to_vec())
            }
            kind => return Err(format!("a history record has unknown kind {kind}")),
        };
        changes.push(Change { key, value });
    }
    if !bytes.is_empty() {
        return Err("a history record has trailing bytes".into());
    }
    Ok(changes)
}

/// The part of one entry's changes under `prefix` (`None`: none are).
pub fn matching(entry: &EntryChanges, prefix: &[u8]) -> Option<EntryChanges> {
    let changes: Vec<Change> = entry
        .changes
        .iter()
        .filter(|c| c.key.starts_with(prefix))
        .cloned()
        .collect();
    (!changes.is_empty()).then_some(EntryChanges {
        index: entry.index,
        changes,
    })
}

/// Entries read from the history for a watcher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    /// The entries with changes under the prefix, in log order.
    pub entries: Vec<EntryChanges>,
    /// Every entry up to this index was looked at: a watcher that
    /// delivered `entries` may resume after it.
    pub scanned_to: u64,
}

/// Why the history could not be read from where a watcher asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The entries after the asked index are no longer all kept.
    #[error("the change history before index {oldest_index} was compacted")]
    Compacted {
        /// The first index whose changes are still kept.
        oldest_index: u64,
    },
    #[error(transparent)]
    Io(#[from] crate::wasm::kv::StoreIoError),
}

/// What the store tells live watchers after each commit.
#[derive(Debug, Clone)]
pub enum FeedItem {
    /// Entries up to `applied` were committed; these are the ones that
    /// changed visible keys.
    Committed {
        applied: u64,
        changes: std::sync::Arc<[EntryChanges]>,
        /// One slot per entry of `changes` for its rendering as a watcher
        /// sends it unfiltered: the first watcher to send it fills the
        /// slot, a thousand others reuse the bytes.
        rendered: std::sync::Arc<[std::sync::OnceLock<bytes::Bytes>]>,
    },
    /// A snapshot replaced the state at `index`: the changes between a
    /// watcher's position and `index` are unknown here.
    Imported { index: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &[u8], value: Option<&[u8]>) -> Change {
        Change {
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn records_round_trip() {
        let changes = vec![
            change(b"a", Some(b"1")),
            change(b"", Some(b"")),
            change(b"gone", None),
        ];
        assert_eq!(decode(&encode(&changes)), Ok(changes));
        assert_eq!(decode(&encode(&[])), Ok(Vec::new()));
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let bytes = encode(&[change(b"key", Some(b"value"))]);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        let mut bad_kind = bytes;
        bad_kind[4 + 4 + 3] = 7;
        assert!(decode(&bad_kind).is_err());
        assert!(decode(&u32::MAX.to_be_bytes()).is_err());
    }

    #[test]
    fn record_keys_sort_by_index() {
        assert!(record_key(9) < record_key(10));
        assert!(record_key(255) < record_key(256));
        assert_eq!(record_index(&record_key(77)), Some(77));
        assert_eq!(record_index(b"m/applied"), None);
    }

    #[test]
    fn matching_keeps_the_prefix() {
        let entry = EntryChanges {
            index: 3,
            changes: vec![change(b"user/a", Some(b"1")), change(b"admin", None)],
        };
        let users = matching(&entry, b"user/").expect("one match");
        assert_eq!(users.changes, vec![change(b"user/a", Some(b"1"))]);
        assert_eq!(matching(&entry, b"zzz"), None);
        assert_eq!(matching(&entry, b"").map(|e| e.changes.len()), Some(2));
    }
}
