//! The `kv-store` guest: the `kv` guest's commands (`put`, `get`, `delete`,
//! `list`, `count`) with the state in the host's replicated store, so it is
//! bounded by disk rather than by the guest's memory cap, plus revisions,
//! `cas`, `txn` and leases (the grammar and answers are in
//! `kv-store-logic`).

use iroh_raft_store_guest::{EntryMeta, KvStore, StoreGuest};

struct KvStoreGuest;

impl StoreGuest for KvStoreGuest {
    const NAME: &'static str = "kv-store";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn apply(store: &mut impl KvStore, meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        kv_store_logic::apply(store, meta, command).map(String::into_bytes)
    }

    fn query(store: &impl KvStore, request: &[u8]) -> Result<Vec<u8>, String> {
        kv_store_logic::query(store, request).map(String::into_bytes)
    }
}

iroh_raft_store_guest::export_store_guest!(KvStoreGuest);
iroh_raft_store_guest::guest_examples!(
    "propose put greeting hello",
    "query get greeting",
    "query list"
);
