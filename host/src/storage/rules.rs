//! The write rules: what a Raft log may never do, checked before a batch is
//! built. Breaking one is a bug in the caller, reported as
//! [`StorageError::InvalidRequest`] instead of a panic (`MemStorage` panics).

use raft::prelude::{Entry, HardState};

use super::cache::{Cache, TermLookup};
use super::error::StorageError;

/// The append rules of `MemStorage::append` (which panics) plus the Raft
/// invariant that terms never go back, as errors.
pub(crate) fn check_append(cache: &Cache, entries: &[Entry]) -> Result<(), StorageError> {
    let invalid = |reason: String| Err(StorageError::invalid("append", reason));
    let Some(first) = entries.first() else {
        return Ok(());
    };
    for pair in entries.windows(2) {
        if pair[1].index != pair[0].index + 1 {
            return invalid(format!(
                "entries are not contiguous: {} follows {}",
                pair[1].index, pair[0].index
            ));
        }
        if pair[1].term < pair[0].term {
            return invalid(format!(
                "term goes back from {} to {} at index {}",
                pair[0].term, pair[1].term, pair[1].index
            ));
        }
    }
    if first.index < cache.first_index() {
        return invalid(format!(
            "would overwrite compacted entries: appending at {}, first index is {}",
            first.index,
            cache.first_index()
        ));
    }
    if first.index <= cache.snapshot_index() {
        return invalid(format!(
            "would overwrite entries covered by the snapshot at {}: appending at {}",
            cache.snapshot_index(),
            first.index
        ));
    }
    if first.index > cache.last_index() + 1 {
        return invalid(format!(
            "would leave a gap: appending at {}, last index is {}",
            first.index,
            cache.last_index()
        ));
    }
    if let TermLookup::Found(previous) = cache.term(first.index - 1)
        && first.term < previous
    {
        return invalid(format!(
            "term goes back from {previous} to {} at index {}",
            first.term, first.index
        ));
    }
    Ok(())
}

/// Terms never go back; `commit <= last index` (raft-rs refuses to start otherwise).
pub(crate) fn check_hard_state(
    current: &Cache,
    next: &Cache,
    hard_state: &HardState,
    operation: &'static str,
) -> Result<(), StorageError> {
    let current_term = current.hard_state.as_ref().map_or(0, |hs| hs.term);
    if hard_state.term < current_term {
        return Err(StorageError::invalid(
            operation,
            format!(
                "hard state term goes back from {current_term} to {}",
                hard_state.term
            ),
        ));
    }
    if hard_state.commit > next.last_index() {
        return Err(StorageError::invalid(
            operation,
            format!(
                "commit index {} is past the last index {}",
                hard_state.commit,
                next.last_index()
            ),
        ));
    }
    Ok(())
}
