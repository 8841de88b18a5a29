//! Test guest: a "version 2" of the counter whose `restore` traps (a panic
//! is a wasm `unreachable`). Upgrading to it must fail on every replica and
//! leave the cluster on version 1 with its state untouched.

use counter_logic::Counter;
use iroh_raft_guest::{EntryMeta, StateMachine};

#[derive(Debug, Default)]
struct TrappingCounter {
    counter: Counter,
}

impl StateMachine for TrappingCounter {
    const NAME: &'static str = "counter";
    const VERSION: &'static str = "2.0.0-trap";

    fn apply(&mut self, _meta: EntryMeta, command: &[u8]) -> Result<Vec<u8>, String> {
        self.counter.apply(command)
    }

    fn query(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        self.counter.query(request)
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(self.counter.snapshot())
    }

    #[allow(clippy::panic)]
    fn restore(snapshot: &[u8]) -> Result<Self, String> {
        panic!("restore of {} bytes: deliberate trap", snapshot.len())
    }
}

iroh_raft_guest::export_state_machine!(TrappingCounter);
