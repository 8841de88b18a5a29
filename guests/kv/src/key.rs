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

/// Lexicographic byte order (what `<[u8]>::cmp` gives), eight bytes at a
/// time while both have that many: the first word that differs is found
/// with one comparison per word, and its first differing byte with one
/// `ctz` (words are read little-endian, so the lowest set bit of `x ^ y`
/// is in the first byte that differs; wasm has no byte swap to read them
/// big-endian cheaply).
pub fn compare_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let common = a.len().min(b.len());
    let (a_head, b_head) = (&a[..common], &b[..common]);
    let mut offset = 0;
    for (x, y) in a_head.chunks_exact(8).zip(b_head.chunks_exact(8)) {
        let (x, y) = (word(x), word(y));
        if x != y {
            let first = ((x ^ y).trailing_zeros() / 8) as usize;
            return a_head[offset + first].cmp(&b_head[offset + first]);
        }
        offset += 8;
    }
    for (x, y) in a_head[offset..].iter().zip(&b_head[offset..]) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

fn word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two byte strings that differ in one byte, at every position of the
    /// first two words and the tail, with byte values on both sides of
    /// 0x80 (the comparison is unsigned) and the other bytes either equal
    /// or larger: `compare_bytes` finds the first difference as slices do.
    #[test]
    fn first_difference_anywhere_orders_as_slices() {
        let pairs = [(0x00u8, 0x01u8), (0x7f, 0x80), (0x61, 0xff), (0xfe, 0xff)];
        for length in 1..=20 {
            for position in 0..length {
                for (low, high) in pairs {
                    for filler in [0x00u8, 0x41, 0xff] {
                        let mut a = vec![filler; length];
                        let mut b = vec![filler; length];
                        a[position] = low;
                        b[position] = high;
                        // Later bytes that would order the other way.
                        for later in position + 1..length {
                            a[later] = 0xff;
                            b[later] = 0x00;
                        }
                        for (x, y) in [(&a, &b), (&b, &a), (&a, &a)] {
                            assert_eq!(
                                compare_bytes(x, y),
                                x.as_slice().cmp(y.as_slice()),
                                "{x:?} vs {y:?}"
                            );
                        }
                        let shorter = &a[..position];
                        assert_eq!(compare_bytes(shorter, &a), Ordering::Less);
                        assert_eq!(compare_bytes(&a, shorter), Ordering::Greater);
                    }
                }
            }
        }
    }

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
