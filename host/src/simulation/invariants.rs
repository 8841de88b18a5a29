//! Raft's safety properties and the replicas' agreement, checked after
//! every step of a simulation against what the nodes actually hold.
//!
//! - **Election safety**: at most one leader per term.
//! - **Log matching**: two logs with an entry of the same index and term
//!   hold the same entry there, and agree on the term of the entry before
//!   it (so, by induction, on every entry before it).
//! - **Leader completeness**: a new leader of term T holds every entry
//!   committed in a term before T (those it has not compacted).
//! - **State machine safety / commit never goes back**: an index committed
//!   anywhere has the same term everywhere, forever; a node's commit index
//!   never decreases while it runs.
//! - **The guests' clock never goes back**: the leaders' stamps on
//!   committed entries never decrease along the log, though the nodes'
//!   clocks differ.
//! - **Replicas agree**: every applied index has the same component, the
//!   same result and the same state hash on every replica (replays after a
//!   restart included), and no node considers itself diverged.

use std::collections::{BTreeMap, HashMap};

use raft::prelude::Entry;
use raft::{GetEntriesContext, StateRole, Storage as _};

use crate::node::applier::{AppliedRecord, ApplierShared};
use crate::node::core::RaftView;
use crate::storage::SledStorage;

/// A broken invariant: what and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the checker remembers of one node's current incarnation.
#[derive(Debug, Default, Clone, Copy)]
struct NodeMark {
    life: u64,
    /// Highest commit index seen in this incarnation.
    commit: u64,
    /// Applied records up to here are checked.
    records_checked: u64,
}

/// One entry's identity for log matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntryMark {
    digest: [u8; 32],
    previous_term: Option<u64>,
}

/// The checker's memory of the whole run.
#[derive(Debug, Default)]
pub struct Invariants {
    leaders: BTreeMap<u64, u64>,
    /// Globally committed: index → term.
    committed: BTreeMap<u64, u64>,
    /// The leader's stamp of each committed entry that carries one.
    stamps: BTreeMap<u64, u64>,
    entries: HashMap<(u64, u64), EntryMark>,
    /// What was applied at each index, by whichever replica applied it
    /// first.
    applied: BTreeMap<u64, (u64, AppliedRecord)>,
    nodes: BTreeMap<u64, NodeMark>,
    /// How many individual checks passed (for the report).
    pub checks: u64,
}

impl Invariants {
    pub fn new() -> Self {
        Self::default()
    }

    /// Check node `id` (incarnation `life`) after it took a step.
    pub fn after_step(
        &mut self,
        id: u64,
        life: u64,
        view: &RaftView,
        storage: &SledStorage,
        shared: &ApplierShared,
    ) -> Result<(), Violation> {
        let fail = |what: String| Err(Violation(format!("node {id}: {what}")));
        let mark = self.nodes.entry(id).or_default();
        if mark.life != life {
            *mark = NodeMark {
                life,
                ..NodeMark::default()
            };
        }
        let mark = *mark;
        if view.commit_index < mark.commit {
            return fail(format!(
                "commit index went back from {} to {}",
                mark.commit, view.commit_index
            ));
        }
        if view.role == StateRole::Leader {
            self.check_leader(id, view, storage)?;
        }
        self.check_log(id, view, storage, mark.commit)?;
        let records_checked = self.check_applied(id, shared, mark.records_checked)?;
        if let Some(divergence) = shared.diverged() {
            return fail(format!(
                "diverged at the state check at index {}",
                divergence.index
            ));
        }
        let mark = self.nodes.entry(id).or_default();
        mark.commit = view.commit_index;
        mark.records_checked = records_checked;
        Ok(())
    }

    /// Election safety, and leader completeness for a newly seen leader.
    fn check_leader(
        &mut self,
        id: u64,
        view: &RaftView,
        storage: &SledStorage,
    ) -> Result<(), Violation> {
        self.checks += 1;
        match self.leaders.get(&view.term) {
            Some(&other) if other != id => {
                return Err(Violation(format!(
                    "two leaders in term {}: {other} and {id}",
                    view.term
                )));
            }
            Some(_) => return Ok(()),
            None => {
                self.leaders.insert(view.term, id);
            }
        }
        let first = storage.first_index().unwrap_or(1);
        for (&index, &term) in self.committed.range(first..) {
            if term >= view.term {
                continue;
            }
            self.checks += 1;
            let held = storage.term(index).ok();
            if held != Some(term) {
                return Err(Violation(format!(
                    "leader completeness: node {id}, leader of term {}, holds {held:?} at \
                     index {index}, where term {term} was committed",
                    view.term
                )));
            }
        }
        Ok(())
    }

    /// Log matching for the entries that can still change, and committed
    /// entries never changing.
    fn check_log(
        &mut self,
        id: u64,
        view: &RaftView,
        storage: &SledStorage,
        checked_commit: u64,
    ) -> Result<(), Violation> {
        let first = storage.first_index().unwrap_or(1);
        let last = storage.last_index().unwrap_or(0);
        let low = checked_commit.saturating_add(1).max(first);
        if low > last {
            return Ok(());
        }
        let entries: Vec<Entry> = storage
            .entries(low, last + 1, None, GetEntriesContext::empty(false))
            .map_err(|e| Violation(format!("node {id}: reading its log {low}..={last}: {e}")))?;
        let mut previous_term = storage.term(low - 1).ok();
        for entry in &entries {
            let at = (entry.index, entry.term);
            let found = EntryMark {
                digest: *blake3::hash(
                    &protobuf::Message::write_to_bytes(entry).unwrap_or_default(),
                )
                .as_bytes(),
                previous_term,
            };
            self.checks += 1;
            match self.entries.get(&at) {
                Some(known) if known.digest != found.digest => {
                    return Err(Violation(format!(
                        "log matching: node {id} holds another entry at index {} term {}",
                        at.0, at.1
                    )));
                }
                Some(known)
                    if known.previous_term.is_some()
                        && found.previous_term.is_some()
                        && known.previous_term != found.previous_term =>
                {
                    return Err(Violation(format!(
                        "log matching: node {id} has term {:?} before index {} term {}, \
                         another node {:?}",
                        found.previous_term, at.0, at.1, known.previous_term
                    )));
                }
                Some(_) => {}
                None => {
                    self.entries.insert(at, found);
                }
            }
            if entry.index <= view.commit_index {
                self.checks += 1;
                match self.committed.get(&entry.index) {
                    Some(&term) if term != entry.term => {
                        return Err(Violation(format!(
                            "node {id} committed term {} at index {}, where term {term} \
                             was committed before",
                            entry.term, entry.index
                        )));
                    }
                    Some(_) => {}
                    None => {
                        self.committed.insert(entry.index, entry.term);
                        self.check_stamp(entry)?;
                    }
                }
            }
            previous_term = Some(entry.term);
        }
        Ok(())
    }

    /// A newly committed entry's stamp lies between its committed
    /// neighbours'.
    fn check_stamp(&mut self, entry: &Entry) -> Result<(), Violation> {
        if entry.get_entry_type() != raft::prelude::EntryType::EntryNormal {
            return Ok(());
        }
        let Some(stamp) = crate::node::envelope::stamp_of(&entry.data) else {
            return Ok(());
        };
        self.checks += 1;
        let before = self.stamps.range(..entry.index).next_back();
        let after = self.stamps.range(entry.index + 1..).next();
        if let Some((&index, &earlier)) = before.filter(|(_, earlier)| **earlier > stamp) {
            return Err(Violation(format!(
                "the clock went back: entry {} is stamped {stamp}, entry {index} before it {earlier}",
                entry.index
            )));
        }
        if let Some((&index, &later)) = after.filter(|(_, later)| **later < stamp) {
            return Err(Violation(format!(
                "the clock went back: entry {} is stamped {stamp}, entry {index} after it {later}",
                entry.index
            )));
        }
        self.stamps.insert(entry.index, stamp);
        Ok(())
    }

    /// Every applied record equals the first one recorded for its index.
    fn check_applied(
        &mut self,
        id: u64,
        shared: &ApplierShared,
        checked: u64,
    ) -> Result<u64, Violation> {
        let mut checked = checked;
        for record in shared.recent_results(checked + 1, usize::MAX) {
            self.checks += 1;
            match self.applied.get(&record.index) {
                Some((first_by, first)) if *first != record => {
                    return Err(Violation(format!(
                        "replicas disagree at index {}: node {first_by} applied {first:?}, \
                         node {id} applied {record:?}",
                        record.index
                    )));
                }
                Some(_) => {}
                None => {
                    self.applied.insert(record.index, (id, record.clone()));
                }
            }
            checked = record.index;
        }
        Ok(checked)
    }

    /// The record applied at the highest index, if any.
    pub fn last_applied(&self) -> Option<&AppliedRecord> {
        self.applied.values().next_back().map(|(_, record)| record)
    }

    /// Entries known committed.
    pub fn committed_entries(&self) -> usize {
        self.committed.len()
    }

    /// The highest term that had a leader.
    pub fn max_term(&self) -> u64 {
        self.leaders.keys().next_back().copied().unwrap_or(0)
    }

    /// How many terms had a leader.
    pub fn leaders_elected(&self) -> usize {
        self.leaders.len()
    }
}
