//! One `apply`'s view of the store: counts the hidden keys it creates and
//! deletes (so `count` can leave them out), carries the entry's budget of
//! expiry work, and keeps the host's timer on the soonest expiry.

use iroh_raft_store_guest::{EntryMeta, KvStore, StoreError, StoreSize, is_hidden, set_timer};

use crate::keys::{EXPIRY, HIDDEN_COUNT, parse_expiry_key};
use crate::{MAX_EXPIRED_KEYS_PER_ENTRY, prefix_end};

/// The store during one `apply`. Every write of the logic goes through it.
pub(crate) struct Tx<'s, S: KvStore> {
    store: &'s mut S,
    pub(crate) meta: EntryMeta,
    /// Hidden keys created minus hidden keys deleted so far.
    hidden_delta: i64,
    /// Keys a lease revocation (expiry or `lease revoke`) may still delete
    /// in this entry.
    pub(crate) revoke_budget: u64,
    /// The expiry index changed: the timer must follow it.
    pub(crate) leases_changed: bool,
    /// The lease a `ttl=` option granted in this entry (id = the entry's
    /// index) and its TTL, so several `ttl=` puts of one `txn` share it.
    pub(crate) granted: Option<u64>,
}

impl<'s, S: KvStore> Tx<'s, S> {
    pub(crate) fn new(store: &'s mut S, meta: EntryMeta) -> Self {
        Tx {
            store,
            meta,
            hidden_delta: 0,
            revoke_budget: MAX_EXPIRED_KEYS_PER_ENTRY,
            leases_changed: false,
            granted: None,
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.meta.timestamp_ms
    }

    pub(crate) fn index(&self) -> u64 {
        self.meta.index
    }

    /// Write the hidden key count and the timer.
    pub(crate) fn finish(mut self) -> Result<(), StoreError> {
        if self.leases_changed {
            let soonest = self
                .store
                .scan_keys(EXPIRY, prefix_end(EXPIRY).as_deref(), 1)
                .first()
                .and_then(|key| parse_expiry_key(key))
                // A lease still due (more keys than the entry's budget)
                // fires at this entry's time: a due time that moves makes
                // the host call again at once rather than after its retry
                // interval.
                .map(|(at, _)| at.max(self.meta.timestamp_ms));
            // Through `self`, so the timer key is counted as hidden too.
            set_timer(&mut self, soonest)?;
        }
        if self.hidden_delta != 0 {
            let stored = self.store.get(HIDDEN_COUNT);
            let before = stored
                .as_deref()
                .and_then(|v| <[u8; 8]>::try_from(v).ok())
                .map_or(0, u64::from_be_bytes);
            // The counter counts itself once it exists.
            let itself = u64::from(stored.is_none());
            // Saturating: a count that went wrong (a hidden key written
            // behind the logic's back) must not trap every later entry.
            let after = before
                .saturating_add_signed(self.hidden_delta)
                .saturating_add(itself);
            self.store.set(HIDDEN_COUNT, &after.to_be_bytes())?;
        }
        Ok(())
    }
}

/// How many hidden keys the store holds (the counter included).
pub(crate) fn hidden_keys(store: &impl KvStore) -> u64 {
    store
        .get(HIDDEN_COUNT)
        .and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map_or(0, u64::from_be_bytes)
}

impl<S: KvStore> KvStore for Tx<'_, S> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.store.get(key)
    }
    fn exists(&self, key: &[u8]) -> bool {
        self.store.exists(key)
    }
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let created = is_hidden(key) && !self.store.exists(key);
        self.store.set(key, value)?;
        if created {
            self.hidden_delta += 1;
        }
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<bool, StoreError> {
        let existed = self.store.delete(key)?;
        if existed && is_hidden(key) {
            self.hidden_delta -= 1;
        }
        Ok(existed)
    }
    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.store.scan(start, end, limit)
    }
    fn scan_keys(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<Vec<u8>> {
        self.store.scan_keys(start, end, limit)
    }
    fn scan_prefix(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.store.scan_prefix(prefix, start_after, limit)
    }
    fn size(&self) -> StoreSize {
        self.store.size()
    }
}
