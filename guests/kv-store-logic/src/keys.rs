//! Where the guest keeps its bookkeeping: hidden keys (first byte `0xFF`,
//! which UTF-8 text never contains, so no user key collides with them and
//! the host's watchers never report them), and the records stored there.
//!
//! ```text
//! key                                   value
//! <user key>                            the value (as before revisions)
//! FF "kv/m/" <user key>                 Meta: format 1, create, mod, version, lease (u64 BE each)
//! FF "kv/l/" <lease id u64 BE>          Lease: format 1, ttl s, expires at ms, keys (u64 BE each)
//! FF "kv/k/" <lease id> <user key>      ""   (the lease's keys)
//! FF "kv/e/" <expires ms u64 BE> <id>   ""   (the expiry index, soonest first)
//! FF "kv/hidden-keys"                   u64 BE: how many hidden keys exist, itself included
//! FF "timer"                            u64 BE: the soonest expiry (the host's timer, see the SDK)
//! ```

use iroh_raft_store_guest::KvStore;

/// Per-key metadata.
pub(crate) const META: &[u8] = b"\xffkv/m/";
/// Lease records by id.
pub(crate) const LEASE: &[u8] = b"\xffkv/l/";
/// The keys attached to each lease.
pub(crate) const LEASE_KEY: &[u8] = b"\xffkv/k/";
/// Leases by expiry time.
pub(crate) const EXPIRY: &[u8] = b"\xffkv/e/";
/// The number of hidden keys, so `count` can report only the user's.
pub(crate) const HIDDEN_COUNT: &[u8] = b"\xffkv/hidden-keys";

/// The version byte in front of each record, for a later format change.
const FORMAT: u8 = 1;

pub(crate) fn join(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

pub(crate) fn meta_key(key: &[u8]) -> Vec<u8> {
    join(META, &[key])
}

pub(crate) fn lease_key(id: u64) -> Vec<u8> {
    join(LEASE, &[&id.to_be_bytes()])
}

pub(crate) fn lease_member_prefix(id: u64) -> Vec<u8> {
    join(LEASE_KEY, &[&id.to_be_bytes()])
}

pub(crate) fn lease_member_key(id: u64, key: &[u8]) -> Vec<u8> {
    join(LEASE_KEY, &[&id.to_be_bytes(), key])
}

pub(crate) fn expiry_key(expires_at_ms: u64, id: u64) -> Vec<u8> {
    join(EXPIRY, &[&expires_at_ms.to_be_bytes(), &id.to_be_bytes()])
}

/// `(expires_at_ms, id)` of an expiry index key.
pub(crate) fn parse_expiry_key(key: &[u8]) -> Option<(u64, u64)> {
    let rest = key.strip_prefix(EXPIRY)?;
    let (at, id) = rest.split_at_checked(8)?;
    Some((be_u64(at)?, be_u64(id)?))
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Four big-endian `u64`s behind the format byte.
fn encode4(fields: [u64; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(33);
    out.push(FORMAT);
    for field in fields {
        out.extend_from_slice(&field.to_be_bytes());
    }
    out
}

fn decode4(bytes: &[u8]) -> Option<[u64; 4]> {
    let (&format, rest) = bytes.split_first()?;
    if format != FORMAT || rest.len() != 32 {
        return None;
    }
    let mut fields = [0u64; 4];
    for (field, chunk) in fields.iter_mut().zip(rest.chunks_exact(8)) {
        *field = be_u64(chunk)?;
    }
    Some(fields)
}

/// What a user key carries besides its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Index of the entry that created the key (0: written before revisions).
    pub create_revision: u64,
    /// Index of the entry that last wrote it (0: written before revisions).
    pub mod_revision: u64,
    /// Writes since it was created (1 after the creating write).
    pub version: u64,
    /// The lease it is attached to (0: none).
    pub lease: u64,
}

impl Meta {
    /// What a key written by a kv-store without revisions reports.
    pub const LEGACY: Meta = Meta {
        create_revision: 0,
        mod_revision: 0,
        version: 1,
        lease: 0,
    };

    fn encode(&self) -> Vec<u8> {
        encode4([
            self.create_revision,
            self.mod_revision,
            self.version,
            self.lease,
        ])
    }
}

/// A lease: a TTL and the time it runs out, shared by the keys attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub ttl_secs: u64,
    pub expires_at_ms: u64,
    /// How many keys are attached.
    pub keys: u64,
}

impl Lease {
    fn encode(&self) -> Vec<u8> {
        encode4([self.ttl_secs, self.expires_at_ms, self.keys, 0])
    }
}

/// The metadata of a present key: its record, or [`Meta::LEGACY`] for a
/// key written before revisions. `None` if the key is absent.
pub(crate) fn read_meta(store: &impl KvStore, key: &[u8]) -> Option<Meta> {
    match store.get(&meta_key(key)).as_deref().and_then(decode4) {
        Some([create_revision, mod_revision, version, lease]) => Some(Meta {
            create_revision,
            mod_revision,
            version,
            lease,
        }),
        None => store.exists(key).then_some(Meta::LEGACY),
    }
}

pub(crate) fn write_meta(
    store: &mut impl KvStore,
    key: &[u8],
    meta: &Meta,
) -> Result<(), iroh_raft_store_guest::StoreError> {
    store.set(&meta_key(key), &meta.encode())
}

pub(crate) fn read_lease(store: &impl KvStore, id: u64) -> Option<Lease> {
    let [ttl_secs, expires_at_ms, keys, _] = decode4(&store.get(&lease_key(id))?)?;
    Some(Lease {
        ttl_secs,
        expires_at_ms,
        keys,
    })
}

pub(crate) fn write_lease(
    store: &mut impl KvStore,
    id: u64,
    lease: &Lease,
) -> Result<(), iroh_raft_store_guest::StoreError> {
    store.set(&lease_key(id), &lease.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_records_round_trip_and_keys_sort_by_time() {
        let meta = Meta {
            create_revision: 3,
            mod_revision: 9,
            version: 4,
            lease: 7,
        };
        assert_eq!(decode4(&meta.encode()), Some([3, 9, 4, 7]));
        assert_eq!(decode4(b"\x02garbage"), None);
        assert!(expiry_key(999, 5) < expiry_key(1_000, 1));
        assert_eq!(parse_expiry_key(&expiry_key(1_000, 42)), Some((1_000, 42)));
        for key in [META, LEASE, LEASE_KEY, EXPIRY, HIDDEN_COUNT] {
            assert!(iroh_raft_store_guest::is_hidden(key));
        }
    }
}
