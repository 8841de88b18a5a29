//! Component upgrades: the log entry that switches a cluster's guest, and
//! the history of switches.
//!
//! An upgrade is one Raft entry, an [`Activation`], naming the new
//! component by its content hash. Every replica applies it at the same
//! index: the active component's `snapshot()` is handed to the new
//! component's `restore()`, and only if that succeeds does the new
//! component apply the entries after it. Any deterministic failure (not a
//! component, missing exports, `restore` rejects or traps, fuel or memory
//! exhausted) makes the entry's result an error on every replica, which
//! then keeps the old component and its untouched state.
//!
//! The component's bytes never travel in the log: they can be tens of
//! megabytes. The node that proposes an upgrade stores the file first; a
//! replica that meets the activation without the file fetches it from a
//! peer over iroh-raft/0 (by hash, in chunks) and verifies it before it
//! applies the entry.
//!
//! The history ([`ComponentRecord`]s) is derived from the log, so it is the
//! same on every replica, survives restarts (replay and snapshots rebuild
//! it) and travels with snapshots.

mod activate;
pub(crate) mod canary;
pub(crate) mod canary_store;
pub(crate) mod fetch;
pub(crate) mod handle;

pub(crate) use self::activate::genesis_history;
pub use self::handle::{ValidatedComponent, validate_component};

use crate::limits::MAX_HISTORY_RECORDS;

use serde::{Deserialize, Serialize};

use crate::wasm::{ComponentHash, GuestLimits};

/// Why a component was activated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationKind {
    /// The component the cluster started with.
    Genesis,
    Upgrade,
    /// Back to an earlier component (`raft-host rollback`).
    Rollback,
}

/// Resource settings of one component, replicated with its activation so
/// every replica meters it the same way.
///
/// In an upgrade request, `None` keeps the cluster's current value. In the
/// component history every record written since the limits became part of
/// the replicated configuration has every field set ([`Self::all`]): the
/// genesis record holds the limits the cluster was created with, each
/// activation the limits it resolved to. Only records of older clusters have
/// `None` fields, which then fall back to the node's configured limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_fuel: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_fuel: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    /// Fuel of instantiation, snapshots, restores and `migrate`. Not settable
    /// by an upgrade (the wire's activation has no field for it): it comes
    /// from the cluster's creation and is carried by every record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_fuel: Option<u64>,
}

impl LimitOverrides {
    /// Every field set: how the component history records limits.
    pub fn all(limits: GuestLimits) -> Self {
        LimitOverrides {
            apply_fuel: Some(limits.apply_fuel),
            query_fuel: Some(limits.query_fuel),
            memory_limit_bytes: Some(limits.memory_limit_bytes),
            maintenance_fuel: Some(limits.maintenance_fuel),
        }
    }

    /// These overrides applied over `base` (the cluster's current limits,
    /// or for an older cluster's record, the node's configured ones).
    pub fn resolve(&self, base: GuestLimits) -> GuestLimits {
        GuestLimits {
            apply_fuel: self.apply_fuel.unwrap_or(base.apply_fuel),
            query_fuel: self.query_fuel.unwrap_or(base.query_fuel),
            memory_limit_bytes: self.memory_limit_bytes.unwrap_or(base.memory_limit_bytes),
            maintenance_fuel: self.maintenance_fuel.unwrap_or(base.maintenance_fuel),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == LimitOverrides::default()
    }

    /// Every given limit is positive and within its bound.
    pub fn check(&self) -> Result<(), String> {
        use crate::limits::{MAX_CALL_FUEL, MAX_MEMORY_LIMIT_BYTES};
        use crate::wasm::limits::check_limit;
        let given = [
            ("apply fuel", self.apply_fuel, MAX_CALL_FUEL),
            ("query fuel", self.query_fuel, MAX_CALL_FUEL),
            ("maintenance fuel", self.maintenance_fuel, MAX_CALL_FUEL),
            (
                "the memory limit (bytes)",
                self.memory_limit_bytes,
                MAX_MEMORY_LIMIT_BYTES,
            ),
        ];
        for (what, value, max) in given {
            if let Some(value) = value {
                check_limit(what, value, max)?;
            }
        }
        Ok(())
    }
}

/// The payload of an activation entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    /// BLAKE3 (hex) of the component's bytes.
    pub hash: String,
    pub size_bytes: u64,
    pub kind: ActivationKind,
    #[serde(default, skip_serializing_if = "LimitOverrides::is_empty")]
    pub limits: LimitOverrides,
    /// Raft id of the node that proposed it: it holds the bytes, so it is
    /// asked first by replicas that do not.
    pub source: u64,
}

impl Activation {
    pub fn component_hash(&self) -> Option<ComponentHash> {
        ComponentHash::from_hex(&self.hash)
    }
}

/// How an activation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ActivationOutcome {
    /// The component became active at this index.
    Activated,
    /// The cluster stayed on the previous component.
    Failed { reason: String },
}

/// One entry of the history: a component activated (or refused) at an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentRecord {
    /// The activation entry's index (0 for the genesis component).
    pub index: u64,
    pub kind: ActivationKind,
    /// BLAKE3 (hex) of the component.
    pub hash: String,
    pub size_bytes: u64,
    /// The component's own `info()`; empty if it could not be instantiated.
    pub name: String,
    pub version: String,
    /// Leader timestamp of the activation entry (0 for genesis).
    pub timestamp_ms: u64,
    #[serde(default, skip_serializing_if = "LimitOverrides::is_empty")]
    pub limits: LimitOverrides,
    pub outcome: ActivationOutcome,
}

impl ComponentRecord {
    pub fn is_activated(&self) -> bool {
        self.outcome == ActivationOutcome::Activated
    }
}

/// Every activation seen, and which one is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentHistory {
    /// The component applying entries now.
    pub active: ComponentRecord,
    /// Activations and failed attempts, oldest first (at most
    /// [`MAX_HISTORY_RECORDS`]).
    pub records: Vec<ComponentRecord>,
}

impl ComponentHistory {
    /// A history that starts with `genesis`.
    pub fn new(genesis: ComponentRecord) -> Self {
        ComponentHistory {
            active: genesis.clone(),
            records: vec![genesis],
        }
    }

    /// Add the outcome of an activation.
    pub fn record(&mut self, record: ComponentRecord) {
        if record.is_activated() {
            self.active = record.clone();
        }
        self.records.push(record);
        if self.records.len() > MAX_HISTORY_RECORDS {
            let excess = self.records.len() - MAX_HISTORY_RECORDS;
            self.records.drain(..excess);
        }
    }

    /// The component that was active before the current one: what a
    /// rollback activates.
    pub fn previous(&self) -> Option<&ComponentRecord> {
        let mut activated = self.records.iter().rev().filter(|r| r.is_activated());
        let current = activated.next()?;
        activated.find(|r| r.hash != current.hash)
    }
}

/// What `raft-host upgrade --dry-run` reports: how a candidate behaves
/// against the current state and the recent entries, next to the active
/// component. Nothing of the real state is touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRunReport {
    pub candidate_hash: String,
    pub candidate_name: String,
    pub candidate_version: String,
    pub active_hash: String,
    pub active_name: String,
    pub active_version: String,
    /// Compiling and validating the candidate (imports, exports, `info()`).
    pub compile_ms: u64,
    /// The node's applied index when the dry run started.
    pub applied_index: u64,
    /// Whether the candidate's `restore` accepted the active component's
    /// current `snapshot()`, and the reason if not.
    pub restore: CheckOutcome,
    /// Whether the candidate's `snapshot()` after that restore is byte-equal
    /// to the active component's (a changed format is not an error).
    pub same_snapshot_bytes: Option<bool>,
    /// The recent entries replayed side by side: first and last index.
    pub compared_from_index: Option<u64>,
    pub compared_to_index: Option<u64>,
    pub entries_compared: usize,
    /// Entries whose result differs between the two components.
    pub differing_entries: usize,
    /// The first [`crate::limits::MAX_DRY_RUN_DIFFERENCES`] of them.
    pub differences: Vec<ResultDifference>,
    /// Entries the candidate failed (error, trap, fuel, memory) where the
    /// active component succeeded.
    pub new_failures: usize,
    /// Fuel both used for the compared entries.
    pub active_fuel: u64,
    pub candidate_fuel: u64,
    /// BLAKE3 of each side's `snapshot()` after the compared entries.
    pub active_state_hash: Option<String>,
    pub candidate_state_hash: Option<String>,
    /// Why a part of the run could not happen (e.g. no recent entries).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Pass or fail, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CheckOutcome {
    Ok,
    Failed { reason: String },
}

/// One entry whose result differs between the active component and the
/// candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultDifference {
    pub index: u64,
    /// The command, as text if it is UTF-8 (truncated).
    pub command: String,
    pub active: String,
    pub candidate: String,
}

/// How an upgrade is asked for (by the CLI, the API or a test).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeOptions {
    #[serde(default)]
    pub limits: LimitOverrides,
    /// Entries a dry run compares (default [`crate::limits::DEFAULT_DRY_RUN_ENTRIES`]).
    #[serde(default)]
    pub dry_run_entries: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: u64, hash: &str, ok: bool) -> ComponentRecord {
        ComponentRecord {
            index,
            kind: ActivationKind::Upgrade,
            hash: hash.into(),
            size_bytes: 1,
            name: "g".into(),
            version: "1".into(),
            timestamp_ms: 0,
            limits: LimitOverrides::default(),
            outcome: if ok {
                ActivationOutcome::Activated
            } else {
                ActivationOutcome::Failed {
                    reason: "no".into(),
                }
            },
        }
    }

    #[test]
    fn previous_skips_failures_and_the_active_component() {
        let mut history = ComponentHistory::new(record(0, "a", true));
        assert_eq!(history.previous(), None);
        history.record(record(5, "b", false));
        assert_eq!(history.active.hash, "a");
        assert_eq!(history.previous(), None);
        history.record(record(9, "b", true));
        assert_eq!(history.active.hash, "b");
        assert_eq!(history.previous().map(|r| r.index), Some(0));
        history.record(record(12, "a", true));
        assert_eq!(history.previous().map(|r| r.hash.as_str()), Some("b"));
    }

    #[test]
    fn history_is_bounded_but_keeps_the_active_record() {
        let mut history = ComponentHistory::new(record(0, "a", true));
        for i in 1..=(MAX_HISTORY_RECORDS as u64 + 10) {
            history.record(record(i, "x", false));
        }
        assert_eq!(history.records.len(), MAX_HISTORY_RECORDS);
        assert_eq!(history.active.index, 0);
    }

    #[test]
    fn overrides_resolve_against_defaults() {
        let defaults = GuestLimits::default();
        let overrides = LimitOverrides {
            apply_fuel: Some(7),
            ..Default::default()
        };
        let limits = overrides.resolve(defaults);
        assert_eq!(limits.apply_fuel, 7);
        assert_eq!(limits.query_fuel, defaults.query_fuel);
        assert!(LimitOverrides::default().is_empty());
    }

    #[test]
    fn overrides_past_their_bounds_are_refused() {
        let fuel = LimitOverrides {
            apply_fuel: Some(u64::MAX),
            ..Default::default()
        };
        assert!(fuel.check().expect_err("too much").contains("apply fuel"));
        let memory = LimitOverrides {
            memory_limit_bytes: Some(16 << 60),
            ..Default::default()
        };
        assert!(memory.check().expect_err("too much").contains("memory"));
        let zero = LimitOverrides {
            query_fuel: Some(0),
            ..Default::default()
        };
        assert!(zero.check().is_err());
        let fine = LimitOverrides {
            apply_fuel: Some(crate::limits::MAX_CALL_FUEL),
            memory_limit_bytes: Some(crate::limits::MAX_MEMORY_LIMIT_BYTES),
            ..Default::default()
        };
        assert_eq!(fine.check(), Ok(()));
        assert_eq!(GuestLimits::default().check(), Ok(()));
    }
}
