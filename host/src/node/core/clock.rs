//! The time a leader stamps into entries, which guests read as their wall
//! and monotonic clocks: never earlier than a stamp already in the log.
//!
//! Each leader stamps with its own wall clock, and clocks differ between
//! machines and can step back (NTP), so a new leader's "now" may lie
//! before the last entry its predecessor stamped. The guest would then see
//! time run backwards. A leader therefore stamps `max(now, latest stamp)`,
//! where the latest stamp is the last one in its own log when its term
//! starts (it holds every committed entry) and its own after that. The
//! stamp is part of the entry, so every replica sees the same clock. A log
//! that holds no stamped entry after its snapshot (a node that has just
//! installed one from the leader, and was then made leader) takes the
//! stamp of the snapshot's last entry, from the snapshot file's header.

use raft::GetEntriesContext;
use raft::prelude::EntryType;

use super::NodeCore;
use crate::node::envelope;
use crate::node::snapshot;

/// Entries read at a time while looking back for the latest stamp.
const STAMP_SCAN_WINDOW: u64 = 64;

/// What the leader knows of the stamps in its log.
#[derive(Debug, Default)]
pub(super) struct StampClock {
    /// The latest stamp in the log as far as this node knows.
    floor_ms: u64,
    /// The term whose log was last scanned for it.
    scanned_term: u64,
}

impl NodeCore {
    /// The stamp for an entry this leader appends now: `now_ms`, or the
    /// latest stamp in the log if that is later.
    pub(super) fn stamp(&mut self, now_ms: u64) -> u64 {
        let term = self.raw.raft.term;
        if self.clock.scanned_term != term {
            self.clock.floor_ms = self.clock.floor_ms.max(self.latest_stamp_in_log());
            self.clock.scanned_term = term;
        }
        let stamp = now_ms.max(self.clock.floor_ms);
        self.clock.floor_ms = stamp;
        stamp
    }

    /// The stamp of the last stamped entry in this node's log, else of the
    /// last entry its latest snapshot includes (0: none).
    fn latest_stamp_in_log(&self) -> u64 {
        let log = &self.raw.raft.raft_log;
        let first = log.first_index();
        let mut high = log.last_index() + 1;
        while high > first {
            let low = high.saturating_sub(STAMP_SCAN_WINDOW).max(first);
            let Ok(entries) = log.slice(low, high, None, GetEntriesContext::empty(false)) else {
                break;
            };
            let latest = entries.iter().rev().find_map(|entry| {
                (entry.get_entry_type() == EntryType::EntryNormal)
                    .then(|| envelope::stamp_of(&entry.data))
                    .flatten()
            });
            if let Some(stamp) = latest {
                return stamp;
            }
            high = low;
        }
        self.snapshot_stamp()
    }

    /// The stamp of the last entry the latest snapshot includes, from its
    /// file's header (0: no snapshot).
    fn snapshot_stamp(&self) -> u64 {
        let Some((index, term)) = self.storage.snapshot_position() else {
            return 0;
        };
        let path = snapshot::path_for(&self.snapshots.dir, index, term);
        match snapshot::read_header(&path) {
            Ok(header) => header.last_entry_timestamp_ms,
            Err(error) => {
                tracing::warn!(index, %error,
                    "cannot read the latest snapshot's header for its last stamp; \
                     stamping with this node's clock");
                0
            }
        }
    }
}
