//! The component history and the dry-run report (`GET /v1/components`,
//! `POST /v1/upgrade?dry_run=true`).
//!
//! [`ComponentHistory`], [`ComponentRecord`], [`ActivationKind`],
//! [`ActivationOutcome`] and [`LimitOverrides`] are also replicated state
//! on the node (snapshot headers, activation entries, frames between
//! peers): they are defined once, here, and a change to them must stay
//! compatible with what nodes already wrote. The node's logic over them
//! (resolving limits, capping the history) lives in the node.

use serde::{Deserialize, Serialize};

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

impl ActivationKind {
    /// The name on the wire (`genesis`, `upgrade`, `rollback`).
    pub fn name(self) -> &'static str {
        match self {
            ActivationKind::Genesis => "genesis",
            ActivationKind::Upgrade => "upgrade",
            ActivationKind::Rollback => "rollback",
        }
    }
}

/// Resource settings of one component, replicated with its activation so
/// every replica meters it the same way.
///
/// In an upgrade request, `None` keeps the cluster's current value. In the
/// component history every record written since the limits became part of
/// the replicated configuration has every field set: the genesis record
/// holds the limits the cluster was created with, each activation the
/// limits it resolved to. Only records of older clusters have `None`
/// fields, which then fall back to the node's configured limits.
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
    /// No field set.
    pub fn is_empty(&self) -> bool {
        *self == LimitOverrides::default()
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
    /// The component became active.
    pub fn is_activated(&self) -> bool {
        self.outcome == ActivationOutcome::Activated
    }
}

/// Every activation seen, and which one is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentHistory {
    /// The component applying entries now.
    pub active: ComponentRecord,
    /// Activations and failed attempts, oldest first (the node keeps a
    /// bounded number).
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
    /// The first of them (the node caps how many it lists).
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
