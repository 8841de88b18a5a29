//! The `kv` guest as version 2.0.0: the same code (the modules of
//! `guests/kv`, included by path, and its grammar, `kv-command`), so the
//! same results and snapshot format, but a different component with a
//! different hash. The Jepsen-style test
//! upgrades a cluster between the two while faults happen: the history
//! must stay linearizable across the switch.

pub use kv_command as command;
#[path = "../../kv/src/key.rs"]
pub mod key;
#[path = "../../kv/src/snapshot.rs"]
pub mod snapshot;
#[path = "../../kv/src/store.rs"]
pub mod store;

use iroh_raft_guest::{EntryMeta, StateMachine};

use crate::command::Command;
use crate::store::Store;

/// The guest's state, as in version 1.
#[derive(Debug, Default)]
pub struct KvV2 {
    store: Store,
}

impl StateMachine for KvV2 {
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

iroh_raft_guest::export_state_machine!(KvV2);
