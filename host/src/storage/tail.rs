//! The newest entries of the log, in memory, as they were appended.
//!
//! Raft reads the entries it has just stored twice a round: the leader to
//! send them to its followers, every node to apply them once committed.
//! From sled each read is a range scan (sled copies a whole leaf per step)
//! and a protobuf decode per entry, 2-4% of a node's CPU under load. The
//! tail answers those reads from the [`Entry`] values the node appended
//! (their payloads are shared `Bytes`, so a read clones no command).
//!
//! It mirrors a suffix of the stored log or nothing: the store updates it
//! only after a write it describes is in sled, truncates it with the log,
//! trims it behind compaction, and empties it when a snapshot replaces the
//! log. A read it cannot answer whole goes to sled.

use std::collections::VecDeque;

use protobuf::Message;
use raft::prelude::Entry;

use crate::limits::{LOG_TAIL_CACHE_BYTES, LOG_TAIL_CACHE_ENTRIES};

/// Up to [`LOG_TAIL_CACHE_ENTRIES`] consecutive entries (and about
/// [`LOG_TAIL_CACHE_BYTES`]) ending at the log's last index.
#[derive(Debug, Default)]
pub(crate) struct LogTail {
    /// Consecutive entries with their encoded sizes, oldest first.
    entries: VecDeque<(Entry, u64)>,
    bytes: u64,
}

impl LogTail {
    /// `appended` (consecutive) went into the store, replacing any stored
    /// entry at its first index or later.
    pub(crate) fn append(&mut self, appended: &[Entry]) {
        let Some(first) = appended.first().map(|entry| entry.index) else {
            return;
        };
        self.truncate_from(first);
        if self
            .entries
            .back()
            .is_some_and(|(last, _)| last.index + 1 != first)
        {
            // Not a continuation (the tail had been trimmed to nothing of
            // what precedes, or emptied): start over from these.
            self.clear();
        }
        for entry in appended {
            let size = u64::from(entry.compute_size());
            self.bytes += size;
            self.entries.push_back((entry.clone(), size));
        }
        while self.entries.len() > LOG_TAIL_CACHE_ENTRIES
            || (self.bytes > LOG_TAIL_CACHE_BYTES as u64 && self.entries.len() > 1)
        {
            self.pop_front();
        }
    }

    /// Entries before `first_index` left the store (compaction).
    pub(crate) fn trim_before(&mut self, first_index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|(entry, _)| entry.index < first_index)
        {
            self.pop_front();
        }
    }

    /// The store's log was replaced (a snapshot).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// The entries `[low, high)` with `raft::util::limit_size`'s rule (at
    /// least one, then as many as fit in `max_size` bytes), if the tail
    /// holds all of them; `None` sends the read to sled.
    pub(crate) fn read(&self, low: u64, high: u64, max_size: u64) -> Option<Vec<Entry>> {
        let (front, _) = self.entries.front()?;
        let (back, _) = self.entries.back()?;
        if low >= high || low < front.index || high - 1 > back.index {
            return None;
        }
        let offset = usize::try_from(low - front.index).ok()?;
        let wanted = usize::try_from(high - low).ok()?;
        let mut out = Vec::with_capacity(wanted.min(1024));
        let mut size = 0u64;
        for (entry, entry_size) in self.entries.range(offset..offset + wanted) {
            size += entry_size;
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(entry.clone());
        }
        Some(out)
    }

    fn truncate_from(&mut self, index: u64) {
        while self
            .entries
            .back()
            .is_some_and(|(entry, _)| entry.index >= index)
        {
            let (_, size) = self.entries.pop_back().expect("checked above");
            self.bytes -= size;
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    fn held(tail: &LogTail, low: u64, high: u64, max_size: u64) -> Vec<Entry> {
        tail.read(low, high, max_size)
            .expect("the tail holds the range")
    }

    fn indexes(entries: &[Entry]) -> Vec<(u64, u64)> {
        entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn a_read_inside_the_tail_is_answered_and_one_outside_is_not() {
        let mut tail = LogTail::default();
        tail.append(&[entry(5, 1, b"a"), entry(6, 1, b"b"), entry(7, 1, b"c")]);
        assert_eq!(
            indexes(&held(&tail, 5, 8, u64::MAX)),
            [(5, 1), (6, 1), (7, 1)]
        );
        assert_eq!(indexes(&held(&tail, 6, 7, u64::MAX)), [(6, 1)]);
        assert!(
            tail.read(4, 6, u64::MAX).is_none(),
            "starts before the tail"
        );
        assert!(tail.read(6, 9, u64::MAX).is_none(), "runs past the tail");
    }

    #[test]
    fn a_conflicting_append_replaces_the_suffix() {
        let mut tail = LogTail::default();
        tail.append(&[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")]);
        tail.append(&[entry(2, 2, b"x")]);
        assert_eq!(indexes(&held(&tail, 1, 3, u64::MAX)), [(1, 1), (2, 2)]);
        assert!(tail.read(3, 4, u64::MAX).is_none(), "entry 3 is gone");
    }

    #[test]
    fn an_append_after_a_gap_starts_over() {
        let mut tail = LogTail::default();
        tail.append(&[entry(1, 1, b"a")]);
        tail.append(&[entry(10, 1, b"b")]);
        assert!(tail.read(1, 2, u64::MAX).is_none());
        assert_eq!(indexes(&held(&tail, 10, 11, u64::MAX)), [(10, 1)]);
    }

    #[test]
    fn reads_follow_the_size_limit_like_sled_reads() {
        let mut tail = LogTail::default();
        let entries = [
            entry(1, 1, &[0; 100]),
            entry(2, 1, &[0; 100]),
            entry(3, 1, &[0; 100]),
        ];
        tail.append(&entries);
        let one = u64::from(entries[0].compute_size());
        assert_eq!(held(&tail, 1, 4, 0).len(), 1, "at least one");
        assert_eq!(held(&tail, 1, 4, 2 * one).len(), 2);
        assert_eq!(held(&tail, 1, 4, 2 * one - 1).len(), 1);
    }

    #[test]
    fn compaction_and_the_bounds_trim_the_front() {
        let mut tail = LogTail::default();
        tail.append(&[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")]);
        tail.trim_before(3);
        assert!(tail.read(2, 4, u64::MAX).is_none());
        assert_eq!(indexes(&held(&tail, 3, 4, u64::MAX)), [(3, 1)]);

        let many: Vec<_> = (1..=LOG_TAIL_CACHE_ENTRIES as u64 + 10)
            .map(|i| entry(i, 1, b"x"))
            .collect();
        let mut tail = LogTail::default();
        tail.append(&many);
        assert_eq!(tail.entries.len(), LOG_TAIL_CACHE_ENTRIES);
        assert!(tail.read(10, 12, u64::MAX).is_none());
        let last = many.last().expect("entries").index;
        assert_eq!(held(&tail, last, last + 1, u64::MAX).len(), 1);
    }
}
