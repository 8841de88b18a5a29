//! The `kv` guest: a replicated map from string keys to string values.
//!
//! Commands (through `apply`) and queries are single lines of UTF-8 text:
//!
//! | text                | result                                 | apply | query |
//! |---------------------|----------------------------------------|-------|-------|
//! | `put <key> <value>` | `OK`                                   | yes   | no    |
//! | `delete <key>`      | `1` if the key existed, else `0`       | yes   | no    |
//! | `get <key>`         | the value, or err `key not found: <key>` | yes | yes   |
//! | `list [prefix]`     | matching keys, sorted, joined by `\n`  | yes   | yes   |
//! | `count`             | the number of keys                     | yes   | yes   |
//!
//! Keys are single whitespace-free words of at most
//! [`MAX_KEY_BYTES`](command::MAX_KEY_BYTES); a value is the rest of the
//! line after the key and one space, at most
//! [`MAX_VALUE_BYTES`](command::MAX_VALUE_BYTES). The exact grammar is in
//! [`command`], the snapshot format in [`snapshot`].

pub use kv_command as command;
pub mod key;
pub mod snapshot;
pub mod store;

use iroh_raft_guest::{EntryMeta, StateMachine};

use crate::command::Command;
use crate::store::Store;

/// The guest's state.
#[derive(Debug, Default)]
pub struct Kv {
    store: Store,
}

impl StateMachine for Kv {
    const NAME: &'static str = "kv";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn apply(&mut self, _meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        let command = Command::parse(command)?;
        self.store.execute(command).map(String::into_bytes)
    }

    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        let request = Command::parse(request)?;
        self.store.read(request).map(String::into_bytes)
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(snapshot::encode(&self.store))
    }

    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        snapshot::decode(snapshot).map(|store| Self { store })
    }
}

iroh_raft_guest::export_state_machine!(Kv);
iroh_raft_guest::guest_examples!(
    "propose put greeting hello",
    "query get greeting",
    "query list"
);

#[cfg(test)]
mod tests {
    use super::*;
    use iroh_raft_guest::Slot;

    const META: EntryMeta = EntryMeta {
        index: 1,
        term: 1,
        timestamp_ms: 0,
    };

    #[test]
    fn t10_through_the_sdk() {
        let slot = Slot::<Kv>::new();
        assert_eq!(slot.apply(META, b"put a hello world"), Ok(b"OK".to_vec()));
        assert_eq!(slot.apply(META, b"put b 2"), Ok(b"OK".to_vec()));
        assert_eq!(slot.query(b"get a"), Ok(b"hello world".to_vec()));
        assert_eq!(slot.query(b"list"), Ok(b"a\nb".to_vec()));
        assert_eq!(slot.query(b"count"), Ok(b"2".to_vec()));
        assert!(slot.query(b"put c 3").is_err());
        assert_eq!(slot.apply(META, b"delete b"), Ok(b"1".to_vec()));
        assert_eq!(
            slot.apply(META, b"get b"),
            Err("key not found: b".to_owned())
        );

        let snapshot = slot.snapshot().expect("snapshot");
        let other = Slot::<Kv>::new();
        other.restore(&snapshot).expect("restore");
        assert_eq!(other.snapshot(), Ok(snapshot));
        assert!(other.restore(b"IRKV\x01garbage").is_err());
        assert_eq!(other.query(b"get a"), Ok(b"hello world".to_vec()));
    }
}
