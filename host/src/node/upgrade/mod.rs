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

pub use iroh_raft_client::upgrade::{
    ActivationKind, ActivationOutcome, CheckOutcome, ComponentHistory, ComponentRecord,
    DryRunReport, LimitOverrides, ResultDifference,
};

/// The node's logic over [`LimitOverrides`] (a wire type, defined in the
/// client crate): how they combine with a component's limits.
///
/// In an upgrade request, `None` keeps the cluster's current value. In the
/// component history every record written since the limits became part of
/// the replicated configuration has every field set ([`Self::all`]).
pub trait LimitOverridesExt: Sized {
    /// Every field set: how the component history records limits.
    fn all(limits: GuestLimits) -> Self;
    /// These overrides applied over `base` (the cluster's current limits,
    /// or for an older cluster's record, the node's configured ones).
    fn resolve(&self, base: GuestLimits) -> GuestLimits;
    /// Every given limit is positive and within its bound.
    fn check(&self) -> Result<(), String>;
}

impl LimitOverridesExt for LimitOverrides {
    fn all(limits: GuestLimits) -> Self {
        LimitOverrides {
            apply_fuel: Some(limits.apply_fuel),
            query_fuel: Some(limits.query_fuel),
            memory_limit_bytes: Some(limits.memory_limit_bytes),
            maintenance_fuel: Some(limits.maintenance_fuel),
        }
    }

    fn resolve(&self, base: GuestLimits) -> GuestLimits {
        GuestLimits {
            apply_fuel: self.apply_fuel.unwrap_or(base.apply_fuel),
            query_fuel: self.query_fuel.unwrap_or(base.query_fuel),
            memory_limit_bytes: self.memory_limit_bytes.unwrap_or(base.memory_limit_bytes),
            maintenance_fuel: self.maintenance_fuel.unwrap_or(base.maintenance_fuel),
        }
    }

    fn check(&self) -> Result<(), String> {
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

/// The node's logic over [`ComponentHistory`] (a wire type): adding an
/// activation, keeping at most [`MAX_HISTORY_RECORDS`].
pub trait ComponentHistoryExt {
    /// Add the outcome of an activation.
    fn record(&mut self, record: ComponentRecord);
}

impl ComponentHistoryExt for ComponentHistory {
    fn record(&mut self, record: ComponentRecord) {
        if record.is_activated() {
            self.active = record.clone();
        }
        self.records.push(record);
        if self.records.len() > MAX_HISTORY_RECORDS {
            let excess = self.records.len() - MAX_HISTORY_RECORDS;
            self.records.drain(..excess);
        }
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
