//! A committed state with nothing in it that takes no commits: the base
//! of an [`Overlay`](super::Overlay) when there is no node state to start
//! from. `raft-host guest check` runs a store-backed guest on
//! `Overlay::new(Arc::new(EmptyState))`, so its writes stay in memory and
//! nothing of the node (sled, `storage`) is involved.

use super::{CommitMark, CommittedState, PairIter, StoreIoError, StoreSize, WriteSet};

/// The empty committed state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmptyState;

impl CommittedState for EmptyState {
    fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, StoreIoError> {
        Ok(None)
    }

    fn scan<'a>(&'a self, _start: &[u8], _end: Option<&[u8]>) -> PairIter<'a> {
        Box::new(std::iter::empty())
    }

    fn size(&self) -> Result<StoreSize, StoreIoError> {
        Ok(StoreSize::default())
    }

    /// Only an empty write set: the state stays empty (an overlay keeps
    /// the writes instead).
    fn commit(&self, writes: &WriteSet, _mark: CommitMark<'_>) -> Result<(), StoreIoError> {
        if writes.is_empty() {
            return Ok(());
        }
        Err(StoreIoError(
            "the empty state takes no writes (commit into an overlay over it)".into(),
        ))
    }

    fn digest(&self) -> Result<[u8; 32], StoreIoError> {
        Ok(*blake3::hash(b"iroh-raft empty guest state").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Overlay, StagedWrite};
    use super::*;
    use std::sync::Arc;

    fn mark() -> CommitMark<'static> {
        CommitMark {
            index: 1,
            term: 1,
            node_meta: None,
            changes: &[],
        }
    }

    fn write(key: &str, new: Option<&str>) -> WriteSet {
        WriteSet::from([(
            key.as_bytes().to_vec(),
            StagedWrite {
                old: None,
                new: new.map(|v| v.as_bytes().to_vec()),
            },
        )])
    }

    #[test]
    fn is_empty_and_stays_empty() {
        let state = EmptyState;
        assert_eq!(state.get(b"k"), Ok(None));
        assert_eq!(state.scan(b"", None).count(), 0);
        assert_eq!(state.size(), Ok(StoreSize::default()));
        state
            .commit(&WriteSet::new(), mark())
            .expect("nothing to write");
        assert!(state.commit(&write("k", Some("v")), mark()).is_err());
    }

    #[test]
    fn an_overlay_over_it_is_an_in_memory_store() {
        let overlay = Overlay::new(Arc::new(EmptyState));
        let empty_digest = overlay.digest().expect("digest");
        overlay
            .commit(&write("b", Some("2")), mark())
            .expect("commit");
        overlay
            .commit(&write("a", Some("1")), mark())
            .expect("commit");
        assert_eq!(overlay.get(b"a"), Ok(Some(b"1".to_vec())));
        let keys: Vec<Vec<u8>> = overlay
            .scan(b"", None)
            .map(|pair| pair.expect("no I/O").0)
            .collect();
        assert_eq!(keys, [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(overlay.size(), Ok(StoreSize { keys: 2, bytes: 4 }));
        overlay.commit(&write("a", None), mark()).expect("commit");
        overlay.commit(&write("b", None), mark()).expect("commit");
        assert_eq!(overlay.size(), Ok(StoreSize::default()));
        assert_eq!(overlay.digest(), Ok(empty_digest), "back to empty");
    }
}
