//! Reading a store back at open time, and refusing one we cannot trust.
//!
//! One scan over the whole tree decodes every entry and every Raft value, so a
//! damaged store is reported as [`StorageError::Corrupt`] at open time instead
//! of surfacing later as a panic inside raft-rs (which, for example, panics when
//! the stored commit index is past the last entry).
//!
//! Limit: sled treats a checksum failure in its log as the torn tail of a crash
//! and silently recovers the prefix before it. Damage to the middle of `db` can
//! therefore look like an older, consistent store; the checks below catch what
//! leaves a visible inconsistency (a lost format marker, a hole in the log).

use raft::prelude::{ConfState, Entry, HardState, SnapshotMetadata};
use tracing::warn;

use super::cache::Cache;
use super::codec::decode;
use super::error::StorageError;
use super::keys::{self, Key};

/// What [`load`] found.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) cache: Cache,
    /// A brand-new store: the format marker must be written.
    pub(crate) is_new: bool,
}

/// Scans and validates the tree. `data_file_had_content`: sled's data file
/// existed and was not empty before sled opened it.
pub(crate) fn load(db: &sled::Db, data_file_had_content: bool) -> Result<Recovered, StorageError> {
    let mut cache = Cache::default();
    let mut has_format = false;
    let mut has_snapshot_data = false;
    let mut has_any_key = false;

    for item in db.iter() {
        let (key, value) = item.map_err(StorageError::sled("scan the store"))?;
        has_any_key = true;
        let Some(kind) = keys::parse(&key) else {
            return Err(StorageError::corrupt(
                keys::describe(&key),
                "this key is not part of the log store layout",
            ));
        };
        match kind {
            Key::Entry(index) => load_entry(&mut cache, index, &key, &value)?,
            Key::Format => {
                if &*value != keys::FORMAT_MARKER {
                    return Err(StorageError::corrupt(
                        keys::describe(&key),
                        format!(
                            "unknown store format {:?}, expected {:?}",
                            value.escape_ascii().to_string(),
                            keys::FORMAT_MARKER.escape_ascii().to_string()
                        ),
                    ));
                }
                has_format = true;
            }
            Key::HardState => cache.hard_state = Some(decode::<HardState>(&key, &value)?),
            Key::ConfState => cache.conf_state = Some(decode::<ConfState>(&key, &value)?),
            Key::SnapshotMeta => cache.snapshot = Some(decode::<SnapshotMetadata>(&key, &value)?),
            Key::SnapshotData => has_snapshot_data = true,
            Key::User => {}
        }
    }

    if !has_format {
        if has_any_key || data_file_had_content {
            return Err(StorageError::corrupt(
                "key m/format",
                "missing although the store is not new: sled found no readable data in a \
                 non-empty data file, or the data was not written by this module \
                 (if this directory never completed a first start, delete it)",
            ));
        }
        return Ok(Recovered {
            cache,
            is_new: true,
        });
    }

    if cache.snapshot.is_some() != has_snapshot_data {
        return Err(StorageError::corrupt(
            "snapshot",
            "snapshot metadata and snapshot data must be stored together, found only one",
        ));
    }
    check_log_against_snapshot(&cache)?;
    check_commit(&mut cache)?;
    Ok(Recovered {
        cache,
        is_new: false,
    })
}

fn load_entry(cache: &mut Cache, index: u64, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
    let what = || keys::describe(key);
    let entry: Entry = decode(key, value)?;
    if entry.index != index {
        return Err(StorageError::corrupt(
            what(),
            format!("the stored entry says index {}", entry.index),
        ));
    }
    if index == 0 {
        return Err(StorageError::corrupt(what(), "Raft log indexes start at 1"));
    }
    if let Some(last) = cache.log.last() {
        if index != last + 1 {
            return Err(StorageError::corrupt(
                what(),
                format!("the log is not contiguous: the previous entry is {last}"),
            ));
        }
        let previous_term = cache.log.term(last).unwrap_or(0);
        if entry.term < previous_term {
            return Err(StorageError::corrupt(
                what(),
                format!(
                    "term {} is lower than the previous entry's term {previous_term}",
                    entry.term
                ),
            ));
        }
    }
    cache.log.push(index, entry.term);
    Ok(())
}

fn check_log_against_snapshot(cache: &Cache) -> Result<(), StorageError> {
    let (Some(first), Some(last)) = (cache.log.first(), cache.log.last()) else {
        return Ok(());
    };
    let Some(snapshot) = &cache.snapshot else {
        if first != 1 {
            return Err(StorageError::corrupt(
                "log",
                format!(
                    "the log starts at {first} but there is no snapshot covering the entries before it"
                ),
            ));
        }
        return Ok(());
    };
    if first > snapshot.index + 1 {
        return Err(StorageError::corrupt(
            "log",
            format!(
                "the log starts at {first} but the snapshot only covers up to {}",
                snapshot.index
            ),
        ));
    }
    if last < snapshot.index {
        return Err(StorageError::corrupt(
            "log",
            format!(
                "the log ends at {last}, before the snapshot at {}",
                snapshot.index
            ),
        ));
    }
    if let Some(term) = cache.log.term(snapshot.index)
        && term != snapshot.term
    {
        return Err(StorageError::corrupt(
            "snapshot",
            format!(
                "the snapshot at index {} has term {} but the log's entry there has term {term}",
                snapshot.index, snapshot.term
            ),
        ));
    }
    Ok(())
}

/// raft-rs panics at start-up unless `snapshot index <= commit <= last index`.
fn check_commit(cache: &mut Cache) -> Result<(), StorageError> {
    let last_index = cache.last_index();
    let snapshot_index = cache.snapshot_index();
    let Some(hard_state) = cache.hard_state.as_mut() else {
        return Ok(());
    };
    if hard_state.commit > last_index {
        return Err(StorageError::corrupt(
            "key m/hard_state",
            format!(
                "commit index {} is past the last log index {last_index}",
                hard_state.commit
            ),
        ));
    }
    if hard_state.commit < snapshot_index {
        // The commit index is written lazily (`set_commit` does not sync), but
        // every snapshot index was committed when it was taken, so this is safe.
        warn!(
            commit = hard_state.commit,
            snapshot_index, "stored commit index is behind the snapshot; raising it"
        );
        hard_state.commit = snapshot_index;
    }
    Ok(())
}
