//! A copy-on-write view of a committed state: commits land in memory, the
//! state below is only read. What an upgrade's dry run runs a candidate
//! (and the active component) on, so the node's real state is never
//! touched.

use crate::wasm::kv::StoreSizeExt as _;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use super::transaction::merge_scan;
use super::{CommitMark, CommittedState, PairIter, StagedWrite, StoreIoError, StoreSize, WriteSet};

/// Commits kept in memory over a read-only committed state.
#[derive(Debug)]
pub struct Overlay {
    base: Arc<dyn CommittedState>,
    changes: Mutex<WriteSet>,
}

impl Overlay {
    pub fn new(base: Arc<dyn CommittedState>) -> Self {
        Overlay {
            base,
            changes: Mutex::new(WriteSet::new()),
        }
    }

    /// Take what was committed into the overlay (keys whose value did not
    /// change left out), leaving it empty.
    pub fn take_changes(&self) -> WriteSet {
        let mut changes = std::mem::take(&mut *self.changes());
        changes.retain(|_, write| write.old != write.new);
        changes
    }

    fn changes(&self) -> MutexGuard<'_, WriteSet> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A digest of what was committed into the overlay (equal overlays on
    /// the same base are equal states).
    pub fn changes_digest(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        for (key, write) in self.changes().iter() {
            if write.old == write.new {
                continue;
            }
            hasher.update(&(key.len() as u64).to_le_bytes());
            hasher.update(key);
            match &write.new {
                Some(value) => {
                    hasher.update(&[1]);
                    hasher.update(&(value.len() as u64).to_le_bytes());
                    hasher.update(value);
                }
                None => {
                    hasher.update(&[0]);
                }
            }
        }
        hasher.finalize().to_hex().to_string()
    }
}

impl CommittedState for Overlay {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreIoError> {
        if let Some(write) = self.changes().get(key) {
            return Ok(write.new.clone());
        }
        self.base.get(key)
    }

    fn scan<'a>(&'a self, start: &[u8], end: Option<&[u8]>) -> PairIter<'a> {
        let upper = end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_vec()));
        if end.is_some_and(|end| end <= start) {
            return Box::new(std::iter::empty());
        }
        // The overlay is small (a dry run's writes): merge eagerly.
        let staged: Vec<(Vec<u8>, StagedWrite)> = self
            .changes()
            .range::<Vec<u8>, _>((Bound::Included(start.to_vec()), upper))
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect();
        let merged = merge_scan(
            self.base.scan(start, end),
            staged.iter().map(|(k, w)| (k, w)),
            |_, _| true,
        );
        match merged {
            Ok(pairs) => Box::new(pairs.into_iter().map(Ok)),
            Err(error) => Box::new(std::iter::once(Err(error))),
        }
    }

    fn size(&self) -> Result<StoreSize, StoreIoError> {
        let base = self.base.size()?;
        Ok(self
            .changes()
            .iter()
            .fold(base, |size, (key, write)| size.after(key, write)))
    }

    fn commit(&self, writes: &WriteSet, _mark: CommitMark<'_>) -> Result<(), StoreIoError> {
        let mut changes = self.changes();
        for (key, write) in writes {
            match changes.get_mut(key) {
                Some(existing) => existing.new = write.new.clone(),
                None => {
                    changes.insert(key.clone(), write.clone());
                }
            }
        }
        Ok(())
    }

    fn digest(&self) -> Result<[u8; 32], StoreIoError> {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.base.digest()?);
        hasher.update(self.changes_digest().as_bytes());
        Ok(*hasher.finalize().as_bytes())
    }
}
