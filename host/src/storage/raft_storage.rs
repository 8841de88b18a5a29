//! The read side: `raft::Storage`, with `MemStorage`'s semantics.

use raft::prelude::{Entry, Snapshot};
use raft::{GetEntriesContext, RaftState};

use super::SledStorage;
use super::cache::TermLookup;
use super::codec::decode;
use super::error::StorageError;
use super::keys::{self, entry_key};

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

        let wanted = high - low;
        let mut entries = Vec::with_capacity(wanted.min(1024) as usize);
        let mut size = 0u64;
        let mut limited = false;
        for item in self.inner.db.range(entry_key(low)..entry_key(high)) {
            let (key, value) = item
                .map_err(StorageError::sled("read log entries"))
                .map_err(StorageError::into_raft)?;
            let entry: Entry = decode(&key, &value).map_err(StorageError::into_raft)?;
            let expected = low + entries.len() as u64;
            if entry.index != expected {
                return Err(StorageError::corrupt(
                    keys::describe(&key),
                    format!("expected log entry {expected}, found {}", entry.index),
                )
                .into_raft());
            }
            size += u64::from(protobuf::Message::compute_size(&entry));
            if !entries.is_empty() && size > max_size {
                limited = true;
                break;
            }
            entries.push(entry);
        }
        if !limited && entries.len() as u64 != wanted {
            let missing = low + entries.len() as u64;
            return Err(StorageError::corrupt(
                keys::describe(&entry_key(missing)),
                format!("missing although the log spans {low}..{high}"),
            )
            .into_raft());
        }
        Ok(entries)
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
