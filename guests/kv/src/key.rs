//! The store's keys, ordered as their bytes (exactly as `str` orders), but
//! compared eight bytes at a time.
//!
//! A `BTreeMap<String, _>` compares keys with `memcmp`, which on wasm is a
//! byte-by-byte loop in wasi-libc, and every byte costs fuel-metered
//! instructions: with tens of thousands of keys that share a prefix, the
//! comparisons were a third of the CPU this guest spent applying a `put`.
//! The order is the same, so `list`, the snapshot bytes and every result are
//! unchanged.

use std::cmp::Ordering;

/// A key of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Key {
    fn from(key: &str) -> Self {
        Key(key.to_owned())
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_bytes(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Lexicographic byte order (what `<[u8]>::cmp` gives), a big-endian word
/// of eight bytes at a time while both have that many.
pub fn compare_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let mut a_words = a.chunks_exact(8);
    let mut b_words = b.chunks_exact(8);
    for (x, y) in (&mut a_words).zip(&mut b_words) {
        let (x, y) = (word(x), word(y));
        if x != y {
            return x.cmp(&y);
        }
    }
    // The words agreed: compare what is left byte by byte (fewer than
    // eight bytes of at least one of them), then the lengths.
    let done = a.len().min(b.len()) / 8 * 8;
    let (a_rest, b_rest) = (&a[done..], &b[done..]);
    for (x, y) in a_rest.iter().zip(b_rest) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

fn word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_be_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pair from a set of keys with shared prefixes, every length
    /// around the word size, and bytes above 0x7f: the same order as `str`.
    #[test]
    fn orders_exactly_as_str() {
        let mut keys: Vec<String> = vec![
            String::new(),
            "a".into(),
            "key-0000000001".into(),
            "key-0000000010".into(),
            "key-00000000".into(),
            "key-000000001".into(),
            "zz".into(),
            "é".into(),
            "e\u{7f}".into(),
            "ü-key".into(),
        ];
        for length in 0..20 {
            keys.push("k".repeat(length));
            keys.push(format!("{}a", "k".repeat(length)));
            keys.push(format!("{}~", "k".repeat(length)));
        }
        for a in &keys {
            for b in &keys {
                assert_eq!(
                    compare_bytes(a.as_bytes(), b.as_bytes()),
                    a.as_str().cmp(b.as_str()),
                    "{a:?} vs {b:?}"
                );
                assert_eq!(Key::from(a.as_str()).cmp(&Key::from(b.as_str())), a.cmp(b));
            }
        }
    }
}
