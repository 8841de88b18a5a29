//! {{name}}: a replicated key-value map, a store-backed iroh-raft guest.
//!
//! Commands (UTF-8): `set KEY VALUE` (returns `OK`), `del KEY` (returns
//! `1` if the key was there, else `0`). Queries: `get KEY` returns the
//! value. The state lives in the host's replicated store (keys and values
//! as their bytes), so it has no `snapshot`: the host moves the store. A
//! later version converts the store in `migrate`.

use iroh_raft_store_guest::{EntryMeta, GuestInfo, KvStore, StoreGuest, describe};

struct Map;

impl StoreGuest for Map {
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn apply(store: &mut impl KvStore, _meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        let command = std::str::from_utf8(command).map_err(|_| "the command is not UTF-8")?;
        // Writes commit only if this returns `Ok`.
        match command.split_once(' ') {
            Some(("set", rest)) => {
                let (key, value) = rest.split_once(' ').ok_or("usage: set KEY VALUE")?;
                store.set(key.as_bytes(), value.as_bytes()).map_err(|e| describe(&e))?;
                Ok(b"OK".to_vec())
            }
            Some(("del", key)) => {
                let existed = store.delete(key.as_bytes()).map_err(|e| describe(&e))?;
                Ok(if existed { b"1".to_vec() } else { b"0".to_vec() })
            }
            _ => Err(format!("unknown command {command:?}: try `set K V` or `del K`")),
        }
    }

    fn query(store: &impl KvStore, request: &[u8]) -> Result<Vec<u8>, String> {
        match request.strip_prefix(b"get ") {
            Some(key) => store.get(key).ok_or_else(|| "no such key".to_string()),
            None => Err("unknown query: try `get KEY`".into()),
        }
    }

    fn migrate(
        _store: &mut impl KvStore,
        _meta: EntryMeta,
        _previous: &GuestInfo,
    ) -> Result<(), String> {
        // Version 0.1.0 is the first: nothing to convert yet.
        Ok(())
    }
}

iroh_raft_store_guest::export_store_guest!(Map);

// What a node suggests in its start banner.
iroh_raft_store_guest::guest_examples!("propose set greeting hello", "query get greeting");

#[cfg(test)]
mod tests {
    use super::*;
    use iroh_raft_store_guest::MemoryStore;

    const META: EntryMeta = EntryMeta {
        index: 1,
        term: 1,
        timestamp_ms: 0,
    };

    #[test]
    fn sets_gets_and_deletes() {
        let mut store = MemoryStore::default();
        assert_eq!(Map::apply(&mut store, META, b"set a 1"), Ok(b"OK".to_vec()));
        assert_eq!(Map::query(&store, b"get a"), Ok(b"1".to_vec()));
        assert!(Map::apply(&mut store, META, b"frob").is_err());
        assert_eq!(Map::apply(&mut store, META, b"del a"), Ok(b"1".to_vec()));
        assert_eq!(Map::apply(&mut store, META, b"del a"), Ok(b"0".to_vec()));
        assert!(Map::query(&store, b"get a").is_err());
    }
}
