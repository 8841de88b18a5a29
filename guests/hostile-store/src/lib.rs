//! `hostile-store`: the `kv-store` guest plus commands that write and then
//! fail, to test that the host's per-entry transactions discard the writes
//! of a failed entry, and that store calls are charged fuel.
//!
//! | command               | what it does                                        |
//! |-----------------------|-----------------------------------------------------|
//! | `incr <key>`          | adds 1 to the decimal number at `key` (0 if absent) |
//! | `put-then-trap <k> <v>` | sets `k`, then panics (a trap)                    |
//! | `put-then-err <k> <v>`  | sets `k`, then returns an error                   |
//! | `put-then-loop <k> <v>` | sets `k`, then loops until its fuel runs out      |
//! | `scan-forever`        | scans the whole store again and again (fuel)        |
//! | anything else         | as `kv-store`                                       |

use iroh_raft_store_guest::{EntryMeta, KvStore, StoreGuest, describe};

struct HostileStore;

fn put(store: &mut impl KvStore, rest: &str) -> Result<(), String> {
    let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
    store
        .set(key.as_bytes(), value.as_bytes())
        .map_err(|e| describe(&e))
}

impl StoreGuest for HostileStore {
    const NAME: &'static str = "hostile-store";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn apply(store: &mut impl KvStore, meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(command).map_err(|e| e.to_string())?;
        if let Some(key) = text.strip_prefix("incr ") {
            let now: u64 = store
                .get(key.as_bytes())
                .map(|v| String::from_utf8_lossy(&v).parse().unwrap_or(0))
                .unwrap_or(0);
            let next = (now + 1).to_string();
            store
                .set(key.as_bytes(), next.as_bytes())
                .map_err(|e| describe(&e))?;
            return Ok(next.into_bytes());
        }
        if let Some(rest) = text.strip_prefix("put-then-trap ") {
            put(store, rest)?;
            panic!("trapping after a write");
        }
        if let Some(rest) = text.strip_prefix("put-then-err ") {
            put(store, rest)?;
            return Err("refusing after a write".to_owned());
        }
        if let Some(rest) = text.strip_prefix("put-then-loop ") {
            put(store, rest)?;
            let mut spins = 0u64;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        if text == "scan-forever" {
            let mut seen = 0usize;
            loop {
                seen = std::hint::black_box(seen + store.scan(b"", None, u32::MAX).len());
            }
        }
        kv_store_logic::apply(store, meta, command).map(String::into_bytes)
    }

    fn query(store: &impl KvStore, request: &[u8]) -> Result<Vec<u8>, String> {
        kv_store_logic::query(store, request).map(String::into_bytes)
    }
}

iroh_raft_store_guest::export_store_guest!(HostileStore);
