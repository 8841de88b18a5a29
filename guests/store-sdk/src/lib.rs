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
//!
//! ## Hidden keys and the timer: two conventions with the host
//!
//! - **Hidden keys.** A key whose first byte is [`HIDDEN_KEY_PREFIX`]
//!   (`0xFF`) is the guest's private bookkeeping (revisions, leases,
//!   counters, indexes): the host's change feed (`/v1/watch`) never reports
//!   it. UTF-8 text never contains the byte `0xFF`, so a guest that stores
//!   its users' keys as text can put its metadata under `0xFF` and never
//!   collide with them. They are ordinary keys otherwise: replicated,
//!   snapshotted, counted by [`KvStore::size`] (a guest that reports a key
//!   count to users keeps its own count of hidden keys to subtract).
//! - **The timer.** A guest that needs to act at a time (expire a lease,
//!   fire a deadline) writes the key [`TIMER_KEY`] (`0xFF` then ASCII
//!   `timer`) with the time, in milliseconds since the Unix epoch, as a
//!   big-endian `u64` ([`set_timer`]). Once the leader's clock passes it,
//!   the leader proposes an **empty command** (zero bytes), so `apply` runs
//!   with [`EntryMeta::timestamp_ms`] at or after the due time; the guest
//!   does what is due and then rewrites the key (the next due time) or
//!   deletes it (nothing due), or it is proposed again. An empty command
//!   may also come from a client: treat it as a "tick" that does what is
//!   due and otherwise nothing, and never fail it (a failed entry's writes
//!   are discarded, so the due work would stay due). Time is the entries'
//!   leader timestamps, identical on every replica, never the wall clock.

/// The wit-bindgen output for `world store-guest`; [`export_store_guest!`]
/// reaches it from the guest crate, hence `pub`.
#[doc(hidden)]
#[allow(unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        // A copy of the repository's WIT (the contract shared with the
        // host) inside the crate, so the published crate is self-contained.
        path: "wit",
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

/// The first byte of a hidden key: the guest's bookkeeping, never
/// reported to watchers (see [the crate docs](crate#hidden-keys-and-the-timer-two-conventions-with-the-host)).
pub const HIDDEN_KEY_PREFIX: u8 = 0xFF;

/// The key of the guest's timer: a big-endian `u64`, milliseconds since
/// the Unix epoch; the host proposes an empty command once its leader's
/// clock passes it (see [`set_timer`]).
pub const TIMER_KEY: &[u8] = b"\xfftimer";

/// Whether `key` is a hidden key (starts with [`HIDDEN_KEY_PREFIX`]).
pub fn is_hidden(key: &[u8]) -> bool {
    key.first() == Some(&HIDDEN_KEY_PREFIX)
}

/// The time the guest's timer is set to, if it is set (a value that is not
/// 8 bytes counts as unset).
pub fn timer(store: &impl KvStore) -> Option<u64> {
    let value = store.get(TIMER_KEY)?;
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

/// Set the guest's timer to `due_ms` (milliseconds since the Unix epoch),
/// or clear it with `None`. Writes only when the value changes, so calling
/// it on every entry costs one read. Once the leader's clock passes
/// `due_ms` the host proposes an empty command; the guest must then move
/// the timer on or clear it.
///
/// ```
/// use iroh_raft_store_guest::{set_timer, timer, MemoryStore};
///
/// let mut store = MemoryStore::default();
/// set_timer(&mut store, Some(1_700_000_000_000)).expect("a small write");
/// assert_eq!(timer(&store), Some(1_700_000_000_000));
/// set_timer(&mut store, None).expect("a delete");
/// assert_eq!(timer(&store), None);
/// ```
pub fn set_timer(store: &mut impl KvStore, due_ms: Option<u64>) -> Result<(), StoreError> {
    if timer(store) == due_ms {
        return Ok(());
    }
    match due_ms {
        Some(due) => store.set(TIMER_KEY, &due.to_be_bytes()),
        None => store.delete(TIMER_KEY).map(|_| ()),
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

/// The name of the custom section [`guest_examples!`] writes; the host reads
/// it to suggest commands (its start banner, `guest.examples` in status).
pub const EXAMPLES_SECTION: &str = "iroh-raft:examples";

/// Declare commands that work on this guest, one `propose CMD` or `query
/// REQ` per string; a node prints them in its start banner. They are
/// stored in the custom section [`EXAMPLES_SECTION`] of the component (no
/// code runs, and hosts that do not know the section ignore it). At most
/// 4 KiB and 16 lines are read.
///
/// ```text
/// iroh_raft_store_guest::guest_examples!("propose add 5", "query get");
/// ```
#[macro_export]
macro_rules! guest_examples {
    ($($line:literal),+ $(,)?) => {
        const _: () = {
            const TEXT: &str = ::core::concat!($($line, "\n"),+);
            const LEN: usize = TEXT.len();
            // A `link_section` static must be an array of bytes (unused
            // natively, where the static is not compiled).
            #[allow(dead_code)]
            const BYTES: [u8; LEN] = {
                let text = TEXT.as_bytes();
                let mut bytes = [0u8; LEN];
                let mut at = 0;
                while at < LEN {
                    bytes[at] = text[at];
                    at += 1;
                }
                bytes
            };
            // `used`: kept through LTO although nothing reads it; only on
            // wasm, where a link section is a custom section.
            #[cfg(target_family = "wasm")]
            #[used]
            #[allow(unsafe_code)]
            #[unsafe(link_section = "iroh-raft:examples")]
            static EXAMPLES: [u8; LEN] = BYTES;
        };
    };
}
