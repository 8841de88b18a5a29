//! The read side: `raft::Storage`, with `MemStorage`'s semantics.

use raft::prelude::{Entry, Snapshot};
use raft::{GetEntriesContext, RaftState};

use super::SledStorage;
use super::cache::TermLookup;
use super::chunks;
use super::error::StorageError;
use super::keys;

impl raft::Storage for SledStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let state = self.inner.read();
        Ok(RaftState::new(
            state.cache.hard_state(),
            state.cache.conf_state(),
        ))
    }

    /// `[low, high)`, at least one entry when the range is not empty, then as
    /// many as fit in `max_size` (the rule of `raft::util::limit_size`, applied
    /// while reading so a large range is not read only to be thrown away).
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into().unwrap_or(raft::NO_LIMIT);
        // Held while reading sled so no write can change the range under us.
        let state = self.inner.read();
        if low < state.cache.first_index() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        // MemStorage panics here; a bad request must not take the node down.
        if high > state.cache.last_index() + 1 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        if low >= high {
            return Ok(Vec::new());
        }

        if let Some(entries) = state.tail.read(low, high, max_size) {
            return Ok(entries);
        }
        chunks::read(&self.inner.db, low, high, max_size).map_err(StorageError::into_raft)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        match self.inner.read().cache.term(idx) {
            TermLookup::Found(term) => Ok(term),
            TermLookup::Compacted => Err(raft::Error::Store(raft::StorageError::Compacted)),
            TermLookup::Unavailable => Err(raft::Error::Store(raft::StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.inner.read().cache.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.inner.read().cache.last_index())
    }

    /// The stored snapshot if its index is at least `request_index` and its
    /// configuration includes `to`, otherwise `SnapshotTemporarilyUnavailable`
    /// (and a flag, see `take_snapshot_wanted`) so raft-rs retries once the
    /// host has taken a newer one. (Unlike `MemStorage`, which fabricates an empty
    /// snapshot at the commit index, this serves real data and never rewrites a
    /// snapshot's index.)
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let state = self.inner.read();
        // A peer restores only a snapshot whose configuration includes it
        // (raft-rs refuses others), so a node added after the stored
        // snapshot needs a newer one.
        let includes = |meta: &raft::prelude::SnapshotMetadata| {
            let conf = meta.get_conf_state();
            conf.voters.contains(&to)
                || conf.learners.contains(&to)
                || conf.voters_outgoing.contains(&to)
                || conf.learners_next.contains(&to)
        };
        let Some(meta) = state
            .cache
            .snapshot
            .as_ref()
            .filter(|meta| meta.index >= request_index && includes(meta))
        else {
            self.inner
                .snapshot_wanted
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        };
        let data = self
            .inner
            .db
            .get(keys::SNAPSHOT_DATA)
            .map_err(StorageError::sled("read the snapshot data"))
            .map_err(StorageError::into_raft)?
            .ok_or_else(|| {
                StorageError::corrupt("key m/snapshot_data", "missing next to snapshot metadata")
                    .into_raft()
            })?;
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(meta.clone());
        snapshot.data = data.to_vec().into();
        Ok(snapshot)
    }
}
