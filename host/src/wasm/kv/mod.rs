//! The key-value store a store-backed guest (WIT 0.2.0) imports, as the
//! runtime sees it: a transaction over the committed state.
//!
//! ```text
//!  guest ── store.get/set/scan ──► Transaction ──► writes (this call's own, in memory)
//!                                       │
//!                                       └──────► CommittedState (sled, in `storage`)
//! ```
//!
//! Every `apply` runs in one [`Transaction`]: reads see the committed state
//! plus the call's own writes, and the writes stay in memory until the call
//! returns. Only an `ok` hands them ([`WriteSet`]) to
//! [`CommittedState::commit`], together with the entry's index; an `err`,
//! a trap, fuel or memory exhaustion drop them, so a failed entry costs
//! O(its writes) and nothing needs to be rolled back.
//!
//! The committed state lives in `storage` (the only module that touches
//! sled), behind the [`CommittedState`] trait defined here, so this module
//! never depends on how it is stored.

mod empty;
mod link;
mod overlay;
mod transaction;

pub use empty::EmptyState;
pub use link::{STORE_INTERFACE, link};
pub use overlay::Overlay;
pub use transaction::{Access, Transaction, only_changes};

use std::collections::BTreeMap;

/// One key's change in a write set, with the committed value it replaces
/// (so the store can keep its size and digest without reading it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedWrite {
    /// The committed value before this transaction, `None` if absent.
    pub old: Option<Vec<u8>>,
    /// The value to commit, `None` to delete.
    pub new: Option<Vec<u8>>,
}

/// The writes of one successful call, by key (so in byte-wise key order).
pub type WriteSet = BTreeMap<Vec<u8>, StagedWrite>;

/// Number of keys and bytes (keys plus values) in a store (a wire type).
pub use iroh_raft_client::StoreSize;

/// What a write does to a store's size (the node's logic over the wire
/// type [`StoreSize`]).
pub trait StoreSizeExt {
    /// The size after `write` is applied.
    fn after(self, key: &[u8], write: &StagedWrite) -> StoreSize;
}

impl StoreSizeExt for StoreSize {
    fn after(self, key: &[u8], write: &StagedWrite) -> StoreSize {
        let pair = |value: &Option<Vec<u8>>| value.as_ref().map(|v| (key.len() + v.len()) as u64);
        let mut size = self;
        if let Some(bytes) = pair(&write.old) {
            size.keys -= 1;
            size.bytes -= bytes;
        }
        if let Some(bytes) = pair(&write.new) {
            size.keys += 1;
            size.bytes += bytes;
        }
        size
    }
}

/// Pairs read from a store, in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Pairs read lazily from a store, in key order.
pub type PairIter<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreIoError>> + 'a>;

/// Where an entry's writes are committed: its log index and term, plus
/// opaque bytes the node keeps beside the state (the component history),
/// all in the same atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitMark<'a> {
    pub index: u64,
    pub term: u64,
    /// Replaces the stored node metadata when given.
    pub node_meta: Option<&'a [u8]>,
    /// What each entry committed here changed, in log order, for the
    /// store's change history (watchers); empty where nobody watches (an
    /// upgrade's dry run).
    pub changes: &'a [EntryChanges],
}

/// Store keys beginning with this byte are a guest's private bookkeeping
/// (revisions, leases, timers): watchers are never told about them. Text
/// keys (UTF-8) never begin with it, so a guest's user-facing keys cannot
/// collide with them.
pub const HIDDEN_KEY_PREFIX: u8 = 0xff;

/// The store key a guest sets to be called at a time: a u64 big-endian,
/// milliseconds since the Unix epoch. Once the leader's clock passes it,
/// the leader proposes an empty command, so the guest's `apply` runs with
/// a timestamp at or after that time; the guest then rewrites the key (its
/// next time) or deletes it.
pub const TIMER_KEY: &[u8] = b"\xfftimer";

/// Whether `key` is hidden from watchers (see [`HIDDEN_KEY_PREFIX`]).
pub fn is_hidden_key(key: &[u8]) -> bool {
    key.first() == Some(&HIDDEN_KEY_PREFIX)
}

/// The time in [`TIMER_KEY`]'s value (`None`: not 8 bytes, so no timer).
pub fn timer_due_ms(value: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(value).ok().map(u64::from_be_bytes)
}

/// One key's change, as a watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: Vec<u8>,
    /// The new value; `None`: the key was deleted.
    pub value: Option<Vec<u8>>,
}

/// The visible changes of one applied entry, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryChanges {
    pub index: u64,
    pub changes: Vec<Change>,
}

impl EntryChanges {
    /// What `writes` (the write set of the entry at `index`) changed:
    /// every key written, also to the value it had (a put is an event,
    /// like etcd's), hidden keys and deletions of absent keys left out;
    /// `None` if that leaves nothing.
    pub fn of(index: u64, writes: &WriteSet) -> Option<Self> {
        let changes: Vec<Change> = writes
            .iter()
            .filter(|(key, write)| {
                let deleted_absent = write.old.is_none() && write.new.is_none();
                !is_hidden_key(key) && !deleted_absent
            })
            .map(|(key, write)| Change {
                key: key.clone(),
                value: write.new.clone(),
            })
            .collect();
        (!changes.is_empty()).then_some(EntryChanges { index, changes })
    }
}

/// An I/O failure of the local store. Never a replicated result: the node
/// stops applying instead (another replica's disk is fine).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the guest store on this node failed: {0}")]
pub struct StoreIoError(pub String);

/// The committed state of a store-backed guest, as of the store's applied
/// index. Implemented by `storage::GuestStore` (sled).
pub trait CommittedState: Send + Sync + std::fmt::Debug {
    /// The committed value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreIoError>;
    /// The committed pairs with `start <= key < end` (`end` `None`: to the
    /// last key), ascending by bytes, read lazily.
    fn scan<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> PairIter<'a>;
    /// Keys and bytes in the store.
    fn size(&self) -> Result<StoreSize, StoreIoError>;
    /// Apply `writes` and record `mark` as the applied entry, atomically.
    fn commit(&self, writes: &WriteSet, mark: CommitMark<'_>) -> Result<(), StoreIoError>;
    /// A digest of the whole state (equal on replicas with equal states).
    fn digest(&self) -> Result<[u8; 32], StoreIoError>;
}

/// The exclusive end of the range of keys that start with `prefix`
/// (`None`: no end, the prefix is all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn entry_changes_leave_out_hidden_keys_and_no_op_deletes() {
        let mut writes = WriteSet::new();
        let put = |new: &[u8]| StagedWrite {
            old: None,
            new: Some(new.to_vec()),
        };
        writes.insert(b"a".to_vec(), put(b"1"));
        writes.insert(TIMER_KEY.to_vec(), put(&7u64.to_be_bytes()));
        writes.insert(
            b"gone".to_vec(),
            StagedWrite {
                old: Some(b"x".to_vec()),
                new: None,
            },
        );
        writes.insert(
            b"never".to_vec(),
            StagedWrite {
                old: None,
                new: None,
            },
        );
        let changes = EntryChanges::of(9, &writes).expect("visible changes");
        assert_eq!(changes.index, 9);
        assert_eq!(
            changes.changes,
            vec![
                Change {
                    key: b"a".to_vec(),
                    value: Some(b"1".to_vec())
                },
                Change {
                    key: b"gone".to_vec(),
                    value: None
                },
            ]
        );
        let mut hidden_only = WriteSet::new();
        hidden_only.insert(TIMER_KEY.to_vec(), put(b"x"));
        assert_eq!(EntryChanges::of(10, &hidden_only), None);
        assert_eq!(timer_due_ms(&7u64.to_be_bytes()), Some(7));
        assert_eq!(timer_due_ms(b"short"), None);
    }

    #[test]
    fn size_follows_writes() {
        let size = StoreSize { keys: 1, bytes: 5 };
        let replace = StagedWrite {
            old: Some(b"1234".to_vec()),
            new: Some(b"12".to_vec()),
        };
        assert_eq!(size.after(b"k", &replace), StoreSize { keys: 1, bytes: 3 });
        let delete = StagedWrite {
            old: Some(b"1234".to_vec()),
            new: None,
        };
        assert_eq!(size.after(b"k", &delete), StoreSize { keys: 0, bytes: 0 });
        let insert = StagedWrite {
            old: None,
            new: Some(b"x".to_vec()),
        };
        assert_eq!(size.after(b"k", &insert), StoreSize { keys: 2, bytes: 7 });
    }
}
