//! The in-memory mirror of what is on disk.
//!
//! Raft asks for `first_index`, `last_index` and `term` far more often than it
//! reads entries, so those are answered from memory. Terms change rarely, so the
//! log's terms are kept run-length encoded ([`LogIndex`]): a few words of memory
//! for any log length, and `term` never decodes an entry.
//!
//! The cache is replaced only after the write it describes is in sled
//! (durable, or staged until the next sync), so it never describes what the
//! store does not hold; the durable mark takes its position from it just
//! before a sync.

use raft::prelude::{ConfState, Entry, HardState, SnapshotMetadata};

/// The index range and terms of the entries stored in the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogIndex {
    /// `(first index of the run, term)`, sorted by index; the first run starts at
    /// the log's first index. Empty when the log holds no entries.
    runs: Vec<(u64, u64)>,
    /// Index of the last stored entry; meaningless when `runs` is empty.
    last: u64,
}

impl LogIndex {
    pub(crate) fn first(&self) -> Option<u64> {
        self.runs.first().map(|&(index, _)| index)
    }

    pub(crate) fn last(&self) -> Option<u64> {
        (!self.runs.is_empty()).then_some(self.last)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Term of the stored entry at `index`, `None` if it is not stored.
    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        let first = self.first()?;
        if index < first || index > self.last {
            return None;
        }
        // The last run that starts at or before `index`.
        let run = self.runs.partition_point(|&(start, _)| start <= index) - 1;
        Some(self.runs[run].1)
    }

    /// Records one entry at `index`, which must be `last + 1` (or anything when
    /// the log is empty).
    pub(crate) fn push(&mut self, index: u64, term: u64) {
        debug_assert!(self.is_empty() || index == self.last + 1);
        if self.runs.last().map(|&(_, t)| t) != Some(term) {
            self.runs.push((index, term));
        }
        self.last = index;
    }

    /// Forgets every entry at `index` and after it (conflict truncation).
    pub(crate) fn truncate_from(&mut self, index: u64) {
        match self.first() {
            Some(first) if index > first => {
                self.runs.retain(|&(start, _)| start < index);
                self.last = self.last.min(index - 1);
            }
            _ => self.clear(),
        }
    }

    /// Forgets every entry before `index` (compaction).
    pub(crate) fn compact_to(&mut self, index: u64) {
        let Some(first) = self.first() else { return };
        if index <= first {
            return;
        }
        if index > self.last {
            self.clear();
            return;
        }
        // Keep the run holding `index` and the ones after it; it now starts at `index`.
        let run = self.runs.partition_point(|&(start, _)| start <= index) - 1;
        self.runs.drain(..run);
        self.runs[0].0 = index;
    }

    pub(crate) fn clear(&mut self) {
        self.runs.clear();
        self.last = 0;
    }
}

/// Everything the store answers without touching sled.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cache {
    /// `None` until a hard state was persisted.
    pub(crate) hard_state: Option<HardState>,
    /// `None` until a conf state was persisted.
    pub(crate) conf_state: Option<ConfState>,
    /// Metadata of the stored snapshot; `None` when there is none.
    pub(crate) snapshot: Option<SnapshotMetadata>,
    pub(crate) log: LogIndex,
}

impl Cache {
    /// Index of the stored snapshot, 0 when there is none.
    pub(crate) fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |meta| meta.index)
    }

    /// raft-rs's `first_index`: the first stored entry, or the one after the snapshot.
    pub(crate) fn first_index(&self) -> u64 {
        self.log.first().unwrap_or(self.snapshot_index() + 1)
    }

    /// raft-rs's `last_index`: the last stored entry, or the snapshot's index.
    pub(crate) fn last_index(&self) -> u64 {
        self.log.last().unwrap_or(self.snapshot_index())
    }

    /// raft-rs's `term`, as `MemStorage` answers it: the snapshot's index is
    /// answered from its metadata, stored entries from the log.
    pub(crate) fn term(&self, index: u64) -> TermLookup {
        let (snapshot_index, snapshot_term) = self
            .snapshot
            .as_ref()
            .map_or((0, 0), |meta| (meta.index, meta.term));
        if index == snapshot_index {
            return TermLookup::Found(snapshot_term);
        }
        if index < self.first_index() {
            return TermLookup::Compacted;
        }
        match self.log.term(index) {
            Some(term) => TermLookup::Found(term),
            None => TermLookup::Unavailable,
        }
    }

    pub(crate) fn hard_state(&self) -> HardState {
        self.hard_state.clone().unwrap_or_default()
    }

    pub(crate) fn conf_state(&self) -> ConfState {
        self.conf_state.clone().unwrap_or_default()
    }

    /// True when nothing Raft-related was ever persisted.
    pub(crate) fn is_fresh(&self) -> bool {
        self.hard_state.is_none()
            && self.conf_state.is_none()
            && self.snapshot.is_none()
            && self.log.is_empty()
    }

    /// Applies an append (already validated) to the log index.
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        if let Some(first) = entries.first() {
            self.log.truncate_from(first.index);
            for entry in entries {
                self.log.push(entry.index, entry.term);
            }
        }
    }
}

/// Result of [`Cache::term`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TermLookup {
    Found(u64),
    Compacted,
    Unavailable,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(terms: &[(u64, u64)]) -> LogIndex {
        let mut log = LogIndex::default();
        for &(index, term) in terms {
            log.push(index, term);
        }
        log
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    #[test]
    fn empty_log_has_no_range() {
        let log = LogIndex::default();
        assert_eq!((log.first(), log.last()), (None, None));
        assert_eq!(log.term(0), None);
        assert_eq!(log.term(1), None);
    }

    #[test]
    fn runs_compress_equal_terms() {
        let log = log(&[(3, 1), (4, 1), (5, 2), (6, 2), (7, 2), (8, 5)]);
        assert_eq!(log.runs, vec![(3, 1), (5, 2), (8, 5)]);
        assert_eq!((log.first(), log.last()), (Some(3), Some(8)));
        let terms: Vec<_> = (2..=9).map(|i| log.term(i)).collect();
        assert_eq!(
            terms,
            vec![
                None,
                Some(1),
                Some(1),
                Some(2),
                Some(2),
                Some(2),
                Some(5),
                None
            ]
        );
    }

    #[test]
    fn truncate_inside_a_run_keeps_its_head() {
        let mut log = log(&[(1, 1), (2, 1), (3, 2), (4, 2), (5, 3)]);
        log.truncate_from(4);
        assert_eq!(log.runs, vec![(1, 1), (3, 2)]);
        assert_eq!(log.last(), Some(3));
        log.push(4, 4);
        assert_eq!(log.term(3), Some(2));
        assert_eq!(log.term(4), Some(4));
    }

    #[test]
    fn truncate_at_a_run_start_drops_the_run() {
        let mut log = log(&[(1, 1), (2, 1), (3, 2), (4, 2)]);
        log.truncate_from(3);
        assert_eq!(log.runs, vec![(1, 1)]);
        assert_eq!(log.last(), Some(2));
    }

    #[test]
    fn truncate_at_or_before_first_clears() {
        let mut log = log(&[(5, 1), (6, 1)]);
        log.truncate_from(5);
        assert!(log.is_empty());
        let mut log = self::log(&[(5, 1), (6, 1)]);
        log.truncate_from(2);
        assert!(log.is_empty());
    }

    #[test]
    fn truncate_past_last_changes_nothing() {
        let mut log = log(&[(5, 1), (6, 2)]);
        let before = log.clone();
        log.truncate_from(7);
        assert_eq!(log, before);
    }

    #[test]
    fn compact_moves_the_first_run() {
        let mut log = log(&[(1, 1), (2, 1), (3, 2), (4, 2), (5, 3)]);
        log.compact_to(4);
        assert_eq!(log.runs, vec![(4, 2), (5, 3)]);
        assert_eq!((log.first(), log.last()), (Some(4), Some(5)));
        assert_eq!(log.term(3), None);
        assert_eq!(log.term(4), Some(2));
        log.compact_to(5);
        assert_eq!(log.runs, vec![(5, 3)]);
        log.compact_to(6);
        assert!(log.is_empty());
    }

    #[test]
    fn compact_at_or_before_first_changes_nothing() {
        let mut log = log(&[(3, 1), (4, 2)]);
        let before = log.clone();
        log.compact_to(3);
        log.compact_to(1);
        assert_eq!(log, before);
    }

    #[test]
    fn cache_indexes_follow_the_snapshot_when_the_log_is_empty() {
        let mut cache = Cache::default();
        assert_eq!((cache.first_index(), cache.last_index()), (1, 0));
        assert_eq!(cache.term(0), TermLookup::Found(0));
        assert_eq!(cache.term(1), TermLookup::Unavailable);
        assert!(cache.is_fresh());

        cache.snapshot = Some(SnapshotMetadata {
            index: 10,
            term: 4,
            ..Default::default()
        });
        assert!(!cache.is_fresh());
        assert_eq!((cache.first_index(), cache.last_index()), (11, 10));
        assert_eq!(cache.term(10), TermLookup::Found(4));
        assert_eq!(cache.term(9), TermLookup::Compacted);
        assert_eq!(cache.term(11), TermLookup::Unavailable);

        cache.append(&[entry(11, 4), entry(12, 5)]);
        assert_eq!((cache.first_index(), cache.last_index()), (11, 12));
        assert_eq!(cache.term(12), TermLookup::Found(5));
    }

    #[test]
    fn cache_append_truncates_a_conflicting_tail() {
        let mut cache = Cache::default();
        cache.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        cache.append(&[entry(2, 2)]);
        assert_eq!(cache.last_index(), 2);
        assert_eq!(cache.term(1), TermLookup::Found(1));
        assert_eq!(cache.term(2), TermLookup::Found(2));
        assert_eq!(cache.term(3), TermLookup::Unavailable);
    }

    #[test]
    fn defaults_stand_in_for_missing_state() {
        let cache = Cache::default();
        assert_eq!(cache.hard_state(), HardState::default());
        assert_eq!(cache.conf_state(), ConfState::default());
    }
}
