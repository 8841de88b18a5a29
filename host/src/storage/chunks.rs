//! The Raft log as chunks: one sled value per run of consecutive entries.
//!
//! With a sled key per entry, every replicated write cost sled a tree update
//! and a record in its own write-ahead log twice, once to insert the entry
//! and once to remove it behind the next snapshot: about half the CPU of a
//! write across three nodes, and a stall of the node loop while ten
//! thousand keys were removed after each snapshot. The node writes the log a
//! `Ready` at a time, so each append now stores its entries as a few values
//! of up to [`LOG_CHUNK_TARGET_BYTES`], each under the key of its first
//! index, and compaction removes whole chunks.
//!
//! A chunk's value (little-endian): a `u32` count, then for each entry a
//! `u32` length and the entry's protobuf bytes. Entry `i` of the chunk at key
//! `first` has index `first + i`; readers check it.
//!
//! A chunk that straddles the compaction point is stored again from that
//! point on (one value of at most a chunk's size), so the stored log always
//! starts at its first index.

use protobuf::Message;
use raft::prelude::Entry;

use super::error::StorageError;
use super::keys::{self, chunk_key};
use crate::limits::LOG_CHUNK_TARGET_BYTES;

const COUNT_LEN: usize = 4;
const LENGTH_LEN: usize = 4;

/// A chunk ready to store: its sled key and its value.
pub(crate) type EncodedChunk = (Vec<u8>, Vec<u8>);

/// Encodes `entries` (consecutive, validated by the caller) as chunks in
/// index order.
pub(crate) fn encode(entries: &[Entry]) -> Result<Vec<EncodedChunk>, StorageError> {
    let mut chunks = Vec::new();
    let mut current: Option<(u64, u32, Vec<u8>)> = None;
    for entry in entries {
        let bytes = entry
            .write_to_bytes()
            .map_err(|source| StorageError::Codec {
                what: "log entry",
                source,
            })?;
        let length = u32::try_from(bytes.len()).map_err(|_| {
            StorageError::invalid(
                "append",
                format!("entry {} is larger than 4 GiB", entry.index),
            )
        })?;
        if let Some((first, count, value)) = current.take_if(|(_, _, value)| {
            value.len() + LENGTH_LEN + bytes.len() > LOG_CHUNK_TARGET_BYTES
        }) {
            chunks.push(finish(first, count, value));
        }
        let (_, count, value) = current.get_or_insert_with(|| {
            let mut value = Vec::with_capacity(
                LOG_CHUNK_TARGET_BYTES.max(COUNT_LEN + LENGTH_LEN + bytes.len()),
            );
            value.extend_from_slice(&[0; COUNT_LEN]);
            (entry.index, 0, value)
        });
        value.extend_from_slice(&length.to_le_bytes());
        value.extend_from_slice(&bytes);
        *count += 1;
    }
    if let Some((first, count, value)) = current {
        chunks.push(finish(first, count, value));
    }
    Ok(chunks)
}

fn finish(first: u64, count: u32, mut value: Vec<u8>) -> EncodedChunk {
    value[..COUNT_LEN].copy_from_slice(&count.to_le_bytes());
    (chunk_key(first).to_vec(), value)
}

/// One stored chunk, parsed lazily: the framing is checked as it is walked,
/// and an entry is decoded only when asked for.
pub(crate) struct Chunk<'a> {
    first: u64,
    count: u32,
    bytes: &'a [u8],
}

impl<'a> Chunk<'a> {
    /// The chunk stored under the key of entry `first`.
    pub(crate) fn parse(first: u64, value: &'a [u8]) -> Result<Self, StorageError> {
        let corrupt = |reason: String| StorageError::corrupt(keys::describe_chunk(first), reason);
        let (count, bytes) = value
            .split_first_chunk::<COUNT_LEN>()
            .ok_or_else(|| corrupt(format!("{} bytes is too short for a chunk", value.len())))?;
        let count = u32::from_le_bytes(*count);
        if count == 0 {
            return Err(corrupt("a chunk of no entries".to_owned()));
        }
        if first == 0 {
            return Err(corrupt("Raft log indexes start at 1".to_owned()));
        }
        Ok(Chunk {
            first,
            count,
            bytes,
        })
    }

    /// Index of the chunk's last entry.
    pub(crate) fn last(&self) -> u64 {
        self.first + u64::from(self.count) - 1
    }

    /// The entries' indexes and encoded bytes, in order; an error for framing
    /// that runs past the value or leaves bytes over.
    pub(crate) fn frames(&self) -> Frames<'a> {
        Frames {
            first: self.first,
            next: self.first,
            remaining: self.count,
            bytes: self.bytes,
        }
    }

    /// Decodes every entry, checking that each holds the index its position says.
    pub(crate) fn entries(&self) -> impl Iterator<Item = Result<Entry, StorageError>> + 'a {
        let first = self.first;
        self.frames()
            .map(move |frame| frame.and_then(|(index, bytes)| decode(first, index, bytes)))
    }

    /// A copy of this chunk's entries in `[from, end)` (within the chunk),
    /// for the truncation of a conflicting suffix and for compaction.
    fn slice(&self, from: u64, end: u64) -> Result<Vec<u8>, StorageError> {
        let mut value = Vec::with_capacity(COUNT_LEN + self.bytes.len());
        let count = u32::try_from(end - from).expect("the slice is within the chunk");
        value.extend_from_slice(&count.to_le_bytes());
        for frame in self.frames() {
            let (index, bytes) = frame?;
            if index < from {
                continue;
            }
            if index >= end {
                break;
            }
            let length = u32::try_from(bytes.len()).expect("read from a u32 length");
            value.extend_from_slice(&length.to_le_bytes());
            value.extend_from_slice(bytes);
        }
        Ok(value)
    }
}

/// See [`Chunk::frames`].
pub(crate) struct Frames<'a> {
    first: u64,
    next: u64,
    remaining: u32,
    bytes: &'a [u8],
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<(u64, &'a [u8]), StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        let corrupt = |reason: String| {
            Some(Err(StorageError::corrupt(
                keys::describe_chunk(self.first),
                reason,
            )))
        };
        if self.remaining == 0 {
            if !self.bytes.is_empty() {
                let extra = self.bytes.len();
                self.bytes = &[];
                return corrupt(format!("{extra} bytes after its last entry"));
            }
            return None;
        }
        let Some((length, rest)) = self.bytes.split_first_chunk::<LENGTH_LEN>() else {
            self.remaining = 0;
            self.bytes = &[];
            return corrupt(format!("cut short before entry {}", self.next));
        };
        let length = u32::from_le_bytes(*length) as usize;
        if length > rest.len() {
            self.remaining = 0;
            self.bytes = &[];
            return corrupt(format!(
                "entry {} claims {length} bytes, {} are left",
                self.next,
                rest.len()
            ));
        }
        let (frame, rest) = rest.split_at(length);
        self.bytes = rest;
        self.remaining -= 1;
        let index = self.next;
        self.next += 1;
        Some(Ok((index, frame)))
    }
}

/// Decodes the entry at `index` of the chunk at `first`.
pub(crate) fn decode(first: u64, index: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
    let entry = Entry::parse_from_bytes(bytes).map_err(|e| {
        StorageError::corrupt(
            keys::describe_chunk(first),
            format!("cannot decode entry {index}: {e}"),
        )
    })?;
    if entry.index != index {
        return Err(StorageError::corrupt(
            keys::describe_chunk(first),
            format!(
                "expected log entry {index}, the stored entry says {}",
                entry.index
            ),
        ));
    }
    Ok(entry)
}

/// The chunk keys from `from` (inclusive) to `to` (exclusive) with their values.
fn chunks_in(
    db: &sled::Db,
    from: u64,
    to: Option<u64>,
) -> impl Iterator<Item = Result<(u64, sled::IVec), StorageError>> + '_ {
    let start = chunk_key(from);
    let iter = match to {
        Some(to) => db.range(start..chunk_key(to)),
        None => db.range(start..=chunk_key(u64::MAX)),
    };
    iter.map(|item| {
        let (key, value) = item.map_err(StorageError::sled("read the log"))?;
        let first = keys::chunk_index(&key)
            .ok_or_else(|| StorageError::corrupt(keys::describe(&key), "not a log chunk key"))?;
        Ok((first, value))
    })
}

/// The stored chunk that starts at or before `index`, nearest first.
fn chunk_at_or_before(
    db: &sled::Db,
    index: u64,
) -> Result<Option<(u64, sled::IVec)>, StorageError> {
    db.range(chunk_key(0)..=chunk_key(index))
        .next_back()
        .transpose()
        .map_err(StorageError::sled("read the log"))?
        .map(|(key, value)| {
            let first = keys::chunk_index(&key).ok_or_else(|| {
                StorageError::corrupt(keys::describe(&key), "not a log chunk key")
            })?;
            Ok((first, value))
        })
        .transpose()
}

/// Reads the entries `[low, high)`: at least one, then as many as fit in
/// `max_size` bytes (`raft::util::limit_size`'s rule). The caller has checked
/// that the range is stored; a hole or a misplaced entry is corruption.
pub(crate) fn read(
    db: &sled::Db,
    low: u64,
    high: u64,
    max_size: u64,
) -> Result<Vec<Entry>, StorageError> {
    let wanted = high - low;
    let mut entries = Vec::with_capacity(wanted.min(1024) as usize);
    let mut size = 0u64;
    let start = chunk_at_or_before(db, low)?.map_or(low, |(first, _)| first);
    'chunks: for item in chunks_in(db, start, Some(high)) {
        let (first, value) = item?;
        let chunk = Chunk::parse(first, &value)?;
        if chunk.last() < low {
            continue;
        }
        for frame in chunk.frames() {
            let (index, bytes) = frame?;
            if index < low {
                continue;
            }
            if index >= high {
                break 'chunks;
            }
            let expected = low + entries.len() as u64;
            if index != expected {
                return Err(StorageError::corrupt(
                    keys::describe_chunk(first),
                    format!("expected log entry {expected}, the chunk holds {index}"),
                ));
            }
            size += bytes.len() as u64;
            if !entries.is_empty() && size > max_size {
                return Ok(entries);
            }
            entries.push(decode(first, index, bytes)?);
        }
    }
    if entries.len() as u64 != wanted {
        let missing = low + entries.len() as u64;
        return Err(StorageError::corrupt(
            format!("log entry {missing}"),
            format!("missing although the log spans {low}..{high}"),
        ));
    }
    Ok(entries)
}

/// Adds to `batch` the removal of every stored entry at `index` and after
/// (a conflicting suffix): the chunks that start there or later go, and a
/// chunk that starts before and runs into it keeps only its entries before.
pub(crate) fn truncate_from(
    db: &sled::Db,
    batch: &mut sled::Batch,
    index: u64,
) -> Result<(), StorageError> {
    if let Some((first, value)) = chunk_at_or_before(db, index.saturating_sub(1))? {
        let chunk = Chunk::parse(first, &value)?;
        if chunk.last() >= index {
            batch.insert(&chunk_key(first), chunk.slice(first, index)?);
        }
    }
    for item in chunks_in(db, index, None) {
        let (first, _) = item?;
        batch.remove(&chunk_key(first));
    }
    Ok(())
}

/// The oldest stored chunks that hold only entries before `index`, at most
/// `max_chunks` of them, as (first index, last index).
pub(crate) fn whole_chunks_before(
    db: &sled::Db,
    index: u64,
    max_chunks: usize,
) -> Result<Vec<(u64, u64)>, StorageError> {
    let mut whole = Vec::new();
    for item in chunks_in(db, 0, Some(index)).take(max_chunks) {
        let (first, value) = item?;
        let last = Chunk::parse(first, &value)?.last();
        if last >= index {
            break;
        }
        whole.push((first, last));
    }
    Ok(whole)
}

/// Adds to `batch` the removal of every stored entry before `index`; returns
/// how many chunks go. A chunk holding entries on both sides is stored again
/// from `index` on, so the log's first index survives a restart.
pub(crate) fn remove_before(
    db: &sled::Db,
    batch: &mut sled::Batch,
    index: u64,
) -> Result<usize, StorageError> {
    let mut removed = 0;
    for item in chunks_in(db, 0, Some(index)) {
        let (first, value) = item?;
        let chunk = Chunk::parse(first, &value)?;
        batch.remove(&chunk_key(first));
        removed += 1;
        if chunk.last() >= index {
            batch.insert(&chunk_key(index), chunk.slice(index, chunk.last() + 1)?);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data_len: usize) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; data_len].into(),
            ..Default::default()
        }
    }

    fn entries(range: std::ops::RangeInclusive<u64>, data_len: usize) -> Vec<Entry> {
        range.map(|i| entry(i, 1, data_len)).collect()
    }

    fn decode_all(chunks: &[(Vec<u8>, Vec<u8>)]) -> Vec<Entry> {
        chunks
            .iter()
            .flat_map(|(key, value)| {
                let first = keys::chunk_index(key).expect("chunk key");
                Chunk::parse(first, value)
                    .expect("parse")
                    .entries()
                    .collect::<Result<Vec<_>, _>>()
                    .expect("decode")
            })
            .collect()
    }

    #[test]
    fn small_entries_share_one_chunk() {
        let written = entries(5..=20, 100);
        let chunks = encode(&written).expect("encode");
        assert_eq!(chunks.len(), 1);
        assert_eq!(keys::chunk_index(&chunks[0].0), Some(5));
        assert_eq!(decode_all(&chunks), written);
    }

    #[test]
    fn chunks_close_at_the_target_size_and_large_entries_stand_alone() {
        let mut written = entries(1..=100, 300);
        written.push(entry(101, 2, LOG_CHUNK_TARGET_BYTES * 3));
        written.push(entry(102, 2, 10));
        let chunks = encode(&written).expect("encode");
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        for (key, value) in &chunks {
            let first = keys::chunk_index(key).expect("key");
            let chunk = Chunk::parse(first, value).expect("parse");
            assert!(
                value.len() <= LOG_CHUNK_TARGET_BYTES || chunk.last() == first,
                "chunk {first} has {} bytes and several entries",
                value.len()
            );
        }
        assert_eq!(decode_all(&chunks), written);
    }

    #[test]
    fn damaged_framing_is_corrupt_never_a_panic() {
        let chunks = encode(&entries(1..=3, 50)).expect("encode");
        let value = &chunks[0].1;
        for cut in 0..value.len() {
            let result = Chunk::parse(1, &value[..cut])
                .and_then(|chunk| chunk.entries().collect::<Result<Vec<_>, _>>());
            assert!(result.is_err(), "a chunk cut at {cut} must be refused");
        }
        let mut longer = value.clone();
        longer.push(0);
        let chunk = Chunk::parse(1, &longer).expect("header");
        let err = chunk
            .entries()
            .collect::<Result<Vec<_>, _>>()
            .expect_err("trailing byte");
        assert!(err.to_string().contains("after its last entry"), "{err}");
        let err = Chunk::parse(2, value)
            .and_then(|chunk| chunk.entries().collect::<Result<Vec<_>, _>>())
            .expect_err("under the wrong key");
        assert!(err.to_string().contains("expected log entry 2"), "{err}");
    }

    fn db_with(chunks: &[&[Entry]]) -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .expect("open sled");
        for written in chunks {
            for (key, value) in encode(written).expect("encode") {
                db.insert(key, value).expect("insert");
            }
        }
        (dir, db)
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.index).collect()
    }

    #[test]
    fn reads_start_inside_a_chunk_and_cross_chunks() {
        let (_dir, db) = db_with(&[&entries(1..=4, 10), &entries(5..=9, 10)]);
        assert_eq!(
            indexes(&read(&db, 3, 7, u64::MAX).expect("read")),
            vec![3, 4, 5, 6]
        );
        assert_eq!(indexes(&read(&db, 9, 10, u64::MAX).expect("read")), vec![9]);
        // At least one entry, then only what fits.
        assert_eq!(indexes(&read(&db, 2, 9, 0).expect("read")), vec![2]);
        let err = read(&db, 8, 12, u64::MAX).expect_err("past the end");
        assert!(err.to_string().contains("log entry 10"), "{err}");
    }

    #[test]
    fn truncation_keeps_the_prefix_of_the_chunk_it_cuts() {
        let (_dir, db) = db_with(&[&entries(1..=4, 10), &entries(5..=9, 10)]);
        let mut batch = sled::Batch::default();
        truncate_from(&db, &mut batch, 3).expect("truncate");
        db.apply_batch(batch).expect("apply");
        assert_eq!(
            indexes(&read(&db, 1, 3, u64::MAX).expect("read")),
            vec![1, 2]
        );
        assert!(read(&db, 1, 4, u64::MAX).is_err(), "entry 3 is gone");
        assert_eq!(db.len(), 1, "chunk 5 removed");
    }

    #[test]
    fn compaction_keeps_the_first_index_exact() {
        let (_dir, db) = db_with(&[
            &entries(1..=4, 10),
            &entries(5..=9, 10),
            &entries(10..=12, 10),
        ]);
        let mut batch = sled::Batch::default();
        assert_eq!(remove_before(&db, &mut batch, 7).expect("compact"), 2);
        db.apply_batch(batch).expect("apply");
        assert_eq!(
            indexes(&read(&db, 7, 13, u64::MAX).expect("read")),
            vec![7, 8, 9, 10, 11, 12]
        );
        assert_eq!(db.len(), 2, "chunk 5-9 stored again as 7-9");
        assert!(db.get(chunk_key(7)).expect("get").is_some());
        let mut batch = sled::Batch::default();
        assert_eq!(remove_before(&db, &mut batch, 10).expect("compact"), 1);
        db.apply_batch(batch).expect("apply");
        assert_eq!(db.len(), 1);
    }
}
