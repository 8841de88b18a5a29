//! Version 2 of the `kv-store` guest: the same commands, plus a `migrate`
//! hook, to test upgrades of store-backed guests.
//!
//! Migrating from any earlier guest writes the key `_migrated` (`from
//! <name> <version> at <index>: <n> keys`), in the upgrade's transaction.
//! It refuses (and so fails the upgrade on every replica, leaving the old
//! guest and the store untouched) when the key `_block_migration` exists,
//! after having written `_migrated`: the failed upgrade must discard it.

use iroh_raft_store_guest::{EntryMeta, GuestInfo, KvStore, StoreGuest, describe};

struct KvStoreV2;

impl StoreGuest for KvStoreV2 {
    const NAME: &'static str = "kv-store";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn apply(store: &mut impl KvStore, meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        kv_store_logic::apply(store, meta, command).map(String::into_bytes)
    }

    fn query(store: &impl KvStore, request: &[u8]) -> Result<Vec<u8>, String> {
        kv_store_logic::query(store, request).map(String::into_bytes)
    }

    fn migrate(
        store: &mut impl KvStore,
        meta: EntryMeta,
        previous: &GuestInfo,
    ) -> Result<(), String> {
        let keys = kv_store_logic::count(store);
        let note = format!(
            "from {} {} at {}: {keys} keys",
            previous.name, previous.version, meta.index
        );
        store
            .set(b"_migrated", note.as_bytes())
            .map_err(|e| describe(&e))?;
        if store.exists(b"_block_migration") {
            return Err("migration blocked by the key _block_migration".to_owned());
        }
        Ok(())
    }
}

iroh_raft_store_guest::export_store_guest!(KvStoreV2);
