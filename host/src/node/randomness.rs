//! Random numbers that need not be secret: a forwarding node's incarnation,
//! the shift of a campaigning node's ticks.

use std::hash::{BuildHasher, Hasher};

/// A number no other call, in this process or another, is likely to
/// return: std's per-process random hasher seed, mixed with the clock and
/// the process id. Not for secrets.
pub(crate) fn non_secret_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_nanos())
            .unwrap_or_default(),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}
