//! Who may speak `iroh-raft/0` with this node, and where to reach them.
//!
//! The directory maps Raft ids to iroh node ids and addresses. It follows
//! the committed membership (the node updates it when a configuration change
//! applies); an operator may also allow extra node ids. Checks fail closed:
//! a node id that is not in the directory is refused, and an empty
//! directory refuses everyone.

use crate::node::PeerView;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use iroh::EndpointId;
use iroh::endpoint::{AfterHandshakeOutcome, Connection, EndpointHooks, VarInt};

use crate::membership::PeerAddr;

/// QUIC close code for a peer that is not allowed.
pub const CLOSE_NOT_ALLOWED: u32 = 403;

/// A member as the transport knows it.
#[derive(Debug, Clone)]
struct Member {
    addr: PeerAddr,
    endpoint_id: EndpointId,
    last_contact: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    members: BTreeMap<u64, Member>,
    by_endpoint: BTreeMap<EndpointId, u64>,
    extra_allowed: BTreeSet<EndpointId>,
}

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PeerDirectory {
    inner: Arc<RwLock<Inner>>,
}

impl PeerView for PeerDirectory {
    fn member_ids(&self) -> Vec<u64> {
        self.members().into_keys().collect()
    }

    fn last_contact_ms(&self, raft_id: u64) -> Option<u64> {
        PeerDirectory::last_contact_ms(self, raft_id)
    }
}

impl PeerDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Replace the membership (Raft id → address). Members whose node id
    /// does not parse are skipped with a warning.
    pub fn set_members(&self, members: &BTreeMap<u64, PeerAddr>) {
        let mut inner = self.write();
        let previous = std::mem::take(&mut inner.members);
        inner.by_endpoint.clear();
        for (raft_id, addr) in members {
            let Some(endpoint_id) = addr.endpoint_id() else {
                tracing::warn!(raft_id, node_id = %addr.node_id, "ignoring a member with a bad node id");
                continue;
            };
            let last_contact = previous
                .get(raft_id)
                .filter(|m| m.endpoint_id == endpoint_id)
                .and_then(|m| m.last_contact);
            inner.by_endpoint.insert(endpoint_id, *raft_id);
            inner.members.insert(
                *raft_id,
                Member {
                    addr: addr.clone(),
                    endpoint_id,
                    last_contact,
                },
            );
        }
    }

    /// Allow a node id that is not (yet) a member, e.g. a cluster a joining
    /// node asks for the membership.
    pub fn allow_extra(&self, endpoint_id: EndpointId) {
        self.write().extra_allowed.insert(endpoint_id);
    }

    pub fn is_allowed(&self, endpoint_id: &EndpointId) -> bool {
        let inner = self.read();
        inner.by_endpoint.contains_key(endpoint_id) || inner.extra_allowed.contains(endpoint_id)
    }

    /// The Raft id a node id belongs to, if it is a member.
    pub fn raft_id_of(&self, endpoint_id: &EndpointId) -> Option<u64> {
        self.read().by_endpoint.get(endpoint_id).copied()
    }

    pub fn addr_of(&self, raft_id: u64) -> Option<PeerAddr> {
        self.read().members.get(&raft_id).map(|m| m.addr.clone())
    }

    pub fn members(&self) -> BTreeMap<u64, PeerAddr> {
        self.read()
            .members
            .iter()
            .map(|(id, m)| (*id, m.addr.clone()))
            .collect()
    }

    /// Record that a frame from or to `raft_id` just went through.
    pub fn touch(&self, raft_id: u64) {
        if let Some(member) = self.write().members.get_mut(&raft_id) {
            member.last_contact = Some(Instant::now());
        }
    }

    /// Milliseconds since the last frame exchanged with `raft_id`.
    pub fn last_contact_ms(&self, raft_id: u64) -> Option<u64> {
        self.read()
            .members
            .get(&raft_id)?
            .last_contact
            .map(|t| t.elapsed().as_millis() as u64)
    }
}

/// Refuses non-members right after the TLS handshake, before any stream is
/// opened or any frame read.
#[derive(Debug, Clone)]
pub struct AllowlistHook {
    directory: PeerDirectory,
}

impl AllowlistHook {
    pub fn new(directory: PeerDirectory) -> Self {
        AllowlistHook { directory }
    }
}

impl EndpointHooks for AllowlistHook {
    async fn after_handshake<'a>(&'a self, conn: &'a Connection) -> AfterHandshakeOutcome {
        let remote = conn.remote_id();
        if self.directory.is_allowed(&remote) {
            AfterHandshakeOutcome::accept()
        } else {
            tracing::warn!(node_id = %remote.fmt_short(), "refusing a node that is not a member");
            AfterHandshakeOutcome::Reject {
                error_code: VarInt::from_u32(CLOSE_NOT_ALLOWED),
                reason: b"not a member of this cluster".to_vec(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_directory_allows_nobody_and_membership_is_replaced() {
        let directory = PeerDirectory::new();
        let a = iroh::SecretKey::generate().public();
        let b = iroh::SecretKey::generate().public();
        assert!(!directory.is_allowed(&a));
        let mut members = BTreeMap::new();
        members.insert(1, PeerAddr::new(a, []));
        directory.set_members(&members);
        assert!(directory.is_allowed(&a));
        assert_eq!(directory.raft_id_of(&a), Some(1));
        assert!(!directory.is_allowed(&b));
        directory.set_members(&BTreeMap::new());
        assert!(!directory.is_allowed(&a), "a removed member is refused");
        directory.allow_extra(b);
        assert!(directory.is_allowed(&b));
        assert_eq!(directory.raft_id_of(&b), None, "extra ids are not members");
    }
}
