//! The `kv-store` guest: the `kv` guest's commands (`put`, `get`, `delete`,
//! `list`, `count`) with the state in the host's replicated store, so it is
//! bounded by disk rather than by the guest's memory cap.

use iroh_raft_store_guest::{EntryMeta, KvStore, StoreGuest};
use kv_command::Command;

struct KvStoreGuest;

impl StoreGuest for KvStoreGuest {
    const NAME: &'static str = "kv-store";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn apply(
        store: &mut impl KvStore,
        _meta: EntryMeta,
        command: &[u8],
    ) -> Result<Vec<u8>, String> {
        kv_store_logic::execute(store, Command::parse(command)?).map(String::into_bytes)
    }

    fn query(store: &impl KvStore, request: &[u8]) -> Result<Vec<u8>, String> {
        kv_store_logic::read(store, Command::parse(request)?).map(String::into_bytes)
    }
}

iroh_raft_store_guest::export_store_guest!(KvStoreGuest);
