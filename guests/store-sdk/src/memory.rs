//! A store in memory with the host store's semantics, for native tests.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::{KvStore, StoreError, StoreSize};

/// The host's limits (`store-limits`), mirrored for native tests.
const MAX_KEY_BYTES: usize = 4 * 1024;
const MAX_VALUE_BYTES: usize = 1024 * 1024;
const MAX_SCAN_ITEMS: u32 = 10_000;
const MAX_SCAN_BYTES: usize = 4 * 1024 * 1024;

/// A [`KvStore`] in a `BTreeMap`: byte-wise order, the same limits and
/// errors as the host's store. Not transactional (the host is); a test
/// that needs "an `Err` discards the writes" clones the store first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStore {
    pub pairs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Refuse writes, like the host during a query.
    pub read_only: bool,
}

impl MemoryStore {
    fn cut<T>(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: u32,
        size: impl Fn(&[u8], &[u8]) -> usize,
        take: impl Fn(&[u8], &[u8]) -> T,
    ) -> Vec<T> {
        let upper = end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_vec()));
        if end.is_some_and(|e| e <= start) {
            return Vec::new();
        }
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        for (key, value) in self
            .pairs
            .range::<Vec<u8>, _>((Bound::Included(start.to_vec()), upper))
        {
            let pair_bytes = size(key, value);
            if out.len() == limit.min(MAX_SCAN_ITEMS) as usize
                || (!out.is_empty() && bytes + pair_bytes > MAX_SCAN_BYTES)
            {
                break;
            }
            bytes += pair_bytes;
            out.push(take(key, value));
        }
        out
    }
}

fn check_key(key: &[u8]) -> Result<(), StoreError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::KeyTooLarge(key.len() as u32));
    }
    Ok(())
}

/// The exclusive end of the keys starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl KvStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.pairs.get(key).cloned()
    }
    fn exists(&self, key: &[u8]) -> bool {
        self.pairs.contains_key(key)
    }
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(StoreError::ValueTooLarge(value.len() as u32));
        }
        self.pairs.insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<bool, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        check_key(key)?;
        Ok(self.pairs.remove(key).is_some())
    }
    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.cut(
            start,
            end,
            limit,
            |k, v| k.len() + v.len(),
            |k, v| (k.to_vec(), v.to_vec()),
        )
    }
    fn scan_keys(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<Vec<u8>> {
        self.cut(start, end, limit, |k, _| k.len(), |k, _| k.to_vec())
    }
    fn scan_prefix(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let start = match start_after {
            Some(after) if after >= prefix => {
                let mut start = after.to_vec();
                start.push(0);
                start
            }
            _ => prefix.to_vec(),
        };
        self.scan(&start, prefix_end(prefix).as_deref(), limit)
    }
    fn size(&self) -> StoreSize {
        StoreSize {
            keys: self.pairs.len() as u64,
            bytes: self
                .pairs
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum(),
        }
    }
}
