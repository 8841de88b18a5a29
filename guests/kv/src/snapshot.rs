//! The snapshot encoding of the key-value store.
//!
//! Version 1, all integers little-endian:
//!
//! ```text
//! magic     4 bytes   b"IRKV"
//! version   u8        1
//! count     u64       number of entries
//! count × { key_len u32, key (UTF-8), value_len u32, value (UTF-8) }
//! ```
//!
//! Entries are in strictly ascending key order, so equal stores encode to
//! equal bytes. Decoding accepts exactly the canonical encoding of a valid
//! store and rejects everything else with an error (never a panic): bad magic
//! or version, truncation, trailing bytes, invalid UTF-8, keys or values over
//! the limits, keys that are empty or contain whitespace, and keys out of
//! order or repeated.

use std::collections::BTreeMap;

use crate::command::{MAX_KEY_BYTES, MAX_VALUE_BYTES, validate_key, validate_value};
use crate::key::Key;
use crate::store::Store;

/// Identifies a key-value snapshot (and not, say, a counter's).
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"IRKV";

/// The format version written by [`encode`].
pub const SNAPSHOT_VERSION: u8 = 1;

/// Serialize the store.
pub fn encode(store: &Store) -> Vec<u8> {
    let entries = store.entries();
    let payload_bytes: usize = entries
        .iter()
        .map(|(key, value)| 2 * size_of::<u32>() + key.as_str().len() + value.len())
        .sum();
    let mut bytes = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 1 + size_of::<u64>() + payload_bytes);
    bytes.extend_from_slice(&SNAPSHOT_MAGIC);
    bytes.push(SNAPSHOT_VERSION);
    let count = u64::try_from(entries.len()).expect("usize fits in u64 on wasm32 and x86_64");
    bytes.extend_from_slice(&count.to_le_bytes());
    for (key, value) in entries {
        put_bytes(&mut bytes, key.as_str().as_bytes());
        put_bytes(&mut bytes, value.as_bytes());
    }
    bytes
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every stored key and value passed the limits, both far below u32::MAX.
    let len = u32::try_from(bytes.len()).expect("keys and values are at most MAX_VALUE_BYTES");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Deserialize a snapshot produced by [`encode`], validating everything.
pub fn decode(bytes: &[u8]) -> Result<Store, String> {
    let mut reader = Reader { rest: bytes };
    let magic = reader.take(SNAPSHOT_MAGIC.len(), "magic")?;
    if magic != SNAPSHOT_MAGIC {
        return Err(format!(
            "not a kv snapshot: starts with {magic:02x?}, expected {SNAPSHOT_MAGIC:02x?} (\"IRKV\")"
        ));
    }
    let version = reader.u8("version")?;
    if version != SNAPSHOT_VERSION {
        return Err(format!(
            "unsupported kv snapshot version {version} (this guest reads version {SNAPSHOT_VERSION})"
        ));
    }
    let count = reader.u64("entry count")?;

    let mut entries = BTreeMap::new();
    let mut previous_key: Option<&str> = None;
    // Each entry consumes at least 8 bytes or fails, so a forged huge count
    // ends at the first truncated entry; nothing is preallocated from it.
    for index in 0..count {
        let key = reader.string(MAX_KEY_BYTES, "key", index)?;
        validate_key(key).map_err(|error| format!("entry {index}: {error}"))?;
        if previous_key.is_some_and(|previous| previous >= key) {
            return Err(format!(
                "entry {index}: keys are not in strictly ascending order"
            ));
        }
        let value = reader.string(MAX_VALUE_BYTES, "value", index)?;
        validate_value(value).map_err(|error| format!("entry {index}: {error}"))?;
        entries.insert(Key::from(key), value.to_owned());
        previous_key = Some(key);
    }
    if !reader.rest.is_empty() {
        return Err(format!(
            "{} unexpected bytes after the last entry",
            reader.rest.len()
        ));
    }
    Ok(Store::from_entries(entries))
}

/// A cursor over the snapshot bytes whose reads fail instead of panicking.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        if self.rest.len() < len {
            return Err(format!(
                "snapshot truncated: {what} needs {len} bytes, {} left",
                self.rest.len()
            ));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let bytes = self.take(N, what)?;
        Ok(bytes.try_into().expect("take returned exactly N bytes"))
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        self.array::<1>(what).map(|[byte]| byte)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, max_bytes: usize, what: &str, index: u64) -> Result<&'a str, String> {
        let len = self.array(what).map(u32::from_le_bytes)?;
        // A length that does not fit usize is over the limit anyway.
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > max_bytes {
            return Err(format!(
                "entry {index}: {what} length {len} exceeds the limit of {max_bytes} bytes"
            ));
        }
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map_err(|error| format!("entry {index}: {what} is not UTF-8: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    fn store(pairs: &[(&str, &str)]) -> Store {
        let mut store = Store::default();
        for &(key, value) in pairs {
            store
                .execute(Command::Put { key, value })
                .expect("valid put");
        }
        store
    }

    /// Hand-encode entries, in the given order, for malformed-input tests.
    fn raw(count: u64, entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut bytes = SNAPSHOT_MAGIC.to_vec();
        bytes.push(SNAPSHOT_VERSION);
        bytes.extend_from_slice(&count.to_le_bytes());
        for (key, value) in entries {
            put_bytes(&mut bytes, key);
            put_bytes(&mut bytes, value);
        }
        bytes
    }

    #[test]
    fn t20_empty_store_layout() {
        let bytes = encode(&Store::default());
        assert_eq!(bytes, [b'I', b'R', b'K', b'V', 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode(&bytes), Ok(Store::default()));
    }

    #[test]
    fn t20_one_entry_layout() {
        let bytes = encode(&store(&[("k", "vv")]));
        let mut expected = raw(1, &[]);
        expected.extend_from_slice(&[1, 0, 0, 0, b'k', 2, 0, 0, 0, b'v', b'v']);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn t20_round_trips() {
        let max_key = "k".repeat(MAX_KEY_BYTES);
        let max_value = "v".repeat(MAX_VALUE_BYTES);
        for original in [
            Store::default(),
            store(&[("a", "")]),
            store(&[("b", "2"), ("a", "1 with spaces"), ("ключ", "значение\n")]),
            store(&[(max_key.as_str(), max_value.as_str())]),
        ] {
            let bytes = encode(&original);
            let decoded = decode(&bytes).expect("own snapshot decodes");
            assert_eq!(decoded, original);
            assert_eq!(encode(&decoded), bytes, "re-encoding is identical");
        }
    }

    #[test]
    fn t20_encoding_does_not_depend_on_insertion_order() {
        let forward = store(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let backward = store(&[("c", "3"), ("b", "2"), ("a", "1")]);
        assert_eq!(encode(&forward), encode(&backward));
    }

    #[test]
    fn t20_rejects_malformed_snapshots() {
        let good = encode(&store(&[("a", "1"), ("b", "2")]));
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        let mut bad_version = good.clone();
        bad_version[4] = 2;
        let mut trailing = good.clone();
        trailing.push(0);
        let long_key = vec![b'k'; MAX_KEY_BYTES + 1];

        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("bad magic", bad_magic),
            ("bad version", bad_version),
            ("trailing bytes", trailing),
            ("counter snapshot", vec![1, 7, 0, 0, 0, 0, 0, 0, 0]),
            ("count without entries", raw(1, &[])),
            ("huge count", raw(u64::MAX, &[(b"a", b"1")])),
            (
                "fewer entries than count",
                raw(3, &[(b"a", b"1"), (b"b", b"2")]),
            ),
            ("empty key", raw(1, &[(b"", b"1")])),
            ("key with space", raw(1, &[(b"a b", b"1")])),
            ("key with newline", raw(1, &[(b"a\nb", b"1")])),
            ("key too long", raw(1, &[(&long_key, b"1")])),
            ("key not UTF-8", raw(1, &[(&[0xff], b"1")])),
            ("value not UTF-8", raw(1, &[(b"a", &[0xc3])])),
            ("duplicate keys", raw(2, &[(b"a", b"1"), (b"a", b"2")])),
            ("descending keys", raw(2, &[(b"b", b"1"), (b"a", b"2")])),
        ];
        for (name, bytes) in cases {
            assert!(decode(&bytes).is_err(), "{name} should be rejected");
        }

        let mut forged_len = raw(1, &[]);
        forged_len.extend_from_slice(&u32::MAX.to_le_bytes());
        let error = decode(&forged_len).expect_err("forged length");
        assert!(error.contains("limit"), "{error}");

        let mut forged_value_len = raw(1, &[]);
        put_bytes(&mut forged_value_len, b"a");
        let too_long = u32::try_from(MAX_VALUE_BYTES + 1).expect("small");
        forged_value_len.extend_from_slice(&too_long.to_le_bytes());
        assert!(decode(&forged_value_len).is_err());
    }

    #[test]
    fn t20_every_truncation_is_rejected() {
        let good = encode(&store(&[("alpha", "one"), ("beta", "two words")]));
        for len in 0..good.len() {
            assert!(decode(&good[..len]).is_err(), "prefix of {len} bytes");
        }
    }

    #[test]
    fn t20_pseudo_random_garbage_never_panics() {
        // A fixed-seed xorshift keeps the test deterministic.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let good = encode(&store(&[("alpha", "one"), ("beta", "two")]));
        for _ in 0..10_000 {
            let mut bytes = good.clone();
            let flips = next() % 4 + 1;
            for _ in 0..flips {
                let at = usize::try_from(next() % bytes.len() as u64).expect("small");
                bytes[at] = next().to_le_bytes()[0];
            }
            let len = usize::try_from(next() % (bytes.len() as u64 + 1)).expect("small");
            if let Ok(decoded) = decode(&bytes[..len]) {
                assert_eq!(
                    encode(&decoded),
                    bytes[..len],
                    "only canonical input decodes"
                );
            }
        }
    }
}
