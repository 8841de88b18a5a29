//! Write a store-backed iroh-raft guest: its state lives in the host's
//! replicated key-value store (`wit/v0.2.0`), not in its own memory.
//!
//! Pick this over `iroh-raft-guest` (the 0.1.0 world) when the state may
//! grow large: it is bounded by the node's disk instead of the guest's
//! memory cap, a trap or an upgrade costs nothing extra, and snapshots never
//! pass through the guest. The guest is a type without fields: every call
//! gets the store, and whatever it writes during `apply` is committed only
//! if `apply` returns `Ok` (an `Err` or a panic discards the writes, so
//! there is no "validate before mutating" rule to follow).
//!
//! ```
//! use iroh_raft_store_guest::{EntryMeta, KvStore, StoreGuest};
//!
//! /// Counts how often each word was proposed.
//! struct WordCount;
//!
//! impl StoreGuest for WordCount {
//!     const NAME: &'static str = "word-count";
//!     const VERSION: &'static str = "1.0.0";
//!
//!     fn apply(store: &mut impl KvStore, _meta: EntryMeta, word: &[u8]) -> Result<Vec<u8>, String> {
//!         let count = store.get(word).map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap_or_default()));
//!         store.set(word, &(count + 1).to_le_bytes()).map_err(|e| iroh_raft_store_guest::describe(&e))?;
//!         Ok((count + 1).to_string().into_bytes())
//!     }
//!
//!     fn query(store: &impl KvStore, word: &[u8]) -> Result<Vec<u8>, String> {
//!         let count = store.get(word).map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap_or_default()));
//!         Ok(count.to_string().into_bytes())
//!     }
//! }
//!
//! iroh_raft_store_guest::export_store_guest!(WordCount);
//! ```
//!
//! Unit-test the logic natively with [`MemoryStore`], which behaves like
//! the host's store (byte-wise key order, the same limits and errors).

/// The wit-bindgen output for `world store-guest`; [`export_store_guest!`]
/// reaches it from the guest crate, hence `pub`.
#[doc(hidden)]
#[allow(unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.2.0",
        world: "store-guest",
        pub_export_macro: true,
        export_macro_name: "export_store_guest_world",
        additional_derives: [PartialEq, Eq],
    });
}

mod memory;

use bindings::iroh_raft::state_machine::store as host;

pub use bindings::iroh_raft::state_machine::store::{StoreError, StoreLimits, StoreSize};
pub use bindings::iroh_raft::state_machine::types::{EntryMeta, GuestInfo};
pub use memory::MemoryStore;

/// A sentence saying why the store refused a call (wit-bindgen's own
/// `Display` prints the variant's debug form).
pub fn describe(error: &StoreError) -> String {
    match error {
        StoreError::KeyTooLarge(len) => format!("key of {len} bytes is too large"),
        StoreError::ValueTooLarge(len) => format!("value of {len} bytes is too large"),
        StoreError::WriteSetTooLarge => "this command writes too much".to_owned(),
        StoreError::ReadOnly => "the store is read-only in a query".to_owned(),
    }
}

/// The operations of the replicated store (see `wit/v0.2.0` for each
/// one's contract). Keys are ordered byte-wise.
pub trait KvStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    fn exists(&self, key: &[u8]) -> bool;
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Whether the key was present.
    fn delete(&mut self, key: &[u8]) -> Result<bool, StoreError>;
    /// Pairs with `start <= key < end`, ascending, cut at `limit` (and the
    /// store's scan limits).
    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)>;
    fn scan_keys(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<Vec<u8>>;
    /// Pairs whose key starts with `prefix`, after `start_after` if given.
    fn scan_prefix(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// Keys and bytes in the whole store.
    fn size(&self) -> StoreSize;
}

/// The host's store, through the component's imports. Only usable inside
/// a component the host runs (natively, use [`MemoryStore`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostStore;

impl KvStore for HostStore {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        host::get(key)
    }
    fn exists(&self, key: &[u8]) -> bool {
        host::exists(key)
    }
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        host::set(key, value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<bool, StoreError> {
        host::delete(key)
    }
    fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        host::scan(start, end, limit)
            .into_iter()
            .map(|pair| (pair.key, pair.value))
            .collect()
    }
    fn scan_keys(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<Vec<u8>> {
        host::scan_keys(start, end, limit)
    }
    fn scan_prefix(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        host::scan_prefix(prefix, start_after, limit)
            .into_iter()
            .map(|pair| (pair.key, pair.value))
            .collect()
    }
    fn size(&self) -> StoreSize {
        host::size()
    }
}

/// A store-backed replicated state machine, as a guest author sees it.
pub trait StoreGuest: 'static {
    /// A short name for status pages, e.g. `"kv-store"`.
    const NAME: &'static str;
    /// The guest's version, e.g. `"1.0.0"`.
    const VERSION: &'static str;

    /// Apply one committed command; its writes commit only if it returns
    /// `Ok`.
    fn apply(store: &mut impl KvStore, meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String>;

    /// Answer a read-only request (writes are refused with
    /// [`StoreError::ReadOnly`]).
    fn query(store: &impl KvStore, request: &[u8]) -> Result<Vec<u8>, String>;

    /// Convert the store when this version replaces `previous` in an
    /// upgrade; runs like `apply` (its writes commit only on `Ok`, and an
    /// `Err` fails the upgrade on every replica). The default changes
    /// nothing.
    fn migrate(
        _store: &mut impl KvStore,
        _meta: EntryMeta,
        _previous: &GuestInfo,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// Make `$ty` (a type implementing [`StoreGuest`]) the component's
/// `state-machine` export (0.2.0). Invoke it once, at the top level.
#[macro_export]
macro_rules! export_store_guest {
    ($ty:ty) => {
        #[allow(unsafe_code)]
        const _: () = {
            struct IrohRaftStoreGuestExport;

            impl $crate::__private::Guest for IrohRaftStoreGuestExport {
                fn info() -> $crate::GuestInfo {
                    $crate::GuestInfo {
                        name: <$ty as $crate::StoreGuest>::NAME.to_owned(),
                        version: <$ty as $crate::StoreGuest>::VERSION.to_owned(),
                    }
                }

                fn apply(
                    meta: $crate::EntryMeta,
                    command: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    <$ty as $crate::StoreGuest>::apply(&mut $crate::HostStore, meta, &command)
                }

                fn query(
                    request: ::std::vec::Vec<u8>,
                ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    <$ty as $crate::StoreGuest>::query(&$crate::HostStore, &request)
                }

                fn migrate(
                    meta: $crate::EntryMeta,
                    previous: $crate::GuestInfo,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    <$ty as $crate::StoreGuest>::migrate(&mut $crate::HostStore, meta, &previous)
                }
            }

            $crate::bindings::export_store_guest_world!(
                IrohRaftStoreGuestExport with_types_in $crate::bindings
            );
        };
    };
}

/// Implementation details of [`export_store_guest!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::exports::iroh_raft::state_machine::state_machine::Guest;
}
