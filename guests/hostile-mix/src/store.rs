//! The guest's state: an ordered string map, and its snapshot format.
//!
//! Snapshot: the magic `HMIX`, then per pair the key's and the value's
//! length (u32, little endian) followed by their UTF-8 bytes, in key order.

use std::collections::BTreeMap;

/// First bytes of every snapshot.
const MAGIC: &[u8; 4] = b"HMIX";

/// An ordered map, so a dump and a snapshot list pairs in one order
/// everywhere.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Store {
    pairs: BTreeMap<String, String>,
}

impl Store {
    pub fn put(&mut self, key: String, value: String) {
        self.pairs.insert(key, value);
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.get(key).map(String::as_str)
    }

    /// Every pair as `K=V`, one per line, in key order.
    pub fn dump(&self) -> String {
        self.pairs
            .iter()
            .map(|(key, value)| format!("{key}={value}\n"))
            .collect()
    }

    pub fn snapshot(&self) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        for (key, value) in &self.pairs {
            for field in [key, value] {
                let len = u32::try_from(field.len()).expect("commands are far below 4 GiB");
                bytes.extend_from_slice(&len.to_le_bytes());
                bytes.extend_from_slice(field.as_bytes());
            }
        }
        bytes
    }

    pub fn restore(bytes: &[u8]) -> Result<Self, String> {
        let mut rest = bytes
            .strip_prefix(MAGIC)
            .ok_or("not a hostile-mix snapshot")?;
        let mut field = || -> Result<Option<String>, String> {
            if rest.is_empty() {
                return Ok(None);
            }
            let (len, tail) = rest.split_first_chunk::<4>().ok_or("truncated snapshot")?;
            let len = u32::from_le_bytes(*len) as usize;
            if tail.len() < len {
                return Err("truncated snapshot".to_string());
            }
            let (text, tail) = tail.split_at(len);
            rest = tail;
            String::from_utf8(text.to_vec())
                .map(Some)
                .map_err(|_| "snapshot holds non-UTF-8 text".to_string())
        };
        let mut store = Store::default();
        while let Some(key) = field()? {
            let value = field()?.ok_or("snapshot ends after a key")?;
            store.put(key, value);
        }
        Ok(store)
    }
}
