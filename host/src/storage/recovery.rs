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
use super::chunks::{self, Chunk};
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
    migrate_v1(db)?;
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
            Key::Chunk(first) => load_chunk(&mut cache, first, &value)?,
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

fn load_chunk(cache: &mut Cache, first: u64, value: &[u8]) -> Result<(), StorageError> {
    let chunk = Chunk::parse(first, value)?;
    for entry in chunk.entries() {
        let entry = entry?;
        let what = || keys::describe_chunk(first);
        if let Some(last) = cache.log.last() {
            if entry.index != last + 1 {
                return Err(StorageError::corrupt(
                    what(),
                    format!(
                        "the log is not contiguous: entry {} follows entry {last}",
                        entry.index
                    ),
                ));
            }
            let previous_term = cache.log.term(last).unwrap_or(0);
            if entry.term < previous_term {
                return Err(StorageError::corrupt(
                    what(),
                    format!(
                        "entry {} has term {}, lower than the previous entry's term {previous_term}",
                        entry.index, entry.term
                    ),
                ));
            }
        }
        cache.log.push(entry.index, entry.term);
    }
    Ok(())
}

/// Rewrites a store of the format before chunks (one entry per key) as
/// chunks of one entry each, with the new format marker, in one atomic
/// batch; the caller's first durable write (or sled's flush) carries it to
/// disk, and a crash before that leaves the old format, read the same way
/// again. No-op for any other store.
fn migrate_v1(db: &sled::Db) -> Result<(), StorageError> {
    let format = db
        .get(keys::FORMAT)
        .map_err(StorageError::sled("read the format marker"))?;
    if format.as_deref() != Some(keys::FORMAT_MARKER_V1) {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    let mut migrated = 0u64;
    for item in db.range(keys::chunk_key(0)..=keys::chunk_key(u64::MAX)) {
        let (key, value) = item.map_err(StorageError::sled("scan the log"))?;
        let index = keys::chunk_index(&key)
            .ok_or_else(|| StorageError::corrupt(keys::describe(&key), "not a log entry key"))?;
        let entry: Entry = decode(&key, &value)?;
        for (chunk_key, chunk) in chunks::encode(std::slice::from_ref(&entry))? {
            if keys::chunk_index(&chunk_key) != Some(index) {
                return Err(StorageError::corrupt(
                    format!("log entry {index}"),
                    format!("the stored entry says index {}", entry.index),
                ));
            }
            batch.insert(chunk_key, chunk);
        }
        migrated += 1;
    }
    batch.insert(keys::FORMAT, keys::FORMAT_MARKER);
    db.apply_batch(batch)
        .map_err(StorageError::sled("rewrite the log as chunks"))?;
    tracing::info!(
        entries = migrated,
        "rewrote the log store from format 1 (a key per entry) to format 2 (chunks)"
    );
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
