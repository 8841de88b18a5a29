//! The host's metadata beside the Raft log, typed: the members' addresses,
//! the index of the last configuration change they reflect, and the
//! component the cluster started from (or that its latest installed
//! snapshot runs). Each has one accessor; the keys and the encodings are
//! private to this file.

use super::{SledStorage, StorageError};
use crate::membership::{self, Members};
use crate::wasm::{ComponentHash, GuestLimits};

/// The members' addresses (a [`membership::encode_members`] map).
const MEMBERS_KEY: &str = "members";
/// Index of the last configuration change whose result is in the stored
/// conf state and members (decimal text).
const CONF_INDEX_KEY: &str = "conf_index";
/// Hash (hex) of the component the log's first entry is applied with: the
/// cluster's first component, or that of an installed snapshot. Upgrades
/// after it are activation entries in the log, replayed on start.
const ACTIVE_COMPONENT_KEY: &str = "active_component";

/// The guest limits the cluster was created with: `apply query maintenance
/// memory` as decimal text. They are the cluster's, not the node's: every
/// replica applies the log from index 1 with them, whatever its own flags.
const GENESIS_LIMITS_KEY: &str = "genesis_limits";

/// Metadata that must change atomically with the conf state.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaUpdate<'a> {
    pub members: Option<&'a Members>,
    pub conf_index: Option<u64>,
    pub active_component: Option<&'a ComponentHash>,
}

impl SledStorage {
    /// The stored members' addresses (empty before any was recorded).
    pub fn members(&self) -> Result<Members, StorageError> {
        match self.get_meta(MEMBERS_KEY)? {
            None => Ok(Members::new()),
            Some(bytes) => membership::decode_members(&bytes)
                .map_err(|e| StorageError::corrupt("the stored membership", e.to_string())),
        }
    }

    /// Records the members' addresses, durably.
    pub fn set_members(&self, members: &Members) -> Result<(), StorageError> {
        self.put_meta(MEMBERS_KEY, &membership::encode_members(members))
    }

    /// Index of the last configuration change the stored conf state
    /// reflects (0 before any).
    pub fn conf_index(&self) -> Result<u64, StorageError> {
        match self.get_meta(CONF_INDEX_KEY)? {
            None => Ok(0),
            Some(raw) => String::from_utf8_lossy(&raw)
                .parse::<u64>()
                .map_err(|e| StorageError::corrupt("the stored conf index", e.to_string())),
        }
    }

    /// The component the log's first entry is applied with, if recorded.
    pub fn active_component(&self) -> Result<Option<ComponentHash>, StorageError> {
        match self.get_meta(ACTIVE_COMPONENT_KEY)? {
            None => Ok(None),
            Some(raw) => {
                let hex = String::from_utf8_lossy(&raw);
                ComponentHash::from_hex(&hex).map(Some).ok_or_else(|| {
                    StorageError::corrupt(
                        "the stored active component",
                        format!("`{hex}` is not a hash"),
                    )
                })
            }
        }
    }

    /// Records the component the log's first entry is applied with, durably.
    pub fn set_active_component(&self, hash: &ComponentHash) -> Result<(), StorageError> {
        self.put_meta(ACTIVE_COMPONENT_KEY, hash.to_hex().as_bytes())
    }

    /// The guest limits the cluster was created with, if recorded (data dirs
    /// from before they were recorded have none).
    pub fn genesis_limits(&self) -> Result<Option<GuestLimits>, StorageError> {
        let Some(raw) = self.get_meta(GENESIS_LIMITS_KEY)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&raw);
        let numbers: Result<Vec<u64>, _> = text.split(' ').map(str::parse).collect();
        match numbers.as_deref() {
            Ok(&[apply_fuel, query_fuel, maintenance_fuel, memory_limit_bytes]) => {
                Ok(Some(GuestLimits {
                    apply_fuel,
                    query_fuel,
                    maintenance_fuel,
                    memory_limit_bytes,
                }))
            }
            _ => Err(StorageError::corrupt(
                "the stored genesis limits",
                format!("`{text}` is not four numbers"),
            )),
        }
    }

    /// Records the guest limits the cluster is created with, durably.
    pub fn set_genesis_limits(&self, limits: &GuestLimits) -> Result<(), StorageError> {
        let text = format!(
            "{} {} {} {}",
            limits.apply_fuel,
            limits.query_fuel,
            limits.maintenance_fuel,
            limits.memory_limit_bytes
        );
        self.put_meta(GENESIS_LIMITS_KEY, text.as_bytes())
    }

    /// Persists a new conf state together with the metadata that must
    /// change with it, in one durable batch: a crash leaves all or none.
    pub fn set_conf_state_with_meta(
        &self,
        conf_state: &raft::prelude::ConfState,
        update: MetaUpdate<'_>,
    ) -> Result<(), StorageError> {
        let values = update.encode();
        self.set_conf_state_with_values(conf_state, &values.borrowed())
    }

    /// Install a snapshot (see [`SledStorage::apply_snapshot`]) together
    /// with the metadata that must change with it (its members, conf index
    /// and component), in one durable batch: a crash leaves all or none.
    pub fn apply_snapshot_with_meta(
        &self,
        snapshot: &raft::prelude::Snapshot,
        update: MetaUpdate<'_>,
    ) -> Result<(), StorageError> {
        let values = update.encode();
        self.apply_snapshot_with_values(snapshot, &values.borrowed())
    }
}

/// A [`MetaUpdate`] as the stored key/value pairs.
struct EncodedMeta(Vec<(&'static str, Vec<u8>)>);

impl EncodedMeta {
    fn borrowed(&self) -> Vec<(&str, &[u8])> {
        self.0
            .iter()
            .map(|(key, value)| (*key, value.as_slice()))
            .collect()
    }
}

impl MetaUpdate<'_> {
    fn encode(&self) -> EncodedMeta {
        let mut values = Vec::new();
        if let Some(members) = self.members {
            values.push((MEMBERS_KEY, membership::encode_members(members)));
        }
        if let Some(index) = self.conf_index {
            values.push((CONF_INDEX_KEY, index.to_string().into_bytes()));
        }
        if let Some(hash) = self.active_component {
            values.push((ACTIVE_COMPONENT_KEY, hash.to_hex().into_bytes()));
        }
        EncodedMeta(values)
    }
}
